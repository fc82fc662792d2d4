"""Tests of the test guest: the agent on a host pty, the initramfs writer, and an
end-to-end boot under QEMU/TCG (needs TABVM_QEMU=path/to/qemu-system-x86_64)."""

from __future__ import annotations

import errno
import gzip
import io
import os
import random
import select
import stat
import struct
import subprocess
import threading
import time
import tty
from pathlib import Path

import pytest

from glue.agent_client import AgentClient, AgentError, InputEvent, escape
from tabvm import guest

# -- the agent on the host, over a pty pair -------------------------------------


@pytest.fixture
def pty_agent(agent_bin):
    """(master fd, agent process) with the agent serving the pty's slave side."""
    master, slave = os.openpty()
    tty.setraw(slave)  # no echo even before the agent sets raw mode itself
    proc = subprocess.Popen([str(agent_bin), os.ttyname(slave)])
    yield master, proc
    proc.kill()
    proc.wait()
    os.close(master)
    os.close(slave)


@pytest.fixture
def client(pty_agent):
    master, _ = pty_agent
    c = AgentClient(master)
    c.wait_ready(timeout=10)
    return c


def raw_exchange(master: int, request: bytes, timeout: float = 10.0) -> bytes:
    """Sends raw bytes and returns one complete raw response frame."""
    os.set_blocking(master, True)
    os.write(master, request)
    data = b""
    deadline = time.monotonic() + timeout
    while True:
        head, nl, rest = data.partition(b"\n")
        if nl and len(rest) >= int(head.split()[2]) + 1:
            return data
        left = deadline - time.monotonic()
        assert left > 0, f"no complete answer, got {data!r}"
        if select.select([master], [], [], left)[0]:
            data += os.read(master, 65536)


def test_raw_framing(pty_agent):
    master, _ = pty_agent
    assert raw_exchange(master, b"5 ping\n") == b"5 ok 4\npong\n"
    assert raw_exchange(master, b"\n\n6 hold k a b\n") == b"6 ok 0\n\n"
    assert raw_exchange(master, b"7 recall k\n") == b"7 ok 3\na b\n"


def test_ping(client):
    client.ping()
    assert client.call("ping") == "pong"


def test_read_proc_version(client):
    assert client.read("/proc/version") == Path("/proc/version").read_text()


def test_read_missing_file(client):
    with pytest.raises(AgentError, match="No such file"):
        client.read("/nonexistent/file")


def test_write_then_read(client, tmp_path):
    target = tmp_path / "out.txt"
    data = "line one\nback\\slash\n\ttab and  spaces "
    client.write(str(target), data)
    assert target.read_text() == data
    assert client.read(str(target)) == data


def test_write_bad_escape(client, tmp_path):
    with pytest.raises(AgentError, match="bad escape"):
        client.call("write", str(tmp_path / "x"), "a\\tb")


def test_sh_output_and_status(client):
    assert client.call("sh", "echo hi; exit 3") == "hi\nexit=3"
    result = client.sh("echo hi; exit 3")
    assert (result.output, result.status) == ("hi\n", 3)
    assert client.sh("printf abc >&2").output == "abc\n"
    assert client.sh("true") == ("", 0)
    assert client.sh("kill -9 $$").status == 128 + 9


def test_sh_background_process_does_not_block(client):
    start = time.monotonic()
    result = client.sh("sleep 20 & echo started", timeout=10)
    assert result == ("started\n", 0)
    assert time.monotonic() - start < 5


def test_hold_recall(client):
    client.hold("marker", "value with  spaces")
    client.hold("other", "x")
    assert client.recall("marker") == "value with  spaces"
    client.hold("marker", "replaced")
    assert client.recall("marker") == "replaced"
    with pytest.raises(AgentError, match="nothing held"):
        client.recall("never-held")


def test_ls_and_uname(client, tmp_path):
    for name in ("b", "a", "c"):
        (tmp_path / name).touch()
    assert client.ls(str(tmp_path)) == ["a", "b", "c"]
    assert client.uname()["release"] == os.uname().release


def test_unknown_verb(client):
    with pytest.raises(AgentError, match="unknown verb"):
        client.call("frobnicate", "x")
    client.ping()


def test_overlong_line(pty_agent, client):
    master, proc = pty_agent
    answer = raw_exchange(master, b"42 write /tmp/never " + b"x" * 70_000 + b"\n")
    assert answer.startswith(b"42 err ")
    assert b"longer than 65536" in answer
    assert proc.poll() is None
    client.ping()


def test_bad_id(pty_agent):
    master, _ = pty_agent
    assert raw_exchange(master, b"abc ping\n").startswith(b"0 err ")


def test_escape():
    assert escape("a\\b\nc") == "a\\\\b\\nc"


# -- input events: events / evstart / evtake / evstop -------------------------------

EV = struct.Struct("llHHi")  # struct input_event on x86_64: tv_sec, tv_usec, type, code, value
assert EV.size == 24
T0 = 1_700_000_000


def records(*events: tuple[int, int, int]) -> bytes:
    """Packs (type, code, value) triples; record i is stamped T0 + i s and i*1000 us."""
    return b"".join(EV.pack(T0 + i, i * 1000, *e) for i, e in enumerate(events))


def expected(*events: tuple[int, int, int], first: int = 0) -> list[InputEvent]:
    return [InputEvent(T0 + i + i * 1000 / 1e6, *e)
            for i, e in enumerate(events, start=0)][first:]


TOUCH = [(3, 57, 7), (3, 53, 100), (3, 54, 200), (1, 330, 1), (0, 0, 0),
         (3, 57, -1), (1, 330, 0), (0, 0, 0)]  # ABS_MT_TRACKING_ID .. SYN_REPORT


def open_writer(path: Path, timeout: float = 10.0) -> int:
    """Opens a FIFO for writing once a reader has it open (the agent's open)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
            os.set_blocking(fd, True)
            return fd
        except OSError as e:
            if e.errno != errno.ENXIO or time.monotonic() > deadline:
                raise
            time.sleep(0.005)


def write_later(path: Path, steps: list[tuple[float, bytes]]) -> threading.Thread:
    """A thread that waits for a reader of the FIFO, then per step sleeps and writes."""
    def run():
        fd = open_writer(path)
        try:
            for delay, data in steps:
                time.sleep(delay)
                os.write(fd, data)
        except BrokenPipeError:
            pass  # the reader already finished
        finally:
            os.close(fd)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def fifo(tmp_path) -> Path:
    path = tmp_path / "event0"
    os.mkfifo(path)
    return path


def test_events_from_fifo_written_later(client, fifo):
    writer = write_later(fifo, [(0.3, records(*TOUCH[:3])), (0.1, records(*TOUCH)[72:])])
    start = time.monotonic()
    got = client.events(str(fifo), len(TOUCH), 5000)
    elapsed = time.monotonic() - start
    writer.join(5)
    assert got == expected(*TOUCH[:3]) + expected(*TOUCH, first=3)
    assert got[5] == InputEvent(T0 + 5 + 0.005, 3, 57, -1)  # negative values stay signed
    assert 0.35 <= elapsed < 3, elapsed


def test_events_stops_at_max(client, fifo):
    writer = write_later(fifo, [(0.1, records(*TOUCH))])
    start = time.monotonic()
    assert client.events(str(fifo), 2, 5000) == expected(*TOUCH[:2])
    assert time.monotonic() - start < 3
    writer.join(5)


def test_events_timeout_with_fewer_events(client, fifo):
    writer = write_later(fifo, [(0.05, records(*TOUCH[:2]))])
    start = time.monotonic()
    assert client.events(str(fifo), 5, 600) == expected(*TOUCH[:2])
    assert 0.6 <= time.monotonic() - start < 3
    writer.join(5)


def test_events_zero_timeout_and_no_writer(client, fifo):
    start = time.monotonic()
    assert client.events(str(fifo), 10, 0) == []
    assert client.events(str(fifo), 10, 200) == []  # no writer: end of file, rechecked
    assert time.monotonic() - start < 3


def test_events_record_split_across_writes(client, fifo):
    data = records(*TOUCH[:2])
    writer = write_later(fifo, [(0.05, data[:10]), (0.2, data[10:30]), (0.2, data[30:])])
    assert client.events(str(fifo), 2, 5000) == expected(*TOUCH[:2])
    writer.join(5)


def test_events_many_through_a_full_pipe(client, fifo):
    n = 3000  # 72 KB: more than the pipe buffer, so the writer blocks on the agent
    data = b"".join(EV.pack(T0, 0, 3, 53, i) for i in range(n))
    writer = write_later(fifo, [(0.0, data)])
    got = client.events(str(fifo), n, 20000)
    writer.join(5)
    assert [e.value for e in got] == list(range(n))


def test_events_from_regular_file(client, tmp_path):
    path = tmp_path / "recorded"
    path.write_bytes(records(*TOUCH[:3]) + b"\x01\x02\x03")  # a trailing partial record
    start = time.monotonic()
    assert client.events(str(path), 3, 5000) == expected(*TOUCH[:3])
    assert time.monotonic() - start < 2
    start = time.monotonic()
    assert client.events(str(path), 5, 300) == expected(*TOUCH[:3])
    assert 0.3 <= time.monotonic() - start < 3


def test_events_garbage_does_not_crash(pty_agent, client, fifo):
    _, proc = pty_agent
    writer = write_later(fifo, [(0.05, os.urandom(1000))])
    got = client.events(str(fifo), 10000, 400)
    writer.join(5)
    assert len(got) == 1000 // EV.size
    assert proc.poll() is None
    client.ping()


def test_events_missing_path(client):
    with pytest.raises(AgentError, match="open /nonexistent/event0: No such file"):
        client.events("/nonexistent/event0", 1, 100)
    with pytest.raises(AgentError, match="No such file"):
        client.ev_start(3, "/nonexistent/event0")
    with pytest.raises(AgentError, match="read .*: Is a directory"):
        client.events("/", 1, 100)
    client.ping()


@pytest.mark.parametrize("request_args", [
    "events", "events /x", "events /x 1", "events /x 0 10", "events /x 10001 10",
    "events /x 1 600001", "events /x one 10", "events /x 1 -5", "events /x +1 10",
    "events /x 1 10 ", "events 1 10", "events /x 99999999999999999999999 1",
    "evstart", "evstart 0", "evstart 8 /x", "evstart x /x", "evstart -1 /x",
    "evtake", "evtake 0 1", "evtake 8 1 1", "evtake -1 1 1", "evtake 0 0 1",
    "evtake 0 1 600001", "evstop", "evstop 8", "evstop 0 extra", "evstop x",
])
def test_event_verbs_bad_args(pty_agent, request_args):
    master, proc = pty_agent
    answer = raw_exchange(master, b"9 " + request_args.encode() + b"\n")
    assert answer.startswith(b"9 err "), answer
    assert b"usage: " + request_args.split()[0].encode() in answer, answer
    assert proc.poll() is None
    assert raw_exchange(master, b"10 ping\n") == b"10 ok 4\npong\n"


def test_event_client_checks_args(client):
    for call in (lambda: client.events("/x", 0, 10), lambda: client.events("/x", 1, -1),
                 lambda: client.events("", 1, 1), lambda: client.ev_start(8, "/x"),
                 lambda: client.ev_take(0, 10001, 1), lambda: client.ev_stop(-1)):
        with pytest.raises(ValueError):
            call()


def test_evstart_evtake_evstop_across_writes(client, fifo, tmp_path):
    start = time.monotonic()
    client.ev_start(0, str(fifo))  # returns at once, with no writer yet
    assert time.monotonic() - start < 1
    writer = open_writer(fifo)
    try:
        os.write(writer, records(*TOUCH[:3]))
        assert client.ev_take(0, 2, 1000) == expected(*TOUCH[:2])
        start = time.monotonic()
        assert client.ev_take(0, 5, 300) == expected(*TOUCH[:3], first=2)
        assert 0.3 <= time.monotonic() - start < 3

        rest = records(*TOUCH)[72:96]  # record 3, split across two writes
        os.write(writer, rest[:10])
        assert client.ev_take(0, 1, 100) == []
        os.write(writer, rest[10:])
        assert client.ev_take(0, 1, 1000) == expected(*TOUCH[:4], first=3)

        # a second source under another ID, independent of the first
        other = tmp_path / "event1"
        os.mkfifo(other)
        client.ev_start(1, str(other))
        with pytest.raises(AgentError, match="event source 0 is in use"):
            client.ev_start(0, str(other))

        # a write that comes while evtake waits
        def late():
            time.sleep(0.3)
            os.write(writer, records(*TOUCH[:5])[96:])
        thread = threading.Thread(target=late)
        thread.start()
        start = time.monotonic()
        assert client.ev_take(0, 1, 5000) == expected(*TOUCH[:5], first=4)
        assert 0.25 <= time.monotonic() - start < 3
        thread.join()
        assert client.ev_take(1, 1, 0) == []
    finally:
        os.close(writer)
    client.ev_stop(0)
    client.ev_stop(1)
    client.ev_stop(0)  # stopping an idle ID is fine
    with pytest.raises(AgentError, match="event source 0 is not started"):
        client.ev_take(0, 1, 0)
    client.ev_start(0, str(fifo))  # the ID is free again
    client.ev_stop(0)


# -- usbepfuzz: the descriptor parser and the error paths (no USB device here) ---------
# On a regular file read() gives the crafted descriptors like a usbfs node would, and
# the first usbfs ioctl (claiming interface 0) fails: the error names the step and
# what the parser found.


def usb_desc(length: int, dtype: int, *body: int) -> bytes:
    return bytes([length, dtype, *body])


def usb_ep(addr: int, attr: int, maxp: int) -> bytes:
    return usb_desc(7, 5, addr, attr, maxp & 0xff, maxp >> 8, 1)


def usb_iface(num: int, alt: int, n_eps: int) -> bytes:
    return usb_desc(9, 4, num, alt, n_eps, 0xE0, 0x01, 0x01, 0)


def usb_config(body: bytes, value: int = 1, n_ifs: int = 2, total: int | None = None) -> bytes:
    total = 9 + len(body) if total is None else total
    return usb_desc(9, 2, total & 0xff, total >> 8, n_ifs, value, 0, 0xE0, 50) + body


def usb_device(n_configs: int = 1) -> bytes:
    return usb_desc(18, 1, 0x00, 0x02, 0xE0, 0x01, 0x01, 64, 0x34, 0x12, 0x78, 0x56,
                    0x00, 0x01, 1, 2, 3, n_configs)


BT_ISO_SIZES = (0, 9, 17, 25, 33, 49)
#: interface 0: interrupt IN 0x81, bulk IN 0x82, bulk OUT 0x02; interface 1: isochronous
#: 0x83 / 0x03 in alternate settings 0..5 (what a USB Bluetooth controller has)
BT_CONFIG = (usb_iface(0, 0, 3) + usb_ep(0x81, 3, 16) + usb_ep(0x82, 2, 64)
             + usb_ep(0x02, 2, 64)
             + b"".join(usb_iface(1, alt, 2) + usb_ep(0x83, 1, size) + usb_ep(0x03, 1, size)
                        for alt, size in enumerate(BT_ISO_SIZES)))
BT_FOUND = "config 1, interfaces 0 1, highest alt 0 5, endpoints 0x81 0x82 0x02 0x83 0x03"


def epfuzz_error(client, tmp_path, blob: bytes, count: int = 10) -> str:
    path = tmp_path / "usbdev"
    path.write_bytes(blob)
    start = time.monotonic()
    with pytest.raises(AgentError) as info:
        client.call("usbepfuzz", str(path), str(count), "1", timeout=10)
    assert time.monotonic() - start < 5
    return str(info.value)


CLAIM_FAILS = "usbepfuzz: claim interface 0: Inappropriate ioctl for device"


def test_usbepfuzz_enumerates_a_bluetooth_controller(client, tmp_path):
    blob = usb_device() + usb_config(BT_CONFIG)
    assert epfuzz_error(client, tmp_path, blob) == f"{CLAIM_FAILS} ({BT_FOUND})"
    # no configuration but the first is active here (GET_CONFIGURATION fails on a file)
    other = usb_config(usb_iface(3, 0, 1) + usb_ep(0x84, 2, 512), value=2, n_ifs=1)
    assert epfuzz_error(client, tmp_path, usb_device(2) + usb_config(BT_CONFIG) + other) \
        == f"{CLAIM_FAILS} ({BT_FOUND})"
    assert epfuzz_error(client, tmp_path, usb_device(2) + other + usb_config(BT_CONFIG)) \
        == f"{CLAIM_FAILS.replace('interface 0', 'interface 3')} (config 2, interfaces 3, " \
           "highest alt 0, endpoints 0x84)"


@pytest.mark.parametrize("blob, found", [
    # bLength 0 right after interface 0's first endpoint: the rest is ignored
    (usb_device() + usb_config(BT_CONFIG[:16] + b"\x00\x05" + BT_CONFIG[18:]),
     "config 1, interfaces 0, highest alt 0, endpoints 0x81"),
    # bLength 1, then a descriptor running past the end
    (usb_device() + usb_config(BT_CONFIG[:16] + b"\x01\x05\x82"),
     "config 1, interfaces 0, highest alt 0, endpoints 0x81"),
    (usb_device() + usb_config(BT_CONFIG[:16] + usb_desc(200, 5, 0x82, 2, 64, 0)),
     "config 1, interfaces 0, highest alt 0, endpoints 0x81"),
    # wTotalLength far beyond the data (the kernel pads with what it skips)
    (usb_device() + usb_config(BT_CONFIG, total=0xFFFF), BT_FOUND),
    (usb_device() + usb_config(BT_CONFIG, total=0xFFFF)[:9 + 9 + 7 + 3],
     "config 1, interfaces 0, highest alt 0, endpoints 0x81"),
    # short interface / endpoint descriptors, control endpoints, endpoints before any
    # interface: skipped
    (usb_device() + usb_config(usb_ep(0x85, 2, 64) + usb_desc(5, 4, 7, 0, 1)
                               + usb_ep(0x86, 2, 64) + usb_iface(0, 0, 3)
                               + usb_desc(6, 5, 0x87, 2, 64, 0) + usb_ep(0x08, 0, 64)
                               + usb_ep(0x81, 3, 8)),
     "config 1, interfaces 0, highest alt 0, endpoints 0x81"),
    # endpoints without transfers into them (only in a later alternate setting)
    (usb_device() + usb_config(usb_iface(0, 0, 0) + usb_iface(0, 7, 1) + usb_ep(0x81, 3, 8)),
     "config 1, interfaces 0, highest alt 7, endpoints 0x81"),
    (usb_device() + usb_config(usb_iface(0, 0, 0)),
     "config 1, interfaces 0, highest alt 0, endpoints none"),
])
def test_usbepfuzz_parser_stops_at_malformed_descriptors(client, tmp_path, blob, found):
    assert epfuzz_error(client, tmp_path, blob) == f"{CLAIM_FAILS} ({found})"


@pytest.mark.parametrize("blob, message", [
    (b"", "no device descriptor (0 bytes of descriptors)"),
    (usb_device()[:17], "no device descriptor (17 bytes"),
    (b"\x00" * 18 + usb_config(BT_CONFIG), "no device descriptor"),
    (usb_device(), "no configuration descriptor (18 bytes"),
    (usb_device(0) + usb_config(BT_CONFIG), "no configuration descriptor"),
    (usb_device() + usb_config(BT_CONFIG)[:8], "no configuration descriptor"),
    (usb_device() + b"\x00" * 9 + BT_CONFIG, "no configuration descriptor"),
    (usb_device() + usb_config(BT_CONFIG, total=8), "no configuration descriptor"),
    (usb_device() + usb_config(b"\x00" + BT_CONFIG[1:]), "no interface descriptor"),
    (usb_device() + usb_config(BT_CONFIG, total=9), "no interface descriptor"),
    (usb_device() + usb_config(usb_ep(0x81, 3, 8)), "no interface descriptor"),
])
def test_usbepfuzz_rejects_descriptors_without_interfaces(client, tmp_path, blob, message):
    error = epfuzz_error(client, tmp_path, blob)
    assert error.startswith(f"usbepfuzz: {tmp_path / 'usbdev'}: {message}"), error


def test_usbepfuzz_survives_garbage_descriptors(pty_agent, client, tmp_path):
    _, proc = pty_agent
    rng = random.Random(7)
    valid = usb_device() + usb_config(BT_CONFIG)
    for i in range(150):
        if i % 3 == 0:      # random bytes behind a valid device descriptor
            blob = usb_device(rng.randrange(4)) + rng.randbytes(rng.randrange(400))
        elif i % 3 == 1:    # a valid blob with some bytes changed
            blob = bytearray(valid)
            for _ in range(rng.randrange(1, 8)):
                blob[rng.randrange(18, len(blob))] = rng.choice([0, 1, 2, 0xFF, rng.randrange(256)])
            blob = bytes(blob)
        else:               # a valid blob cut anywhere
            blob = valid[:rng.randrange(len(valid))]
        error = epfuzz_error(client, tmp_path, blob)
        assert error.startswith(("usbepfuzz: claim interface ", f"usbepfuzz: {tmp_path}")), error
    assert proc.poll() is None
    client.ping()


def test_usbepfuzz_missing_or_unsuitable_path(client, tmp_path, fifo):
    with pytest.raises(AgentError, match="^usbepfuzz: open /nonexistent/bus/usb/001/002: "
                                         "No such file or directory$"):
        client.call("usbepfuzz", "/nonexistent/bus/usb/001/002", "10", "1")
    with pytest.raises(AgentError, match="open /: Is a directory"):
        client.call("usbepfuzz", "/", "10", "1")
    with pytest.raises(AgentError, match="not a usbfs device node"):
        client.call("usbepfuzz", str(fifo), "10", "1")  # read() would block on it
    with pytest.raises(AgentError, match="not a usbfs device node"):
        client.call("usbepfuzz", "/dev/null", "10", "1")
    client.ping()


@pytest.mark.parametrize("request_args", [
    "usbepfuzz", "usbepfuzz /x", "usbepfuzz /x 1", "usbepfuzz 1 1", "usbepfuzz /x 1000001 1",
    "usbepfuzz /x -1 1", "usbepfuzz /x one 1", "usbepfuzz /x 1 4294967296",
    "usbepfuzz /x 1 -1", "usbepfuzz /x 1 0x10", "usbepfuzz /x 1 1 extra", "usbepfuzz /x 1 1 ",
    "usbepfuzz /x  1", "usbepfuzz /x 99999999999999999999999 1",
])
def test_usbepfuzz_bad_args(pty_agent, request_args):
    master, proc = pty_agent
    answer = raw_exchange(master, b"9 " + request_args.encode() + b"\n")
    assert answer.startswith(b"9 err "), answer
    assert b"usage: usbepfuzz PATH COUNT SEED (COUNT 0..1000000, SEED 0..4294967295)" in answer
    assert proc.poll() is None
    assert raw_exchange(master, b"10 ping\n") == b"10 ok 4\npong\n"


def test_usbepfuzz_accepts_the_range_limits(client, tmp_path):
    path = tmp_path / "usbdev"
    path.write_bytes(usb_device() + usb_config(BT_CONFIG))
    for count, seed in (("0", "0"), ("1000000", "4294967295")):
        with pytest.raises(AgentError, match="claim interface 0"):
            client.call("usbepfuzz", str(path), count, seed)


# -- initramfs writer -----------------------------------------------------------


def parse_newc(data: bytes) -> list[dict]:
    entries, pos = [], 0
    while True:
        assert data[pos:pos + 6] == b"070701"
        f = [int(data[pos + 6 + 8 * i: pos + 14 + 8 * i], 16) for i in range(13)]
        namesize, filesize = f[11], f[6]
        name = data[pos + 110: pos + 110 + namesize - 1].decode()
        pos = (pos + 110 + namesize + 3) & ~3
        body = data[pos: pos + filesize]
        pos = (pos + filesize + 3) & ~3
        if name == "TRAILER!!!":
            return entries
        entries.append({"name": name, "mode": f[1], "uid": f[2], "gid": f[3],
                        "mtime": f[5], "rdev": (f[9], f[10]), "data": body})


def test_newc_is_reproducible_and_normalized(tmp_path):
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "tool").write_bytes(b"#!/bin/sh\n")
    (root / "bin" / "tool").chmod(0o700)
    (root / "etc").mkdir()
    (root / "etc" / "conf").write_text("x")
    (root / "bin" / "link").symlink_to("/bin/tool")
    os.utime(root / "etc" / "conf", (12345, 12345))

    def pack() -> bytes:
        buf = io.BytesIO()
        with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as f:
            guest.write_newc(root, f, guest.DEVICE_NODES)
        return buf.getvalue()

    first = pack()
    (root / "etc" / "conf").touch()  # mtimes must not matter
    assert pack() == first
    entries = parse_newc(gzip.decompress(first))
    names = [e["name"] for e in entries]
    assert names == sorted(names)
    assert names == ["bin", "bin/link", "bin/tool", "dev/console", "dev/null",
                     "etc", "etc/conf"]
    by_name = {e["name"]: e for e in entries}
    assert all(e["uid"] == 0 and e["gid"] == 0 and e["mtime"] == 0 for e in entries)
    assert by_name["bin/tool"]["mode"] == stat.S_IFREG | 0o755
    assert by_name["etc/conf"]["mode"] == stat.S_IFREG | 0o644
    assert by_name["bin/link"]["data"] == b"/bin/tool"
    assert stat.S_ISCHR(by_name["dev/console"]["mode"])
    assert by_name["dev/console"]["rdev"] == (5, 1)


# -- builder error paths --------------------------------------------------------


def test_apt_updates_once_then_retries(monkeypatch):
    calls = []

    def fake_run(args, cwd=None):
        calls.append(args[:2])
        if args[:2] == ["apt-cache", "show"] and ["apt-get", "update"] not in calls:
            raise guest.GuestBuildError("E: No packages found")
        return "ok"

    monkeypatch.setattr(guest, "_run", fake_run)
    apt = guest._Apt(progress=lambda msg: None)
    assert apt.run(["apt-cache", "show", "x"]) == "ok"
    assert calls == [["apt-cache", "show"], ["apt-get", "update"], ["apt-cache", "show"]]
    monkeypatch.setattr(guest, "_run", lambda args, cwd=None: (_ for _ in ()).throw(
        guest.GuestBuildError("still broken")))
    with pytest.raises(guest.GuestBuildError, match="still broken"):
        apt.run(["apt-cache", "show", "x"])  # no second update


def test_failed_download_updates_lists_and_asks_to_resolve_again(tmp_path, monkeypatch):
    monkeypatch.setenv("TABVM_CACHE", str(tmp_path))
    calls = []

    def fake_run(args, cwd=None):
        calls.append(args[:2])
        if args[:2] == ["apt-get", "download"]:
            raise guest.GuestBuildError("404 Not Found")
        return ""

    monkeypatch.setattr(guest, "_run", fake_run)
    apt = guest._Apt(progress=lambda msg: None)
    with pytest.raises(guest._ListsUpdated):
        guest._download(apt, "pkg", "1:1.0")
    assert calls == [["apt-get", "download"], ["apt-get", "update"]]
    with pytest.raises(guest.GuestBuildError, match="404"):
        guest._download(apt, "pkg", "1:1.0")  # lists already fresh: a real error
    assert not list((tmp_path / "debs").iterdir())


def test_missing_static_libc_names_the_package(tmp_path, monkeypatch):
    fake = tmp_path / "bin" / "gcc"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho '/usr/bin/ld: cannot find -lc: No such file' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(guest.GuestBuildError, match="libc6-dev"):
        guest.compile_agent(tmp_path / "agent")


# -- end to end: build the guest and boot it under QEMU/TCG ------------------------

READY = b"TABVM-GUEST-READY"


@pytest.fixture(scope="module")
def qemu(build_outputs) -> Path:
    """The project's QEMU build; its firmware directory holds SeaBIOS and the ROMs."""
    return build_outputs.qemu


def firmware_dirs(qemu: Path, rom: str) -> list[Path]:
    firmware = qemu.parent / "firmware"
    assert (firmware / rom).is_file(), f"{rom} missing from {firmware}"
    return [firmware]


def wait_for_console(log: Path, proc: subprocess.Popen, timeout: float) -> None:
    from glue.accel import wait_for_console as seen
    if seen(log, READY.decode(), timeout, lambda: proc.poll() is None):
        return
    if proc.poll() is not None:
        pytest.fail(f"QEMU exited ({proc.returncode}) before {READY.decode()}")
    pytest.fail(f"no {READY.decode()} within {timeout} s; console tail:\n"
                + log.read_text(errors="replace")[-3000:])


# vmlinux: the PVH ELF (no in-guest decompression); kernel: Debian's bzImage.
BOOT_ROMS = {"vmlinux": "pvh.bin", "kernel": "linuxboot_dma.bin"}


@pytest.mark.e2e
@pytest.mark.parametrize("kernel_attr", sorted(BOOT_ROMS))
def test_boot_guest_under_tcg(qemu, tmp_path, kernel_attr):
    image = guest.build_guest(progress=lambda msg: print("guest:", msg))
    start = time.monotonic()
    assert guest.build_guest(progress=lambda msg: None) == image
    assert time.monotonic() - start < 1.0, "a second build_guest() must hit the cache"
    kernel = getattr(image, kernel_attr)
    console, sock = tmp_path / "console.log", tmp_path / "agent.sock"
    cmd = [str(qemu), "-M", "q35", "-accel", "tcg", "-m", "512M", "-nodefaults",
           "-display", "none", "-no-reboot",
           *[arg for d in firmware_dirs(qemu, BOOT_ROMS[kernel_attr]) for arg in ("-L", str(d))],
           "-kernel", str(kernel), "-initrd", str(image.initrd),
           "-append", guest.APPEND,
           "-serial", f"file:{console}",
           "-chardev", f"socket,id=agent,path={sock},server=on,wait=off",
           "-serial", "chardev:agent"]
    start = time.monotonic()
    with open(tmp_path / "qemu.log", "wb") as qlog:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=qlog, stderr=qlog)
    try:
        with AgentClient(sock, connect_timeout=30) as agent:
            wait_for_console(console, proc, timeout=300)
            ready = time.monotonic() - start
            agent.wait_ready(timeout=120)
            answered = time.monotonic() - start
            print(f"{kernel.name}: TABVM-GUEST-READY after {ready:.1f} s, "
                  f"agent answered after {answered:.1f} s")

            assert agent.uname()["release"] == image.kernel_version
            assert agent.sh("uname -r") == (image.kernel_version + "\n", 0)
            classes = agent.ls("/sys/class")
            assert {"tty", "power_supply", "input"} <= set(classes)
            assert agent.read("/sys/class/tty/ttyS1/dev").strip() == "4:65"
            modules = agent.read("/proc/modules")
            for name in ("virtio_pci", "battery", "xhci_pci", "hid_multitouch", "btusb",
                         "snd_hda_intel", "ext4"):
                assert f"{name} " in modules, f"{name} not loaded"
            agent.hold("marker", "in guest RAM")
            assert agent.recall("marker") == "in guest RAM"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
