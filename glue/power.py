"""Where the battery's state comes from: the host's power supply, or a simulation.

``HostPowerSupply`` reads Linux's ``/sys/class/power_supply`` (any root, so tests
use a fake tree); ``SimulatedCurve`` gives a repeating discharge/charge cycle for
hosts with no battery. Both return a ``PowerState`` in host-neutral units.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

POWER_SUPPLY = Path("/sys/class/power_supply")


@dataclass(frozen=True)
class PowerState:
    present: bool
    state: str                 # idle | discharging | charging
    percent: float             # 0..100
    ac_online: bool
    power_mw: int | None = None     # (dis)charge rate, when known
    voltage_mv: int | None = None
    source: str = ""


class PowerSource(Protocol):
    def read(self) -> PowerState: ...


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _int(path: Path) -> int | None:
    text = _read(path)
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


_STATUS = {"Charging": "charging", "Discharging": "discharging", "Full": "idle",
           "Not charging": "idle"}


class HostPowerSupply:
    """The host's first battery and AC adapter under ``root``."""

    def __init__(self, root: Path = POWER_SUPPLY):
        self.root = root

    def _supplies(self, kind: str) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.iterdir() if _read(p / "type") == kind)

    def has_battery(self) -> bool:
        return any(_read(p / "present") != "0" for p in self._supplies("Battery"))

    def read(self) -> PowerState:
        mains = self._supplies("Mains")
        ac_online = any(_read(p / "online") == "1" for p in mains)
        batteries = [p for p in self._supplies("Battery") if _read(p / "present") != "0"]
        if not batteries:
            return PowerState(False, "idle", 0.0, ac_online, source=str(self.root))
        bat = batteries[0]
        percent = _int(bat / "capacity")
        if percent is None:
            now, full = _int(bat / "energy_now"), _int(bat / "energy_full")
            if now is None or not full:
                now, full = _int(bat / "charge_now"), _int(bat / "charge_full")
            percent = 100 * now / full if now is not None and full else 0
        power = _int(bat / "power_now")
        if power is None:
            current, volts = _int(bat / "current_now"), _int(bat / "voltage_now")
            if current is not None and volts is not None:
                power = current * volts // 1_000_000
        voltage = _int(bat / "voltage_now")
        return PowerState(
            present=True,
            state=_STATUS.get(_read(bat / "status") or "", "idle"),
            percent=max(0.0, min(100.0, float(percent))),
            ac_online=ac_online or (not mains and _read(bat / "status") == "Charging"),
            power_mw=abs(power) // 1000 if power is not None else None,
            voltage_mv=voltage // 1000 if voltage is not None else None,
            source=str(bat),
        )


@dataclass
class SimulatedCurve:
    """Discharge from ``start`` to ``low`` %, then charge on AC to ``high`` %, repeat.

    Rates are percent per second of wall time (fast, so a demo shows movement).
    """

    start: float = 80.0
    low: float = 20.0
    high: float = 100.0
    discharge_rate: float = 0.5
    charge_rate: float = 1.0
    power_mw: int = 6000
    voltage_mv: int = 7600
    clock: Callable[[], float] = time.monotonic

    def __post_init__(self) -> None:
        self.t0 = self.clock()

    def at(self, elapsed: float) -> PowerState:
        first = (self.start - self.low) / self.discharge_rate
        down = (self.high - self.low) / self.discharge_rate
        up = (self.high - self.low) / self.charge_rate
        if elapsed < first:
            return self._discharging(self.start - elapsed * self.discharge_rate)
        t = (elapsed - first) % (up + down)
        if t < up:
            return PowerState(True, "charging", self.low + t * self.charge_rate, True,
                              self.power_mw, self.voltage_mv, "simulated")
        return self._discharging(self.high - (t - up) * self.discharge_rate)

    def _discharging(self, percent: float) -> PowerState:
        return PowerState(True, "discharging", percent, False, self.power_mw,
                          self.voltage_mv, "simulated")

    def read(self) -> PowerState:
        return self.at(self.clock() - self.t0)


def default_source(root: Path = POWER_SUPPLY) -> PowerSource:
    host = HostPowerSupply(root)
    return host if host.has_battery() else SimulatedCurve()
