"""Host-side client for the tabvm guest agent (guest/agent.c).

The agent speaks a line protocol on the guest's second serial port; QEMU exposes
that port as a unix socket::

    -chardev socket,id=agent,path=agent.sock,server=on,wait=off -serial chardev:agent

Request ``ID VERB ARGS...\\n``; response ``ID STATUS LEN\\n`` + LEN bytes + ``\\n``
(see guest/README.md). Lines that are not a valid response header (for example
echo from the guest tty before the agent put it in raw mode) are skipped, and
responses to other IDs (left over from a timed-out call) are discarded.
"""

from __future__ import annotations

import itertools
import os
import re
import select
import socket
import time
from typing import NamedTuple

__all__ = ["AgentClient", "AgentError", "AgentTimeout", "InputEvent", "ShResult"]

_HEADER = re.compile(rb"(\d{1,20}) (ok|err) (\d{1,8})")
_MAX_PAYLOAD = 2 * 1024 * 1024
_MAX_LINE = 64 * 1024
# Limits of the agent's events/evtake verbs and its evstart IDs.
EV_MAX_COUNT = 10_000
EV_MAX_TIMEOUT_MS = 600_000
EV_IDS = range(8)


class AgentError(Exception):
    """The agent answered ``err``, did not answer in time, or the link broke."""


class AgentTimeout(AgentError):
    """No answer before the deadline."""


class ShResult(NamedTuple):
    output: str
    status: int


class InputEvent(NamedTuple):
    """One Linux ``struct input_event`` as the guest read it."""

    time: float  # tv_sec + tv_usec / 1e6 (the kernel's event timestamp)
    type: int    # EV_SYN, EV_KEY, EV_ABS, ... (numeric)
    code: int
    value: int


class AgentClient:
    """One connection to a guest agent.

    ``target`` is a unix socket path (connection retried until ``connect_timeout``
    since QEMU may still be starting), a connected ``socket.socket``, or a file
    descriptor (e.g. a pty master). The descriptor is switched to non-blocking
    mode; a socket or fd passed in is not closed by :meth:`close`.
    """

    def __init__(self, target: str | os.PathLike | socket.socket | int, *,
                 connect_timeout: float = 10.0) -> None:
        self._sock: socket.socket | None = None
        self._owned = False
        if isinstance(target, int):
            self._fd = target
            os.set_blocking(target, False)
        else:
            if isinstance(target, socket.socket):
                self._sock = target
            else:
                self._sock = _connect_unix(os.fspath(target), connect_timeout)
                self._owned = True
            self._sock.setblocking(False)
            self._fd = self._sock.fileno()
        self._buf = bytearray()
        self._ids = itertools.count(1)

    # -- lifecycle ---------------------------------------------------------

    def close(self) -> None:
        if self._sock is not None and self._owned:
            self._sock.close()
        self._sock = None
        self._fd = -1

    def __enter__(self) -> AgentClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- protocol ----------------------------------------------------------

    def call_bytes(self, verb: str, *args: str, timeout: float = 30.0) -> bytes:
        """Sends one request and returns the ``ok`` payload; raises AgentError."""
        deadline = time.monotonic() + timeout
        rid = self._send(verb, args, deadline)
        status, payload = self._await({rid}, deadline)[1:]
        if status != "ok":
            raise AgentError(f"{verb}: {payload.decode(errors='replace')}")
        return payload

    def call(self, verb: str, *args: str, timeout: float = 30.0) -> str:
        """Like :meth:`call_bytes`, decoded as UTF-8 (invalid bytes replaced)."""
        return self.call_bytes(verb, *args, timeout=timeout).decode(errors="replace")

    def wait_ready(self, timeout: float = 120.0, interval: float = 0.25) -> float:
        """Pings until the agent answers; returns the seconds waited.

        Each attempt starts with a bare newline to end any partial line. An answer
        to any ping of this wait counts.
        """
        start = time.monotonic()
        deadline = start + timeout
        sent: set[str] = set()
        while True:
            now = time.monotonic()
            if now >= deadline:
                raise AgentTimeout(f"agent did not answer a ping within {timeout:g} s")
            self._write(b"\n", deadline)
            sent.add(self._send("ping", (), deadline))
            try:
                self._await(sent, min(deadline, now + interval))
                return time.monotonic() - start
            except AgentTimeout:
                continue

    # -- conveniences ------------------------------------------------------

    def ping(self, timeout: float = 10.0) -> None:
        if self.call("ping", timeout=timeout) != "pong":
            raise AgentError("ping: unexpected answer")

    def read_bytes(self, path: str, timeout: float = 30.0) -> bytes:
        return self.call_bytes("read", path, timeout=timeout)

    def read(self, path: str, timeout: float = 30.0) -> str:
        return self.call("read", path, timeout=timeout)

    def write(self, path: str, data: str, timeout: float = 30.0) -> None:
        _check_word(path, "path")
        self.call("write", path, escape(data), timeout=timeout)

    def sh(self, cmd: str, timeout: float = 60.0) -> ShResult:
        """Runs ``/bin/sh -c cmd`` in the guest; output is stdout+stderr."""
        text = self.call("sh", cmd, timeout=timeout)
        body, _, last = text.rpartition("exit=")
        if not last.isdigit() or (body and not body.endswith("\n")):
            raise AgentError(f"sh: malformed answer {text[-80:]!r}")
        return ShResult(body, int(last))

    def ls(self, path: str, timeout: float = 30.0) -> list[str]:
        text = self.call("ls", path, timeout=timeout)
        return text.split("\n") if text else []

    def hold(self, key: str, value: str, timeout: float = 10.0) -> None:
        _check_word(key, "key")
        self.call("hold", key, value, timeout=timeout)

    def recall(self, key: str, timeout: float = 10.0) -> str:
        return self.call("recall", key, timeout=timeout)

    def uname(self, timeout: float = 10.0) -> dict[str, str]:
        fields = ("sysname", "nodename", "release", "version", "machine")
        values = self.call("uname", timeout=timeout).split("\n")
        if len(values) != len(fields):
            raise AgentError(f"uname: malformed answer {values!r}")
        return dict(zip(fields, values))

    # -- input events (evdev) ---------------------------------------------

    def events(self, path: str, max: int, timeout_ms: int,
               timeout: float | None = None) -> list[InputEvent]:
        """Reads up to ``max`` input events from ``path`` in the guest, waiting at
        most ``timeout_ms`` ms (the agent answers nothing else meanwhile).

        ``timeout`` (seconds) bounds the whole call; by default it is
        ``timeout_ms`` plus a margin for the answer.
        """
        if not path:
            raise ValueError("events: empty path")
        _check_ev_limits(max, timeout_ms)
        text = self.call("events", path, str(max), str(timeout_ms),
                         timeout=_ev_call_timeout(max, timeout_ms, timeout))
        return _parse_events(text)

    def ev_start(self, id: int, path: str, timeout: float = 10.0) -> None:
        """Opens ``path`` in the guest and keeps it under ``id`` (0..7); from now
        on events queue in the guest kernel until :meth:`ev_take` reads them."""
        _check_ev_id(id)
        if not path:
            raise ValueError("ev_start: empty path")
        self.call("evstart", str(id), path, timeout=timeout)

    def ev_take(self, id: int, max: int, timeout_ms: int,
                timeout: float | None = None) -> list[InputEvent]:
        """Like :meth:`events`, from the source kept under ``id``."""
        _check_ev_id(id)
        _check_ev_limits(max, timeout_ms)
        text = self.call("evtake", str(id), str(max), str(timeout_ms),
                         timeout=_ev_call_timeout(max, timeout_ms, timeout))
        return _parse_events(text)

    def ev_stop(self, id: int, timeout: float = 10.0) -> None:
        """Closes the source kept under ``id`` (no error if there is none)."""
        _check_ev_id(id)
        self.call("evstop", str(id), timeout=timeout)

    # -- plumbing ----------------------------------------------------------

    def _send(self, verb: str, args: tuple[str, ...], deadline: float) -> str:
        rid = str(next(self._ids))
        line = " ".join((rid, verb) + args)
        if "\n" in line:
            raise ValueError("agent request must not contain a newline")
        data = line.encode() + b"\n"
        if len(data) > _MAX_LINE:
            raise ValueError(f"agent request longer than {_MAX_LINE} bytes")
        self._write(data, deadline)
        return rid

    def _write(self, data: bytes, deadline: float) -> None:
        view = memoryview(data)
        while view:
            self._wait(select.POLLOUT, deadline, "sending")
            try:
                view = view[os.write(self._fd, view):]
            except BlockingIOError:
                continue
            except OSError as e:
                raise AgentError(f"agent link broken: {e}") from None

    def _await(self, ids: set[str], deadline: float) -> tuple[str, str, bytes]:
        """Returns the next frame whose ID is in ``ids``; others are dropped."""
        while True:
            frame = self._take_frame()
            if frame is None:
                self._fill(deadline)
            elif frame[0] in ids:
                return frame

    def _take_frame(self) -> tuple[str, str, bytes] | None:
        """Parses one frame off the buffer; None if more bytes are needed."""
        while True:
            nl = self._buf.find(b"\n")
            if nl < 0:
                return None
            m = _HEADER.fullmatch(self._buf[:nl])
            size = int(m.group(3)) if m else -1
            if not m or size > _MAX_PAYLOAD:
                del self._buf[: nl + 1]  # not a header: noise, skip the line
                continue
            end = nl + 1 + size
            if len(self._buf) <= end:
                return None
            if self._buf[end] != ord("\n"):
                del self._buf[: nl + 1]  # framing broken: resynchronise
                continue
            payload = bytes(self._buf[nl + 1 : end])
            rid, status = m.group(1).decode(), m.group(2).decode()
            del self._buf[: end + 1]
            return rid, status, payload

    def _fill(self, deadline: float) -> None:
        self._wait(select.POLLIN, deadline, "waiting for an answer")
        try:
            data = os.read(self._fd, 1 << 16)
        except BlockingIOError:
            return
        except OSError as e:
            raise AgentError(f"agent link broken: {e}") from None
        if not data:
            raise AgentError("agent link closed")
        self._buf += data

    def _wait(self, event: int, deadline: float, what: str) -> None:
        if self._fd < 0:
            raise AgentError("agent client is closed")
        poller = select.poll()
        poller.register(self._fd, event)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AgentTimeout(f"timed out {what}")
            events = poller.poll(left * 1000)
            if events:
                return


def escape(data: str) -> str:
    """Escapes data for the agent's ``write`` verb (``\\`` and newline)."""
    return data.replace("\\", "\\\\").replace("\n", "\\n")


def _check_ev_id(id: int) -> None:
    if id not in EV_IDS:
        raise ValueError(f"event source id must be in 0..{EV_IDS[-1]}: {id!r}")


def _check_ev_limits(max: int, timeout_ms: int) -> None:
    if not 1 <= max <= EV_MAX_COUNT:
        raise ValueError(f"max must be in 1..{EV_MAX_COUNT}: {max!r}")
    if not 0 <= timeout_ms <= EV_MAX_TIMEOUT_MS:
        raise ValueError(f"timeout_ms must be in 0..{EV_MAX_TIMEOUT_MS}: {timeout_ms!r}")


def _ev_call_timeout(max: int, timeout_ms: int, timeout: float | None) -> float:
    """The agent's wait plus a margin for sending the answer (~30 bytes/event)."""
    if timeout is not None:
        return timeout
    return timeout_ms / 1000 + 10.0 + max / 500


def _parse_events(text: str) -> list[InputEvent]:
    """Parses the ``SEC.USEC TYPE CODE VALUE`` lines of events/evtake."""
    events = []
    for line in text.split("\n") if text else ():
        try:
            stamp, type_, code, value = line.split(" ")
            sec, dot, usec = stamp.partition(".")
            if not dot:
                raise ValueError(stamp)
            events.append(InputEvent(int(sec) + int(usec) / 1e6, int(type_),
                                     int(code), int(value)))
        except ValueError:
            raise AgentError(f"events: malformed line {line[:80]!r}") from None
    return events


def _check_word(value: str, what: str) -> None:
    if not value or " " in value or "\n" in value:
        raise ValueError(f"agent {what} must be non-empty without spaces: {value!r}")


def _connect_unix(path: str, timeout: float) -> socket.socket:
    deadline = time.monotonic() + timeout
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            sock.connect(path)
            return sock
        except (FileNotFoundError, ConnectionRefusedError) as e:
            sock.close()
            if time.monotonic() >= deadline:
                raise AgentError(f"cannot connect to agent socket {path}: {e}") from None
            time.sleep(0.05)
        except OSError as e:
            sock.close()
            raise AgentError(f"cannot connect to agent socket {path}: {e}") from None
