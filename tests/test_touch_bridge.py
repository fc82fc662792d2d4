"""Tests of glue.touch_bridge: evdev multitouch (type B) records in, QMP
input-send-event calls out. Records go through a pipe; then, where the host has
/dev/uinput and /dev/input, the same scenarios run on a real virtual touchscreen."""

from __future__ import annotations

import errno
import fcntl
import os
import random
import struct
import threading
import time
from pathlib import Path

import pytest

from glue import touch_bridge as tb
from glue.touch_bridge import EVENT, AbsInfo, TouchBridge, scale

SYN, KEY, ABS = 0, 1, 3
SLOT, TID, X, Y, DIST = 0x2F, 0x39, 0x35, 0x36, 0x3B
BTN_TOUCH = 0x14A
REPORT = (SYN, 0, 0)
DROPPED = (SYN, 3, 0)
XR, YR = (0, 4095), (0, 2047)


def sx(v: int) -> int:
    return v * 32767 // 4095


def sy(v: int) -> int:
    return v * 32767 // 2047


def mtt(kind: str, slot: int, tid: int, axis: str = "x", value: int = 0) -> dict:
    return {"type": "mtt", "data": {"type": kind, "slot": slot, "tracking-id": tid,
                                    "axis": axis, "value": value}}


def at(kind: str, slot: int, tid: int, x: int, y: int) -> list[dict]:
    """A begin/update record and its two data records (x, y in source units)."""
    return [mtt(kind, slot, tid), mtt("data", slot, tid, "x", sx(x)),
            mtt("data", slot, tid, "y", sy(y))]


def btn(down: bool) -> dict:
    return {"type": "btn", "data": {"down": down, "button": "touch"}}


def pack(events) -> bytes:
    return b"".join(EVENT.pack(0, 0, *e) for e in events)


class Recorder:
    """A fake qmp_send that keeps the calls."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[str, dict]] = []
        self.fail = fail

    def __call__(self, name: str, **args) -> None:
        self.calls.append((name, args))
        if self.fail:
            raise RuntimeError("VM not running")

    @property
    def frames(self) -> list[list[dict]]:
        assert all(name == "input-send-event" for name, _ in self.calls)
        return [args["events"] for _, args in self.calls]


def guest_view(frames: list[list[dict]]) -> tuple[dict[int, dict], bool]:
    """Applies the QMP events the way a device would, checking their consistency;
    returns {slot: {"tid", "x", "y"}} of live contacts and the touch button."""
    slots: dict[int, dict] = {}
    down = False
    for events in frames:
        assert events, "an empty input-send-event call"
        for e in events:
            if e["type"] == "btn":
                assert set(e["data"]) == {"down", "button"} and e["data"]["button"] == "touch"
                down = e["data"]["down"]
                continue
            assert e["type"] == "mtt"
            d = e["data"]
            assert set(d) == {"type", "slot", "tracking-id", "axis", "value"}
            n, tid = d["slot"], d["tracking-id"]
            assert 0 <= n < 10 and d["axis"] in ("x", "y")
            assert tid == -1 if d["type"] == "end" else tid >= 0
            assert 0 <= d["value"] <= 32767
            if d["type"] == "begin":
                assert n not in slots
                slots[n] = {"tid": tid}
            elif d["type"] == "end":
                assert n in slots
                del slots[n]
            else:
                assert slots[n]["tid"] == tid
                if d["type"] == "data":
                    slots[n][d["axis"]] = d["value"]
                else:
                    assert d["type"] == "update"
            if d["type"] != "data":
                assert (d["axis"], d["value"]) == ("x", 0)
    return slots, down


def run_pipe(events, width_range=XR, height_range=YR, qmp=None,
             **kw) -> tuple[Recorder, TouchBridge]:
    """Runs a bridge over a pipe carrying events (bytes or triples) until EOF."""
    data = events if isinstance(events, bytes) else pack(events)
    r, w = os.pipe()
    qmp = qmp or Recorder()

    def write():
        os.write(w, data)  # may block on a full pipe until the bridge reads
        os.close(w)
    writer = threading.Thread(target=write)
    writer.start()
    try:
        bridge = TouchBridge(r, qmp, width_range, height_range, **kw)
        assert not bridge.is_evdev
        assert bridge.run(threading.Event()) == "eof"
    finally:
        writer.join()
        os.close(r)
    guest_view(qmp.frames)
    return qmp, bridge


# -- scenarios: (input events, expected input-send-event event lists) ---------------

ONE_FINGER = (
    [(ABS, SLOT, 0), (ABS, TID, 10), (ABS, X, 1000), (ABS, Y, 500), (KEY, BTN_TOUCH, 1),
     REPORT,
     (ABS, X, 1100), REPORT,
     (ABS, Y, 700), (ABS, X, 1200), REPORT,
     (ABS, TID, -1), (KEY, BTN_TOUCH, 0), REPORT],
    [at("begin", 0, 10, 1000, 500) + [btn(True)],
     at("update", 0, 10, 1100, 500),
     at("update", 0, 10, 1200, 700),
     [mtt("end", 0, -1), btn(False)]],
)

TWO_FINGERS = (
    [(ABS, SLOT, 0), (ABS, TID, 1), (ABS, X, 100), (ABS, Y, 100), (KEY, BTN_TOUCH, 1),
     REPORT,
     (ABS, SLOT, 1), (ABS, TID, 2), (ABS, X, 2000), (ABS, Y, 200), REPORT,
     (ABS, X, 2100), (ABS, SLOT, 0), (ABS, X, 110), REPORT,      # slot 1 first
     (ABS, TID, -1), (ABS, SLOT, 1), (ABS, Y, 220), REPORT,      # slot 0 lifts
     (ABS, SLOT, 0), (ABS, TID, 3), (ABS, X, 3000), REPORT,      # a new contact in 0
     (ABS, TID, -1), (ABS, SLOT, 1), (ABS, TID, -1), (KEY, BTN_TOUCH, 0), REPORT],
    [at("begin", 0, 1, 100, 100) + [btn(True)],
     at("begin", 1, 2, 2000, 200),
     at("update", 0, 1, 110, 100) + at("update", 1, 2, 2100, 200),
     [mtt("end", 0, -1)] + at("update", 1, 2, 2100, 220),
     at("begin", 0, 3, 3000, 100),
     [mtt("end", 0, -1), mtt("end", 1, -1), btn(False)]],
)

SLOT_OUT_OF_RANGE = (  # slots 0..9 only (QEMU's INPUT_EVENT_SLOTS_MAX)
    [(ABS, SLOT, 0), (ABS, TID, 1), (ABS, X, 1000), (ABS, Y, 500), (KEY, BTN_TOUCH, 1),
     REPORT,
     (ABS, SLOT, 12), (ABS, TID, 5), (ABS, X, 300), (ABS, Y, 300),
     (ABS, SLOT, 0), (ABS, X, 1100), REPORT,
     (ABS, SLOT, 12), (ABS, TID, -1), (ABS, SLOT, 0), (ABS, TID, -1), (KEY, BTN_TOUCH, 0),
     REPORT],
    [at("begin", 0, 1, 1000, 500) + [btn(True)],
     at("update", 0, 1, 1100, 500),
     [mtt("end", 0, -1), btn(False)]],
)

HOVER = (  # ABS_MT_DISTANCE > 0: in range, not touching -> touch button up
    [(ABS, SLOT, 0), (ABS, TID, 3), (ABS, X, 1000), (ABS, Y, 500), (ABS, DIST, 5), REPORT,
     (ABS, X, 1100), REPORT,
     (ABS, DIST, 0), (KEY, BTN_TOUCH, 1), REPORT,
     (ABS, X, 1200), REPORT,
     (ABS, DIST, 3), (KEY, BTN_TOUCH, 0), REPORT,
     (ABS, TID, -1), REPORT],
    [at("begin", 0, 3, 1000, 500) + [btn(False)],
     at("update", 0, 3, 1100, 500) + [btn(False)],
     at("update", 0, 3, 1100, 500) + [btn(True)],
     at("update", 0, 3, 1200, 500),
     at("update", 0, 3, 1200, 500) + [btn(False)],
     [mtt("end", 0, -1)]],
)

BAD_VALUES = (
    [(ABS, SLOT, 0), (ABS, TID, 1), (ABS, X, 1000), (ABS, Y, 500), (KEY, BTN_TOUCH, 1),
     REPORT,
     (ABS, X, 5000), REPORT,                   # beyond 0..4095: dropped, nothing to send
     (ABS, Y, -3), (ABS, X, 1100), REPORT,     # Y dropped, X kept
     (ABS, TID, -7), REPORT,                   # not a tracking ID
     (ABS, TID, -1), (KEY, BTN_TOUCH, 0), REPORT],
    [at("begin", 0, 1, 1000, 500) + [btn(True)],
     at("update", 0, 1, 1100, 500),
     [mtt("end", 0, -1), btn(False)]],
)

SCENARIOS = {"one_finger": ONE_FINGER, "two_fingers": TWO_FINGERS,
             "slot_out_of_range": SLOT_OUT_OF_RANGE, "hover": HOVER,
             "bad_values": BAD_VALUES}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenario_over_pipe(name):
    events, expected = SCENARIOS[name]
    qmp, bridge = run_pipe(events)
    assert qmp.frames == expected
    assert bridge.stats["sent"] == len(expected)
    assert bridge.stats["events"] == len(events)
    assert bridge.stats["frames"] == events.count(REPORT)
    assert guest_view(qmp.frames) == ({}, False)


def test_stats_count_what_was_dropped():
    stats = run_pipe(SLOT_OUT_OF_RANGE[0])[1].stats
    assert stats["bad_slot"] == 6  # SLOT 12 twice + its TID, X, Y, TID
    assert stats["bad_value"] == 0
    stats = run_pipe(BAD_VALUES[0])[1].stats
    assert (stats["bad_value"], stats["bad_slot"], stats["sent"]) == (3, 0, 3)


def test_each_frame_is_one_call_and_empty_frames_none():
    events = [(ABS, TID, 1), (ABS, X, 10), (ABS, Y, 10), REPORT, REPORT,  # empty frame
              (ABS, 0x00, 7), (ABS, 0x3A, 9), (4, 5, 123), REPORT,      # ABS_X, pressure, MSC
              (ABS, X, 10), REPORT]                                     # same value again
    qmp, bridge = run_pipe(events)
    assert qmp.frames == [at("begin", 0, 1, 10, 10)]
    assert bridge.stats["frames"] == 4 and bridge.stats["ignored"] == 3


def test_syn_dropped_discards_the_partial_frame():
    events = [(ABS, TID, 1), (ABS, X, 1000), (ABS, Y, 500), (KEY, BTN_TOUCH, 1), REPORT,
              (ABS, X, 1200),                       # the partial frame ...
              DROPPED,
              (ABS, Y, 700), (ABS, SLOT, 1), (ABS, TID, 9), (KEY, BTN_TOUCH, 0),
              REPORT,                               # ... discarded up to here
              (ABS, SLOT, 0), (ABS, X, 1300), REPORT,
              (ABS, TID, -1), (KEY, BTN_TOUCH, 0), REPORT]
    qmp, bridge = run_pipe(events)
    assert qmp.frames == [at("begin", 0, 1, 1000, 500) + [btn(True)],
                          at("update", 0, 1, 1300, 500),
                          [mtt("end", 0, -1), btn(False)]]
    assert bridge.stats["dropped"] == 1
    assert bridge.stats["discarded"] == 4  # X before; Y, TID, BTN after (SLOT is tracked)
    assert bridge.stats["resyncs"] == 0    # a pipe has no state to read


def test_slot_change_inside_discarded_part_is_kept():
    # The kernel only sends ABS_MT_SLOT when it changes, so it must be tracked
    # even in a discarded frame.
    events = [(ABS, TID, 1), (ABS, X, 1000), (ABS, Y, 500), REPORT,
              (ABS, SLOT, 1), (ABS, TID, 2), (ABS, X, 2000), (ABS, Y, 1000), REPORT,
              (ABS, SLOT, 0), (ABS, X, 1100), DROPPED, REPORT,
              (ABS, X, 1200), REPORT]                 # slot 0, as set before the drop
    qmp, _ = run_pipe(events)
    assert qmp.frames[-1] == at("update", 0, 1, 1200, 500)


def test_tracking_id_change_in_one_frame_is_end_then_begin():
    events = [(ABS, TID, 1), (ABS, X, 1000), (ABS, Y, 500), REPORT,
              (ABS, TID, 2), (ABS, X, 1100), REPORT]
    qmp, _ = run_pipe(events)
    assert qmp.frames[1] == [mtt("end", 0, -1)] + at("begin", 0, 2, 1100, 500)


def test_scaling():
    assert [scale(v, 0, 4095) for v in (0, 1, 2048, 4094, 4095)] == [0, 8, 16387, 32758, 32767]
    assert [scale(v, 100, 1100) for v in (100, 600, 1100)] == [0, 16383, 32767]
    assert [scale(v, -500, 500) for v in (-500, 0, 500)] == [0, 16383, 32767]
    assert scale(5, 5, 5) == 16383  # a one-value range: the middle, as QEMU does
    events = [(ABS, TID, 4), (ABS, X, 600), (ABS, Y, -500), REPORT,
              (ABS, X, 1100), (ABS, Y, 500), REPORT,
              (ABS, X, 99), (ABS, Y, 501), REPORT]   # out of range: dropped
    qmp, bridge = run_pipe(events, width_range=(100, 1100), height_range=(-500, 500))
    assert qmp.frames == [
        [mtt("begin", 0, 4), mtt("data", 0, 4, "x", 16383), mtt("data", 0, 4, "y", 0)],
        [mtt("update", 0, 4), mtt("data", 0, 4, "x", 32767), mtt("data", 0, 4, "y", 32767)],
    ]
    assert bridge.stats["bad_value"] == 2


def test_device_and_head_are_passed_on():
    qmp, _ = run_pipe([(ABS, TID, 1), REPORT], device="touch0", head=1)
    assert qmp.calls == [("input-send-event", {"events": [
        mtt("begin", 0, 1), mtt("data", 0, 1, "x", 0), mtt("data", 0, 1, "y", 0)],
        "device": "touch0", "head": 1})]


def test_record_split_and_truncated_tail():
    data = pack(ONE_FINGER[0])
    qmp = Recorder()
    fd = os.open(os.devnull, os.O_RDONLY)
    try:
        bridge = TouchBridge(fd, qmp, XR, YR)
        for i in range(0, len(data), 7):  # records split at odd places
            bridge.feed(data[i:i + 7])
        assert qmp.frames == ONE_FINGER[1]
    finally:
        os.close(fd)
    qmp, bridge = run_pipe(data + b"\x01\x02\x03")
    assert qmp.frames == ONE_FINGER[1]
    assert bridge.stats["short_reads"] == 1


def test_unknown_types_and_codes_are_counted():
    events = [(0x1E, 0, 0), (ABS, 0x40, 1), (KEY, 0x300, 1), (SYN, 0x10, 0),
              (0x25, 1, 1), (SYN, 2, 0),    # SYN_MT_REPORT: type A, ignored
              (ABS, TID, 1), REPORT]
    qmp, bridge = run_pipe(events)
    assert len(qmp.frames) == 1
    assert bridge.stats["unknown"] == 4
    assert bridge.stats["ignored"] == 2


@pytest.mark.parametrize("seed", range(5))
def test_garbage_never_raises(seed):
    rng = random.Random(seed)
    noise = bytes(rng.randrange(256) for _ in range(30_000))
    # plausible-looking garbage too: random codes and values around the MT range
    noise += pack((rng.choice((SYN, KEY, ABS, 2, 4)), rng.randrange(0x30, 0x3C),
                   rng.randrange(-3, 5000)) for _ in range(5000))
    qmp, bridge = run_pipe(noise + pack(ONE_FINGER[0]))  # guest_view checks every call
    assert bridge.stats["events"] == (len(noise) // EVENT.size) + len(ONE_FINGER[0])
    assert bridge.stats["qmp_errors"] == 0


def test_qmp_errors_are_counted_and_the_bridge_goes_on():
    qmp, bridge = run_pipe(ONE_FINGER[0], qmp=Recorder(fail=True))
    assert len(qmp.calls) == 4
    assert bridge.stats["qmp_errors"] == 4 and bridge.stats["sent"] == 0
    assert bridge.last_error == "input-send-event: VM not running"


def test_run_stops_cleanly():
    r, w = os.pipe()
    qmp = Recorder()
    bridge = TouchBridge(r, qmp, XR, YR)
    stop = threading.Event()
    result = []
    thread = threading.Thread(target=lambda: result.append(bridge.run(stop)))
    thread.start()
    try:
        os.write(w, pack(ONE_FINGER[0][:6]))
        deadline = time.monotonic() + 5
        while not qmp.calls and time.monotonic() < deadline:
            time.sleep(0.01)
        assert qmp.frames == ONE_FINGER[1][:1]
        start = time.monotonic()
        stop.set()
        thread.join(2)
        assert not thread.is_alive() and result == ["stopped"]
        assert time.monotonic() - start < 0.5
    finally:
        stop.set()
        thread.join()
        bridge.close()  # an fd passed in is not closed by the bridge
        os.fstat(r)
        os.close(r)
        os.close(w)


def test_path_source_and_bad_arguments(tmp_path):
    path = tmp_path / "recorded"
    path.write_bytes(pack(TWO_FINGERS[0]))
    qmp = Recorder()
    with TouchBridge(path, qmp, XR, YR) as bridge:
        assert bridge.run() == "eof"
        fd = bridge.fd
    assert qmp.frames == TWO_FINGERS[1]
    with pytest.raises(OSError):
        os.fstat(fd)  # opened by the bridge, closed by it
    with pytest.raises(ValueError, match="width_range is needed"):
        TouchBridge(path, qmp)
    with pytest.raises(ValueError, match="height_range is needed"):
        TouchBridge(path, qmp, XR)
    with pytest.raises(ValueError, match="below minimum"):
        TouchBridge(path, qmp, (10, 5), YR)
    with pytest.raises(FileNotFoundError):
        TouchBridge(tmp_path / "missing", qmp, XR, YR)


# -- resync after SYN_DROPPED on an evdev device (ioctls faked) ----------------------


class FakeEvdev:
    """Stands in for the EVIOCG* ioctls of tb._Evdev."""

    def __init__(self) -> None:
        self.slot = 0
        self.columns = {TID: [-1] * 10, X: [0] * 10, Y: [0] * 10}
        self.btn = False
        self.fail = False

    def abs_info(self, code: int) -> AbsInfo:
        assert code == SLOT
        if self.fail:
            raise OSError(errno.ENODEV, "No such device")
        return AbsInfo(self.slot, 0, 9)

    def mt_slots(self, code: int, count: int) -> list[int]:
        return self.columns[code][:count]

    def key_down(self, code: int) -> bool:
        assert code == BTN_TOUCH
        return self.btn


def test_syn_dropped_on_a_device_resyncs_from_its_state():
    r, w = os.pipe()
    qmp = Recorder()
    bridge = TouchBridge(r, qmp, XR, YR)
    fake = bridge._evdev = FakeEvdev()
    try:
        bridge.feed(pack([(ABS, TID, 1), (ABS, X, 1000), (ABS, Y, 500),
                          (ABS, SLOT, 1), (ABS, TID, 2), (ABS, X, 2000), (ABS, Y, 1000),
                          (KEY, BTN_TOUCH, 1), REPORT]))
        # meanwhile on the device: slot 0 lifted, slot 1 moved, slot 2 landed
        fake.slot = 2
        fake.columns = {TID: [-1, 2, 3] + [-1] * 7, X: [1000, 2100, 100] + [0] * 7,
                        Y: [500, 1000, 200] + [0] * 7}
        fake.btn = True
        bridge.feed(pack([(ABS, X, 1200), DROPPED, (ABS, X, 1300), REPORT]))
        bridge.feed(pack([(ABS, X, 150), REPORT]))  # current slot is 2, from the device
        assert qmp.frames == [
            at("begin", 0, 1, 1000, 500) + at("begin", 1, 2, 2000, 1000) + [btn(True)],
            [mtt("end", 0, -1)] + at("update", 1, 2, 2100, 1000) + at("begin", 2, 3, 100, 200),
            at("update", 2, 3, 150, 200),
        ]
        assert bridge.stats["resyncs"] == 1
        # everything lifted, then the state cannot be read: nothing is sent
        fake.columns[TID] = [-1] * 10
        fake.fail = True
        bridge.feed(pack([DROPPED, REPORT]))
        assert len(qmp.frames) == 3 and bridge.stats["resync_errors"] == 1
        fake.fail = False
        bridge.feed(pack([DROPPED, REPORT]))
        assert qmp.frames[3] == [mtt("end", 1, -1), mtt("end", 2, -1)]  # button still down
        assert guest_view(qmp.frames) == ({}, True)
    finally:
        bridge.close()
        os.close(r)
        os.close(w)


# -- a real virtual touchscreen through /dev/uinput ------------------------------------

_IOW_INT = lambda nr: tb._ioc(tb._IOC_WRITE, "U", nr, 4)  # noqa: E731
UI_SET_EVBIT, UI_SET_KEYBIT, UI_SET_ABSBIT, UI_SET_PROPBIT = (
    _IOW_INT(100), _IOW_INT(101), _IOW_INT(103), _IOW_INT(110))
UINPUT_SETUP = struct.Struct("4H80sI")       # struct uinput_setup (input_id, name, ff max)
UINPUT_ABS_SETUP = struct.Struct("H2x6i")    # struct uinput_abs_setup (code, absinfo)
UI_DEV_SETUP = tb._ioc(tb._IOC_WRITE, "U", 3, UINPUT_SETUP.size)
UI_ABS_SETUP = tb._ioc(tb._IOC_WRITE, "U", 4, UINPUT_ABS_SETUP.size)
UI_DEV_CREATE, UI_DEV_DESTROY = tb._ioc(0, "U", 1, 0), tb._ioc(0, "U", 2, 0)
INPUT_PROP_DIRECT = 1
UI_AXES = {SLOT: (0, 15), TID: (0, 65535), X: XR, Y: YR, DIST: (0, 10)}


class UinputTouchscreen:
    """A virtual direct-touch screen (16 slots, distance 0..10) made with raw uinput."""

    def __init__(self) -> None:
        missing = [p for p in ("/dev/uinput", "/dev/input") if not os.path.exists(p)]
        if missing:
            pytest.skip(f"no virtual touchscreen on this host: {' and '.join(missing)} "
                        "missing (uinput module/device node not available)")
        if not os.access("/dev/uinput", os.R_OK | os.W_OK):
            pytest.skip(f"/dev/uinput is not readable and writable for uid {os.getuid()}")
        try:
            self.fd = os.open("/dev/uinput", os.O_WRONLY | os.O_NONBLOCK)
        except OSError as e:
            pytest.skip(f"cannot open /dev/uinput: {e}")
        try:
            fcntl.ioctl(self.fd, UI_SET_EVBIT, KEY)
            fcntl.ioctl(self.fd, UI_SET_KEYBIT, BTN_TOUCH)
            fcntl.ioctl(self.fd, UI_SET_EVBIT, ABS)
            for code, (lo, hi) in UI_AXES.items():
                fcntl.ioctl(self.fd, UI_SET_ABSBIT, code)
                fcntl.ioctl(self.fd, UI_ABS_SETUP, UINPUT_ABS_SETUP.pack(code, 0, lo, hi, 0, 0, 0))
            fcntl.ioctl(self.fd, UI_SET_PROPBIT, INPUT_PROP_DIRECT)
            fcntl.ioctl(self.fd, UI_DEV_SETUP,
                        UINPUT_SETUP.pack(0x06, 0x1234, 0x5678, 1, b"tabvm test touchscreen", 0))
            fcntl.ioctl(self.fd, UI_DEV_CREATE)
            self.node = self._event_node()
        except BaseException:
            os.close(self.fd)
            raise

    def _event_node(self) -> Path:
        size = 64
        buf = bytearray(size)
        fcntl.ioctl(self.fd, tb._ioc(tb._IOC_READ, "U", 44, size), buf)  # UI_GET_SYSNAME
        sysdir = Path("/sys/devices/virtual/input") / buf.split(b"\0")[0].decode()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            for child in sysdir.glob("event*"):
                node = Path("/dev/input") / child.name
                if node.exists() and os.access(node, os.R_OK):
                    return node
            time.sleep(0.02)
        pytest.fail(f"no readable /dev/input/event* for {sysdir} within 5 s")

    def write(self, events) -> None:
        os.write(self.fd, pack(events))

    def close(self) -> None:
        fcntl.ioctl(self.fd, UI_DEV_DESTROY)
        os.close(self.fd)


@pytest.fixture
def uinput_screen():
    screen = UinputTouchscreen()
    yield screen
    screen.close()


def collect(bridge: TouchBridge, qmp: Recorder, want: int, timeout: float = 5.0) -> None:
    """Runs the bridge until ``want`` calls came (then 0.2 s more for extras)."""
    stop = threading.Event()
    thread = threading.Thread(target=bridge.run, args=(stop,))
    thread.start()
    try:
        deadline = time.monotonic() + timeout
        while len(qmp.calls) < want and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)
    finally:
        stop.set()
        thread.join()


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenario_on_uinput_device(uinput_screen, name):
    events, expected = SCENARIOS[name]
    qmp = Recorder()
    with TouchBridge(uinput_screen.node, qmp) as bridge:
        assert bridge.is_evdev
        assert (bridge.x_range, bridge.y_range, bridge.distance_max) == (XR, YR, 10)
        frame: list = []
        for event in events:  # one write per frame, as a driver reports them
            frame.append(event)
            if event == REPORT:
                uinput_screen.write(frame)
                frame = []
        collect(bridge, qmp, len(expected))
    assert qmp.frames == expected


def test_overflow_on_uinput_device_resyncs(uinput_screen):
    qmp = Recorder()
    with TouchBridge(uinput_screen.node, qmp) as bridge:  # opened: events queue
        uinput_screen.write([(ABS, TID, 1), (ABS, X, 1000), (ABS, Y, 500),
                             (KEY, BTN_TOUCH, 1), REPORT])
        for i in range(3000):  # far more than an evdev client buffer holds
            uinput_screen.write([(ABS, X, 1000 + i % 2000), REPORT])
        uinput_screen.write([(ABS, SLOT, 1), (ABS, TID, 2), (ABS, X, 3000), (ABS, Y, 1500),
                             REPORT])
        collect(bridge, qmp, 1)
        assert bridge.stats["dropped"] >= 1 and bridge.stats["resyncs"] >= 2
        slots, down = guest_view(qmp.frames)
        assert down
        assert {n: (s["tid"], s["x"], s["y"]) for n, s in slots.items()} == {
            0: (1, sx(1000 + 2999 % 2000), sy(500)), 1: (2, sx(3000), sy(1500))}


def test_contacts_down_at_start_are_sent(uinput_screen):
    uinput_screen.write([(ABS, TID, 7), (ABS, X, 2000), (ABS, Y, 1000),
                         (KEY, BTN_TOUCH, 1), REPORT])
    qmp = Recorder()
    with TouchBridge(uinput_screen.node, qmp) as bridge:
        collect(bridge, qmp, 1)
    assert qmp.frames == [at("begin", 0, 7, 2000, 1000) + [btn(True)]]
