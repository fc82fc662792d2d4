"""The generated USB touchscreens end to end: a real Linux guest under TCG.

Each multitouch spec in devspecs/ is booted on its own VM (qemu-xhci + the
device); the guest's hid-multitouch driver must bind it in the Win8 group, and
touches sent with QMP input-send-event must come out of the guest's
/dev/input/event* as the right multitouch protocol B events, read by the agent.
"""

from __future__ import annotations

import dataclasses
import time

import pytest

from generator.ir import Multitouch
from generator.main import check, spec_files
from glue.agent_client import AgentClient
from glue.profile import builtin_profile
from glue.qmp_input import btn, mtt
from glue.qemu import Qemu
from glue.runtime import new_runtime_dir

pytestmark = pytest.mark.e2e

from glue.evdev import (
    ABS_MT_DISTANCE, ABS_MT_POSITION_X, ABS_MT_POSITION_Y, ABS_MT_SLOT, ABS_MT_TOOL_TYPE,
    ABS_MT_TRACKING_ID, ABS_X, ABS_Y, BTN_LEFT, BTN_MIDDLE, BTN_RIGHT, BTN_TOUCH, EV_ABS,
    EV_KEY, EV_SYN, INPUT_PROP_DIRECT, MT_TOOL_PALM, contact_frames as frames,
    input_devices,
)

DEVICES = [d for d in check(spec_files()) if isinstance(d, Multitouch)]


def scaled(value: int, lo: int, hi: int) -> int:
    """QEMU's qemu_input_scale_axis() from 0..0x7fff to the spec's range."""
    return value * (hi - lo) // 0x7FFF + lo


@dataclasses.dataclass
class Touch:
    """A booted VM with one touch device, and where the guest shows it."""

    spec: Multitouch
    vm: Qemu
    agent: AgentClient
    hid: str                  # /sys/bus/hid/devices/...
    touch_event: str          # /dev/input/eventN of the touch collection
    touch_input: str          # /sys/class/input/inputN
    mouse_event: str | None

    def send(self, *events: dict) -> None:
        self.vm.cmd("input-send-event", events=list(events))

    def xy(self, x: int, y: int) -> tuple[int, int]:
        s = self.spec
        return (scaled(x, s.x.logical_min, s.x.logical_max),
                scaled(y, s.y.logical_min, s.y.logical_max))


def down(slot: int, tid: int, x: int, y: int, kind: str = "begin") -> list[dict]:
    return [mtt(kind, slot, tid), mtt("data", slot, tid, "x", x),
            mtt("data", slot, tid, "y", y)]


@pytest.fixture(scope="module", params=DEVICES, ids=lambda d: d.name)
def touch(request, build_outputs, guest_image):
    spec: Multitouch = request.param
    config = builtin_profile(build_outputs, guest_image.vmlinux, guest_image.initrd, "tcg",
                             touch=False)
    config = dataclasses.replace(config, devices=config.devices + (
        "qemu-xhci,id=xhci", f"{spec.qom_type},id=touch,bus=xhci.0"))
    with Qemu(config, new_runtime_dir(f"test-{spec.name}")) as vm:
        agent = AgentClient(str(vm.agent_socket), connect_timeout=30)
        agent.wait_ready(timeout=180)
        ident = f"0003:{spec.vendor_id:04X}:{spec.product_id:04X}"
        deadline = time.monotonic() + 30
        while True:
            hids = [h for h in agent.ls("/sys/bus/hid/devices") if h.startswith(ident)]
            if hids and agent.sh(f"ls /sys/bus/hid/devices/{hids[0]}/input").status == 0:
                break
            assert time.monotonic() < deadline, "the guest never saw the HID device"
            time.sleep(0.5)
        hid = f"/sys/bus/hid/devices/{hids[0]}"
        inputs = input_devices(agent, hid)
        name = f"{spec.manufacturer} {spec.product}"
        assert name in inputs, inputs
        mouse = inputs.get(f"{name} Mouse")
        yield Touch(spec, vm, agent, hid, inputs[name][1], inputs[name][0],
                    mouse[1] if mouse else None)
        agent.close()


def collect(t: Touch, steps: list[list[dict]], settle: float = 0.4) -> list:
    """Sends each step (one QMP command = one input frame) and returns the
    guest's events from the touch device's event node."""
    t.agent.ev_start(0, t.touch_event)
    try:
        for step in steps:
            t.send(*step)
            time.sleep(settle)
        return t.agent.ev_take(0, 10000, 1500)
    finally:
        t.agent.ev_stop(0)


def test_guest_binds_hid_multitouch_win8(touch):
    agent = touch.agent
    assert "g0004" in agent.read(f"{touch.hid}/modalias")     # HID_GROUP_MULTITOUCH_WIN_8
    assert agent.sh(f"readlink {touch.hid}/driver").output.strip().endswith(
        "/hid-multitouch")
    props = int(agent.read(f"{touch.touch_input}/properties").strip(), 16)
    assert props & INPUT_PROP_DIRECT
    abs_caps = int(agent.read(f"{touch.touch_input}/capabilities/abs").split()[-1], 16)
    assert abs_caps & (1 << ABS_MT_POSITION_X) and abs_caps & (1 << ABS_MT_TRACKING_ID)
    assert abs_caps & (1 << ABS_MT_DISTANCE)          # In Range -> hover support
    assert (touch.mouse_event is not None) == bool(touch.spec.mouse_buttons)


def test_two_finger_gesture(touch):
    a1, b1, a2, b2 = (1000, 2000), (30000, 25000), (5000, 6000), (26000, 20000)
    events = collect(touch, [
        down(0, 10, *a1),
        down(1, 11, *b1),
        down(0, 10, *a2, kind="update") + down(1, 11, *b2, kind="update"),
        [mtt("end", 0, -1)],
        [mtt("end", 1, -1)],
    ])
    codes = {(e.type, e.code) for e in events}
    for code in (ABS_MT_SLOT, ABS_MT_TRACKING_ID, ABS_MT_POSITION_X, ABS_MT_POSITION_Y):
        assert (EV_ABS, code) in codes
    assert (EV_KEY, BTN_TOUCH) in codes
    xy = touch.xy
    assert frames(events) == [
        (1, (0, *xy(*a1), 0)),
        (1, (0, *xy(*a1), 0), (1, *xy(*b1), 0)),
        (1, (0, *xy(*a2), 0), (1, *xy(*b2), 0)),
        (1, (1, *xy(*b2), 0)),
        (0,),
    ]


def test_lifted_contact_released_once_and_held_contact_kept(touch):
    """A held finger stays down well past hid-multitouch's 100 ms sticky-finger
    timeout (the device repeats its report); a cancel (Confidence off) is
    released as a palm; a tap after it is an ordinary finger again."""
    events = collect(touch, [down(0, 20, 16000, 16000), [], [mtt("cancel", 0, -1)],
                             down(0, 21, 100, 100), [mtt("end", 0, -1)]], settle=0.6)
    ids = [e.value for e in events if e.type == EV_ABS and e.code == ABS_MT_TRACKING_ID]
    assert len(ids) == 4 and ids[0] >= 0 and ids[1] == -1 and ids[3] == -1, ids
    tools = [e.value for e in events if e.type == EV_ABS and e.code == ABS_MT_TOOL_TYPE]
    assert tools[:1] == [MT_TOOL_PALM], tools
    assert frames(events)[-1] == (0,)


def test_hover(touch):
    if not touch.spec.hover:
        pytest.skip(f"{touch.spec.spec_path} has hover: false")
    events = collect(touch, [
        down(0, 30, 8000, 9000) + [btn("touch", False)],          # in range, no tip
        down(0, 30, 8000, 9000, kind="update") + [btn("touch", True)],
        [mtt("end", 0, -1)],
    ])
    xy = touch.xy(8000, 9000)
    states = [s for s in frames(events)]
    assert len(states) >= 3 and (states[0][1][3], states[1][1][3]) == (1, 0), states
    assert states[0][1][1:3] == xy and states[-1] == (0,)


def test_no_hover_without_spec(touch):
    if touch.spec.hover:
        pytest.skip(f"{touch.spec.spec_path} has hover: true")
    events = collect(touch, [down(0, 31, 8000, 9000) + [btn("touch", False)],
                             [mtt("end", 0, -1)]])
    assert all(e.value == 0 for e in events if e.type == EV_ABS and e.code == ABS_MT_DISTANCE)
    assert frames(events)[0][0] == 1             # still a touch, not a hover


def test_mouse_buttons(touch):
    if not touch.spec.mouse_buttons:
        pytest.skip(f"{touch.spec.spec_path} has no mouse collection")
    agent = touch.agent
    agent.ev_start(1, touch.mouse_event)
    try:
        touch.send({"type": "abs", "data": {"axis": "x", "value": 12000}},
                   {"type": "abs", "data": {"axis": "y", "value": 24000}})
        for name in ("left", "right", "middle"):
            touch.send(btn(name, True))
            touch.send(btn(name, False))
        time.sleep(0.5)
        events = agent.ev_take(1, 1000, 1500)
    finally:
        agent.ev_stop(1)
    keys = [(e.code, e.value) for e in events if e.type == EV_KEY]
    assert keys == [(BTN_LEFT, 1), (BTN_LEFT, 0), (BTN_RIGHT, 1), (BTN_RIGHT, 0),
                    (BTN_MIDDLE, 1), (BTN_MIDDLE, 0)]
    absolute = {e.code: e.value for e in events if e.type == EV_ABS}
    assert absolute == {ABS_X: 12000, ABS_Y: 24000}


def test_bad_slots_and_values_are_ignored(touch):
    events = collect(touch, [
        [mtt("begin", 42, 1), mtt("data", -1, 1, "x", 5), mtt("end", 7, -1)],
        down(0, 40, 10 ** 9, -(10 ** 9)),          # clamped to the axis ends
        [mtt("end", 0, -1)],
    ])
    assert touch.vm.cmd("query-status")["status"] == "running"
    x, y = touch.xy(0x7FFF, 0)
    assert frames(events) == [(1, (0, x, y, 0)), (0,)]


def test_hid_class_requests(touch):
    """GET/SET_REPORT, GET/SET_IDLE, GET/SET_PROTOCOL and the report descriptor,
    as the guest sees them through usbfs (the driver detached meanwhile)."""
    d, agent = touch.spec, touch.agent

    def ctl(type_: int, request: int, value: int, length: int, data: str = "") -> str:
        return agent.call("usbctl", hex(type_), hex(request), hex(value), "0",
                          str(length), *([data] if data else []))

    agent.call("usbclaim", usbfs_node(touch))
    try:
        # the descriptor the guest reads is the generator's, byte for byte
        assert ctl(0x81, 6, 0x2200, 4096) == "ok " + d.descriptor.hex()
        assert ctl(0xA1, 1, 0x0300 | d.REPORT_MAX_COUNT, 64) == \
            f"ok {d.REPORT_MAX_COUNT:02x}{d.contacts:02x}"
        assert ctl(0xA1, 1, 0x0300 | d.REPORT_CERTIFICATION, 4096) == \
            f"ok {d.REPORT_CERTIFICATION:02x}" + "00" * 256
        assert ctl(0xA1, 1, 0x0300 | d.REPORT_CERTIFICATION, 10) == \
            f"ok {d.REPORT_CERTIFICATION:02x}" + "00" * 9          # cut to wLength
        mode = 0x0300 | d.REPORT_MODE
        assert ctl(0x21, 9, mode, 3, f"{d.REPORT_MODE:02x}0203") == "ok "
        assert ctl(0xA1, 1, mode, 3) == f"ok {d.REPORT_MODE:02x}0203"
        touch_report = ctl(0xA1, 1, 0x0100 | d.REPORT_TOUCH, 4096)
        assert touch_report.startswith(f"ok {d.REPORT_TOUCH:02x}")
        assert len(bytes.fromhex(touch_report[3:])) == d.touch_report_size
        assert ctl(0x21, 0x0A, 0x2500, 0) == "ok "                 # SET_IDLE 148 ms
        assert ctl(0xA1, 2, 0, 1) == "ok 25"
        assert ctl(0xA1, 3, 0, 1) == "ok 01"                       # report protocol
        for bad in (
            (0x21, 9, mode, 2, f"{d.REPORT_MODE:02x}02"),          # short SET_REPORT
            (0x21, 9, mode, 3, "000203"),                          # wrong report ID
            (0x21, 9, 0x0300 | d.REPORT_MAX_COUNT, 2, "030a"),     # read-only feature
            (0xA1, 1, 0x0309, 64),                                 # no such report
            (0xA1, 1, 0x0200 | d.REPORT_TOUCH, 64),                # no output reports
            (0x21, 0x0B, 0, 0),                                    # boot protocol
            (0x81, 6, 0x2100, 64),                                 # not a HID request
        ):
            assert ctl(*bad) == "stall", bad
    finally:
        agent.call("usbrelease")
        rebound(touch)


def test_host_touchscreen_bridge(touch):
    """A host evdev stream (raw struct input_event records through a pipe; the
    uinput variant is in test_touch_bridge.py) forwarded by glue.TouchBridge."""
    import os
    import struct
    import threading

    from glue.touch_bridge import TouchBridge

    def rec(type_: int, code: int, value: int) -> bytes:
        return struct.pack("llHHi", 0, 0, type_, code, value)

    syn = rec(EV_SYN, 0, 0)
    frames_in = [
        [rec(EV_ABS, ABS_MT_SLOT, 0), rec(EV_ABS, ABS_MT_TRACKING_ID, 7),
         rec(EV_ABS, ABS_MT_POSITION_X, 250), rec(EV_ABS, ABS_MT_POSITION_Y, 750),
         rec(EV_KEY, BTN_TOUCH, 1)],
        [rec(EV_ABS, ABS_MT_SLOT, 1), rec(EV_ABS, ABS_MT_TRACKING_ID, 8),
         rec(EV_ABS, ABS_MT_POSITION_X, 999), rec(EV_ABS, ABS_MT_POSITION_Y, 0)],
        [rec(EV_ABS, ABS_MT_SLOT, 0), rec(EV_ABS, ABS_MT_TRACKING_ID, -1)],
        [rec(EV_ABS, ABS_MT_SLOT, 1), rec(EV_ABS, ABS_MT_TRACKING_ID, -1),
         rec(EV_KEY, BTN_TOUCH, 0)],
    ]
    r, w = os.pipe()
    bridge = TouchBridge(r, touch.vm.cmd, (0, 999), (0, 999))
    stop = threading.Event()
    thread = threading.Thread(target=bridge.run, args=(stop,), daemon=True)
    touch.agent.ev_start(0, touch.touch_event)
    try:
        thread.start()
        for frame in frames_in:
            os.write(w, b"".join(frame) + syn)
            time.sleep(0.4)
        events = touch.agent.ev_take(0, 10000, 1500)
    finally:
        stop.set()
        thread.join(timeout=5)
        touch.agent.ev_stop(0)
        os.close(w)
        os.close(r)
    assert bridge.stats["sent"] == 4 and bridge.stats["qmp_errors"] == 0, bridge.stats

    def host_to_guest(x: int, y: int) -> tuple[int, int]:
        return touch.xy(x * 0x7FFF // 999, y * 0x7FFF // 999)

    a, b = host_to_guest(250, 750), host_to_guest(999, 0)
    assert frames(events) == [(1, (0, *a, 0)), (1, (0, *a, 0), (1, *b, 0)),
                              (1, (1, *b, 0)), (0,)]


def test_migration_keeps_a_held_contact(touch, build_outputs, guest_image, tmp_path):
    """Migrate with a finger down: the guest keeps the contact across the move
    (the destination repeats it from the migrated device state, so the guest
    never times it out) and lifting it on the destination releases it."""
    t = touch
    t.agent.ev_start(2, t.touch_event)        # the open fd moves with guest RAM
    t.send(*down(0, 60, 20000, 10000))
    time.sleep(0.3)
    state = tmp_path / "state"
    t.vm.cmd("migrate", uri=f"exec:cat > {state}")
    try:
        deadline = time.monotonic() + 120
        while t.vm.cmd("query-migrate").get("status") != "completed":
            assert time.monotonic() < deadline, t.vm.cmd("query-migrate")
            time.sleep(0.2)
        config = dataclasses.replace(t.vm.config, extra=("-incoming", f"exec:cat {state}"))
        with Qemu(config, new_runtime_dir("test-touch-incoming")) as target:
            agent = AgentClient(str(target.agent_socket), connect_timeout=30)
            agent.wait_ready(timeout=60)
            time.sleep(1.0)    # ten times hid-multitouch's sticky-finger timeout
            target.cmd("input-send-event", events=[mtt("end", 0, -1)])
            time.sleep(0.4)
            events = agent.ev_take(2, 10000, 1000)
            agent.ev_stop(2)
            agent.close()
    finally:
        t.vm.cmd("cont")                      # the source runs on: lift its finger too
        t.send(mtt("end", 0, -1))
        t.agent.ev_stop(2)
    ids = [e.value for e in events if e.type == EV_ABS and e.code == ABS_MT_TRACKING_ID]
    assert len(ids) == 2 and ids[0] >= 0 and ids[1] == -1, ids
    assert frames(events) == [(1, (0, *t.xy(20000, 10000), 0)), (0,)]


def rebound(t: Touch) -> None:
    """Waits for hid-multitouch to bind the panel again (after usbfs took it)
    and follows its new input nodes."""
    deadline = time.monotonic() + 30
    name = f"{t.spec.manufacturer} {t.spec.product}"
    while True:
        hids = t.agent.ls("/sys/bus/hid/devices")
        inputs = input_devices(t.agent, f"/sys/bus/hid/devices/{hids[-1]}") if hids else {}
        if name in inputs:
            break
        assert time.monotonic() < deadline, "hid-multitouch did not bind again"
        time.sleep(0.5)
    t.hid = f"/sys/bus/hid/devices/{hids[-1]}"
    t.touch_input, t.touch_event = inputs[name]
    mouse = inputs.get(f"{name} Mouse")
    t.mouse_event = mouse[1] if mouse else None


def usbfs_node(t: Touch) -> str:
    out = t.agent.sh(
        "for d in /sys/bus/usb/devices/*; do [ -f $d/idVendor ] && "
        "echo $(cat $d/idVendor):$(cat $d/idProduct) $(cat $d/busnum) $(cat $d/devnum); "
        "done").output
    for line in out.splitlines():
        ident, bus, dev = line.split()
        if ident == f"{t.spec.vendor_id:04x}:{t.spec.product_id:04x}":
            return f"/dev/bus/usb/{int(bus):03d}/{int(dev):03d}"
    raise AssertionError(f"USB device not found:\n{out}")


def test_malformed_control_requests_keep_qemu_alive(touch):
    """Every HID class request with odd types, report IDs and lengths 0..4096,
    then random requests of every type, from the guest through usbfs."""
    result = touch.agent.call("usbfuzz", usbfs_node(touch), "5000", "1", timeout=600)
    counts = dict(zip(result.split()[::2], map(int, result.split()[1::2])))
    assert counts["sent"] > 20000 and counts["stall"] > 0 and counts["ok"] > 0, counts
    assert touch.vm.alive()
    assert touch.vm.cmd("query-status")["status"] == "running"
    # the guest driver is attached again and the panel still works
    rebound(touch)
    events = collect(touch, [down(0, 50, 4000, 4000), [mtt("end", 0, -1)]])
    assert frames(events) == [(1, (0, *touch.xy(4000, 4000), 0)), (0,)]
