"""Viewer benchmark: touch-to-photon and frame delivery, tabvm's viewer against
stock noVNC on the same QEMU, in one run.

  python bench/viewer.py [--touches 200] [--seconds 10] [--width 1920 --height 1080]
                         [--json FILE]

One Debian desktop VM under TCG (the desktop image, virtio-gpu at the size
given, 2 vCPUs, 2 GiB) with both pointers of the comparison:
- tabvm's touchscreen, reached the way `tabvm view` reaches it: the viewer page
  (glue/viewer.py, noVNC on QEMU's VNC unix socket), Pointer Events -> the
  input WebSocket -> the host events `touch` -> QMP input-send-event;
- QEMU's stock `usb-tablet` bound to the display (`display=video0`, so VNC's
  pointer goes to it), reached by Debian's unmodified noVNC page
  (`vnc_lite.html`) on QEMU's own VNC WebSocket (127.0.0.1, this benchmark
  only; QEMU serves it at "/" only, hence `path=`): noVNC turns the touch into VNC pointer events.
In the guest, gromit-mpx (a touch-drawing client) draws where the pointer goes.
Both pages run in the same headless Chromium, one after the other, with the
same script injected before the page's own (CDP
Page.addScriptToEvaluateOnNewDocument): it notes the time of each touch's
`pointerdown` and watches every frame the page presents (noVNC's flip: a
drawImage onto the visible canvas) for the stroke's red at the touched pixel.

- touch-to-photon: a finger down at a new place, moved 60 CSS px in 4 steps and
  lifted (stock noVNC needs the move to start its drag); the time from the
  pointerdown to the first presented frame with the stroke there. Median and
  p95 over --touches touches per page (a 20 x 10 grid of places; half of them
  in each of two rounds, the pages' order swapped; one uncounted touch after
  each page load).
- frame delivery: the guest's root window changes colour (xsetroot through
  qemu-guest-agent, started at a host timestamp); the time until the page
  presents the new colour, 20 times per page (the guest agent's exec latency
  is in both); then --seconds of a full-screen animation (the root window
  flipping between two colours as fast as X does it), twice per page in
  alternation: frames per second the page presents, and distinct screens it
  shows per second (both pages see the same animation).

TCG dominates the absolute figures; the ratios (tabvm / stock) are the point.
Everything lives in a new_runtime_dir("bench-viewer"), removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import http.server
import json
import shutil
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from browser import Browser, available  # noqa: E402
from glue.desktop import wait_agent, wait_session  # noqa: E402
from glue.guest_agent import GuestAgent  # noqa: E402
from glue.hardware import QGA_SOCKET, VIDEO_ID, disk_device  # noqa: E402
from glue.host_events import HostEventServer  # noqa: E402
from glue.profile import builtin_profile, default_outputs  # noqa: E402
from glue.profile_spec import Display  # noqa: E402
from glue.qemu import Qemu  # noqa: E402
from glue.runtime import new_runtime_dir  # noqa: E402
from glue.screen_input import ScreenInput  # noqa: E402
from glue.session import DISK_NODE, QemuImg, disk_blockdev  # noqa: E402
from glue.viewer import Viewer, find_novnc  # noqa: E402
from tabvm.desktop_image import SESSION_CHECK, build_desktop_image, x_command  # noqa: E402

BOOT_TIMEOUT = 900.0

#: Injected into both pages before their own scripts.
PROBE = r"""
(() => {
  const P = window.__probe = { frames: 0, t0: null, armed: null, hits: [], seen: null,
                               colours: 0, lastColour: null };
  addEventListener('pointerdown', () => { P.t0 = performance.now(); }, true);
  const draw = CanvasRenderingContext2D.prototype.drawImage;
  CanvasRenderingContext2D.prototype.drawImage = function (...args) {
    const r = draw.apply(this, args);
    const c = this.canvas;
    if (c && c.isConnected) {
      P.frames += 1;
      const now = performance.now();
      if (P.armed) {
        const [x, y, rad] = P.armed;
        const d = this.getImageData(Math.max(0, x - rad), Math.max(0, y - rad),
                                    2 * rad + 1, 2 * rad + 1).data;
        for (let i = 0; i < d.length; i += 4) {
          if (d[i] >= 150 && d[i + 1] <= 40 && d[i + 2] <= 40) {
            P.hits.push(now - P.t0); P.armed = null; break;
          }
        }
      }
      if (P.watch) {
        const [x, y] = P.watch;
        const d = this.getImageData(x, y, 1, 1).data;
        const colour = (d[0] << 16) | (d[1] << 8) | d[2];
        if (colour !== P.lastColour) {
          P.lastColour = colour; P.colours += 1;
          P.seen = [colour, performance.timeOrigin + now];
        }
      }
    }
    return r;
  };
})();
"""


class BenchError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclasses.dataclass
class Page:
    name: str
    url: str
    pointer: str


def start_vm(root: Path, width: int, height: int, ws_port: int) -> Qemu:
    outputs = default_outputs()
    image = build_desktop_image(progress=lambda m: print(f"  image: {m}", flush=True))
    overlay = root / "disk.qcow2"
    QemuImg(outputs.qemu_img).create_overlay(image.path, "qcow2", overlay)
    config = builtin_profile(outputs, None, None, "tcg", memory="2048M", touch=True,
                             battery=False, cpus=2, display=Display("virtio-gpu", width, height),
                             qga_socket=root / QGA_SOCKET, serial_agent=False,
                             vnc=root / "vnc.sock")
    config = dataclasses.replace(
        config, blockdevs=config.blockdevs + (disk_blockdev(overlay),),
        devices=config.devices + (disk_device(DISK_NODE, "virtio", 1),
                                  f"usb-tablet,id=tablet,bus=xhci.0,display={VIDEO_ID}"),
        vnc_options=f",websocket=127.0.0.1:{ws_port}")
    return Qemu(config, root).start()


def guest(root: Path, *argv: str, wait: bool = True) -> None:
    with GuestAgent(root / QGA_SOCKET, timeout=30) as agent:
        if wait:
            agent.exec(list(argv), timeout=60)
        else:
            agent.cmd("guest-exec", path=argv[0], arg=list(argv[1:]))


def serve_viewer(root: Path) -> Viewer:
    viewer = Viewer(root)
    started = threading.Event()

    def run() -> None:
        async def main() -> None:
            await viewer.start()
            started.set()
            await asyncio.Event().wait()
        asyncio.run(main())
    threading.Thread(target=run, daemon=True).start()
    if not started.wait(10):
        raise BenchError("the viewer did not start")
    return viewer


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def serve_stock_novnc() -> str:
    handler = functools.partial(_Quiet, directory=str(find_novnc()))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{httpd.server_address[1]}"


def open_page(b: Browser, page: Page, size: tuple[int, int]) -> dict:
    b.open(page.url)
    b.wait(f"document.querySelector('canvas') && document.querySelector('canvas').width === "
           f"{size[0]} && window.__probe.frames > 0", 60, f"{page.name}'s picture")
    time.sleep(2)
    return b.js("const c = document.querySelector('canvas'); const r = c.getBoundingClientRect();"
                "return {x: r.left, y: r.top, w: r.width, h: r.height};")


def touch_to_photon(b: Browser, root: Path, page: Page, size: tuple[int, int], count: int
                    ) -> list[float]:
    pic = open_page(b, page, size)
    scale = pic["w"] / size[0]
    places = [(size[0] * (i + 0.5) / 20 - 40, size[1] * (j + 0.3) / 11)
              for j in range(10) for i in range(20)]
    # one touch first, not counted: stock noVNC's first touch on a new page
    # draws nothing (its gesture handler starts up); the same for both pages
    b.touch("touchStart", [(pic["x"] + 5, pic["y"] + 5)])
    b.touch("touchEnd", [])
    time.sleep(1)
    times: list[float] = []
    misses: list[int] = []
    for n in range(count):
        if n % len(places) == 0:
            guest(root, *x_command("gromit-mpx", "--clear"))
            time.sleep(1)
        gx, gy = places[n % len(places)]
        x, y = pic["x"] + (gx + 0.5) * scale, pic["y"] + (gy + 0.5) * scale
        b.js(f"window.__probe.armed = [{round(gx)}, {round(gy)}, 3];")
        b.touch("touchStart", [(x, y)])
        for step in range(1, 5):
            time.sleep(0.016)
            b.touch("touchMove", [(x + 15 * step, y)])
        b.touch("touchEnd", [])
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            hits = b.js("return window.__probe.hits.length;")
            if hits > len(times):
                break
            time.sleep(0.01)
        hits = b.js("return window.__probe.hits;")
        if len(hits) > len(times):
            times.append(hits[-1])
        else:
            misses.append(n)
            b.js("window.__probe.armed = null;")
        time.sleep(0.15)
    if misses:
        print(f"  {page.name}: {len(misses)} touches drew nothing seen within 5 s "
              f"(touches {misses})", flush=True)
    return times


def change_latency(b: Browser, root: Path, page: Page, size: tuple[int, int],
                   count: int = 20) -> list[float]:
    """Host timestamp of a root-window colour change asked through the guest
    agent -> the page presenting the new colour (ms)."""
    open_page(b, page, size)
    watch = (size[0] // 2, size[1] // 3)
    b.js(f"window.__probe.watch = [{watch[0]}, {watch[1]}];")
    latencies = []
    colours = ["#203040", "#405060"]
    for i in range(count):
        colour = colours[i % 2]
        want = int(colour[1:], 16)
        t0 = time.time() * 1000
        guest(root, *x_command("xsetroot", "-solid", colour), wait=False)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            seen = b.js("return window.__probe.seen;")
            if seen and seen[0] == want and seen[1] >= t0:
                latencies.append(seen[1] - t0)
                break
            time.sleep(0.005)
        time.sleep(0.3)
    return latencies


def animation_rate(b: Browser, page: Page, size: tuple[int, int], seconds: float
                   ) -> tuple[float, float]:
    """With the full-screen animation running: frames the page presents per
    second, and distinct screens (colour changes at the probe pixel) per second."""
    open_page(b, page, size)
    b.js(f"window.__probe.watch = [{size[0] // 2}, {size[1] // 3}];")
    time.sleep(1)
    f0, c0 = b.js("return [window.__probe.frames, window.__probe.colours];")
    t0 = time.monotonic()
    time.sleep(seconds)
    f1, c1 = b.js("return [window.__probe.frames, window.__probe.colours];")
    elapsed = time.monotonic() - t0
    return (f1 - f0) / elapsed, (c1 - c0) / elapsed


ANIMATION = ": xsetroot-loop; while :; do xsetroot -solid '#802020'; " \
    "xsetroot -solid '#208020'; done"


def stats(values: list[float]) -> str:
    if not values:
        return "none"
    v = sorted(values)
    p95 = v[min(len(v) - 1, round(0.95 * (len(v) - 1)))]
    return f"median {statistics.median(v):.0f} ms, p95 {p95:.0f} ms (n={len(v)})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--touches", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--width", type=int, default=1920)
    ap.add_argument("--height", type=int, default=1080)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if why := available():
        print(f"bench/viewer.py: {why}", file=sys.stderr)
        return 2
    size = (args.width, args.height)
    root = new_runtime_dir("bench-viewer")
    q = server = b = None
    try:
        ws_port = free_port()
        print(f"booting the desktop at {size[0]}x{size[1]} (TCG)...", flush=True)
        q = start_vm(root, *size, ws_port)
        deadline = time.monotonic() + BOOT_TIMEOUT
        wait_agent(q, root, deadline)
        wait_session(root, SESSION_CHECK, deadline)
        guest(root, "sh", "-c", "cd / && setsid " + " ".join(x_command("gromit-mpx", "--active"))
              + " </dev/null >/dev/null 2>&1 &")
        time.sleep(3)
        screen_input = ScreenInput(lambda events: q.cmd("input-send-event", events=events))
        server = HostEventServer(root, log=lambda *a, **k: None)
        screen_input.register(server)
        server.start()
        viewer = serve_viewer(root)
        stock = serve_stock_novnc()
        pages = [Page("tabvm", viewer.url, "touchscreen"),
                 Page("stock", f"{stock}/vnc_lite.html?host=127.0.0.1&port={ws_port}&scale=true&path=",
                      "usb-tablet")]
        b = Browser(1280, 720, init_script=PROBE)
        results: dict = {"size": list(size), "touches": {}, "frames": {}}
        half = max(1, args.touches // 2)
        for rnd in range(2):            # alternate the pages: noise hits both alike
            for page in (pages if rnd == 0 else pages[::-1]):
                print(f"touch-to-photon: {page.name} ({page.pointer}), {half} touches...",
                      flush=True)
                results["touches"].setdefault(page.name, []).extend(
                    touch_to_photon(b, root, page, size, half))
        for page in pages:
            print(f"frame delivery: {page.name}, screen change latency...", flush=True)
            results["frames"][page.name] = {
                "latency_ms": change_latency(b, root, page, size), "fps": [],
                "screens_per_s": []}
        guest(root, *x_command("sh", "-c", ANIMATION), wait=False)
        time.sleep(2)
        for rnd in range(2):
            for page in (pages if rnd == 0 else pages[::-1]):
                print(f"frame delivery: {page.name}, full-screen animation "
                      f"{args.seconds:.0f} s...", flush=True)
                fps, screens = animation_rate(b, page, size, args.seconds)
                results["frames"][page.name]["fps"].append(fps)
                results["frames"][page.name]["screens_per_s"].append(screens)
        guest(root, "pkill", "-f", "xsetroot-loop")
        guest(root, *x_command("xsetroot", "-solid", "#35648f"))
        print()
        t, s = results["touches"]["tabvm"], results["touches"]["stock"]
        print(f"touch-to-photon, tabvm viewer + touchscreen: {stats(t)}")
        print(f"touch-to-photon, stock noVNC + usb-tablet:   {stats(s)}")
        if t and s:
            print(f"  ratio tabvm/stock: median {statistics.median(t) / statistics.median(s):.2f}")
        for name in ("tabvm", "stock"):
            f = results["frames"][name]
            print(f"frame delivery, {name}: screen change -> page {stats(f['latency_ms'])}; "
                  f"animation {statistics.mean(f['fps']):.1f} frames/s "
                  f"({', '.join(f'{v:.1f}' for v in f['fps'])}), "
                  f"{statistics.mean(f['screens_per_s']):.1f} screens/s")
        ft, fs = results["frames"]["tabvm"], results["frames"]["stock"]
        if ft["latency_ms"] and fs["latency_ms"] and statistics.mean(fs["fps"]):
            print(f"  ratio tabvm/stock: latency "
                  f"{statistics.median(ft['latency_ms']) / statistics.median(fs['latency_ms']):.2f}"
                  f", frames/s {statistics.mean(ft['fps']) / statistics.mean(fs['fps']):.2f}")
        if args.json:
            args.json.write_text(json.dumps(results, indent=1))
        return 0
    except BenchError as exc:
        print(f"bench/viewer.py: {exc}", file=sys.stderr)
        return 1
    finally:
        if b is not None:
            b.close()
        if server is not None:
            server.stop()
        if q is not None:
            q.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
