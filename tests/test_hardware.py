"""The PC around the tablet devices as QEMU options (glue.hardware), and the QEMU
command line a firmware boot gets (glue.qemu, glue.profile, glue.lifecycle)."""

from pathlib import Path

import pytest

from glue.hardware import (CDROM_DEVICE, QGA_DEVICES, cdrom_blockdev, disk_device,
                           display_device, hostfwd, netdev, network_args, nic_device,
                           qga_chardev, uefi_args, vga_memory_mib)
from glue.profile_spec import Display, Forward, Network
from glue.qemu import Qemu, VmConfig


def test_display_devices_carry_the_panel_size_and_edid():
    assert display_device(Display("virtio-gpu", 1280, 800)) == \
        "virtio-gpu-pci,id=video0,xres=1280,yres=800,edid=on"
    assert display_device(Display("vga", 1920, 1080)) == \
        "VGA,id=video0,xres=1920,yres=1080,edid=on,vgamem_mb=16"
    assert display_device(Display("bochs", 3840, 2160)) == \
        "bochs-display,id=video0,xres=3840,yres=2160,edid=on,vgamem=64M"
    with pytest.raises(ValueError):
        display_device(Display("cirrus", 640, 480))


@pytest.mark.parametrize("size, mib", [((320, 200), 16), ((1920, 1080), 16),
                                       ((2560, 1600), 32), ((3840, 2160), 64),
                                       ((7680, 4320), 256)])
def test_vga_memory_holds_two_frames(size, mib):
    assert vga_memory_mib(*size) == mib
    assert mib << 20 >= 2 * size[0] * size[1] * 4


def test_network():
    net = Network("e1000e", (Forward("tcp", "127.0.0.1", 2222, 22),
                             Forward("udp", "::1", 5353, 53)))
    assert hostfwd(net.forwards[0]) == "hostfwd=tcp:127.0.0.1:2222-:22"
    assert hostfwd(net.forwards[1]) == "hostfwd=udp:[::1]:5353-:53"
    assert netdev(net) == "user,id=net0,hostfwd=tcp:127.0.0.1:2222-:22,hostfwd=udp:[::1]:5353-:53"
    assert nic_device(net) == "e1000e,id=nic0,netdev=net0,romfile="
    assert nic_device(Network("virtio-net")) == "virtio-net-pci,id=nic0,netdev=net0,romfile="
    assert network_args(None) == ()
    assert network_args(Network("virtio-net")) == (
        "-netdev", "user,id=net0", "-device", "virtio-net-pci,id=nic0,netdev=net0,romfile=")


def test_disks_and_cdrom():
    assert disk_device("disk", "virtio", None) == "virtio-blk-pci,drive=disk,id=disk"
    assert disk_device("disk", "ahci", 1) == "ide-hd,drive=disk,id=disk,bus=ide.0,bootindex=1"
    assert CDROM_DEVICE == "ide-cd,drive=cdrom,id=cdrom,bus=ide.1,bootindex=2"
    assert cdrom_blockdev(Path("/i.iso")).startswith("driver=raw,node-name=cdrom,read-only=on,")
    with pytest.raises(ValueError):
        disk_device("disk", "scsi", None)


def test_uefi_maps_code_read_only_and_the_sessions_variables():
    args = uefi_args(Path("/fw/CODE.fd"), Path("/s/efivars.fd"))
    assert args[-2:] == ("-machine", "pflash0=uefi-code,pflash1=uefi-vars")
    assert "file.filename=/fw/CODE.fd,file.read-only=on" in args[1]
    assert "read-only" not in args[3] and "file.filename=/s/efivars.fd" in args[3]


def test_guest_agent_channel():
    assert qga_chardev(Path("/r/qga.sock")) == "socket,id=qga,path=/r/qga.sock,server=on,wait=off"
    assert QGA_DEVICES[1].startswith("virtserialport,bus=vser0.0,chardev=qga,"
                                     "name=org.qemu.guest_agent.0")


def test_firmware_boot_command_line(tmp_path):
    """No -kernel, no test-guest agent port, a guest reboot stays a reboot."""
    fw = VmConfig(qemu=Path("/q"), firmware_dir=Path("/fw"), kernel=None, initrd=None,
                  serial_agent=False, no_reboot=False)
    cmd = Qemu(fw, tmp_path).command()
    assert "-kernel" not in cmd and "-initrd" not in cmd and "-append" not in cmd
    assert "-no-reboot" not in cmd and "chardev:agent" not in cmd
    assert cmd.count("-serial") == 1
    kernel = VmConfig(qemu=Path("/q"), firmware_dir=Path("/fw"), kernel=Path("/k"),
                      initrd=Path("/i"))
    cmd = Qemu(kernel, tmp_path).command()
    assert cmd[cmd.index("-kernel") + 1] == "/k" and cmd[cmd.index("-initrd") + 1] == "/i"
    assert "-no-reboot" in cmd and "chardev:agent" in cmd


def test_profile_to_config(tmp_path, monkeypatch):
    """builtin_profile puts the PC's devices on the command line."""
    from glue import profile as gp
    monkeypatch.setattr(gp.BuildOutputs, "check", lambda self: None)
    out = gp.BuildOutputs(tmp_path)
    config = gp.builtin_profile(
        out, None, None, "tcg", touch=True, battery=True,
        display=Display("vga", 1920, 1080), network=Network("e1000e"),
        qga_socket=tmp_path / "qga.sock", uefi=(tmp_path / "c", tmp_path / "v"),
        cdrom=tmp_path / "x.iso", serial_agent=False)
    assert config.devices[0].startswith("VGA,") and config.kernel is None
    assert CDROM_DEVICE in config.devices and QGA_DEVICES[1] in config.devices
    assert "-netdev" in config.extra and config.uefi == (tmp_path / "c", tmp_path / "v")
    assert (config.no_reboot, config.serial_agent) == (False, False)
    assert any(c.startswith("socket,id=qga,") for c in config.chardevs)
