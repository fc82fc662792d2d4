"""The viewer's parts without a VM: the screen -> touchscreen mapping, the
contact slots, the page's messages (fuzzed), the RFB resize client against a
scripted VNC server, and the web server's admission and relays against a real
host-event server and a stand-in VNC socket."""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from glue.host_events import HostEventServer
from glue.rfb import RfbError, set_desktop_size, set_desktop_size_message
from glue.runtime import new_runtime_dir
from glue.screen_input import ABS_MAX, ContactTracker, PointerState, ScreenInput, screen_to_abs
from glue.viewer import Viewer, find_novnc, page_message, socket_uid

# -- the mapping -------------------------------------------------------------------


def device_axis(value: int, logical_max: int) -> int:
    """QEMU's qemu_input_scale_axis into the touchscreen's logical range (0..max)."""
    return value * logical_max // ABS_MAX


def guest_pixel(logical: int, logical_max: int, size: int) -> float:
    """libinput's transform of an absolute axis onto a screen of ``size`` pixels."""
    return logical * size / (logical_max + 1)


@pytest.mark.parametrize("size", [480, 600, 768, 800, 1024, 1080, 1280, 1920, 2560, 3840])
def test_every_screen_pixel_lands_within_one_pixel(size):
    for logical_max in (4095, 2303):
        worst = 0.0
        for p in range(size):
            v = screen_to_abs(p, size)
            got = math.floor(guest_pixel(device_axis(v, logical_max), logical_max, size))
            worst = max(worst, abs(got - p))
        # +-1 pixel while the logical range has a unit per pixel; past that the
        # range is the resolution limit (2304 units over 3840 pixels: 1.7 each)
        units = logical_max + 1
        bound = 1 if size <= units else math.ceil(size / units) + 1
        assert worst <= bound, (size, logical_max, worst)


def test_mapping_ends_and_clamps():
    assert screen_to_abs(0, 1280) == 0
    assert screen_to_abs(1279, 1280) == ABS_MAX
    assert screen_to_abs(-5, 1280) == 0 and screen_to_abs(99999, 1280) == ABS_MAX
    assert screen_to_abs(0, 1) == ABS_MAX // 2


# -- contacts ----------------------------------------------------------------------


def kinds(events):
    return [(e["data"]["type"], e["data"]["slot"]) for e in events
            if e["data"]["type"] != "data"]


def test_contacts_begin_move_end_and_reuse_slots():
    t = ContactTracker()
    assert kinds(t.frame({7: (100, 200)})) == [("begin", 0)]
    ev = t.frame({7: (100, 200), 9: (5, 6)})
    assert kinds(ev) == [("begin", 1)]
    assert [e["data"]["value"] for e in ev if e["data"]["type"] == "data"] == [5, 6]
    assert t.frame({7: (100, 200), 9: (5, 6)}) == []          # nothing changed
    assert kinds(t.frame({9: (8, 6)})) == [("end", 0), ("update", 1)]
    end = t.frame({9: (8, 6)}) or t.frame({})
    assert kinds(end) == [("end", 1)] and end[0]["data"]["tracking-id"] == -1
    assert kinds(t.frame({3: (1, 1)})) == [("begin", 0)]      # the lowest free slot
    ids = [e["data"]["tracking-id"] for e in t.frame({3: (2, 2)})]
    assert len(set(ids)) == 1 and ids[0] > 0


def test_more_than_ten_contacts_are_dropped_and_counted():
    t = ContactTracker()
    ev = t.frame({i: (i, i) for i in range(12)})
    assert sorted(s for k, s in kinds(ev)) == list(range(10))
    assert t.dropped == 2


def test_pointer_frames():
    p = PointerState()
    ev = p.frame(10, 20, 0)
    assert [e["type"] for e in ev] == ["abs", "abs"]
    ev = p.frame(10, 20, 1)
    assert ev == [{"type": "btn", "data": {"button": "left", "down": True}}]
    ev = p.frame(11, 20, 4)
    assert [e["type"] for e in ev] == ["abs", "abs", "btn", "btn"]
    with pytest.raises(ValueError):
        p.frame(ABS_MAX + 1, 0, 0)
    with pytest.raises(ValueError):
        p.frame(0, 0, True)


def test_screen_input_sends_one_frame_per_change():
    sent = []
    s = ScreenInput(sent.append)
    assert s.touch([[1, 10, 10], [2, 20, 20]]) == {"down": 2, "sent": 6}
    assert s.touch([[1, 10, 10], [2, 20, 20]])["sent"] == 0
    s.touch([])
    assert len(sent) == 2
    for bad in ([[1, 10]], [[1, 10, 10], [1, 3, 3]], [[True, 1, 1]], [[1, -1, 0]],
                [[1, 0, ABS_MAX + 1]], "x", [[1, 1.5, 2]]):
        with pytest.raises(ValueError):
            s.touch(bad)
    assert len(sent) == 2


# -- the page's messages -----------------------------------------------------------


def test_page_messages():
    ev = page_message(json.dumps({"touch": [[1, 0, 799], [2, 1279, 0]], "w": 1280, "h": 800}))
    assert ev == {"event": "touch", "contacts": [[1, 0, ABS_MAX], [2, ABS_MAX, 0]]}
    ev = page_message(json.dumps({"mouse": [639.5, 399.5, 1], "w": 1280, "h": 800}))
    assert ev["event"] == "pointer" and ev["buttons"] == 1
    assert ev["x"] == round(639.5 * ABS_MAX / 1279)
    assert page_message('{"touch": [], "w": 1, "h": 1}') == {"event": "touch", "contacts": []}


def random_json(rng: random.Random, depth: int = 0):
    pick = rng.randrange(10 if depth < 3 else 6)
    if pick == 0:
        return rng.choice([0, 1, -1, 2**31, -2**31 - 1, 10**30, 1279, 800, 32767])
    if pick == 1:
        return rng.choice([0.5, -0.0, 1e308, float("inf"), float("nan"), 3.999])
    if pick == 2:
        return rng.choice(["", "touch", "mouse", "w", "h", "\x00", "é" * 50])
    if pick == 3:
        return rng.choice([True, False, None])
    if pick in (4, 5):
        return rng.randrange(-5, 5000)
    if pick in (6, 7):
        return [random_json(rng, depth + 1) for _ in range(rng.randrange(5))]
    keys = ["touch", "mouse", "w", "h", "x", "event"]
    return {rng.choice(keys): random_json(rng, depth + 1) for _ in range(rng.randrange(5))}


def test_page_messages_fuzzed_never_raise_anything_but_valueerror():
    """Random JSON documents, random near-valid ones and random bytes: a
    ValueError or a host event whose values the glue's handlers accept."""
    rng = random.Random(1414)
    accepted = 0
    for i in range(20000):
        if i % 4 == 3:                      # near-valid: right shape, random values
            w, h = rng.choice([1, 2, 800, 1280, 16384, 16385, 0]), rng.randrange(-1, 3000)
            num = lambda: rng.choice([rng.randrange(-10, 3000), rng.uniform(-5, 3000),
                                      rng.choice([True, None, "1", 1e300])])
            doc = ({"touch": [[rng.randrange(-3, 3), num(), num()]
                              for _ in range(rng.randrange(12))], "w": w, "h": h}
                   if rng.random() < 0.6 else
                   {"mouse": [num(), num(), rng.choice([0, 1, 7, 255, 256, -1, False])],
                    "w": w, "h": h})
        elif i % 3 == 0:
            doc = random_json(rng)
        elif i % 3 == 1:
            doc = {rng.choice(["touch", "mouse"]): random_json(rng, 1),
                   "w": random_json(rng, 3), "h": random_json(rng, 3)}
        else:
            doc = None
        try:
            text = json.dumps(doc) if doc is not None else \
                bytes(rng.randrange(256) for _ in range(rng.randrange(40))).decode("latin-1")
        except ValueError:
            continue
        try:
            ev = page_message(text)
        except ValueError:
            continue
        accepted += 1
        s = ScreenInput(lambda events: None)
        if ev["event"] == "touch":
            s.touch(ev["contacts"])
        else:
            s.mouse(ev["x"], ev["y"], ev["buttons"])
    assert accepted > 500                     # the fuzzer did reach the accepting paths
    with pytest.raises(ValueError):
        page_message("[" * 100000)


# -- the resize client, against a scripted VNC server ------------------------------


class FakeVnc:
    """A unix-socket RFB server that answers SetDesktopSize like QEMU (or
    misbehaves as told)."""

    def __init__(self, path: Path, mode: str = "qemu", status: int = 4):
        self.path, self.mode, self.status = path, mode, status
        self.received = b""
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.bind(str(path))
        self.sock.listen()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def read(self, c, n):
        buf = b""
        while len(buf) < n:
            chunk = c.recv(n - len(buf))
            if not chunk:
                raise EOFError
            buf += chunk
        self.received += buf
        return buf

    def serve(self):
        c, _ = self.sock.accept()
        with c:
            try:
                if self.mode == "garbage":
                    c.sendall(b"HTTP/1.1 200 OK\r\n\r\n")
                    return
                if self.mode == "silent":
                    time.sleep(3)
                    return
                c.sendall(b"RFB 003.008\n")
                self.read(c, 12)
                if self.mode == "refuse":
                    c.sendall(b"\x00" + struct.pack("!I", 7) + b"go away")
                    return
                c.sendall(b"\x01\x01")
                self.read(c, 1)
                c.sendall(struct.pack("!I", 0))
                self.read(c, 1)
                c.sendall(struct.pack("!HH", 1280, 800) + bytes(16) + struct.pack("!I", 4)
                          + b"QEMU")
                self.read(c, 8)                       # SetEncodings, one encoding
                head = self.read(c, 8)
                screens = head[6]
                self.read(c, 16 * screens)
                w, h = struct.unpack("!HH", head[2:6])
                # a bell and a server-initiated resize first, then the answer
                c.sendall(b"\x02")
                for reason, status in ((0, 0), (1, self.status)):
                    c.sendall(struct.pack("!BxH", 0, 1) +
                              struct.pack("!HHHHi", reason, status, 1280, 800, -308) +
                              struct.pack("!B3x", 1) + struct.pack("!IHHHHI", 0, 0, 0, 1280,
                                                                   800, 0))
                self.asked = (w, h)
            except EOFError:
                pass

    def close(self):
        self.sock.close()


@pytest.fixture
def rundir():
    d = new_runtime_dir("viewer-test")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_resize_request_is_answered(rundir):
    vnc = FakeVnc(rundir / "vnc.sock")
    r = set_desktop_size(rundir / "vnc.sock", 1024, 768)
    vnc.thread.join(5)
    assert vnc.asked == (1024, 768)
    assert (r.status, r.text, r.forwarded, r.before) == (4, "forwarded to the guest", True,
                                                        (1280, 800))
    assert set_desktop_size_message(1024, 768) in vnc.received
    vnc.close()


@pytest.mark.parametrize("mode, message", [
    ("garbage", "not a VNC server"), ("refuse", "go away"), ("silent", "in time"),
])
def test_resize_errors_are_rfb_errors(rundir, mode, message):
    vnc = FakeVnc(rundir / "vnc.sock", mode)
    with pytest.raises(RfbError, match=message):
        set_desktop_size(rundir / "vnc.sock", 1024, 768, timeout=1)
    vnc.close()
    with pytest.raises(RfbError):
        set_desktop_size(rundir / "missing.sock", 1024, 768)
    with pytest.raises(ValueError):
        set_desktop_size(rundir / "vnc.sock", 0, 768)


def test_vga_answer_is_not_forwarded(rundir):
    vnc = FakeVnc(rundir / "vnc.sock", status=3)
    r = set_desktop_size(rundir / "vnc.sock", 1024, 768)
    assert not r.forwarded and r.text == "invalid screen layout"
    vnc.close()


# -- who is connecting --------------------------------------------------------------


def test_socket_uid_names_our_uid():
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        c = socket.create_connection(srv.getsockname())
        conn, peer = srv.accept()
        with c, conn:
            assert socket_uid(peer, conn.getsockname()) == os.getuid()
            assert socket_uid(("127.0.0.1", 1), conn.getsockname()) is None


# -- the web server -----------------------------------------------------------------


class Glue:
    """What the viewer talks to: a host-event server with the lifecycle's touch
    and pointer handlers (frames recorded), and an echoing VNC socket."""

    def __init__(self, rundir: Path):
        self.frames: list[list[dict]] = []
        self.input = ScreenInput(self.frames.append)
        self.server = HostEventServer(rundir, log=lambda *a, **k: None)
        self.input.register(self.server)
        self.server.start()
        self.vnc = socket.socket(socket.AF_UNIX)
        self.vnc.bind(str(rundir / "vnc.sock"))
        self.vnc.listen()
        self.vnc_bytes = b""
        threading.Thread(target=self._echo, daemon=True).start()

    def _echo(self):
        while True:
            try:
                c, _ = self.vnc.accept()
            except OSError:
                return
            with c:
                c.sendall(b"RFB 003.008\n")
                while data := c.recv(65536):
                    self.vnc_bytes += data
                    c.sendall(data[::-1])

    def close(self):
        self.server.stop()
        self.vnc.close()


@pytest.fixture
def served(rundir):
    pytest.importorskip("websockets")
    try:
        find_novnc()
    except Exception as exc:
        pytest.skip(str(exc))
    glue = Glue(rundir)
    loop = asyncio.new_event_loop()
    viewer = Viewer(rundir)
    stop = asyncio.Event()
    started = threading.Event()

    async def main():
        await viewer.start()
        started.set()
        await stop.wait()
        await viewer.stop()

    t = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    t.start()
    assert started.wait(10)
    yield viewer, glue
    loop.call_soon_threadsafe(stop.set)
    t.join(10)
    glue.close()


def get(url: str, **headers: str) -> tuple[int, bytes, dict]:
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def test_pages_need_the_token_the_host_and_the_origin(served):
    viewer, _ = served
    status, body, headers = get(viewer.url)
    assert status == 200 and b"viewer.js" in body and "no-store" in headers["Cache-Control"]
    assert get(viewer.url + "novnc/core/rfb.js")[0] == 200
    assert get(viewer.url + "viewer.js")[2]["Content-Type"].startswith("text/javascript")
    assert get(viewer.origin + "/")[0] == 403
    assert get(viewer.origin + "/" + viewer.token[:-1] + "x/")[0] == 403
    assert get(viewer.origin + "/novnc/core/rfb.js")[0] == 403
    assert get(viewer.url, Host=f"evil.example:{viewer.port}")[0] == 403
    assert get(viewer.url, Origin="http://evil.example")[0] == 403
    assert get(viewer.url + "novnc/../../../../etc/passwd")[0] == 404
    assert get(viewer.url + "novnc/%2e%2e/%2e%2e/etc/passwd")[0] == 404
    assert get(viewer.url + "no-such-file.js")[0] == 404
    assert viewer.refused["no token"] == 3


def test_websockets_need_our_origin(served):
    viewer, _ = served
    ws_url = viewer.url.replace("http:", "ws:")
    for origin in (None, "http://evil.example", f"http://127.0.0.1:{viewer.port + 1}"):
        with pytest.raises(InvalidStatus) as exc:
            connect(ws_url + "input", origin=origin, open_timeout=5).close()
        assert exc.value.response.status_code == 403
    with pytest.raises(InvalidStatus):
        connect(viewer.origin.replace("http:", "ws:") + "/input", origin=viewer.origin,
                open_timeout=5).close()


@pytest.mark.skipif(os.getuid() != 0 or not shutil.which("setpriv"),
                    reason="needs root to run a client as another uid")
def test_another_uid_is_refused(served, rundir):
    viewer, glue = served
    client = ("import urllib.request, urllib.error, sys\n"
              "try:\n"
              f"    urllib.request.urlopen({viewer.url!r}, timeout=10)\n"
              "    print(200)\n"
              "except urllib.error.HTTPError as e:\n"
              "    print(e.code)\n")
    p = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        sys.executable, "-c", client], capture_output=True, timeout=60)
    assert p.stdout.strip() == b"403", p
    assert viewer.refused.get("other uid") == 1
    # nor can it reach QEMU's VNC socket or the host events beside it
    p = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        sys.executable, "-c",
                        "import socket; s = socket.socket(socket.AF_UNIX); "
                        f"s.connect({str(rundir / 'vnc.sock')!r})"],
                       capture_output=True, timeout=60)
    assert p.returncode != 0 and b"PermissionError" in p.stderr


def test_input_becomes_touch_frames_and_garbage_changes_nothing(served):
    viewer, glue = served
    ws_url = viewer.url.replace("http:", "ws:")
    with connect(ws_url + "input", origin=viewer.origin, open_timeout=5) as ws:
        ws.send(json.dumps({"touch": [[5, 0, 0], [6, 1279, 799]], "w": 1280, "h": 800}))
        rng = random.Random(7)
        for _ in range(300):
            ws.send(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64))))
            ws.send(json.dumps(random_json(rng)))
        ws.send(json.dumps({"mouse": [0, 0, 0], "w": 1, "h": 1}))
        deadline = time.monotonic() + 10
        while len(glue.frames) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    deadline = time.monotonic() + 10
    while len(glue.frames) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    first = glue.frames[0]
    values = [(e["data"]["slot"], e["data"]["axis"], e["data"]["value"]) for e in first
              if e["data"]["type"] == "data"]
    assert values == [(0, "x", 0), (0, "y", 0), (1, "x", ABS_MAX), (1, "y", ABS_MAX)]
    assert [e["type"] for e in glue.frames[1]] == ["abs", "abs"]
    # the viewer went away with two fingers down: they are lifted
    assert kinds(glue.frames[2]) == [("end", 0), ("end", 1)]
    assert len(glue.frames) == 3 and viewer.bad_messages >= 300


def test_vnc_is_relayed_byte_for_byte(served):
    viewer, glue = served
    ws_url = viewer.url.replace("http:", "ws:")
    with connect(ws_url + "vnc", origin=viewer.origin, open_timeout=5) as ws:
        assert ws.recv(timeout=5) == b"RFB 003.008\n"
        ws.send(b"abc")
        assert ws.recv(timeout=5) == b"cba"
        ws.send("text is not RFB")
        with pytest.raises(Exception):
            ws.recv(timeout=5)
    assert glue.vnc_bytes == b"abc"


def test_ctl_takes_json_lists_for_touch():
    from glue.ctl import parse_fields
    assert parse_fields(["contacts=[[1, 10, 20]]"]) == {"contacts": [[1, 10, 20]]}
    assert parse_fields(["contacts=[]", "x=3"]) == {"contacts": [], "x": 3}
    with pytest.raises(ValueError, match="not JSON"):
        parse_fields(["contacts=[[1,"])


def test_view_without_a_running_vm_is_a_one_line_error(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    for args, status in ((["no-such-profile-here"], 2), (["--port", "70000"], 2)):
        p = subprocess.run([sys.executable, "-m", "tabvm.cli", "view", *args],
                           capture_output=True, timeout=60, env=env)
        assert p.returncode == status, p
        assert len(p.stderr.decode().strip().splitlines()) == 1, p.stderr
        assert p.stderr.startswith(b"tabvm: error: ")


def test_viewer_refuses_a_vm_without_a_screen(rundir):
    with pytest.raises(Exception, match="no screen"):
        asyncio.run(Viewer(rundir).start())
