"""glue/balloon.py: the host side of automatic ballooning, without a VM.

Level functions against the real devspecs/balloon.yaml; PolicyLink and BalloonBridge
against FakeQemu, a socket server that speaks the policy object's chardev protocol
(one client at a time, like a QEMU socket chardev) and records every line.
"""

from __future__ import annotations

import dataclasses
import socket
import threading
import time
from pathlib import Path

import pytest

from generator.ir import Balloon
from glue.balloon import (
    DEFAULT_SPEC, AndroidHostAdapter, BalloonBridge, LinuxHostAdapter, PolicyLink,
    PolicyLinkError, am_level, kill_line_kib, level_index, levels_from_spec, lmkd_level,
    meminfo_level, parse_minfree, parse_reply, psi_usable,
    read_meminfo, trim_level,
)

SPEC = levels_from_spec()
NORMAL, MODERATE, LOW, CRITICAL = range(4)
MIB = 1024

# ActivityManager's high-end table (notes/devices.md): KB for adj 0/100/200/250/900/950
ANDROID_KB = {0: 73_728, 100: 92_160, 200: 110_592, 250: 129_024, 900: 147_456,
              950: 184_320}
ANDROID_MINFREE = ",".join(f"{kb // 4}:{adj}" for adj, kb in ANDROID_KB.items())


def with_level(spec: Balloon, index: int, **changes) -> Balloon:
    levels = list(spec.levels)
    levels[index] = dataclasses.replace(levels[index], **changes)
    return dataclasses.replace(spec, levels=tuple(levels))


# --- FakeQemu -----------------------------------------------------------------------

class FakeQemu:
    """The policy object's chardev, as a QEMU socket chardev server: one client at a
    time, lines of at most 127 bytes, replies "ok ..." or "error: ...".
    ``mute``: read but never answer. ``lines``: every line received."""

    LINE_MAX = 127

    def __init__(self, path: Path, levels: tuple[str, ...] = ("normal", "moderate", "low",
                                                               "critical")):
        self.path = path
        self.levels = levels
        self.lines: list[str] = []
        self.mute = False
        self.accepted = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._reset()

    def _reset(self) -> None:
        self.host_level, self.foreground, self.target = "normal", False, 0

    def start(self) -> FakeQemu:
        if self.path.exists():
            self.path.unlink()
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(self.path))
        self._listener.listen(4)
        self._listener.settimeout(0.05)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            assert not self._thread.is_alive()
            self._thread = None
        self._listener.close()
        if self.path.exists():
            self.path.unlink()

    def restart(self) -> None:
        """QEMU exits and a new one starts: connections drop, the state is new."""
        self.stop()
        self._reset()
        self.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except socket.timeout:
                continue
            self.accepted += 1
            with conn:
                self._serve(conn)

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(0.05)
        line, too_long = b"", False
        while not self._stop.is_set():
            try:
                data = conn.recv(4096)
            except socket.timeout:
                continue
            if not data:
                return
            for c in data:
                if c == 10:
                    if too_long:
                        self.lines.append("<too long>")
                        self._reply(conn, "error: line too long, or not text")
                    else:
                        self._message(conn, line.decode())
                    line, too_long = b"", False
                elif c == 0 or len(line) >= self.LINE_MAX:
                    too_long = True
                elif not too_long:
                    line += bytes([c])

    def _reply(self, conn: socket.socket, text: str) -> None:
        if not self.mute:
            conn.sendall(text.encode() + b"\n")

    def _message(self, conn: socket.socket, line: str) -> None:
        self.lines.append(line)
        if line.startswith("level "):
            if line[6:] not in self.levels:
                return self._reply(conn, "error: unknown level (levels: "
                                   f"{', '.join(self.levels)})")
            self.host_level = line[6:]
        elif line in ("foreground", "background"):
            self.foreground = line == "foreground"
        elif line != "query":
            return self._reply(conn, "error: unknown message (level NAME, foreground, "
                               "background, query)")
        self._reply(conn, f"ok level={self.host_level} host-level={self.host_level} "
                    f"foreground={int(self.foreground)} target={self.target}")

    def wait_for(self, line: str, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while line not in self.lines:
            assert time.monotonic() < deadline, f"{line!r} not sent; got {self.lines}"
            time.sleep(0.01)


@pytest.fixture
def qemu(tmp_path):
    fake = FakeQemu(tmp_path / "pressure.sock").start()
    yield fake
    fake.stop()


@pytest.fixture
def link(qemu):
    with PolicyLink(qemu.path, timeout=1.0, connect_timeout=2.0) as link:
        yield link


class Logs(list):
    def __call__(self, event, **fields):
        self.append((event, fields))

    def events(self, name):
        return [f for e, f in self if e == name]


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


# --- the spec -----------------------------------------------------------------------

def test_spec_levels():
    assert isinstance(SPEC, Balloon)
    assert [lv.name for lv in SPEC.levels] == ["normal", "moderate", "low", "critical"]
    assert levels_from_spec(DEFAULT_SPEC) == SPEC
    assert level_index(SPEC, "low") == LOW
    with pytest.raises(ValueError, match="unknown level 'high' .*normal, moderate"):
        level_index(SPEC, "high")


def test_levels_from_spec_rejects_other_kinds(tmp_path):
    with pytest.raises(ValueError, match="not a balloon-policy"):
        levels_from_spec(DEFAULT_SPEC.parent / "battery.yaml")


# --- meminfo ------------------------------------------------------------------------

@pytest.mark.parametrize("avail_pct, level", [
    (100, NORMAL), (25.01, NORMAL), (25, NORMAL),       # under 25 %, not at it
    (24.99, MODERATE), (12, MODERATE), (11.99, LOW), (5, LOW), (4.99, CRITICAL),
    (0, CRITICAL),
])
def test_meminfo_level(avail_pct, level):
    total = 8_000_000
    info = {"MemTotal": total, "MemAvailable": int(total * avail_pct / 100)}
    assert meminfo_level(SPEC, info) == level


def test_meminfo_level_skips_levels_without_threshold():
    spec = with_level(SPEC, LOW, meminfo_available_pct=None)
    assert meminfo_level(spec, {"MemTotal": 100, "MemAvailable": 8}) == MODERATE
    assert meminfo_level(spec, {"MemTotal": 100, "MemAvailable": 4}) == CRITICAL


@pytest.mark.parametrize("info, message", [
    ({"MemTotal": 100}, "no MemAvailable"),
    ({"MemAvailable": 100}, "no MemTotal"),
    ({"MemTotal": 0, "MemAvailable": 0}, "MemTotal is 0"),
    ({"MemTotal": 100, "MemAvailable": -1}, "negative"),
])
def test_meminfo_level_bad(info, message):
    with pytest.raises(ValueError, match=message):
        meminfo_level(SPEC, info)


MEMINFO = """\
MemTotal:        8029212 kB
MemFree:          312044 kB
MemAvailable:    {avail} kB
Buffers:          190312 kB
Cached:          2917496 kB
HugePages_Total:       0
Hugepagesize:       2048 kB
DirectMap1G:     4194304 kB
"""


def test_read_meminfo(tmp_path):
    path = tmp_path / "meminfo"
    path.write_text(MEMINFO.format(avail=1_000_000))
    info = read_meminfo(path)
    assert info["MemTotal"] == 8_029_212 and info["MemAvailable"] == 1_000_000
    assert info["HugePages_Total"] == 0 and info["DirectMap1G"] == 4_194_304
    assert len(info) == 8
    path.write_text(MEMINFO.format(avail="lots"))
    with pytest.raises(ValueError, match=r"meminfo:3: not a meminfo line"):
        read_meminfo(path)


def test_read_real_meminfo():
    info = read_meminfo()
    assert 0 < info["MemAvailable"] <= info["MemTotal"]


def test_linux_adapter_follows_the_file(tmp_path):
    path = tmp_path / "meminfo"
    adapter = LinuxHostAdapter(SPEC, path)
    total = 8_029_212
    for avail, level in [(total // 2, NORMAL), (total // 5, MODERATE), (total // 10, LOW),
                         (total // 50, CRITICAL), (total // 3, NORMAL)]:
        path.write_text(MEMINFO.format(avail=avail))
        assert adapter.poll() == level, avail
    assert adapter.last == {"MemTotal": total, "MemAvailable": total // 3}


# --- lmkd ---------------------------------------------------------------------------

def test_android_table_in_pages():
    assert ANDROID_MINFREE == ("18432:0,23040:100,27648:200,32256:250,36864:900,"
                               "46080:950")
    assert parse_minfree(ANDROID_MINFREE) == [(kb // 4, adj) for adj, kb in ANDROID_KB.items()]


@pytest.mark.parametrize("own_adj, kib", [
    (900, 147_456), (950, 184_320), (1000, 184_320), (949, 147_456), (899, 129_024),
    (250, 129_024), (0, 73_728),
    (-100, 73_728),         # under every adj: the smallest entry
])
def test_kill_line(own_adj, kib):
    assert kill_line_kib(ANDROID_MINFREE, own_adj) == kib


def test_kill_line_unsorted_table():
    table = "46080:950,18432:0,36864:900,27648:200"
    assert kill_line_kib(table, 900) == 147_456
    assert kill_line_kib(table, 500) == 110_592
    assert kill_line_kib("36864:900,27648:200", 100) == 110_592   # smallest minfree


@pytest.mark.parametrize("free_kib, level", [
    (10_000_000, NORMAL),
    (147_456 + 256 * MIB, NORMAL),          # not under kill line + 256 MiB
    (147_456 + 256 * MIB - 1, MODERATE),
    (147_456 + 128 * MIB, MODERATE),
    (147_456 + 128 * MIB - 1, LOW),
    (147_456 + 32 * MIB, LOW),
    (147_456 + 32 * MIB - 1, CRITICAL),
    (0, CRITICAL),
])
def test_lmkd_level_android_defaults(free_kib, level):
    assert SPEC.own_adj == 900
    assert lmkd_level(SPEC, ANDROID_MINFREE, free_kib) == level


def test_lmkd_level_brief_example_and_own_adj():
    table = "18432:0,23040:100,27648:200,32256:250,55296:900,80640:950"
    assert lmkd_level(SPEC, table, 55296 * 4 + 200 * MIB) == MODERATE
    # a foreground-ish own_adj of 0: its kill line is far lower
    spec0 = dataclasses.replace(SPEC, own_adj=0)
    assert lmkd_level(spec0, table, 55296 * 4 + 200 * MIB) == NORMAL
    assert lmkd_level(spec0, table, 73_728 + 200 * MIB) == MODERATE
    assert lmkd_level(spec0, table, 73_728 + 100 * MIB) == LOW


def test_lmkd_level_skips_levels_without_margin():
    spec = with_level(SPEC, LOW, lmkd_margin_mib=None)
    assert lmkd_level(spec, ANDROID_MINFREE, 147_456 + 100 * MIB) == MODERATE


@pytest.mark.parametrize("minfree, message", [
    ("", "empty minfree"),
    ("   ", "empty minfree"),
    ("18432", "bad minfree entry '18432'"),
    ("18432:0,", "bad minfree entry ''"),
    ("18432:0;23040:100", "bad minfree entry"),
    ("a:0", "bad minfree entry 'a:0'"),
    ("18432: 0", "bad minfree entry"),
    ("-5:0", "bad minfree entry"),
    ("18432:0:1", "bad minfree entry"),
    ("18432:1001", "outside -1000..1000"),
    (None, "must be a string"),
    (18432, "must be a string"),
])
def test_minfree_strict(minfree, message):
    with pytest.raises(ValueError, match=message):
        lmkd_level(SPEC, minfree, 1000)


def test_minfree_outer_whitespace_ok():
    # getprop output ends with a newline
    assert parse_minfree(ANDROID_MINFREE + "\n") == parse_minfree(ANDROID_MINFREE)


@pytest.mark.parametrize("free", [-1, True, 1.5, "1000"])
def test_lmkd_free_strict(free):
    with pytest.raises(ValueError, match="free_kib"):
        lmkd_level(SPEC, ANDROID_MINFREE, free)


# --- ActivityManager.MemoryInfo -----------------------------------------------------

T = 226_492_416        # a typical MemoryInfo.threshold (216 MiB)


@pytest.mark.parametrize("avail, low, level", [
    (10 * T, False, NORMAL),
    (3 * T, False, NORMAL),            # not under 3 x threshold
    (3 * T - 1, False, MODERATE),
    (2 * T, False, MODERATE),
    (2 * T - 1, False, LOW),
    (T, False, LOW),
    (T - 1, False, CRITICAL),
    (10 * T, True, CRITICAL),          # lowMemory: at least the 100 % level
    (0, True, CRITICAL),
])
def test_am_level(avail, low, level):
    assert am_level(SPEC, avail, T, low) == level


def test_am_level_low_memory_is_the_100_pct_level():
    # lowMemory is availMem under the threshold: the level at 100 %, not the highest
    spec = with_level(with_level(SPEC, LOW, am_threshold_pct=100), CRITICAL,
                      am_threshold_pct=50)
    assert am_level(spec, 10 * T, T, True) == LOW
    assert am_level(spec, T // 2 - 1, T, True) == CRITICAL


def test_am_level_low_memory_without_a_100_pct_level():
    spec = with_level(SPEC, CRITICAL, am_threshold_pct=150)
    assert am_level(spec, 10 * T, T, True) == CRITICAL      # the highest that has one
    assert am_level(spec, T * 3 // 2 - 1, T, False) == CRITICAL
    spec = with_level(SPEC, CRITICAL, am_threshold_pct=None)
    assert am_level(spec, 10 * T, T, True) == LOW
    assert am_level(spec, 0, T, False) == LOW


@pytest.mark.parametrize("args, message", [
    ((-1, T, False), "avail"), ((True, T, False), "avail"), ((1, "T", False), "threshold"),
    ((1, T, "false"), "low must be true or false"), ((1, T, 0), "low must be"),
])
def test_am_level_strict(args, message):
    with pytest.raises(ValueError, match=message):
        am_level(SPEC, *args)


# --- onTrimMemory -------------------------------------------------------------------

@pytest.mark.parametrize("name, level", [
    ("RUNNING_MODERATE", MODERATE), ("BACKGROUND", MODERATE),
    ("RUNNING_LOW", LOW), ("MODERATE", LOW),
    ("RUNNING_CRITICAL", CRITICAL), ("COMPLETE", CRITICAL),
    ("TRIM_MEMORY_RUNNING_LOW", LOW), (10, LOW), (80, CRITICAL), (5, MODERATE),
    ("UI_HIDDEN", None), ("TRIM_MEMORY_UI_HIDDEN", None), (20, None),
])
def test_trim_level(name, level):
    assert trim_level(SPEC, name) == level


def test_trim_level_unmapped_is_baseline():
    spec = with_level(SPEC, MODERATE, trim_memory=("RUNNING_MODERATE",))
    assert trim_level(spec, "BACKGROUND") == NORMAL


@pytest.mark.parametrize("name, message", [
    ("RUNNING_HIGH", "unknown trim-memory level 'RUNNING_HIGH'"),
    ("running_low", "unknown trim-memory level"),
    ("", "unknown trim-memory level"),
    (7, "unknown trim-memory value 7"),
    (True, "bad trim-memory level"),
    (None, "bad trim-memory level"),
])
def test_trim_level_strict(name, message):
    with pytest.raises(ValueError, match=message):
        trim_level(SPEC, name)


# --- Android adapter ----------------------------------------------------------------

def test_android_adapter_max_of_sources():
    a = AndroidHostAdapter(SPEC, clock=Clock())
    assert a.level() == NORMAL and a.levels() == {}
    assert a.set_memory_info(2 * T - 1, T, 4 << 30, False) == LOW
    assert a.set_lmkd(ANDROID_MINFREE, 147_456 + 200 * MIB) == MODERATE
    assert a.level() == LOW
    assert a.set_lmkd(ANDROID_MINFREE, 0) == CRITICAL
    assert a.level() == CRITICAL
    assert a.set_lmkd(ANDROID_MINFREE, 10 << 20) == NORMAL
    assert a.levels() == {"memory-info": LOW, "lmkd": NORMAL} and a.level() == LOW
    assert a.details()["lmkd"] == {"free_kib": 10 << 20, "kill_line_kib": 147_456}


def test_android_adapter_trim_decays():
    clock = Clock()
    a = AndroidHostAdapter(SPEC, clock=clock)
    assert a.trim_hold_s == 2 * SPEC.level_down_delay_s == 10
    assert a.set_trim("RUNNING_CRITICAL") == CRITICAL
    clock.now += 9.9
    assert a.level() == CRITICAL
    assert a.set_trim("UI_HIDDEN") is None          # not pressure: no change, no reset
    clock.now += 0.1
    assert a.level() == NORMAL and a.levels() == {"trim-memory": NORMAL}
    assert a.set_trim("RUNNING_LOW") == LOW         # a new trim holds again
    clock.now += 5
    assert a.set_trim("RUNNING_MODERATE") == MODERATE   # the newest replaces
    assert a.level() == MODERATE
    clock.now += 9.99
    assert a.level() == MODERATE
    clock.now += 0.01
    assert a.level() == NORMAL


def test_android_adapter_bad_input_changes_nothing():
    a = AndroidHostAdapter(SPEC, clock=Clock())
    a.set_lmkd(ANDROID_MINFREE, 0)
    for bad in [lambda: a.set_lmkd("garbage", 1), lambda: a.set_lmkd(ANDROID_MINFREE, -1),
                lambda: a.set_memory_info(5, T, 4, False),          # avail > total
                lambda: a.set_memory_info(1, T, 4 << 30, "no"),
                lambda: a.set_trim("SOMETIMES"),
                lambda: a.on_event({"event": "battery"})]:
        with pytest.raises(ValueError):
            bad()
    assert a.levels() == {"lmkd": CRITICAL}


def test_android_adapter_on_event():
    a = AndroidHostAdapter(SPEC, clock=Clock())
    assert a.on_event({"event": "lmkd", "minfree": ANDROID_MINFREE, "free_kib": 0}) == CRITICAL
    assert a.on_event({"event": "memory-info", "avail": T - 1, "threshold": T,
                       "total": 4 << 30, "low": False}) == CRITICAL
    assert a.on_event({"event": "trim-memory", "level": "UI_HIDDEN"}) is None
    assert a.on_event({"event": "trim-memory", "level": "MODERATE"}) == LOW


# --- PolicyLink ---------------------------------------------------------------------

def test_parse_reply():
    assert parse_reply("ok level=low host-level=critical foreground=1 target=536870912") == {
        "level": "low", "host_level": "critical", "foreground": True, "target": 536870912}
    with pytest.raises(PolicyLinkError, match="^QEMU: unknown level"):
        parse_reply("error: unknown level")
    for bad in ["", "ok", "ok level=low host-level=low foreground=2 target=0",
                "ok level=low host-level=low foreground=1 target=x",
                "ok host-level=low foreground=1 target=0", "okay level=low",
                "ok level=low host-level=low foreground=1 target=0 junk"]:
        with pytest.raises(PolicyLinkError, match="unexpected reply"):
            parse_reply(bad)


def test_link_messages(qemu, link):
    assert link.query() == {"level": "normal", "host_level": "normal", "foreground": False,
                            "target": 0}
    assert link.set_level("low")["host_level"] == "low"
    assert link.set_foreground(True)["foreground"] is True
    assert link.set_foreground(False)["foreground"] is False
    assert qemu.lines == ["query", "level low", "foreground", "background"]
    assert link.connects == 1 and qemu.accepted == 1


def test_link_error_reply(qemu, link):
    with pytest.raises(PolicyLinkError, match=r"QEMU: unknown level \(levels: normal"):
        link.set_level("high")
    with pytest.raises(PolicyLinkError, match="QEMU: unknown message"):
        link.request("balloon please")
    assert link.query()["host_level"] == "normal"     # the link still works
    assert link.connects == 1


def test_link_refuses_what_qemu_would(qemu, link):
    for line in ["x" * 128, "level low\nlevel critical", "level\0low"]:
        with pytest.raises(PolicyLinkError, match="not a policy message"):
            link.request(line)
    with pytest.raises(PolicyLinkError, match="bad level name"):
        link.set_level("low critical")
    assert qemu.lines == []
    # the fake agrees with QEMU on the limit: 127 bytes pass, 128 do not
    with pytest.raises(PolicyLinkError, match="unknown message"):
        link.request("q" * 127)
    raw = socket.socket(socket.AF_UNIX)
    link.close()
    raw.connect(str(qemu.path))
    raw.sendall(b"q" * 128 + b"\n")
    assert raw.makefile().readline() == "error: line too long, or not text\n"
    raw.close()


def test_link_waits_for_qemu(tmp_path):
    fake = FakeQemu(tmp_path / "late.sock")
    threading.Timer(0.3, fake.start).start()
    t0 = time.monotonic()
    try:
        with PolicyLink(fake.path, connect_timeout=5) as link:
            assert link.query()["level"] == "normal"
        assert time.monotonic() - t0 >= 0.25
    finally:
        time.sleep(0.35)
        fake.stop()


def test_link_connect_timeout(tmp_path):
    link = PolicyLink(tmp_path / "never.sock", connect_timeout=0.3)
    t0 = time.monotonic()
    with pytest.raises(PolicyLinkError, match="cannot connect .*within 0.3 s"):
        link.query()
    assert 0.25 <= time.monotonic() - t0 < 2


def test_link_reply_timeout_then_recovers(qemu):
    link = PolicyLink(qemu.path, timeout=0.3)
    qemu.mute = True
    t0 = time.monotonic()
    with pytest.raises(PolicyLinkError, match="no reply from QEMU to 'level low' within 0.3"):
        link.set_level("low")
    assert time.monotonic() - t0 < 2
    qemu.mute = False
    # a new connection: a late reply to the old request cannot answer this one
    assert link.set_level("critical")["host_level"] == "critical"
    assert link.connects == 2
    link.close()


def test_link_reconnects_after_qemu_restart(qemu, link):
    link.set_level("critical")
    qemu.restart()
    assert qemu.host_level == "normal"
    assert link.set_level("low")["host_level"] == "low"
    assert link.connects == 2
    assert qemu.lines == ["level critical", "level low"]


def test_link_is_thread_safe(qemu, link):
    names = ["normal", "moderate", "low", "critical"]
    errors = []

    def worker(name):
        for _ in range(40):
            reply = link.set_level(name)
            if reply["host_level"] != name:
                errors.append((name, reply))

    threads = [threading.Thread(target=worker, args=(n,)) for n in names * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(qemu.lines) == 320 and link.connects == 1


# --- BalloonBridge ------------------------------------------------------------------

@pytest.fixture
def bridge(link):
    logs = Logs()
    clock = Clock()
    b = BalloonBridge(link, SPEC, android=AndroidHostAdapter(SPEC, clock=clock), log=logs)
    b.logs, b.clock = logs, clock
    yield b
    b.stop()


def test_bridge_sends_only_changes(qemu, bridge):
    bridge.update()
    assert qemu.lines == ["level normal", "foreground"]
    assert bridge.update() is None
    bridge.set_pressure("low")
    assert qemu.lines[2:] == ["level low"]
    assert bridge.set_foreground(False)["foreground"] is False
    assert qemu.lines[3:] == ["background"]                # one message
    assert bridge.set_foreground(False) is None
    bridge.set_pressure("low")
    assert qemu.lines[4:] == []
    bridge.set_pressure("normal")
    assert qemu.lines[4:] == ["level normal"]
    assert (qemu.host_level, qemu.foreground) == ("normal", False)
    assert bridge.logs.events("balloon-level") == [
        {"level": "normal", "was": "-", "sources": "-"},
        {"level": "low", "was": "normal", "sources": "pressure"},
        {"level": "normal", "was": "low", "sources": "-"}]
    assert bridge.logs.events("balloon-foreground") == [{"foreground": 1}, {"foreground": 0}]


def test_bridge_combines_sources(qemu, bridge):
    bridge.on_android_event({"event": "lmkd", "minfree": ANDROID_MINFREE,
                             "free_kib": 147_456 + 200 * MIB})
    assert qemu.host_level == "moderate"
    bridge.set_pressure("low")
    assert qemu.host_level == "low"
    bridge.on_android_event({"event": "memory-info", "avail": 2 * T - 1, "threshold": T,
                             "total": 4 << 30, "low": False})
    assert qemu.lines.count("level low") == 1               # still low: nothing sent
    bridge.set_pressure("normal")
    assert qemu.host_level == "low"                         # memory-info holds it
    bridge.on_android_event({"event": "memory-info", "avail": 4 << 29, "threshold": T,
                             "total": 4 << 30, "low": False})
    assert qemu.host_level == "moderate"                    # back to lmkd's
    assert bridge.status(query_qemu=False)["sources"] == {
        "pressure": "normal", "lmkd": "moderate", "memory-info": "normal"}
    assert bridge.logs.events("balloon-level")[-1] == {
        "level": "moderate", "was": "low", "sources": "lmkd"}


def test_bridge_trim_decays_and_ui_hidden_is_background(qemu, bridge):
    bridge.update()
    bridge.on_android_event({"event": "trim-memory", "level": "RUNNING_CRITICAL"})
    assert qemu.host_level == "critical"
    bridge.on_android_event({"event": "trim-memory", "level": "UI_HIDDEN"})
    assert qemu.lines[2:] == ["level critical", "background"]
    bridge.clock.now += 9
    bridge.tick()
    assert qemu.host_level == "critical"
    bridge.clock.now += 1
    bridge.tick()
    assert qemu.host_level == "normal"
    assert qemu.lines[4:] == ["level normal"]


def test_bridge_bad_input_sends_nothing(qemu, bridge):
    bridge.update()
    with pytest.raises(ValueError, match="unknown level"):
        bridge.set_pressure("high")
    with pytest.raises(ValueError, match="minfree"):
        bridge.on_android_event({"event": "lmkd", "minfree": "1:2:3", "free_kib": 0})
    assert qemu.lines == ["level normal", "foreground"]
    assert bridge.level() == NORMAL


def test_bridge_resyncs_after_qemu_restart(qemu, bridge):
    bridge.set_pressure("low")
    bridge.set_foreground(False)
    qemu.restart()
    assert (qemu.host_level, qemu.foreground) == ("normal", False)
    qemu.foreground = True                                  # a new QEMU's default
    bridge.update()
    assert (qemu.host_level, qemu.foreground) == ("low", False)
    assert qemu.lines[-2:] == ["level low", "background"]


def test_bridge_link_errors_logged_once_and_recovered(tmp_path):
    fake = FakeQemu(tmp_path / "p.sock")
    logs = Logs()
    b = BalloonBridge(PolicyLink(fake.path, timeout=0.3, connect_timeout=0.1), SPEC,
                      log=logs)
    b.tick()
    b.tick()
    errors = [f for f in logs.events("balloon-link") if f["state"] == "error"]
    assert len(errors) == 1 and "cannot connect" in errors[0]["error"]
    fake.start()
    try:
        b.tick()
        assert fake.lines == ["level normal", "foreground"]
        assert logs.events("balloon-link")[-1] == {"state": "ok", "connects": 1}
    finally:
        b.stop()
        fake.stop()


def write_atomic(path: Path, text: str) -> None:
    """The thread must never see a half-written file."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def test_bridge_thread_polls_linux(tmp_path, qemu, link):
    path = tmp_path / "meminfo"
    total = 8_029_212
    write_atomic(path, MEMINFO.format(avail=total // 2))
    logs = Logs()
    b = BalloonBridge(link, SPEC, linux=LinuxHostAdapter(SPEC, path), interval=0.05,
                      log=logs).start()
    try:
        qemu.wait_for("level normal")
        write_atomic(path, MEMINFO.format(avail=total // 50))
        qemu.wait_for("level critical")
        write_atomic(path, "garbage\n")
        time.sleep(0.2)
        assert "meminfo:1: not a meminfo line" in logs.events("balloon-meminfo-error")[0]["error"]
        assert len(logs.events("balloon-meminfo-error")) == 1
        write_atomic(path, MEMINFO.format(avail=total // 10))
        qemu.wait_for("level low")
        assert b.status(query_qemu=False)["meminfo"] == {"MemTotal": total,
                                                        "MemAvailable": total // 10}
        assert {"level": "critical", "was": "normal",
                "sources": "meminfo"} in logs.events("balloon-level")
    finally:
        thread = b._thread
        t0 = time.monotonic()
        b.stop()
        assert time.monotonic() - t0 < 1
    assert thread is not None and not thread.is_alive()
    n = len(qemu.lines)
    time.sleep(0.15)
    assert len(qemu.lines) == n                           # nothing after stop


def test_bridge_status(qemu, bridge):
    bridge.set_pressure("moderate")
    status = bridge.status()
    assert status["level"] == "moderate" and status["sent_level"] == "moderate"
    assert status["foreground"] is True
    assert status["qemu"] == {"level": "moderate", "host_level": "moderate",
                              "foreground": True, "target": 0}
    qemu.stop()
    bridge.link.connect_timeout = 0.1
    assert "cannot connect" in bridge.status()["qemu_error"]
    qemu.start()


def test_psi_usable(tmp_path):
    assert "cannot open" in psi_usable(SPEC, tmp_path / "no-pressure")
    assert psi_usable(dataclasses.replace(SPEC, levels=tuple(
        dataclasses.replace(lv, psi=None) for lv in SPEC.levels)), tmp_path / "none") is None
