"""Unannounced kills: SIGKILL of QEMU or of the glue while running, mid-suspend
and mid-resume; the next start never resumes a mismatched RAM/device state/disk.

Each scenario starts a fresh session from a shared golden template (fast), puts
a marker in guest RAM and a synced one on the guest's disk, gets the lifecycle
to the point under test (the glue's TABVM_STALL_AT hook holds it there), kills
the victim, and checks the restart: where it came from (the last consistent
checkpoint, or a cold boot), the disk (``qemu-img check``: no corruption), the
disk marker always there, the RAM marker exactly when a checkpoint was resumed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from lifecycle_harness import (Glue, disk_marker, put_markers, ram_marker, wait_gone,
                               write_profile)

pytestmark = pytest.mark.e2e

# (where, victim, the source the VM comes back from)
SCENARIOS = [
    ("running", "qemu", "cold"),
    ("running", "glue", "cold"),
    ("suspend:stopped", "qemu", "cold"),
    ("suspend:stopped", "glue", "cold"),
    ("suspend:saved", "qemu", "cold"),
    ("suspend:saved", "glue", "cold"),
    ("suspend:committed", "glue", "checkpoint"),
    ("resume:loaded", "qemu", "checkpoint"),
    ("resume:loaded", "glue", "checkpoint"),
    ("resume:committed", "qemu", "cold"),
    ("resume:committed", "glue", "cold"),
]


@pytest.fixture(scope="module")
def template(tmp_path_factory, build_outputs, guest_image):
    """A golden template every scenario's fresh session starts from."""
    root = tmp_path_factory.mktemp("kill-template")
    profile = write_profile(root, "kill-template")
    proc = subprocess.run([sys.executable, "-m", "tabvm.cli", "snapshot", "template",
                           str(profile), "--builddir", str(build_outputs.root)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return root / "state" / "template"


def check_disk(build_outputs, glue: Glue, allowed=(0,)) -> str:
    proc = subprocess.run([str(build_outputs.qemu_img), "check", "-f", "qcow2",
                           str(glue.state_dir / "disk.qcow2")], capture_output=True, text=True)
    assert proc.returncode in allowed, proc.stdout + proc.stderr     # 2 = corrupt
    return proc.stdout


@pytest.mark.parametrize("where,victim,source", SCENARIOS,
                         ids=[f"{w}-{v}" for w, v, _ in SCENARIOS])
def test_kill(where, victim, source, tmp_path, template, build_outputs):
    name = f"kill-{SCENARIOS.index((where, victim, source))}"
    profile = write_profile(tmp_path, name)
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    os.symlink(template, state / "template")
    glues: list[Glue] = []

    def glue(stall: str | None = None, stall_seconds: float = 60) -> Glue:
        g = Glue(profile, name, build_outputs.root, state, stall, stall_seconds)
        glues.append(g)
        return g

    # qemu victims: the glue lives on past the stall and meets the dead QEMU
    stall_s = 3 if victim == "qemu" else 60
    try:
        first = glue(stall=where if where.startswith("suspend") else None,
                     stall_seconds=stall_s)
        assert first.running() == "template"
        agent = first.agent()
        put_markers(agent, f"m-{name}")
        agent.close()
        live = first
        if where.startswith("resume"):
            first.event("background")
            assert first.event("suspend")["ok"]
            assert first.shutdown() == 0
            live = glue(stall=where, stall_seconds=stall_s)
        elif where.startswith("suspend"):
            first.event("background")
            # blocks while the lifecycle stalls: send it from the side
            threading.Thread(target=lambda: _quiet(first.event, "trim-memory",
                                                   level="MODERATE"), daemon=True).start()
        if where != "running":
            live.wait_log(rf"step=stall point={where}")
        mark = len(live.text())
        qemu = live.qemu_pid() if where != "suspend:committed" else None
        if victim == "qemu":
            live.kill_qemu()
        else:
            live.kill()
            if qemu:
                wait_gone(qemu)                  # QEMU never outlives its glue
        if victim == "glue":                     # nothing has the disk open now
            check_disk(build_outputs, live, allowed=(0, 3))     # leaks at most

        if victim == "glue":
            back = glue()
            got = back.running()
        else:
            back = live
            if where.startswith("suspend"):     # in the background: no auto-restart
                back.wait_log(r"step=suspend-failed", after=mark)
                back.event("foreground")
            got = back.running(after=mark)
        assert got == source, back.text()
        agent = back.agent()
        assert disk_marker(agent) == f"m-{name}"            # flushed data survives
        assert ram_marker(agent) == (f"m-{name}" if source == "checkpoint" else None)
        agent.close()
        assert "result=corrupt" not in back.text()        # the glue's own check
        assert back.shutdown() == 0
        check_disk(build_outputs, back)
        assert back.journal().state == "suspended"
    finally:
        for g in glues:
            g.stop()


def _quiet(fn, *args, **kw) -> None:
    try:
        fn(*args, **kw)
    except OSError:
        pass
