"""Talk to Debian's ``qemu-guest-agent`` inside a guest (QGA protocol).

QEMU forwards the guest's virtio-serial port ``org.qemu.guest_agent.0`` to a unix
socket in the runtime directory (glue.hardware). QGA speaks QMP's JSON without a
greeting or capability negotiation, which ``qemu.qmp`` handles
(``connect(negotiate=False)``).

The socket takes one client at a time: clients of one VM take ``qga.lock``
(flock) beside it first. A client that went away mid-command can leave a reply
or half a request behind, so every connection starts by resetting the agent's
JSON parser (a 0xFF byte, as QGA's documentation says) and sends
``guest-sync`` with a random id; everything before the agent's echo of that id
(older replies, the parser's complaint about the 0xFF) is dropped.

``exec`` follows QMP ``guest-exec`` semantics: the agent spawns the program
(``PATH`` is searched) with its output captured; ``guest-exec-status`` is polled
until it exited.

    with GuestAgent(rundir / "qga.sock") as agent:
        result = agent.exec(["uname", "-r"])
        print(result.exitcode, result.stdout)
"""

from __future__ import annotations

import asyncio
import base64
import fcntl
import json
import os
import secrets
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from qemu.qmp import QMPError
from qemu.qmp.legacy import QEMUMonitorProtocol

LOCK_NAME = "qga.lock"
MAX_SYNC_BYTES = 1 << 24


class GuestAgentError(RuntimeError):
    """The agent cannot be reached, did not answer, or refused a command."""


@dataclass(frozen=True)
class ExecResult:
    exitcode: int | None          # None when a signal ended it
    signal: int | None
    stdout: bytes
    stderr: bytes
    truncated: bool = False       # the agent cut the output (it keeps 16 MiB)

    @property
    def status(self) -> int:
        """The shell's view: the exit code, or 128 + the signal."""
        if self.exitcode is not None:
            return self.exitcode
        return 128 + (self.signal or 0)


class GuestAgent:
    """One connection to qemu-guest-agent; ``timeout`` bounds every reply."""

    def __init__(self, socket_path: Path, timeout: float = 10.0,
                 lock_timeout: float = 60.0):
        self.socket_path = Path(socket_path)
        self.timeout = timeout
        self.lock_timeout = lock_timeout
        self._lock_fd: int | None = None
        self._qmp: QEMUMonitorProtocol | None = None

    # -- connection --
    def connect(self) -> GuestAgent:
        self._lock()
        try:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(self.timeout)
                sock.connect(str(self.socket_path))
                self._sync(sock)
                sock.setblocking(False)
            except OSError as exc:
                sock.close()
                raise GuestAgentError(f"cannot talk to the guest agent on "
                                      f"{self.socket_path}: {exc.strerror or exc}") from None
            except GuestAgentError:
                sock.close()
                raise
            qmp = QEMUMonitorProtocol(sock)
            qmp.settimeout(self.timeout)
            try:
                qmp.connect(negotiate=False)
            except Exception as exc:     # qemu.qmp also asserts its own state here
                try:
                    qmp.close()
                except Exception:        # already torn down
                    pass
                raise GuestAgentError(f"guest agent connection failed: "
                                      f"{type(exc).__name__}: {exc}") from None
            self._qmp = qmp
        except BaseException:
            self.close()
            raise
        return self

    def _lock(self) -> None:
        path = self.socket_path.with_name(LOCK_NAME)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        deadline = time.monotonic() + self.lock_timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise GuestAgentError(f"the guest agent is busy with another client "
                                          f"for more than {self.lock_timeout:.0f} s") from None
                time.sleep(0.05)
        self._lock_fd = fd

    def _sync(self, sock: socket.socket) -> None:
        """Before qemu.qmp takes the socket: reset the agent's parser (0xFF; it
        answers that with a parse error), send ``guest-sync`` with a random id
        and drop every line up to the agent's echo of it (a parse error, replies
        a previous client left behind). The stream is then aligned."""
        token = secrets.randbelow(1 << 31)
        sock.sendall(b"\xff" + json.dumps({"execute": "guest-sync",
                                          "arguments": {"id": token}}).encode() + b"\n")
        buf = b""
        deadline = time.monotonic() + self.timeout
        while True:
            while b"\n" not in buf:
                if time.monotonic() > deadline:
                    raise GuestAgentError(f"the guest agent did not answer within "
                                          f"{self.timeout:.0f} s")
                try:
                    chunk = sock.recv(65536)
                except TimeoutError:
                    chunk = None
                if chunk == b"":
                    raise GuestAgentError("the guest agent's socket closed")
                buf += chunk or b""
                if len(buf) > MAX_SYNC_BYTES:
                    raise GuestAgentError("the guest agent sent too much before "
                                          "synchronizing")
            line, _, buf = buf.partition(b"\n")
            try:
                reply = json.loads(line)
            except ValueError:
                continue
            if isinstance(reply, dict) and reply.get("return") == token:
                if buf.strip():
                    raise GuestAgentError("the guest agent sent more after synchronizing")
                return

    def close(self) -> None:
        if self._qmp is not None:
            try:
                self._qmp.close()
            except (QMPError, OSError, EOFError, asyncio.TimeoutError):
                pass
            self._qmp = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> GuestAgent:
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- commands --
    def _raw(self, name: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        if self._qmp is None:
            raise GuestAgentError("not connected to the guest agent")
        try:
            return self._qmp.cmd_raw(name, args)
        except (asyncio.TimeoutError, TimeoutError):
            raise GuestAgentError(f"the guest agent did not answer {name} within "
                                  f"{self.timeout:.0f} s") from None
        except (QMPError, OSError, EOFError) as exc:
            raise GuestAgentError(f"guest agent: {name}: connection lost "
                                  f"({type(exc).__name__}: {exc})") from None

    def cmd(self, name: str, **args: Any) -> Any:
        """Run a QGA command; its ``return``, or GuestAgentError with the agent's message."""
        reply = self._raw(name, args or None)
        if "error" in reply:
            raise GuestAgentError(f"{name}: {reply['error'].get('desc', reply['error'])}")
        return reply.get("return")

    def ping(self) -> None:
        self.cmd("guest-ping")

    def exec(self, argv: Sequence[str], env: Sequence[str] = (), stdin: bytes | None = None,
             timeout: float | None = None) -> ExecResult:
        """Run ``argv`` in the guest and wait for it (``timeout`` seconds; None =
        no limit): its exit status and captured output."""
        if not argv:
            raise ValueError("no command to run")
        args: dict[str, Any] = {"path": argv[0], "arg": list(argv[1:]),
                                "capture-output": True}
        if env:
            args["env"] = list(env)
        if stdin is not None:
            args["input-data"] = base64.b64encode(stdin).decode()
        pid = self.cmd("guest-exec", **args)["pid"]
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.005
        while True:
            status = self.cmd("guest-exec-status", pid=pid)
            if status.get("exited"):
                return ExecResult(
                    exitcode=status.get("exitcode"), signal=status.get("signal"),
                    stdout=base64.b64decode(status.get("out-data", "")),
                    stderr=base64.b64decode(status.get("err-data", "")),
                    truncated=bool(status.get("out-truncated") or status.get("err-truncated")))
            if deadline is not None and time.monotonic() > deadline:
                raise GuestAgentError(f"{argv[0]} still running after {timeout:g} s "
                                      f"(guest pid {pid})")
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
