"""Write generated files: only those whose text changed, atomically, nothing on error.

Like QAPIGen.write(): an unchanged file keeps its mtime, so a spec edit makes the
build redo only what depends on the files that really changed. A manifest lists
what the last run wrote, so files of a removed spec are deleted.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .render import Output

MANIFEST = ".tabvm-generated"


def write_if_changed(path: Path, text: str) -> bool:
    """Write ``text`` to ``path`` unless it already holds it. True if written."""
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except (FileNotFoundError, UnicodeDecodeError):
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True


def write_outputs(outdir: Path, outputs: list[Output]) -> list[str]:
    """Bring ``outdir`` to exactly ``outputs``; return the paths written or removed."""
    changed = []
    wanted = {o.path for o in outputs}
    manifest = outdir / MANIFEST
    previous = manifest.read_text().split() if manifest.exists() else []
    for o in outputs:
        if write_if_changed(outdir / o.path, o.text):
            changed.append(o.path)
    root = outdir.resolve()
    for old in previous:
        stale = (outdir / old).resolve()
        if old not in wanted and stale.is_relative_to(root) and stale.exists():
            stale.unlink()
            changed.append(old)
    write_if_changed(manifest, "".join(f"{p}\n" for p in sorted(wanted)))
    return changed
