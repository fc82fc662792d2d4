"""acpi-battery: ACPI battery (PNP0C0A), AC adapter (ACPI0003) and SMBus host controller."""

from __future__ import annotations

from typing import Any

from ..checks import Claim
from ..errors import SpecError
from ..ir import Battery, BatteryInitial
from ..loader import Document
from ..schema import ACPI_NAME, KINDS_COMMON, safe_string, uint

KIND = "acpi-battery"

U32 = (0, 0xFFFFFFFF)
CAPACITY = uint(1, 0x7FFFFFFF)
ACPI_PATH = r"\\(?:[A-Z_][A-Z0-9_]{0,3})(?:\.[A-Z_][A-Z0-9_]{0,3})*"

SCHEMA: dict[str, Any] = {
    **KINDS_COMMON,
    "io_base": uint(0x100, 0xFFFF, required=True),
    "gpe_bit": uint(0, 7, default=0),
    "battery": {
        "type": "dict", "required": True,
        "schema": {
            "acpi_name": {"type": "string", "regex": ACPI_NAME, "default": "BAT0"},
            "unit": {"type": "string", "allowed": ["mWh", "mAh"], "default": "mWh"},
            "design_capacity": {**CAPACITY, "required": True},
            "design_voltage": uint(1, 0x7FFFFFFF, required=True),
            "warning_capacity": uint(0, 0x7FFFFFFF, required=True),
            "low_capacity": uint(0, 0x7FFFFFFF, required=True),
            "granularity": {"type": "list", "minlength": 2, "maxlength": 2,
                            "schema": uint(0, 0x7FFFFFFF), "default": [1, 1]},
            "technology": {"type": "string", "allowed": ["primary", "rechargeable"],
                           "default": "rechargeable"},
            "cycle_count": uint(0, 0x7FFFFFFF, default=0),
            "accuracy": uint(0, 100000, default=95000),
            "model": safe_string(31, required=True),
            "serial": safe_string(31, required=True),
            "type": safe_string(31, default="LION"),
            "oem": safe_string(31, required=True),
            "initial": {
                "type": "dict", "required": True,
                "schema": {
                    "present": {"type": "boolean", "default": True},
                    "state": {"type": "string",
                              "allowed": ["idle", "discharging", "charging"],
                              "default": "discharging"},
                    "remaining": uint(0, 0x7FFFFFFF, required=True),
                    "full": {**CAPACITY, "required": True},
                    "rate": uint(0, 0x7FFFFFFF, default=0),
                    "voltage": uint(0, 0x7FFFFFFF, default=0),
                },
            },
        },
    },
    "ac_adapter": {
        "type": "dict", "default": {},
        "schema": {
            "acpi_name": {"type": "string", "regex": ACPI_NAME, "default": "ADP0"},
            "initial_online": {"type": "boolean", "default": False},
        },
    },
    "smbus": {
        "type": "dict", "default": {},
        "schema": {
            "acpi_name": {"type": "string", "regex": ACPI_NAME, "default": "SMB0"},
            "parent": {"type": "string", "regex": ACPI_PATH, "nullable": True,
                       "default": None, "maxlength": 64},
            "ec_offset": uint(0, 0xFF, default=0x80),
            "ec_query": uint(0, 0xFF, default=0x30),
        },
    },
}


def check(doc: Document, spec: dict[str, Any]) -> list[SpecError]:
    """Checks the schema cannot express; ``spec`` is already normalized."""
    errors = []
    bat = spec["battery"]

    def err(path: tuple[Any, ...], message: str) -> None:
        errors.append(SpecError(doc.loc(path), ".".join(map(str, path)), message))

    if bat["warning_capacity"] > bat["design_capacity"]:
        err(("battery", "warning_capacity"), "is more than design_capacity "
            f"({bat['warning_capacity']} > {bat['design_capacity']})")
    if bat["low_capacity"] > bat["warning_capacity"]:
        err(("battery", "low_capacity"), "is more than warning_capacity "
            f"({bat['low_capacity']} > {bat['warning_capacity']})")
    ini = bat["initial"]
    if ini["remaining"] > ini["full"]:
        err(("battery", "initial", "remaining"),
            f"is more than initial.full ({ini['remaining']} > {ini['full']})")
    names = {("battery", "acpi_name"): bat["acpi_name"],
             ("ac_adapter", "acpi_name"): spec["ac_adapter"]["acpi_name"],
             ("smbus", "acpi_name"): spec["smbus"]["acpi_name"]}
    seen: dict[str, tuple[Any, ...]] = {}
    for path, name in names.items():
        if name in seen:
            err(path, f"ACPI name {name} is already used by {'.'.join(seen[name])}")
        seen.setdefault(name, path)
    return errors


def build(doc: Document, spec: dict[str, Any]) -> Battery:
    bat, ini = spec["battery"], spec["battery"]["initial"]
    return Battery(
        kind=KIND, name=spec["name"], description=spec["description"],
        spec_path=doc.path, loc=doc.loc(),
        io_base=spec["io_base"], gpe_bit=spec["gpe_bit"],
        bat_name=bat["acpi_name"], unit=bat["unit"],
        design_capacity=bat["design_capacity"], design_voltage=bat["design_voltage"],
        warning_capacity=bat["warning_capacity"], low_capacity=bat["low_capacity"],
        granularity=tuple(bat["granularity"]), technology=bat["technology"],
        cycle_count=bat["cycle_count"], accuracy=bat["accuracy"],
        model=bat["model"], serial=bat["serial"], battery_type=bat["type"], oem=bat["oem"],
        initial=BatteryInitial(present=ini["present"], state=ini["state"],
                               remaining=ini["remaining"], full=ini["full"],
                               rate=ini["rate"], voltage=ini["voltage"]),
        adp_name=spec["ac_adapter"]["acpi_name"],
        initial_online=spec["ac_adapter"]["initial_online"],
        smbus_name=spec["smbus"]["acpi_name"], smbus_parent=spec["smbus"]["parent"],
        ec_offset=spec["smbus"]["ec_offset"], ec_query=spec["smbus"]["ec_query"],
    )


def claims(doc: Document, spec: dict[str, Any]) -> list[Claim]:
    return [
        Claim("io", spec["io_base"], spec["io_base"] + Battery.IO_SIZE - 1, "io_base",
              doc.loc(("io_base",)), spec["name"]),
        Claim("gpe", spec["gpe_bit"], spec["gpe_bit"], "gpe_bit",
              doc.loc(("gpe_bit",)), spec["name"]),
    ]
