"""The glue's host-event socket: the host app (or ``tabvm ctl``) tells the glue what
happens on the host side.

A unix stream socket in the runtime directory (``RUNDIR/host-events.sock``; the
directory must be 0700 and ours, the socket is 0600). Newline-delimited JSON:
one object per request, ``{"event": NAME, ...fields}``, and one reply line per
request, ``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``. Only our uid
(or root) may connect (SO_PEERCRED); others get an error and are disconnected.

Events come from a registry (``register``): each names its fields and their types;
a request with a missing, extra or mistyped field, bad JSON, an unknown event or
a line over ``max_line`` bytes gets an error reply and reaches no handler. A
handler's ValueError is a bad request too; any other exception is reported as
the event's failure. The server never stops on bad input.
"""

from __future__ import annotations

import json
import os
import selectors
import socket
import stat
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from .log import log_line

SOCKET_NAME = "host-events.sock"
MAX_LINE = 64 * 1024
MAX_CLIENTS = 16

FieldType = type | tuple[type, ...]
Handler = Callable[[dict[str, Any]], Mapping[str, Any] | None]


class HostEventError(ValueError):
    """A bad request: its message goes back to the client."""


def _type_name(t: FieldType) -> str:
    names = {str: "a string", int: "an integer", bool: "true or false", float: "a number",
             list: "a list", dict: "an object"}
    types = t if isinstance(t, tuple) else (t,)
    return " or ".join(names.get(x, x.__name__) for x in types)


def _is(value: Any, t: FieldType) -> bool:
    types = t if isinstance(t, tuple) else (t,)
    if isinstance(value, bool):         # JSON true is not an integer here
        return bool in types
    if isinstance(value, int) and float in types:
        return True
    return isinstance(value, types)


@dataclass(frozen=True)
class EventType:
    name: str
    handler: Handler
    fields: Mapping[str, FieldType]
    optional: Mapping[str, FieldType]

    def validate(self, request: Mapping[str, Any]) -> dict[str, Any]:
        given = {k: v for k, v in request.items() if k != "event"}
        missing = [f for f in self.fields if f not in given]
        if missing:
            raise HostEventError(f"{self.name}: missing field{'s' if len(missing) > 1 else ''} "
                                 f"{', '.join(missing)}")
        extra = [f for f in given if f not in self.fields and f not in self.optional]
        if extra:
            allowed = [*self.fields, *self.optional]
            raise HostEventError(f"{self.name}: unexpected field{'s' if len(extra) > 1 else ''} "
                                 f"{', '.join(extra)} (fields: "
                                 f"{', '.join(allowed) if allowed else 'none'})")
        for name, value in given.items():
            t = self.fields.get(name) or self.optional[name]
            if not _is(value, t):
                raise HostEventError(f"{self.name}: field {name} must be {_type_name(t)}, "
                                     f"not {json.dumps(value)[:60]}")
        return {"event": self.name, **given}


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise HostEventError(f"duplicate key {k!r}")
        out[k] = v
    return out


def _no_constant(name: str) -> Any:
    raise HostEventError(f"{name} is not JSON")


def parse_request(line: bytes) -> dict[str, Any]:
    """One request line as a JSON object with a string ``event``."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise HostEventError("not UTF-8") from None
    try:
        request = json.loads(text, object_pairs_hook=_no_duplicates,
                             parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise HostEventError(f"bad JSON: {exc}") from None
    if not isinstance(request, dict):
        raise HostEventError('a request is a JSON object: {"event": NAME, ...}')
    if not isinstance(request.get("event"), str):
        raise HostEventError('a request needs "event": NAME (a string)')
    return request


def peer_uid(sock: socket.socket) -> int:
    """The uid of the process at the other end of a unix socket (SO_PEERCRED)."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


def socket_path(rundir: Path | str) -> Path:
    return Path(rundir) / SOCKET_NAME


class HostEventServer:
    """The host-event socket in ``rundir``: ``register`` events, ``start()``,
    ``stop()``. Each client is served on its own thread; handlers run one at a
    time (a server-wide lock), so they need no locking among themselves."""

    def __init__(self, rundir: Path | str, *, name: str = SOCKET_NAME,
                 max_line: int = MAX_LINE, max_clients: int = MAX_CLIENTS,
                 log: Callable[..., None] = log_line):
        self.rundir = Path(rundir)
        self.path = self.rundir / name
        self.max_line = max_line
        self.max_clients = max_clients
        self.log = log
        self.allowed_uids = frozenset({os.getuid(), 0})
        self._events: dict[str, EventType] = {}
        self._dispatch_lock = threading.Lock()
        self._clients: dict[socket.socket, threading.Thread] = {}
        self._clients_lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = -1, -1
        self._stopping = threading.Event()
        self._inflight = threading.Condition()
        self._busy = 0

    # -- registry --
    def register(self, event: str, handler: Handler,
                 fields: Mapping[str, FieldType] | None = None,
                 optional: Mapping[str, FieldType] | None = None) -> None:
        """Serve ``{"event": event, ...}`` with ``handler(request)``; ``fields``
        are required, ``optional`` may be there ({name: type or (types)}; int
        excludes true/false). The handler's dict is added to the ok reply."""
        if event in self._events:
            raise ValueError(f"event {event!r} is already registered")
        if "event" in (fields or {}) or "event" in (optional or {}) or \
                "ok" in (fields or {}):
            raise ValueError("'event' and 'ok' are not field names")
        self._events[event] = EventType(event, handler, dict(fields or {}),
                                        dict(optional or {}))

    def events(self) -> list[str]:
        return sorted(self._events)

    # -- requests --
    def dispatch(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """Validate and handle one request; the reply object."""
        try:
            name = request.get("event")
            etype = self._events.get(name) if isinstance(name, str) else None
            if etype is None:
                raise HostEventError(f"unknown event {request.get('event')!r} (events: "
                                     f"{', '.join(self.events()) or 'none'})")
            checked = etype.validate(request)
            with self._dispatch_lock:
                result = etype.handler(checked)
        except (HostEventError, ValueError) as exc:
            return {"ok": False, "error": str(exc)}
        except Exception as exc:  # noqa: BLE001 -- the server outlives its handlers
            self.log("host-event-failed", name=request.get("event"),
                     error=repr(f"{type(exc).__name__}: {exc}"))
            return {"ok": False, "error": f"{request.get('event')} failed: {exc}"}
        reply: dict[str, Any] = {"ok": True}
        if result:
            reply.update({k: v for k, v in result.items() if k != "ok"})
        return reply

    def handle_line(self, line: bytes) -> dict[str, Any]:
        """One request line (without its newline) -> the reply object."""
        if len(line) > self.max_line:
            return {"ok": False, "error": f"line too long (over {self.max_line} bytes)"}
        try:
            request = parse_request(line)
        except HostEventError as exc:
            return {"ok": False, "error": str(exc)}
        return self.dispatch(request)

    # -- the socket --
    def _check_rundir(self) -> None:
        st = self.rundir.lstat()
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
            raise OSError(f"{self.rundir} is not a directory owned by uid {os.getuid()}")
        if st.st_mode & 0o077:
            raise OSError(f"{self.rundir} is open to other users "
                          f"(mode {stat.S_IMODE(st.st_mode):04o}; it must be 0700)")

    def start(self) -> HostEventServer:
        """Bind the socket (replacing a stale one) and serve on a thread."""
        if self._thread is not None:
            return self
        self._check_rundir()
        try:
            if stat.S_ISSOCK(self.path.lstat().st_mode):
                self.path.unlink()
        except FileNotFoundError:
            pass
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(str(self.path))
            # the directory is 0700: nobody else reaches the socket before this
            os.chmod(self.path, 0o600)
            listener.listen(self.max_clients)
            listener.setblocking(False)
        except OSError:
            listener.close()
            raise
        self._listener = listener
        self._wake_r, self._wake_w = os.pipe()
        self._stopping.clear()
        self._thread = threading.Thread(target=self._accept_loop, name="host-events",
                                        daemon=True)
        self._thread.start()
        return self

    def _accept_loop(self) -> None:
        assert self._listener is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self._listener, selectors.EVENT_READ)
            sel.register(self._wake_r, selectors.EVENT_READ)
            while not self._stopping.is_set():
                for key, _ in sel.select():
                    if key.fileobj == self._wake_r:
                        return
                    try:
                        conn, _ = self._listener.accept()
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError as exc:
                        self.log("host-events-accept-error", error=repr(str(exc)))
                        continue
                    self._admit(conn)

    def _send(self, conn: socket.socket, reply: Mapping[str, Any]) -> None:
        conn.sendall(json.dumps(reply, separators=(",", ":")).encode() + b"\n")

    def _admit(self, conn: socket.socket) -> None:
        conn.setblocking(True)
        try:
            uid = peer_uid(conn)
            if uid not in self.allowed_uids:
                self.log("host-events-refused", uid=uid)
                conn.settimeout(1.0)
                who = f"uid {os.getuid()}" + (" or root" if os.getuid() else "")
                self._send(conn, {"ok": False, "error": f"uid {uid} may not use this "
                                  f"socket (only {who})"})
                conn.close()
                return
            with self._clients_lock:
                if len(self._clients) >= self.max_clients:
                    conn.settimeout(1.0)
                    self._send(conn, {"ok": False, "error": "too many clients"})
                    conn.close()
                    return
                thread = threading.Thread(target=self._serve, args=(conn,),
                                          name="host-events-client", daemon=True)
                self._clients[conn] = thread
        except OSError:
            conn.close()
            return
        thread.start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        too_long = False
        try:
            while not self._stopping.is_set():
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buf += chunk
                while True:
                    line, nl, rest = buf.partition(b"\n")
                    if not nl:
                        if len(buf) > self.max_line:
                            too_long, buf = True, b""    # drop up to the next newline
                        break
                    buf = rest
                    if too_long:
                        too_long = False
                        reply = {"ok": False,
                                 "error": f"line too long (over {self.max_line} bytes)"}
                    elif not line.strip():
                        continue
                    else:
                        with self._inflight:
                            self._busy += 1
                        try:
                            reply = self.handle_line(line.rstrip(b"\r"))
                        except Exception as exc:  # noqa: BLE001 -- keep serving
                            reply = {"ok": False, "error": f"internal error: {exc}"}
                        finally:
                            self._send_then_done(conn, reply)
                        continue
                    self._send(conn, reply)
        except OSError:
            return
        finally:
            with self._clients_lock:
                self._clients.pop(conn, None)
            conn.close()

    def _send_then_done(self, conn: socket.socket, reply: Mapping[str, Any]) -> None:
        try:
            self._send(conn, reply)
        finally:
            with self._inflight:
                self._busy -= 1
                self._inflight.notify_all()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, let requests being handled send their reply (a
        ``shutdown`` handler is answered), disconnect clients, remove the socket."""
        if self._thread is None:
            return
        with self._inflight:
            self._inflight.wait_for(lambda: self._busy == 0, timeout)
        self._stopping.set()
        os.write(self._wake_w, b"x")
        self._thread.join(timeout)
        self._thread = None
        with self._clients_lock:
            clients = list(self._clients.items())
        for conn, _ in clients:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for _, thread in clients:
            thread.join(timeout)
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)
        self._wake_r = self._wake_w = -1
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass

    def __enter__(self) -> HostEventServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def request(path: Path | str, message: Mapping[str, Any],
            timeout: float = 10.0) -> dict[str, Any]:
    """Send one request to a host-event socket and return the reply (OSError when
    the socket cannot be reached or does not answer; ValueError for a reply that
    is not a JSON object)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(json.dumps(message).encode() + b"\n")
        buf = b""
        while b"\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                break
            buf += chunk
            if len(buf) > 16 * MAX_LINE:
                raise ValueError("the reply is too long")
    line = buf.partition(b"\n")[0]
    if not line:
        raise ConnectionError(f"{path} closed the connection without a reply")
    reply = json.loads(line)
    if not isinstance(reply, dict):
        raise ValueError(f"the reply is not a JSON object: {line[:200]!r}")
    return reply
