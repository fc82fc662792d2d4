"""The OpenSL ES driver's setup and teardown under valgrind.

QEMU creates the audiodev, the engine, the output mix, the player and the
recorder (hda-duplex opens both voices when it is realized) and destroys them
all on quit, without running a guest: booting the test guest under TCG inside
valgrind would take many minutes, so the guest's start/stop cycles and driver
reload are checked without valgrind in test_audio_e2e.py (threads come back).
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from generator.ir import Opensles
from generator.main import check, spec_files
from glue.audio import HDA_DEVICES

DRIVERS = [d for d in check(spec_files()) if isinstance(d, Opensles)]
DRIVER = DRIVERS[0]


def test_setup_and_teardown_are_clean_under_valgrind(build_outputs, tmp_path):
    if not shutil.which("valgrind"):
        pytest.fail("valgrind is needed (bootstrap installs it)")
    log, vg = tmp_path / "sles.log", tmp_path / "valgrind.log"
    lib = build_outputs.root / "libOpenSLES.so"
    cmd = ["valgrind", "--leak-check=full", "--errors-for-leak-kinds=definite",
           "--error-exitcode=99", f"--log-file={vg}",
           str(build_outputs.qemu), "-M", "q35", "-S", "-display", "none", "-nodefaults",
           "-L", str(build_outputs.firmware), "-monitor", "stdio",
           "-audiodev", f"{DRIVER.qapi_name},id=snd0,library={lib}"]
    # a second driver's audiodev shares the engine: the last one out destroys it
    for i, other in enumerate(DRIVERS[1:]):
        cmd += ["-audiodev", f"{other.qapi_name},id=other{i},library={lib}"]
    for dev in HDA_DEVICES:
        cmd += ["-device", dev]
    proc = subprocess.run(cmd, input="quit\n", capture_output=True, text=True,
                          timeout=600, env={"TABVM_SLES_LOG": str(log), "PATH": "/usr/bin:/bin"})
    report = vg.read_text()
    assert proc.returncode == 0, report[-3000:]
    assert re.search(r"ERROR SUMMARY: 0 errors", report), report[-3000:]
    assert re.search(r"definitely lost: 0 bytes", report) or "no leaks are possible" in report
    # the objects were really destroyed: the stand-in logs a summary on Destroy
    summaries = [line.split()[1] for line in log.read_text().splitlines() if "summary" in line]
    assert sorted(summaries) == ["player", "recorder"], log.read_text()
