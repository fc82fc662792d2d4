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


def _wait_migration(q: Qemu, timeout: float, what: str) -> None:
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


def suspend(q: Qemu, state: Path, timeout: float = 30.0) -> float:
    """Stop the guest, save its device state to ``state`` (RAM stays in its
    file) and quit QEMU; seconds it took. The state is written to a temporary
    name and renamed into place only once complete."""
    t0 = time.monotonic()
    partial = state.with_name(state.name + ".partial")
    partial.unlink(missing_ok=True)
    q.cmd("migrate-set-capabilities", capabilities=IGNORE_SHARED)
    q.cmd("stop")
    q.cmd("migrate", uri=f"file:{partial}")
    _wait_migration(q, timeout, "suspend")
    partial.rename(state)
    q.stop()
    return time.monotonic() - t0


def resume_config(config: VmConfig) -> VmConfig:
    """``config`` started to wait for its state (``-incoming defer``)."""
    return dataclasses.replace(config, extra=config.extra + ("-incoming", "defer"))


def resume(config: VmConfig, rundir: Path, state: Path, timeout: float = 30.0) -> Qemu:
    """Start QEMU on the RAM file of ``config`` (a FileRam config), load the
    device state from ``state`` and let the guest run; the running Qemu."""
    if not state.exists():
        raise SnapshotError(f"no saved state at {state}")
    q = Qemu(resume_config(config), rundir).start()
    try:
        q.cmd("migrate-set-capabilities", capabilities=IGNORE_SHARED)
        q.cmd("migrate-incoming", uri=f"file:{state}")
        _wait_migration(q, timeout, "resume")
        q.cmd("cont")
    except (QemuError, SnapshotError):
        q.stop()
        raise
    return q
