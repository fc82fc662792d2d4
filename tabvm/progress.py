"""Progress lines for long steps (downloads, the QEMU build)."""

from __future__ import annotations

import sys
import time


def say(message: str) -> None:
    print(f"tabvm: {message}", file=sys.stderr, flush=True)


class Ticker:
    """Prints ``label: N/M`` at most every ``interval`` seconds (and at the end)."""

    def __init__(self, label: str, total: int | None = None, interval: float = 2.0):
        self.label, self.total, self.interval = label, total, interval
        self.last = 0.0

    def update(self, done: int, total: int | None = None, force: bool = False) -> None:
        total = total if total is not None else self.total
        now = time.monotonic()
        if not force and now - self.last < self.interval:
            return
        self.last = now
        if total:
            say(f"{self.label}: {done}/{total} ({100 * done // total}%)")
        else:
            say(f"{self.label}: {done}")
