"""The VM lifecycle end to end under TCG: `tabvm run PROFILE` as its own process,
driven by host events like the Android app drives it.

boot -> markers in guest RAM and on the guest's disk -> background ->
onTrimMemory suspends (QEMU exits) -> foreground resumes from the checkpoint:
both markers there, the agent answers, the balloon inflates and deflates; a new
glue resumes the same checkpoint; the golden template starts a fresh session.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

import pytest

from glue.journal import Journal, Record
from test_host_events import python_for
from lifecycle_harness import (Glue, disk_marker, put_markers, ram_marker, wait_gone,
                               write_profile)

pytestmark = pytest.mark.e2e

MiB = 1 << 20


def qemu_img_check(build_outputs, image) -> subprocess.CompletedProcess:
    return subprocess.run([str(build_outputs.qemu_img), "check", "-f", "qcow2", str(image)],
                          capture_output=True, text=True)


@pytest.fixture
def session(tmp_path, build_outputs, guest_image):
    name = lc_name(tmp_path.name)
    profile = write_profile(tmp_path, name)
    glues: list[Glue] = []

    def start(**kw) -> Glue:
        glue = Glue(profile, name, build_outputs.root, tmp_path / "state", **kw)
        glues.append(glue)
        return glue
    yield start
    for glue in glues:
        glue.stop()


def balloon_mib(glue: Glue) -> int:
    return glue.event("status")["memory"].get("balloon_mib", -1)


def wait_balloon(glue: Glue, done, timeout: float, what: str) -> int:
    deadline = time.monotonic() + timeout
    while True:
        b = balloon_mib(glue)
        if done(b):
            return b
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: balloon {b} MiB after {timeout} s")
        time.sleep(0.1)


def test_suspend_and_resume_through_host_events(session, build_outputs):
    glue = session()
    assert glue.running() == "cold"
    agent = glue.agent()
    put_markers(agent, "marker-1")
    agent.close()
    pid = glue.qemu_pid()

    assert glue.event("background")["state"] == "running"
    reply = glue.event("trim-memory", level="TRIM_MEMORY_MODERATE")
    assert reply["ok"] and reply["state"] == "suspended", reply
    wait_gone(pid)                                  # QEMU exited: its memory is freed
    st = glue.event("status")
    assert st["state"] == "suspended" and "qemu_pid" not in st
    assert st["timings_ms"]["suspend_ms"] < 2000
    record = glue.journal()
    assert record.state == "suspended" and record.checkpoint is not None
    assert qemu_img_check(build_outputs, glue.state_dir / "disk.qcow2").returncode == 0

    t0 = time.monotonic()
    reply = glue.event("foreground")
    assert reply["ok"] and reply["state"] == "running", reply
    agent = glue.agent()
    print(f"foreground to the agent's answer {(time.monotonic() - t0) * 1000:.0f} ms")
    assert ram_marker(agent) == "marker-1"
    assert disk_marker(agent) == "marker-1"
    st = glue.event("status")
    assert st["source"] == "checkpoint" and st["foreground"]
    assert glue.journal().checkpoint is None        # the guest runs on it again
    assert set(st["bridges"]) == {"balloon", "battery"}

    # the balloon policy still works on the resumed VM (fill the page cache first)
    agent.sh("dd if=/dev/zero of=/mnt/disk/fill bs=1M count=48 2>/dev/null; sync; "
             "cat /mnt/disk/fill > /dev/null")
    glue.event("pressure", level="critical")
    glue.event("background")
    inflated = wait_balloon(glue, lambda b: b >= 200, 20, "background + critical")
    assert agent.mem().balloon >> 20 >= inflated - 1
    glue.event("pressure", level="normal")
    glue.event("foreground")
    wait_balloon(glue, lambda b: b == 0, 30, "foreground + normal")
    agent.close()

    # shutdown suspends (the profile's on_shutdown); a new glue resumes it
    assert glue.shutdown() == 0
    assert glue.journal().state == "suspended"
    glue2 = session()
    assert glue2.running() == "checkpoint"
    agent = glue2.agent()
    assert ram_marker(agent) == "marker-1" and disk_marker(agent) == "marker-1"
    agent.close()
    assert glue2.shutdown() == 0
    assert qemu_img_check(build_outputs, glue.state_dir / "disk.qcow2").returncode == 0


def test_a_second_glue_cannot_take_the_session(session):
    glue = session()
    glue.running()
    other = session()
    assert other.proc.wait(30) == 1
    assert "is in use by another tabvm" in other.text()
    assert glue.event("status")["state"] == "running"    # the first one is untouched
    # another uid reaches neither QMP nor the host-event socket (0700 runtime dir)
    python = python_for(65534)
    for sock in ("qmp.sock", "host-events.sock", "agent.sock"):
        probe = subprocess.run(
            [python, "-I", "-c", "import socket, sys\n"
             "s = socket.socket(socket.AF_UNIX)\n"
             "try:\n    s.connect(sys.argv[1])\nexcept PermissionError:\n"
             "    sys.exit(13)\n", str(glue.rundir / sock)], user=65534,
            group=65534, extra_groups=[], capture_output=True, text=True)
        assert probe.returncode == 13, (sock, probe.stderr)
    assert oct(glue.rundir.stat().st_mode & 0o777) == "0o700"
    glue.shutdown()


def test_host_event_errors_change_nothing(session):
    glue = session()
    glue.running()
    before = glue.journal()
    for bad in ({"event": "trim-memory", "level": "NOT_A_LEVEL"},
                {"event": "trim-memory"}, {"event": "foreground", "extra": 1},
                {"event": "suspend-now"}, {"event": "background", "level": 3}):
        reply = glue.event(**bad)
        assert reply["ok"] is False and reply["error"], reply
    st = glue.event("status")
    assert st["state"] == "running" and st["foreground"] is True
    assert glue.journal() == before
    glue.event("suspend")
    reply = glue.event("suspend")                      # twice: an error, nothing lost
    assert reply["ok"] is False and "cannot suspend" in reply["error"]
    assert glue.journal().state == "suspended"
    glue.shutdown()


def test_golden_template_starts_a_fresh_session(tmp_path, session, build_outputs):
    name = tmp_path.name
    proc = subprocess.run(
        [sys.executable, "-m", "tabvm.cli", "snapshot", "template", str(tmp_path / f"{lc_name(name)}.yaml"),
         "--builddir", str(build_outputs.root)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "golden template of profile" in proc.stdout
    glue = session()
    t0 = time.monotonic()
    assert glue.running() == "template"
    agent = glue.agent()
    print(f"fresh session from the template: agent answered after "
          f"{(time.monotonic() - t0) * 1000:.0f} ms")
    put_markers(agent, "from-template")
    agent.close()
    glue.event("suspend")
    glue.event("foreground")
    agent = glue.agent()
    assert ram_marker(agent) == "from-template"
    agent.close()
    glue.shutdown()
    # a used session (its disk has data) never restarts from the template
    shutil.rmtree(glue.state_dir / "devstate-1", ignore_errors=True)
    Journal(glue.state_dir).commit(Record(state="running", epoch=3, clean=True))
    glue2 = session()
    assert glue2.running() == "cold"
    agent = glue2.agent()
    assert disk_marker(agent) == "from-template"
    agent.close()
    glue2.shutdown()


def lc_name(tmp_name: str) -> str:
    return f"lc-{tmp_name[-20:].lower().replace('_', '-')}"[:32].rstrip("-")

