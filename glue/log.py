"""The glue's log line: ``tabvm: EVENT key=value ...`` on stderr, one per step."""

from __future__ import annotations

import sys


def log_line(event: str, **fields: object) -> None:
    items = " ".join(f"{k}={v}" for k, v in fields.items())
    print(f"tabvm: {event} {items}".rstrip(), file=sys.stderr, flush=True)
