"""Host-only tests of the generated H4 core (framing, queues, bounds, ordering).

The core shared by the usb-hci devices (``hw/tabvm/h4/h4.c``) has no QEMU
dependency: it is compiled here against tests/h4_host/qemu/osdep.h into a shared
library and driven through ctypes with streams cut and merged every way, and with
malformed input.
"""

from __future__ import annotations

import ctypes
import random
import shutil
import subprocess

import pytest

from conftest import REPO
from generator.ir import H4_CORE
from generator.main import generate, spec_files

HOST = REPO / "tests" / "h4_host"
CMD, ACL, SCO, EVT, ISO = 1, 2, 3, 4, 5
Q_EVENT, Q_ACL, Q_SCO = 0, 1, 2
TO_GUEST, TO_HOST = 0, 1
DROP_BAD_TYPE, DROP_TOO_LONG, DROP_BAD_COMMAND, DROP_NO_ROOM, DROP_NO_SCO = range(5)

PACKET_CB = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int, ctypes.c_uint8,
                             ctypes.POINTER(ctypes.c_uint8), ctypes.c_size_t)
DROP_CB = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
                           ctypes.c_uint8, ctypes.c_size_t)


class Ops(ctypes.Structure):
    _fields_ = [("packet", PACKET_CB), ("drop", DROP_CB)]


class Config(ctypes.Structure):
    _fields_ = [("max_payload", ctypes.c_uint32 * 6), ("queue_limit", ctypes.c_size_t),
                ("ring_size", ctypes.c_size_t)]


@pytest.fixture(scope="module")
def lib(tmp_path_factory) -> ctypes.CDLL:
    if not shutil.which("pkg-config"):
        pytest.fail("pkg-config is needed (bootstrap installs it)")
    out = tmp_path_factory.mktemp("h4")
    for o in generate(spec_files()):
        if o.path.startswith(f"qemu/{H4_CORE.qemu_dir}/"):
            (out / o.path).parent.mkdir(parents=True, exist_ok=True)
            (out / o.path).write_text(o.text)
    glib = subprocess.run(["pkg-config", "--cflags", "--libs", "glib-2.0"],
                          capture_output=True, text=True, check=True).stdout.split()
    so = out / "h4.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-O1", "-g", "-Wall", "-Wextra",
                    "-Wno-unused-parameter", "-Werror", f"-I{HOST}", f"-I{out / 'qemu'}",
                    str(out / "qemu" / H4_CORE.qemu_dir / H4_CORE.c_file),
                    str(HOST / "shim.c"), "-o", str(so), *glib], check=True)
    return ctypes.CDLL(str(so))


class Core:
    """One H4 core instance; records what its callbacks report."""

    def __init__(self, so: ctypes.CDLL, *, acl_max=1021, sco_max=255,
                 iso_max=1021, queue_limit=65536, ring_size=16384) -> None:
        self.so = so
        self.p = H4_CORE.prefix
        self.reserve = H4_CORE.COMMAND_RESERVE
        self.packets: list[tuple[int, int, bytes]] = []
        self.drops: list[tuple[int, int, int, int]] = []
        self._ops = Ops(PACKET_CB(self._on_packet), DROP_CB(self._on_drop))
        cfg = Config()
        cfg.max_payload[ACL], cfg.max_payload[SCO] = acl_max, sco_max
        cfg.max_payload[EVT], cfg.max_payload[ISO] = 255, iso_max
        cfg.queue_limit, cfg.ring_size = queue_limit, ring_size
        self.limit, self.max_packet = queue_limit, 1 + 4 + max(acl_max, iso_max)
        self.h = ctypes.create_string_buffer(self.so.shim_size())
        self.fn("init")(self.h, ctypes.byref(cfg), ctypes.byref(self._ops), None)
        for name, restype in (("host_room", ctypes.c_size_t), ("take", ctypes.c_size_t),
                              ("pending", ctypes.c_bool), ("fits", ctypes.c_bool),
                              ("ring_peek", ctypes.c_size_t), ("command", ctypes.c_int)):
            self.fn(name).restype = restype
        for name in ("shim_queued", "shim_ring_used"):
            getattr(self.so, name).restype = ctypes.c_size_t
        self.so.shim_drops.restype = ctypes.c_uint64
        self.fn("set_sco_in")(self.h, True)

    def fn(self, name: str):
        return getattr(self.so, f"{self.p}_{name}")

    def close(self) -> None:
        self.fn("cleanup")(self.h)

    def _on_packet(self, _opaque, direction, type_, data, length) -> None:
        self.packets.append((direction, type_, bytes(data[:length])))

    def _on_drop(self, _opaque, direction, why, type_, length) -> None:
        self.drops.append((direction, why, type_, length))

    # host -> guest
    def room(self) -> int:
        return self.fn("host_room")(self.h)

    def feed(self, data: bytes) -> None:
        self.fn("host_input")(self.h, data, len(data))
        assert self.queued() <= self.limit + self.max_packet

    def queued(self) -> int:
        return self.so.shim_queued(self.h)

    def pending(self, q: int) -> bool:
        return self.fn("pending")(self.h, q)

    def take(self, q: int, max_: int) -> bytes:
        buf = ctypes.create_string_buffer(max(max_, 1))
        n = self.fn("take")(self.h, q, buf, max_)
        return buf.raw[:n]

    def take_packet(self, q: int, piece: int) -> tuple[bytes, int]:
        """One whole packet from queue q in pieces of ``piece`` bytes."""
        data, pieces = b"", 0
        while True:
            chunk = self.take(q, piece)
            assert chunk, "packet ended early"
            data, pieces = data + chunk, pieces + 1
            if _complete(q, data):
                return data, pieces

    # guest -> host
    def command(self, data: bytes) -> int:
        return self.fn("command")(self.h, data, len(data))

    def fits(self, type_: int, n: int) -> bool:
        return self.fn("fits")(self.h, type_, n)

    def guest_data(self, type_: int, data: bytes) -> None:
        self.fn("guest_data")(self.h, type_, data, len(data))

    def drain_ring(self, max_: int | None = None) -> bytes:
        out = b""
        ptr = ctypes.POINTER(ctypes.c_uint8)()
        while max_ is None or len(out) < max_:
            n = self.fn("ring_peek")(self.h, ctypes.byref(ptr))
            if n == 0:
                break
            if max_ is not None:
                n = min(n, max_ - len(out))
            out += bytes(ptr[:n])
            self.fn("ring_consume")(self.h, ctypes.c_size_t(n))
        return out

    def drop_count(self, why: int) -> int:
        return self.so.shim_drops(self.h, why)


def _complete(q: int, data: bytes) -> bool:
    if q == Q_EVENT:
        return len(data) >= 2 and len(data) == 2 + data[1]
    if q == Q_SCO:
        return len(data) >= 3 and len(data) == 3 + data[2]
    if len(data) < 4:
        return False
    n = data[2] | data[3] << 8
    return len(data) == 4 + n  # ISO's 14-bit field: tests use lengths below 0x4000


def event(code: int, params: bytes) -> bytes:
    return bytes([code, len(params)]) + params


def acl(handle: int, payload: bytes) -> bytes:
    return (handle | 0x2000).to_bytes(2, "little") + len(payload).to_bytes(2, "little") \
        + payload


def sco(handle: int, payload: bytes) -> bytes:
    return handle.to_bytes(2, "little") + bytes([len(payload)]) + payload


def iso(handle: int, payload: bytes) -> bytes:
    return handle.to_bytes(2, "little") + len(payload).to_bytes(2, "little") + payload


def h4(type_: int, packet: bytes) -> bytes:
    return bytes([type_]) + packet


def random_traffic(rng: random.Random, n: int) -> list[tuple[int, bytes]]:
    out = []
    for i in range(n):
        kind = rng.choice([EVT, EVT, ACL, ACL, SCO, ISO])
        size = rng.choice([0, 1, 2, 15, 16, 17, 100, 255]) if kind in (EVT, SCO) \
            else rng.choice([0, 1, 27, 63, 64, 65, 251, 1021])
        payload = bytes(rng.randrange(256) for _ in range(size))
        packet = {EVT: lambda: event(0x3E, payload), ACL: lambda: acl(i & 0xFFF, payload),
                  SCO: lambda: sco(i & 0xFFF, payload), ISO: lambda: iso(i & 0xFFF, payload)
                  }[kind]()
        out.append((kind, packet))
    return out


def cuts(rng: random.Random, data: bytes, how: str) -> list[bytes]:
    if how == "bytes":
        return [data[i:i + 1] for i in range(len(data))]
    if how == "merged":
        return [data]
    pieces, i = [], 0
    while i < len(data):
        n = rng.randint(1, 700)
        pieces.append(data[i:i + n])
        i += n
    return pieces


def queue_of(kind: int) -> int:
    return {EVT: Q_EVENT, ACL: Q_ACL, ISO: Q_ACL, SCO: Q_SCO}[kind]


@pytest.mark.parametrize("how", ["bytes", "random", "merged"])
def test_host_stream_any_cuts(lib, how):
    rng = random.Random(how)
    traffic = random_traffic(rng, 300)
    stream = b"".join(h4(k, p) for k, p in traffic)
    core = Core(lib)
    for piece in cuts(rng, stream, how):
        core.feed(piece)
    expected = {q: [p for k, p in traffic if queue_of(k) == q] for q in (0, 1, 2)}
    got = {q: [] for q in (0, 1, 2)}
    # events first (they gate ACL), then the rest
    for q, piece in ((Q_EVENT, 16), (Q_ACL, 4096), (Q_SCO, 49)):
        while core.pending(q):
            data, pieces = core.take_packet(q, piece)
            got[q].append(data)
            if q == Q_EVENT:
                assert pieces == max(1, -(-len(data) // 16))
    assert got == expected
    assert core.queued() == 0 and core.drops == []
    assert [p for d, t, p in core.packets] == [p for k, p in traffic]
    core.close()


def test_long_event_in_16_byte_pieces(lib):
    core = Core(lib)
    ev = event(0x0E, bytes(range(255)))
    core.feed(h4(EVT, ev))
    pieces = []
    while core.pending(Q_EVENT):
        pieces.append(core.take(Q_EVENT, 16))
    assert b"".join(pieces) == ev and len(ev) == 257
    assert [len(p) for p in pieces] == [16] * 16 + [1]
    core.close()


def test_acl_waits_for_earlier_events(lib):
    core = Core(lib)
    conn_complete = event(0x3E, bytes(30))
    data = acl(0x40, b"after the event")
    later_event = event(0x13, bytes(5))
    core.feed(h4(EVT, conn_complete) + h4(ACL, data) + h4(EVT, later_event))
    assert core.pending(Q_ACL) is False          # the connection event is not out yet
    assert core.take(Q_ACL, 4096) == b""
    core.take(Q_EVENT, 16)
    assert core.pending(Q_ACL) is False          # half an event still counts
    core.take(Q_EVENT, 16)
    assert core.pending(Q_ACL) is True           # the later event does not hold it
    assert core.take(Q_ACL, 4096) == data
    assert core.take_packet(Q_EVENT, 16)[0] == later_event
    core.close()


def test_malformed_host_stream_is_dropped_and_resyncs(lib):
    core = Core(lib, acl_max=100)
    good = event(0x0E, b"\x01\x03\x0c\x00")
    too_long = acl(1, bytes(101))
    stream = (b"\x00\xff\x07" + h4(CMD, b"\x03\x0c\x00")[:1] + h4(EVT, good)
              + h4(ACL, too_long) + h4(ACL, acl(1, b"ok")) + h4(EVT, good))
    for b in stream:
        core.feed(bytes([b]))
    assert core.take_packet(Q_EVENT, 16)[0] == good
    assert core.take(Q_ACL, 4096) == acl(1, b"ok")
    assert core.take_packet(Q_EVENT, 16)[0] == good
    assert core.drop_count(DROP_BAD_TYPE) == 4   # 00, ff, 07 and a command type from the host
    assert core.drop_count(DROP_TOO_LONG) == 1
    assert (TO_GUEST, DROP_TOO_LONG, ACL, 105) in core.drops
    assert core.queued() == 0
    core.close()


def test_garbage_never_breaks_the_bounds(lib):
    rng = random.Random(7)
    core = Core(lib, queue_limit=8192)
    for _ in range(2000):
        blob = bytes(rng.randrange(256) for _ in range(rng.randint(1, 300)))
        room = core.room()
        core.feed(blob[:room] if room else b"")
        for q in (Q_EVENT, Q_ACL, Q_SCO):
            if rng.random() < 0.5:
                core.take(q, rng.choice([1, 16, 64, 4096]))
    assert sum(core.drop_count(i) for i in range(5)) > 0
    core.fn("reset")(core.h)
    assert core.queued() == 0 and not any(core.pending(q) for q in range(3))
    core.feed(h4(EVT, event(0x0E, b"\x01")))
    assert core.take(Q_EVENT, 16) == event(0x0E, b"\x01")
    core.close()


def test_host_flow_control(lib):
    core = Core(lib, queue_limit=4096)
    packet = h4(ACL, acl(1, bytes(1000)))
    fed = 0
    stream = packet * 20
    while core.room() > 0 and fed < len(stream):
        n = min(core.room(), len(stream) - fed)
        core.feed(stream[fed:fed + n])
        fed += n
    assert core.room() == 0 and fed < len(stream)    # the reader must stop here
    assert core.queued() <= 4096 + 1005
    while core.pending(Q_ACL):
        core.take(Q_ACL, 4096)
    assert core.room() > 0
    core.close()


def test_sco_dropped_while_not_polled(lib):
    core = Core(lib)
    core.fn("set_sco_in")(core.h, False)
    core.feed(h4(SCO, sco(1, bytes(48))))
    assert not core.pending(Q_SCO)
    assert core.drop_count(DROP_NO_SCO) == 1 and core.queued() == 0
    core.fn("set_sco_in")(core.h, True)
    core.feed(h4(SCO, sco(1, bytes(48))))
    assert core.take(Q_SCO, 64) == sco(1, bytes(48))
    core.close()


def test_commands_whole_258_bytes_and_malformed(lib):
    core = Core(lib)
    big = b"\x01\x20\xff" + bytes(range(255))
    assert len(big) == 258
    assert core.command(big) == 0
    assert core.command(b"\x03\x0c\x00") == 0
    assert core.drain_ring() == b"\x01" + big + b"\x01\x03\x0c\x00"
    for bad in (b"", b"\x03", b"\x03\x0c", b"\x03\x0c\x01", b"\x03\x0c\x00\x00"):
        assert core.command(bad) < 0
    assert core.drop_count(DROP_BAD_COMMAND) == 5
    assert core.drain_ring() == b""
    core.close()


@pytest.mark.parametrize("how", ["bytes", "random", "merged"])
def test_guest_acl_and_sco_any_cuts(lib, how):
    rng = random.Random(how)
    core = Core(lib, ring_size=1 << 20)
    acls = [acl(i, bytes(rng.randrange(256) for _ in range(rng.choice([0, 5, 64, 1021]))))
            for i in range(50)]
    scos = [sco(i, bytes(rng.randrange(256) for _ in range(rng.choice([0, 48, 255]))))
            for i in range(50)]
    for piece in cuts(rng, b"".join(acls), how):
        assert core.fits(ACL, len(piece))
        core.guest_data(ACL, piece)
    assert core.drain_ring() == b"".join(h4(ACL, p) for p in acls)
    for piece in cuts(rng, b"".join(scos), how):
        core.guest_data(SCO, piece)
    assert core.drain_ring() == b"".join(h4(SCO, p) for p in scos)
    core.close()


def test_guest_ring_bounds_and_command_reserve(lib):
    core = Core(lib, ring_size=4096)
    packet = acl(1, bytes(1000))
    sent = 0
    while core.fits(ACL, len(packet)):
        core.guest_data(ACL, packet)
        sent += 1
    assert sent >= 2 and core.so.shim_ring_used(core.h) <= 4096 - core.reserve
    # the reserve still takes commands when ACL cannot go
    assert core.command(b"\x03\x0c\x00") == 0
    # a too-long ACL from the guest is skipped, the next one passes
    core.drain_ring()
    core.guest_data(ACL, acl(2, bytes(1022)))
    core.guest_data(ACL, acl(3, b"next"))
    assert core.drain_ring() == h4(ACL, acl(3, b"next"))
    assert core.drop_count(DROP_TOO_LONG) == 1
    # types the guest cannot send this way are refused
    assert not core.fits(EVT, 1) and not core.fits(9, 1)
    core.guest_data(EVT, b"\x0e\x00")
    assert core.drain_ring() == b""
    core.close()


def test_ring_full_drops_sco_not_commands(lib):
    core = Core(lib, ring_size=2048)
    for _ in range(20):
        core.guest_data(SCO, sco(1, bytes(255)))
    assert core.drop_count(DROP_NO_ROOM) > 0
    assert core.so.shim_ring_used(core.h) <= 2048 - core.reserve
    assert core.command(b"\x01\x20\xff" + bytes(255)) == 0
    core.close()


def _le_meta(sub: int, params: bytes) -> bytes:
    return h4(EVT, event(0x3E, bytes([sub]) + params))


def test_guest_iso_on_bulk_follows_the_hosts_iso_links(lib):
    """USB carries ISO on the bulk endpoint like ACL; the core sends a packet to
    the host as ISO while its handle is a CIS or BIS the host's events set up."""
    core = Core(lib)

    def sent(handle: int) -> int:
        core.guest_data(ACL, iso(handle, b"voice"))
        ring = core.drain_ring()
        assert ring[1:] == iso(handle, b"voice")
        return ring[0]

    def drain_events() -> None:
        while core.pending(Q_EVENT):
            core.take(Q_EVENT, 64)

    assert sent(0x60) == ACL
    core.feed(_le_meta(0x19, b"\x00\x60\x00" + bytes(25)))          # CIS Established
    big = (b"\x00\x07" + bytes(6) + bytes([2, 1, 1, 0, 1]) + b"\xfb\x00" + b"\x08\x00"
           + bytes([2]) + b"\x70\x00\x71\x00")                       # Create BIG Complete
    core.feed(_le_meta(0x1B, big))
    core.feed(_le_meta(0x19, b"\x12\x62\x00" + bytes(25)))          # failed: not a link
    drain_events()
    assert [sent(h) for h in (0x60, 0x70, 0x71, 0x61, 0x62)] == [ISO, ISO, ISO, ACL, ACL]
    core.feed(h4(EVT, event(0x05, b"\x00\x60\x00\x13")))             # Disconnection Complete
    core.feed(_le_meta(0x1C, b"\x07\x16"))                           # Terminate BIG Complete
    drain_events()
    assert [sent(h) for h in (0x60, 0x70, 0x71)] == [ACL, ACL, ACL]
    # a BIG event claiming 50 BISes but holding one and a half: only the whole
    # handle counts, nothing past the event is read
    core.feed(_le_meta(0x1B, b"\x00\x07" + bytes(15) + bytes([50]) + b"\x73\x00\x74"))
    drain_events()
    assert [sent(h) for h in (0x73, 0x74)] == [ISO, ACL]
    core.close()
