"""Real host memory pressure: QEMU and a host app share a memory cgroup.

The seed experiment on a real kernel instead of a model: the VM (1 GiB guest,
its page cache full) is in the background, and a host app in the same memory
cgroup allocates 500 MiB at 100 MiB/s. The cgroup's limit leaves room for the
app only if the VM gives memory back. The glue's Linux adapter reads the
cgroup (the limit is what kills, as an Android app's memcg) and feeds the policy.

- without the policy (no balloon): the kernel's OOM killer kills QEMU;
- with it: the balloon inflates, QEMU's RSS drops, the app gets its memory and
  QEMU lives.

Where no memory cgroup can be made, the test is skipped with the reason (the
machine's figures then come from bench/balloon_reaction.py and the trace
replays of tests/test_balloon_policy.py).
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time

import pytest

from glue.agent_client import AgentClient
from glue.balloon import (PRESSURE_SOCKET, BalloonBridge, LinuxHostAdapter, PolicyLink,
                          cgroup_meminfo, levels_from_spec)
from glue.profile import BalloonSetup, builtin_profile, scratch_image
from glue.qemu import Qemu
from glue.runtime import new_runtime_dir
from glue.session import rss_kib
from memcg import CgroupUnavailable, MemoryCgroup
from test_balloon_e2e import fill_page_cache

pytestmark = pytest.mark.e2e

MiB = 1 << 20
SPEC = levels_from_spec()
APP_MIB, APP_RATE = 500, 100          # the host app (the seed's 500 MB): MiB, MiB/s
HEADROOM = 200 * MiB                  # limit = the cgroup's non-cache usage + this

ALLOCATOR = r"""
import mmap, sys, time
mib, rate, progress = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
chunks = []
t0 = time.monotonic()
for i in range(mib):
    m = mmap.mmap(-1, 1 << 20)
    for off in range(0, 1 << 20, 4096):
        m[off] = 1 + (i & 0x7f)
    chunks.append(m)
    with open(progress, "w") as f:
        f.write(str(i + 1))
    time.sleep(max(0.0, t0 + (i + 1) / rate - time.monotonic()))
time.sleep(3600)
"""


def rss(pid: int) -> int:
    """Bytes resident; 0 for a process with none (exiting)."""
    return (rss_kib(pid) or 0) * 1024


@dataclasses.dataclass
class Outcome:
    qemu_killed: bool
    oom_kills: int
    app_mib: int                     # what the app got
    qemu_rss_before: int
    qemu_rss_min: int
    balloon: int                     # the balloon at the end (bytes)


def run_experiment(build_outputs, guest_image, policy: bool) -> Outcome:
    try:
        cg = MemoryCgroup.create("tabvm-memcg", 8 << 30)
    except CgroupUnavailable as exc:
        pytest.skip(f"no memory cgroup can be made here: {exc}")
    rundir = new_runtime_dir("test-memcg")
    try:
        # QEMU starts inside the cgroup, so all its memory is charged there
        wrapper = rundir / "qemu-in-cgroup"
        wrapper.write_text(f"#!/bin/sh\necho $$ > {cg.path}/cgroup.procs && "
                           f"exec {build_outputs.qemu} \"$@\"\n")
        wrapper.chmod(0o755)
        balloon = BalloonSetup(pressure_socket=rundir / PRESSURE_SOCKET, foreground=True) \
            if policy else None
        config = builtin_profile(build_outputs, guest_image.vmlinux, guest_image.initrd,
                                 "tcg", memory="1G", touch=False, balloon=balloon,
                                 scratch_disk=scratch_image(rundir / "scratch.img", 1 << 30))
        config = dataclasses.replace(config, qemu=wrapper)
        with Qemu(config, rundir) as q:
            agent = AgentClient(str(q.agent_socket), connect_timeout=30)
            agent.wait_ready(timeout=180)
            fill_page_cache(agent, 700)
            bridge = None
            if policy:
                bridge = BalloonBridge(PolicyLink(rundir / PRESSURE_SOCKET), SPEC,
                                       linux=LinuxHostAdapter(SPEC, cgroup=cg.path),
                                       foreground=True, interval=0.2,
                                       log=lambda *a, **k: None)
            try:
                pid = q.proc.pid
                assert pid in cg.pids()
                if bridge is not None:
                    # the user leaves the VM; its guest page cache goes first
                    bridge.set_foreground(False)
                time.sleep(4)
                before = rss(pid)
                # the host is now tight: the app fits only if the VM gives memory
                # back (the host page cache QEMU's disk reads left is no room)
                cg.set_limit(cg.usage - cg.file_cache + HEADROOM)
                if bridge is not None:
                    bridge.start()
                progress = rundir / "app-progress"
                app = subprocess.Popen(
                    ["sh", "-c", f'echo $$ > {cg.path}/cgroup.procs && exec "$0" "$@"',
                     sys.executable, "-c", ALLOCATOR, str(APP_MIB), str(APP_RATE),
                     str(progress)])
                rss_min = before
                deadline = time.monotonic() + APP_MIB / APP_RATE + 20
                try:
                    while time.monotonic() < deadline and q.alive() and app.poll() is None:
                        got = int(progress.read_text() or 0) if progress.exists() else 0
                        rss_min = min(rss_min, rss(pid) or rss_min)
                        if got >= APP_MIB:
                            break
                        time.sleep(0.1)
                    got = int(progress.read_text() or 0) if progress.exists() else 0
                    killed = not q.alive()
                    balloon_now = 0
                    if not killed:
                        ram = q.cmd("query-memory-size-summary")["base-memory"]
                        balloon_now = ram - q.cmd("query-balloon")["actual"] if policy else 0
                    return Outcome(killed, cg.oom_kills, got, before, rss_min, balloon_now)
                finally:
                    app.kill()
                    app.wait()
            finally:
                if bridge is not None:
                    bridge.stop()
                agent.close()
    finally:
        for pid in cg.pids():
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        cg.remove()


def test_without_the_policy_the_kernel_kills_qemu(build_outputs, guest_image):
    out = run_experiment(build_outputs, guest_image, policy=False)
    print(out)
    assert out.qemu_killed and out.oom_kills >= 1, out


def test_with_the_policy_qemu_survives_and_the_app_gets_its_memory(build_outputs,
                                                                   guest_image):
    out = run_experiment(build_outputs, guest_image, policy=True)
    print(out)
    assert not out.qemu_killed, out
    assert out.app_mib == APP_MIB, out
    assert out.qemu_rss_before - out.qemu_rss_min > (APP_MIB * MiB - HEADROOM) * 0.8, out
    assert out.balloon > 300 * MiB, out


def test_cgroup_meminfo_follows_usage(tmp_path):
    """The adapter's view of a cgroup (v1 and v2 file names), from fake files."""
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "memory.max").write_text("1073741824\n")
    (v2 / "memory.current").write_text(str(900 * MiB))
    (v2 / "memory.stat").write_text(f"anon 1\ninactive_file {50 * MiB}\n")
    assert cgroup_meminfo(v2) == {"MemTotal": 1 << 20, "MemFree": 124 * 1024,
                                  "MemAvailable": 174 * 1024}
    v1 = tmp_path / "v1"
    v1.mkdir()
    (v1 / "memory.limit_in_bytes").write_text(str(512 * MiB))
    (v1 / "memory.usage_in_bytes").write_text(str(600 * MiB))
    (v1 / "memory.stat").write_text(f"total_inactive_file {10 * MiB}\n")
    assert cgroup_meminfo(v1)["MemAvailable"] == 10 * 1024
    (v1 / "memory.limit_in_bytes").write_text(str(1 << 62))
    with pytest.raises(ValueError, match="no memory limit"):
        cgroup_meminfo(v1)
    (v2 / "memory.stat").write_text("garbage\n")
    with pytest.raises(ValueError, match="memory.stat"):
        cgroup_meminfo(v2)
