"""A real browser for the viewer's tests and benchmark: Debian's headless
Chromium driven by ChromeDriver (Selenium), with Chrome DevTools Protocol
commands for what a user's hand does: touches (several fingers at once, as
Pointer Events of type touch), the window's size, screenshots."""

from __future__ import annotations

import base64
import io
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

#: A closed network: no background traffic, no component updates (they fail here)
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--disable-dev-shm-usage", "--hide-scrollbars",
         "--force-device-scale-factor=1", "--touch-events=enabled")


def available() -> str | None:
    """Why there is no browser here, or None."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists():
            return f"{path} is missing (Debian packages chromium, chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed"
    return None


class Browser:
    def __init__(self, width: int = 1000, height: int = 700, init_script: str | None = None):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self.profile = Path(tempfile.mkdtemp(prefix="tabvm-chromium-"))
        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        for f in FLAGS:
            opts.add_argument(f)
        opts.add_argument(f"--user-data-dir={self.profile}")
        opts.add_argument(f"--window-size={width},{height}")
        self.driver = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))
        self.cdp("Emulation.setTouchEmulationEnabled", enabled=True, maxTouchPoints=10)
        if init_script:
            self.cdp("Page.addScriptToEvaluateOnNewDocument", source=init_script)
        self.resize(width, height)

    def cdp(self, method: str, **params: Any) -> Any:
        return self.driver.execute_cdp_cmd(method, params)

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def resize(self, width: int, height: int) -> None:
        """The page's viewport is ``width`` x ``height`` CSS pixels (= device pixels)."""
        self.cdp("Emulation.setDeviceMetricsOverride", width=width, height=height,
                 deviceScaleFactor=1, mobile=False)
        self.width, self.height = width, height

    def open(self, url: str) -> None:
        self.driver.get(url)

    def wait(self, script: str, timeout: float = 60, what: str = "") -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.js(f"return ({script});")
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what or script}")

    def screenshot(self):
        from PIL import Image
        data = self.cdp("Page.captureScreenshot", format="png")["data"]
        return Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB")

    def touch(self, kind: str, points: list[tuple[float, float]], ids: list[int] | None = None
              ) -> None:
        """touchStart | touchMove | touchEnd with the fingers at ``points``
        (client CSS pixels); a touchEnd lifts the fingers not in ``points``."""
        ids = ids if ids is not None else list(range(len(points)))
        self.cdp("Input.dispatchTouchEvent", type=kind,
                 touchPoints=[{"x": x, "y": y, "id": i, "radiusX": 1, "radiusY": 1,
                               "force": 1} for (x, y), i in zip(points, ids)])

    def stroke(self, start: tuple[float, float], dx: float, dy: float, steps: int = 4) -> None:
        """One finger down at ``start``, moved by (dx, dy), lifted."""
        x, y = start
        self.touch("touchStart", [(x, y)])
        for i in range(1, steps + 1):
            self.touch("touchMove", [(x + dx * i / steps, y + dy * i / steps)])
        self.touch("touchEnd", [])

    def mouse(self, kind: str, x: float, y: float, down: bool) -> None:
        """mousePressed | mouseMoved | mouseReleased at (x, y), left button."""
        self.cdp("Input.dispatchMouseEvent", type=kind, x=x, y=y,
                 button="left" if kind != "mouseMoved" or down else "none",
                 buttons=1 if down else 0, clickCount=1 if kind != "mouseMoved" else 0)

    def key(self, key: str, code: str, keycode: int) -> None:
        """A key pressed and released (e.g. "a", "KeyA", 65)."""
        for kind in ("keyDown", "keyUp"):
            self.cdp("Input.dispatchKeyEvent", type=kind, key=key, code=code,
                     windowsVirtualKeyCode=keycode, nativeVirtualKeyCode=keycode,
                     **({"text": key} if kind == "keyDown" else {}))

    def close(self) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)
