"""The ACPI battery / AC adapter end to end: a real Linux guest under TCG.

QEMU is the project's build with the device generated from devspecs/battery.yaml
and the SSDT compiled from the same spec; the guest's ACPI ``battery`` and ``ac``
drivers are what is checked, through /sys, read by the guest agent.
"""

from __future__ import annotations

import dataclasses
import subprocess
import time

import pytest

from glue.agent_client import AgentClient
from glue.battery_bridge import DEVICE_PATH
from glue.profile import builtin_profile
from glue.qemu import Qemu, QemuError
from glue.runtime import new_runtime_dir

pytestmark = pytest.mark.e2e

BAT = "/sys/class/power_supply/BAT0"
ADP = "/sys/class/power_supply/ADP0"
IO_BASE, IO_SIZE, GPE = 0x530, 0x24, "/sys/firmware/acpi/interrupts/gpe00"
PROPS = ("present", "ac-online", "critical", "state", "remaining", "full",
         "design-capacity", "rate", "voltage", "cycle-count", "capacity")


@pytest.fixture(scope="module")
def vm(build_outputs, guest_image):
    config = builtin_profile(build_outputs, guest_image.vmlinux, guest_image.initrd, "tcg")
    with Qemu(config, new_runtime_dir("test-battery")) as q:
        agent = AgentClient(str(q.agent_socket), connect_timeout=30)
        agent.wait_ready(timeout=180)
        yield q, agent
        agent.close()


def sysfs(agent: AgentClient, path: str) -> str:
    return agent.read(path).strip()


def gpe_count(agent: AgentClient) -> int:
    return int(sysfs(agent, GPE).split()[0])


def wait_for(agent: AgentClient, expected: dict[str, str], timeout: float = 15.0) -> None:
    """Poll the guest's sysfs until every path shows its expected value."""
    deadline = time.monotonic() + timeout
    while True:
        got = {path: sysfs(agent, path) for path in expected}
        if got == expected:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"guest sysfs did not follow: expected {expected}, got {got}")
        time.sleep(0.3)


def device_state(q: Qemu) -> dict:
    return {p: q.qom_get(DEVICE_PATH, p) for p in PROPS}


def test_guest_binds_battery_and_ac(vm):
    q, agent = vm
    assert sysfs(agent, f"{BAT}/type") == "Battery"
    assert sysfs(agent, f"{ADP}/type") == "Mains"
    # initial state from devspecs/battery.yaml: 30400 of 38000 mWh, discharging
    wait_for(agent, {f"{BAT}/present": "1", f"{BAT}/capacity": "80",
                     f"{BAT}/status": "Discharging", f"{BAT}/energy_now": "30400000",
                     f"{BAT}/energy_full_design": "38000000",
                     f"{BAT}/model_name": "TabVM Battery", f"{ADP}/online": "0"})
    assert sysfs(agent, f"{BAT}/technology") == "Li-ion"
    assert "battery " in agent.read("/proc/modules")


@pytest.mark.parametrize("changes, expected", [
    ({"capacity": 55},
     {"capacity": "55", "status": "Discharging", "energy_now": "20900000"}),
    ({"ac-online": True, "state": "charging", "remaining": 30000},
     {"capacity": "78", "status": "Charging", "energy_now": "30000000", "ADP0": "1"}),
    ({"remaining": 38000, "state": "idle"},
     {"capacity": "100", "status": "Full", "ADP0": "1"}),
    ({"ac-online": False, "state": "discharging", "capacity": 12, "rate": 9000},
     {"capacity": "12", "status": "Discharging", "power_now": "9000000", "ADP0": "0"}),
], ids=["discharge", "plug-in-charging", "full", "unplug-low"])
def test_guest_follows_qom_set(vm, changes, expected):
    q, agent = vm
    before = gpe_count(agent)
    for prop, value in changes.items():
        q.qom_set(DEVICE_PATH, prop, value)
    paths = {(f"{ADP}/online" if key == "ADP0" else f"{BAT}/{key}"): value
             for key, value in expected.items()}
    wait_for(agent, paths)
    assert gpe_count(agent) > before, "no GPE was raised for the change"


def test_information_change_reaches_guest(vm):
    q, agent = vm
    before = gpe_count(agent)
    q.qom_set(DEVICE_PATH, "design-capacity", 40000)
    q.qom_set(DEVICE_PATH, "cycle-count", 7)
    wait_for(agent, {f"{BAT}/energy_full_design": "40000000", f"{BAT}/cycle_count": "7"})
    assert gpe_count(agent) > before


def supplies(agent: AgentClient) -> set[str]:
    return set(agent.ls("/sys/class/power_supply"))


def test_battery_removed_and_inserted(vm):
    """Linux unregisters the power supply of a battery whose _STA says absent."""
    q, agent = vm
    q.qom_set(DEVICE_PATH, "present", False)
    deadline = time.monotonic() + 15
    while "BAT0" in supplies(agent):
        assert time.monotonic() < deadline, "BAT0 still registered after removal"
        time.sleep(0.3)
    assert "ADP0" in supplies(agent)
    q.qom_set(DEVICE_PATH, "present", True)
    deadline = time.monotonic() + 15
    while "BAT0" not in supplies(agent):
        assert time.monotonic() < deadline, "BAT0 did not come back"
        time.sleep(0.3)
    wait_for(agent, {f"{BAT}/present": "1"})


@pytest.mark.parametrize("prop, value, message", [
    ("capacity", 101, "capacity 101% is more than 100%"),
    ("remaining", 10 ** 6, "is more than the full capacity"),
    ("full", 1, "is more than the full capacity"),
    ("full", 0, "full capacity must be at least 1"),
    ("design-capacity", 0, "design capacity must be at least 1"),
    ("state", "exploding", "exploding"),
    ("remaining", "lots", "Parameter 'remaining' expects"),
    ("remaining", 2 ** 33, "remaining"),
    ("capacity", -1, "capacity"),
    ("present", 3, "expected: boolean"),
])
def test_invalid_state_rejected_and_unchanged(vm, prop, value, message):
    q, agent = vm
    before = device_state(q)
    with pytest.raises(QemuError, match=message):
        q.qom_set(DEVICE_PATH, prop, value)
    assert device_state(q) == before


def test_guest_garbage_on_ports_changes_nothing(vm):
    q, agent = vm
    q.qom_set(DEVICE_PATH, "capacity", 64)
    wait_for(agent, {f"{BAT}/capacity": "64"})
    before = device_state(q)
    guest_before = {p: sysfs(agent, f"{BAT}/{p}") for p in ("capacity", "status", "energy_now")}
    script = []
    for offset in range(-4, IO_SIZE + 8):
        for size in (1, 2, 4):
            port = IO_BASE + offset
            for value in (0xFFFFFFFF, 0, 0x5A5A5A5A):
                script.append(f"out {size} {port:#x} {value:#x}")
            if size != 4 or offset % 4:
                script.append(f"in {size} {port:#x}")  # ignored sizes: no side effect
    for line in script:
        verb, *args = line.split()
        agent.call(verb, *args)
    assert q.alive()
    assert q.cmd("query-status")["status"] == "running"
    assert device_state(q) == before
    assert agent.call("in", "4", f"{IO_BASE + 0x20:#x}") == "0x54414254"  # MAGIC
    time.sleep(1.2)   # past the battery driver's 1 s cache
    assert {p: sysfs(agent, f"{BAT}/{p}") for p in guest_before} == guest_before


def test_device_state_survives_migration(vm, build_outputs, guest_image, tmp_path):
    q, agent = vm
    q.qom_set(DEVICE_PATH, "capacity", 33)
    q.qom_set(DEVICE_PATH, "ac-online", True)
    saved = device_state(q)
    state_file = tmp_path / "state"
    q.cmd("migrate", uri=f"exec:cat > {state_file}")
    deadline = time.monotonic() + 60
    while q.cmd("query-migrate").get("status") != "completed":
        assert time.monotonic() < deadline, q.cmd("query-migrate")
        time.sleep(0.2)
    config = dataclasses.replace(
        builtin_profile(build_outputs, guest_image.vmlinux, guest_image.initrd, "tcg"),
        extra=("-incoming", f"exec:cat {state_file}"))
    with Qemu(config, new_runtime_dir("test-incoming")) as target:
        deadline = time.monotonic() + 60
        while target.cmd("query-status")["status"] == "inmigrate":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert device_state(target) == saved
    q.cmd("cont")


def test_only_one_battery(build_outputs, tmp_path):
    proc = subprocess.run(
        [str(build_outputs.qemu), "-M", "q35", "-accel", "tcg", "-nodefaults",
         "-display", "none", "-L", str(build_outputs.firmware), "-S",
         "-device", "tabvm-battery", "-device", "tabvm-battery"],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "only one tabvm-battery device is allowed" in proc.stderr


def write_supply(root, name: str, **files: str) -> None:
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    for key, value in files.items():
        (d / key).write_text(f"{value}\n")


def test_bridge_mirrors_host_power_supply(vm, tmp_path):
    """A (fake) host /sys/class/power_supply, mirrored by the glue's battery bridge."""
    from glue.battery_bridge import BatteryBridge
    from glue.power import HostPowerSupply

    q, agent = vm
    root = tmp_path / "power_supply"
    write_supply(root, "AC", type="Mains", online="0")
    write_supply(root, "BAT1", type="Battery", present="1", status="Discharging",
                 capacity="42", power_now="7300000", voltage_now="11100000")
    bridge = BatteryBridge(q, HostPowerSupply(root))
    bridge.update()
    wait_for(agent, {f"{BAT}/capacity": "42", f"{BAT}/status": "Discharging",
                     f"{BAT}/power_now": "7300000", f"{BAT}/voltage_now": "11100000",
                     f"{ADP}/online": "0"})
    write_supply(root, "AC", type="Mains", online="1")
    write_supply(root, "BAT1", type="Battery", present="1", status="Charging",
                 capacity="43")
    bridge.update()
    wait_for(agent, {f"{BAT}/capacity": "43", f"{BAT}/status": "Charging",
                     f"{ADP}/online": "1"})


def test_bridge_follows_simulated_curve(vm):
    from glue.battery_bridge import BatteryBridge
    from glue.power import SimulatedCurve

    q, agent = vm
    now = [0.0]
    curve = SimulatedCurve(start=90, low=20, discharge_rate=1.0, charge_rate=2.0,
                           clock=lambda: now[0])
    bridge = BatteryBridge(q, curve)
    for t, capacity, status, online in ((0, "90", "Discharging", "0"),
                                        (30, "60", "Discharging", "0"),
                                        (80, "40", "Charging", "1")):
        now[0] = t
        bridge.update()
        wait_for(agent, {f"{BAT}/capacity": capacity, f"{BAT}/status": status,
                         f"{ADP}/online": online})


def test_runtime_dir_is_private(vm):
    import stat
    q, _ = vm
    for path in (q.rundir, q.rundir.parent):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path
    assert q.qmp_socket.parent == q.rundir
