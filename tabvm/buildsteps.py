"""The steps the top-level meson.build runs (``python -m tabvm.buildsteps STEP ...``).

  gen   GEN_DIR STAMP          render devspecs/ into GEN_DIR (files rewritten only on change)
  acpi  GEN_DIR OUT_DIR STAMP  compile GEN_DIR/acpi/*.asl that changed into OUT_DIR/*.aml
  qemu  GEN_DIR OUT_DIR STAMP  fetch/patch/hook/configure/build QEMU, install into OUT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

from generator.main import cmd_gen, spec_files

from .acpi import AcpiError, compile_changed
from .progress import say
from .qemu_build import BuildError, build_qemu
from .qemu_source import SourceError
from .qemu_tree import HookError
from .recipe import load_recipe


def _stamp(path: str) -> None:
    Path(path).write_text("")


def step_gen(gen_dir: str, stamp: str) -> int:
    rc = cmd_gen(spec_files(), Path(gen_dir), quiet=False)
    if rc == 0:
        _stamp(stamp)
    return rc


def step_acpi(gen_dir: str, out_dir: str, stamp: str) -> int:
    for aml in compile_changed(Path(gen_dir), Path(out_dir)):
        say(f"compiled {aml}")
    _stamp(stamp)
    return 0


def step_qemu(gen_dir: str, out_dir: str, stamp: str) -> int:
    compiled = build_qemu(load_recipe(), Path(gen_dir), Path(out_dir))
    say(f"QEMU up to date; {len(compiled)} C file(s) compiled this time")
    _stamp(stamp)
    return 0


STEPS = {"gen": step_gen, "acpi": step_acpi, "qemu": step_qemu}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in STEPS:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        return STEPS[argv[0]](*argv[1:])
    except (AcpiError, BuildError, SourceError, HookError) as exc:
        print(f"tabvm: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
