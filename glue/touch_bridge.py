"""Forward a host touchscreen (Linux evdev, multitouch protocol type B) to QEMU.

``TouchBridge`` reads ``struct input_event`` records with the raw input ABI (no
python-evdev) from an evdev node (``/dev/input/eventN``), or from a pipe, FIFO or
file of such records, and turns every ``SYN_REPORT`` frame into at most one QMP
``input-send-event`` call::

    bridge = TouchBridge("/dev/input/event5", vm.cmd)     # vm.cmd(name, **args)
    stop = threading.Event()
    threading.Thread(target=bridge.run, args=(stop,)).start()
    ...
    stop.set()

The call's ``events`` list holds, per slot (0..9, QEMU's INPUT_EVENT_SLOTS_MAX)
that changed in the frame, in slot order::

    {"type": "mtt", "data": {"type": "begin"|"update"|"end", "slot": N,
                             "tracking-id": ID, "axis": "x", "value": 0}}
    {"type": "mtt", "data": {"type": "data", "slot": N, "tracking-id": ID,
                             "axis": "x", "value": X}}       # not after "end"
    {"type": "mtt", "data": {"type": "data", ..., "axis": "y", "value": Y}}

- ``begin``: the slot got a tracking ID (a new contact); ``end``: it lost it
  (tracking ID -1), and the record carries tracking ID -1 as QEMU's own touch
  code does (virtio-multitouch passes it to the guest as the release); a
  slot whose tracking ID changes within one frame gives ``end`` then ``begin``;
  ``update``: the contact moved (or its hover distance changed).
- ``axis``/``value`` are mandatory in QEMU's InputMultiTouchEvent, so
  begin/update/end carry ``axis: x, value: 0``.
- X and Y are scaled from the source axis range (EVIOCGABS of
  ABS_MT_POSITION_X/Y on a real device, or ``width_range``/``height_range``) to
  0..32767 (INPUT_EVENT_ABS_MIN..MAX) the way QEMU's ``qemu_input_scale_axis``
  does: ``(v - min) * 32767 // (max - min)``; a range of one value gives 16383.

After the slot records comes ``{"type": "btn", "data": {"down": B, "button":
"touch"}}`` when the touch button changes (``BTN_TOUCH`` of the source).

Hover convention: a slot whose ``ABS_MT_DISTANCE`` is > 0 is in range but not
touching. A frame that carries records of such a slot always ends with a
``btn touch`` *up* record (even if the button already was up), and the device
treats a frame whose touch button is up as hover. (A frame cannot say "slot 0
touches, slot 1 hovers": it is then sent as hover.)

``SYN_DROPPED``: the frame in progress and everything up to the next
``SYN_REPORT`` are discarded. On a real evdev device the bridge then reads the
device's current state (EVIOCGABS for the slot, EVIOCGMTSLOTS for tracking IDs,
positions and distance, EVIOCGKEY for BTN_TOUCH) and sends what differs from
what the guest was last told, as one frame. From a pipe/FIFO/file only the
partial frame is dropped. The same read is done once when a device is opened,
so contacts already down when the bridge starts are sent as ``begin``.

Malformed input never raises: it is dropped and counted in ``stats``. A QMP
call that fails is counted too (``qmp_errors``, text in ``last_error``).

``qmp_send`` is called from the thread that runs :meth:`run`; if the same QMP
connection is used elsewhere concurrently, ``qmp_send`` must serialise.
"""

from __future__ import annotations

import copy
import fcntl
import logging
import os
import select
import struct
import threading
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

__all__ = ["TouchBridge", "AbsInfo", "EVENT", "MAX_SLOTS", "ABS_OUT_MAX", "scale"]

log = logging.getLogger(__name__)

# struct input_event: struct timeval (two longs), __u16 type, __u16 code, __s32 value.
# Native layout: 24 bytes on 64-bit hosts (x86_64, arm64), 16 on 32-bit ones.
EVENT = struct.Struct("@llHHi")

MAX_SLOTS = 10          # QEMU's INPUT_EVENT_SLOTS_MAX
ABS_OUT_MAX = 0x7FFF    # QEMU's INPUT_EVENT_ABS_MAX (INPUT_EVENT_ABS_MIN is 0)

# linux/input-event-codes.h
from .qmp_input import mtt  # noqa: E402
from .evdev import (  # noqa: E402  (Linux input codes, shared with the tests)
    ABS_MAX, ABS_MT_DISTANCE, ABS_MT_POSITION_X, ABS_MT_POSITION_Y, ABS_MT_SLOT,
    ABS_MT_TRACKING_ID, BTN_TOUCH, EV_ABS, EV_KEY, EV_MAX, EV_SYN, SYN_DROPPED, SYN_MAX,
    SYN_REPORT,
)

KEY_MAX = 0x2FF
CODE_MAX = {EV_SYN: SYN_MAX, EV_KEY: KEY_MAX, EV_ABS: ABS_MAX}


def _ioc(direction: int, kind: str, nr: int, size: int) -> int:
    """linux/ioctl.h _IOC (asm-generic layout: x86, arm, arm64, riscv)."""
    return (direction << 30) | (size << 16) | (ord(kind) << 8) | nr


_IOC_WRITE, _IOC_READ = 1, 2
EVIOCGVERSION = _ioc(_IOC_READ, "E", 0x01, 4)
EVIOCGRAB = _ioc(_IOC_WRITE, "E", 0x90, 4)


def EVIOCGMTSLOTS(size: int) -> int:
    return _ioc(_IOC_READ, "E", 0x0A, size)


def EVIOCGKEY(size: int) -> int:
    return _ioc(_IOC_READ, "E", 0x18, size)


def EVIOCGBIT(ev: int, size: int) -> int:
    return _ioc(_IOC_READ, "E", 0x20 + ev, size)


_ABSINFO = struct.Struct("6i")  # value, minimum, maximum, fuzz, flat, resolution


def EVIOCGABS(code: int) -> int:
    return _ioc(_IOC_READ, "E", 0x40 + code, _ABSINFO.size)


class AbsInfo(NamedTuple):
    value: int
    minimum: int
    maximum: int
    fuzz: int = 0
    flat: int = 0
    resolution: int = 0


def scale(value: int, minimum: int, maximum: int) -> int:
    """QEMU's qemu_input_scale_axis(value, min, max, 0, 0x7fff)."""
    span = maximum - minimum
    if span < 1:
        return ABS_OUT_MAX // 2
    return (value - minimum) * ABS_OUT_MAX // span


class _Evdev:
    """The few evdev ioctls the bridge needs (raises OSError if fd is not evdev)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        buf = bytearray(4)
        fcntl.ioctl(fd, EVIOCGVERSION, buf)

    def has_abs(self, code: int) -> bool:
        bits = bytearray((ABS_MAX + 8) // 8)
        fcntl.ioctl(self.fd, EVIOCGBIT(EV_ABS, len(bits)), bits)
        return bool(bits[code // 8] >> (code % 8) & 1)

    def abs_info(self, code: int) -> AbsInfo:
        buf = bytearray(_ABSINFO.size)
        fcntl.ioctl(self.fd, EVIOCGABS(code), buf)
        return AbsInfo(*_ABSINFO.unpack(buf))

    def mt_slots(self, code: int, count: int) -> list[int]:
        buf = bytearray(4 * (1 + count))
        struct.pack_into("I", buf, 0, code)
        fcntl.ioctl(self.fd, EVIOCGMTSLOTS(len(buf)), buf)
        return list(struct.unpack_from(f"{count}i", buf, 4))

    def key_down(self, code: int) -> bool:
        bits = bytearray((KEY_MAX + 8) // 8)
        fcntl.ioctl(self.fd, EVIOCGKEY(len(bits)), bits)
        return bool(bits[code // 8] >> (code % 8) & 1)

    def grab(self, on: bool) -> None:
        fcntl.ioctl(self.fd, EVIOCGRAB, 1 if on else 0)


@dataclass
class _Slot:
    tid: int = -1            # tracking ID, -1 = no contact
    x: int | None = None     # source units; None = never reported
    y: int | None = None
    distance: int = 0        # ABS_MT_DISTANCE; > 0 = hovering


Range = tuple[int, int]
_STATS = ("events", "frames", "sent", "ignored", "unknown", "bad_slot", "bad_value",
          "short_reads", "dropped", "discarded", "resyncs", "resync_errors",
          "qmp_errors", "read_errors")


class TouchBridge:
    """Forwards one evdev multitouch source to QEMU with ``input-send-event``.

    ``source``: a path (opened O_RDONLY|O_NONBLOCK, closed by :meth:`close`) or an
    open fd (switched to non-blocking; not closed). ``qmp_send(name, **args)``
    sends one QMP command (e.g. ``Qemu.cmd``). ``width_range``/``height_range``
    are the source's (min, max) for ABS_MT_POSITION_X/Y; they override a device's
    own ranges and are required for a source that is not an evdev device.
    ``device``/``head`` are passed to input-send-event when given. ``grab=True``
    takes the device exclusively (EVIOCGRAB) so the host desktop ignores it.

    Raises ValueError for a source that cannot be used (no ranges, an evdev
    device without ABS_MT_POSITION_X/Y) and OSError if the path cannot be opened.
    """

    def __init__(self, source: str | os.PathLike | int,
                 qmp_send: Callable[..., Any],
                 width_range: Range | None = None, height_range: Range | None = None,
                 *, device: str | None = None, head: int | None = None,
                 grab: bool = False) -> None:
        self._owned = not isinstance(source, int)
        self.fd = os.open(source, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC) \
            if self._owned else source
        try:
            if not self._owned:
                os.set_blocking(self.fd, False)
            self._qmp_send = qmp_send
            self._target: dict[str, Any] = {}
            if device is not None:
                self._target["device"] = device
            if head is not None:
                self._target["head"] = head
            self.stats: dict[str, int] = dict.fromkeys(_STATS, 0)
            self.last_error: str | None = None

            self._evdev: _Evdev | None = None
            try:
                self._evdev = _Evdev(self.fd)
            except OSError:
                pass  # a pipe, FIFO or file of records
            self.x_range = self._range(width_range, ABS_MT_POSITION_X, "width_range")
            self.y_range = self._range(height_range, ABS_MT_POSITION_Y, "height_range")
            self.distance_max: int | None = None  # None: no upper bound known
            self.device_slots = MAX_SLOTS
            if self._evdev is not None:
                if self._evdev.has_abs(ABS_MT_DISTANCE):
                    self.distance_max = self._evdev.abs_info(ABS_MT_DISTANCE).maximum
                if self._evdev.has_abs(ABS_MT_SLOT):
                    self.device_slots = self._evdev.abs_info(ABS_MT_SLOT).maximum + 1
                if grab:
                    self._evdev.grab(True)
        except BaseException:
            self.close()
            raise

        self._slots = [_Slot() for _ in range(MAX_SLOTS)]   # what the guest was told
        self._pending = copy.deepcopy(self._slots)           # ... plus this frame
        self._touched: set[int] = set()
        self._slot: int | None = 0       # current ABS_MT_SLOT; None = out of range
        self._btn = False                # BTN_TOUCH as the source reports it ...
        self._btn_committed = False      # ... as of the last SYN_REPORT
        self._btn_sent = False           # the touch button the guest was told
        self._discarding = False         # after SYN_DROPPED, until SYN_REPORT
        self._frame_len = 0              # events in the frame so far
        self._carry = b""
        # A device's current contacts are read now and sent with the first read.
        self._resync_due = self._evdev is not None
        if self._resync_due:
            self._read_device_state()

    # -- lifecycle ---------------------------------------------------------

    def close(self) -> None:
        if self._owned and self.fd >= 0:
            os.close(self.fd)
        self.fd = -1

    def __enter__(self) -> TouchBridge:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def is_evdev(self) -> bool:
        return self._evdev is not None

    def run(self, stop_event: threading.Event | None = None,
            poll_interval: float = 0.05) -> str:
        """Forwards events until ``stop_event`` is set (checked every
        ``poll_interval`` s), the source ends or fails. Returns ``"stopped"``,
        ``"eof"`` (pipe/FIFO writer gone, end of file) or ``"error"`` (read
        failed, e.g. the device was unplugged: ``last_error``)."""
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        while stop_event is None or not stop_event.is_set():
            if self._resync_due:
                self._send_resync()
            if not poller.poll(poll_interval * 1000):
                continue
            try:
                if not self.pump():
                    return "eof"
            except OSError as e:
                self.stats["read_errors"] += 1
                self.last_error = f"reading the touch source: {e}"
                log.warning("touch bridge: %s", self.last_error)
                return "error"
        return "stopped"

    def pump(self, max_reads: int = 64) -> bool:
        """Reads and forwards what is available now; False at end of file.
        Raises OSError if the read fails (other than EAGAIN/EINTR)."""
        if self._resync_due:
            self._send_resync()
        for _ in range(max_reads):
            try:
                data = os.read(self.fd, EVENT.size * 256)
            except BlockingIOError:
                return True
            except InterruptedError:
                continue
            if not data:
                if self._carry:
                    self.stats["short_reads"] += 1  # a truncated last record
                    self._carry = b""
                return False
            self.feed(data)
        return True

    # -- decoding ----------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Processes raw record bytes (a record may be split across calls)."""
        data = self._carry + data
        whole = len(data) - len(data) % EVENT.size
        self._carry = data[whole:]
        for _sec, _usec, type_, code, value in EVENT.iter_unpack(data[:whole]):
            self.handle(type_, code, value)

    def handle(self, type_: int, code: int, value: int) -> None:
        """Processes one event."""
        self.stats["events"] += 1
        self._frame_len += 1
        if type_ > EV_MAX or code > CODE_MAX.get(type_, 0xFFFF):
            self.stats["unknown"] += 1
            return
        if type_ == EV_SYN:
            if code == SYN_REPORT:
                self._end_frame()
            elif code == SYN_DROPPED:
                self.stats["dropped"] += 1
                self.stats["discarded"] += self._frame_len - 1
                self._drop_frame()
                self._discarding = True
            else:
                self.stats["ignored"] += 1
            return
        if type_ == EV_ABS and code == ABS_MT_SLOT:
            # Tracked even while discarding: later frames rely on it.
            if 0 <= value < MAX_SLOTS:
                self._slot = value
            else:
                self._slot = None
                self.stats["bad_slot"] += 1
            return
        if self._discarding:
            self.stats["discarded"] += 1
            return
        if type_ == EV_KEY and code == BTN_TOUCH:
            if value in (0, 1, 2):  # 2 = autorepeat
                self._btn = value != 0
            else:
                self.stats["bad_value"] += 1
        elif type_ == EV_ABS and code in (ABS_MT_TRACKING_ID, ABS_MT_POSITION_X,
                                          ABS_MT_POSITION_Y, ABS_MT_DISTANCE):
            if self._slot is None:
                self.stats["bad_slot"] += 1
            else:
                self._set(self._slot, code, value)
        else:
            self.stats["ignored"] += 1

    def _set(self, n: int, code: int, value: int) -> None:
        slot = self._pending[n]
        if code == ABS_MT_TRACKING_ID:
            ok = value >= -1
            field = "tid"
        elif code == ABS_MT_DISTANCE:
            ok = value >= 0 and (self.distance_max is None or value <= self.distance_max)
            field = "distance"
        else:
            lo, hi = self.x_range if code == ABS_MT_POSITION_X else self.y_range
            ok = lo <= value <= hi
            field = "x" if code == ABS_MT_POSITION_X else "y"
        if not ok:
            self.stats["bad_value"] += 1
            return
        setattr(slot, field, value)
        self._touched.add(n)

    def _drop_frame(self) -> None:
        self._pending = copy.deepcopy(self._slots)
        self._touched.clear()
        self._btn = self._btn_committed

    def _end_frame(self) -> None:
        self.stats["frames"] += 1
        self._frame_len = 0
        if self._discarding:
            self._discarding = False
            if self._evdev is not None:
                self._read_device_state()
                self._send_resync()
            return
        self._send_frame()

    # -- output ------------------------------------------------------------

    def _send_frame(self) -> None:
        events: list[dict] = []
        hover = False
        for n in sorted(self._touched):
            old, new = self._slots[n], self._pending[n]
            if old.tid >= 0 and new.tid != old.tid:
                events.append(mtt("end", n, -1))   # as QEMU's own touch code: no tracking ID
            if new.tid < 0:
                continue
            if new.tid != old.tid:
                kind = "begin"
            elif (new.x, new.y, new.distance) != (old.x, old.y, old.distance):
                kind = "update"
            else:
                continue
            events.append(mtt(kind, n, new.tid))
            events.append(mtt("data", n, new.tid, "x", self._scaled(new.x, self.x_range)))
            events.append(mtt("data", n, new.tid, "y", self._scaled(new.y, self.y_range)))
            hover = hover or new.distance > 0
        down = self._btn and not hover
        if hover or down != self._btn_sent:
            events.append({"type": "btn", "data": {"down": down, "button": "touch"}})
        self._slots = copy.deepcopy(self._pending)
        self._touched.clear()
        self._btn_committed = self._btn
        self._btn_sent = down
        if events:
            self._send(events)

    @staticmethod
    def _scaled(value: int | None, rng: Range) -> int:
        lo, hi = rng
        return scale(lo if value is None else min(max(value, lo), hi), lo, hi)

    def _send(self, events: list[dict]) -> None:
        try:
            self._qmp_send("input-send-event", events=events, **self._target)
            self.stats["sent"] += 1
        except Exception as e:  # noqa: BLE001 - the bridge keeps running
            self.stats["qmp_errors"] += 1
            if self.last_error is None:
                log.warning("touch bridge: input-send-event failed: %s", e)
            self.last_error = f"input-send-event: {e}"

    # -- evdev state ---------------------------------------------------------

    def _range(self, given: Range | None, code: int, name: str) -> Range:
        if given is not None:
            lo, hi = (int(v) for v in given)
            if hi < lo:
                raise ValueError(f"{name}: maximum {hi} is below minimum {lo}")
            return lo, hi
        if self._evdev is None:
            raise ValueError(f"{name} is needed: the source is not an evdev device")
        if not self._evdev.has_abs(code):
            raise ValueError(f"the device has no ABS_MT_POSITION_{'XY'[code - ABS_MT_POSITION_X]}"
                             " axis: not a multitouch (type B) touchscreen")
        info = self._evdev.abs_info(code)
        return info.minimum, info.maximum

    def _read_device_state(self) -> None:
        """Makes the pending frame the device's current state (EVIOCG* ioctls)."""
        evdev = self._evdev
        assert evdev is not None
        self._drop_frame()
        count = min(self.device_slots, MAX_SLOTS)
        try:
            slot = evdev.abs_info(ABS_MT_SLOT).value
            columns = {code: evdev.mt_slots(code, count)
                       for code in (ABS_MT_TRACKING_ID, ABS_MT_POSITION_X,
                                    ABS_MT_POSITION_Y)}
            if self.distance_max is not None:
                columns[ABS_MT_DISTANCE] = evdev.mt_slots(ABS_MT_DISTANCE, count)
            btn = evdev.key_down(BTN_TOUCH)
        except OSError as e:
            self.stats["resync_errors"] += 1
            self.last_error = f"reading the device state: {e}"
            return
        self.stats["resyncs"] += 1
        self._slot = slot if 0 <= slot < MAX_SLOTS else None
        self._btn = btn
        for n in range(count):
            slot, active = self._pending[n], columns[ABS_MT_TRACKING_ID][n] >= 0
            for code, values in columns.items():
                if getattr(slot, _FIELD[code]) == values[n]:
                    continue
                if active or code == ABS_MT_TRACKING_ID:
                    self._set(n, code, values[n])
                else:  # a free slot's last values: kept (the kernel will not resend
                    setattr(slot, _FIELD[code], values[n])  # them), never sent
        self._resync_due = True

    def _send_resync(self) -> None:
        self._resync_due = False
        self._send_frame()


_FIELD = {ABS_MT_TRACKING_ID: "tid", ABS_MT_POSITION_X: "x", ABS_MT_POSITION_Y: "y",
          ABS_MT_DISTANCE: "distance"}
