"""The host side of the guest's USB Bluetooth controller: an H4 server for QEMU.

QEMU's USB Bluetooth controller device carries HCI over a chardev in H4 framing
(a type byte 0x01 command, 0x02 ACL, 0x03 SCO, 0x04 event, 0x05 ISO, then the
packet with its own length field). The chardev is a *client* socket with
``reconnect-ms``, so this process is the server: it listens on ``unix:PATH`` or ``tcp:HOST:PORT``, serves
one client at a time (a second concurrent one is closed, after a 0.1 s grace for
a previous client whose close is still in flight), and survives the client going
away and coming back. If its stdout reader goes away (the glue died) it exits.

Two modes, one per process::

    python -m glue.bt_peer --listen unix:/run/x/bt.sock \\
        --controller-address 00:00:5E:00:53:01 \\
        [--advertiser-name NAME --advertiser-address 00:00:5E:00:53:02 --psm 0x81]
    python -m glue.bt_peer --bridge-hci N --listen unix:/run/x/bt.sock

*Peer* (the default): a virtual Bluetooth world built on Bumble. One
``LocalLink``; each accepted connection gets a FRESH Bumble ``Controller``
(the guest's controller) with public address ``--controller-address`` and a fresh
H4 parser, removed from the link when the connection closes (its LE links are
terminated as a supervision timeout would, so the other side sees a
disconnection). Nothing of one QEMU connection, half-parsed packets, LE
connections, scan or advertising state, reaches the next. With
``--advertiser-name`` a second controller (public ``--advertiser-address``) on the
link is driven by an in-process Bumble ``Device`` that does LE legacy advertising
(ADV_IND: flags LE General Discoverable + BR/EDR not supported, complete local
name) with its public address, re-started whenever a connection ends. It serves a
GATT primary service PEER_SERVICE_UUID with one readable characteristic
PEER_CHARACTERISTIC_UUID whose value is ``read N`` (ASCII; N counts the reads it
served, so a client sees each read reach the peer; short of the smallest ATT MTU,
so one read is one ATT request), and an LE credit-based
L2CAP channel on ``--psm`` (MTU 65535, MPS 65531) speaking the benchmark
protocol:

    client -> 8-byte SDU: TOTAL, big-endian u64
    client -> data SDUs until TOTAL bytes arrived (counted, discarded)
    server -> one SDU: the ASCII decimal number of bytes received

(the server is lenient: a first SDU longer than 8 bytes counts its tail as
data; a shorter one is ignored; several transfers may follow on one channel).

*Bridge* (``--bridge-hci N``): a real controller, ``hciN``, through a Linux HCI
user channel (needs CAP_NET_ADMIN and the device down); packets are relayed both
ways with the client. Packets from the controller while no client is connected
are dropped.

Both controllers of the virtual world are LE only, legacy advertising only
(Bumble's controller lists no extended advertising commands, so the extended
feature bits are cleared to match), with an LE ACL buffer of 251 bytes, and
answer every command (unknown/unsupported/malformed ones with an error status,
where Bumble's own controller would stay silent).

stdout is line-buffered JSON, one object a line::

    {"event": "ready", "mode": "peer"|"bridge", "listen": "unix:...",
     "controller_address": ..., "advertiser_address": ..., "advertiser_name": ...,
     "psm": ..., "hci": ...}                  # once listening (null when unused)
    {"event": "client", "state": "connected"}
    {"event": "client", "state": "disconnected", "reason": "..."}
    {"event": "client", "state": "rejected"}  # a second concurrent client
    {"event": "l2cap", "received": N, "seconds": S}   # per benchmark transfer
    {"event": "gatt", "read": N}              # the characteristic's Nth read

Logs go to stderr. SIGTERM/SIGINT: close, remove the unix socket it created,
exit 0. Bad arguments: one line on stderr, exit 2. Other fatal errors (socket
path in use or not a socket, HCI device errors): one line, exit 1.

``BtPeer`` runs this as a subprocess for the glue (see its docstring).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import errno
import functools
import json
import logging
import os
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Protocol

__all__ = ["BtPeer", "BtPeerError", "BtPeerTimeout", "Endpoint", "HciUserChannelError",
           "open_hci_user_channel", "parse_address", "DEFAULT_PSM", "PEER_SERVICE_UUID",
           "PEER_CHARACTERISTIC_UUID", "main"]

log = logging.getLogger("bt_peer")

DEFAULT_PSM = 0x81
L2CAP_MTU = 65535            # largest SDU the benchmark server accepts
L2CAP_MPS = 65531            # largest K-frame whose L2CAP PDU (+4) fits one ACL length (u16)
LE_ACL_DATA_PACKET_LENGTH = 251     # what DLE-capable controllers report
ADVERTISING_INTERVAL_MS = 100
#: The advertiser's GATT service and its readable characteristic (random UUIDs of
#: this project: no Bluetooth SIG service, so no host stack claims it for itself)
PEER_SERVICE_UUID = "5f0b2a10-7c1e-4d8a-9a55-7ab0b0000001"
PEER_CHARACTERISTIC_UUID = "5f0b2a10-7c1e-4d8a-9a55-7ab0b0000002"
MAX_CLIENT_BACKLOG = 16 << 20       # bytes queued to a client that does not read
REJECT_GRACE_S = 0.1                # see H4Server._handle
REPO = Path(__file__).resolve().parent.parent


class BtPeerError(RuntimeError):
    pass


class BtPeerTimeout(BtPeerError, TimeoutError):
    pass


class HciUserChannelError(RuntimeError):
    pass


# ---------------------------------------------------------------------------
# Arguments

def parse_address(text: str) -> str:
    """``AA:BB:CC:DD:EE:FF`` (any case) -> upper case; ValueError otherwise."""
    parts = text.split(":")
    if len(parts) != 6 or not all(len(p) == 2 for p in parts):
        raise ValueError(f"not a Bluetooth address (AA:BB:CC:DD:EE:FF): {text!r}")
    try:
        bytes.fromhex("".join(parts))
    except ValueError:
        raise ValueError(f"not a Bluetooth address (AA:BB:CC:DD:EE:FF): {text!r}") from None
    return text.upper()


@dataclass(frozen=True)
class Endpoint:
    """A stream socket address: ``unix:PATH`` or ``tcp:HOST:PORT`` (``[v6]:PORT`` too)."""

    kind: str                   # "unix" | "tcp"
    path: Path | None = None
    host: str | None = None
    port: int | None = None

    FORMS = "unix:PATH or tcp:HOST:PORT"

    @classmethod
    def parse(cls, spec: str) -> Endpoint:
        kind, sep, rest = spec.partition(":")
        if sep and kind == "unix" and rest:
            return cls("unix", path=Path(rest).expanduser().absolute())
        if sep and kind == "tcp":
            host, sep, port = rest.rpartition(":")
            if host.startswith("[") and host.endswith("]"):
                host = host[1:-1]
            if sep and host and port.isdigit() and 0 <= int(port) <= 65535:
                return cls("tcp", host=host, port=int(port))
        raise ValueError(f"bad socket address {spec!r}: expected {cls.FORMS}")

    def __str__(self) -> str:
        if self.kind == "unix":
            return f"unix:{self.path}"
        host = f"[{self.host}]" if self.host and ":" in self.host else self.host
        return f"tcp:{host}:{self.port}"


def _arg(convert: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return convert(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    parse.__name__ = convert.__name__
    return parse


def _psm(text: str) -> int:
    try:
        psm = int(text, 0)
    except ValueError:
        raise ValueError(f"not a number: {text!r}") from None
    if not 0x0001 <= psm <= 0x00FF:
        raise ValueError(f"LE PSM must be 0x01..0xff, got {text}")
    return psm


def _hci_index(text: str) -> int:
    digits = text[3:] if text.startswith("hci") else text
    if not digits.isdigit():
        raise ValueError(f"not an HCI device index (N or hciN): {text!r}")
    return int(digits)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:       # one line, not the usage block
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m glue.bt_peer",
                                description="H4 server for QEMU's USB Bluetooth controller")
    p.add_argument("--listen", required=True, type=_arg(Endpoint.parse),
                   help="unix:PATH or tcp:HOST:PORT (port 0: any free port)")
    p.add_argument("--controller-address", type=_arg(parse_address),
                   help="public address of the guest's controller (peer mode)")
    p.add_argument("--advertiser-name", help="run an LE advertiser with this name")
    p.add_argument("--advertiser-address", type=_arg(parse_address),
                   help="public address of the advertiser")
    p.add_argument("--psm", type=_arg(_psm), default=DEFAULT_PSM,
                   help="LE PSM of the benchmark L2CAP server (default 0x81)")
    p.add_argument("--bridge-hci", type=_arg(_hci_index), metavar="N",
                   help="relay to the real controller hciN (HCI user channel)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logs")
    return p


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = build_parser()
    args = p.parse_args(argv)
    if args.bridge_hci is not None:
        if args.controller_address or args.advertiser_name or args.advertiser_address:
            p.error("--bridge-hci takes no --controller-address / --advertiser-* options")
    else:
        if not args.controller_address:
            p.error("--controller-address is required (or --bridge-hci N)")
        if bool(args.advertiser_name) != bool(args.advertiser_address):
            p.error("--advertiser-name and --advertiser-address go together")
        if args.advertiser_address == args.controller_address:
            p.error("--advertiser-address must differ from --controller-address")
    return args


# ---------------------------------------------------------------------------
# The virtual world (Bumble)

class Sink(Protocol):
    def on_packet(self, packet: bytes) -> None: ...


class Attachment(Sink, Protocol):
    """What one client's H4 packets go to; ``close()`` when the client is gone."""
    def close(self) -> None: ...


def _make_link() -> Any:
    from bumble import core
    from bumble.link import LocalLink

    class PeerLink(LocalLink):
        """``LocalLink`` that tags LE ACL data with the sender's address *on that
        connection*. Bumble's tags it with the sender's random address, so data of a
        connection made with a public address (what BlueZ uses when the controller has
        one and privacy is off) reaches the peer as "no connection" and is dropped."""

        def send_acl_data(self, sender_controller: Any, destination_address: Any,
                          transport: Any, data: bytes) -> None:
            if transport == core.PhysicalTransport.LE:
                connection = sender_controller.le_connections.get(destination_address)
                destination = self.find_le_controller(destination_address)
                if connection is None or destination is None:
                    log.warning("LE ACL data to %s: no such connection", destination_address)
                    return
                source = connection.self_address
                asyncio.get_running_loop().call_soon(
                    destination.on_link_acl_data, source, transport, data)
                return
            super().send_acl_data(sender_controller, destination_address, transport, data)

    return PeerLink()


@functools.cache
def _controller_class() -> type:
    from bumble import hci
    from bumble.controller import Controller

    class PeerController(Controller):
        """Bumble's controller, answering every command as a real one must: Bumble's
        sends nothing for a command it cannot parse or for an unsupported command
        that is answered by Command Status, and the host would wait for its command
        timeout."""

        def on_packet(self, packet: bytes) -> None:
            try:
                parsed = hci.HCI_Packet.from_bytes(packet)
            except Exception as exc:                  # noqa: BLE001 - any parse failure
                log.warning("[%s] unparsable HCI packet %s: %s", self.name, packet[:8].hex(), exc)
                if packet[:1] == bytes([hci.HCI_COMMAND_PACKET]) and len(packet) >= 3:
                    op_code = int.from_bytes(packet[1:3], "little")
                    known = op_code in hci.HCI_Command.command_classes
                    self._send_hci_command_status(
                        hci.HCI_ErrorCode.INVALID_COMMAND_PARAMETERS_ERROR if known
                        else hci.HCI_ErrorCode.UNKNOWN_HCI_COMMAND_ERROR, op_code)
                return
            self.on_hci_packet(parsed)

        def on_hci_command_packet(self, command: Any) -> None:
            try:
                super().on_hci_command_packet(command)
            except Exception:
                log.exception("[%s] %s failed", self.name, command.name)
                self._send_hci_command_status(hci.HCI_ErrorCode.UNSPECIFIED_ERROR_ERROR,
                                              command.op_code)

        def on_hci_reset_command(self, command: Any) -> Any:
            """Vol 4, Part E, 7.3.2: a reset loses the controller's operational
            state, its links included (Bumble's keeps them: Linux resets the
            controller when it powers up again after an rfkill block, and the
            peer would stay connected to a controller that forgot it)."""
            end_links(self)
            self.le_scan_enable = False
            return super().on_hci_reset_command(command)

        def on_hci_le_create_connection_cancel_command(self, command: Any) -> Any:
            """Vol 4, Part E, 7.8.13: with no LE_Create_Connection pending the answer
            is Command Disallowed; a pending one ends with an LE Connection Complete
            of status Unknown Connection Identifier after the Command Complete.
            (Bumble's answers Success either way and sends no event: Linux then
            waits for the connection it thinks it cancelled, and the next
            Disconnect of that address never completes.)"""
            pending = self.pending_le_connection
            if pending is None:
                return hci.HCI_StatusReturnParameters(hci.HCI_ErrorCode.COMMAND_DISALLOWED_ERROR)
            self.pending_le_connection = None
            asyncio.get_running_loop().call_soon(
                self.send_hci_packet, hci.HCI_LE_Connection_Complete_Event(
                    status=hci.HCI_ErrorCode.UNKNOWN_CONNECTION_IDENTIFIER_ERROR,
                    connection_handle=0, role=hci.Role.CENTRAL,
                    peer_address_type=pending.peer_address_type,
                    peer_address=pending.peer_address, connection_interval=0,
                    peripheral_latency=0, supervision_timeout=0, central_clock_accuracy=0))
            return hci.HCI_StatusReturnParameters(hci.HCI_ErrorCode.SUCCESS)

        def on_hci_command(self, command: Any) -> Any:
            log.warning("[%s] unsupported command %s", self.name, command.name)
            if isinstance(command, hci.HCI_SyncCommand):
                return hci.HCI_StatusReturnParameters(hci.HCI_ErrorCode.UNKNOWN_HCI_COMMAND_ERROR)
            self._send_hci_command_status(hci.HCI_ErrorCode.UNKNOWN_HCI_COMMAND_ERROR,
                                          command.op_code)
            return None

    return PeerController


def new_controller(name: str, link: Any, address: str) -> Any:
    """A Bumble controller on ``link``: LE only, legacy advertising, 251-byte LE ACL,
    an answer to every command."""
    from bumble import hci

    c = _controller_class()(name, link=link, public_address=address)
    # LL Privacy goes too: Linux then enables the LE Enhanced Connection Complete
    # event and waits for it after LE Create Connection, but Bumble's controller
    # sends only the legacy event; Linux gives up after its 4 s auto-connect
    # timeout and cancels a connection that was made, and its command queue
    # stays stuck (the next disconnect or power off never completes).
    c.le_features &= ~(hci.LeFeatureMask.LE_EXTENDED_ADVERTISING
                       | hci.LeFeatureMask.LE_PERIODIC_ADVERTISING
                       | hci.LeFeatureMask.LL_PRIVACY)
    c.le_acl_data_packet_length = LE_ACL_DATA_PACKET_LENGTH
    return c


def detach_controller(controller: Any) -> None:
    """Take a guest controller off the link as if it had been switched off: its
    advertising stops and its peers see their links time out."""
    controller.host = None
    end_links(controller)
    with contextlib.suppress(KeyError):
        controller.link.remove_controller(controller)


def end_links(controller: Any) -> None:
    """Stop the controller's advertising and connecting, and end its links: its
    peers see them time out (what a controller that is switched off or reset
    does to the other side)."""
    from bumble import hci, ll, lmp

    controller.le_legacy_advertiser.stop()
    for adv_set in controller.advertising_sets.values():
        adv_set.stop()
    controller.pending_le_connection = None
    reason = hci.HCI_ErrorCode.CONNECTION_TIMEOUT_ERROR
    for connection in list(controller.le_connections.values()):
        with contextlib.suppress(Exception):
            connection.send_ll_control_pdu(ll.TerminateInd(reason))
    for address in list(controller.classic_connections):
        with contextlib.suppress(Exception):
            controller.send_lmp_packet(address, lmp.LmpDetach(reason))
    controller.le_connections.clear()
    controller.classic_connections.clear()


class _FnSink:
    def __init__(self, fn: Callable[[bytes], None]) -> None:
        self.on_packet = fn


class _ControllerAttachment:
    def __init__(self, controller: Any) -> None:
        self.controller = controller

    def on_packet(self, packet: bytes) -> None:
        self.controller.on_packet(packet)

    def close(self) -> None:
        detach_controller(self.controller)


class BenchSession:
    """The benchmark protocol on one LE CoC channel (server side)."""

    def __init__(self, channel: Any, emit: Callable[[dict], None]) -> None:
        self.channel = channel
        self.emit = emit
        self.total: int | None = None
        self.received = 0
        self.t0: float | None = None
        channel.sink = self.on_sdu

    def on_sdu(self, sdu: bytes) -> None:
        if self.total is None:
            if len(sdu) < 8:
                log.warning("benchmark: %d-byte first SDU, expected the 8-byte total; ignored",
                            len(sdu))
                return
            self.total, sdu = int.from_bytes(sdu[:8], "big"), sdu[8:]
            self.received, self.t0 = 0, None
            if self.total == 0:
                self.finish()
                return
            if not sdu:
                return
        if self.t0 is None:
            self.t0 = time.perf_counter()
        self.received += len(sdu)
        if self.received >= self.total:
            self.finish()

    def finish(self) -> None:
        seconds = time.perf_counter() - self.t0 if self.t0 is not None else 0.0
        self.channel.write(str(self.received).encode())
        self.emit({"event": "l2cap", "received": self.received, "seconds": round(seconds, 6)})
        self.total = None


def peer_service(emit: Callable[[dict], None]) -> Any:
    """The advertiser's GATT service: one characteristic, read-only, whose value
    is ``read N`` for the Nth read (under 22 bytes: a value of ATT_MTU - 1 = 22
    bytes or more makes a client read on with Read Blob, another read)."""
    from bumble import gatt
    reads = 0

    def read(_connection: Any) -> bytes:
        nonlocal reads
        reads += 1
        emit({"event": "gatt", "read": reads})
        return f"read {reads}".encode()

    characteristic = gatt.Characteristic(
        PEER_CHARACTERISTIC_UUID, gatt.Characteristic.Properties.READ,
        gatt.Characteristic.READABLE, gatt.CharacteristicValue(read=read))
    return gatt.Service(PEER_SERVICE_UUID, [characteristic])


def _forget_closed_le_channels(manager: Any) -> None:
    """Bumble's ChannelManager.on_channel_closed removes a closed LE credit-based
    channel from ``le_coc_channels`` only if the connection has no entry in
    ``channels``, which it always has: the remote's CID then stays "in use" and
    its next connection on the same LE link is refused (Linux reuses CID 0x40
    at once). Forget it in both tables."""
    closed = manager.on_channel_closed

    def on_channel_closed(channel: Any) -> None:
        closed(channel)
        le = manager.le_coc_channels.get(channel.connection.handle, {})
        if le.get(channel.destination_cid) is channel:
            del le[channel.destination_cid]

    manager.on_channel_closed = on_channel_closed


async def start_advertiser(link: Any, name: str, address: str, psm: int,
                           emit: Callable[[dict], None]) -> Any:
    """The advertiser's controller + Bumble Device on ``link``, advertising."""
    from bumble import hci, l2cap
    from bumble.core import AdvertisingData
    from bumble.device import Device

    controller = new_controller("advertiser", link, address)
    device = Device.with_hci(name, hci.Address("F0:00:00:00:00:02"), controller, controller)
    _forget_closed_le_channels(device.l2cap_channel_manager)
    device.add_service(peer_service(emit))
    await device.power_on()
    device.create_l2cap_server(
        l2cap.LeCreditBasedChannelSpec(psm=psm, mtu=L2CAP_MTU, mps=L2CAP_MPS),
        lambda channel: BenchSession(channel, emit))
    device.advertising_data = bytes(AdvertisingData([
        (AdvertisingData.FLAGS,
         bytes([AdvertisingData.LE_GENERAL_DISCOVERABLE_MODE_FLAG
                | AdvertisingData.BR_EDR_NOT_SUPPORTED_FLAG])),
        (AdvertisingData.COMPLETE_LOCAL_NAME, name.encode()),
    ]))
    # auto_restart: advertise again whenever a connection ends.
    await device.start_advertising(own_address_type=hci.OwnAddressType.PUBLIC,
                                   auto_restart=True,
                                   advertising_interval_min=ADVERTISING_INTERVAL_MS,
                                   advertising_interval_max=ADVERTISING_INTERVAL_MS)
    return device


# ---------------------------------------------------------------------------
# A real controller through an HCI user channel (Linux)

AF_BLUETOOTH = getattr(socket, "AF_BLUETOOTH", 31)   # this Python may lack the constants
BTPROTO_HCI = getattr(socket, "BTPROTO_HCI", 1)
HCI_CHANNEL_USER = 1


def open_hci_user_channel(index: int) -> socket.socket:
    """``socket(AF_BLUETOOTH, SOCK_RAW, BTPROTO_HCI)`` bound to hciN, HCI_CHANNEL_USER.

    Raises HciUserChannelError with what to do. (Not Bumble's ``hci-socket:``
    transport: it needs ``socket.AF_BLUETOOTH``, which Pythons built without the
    Bluetooth headers lack, and it reports every failure the same way.)
    """
    dev = f"hci{index}"
    try:
        sock = socket.socket(AF_BLUETOOTH, socket.SOCK_RAW | socket.SOCK_NONBLOCK, BTPROTO_HCI)
    except OSError as exc:
        if exc.errno in (errno.EAFNOSUPPORT, errno.EPROTONOSUPPORT):
            raise HciUserChannelError(
                f"{dev}: AF_BLUETOOTH sockets are not supported by this kernel "
                f"(no Bluetooth support: CONFIG_BT / the bluetooth module)") from None
        if exc.errno in (errno.EPERM, errno.EACCES):
            raise HciUserChannelError(
                f"{dev}: not allowed to create a Bluetooth socket "
                f"(needs CAP_NET_ADMIN; in a container, Bluetooth sockets may be blocked)"
            ) from None
        raise HciUserChannelError(f"{dev}: cannot create a Bluetooth socket: "
                                  f"{exc.strerror}") from None
    # Python's bind() has no (dev, channel) form for AF_BLUETOOTH/HCI: call libc.
    libc = ctypes.CDLL(None, use_errno=True)
    addr = struct.pack("@HHH", AF_BLUETOOTH, index, HCI_CHANNEL_USER)
    if libc.bind(sock.fileno(), ctypes.c_char_p(addr), len(addr)) != 0:
        err = ctypes.get_errno()
        sock.close()
        messages = {
            errno.ENODEV: f"{dev} does not exist (see /sys/class/bluetooth)",
            errno.EBUSY: (f"{dev} is up or in use: run `hciconfig {dev} down` or "
                          f"`btmgmt --index {index} power off` (or stop bluetoothd) first"),
            errno.EUSERS: f"{dev} is already opened by another HCI user channel",
            errno.EALREADY: f"{dev} is already opened by another HCI user channel",
            errno.EPERM: (f"{dev}: permission denied for the HCI user channel: "
                          f"needs CAP_NET_ADMIN (run as root, or `setcap cap_net_admin+ep` "
                          f"on the Python binary)"),
            errno.ERFKILL: f"{dev} is blocked by rfkill: run `rfkill unblock bluetooth`",
        }
        messages[errno.EACCES] = messages[errno.EPERM]
        raise HciUserChannelError(messages.get(
            err, f"{dev}: cannot open the HCI user channel: {os.strerror(err)}"))
    return sock


class HciRelay:
    """Relays whole H4 packets between an HCI user-channel socket and the client."""

    def __init__(self, sock: socket.socket, on_lost: Callable[[str], None]) -> None:
        self.sock = sock
        self.on_lost = on_lost
        self.client: Callable[[bytes], None] | None = None
        self.out: deque[bytes] = deque()
        self.writer_added = False
        self.loop = asyncio.get_running_loop()
        self.loop.add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        while True:
            try:
                packet = self.sock.recv(65536)     # one H4 packet per read
            except BlockingIOError:
                return
            except OSError as exc:
                self._lost(f"reading the controller: {exc.strerror}")
                return
            if not packet:
                self._lost("the controller closed the channel")
                return
            if self.client is not None:
                self.client(packet)

    def attach(self, send: Callable[[bytes], None]) -> Attachment:
        self.client = send
        relay = self

        class _Attached:
            def on_packet(self, packet: bytes) -> None:
                relay.send(packet)

            def close(self) -> None:
                if relay.client is send:
                    relay.client = None
        return _Attached()

    def send(self, packet: bytes) -> None:
        self.out.append(packet)
        if not self.writer_added:
            self._flush()

    def _flush(self) -> None:
        while self.out:
            try:
                self.sock.send(self.out[0])          # one H4 packet per write
            except (BlockingIOError, InterruptedError):
                if not self.writer_added:
                    self.loop.add_writer(self.sock.fileno(), self._flush)
                    self.writer_added = True
                return
            except OSError as exc:
                self._lost(f"writing to the controller: {exc.strerror}")
                return
            self.out.popleft()
        if self.writer_added:
            self.loop.remove_writer(self.sock.fileno())
            self.writer_added = False

    def _lost(self, reason: str) -> None:
        self.close()
        self.on_lost(reason)

    def close(self) -> None:
        if self.sock.fileno() >= 0:
            self.loop.remove_reader(self.sock.fileno())
            self.loop.remove_writer(self.sock.fileno())
            self.sock.close()


# ---------------------------------------------------------------------------
# The H4 server

class _Client:
    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.closed = False
        self.reason: str | None = None      # why we closed it, if we did

    def send(self, packet: bytes) -> None:
        if self.closed:
            return
        self.writer.write(packet)
        backlog = self.writer.transport.get_write_buffer_size()
        if backlog > MAX_CLIENT_BACKLOG:
            log.error("client does not read (%d bytes queued): closing it", backlog)
            self.close("client does not read", abort=True)

    def close(self, reason: str | None = None, abort: bool = False) -> None:
        if not self.closed:
            self.closed = True
            self.reason = reason
            if abort:                            # close() would wait for the backlog
                self.writer.transport.abort()
            else:
                self.writer.close()


class H4Server:
    """Accepts one client at a time and feeds its H4 stream, through a fresh Bumble
    ``PacketParser``, to a fresh ``attach(send)`` per connection.

    Not Bumble's ``unix-server:``/``tcp-server:`` transports: they keep one parser
    (and so any half-parsed packet) across connections, support a single sink for
    the transport's life, and skip over invalid data instead of dropping the
    connection, so the next packets are misparsed.
    """

    def __init__(self, attach: Callable[[Callable[[bytes], None]], Attachment],
                 emit: Callable[[dict], None]) -> None:
        self.attach = attach
        self.emit = emit
        self.server: asyncio.AbstractServer | None = None
        self.task: asyncio.Task | None = None
        self.client: _Client | None = None
        self.closing = False
        self.socket_path: Path | None = None
        self.socket_ino: int | None = None

    async def listen(self, endpoint: Endpoint) -> Endpoint:
        """Start listening; returns the endpoint actually bound (port 0 resolved)."""
        if endpoint.kind == "unix":
            assert endpoint.path is not None
            _claim_socket_path(endpoint.path)
            self.server = await asyncio.start_unix_server(self._handle, path=str(endpoint.path))
            self.socket_path = endpoint.path
            self.socket_ino = endpoint.path.lstat().st_ino
            return endpoint
        self.server = await asyncio.start_server(self._handle, endpoint.host, endpoint.port,
                                                 reuse_address=True)
        port = self.server.sockets[0].getsockname()[1]
        return Endpoint("tcp", host=endpoint.host, port=port)

    async def _handle(self, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        if self.task is not None and not self.closing:
            # A client that closed just before this one connected may not have been
            # seen to close yet (its EOF and this accept can come in either order):
            # give it a moment, then refuse the newcomer.
            await asyncio.wait({self.task}, timeout=REJECT_GRACE_S)
        if self.task is not None or self.closing:
            log.warning("a second client connected while one is served: closed")
            self.emit({"event": "client", "state": "rejected"})
            writer.close()
            return
        from bumble import core
        from bumble.transport.common import PacketParser

        self.task = asyncio.current_task()
        client = self.client = _Client(writer)
        attachment = self.attach(client.send)
        parser = PacketParser(attachment)
        log.info("client connected")
        self.emit({"event": "client", "state": "connected"})
        reason = "closed by the client"
        try:
            while data := await reader.read(65536):
                parser.feed_data(data)
        except core.InvalidPacketError as exc:
            reason = f"malformed H4 stream: {exc}"
            log.warning("client sent a %s: closing it", reason)
        except OSError as exc:
            reason = f"socket error: {exc}"
        finally:
            attachment.close()
            client.close()
            reason = client.reason or reason
            self.task = self.client = None
            log.info("client disconnected (%s)", reason)
            self.emit({"event": "client", "state": "disconnected", "reason": reason})

    async def close(self) -> None:
        """Stop listening, close the client, remove the unix socket we made."""
        self.closing = True
        if self.server is not None:
            self.server.close()
        if self.client is not None:
            self.client.close("shutdown")
        if self.task is not None:
            task = self.task
            await asyncio.wait({task}, timeout=2.0)
            if not task.done():
                task.cancel()
        if self.socket_path is not None:
            with contextlib.suppress(OSError):
                if self.socket_path.lstat().st_ino == self.socket_ino:
                    self.socket_path.unlink()


def _claim_socket_path(path: Path) -> None:
    """Remove a stale socket at ``path``; refuse anything else that is there."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise BtPeerError(f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(str(path))
    except OSError:
        path.unlink()              # nobody listens: stale
        return
    finally:
        probe.close()
    raise BtPeerError(f"{path} is in use by another listening process")


# ---------------------------------------------------------------------------
# Main

class _Stdout:
    """The JSON-lines channel. When its reader goes away (the glue died) the
    process shuts down, rather than linger holding the socket."""

    def __init__(self, gone: Callable[[], None]) -> None:
        self.gone = gone
        self.broken = False
        with contextlib.suppress(OSError):
            if stat.S_ISFIFO(os.fstat(1).st_mode):
                # On the write end of a pipe, "readable" means: the reader closed it.
                asyncio.get_running_loop().add_reader(1, self._closed)

    def _closed(self) -> None:
        asyncio.get_running_loop().remove_reader(1)
        log.warning("stdout reader went away: shutting down")
        self._break()

    def _break(self) -> None:
        if not self.broken:
            self.broken = True
            sys.stdout = open(os.devnull, "w")      # nothing more to flush at exit
            self.gone()

    def __call__(self, obj: dict) -> None:
        if self.broken:
            return
        try:
            sys.stdout.write(json.dumps(obj) + "\n")
            sys.stdout.flush()
        except OSError:
            self._break()


async def serve(args: argparse.Namespace, emit: Callable[[dict], None] | None = None) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    failure: list[str] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if emit is None:
        emit = _Stdout(stop.set)

    relay: HciRelay | None = None
    if args.bridge_hci is not None:
        try:
            sock = open_hci_user_channel(args.bridge_hci)
        except HciUserChannelError as exc:
            log.error("%s", exc)
            return 1

        def lost(reason: str) -> None:
            failure.append(f"hci{args.bridge_hci}: {reason}")
            stop.set()
        relay = HciRelay(sock, lost)
        attach: Callable[[Callable[[bytes], None]], Attachment] = relay.attach
    else:
        link = _make_link()
        if args.advertiser_name:
            await start_advertiser(link, args.advertiser_name, args.advertiser_address,
                                   args.psm, emit)

        def attach(send: Callable[[bytes], None]) -> Attachment:
            controller = new_controller("guest", link, args.controller_address)
            controller.host = _FnSink(send)
            return _ControllerAttachment(controller)

    server = H4Server(attach, emit)
    try:
        try:
            bound = await server.listen(args.listen)
        except (BtPeerError, OSError) as exc:
            log.error("cannot listen on %s: %s", args.listen, exc)
            return 1
        bridge = args.bridge_hci is not None
        emit({"event": "ready", "mode": "bridge" if bridge else "peer", "listen": str(bound),
              "controller_address": args.controller_address,
              "advertiser_address": args.advertiser_address,
              "advertiser_name": args.advertiser_name,
              "psm": None if bridge or not args.advertiser_name else args.psm,
              "hci": args.bridge_hci})
        log.info("listening on %s", bound)
        await stop.wait()
    finally:
        await server.close()
        if relay is not None:
            relay.close()
    if failure:
        log.error("%s", failure[0])
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(name)s: %(levelname)s: %(message)s")
    log.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    return asyncio.run(serve(args))


# ---------------------------------------------------------------------------
# The glue's handle on the process

class BtPeer:
    """``python -m glue.bt_peer`` as a subprocess::

        with BtPeer.start("unix:/run/x/bt.sock", "00:00:5E:00:53:01") as peer:
            peer.wait_event("client", state="connected", timeout=30)

    ``ready`` is the ready line. ``wait_event`` returns (and consumes) the first
    event line not returned before that has ``event == name`` and the ``match``
    items; lines that do not match stay for later calls. stderr goes to
    ``log_path`` (or a temporary file); its tail is in the errors.
    """

    def __init__(self, proc: subprocess.Popen, stderr: IO[bytes]) -> None:
        self.proc = proc
        self.stderr = stderr
        self.ready: dict = {}
        self._events: list[dict] = []
        self._eof = False
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, name="bt_peer-stdout", daemon=True)
        self._reader.start()

    @classmethod
    def start(cls, listen: str, controller_address: str, advertiser_name: str | None = None,
              advertiser_address: str | None = None, psm: int = DEFAULT_PSM,
              log_path: Path | None = None, timeout: float = 15.0) -> BtPeer:
        args = ["--listen", listen, "--controller-address", controller_address]
        if advertiser_name is not None or advertiser_address is not None:
            args += ["--advertiser-name", advertiser_name or "",
                     "--advertiser-address", advertiser_address or ""]
        args += ["--psm", hex(psm)]
        return cls._spawn(args, log_path, timeout)

    @classmethod
    def start_bridge(cls, hci_index: int, listen: str, log_path: Path | None = None,
                     timeout: float = 15.0) -> BtPeer:
        return cls._spawn(["--bridge-hci", str(hci_index), "--listen", listen],
                          log_path, timeout)

    @classmethod
    def _spawn(cls, args: list[str], log_path: Path | None, timeout: float) -> BtPeer:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        env["PYTHONUNBUFFERED"] = "1"
        stderr: IO[bytes] = (open(log_path, "w+b") if log_path is not None
                             else tempfile.TemporaryFile())
        try:
            proc = subprocess.Popen([sys.executable, "-m", "glue.bt_peer", *args],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=stderr, env=env, start_new_session=True)
        except OSError:
            stderr.close()
            raise
        peer = cls(proc, stderr)
        try:
            peer.ready = peer.wait_event("ready", timeout)
        except BtPeerTimeout:
            peer.stop()
            raise BtPeerTimeout(f"bt_peer was not ready within {timeout} s: "
                                f"{peer.stderr_tail()}") from None
        except BtPeerError:
            peer.stop()
            raise
        return peer

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            try:
                event = json.loads(raw)
            except ValueError:
                log.warning("bt_peer: not a JSON line: %r", raw[:200])
                continue
            with self._cond:
                self._events.append(event)
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def stderr_tail(self, lines: int = 10) -> str:
        try:
            self.stderr.seek(0, os.SEEK_END)
            size = self.stderr.tell()
            self.stderr.seek(max(0, size - 4096))
            text = self.stderr.read().decode(errors="replace")
        except (OSError, ValueError):
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])

    def wait_event(self, name: str, timeout: float = 10.0, **match: Any) -> dict:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for i, event in enumerate(self._events):
                    if event.get("event") == name and all(
                            event.get(k) == v for k, v in match.items()):
                        return self._events.pop(i)
                if self._eof:
                    rc = self.proc.wait()
                    raise BtPeerError(f"bt_peer exited with {rc} (waiting for a {name!r} "
                                      f"event): {self.stderr_tail()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BtPeerTimeout(f"no {name!r} event {match or ''} from bt_peer "
                                        f"within {timeout} s")
                self._cond.wait(left)

    def events(self) -> list[dict]:
        """The event lines not consumed yet (a copy)."""
        with self._cond:
            return list(self._events)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM, wait ``timeout``, then SIGKILL; returns the exit status."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(2.0)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        with contextlib.suppress(OSError):
            self.stderr.close()
        return self.proc.returncode

    def __enter__(self) -> BtPeer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":
    sys.exit(main())
