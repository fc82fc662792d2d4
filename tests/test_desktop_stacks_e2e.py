"""The tablet devices through the Debian desktop's own stacks, not ours: upower
for the battery and AC, libinput for the touchscreen, the kernel's virtio
balloon driver under the ballooning policy while the desktop draws. The guest
runs nothing of the project's: qemu-guest-agent (`tabvm exec`) runs the
stacks' own tools, and screenshots show the screen."""

from __future__ import annotations

import json
import random
import re
import time
from pathlib import Path

import pytest

from desktop_harness import (Desktop, InGuest, desktop_profile, free_port, tabvm, touch_downs,
                             touchscreen)

pytestmark = pytest.mark.e2e

BATTERY = "/org/freedesktop/UPower/devices/battery_BAT0"


class FakeSupply:
    """A host power-supply tree (what /sys/class/power_supply holds) the test
    changes: the glue's battery bridge reads it (`--battery host
    --power-supply-root`)."""

    def __init__(self, root: Path):
        self.root = root
        (root / "BAT0").mkdir(parents=True)
        (root / "AC").mkdir()
        (root / "BAT0" / "type").write_text("Battery\n")
        (root / "BAT0" / "present").write_text("1\n")
        (root / "BAT0" / "voltage_now").write_text("7600000\n")
        (root / "AC" / "type").write_text("Mains\n")
        self.set(80, "Discharging", False)

    def set(self, percent: int, status: str, ac: bool, power_uw: int = 6_000_000) -> None:
        for name, value in (("capacity", percent), ("status", status),
                            ("power_now", power_uw)):
            tmp = self.root / "BAT0" / f".{name}"
            tmp.write_text(f"{value}\n")
            tmp.replace(self.root / "BAT0" / name)
        (self.root / "AC" / "online").write_text("1\n" if ac else "0\n")


@pytest.fixture(scope="module")
def vm(desktop_image, build_outputs, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stacks")
    supply = FakeSupply(tmp / "power_supply")
    qmp = free_port()
    profile = desktop_profile(
        tmp, "desktop-stacks", qmp_tcp=f"127.0.0.1:{qmp}",
        devices={"battery": {"source": "host"}, "touchscreen": {},
                 "balloon": {"policy": "builtin"}})
    d = Desktop(profile, "desktop-stacks", build_outputs.root, tmp / "state",
                extra_args=("--power-supply-root", str(supply.root)), interval=0.25)
    d.tmp, d.supply, d.qmp_port = tmp, supply, qmp
    try:
        d.glue.running(timeout=120)
        d.wait_session()
        yield d
    finally:
        d.glue.stop()


# -- battery and AC: upower ---------------------------------------------------------

def upower(vm: Desktop) -> dict[str, str]:
    """upower's view of the battery (and the daemon's on-battery), asked through
    qemu-guest-agent from this process (a `tabvm exec` would add its own start-up
    to every timed poll)."""
    from glue.guest_agent import GuestAgent
    from glue.hardware import QGA_SOCKET
    with GuestAgent(vm.glue.rundir / QGA_SOCKET, timeout=30) as agent:
        r = agent.exec(["sh", "-c", f"upower -i {BATTERY}; upower -d | grep -m1 on-battery"],
                       timeout=30)
    assert r.status == 0, r
    out = {}
    for line in r.stdout.decode().splitlines():
        m = re.match(r"\s*([a-z][a-z -]*[a-z]):\s+(.*\S)\s*$", line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


def shows(got: dict[str, str], key: str, value: str) -> bool:
    """upower shows ``value`` for ``key`` (a prefix; a percentage to 0.5)."""
    if key == "percentage":
        m = re.match(r"([\d.]+)%", got.get(key, ""))
        return bool(m) and abs(float(m.group(1)) - float(value.rstrip("%"))) < 0.5
    return got.get(key, "").startswith(value)


def wait_upower(vm: Desktop, want: dict[str, str], timeout: float) -> tuple[float, dict]:
    """Seconds until upower shows ``want``: the middle of the first poll that saw
    it (the poll's own time halved), from now."""
    t0 = time.monotonic()
    while True:
        start = time.monotonic()
        got = upower(vm)
        if all(shows(got, k, v) for k, v in want.items()):
            return (start + time.monotonic()) / 2 - t0, got
        assert time.monotonic() - t0 < timeout, (want, got)
        time.sleep(0.05)


def test_upower_follows_the_host_battery_within_2_s(vm):
    lags = []
    for percent, status, ac, want in (
            (80, "Discharging", False, {"percentage": "80%", "state": "discharging",
                                         "on-battery": "yes"}),
            (55, "Discharging", False, {"percentage": "55%", "state": "discharging"}),
            (56, "Charging", True, {"percentage": "56%", "state": "charging",
                                    "on-battery": "no"}),
            (100, "Full", True, {"percentage": "100%", "state": "fully-charged"}),
            (70, "Discharging", False, {"percentage": "70%", "state": "discharging",
                                        "on-battery": "yes"})):
        vm.supply.set(percent, status, ac)
        lag, got = wait_upower(vm, want, 30)
        lags.append(lag)
        if status == "Discharging":
            assert "time to empty" in got, got
        if status == "Charging":
            assert "time to full" in got, got
    # host file -> the glue's bridge (every 0.25 s) -> QMP -> GPE -> the guest's
    # ACPI battery driver -> uevent -> upower
    print("upower lag after host changes (s):", [f"{x:.2f}" for x in lags])
    assert max(lags) <= 2.0, lags


def test_low_and_critical_levels_reach_upower(vm):
    conf = vm.sh("cat /etc/UPower/UPower.conf")
    low = float(re.search(r"^PercentageLow=(\S+)", conf, re.M).group(1))
    critical = float(re.search(r"^PercentageCritical=(\S+)", conf, re.M).group(1))
    action = float(re.search(r"^PercentageAction=(\S+)", conf, re.M).group(1))
    assert "UsePercentageForPolicy=true" in conf
    vm.supply.set(int(low) - 1, "Discharging", False)
    wait_upower(vm, {"percentage": f"{int(low) - 1}%", "warning-level": "low"}, 30)
    level = int(critical) - 1 if int(critical) - 1 > action else int(critical)
    vm.supply.set(level, "Discharging", False)
    wait_upower(vm, {"percentage": f"{level}%", "warning-level": "critical"}, 30)
    vm.supply.set(60, "Charging", True)
    wait_upower(vm, {"percentage": "60%", "warning-level": "none"}, 30)


def test_a_minute_of_host_changes_leaves_upower_and_the_host_agreeing(vm):
    rng = random.Random(15)
    percent, charging = 60, True
    t_end = time.monotonic() + 60
    changes = 0
    while time.monotonic() < t_end:
        if rng.random() < 0.2:
            charging = not charging
        percent = max(6, min(100, percent + (rng.randint(0, 3) if charging
                                             else -rng.randint(0, 3))))
        vm.supply.set(percent, "Charging" if charging else "Discharging", charging,
                      rng.choice([3_000_000, 6_000_000, 9_000_000]))
        changes += 1
        time.sleep(rng.uniform(0.2, 1.5))
    want = {"percentage": f"{percent}%", "state": "charging" if charging else "discharging",
            "on-battery": "no" if charging else "yes"}
    lag, got = wait_upower(vm, want, 5)
    print(f"{changes} host changes in 60 s; upower agreed {lag:.2f} s after the last")


# -- touchscreen: libinput ----------------------------------------------------------

def ctl(vm: Desktop, *args: str) -> None:
    p = tabvm("ctl", str(vm.glue.rundir), *args)
    assert p.returncode == 0, p


def test_libinput_sees_a_touchscreen_of_the_spec_size(vm):
    import yaml

    from conftest import REPO
    spec = yaml.safe_load((REPO / "devspecs" / "multitouch.yaml").read_text())
    _, block = touchscreen(vm)
    mm = f"{spec['x']['physical_mm']}x{spec['y']['physical_mm']}mm"
    assert re.search(rf"^Size:\s+{mm}", block, re.M), block
    assert "touch" in re.search(r"^Capabilities:(.*)$", block, re.M).group(1)


@pytest.mark.parametrize("fingers", [1, 2, 5])
def test_libinput_sees_the_fingers_where_they_are(vm, fingers):
    node, _ = touchscreen(vm)
    points = [(3000 + 6000 * i, 5000 + 4000 * i) for i in range(fingers)]
    contacts = [[100 + i, x, y] for i, (x, y) in enumerate(points)]
    listener = InGuest(vm, "timeout", "12", "libinput", "debug-events", "--device", node,
                       timeout=60)
    ctl(vm, "touch", f"contacts={json.dumps(contacts)}")
    moved = [[c, x + 300, y + 300] for c, x, y in contacts]
    ctl(vm, "touch", f"contacts={json.dumps(moved)}")
    ctl(vm, "touch", "contacts=[]")
    out = listener.output(90)
    downs = touch_downs(out)
    ups = re.findall(r"TOUCH_UP", out)
    assert len(downs) == fingers and len(ups) == fingers, out
    assert sorted(s for s, _, _ in downs) == list(range(fingers)), out
    for (_, px, py), (x, y) in zip(sorted(downs), points):
        assert abs(px - x * 100 / 32767) < 0.1 and abs(py - y * 100 / 32767) < 0.1, \
            (px, py, x, y)
    assert len(re.findall(r"TOUCH_MOTION", out)) >= fingers, out


def test_hover_and_the_mouse_collection(vm):
    """The spec's hover: a contact in range without touching is reported by the
    kernel as distance (libinput record shows the evdev events; libinput itself
    does not report hover on touchscreens). The mouse collection: libinput
    sees an absolute pointer and its button."""
    node, _ = touchscreen(vm)
    recorder = InGuest(vm, "timeout", "10", "libinput", "record", node, timeout=60)
    from qemu.qmp.legacy import QEMUMonitorProtocol

    from glue.qmp_input import btn, mtt
    qmp = QEMUMonitorProtocol(("127.0.0.1", vm.qmp_port))
    qmp.connect()
    try:
        # a finger in range, not touching (the touch button up), then gone
        qmp.cmd("input-send-event", events=[
            mtt("begin", 0, 7), mtt("data", 0, 7, "x", 16000), mtt("data", 0, 7, "y", 16000),
            btn("touch", False)])
        qmp.cmd("input-send-event", events=[mtt("end", 0, -1)])
    finally:
        qmp.close()
    ctl(vm, "pointer", "x=8000", "y=9000", "buttons=0")
    ctl(vm, "pointer", "x=8000", "y=9000", "buttons=1")
    ctl(vm, "pointer", "x=8000", "y=9000", "buttons=0")
    out = recorder.output(60)
    assert "ABS_MT_DISTANCE" in out, out[-3000:]
    # the mouse collection is its own input device: libinput's absolute pointer
    text = vm.sh("libinput list-devices")
    mouse = [b for b in text.split("\n\n") if "TabVM" in b and "pointer" in b]
    assert mouse, text


# -- memory: the balloon on the desktop ---------------------------------------------

def balloon_features(vm: Desktop) -> str:
    return vm.sh("for d in /sys/bus/virtio/devices/*; do "
                 "[ \"$(basename $(readlink $d/driver))\" = virtio_balloon ] && cat $d/features; "
                 "done; true").strip()


def test_the_balloon_works_and_the_desktop_keeps_drawing(vm):
    features = balloon_features(vm)
    assert features, "no virtio_balloon device in the guest"
    # VIRTIO_BALLOON_F_DEFLATE_ON_OOM (2) and F_REPORTING (5): free page reporting
    assert features[2] == "1" and features[5] == "1", features
    ctl(vm, "pressure", "level=critical")
    try:
        deadline = time.monotonic() + 120
        while True:
            status = vm.glue.event("status")
            mib = status.get("memory", {}).get("balloon_mib", 0)
            if mib >= 512:
                break
            assert time.monotonic() < deadline, status
            time.sleep(2)
        print(f"ballooned under critical host pressure: {mib} MiB")
        shots = []
        for colour in ("#aa2020", "#20aa20", "#2020aa"):
            assert vm.x("xsetroot", "-solid", colour).returncode == 0
            time.sleep(1)
            img = vm.screenshot(vm.tmp / f"ballooned-{colour[1:]}.png")
            shots.append(img.getpixel((640, 300)))
        assert shots == [(0xaa, 0x20, 0x20), (0x20, 0xaa, 0x20), (0x20, 0x20, 0xaa)], shots
        assert vm.glue.event("status")["memory"]["balloon_mib"] >= 256
    finally:
        ctl(vm, "pressure", "level=normal")
        vm.x("xsetroot", "-solid", "#35648f")
