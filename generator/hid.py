"""A small HID report descriptor writer (HID 1.11, section 6.2.2: short items).

The generator builds descriptors as a list of items; ``encode`` gives the bytes.
hid-tools decodes the result in the tests, so this writer is checked against an
independent parser. (Written here because hid-tools can parse descriptors but has
no API to build one from data.)
"""

from __future__ import annotations

from dataclasses import dataclass

MAIN, GLOBAL, LOCAL = 0, 1, 2

# (type, tag) of the items used
INPUT, FEATURE, COLLECTION, END_COLLECTION = (MAIN, 0x8), (MAIN, 0xB), (MAIN, 0xA), (MAIN, 0xC)
USAGE_PAGE, LOGICAL_MIN, LOGICAL_MAX = (GLOBAL, 0x0), (GLOBAL, 0x1), (GLOBAL, 0x2)
PHYSICAL_MIN, PHYSICAL_MAX, UNIT_EXPONENT = (GLOBAL, 0x3), (GLOBAL, 0x4), (GLOBAL, 0x5)
UNIT, REPORT_SIZE, REPORT_ID, REPORT_COUNT = (GLOBAL, 0x6), (GLOBAL, 0x7), (GLOBAL, 0x8), (GLOBAL, 0x9)
PUSH, POP = (GLOBAL, 0xA), (GLOBAL, 0xB)
USAGE, USAGE_MIN, USAGE_MAX = (LOCAL, 0x0), (LOCAL, 0x1), (LOCAL, 0x2)

SIGNED = {LOGICAL_MIN, LOGICAL_MAX, PHYSICAL_MIN, PHYSICAL_MAX}

# Main item data bits
DATA_VAR_ABS = 0x02
CONST = 0x01           # Const,Array,Abs: padding
APPLICATION, LOGICAL, PHYSICAL = 0x01, 0x02, 0x00

# Usage pages and usages
GENERIC_DESKTOP, BUTTON, DIGITIZER, VENDOR_FF00 = 0x01, 0x09, 0x0D, 0xFF00
GD_POINTER, GD_MOUSE, GD_X, GD_Y = 0x01, 0x02, 0x30, 0x31
DG_TOUCH_SCREEN, DG_DEVICE_CONFIG, DG_FINGER, DG_DEVICE_SETTINGS = 0x04, 0x0E, 0x22, 0x23
DG_IN_RANGE, DG_TIP_SWITCH, DG_CONFIDENCE = 0x32, 0x42, 0x47
DG_DEVICE_MODE, DG_DEVICE_IDENTIFIER = 0x52, 0x53
DG_CONTACT_ID, DG_CONTACT_COUNT, DG_CONTACT_COUNT_MAX, DG_SCAN_TIME = 0x51, 0x54, 0x55, 0x56
VENDOR_CERTIFICATION = 0xC5

# Units (HID 1.11 6.2.2.7): SI linear length in cm; SI time in seconds
UNIT_CM = 0x11
UNIT_SECONDS = 0x1001


@dataclass(frozen=True)
class Item:
    kind: tuple[int, int]
    value: int | None = None

    def encode(self) -> bytes:
        type_, tag = self.kind
        if self.value is None:
            return bytes([(tag << 4) | (type_ << 2)])
        data = _data_bytes(self.value, self.kind in SIGNED)
        size_code = {1: 1, 2: 2, 4: 3}[len(data)]
        return bytes([(tag << 4) | (type_ << 2) | size_code]) + data


def _data_bytes(value: int, signed: bool) -> bytes:
    for size in (1, 2, 4):
        lo, hi = (-(1 << (8 * size - 1)), (1 << (8 * size - 1)) - 1) if signed \
            else (0, (1 << (8 * size)) - 1)
        if lo <= value <= hi:
            return value.to_bytes(size, "little", signed=signed)
    raise ValueError(f"HID item value {value} does not fit in 4 bytes")


def unit_exponent(exp: int) -> int:
    """Unit Exponent is a 4-bit two's complement nibble (-8..7)."""
    if not -8 <= exp <= 7:
        raise ValueError(f"unit exponent {exp} out of -8..7")
    return exp & 0xF


def encode(items: list[Item]) -> bytes:
    return b"".join(i.encode() for i in items)
