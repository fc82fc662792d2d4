"""The stock QEMU devices and features a desktop guest needs, in the project's
build (qemu-tree/recipe.toml): display adapters, PNG screendumps (libpng),
user-mode networking (libslirp), AHCI disks and CD-ROMs, e1000e, virtio-net,
virtio-serial, the PS/2 keyboard on q35's i8042, and the firmware beside the
binary (SeaBIOS with its VGA BIOSes, OVMF). No guest OS: the firmware's own
screen is what the screendumps show."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from qemu.qmp.legacy import QEMUMonitorProtocol

ADAPTERS = ("VGA", "virtio-gpu-pci", "bochs-display")
DEVICES = (*ADAPTERS, "e1000e", "virtio-net-pci", "ich9-ahci", "ide-hd", "ide-cd",
           "virtio-serial-pci", "virtserialport")
FIRMWARE = ("bios-256k.bin", "vgabios-stdvga.bin", "vgabios-virtio.bin",
            "vgabios-bochs-display.bin", "OVMF_CODE_4M.fd", "OVMF_VARS_4M.fd",
            "linuxboot_dma.bin", "pvh.bin")
WIDTH, HEIGHT = 1280, 800


class Vm:
    """QEMU on q35 with ``args``, QMP on a unix socket; quits on exit."""

    def __init__(self, outputs, tmp: Path, *args: str):
        self.dir = tmp
        self.sock = tmp / "qmp.sock"
        self.argv = [str(outputs.qemu), "-M", "q35", "-nodefaults", "-no-user-config",
                    "-display", "none", "-accel", "tcg", "-m", "256M",
                    "-L", str(outputs.firmware),
                    "-qmp", f"unix:{self.sock},server=on,wait=off", *args]
        self.proc: subprocess.Popen | None = None
        self.qmp: QEMUMonitorProtocol | None = None

    def __enter__(self) -> Vm:
        log = (self.dir / "qemu.log").open("w")
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while not self.sock.exists():
            if self.proc.poll() is not None:
                pytest.fail(f"QEMU exited with {self.proc.returncode}: "
                            f"{(self.dir / 'qemu.log').read_text()}")
            if time.monotonic() > deadline:
                pytest.fail("QEMU's QMP socket did not appear within 15 s")
            time.sleep(0.01)
        self.qmp = QEMUMonitorProtocol(str(self.sock))
        self.qmp.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        if self.qmp is not None:
            try:
                self.qmp.cmd_raw("quit")
                self.qmp.close()
            except Exception:       # QEMU closes the socket as it quits
                pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def cmd(self, name: str, **args: Any) -> Any:
        assert self.qmp is not None
        resp = self.qmp.cmd_raw(name, args or None)
        assert "error" not in resp, f"QMP {name}: {resp['error']}"
        return resp.get("return")

    def hmp(self, line: str) -> str:
        return self.cmd("human-monitor-command", **{"command-line": line})

    def screendump(self, name: str) -> Image.Image:
        path = self.dir / name
        self.cmd("screendump", filename=str(path), format="png")
        image = Image.open(path)
        assert image.format == "PNG"
        image.load()
        return image


def lit_pixels(image: Image.Image) -> int:
    """Pixels that are not black."""
    return sum(n for level, n in enumerate(image.convert("L").histogram()) if level > 0)


def wait_for_screen(vm: Vm, size: tuple[int, int], timeout: float) -> Image.Image:
    """Screendumps until the firmware has drawn something at ``size`` (before it
    sets a mode QEMU shows a 640x480 placeholder)."""
    deadline = time.monotonic() + timeout
    n = 0
    while True:
        n += 1
        image = vm.screendump(f"screen{n}.png")
        if image.size == size and lit_pixels(image) > 100:
            return image
        if time.monotonic() > deadline:
            pytest.fail(f"no drawn {size} screen within {timeout} s (last: {image.size}, "
                        f"{lit_pixels(image)} lit pixels; {vm.dir})")
        time.sleep(0.5)


def test_the_desktop_devices_are_built(build_outputs):
    out = subprocess.run([str(build_outputs.qemu), "-device", "help"], capture_output=True,
                         text=True, check=True).stdout
    missing = [d for d in DEVICES if f'name "{d}"' not in out]
    assert not missing, f"not in -device help: {missing}"
    netdevs = subprocess.run([str(build_outputs.qemu), "-M", "q35", "-netdev", "help"],
                             capture_output=True, text=True, check=True).stdout
    assert "user" in netdevs.split()


def test_no_display_front_end_is_built(build_outputs):
    """Screens are read through QMP screendump; no VNC/SDL/GTK in the binary."""
    out = subprocess.run([str(build_outputs.qemu), "-display", "help"], capture_output=True,
                         text=True, check=True).stdout
    backends = out.split("Available display backend types:")[1].split("\n\n")[0].split()
    assert backends == ["none"]


def test_the_firmware_is_beside_the_binary(build_outputs):
    missing = [f for f in FIRMWARE if not (build_outputs.firmware / f).is_file()]
    assert not missing, f"missing in {build_outputs.firmware}: {missing}"


def test_the_pc_starts_with_every_device(build_outputs, tmp_path):
    """Adapters at the panel's size with EDID, both NICs on user-mode networking
    (a host port forward to port 0 = any free port), AHCI disk and CD-ROM, the
    guest agent's virtio-serial port; q35's i8042 has its PS/2 keyboard."""
    disk = tmp_path / "disk.raw"
    disk.write_bytes(bytes(1 << 20))
    size = f"xres={WIDTH},yres={HEIGHT},edid=on"
    with Vm(build_outputs, tmp_path, "-S",
            "-device", f"VGA,{size}", "-device", f"virtio-gpu-pci,{size}",
            "-device", f"bochs-display,{size}",
            "-netdev", "user,id=n0,hostfwd=tcp:127.0.0.1:0-:22",
            "-device", "e1000e,netdev=n0,romfile=",
            "-netdev", "user,id=n1", "-device", "virtio-net-pci,netdev=n1,romfile=",
            "-blockdev", f"driver=raw,node-name=disk,file.driver=file,"
                         f"file.filename={disk}",
            "-device", "ide-hd,drive=disk,bus=ide.0", "-device", "ide-cd,bus=ide.1",
            "-device", "virtio-serial-pci,id=vser0",
            "-chardev", f"socket,id=qga,path={tmp_path / 'qga.sock'},server=on,wait=off",
            "-device", "virtserialport,bus=vser0.0,chardev=qga,"
                       "name=org.qemu.guest_agent.0") as vm:
        qtree = vm.hmp("info qtree")
        for dev in (*DEVICES, "i8042", "ps2-kbd"):
            assert f"dev: {dev}," in qtree, f"{dev} not in info qtree"
        forwards = [line.split() for line in vm.hmp("info usernet").splitlines()
                    if "HOST_FORWARD" in line]
        assert len(forwards) == 1, forwards
        port = int(forwards[0][3])
        assert port > 0
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass


def test_seabios_on_the_standard_vga_in_a_png(build_outputs, tmp_path):
    """SeaBIOS runs vgabios-stdvga.bin and prints in text mode (720x400)."""
    with Vm(build_outputs, tmp_path, "-device", f"VGA,xres={WIDTH},yres={HEIGHT},edid=on") as vm:
        wait_for_screen(vm, (720, 400), timeout=20)


@pytest.mark.e2e
@pytest.mark.parametrize("adapter", ADAPTERS)
def test_ovmf_draws_at_the_edid_size(build_outputs, tmp_path, adapter):
    """OVMF (code read-only, a copy of its variable store) boots and sets the
    adapter's EDID preferred mode: the screendump has the panel's size."""
    variables = tmp_path / "vars.fd"
    shutil.copyfile(build_outputs.firmware / "OVMF_VARS_4M.fd", variables)
    with Vm(build_outputs, tmp_path,
            "-drive", "if=pflash,format=raw,unit=0,readonly=on,"
                      f"file={build_outputs.firmware / 'OVMF_CODE_4M.fd'}",
            "-drive", f"if=pflash,format=raw,unit=1,file={variables}",
            "-device", f"{adapter},xres={WIDTH},yres={HEIGHT},edid=on") as vm:
        wait_for_screen(vm, (WIDTH, HEIGHT), timeout=40)


def test_missing_packaged_firmware_names_its_package(tmp_path, monkeypatch):
    from tabvm import qemu_build
    monkeypatch.setattr(qemu_build, "PACKAGED_FIRMWARE",
                        ((tmp_path / "OVMF_CODE_4M.fd", "ovmf"),))
    with pytest.raises(qemu_build.BuildError, match="install Debian's ovmf package"):
        qemu_build.install_outputs(tmp_path / "build", tmp_path / "out")
