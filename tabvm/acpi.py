"""Compile generated ASL with iasl; any warning fails (``-we``)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path



class AcpiError(RuntimeError):
    pass


def compile_asl(asl: Path, aml: Path) -> bool:
    """Compile ``asl`` to ``aml``; rewrite ``aml`` only if the bytes differ."""
    iasl = shutil.which("iasl")
    if iasl is None:
        raise AcpiError("iasl not found: install Debian's acpica-tools")
    with tempfile.TemporaryDirectory() as tmp:
        prefix = Path(tmp) / aml.stem
        proc = subprocess.run([iasl, "-we", "-vs", "-p", str(prefix), str(asl)],
                              capture_output=True, text=True)
        out = Path(f"{prefix}.aml")
        if proc.returncode != 0 or not out.exists():
            raise AcpiError(f"iasl {asl}:\n{proc.stdout.strip()}\n{proc.stderr.strip()}")
        data = out.read_bytes()
    if aml.exists() and aml.read_bytes() == data:
        return False
    aml.parent.mkdir(parents=True, exist_ok=True)
    tmp_aml = aml.with_name(f".{aml.name}.tmp")
    tmp_aml.write_bytes(data)
    tmp_aml.replace(aml)
    return True


def compile_changed(gen_dir: Path, out_dir: Path) -> list[Path]:
    """Compile each ``gen_dir/acpi/*.asl`` newer than its ``out_dir/<name>.aml``.

    Returns the AML files that were (re)written.
    """
    written = []
    for asl in sorted((gen_dir / "acpi").glob("*.asl")):
        aml = out_dir / f"{asl.stem}.aml"
        if aml.exists() and aml.stat().st_mtime >= asl.stat().st_mtime:
            continue
        if compile_asl(asl, aml):
            written.append(aml)
        else:
            aml.touch()      # same bytes: mark it up to date with its source
    return written
