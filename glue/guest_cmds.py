"""``tabvm exec`` and ``tabvm screenshot``: reach a running VM's guest.

Both find the VM through its glue (``tabvm run``): the profile names the
runtime directory, whose host-event socket answers with the lifecycle's state.

- ``tabvm exec [PROFILE] -- CMD ARGS...`` runs a command in the guest through
  qemu-guest-agent (glue.guest_agent), prints its output and exits with its
  status (128 + N for a signal N). The glue first says whether the guest has the
  agent's virtio-serial port open, so a guest without the agent is a one-line
  error at once, not a wait.
- ``tabvm screenshot [PROFILE] FILE.png`` writes the guest's screen as PNG
  (QMP ``screendump``, taken by the glue).

PROFILE is a profile file, the name of a running VM's profile, or the name of
one in profiles/; without it, the one VM that runs is meant. Every failure is one line on
stderr and a non-zero exit: 2 when there is no such profile or no running VM,
1 when the VM or its guest cannot do it, 124 when the command timed out.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from generator.errors import SpecErrors

from .guest_agent import GuestAgent, GuestAgentError
from .host_events import request, socket_path
from .profile_spec import find_profile, load_profile
from .runtime import runtime_base

EXIT_FAILED, EXIT_NO_VM, EXIT_TIMEOUT = 1, 2, 124


class CommandError(RuntimeError):
    def __init__(self, message: str, status: int = EXIT_FAILED):
        super().__init__(message)
        self.status = status


def add_exec_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--timeout", type=float, default=None,
                   help="give up on the command after this many seconds (exit 124)")
    p.add_argument("--wait", type=float, default=0.0,
                   help="wait up to this many seconds for the guest's agent (a booting guest)")
    p.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                   help="set an environment variable for the command (repeatable)")
    p.add_argument("--stdin", action="store_true",
                   help="send this command's standard input to the guest command")
    p.add_argument("rest", nargs=argparse.REMAINDER, metavar="[PROFILE] -- CMD ARGS...",
                   help="the profile (a YAML file or a name in profiles/; default: the "
                   "one running VM), then -- and the command")


def add_screenshot_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("args", nargs="+", metavar="[PROFILE] FILE.png",
                   help="the profile (default: the one running VM) and the PNG to write")


def _split_exec(rest: list[str]) -> tuple[str | None, list[str]]:
    if "--" not in rest:
        raise CommandError("usage: tabvm exec [PROFILE] -- CMD ARGS... (the -- is needed)",
                           EXIT_NO_VM)
    at = rest.index("--")
    before, command = rest[:at], rest[at + 1:]
    if len(before) > 1:
        raise CommandError(f"one profile before --, not {len(before)}: {' '.join(before)}",
                           EXIT_NO_VM)
    if not command:
        raise CommandError("no command after --", EXIT_NO_VM)
    return (before[0] if before else None), command


def vm_rundir(profile: str | None) -> tuple[str, Path]:
    """(profile name, runtime directory) of the VM meant; CommandError if none runs."""
    base = runtime_base()
    if profile is None:
        running = sorted(d.name for d in base.glob("*") if _answers(socket_path(d)))
        if len(running) == 1:
            return running[0], base / running[0]
        if not running:
            raise CommandError("no VM is running (start one with `tabvm run PROFILE`)",
                               EXIT_NO_VM)
        raise CommandError(f"{len(running)} VMs are running ({', '.join(running)}): "
                           "name the profile", EXIT_NO_VM)
    if "/" not in profile and not profile.endswith((".yaml", ".yml")) \
            and _answers(socket_path(base / profile)):
        return profile, base / profile          # a running VM's profile name
    try:
        name = load_profile(find_profile(profile)).name
    except ValueError as exc:
        raise CommandError(str(exc), EXIT_NO_VM) from None
    except SpecErrors as exc:
        raise CommandError(f"{exc.errors[0]}" + (f" (and {len(exc.errors) - 1} more errors)"
                                                 if len(exc.errors) > 1 else ""),
                           EXIT_NO_VM) from None
    rundir = base / name
    if not _answers(socket_path(rundir)):
        raise CommandError(f"the VM of profile {name} is not running (start it with "
                           f"`tabvm run {profile}`)", EXIT_NO_VM)
    return name, rundir


def _answers(sock: Path) -> bool:
    if not sock.exists():
        return False
    try:
        request(sock, {"event": "status"}, timeout=5)
    except (OSError, ValueError):
        return False
    return True


def _event(rundir: Path, name: str, event: dict[str, Any], timeout: float = 30) -> dict[str, Any]:
    try:
        reply = request(socket_path(rundir), event, timeout=timeout)
    except (OSError, ValueError) as exc:
        raise CommandError(f"the VM of profile {name} does not answer: {exc}",
                           EXIT_NO_VM) from None
    if not reply.get("ok"):
        raise CommandError(f"profile {name}: {reply.get('error', 'refused')}")
    return reply


def _agent_socket(name: str, rundir: Path, wait: float) -> Path:
    """The qemu-guest-agent socket once the guest has the agent's port open."""
    deadline = time.monotonic() + wait
    while True:
        st = _event(rundir, name, {"event": "guest-agent"})
        if st.get("agent") != "qemu-ga":
            raise CommandError(f"profile {name}'s guest has no qemu-guest-agent channel "
                               f"(guest.agent: {st.get('agent')})")
        if st.get("state") != "running":
            raise CommandError(f"the VM of profile {name} is {st.get('state')} (send it "
                               f"`foreground` or `resume`: tabvm ctl {rundir} foreground)")
        if st.get("open"):
            return Path(st["socket"])
        if time.monotonic() >= deadline:
            raise CommandError(
                "qemu-guest-agent is not running in the guest (its virtio-serial port "
                "org.qemu.guest_agent.0 is closed): install Debian's qemu-guest-agent in "
                "the guest" + (", or give a booting guest time with --wait SECONDS"
                               if wait == 0 else f" (waited {wait:g} s)"))
        time.sleep(0.5)


def cmd_exec(args: argparse.Namespace) -> int:
    try:
        profile, command = _split_exec(args.rest)
        for item in args.env:
            if "=" not in item or item.startswith("="):
                raise CommandError(f"--env {item!r} is not NAME=VALUE", EXIT_NO_VM)
        name, rundir = vm_rundir(profile)
        sock = _agent_socket(name, rundir, args.wait)
        stdin = sys.stdin.buffer.read() if args.stdin else None
        try:
            with GuestAgent(sock) as agent:
                result = agent.exec(command, env=args.env, stdin=stdin, timeout=args.timeout)
        except GuestAgentError as exc:
            status = EXIT_TIMEOUT if "still running after" in str(exc) else EXIT_FAILED
            raise CommandError(str(exc), status) from None
    except CommandError as exc:
        print(f"tabvm: error: {exc}", file=sys.stderr)
        return exc.status
    sys.stdout.buffer.write(result.stdout)
    sys.stdout.flush()
    sys.stderr.buffer.write(result.stderr)
    if result.truncated:
        print("tabvm: warning: the guest agent truncated the output", file=sys.stderr)
    sys.stderr.flush()
    return result.status


def take_screenshot(rundir: Path, name: str, out: Path) -> dict[str, Any]:
    """The guest's screen into ``out`` (PNG, written through a temporary name)."""
    reply = _event(rundir, name, {"event": "screenshot"})
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        shutil.move(reply["path"], tmp)
        tmp.replace(out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise CommandError(f"cannot write {out}: {exc.strerror or exc}") from None
    return reply


def cmd_screenshot(args: argparse.Namespace) -> int:
    try:
        if len(args.args) > 2:
            raise CommandError("usage: tabvm screenshot [PROFILE] FILE.png", EXIT_NO_VM)
        profile, out = (None, args.args[0]) if len(args.args) == 1 else args.args
        out = Path(out)
        if out.suffix.lower() != ".png":
            raise CommandError(f"{out}: the screenshot is a PNG: name it FILE.png", EXIT_NO_VM)
        if not out.parent.is_dir():
            raise CommandError(f"{out.parent}: no such directory", EXIT_NO_VM)
        name, rundir = vm_rundir(profile)
        take_screenshot(rundir, name, out)
    except CommandError as exc:
        print(f"tabvm: error: {exc}", file=sys.stderr)
        return exc.status
    print(out)
    return 0


def add_view_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("profile", nargs="?", default=None, metavar="PROFILE",
                   help="the profile (default: the one running VM)")
    p.add_argument("--port", type=int, default=0,
                   help="listen on this port of 127.0.0.1 (default: a free one)")
    p.add_argument("--url-file", type=Path, default=None,
                   help="also write the URL to this file (0600), for a program that "
                   "opens it")


def cmd_view(args: argparse.Namespace) -> int:
    """``tabvm view [PROFILE]``: serve the viewer page until Ctrl-C or SIGTERM."""
    import asyncio
    import os
    import signal

    from .viewer import Viewer, ViewerError, serve_until_stopped

    try:
        if not 0 <= args.port <= 65535:
            raise CommandError(f"--port {args.port}: a port is 0..65535", EXIT_NO_VM)
        name, rundir = vm_rundir(args.profile)
        viewer = Viewer(rundir, port=args.port)
    except (CommandError, ViewerError) as exc:
        print(f"tabvm: error: {exc}", file=sys.stderr)
        return getattr(exc, "status", EXIT_FAILED)

    def ready(v: Viewer) -> None:
        if args.url_file is not None:
            fd = os.open(args.url_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(v.url + "\n")
        print(f"tabvm: viewer of {name}: {v.url}", flush=True)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve_until_stopped(viewer, ready, stop)

    try:
        asyncio.run(main())
    except (ViewerError, OSError) as exc:
        print(f"tabvm: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return 0
