"""bt_peer (the H4 server for QEMU's USB Bluetooth controller), its glue wrapper, the
--bt backend specs and the host-direct benchmark, with real Bumble peers, no QEMU."""

from __future__ import annotations

import asyncio
import errno
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.bt_direct import command_rtt, l2cap_throughput
from glue.bt_backend import BtBackend
from glue.bt_peer import (BtPeer, BtPeerError, Endpoint, HciUserChannelError,
                          open_hci_user_channel)

REPO = Path(__file__).resolve().parent.parent
CTRL = "00:00:5E:00:53:11"
ADV = "00:00:5E:00:53:12"
NAME = "tabvm-test-peer"

RESET = bytes.fromhex("01030c00")
READ_BD_ADDR = bytes.fromhex("01091000")
LE_SCAN_ON = bytes.fromhex("010c20020100")       # LE_Set_Scan_Enable(enable, no dup filter)


@pytest.fixture
def sock_path(tmp_path: Path) -> Path:
    return tmp_path / "bt.sock"


@pytest.fixture
def peer(tmp_path: Path, sock_path: Path):
    p = BtPeer.start(f"unix:{sock_path}", CTRL, advertiser_name=NAME, advertiser_address=ADV,
                     log_path=tmp_path / "peer.log")
    yield p
    p.stop()


def connect(path: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(str(path))
    return s


def read_packet(s: socket.socket) -> bytes:
    """One H4 event packet (type byte included)."""
    def exact(n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = s.recv(n - len(buf))
            assert chunk, "connection closed by the peer"
            buf += chunk
        return buf
    kind = exact(1)
    assert kind == b"\x04", f"unexpected H4 type {kind!r}"
    code, length = exact(2)
    return kind + bytes([code, length]) + exact(length)


def command(s: socket.socket, packet: bytes) -> bytes:
    """Send an H4 command; return the return parameters of its Command Complete."""
    opcode = packet[1:3]
    s.sendall(packet)
    while True:
        event = read_packet(s)
        if event[1] == 0x0E and event[4:6] == opcode:
            return event[6:]


def read_bd_addr(s: socket.socket) -> str:
    params = command(s, READ_BD_ADDR)
    assert params[0] == 0
    return ":".join(f"{b:02X}" for b in reversed(params[1:7]))


def closed_by_peer(s: socket.socket, timeout: float = 3.0) -> bool:
    s.settimeout(timeout)
    try:
        while s.recv(4096):
            pass
    except ConnectionResetError:
        pass
    return True


def run(coro, timeout: float = 20.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


# --- the peer -------------------------------------------------------------------

def test_ready_line(peer, sock_path):
    r = peer.ready
    assert r["mode"] == "peer" and r["listen"] == f"unix:{sock_path}"
    assert (r["controller_address"], r["advertiser_address"], r["advertiser_name"], r["psm"]) \
        == (CTRL, ADV, NAME, 0x81)
    assert sock_path.is_socket()


def test_reset_and_read_bd_addr(peer, sock_path):
    with connect(sock_path) as s:
        assert command(s, RESET) == b"\x00"
        assert read_bd_addr(s) == CTRL
    peer.wait_event("client", state="connected")
    peer.wait_event("client", state="disconnected")


def test_bumble_host_scans_the_advertiser(peer, sock_path):
    from bumble import hci
    from bumble.core import AdvertisingData
    from bumble.device import Device
    from bumble.transport import open_transport

    async def scan() -> tuple[str, str, str]:
        async with await open_transport(f"unix:{sock_path}") as (source, sink):
            device = Device.with_hci("scanner", hci.Address("F0:00:00:00:00:09"), source, sink)
            await device.power_on()
            found = asyncio.get_running_loop().create_future()

            def on_adv(adv) -> None:
                if str(adv.address).startswith(ADV) and not found.done():
                    found.set_result(adv)
            device.on("advertisement", on_adv)
            await device.start_scanning(filter_duplicates=False)
            adv = await found
            await device.stop_scanning()
            return (str(device.public_address).split("/")[0],
                    adv.address.address_type,
                    adv.data.get(AdvertisingData.COMPLETE_LOCAL_NAME))

    own, addr_type, name = run(scan())
    assert own == CTRL
    assert addr_type == hci.Address.PUBLIC_DEVICE_ADDRESS
    assert name == NAME


def test_le_create_connection_cancel_is_answered_as_the_spec_says(peer, sock_path):
    """Nothing pending: Command Disallowed. A pending connection (to an address
    nobody advertises): Success, then its LE Connection Complete with Unknown
    Connection Identifier (Linux waits for that event)."""
    cancel = bytes.fromhex("010e2000")
    nobody = bytes.fromhex("665544332211")             # 11:22:33:44:55:66, little-endian
    create = (bytes.fromhex("010d2019") + bytes.fromhex("60006000") + b"\x00\x00" + nobody
              + b"\x00" + bytes.fromhex("18002800") + bytes.fromhex("00002a00")
              + bytes.fromhex("00000000"))
    with connect(sock_path) as s:
        command(s, RESET)
        assert command(s, cancel) == b"\x0c"
        s.sendall(create)
        status = read_packet(s)
        assert status[1] == 0x0F and status[3] == 0x00, status.hex()     # pending
        assert command(s, cancel) == b"\x00"
        while True:
            event = read_packet(s)
            if event[1] == 0x3E and event[3] == 0x01:     # LE Meta: Connection Complete
                break
        assert event[4] == 0x02, event.hex()              # Unknown Connection Identifier
        assert event[9:15] == nobody
        assert command(s, cancel) == b"\x0c"               # nothing pending again


def test_reset_ends_the_controllers_links(peer, sock_path):
    """The guest's controller connects to the advertiser, then is reset (what Linux
    does when it powers a controller up after an rfkill block): the link ends on
    the advertiser's side too, so it advertises again and a scan finds it."""
    adv = bytes.fromhex(ADV.replace(":", ""))[::-1]
    create = (bytes.fromhex("010d2019") + bytes.fromhex("60006000") + b"\x00\x00" + adv
              + b"\x00" + bytes.fromhex("18002800") + bytes.fromhex("00002a00")
              + bytes.fromhex("00000000"))

    def advertiser_seen(s: socket.socket, timeout: float) -> bool:
        assert command(s, LE_SCAN_ON) == b"\x00"
        deadline = time.monotonic() + timeout
        s.settimeout(timeout)
        while time.monotonic() < deadline:
            event = read_packet(s)
            if event[1] == 0x3E and event[3] == 0x02 and adv in event:  # advertising report
                return True
        return False

    with connect(sock_path) as s:
        command(s, RESET)
        s.sendall(create)
        while True:
            event = read_packet(s)
            if event[1] == 0x3E and event[3] == 0x01:
                break
        assert event[4] == 0x00, event.hex()             # connected
        assert command(s, RESET) == b"\x00"
        assert advertiser_seen(s, 5)


def test_reconnect_gets_a_fresh_controller(peer, sock_path):
    # First connection: scanning on (Bumble's HCI_Reset would not turn it off), then
    # the connection drops in the middle of a command packet.
    with connect(sock_path) as s:
        assert command(s, RESET) == b"\x00"
        assert command(s, LE_SCAN_ON) == b"\x00"
        deadline = time.monotonic() + 3
        while True:                                # an LE Advertising Report arrives
            assert time.monotonic() < deadline, "no advertising report while scanning"
            event = read_packet(s)
            if event[1] == 0x3E and event[3] == 0x02:
                break
        s.sendall(RESET[:2])
    peer.wait_event("client", state="disconnected")

    with connect(sock_path) as s:
        assert command(s, RESET) == b"\x00"       # not glued to the half packet
        assert read_bd_addr(s) == CTRL
        s.settimeout(0.6)                          # > 3 advertising intervals
        with pytest.raises(socket.timeout):
            event = read_packet(s)
            pytest.fail(f"event from a scan of the previous connection: {event.hex()}")


def test_malformed_stream_closes_only_that_connection(peer, sock_path):
    with connect(sock_path) as s:
        assert command(s, RESET) == b"\x00"
        s.sendall(b"\xff\x01\x02\x03")
        assert closed_by_peer(s)
    ev = peer.wait_event("client", state="disconnected")
    assert "malformed" in ev["reason"]
    with connect(sock_path) as s:
        assert command(s, RESET) == b"\x00"
        assert read_bd_addr(s) == CTRL
    assert peer.alive()


def test_second_concurrent_client_is_closed(peer, sock_path):
    with connect(sock_path) as a:
        assert command(a, RESET) == b"\x00"
        with connect(sock_path) as b:
            assert closed_by_peer(b)
        peer.wait_event("client", state="rejected")
        assert read_bd_addr(a) == CTRL


def test_stop_removes_socket_and_restart_works(tmp_path, sock_path):
    p = BtPeer.start(f"unix:{sock_path}", CTRL)
    with connect(sock_path) as s:                  # stopped with a client connected
        assert command(s, RESET) == b"\x00"
        p.wait_event("client", state="connected")
        assert p.stop() == 0
        assert closed_by_peer(s)
    assert not sock_path.exists()
    with BtPeer.start(f"unix:{sock_path}", CTRL) as p2:
        with connect(sock_path) as s:
            assert read_bd_addr(s) == CTRL
    assert p2.proc.returncode == 0
    assert not sock_path.exists()


def test_stale_socket_is_replaced(sock_path):
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(sock_path))
    stale.close()                                  # the file stays, nobody listens
    assert sock_path.is_socket()
    with BtPeer.start(f"unix:{sock_path}", CTRL):
        with connect(sock_path) as s:
            assert read_bd_addr(s) == CTRL


def test_path_that_is_not_a_socket_or_is_in_use(sock_path):
    sock_path.write_text("not a socket")
    with pytest.raises(BtPeerError, match="exists and is not a socket"):
        BtPeer.start(f"unix:{sock_path}", CTRL)
    assert sock_path.read_text() == "not a socket"
    sock_path.unlink()
    with BtPeer.start(f"unix:{sock_path}", CTRL):
        with pytest.raises(BtPeerError, match="in use"):
            BtPeer.start(f"unix:{sock_path}", CTRL)
        with connect(sock_path) as s:              # the first one is untouched
            assert read_bd_addr(s) == CTRL


def test_tcp_listen(tmp_path):
    with BtPeer.start("tcp:127.0.0.1:0", CTRL) as p:
        ep = Endpoint.parse(p.ready["listen"])
        assert ep.kind == "tcp" and ep.host == "127.0.0.1" and ep.port > 0
        rtts = command_rtt(p.ready["listen"], 20)
        assert len(rtts) == 20 and all(t > 0 for t in rtts)


@pytest.mark.parametrize("args, message", [
    (["--listen", "bogus", "--controller-address", CTRL], "bad socket address"),
    (["--listen", "unix:/tmp/x"], "--controller-address is required"),
    (["--listen", "unix:/tmp/x", "--controller-address", "12:34"], "not a Bluetooth address"),
    (["--listen", "unix:/tmp/x", "--controller-address", CTRL, "--advertiser-name", "x"],
     "go together"),
    (["--listen", "unix:/tmp/x", "--controller-address", CTRL, "--psm", "0x1000"], "LE PSM"),
])
def test_bad_arguments(args, message):
    r = subprocess.run([sys.executable, "-m", "glue.bt_peer", *args], cwd=REPO,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert r.stdout == ""


def test_wait_event_timeout(peer):
    with pytest.raises(TimeoutError):
        peer.wait_event("client", timeout=0.2)


# --- the benchmark --------------------------------------------------------------

def test_command_rtt(peer, sock_path):
    rtts = command_rtt(f"unix:{sock_path}", 50)
    assert len(rtts) == 50 and all(0 < t < 1e9 for t in rtts)


def test_l2cap_throughput_twice(peer, sock_path):
    total = 64 * 1024
    for sdu in (512, 5000):        # the second run needs the advertiser to be back
        acked, seconds = l2cap_throughput(f"unix:{sock_path}", ADV, 0x81, total, sdu,
                                          timeout=30)
        assert acked == total and seconds > 0
        ev = peer.wait_event("l2cap", timeout=10)
        assert ev["received"] == total and ev["seconds"] >= 0


def test_a_gatt_client_reads_the_peers_characteristic(peer, sock_path):
    """A Bumble host connects over LE, discovers the peer's service and reads its
    characteristic twice: each read reaches the peer (its count goes up)."""
    from bumble import hci
    from bumble.core import PhysicalTransport
    from bumble.device import Device, Peer
    from bumble.transport import open_transport
    from glue.bt_peer import PEER_CHARACTERISTIC_UUID, PEER_SERVICE_UUID

    async def reads() -> list[bytes]:
        async with await open_transport(f"unix:{sock_path}") as (source, sink):
            device = Device.with_hci("gatt-client", hci.Address("F0:00:00:00:00:31"),
                                     source, sink)
            await device.power_on()
            connection = await device.connect(
                hci.Address(ADV, hci.Address.PUBLIC_DEVICE_ADDRESS),
                transport=PhysicalTransport.LE, own_address_type=hci.OwnAddressType.PUBLIC)
            remote = Peer(connection)
            services = await remote.discover_service(PEER_SERVICE_UUID)
            assert len(services) == 1
            chars = await remote.discover_characteristics([PEER_CHARACTERISTIC_UUID],
                                                          services[0])
            assert len(chars) == 1
            got = [bytes(await remote.read_value(chars[0])) for _ in range(2)]
            await connection.disconnect()
            return got

    assert run(reads()) == [b"read 1", b"read 2"]
    assert peer.wait_event("gatt", timeout=5)["read"] == 1
    assert peer.wait_event("gatt", timeout=5)["read"] == 2


def test_l2cap_wrong_psm_fails(peer, sock_path):
    from bumble.l2cap import L2capError
    with pytest.raises(L2capError):
        l2cap_throughput(f"unix:{sock_path}", ADV, 0x83, 1024, 512, timeout=20)


# --- --bt backends --------------------------------------------------------------

def test_backend_forms(tmp_path):
    b = BtBackend.parse("bumble")
    assert b == BtBackend.parse(None) and b.kind == "bumble"
    assert b.chardev("bt0", tmp_path) == \
        f"socket,id=bt0,path={tmp_path}/bt.sock,reconnect-ms=200"

    u = BtBackend.parse("unix:/run/hci,bridge.sock")
    assert u.kind == "unix" and u.socket_path(tmp_path) == Path("/run/hci,bridge.sock")
    assert u.chardev("bt0", tmp_path) == \
        "socket,id=bt0,path=/run/hci,,bridge.sock,reconnect-ms=200"
    assert u.start(tmp_path) is None

    t = BtBackend.parse("tcp:127.0.0.1:6402")
    assert t.chardev("bt0", tmp_path) == \
        "socket,id=bt0,host=127.0.0.1,port=6402,reconnect-ms=200"
    assert BtBackend.parse("tcp:[::1]:6402").chardev("x", tmp_path) == \
        "socket,id=x,host=::1,port=6402,reconnect-ms=200"
    assert t.start(tmp_path) is None

    h = BtBackend.parse("hci:1")
    assert h.kind == "hci" and h.hci_index == 1 and BtBackend.parse("hci:hci1") == h
    assert h.chardev("bt0", tmp_path) == \
        f"socket,id=bt0,path={tmp_path}/bt.sock,reconnect-ms=200"


@pytest.mark.parametrize("spec", ["", "bumbl", "unix:", "tcp:localhost", "tcp::80",
                                  "tcp:h:70000", "tcp:h:0", "hci:", "hci:x", "hci0",
                                  "rootcanal", "usb:0"])
def test_backend_errors(spec):
    with pytest.raises(ValueError, match="bumble, unix:PATH, tcp:HOST:PORT, hci:N"
                       if spec != "tcp:h:0" else "port 0"):
        BtBackend.parse(spec)


def test_backend_bumble_starts_a_peer(tmp_path):
    b = BtBackend.parse("bumble")
    with b.start(tmp_path, log_path=tmp_path / "bt.log") as p:
        assert p.ready["listen"] == f"unix:{tmp_path}/bt.sock"
        assert p.ready["advertiser_name"]
        with connect(tmp_path / "bt.sock") as s:
            assert read_bd_addr(s) == p.ready["controller_address"]


def _kernel_has_af_bluetooth() -> bool:
    try:
        socket.socket(31, socket.SOCK_RAW, 1).close()
    except OSError as exc:
        return exc.errno not in (errno.EAFNOSUPPORT, errno.EPROTONOSUPPORT)
    return True


@pytest.mark.skipif(_kernel_has_af_bluetooth(), reason="this kernel has AF_BLUETOOTH")
def test_hci_without_af_bluetooth(tmp_path):
    with pytest.raises(HciUserChannelError, match="AF_BLUETOOTH sockets are not supported"):
        open_hci_user_channel(0)
    with pytest.raises(BtPeerError, match="AF_BLUETOOTH sockets are not supported") as info:
        BtBackend.parse("hci:0").start(tmp_path)
    assert "Traceback" not in str(info.value)
    assert not (tmp_path / "bt.sock").exists()


def test_client_vanishing_mid_connection_frees_the_advertiser(peer, sock_path):
    """QEMU going away with an LE link up: the advertiser sees the link drop and
    advertises again, so the next client can connect to it."""
    from bumble import hci
    from bumble.device import Device
    from bumble.transport import open_transport

    async def connect_and_vanish() -> None:
        async with await open_transport(f"unix:{sock_path}") as (source, sink):
            device = Device.with_hci("gone", hci.Address("F0:00:00:00:00:07"), source, sink)
            await device.power_on()
            await device.connect(hci.Address(ADV, hci.Address.PUBLIC_DEVICE_ADDRESS),
                                 own_address_type=hci.OwnAddressType.PUBLIC, timeout=10)
        # the transport closes here, with no HCI_Disconnect

    run(connect_and_vanish())
    peer.wait_event("client", state="disconnected")
    acked, _ = l2cap_throughput(f"unix:{sock_path}", ADV, 0x81, 4096, 1024, timeout=30)
    assert acked == 4096


def test_every_command_gets_an_answer(peer, sock_path):
    """Unknown, unsupported and malformed commands are answered (with an error) like a
    real controller does, instead of leaving the host to its command timeout."""
    with connect(sock_path) as s:
        for packet, statuses in [
                ("01eefc00", (0x01, 0x12)),     # vendor opcode (Bumble knows some)
                ("01181000", (0x01,)),          # Read_Local_Supported_Codecs: unsupported
                ("01041000", (0x12,))]:         # Read_Local_Extended_Features, no page
            s.sendall(bytes.fromhex(packet))
            event = read_packet(s)
            assert event[1] in (0x0E, 0x0F), event.hex()
            if event[1] == 0x0F:                        # Command Status
                assert event[3] in statuses and event[5:7] == bytes.fromhex(packet)[1:3]
            else:                                       # Command Complete
                assert event[6] in statuses and event[4:6] == bytes.fromhex(packet)[1:3]
        assert read_bd_addr(s) == CTRL


def test_hci_relay_over_a_packet_socket(tmp_path):
    """The bridge's relay and server, with a SOCK_SEQPACKET pair standing in for the
    HCI user channel (one packet per read and write, as that socket has)."""
    from glue.bt_peer import H4Server, HciRelay

    async def scenario() -> list[dict]:
        events: list[dict] = []
        ours, controller = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setblocking(False)
        controller.setblocking(False)
        relay = HciRelay(ours, lambda reason: events.append({"lost": reason}))
        server = H4Server(relay.attach, events.append)
        await server.listen(Endpoint.parse(f"unix:{tmp_path}/b.sock"))
        loop = asyncio.get_running_loop()
        reader, writer = await asyncio.open_unix_connection(f"{tmp_path}/b.sock")
        writer.write(RESET + READ_BD_ADDR[:2])     # one packet and a half
        await writer.drain()
        assert await loop.sock_recv(controller, 100) == RESET
        writer.write(READ_BD_ADDR[2:])
        assert await loop.sock_recv(controller, 100) == READ_BD_ADDR
        complete = bytes.fromhex("040e0401030c00")
        await loop.sock_sendall(controller, complete)
        assert await reader.readexactly(len(complete)) == complete
        writer.close()
        controller.close()                          # the device goes away
        while not any("lost" in e for e in events):
            await asyncio.sleep(0.01)
        await server.close()
        relay.close()
        return events

    events = run(scenario(), timeout=10)
    assert {"event": "client", "state": "connected"} in events
    assert any("lost" in e for e in events)


def test_peer_exits_when_its_reader_goes_away(sock_path):
    """The glue dying (its end of the stdout pipe closed) stops the peer too."""
    proc = subprocess.Popen([sys.executable, "-m", "glue.bt_peer", "--listen",
                             f"unix:{sock_path}", "--controller-address", CTRL],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert b'"ready"' in proc.stdout.readline()
        proc.stdout.close()
        assert proc.wait(10) == 0
        assert not sock_path.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
