"""``tabvm view``: the running VM's screen in a browser, touchable.

Frames: QEMU's own VNC server (RFB, what unmodified clients speak) on a unix
socket in the VM's private runtime directory (``RUNDIR/vnc.sock``: the
directory is 0700, so no other uid reaches it, and no TCP port is open). The
page is noVNC (Debian's ``novnc`` package, or the directory ``TABVM_NOVNC``
names): its RFB client draws the screen, scaled to the window with letterboxing,
and sends the keyboard (QEMU gives VNC keys to the guest's PS/2 keyboard).
This server relays noVNC's WebSocket to the VNC socket, byte for byte.

Touch and mouse do not take VNC's pointer path: the page turns Pointer Events
(several touch pointers at once) into guest screen coordinates and sends them
on a second WebSocket; this server turns them into the ``touch`` and
``pointer`` host events of the VM's glue (glue.screen_input), which become the
touchscreen's contacts and its mouse collection over QMP ``input-send-event``.

The server listens on 127.0.0.1 (a random port unless given) and serves
everything under ``/TOKEN/``, a random per-run token: the URL it prints. Every
request is refused (403) unless
- its path starts with the token,
- its ``Host`` is this server's address (no DNS rebinding),
- its ``Origin``, if any, is this server's own (WebSockets always carry one),
- the connecting socket belongs to our uid (``/proc/net/tcp``: loopback is
  shared by every user of the machine; on Linux the socket's owner is listed).

A viewer that disconnects or reconnects changes nothing in the VM (its
contacts are lifted); malformed input messages are counted and dropped.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import mimetypes
import os
import secrets
import socket
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any, Callable

from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from .screen_input import MAX_CONTACTS, screen_to_abs

__all__ = ["Viewer", "ViewerError", "find_novnc", "socket_uid", "page_message"]

WEB_DIR = Path(__file__).with_name("viewer_web")
NOVNC_DIRS = (Path("/usr/share/novnc"),)
NOVNC_ENV = "TABVM_NOVNC"
MAX_INPUT_MESSAGE = 4096
MAX_VNC_MESSAGE = 1 << 20
MAX_SCREEN = 16384


class ViewerError(RuntimeError):
    pass


def find_novnc() -> Path:
    """noVNC's directory (the one with ``core/rfb.js``)."""
    env = os.environ.get(NOVNC_ENV)
    for d in ([Path(env)] if env else []) + list(NOVNC_DIRS):
        if (d / "core" / "rfb.js").is_file():
            return d
    raise ViewerError("noVNC not found: install Debian's novnc package or set "
                      f"{NOVNC_ENV} to a directory with core/rfb.js")


def socket_uid(local: tuple[str, int], remote: tuple[str, int],
               table: str = "/proc/net/tcp") -> int | None:
    """The uid owning the IPv4 TCP socket bound to ``local`` and connected to
    ``remote`` (the client's end of a connection we accepted), from the
    kernel's socket table; None if it is not listed."""
    def key(addr: tuple[str, int]) -> str:
        packed = socket.inet_aton(addr[0])
        return f"{int.from_bytes(packed, 'little'):08X}:{addr[1]:04X}"
    want = (key(local), key(remote))
    try:
        with open(table) as f:
            next(f, None)
            for line in f:
                cols = line.split()
                if len(cols) > 7 and (cols[1], cols[2]) == want:
                    return int(cols[7])
    except OSError:
        return None
    return None


def page_message(text: Any, screen: Callable[[], tuple[int, int] | None] | None = None
                 ) -> dict[str, Any]:
    """A message from the page as a host event, or ValueError. The page sends
    ``{"touch": [[ID, X, Y], ...], "w": W, "h": H}`` (every contact down now) or
    ``{"mouse": [X, Y, BUTTONS], "w": W, "h": H}``: X, Y in pixels of the
    W x H screen the page showed (fractions allowed)."""
    if not isinstance(text, str) or len(text) > MAX_INPUT_MESSAGE:
        raise ValueError("a message is a JSON text of at most 4 KiB")
    try:
        msg = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise ValueError("not JSON") from None
    if not isinstance(msg, dict):
        raise ValueError("a message is a JSON object")
    w, h = msg.get("w"), msg.get("h")
    for v in (w, h):
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_SCREEN:
            raise ValueError("w and h are the screen's size in pixels")

    def point(x: Any, y: Any) -> tuple[int, int]:
        for v in (x, y):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v \
                    or abs(v) > 4 * MAX_SCREEN:
                raise ValueError("a coordinate is a number of pixels")
        return screen_to_abs(x, w), screen_to_abs(y, h)

    if set(msg) == {"touch", "w", "h"}:
        contacts = msg["touch"]
        if not isinstance(contacts, list) or len(contacts) > MAX_CONTACTS:
            raise ValueError(f"touch is a list of at most {MAX_CONTACTS} [ID, X, Y]")
        out = []
        for c in contacts:
            if not isinstance(c, list) or len(c) != 3 or isinstance(c[0], bool) \
                    or not isinstance(c[0], int) or not -2**31 <= c[0] < 2**31:
                raise ValueError("a contact is [ID, X, Y]")
            if any(o[0] == c[0] for o in out):
                raise ValueError(f"contact ID {c[0]} given twice")
            out.append([c[0], *point(c[1], c[2])])
        return {"event": "touch", "contacts": out}
    if set(msg) == {"mouse", "w", "h"}:
        m = msg["mouse"]
        if not isinstance(m, list) or len(m) != 3 or isinstance(m[2], bool) \
                or not isinstance(m[2], int) or not 0 <= m[2] <= 0xFF:
            raise ValueError("mouse is [X, Y, BUTTONS]")
        x, y = point(m[0], m[1])
        return {"event": "pointer", "x": x, "y": y, "buttons": m[2]}
    raise ValueError('a message is {"touch": ..., "w", "h"} or {"mouse": ..., "w", "h"}')


class HostEvents:
    """One connection to the glue's host-event socket: requests are written as
    they come (in order), replies are read by a task and failures counted."""

    def __init__(self, path: Path):
        self.path = path
        self.writer: asyncio.StreamWriter | None = None
        self.reader_task: asyncio.Task | None = None
        self.sent = 0
        self.failed = 0
        self.last_error: str | None = None

    async def send(self, event: dict[str, Any]) -> None:
        if self.writer is None or self.writer.is_closing():
            reader, self.writer = await asyncio.open_unix_connection(str(self.path),
                                                                     limit=1 << 20)
            self.reader_task = asyncio.create_task(self._replies(reader))
        self.writer.write(json.dumps(event).encode() + b"\n")
        self.sent += 1
        await self.writer.drain()

    async def _replies(self, reader: asyncio.StreamReader) -> None:
        while line := await reader.readline():
            try:
                reply = json.loads(line)
            except ValueError:
                reply = {"ok": False, "error": "unreadable reply"}
            if not reply.get("ok"):
                self.failed += 1
                self.last_error = str(reply.get("error"))[:200]

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.reader_task is not None:
            self.reader_task.cancel()


@dataclass
class Viewer:
    """The viewer's web server for the VM whose runtime directory is ``rundir``."""

    rundir: Path
    host: str = "127.0.0.1"
    port: int = 0
    novnc: Path = field(default_factory=find_novnc)
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    refused: dict[str, int] = field(default_factory=dict)
    bad_messages: int = 0

    def __post_init__(self) -> None:
        self.vnc_socket = self.rundir / "vnc.sock"
        self.events_socket = self.rundir / "host-events.sock"
        self._roots = {"novnc/": self.novnc.resolve(), "": WEB_DIR.resolve()}
        self._server: Any = None

    @property
    def origin(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.origin}/{self.token}/"

    # -- admission --
    def _refuse(self, connection: ServerConnection, why: str,
                status: HTTPStatus = HTTPStatus.FORBIDDEN) -> Response:
        self.refused[why] = self.refused.get(why, 0) + 1
        return connection.respond(status, f"{why}\n")

    def _admit(self, connection: ServerConnection, request: Request) -> str | None:
        """Why ``request`` is refused, or None."""
        hosts = {f"{self.host}:{self.port}", f"localhost:{self.port}"}
        if request.headers.get("Host") not in hosts:
            return "wrong host"
        origin = request.headers.get("Origin")
        if origin is not None and origin not in (self.origin, f"http://localhost:{self.port}"):
            return "other origin"
        path = request.path.split("?", 1)[0]
        prefix = f"/{self.token}/"
        if not hmac.compare_digest(path[:len(prefix)].encode(), prefix.encode()):
            return "no token"
        ours, theirs = connection.local_address[:2], connection.remote_address[:2]
        if socket_uid(theirs, ours) != os.getuid():      # the client's end of it
            return "other uid"
        return None

    def _relative(self, path: str) -> str:
        """An admitted request's path below ``/TOKEN/``, without its query."""
        return path.split("?", 1)[0][len(self.token) + 2:]

    def process_request(self, connection: ServerConnection, request: Request
                        ) -> Response | None:
        why = self._admit(connection, request)
        if why is not None:
            return self._refuse(connection, why)
        rel = self._relative(request.path)
        if rel in ("vnc", "input"):
            if request.headers.get("Origin") is None:
                return self._refuse(connection, "other origin")
            if request.headers.get("Upgrade", "").lower() != "websocket":
                return self._refuse(connection, "not a WebSocket", HTTPStatus.BAD_REQUEST)
            return None          # the WebSocket handshake goes on
        return self._file(connection, rel or "index.html")

    def _file(self, connection: ServerConnection, rel: str) -> Response:
        for prefix, root in self._roots.items():
            if rel.startswith(prefix):
                path = (root / rel[len(prefix):]).resolve()
                break
        if not (path.is_relative_to(root) and path.is_file()):
            return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
        ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if path.suffix in (".js", ".mjs"):
            ctype = "text/javascript"
        body = path.read_bytes()
        headers = Headers([
            ("Content-Type", f"{ctype}; charset=utf-8" if ctype.startswith("text/") else ctype),
            ("Content-Length", str(len(body))), ("Cache-Control", "no-store"),
            ("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "no-referrer"),
            ("Content-Security-Policy",
             f"default-src 'self'; connect-src ws://{self.host}:{self.port}; "
             "img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'"),
        ])
        return Response(HTTPStatus.OK, "OK", headers, body)

    # -- the two WebSockets --
    async def _handler(self, ws: ServerConnection) -> None:
        if self._relative(ws.request.path) == "vnc":
            await self._relay_vnc(ws)
        else:
            await self._input(ws)

    async def _relay_vnc(self, ws: ServerConnection) -> None:
        """noVNC <-> QEMU's VNC socket, byte for byte, until either side closes."""
        try:
            reader, writer = await asyncio.open_unix_connection(str(self.vnc_socket))
        except OSError as exc:
            await ws.close(1011, f"no VNC server: {exc.strerror or exc}"[:120])
            return

        async def up() -> None:
            async for message in ws:
                if isinstance(message, str):        # RFB is binary
                    self.bad_messages += 1
                    break
                writer.write(message)
                await writer.drain()

        async def down() -> None:
            while data := await reader.read(1 << 16):
                await ws.send(data)

        tasks = [asyncio.create_task(up()), asyncio.create_task(down())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            writer.close()
            await ws.close()

    async def _input(self, ws: ServerConnection) -> None:
        events = HostEvents(self.events_socket)
        touching = False
        try:
            async for message in ws:
                try:
                    event = page_message(message)
                except ValueError:
                    self.bad_messages += 1
                    continue
                if event["event"] == "touch":
                    if not event["contacts"] and not touching:
                        continue
                    touching = bool(event["contacts"])
                try:
                    await events.send(event)
                except OSError:
                    await ws.close(1011, "the VM's glue is gone")
                    return
        except ConnectionClosed:
            pass
        finally:
            if touching:            # a viewer that goes away lifts its fingers
                try:
                    await events.send({"event": "touch", "contacts": []})
                except OSError:
                    pass
            await events.close()

    # -- running --
    async def start(self) -> Viewer:
        if not self.vnc_socket.is_socket():
            raise ViewerError(f"the VM has no screen to show ({self.vnc_socket} is missing: "
                              "is it running, with a display in its profile?)")
        self._server = await serve(self._handler, self.host, self.port,
                                   process_request=self.process_request,
                                   max_size=MAX_VNC_MESSAGE, compression=None,
                                   ping_interval=None, server_header=None)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


async def serve_until_stopped(viewer: Viewer, ready: Callable[[Viewer], None],
                              stop: asyncio.Event | None = None) -> None:
    await viewer.start()
    ready(viewer)
    try:
        await (stop or asyncio.Event()).wait()
    finally:
        await viewer.stop()

