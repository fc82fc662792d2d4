"""Ask QEMU's VNC server for a new screen size: the RFB ``SetDesktopSize`` message.

The glue is not a viewer, but the host's display size (the tablet rotated, the
app resized in split screen) reaches the guest the way a viewer's window size
does: a VNC client sends ``SetDesktopSize`` (RFC 6143 + the ExtendedDesktopSize
extension, message 251) and QEMU passes the size to the display device as its
UI info, which a virtio GPU turns into a new preferred mode (EDID) and a
hotplug event for the guest. A display device without UI info support (the
standard VGA, bochs-display) answers "invalid screen layout" and keeps its size.

This is the handful of RFB messages that takes, written here (the Python VNC
clients, e.g. vncdotool, do not send SetDesktopSize): version 3.8, security
type None (QEMU's VNC on a unix socket in the private runtime directory has no
password), a shared ClientInit, SetEncodings with ExtendedDesktopSize, then
SetDesktopSize and the server's ExtendedDesktopSize answer.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["RfbError", "ResizeResult", "set_desktop_size", "STATUS"]

VERSION = b"RFB 003.008\n"
SECURITY_NONE = 1
MSG_SET_ENCODINGS = 2
MSG_SET_DESKTOP_SIZE = 251
MSG_FRAMEBUFFER_UPDATE = 0
MSG_BELL = 2
MSG_SERVER_CUT_TEXT = 3
ENCODING_DESKTOP_SIZE = -223
ENCODING_EXTENDED_DESKTOP_SIZE = -308
REASON_CLIENT = 1        # ExtendedDesktopSize x-position: the change was this client's request

#: ExtendedDesktopSize status codes (y-position); 4 is QEMU's own "forwarded to
#: the display device" (the guest decides, the screen changes later if at all)
STATUS = {0: "done", 1: "resize prohibited", 2: "out of resources",
          3: "invalid screen layout", 4: "forwarded to the guest"}
MAX_SIZE = 0xFFFF


class RfbError(OSError):
    """The VNC server could not be reached or spoke something unexpected."""


@dataclass(frozen=True)
class ResizeResult:
    status: int
    width: int          # the screen's size when the server answered
    height: int
    before: tuple[int, int]

    @property
    def forwarded(self) -> bool:
        return self.status in (0, 4)

    @property
    def text(self) -> str:
        return STATUS.get(self.status, f"status {self.status}")


class _Conn:
    def __init__(self, sock: socket.socket, deadline: float):
        self.sock, self.deadline = sock, deadline

    def read(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise RfbError("the VNC server did not answer in time")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(n - len(buf))
            except TimeoutError:
                raise RfbError("the VNC server did not answer in time") from None
            if not chunk:
                raise RfbError("the VNC server closed the connection")
            buf += chunk
        return buf

    def unpack(self, fmt: str) -> tuple:
        return struct.unpack(fmt, self.read(struct.calcsize(fmt)))


def _handshake(c: _Conn) -> tuple[int, int]:
    """Version, security None, shared ClientInit; the screen size of ServerInit."""
    version = c.read(12)
    if not version.startswith(b"RFB 003.") or not version.endswith(b"\n"):
        raise RfbError(f"not a VNC server: {version!r}")
    c.sock.sendall(VERSION)
    (count,) = c.unpack("!B")
    if count == 0:
        (length,) = c.unpack("!I")
        reason = c.read(min(length, 1024)).decode("utf-8", "replace")
        raise RfbError(f"the VNC server refused: {reason}")
    types = c.read(count)
    if SECURITY_NONE not in types:
        raise RfbError(f"the VNC server wants authentication (types {list(types)})")
    c.sock.sendall(bytes([SECURITY_NONE]))
    (result,) = c.unpack("!I")
    if result != 0:
        raise RfbError("the VNC server refused the connection")
    c.sock.sendall(b"\x01")                      # ClientInit: shared
    width, height = c.unpack("!HH")
    c.read(16)                                   # pixel format
    (name_len,) = c.unpack("!I")
    c.read(min(name_len, 1 << 16))
    return width, height


def set_desktop_size_message(width: int, height: int) -> bytes:
    """SetDesktopSize: the size and one screen covering it."""
    return struct.pack("!BxHHBx", MSG_SET_DESKTOP_SIZE, width, height, 1) + \
        struct.pack("!IHHHHI", 0, 0, 0, width, height, 0)


def _read_answer(c: _Conn) -> tuple[int, int, int]:
    """Messages until the ExtendedDesktopSize rectangle that answers this client:
    (status, width, height)."""
    while True:
        (kind,) = c.unpack("!B")
        if kind == MSG_BELL:
            continue
        if kind == MSG_SERVER_CUT_TEXT:
            _, length = c.unpack("!3sI")
            c.read(min(length, 1 << 20))
            continue
        if kind != MSG_FRAMEBUFFER_UPDATE:
            raise RfbError(f"unexpected VNC server message {kind}")
        (rects,) = c.unpack("!xH")
        for _ in range(rects):
            x, y, w, h, encoding = c.unpack("!HHHHi")
            if encoding == ENCODING_DESKTOP_SIZE:
                continue
            if encoding != ENCODING_EXTENDED_DESKTOP_SIZE:
                raise RfbError(f"unexpected VNC rectangle encoding {encoding}")
            (screens,) = c.unpack("!B3x")
            c.read(16 * screens)
            if x == REASON_CLIENT:
                return y, w, h


def set_desktop_size(vnc_socket: Path | str, width: int, height: int,
                     timeout: float = 5.0) -> ResizeResult:
    """Ask the VNC server on ``vnc_socket`` (a unix socket) for a ``width`` x
    ``height`` screen; what it answered. RfbError if it cannot be asked."""
    if not (1 <= width <= MAX_SIZE and 1 <= height <= MAX_SIZE):
        raise ValueError(f"a screen size is 1..{MAX_SIZE} per side, not {width}x{height}")
    deadline = time.monotonic() + timeout
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(vnc_socket))
            c = _Conn(sock, deadline)
            before = _handshake(c)
            sock.sendall(struct.pack("!BxHi", MSG_SET_ENCODINGS, 1,
                                     ENCODING_EXTENDED_DESKTOP_SIZE))
            sock.sendall(set_desktop_size_message(width, height))
            status, w, h = _read_answer(c)
    except RfbError:
        raise
    except OSError as exc:
        raise RfbError(f"VNC server {vnc_socket}: {exc.strerror or exc}") from None
    return ResizeResult(status, w, h, before)
