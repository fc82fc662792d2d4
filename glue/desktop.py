"""Knowing when a graphical guest is ready: its agent answers, its session runs,
and its screen shows something that has stopped changing.

Used where the glue must wait for a desktop on its own: the golden template of a
firmware-booted guest, the demo, the benchmark. ``vm`` is anything with QMP's
``cmd`` (a glue.qemu.Qemu or the lifecycle's VmHandle).

- The agent: QMP ``query-chardev`` says when the guest opened qemu-guest-agent's
  port; then ``guest-ping`` must answer.
- The session: a command the guest image names (``session_check``, run through
  the agent) must succeed, e.g. the built-in desktop's X server has a window
  manager. Without one, the screen alone decides.
- The screen: two screenshots ``settle_s`` apart with the same pixels (PNG
  pixels, compared as PPM) that are not a single colour (a blank or cleared
  screen is not a desktop).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

from .guest_agent import GuestAgent, GuestAgentError
from .hardware import QGA_CHARDEV_ID, QGA_SOCKET


class HasQmp(Protocol):
    def cmd(self, name: str, **args: Any) -> Any: ...


class DesktopTimeout(RuntimeError):
    pass


@dataclass(frozen=True)
class Ready:
    agent_s: float | None         # seconds until the agent answered
    session_s: float | None       # until the session check succeeded
    screen_s: float               # until the screen settled
    screenshot: Path              # the settled screen


def agent_open(vm: HasQmp) -> bool:
    """The guest has qemu-guest-agent's virtio-serial port open."""
    return any(c.get("label") == QGA_CHARDEV_ID and c.get("frontend-open")
               for c in vm.cmd("query-chardev"))


def wait_agent(vm: HasQmp, rundir: Path, deadline: float) -> None:
    """Until qemu-guest-agent answers a ping (DesktopTimeout at ``deadline``)."""
    while time.monotonic() < deadline:
        if agent_open(vm):
            try:
                with GuestAgent(rundir / QGA_SOCKET, timeout=5) as agent:
                    agent.ping()
                return
            except GuestAgentError:
                pass
        time.sleep(0.5)
    raise DesktopTimeout("qemu-guest-agent did not answer")


def wait_session(rundir: Path, check: Sequence[str], deadline: float) -> None:
    """Until ``check`` exits 0 in the guest."""
    last = ""
    while time.monotonic() < deadline:
        try:
            with GuestAgent(rundir / QGA_SOCKET, timeout=10) as agent:
                result = agent.exec(check, timeout=20)
            if result.status == 0:
                return
            last = (result.stderr or result.stdout).decode(errors="replace").strip()
        except GuestAgentError as exc:
            last = str(exc)
        time.sleep(1)
    raise DesktopTimeout(f"the guest's session is not up ({' '.join(check)}: {last[-200:]})")


def screendump(vm: HasQmp, path: Path, fmt: str = "png") -> bytes:
    vm.cmd("screendump", filename=str(path), format=fmt)
    return path.read_bytes()


_PPM_HEADER = re.compile(rb"P6\s+(\d+)\s+(\d+)\s+255\s")


def ppm_pixels(ppm: bytes) -> tuple[int, int, bytes]:
    """(width, height, RGB bytes) of a binary PPM as QEMU writes it (the pixels
    start after exactly one whitespace byte: they may begin with more)."""
    m = _PPM_HEADER.match(ppm)
    if not m:
        raise ValueError("not an 8-bit binary PPM")
    width, height = int(m.group(1)), int(m.group(2))
    pixels = ppm[m.end():]
    if len(pixels) != width * height * 3:
        raise ValueError(f"a {width}x{height} PPM with {len(pixels)} bytes of pixels")
    return width, height, pixels


def uniform(pixels: bytes) -> bool:
    """Every pixel has the first pixel's colour."""
    return pixels == pixels[:3] * (len(pixels) // 3)


def wait_screen(vm: HasQmp, rundir: Path, deadline: float, settle_s: float = 2.0) -> Path:
    """Until two screenshots ``settle_s`` apart are the same and not one colour;
    the settled screen as PNG."""
    shot, previous = rundir / "settle.ppm", b""
    try:
        while time.monotonic() < deadline:
            _, _, pixels = ppm_pixels(screendump(vm, shot, "ppm"))
            if pixels == previous and not uniform(pixels):
                png = rundir / "settled.png"
                screendump(vm, png)
                return png
            previous = pixels
            time.sleep(settle_s)
    finally:
        shot.unlink(missing_ok=True)
    raise DesktopTimeout("the screen did not settle on a desktop")


def wait_desktop(vm: HasQmp, rundir: Path, timeout: float, agent: bool = True,
                 session_check: Sequence[str] | None = None,
                 progress: Callable[[str], None] = lambda m: None) -> Ready:
    """Wait for the guest's desktop (see the module's docstring); how long each
    part took. DesktopTimeout after ``timeout`` seconds."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    agent_s = session_s = None
    if agent:
        wait_agent(vm, rundir, deadline)
        agent_s = time.monotonic() - t0
        progress(f"guest agent answered after {agent_s:.1f} s")
        if session_check:
            wait_session(rundir, session_check, deadline)
            session_s = time.monotonic() - t0
            progress(f"session up after {session_s:.1f} s")
    shot = wait_screen(vm, rundir, deadline)
    return Ready(agent_s, session_s, time.monotonic() - t0, shot)
