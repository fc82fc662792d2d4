"""Mirror a PowerSource into the tabvm-battery device with qom-set.

Only values that changed are sent (each change raises a GPE in the guest), in an
order that keeps the device's invariant (remaining <= full) true at every step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from .power import PowerSource, PowerState

DEVICE_PATH = "/machine/peripheral/battery"


class QomTarget(Protocol):
    def qom_set(self, path: str, prop: str, value: Any) -> None: ...
    def qom_get(self, path: str, prop: str) -> Any: ...


@dataclass
class BatteryBridge:
    vm: QomTarget
    source: PowerSource
    path: str = DEVICE_PATH
    sent: dict[str, Any] = field(default_factory=dict)

    def device_values(self, ps: PowerState, full: int) -> dict[str, Any]:
        """The device properties for ``ps``, on a battery of ``full`` capacity."""
        values: dict[str, Any] = {
            "present": ps.present,
            "ac-online": ps.ac_online,
            "state": ps.state,
            "remaining": round(full * ps.percent / 100),
            "critical": ps.present and ps.state == "discharging" and ps.percent < 3,
        }
        if ps.power_mw is not None:
            values["rate"] = ps.power_mw
        if ps.voltage_mv is not None:
            values["voltage"] = ps.voltage_mv
        return values

    def update(self) -> PowerState:
        """Read the source once and push what changed; returns what was read."""
        ps = self.source.read()
        if "full" not in self.sent:
            self.sent["full"] = self.vm.qom_get(self.path, "full")
        for prop, value in self.device_values(ps, self.sent["full"]).items():
            if self.sent.get(prop) != value:
                self.vm.qom_set(self.path, prop, value)
                self.sent[prop] = value
        return ps
