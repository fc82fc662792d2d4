"""The Debian desktop guest booted through firmware, for real, under TCG:
BIOS and UEFI, virtio and the Windows-ready device set (AHCI, e1000e, the
standard VGA), reached only through qemu-guest-agent (`tabvm exec`) and
screenshots (`tabvm screenshot`); the guest's own software (X, xrandr, curl,
python3, libinput) does the rest."""

from __future__ import annotations

import http.server
import json
import re
import secrets
import stat
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from conftest import REPO
from desktop_harness import (Desktop, InGuest, assert_window_shown, desktop_profile,
                             free_port, tabvm)
from lifecycle_harness import Glue, write_profile

pytestmark = pytest.mark.e2e

MAGENTA = (255, 0, 255)
GUEST_HTTP_PORT = 8000


def start(tmp: Path, name: str, build_outputs, **changes) -> Desktop:
    profile = desktop_profile(tmp, name, **changes)
    vm = Desktop(profile, name, build_outputs.root, tmp / "state")
    vm.glue.running(timeout=120)
    return vm


class HostService:
    """A one-file HTTP server on the host's loopback (what the guest reaches as 10.0.2.2)."""

    def __init__(self, body: bytes):
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def check_session_on_screen(vm: Desktop, tmp: Path, size: tuple[int, int]) -> None:
    """A window of known content, opened in the session, is on the screenshot
    exactly where the X server placed it; the screenshot has the panel's size."""
    win = vm.open_probe(geometry="30x8+200+150")
    try:
        img = vm.screenshot(tmp / "probe.png")
        assert img.size == size
        assert_window_shown(img, win, MAGENTA)
    finally:
        vm.close_probe()


def check_network(vm: Desktop, host_port_to_guest: int) -> None:
    """Guest -> host service over user-mode networking; host port forward -> a
    service in the guest."""
    token = secrets.token_hex(8).encode()
    service = HostService(token)
    try:
        got = vm.sh(f"curl -sS --max-time 20 http://10.0.2.2:{service.port}/token")
        assert got.encode() == token
    finally:
        service.close()
    secret = secrets.token_hex(8)
    vm.sh(f"mkdir -p /tmp/srv && echo {secret} > /tmp/srv/secret && cd /tmp/srv && "
          f"setsid python3 -m http.server {GUEST_HTTP_PORT} </dev/null >/dev/null 2>&1 &")
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{host_port_to_guest}/secret",
                                        timeout=10) as r:
                assert r.read().decode().strip() == secret
            break
        except (OSError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
    vm.exec("pkill", "-f", "http.server")


def guest_clock_offset(vm: Desktop) -> float:
    """The guest's wall clock minus the host's, in seconds (0 when the guest's
    reading falls within the time the query took)."""
    t0 = time.time()
    guest = float(vm.sh("date +%s.%N"))
    t1 = time.time()
    if t0 <= guest <= t1:
        return 0.0
    return guest - t1 if guest > t1 else guest - t0


# -- BIOS, virtio disk, virtio-gpu, virtio-net -----------------------------------

@pytest.fixture(scope="class")
def bios_vm(desktop_image, build_outputs, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bios")
    fwd = free_port()
    qmp = free_port()
    vm = start(tmp, "desktop-bios", build_outputs,
               network={"model": "virtio-net", "forwards": [
                   {"host": fwd, "guest": GUEST_HTTP_PORT}]},
               qmp_tcp=f"127.0.0.1:{qmp}")
    vm.forward_port, vm.qmp_port, vm.tmp = fwd, qmp, tmp
    try:
        vm.session_s = vm.wait_session()
        yield vm
    finally:
        vm.glue.stop()


class TestBios:
    @pytest.fixture
    def vm(self, bios_vm):
        return bios_vm

    def test_boots_to_its_session_on_screen(self, vm):
        print(f"BIOS cold boot: X session up {vm.session_s:.0f} s after the glue started QEMU")
        assert "source=cold" in vm.glue.text()
        check_session_on_screen(vm, vm.tmp, (1280, 800))
        # SeaBIOS, not UEFI
        assert vm.exec("test", "-d", "/sys/firmware/efi").returncode == 1
        assert vm.sh("readlink /sys/block/vda/device/driver").strip().endswith("virtio_blk")

    def test_exec_returns_output_and_status(self, vm):
        p = vm.exec("sh", "-c", "echo out; echo err >&2; exit 7")
        assert (p.returncode, p.stdout, p.stderr) == (7, b"out\n", b"err\n")
        assert vm.exec("sh", "-c", "kill -TERM $$").returncode == 128 + 15
        p = vm.exec("cat", stdin=b"from the host\n")
        assert (p.returncode, p.stdout) == (0, b"from the host\n")
        p = vm.exec("no-such-command-here")
        assert p.returncode == 1 and b"no-such-command-here" in p.stderr
        assert len(p.stderr.decode().strip().splitlines()) == 1
        p = tabvm("exec", "--timeout", "2", vm.name, "--", "sleep", "30", timeout=60)
        assert p.returncode == 124 and b"still running" in p.stderr

    def test_network_both_ways(self, vm):
        check_network(vm, vm.forward_port)
        assert vm.sh("readlink /sys/class/net/*/device/driver").strip().endswith("virtio_net")

    def test_resolution_change_inside_the_guest(self, vm):
        output = vm.output_name()
        try:
            p = vm.x("xrandr", "--output", output, "--mode", "1024x768")
            assert p.returncode == 0, p.stderr
            assert vm.screenshot(vm.tmp / "small.png").size == (1024, 768)
        finally:
            vm.x("xrandr", "--output", output, "--mode", "1280x800")
        assert vm.screenshot(vm.tmp / "back.png").size == (1280, 800)

    def test_edid_carries_the_profile_size(self, vm):
        modes = vm.x("xrandr", "--current").stdout.decode()
        preferred = [line for line in modes.splitlines() if "+" in line and line.startswith(" ")]
        assert preferred and preferred[0].split()[0] == "1280x800", modes

    def test_host_keyboard_reaches_the_guest(self, vm):
        """Keys sent as QMP input events arrive at the guest's PS/2 keyboard, as
        libinput sees them."""
        from qemu.qmp.legacy import QEMUMonitorProtocol
        listener = InGuest(vm, "sh", "-c", "timeout 8 libinput debug-events "
                           "--show-keycodes 2>&1 | grep KEYBOARD_KEY", timeout=60)
        qmp = QEMUMonitorProtocol(("127.0.0.1", vm.qmp_port))
        qmp.connect()
        try:
            for down in (True, False):
                qmp.cmd("input-send-event", events=[
                    {"type": "key", "data": {"down": down,
                                             "key": {"type": "qcode", "data": "a"}}}])
        finally:
            qmp.close()
        out = listener.output(60)
        assert "KEY_A (30) pressed" in out and "KEY_A (30) released" in out, out
        kbd = vm.sh("libinput list-devices | grep -B1 -A3 'AT Translated Set 2 keyboard'")
        assert "keyboard" in kbd

    def test_the_guest_clock_is_right_after_a_resume(self, vm):
        """A resume 10 minutes after the suspend, simulated: the guest's clock is
        put 600 s behind the host's before the suspend (a suspended guest's
        clock stands still, so that is what a 10-minute gap leaves). After the
        resume the glue sets it through qemu-guest-agent, unasked."""
        vm.sh("date -s @$(( $(date +%s) - 600 )) >/dev/null")
        assert abs(guest_clock_offset(vm)) > 590
        assert vm.glue.event("suspend")["ok"]
        reply = vm.glue.event("resume")
        assert reply["ok"] and reply["source"] == "checkpoint", reply
        deadline = time.monotonic() + 30
        while abs(offset := guest_clock_offset(vm)) > 1.0:
            assert time.monotonic() < deadline, f"the guest's clock is {offset:.1f} s off"
            time.sleep(1)
        assert re.search(r"guest-clock corrected_s=(59\d|60\d)\.", vm.glue.text()), \
            vm.glue.text()[-2000:]

    def test_screenshot_errors(self, vm, tmp_path):
        p = tabvm("screenshot", vm.name, str(tmp_path / "shot.jpg"))
        assert p.returncode == 2 and len(p.stderr.splitlines()) == 1
        p = tabvm("screenshot", vm.name, str(tmp_path / "no-dir" / "shot.png"))
        assert p.returncode == 2 and len(p.stderr.splitlines()) == 1


# -- UEFI, through the golden template and a checkpoint ---------------------------

@pytest.fixture(scope="class")
def uefi_setup(desktop_image, build_outputs, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("uefi")
    guest = {"boot": "firmware", "firmware": "uefi", "agent": "qemu-ga"}
    profile = desktop_profile(tmp, "desktop-uefi", guest=guest)
    return tmp, profile


class TestUefi:
    @pytest.fixture
    def setup(self, uefi_setup):
        return uefi_setup

    def test_template_holds_the_uefi_variables(self, setup, build_outputs):
        tmp, profile = setup
        p = tabvm("snapshot", "template", str(profile), "--builddir", str(build_outputs.root),
                  timeout=1200)
        assert p.returncode == 0, p.stdout.decode()[-3000:] + p.stderr.decode()[-3000:]
        template = tmp / "state" / "template"
        for name in ("ram", "devstate", "disk.qcow2", "efivars.fd", "meta.json"):
            assert (template / name).is_file(), name
        vars_file = template / "efivars.fd"
        assert stat.S_IMODE(vars_file.stat().st_mode) == 0o444
        assert vars_file.stat().st_size == Path("/usr/share/OVMF/OVMF_VARS_4M.fd").stat().st_size
        print("UEFI template:", (template / "meta.json").read_text())

    def test_starts_from_the_template_suspends_and_resumes_to_the_same_screen(
            self, setup, build_outputs):
        tmp, profile = setup
        vm = Desktop(profile, "desktop-uefi", build_outputs.root, tmp / "state")
        try:
            assert vm.glue.running(timeout=120) == "template"
            assert (tmp / "state" / "efivars.fd").is_file()
            vm.wait_session(timeout=120)
            assert vm.exec("test", "-d", "/sys/firmware/efi").returncode == 0
            check_session_on_screen(vm, tmp, (1280, 800))
            # the UEFI variable store is the session's: a variable the guest
            # writes is in its file (and so in the checkpoint)
            name = "TabvmTest-3b8f6c0e-3c0f-4a31-9d3e-6b0c1b5d2e11"    # a vendor GUID of our own
            value = secrets.token_hex(4)
            vm.sh(f"mountpoint -q /sys/firmware/efi/efivars || "
                  f"mount -t efivarfs efivarfs /sys/firmware/efi/efivars; "
                  f"printf '\\007\\000\\000\\000{value}' > /sys/firmware/efi/efivars/{name}")
            for _ in range(2):       # a minute's tick of the panel's clock: once more
                before = vm.screenshot(tmp / "before.png")
                reply = vm.glue.event("suspend")
                assert reply["ok"], reply
                assert value.encode() in (tmp / "state" / "efivars.fd").read_bytes()
                reply = vm.glue.event("resume")
                assert reply["ok"] and reply["source"] == "checkpoint", reply
                after = vm.screenshot(tmp / "after.png")
                if after.tobytes() == before.tobytes():
                    break
            assert after.tobytes() == before.tobytes()
            assert vm.sh(f"cat /sys/firmware/efi/efivars/{name} | tail -c 8") == value
        finally:
            vm.glue.stop()


# -- the Windows-ready device set ------------------------------------------------

@pytest.fixture(scope="class")
def windows_vm(desktop_image, build_outputs, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("windows")
    base = yaml.safe_load((REPO / "profiles" / "windows.yaml").read_text())
    base["guest"]["agent"] = "qemu-ga"
    base["snapshot"] = {"template": False}
    fwd = free_port()
    base["network"]["forwards"] = [{"host": fwd, "guest": GUEST_HTTP_PORT}]
    profile = desktop_profile(tmp, "desktop-windows", base=base)
    vm = Desktop(profile, "desktop-windows", build_outputs.root, tmp / "state")
    vm.tmp, vm.forward_port = tmp, fwd
    try:
        vm.glue.running(timeout=120)
        vm.wait_session()
        yield vm
    finally:
        vm.glue.stop()


class TestWindowsDeviceSet:
    """profiles/windows.yaml as it is (AHCI, e1000e, standard VGA, UEFI, xHCI +
    touchscreen, HDA, battery), with only qemu-guest-agent's port added so the
    test can look inside the Linux stand-in (Windows would need virtio-win)."""

    @pytest.fixture
    def vm(self, windows_vm):
        return windows_vm

    def test_boots_the_same_image_on_screen(self, vm):
        check_session_on_screen(vm, vm.tmp, (1920, 1080))
        assert vm.exec("test", "-d", "/sys/firmware/efi").returncode == 0

    def test_devices_are_the_inbox_ones(self, vm):
        disk = vm.sh("lsblk -dno NAME,TRAN | grep -w sda")
        assert "sata" in disk, disk
        assert vm.sh("readlink /sys/class/net/e*/device/driver").strip().endswith("e1000e")
        assert vm.sh("readlink /sys/class/drm/card0/device/driver").strip() \
            .endswith("bochs-drm")
        assert vm.sh("ls /sys/bus/pci/drivers/ahci | grep -c ':'").strip() != "0"

    def test_network(self, vm):
        check_network(vm, vm.forward_port)

    def test_the_standard_vga_keeps_its_size_when_the_host_display_changes(self, vm):
        """The `display` host event: QEMU's standard VGA takes no size from the
        UI, so the guest keeps its screen (a viewer letterboxes it)."""
        p = tabvm("ctl", str(vm.glue.rundir), "display", "width=1080", "height=1920")
        assert p.returncode == 0, p
        reply = json.loads(p.stdout)
        assert reply["follows"] is False and reply["answer"] == "invalid screen layout", reply
        time.sleep(3)
        assert vm.screenshot(vm.tmp / "vga-kept.png").size == (1920, 1080)


# -- tabvm exec's errors -------------------------------------------------------

def test_exec_errors_are_one_line(build_outputs, guest_image, tmp_path):
    """A guest without qemu-guest-agent, a missing profile, a stopped VM and a
    suspended one: one line on stderr, a non-zero exit, at once."""
    def one_line_error(p, status):
        assert p.returncode == status, (p.returncode, p.stderr)
        lines = p.stderr.decode().strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("tabvm: error: "), p.stderr
        return lines[0]

    assert "no profile 'no-such-profile'" in one_line_error(
        tabvm("exec", "no-such-profile", "--", "true"), 2)
    stopped = write_profile(tmp_path, "stopped-vm")
    assert "not running" in one_line_error(tabvm("exec", str(stopped), "--", "true"), 2)
    assert "is not running" in one_line_error(
        tabvm("screenshot", str(stopped), str(tmp_path / "s.png")), 2)

    # the test guest with a qemu-guest-agent port nobody opens
    profile = write_profile(tmp_path, "no-qga")
    text = profile.read_text().replace("memory_mib: 512", "guest: {agent: qemu-ga}\n"
                                       "memory_mib: 512")
    profile.write_text(text)
    glue = Glue(profile, "no-qga", build_outputs.root, tmp_path / "state")
    try:
        glue.running(timeout=120)
        t0 = time.monotonic()
        line = one_line_error(tabvm("exec", str(profile), "--", "true"), 1)
        assert "qemu-guest-agent is not running in the guest" in line
        assert time.monotonic() - t0 < 15
        # the test guest has no display adapter
        assert "screendump" in one_line_error(
            tabvm("screenshot", str(profile), str(tmp_path / "s.png")), 1)
        reply = glue.event("suspend")
        assert reply["ok"], reply
        assert "is suspended" in one_line_error(tabvm("exec", str(profile), "--", "true"), 1)
    finally:
        glue.stop()
