"""`tabvm run PROFILE` as a separate process, the way the host app runs the glue:
start it, send host events, reach its guest agent, kill it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from glue.agent_client import AgentClient, AgentError
from glue.host_events import request, socket_path
from glue.journal import Journal
from glue.runtime import runtime_base
from glue.session import wait_exited
from tabvm.paths import REPO

MOUNT = ("mkdir -p /mnt/disk && (grep -q ' /mnt/disk ' /proc/mounts || "
         "mount -t ext4 /dev/vda /mnt/disk)")


def write_profile(directory: Path, name: str, devices: str | None = None,
                  **snapshot: object) -> Path:
    """A profile of the test guest with a disk, the battery and the balloon;
    ``devices`` (YAML, the body of the ``devices:`` section) replaces the battery
    and the balloon."""
    snap = {"suspend_after_background_s": None, "suspend_on_trim": "MODERATE",
            "restart_on_crash": True, **snapshot}
    if devices is None:
        device_lines = ["  battery: {source: simulated}", "  balloon: {}"]
    else:
        device_lines = ["  " + line for line in textwrap.dedent(devices).splitlines()
                        if line.strip()]
    lines = [f"name: {name}", "memory_mib: 512", "accel: tcg",
             "disk: {base: builtin}",
             "devices:", *device_lines,
             "snapshot:"] + [f"  {k}: {json.dumps(v)}" for k, v in snap.items()] + [
             f"state_dir: {directory / 'state'}"]
    path = directory / f"{name}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


class Glue:
    def __init__(self, profile: Path, name: str, builddir: Path, state_dir: Path,
                 stall: str | None = None, stall_seconds: float = 60,
                 extra_args: tuple[str, ...] = (), interval: float = 5):
        self.profile, self.name, self.state_dir = profile, name, state_dir
        self.rundir = runtime_base() / name
        self.log = state_dir.parent / f"glue-{time.monotonic_ns()}.log"
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        if stall:
            env.update(TABVM_STALL_AT=stall, TABVM_STALL_SECONDS=str(stall_seconds))
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tabvm.cli", "run", str(profile), "--builddir",
                 str(builddir), "--interval", str(interval), *extra_args], stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, env=env, start_new_session=True)

    def text(self) -> str:
        return self.log.read_text()

    def wait_log(self, pattern: str, timeout: float = 60, after: int = 0) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(pattern, self.text()[after:])
            if m:
                return m
            if self.proc.poll() is not None:
                raise AssertionError(f"the glue exited ({self.proc.returncode}) before "
                                     f"{pattern!r}:\n{self.text()}")
            time.sleep(0.05)
        raise AssertionError(f"no {pattern!r} within {timeout} s:\n{self.text()}")

    def running(self, timeout: float = 120, after: int = 0) -> str:
        """Wait for the VM to run; the source it started from."""
        return self.wait_log(r"step=running source=(\w+)", timeout, after).group(1)

    def event(self, event: str, timeout: float = 120, **fields) -> dict:
        return request(socket_path(self.rundir), {"event": event, **fields}, timeout)

    def agent(self, ready_timeout: float = 180) -> AgentClient:
        agent = AgentClient(str(self.rundir / "agent.sock"), connect_timeout=30)
        agent.wait_ready(timeout=ready_timeout)
        return agent

    def qemu_pid(self) -> int:
        return int((self.state_dir / "qemu.pid").read_text())

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def kill_qemu(self) -> int:
        pid = self.qemu_pid()
        os.kill(pid, signal.SIGKILL)
        return pid

    def shutdown(self, timeout: float = 60) -> int:
        reply = self.event("shutdown")
        assert reply["ok"], reply
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.kill()

    def journal(self):
        return Journal(self.state_dir).load()


def wait_gone(pid: int, timeout: float = 10) -> None:
    if not wait_exited(pid, timeout):
        raise AssertionError(f"process {pid} still there after {timeout} s")


def put_markers(agent: AgentClient, marker: str) -> None:
    """One in guest RAM (the running agent holds it), one in a file on the disk
    (synced: the guest's flush reaches the qcow2 overlay)."""
    agent.hold("marker", marker)
    out = agent.sh(f"{MOUNT} && echo {marker} > /mnt/disk/marker && sync && "
                   "cat /mnt/disk/marker")
    assert out.output.strip() == marker, out


def ram_marker(agent: AgentClient) -> str | None:
    try:
        return agent.recall("marker") or None
    except AgentError:
        return None


def disk_marker(agent: AgentClient) -> str:
    return agent.sh(f"{MOUNT} && cat /mnt/disk/marker").output.strip()
