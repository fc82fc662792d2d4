"""Suspend and resume with guest RAM in a file, end to end under TCG.

A marker in guest RAM (a value the running guest agent holds) survives a
suspend (device state saved, QEMU gone) and a resume (a new QEMU on the same RAM
file); the agent answers; the ballooning policy still deflates and inflates
afterwards, and inflating punches holes in the RAM file.
"""

from __future__ import annotations

import time

import pytest

from glue.agent_client import AgentClient
from glue.profile import POLICY_PATH, BalloonSetup, builtin_profile
from glue.qemu import Qemu
from glue.runtime import new_runtime_dir
from glue.session import allocated, rss_kib
from glue.snapshot import FileRam, SnapshotError, resume, suspend
from test_balloon_e2e import Vm

pytestmark = pytest.mark.e2e

MiB = 1 << 20
RAM = 512 * MiB




def test_suspend_resume_keeps_guest_ram_and_the_balloon_works(build_outputs, guest_image):
    rundir = new_runtime_dir("test-snapshot")
    ram = FileRam(rundir / "ram", RAM)
    state = rundir / "state"
    config = ram.apply(builtin_profile(build_outputs, guest_image.vmlinux, guest_image.initrd,
                                       "tcg", touch=False, balloon=BalloonSetup(foreground=True)))
    q = Qemu(config, rundir).start()
    try:
        agent = AgentClient(str(q.agent_socket), connect_timeout=30)
        agent.wait_ready(timeout=180)
        agent.hold("marker", "held-in-guest-ram-42")
        vm = Vm(q, agent, None, None)
        # backgrounded under critical pressure the balloon takes what it may
        q.qom_set(POLICY_PATH, "host-level", "critical")
        q.qom_set(POLICY_PATH, "foreground", False)
        vm.wait_balloon(lambda b: b >= RAM - 256 * MiB - MiB, 15, "before suspend")
        # QEMU's figure trails the guest's last page batch: wait for it to stop
        inflated = vm.settle(quiet=1.0)
        assert agent.mem().balloon == inflated
        agent.close()
        took = suspend(q, state)
    finally:
        q.stop()
    assert not q.alive()
    print(f"suspend {took * 1000:.0f} ms, device state {state.stat().st_size} bytes")
    assert took < 2.0
    assert state.stat().st_size < 4 * MiB       # RAM stayed in its file
    assert not state.with_name("state.partial").exists()

    t0 = time.monotonic()
    q = resume(config, rundir, state)
    try:
        agent = AgentClient(str(q.agent_socket), connect_timeout=30)
        assert agent.recall("marker") == "held-in-guest-ram-42"
        vm = Vm(q, agent, None, None)
        first_answer = time.monotonic() - t0
        print(f"resume to the agent's first answer {first_answer * 1000:.0f} ms")
        assert q.cmd("query-status")["status"] == "running"
        assert agent.mem().balloon == inflated   # the guest's balloon came back too
        # a new policy object, in the foreground: it gives the guest everything
        vm.wait_balloon(lambda b: b == 0, 15, "foreground after resume")
        assert agent.mem().balloon == 0
        agent.memhog(200)                         # the guest touches memory again
        while not agent.memhog_stat().done:
            time.sleep(0.2)
        agent.memhog_stop()
        assert allocated(ram.path) > 200 * MiB
        # the host's state is the glue's to tell the new QEMU (the bridge resends
        # it when it reconnects); here over QMP
        q.qom_set(POLICY_PATH, "host-level", "critical")
        q.qom_set(POLICY_PATH, "foreground", False)
        vm.wait_balloon(lambda b: b >= RAM - 256 * MiB - MiB, 15, "background after resume")
        b = vm.balloon()
        time.sleep(1)
        # ballooned pages are discarded from the RAM file (fallocate punch-hole;
        # also by free page reporting) and unmapped: QEMU maps no more than the
        # guest outside the balloon, plus its own memory. (The file's blocks are
        # not a measure: on ext4 a punched 4 KiB page inside a large folio is
        # allocated again when the folio is written back.)
        resident = rss_kib(q.proc.pid)
        assert resident is not None and resident * 1024 <= RAM - b + 96 * MiB, resident
        agent.close()
    finally:
        q.stop()


def test_resume_without_saved_state_is_a_clear_error(build_outputs, guest_image, tmp_path):
    rundir = new_runtime_dir("test-snapshot")
    config = FileRam(rundir / "ram", RAM).apply(
        builtin_profile(build_outputs, guest_image.vmlinux, guest_image.initrd, "tcg",
                        touch=False))
    with pytest.raises(SnapshotError, match="no saved state"):
        resume(config, rundir, tmp_path / "missing")
