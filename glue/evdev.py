"""Linux input (evdev) codes, and what a guest's input devices show.

Shared by the host touch bridge, the demo, the tests and the benchmarks; values
from linux/input-event-codes.h.
"""

from __future__ import annotations

from typing import Iterable, Protocol

EV_SYN, EV_KEY, EV_ABS, EV_MSC, EV_MAX = 0x00, 0x01, 0x03, 0x04, 0x1F
SYN_REPORT, SYN_DROPPED, SYN_MAX = 0, 3, 0x0F
ABS_X, ABS_Y = 0x00, 0x01
ABS_MT_SLOT, ABS_MT_TOOL_TYPE = 0x2F, 0x37
ABS_MT_POSITION_X, ABS_MT_POSITION_Y = 0x35, 0x36
ABS_MT_TRACKING_ID, ABS_MT_DISTANCE = 0x39, 0x3B
ABS_MAX = 0x3F
BTN_LEFT, BTN_RIGHT, BTN_MIDDLE, BTN_TOUCH = 0x110, 0x111, 0x112, 0x14A
MT_TOOL_PALM = 2
INPUT_PROP_DIRECT = 1 << 1


class Event(Protocol):
    type: int
    code: int
    value: int


def contact_frames(events: Iterable[Event]) -> list[tuple]:
    """Replays multitouch protocol B: the contact state at every SYN_REPORT as
    ``(BTN_TOUCH, (slot, x, y, distance), ...)``, consecutive duplicates (repeat
    reports) folded.

    Like evdev, a slot keeps its last axis values across contacts (the kernel only
    sends values that changed), so the replay starts each slot at 0."""
    axes = {ABS_MT_POSITION_X: 0, ABS_MT_POSITION_Y: 1, ABS_MT_DISTANCE: 2}
    last: dict[int, list[int]] = {}
    live: set[int] = set()
    cur, touch_btn, out = 0, 0, []
    for e in events:
        if e.type == EV_ABS and e.code == ABS_MT_SLOT:
            cur = e.value
        elif e.type == EV_ABS and e.code == ABS_MT_TRACKING_ID:
            (live.discard if e.value < 0 else live.add)(cur)
        elif e.type == EV_ABS and e.code in axes:
            last.setdefault(cur, [0, 0, 0])[axes[e.code]] = e.value
        elif e.type == EV_KEY and e.code == BTN_TOUCH:
            touch_btn = e.value
        elif e.type == EV_SYN and e.code == SYN_REPORT:
            state = (touch_btn, *sorted((n, *last.get(n, [0, 0, 0])) for n in live))
            if not out or out[-1] != state:
                out.append(state)
    return out


class ShellAgent(Protocol):
    def sh(self, cmd: str, timeout: float = ...) -> tuple[str, int]: ...


def input_devices(agent, below: str = "/sys/class/input") -> dict[str, tuple[str, str]]:
    """``{name: (sysfs input dir, /dev/input/eventN)}`` of the guest's input
    devices (all of them, or those under a HID device's ``input`` directory)."""
    pattern = f"{below}/input*" if below == "/sys/class/input" else f"{below}/input/input*"
    out = agent.sh(f"for i in {pattern}; do "
                   "echo \"$i|$(cat $i/name)|$(ls $i | grep '^event')\"; done").output
    found = {}
    for line in out.splitlines():
        if line.count("|") == 2:
            path, name, event = line.split("|")
            if event:
                found[name] = (path, f"/dev/input/{event}")
    return found
