"""Bluetooth baseline without a guest: a host client talks to bt_peer directly.

  python bench/bt_direct.py [--count 1000] [--total 1048576] [--sdu 512 --sdu 65535]
                            [--listen SPEC --advertiser-address ADDR]

Connects to bt_peer's socket as a client, the way QEMU does, so the figures can
be set beside the same traffic sent from inside the guest through QEMU:

- ``command_rtt``: HCI_Read_BD_ADDR round trips as raw H4 after an HCI_Reset,
  one at a time; ns each.
- ``l2cap_throughput``: a Bumble host on the guest's controller connects (LE,
  own address public, as BlueZ does) to the advertiser, opens the LE CoC on the
  PSM and runs the benchmark protocol (8-byte big-endian total, data SDUs of
  ``sdu`` bytes, the server's ASCII ack); timed from the first data SDU to the ack.

Without ``--listen`` it starts its own bt_peer (with an advertiser) in a
temporary directory and prints the median and p99 RTT and the throughput for
each ``--sdu``.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from glue.bt_peer import DEFAULT_PSM, L2CAP_MTU, BtPeer, Endpoint  # noqa: E402

RESET = bytes.fromhex("01030c00")            # H4 command, HCI_Reset (0x0c03), no params
READ_BD_ADDR = bytes.fromhex("01091000")     # H4 command, HCI_Read_BD_ADDR (0x1009)
CONTROLLER_ADDRESS = "00:00:5E:00:53:01"
ADVERTISER_ADDRESS = "00:00:5E:00:53:02"
CLIENT_RANDOM_ADDRESS = "F0:00:00:00:00:01"


def _connect(listen_spec: str, timeout: float) -> socket.socket:
    ep = Endpoint.parse(listen_spec)
    if ep.kind == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(str(ep.path))
    else:
        sock = socket.create_connection((ep.host, ep.port), timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _read_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("the peer closed the connection "
                                  "(is another client, e.g. QEMU, connected?)")
        buf += chunk
    return bytes(buf)


def _command_complete(sock: socket.socket, opcode: int) -> bytes:
    """Read H4 packets until the Command Complete event for ``opcode``; its params."""
    while True:
        kind = _read_exact(sock, 1)[0]
        if kind == 0x04:
            code, length = _read_exact(sock, 2)
            params = _read_exact(sock, length)
            if code == 0x0E and struct.unpack_from("<H", params, 1)[0] == opcode:
                return params[3:]
        elif kind == 0x02:                                  # ACL: skip
            _, length = struct.unpack("<HH", _read_exact(sock, 4))
            _read_exact(sock, length)
        else:
            raise ConnectionError(f"unexpected H4 packet type 0x{kind:02x} from the peer")


def command_rtt(listen_spec: str, count: int, timeout: float = 5.0) -> list[int]:
    """ns per HCI_Read_BD_ADDR round trip, ``count`` of them, after an HCI_Reset."""
    with _connect(listen_spec, timeout) as sock:
        sock.sendall(RESET)
        status = _command_complete(sock, 0x0C03)[0]
        if status != 0:
            raise RuntimeError(f"HCI_Reset failed: status 0x{status:02x}")
        rtts = []
        for _ in range(count):
            t0 = time.perf_counter_ns()
            sock.sendall(READ_BD_ADDR)
            _command_complete(sock, 0x1009)
            rtts.append(time.perf_counter_ns() - t0)
    return rtts


async def _l2cap_throughput(listen_spec: str, advertiser_address: str, psm: int,
                            total: int, sdu: int, timeout: float) -> tuple[int, float]:
    from bumble import hci, l2cap
    from bumble.core import PhysicalTransport
    from bumble.device import Device
    from bumble.transport import open_transport

    ep = Endpoint.parse(listen_spec)
    name = f"unix:{ep.path}" if ep.kind == "unix" else f"tcp-client:{ep.host}:{ep.port}"
    async with await open_transport(name) as (source, sink):
        device = Device.with_hci("bt-direct", hci.Address(CLIENT_RANDOM_ADDRESS), source, sink)
        await device.power_on()
        connection = await device.connect(
            hci.Address(advertiser_address, hci.Address.PUBLIC_DEVICE_ADDRESS),
            transport=PhysicalTransport.LE, own_address_type=hci.OwnAddressType.PUBLIC,
            timeout=timeout)
        channel = await device.create_l2cap_channel(
            connection, l2cap.LeCreditBasedChannelSpec(psm=psm, mtu=L2CAP_MTU))
        if sdu > channel.peer_mtu:
            raise ValueError(f"SDU {sdu} is larger than the server's MTU {channel.peer_mtu}")
        ack: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        channel.sink = lambda data: ack.done() or ack.set_result(data)
        # Bumble's channel coalesces queued writes into SDUs of up to the peer's MTU:
        # draining after each write keeps one SDU per write.
        channel.write(struct.pack(">Q", total))
        await channel.drain()
        block = bytes(sdu)
        t0 = time.perf_counter()
        sent = 0
        while sent < total:
            n = min(sdu, total - sent)
            channel.write(block if n == sdu else block[:n])
            await channel.drain()
            sent += n
        acked = int(await ack)
        seconds = time.perf_counter() - t0
        await channel.disconnect()
        await connection.disconnect()
    return acked, seconds


def l2cap_throughput(listen_spec: str, advertiser_address: str, psm: int = DEFAULT_PSM,
                     total: int = 1 << 20, sdu: int = 512,
                     timeout: float = 60.0) -> tuple[int, float]:
    """(bytes the server acknowledged, seconds from the first data SDU to the ack)."""
    if total <= 0 or sdu <= 0:
        raise ValueError("total and sdu must be positive")
    return asyncio.run(asyncio.wait_for(
        _l2cap_throughput(listen_spec, advertiser_address, psm, total, sdu, timeout / 2),
        timeout))


def _report(listen: str, advertiser: str, psm: int, count: int, total: int,
            sdus: list[int]) -> None:
    rtts = sorted(command_rtt(listen, count))
    p99 = rtts[min(len(rtts) - 1, int(len(rtts) * 0.99))]
    print(f"HCI_Read_BD_ADDR round trip, {count}x: median {statistics.median(rtts) / 1000:.1f} us, "
          f"p99 {p99 / 1000:.1f} us")
    for sdu in sdus:
        acked, seconds = l2cap_throughput(listen, advertiser, psm, total, sdu)
        print(f"LE CoC PSM 0x{psm:02x}, {total} bytes in SDUs of {sdu}: acked {acked}, "
              f"{seconds:.3f} s, {acked / seconds / 1e6:.3f} MB/s")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=1000, help="command round trips")
    p.add_argument("--total", type=int, default=1 << 20, help="bytes per L2CAP transfer")
    p.add_argument("--sdu", type=int, action="append",
                   help=f"SDU size, repeatable (default 512 and {L2CAP_MTU})")
    p.add_argument("--listen", help="an already running bt_peer (unix:PATH, tcp:HOST:PORT)")
    p.add_argument("--advertiser-address", default=ADVERTISER_ADDRESS)
    p.add_argument("--psm", type=lambda s: int(s, 0), default=DEFAULT_PSM)
    args = p.parse_args(argv)
    sdus = args.sdu or [512, L2CAP_MTU]
    if args.listen:
        _report(args.listen, args.advertiser_address, args.psm, args.count, args.total, sdus)
        return 0
    with tempfile.TemporaryDirectory(prefix="bt-direct-") as tmp:
        listen = f"unix:{tmp}/bt.sock"
        with BtPeer.start(listen, CONTROLLER_ADDRESS, advertiser_name="tabvm-peer",
                          advertiser_address=args.advertiser_address, psm=args.psm):
            _report(listen, args.advertiser_address, args.psm, args.count, args.total, sdus)
    return 0


if __name__ == "__main__":
    sys.exit(main())
