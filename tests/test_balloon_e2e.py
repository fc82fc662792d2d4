"""Automatic ballooning end to end: a real Linux guest under TCG.

QEMU is the project's build with the policy object generated from
devspecs/balloon.yaml driving virtio-balloon (deflate-on-oom, free page
reporting). Host pressure and foreground/background go through the glue the way
`tabvm run` wires it: host events on the host-event socket -> BalloonBridge ->
the policy's chardev. What is checked is the guest's virtio_balloon driver
(through /proc/meminfo and /proc/vmstat, read by the guest agent), QEMU's
query-balloon, and the policy's TABVM_BALLOON_DECISION events.
"""

from __future__ import annotations

import random
import re
import socket
import time
from pathlib import Path

import pytest

from glue.agent_client import AgentClient
from glue.balloon import (PRESSURE_SOCKET, PSI_MEMORY, BalloonBridge, PolicyLink,
                          PolicyLinkError, levels_from_spec, psi_usable)
from glue.host_events import HostEventServer, socket_path
from glue.host_events import request as host_event
from glue.profile import BALLOON_ID, POLICY_PATH, BalloonSetup, builtin_profile, scratch_image
from glue.qemu import Qemu, QemuError
from glue.runtime import new_runtime_dir

pytestmark = pytest.mark.e2e

MiB = 1 << 20
SPEC = levels_from_spec()
KEEP = {lv.name: lv.background_keep_mib * MiB for lv in SPEC.levels}
EVENT = SPEC.qapi_event
BALLOON_DEV = f"/machine/peripheral/{BALLOON_ID}"
# virtio_balloon feature bits (include/uapi/linux/virtio_balloon.h)
F_STATS_VQ, F_DEFLATE_ON_OOM, F_REPORTING = 1, 2, 5
VIRTIO_ID_BALLOON = 5


class Vm:
    """QEMU, its guest agent and the glue's balloon side, as `tabvm run` has them."""

    def __init__(self, q: Qemu, agent: AgentClient, bridge: BalloonBridge | None,
                 server: HostEventServer | None):
        self.q, self.agent, self.bridge, self.server = q, agent, bridge, server
        self.ram = q.cmd("query-memory-size-summary")["base-memory"]
        self.decisions: list[dict] = []

    def balloon(self) -> int:
        return self.ram - self.q.cmd("query-balloon")["actual"]

    def host(self, event: str, **fields) -> dict:
        reply = host_event(socket_path(self.q.rundir), {"event": event, **fields})
        assert reply.get("ok"), reply
        return reply

    def new_decisions(self) -> list[dict]:
        """Decision events QEMU sent since the last call, oldest first."""
        with self.q.lock:
            self.q.qmp.cmd_raw("query-status")      # read what is pending
            events = self.q.qmp.get_events()
            self.q.qmp.clear_events()
        got = [e["data"] for e in events if e["event"] == EVENT]
        self.decisions += got
        return got

    def wait_balloon(self, done, timeout: float, what: str) -> float:
        """Poll query-balloon until done(balloon); seconds it took."""
        t0 = time.monotonic()
        while True:
            b = self.balloon()
            if done(b):
                return time.monotonic() - t0
            if time.monotonic() - t0 > timeout:
                pytest.fail(f"{what}: balloon {b / MiB:.1f} MiB after {timeout} s; "
                            f"decisions {self.new_decisions()}")
            time.sleep(0.02)

    def wait_decision(self, match, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for d in self.new_decisions():
                if match(d):
                    return d
            time.sleep(0.05)
        pytest.fail(f"no matching decision within {timeout} s; seen {self.decisions}")

    def settle(self, quiet: float = 2.0, timeout: float = 20.0) -> int:
        """Wait until the balloon stops moving; its size."""
        t0 = time.monotonic()
        last, since = self.balloon(), time.monotonic()
        while time.monotonic() - t0 < timeout:
            time.sleep(0.1)
            b = self.balloon()
            if b != last:
                last, since = b, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return b
        return last


def boot(rundir, build_outputs, guest_image, memory: str, balloon: BalloonSetup,
         disk: bool) -> tuple[Qemu, AgentClient]:
    image = scratch_image(rundir / "scratch.img", 1 << 30) if disk else None
    config = builtin_profile(build_outputs, guest_image.vmlinux, guest_image.initrd, "tcg",
                             memory=memory, touch=False, balloon=balloon,
                             scratch_disk=image)
    q = Qemu(config, rundir).start()
    agent = AgentClient(str(q.agent_socket), connect_timeout=30)
    agent.wait_ready(timeout=180)
    return q, agent


@pytest.fixture(scope="module")
def vm(build_outputs, guest_image):
    rundir = new_runtime_dir("test-balloon")
    psi = PSI_MEMORY if psi_usable(SPEC) is None else None
    q, agent = boot(rundir, build_outputs, guest_image, "1G",
                    BalloonSetup(pressure_socket=rundir / PRESSURE_SOCKET, psi=psi,
                                 foreground=True), disk=True)
    bridge = BalloonBridge(PolicyLink(rundir / PRESSURE_SOCKET, connect_timeout=10.0), SPEC,
                           foreground=True, log=lambda *a, **k: None).start()
    server = HostEventServer(rundir, log=lambda *a, **k: None)
    bridge.register(server)
    server.start()
    try:
        yield Vm(q, agent, bridge, server)
    finally:
        server.stop()
        bridge.stop()
        agent.close()
        q.stop()


def features(agent: AgentClient, device_id: int) -> str:
    out = agent.sh("for d in /sys/bus/virtio/devices/*; do echo $(cat $d/device) "
                   "$(cat $d/features); done").output
    for line in out.splitlines():
        dev, bits = line.split()
        if int(dev, 16) == device_id:
            return bits
    pytest.fail(f"no virtio device {device_id} in {out!r}")


def fill_page_cache(agent: AgentClient, mib: int) -> None:
    """Read the scratch disk into the guest's page cache. A holder keeps /dev/vda
    open: Linux drops a block device's cache when its last user closes it."""
    r = agent.sh("sleep 100000 </dev/vda >/dev/null 2>&1 & "
                 f"dd if=/dev/vda of=/dev/null bs=1M count={mib} 2>&1", timeout=120)
    assert r.status == 0, r


def test_driver_negotiates_stats_deflate_on_oom_and_reporting(vm):
    bits = features(vm.agent, VIRTIO_ID_BALLOON)
    for bit in (F_STATS_VQ, F_DEFLATE_ON_OOM, F_REPORTING):
        assert bits[bit] == "1", (bit, bits)
    assert "virtio_balloon " in vm.agent.read("/proc/modules")
    # the policy set the balloon's statistics polling; the guest answers it
    assert vm.q.qom_get(BALLOON_DEV, "guest-stats-polling-interval") == SPEC.stats_interval_s
    deadline = time.monotonic() + 15
    while vm.q.qom_get(BALLOON_DEV, "guest-stats")["stats"]["stat-available-memory"] \
            == (1 << 64) - 1:
        assert time.monotonic() < deadline, "the guest sent no statistics"
        time.sleep(0.5)
    assert vm.q.qom_get(POLICY_PATH, "level") == "normal"
    assert vm.q.qom_get(POLICY_PATH, "foreground") is True
    assert vm.balloon() == 0                  # foreground: no balloon


def test_background_inflates_down_to_the_levels_keep(vm):
    fill_page_cache(vm.agent, 700)
    before = vm.agent.mem()
    assert before.buffers > 600 * MiB, before
    vm.new_decisions()
    t0 = time.monotonic()
    vm.host("background")
    d = vm.wait_decision(lambda d: not d["foreground"], timeout=3)
    assert d["reason"] == "host-pressure" and d["level"] == "normal"
    assert d["keep"] == KEEP["normal"]
    # the amount follows from what the policy saw: the surplus over keep
    surplus = d["guest-available"] - d["keep"]
    assert d["target"] - d["balloon"] == min(surplus, SPEC.inflate_max_mib * MiB)
    took = vm.wait_balloon(lambda b: abs(b - d["target"]) < MiB, 5, "background")
    assert time.monotonic() - t0 < 3.0, took
    vm.settle()
    after = vm.agent.mem()
    # the guest gave its page cache back, and keeps about what the level allows
    assert after.buffers < before.buffers - 100 * MiB
    assert abs(after.available - KEEP["normal"]) < 64 * MiB, after


def raise_pressure(vm: Vm, level: str) -> tuple[dict, float, int]:
    """Host pressure through the glue's host events; (the policy's decision,
    seconds from the event to the balloon reaching its target, what the guest
    reported as available just before)."""
    available = vm.agent.mem().available
    vm.new_decisions()
    t0 = time.monotonic()
    vm.host("pressure", level=level)
    d = vm.wait_decision(lambda d: d["level"] == level, timeout=2)
    vm.wait_balloon(lambda b: abs(b - d["target"]) < MiB, 8, f"{level} pressure")
    elapsed = time.monotonic() - t0
    assert d["reason"] == "host-pressure" and d["keep"] == KEEP[level]
    step = d["target"] - d["balloon"]
    assert step == min(d["guest-available"] - KEEP[level], SPEC.inflate_max_mib * MiB)
    # ... which agrees with what the guest itself reported just before
    assert abs(step - (available - KEEP[level])) < 48 * MiB, (step, available)
    assert vm.q.qom_get(POLICY_PATH, "level") == level
    vm.settle()
    return d, elapsed, available


def test_host_pressure_inflates_by_the_expected_amount_within_2s(vm):
    # background at normal left the guest 512 MiB available; moderate keeps 256:
    # a 256 MiB step, which the guest under TCG gives in well under 2 s
    d, elapsed, _ = raise_pressure(vm, "moderate")
    step = d["target"] - d["balloon"]
    print(f"moderate: {step / MiB:.0f} MiB in {elapsed:.2f} s")
    assert step > 200 * MiB
    assert elapsed <= 2.0, elapsed


def test_critical_pressure_takes_the_guest_down_to_its_floor(vm):
    d, elapsed, _ = raise_pressure(vm, "critical")
    # under TCG the guest inflates from page cache at roughly 150-190 MiB/s
    # (bench/balloon_reaction.py)
    assert elapsed < 5.0, elapsed
    assert abs(vm.agent.mem().available - KEEP["critical"]) < 48 * MiB


def test_guest_report_agrees_with_query_balloon(vm):
    vm.settle()
    qemu_balloon = vm.balloon()
    mem = vm.agent.mem()
    assert mem.balloon == qemu_balloon
    # deflate-on-oom: the driver leaves ballooned pages in MemTotal (counted used)
    assert abs(mem.total - vm.ram) < 128 * MiB
    assert qemu_balloon <= vm.ram - SPEC.min_size_mib * MiB


def test_guest_allocating_hard_gets_memory_back_without_oom(vm):
    ballooned = vm.settle()
    assert ballooned > 500 * MiB
    kills = vm.agent.mem().oom_kills
    vm.new_decisions()
    vm.agent.memhog(400)
    deadline = time.monotonic() + 120
    while not (stat := vm.agent.memhog_stat()).done:
        assert stat.alive, f"the guest killed the allocator: {stat}"
        assert time.monotonic() < deadline, stat
        time.sleep(0.5)
    stat = vm.agent.memhog_stat()
    assert stat.alive and stat.touched == 400 * MiB, stat
    assert vm.agent.mem().oom_kills == kills
    assert vm.balloon() < ballooned - 300 * MiB
    vm.new_decisions()
    reasons = {d["reason"] for d in vm.decisions}
    assert reasons & {"guest-pressure", "guest-need"}, vm.decisions
    console = vm.q.console_log.read_text(errors="replace")
    assert "Out of memory" not in console and "oom-kill" not in console


def test_foreground_deflates_completely(vm):
    vm.agent.memhog_stop()
    vm.new_decisions()
    vm.host("pressure", level="normal")
    vm.host("foreground")
    d = vm.wait_decision(lambda d: d["foreground"], timeout=3)
    assert d["reason"] == "foreground"
    # normal takes level_down_delay_s to count; then the foreground keeps everything
    vm.wait_balloon(lambda b: b == 0, SPEC.level_down_delay_s + 5, "foreground")
    assert vm.q.qom_get(POLICY_PATH, "level") == "normal"
    assert vm.agent.mem().balloon == 0


def test_bad_host_messages_change_nothing(vm):
    path = socket_path(vm.q.rundir)
    status = host_event(path, {"event": "status"})
    for bad in ({"event": "pressure", "level": "apocalyptic"},
                {"event": "pressure"}, {"event": "trim-memory", "level": "NOPE"},
                {"event": "no-such-event"}, {"event": "lmkd", "minfree": "x:y",
                                             "free_kib": 1}):
        reply = host_event(path, bad)
        assert reply["ok"] is False and reply["error"], (bad, reply)
    assert host_event(path, {"event": "status"})["level"] == status["level"]
    # what QEMU refuses reaches the glue as an error
    bad_before = vm.q.qom_get(POLICY_PATH, "bad-messages")
    for line in ("level nope", "foreground please"):
        with pytest.raises(PolicyLinkError, match="unknown"):
            vm.bridge.link.request(line)
    assert vm.q.qom_get(POLICY_PATH, "bad-messages") == bad_before + 2
    assert vm.bridge.link.query()["host_level"] == "normal"
    assert vm.q.alive()
    vm.agent.ping()


def hostile_pressure_socket(q: Qemu, path) -> None:
    """Bytes no host should send, straight to the policy's chardev: each bad line
    gets an error, nothing changes, and QEMU keeps serving."""
    bad_lines = [b"level nope\n", b"x" * 500 + b"\n", b"\x00\x01\x02\n",
                 b"\xff\xfe level critical\n", b"level \n", b"foreground please\n"]
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(str(path))
        f = sock.makefile("rb")
        for line in bad_lines:
            sock.sendall(line)
            assert f.readline().startswith(b"error: "), line
        # random bytes (each newline in them ends a bad line), then a good line
        sock.sendall(bytes(random.Random(6).randrange(256) for _ in range(20000)) + b"\n")
        sock.sendall(b"query\r\n")
        replies = []
        while not replies or not replies[-1].startswith(b"ok "):
            replies.append(f.readline())
            assert replies[-1], "QEMU closed the connection"
        assert all(r.startswith(b"error: ") for r in replies[:-1]), replies
        assert b"host-level=normal" in replies[-1]
        sock.sendall(b"level critica")          # half a line, then the host goes away
    assert q.qom_get(POLICY_PATH, "bad-messages") >= len(bad_lines)
    assert q.qom_get(POLICY_PATH, "host-level") == "normal"
    with socket.socket(socket.AF_UNIX) as sock:        # a new host starts afresh
        sock.settimeout(5)
        sock.connect(str(path))
        sock.sendall(b"l\nquery\n")
        f = sock.makefile("rb")
        assert f.readline().startswith(b"error: ")
        assert f.readline().startswith(b"ok level=normal host-level=normal")
    assert q.alive()


def test_without_deflate_on_oom_memtotal_shrinks_by_the_balloon(build_outputs, guest_image):
    """The other accounting: without deflate-on-oom the driver takes ballooned
    pages out of MemTotal. Foreground and pressure set over QMP alone."""
    rundir = new_runtime_dir("test-balloon-nodoom")
    q, agent = boot(rundir, build_outputs, guest_image, "512M",
                    BalloonSetup(pressure_socket=rundir / PRESSURE_SOCKET, foreground=True,
                                 deflate_on_oom=False), disk=False)
    try:
        hostile_pressure_socket(q, rundir / PRESSURE_SOCKET)
        vm = Vm(q, agent, None, None)
        assert features(agent, VIRTIO_ID_BALLOON)[F_DEFLATE_ON_OOM] == "0"
        total = agent.mem().total
        q.qom_set(POLICY_PATH, "host-level", "critical")
        q.qom_set(POLICY_PATH, "foreground", False)
        vm.wait_balloon(lambda b: b > 100 * MiB, 10, "QMP-driven inflation")
        balloon = vm.settle()
        mem = agent.mem()
        assert mem.balloon == balloon
        assert total - mem.total == balloon
        # the minimum guest size holds: 512 MiB - 256 MiB at most
        assert balloon <= vm.ram - SPEC.min_size_mib * MiB
        with pytest.raises(Exception, match="unknown level"):
            q.qom_set(POLICY_PATH, "host-level", "bogus")
    finally:
        agent.close()
        q.stop()


def refused_at_start(build_outputs, guest_image, balloon: BalloonSetup, message: str) -> None:
    """QEMU with this policy setup stops at start-up with ``message``."""
    config = builtin_profile(build_outputs, guest_image.vmlinux, guest_image.initrd, "tcg",
                             touch=False, balloon=balloon)
    q = Qemu(config, new_runtime_dir("test-balloon-refused"))
    try:
        with pytest.raises(QemuError, match=re.escape(message)):
            q.start()
    finally:
        q.stop()


@pytest.mark.parametrize("psi, message", [
    ("/nonexistent/pressure", "cannot read /nonexistent/pressure"),
    ("/dev/null", "/dev/null is not a Linux pressure (PSI) file"),
    ("/proc/meminfo", "/proc/meminfo is not a Linux pressure (PSI) file"),
])
def test_psi_that_cannot_work_is_a_clear_error(build_outputs, guest_image, psi, message):
    refused_at_start(build_outputs, guest_image, BalloonSetup(psi=Path(psi)), message)


def test_psi_triggers_as_the_kernel_takes_them(build_outputs, guest_image):
    """Where the kernel accepts the spec's triggers QEMU starts with them; where
    it refuses them (this machine's kernel does, even for root) QEMU says so
    and the glue knew beforehand (glue.balloon.psi_usable), so `tabvm run` goes
    without PSI instead of failing."""
    why = psi_usable(SPEC)
    rundir = new_runtime_dir("test-balloon-psi")
    config = builtin_profile(build_outputs, guest_image.vmlinux, guest_image.initrd, "tcg",
                             touch=False, balloon=BalloonSetup(psi=Path(PSI_MEMORY)))
    if why is None:
        with Qemu(config, rundir) as q:
            assert q.qom_get(POLICY_PATH, "psi") == PSI_MEMORY
    else:
        q = Qemu(config, rundir)
        try:
            with pytest.raises(QemuError, match="cannot set the PSI trigger"):
                q.start()
        finally:
            q.stop()


@pytest.mark.parametrize("props, message", [
    ((("interval", 5),), "interval must be 100 to 60000 ms"),
    ((("min-size", "4G"),), "min-size 4096 MiB is not below the guest's RAM (512 MiB)"),
    ((("balloon", "nosuch"),), "balloon 'nosuch' is not a virtio-balloon device"),
    ((("balloon", "battery"),), "balloon 'battery' is not a virtio-balloon device"),
    ((("host-level", "dire"),), "unknown level 'dire'"),
    ((("chardev", "nosuch"),), "chardev 'nosuch' not found"),
    ((("bogus", 1),), "Invalid parameter 'bogus'"),
])
def test_bad_policy_options_are_clear_errors(build_outputs, guest_image, props, message):
    refused_at_start(build_outputs, guest_image, BalloonSetup(props=props), message)
