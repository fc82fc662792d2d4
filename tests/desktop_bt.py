"""The USB Bluetooth controller through the Debian desktop's own Bluetooth stack:
the kernel's btusb, bluetoothd and bluetoothctl (BlueZ 5.66), with the glue's
Bumble peer as the device to find. Nothing of the project runs in the guest:
qemu-guest-agent (`tabvm exec`) runs BlueZ's own tools, as root.

The tests run in test_desktop_app_e2e.py, on its desktop (``vm``) with every
device; here are they and their helpers."""

from __future__ import annotations

import re
import time

from desktop_harness import Desktop
from glue.bt_backend import (DEFAULT_ADVERTISER_ADDRESS, DEFAULT_ADVERTISER_NAME,
                             DEFAULT_CONTROLLER_ADDRESS)
from glue.bt_peer import PEER_CHARACTERISTIC_UUID, PEER_SERVICE_UUID

PEER = DEFAULT_ADVERTISER_ADDRESS
#: colours, and readline's prompt markers
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]|[\x01\x02]")
#: a value line of bluetoothctl's hex dump: "  72 65 61 64 20 31    read 1"
HEX_LINE = re.compile(r"^\s+((?:[0-9a-f]{2} )+)", re.M)


def plain(output: bytes) -> str:
    """bluetoothctl's output without colours and prompt markers, a line a line."""
    return ANSI.sub("", output.decode(errors="replace")).replace("\r", "\n")


def btctl(vm: Desktop, *args: str, timeout: float = 60) -> str:
    """``bluetoothctl ARGS`` in the guest."""
    return plain(vm.exec("bluetoothctl", *args, timeout=timeout).stdout)


def controller(vm: Desktop) -> dict[str, str]:
    """`bluetoothctl show`: the controller's address and its properties."""
    text = btctl(vm, "show")
    m = re.search(r"^Controller (\S+)", text, re.M)
    props = dict(re.findall(r"^\t(\w+): (.*)$", text, re.M))
    return {"address": m.group(1) if m else "", **props}


def wait_powered(vm: Desktop, want: str = "yes", timeout: float = 30) -> float:
    t0 = time.monotonic()
    while True:
        got = controller(vm)
        if got.get("Powered") == want:
            return time.monotonic() - t0
        assert time.monotonic() - t0 < timeout, (want, got)
        time.sleep(0.3)


def scan_finds_the_peer(vm: Desktop, seconds: int = 6) -> None:
    out = btctl(vm, "--timeout", str(seconds), "scan", "on", timeout=seconds + 60)
    assert "Discovery started" in out, out
    devices = btctl(vm, "devices")
    assert f"Device {PEER} {DEFAULT_ADVERTISER_NAME}" in devices, (out, devices)


def connect(vm: Desktop) -> None:
    out = btctl(vm, "connect", PEER)
    assert "Connection successful" in out, out
    info = btctl(vm, "info", PEER)
    assert "Connected: yes" in info, info
    assert PEER_SERVICE_UUID in info, info           # BlueZ discovered the peer's service


def gatt_reads(vm: Desktop, count: int = 2) -> list[int]:
    """Reads the peer's characteristic ``count`` times with bluetoothctl's gatt
    menu (select-attribute, read) and returns the N of each ``read N`` value."""
    script = ("(printf 'menu gatt\\nselect-attribute %s\\n'; sleep 1; "
              + "printf 'read\\n'; sleep 2; " * count + ") | bluetoothctl") % \
        PEER_CHARACTERISTIC_UUID
    p = vm.exec("sh", "-c", script, timeout=120)
    out = plain(p.stdout)
    values = [bytes.fromhex(h).decode(errors="replace") for h in HEX_LINE.findall(out)]
    reads = [int(m.group(1)) for v in values if (m := re.fullmatch(r"read (\d+)", v))]
    # bluetoothctl prints a value twice (the read's reply, then the property change)
    reads = sorted(set(reads))
    assert len(reads) == count, (reads, out[-3000:])
    return reads


def connect_and_read(vm: Desktop) -> None:
    connect(vm)
    first, second = gatt_reads(vm)
    assert second == first + 1, (first, second)      # each read reached the peer
    out = btctl(vm, "disconnect", PEER)
    assert "Successful disconnected" in out or "Connected: no" in out, out


def test_bluez_powers_the_controller_scans_connects_and_reads_gatt(vm):
    listed = btctl(vm, "list")
    assert f"Controller {DEFAULT_CONTROLLER_ADDRESS}" in listed, listed
    assert "Changing power off succeeded" in btctl(vm, "power", "off")
    wait_powered(vm, "no")
    assert "Changing power on succeeded" in btctl(vm, "power", "on")
    wait_powered(vm, "yes")
    scan_finds_the_peer(vm)
    connect_and_read(vm)


def test_the_controller_survives_a_bluetoothd_restart(vm):
    vm.sh("systemctl restart bluetooth")
    took = wait_powered(vm, "yes")
    print(f"bluetoothd restarted: the controller powered again in {took:.1f} s")
    assert controller(vm)["address"] == DEFAULT_CONTROLLER_ADDRESS
    scan_finds_the_peer(vm)
    connect_and_read(vm)


def test_the_controller_survives_rfkill_block_and_unblock(vm):
    vm.sh("rfkill block bluetooth")
    assert re.search(r"Soft blocked: yes", vm.sh("rfkill list bluetooth"))
    wait_powered(vm, "no")
    refused = btctl(vm, "power", "on")
    assert "Blocked" in refused or "Failed" in refused, refused
    vm.sh("rfkill unblock bluetooth")
    took = wait_powered(vm, "yes")                   # bluetoothd powers it again
    print(f"rfkill unblock: the controller powered again in {took:.1f} s")
    scan_finds_the_peer(vm)
    connect_and_read(vm)
