"""The built-in VM profile: the test guest with the generated devices.

Turns build outputs (``build/``: QEMU, firmware, AML) and the test guest image into
a ``VmConfig``; the YAML profiles (glue.profile_spec) choose its options.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tabvm.guest import APPEND
from tabvm.paths import REPO

from .audio import HDA_DEVICES
from .bundle import MANIFEST, BundleError, spec_hashes, verify
from .hardware import (CDROM_DEVICE, QGA_DEVICES, cdrom_blockdev, display_device,
                       network_args, qga_chardev)
from .profile_spec import Display, Network
from .qemu import VmConfig

READY_MARKER = "TABVM-GUEST-READY"


class ProfileError(RuntimeError):
    pass


@dataclass(frozen=True)
class BuildOutputs:
    root: Path

    @property
    def qemu(self) -> Path:
        return self.root / "qemu-system-x86_64"

    @property
    def qemu_img(self) -> Path:
        return self.root / "qemu-img"

    @property
    def firmware(self) -> Path:
        return self.root / "firmware"

    def aml(self, name: str) -> Path:
        return self.root / f"{name}.aml"

    def check(self) -> None:
        """The outputs are there; a cross-built bundle (with manifest.json) must
        also match its manifest and this checkout's device specs."""
        for path in (self.qemu, self.firmware / "bios-256k.bin", self.aml("battery")):
            if not path.exists():
                raise ProfileError(f"{path} missing: run `tabvm build` first")
        if (self.root / MANIFEST).exists():
            try:
                verify(self.root, specs=spec_hashes())
            except BundleError as exc:
                raise ProfileError(str(exc)) from None


XHCI = "qemu-xhci,id=xhci"
TOUCH_DEVICE = "tabvm-touchscreen,id=touch,bus=xhci.0"
BT_CHARDEV_ID = "bt"


def bt_device(capture: Path | None = None, **props: object) -> str:
    """The Bluetooth controller on the xHCI bus, fed by chardev ``bt``; ``capture``
    writes its HCI traffic to a file, ``props`` sets other device properties."""
    dev = f"tabvm-bluetooth,id=bt,bus=xhci.0,chardev={BT_CHARDEV_ID}"
    if capture:
        props = {"capture": str(capture), **props}
    return dev + "".join(f",{k.replace('_', '-')}={v}" for k, v in props.items())


def builtin_profile(outputs: BuildOutputs, kernel: Path | None, initrd: Path | None,
                    accel: str, memory: str = "512M", touch: bool = True,
                    bt_chardev: str | None = None,
                    bt_props: dict[str, object] | None = None, audiodev: str | None = None,
                    balloon: BalloonSetup | None = None, scratch_disk: Path | None = None,
                    env: tuple[tuple[str, str], ...] = (), battery: bool = True,
                    cpus: int = 1, qmp_tcp: tuple[str, int] | None = None,
                    display: Display | None = None, network: Network | None = None,
                    qga_socket: Path | None = None, uefi: tuple[Path, Path] | None = None,
                    cdrom: Path | None = None, serial_agent: bool = True,
                    vnc: Path | None = None) -> VmConfig:
    """The test guest (``kernel``/``initrd``; None = the firmware boots the disk or
    the CD-ROM) with the battery, (``touch``) the touchscreen and, given its
    ``-chardev`` options (``bt_chardev``, with ``id=bt``), the Bluetooth controller
    (``bt_props``: its properties, see ``bt_device``);
    given ``-audiodev`` options (``glue.audio.audiodev``), the sound card on it;
    given ``balloon``, virtio-balloon with the ballooning policy object;
    given ``scratch_disk`` (a raw image), a virtio disk the guest sees as /dev/vda.
    ``env`` is added to QEMU's environment; ``battery`` off leaves the battery
    out; ``qmp_tcp`` (host, port) adds a TCP QMP listener (none unless asked).
    The PC around them (glue.hardware): ``display`` adapter, ``network``,
    qemu-guest-agent behind ``qga_socket``, ``uefi`` (OVMF code, variable-store
    template; None = SeaBIOS), an ISO on a ``cdrom``; ``serial_agent``: the test
    guest's agent on the second serial port; ``vnc``: QEMU's VNC server on this
    unix socket (the screen for ``tabvm view``)."""
    outputs.check()
    usb = (XHCI,) if touch or bt_chardev else ()
    return VmConfig(
        qemu=outputs.qemu, firmware_dir=outputs.firmware, kernel=kernel, initrd=initrd,
        append=APPEND, memory=memory, accel=accel, cpus=cpus,
        acpi_tables=(outputs.aml("battery"),) if battery else (),
        chardevs=((bt_chardev,) if bt_chardev else ()) + (balloon.chardevs if balloon else ())
        + ((qga_chardev(qga_socket),) if qga_socket else ()),
        blockdevs=((scratch_blockdev(scratch_disk),) if scratch_disk else ())
        + ((cdrom_blockdev(cdrom),) if cdrom else ()),
        objects=balloon.objects if balloon else (),
        devices=(*((display_device(display),) if display else ()),
                 *(("tabvm-battery,id=battery",) if battery else ()), *usb,
                 *((TOUCH_DEVICE,) if touch else ()),
                 *((bt_device(**(bt_props or {})),) if bt_chardev else ()),
                 *(HDA_DEVICES if audiodev else ()),
                 *(balloon.devices if balloon else ()),
                 *((SCRATCH_DEVICE,) if scratch_disk else ()),
                 *((CDROM_DEVICE,) if cdrom else ()),
                 *(QGA_DEVICES if qga_socket else ())),
        extra=(("-audiodev", audiodev) if audiodev else ()) + (
            ("-qmp", f"tcp:{_host(qmp_tcp[0])}:{qmp_tcp[1]},server=on,wait=off")
            if qmp_tcp else ()) + network_args(network),
        env=env, uefi=uefi, serial_agent=serial_agent, vnc=vnc,
        # a firmware-booted OS reboots like a computer; the test guest's
        # panic=-1 reboot ends QEMU
        no_reboot=kernel is not None,
    )


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


SCRATCH_NODE = "scratch"
SCRATCH_DEVICE = f"virtio-blk-pci,drive={SCRATCH_NODE},id=scratch"


def scratch_blockdev(image: Path) -> str:
    """A raw image as a read-only disk: reading it fills the guest's page cache."""
    return (f"driver=raw,node-name={SCRATCH_NODE},read-only=on,"
            f"file.driver=file,file.filename={image},file.read-only=on")


def scratch_image(path: Path, size: int) -> Path:
    """A sparse raw image of ``size`` bytes (reads as zeros; costs no disk)."""
    with path.open("wb") as f:
        f.truncate(size)
    return path


BALLOON_ID = "balloon0"
POLICY_ID = "balloon-policy"
PRESSURE_CHARDEV_ID = "pressure"
POLICY_PATH = f"/objects/{POLICY_ID}"


@dataclass(frozen=True)
class BalloonSetup:
    """virtio-balloon (deflate-on-oom, free page reporting) and the ballooning
    policy object (devspecs/balloon.yaml) driving it. The host reaches the policy
    through ``pressure_socket`` (a unix socket QEMU listens on, glue.balloon's line
    protocol) and QMP; ``psi`` names a Linux memory pressure file for the policy's
    own PSI triggers; ``props`` sets other properties of the policy object."""

    pressure_socket: Path | None = None
    psi: Path | None = None
    foreground: bool = True
    deflate_on_oom: bool = True
    free_page_reporting: bool = True
    props: tuple[tuple[str, object], ...] = ()

    @property
    def chardevs(self) -> tuple[str, ...]:
        if not self.pressure_socket:
            return ()
        return (f"socket,id={PRESSURE_CHARDEV_ID},path={self.pressure_socket},"
                "server=on,wait=off",)

    @property
    def objects(self) -> tuple[str, ...]:
        opts = [f"tabvm-balloon,id={POLICY_ID},balloon={BALLOON_ID}",
                f"foreground={'on' if self.foreground else 'off'}"]
        if self.pressure_socket:
            opts.append(f"chardev={PRESSURE_CHARDEV_ID}")
        if self.psi:
            opts.append(f"psi={self.psi}")
        opts += [f"{k}={v}" for k, v in self.props]
        return (",".join(opts),)

    @property
    def devices(self) -> tuple[str, ...]:
        onoff = {True: "on", False: "off"}
        return (f"virtio-balloon-pci,id={BALLOON_ID},"
                f"deflate-on-oom={onoff[self.deflate_on_oom]},"
                f"free-page-reporting={onoff[self.free_page_reporting]}",)


def default_outputs() -> BuildOutputs:
    return BuildOutputs(REPO / "build")
