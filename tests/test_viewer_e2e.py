"""`tabvm view` for real: the Debian desktop guest under TCG, its screen in
headless Chromium through the viewer page (noVNC on QEMU's VNC socket), touches
dispatched as a user's fingers (Pointer Events of type touch, one and two at
once) and checked where the guest's own stacks see them: libinput in the guest
(`libinput debug-events`, through qemu-guest-agent) and a touch-drawing client
(gromit-mpx), whose strokes the next screenshot must have under the fingers."""

from __future__ import annotations

import math
import os
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import browser as browser_mod
from conftest import REPO
from desktop_harness import (Desktop, InGuest, X_USER, desktop_profile, region_share, tabvm,
                             touch_downs, touchscreen)

pytestmark = pytest.mark.e2e

SIZES = ((1000, 700), (620, 900))   # landscape (bars left/right), portrait (top/bottom)
GRID = (0.12, 0.5, 0.88)            # 9 points spread over the picture


class Viewer:
    """`tabvm view` as its own process; its URL."""

    def __init__(self, name: str, tmp: Path):
        url_file = tmp / "viewer-url"
        url_file.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tabvm.cli", "view", name, "--url-file", str(url_file)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(REPO)})
        deadline = time.monotonic() + 30
        while not url_file.exists() or not url_file.read_text().strip():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"tabvm view did not start: {self.proc.stdout.read()}")
            time.sleep(0.1)
        self.url = url_file.read_text().strip()
        assert oct(url_file.stat().st_mode & 0o777) == "0o600"

    def stop(self) -> str:
        self.proc.terminate()
        out, _ = self.proc.communicate(timeout=20)
        return out.decode()


@pytest.fixture(scope="module")
def setup(desktop_image, build_outputs, tmp_path_factory):
    if why := browser_mod.available():
        pytest.skip(why)
    tmp = tmp_path_factory.mktemp("viewer")
    profile = desktop_profile(tmp, "desktop-view")
    vm = Desktop(profile, "desktop-view", build_outputs.root, tmp / "state")
    vm.tmp = tmp
    viewer = browser = None
    try:
        vm.glue.running(timeout=120)
        vm.wait_session()
        vm.touch_node, _ = touchscreen(vm)
        start_drawing(vm)
        viewer = Viewer(vm.name, tmp)
        browser = browser_mod.Browser(*SIZES[0])
        browser.open(viewer.url)
        wait_picture(browser, (1280, 800))
        yield vm, viewer, browser
    finally:
        if browser is not None:
            browser.close()
        if viewer is not None:
            print(viewer.stop())
        vm.glue.stop()


def wait_picture(browser, size: tuple[int, int], timeout: float = 60) -> dict:
    """Until the page shows the guest's screen at ``size``; the picture's place
    in the page (client CSS pixels)."""
    w, h = size
    browser.wait("window.tabvm && window.tabvm.connected && "
                 f"document.querySelector('#screen canvas') && "
                 f"document.querySelector('#screen canvas').width === {w} && "
                 f"document.querySelector('#screen canvas').height === {h}",
                 timeout, what=f"the guest's {w}x{h} screen in the page")
    time.sleep(0.5)     # noVNC rescales on the next resize observation
    return picture(browser)


def picture(browser) -> dict:
    return browser.js("const r = document.querySelector('#screen canvas')"
                      ".getBoundingClientRect();"
                      "return {x: r.left, y: r.top, width: r.width, height: r.height};")


def grid_points(pic: dict) -> list[tuple[float, float]]:
    return [(pic["x"] + fx * pic["width"], pic["y"] + fy * pic["height"])
            for fy in GRID for fx in GRID]


def guest_pixel(browser, x: float, y: float) -> tuple[int, int, int, int]:
    return tuple(browser.js("return window.tabvm.guestPixel(arguments[0], arguments[1], false)",
                            x, y))


class Listener(InGuest):
    """`libinput debug-events` on the touchscreen in the guest while a test
    touches; the touch-down positions it printed, in percent of the device."""

    def __init__(self, vm: Desktop, seconds: int):
        super().__init__(vm, "timeout", str(seconds), "libinput", "debug-events", "--device",
                         vm.touch_node, timeout=seconds + 60)

    def downs(self) -> list[tuple[int, float, float]]:
        self.text = self.output()
        return touch_downs(self.text)


def check_downs(downs, expected, size, text=""):
    """Each touch-down libinput saw is on the guest pixel expected (+-1 px)."""
    w, h = size
    assert len(downs) == len(expected), (downs, expected, text)
    for (_, px, py), (ex, ey) in zip(downs, expected):
        gx, gy = math.floor(px / 100 * w), math.floor(py / 100 * h)
        assert abs(gx - ex) <= 1 and abs(gy - ey) <= 1, ((gx, gy), (ex, ey), downs)


def red_near(img, x: int, y: int, r: int = 6) -> float:
    """The share of gromit-mpx's red pen (drawn as (191, 0, 0) here) in the box
    of radius ``r`` around (x, y)."""
    box = (max(x - r, 0), max(y - r, 0), min(x + r + 1, img.width), min(y + r + 1, img.height))
    crop = img.crop(box)
    pixels = list(crop.get_flattened_data()) if hasattr(crop, 'get_flattened_data') \
        else list(crop.getdata())
    return sum(1 for p in pixels if p[0] >= 150 and p[1] <= 40 and p[2] <= 40) / len(pixels)


def start_drawing(vm: Desktop) -> None:
    """gromit-mpx, drawing, over the whole screen. (It stops drawing when the
    screen's size changes: started again after one.)"""
    vm.exec("pkill", "-x", "gromit-mpx")
    vm.sh(f"cd / && setsid {' '.join(X_USER)} gromit-mpx --active </dev/null >/dev/null 2>&1 &")
    vm.exec("sleep", "2")


def clear_strokes(vm: Desktop) -> None:
    vm.x("gromit-mpx", "--clear")
    time.sleep(1)


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_touches_land_on_the_guest_pixel_under_the_finger(setup, size):
    vm, viewer, browser = setup
    browser.resize(*size)
    pic = wait_picture(browser, (1280, 800))
    # letterboxing: the picture keeps the guest's aspect and is centred
    assert abs(pic["width"] / pic["height"] - 1280 / 800) < 0.01
    assert min(pic["x"], pic["y"]) >= 0 and abs(pic["x"] * 2 + pic["width"] - size[0]) <= 1 \
        and abs(pic["y"] * 2 + pic["height"] - size[1]) <= 1
    clear_strokes(vm)
    points = grid_points(pic)
    expected = [guest_pixel(browser, x, y)[:2] for x, y in points]
    listener = Listener(vm, 40)
    step = 14 * pic["width"] / 1280             # a stroke of ~14 guest pixels
    for x, y in points:                         # one finger each
        browser.stroke((x, y), step, 0)
        time.sleep(0.4)
    # two fingers at once: the first and last grid points, then the two others
    # of the diagonal's corners
    pairs = [(points[0], points[8]), (points[2], points[6])]
    for a, b in pairs:
        browser.touch("touchStart", [a, b])
        time.sleep(0.3)
        browser.touch("touchEnd", [])
        time.sleep(0.4)
    downs = listener.downs()
    pair_expected = [guest_pixel(browser, *p)[:2] for pair in pairs for p in pair]
    check_downs(downs, expected + pair_expected, (1280, 800), listener.text)
    # two at once: the pair's touch-downs are in two different slots
    assert {downs[9][0], downs[10][0]} == {0, 1} and {downs[11][0], downs[12][0]} == {0, 1}
    # the drawing client drew where each finger went down
    time.sleep(1)
    shot = vm.screenshot(vm.tmp / f"strokes-{size[0]}.png")
    for ex, ey in expected:
        assert red_near(shot, ex + 7, ey) > 0.05, ((ex, ey), "no stroke there")
    # and not elsewhere: a place no finger touched is clean
    assert red_near(shot, 640, 200, 20) == 0.0


def test_mouse_and_keys_from_the_page(setup):
    """The mouse reaches the touchscreen's mouse collection (libinput: absolute
    pointer events of the touchscreen's mouse device; the drawing client draws
    where it was dragged); keys reach the guest's PS/2 keyboard through noVNC."""
    vm, viewer, browser = setup
    browser.resize(*SIZES[0])
    pic = wait_picture(browser, (1280, 800))
    clear_strokes(vm)
    listener = InGuest(vm, "sh", "-c", "timeout 25 libinput debug-events --show-keycodes",
                       timeout=90)
    x, y = pic["x"] + pic["width"] * 0.3, pic["y"] + pic["height"] * 0.6
    expected = guest_pixel(browser, x, y)[:2]
    browser.mouse("mouseMoved", x, y, False)
    browser.mouse("mousePressed", x, y, True)
    for i in range(1, 5):
        browser.mouse("mouseMoved", x + i * 4, y, True)
    browser.mouse("mouseReleased", x + 16, y, False)
    time.sleep(1)
    browser.key("a", "KeyA", 65)
    out = listener.output()
    abs_lines = [line for line in out.splitlines() if "POINTER_MOTION_ABSOLUTE" in line]
    assert abs_lines and any("POINTER_BUTTON" in line and "BTN_LEFT" in line and "pressed" in line
                             for line in out.splitlines()), out
    # the first absolute position is the pixel under the mouse: "X/Y" in screen-mm
    # terms libinput prints as percent of the device
    m = re.search(r"POINTER_MOTION_ABSOLUTE\s+\+[\d.]+s\s+([\d.]+)/\s*([\d.]+)", abs_lines[0])
    assert m, abs_lines[0]
    gx, gy = float(m.group(1)) / 100 * 1280, float(m.group(2)) / 100 * 800
    assert abs(gx - expected[0]) <= 2 and abs(gy - expected[1]) <= 2, (gx, gy, expected)
    assert "KEY_A (30) pressed" in out and "KEY_A (30) released" in out, out
    shot = vm.screenshot(vm.tmp / "mouse-stroke.png")
    assert red_near(shot, expected[0] + 5, expected[1]) > 0.05


def test_page_shows_the_guest_screen(setup):
    vm, viewer, browser = setup
    browser.resize(*SIZES[0])
    pic = wait_picture(browser, (1280, 800))
    clear_strokes(vm)
    win = vm.open_probe(geometry="30x8+300+200")
    try:
        time.sleep(2)
        guest = vm.screenshot(vm.tmp / "guest.png")
        page = browser.screenshot()
    finally:
        vm.close_probe()
    box = tuple(round(v) for v in (pic["x"], pic["y"], pic["x"] + pic["width"],
                                   pic["y"] + pic["height"]))
    shown = page.crop(box)
    expect = guest.resize(shown.size)
    diff = sum(abs(a - b) for a, b in zip(shown.tobytes(), expect.tobytes())) \
        / (shown.width * shown.height * 3)
    assert diff < 6, f"the page's picture differs from the guest's screen by {diff:.1f}/255"
    # the probe window is where the guest has it, scaled; the bars are black
    s = pic["width"] / 1280
    x0, y0 = pic["x"] + win["x"] * s, pic["y"] + win["y"] * s
    inner = (round(x0) + 2, round(y0) + 2, round(x0 + win["width"] * s) - 2,
             round(y0 + win["height"] * s) - 2)
    assert region_share(page, inner, (255, 0, 255)) > 0.95
    if pic["x"] >= 2:
        assert region_share(page, (0, 0, int(pic["x"]) - 1, page.height), (0, 0, 0)) == 1.0
    else:
        assert region_share(page, (0, 0, page.width, int(pic["y"]) - 1), (0, 0, 0)) == 1.0


def test_the_display_event_resizes_the_guest_and_touches_follow(setup):
    vm, viewer, browser = setup
    browser.resize(*SIZES[0])
    rundir = vm.glue.rundir
    try:
        p = tabvm("ctl", str(rundir), "display", "width=1024", "height=768")
        assert p.returncode == 0 and b"forwarded" in p.stdout, p
        deadline = time.monotonic() + 60
        while vm.screenshot(vm.tmp / "resized.png").size != (1024, 768):
            assert time.monotonic() < deadline, "the guest kept its size"
            time.sleep(1)
        pic = wait_picture(browser, (1024, 768))
        assert abs(pic["width"] / pic["height"] - 1024 / 768) < 0.01
        start_drawing(vm)
        points = grid_points(pic)[::2]
        expected = [guest_pixel(browser, x, y)[:2] for x, y in points]
        listener = Listener(vm, 25)
        for x, y in points:
            browser.stroke((x, y), 14 * pic["width"] / 1024, 0)
            time.sleep(0.4)
        check_downs(listener.downs(), expected, (1024, 768), listener.text)
        shot = vm.screenshot(vm.tmp / "strokes-1024.png")
        for ex, ey in expected:
            assert red_near(shot, ex + 7, ey) > 0.05, ((ex, ey), "no stroke there")
    finally:
        tabvm("ctl", str(rundir), "display", "width=1280", "height=800")
        deadline = time.monotonic() + 60
        while vm.screenshot(vm.tmp / "back.png").size != (1280, 800) \
                and time.monotonic() < deadline:
            time.sleep(1)
        start_drawing(vm)
    wait_picture(browser, (1280, 800))


def test_refused_without_token_from_other_origins_and_other_uids(setup):
    vm, viewer, browser = setup
    import urllib.error
    import urllib.request
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    origin = viewer.url.split("/", 3)
    origin = f"{origin[0]}//{origin[2]}"

    def status(url, **headers):
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                        timeout=10) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code
    assert status(viewer.url) == 200
    assert status(origin + "/") == 403
    assert status(viewer.url, Origin="http://evil.example") == 403
    for url, who in ((origin + "/vnc", origin), (viewer.url.replace("http:", "ws:") + "vnc",
                                                 "http://evil.example")):
        with pytest.raises(InvalidStatus):
            connect(url.replace("http:", "ws:"), origin=who, open_timeout=5).close()
    if os.getuid() == 0 and shutil.which("setpriv"):
        nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable,
                  "-c"]
        p = subprocess.run(nobody + [
            "import urllib.request, urllib.error\n"
            "try:\n"
            f"    urllib.request.urlopen({viewer.url!r}, timeout=10); print(200)\n"
            "except urllib.error.HTTPError as e:\n"
            "    print(e.code)\n"], capture_output=True, timeout=60)
        assert p.stdout.strip() == b"403", p
        vnc = vm.glue.rundir / "vnc.sock"
        assert vnc.is_socket()
        p = subprocess.run(nobody + ["import socket; s = socket.socket(socket.AF_UNIX); "
                                     f"s.connect({str(vnc)!r})"], capture_output=True, timeout=60)
        assert p.returncode != 0 and b"PermissionError" in p.stderr, p


def test_garbage_and_reconnects_change_nothing(setup):
    """Random bytes on the VNC relay, random messages on the input socket,
    viewers that come and go: the guest sees no input, its screen is the same,
    QEMU runs on."""
    vm, viewer, browser = setup
    from websockets.sync.client import connect
    browser.resize(*SIZES[0])
    wait_picture(browser, (1280, 800))
    time.sleep(2)
    before = vm.screenshot(vm.tmp / "before-garbage.png")
    listener = Listener(vm, 30)
    base = viewer.url.replace("http:", "ws:")
    origin = "http://" + viewer.url.split("/")[2]
    rng = random.Random(2026)
    for i in range(40):
        try:
            with connect(base + "vnc", origin=origin, open_timeout=5) as ws:
                if i % 2:
                    ws.recv(timeout=5)          # the server's RFB version first
                for _ in range(rng.randrange(1, 6)):
                    ws.send(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))))
        except Exception:
            pass            # QEMU closing on garbage is what should happen
        with connect(base + "input", origin=origin, open_timeout=5) as ws:
            for _ in range(20):
                junk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 80)))
                ws.send(junk if rng.random() < 0.5 else junk.decode("latin-1"))
    browser.driver.refresh()                    # the page itself reconnects
    wait_picture(browser, (1280, 800))
    downs = listener.downs()
    assert downs == [], listener.text
    assert "TOUCH" not in listener.text and "POINTER" not in listener.text, listener.text
    after = vm.screenshot(vm.tmp / "after-garbage.png")
    # the same screen, but for the panel's clock (bottom right), which ticks
    for box in ((0, 0, 1280, 768), (0, 768, 1000, 800)):
        assert before.crop(box).tobytes() == after.crop(box).tobytes(), box
    p = tabvm("ctl", str(vm.glue.rundir), "status")
    assert p.returncode == 0 and b'"running"' in p.stdout, p
