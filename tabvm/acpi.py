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


def compile_all(gen_dir: Path, out_dir: Path) -> list[Path]:
    """Every ``gen_dir/acpi/*.asl`` to ``out_dir/<name>.aml``; returns the AML paths."""
    amls = []
    for asl in sorted((gen_dir / "acpi").glob("*.asl")):
        aml = out_dir / f"{asl.stem}.aml"
        compile_asl(asl, aml)
        amls.append(aml)
    return amls
