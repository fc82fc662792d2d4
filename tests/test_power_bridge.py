"""glue/power.py (host power supply, simulated curve) and glue/battery_bridge.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from glue.battery_bridge import DEVICE_PATH, BatteryBridge
from glue.power import HostPowerSupply, PowerState, SimulatedCurve, default_source


def supply(root: Path, name: str, **files: object) -> Path:
    d = root / name
    d.mkdir(parents=True)
    for key, value in files.items():
        (d / key).write_text(f"{value}\n")
    return d


def battery(root: Path, name: str = "BAT0", **overrides: object) -> Path:
    files: dict[str, object] = dict(type="Battery", present=1, status="Discharging",
                                    capacity=57, energy_now=21_660_000,
                                    energy_full=38_000_000, power_now=5_250_000,
                                    voltage_now=7_612_000)
    files.update(overrides)
    files = {k: v for k, v in files.items() if v is not None}
    return supply(root, name, **files)


# --- HostPowerSupply --------------------------------------------------------------------

def test_capacity_file(tmp_path):
    bat = battery(tmp_path)
    supply(tmp_path, "AC", type="Mains", online=0)
    ps = HostPowerSupply(tmp_path).read()
    assert ps == PowerState(present=True, state="discharging", percent=57.0, ac_online=False,
                            power_mw=5250, voltage_mv=7612, source=str(bat))


def test_energy_without_capacity(tmp_path):
    battery(tmp_path, capacity=None, energy_now=9_500_000, energy_full=38_000_000)
    assert HostPowerSupply(tmp_path).read().percent == pytest.approx(25.0)


def test_charge_instead_of_energy(tmp_path):
    battery(tmp_path, capacity=None, energy_now=None, energy_full=None,
            charge_now=3_000_000, charge_full=4_000_000)
    assert HostPowerSupply(tmp_path).read().percent == pytest.approx(75.0)


def test_zero_energy_full_falls_back_to_charge(tmp_path):
    battery(tmp_path, capacity=None, energy_now=1, energy_full=0,
            charge_now=1_000_000, charge_full=4_000_000)
    assert HostPowerSupply(tmp_path).read().percent == pytest.approx(25.0)


def test_current_times_voltage_without_power_now(tmp_path):
    # 700 mA at 7.6 V = 5320 mW
    battery(tmp_path, power_now=None, current_now=700_000, voltage_now=7_600_000)
    ps = HostPowerSupply(tmp_path).read()
    assert ps.power_mw == 5320
    assert ps.voltage_mv == 7600


def test_negative_current_gives_positive_rate(tmp_path):
    battery(tmp_path, power_now=None, current_now=-700_000, voltage_now=7_600_000)
    assert HostPowerSupply(tmp_path).read().power_mw == 5320


def test_no_rate_known(tmp_path):
    battery(tmp_path, power_now=None, voltage_now=None)
    ps = HostPowerSupply(tmp_path).read()
    assert ps.power_mw is None and ps.voltage_mv is None


@pytest.mark.parametrize("status,state", [("Charging", "charging"),
                                          ("Discharging", "discharging"),
                                          ("Full", "idle"), ("Not charging", "idle"),
                                          ("Unknown", "idle")])
def test_status_mapping(tmp_path, status, state):
    battery(tmp_path, status=status)
    supply(tmp_path, "AC", type="Mains", online=0)
    assert HostPowerSupply(tmp_path).read().state == state


def test_no_battery(tmp_path):
    supply(tmp_path, "AC", type="Mains", online=1)
    supply(tmp_path, "hidpp_battery_0", type="USB", capacity=80)
    host = HostPowerSupply(tmp_path)
    assert host.has_battery() is False
    ps = host.read()
    assert ps.present is False
    assert ps.ac_online is True


def test_battery_not_present(tmp_path):
    battery(tmp_path, present=0)
    host = HostPowerSupply(tmp_path)
    assert host.has_battery() is False
    assert host.read().present is False


def test_missing_root(tmp_path):
    host = HostPowerSupply(tmp_path / "nope")
    assert host.has_battery() is False
    assert host.read().present is False


def test_first_present_battery_is_used(tmp_path):
    battery(tmp_path, "BAT0", present=0, capacity=10)
    battery(tmp_path, "BAT1", capacity=90)
    ps = HostPowerSupply(tmp_path).read()
    assert ps.percent == 90.0
    assert ps.source == str(tmp_path / "BAT1")


@pytest.mark.parametrize("online,expected", [(1, True), (0, False)])
def test_ac_online(tmp_path, online, expected):
    battery(tmp_path, status="Full")
    supply(tmp_path, "AC", type="Mains", online=online)
    assert HostPowerSupply(tmp_path).read().ac_online is expected


def test_charging_without_mains_supply_means_ac(tmp_path):
    battery(tmp_path, status="Charging")
    assert HostPowerSupply(tmp_path).read().ac_online is True


def test_capacity_is_clamped(tmp_path):
    battery(tmp_path, capacity=104)
    assert HostPowerSupply(tmp_path).read().percent == 100.0


def test_garbage_does_not_raise(tmp_path):
    battery(tmp_path, capacity="n/a", energy_now="lots", energy_full="", charge_now="x",
            power_now="1.5W", voltage_now="?", status="Weird")
    supply(tmp_path, "AC", type="Mains", online="yes")
    ps = HostPowerSupply(tmp_path).read()
    assert ps.present is True
    assert ps.percent == 0.0
    assert ps.power_mw is None and ps.voltage_mv is None
    assert ps.state == "idle"
    assert ps.ac_online is False


def test_garbage_capacity_falls_back_to_energy(tmp_path):
    battery(tmp_path, capacity="", energy_now=19_000_000, energy_full=38_000_000)
    assert HostPowerSupply(tmp_path).read().percent == pytest.approx(50.0)


# --- SimulatedCurve ---------------------------------------------------------------------

def curve(**kw: Any) -> SimulatedCurve:
    return SimulatedCurve(clock=lambda: 0.0, **kw)


def test_curve_starts_at_start_and_discharges():
    c = curve(start=80, low=20, high=100, discharge_rate=0.5, charge_rate=1.0)
    s0 = c.at(0)
    assert (s0.present, s0.state, s0.ac_online, s0.percent) == (True, "discharging", False, 80)
    assert c.at(10).percent == pytest.approx(75)
    assert c.at(100).percent == pytest.approx(30)
    assert c.at(100).state == "discharging"


def test_curve_full_cycle():
    c = curve(start=80, low=20, high=100, discharge_rate=0.5, charge_rate=1.0)
    first = (80 - 20) / 0.5    # 120 s down to 20 %
    up = (100 - 20) / 1.0      # 80 s up to 100 %
    down = (100 - 20) / 0.5    # 160 s back down to 20 %
    s = c.at(first + 1)
    assert (s.state, s.ac_online) == ("charging", True)
    assert s.percent == pytest.approx(21)
    s = c.at(first + up - 1)
    assert (s.state, s.percent) == ("charging", pytest.approx(99))
    s = c.at(first + up + 2)
    assert (s.state, s.ac_online) == ("discharging", False)
    assert s.percent == pytest.approx(99)
    s = c.at(first + up + down + 5)     # second cycle: charging again
    assert (s.state, s.percent) == ("charging", pytest.approx(25))


def test_curve_is_continuous_and_bounded():
    c = curve(start=80, low=20, high=100, discharge_rate=0.5, charge_rate=1.0)
    step = 0.25
    max_jump = step * max(c.discharge_rate, c.charge_rate)
    prev = c.at(0).percent
    for i in range(1, int(1000 / step)):
        p = c.at(i * step).percent
        assert 20 - 1e-9 <= p <= 100 + 1e-9
        assert abs(p - prev) <= max_jump + 1e-9, f"jump at t={i * step}"
        prev = p


def test_curve_switch_points():
    c = curve(start=80, low=20, high=100, discharge_rate=0.5, charge_rate=1.0)
    assert c.at(120 - 1e-6).percent == pytest.approx(20, abs=1e-3)
    assert c.at(120).state == "charging"
    assert c.at(120).percent == pytest.approx(20)
    assert c.at(200 - 1e-6).state == "charging"
    assert c.at(200).state == "discharging"
    assert c.at(200).percent == pytest.approx(100)


def test_curve_is_deterministic_and_uses_clock():
    t = [100.0]
    c = SimulatedCurve(clock=lambda: t[0])
    d = SimulatedCurve(clock=lambda: 0.0)
    t[0] = 130.0
    assert c.read() == d.at(30) == SimulatedCurve(clock=lambda: 5.0).at(30)
    assert c.read().source == "simulated"
    assert c.read().power_mw == 6000 and c.read().voltage_mv == 7600


# --- default_source ---------------------------------------------------------------------

def test_default_source_simulated_without_battery(tmp_path):
    assert isinstance(default_source(tmp_path), SimulatedCurve)


def test_default_source_host_with_battery(tmp_path):
    battery(tmp_path)
    src = default_source(tmp_path)
    assert isinstance(src, HostPowerSupply)
    assert src.root == tmp_path


# --- BatteryBridge ----------------------------------------------------------------------

class FakeBattery:
    """The device's QOM side: values, with remaining <= full enforced on every set."""

    def __init__(self, full: int = 38000, remaining: int = 30400):
        self.values: dict[str, Any] = {"present": True, "ac-online": False,
                                       "state": "discharging", "remaining": remaining,
                                       "full": full, "rate": 4000, "voltage": 7600,
                                       "critical": False}
        self.calls: list[tuple[str, Any]] = []
        self.gets: list[str] = []

    def qom_get(self, path: str, prop: str) -> Any:
        assert path == DEVICE_PATH
        self.gets.append(prop)
        return self.values[prop]

    def qom_set(self, path: str, prop: str, value: Any) -> None:
        assert path == DEVICE_PATH
        if prop not in self.values:
            raise ValueError(f"no property {prop}")
        new = dict(self.values, **{prop: value})
        if new["remaining"] > new["full"]:
            raise ValueError(f"remaining {new['remaining']} > full {new['full']}")
        self.values = new
        self.calls.append((prop, value))


class Source:
    def __init__(self, ps: PowerState):
        self.ps = ps

    def read(self) -> PowerState:
        return self.ps


def state(**kw: Any) -> PowerState:
    base = dict(present=True, state="discharging", percent=50.0, ac_online=False,
                power_mw=5000, voltage_mv=7500)
    base.update(kw)
    return PowerState(**base)


def test_first_update_sends_everything():
    dev, src = FakeBattery(full=38000), Source(state(percent=50.0))
    bridge = BatteryBridge(dev, src)
    assert bridge.update() == src.ps
    assert dev.calls == [("present", True), ("ac-online", False), ("state", "discharging"),
                         ("remaining", 19000), ("critical", False), ("rate", 5000),
                         ("voltage", 7500)]
    assert dev.gets == ["full"]


def test_first_update_without_rate_or_voltage():
    dev = FakeBattery()
    BatteryBridge(dev, Source(state(power_mw=None, voltage_mv=None))).update()
    assert [p for p, _ in dev.calls] == ["present", "ac-online", "state", "remaining",
                                         "critical"]


def test_same_state_sends_nothing():
    dev, src = FakeBattery(), Source(state())
    bridge = BatteryBridge(dev, src)
    bridge.update()
    dev.calls.clear()
    bridge.update()
    bridge.update()
    assert dev.calls == []
    assert dev.gets == ["full"]     # full is read once and remembered


def test_only_changed_values_are_sent():
    dev, src = FakeBattery(full=40000), Source(state(percent=50.0))
    bridge = BatteryBridge(dev, src)
    bridge.update()
    dev.calls.clear()
    src.ps = state(percent=49.0)
    bridge.update()
    assert dev.calls == [("remaining", 19600)]
    dev.calls.clear()
    src.ps = state(percent=49.0, state="charging", ac_online=True, power_mw=7000)
    bridge.update()
    assert dev.calls == [("ac-online", True), ("state", "charging"), ("rate", 7000)]


@pytest.mark.parametrize("full,percent,remaining", [
    (38000, 57.0, 21660), (38000, 100.0, 38000), (38000, 0.0, 0),
    (1000, 33.36, 334), (1000, 33.34, 333), (50000, 99.999, 50000),
])
def test_remaining_is_rounded_share_of_device_full(full, percent, remaining):
    dev = FakeBattery(full=full, remaining=0)
    BatteryBridge(dev, Source(state(percent=percent))).update()
    assert dict(dev.calls)["remaining"] == remaining
    assert dev.values["remaining"] <= dev.values["full"]


@pytest.mark.parametrize("st,percent,present,critical", [
    ("discharging", 2.9, True, True),
    ("discharging", 3.0, True, False),
    ("discharging", 10.0, True, False),
    ("charging", 1.0, True, False),
    ("idle", 1.0, True, False),
    ("discharging", 1.0, False, False),
])
def test_critical_only_when_discharging_below_3_percent(st, percent, present, critical):
    dev = FakeBattery()
    BatteryBridge(dev, Source(state(state=st, percent=percent, present=present))).update()
    assert dict(dev.calls)["critical"] is critical


def test_critical_is_cleared_when_charging_starts():
    dev, src = FakeBattery(), Source(state(percent=2.0))
    bridge = BatteryBridge(dev, src)
    bridge.update()
    assert dev.values["critical"] is True
    dev.calls.clear()
    src.ps = state(percent=2.0, state="charging", ac_online=True)
    bridge.update()
    assert ("critical", False) in dev.calls
    assert dev.values["critical"] is False


def test_bridge_follows_simulated_curve_without_breaking_device_rules():
    t = [0.0]
    src = SimulatedCurve(clock=lambda: t[0])
    dev = FakeBattery(full=38000)
    bridge = BatteryBridge(dev, src)
    for i in range(0, 400, 3):
        t[0] = float(i)
        ps = bridge.update()
        assert dev.values["remaining"] == round(38000 * ps.percent / 100)
        assert dev.values["state"] == ps.state
        assert dev.values["ac-online"] is ps.ac_online
