"""Host-side client for the tabvm guest agent (guest/agent.c).

The agent speaks a line protocol on the guest's second serial port; QEMU exposes
that port as a unix socket::

    -chardev socket,id=agent,path=agent.sock,server=on,wait=off -serial chardev:agent

Request ``ID VERB ARGS...\\n``; response ``ID STATUS LEN\\n`` + LEN bytes + ``\\n``
(see guest/README.md). Lines that are not a valid response header (for example
echo from the guest tty before the agent put it in raw mode) are skipped, and
responses to other IDs (left over from a timed-out call) are discarded.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import re
import select
import socket
import time
from typing import NamedTuple, Sequence

__all__ = ["AgentClient", "AgentError", "AgentTimeout", "CtlElem", "GuestMem", "HciCmdResult",
           "HciDev", "HciInfo", "InputEvent", "L2SendResult", "LeAdvert", "MemHogStat",
           "PcmPlayResult", "PcmRecordResult", "ShResult"]

_HEADER = re.compile(rb"(\d{1,20}) (ok|err) (\d{1,8})")
_MAX_PAYLOAD = 2 * 1024 * 1024
_MAX_LINE = 64 * 1024
# Limits of the agent's events/evtake verbs and its evstart IDs.
EV_MAX_COUNT = 10_000
EV_MAX_TIMEOUT_MS = 600_000
EV_IDS = range(8)
# Limits of the agent's Bluetooth verbs (see guest/README.md).
HCI_DEV_MAX = 0xFFFE  # hciN; 0xffff is HCI_DEV_NONE
HCI_MAX_PARAMS = 255
HCI_MAX_TIMEOUT_MS = 60_000  # hcicmd TIMEOUT_MS, lescan DURATION_MS
HCI_CMD_TIMEOUT_S = 2.0  # the agent's own wait for each of its HCI commands
HCI_RTT_MAX_COUNT = 100_000
L2_PSM_RANGE = range(1, 0x100)  # LE PSMs; dynamic ones are 0x80..0xff
L2_MAX_TOTAL = 1_000_000_000
L2_MAX_SDU = 65_535
L2_ADDRESS_TYPES = ("public", "random")
# The agent's own waits in l2send: connect, room to send one SDU, the answer.
L2_CONNECT_S, L2_STALL_S, L2_ANSWER_S = 10.0, 10.0, 30.0
_BDADDR = re.compile(r"[0-9a-f]{2}(?::[0-9a-f]{2}){5}")
# Limits of the agent's audio verbs pcmplay/pcmrec (see guest/README.md).
PCM_MAX_INDEX = 255                 # CARD and DEV of /dev/snd/pcmC<CARD>D<DEV>p|c
PCM_MIN_RATE, PCM_MAX_RATE = 8_000, 192_000
PCM_MAX_CHANNELS = 8
PCM_PLAY_MAX_MS = 120_000
PCM_REC_MIN_MS, PCM_REC_MAX_MS = 200, 10_000
PCM_MAX_AMPLITUDE = 1000            # permille of full scale
PCM_SLACK_S = 5.0                   # the agent gives up MS + this after the verb started
PCM_ANALYSIS_S = 30.0               # pcmrec's frequency fit, generously for TCG
CTL_MAX_NUMID = 0xFFFF_FFFF
CTL_MAX_VALUES = 128                # values (channels) of one control element
# Limits of the agent's memhog verb (it also refuses MIB above 4 x the guest's MemTotal).
MEMHOG_MAX_MIB = 1 << 40
MEMHOG_MAX_RATE = 1 << 20           # MiB/s
MEMHOG_KILL_WAIT_S = 10.0           # the agent's wait for a SIGKILLed memhog child


class AgentError(Exception):
    """The agent answered ``err``, did not answer in time, or the link broke."""


class AgentTimeout(AgentError):
    """No answer before the deadline."""


class ShResult(NamedTuple):
    output: str
    status: int


class InputEvent(NamedTuple):
    """One Linux ``struct input_event`` as the guest read it."""

    time: float  # tv_sec + tv_usec / 1e6 (the kernel's event timestamp)
    type: int    # EV_SYN, EV_KEY, EV_ABS, ... (numeric)
    code: int
    value: int


class HciDev(NamedTuple):
    """One line of ``hcilist``."""

    index: int     # N of hciN
    name: str      # "hciN"
    address: str   # "aa:bb:cc:dd:ee:ff", most significant byte first
    flags: int     # hci_dev_info.flags (bit 0 HCI_UP, bit 2 HCI_RUNNING, ...)

    @property
    def up(self) -> bool:
        return bool(self.flags & 1)


class HciInfo(NamedTuple):
    """``hciinfo``: the controller's struct hci_dev_info."""

    name: str
    address: str
    flags: int
    up: bool
    bus: int       # hci_dev_info.type & 0x0f (1: USB)
    type: int      # hci_dev_info.type >> 4 (0: primary controller)
    acl_mtu: int
    acl_pkts: int
    sco_mtu: int
    sco_pkts: int


class HciCmdResult(NamedTuple):
    """The answer to one HCI command (``hcicmd``)."""

    kind: str      # "complete" (Command Complete) or "status" (Command Status)
    data: bytes    # Command Complete's return parameters; b"" for a Command Status
    status: int    # data[0] for "complete" (-1 if there is no return parameter), else
                   # the Command Status's status

    @property
    def ok(self) -> bool:
        return self.status == 0


class LeAdvert(NamedTuple):
    """One advertiser seen by ``lescan``."""

    address: str       # "aa:bb:cc:dd:ee:ff"
    address_type: str  # public, random, public-id, random-id, anon (or 0xNN)
    rssi: int          # dBm of the latest report (127: not available)
    name: str | None   # local name (spaces as "_", unprintable bytes as "?"); None if none


class L2SendResult(NamedTuple):
    """``l2send``: bytes sent, bytes the peer says it received, and the time from
    the first data SDU to the peer's answer."""

    sent: int
    acked: int
    elapsed_ns: int


class PcmPlayResult(NamedTuple):
    """``pcmplay``: what was played and the hardware parameters the driver set."""

    frames: int       # frames written (MS * RATE / 1000)
    xruns: int        # underruns (EPIPE) recovered from with PREPARE
    elapsed_ms: int   # guest CLOCK_MONOTONIC, first write to the end of the drain
    rate: int
    channels: int
    period: int       # frames
    buffer: int       # frames


class PcmRecordResult(NamedTuple):
    """``pcmrec``: what was recorded and the analysis of channel 0 (after its
    first 100 ms)."""

    frames: int       # frames read (MS * RATE / 1000)
    xruns: int        # overruns (EPIPE) recovered from with PREPARE + START
    freq: float       # dominant frequency in Hz (2 decimals); 0.0 if all samples are 0
    rms: float        # fraction of full scale (32768)
    peak: float       # largest |sample| / 32768


class CtlElem(NamedTuple):
    """One ALSA control element (``ctllist``)."""

    numid: int
    iface: str        # card, hwdep, mixer, pcm, rawmidi, timer, sequencer
    type: str         # boolean, integer, enumerated, bytes, iec958, integer64
    access: str       # "r", "w", "i" (inactive) as they apply, "" for none
    count: int        # values (channels)
    values: tuple[int, ...] | None   # None: not shown (unreadable, bytes, iec958)
    min: int          # boolean 0..1; enumerated 0..items-1
    max: int
    step: int
    index: int
    device: int
    name: str         # e.g. "Master Playback Volume"

    @property
    def writable(self) -> bool:
        return "w" in self.access


@dataclasses.dataclass(frozen=True)
class GuestMem:
    """``mem``: the guest's memory in bytes, from /proc/meminfo and /proc/vmstat."""

    total: int                # MemTotal
    free: int                 # MemFree
    available: int            # MemAvailable
    cached: int               # Cached
    buffers: int              # Buffers
    shmem: int                # Shmem
    anon: int                 # AnonPages
    balloon: int | None       # (balloon_inflate - balloon_deflate) pages; None: not counted
    oom_kills: int | None     # vmstat oom_kill (a count, not bytes); None: not counted


@dataclasses.dataclass(frozen=True)
class MemHogStat:
    """``memhogstat``: the latest memhog child of the agent."""

    pid: int                  # 0 if none was started
    touched: int              # bytes written so far (as the child last published it)
    target: int               # bytes it allocates
    done: bool                # every page written
    alive: bool               # still runs
    status: str               # none, running, "exited N", "killed SIGNAME", stopped
                              # (ended by memhog/memhog_stop), unknown

    @property
    def exit_code(self) -> int | None:
        """N of ``exited N``, else None."""
        return int(self.status[7:]) if self.status.startswith("exited ") else None

    @property
    def signal(self) -> str | None:
        """SIGNAME of ``killed SIGNAME`` (e.g. "KILL": the guest's OOM killer), else None."""
        return self.status[7:] if self.status.startswith("killed ") else None


class AgentClient:
    """One connection to a guest agent.

    ``target`` is a unix socket path (connection retried until ``connect_timeout``
    since QEMU may still be starting), a connected ``socket.socket``, or a file
    descriptor (e.g. a pty master). The descriptor is switched to non-blocking
    mode; a socket or fd passed in is not closed by :meth:`close`.
    """

    def __init__(self, target: str | os.PathLike | socket.socket | int, *,
                 connect_timeout: float = 10.0) -> None:
        self._sock: socket.socket | None = None
        self._owned = False
        if isinstance(target, int):
            self._fd = target
            os.set_blocking(target, False)
        else:
            if isinstance(target, socket.socket):
                self._sock = target
            else:
                self._sock = _connect_unix(os.fspath(target), connect_timeout)
                self._owned = True
            self._sock.setblocking(False)
            self._fd = self._sock.fileno()
        self._buf = bytearray()
        self._ids = itertools.count(1)

    # -- lifecycle ---------------------------------------------------------

    def close(self) -> None:
        if self._sock is not None and self._owned:
            self._sock.close()
        self._sock = None
        self._fd = -1

    def __enter__(self) -> AgentClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- protocol ----------------------------------------------------------

    def call_bytes(self, verb: str, *args: str, timeout: float = 30.0) -> bytes:
        """Sends one request and returns the ``ok`` payload; raises AgentError."""
        deadline = time.monotonic() + timeout
        rid = self._send(verb, args, deadline)
        status, payload = self._await({rid}, deadline)[1:]
        if status != "ok":
            raise AgentError(f"{verb}: {payload.decode(errors='replace')}")
        return payload

    def call(self, verb: str, *args: str, timeout: float = 30.0) -> str:
        """Like :meth:`call_bytes`, decoded as UTF-8 (invalid bytes replaced)."""
        return self.call_bytes(verb, *args, timeout=timeout).decode(errors="replace")

    def wait_ready(self, timeout: float = 120.0, interval: float = 0.25) -> float:
        """Pings until the agent answers; returns the seconds waited.

        Each attempt starts with a bare newline to end any partial line. An answer
        to any ping of this wait counts.
        """
        start = time.monotonic()
        deadline = start + timeout
        sent: set[str] = set()
        while True:
            now = time.monotonic()
            if now >= deadline:
                raise AgentTimeout(f"agent did not answer a ping within {timeout:g} s")
            self._write(b"\n", deadline)
            sent.add(self._send("ping", (), deadline))
            try:
                self._await(sent, min(deadline, now + interval))
                return time.monotonic() - start
            except AgentTimeout:
                continue

    # -- conveniences ------------------------------------------------------

    def ping(self, timeout: float = 10.0) -> None:
        if self.call("ping", timeout=timeout) != "pong":
            raise AgentError("ping: unexpected answer")

    def read_bytes(self, path: str, timeout: float = 30.0) -> bytes:
        return self.call_bytes("read", path, timeout=timeout)

    def read(self, path: str, timeout: float = 30.0) -> str:
        return self.call("read", path, timeout=timeout)

    def write(self, path: str, data: str, timeout: float = 30.0) -> None:
        _check_word(path, "path")
        self.call("write", path, escape(data), timeout=timeout)

    def sh(self, cmd: str, timeout: float = 60.0) -> ShResult:
        """Runs ``/bin/sh -c cmd`` in the guest; output is stdout+stderr."""
        text = self.call("sh", cmd, timeout=timeout)
        body, _, last = text.rpartition("exit=")
        if not last.isdigit() or (body and not body.endswith("\n")):
            raise AgentError(f"sh: malformed answer {text[-80:]!r}")
        return ShResult(body, int(last))

    def ls(self, path: str, timeout: float = 30.0) -> list[str]:
        text = self.call("ls", path, timeout=timeout)
        return text.split("\n") if text else []

    def hold(self, key: str, value: str, timeout: float = 10.0) -> None:
        _check_word(key, "key")
        self.call("hold", key, value, timeout=timeout)

    def recall(self, key: str, timeout: float = 10.0) -> str:
        return self.call("recall", key, timeout=timeout)

    def uname(self, timeout: float = 10.0) -> dict[str, str]:
        fields = ("sysname", "nodename", "release", "version", "machine")
        values = self.call("uname", timeout=timeout).split("\n")
        if len(values) != len(fields):
            raise AgentError(f"uname: malformed answer {values!r}")
        return dict(zip(fields, values))

    # -- input events (evdev) ---------------------------------------------

    def events(self, path: str, max: int, timeout_ms: int,
               timeout: float | None = None) -> list[InputEvent]:
        """Reads up to ``max`` input events from ``path`` in the guest, waiting at
        most ``timeout_ms`` ms (the agent answers nothing else meanwhile).

        ``timeout`` (seconds) bounds the whole call; by default it is
        ``timeout_ms`` plus a margin for the answer.
        """
        if not path:
            raise ValueError("events: empty path")
        _check_ev_limits(max, timeout_ms)
        text = self.call("events", path, str(max), str(timeout_ms),
                         timeout=_ev_call_timeout(max, timeout_ms, timeout))
        return _parse_events(text)

    def ev_start(self, id: int, path: str, timeout: float = 10.0) -> None:
        """Opens ``path`` in the guest and keeps it under ``id`` (0..7); from now
        on events queue in the guest kernel until :meth:`ev_take` reads them."""
        _check_ev_id(id)
        if not path:
            raise ValueError("ev_start: empty path")
        self.call("evstart", str(id), path, timeout=timeout)

    def ev_take(self, id: int, max: int, timeout_ms: int,
                timeout: float | None = None) -> list[InputEvent]:
        """Like :meth:`events`, from the source kept under ``id``."""
        _check_ev_id(id)
        _check_ev_limits(max, timeout_ms)
        text = self.call("evtake", str(id), str(max), str(timeout_ms),
                         timeout=_ev_call_timeout(max, timeout_ms, timeout))
        return _parse_events(text)

    def ev_stop(self, id: int, timeout: float = 10.0) -> None:
        """Closes the source kept under ``id`` (no error if there is none)."""
        _check_ev_id(id)
        self.call("evstop", str(id), timeout=timeout)

    # -- Bluetooth -----------------------------------------------------------

    def hci_list(self, timeout: float = 10.0) -> list[HciDev]:
        """The guest's Bluetooth controllers, by index (``hcilist``)."""
        return _parse_hci_list(self.call("hcilist", timeout=timeout))

    def hci_up(self, dev: int, timeout: float = 30.0) -> None:
        """Brings hci``dev`` up (HCIDEVUP runs the controller's init sequence in
        the guest kernel); already up is fine."""
        _check_hci_dev(dev)
        if self.call("hciup", str(dev), timeout=timeout) != "up":
            raise AgentError("hciup: unexpected answer")

    def hci_info(self, dev: int, timeout: float = 10.0) -> HciInfo:
        _check_hci_dev(dev)
        return _parse_hci_info(self.call("hciinfo", str(dev), timeout=timeout))

    def hci_cmd(self, dev: int, opcode: int, params: bytes = b"", timeout_ms: int = 2000,
                timeout: float | None = None) -> HciCmdResult:
        """Sends one HCI command on a raw HCI socket in the guest and returns its
        Command Complete or Command Status; ``AgentError`` if neither comes within
        ``timeout_ms``. Example: ``hci_cmd(0, 0x1009)`` reads BD_ADDR."""
        _check_hci_dev(dev)
        _check_int(opcode, 1, 0xFFFF, "opcode")
        if not isinstance(params, (bytes, bytearray, memoryview)):
            raise ValueError(f"params must be bytes: {params!r}")
        params = bytes(params)
        if len(params) > HCI_MAX_PARAMS:
            raise ValueError(f"params longer than {HCI_MAX_PARAMS} bytes: {len(params)}")
        _check_int(timeout_ms, 1, HCI_MAX_TIMEOUT_MS, "timeout_ms")
        text = self.call("hcicmd", str(dev), f"0x{opcode:04x}", params.hex() or "-",
                         str(timeout_ms),
                         timeout=timeout if timeout is not None else timeout_ms / 1000 + 10.0)
        return _parse_hci_cmd(text)

    def le_scan(self, dev: int, duration_ms: int, timeout: float | None = None
                ) -> list[LeAdvert]:
        """Active LE scan for ``duration_ms`` in the guest; the advertisers seen,
        sorted by address. The agent answers nothing else meanwhile."""
        _check_hci_dev(dev)
        _check_int(duration_ms, 1, HCI_MAX_TIMEOUT_MS, "duration_ms")
        # up to 4 commands of 2 s each to start, the scan, 1 s to stop, the answer
        default = duration_ms / 1000 + 5 * HCI_CMD_TIMEOUT_S + 10.0
        text = self.call("lescan", str(dev), str(duration_ms),
                         timeout=timeout if timeout is not None else default)
        return _parse_le_scan(text)

    def hci_rtt(self, dev: int, count: int, timeout: float | None = None) -> list[int]:
        """``count`` HCI_Read_BD_ADDR round trips one after the other; each one's
        time in ns (guest CLOCK_MONOTONIC, send to Command Complete).

        The default call timeout covers the agent's worst case (2 s per round
        trip) plus sending the answer; pass ``timeout`` for a tighter bound."""
        _check_hci_dev(dev)
        _check_int(count, 1, HCI_RTT_MAX_COUNT, "count")
        default = count * (HCI_CMD_TIMEOUT_S + 0.002) + 10.0
        text = self.call("hcirtt", str(dev), str(count),
                         timeout=timeout if timeout is not None else default)
        return _parse_rtt(text, count)

    def l2_send(self, dev: int, address: str, address_type: str, psm: int, total: int,
                sdu: int, timeout: float | None = None) -> L2SendResult:
        """Sends ``total`` bytes over an LE credit-based L2CAP channel from hci``dev``
        to ``address`` on ``psm``, in SDUs of ``sdu`` bytes, and returns what the
        peer says it received (see guest/README.md for the exchange).

        The default call timeout is the agent's fixed waits plus ``total`` at
        10 kB/s; pass ``timeout`` for big transfers on a slow link."""
        _check_hci_dev(dev)
        address = _check_bdaddr(address)
        if address_type not in L2_ADDRESS_TYPES:
            raise ValueError(f"address_type must be one of {L2_ADDRESS_TYPES}: "
                             f"{address_type!r}")
        _check_int(psm, L2_PSM_RANGE[0], L2_PSM_RANGE[-1], "psm")
        _check_int(total, 1, L2_MAX_TOTAL, "total")
        _check_int(sdu, 1, L2_MAX_SDU, "sdu")
        default = L2_CONNECT_S + L2_ANSWER_S + L2_STALL_S + 10.0 + total / 10_000
        text = self.call("l2send", str(dev), address, address_type, f"0x{psm:02x}",
                         str(total), str(sdu),
                         timeout=timeout if timeout is not None else default)
        return _parse_l2_send(text)

    # -- audio (ALSA PCM) ----------------------------------------------------

    def pcm_play(self, card: int, dev: int, rate: int, channels: int, freq: int, ms: int,
                 amplitude_permille: int = 500, timeout: float | None = None
                 ) -> PcmPlayResult:
        """Plays ``ms`` ms of a ``freq`` Hz sine (S16_LE, every channel the same,
        ``amplitude_permille`` of full scale) on /dev/snd/pcmC<card>D<dev>p in the
        guest and waits for the drain. The agent answers nothing else meanwhile.

        The default call timeout is the agent's own deadline (``ms`` + 5 s) plus
        a margin for the answer."""
        _check_pcm(card, dev, rate, channels)
        _check_int(freq, 1, (rate - 1) // 2, "freq (below rate / 2)")
        _check_int(ms, 1, PCM_PLAY_MAX_MS, "ms")
        _check_int(amplitude_permille, 0, PCM_MAX_AMPLITUDE, "amplitude_permille")
        default = ms / 1000 + PCM_SLACK_S + 10.0
        text = self.call("pcmplay", str(card), str(dev), str(rate), str(channels), str(freq),
                         str(ms), str(amplitude_permille),
                         timeout=timeout if timeout is not None else default)
        return _parse_pcm_play(text)

    def pcm_record(self, card: int, dev: int, rate: int, channels: int, ms: int,
                   path: str | None = None, timeout: float | None = None
                   ) -> PcmRecordResult:
        """Records ``ms`` ms (S16_LE) from /dev/snd/pcmC<card>D<dev>c in the guest
        and returns the dominant frequency, RMS and peak of channel 0. ``path``
        (in the guest) also gets the raw interleaved capture.

        The default call timeout is the agent's own deadline (``ms`` + 5 s) plus
        the analysis and a margin for the answer."""
        _check_pcm(card, dev, rate, channels)
        _check_int(ms, PCM_REC_MIN_MS, PCM_REC_MAX_MS, "ms")
        args = [str(card), str(dev), str(rate), str(channels), str(ms)]
        if path is not None:
            _check_word(path, "path")
            args.append(path)
        default = ms / 1000 + PCM_SLACK_S + PCM_ANALYSIS_S
        text = self.call("pcmrec", *args, timeout=timeout if timeout is not None else default)
        return _parse_pcm_record(text)

    def ctl_list(self, card: int, timeout: float = 10.0) -> list[CtlElem]:
        """The control elements of sound card ``card`` (mixer volumes, switches, jacks...)."""
        _check_int(card, 0, PCM_MAX_INDEX, "card")
        return _parse_ctl_list(self.call("ctllist", str(card), timeout=timeout))

    def ctl_set(self, card: int, numid: int, values: int | Sequence[int],
                timeout: float = 10.0) -> tuple[int, ...]:
        """Writes control element ``numid`` of ``card``: one value for every channel
        or one per channel. Returns the values read back."""
        _check_int(card, 0, PCM_MAX_INDEX, "card")
        _check_int(numid, 1, CTL_MAX_NUMID, "numid")
        values = (values,) if isinstance(values, int) and not isinstance(values, bool) \
            else tuple(values)
        if not 1 <= len(values) <= CTL_MAX_VALUES:
            raise ValueError(f"give 1..{CTL_MAX_VALUES} values: {values!r}")
        for v in values:
            _check_int(v, -(1 << 63), (1 << 63) - 1, "value")
        text = self.call("ctlset", str(card), str(numid), ",".join(map(str, values)),
                         timeout=timeout)
        return _parse_ctl_values(text, "ctlset")

    def mixer_unmute(self, card: int, timeout: float = 10.0) -> list[CtlElem]:
        """Switches on every writable mixer "... Switch" (boolean) of ``card`` and sets
        every writable mixer "... Volume" (integer) to its maximum (0 dB on QEMU's
        HDA codecs), as alsactl's defaults would; ALSA starts them muted at zero.
        Returns the elements as they are afterwards."""
        elems = self.ctl_list(card, timeout=timeout)
        for e in elems:
            if e.iface != "mixer" or not e.writable or "i" in e.access:
                continue
            if e.type == "boolean" and e.name.endswith(" Switch"):
                self.ctl_set(card, e.numid, 1, timeout=timeout)
            elif e.type == "integer" and e.name.endswith(" Volume"):
                self.ctl_set(card, e.numid, e.max, timeout=timeout)
        return self.ctl_list(card, timeout=timeout)

    # -- memory (ballooning) -------------------------------------------------

    def mem(self, timeout: float = 10.0) -> GuestMem:
        """The guest's memory counters (``mem``), in bytes."""
        return _parse_mem(self.call("mem", timeout=timeout))

    def memhog(self, mib: int, rate: int = 0, timeout: float = MEMHOG_KILL_WAIT_S + 20.0
               ) -> int:
        """Starts a guest process that allocates ``mib`` MiB and writes every page,
        at ``rate`` MiB/s (0: as fast as it can), then holds the memory; it
        replaces (kills) the one started before. Returns at once with its pid;
        :meth:`memhog_stat` shows the progress."""
        _check_int(mib, 1, MEMHOG_MAX_MIB, "mib")
        _check_int(rate, 0, MEMHOG_MAX_RATE, "rate (MiB/s)")
        text = self.call("memhog", str(mib), str(rate), timeout=timeout)
        if not re.fullmatch(r"[1-9]\d{0,9}", text, re.ASCII):
            raise AgentError(f"memhog: malformed answer {text[:80]!r}")
        return int(text)

    def memhog_stop(self, timeout: float = MEMHOG_KILL_WAIT_S + 20.0) -> int | None:
        """Ends the memhog process, freeing its memory; returns its pid, None if
        none was running."""
        text = self.call("memhog", "0", timeout=timeout)
        if not re.fullmatch(r"0|[1-9]\d{0,9}", text, re.ASCII):
            raise AgentError(f"memhog: malformed answer {text[:80]!r}")
        return int(text) or None

    def memhog_stat(self, timeout: float = 10.0) -> MemHogStat:
        """The progress and fate of the latest memhog process (``memhogstat``)."""
        return _parse_memhog_stat(self.call("memhogstat", timeout=timeout))

    # -- plumbing ----------------------------------------------------------

    def _send(self, verb: str, args: tuple[str, ...], deadline: float) -> str:
        rid = str(next(self._ids))
        line = " ".join((rid, verb) + args)
        if "\n" in line:
            raise ValueError("agent request must not contain a newline")
        data = line.encode() + b"\n"
        if len(data) > _MAX_LINE:
            raise ValueError(f"agent request longer than {_MAX_LINE} bytes")
        self._write(data, deadline)
        return rid

    def _write(self, data: bytes, deadline: float) -> None:
        view = memoryview(data)
        while view:
            self._wait(select.POLLOUT, deadline, "sending")
            try:
                view = view[os.write(self._fd, view):]
            except BlockingIOError:
                continue
            except OSError as e:
                raise AgentError(f"agent link broken: {e}") from None

    def _await(self, ids: set[str], deadline: float) -> tuple[str, str, bytes]:
        """Returns the next frame whose ID is in ``ids``; others are dropped."""
        while True:
            frame = self._take_frame()
            if frame is None:
                self._fill(deadline)
            elif frame[0] in ids:
                return frame

    def _take_frame(self) -> tuple[str, str, bytes] | None:
        """Parses one frame off the buffer; None if more bytes are needed."""
        while True:
            nl = self._buf.find(b"\n")
            if nl < 0:
                return None
            m = _HEADER.fullmatch(self._buf[:nl])
            size = int(m.group(3)) if m else -1
            if not m or size > _MAX_PAYLOAD:
                del self._buf[: nl + 1]  # not a header: noise, skip the line
                continue
            end = nl + 1 + size
            if len(self._buf) <= end:
                return None
            if self._buf[end] != ord("\n"):
                del self._buf[: nl + 1]  # framing broken: resynchronise
                continue
            payload = bytes(self._buf[nl + 1 : end])
            rid, status = m.group(1).decode(), m.group(2).decode()
            del self._buf[: end + 1]
            return rid, status, payload

    def _fill(self, deadline: float) -> None:
        self._wait(select.POLLIN, deadline, "waiting for an answer")
        try:
            data = os.read(self._fd, 1 << 16)
        except BlockingIOError:
            return
        except OSError as e:
            raise AgentError(f"agent link broken: {e}") from None
        if not data:
            raise AgentError("agent link closed")
        self._buf += data

    def _wait(self, event: int, deadline: float, what: str) -> None:
        if self._fd < 0:
            raise AgentError("agent client is closed")
        poller = select.poll()
        poller.register(self._fd, event)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AgentTimeout(f"timed out {what}")
            events = poller.poll(left * 1000)
            if events:
                return


def escape(data: str) -> str:
    """Escapes data for the agent's ``write`` verb (``\\`` and newline)."""
    return data.replace("\\", "\\\\").replace("\n", "\\n")


def _check_ev_id(id: int) -> None:
    if id not in EV_IDS:
        raise ValueError(f"event source id must be in 0..{EV_IDS[-1]}: {id!r}")


def _check_ev_limits(max: int, timeout_ms: int) -> None:
    if not 1 <= max <= EV_MAX_COUNT:
        raise ValueError(f"max must be in 1..{EV_MAX_COUNT}: {max!r}")
    if not 0 <= timeout_ms <= EV_MAX_TIMEOUT_MS:
        raise ValueError(f"timeout_ms must be in 0..{EV_MAX_TIMEOUT_MS}: {timeout_ms!r}")


def _ev_call_timeout(max: int, timeout_ms: int, timeout: float | None) -> float:
    """The agent's wait plus a margin for sending the answer (~30 bytes/event)."""
    if timeout is not None:
        return timeout
    return timeout_ms / 1000 + 10.0 + max / 500


def _parse_events(text: str) -> list[InputEvent]:
    """Parses the ``SEC.USEC TYPE CODE VALUE`` lines of events/evtake."""
    events = []
    for line in text.split("\n") if text else ():
        try:
            stamp, type_, code, value = line.split(" ")
            sec, dot, usec = stamp.partition(".")
            if not dot:
                raise ValueError(stamp)
            events.append(InputEvent(int(sec) + int(usec) / 1e6, int(type_),
                                     int(code), int(value)))
        except ValueError:
            raise AgentError(f"events: malformed line {line[:80]!r}") from None
    return events


def _check_int(value: int, lo: int, hi: int, what: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ValueError(f"{what} must be an int in {lo}..{hi}: {value!r}")


def _check_hci_dev(dev: int) -> None:
    _check_int(dev, 0, HCI_DEV_MAX, "dev (N of hciN)")


def _check_bdaddr(address: str) -> str:
    """Validates "aa:bb:cc:dd:ee:ff" (any case); returns it lowercase."""
    if not isinstance(address, str) or not _BDADDR.fullmatch(address.lower()):
        raise ValueError(f"address must look like aa:bb:cc:dd:ee:ff: {address!r}")
    return address.lower()


def _lines(text: str) -> list[str]:
    return text.split("\n") if text else []


def _parse_bdaddr(value: str, verb: str) -> str:
    if not _BDADDR.fullmatch(value):
        raise AgentError(f"{verb}: malformed address {value[:40]!r}")
    return value


def _parse_hci_list(text: str) -> list[HciDev]:
    """Parses the ``hciN ADDR 0xFLAGS`` lines of hcilist."""
    devs = []
    for line in _lines(text):
        m = re.fullmatch(r"hci(\d{1,5}) (\S+) 0x([0-9a-f]{1,8})", line)
        if not m:
            raise AgentError(f"hcilist: malformed line {line[:80]!r}")
        devs.append(HciDev(int(m.group(1)), f"hci{m.group(1)}",
                           _parse_bdaddr(m.group(2), "hcilist"), int(m.group(3), 16)))
    return devs


_HCI_INFO = re.compile(
    r"name (\S+) addr (\S+) flags 0x([0-9a-f]{1,8}) up ([01]) bus (\d{1,3}) type (\d{1,3}) "
    r"acl_mtu (\d{1,5}) acl_pkts (\d{1,5}) sco_mtu (\d{1,5}) sco_pkts (\d{1,5})")


def _parse_hci_info(text: str) -> HciInfo:
    """Parses hciinfo's ``name hci0 addr ... sco_pkts N`` line."""
    m = _HCI_INFO.fullmatch(text)
    if not m:
        raise AgentError(f"hciinfo: malformed answer {text[:200]!r}")
    name, addr, flags, up, *numbers = m.groups()
    return HciInfo(name, _parse_bdaddr(addr, "hciinfo"), int(flags, 16), up == "1",
                   *(int(n) for n in numbers))


def _parse_hci_cmd(text: str) -> HciCmdResult:
    """Parses hcicmd's ``complete HEX`` (``-`` for none) or ``status 0xNN``."""
    m = re.fullmatch(r"complete (-|(?:[0-9a-f]{2})+)|status 0x([0-9a-f]{2})", text)
    if not m:
        raise AgentError(f"hcicmd: malformed answer {text[:200]!r}")
    if m.group(2) is not None:
        return HciCmdResult("status", b"", int(m.group(2), 16))
    data = b"" if m.group(1) == "-" else bytes.fromhex(m.group(1))
    return HciCmdResult("complete", data, data[0] if data else -1)


def _parse_le_scan(text: str) -> list[LeAdvert]:
    """Parses lescan's ``ADDR TYPE RSSI NAME`` lines."""
    adverts = []
    for line in _lines(text):
        m = re.fullmatch(r"(\S+) (public|random|public-id|random-id|anon|0x[0-9a-f]{2}) "
                         r"(-?\d{1,3}) ([!-~]+)", line)
        if not m:
            raise AgentError(f"lescan: malformed line {line[:300]!r}")
        rssi = int(m.group(3))
        if not -128 <= rssi <= 127:
            raise AgentError(f"lescan: RSSI out of range in {line[:300]!r}")
        name = m.group(4)
        adverts.append(LeAdvert(_parse_bdaddr(m.group(1), "lescan"), m.group(2), rssi,
                                None if name == "-" else name))
    return adverts


def _parse_rtt(text: str, count: int | None = None) -> list[int]:
    """Parses hcirtt's lines of nanoseconds; ``count`` of them if given."""
    lines = _lines(text)
    if not all(line.isdigit() and line.isascii() for line in lines) or (
            count is not None and len(lines) != count):
        raise AgentError(f"hcirtt: malformed answer ({len(lines)} lines) "
                         f"{text[:80]!r}")
    return [int(line) for line in lines]


def _parse_l2_send(text: str) -> L2SendResult:
    """Parses l2send's ``sent N acked N ns N``."""
    m = re.fullmatch(r"sent (\d{1,20}) acked (\d{1,20}) ns (\d{1,20})", text)
    if not m:
        raise AgentError(f"l2send: malformed answer {text[:200]!r}")
    return L2SendResult(*(int(g) for g in m.groups()))


def _check_pcm(card: int, dev: int, rate: int, channels: int) -> None:
    _check_int(card, 0, PCM_MAX_INDEX, "card")
    _check_int(dev, 0, PCM_MAX_INDEX, "dev")
    _check_int(rate, PCM_MIN_RATE, PCM_MAX_RATE, "rate")
    _check_int(channels, 1, PCM_MAX_CHANNELS, "channels")


_PCM_PLAY = re.compile(r"frames (\d{1,20}) xruns (\d{1,20}) ms (\d{1,20}) rate (\d{1,6}) "
                       r"channels (\d{1,3}) period (\d{1,20}) buffer (\d{1,20})", re.ASCII)
_PCM_RECORD = re.compile(r"frames (\d{1,20}) xruns (\d{1,20}) freq (\d{1,6}\.\d\d) "
                         r"rms ([01]\.\d{6}) peak ([01]\.\d{6})", re.ASCII)


def _parse_pcm_play(text: str) -> PcmPlayResult:
    """Parses pcmplay's ``frames N xruns X ms E rate R channels C period P buffer B``."""
    m = _PCM_PLAY.fullmatch(text)
    if not m:
        raise AgentError(f"pcmplay: malformed answer {text[:200]!r}")
    return PcmPlayResult(*(int(g) for g in m.groups()))


def _parse_pcm_record(text: str) -> PcmRecordResult:
    """Parses pcmrec's ``frames N xruns X freq F.FF rms R.RRRRRR peak P.PPPPPP``."""
    m = _PCM_RECORD.fullmatch(text)
    if not m or float(m.group(4)) > 1 or float(m.group(5)) > 1:
        raise AgentError(f"pcmrec: malformed answer {text[:200]!r}")
    return PcmRecordResult(int(m.group(1)), int(m.group(2)), float(m.group(3)),
                           float(m.group(4)), float(m.group(5)))


_CTL_ELEM = re.compile(
    r"numid (\d{1,10}) iface (card|hwdep|mixer|pcm|rawmidi|timer|sequencer|\?) "
    r"type (none|boolean|integer|enumerated|bytes|iec958|integer64|\?) access (rwi|rw|ri|wi|r|w|i|-) "
    r"count (\d{1,10}) values (-|-?\d{1,20}(?:,-?\d{1,20})*) min (-?\d{1,20}) "
    r"max (-?\d{1,20}) step (-?\d{1,20}) index (\d{1,10}) device (\d{1,10}) "
    r"name ([ -~]{0,44})", re.ASCII)


def _parse_ctl_values(text: str, verb: str) -> tuple[int, ...]:
    if not re.fullmatch(r"-?\d{1,20}(?:,-?\d{1,20})*", text, re.ASCII):
        raise AgentError(f"{verb}: malformed values {text[:200]!r}")
    return tuple(int(v) for v in text.split(","))


def _parse_ctl_list(text: str) -> list[CtlElem]:
    """Parses ctllist's ``numid N iface I ... name NAME`` lines."""
    elems = []
    for line in _lines(text):
        m = _CTL_ELEM.fullmatch(line)
        if not m:
            raise AgentError(f"ctllist: malformed line {line[:200]!r}")
        numid, iface, type_, access, count, values, lo, hi, step, index, device, name = \
            m.groups()
        vals = None if values == "-" else _parse_ctl_values(values, "ctllist")
        elems.append(CtlElem(int(numid), iface, type_, "" if access == "-" else access,
                             int(count), vals, int(lo), int(hi), int(step), int(index),
                             int(device), name))
    return elems


_U64 = r"(0|[1-9]\d{0,19})"
_MEM = re.compile(
    rf"total={_U64} free={_U64} available={_U64} cached={_U64} buffers={_U64} "
    rf"shmem={_U64} anon={_U64} balloon=(-1|0|[1-9]\d{{0,19}}) "
    rf"oom_kills=(-1|0|[1-9]\d{{0,19}})", re.ASCII)
_MEMHOG_STAT = re.compile(
    rf"pid=(0|[1-9]\d{{0,9}}) touched_kib={_U64} target_kib={_U64} done=([01]) alive=([01]) "
    r"status=(none|running|stopped|unknown|exited (?:0|[1-9]\d{0,2})|killed [A-Z0-9]{1,8})",
    re.ASCII)


def _parse_mem(text: str) -> GuestMem:
    """Parses mem's ``total=KIB ... balloon=KIB|-1 oom_kills=N|-1``."""
    m = _MEM.fullmatch(text)
    if not m:
        raise AgentError(f"mem: malformed answer {text[:300]!r}")
    *kib, balloon, ooms = (int(g) for g in m.groups())
    return GuestMem(*(k * 1024 for k in kib), None if balloon < 0 else balloon * 1024,
                    None if ooms < 0 else ooms)


def _parse_memhog_stat(text: str) -> MemHogStat:
    """Parses memhogstat's ``pid=P touched_kib=T target_kib=X done=D alive=A status=S``."""
    m = _MEMHOG_STAT.fullmatch(text)
    if m:
        pid, touched, target, done, alive = (int(g) for g in m.groups()[:5])
        status = m.group(6)
        st = MemHogStat(pid, touched * 1024, target * 1024, done == 1, alive == 1, status)
        # alive exactly while running; pid 0 exactly when none was started;
        # never more touched than the target (a started child has a target)
        if (st.alive == (status == "running") and (pid == 0) == (status == "none")
                and touched <= target and (pid == 0 or target > 0)
                and (not st.done or touched == target)):
            return st
    raise AgentError(f"memhogstat: malformed answer {text[:300]!r}")


def _check_word(value: str, what: str) -> None:
    if not value or " " in value or "\n" in value:
        raise ValueError(f"agent {what} must be non-empty without spaces: {value!r}")


def _connect_unix(path: str, timeout: float) -> socket.socket:
    deadline = time.monotonic() + timeout
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            sock.connect(path)
            return sock
        except (FileNotFoundError, ConnectionRefusedError) as e:
            sock.close()
            if time.monotonic() >= deadline:
                raise AgentError(f"cannot connect to agent socket {path}: {e}") from None
            time.sleep(0.05)
        except OSError as e:
            sock.close()
            raise AgentError(f"cannot connect to agent socket {path}: {e}") from None
