"""``tabvm check`` / ``tabvm gen``: validate specs, render them, write what changed."""

from __future__ import annotations

import sys
from pathlib import Path

from .errors import SpecErrors
from .frontend import load_specs
from .ir import Device
from .output import write_outputs
from .render import Output, render_all

REPO = Path(__file__).resolve().parent.parent
SPEC_DIR = REPO / "devspecs"
DEFAULT_OUT = REPO / "build" / "gen"


def spec_files(spec_dir: Path = SPEC_DIR) -> list[Path]:
    return sorted(spec_dir.glob("*.yaml"))


def base_devices() -> list[str]:
    from tabvm.recipe import load_recipe  # the VM profile's stock device set
    return list(load_recipe().base_devices)


def check(paths: list[Path], base: Path = REPO) -> list[Device]:
    return load_specs(paths, base)


def generate(paths: list[Path], base: Path = REPO) -> list[Output]:
    """Check and render; raises SpecErrors before anything is written."""
    return render_all(check(paths, base), base_devices())


def report(exc: SpecErrors) -> int:
    for e in exc.errors:
        print(e, file=sys.stderr)
    n = len(exc.errors)
    print(f"{n} error{'s' if n != 1 else ''}; nothing generated", file=sys.stderr)
    return 1


def cmd_check(paths: list[Path]) -> int:
    try:
        devices = check(paths)
    except SpecErrors as exc:
        return report(exc)
    for d in devices:
        print(f"{d.spec_path}: ok ({d.kind} {d.summary})")
    return 0


def cmd_gen(paths: list[Path], out: Path, quiet: bool = False) -> int:
    try:
        outputs = generate(paths)
    except SpecErrors as exc:
        return report(exc)
    try:
        changed = write_outputs(out, outputs)
    except OSError as exc:
        print(f"tabvm: error: cannot write {out}: {exc}", file=sys.stderr)
        return 1
    if not quiet:
        for path in changed:
            print(f"  wrote {path}")
        print(f"{len(outputs)} files in {out}, {len(changed)} changed")
    return 0
