"""QMP ``input-send-event`` records (qapi/ui.json InputEvent), built in one place.

One ``input-send-event`` call is one input frame: QEMU syncs after it.
"""

from __future__ import annotations

from typing import Iterable


def mtt(kind: str, slot: int, tracking_id: int, axis: str = "x", value: int = 0) -> dict:
    """An InputMultiTouchEvent: kind is begin, update, end, cancel or data.
    ``axis`` and ``value`` are mandatory in the schema even when unused."""
    return {"type": "mtt", "data": {"type": kind, "slot": slot,
                                    "tracking-id": tracking_id, "axis": axis,
                                    "value": value}}


def btn(button: str, down: bool) -> dict:
    return {"type": "btn", "data": {"button": button, "down": down}}


def abs_move(axis: str, value: int) -> dict:
    return {"type": "abs", "data": {"axis": axis, "value": value}}


def touch_frame(kind: str, points: Iterable[tuple[int, int]], first_slot: int = 0) -> list[dict]:
    """Contacts in consecutive slots (tracking ID = slot) at (x, y), 0..32767."""
    return [e for slot, (x, y) in enumerate(points, first_slot)
            for e in (mtt(kind, slot, slot), mtt("data", slot, slot, "x", x),
                      mtt("data", slot, slot, "y", y))]
