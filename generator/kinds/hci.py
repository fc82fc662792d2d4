"""usb-hci: a USB Bluetooth controller whose HCI traffic goes to a chardev (H4)."""

from __future__ import annotations

from typing import Any

from ..checks import Claim
from ..errors import SpecError
from ..ir import Hci
from ..loader import Document
from ..schema import KINDS_COMMON, uint
from . import usb

KIND = "usb-hci"
ISO_LENGTH_MAX = 0x3FFF       # ISO data length is a 14-bit field
ISOC_PACKET_MAX = 1023        # full-speed isochronous wMaxPacketSize
BULK_PACKET_SIZES = (8, 16, 32, 64)   # full-speed bulk wMaxPacketSize

SCHEMA: dict[str, Any] = {
    **KINDS_COMMON,
    "usb": usb.IDENTITY,
    "endpoints": {
        "type": "dict", "default": {},
        "schema": {
            "event_max_packet": uint(8, 64, default=16),
            "coalesce_events": {"type": "boolean", "default": True},
            "high_speed": {"type": "boolean", "default": False},
            "acl_max_packet": {"type": "integer", "allowed": list(BULK_PACKET_SIZES),
                               "default": 64},
        },
    },
    "sco": {
        "type": "dict", "default": {},
        "schema": {
            "enabled": {"type": "boolean", "default": True},
            "max_packet": {
                "type": "list", "minlength": 2, "maxlength": 8,
                "schema": uint(0, ISOC_PACKET_MAX),
                "default": [0, 9, 17, 25, 33, 49],
            },
        },
    },
    "limits": {
        "type": "dict", "default": {},
        "schema": {
            "acl_max": uint(27, 0xFFFF, default=1021),
            "sco_max": uint(1, 255, default=255),
            "iso_max": uint(1, ISO_LENGTH_MAX, default=1021),
            "host_queue": uint(4096, 16 << 20, default=65536),
            "guest_queue": uint(1024, 16 << 20, default=16384),
        },
    },
    "always_plugged": {"type": "boolean", "default": False},
    "capture_format": {"type": "string", "allowed": ["btsnoop", "pcap"],
                       "default": "btsnoop"},
}


def check(doc: Document, spec: dict[str, Any]) -> list[SpecError]:
    errors = []

    def err(path: tuple[Any, ...], message: str) -> None:
        errors.append(SpecError(doc.loc(path), ".".join(map(str, path)), message))

    usb.check_identity(spec, err)
    sizes = spec["sco"]["max_packet"]
    if spec["sco"]["enabled"]:
        if sizes[0] != 0:
            err(("sco", "max_packet", 0), f"alternate setting 0 must have no bandwidth "
                f"(0, not {sizes[0]})")
        for i in range(1, len(sizes)):
            if sizes[i] <= sizes[i - 1]:
                err(("sco", "max_packet", i), f"must be more than the setting before it "
                    f"({sizes[i]} <= {sizes[i - 1]})")
    limits = spec["limits"]
    ir = build(doc, spec)
    if limits["guest_queue"] < ir.min_guest_queue:
        err(("limits", "guest_queue"), f"must hold two commands and two ACL packets of "
            f"acl_max bytes: at least {ir.min_guest_queue}")
    largest = 1 + ir.ACL_HEADER + max(limits["acl_max"], limits["iso_max"])
    if limits["host_queue"] < largest:
        err(("limits", "host_queue"), f"must hold the largest packet: at least {largest}")
    return errors


def claims(doc: Document, spec: dict[str, Any]) -> list[Claim]:
    return []


def build(doc: Document, spec: dict[str, Any]) -> Hci:
    ids, limits = spec["usb"], spec["limits"]
    return Hci(
        kind=KIND, name=spec["name"], description=spec["description"],
        spec_path=doc.path, loc=doc.loc(),
        vendor_id=ids["vendor_id"], product_id=ids["product_id"],
        manufacturer=ids["manufacturer"], product=ids["product"], serial=ids["serial"],
        event_max_packet=spec["endpoints"]["event_max_packet"],
        coalesce_events=spec["endpoints"]["coalesce_events"],
        high_speed=spec["endpoints"]["high_speed"],
        acl_max_packet=spec["endpoints"]["acl_max_packet"],
        sco_max_packets=tuple(spec["sco"]["max_packet"]) if spec["sco"]["enabled"] else (),
        acl_max=limits["acl_max"], sco_max=limits["sco_max"], iso_max=limits["iso_max"],
        host_queue=limits["host_queue"], guest_queue=limits["guest_queue"],
        always_plugged=spec["always_plugged"], capture_format=spec["capture_format"],
    )
