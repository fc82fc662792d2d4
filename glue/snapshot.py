"""Suspend and resume a VM whose RAM lives in a file.

Guest RAM is a ``memory-backend-file`` with ``share=on``: every guest write goes
to the file, so suspending saves only the device state (migration to a file
with ``x-ignore-shared``: a few hundred KB) and resuming starts a new QEMU on the
same RAM file with ``-incoming defer`` and loads that state. The file stays
writable (not a read-only template), so virtio-balloon can still discard pages
from it (fallocate punch-hole) after a resume.

This is the core of the lifecycle (issue 7); the journal, the golden template
and the host-event driven states build on it.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .qemu import Qemu, QemuError, VmConfig

RAM_BACKEND_ID = "ram"
IGNORE_SHARED = [{"capability": "x-ignore-shared", "state": True}]


class SnapshotError(RuntimeError):
    pass


@dataclass(frozen=True)
class FileRam:
    """Guest RAM in ``path`` (created by QEMU at ``size`` bytes if missing)."""

    path: Path
    size: int

    def apply(self, config: VmConfig) -> VmConfig:
        """``config`` with its RAM in the file (``-m`` must match ``size``)."""
        return dataclasses.replace(config, memory=f"{self.size}B", extra=config.extra + (
            "-object", f"memory-backend-file,id={RAM_BACKEND_ID},size={self.size},"
                       f"mem-path={self.path},share=on",
            "-machine", f"memory-backend={RAM_BACKEND_ID}"))


def wait_migration(q: Qemu, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        info = q.cmd("query-migrate")
        status = info.get("status")
        if status == "completed":
            return
        if status in ("failed", "cancelled"):
            raise SnapshotError(f"{what}: migration {status}: "
                                f"{info.get('error-desc', 'no reason given')}")
        if time.monotonic() > deadline:
            raise SnapshotError(f"{what}: migration still {status} after {timeout} s")
        time.sleep(0.002)


def save(q: Qemu, state: Path, timeout: float = 30.0,
         stopped: Callable[[], None] = lambda: None) -> None:
    """Stop the guest (QEMU flushes its disks) and save its device state to
    ``state`` (RAM stays in its file); ``stopped`` runs once the guest is
    stopped. The state is written to a temporary name and renamed into place
    only once complete."""
    partial = state.with_name(state.name + ".partial")
    partial.unlink(missing_ok=True)
    q.cmd("migrate-set-capabilities", capabilities=IGNORE_SHARED)
    q.cmd("stop")
    stopped()
    q.cmd("migrate", uri=f"file:{partial}")
    wait_migration(q, timeout, "suspend")
    partial.rename(state)


def suspend(q: Qemu, state: Path, timeout: float = 30.0) -> float:
    """``save`` and quit QEMU; seconds it took."""
    t0 = time.monotonic()
    save(q, state, timeout)
    q.stop()
    return time.monotonic() - t0


def resume_config(config: VmConfig) -> VmConfig:
    """``config`` started to wait for its state (``-incoming defer``)."""
    return dataclasses.replace(config, extra=config.extra + ("-incoming", "defer"))


def load(config: VmConfig, rundir: Path, state: Path, timeout: float = 30.0,
         die_with_parent: bool = False) -> Qemu:
    """Start QEMU on the RAM file of ``config`` (a FileRam config) and load the
    device state from ``state``; the guest stays paused (``cont`` runs it)."""
    if not state.exists():
        raise SnapshotError(f"no saved state at {state}")
    q = Qemu(resume_config(config), rundir, die_with_parent=die_with_parent).start()
    try:
        q.cmd("migrate-set-capabilities", capabilities=IGNORE_SHARED)
        q.cmd("migrate-incoming", uri=f"file:{state}")
        wait_migration(q, timeout, "resume")
    except (QemuError, SnapshotError, OSError):
        q.stop()
        raise
    return q


def resume(config: VmConfig, rundir: Path, state: Path, timeout: float = 30.0) -> Qemu:
    """``load`` and let the guest run; the running Qemu."""
    q = load(config, rundir, state, timeout)
    try:
        q.cmd("cont")
    except QemuError:
        q.stop()
        raise
    return q
