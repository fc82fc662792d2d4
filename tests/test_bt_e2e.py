"""The generated USB Bluetooth controller end to end: a real guest under TCG.

The guest's btusb driver drives tabvm-bluetooth; its HCI traffic goes, in H4
framing over a reconnecting chardev, to a Bumble virtual controller (glue.bt_peer)
that shares a virtual link with a second controller advertising a known name.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import struct
import time
from pathlib import Path

import pytest

from generator.ir import Hci
from generator.main import check, spec_files
from glue.agent_client import AgentClient
from glue.bt_backend import (DEFAULT_ADVERTISER_ADDRESS, DEFAULT_ADVERTISER_NAME,
                             DEFAULT_CONTROLLER_ADDRESS, BtBackend)
from glue.profile import BT_CHARDEV_ID, builtin_profile
from glue.qemu import Qemu
from glue.runtime import new_runtime_dir

pytestmark = pytest.mark.e2e

SPEC = next(d for d in check(spec_files()) if isinstance(d, Hci))
READ_BD_ADDR = 0x1009
BTSNOOP_EPOCH_US = 0x00DCDDB30F2F8000


class World:
    """A booted guest with the Bluetooth controller and the host's virtual link."""

    def __init__(self, rundir: Path, build_outputs, guest_image, **props: str) -> None:
        self.rundir = rundir
        self.backend = BtBackend.parse("bumble")
        self.capture = rundir / "bt.btsnoop"
        self.peer = None
        self.start_peer()
        # the controller writes a btsnoop capture of its HCI traffic
        config = builtin_profile(build_outputs, guest_image.vmlinux, guest_image.initrd,
                                 "tcg", touch=False,
                                 bt_chardev=self.backend.chardev(BT_CHARDEV_ID, rundir),
                                 bt_props={"capture": self.capture, **props})
        self.vm = Qemu(config, rundir)
        self.vm.start()
        self.agent = AgentClient(str(self.vm.agent_socket), connect_timeout=30)
        self.agent.wait_ready(timeout=180)

    def start_peer(self) -> None:
        self.peer = self.backend.start(self.rundir, log_path=self.rundir / "bt-peer.log")

    def stop_peer(self) -> None:
        if self.peer is not None:
            self.peer.stop()
            self.peer = None

    def close(self) -> None:
        self.agent.close()
        self.vm.stop()
        self.stop_peer()

    def wait_hci(self, present: bool, timeout: float = 30.0) -> list:
        deadline = time.monotonic() + timeout
        while True:
            devs = self.agent.hci_list()
            if bool(devs) == present:
                return devs
            assert time.monotonic() < deadline, \
                f"hci device still {'missing' if present else 'there'} after {timeout} s"
            time.sleep(0.3)

    def dmesg(self) -> str:
        return self.agent.sh("dmesg").output


@pytest.fixture(scope="module")
def world(build_outputs, guest_image):
    w = World(new_runtime_dir("test-bt"), build_outputs, guest_image)
    try:
        yield w
    finally:
        w.close()


def _bd_addr(params: bytes) -> str:
    assert params[0] == 0, f"Read_BD_ADDR status {params[0]:#x}"
    return ":".join(f"{b:02x}" for b in reversed(params[1:7]))


def test_btusb_brings_the_controller_up(world):
    devs = world.wait_hci(True)
    assert [d.name for d in devs] == ["hci0"]
    agent = world.agent
    driver = agent.sh("readlink /sys/class/bluetooth/hci0/device/driver").output
    assert driver.strip().endswith("/btusb"), driver
    ids = agent.sh("cat /sys/class/bluetooth/hci0/device/../idVendor "
                   "/sys/class/bluetooth/hci0/device/../idProduct").output.split()
    assert ids == [f"{SPEC.vendor_id:04x}", f"{SPEC.product_id:04x}"]
    agent.hci_up(0)
    info = agent.hci_info(0)
    assert info.up
    assert info.address == DEFAULT_CONTROLLER_ADDRESS.lower()
    # the controller's own answer, through a raw HCI socket
    result = agent.hci_cmd(0, READ_BD_ADDR)
    assert result.kind == "complete"
    assert _bd_addr(result.data) == DEFAULT_CONTROLLER_ADDRESS.lower()
    assert "tx timeout" not in world.dmesg()


def _usb_speed(agent: AgentClient) -> str:
    return agent.read("/sys/class/bluetooth/hci0/device/../speed").strip()


def test_full_speed_by_default_and_high_speed_on_request(world, build_outputs, guest_image):
    world.wait_hci(True)
    assert _usb_speed(world.agent) == ("480" if SPEC.high_speed else "12")
    other = "off" if SPEC.high_speed else "on"
    w = World(new_runtime_dir("test-bt-speed"), build_outputs, guest_image,
              high_speed=other)
    try:
        w.wait_hci(True)
        assert _usb_speed(w.agent) == ("12" if SPEC.high_speed else "480")
        w.agent.hci_up(0)
        assert _bd_addr(w.agent.hci_cmd(0, READ_BD_ADDR).data) == \
            DEFAULT_CONTROLLER_ADDRESS.lower()
        assert len(w.agent.hci_rtt(0, 50)) == 50
    finally:
        w.close()


def test_le_scan_sees_the_advertiser_on_the_virtual_link(world):
    world.wait_hci(True)
    world.agent.hci_up(0)
    adverts = world.agent.le_scan(0, 3000)
    match = [a for a in adverts if a.address == DEFAULT_ADVERTISER_ADDRESS.lower()]
    assert match, adverts
    assert match[0].name == DEFAULT_ADVERTISER_NAME and match[0].address_type == "public"


def test_l2cap_data_from_the_guest_reaches_the_peer(world):
    """ACL data both ways: an LE credit-based channel from the guest's kernel to
    the advertiser; twice on one LE link (the channel's CID is reused)."""
    world.wait_hci(True)
    world.agent.hci_up(0)
    for sdu in (512, 2000):
        r = world.agent.l2_send(0, DEFAULT_ADVERTISER_ADDRESS, "public",
                                world.peer.ready["psm"], 65536, sdu)
        assert (r.sent, r.acked) == (65536, 65536)
        event = world.peer.wait_event("l2cap", timeout=10)
        assert event["received"] == 65536


def test_capture_is_a_btsnoop_file_of_the_traffic(world):
    world.wait_hci(True)
    world.agent.hci_cmd(0, READ_BD_ADDR)
    data = world.capture.read_bytes()
    assert data[:16] == b"btsnoop\0" + struct.pack(">II", 1, 1002)
    records, pos = [], 16
    while pos + 24 <= len(data):
        orig, incl, flags, _drops, ts = struct.unpack_from(">IIIIq", data, pos)
        assert orig == incl and pos + 24 + incl <= len(data)
        records.append((flags, data[pos + 24:pos + 24 + incl], ts))
        pos += 24 + incl
    assert pos == len(data)
    now_us = time.time() * 1e6 + BTSNOOP_EPOCH_US
    assert all(abs(ts - now_us) < 3600e6 for _, _, ts in records)
    commands = [r for f, r, _ in records if f == 2 and r[0] == 1]      # sent command
    events = [r for f, r, _ in records if f == 3 and r[0] == 4]        # received event
    assert bytes([1, 0x09, 0x10, 0]) in commands
    # HCI_Command_Complete for Read_BD_ADDR carrying the controller's address
    complete = [e for e in events if e[1] == 0x0E and e[4:6] == b"\x09\x10"]
    assert complete and _bd_addr(complete[-1][6:]) == DEFAULT_CONTROLLER_ADDRESS.lower()


def test_migration_is_blocked_while_the_link_is_up(world):
    world.wait_hci(True)
    with pytest.raises(Exception) as exc:
        world.vm.cmd("migrate", uri=f"exec:cat > {world.rundir / 'migration'}")
    assert "link to its host controller is up" in str(exc.value)


def test_host_side_disconnect_and_reconnect(world):
    world.wait_hci(True)
    world.stop_peer()
    world.wait_hci(False)                    # the USB device is unplugged
    world.start_peer()
    world.wait_hci(True)
    agent = world.agent
    agent.hci_up(0)
    assert agent.hci_info(0).address == DEFAULT_CONTROLLER_ADDRESS.lower()
    assert any(a.name == DEFAULT_ADVERTISER_NAME for a in agent.le_scan(0, 3000))
    assert "tx timeout" not in world.dmesg()


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_hostile_host_stream_keeps_qemu_alive(world):
    """An H4 server sending garbage, impossible lengths and half packets."""
    world.wait_hci(True)
    world.stop_peer()
    world.wait_hci(False)
    path = world.backend.socket_path(world.rundir)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    server.settimeout(10)
    rng = random.Random(5)
    try:
        conn, _ = server.accept()           # QEMU reconnects within reconnect-ms
        with conn:
            world.wait_hci(True)            # the device is plugged while connected
            for _ in range(200):
                blob = bytes(rng.randrange(256) for _ in range(rng.randint(1, 2000)))
                conn.sendall(blob)
            # well-framed but impossible: a 60000-byte ACL, a command from the host
            conn.sendall(b"\x02\x01\x20\x60\xea" + bytes(60000) + b"\x01\x03\x0c\x00")
            conn.sendall(b"\x04\x0e")     # and half an event
            time.sleep(1)
    finally:
        server.close()
        path.unlink()
    world.wait_hci(False)
    assert world.vm.alive()
    world.agent.ping()
    world.start_peer()
    world.wait_hci(True)
    world.agent.hci_up(0)
    assert _bd_addr(world.agent.hci_cmd(0, READ_BD_ADDR).data) == \
        DEFAULT_CONTROLLER_ADDRESS.lower()


def test_guest_usb_garbage_keeps_qemu_alive(world):
    """Malformed transfers to every endpoint, some while the host side is stalled;
    then a fresh link works again."""
    world.wait_hci(True)
    agent = world.agent
    usb = agent.sh("d=$(readlink -f /sys/class/bluetooth/hci0/device/..); "
                   "printf '/dev/bus/usb/%03d/%03d' $(cat $d/busnum) $(cat $d/devnum)").output.strip()
    report = agent.call("usbfuzz", usb, "2000", "7", timeout=300)
    assert report.startswith("sent "), report
    # a host side that stops reading: the guest's bulk OUT is NAKed, QEMU's
    # memory stays bounded
    qemu_pid = world.vm.proc.pid
    rss_before = _rss_kib(qemu_pid)
    os.kill(world.peer.proc.pid, signal.SIGSTOP)
    try:
        report = agent.call("usbepfuzz", usb, "3000", "11", timeout=300)
    finally:
        os.kill(world.peer.proc.pid, signal.SIGCONT)
    assert report.startswith("sent "), report
    print("usbepfuzz:", report, "QEMU RSS", rss_before, "->", _rss_kib(qemu_pid), "KiB")
    counts = dict(zip(report.split()[::2], map(int, report.split()[1::2])))
    assert counts["sent"] == 3000 and counts["ok"] > 0 and counts["timeout"] > 0
    assert _rss_kib(qemu_pid) - rss_before < 16 * 1024
    assert world.vm.alive()
    agent.ping()
    # the fuzzing sent the controller garbage commands: start from a fresh one
    world.stop_peer()
    world.wait_hci(False)
    world.start_peer()
    world.wait_hci(True)
    agent.hci_up(0)
    assert _bd_addr(agent.hci_cmd(0, READ_BD_ADDR).data) == \
        DEFAULT_CONTROLLER_ADDRESS.lower()
