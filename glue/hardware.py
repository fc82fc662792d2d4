"""The PC around the tablet devices: firmware, disk and CD-ROM, display, keyboard,
network and the qemu-guest-agent channel, as QEMU options.

Every choice here is one a profile makes (glue.profile_spec); the functions turn
it into ``-device``/``-blockdev``/``-netdev`` arguments. Which device, and why:

- **Disk bus** ``virtio`` (virtio-blk-pci: fastest, Linux's inbox virtio_blk) or
  ``ahci`` (``ide-hd`` on q35's built-in ICH9 AHCI controller: Windows 8.1+ boots
  from SATA with its inbox ``storahci``; it has no virtio-blk driver).
- **CD-ROM** ``ide-cd`` on the same AHCI controller, whatever the disk bus (q35
  always has it; virtio has no CD-ROM without virtio-scsi). Firmware tries the
  disk first, then the CD-ROM: an empty disk boots the installer.
- **Display** ``virtio-gpu`` (virtio-gpu-pci, Linux's virtio_gpu) or ``vga``
  (QEMU's standard VGA: Windows' inbox BasicDisplay through VBE, Linux's
  bochs-drm) or ``bochs`` (bochs-display, no legacy VGA). The profile's size is
  the adapter's initial mode and the preferred mode of its EDID, so the guest
  starts at the tablet panel's resolution.
- **Keyboard**: the PS/2 keyboard of q35's i8042 controller, which the machine
  always has. It works in SeaBIOS, OVMF, boot loaders, installers and every OS
  with an inbox driver (Linux atkbd, Windows i8042prt), needs no USB stack and
  no extra device, and QEMU routes host keys (QMP ``input-send-event``, a
  viewer) to it. On-screen keyboards inside the guest need nothing.
- **Network**: user-mode networking (libslirp): no root, no bridge, no tap,
  which is all an Android app can have. NIC ``virtio-net`` (virtio-net-pci) or
  ``e1000e`` (Intel 82574L: Windows' inbox driver). Port forwards listen on the
  host address the profile gives (127.0.0.1 unless it says otherwise). The NICs
  carry no PXE option ROM (``romfile=``): nothing boots from the network.
- **Guest agent**: Debian's ``qemu-guest-agent`` on the virtio-serial port
  ``org.qemu.guest_agent.0``, behind a unix socket in the runtime directory
  (glue.guest_agent speaks to it).
"""

from __future__ import annotations

from pathlib import Path

from .profile_spec import Display, Forward, Network

QGA_CHARDEV_ID = "qga"
QGA_PORT_NAME = "org.qemu.guest_agent.0"
QGA_SOCKET = "qga.sock"
VNC_SOCKET = "vnc.sock"      # QEMU's VNC server: the screen for viewers (tabvm view)
VIDEO_ID = "video0"
NETDEV_ID = "net0"
NIC_ID = "nic0"
CDROM_NODE = "cdrom"
UEFI_CODE_NODE = "uefi-code"
UEFI_VARS_NODE = "uefi-vars"
#: q35's ICH9 AHCI controller has six ports: the disk on the first, the CD-ROM on the second
AHCI_DISK_BUS = "ide.0"
AHCI_CDROM_BUS = "ide.1"

_NIC_MODELS = {"virtio-net": "virtio-net-pci", "e1000e": "e1000e"}


def display_device(display: Display) -> str:
    """The display adapter at the profile's size (its initial mode and EDID's
    preferred mode). The standard VGA gets video memory for two frames."""
    w, h = display.width, display.height
    if display.adapter == "virtio-gpu":
        return f"virtio-gpu-pci,id={VIDEO_ID},xres={w},yres={h},edid=on"
    if display.adapter == "vga":
        return f"VGA,id={VIDEO_ID},xres={w},yres={h},edid=on,vgamem_mb={vga_memory_mib(w, h)}"
    if display.adapter == "bochs":
        return (f"bochs-display,id={VIDEO_ID},xres={w},yres={h},edid=on,"
                f"vgamem={vga_memory_mib(w, h)}M")
    raise ValueError(f"unknown display adapter {display.adapter!r}")


def vga_memory_mib(width: int, height: int) -> int:
    """Video memory for two 32-bit frames, a power of two from 16 MiB (QEMU's default)."""
    need = 2 * width * height * 4
    mib = 16
    while mib << 20 < need:
        mib *= 2
    return mib


def hostfwd(fwd: Forward) -> str:
    """A slirp ``hostfwd`` rule: ``tcp:127.0.0.1:8080-:80``."""
    address = f"[{fwd.address}]" if ":" in fwd.address else fwd.address
    return f"hostfwd={fwd.proto}:{address}:{fwd.host}-:{fwd.guest}"


def netdev(network: Network) -> str:
    """The user-mode network backend with the profile's port forwards."""
    return ",".join([f"user,id={NETDEV_ID}", *(hostfwd(f) for f in network.forwards)])


def nic_device(network: Network) -> str:
    try:
        model = _NIC_MODELS[network.model]
    except KeyError:
        raise ValueError(f"unknown NIC model {network.model!r}") from None
    return f"{model},id={NIC_ID},netdev={NETDEV_ID},romfile="


def network_args(network: Network | None) -> tuple[str, ...]:
    """``-netdev``/``-device`` arguments (none for no network)."""
    if network is None:
        return ()
    return ("-netdev", netdev(network), "-device", nic_device(network))


def qga_chardev(socket: Path) -> str:
    return f"socket,id={QGA_CHARDEV_ID},path={socket},server=on,wait=off"


QGA_DEVICES = ("virtio-serial-pci,id=vser0",
               f"virtserialport,bus=vser0.0,chardev={QGA_CHARDEV_ID},name={QGA_PORT_NAME},"
               "id=qga0")


def disk_device(node: str, bus: str, bootindex: int | None) -> str:
    """The guest's disk on ``bus`` (virtio | ahci)."""
    boot = f",bootindex={bootindex}" if bootindex is not None else ""
    if bus == "virtio":
        return f"virtio-blk-pci,drive={node},id=disk{boot}"
    if bus == "ahci":
        return f"ide-hd,drive={node},id=disk,bus={AHCI_DISK_BUS}{boot}"
    raise ValueError(f"unknown disk bus {bus!r}")


def cdrom_blockdev(iso: Path) -> str:
    return (f"driver=raw,node-name={CDROM_NODE},read-only=on,"
            f"file.driver=file,file.filename={iso},file.read-only=on")


CDROM_DEVICE = f"ide-cd,drive={CDROM_NODE},id=cdrom,bus={AHCI_CDROM_BUS},bootindex=2"


def uefi_args(code: Path, variables: Path) -> tuple[str, ...]:
    """OVMF in the two flash chips: its code read-only, the session's own
    variable store writable (QEMU writes variables back to the file)."""
    return ("-blockdev", f"driver=raw,node-name={UEFI_CODE_NODE},read-only=on,"
                         f"file.driver=file,file.filename={code},file.read-only=on",
            "-blockdev", f"driver=raw,node-name={UEFI_VARS_NODE},"
                         f"file.driver=file,file.filename={variables}",
            "-machine", f"pflash0={UEFI_CODE_NODE},pflash1={UEFI_VARS_NODE}")
