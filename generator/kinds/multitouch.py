"""usb-multitouch: a USB HID Windows-8-style touchscreen with an optional mouse."""

from __future__ import annotations

from typing import Any

from ..checks import Claim
from ..errors import SpecError
from ..ir import Axis, Multitouch
from ..loader import Document
from ..schema import KINDS_COMMON, uint
from . import usb

KIND = "usb-multitouch"
MIN_CONTACTS = 5        # Windows touchscreen requirement
MAX_CONTACTS = 10       # QEMU's input layer has INPUT_EVENT_SLOTS_MAX = 10 slots

AXIS = {
    "type": "dict", "required": True,
    "schema": {
        "logical_min": uint(0, 0x7FFF, default=0),
        "logical_max": uint(1, 0x7FFF, required=True),
        "physical_mm": uint(1, 0x7FFF, required=True),
    },
}

SCHEMA: dict[str, Any] = {
    **KINDS_COMMON,
    "contacts": uint(MIN_CONTACTS, MAX_CONTACTS, default=10),
    "mode": {"type": "string", "allowed": ["hybrid", "parallel"], "default": "hybrid"},
    "contacts_per_report": uint(1, MAX_CONTACTS, default=5),
    "report_rate_hz": uint(50, 1000, default=100),
    "x": AXIS,
    "y": AXIS,
    "hover": {"type": "boolean", "default": True},
    "mouse_buttons": uint(0, 5, default=3),
    "usb": usb.IDENTITY,
}


def check(doc: Document, spec: dict[str, Any]) -> list[SpecError]:
    errors = []

    def err(path: tuple[Any, ...], message: str) -> None:
        errors.append(SpecError(doc.loc(path), ".".join(map(str, path)), message))

    for axis in ("x", "y"):
        a = spec[axis]
        if a["logical_min"] >= a["logical_max"]:
            err((axis, "logical_max"), f"must be more than logical_min "
                f"({a['logical_max']} <= {a['logical_min']})")
    if spec["mode"] == "hybrid" and spec["contacts_per_report"] > spec["contacts"]:
        err(("contacts_per_report",), f"is more than contacts "
            f"({spec['contacts_per_report']} > {spec['contacts']})")
    usb.check_identity(spec, err)
    return errors


def claims(doc: Document, spec: dict[str, Any]) -> list[Claim]:
    return []


def build(doc: Document, spec: dict[str, Any]) -> Multitouch:
    ids = spec["usb"]
    per_report = spec["contacts"] if spec["mode"] == "parallel" else \
        spec["contacts_per_report"]
    return Multitouch(
        kind=KIND, name=spec["name"], description=spec["description"],
        spec_path=doc.path, loc=doc.loc(),
        contacts=spec["contacts"], mode=spec["mode"], per_report=per_report,
        report_rate_hz=spec["report_rate_hz"],
        x=Axis(**spec["x"]), y=Axis(**spec["y"]),
        hover=spec["hover"], mouse_buttons=spec["mouse_buttons"],
        vendor_id=ids["vendor_id"], product_id=ids["product_id"],
        manufacturer=ids["manufacturer"], product=ids["product"], serial=ids["serial"],
    )
