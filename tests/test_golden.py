"""Golden tests: every generated file, byte for byte (--update-golden rewrites)."""

import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import REPO
from generator.main import generate, spec_files
from generator.output import write_outputs

GOLDEN = REPO / "tests" / "golden"
CASES = {
    "devspecs": lambda: spec_files(),
    "variant": lambda: sorted((GOLDEN / "variant" / "specs").glob("*.yaml")),
}


def expected_files(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): p.read_text()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden(case, update_golden):
    outputs = generate(CASES[case]())
    expected_dir = GOLDEN / case / "expected"
    got = {o.path: o.text for o in outputs}
    if update_golden:
        shutil.rmtree(expected_dir, ignore_errors=True)
        for path, text in got.items():
            (expected_dir / path).parent.mkdir(parents=True, exist_ok=True)
            (expected_dir / path).write_text(text)
    assert got == expected_files(expected_dir)


def test_generation_is_deterministic():
    a = [(o.path, o.text) for o in generate(spec_files())]
    b = [(o.path, o.text) for o in generate(spec_files())]
    assert a == b


def test_banner_names_spec_and_command():
    for o in generate(spec_files()):
        if o.copied:           # the OpenSL ES headers, put into QEMU's tree as they are
            continue
        head = " ".join(line.lstrip("/*# ") for line in o.text.splitlines()[:12])
        assert "SPDX-License-Identifier: GPL-2.0-or-later" in head, o.path
        assert "Generated from " in head, o.path
        for spec in o.spec_paths:
            assert spec in head, (o.path, spec)
        assert "Regenerate with: tabvm gen" in head, o.path
        assert "/work/" not in o.text and str(REPO) not in o.text, o.path


@pytest.mark.parametrize("case", sorted(CASES))
def test_asl_compiles_without_warnings(case, tmp_path):
    from tabvm.acpi import compile_asl
    for o in generate(CASES[case]()):
        if o.path.endswith(".asl"):
            asl = tmp_path / Path(o.path).name
            asl.write_text(o.text)
            compile_asl(asl, tmp_path / "out.aml")
            dis = subprocess.run(["iasl", "-d", "-p", str(tmp_path / "dis"),
                                  str(tmp_path / "out.aml")], capture_output=True, text=True)
            assert dis.returncode == 0, dis.stderr
            text = (tmp_path / "dis.dsl").read_text()
            assert 'EisaId ("PNP0C0A")' in text
            assert '"ACPI0003"' in text and '"ACPI0001"' in text


def test_iasl_warning_fails(tmp_path):
    from tabvm.acpi import AcpiError, compile_asl
    asl = tmp_path / "warn.asl"
    # Method with an unused argument-free Return of a reserved name type mismatch:
    asl.write_text('DefinitionBlock ("", "SSDT", 2, "TABVM", "WARN", 1)\n'
                   '{ Method (_STA, 0) { Return ("x") } }\n')
    with pytest.raises(AcpiError):
        compile_asl(asl, tmp_path / "warn.aml")


def test_write_only_changed(tmp_path):
    outputs = generate(spec_files())
    assert write_outputs(tmp_path, outputs)
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    assert write_outputs(tmp_path, outputs) == []
    assert stamps == {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}


def test_removed_spec_outputs_are_deleted(tmp_path):
    write_outputs(tmp_path, generate(spec_files()))
    assert (tmp_path / "acpi/battery.asl").exists()
    changed = write_outputs(tmp_path, generate([]))
    assert "acpi/battery.asl" in changed
    assert not (tmp_path / "acpi/battery.asl").exists()


def test_string_literal_escapes():
    from generator.ir import string_literal
    assert string_literal('a"b\\c') == '"a\\"b\\\\c"'
