"""``tabvm ctl RUNDIR EVENT [key=value ...]``: send one event to a running VM's
host-event socket (RUNDIR/host-events.sock) and print the reply.

Values: integers become JSON numbers, true/false booleans, anything else a string.
Exit status: 0 for an ok reply, 1 for an error reply (or no reply), 2 when the
socket cannot be reached (no VM with that runtime directory) or for bad usage.

    tabvm ctl /run/user/1000/tabvm/vm-abc123 background
    tabvm ctl /run/user/1000/tabvm/vm-abc123 pressure level=low
    tabvm ctl /run/user/1000/tabvm/vm-abc123 memory-info avail=300000000 \\
        threshold=226492416 total=3900000000 low=false
"""

from __future__ import annotations

import argparse
import json
import re
import stat
import sys
from pathlib import Path
from typing import Any

from .host_events import request, socket_path

EXIT_OK, EXIT_ERROR_REPLY, EXIT_UNREACHABLE = 0, 1, 2


def add_ctl_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("rundir", type=Path,
                   help="the VM's runtime directory (`tabvm run` logs it as rundir=), "
                   "or its host-events.sock")
    p.add_argument("event", help="foreground, background, pressure, trim-memory, "
                   "memory-info, lmkd, status, ...")
    p.add_argument("fields", nargs="*", metavar="key=value",
                   help="the event's fields (integers and true/false are typed)")
    p.add_argument("--timeout", type=float, default=10.0,
                   help="seconds to wait for the reply")


def parse_value(text: str) -> Any:
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    if text in ("true", "false"):
        return text == "true"
    if text.startswith(("[", "{")):          # a list or an object: JSON
        try:
            return json.loads(text)
        except ValueError:
            raise ValueError(f"{text[:60]!r} is not JSON") from None
    return text


def parse_fields(items: list[str]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ValueError(f"{item!r} is not key=value")
        if key == "event" or key in fields:
            raise ValueError(f"field {key!r} given twice" if key in fields
                             else "'event' is not a field (it is the EVENT argument)")
        fields[key] = parse_value(value)
    return fields


def _socket(rundir: Path) -> Path:
    try:
        if stat.S_ISSOCK(rundir.stat().st_mode):
            return rundir
    except OSError:
        pass
    return socket_path(rundir)


def cmd_ctl(args: argparse.Namespace) -> int:
    try:
        fields = parse_fields(args.fields)
    except ValueError as exc:
        print(f"tabvm ctl: error: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    path = _socket(args.rundir)
    if not path.exists():
        print(f"tabvm ctl: error: {path}: no such socket (is a VM running with runtime "
              f"directory {args.rundir}? `tabvm run` logs it as rundir=)", file=sys.stderr)
        return EXIT_UNREACHABLE
    try:
        reply = request(path, {"event": args.event, **fields}, timeout=args.timeout)
    except (FileNotFoundError, ConnectionRefusedError, PermissionError) as exc:
        print(f"tabvm ctl: error: cannot connect to {path}: {exc.strerror or exc} "
              "(the VM is not running?)", file=sys.stderr)
        return EXIT_UNREACHABLE
    except TimeoutError:
        print(f"tabvm ctl: error: no reply from {path} within {args.timeout} s",
              file=sys.stderr)
        return EXIT_ERROR_REPLY
    except (OSError, ValueError) as exc:
        print(f"tabvm ctl: error: {path}: {exc}", file=sys.stderr)
        return EXIT_ERROR_REPLY
    print(json.dumps(reply, sort_keys=True))
    if reply.get("ok") is True:
        return EXIT_OK
    print(f"tabvm ctl: error: {reply.get('error', 'error reply')}", file=sys.stderr)
    return EXIT_ERROR_REPLY
