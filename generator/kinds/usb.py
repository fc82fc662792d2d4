"""What every USB device kind's spec has: the identity block and its checks."""

from __future__ import annotations

from typing import Any, Callable

from ..schema import safe_string, uint

#: The ``usb:`` block of a spec.
IDENTITY: dict[str, Any] = {
    "type": "dict", "required": True,
    "schema": {
        "vendor_id": uint(1, 0xFFFF, required=True),
        "product_id": uint(0, 0xFFFF, required=True),
        "manufacturer": safe_string(64, required=True),
        "product": safe_string(64, required=True),
        "serial": safe_string(32, required=True),
    },
}

# Linux drivers apply quirks by VID:PID; a generated device must not inherit them.
QUIRKY_IDS = {
    (0x0A12, 0x0001): "a CSR Bluetooth dongle ID with driver quirks",
}


def check_identity(spec: dict[str, Any],
                   err: Callable[[tuple[Any, ...], str], None]) -> None:
    ids = (spec["usb"]["vendor_id"], spec["usb"]["product_id"])
    if ids in QUIRKY_IDS:
        err(("usb", "product_id"), f"{ids[0]:04x}:{ids[1]:04x} is {QUIRKY_IDS[ids]}; "
            "pick another")
