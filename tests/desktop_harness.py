"""The Debian desktop guest under the glue, reached the way a user reaches it:
`tabvm run` as its own process, `tabvm exec` (qemu-guest-agent) and
`tabvm screenshot` (PNG) as commands. No project code runs in the guest."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from lifecycle_harness import Glue
from tabvm.desktop_image import SESSION_CHECK, x_command
from tabvm.paths import REPO

#: How root in the guest runs an X client of the logged-in user's session
X_USER = x_command()
BOOT_TIMEOUT = 600          # a cold boot to the desktop under TCG on a busy 2-core machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tabvm(*args: str, timeout: float = 300, stdin: bytes | None = None
          ) -> subprocess.CompletedProcess:
    """The tabvm command, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "tabvm.cli", *args], capture_output=True,
                          timeout=timeout, input=stdin, env={**os.environ, "PYTHONPATH": str(REPO)})


def desktop_profile(directory: Path, name: str, base: dict[str, Any] | None = None,
                    **changes: Any) -> Path:
    """A profile of the desktop image: ``base`` (a loaded profile, default a small
    one) with ``changes`` (top-level keys; ``guest``/``network``/... replace those
    sections), its own state directory, TCG, and no suspend on its own."""
    data = base or {
        "guest": {"boot": "firmware", "firmware": "bios", "agent": "qemu-ga"},
        "memory_mib": 2048, "cpus": 2,
        "disk": {"base": "desktop", "bus": "virtio"},
        "display": {"adapter": "virtio-gpu", "width": 1280, "height": 800},
        "network": {"model": "virtio-net", "forwards": []},
        "devices": {"battery": {"source": "simulated"}, "touchscreen": {}},
    }
    data = {**data, "name": name, "accel": "tcg", "state_dir": str(directory / "state"),
            **changes}
    data["snapshot"] = {"template": True, "suspend_after_background_s": None,
                        "suspend_on_trim": None, "on_shutdown": "poweroff",
                        **data.get("snapshot", {}), **changes.get("snapshot", {})}
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


class Desktop:
    """A desktop VM run by a glue process, and what a test does with it."""

    def __init__(self, profile: Path, name: str, builddir: Path, state_dir: Path,
                 extra_args: tuple[str, ...] = (), interval: float = 5):
        self.name = name
        self.glue = Glue(profile, name, builddir, state_dir, extra_args=extra_args,
                         interval=interval)

    # -- the guest through qemu-guest-agent --
    def exec(self, *cmd: str, timeout: float = 120, wait: float = 0,
             stdin: bytes | None = None) -> subprocess.CompletedProcess:
        args = ["exec", "--wait", str(wait)] + (["--stdin"] if stdin is not None else [])
        return tabvm(*args, self.name, "--", *cmd, timeout=timeout, stdin=stdin)

    def sh(self, script: str, timeout: float = 120) -> str:
        """Run ``script`` as root in the guest; its stdout (AssertionError on failure)."""
        p = self.exec("sh", "-c", script, timeout=timeout)
        assert p.returncode == 0, (script, p.returncode, p.stdout, p.stderr)
        return p.stdout.decode()

    def x(self, *cmd: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """An X client in the user's session."""
        return self.exec(*X_USER, *cmd, timeout=timeout)

    def wait_session(self, timeout: float = BOOT_TIMEOUT) -> float:
        """Until the X session has its window manager; seconds it took."""
        t0 = time.monotonic()
        deadline = t0 + timeout
        last = None
        while time.monotonic() < deadline:
            if self.glue.proc.poll() is not None:
                raise AssertionError(f"the glue exited:\n{self.glue.text()}")
            last = self.exec(*SESSION_CHECK, wait=10, timeout=60)
            if last.returncode == 0:
                return time.monotonic() - t0
            time.sleep(2)
        raise AssertionError(f"no desktop session within {timeout} s: {last}\n"
                             f"{self.glue.text()[-3000:]}")

    # -- the screen --
    def screenshot(self, path: Path):
        """The screen as a Pillow image (RGB), through `tabvm screenshot`."""
        from PIL import Image
        p = tabvm("screenshot", self.name, str(path))
        assert p.returncode == 0, p.stderr.decode()
        with Image.open(path) as img:
            assert img.format == "PNG"
            return img.convert("RGB")

    def open_probe(self, colour: str = "#ff00ff", geometry: str = "30x8+200+150",
                   name: str = "tabvmprobe") -> dict[str, int]:
        """An xterm filled with ``colour`` (text, cursor and background alike; it
        runs ``sleep``, so no shell renames it) at the ``geometry`` given; its
        window's absolute position and size, as the X server reports them
        (xwininfo)."""
        self.sh(f"cd / && setsid {' '.join(X_USER)} xterm -name {name} -T {name} -bg '{colour}' "
                f"-fg '{colour}' -cr '{colour}' -bw 0 -geometry {geometry} -e sleep 3600 "
                "</dev/null >/dev/null 2>&1 &")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            p = self.x("xwininfo", "-name", name)
            text = p.stdout.decode()
            if p.returncode == 0 and "IsViewable" in text:
                return window_geometry(text)
            time.sleep(0.5)
        raise AssertionError(f"the probe window did not map: {p}")

    def close_probe(self, name: str = "tabvmprobe") -> None:
        self.exec("pkill", "-f", f"xterm -name {name}")

    def output_name(self) -> str:
        text = self.x("xrandr", "--current").stdout.decode()
        m = re.search(r"^(\S+) connected", text, re.M)
        assert m, text
        return m.group(1)


class InGuest:
    """A command run in the guest (`tabvm exec`) on a thread while the test
    acts: e.g. a libinput listener. ``settle`` seconds are given to it to
    start; ``output()`` waits for it and returns its stdout."""

    def __init__(self, vm: Desktop, *cmd: str, timeout: float = 120, settle: float = 4.0):
        self.result: list[subprocess.CompletedProcess] = []
        self.thread = threading.Thread(
            target=lambda: self.result.append(vm.exec(*cmd, timeout=timeout)))
        self.thread.start()
        time.sleep(settle)

    def output(self, timeout: float = 120) -> str:
        self.thread.join(timeout)
        assert self.result, "the guest command did not finish"
        return self.result[0].stdout.decode()


#: A touch-down as `libinput debug-events` prints it: seat slot, x/y in percent
TOUCH_DOWN = re.compile(r"TOUCH_DOWN\s+\+[\d.]+s\s+(\d+)\s+\(\d+\)\s+([\d.]+)/([\d.]+)")


def touch_downs(text: str) -> list[tuple[int, float, float]]:
    """The touch-downs in ``libinput debug-events`` output: (slot, x %, y %)."""
    return [(int(s), float(x), float(y)) for s, x, y in TOUCH_DOWN.findall(text)]


def touchscreen(vm: Desktop) -> tuple[str, str]:
    """The touchscreen's /dev/input/eventN and its `libinput list-devices` block."""
    text = vm.sh("libinput list-devices")
    for block in text.split("\n\n"):
        if re.search(r"^Capabilities:.*\btouch\b", block, re.M):
            m = re.search(r"^Kernel:\s+(\S+)", block, re.M)
            assert m, block
            return m.group(1), block
    raise AssertionError(f"no touch device in libinput list-devices:\n{text}")


def window_geometry(xwininfo: str) -> dict[str, int]:
    fields = {"x": r"Absolute upper-left X:\s+(-?\d+)", "y": r"Absolute upper-left Y:\s+(-?\d+)",
              "width": r"Width:\s+(\d+)", "height": r"Height:\s+(\d+)"}
    out = {}
    for key, pattern in fields.items():
        m = re.search(pattern, xwininfo)
        assert m, (key, xwininfo)
        out[key] = int(m.group(1))
    return out


def region_share(img, box: tuple[int, int, int, int], rgb: tuple[int, int, int]) -> float:
    """The share of pixels in ``box`` (x0, y0, x1, y1; clipped) that are ``rgb``."""
    x0, y0 = max(box[0], 0), max(box[1], 0)
    x1, y1 = min(box[2], img.width), min(box[3], img.height)
    if x1 <= x0 or y1 <= y0:
        return 0.0
    crop = img.crop((x0, y0, x1, y1))
    colours = crop.getcolors(maxcolors=(x1 - x0) * (y1 - y0))
    return sum(n for n, c in colours if c == rgb) / ((x1 - x0) * (y1 - y0))


def assert_window_shown(img, win: dict[str, int], rgb: tuple[int, int, int]) -> None:
    """The window's whole area has its colour, to the pixel, and the strips just
    outside it do not (the content is where the X server says the window is)."""
    x, y, w, h = win["x"], win["y"], win["width"], win["height"]
    assert region_share(img, (x, y, x + w, y + h), rgb) == 1.0, win
    for strip in ((x - 3, y, x, y + h), (x + w, y, x + w + 3, y + h),
                  (x, y - 3, x + w, y), (x, y + h, x + w, y + h + 3)):
        if strip[0] >= 0 and strip[1] >= 0 and strip[2] <= img.width and strip[3] <= img.height:
            assert region_share(img, strip, rgb) < 0.5, (strip, win)
