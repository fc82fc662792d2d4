"""Pick the accelerator: KVM when it really runs our guests, else TCG.

``/dev/kvm`` existing is not enough: some hosts (e.g. PVM-flavoured KVM) open it and
create VMs, yet cannot run an ordinary guest kernel. ``auto`` therefore boots the
test guest once under KVM and keeps the verdict for this host boot (keyed by
``/proc/sys/kernel/random/boot_id``) in the cache; if the probe fails, TCG.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

from tabvm.paths import cache_subdir

VERDICT_FILE = "kvm-verdict"


def kvm_openable() -> bool:
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    os.close(fd)
    return True


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def select_accel(wanted: str, probe: Callable[[], bool] | None = None) -> str:
    """``wanted`` is tcg, kvm or auto; ``probe`` boots a guest under KVM."""
    if wanted in ("tcg", "kvm"):
        return wanted
    if wanted != "auto":
        raise ValueError(f"unknown accelerator {wanted!r} (tcg, kvm or auto)")
    if not kvm_openable() or probe is None:
        return "tcg"
    verdict = cache_subdir("accel") / VERDICT_FILE
    key = _boot_id()
    if verdict.exists():
        saved_key, _, saved = verdict.read_text().partition(" ")
        if saved_key == key:
            return saved.strip()
    chosen = "kvm" if probe() else "tcg"
    verdict.write_text(f"{key} {chosen}\n")
    return chosen


def wait_for_console(path: Path, marker: str, timeout: float,
                     alive: Callable[[], bool]) -> bool:
    """True once ``marker`` shows in the console log; False on timeout or exit."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive():
        try:
            if marker in path.read_text(errors="replace"):
                return True
        except FileNotFoundError:
            pass
        time.sleep(0.1)
    return False
