"""What a viewer's fingers and mouse become: the touchscreen's contacts and its
mouse collection, through QMP ``input-send-event`` (the glue's touch path).

Two host events carry them (registered by the lifecycle, served on the
host-event socket; ``tabvm view`` sends them):

- ``touch contacts=[[ID, X, Y], ...]``: every contact that is down now (an empty
  list lifts them all). ID is the viewer's pointer id (any integer), X and Y are
  QEMU's absolute units 0..32767 of the whole guest screen. ``ContactTracker``
  keeps the slots: a new ID takes the lowest free slot (``begin``), a known one
  that moved is an ``update``, a missing one ends (``end``, tracking ID -1 as
  QEMU's own touch code and glue.touch_bridge send it). At most 10 contacts
  (QEMU's INPUT_EVENT_SLOTS_MAX); more are dropped and counted.
- ``pointer x=X y=Y buttons=B``: the mouse, absolute 0..32767, buttons as the
  DOM's ``MouseEvent.buttons`` (1 left, 2 right, 4 middle), which is the bit
  order of the touchscreen's mouse collection.

One call is one ``input-send-event`` frame, sent only when something changed;
QEMU routes it to the touchscreen (the only handler of multitouch events, and
the absolute pointer's when no other absolute device is there).

``screen_to_abs`` is the mapping the README documents: screen pixel ``p`` of a
screen ``size`` pixels wide is the value ``p * 32767 / (size - 1)``; the guest
maps the touchscreen's whole range onto its whole screen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from .qmp_input import abs_move, btn, mtt

__all__ = ["ABS_MAX", "MAX_CONTACTS", "ContactTracker", "PointerState", "screen_to_abs",
           "parse_contacts"]

ABS_MAX = 0x7FFF          # QEMU's INPUT_EVENT_ABS_MAX
MAX_CONTACTS = 10         # QEMU's INPUT_EVENT_SLOTS_MAX
_BUTTONS = ((1, "left"), (2, "right"), (4, "middle"))


def screen_to_abs(pixel: float, size: int) -> int:
    """Screen coordinate ``pixel`` (0 = the first pixel's centre, ``size - 1`` the
    last one's) of a ``size``-pixel axis as QEMU's absolute value, clamped."""
    if size <= 1:
        return ABS_MAX // 2
    value = round(pixel * ABS_MAX / (size - 1))
    return max(0, min(ABS_MAX, value))


def _coordinate(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"a coordinate is an integer 0..{ABS_MAX}, not {v!r}"[:80])
    if not 0 <= v <= ABS_MAX:
        raise ValueError(f"a coordinate is 0..{ABS_MAX}, not {v}")
    return v


def parse_contacts(contacts: Any) -> dict[int, tuple[int, int]]:
    """``[[ID, X, Y], ...]`` as {ID: (X, Y)}; ValueError for anything else."""
    if not isinstance(contacts, list):
        raise ValueError("contacts is a list of [ID, X, Y]")
    out: dict[int, tuple[int, int]] = {}
    for c in contacts:
        if not isinstance(c, list) or len(c) != 3:
            raise ValueError(f"a contact is [ID, X, Y], not {c!r}"[:80])
        cid = c[0]
        if isinstance(cid, bool) or not isinstance(cid, int) or not -2**31 <= cid < 2**31:
            raise ValueError(f"a contact ID is a 32-bit integer, not {cid!r}"[:80])
        if cid in out:
            raise ValueError(f"contact ID {cid} given twice")
        out[cid] = (_coordinate(c[1]), _coordinate(c[2]))
    return out


@dataclass
class ContactTracker:
    """The contacts the guest was told about, and the frames that change them."""

    slots: dict[int, tuple[int, int, int, int]] = field(default_factory=dict)
    #  ^ viewer ID -> (slot, tracking ID, x, y)
    next_tracking_id: int = 1
    dropped: int = 0

    def frame(self, contacts: dict[int, tuple[int, int]]) -> list[dict]:
        """The ``input-send-event`` events that take the guest from the last
        state to ``contacts`` (empty when nothing changed)."""
        events: list[dict] = []
        for cid in [c for c in self.slots if c not in contacts]:
            slot, _, _, _ = self.slots.pop(cid)
            events.append(mtt("end", slot, -1))
        for cid, (x, y) in contacts.items():
            known = self.slots.get(cid)
            if known is not None:
                slot, tid, ox, oy = known
                if (ox, oy) == (x, y):
                    continue
                kind = "update"
            else:
                used = {s for s, _, _, _ in self.slots.values()}
                free = [s for s in range(MAX_CONTACTS) if s not in used]
                if not free:
                    self.dropped += 1
                    continue
                slot, tid = free[0], self.next_tracking_id
                self.next_tracking_id = self.next_tracking_id % 0x7FFF + 1
                kind = "begin"
            self.slots[cid] = (slot, tid, x, y)
            events += [mtt(kind, slot, tid), mtt("data", slot, tid, "x", x),
                       mtt("data", slot, tid, "y", y)]
        return events

    def reset(self) -> None:
        """A new QEMU knows no contacts."""
        self.slots.clear()


@dataclass
class PointerState:
    x: int = -1
    y: int = -1
    buttons: int = 0

    def frame(self, x: int, y: int, buttons: int) -> list[dict]:
        x, y = _coordinate(x), _coordinate(y)
        if isinstance(buttons, bool) or not isinstance(buttons, int) or not 0 <= buttons <= 0xFF:
            raise ValueError(f"buttons is a bit mask 0..255, not {buttons!r}"[:80])
        events: list[dict] = []
        if (x, y) != (self.x, self.y):
            events += [abs_move("x", x), abs_move("y", y)]
        for bit, name in _BUTTONS:
            if (buttons ^ self.buttons) & bit:
                events.append(btn(name, bool(buttons & bit)))
        self.x, self.y, self.buttons = x, y, buttons
        return events


class ScreenInput:
    """The ``touch`` and ``pointer`` host events for one touchscreen.
    ``send(events)`` delivers one frame (the lifecycle's: QMP to the running
    QEMU, or an error when none runs)."""

    def __init__(self, send: Callable[[list[dict]], None]):
        self.send = send
        self.contacts = ContactTracker()
        self.pointer = PointerState()
        self.frames = 0

    def touch(self, contacts: Any) -> dict[str, Any]:
        events = self.contacts.frame(parse_contacts(contacts))
        if events:
            self.send(events)
            self.frames += 1
        return {"down": len(self.contacts.slots), "sent": len(events)}

    def mouse(self, x: Any, y: Any, buttons: Any) -> dict[str, Any]:
        events = self.pointer.frame(x, y, buttons)
        if events:
            self.send(events)
            self.frames += 1
        return {"sent": len(events)}

    def reset(self) -> None:
        self.contacts.reset()
        self.pointer = PointerState()

    def register(self, server: Any) -> None:
        """The ``touch`` and ``pointer`` events on a host_events.HostEventServer."""
        server.register("touch", lambda ev: self.touch(ev["contacts"]),
                        fields={"contacts": list})
        server.register("pointer", lambda ev: self.mouse(ev["x"], ev["y"], ev["buttons"]),
                        fields={"x": int, "y": int, "buttons": int})
