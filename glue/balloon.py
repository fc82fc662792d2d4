"""The host side of automatic ballooning (devspecs/balloon.yaml).

QEMU's ``tabvm-balloon`` object decides the balloon's target; the glue only
tells it the host's memory pressure level and whether the VM is in the foreground,
as lines on the object's chardev (``PolicyLink``):

    level NAME | foreground | background | query
    -> ok level=EFFECTIVE host-level=NAME foreground=0|1 target=BYTES
    -> error: TEXT

The level comes from host sources, each mapped to a level index by the spec's
thresholds (a source moves the host to the HIGHEST level whose threshold it
crosses; level 0 is the baseline; a level without a threshold for a source is
skipped for it):

- Linux: ``/proc/meminfo`` MemAvailable / MemTotal (``LinuxHostAdapter``, polled);
  PSI triggers are opened by QEMU itself (its ``psi=`` property).
- Android: lmkd's ``sys.lmk.minfree_levels``, ActivityManager.MemoryInfo and
  onTrimMemory (``AndroidHostAdapter``, fed by host events).
- A direct level (``tabvm ctl RUNDIR pressure level=low``).

``BalloonBridge`` combines them (max), sends ``level NAME`` when the combined level
changes, and ``foreground``/``background`` when the VM's state changes.
"""

from __future__ import annotations

import os
import re
import select
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from generator.ir import Balloon
from generator.kinds.balloon import TRIM_LEVELS

from .log import log_line

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SPEC = REPO / "devspecs" / "balloon.yaml"
MEMINFO = Path("/proc/meminfo")
PSI_MEMORY = Path("/proc/pressure/memory")
PAGE_KIB = 4                  # lmkd's minfree levels count 4 KiB pages
LINE_MAX = 127                # the policy object's chardev line limit (bytes, no newline)
PRESSURE_SOCKET = "pressure.sock"    # in the runtime directory (profile.BalloonSetup)

# ComponentCallbacks2.TRIM_MEMORY_* values, for hosts that send the number
TRIM_VALUES = {5: "RUNNING_MODERATE", 10: "RUNNING_LOW", 15: "RUNNING_CRITICAL",
               20: "UI_HIDDEN", 40: "BACKGROUND", 60: "MODERATE", 80: "COMPLETE"}
assert set(TRIM_VALUES.values()) == set(TRIM_LEVELS)

Log = Callable[..., None]


def levels_from_spec(path: Path | str = DEFAULT_SPEC) -> Balloon:
    """The checked balloon-policy spec at ``path`` (raises generator's SpecErrors)."""
    from generator.main import check
    devices = [d for d in check([Path(path)]) if isinstance(d, Balloon)]
    if len(devices) != 1:
        raise ValueError(f"{path}: not a balloon-policy spec")
    return devices[0]


def level_names(spec: Balloon) -> tuple[str, ...]:
    return tuple(lv.name for lv in spec.levels)


def level_index(spec: Balloon, name: str) -> int:
    """The index of level ``name``; ValueError naming the spec's levels."""
    names = level_names(spec)
    if not isinstance(name, str) or name not in names:
        raise ValueError(f"unknown level {name!r} (levels: {', '.join(names)})")
    return names.index(name)


def _highest(spec: Balloon, crossed: Callable[[Any], bool], field: str) -> int:
    """The highest level whose ``field`` threshold is set and ``crossed``; else 0."""
    level = 0
    for i, lv in enumerate(spec.levels):
        threshold = getattr(lv, field)
        if i and threshold is not None and crossed(threshold):
            level = i
    return level


def _nonneg_int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} must be an integer, not {value!r}")
    if value < 0:
        raise ValueError(f"{what} must not be negative ({value})")
    return value


# --- Linux: /proc/meminfo -----------------------------------------------------------

_MEMINFO_LINE = re.compile(r"([A-Za-z0-9_()]+):\s+(\d+)(?: kB)?")


def read_meminfo(path: Path | str = MEMINFO) -> dict[str, int]:
    """``/proc/meminfo`` as {field: value}; values in kB (counts such as
    HugePages_Total as they are)."""
    result: dict[str, int] = {}
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        m = _MEMINFO_LINE.fullmatch(line.strip())
        if not m:
            raise ValueError(f"{path}:{n}: not a meminfo line: {line!r}")
        result[m.group(1)] = int(m.group(2))
    return result


def meminfo_level(spec: Balloon, meminfo: Mapping[str, int]) -> int:
    """The level for MemAvailable as a percentage of MemTotal (under the level's
    ``meminfo_available_pct``)."""
    try:
        avail, total = meminfo["MemAvailable"], meminfo["MemTotal"]
    except KeyError as exc:
        raise ValueError(f"meminfo has no {exc.args[0]} (kernel older than 3.14?)") from None
    _nonneg_int(avail, "MemAvailable")
    if _nonneg_int(total, "MemTotal") == 0:
        raise ValueError("MemTotal is 0")
    return _highest(spec, lambda pct: avail * 100 < total * pct, "meminfo_available_pct")


def _cgroup_int(path: Path) -> int | None:
    text = path.read_text().strip()
    return None if text == "max" else int(text)


def cgroup_meminfo(cgroup: Path | str) -> dict[str, int]:
    """A memory cgroup (v2, or v1's memory controller) as /proc/meminfo would
    show it, in kB: its limit is MemTotal; what is left under the limit plus its
    inactive page cache is MemAvailable. The VM's process may live in one (an
    Android app's memcg, a systemd slice); its limit is what kills it."""
    cg = Path(cgroup)
    v2 = (cg / "memory.max").exists()
    limit = _cgroup_int(cg / ("memory.max" if v2 else "memory.limit_in_bytes"))
    usage = _cgroup_int(cg / ("memory.current" if v2 else "memory.usage_in_bytes"))
    if usage is None:
        raise ValueError(f"{cg}: no memory usage")
    if limit is None or limit >= 1 << 60:
        raise ValueError(f"{cg}: the cgroup has no memory limit")
    stat = read_cgroup_stat(cg / "memory.stat")
    inactive = stat.get("inactive_file", stat.get("total_inactive_file", 0))
    available = min(limit, max(0, limit - usage) + inactive)
    return {"MemTotal": limit // 1024, "MemFree": max(0, limit - usage) // 1024,
            "MemAvailable": available // 1024}


def read_cgroup_stat(path: Path) -> dict[str, int]:
    out = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        key, _, value = line.partition(" ")
        if not value.isdigit():
            raise ValueError(f"{path}:{n}: not a memory.stat line: {line!r}")
        out[key] = int(value)
    return out


# --- Android: lmkd, ActivityManager, onTrimMemory ----------------------------------

def parse_minfree(minfree: str) -> list[tuple[int, int]]:
    """``sys.lmk.minfree_levels`` ("18432:0,23040:100,...": pages:oom_score_adj, as
    lmkd writes it) as [(pages, adj)]."""
    if not isinstance(minfree, str):
        raise ValueError(f"minfree levels must be a string, not {minfree!r}")
    text = minfree.strip()
    if not text:
        raise ValueError("empty minfree levels (lmkd has not set sys.lmk.minfree_levels)")
    entries = []
    for part in text.split(","):
        m = re.fullmatch(r"(\d{1,10}):(-?\d{1,4})", part)
        if not m:
            raise ValueError(f"bad minfree entry {part!r} in {text!r} (expected "
                             "PAGES:ADJ, e.g. 18432:0)")
        pages, adj = int(m.group(1)), int(m.group(2))
        if not -1000 <= adj <= 1000:
            raise ValueError(f"minfree entry {part!r}: oom_score_adj {adj} is outside "
                             "-1000..1000")
        entries.append((pages, adj))
    return entries


def kill_line_kib(minfree: str, own_adj: int) -> int:
    """Free memory under which lmkd kills a process at ``own_adj``: the minfree of
    the largest adj <= own_adj (if none, the smallest minfree), in KiB."""
    entries = parse_minfree(minfree)
    eligible = [(adj, pages) for pages, adj in entries if adj <= own_adj]
    pages = max(eligible)[1] if eligible else min(p for p, _ in entries)
    return pages * PAGE_KIB


def lmkd_level(spec: Balloon, minfree: str, free_kib: int) -> int:
    """The level for host free memory ``free_kib`` against the kill line of the
    VM app (``spec.own_adj``): reached under kill line + ``lmkd_margin_mib``."""
    kill = kill_line_kib(minfree, spec.own_adj)
    free = _nonneg_int(free_kib, "free_kib")
    return _highest(spec, lambda margin: free < kill + margin * 1024, "lmkd_margin_mib")


def am_level(spec: Balloon, avail: int, threshold: int, low_memory: bool) -> int:
    """The level for ActivityManager.MemoryInfo: availMem under threshold x
    ``am_threshold_pct`` / 100; ``low_memory`` (MemoryInfo.lowMemory) means at
    least the level at 100 % (or, without one, the highest that has a percentage)."""
    avail = _nonneg_int(avail, "avail")
    threshold = _nonneg_int(threshold, "threshold")
    if not isinstance(low_memory, bool):
        raise ValueError(f"low must be true or false, not {low_memory!r}")
    level = _highest(spec, lambda pct: avail * 100 < threshold * pct, "am_threshold_pct")
    if low_memory:
        having = [i for i, lv in enumerate(spec.levels)
                  if i and lv.am_threshold_pct is not None]
        at_100 = [i for i in having if spec.levels[i].am_threshold_pct == 100]
        floor = at_100[0] if at_100 else max(having, default=0)
        level = max(level, floor)
    return level


def trim_name(name: str | int) -> str:
    """An onTrimMemory level as the spec names it: RUNNING_LOW, TRIM_MEMORY_RUNNING_LOW
    or its value (10)."""
    if isinstance(name, bool):
        raise ValueError(f"bad trim-memory level {name!r}")
    if isinstance(name, int):
        if name not in TRIM_VALUES:
            raise ValueError(f"unknown trim-memory value {name} (known: "
                             f"{', '.join(f'{v} {n}' for v, n in TRIM_VALUES.items())})")
        return TRIM_VALUES[name]
    if not isinstance(name, str):
        raise ValueError(f"bad trim-memory level {name!r}")
    bare = name.removeprefix("TRIM_MEMORY_")
    if bare not in TRIM_LEVELS:
        raise ValueError(f"unknown trim-memory level {name!r} (levels: "
                         f"{', '.join(TRIM_LEVELS)})")
    return bare


def trim_level(spec: Balloon, name: str | int) -> int | None:
    """The level an onTrimMemory level maps to through the levels' ``trim_memory``
    lists (0 when unmapped). UI_HIDDEN is not pressure: the app's UI went away;
    returns None and the caller treats it as "background"."""
    bare = trim_name(name)
    if bare == "UI_HIDDEN":
        return None
    for i, lv in enumerate(spec.levels):
        if bare in lv.trim_memory:
            return i
    return 0


# --- the link to QEMU's policy object ------------------------------------------------

class PolicyLinkError(RuntimeError):
    pass


class _Closed(Exception):
    pass


def parse_reply(text: str) -> dict[str, Any]:
    """``ok level=X host-level=Y foreground=0|1 target=N`` as {level, host_level,
    foreground, target}; PolicyLinkError for ``error: TEXT`` and anything else."""
    if text.startswith("error:"):
        raise PolicyLinkError(f"QEMU: {text[len('error:'):].strip()}")
    words = text.split()
    if not words or words[0] != "ok":
        raise PolicyLinkError(f"unexpected reply from QEMU: {text!r}")
    fields: dict[str, Any] = {}
    for word in words[1:]:
        key, eq, value = word.partition("=")
        if not eq or not key:
            raise PolicyLinkError(f"unexpected reply from QEMU: {text!r}")
        fields[key.replace("-", "_")] = value
    try:
        fields["foreground"] = {"0": False, "1": True}[fields["foreground"]]
        fields["target"] = int(fields["target"])
    except (KeyError, ValueError):
        raise PolicyLinkError(f"unexpected reply from QEMU: {text!r}") from None
    if "level" not in fields or "host_level" not in fields:
        raise PolicyLinkError(f"unexpected reply from QEMU: {text!r}")
    return fields


class PolicyLink:
    """Client of the policy object's chardev (QEMU is the server:
    ``-chardev socket,id=pressure,path=...,server=on,wait=off``).

    One request at a time (thread-safe); each waits for QEMU's reply line. When
    QEMU closed the connection (it restarted, or the chardev was reset), the link
    reconnects and sends the line again: every message is idempotent. ``connects``
    counts connections, so a caller can tell that QEMU may have lost its state.
    A QEMU socket chardev serves one client: a second link waits forever and
    times out."""

    def __init__(self, path: Path | str, timeout: float = 2.0,
                 connect_timeout: float = 10.0):
        self.path = Path(path)
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.connects = 0
        self._sock: socket.socket | None = None
        self._buf = b""
        self._lock = threading.Lock()

    def connect(self) -> None:
        """Connect if not connected, retrying until ``connect_timeout``."""
        with self._lock:
            self._connect()

    def _peer_gone(self) -> bool:
        """Whether QEMU closed our connection (it restarted): an end of file is
        waiting. Stray bytes (no request is pending) are dropped."""
        assert self._sock is not None
        try:
            while select.select([self._sock], [], [], 0)[0]:
                if not self._sock.recv(4096, socket.MSG_DONTWAIT):
                    return True
        except BlockingIOError:
            return False
        except OSError:
            return True
        self._buf = b""
        return False

    def _connect(self) -> None:
        if self._sock is not None and self._peer_gone():
            self._drop()
        if self._sock is not None:
            return
        deadline = time.monotonic() + self.connect_timeout
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(max(0.1, min(self.timeout, deadline - time.monotonic())))
                sock.connect(str(self.path))
            except (FileNotFoundError, ConnectionRefusedError, socket.timeout) as exc:
                sock.close()
                if time.monotonic() >= deadline:
                    raise PolicyLinkError(f"cannot connect to QEMU's balloon policy at "
                                          f"{self.path} within {self.connect_timeout} s: "
                                          f"{exc}") from None
                time.sleep(0.05)
                continue
            except OSError as exc:
                sock.close()
                raise PolicyLinkError(f"cannot connect to {self.path}: {exc}") from None
            self._sock, self._buf = sock, b""
            self.connects += 1
            return

    def _drop(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock, self._buf = None, b""

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _read_line(self, deadline: float) -> str:
        assert self._sock is not None
        while b"\n" not in self._buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise socket.timeout
            self._sock.settimeout(remaining)
            chunk = self._sock.recv(4096)
            if not chunk:
                raise _Closed
            self._buf += chunk
            if len(self._buf) > 4096 and b"\n" not in self._buf:
                raise PolicyLinkError("QEMU's reply is not a line")
        line, _, self._buf = self._buf.partition(b"\n")
        return line.decode("utf-8", "replace").rstrip("\r")

    def request(self, line: str) -> dict[str, Any]:
        """Send one message, return QEMU's parsed reply (PolicyLinkError on
        ``error:`` replies, timeouts, or no QEMU)."""
        data = line.encode("utf-8")
        if len(data) > LINE_MAX or "\n" in line or "\r" in line or "\0" in line:
            raise PolicyLinkError(f"not a policy message (one line of at most "
                                  f"{LINE_MAX} bytes): {line!r}")
        with self._lock:
            for attempt in (1, 2):
                self._connect()
                assert self._sock is not None
                try:
                    self._sock.settimeout(self.timeout)
                    self._sock.sendall(data + b"\n")
                    reply = self._read_line(time.monotonic() + self.timeout)
                except socket.timeout:
                    self._drop()     # a late reply would answer the next request
                    raise PolicyLinkError(f"no reply from QEMU to {line!r} within "
                                          f"{self.timeout} s (is another client "
                                          f"connected to {self.path}?)") from None
                except (_Closed, ConnectionError) as exc:
                    self._drop()
                    if attempt == 2:
                        raise PolicyLinkError(f"QEMU closed {self.path}: "
                                              f"{exc or 'end of file'}") from None
                    continue
                except OSError as exc:
                    self._drop()
                    raise PolicyLinkError(f"{self.path}: {exc}") from None
                return parse_reply(reply)
        raise AssertionError("unreachable")

    def set_level(self, name: str) -> dict[str, Any]:
        if not re.fullmatch(r"[A-Za-z0-9_]+", name or ""):
            raise PolicyLinkError(f"bad level name {name!r}")
        return self.request(f"level {name}")

    def set_foreground(self, foreground: bool) -> dict[str, Any]:
        return self.request("foreground" if foreground else "background")

    def query(self) -> dict[str, Any]:
        return self.request("query")

    def __enter__(self) -> PolicyLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- host adapters ------------------------------------------------------------------

class LinuxHostAdapter:
    """The level from ``/proc/meminfo``, or from the memory cgroup ``cgroup`` the
    VM runs in (MemAvailable has no event: poll it)."""

    source = "meminfo"

    def __init__(self, spec: Balloon, meminfo_path: Path | str = MEMINFO,
                 cgroup: Path | str | None = None):
        self.spec = spec
        self.meminfo_path = Path(meminfo_path)
        self.cgroup = Path(cgroup) if cgroup is not None else None
        self.last: dict[str, int] | None = None

    def poll(self) -> int:
        info = (cgroup_meminfo(self.cgroup) if self.cgroup is not None
                else read_meminfo(self.meminfo_path))
        level = meminfo_level(self.spec, info)
        self.last = {k: info[k] for k in ("MemTotal", "MemAvailable")}
        return level


@dataclass
class _Reading:
    level: int
    at: float
    detail: dict[str, Any]


class AndroidHostAdapter:
    """The latest lmkd, ActivityManager memory-info and onTrimMemory inputs; the
    level is their max. Android sends a trim once, so a trim's level holds
    ``trim_hold_s`` (default: the spec's level_down_delay_s x 2) and then decays
    to 0; lmkd and memory-info readings hold until the next one."""

    SOURCES = ("lmkd", "memory-info", "trim-memory")

    def __init__(self, spec: Balloon, clock: Callable[[], float] = time.monotonic,
                 trim_hold_s: float | None = None):
        self.spec = spec
        self.clock = clock
        self.trim_hold_s = (2 * spec.level_down_delay_s if trim_hold_s is None
                            else trim_hold_s)
        self._readings: dict[str, _Reading] = {}
        self._lock = threading.Lock()

    def _store(self, source: str, level: int, **detail: Any) -> int:
        with self._lock:
            self._readings[source] = _Reading(level, self.clock(), detail)
        return level

    def set_lmkd(self, minfree: str, free_kib: int) -> int:
        level = lmkd_level(self.spec, minfree, free_kib)
        return self._store("lmkd", level, free_kib=free_kib,
                           kill_line_kib=kill_line_kib(minfree, self.spec.own_adj))

    def set_memory_info(self, avail: int, threshold: int, total: int,
                        low: bool) -> int:
        _nonneg_int(total, "total")
        if _nonneg_int(avail, "avail") > total:
            raise ValueError(f"avail ({avail}) is more than total ({total})")
        level = am_level(self.spec, avail, threshold, low)
        return self._store("memory-info", level, avail=avail, threshold=threshold,
                           total=total, low=low)

    def set_trim(self, name: str | int) -> int | None:
        """The trim's level; None for UI_HIDDEN (not pressure: the caller treats it
        as background), which leaves the trim level as it was."""
        level = trim_level(self.spec, name)
        if level is not None:
            self._store("trim-memory", level, trim=trim_name(name))
        return level

    def levels(self) -> dict[str, int]:
        """Each source's current level (a decayed trim is 0)."""
        now = self.clock()
        with self._lock:
            out = {src: r.level for src, r in self._readings.items()}
            trim = self._readings.get("trim-memory")
        if trim is not None and now - trim.at >= self.trim_hold_s:
            out["trim-memory"] = 0
        return out

    def level(self) -> int:
        return max(self.levels().values(), default=0)

    def details(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {src: dict(r.detail) for src, r in self._readings.items()}

    def on_event(self, event: Mapping[str, Any]) -> int | None:
        """An lmkd / memory-info / trim-memory host event (see host_events): the
        source's new level (None: UI_HIDDEN)."""
        kind = event.get("event")
        if kind == "lmkd":
            return self.set_lmkd(event["minfree"], event["free_kib"])
        if kind == "memory-info":
            return self.set_memory_info(event["avail"], event["threshold"],
                                        event["total"], event["low"])
        if kind == "trim-memory":
            return self.set_trim(event["level"])
        raise ValueError(f"not an Android memory event: {kind!r}")


# --- the bridge ---------------------------------------------------------------------

class BalloonBridge:
    """Host sources -> QEMU's policy object, through a PolicyLink.

    The host level is the max over the sources (Linux meminfo when ``linux`` is
    given, the Android adapter's, and a direct level from ``set_pressure``);
    ``level NAME`` is sent only when it changes, ``foreground``/``background``
    only when the VM's state changes, and both again after the link reconnected
    (a restarted QEMU starts over). ``start()`` runs a thread that every
    ``interval`` s polls the Linux adapter and re-evaluates (a trim's level decays);
    a link failure there is logged and retried on the next tick."""

    def __init__(self, link: PolicyLink, spec: Balloon,
                 linux: LinuxHostAdapter | None = None,
                 android: AndroidHostAdapter | None = None,
                 foreground: bool = True, interval: float = 0.5,
                 log: Log = log_line):
        self.link = link
        self.spec = spec
        self.linux = linux
        self.android = android if android is not None else AndroidHostAdapter(spec)
        self.interval = interval
        self.log = log
        self._foreground = foreground
        self._pressure = 0                  # the direct level
        self._linux_level = 0
        self._linux_error: str | None = None
        self._link_error: str | None = None
        self._sent_level: int | None = None
        self._sent_fg: bool | None = None
        self._gen: int | None = None        # link.connects our sent state is for
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- state --
    def name(self, level: int) -> str:
        return self.spec.levels[level].name

    def sources(self) -> dict[str, int]:
        out = {"pressure": self._pressure}
        if self.linux is not None:
            out[LinuxHostAdapter.source] = self._linux_level
        out.update(self.android.levels())
        return out

    def level(self) -> int:
        return max(self.sources().values())

    @property
    def foreground(self) -> bool:
        return self._foreground

    # -- sending --
    def _push(self) -> dict[str, Any] | None:
        """Send what QEMU does not know yet (caller holds the lock)."""
        reply = None
        level, fg = self.level(), self._foreground
        self.link.connect()
        for _ in range(3):
            gen = self.link.connects
            resync = gen != self._gen
            if resync or level != self._sent_level:
                was = self._sent_level
                reply = self.link.set_level(self.name(level))
                self._sent_level = level
                if was != level:
                    srcs = self.sources()
                    self.log("balloon-level", level=self.name(level),
                             was="-" if was is None else self.name(was),
                             sources=",".join(s for s, v in sorted(srcs.items())
                                              if v == level and level) or "-")
            if resync or fg != self._sent_fg:
                was_fg = self._sent_fg
                reply = self.link.set_foreground(fg)
                self._sent_fg = fg
                if was_fg != fg:
                    self.log("balloon-foreground", foreground=int(fg))
            if self.link.connects == gen:
                self._gen = gen
                if self._link_error is not None:
                    self.log("balloon-link", state="ok", connects=gen)
                    self._link_error = None
                return reply
        raise PolicyLinkError(f"{self.link.path} keeps reconnecting")

    def update(self) -> dict[str, Any] | None:
        """Send the current level and foreground state if QEMU lacks them; QEMU's
        reply to the last line sent (None: nothing to send)."""
        with self._lock:
            return self._push()

    def set_foreground(self, foreground: bool) -> dict[str, Any] | None:
        """The VM went to the foreground (True) or background: one message to QEMU."""
        with self._lock:
            self._foreground = bool(foreground)
            return self._push()

    def set_pressure(self, name: str) -> dict[str, Any] | None:
        """A direct host level (``normal`` clears it)."""
        with self._lock:
            self._pressure = level_index(self.spec, name)
            return self._push()

    def on_android_event(self, event: Mapping[str, Any]) -> dict[str, Any] | None:
        with self._lock:
            if self.android.on_event(event) is None:      # UI_HIDDEN
                self._foreground = False
            return self._push()

    def tick(self) -> None:
        """One step of the thread: poll Linux, re-evaluate, send; errors logged."""
        if self.linux is not None:
            try:
                level = self.linux.poll()
            except (OSError, ValueError) as exc:
                if str(exc) != self._linux_error:
                    self.log("balloon-meminfo-error", error=repr(str(exc)))
                self._linux_error = str(exc)
            else:
                self._linux_level, self._linux_error = level, None
        try:
            self.update()
        except PolicyLinkError as exc:
            if str(exc) != self._link_error:
                self.log("balloon-link", state="error", error=repr(str(exc)))
            self._link_error = str(exc)

    # -- thread --
    def start(self) -> BalloonBridge:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="balloon-bridge",
                                            daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while True:
            self.tick()
            if self._stop.wait(self.interval):
                return

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.link.close()

    def __enter__(self) -> BalloonBridge:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- status and host events --
    def status(self, query_qemu: bool = True) -> dict[str, Any]:
        with self._lock:
            out: dict[str, Any] = {
                "level": self.name(self.level()),
                "sent_level": None if self._sent_level is None
                else self.name(self._sent_level),
                "foreground": self._foreground,
                "sources": {s: self.name(v) for s, v in sorted(self.sources().items())},
                "android": self.android.details(),
            }
            if self.linux is not None and self.linux.last is not None:
                out["meminfo"] = dict(self.linux.last)
            if self._linux_error:
                out["meminfo_error"] = self._linux_error
        if query_qemu:
            try:
                out["qemu"] = self.link.query()
            except PolicyLinkError as exc:
                out["qemu_error"] = str(exc)
        return out

    def register(self, server: Any, with_lifecycle: bool = False) -> None:
        """Add the balloon's events to a host_events.HostEventServer. With a
        lifecycle (glue.lifecycle), it owns foreground, background, trim-memory
        and status, and calls this bridge itself."""
        def state(reply: dict[str, Any] | None) -> dict[str, Any]:
            out: dict[str, Any] = {"level": self.name(self.level()),
                                   "foreground": self._foreground}
            if reply is not None:
                out["qemu"] = reply
            return out

        if not with_lifecycle:
            server.register("foreground", lambda ev: state(self.set_foreground(True)))
            server.register("background", lambda ev: state(self.set_foreground(False)))
            server.register("trim-memory", lambda ev: state(self.on_android_event(ev)),
                            fields={"level": (str, int)})
            server.register("status", lambda ev: self.status())
        server.register("pressure", lambda ev: state(self.set_pressure(ev["level"])),
                        fields={"level": str})
        server.register("memory-info", lambda ev: state(self.on_android_event(ev)),
                        fields={"avail": int, "threshold": int, "total": int,
                                "low": bool})
        server.register("lmkd", lambda ev: state(self.on_android_event(ev)),
                        fields={"minfree": str, "free_kib": int})


def psi_usable(spec: Balloon, path: Path | str = PSI_MEMORY) -> str | None:
    """None if this process can set every PSI trigger of ``spec`` on ``path`` (QEMU
    will, and fails to start if it cannot), else why not: no PSI in the kernel,
    or triggers refused (unprivileged users get only windows that are multiples
    of 2 s since Linux 6.5; SELinux on Android)."""
    for lv in spec.levels:
        if lv.psi is None:
            continue
        try:
            fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            return f"cannot open {path}: {exc.strerror}"
        try:
            os.write(fd, lv.psi.trigger.encode() + b"\0")
        except OSError as exc:
            return f"{path} refuses the trigger {lv.psi.trigger!r}: {exc.strerror}"
        finally:
            os.close(fd)
    return None
