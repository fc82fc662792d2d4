"""Bad specs: the exact error text, exit status 1, no traceback, nothing written."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

BAD = REPO / "tests" / "bad-specs"
CASES = sorted([p for p in BAD.glob("*.yaml")] + [p for p in BAD.iterdir() if p.is_dir()])


def spec_args(case: Path) -> list[str]:
    files = sorted(case.glob("*.yaml")) if case.is_dir() else [case]
    return [str(f.relative_to(REPO)) for f in files]


def tabvm(*args: str) -> subprocess.CompletedProcess:
    """`tabvm ARGS` in this process (fast); see test_cli_process for a real one."""
    import contextlib
    import io

    from tabvm.cli import main

    out, err = io.StringIO(), io.StringIO()
    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(list(args))
    finally:
        os.chdir(cwd)
    return subprocess.CompletedProcess(args, rc, out.getvalue(), err.getvalue())


def test_cli_process_exit_status_and_no_traceback():
    proc = subprocess.run([sys.executable, "-m", "tabvm.cli", "check",
                           "tests/bad-specs/many-errors.yaml"], cwd=REPO,
                          capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert proc.stderr == (BAD / "many-errors.err").read_text()


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_check_reports_exact_errors(case, update_golden):
    proc = tabvm("check", *spec_args(case))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    expected = case.with_suffix(".err") if case.is_file() else case / "expected.err"
    if update_golden:
        expected.write_text(proc.stderr)
    assert proc.stderr == expected.read_text()


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_gen_touches_nothing(case, tmp_path):
    out = tmp_path / "gen"
    good = tabvm("gen", "--out", str(out), "devspecs/battery.yaml")
    assert good.returncode == 0, good.stderr
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.rglob("*")
              if p.is_file()}
    proc = tabvm("gen", "--out", str(out), *spec_args(case))
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    after = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.rglob("*")
             if p.is_file()}
    assert after == before


def test_every_error_at_once():
    proc = tabvm("check", "tests/bad-specs/many-errors.yaml")
    lines = [l for l in proc.stderr.splitlines() if l.startswith("tests/")]
    assert len(lines) == 4
    assert proc.stderr.rstrip().endswith("4 errors; nothing generated")


def test_errors_across_files_all_reported():
    proc = tabvm("check", "tests/bad-specs/unknown-key.yaml", "tests/bad-specs/wrong-type.yaml")
    assert "unknown-key.yaml:23: battery.colour: unknown field" in proc.stderr
    assert "wrong-type.yaml:11: battery.design_capacity: must be of integer type" in proc.stderr


def test_good_spec_checks():
    proc = tabvm("check")
    assert proc.returncode == 0, proc.stderr
    assert "devspecs/battery.yaml: ok (acpi-battery tabvm-battery)" in proc.stdout


def test_gen_into_unwritable_place_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory\n")
    proc = tabvm("gen", "--out", str(blocker / "gen"))
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"tabvm: error: cannot write {blocker / 'gen'}")
    assert blocker.read_text() == "not a directory\n"


def test_check_missing_file():
    proc = tabvm("check", "tests/bad-specs/no-such-spec.yaml")
    assert proc.returncode == 1
    assert proc.stderr.startswith("tests/bad-specs/no-such-spec.yaml:1: cannot read:")
