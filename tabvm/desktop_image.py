"""Build the desktop guest: a Debian 12 (bookworm) disk image with an X11 desktop.

``build_desktop_image()`` returns a :class:`DesktopImage`, a compressed qcow2
(virtual size 8 GiB) that boots through SeaBIOS and OVMF, from virtio-blk or
AHCI, on virtio-gpu or the standard VGA. guest/desktop/README.md says what is
inside; the image holds Debian packages and the configuration files of
guest/desktop/rootfs only, no project code.

How it is built (as root; this host's kernel has no partitioned loop devices,
device-mapper or vfat mounts, so nothing is mounted):

1. ``mmdebstrap`` installs PACKAGES from bookworm main of the archive this
   machine's apt uses into a directory; the configuration files are copied in,
   the user is created and units enabled/masked with ``chroot``.
2. The root file system is made with ``mkfs.ext4 -d`` and the (empty) ESP with
   ``mkfs.vfat -C``, each in its own file, and both are copied into a sparse raw
   GPT disk made by ``sfdisk`` (BIOS boot, ESP, root).
3. A one-shot VM (the project's QEMU, the image's own kernel and initramfs via
   ``-kernel``/``-initrd``, ``init=`` a script that deletes itself) runs
   ``grub-install`` for i386-pc and x86_64-efi (removable path) and
   ``update-grub``, then powers off.
4. The project's ``qemu-img`` converts the disk to a compressed qcow2.

The result is cached under ``cache_subdir("desktop", KEY)`` with an
``image.json``; KEY covers PACKAGES, every file of guest/desktop/rootfs, this file and
the archive's bookworm InRelease (so it changes at point releases).

Run ``python -m tabvm.desktop_image`` to build from the command line.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shlex
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from tabvm.paths import REPO, cache_subdir

__all__ = ["PACKAGES", "SESSION_CHECK", "DesktopImage", "DesktopImageError", "DesktopImageNeedsRoot",
           "Partition", "build_desktop_image", "cache_key", "config_files",
           "partition_layout", "read_gpt", "sfdisk_script", "x_command"]

SUITE = "bookworm"
ARCH = "amd64"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
DESKTOP_SRC = REPO / "guest" / "desktop"
ROOTFS_SRC = DESKTOP_SRC / "rootfs"

#: Installed with mmdebstrap --variant=apt, without Recommends. The reasons are
#: in guest/desktop/README.md, which lists the same packages.
PACKAGES: tuple[str, ...] = (
    # base system
    "systemd-sysv", "udev", "dbus", "dbus-user-session", "libpam-systemd",
    "systemd-resolved", "kmod", "procps", "iproute2", "sudo", "ca-certificates", "less",
    # fsck.ext4 for the root file system (at boot, from the initramfs); Priority
    # important, so --variant=apt leaves it out
    "e2fsprogs",
    # kernel and boot (grub-pc/grub-efi-amd64 are left out: their postinst asks
    # for devices; the builder runs grub-install itself)
    "linux-image-amd64", "initramfs-tools", "grub-pc-bin", "grub-efi-amd64-bin",
    "grub2-common",
    # initramfs-tools' Recommends: its default COMPRESS=zstd (without it the
    # initramfs falls back to gzip: 17 % larger, slower to unpack under TCG)
    "zstd",
    # the host's way in
    "qemu-guest-agent",
    # X11 session
    "xserver-xorg-core", "xserver-xorg-input-libinput", "xinit", "x11-xserver-utils",
    "x11-utils", "openbox", "tint2", "xterm", "fonts-dejavu-core",
    # tablet devices: input, battery, Bluetooth, audio
    "libinput-tools", "upower", "bluez", "pipewire", "pipewire-pulse", "wireplumber",
    "pipewire-alsa", "alsa-utils", "pulseaudio-utils",
    # rfkill: block/unblock the Bluetooth controller's radio as a user does
    "rfkill",
    # a touch-drawing client (draws where the fingers are, over the whole screen:
    # the viewer's tests see strokes in screenshots)
    "gromit-mpx",
    # tools tests use
    "curl", "python3",
)

#: The desktop user: auto-login on tty1, X on DISPLAY :0 (startx's defaults).
USER = "user"
UID = 1000
USER_GROUPS = ("audio", "video", "input", "render", "sudo", "netdev", "plugdev",
               "bluetooth")
DISPLAY = ":0"
XAUTHORITY = f"/home/{USER}/.Xauthority"
HOSTNAME = "tabvm-desktop"


def x_command(*argv: str) -> tuple[str, ...]:
    """argv run by root (e.g. through the guest agent's guest-exec) as an X
    client of the user's session."""
    return ("runuser", "-u", USER, "--", "env", f"DISPLAY={DISPLAY}",
            f"XAUTHORITY={XAUTHORITY}", *argv)


#: Exits 0 once the session is up: openbox manages the screen
#: (_NET_SUPPORTING_WM_CHECK set) and the tint2 panel has its window.
SESSION_CHECK: tuple[str, ...] = x_command(
    "sh", "-c", "xprop -root _NET_SUPPORTING_WM_CHECK | grep -q 'window id' && "
    "xwininfo -root -tree | grep -q tint2")

ENABLE_UNITS = ("systemd-networkd.service", "systemd-resolved.service")
#: Nothing waits for the network; the unit would only add a boot delay.
DISABLE_UNITS = ("systemd-networkd-wait-online.service",)
#: Periodic jobs that cost CPU time under TCG and do nothing useful in a VM
#: started from a fresh overlay.
MASK_UNITS = ("apt-daily.timer", "apt-daily-upgrade.timer", "dpkg-db-backup.timer",
              "man-db.timer", "e2scrub_all.timer", "e2scrub_reap.service",
              "fstrim.timer", "logrotate.timer")

# -- disk layout ----------------------------------------------------------------

SECTOR = 512
MIB = 1 << 20
DISK_SIZE = 8 << 30
ESP_SIZE = 100 * MIB

BIOS_BOOT_TYPE = "21686148-6449-6E6F-744E-656564454649"
ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC3B8"
LINUX_FS_TYPE = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"

#: One-shot GRUB installation: marker lines on the serial console.
GRUB_SCRIPT = "/grub-install-once"
GRUB_OK = "TABVM-DESKTOP-GRUB-OK"
GRUB_FAILED = "TABVM-DESKTOP-GRUB-FAILED"
GRUB_VM_TIMEOUT = 900.0
STALE_BUILD_SECONDS = 12 * 3600

Progress = Callable[[str], None]


class DesktopImageError(Exception):
    """A desktop image build step failed; the message says what and how to fix it."""


class DesktopImageNeedsRoot(DesktopImageError):
    """The image is not cached and building it needs root."""


@dataclasses.dataclass(frozen=True)
class DesktopImage:
    """The built image: ``path`` is the compressed qcow2 (use it as the backing
    file of an overlay), ``size_bytes`` its size on disk, ``virtual_size`` the
    disk size the guest sees, ``packages`` the number of installed packages,
    ``build_s`` how long the build took."""

    path: Path
    key: str
    build_s: float
    size_bytes: int
    virtual_size: int
    packages: int

    @property
    def meta_path(self) -> Path:
        return self.path.parent / "image.json"


@dataclasses.dataclass(frozen=True)
class Partition:
    number: int
    name: str
    type_guid: str
    start: int  # sectors
    size: int  # sectors
    uuid: str = ""

    @property
    def offset(self) -> int:
        return self.start * SECTOR

    @property
    def size_bytes(self) -> int:
        return self.size * SECTOR


def partition_layout(disk_size: int = DISK_SIZE, esp_size: int = ESP_SIZE
                     ) -> tuple[Partition, Partition, Partition]:
    """BIOS boot (1 MiB at 1 MiB), ESP, root up to the last whole MiB before the
    backup GPT; every partition starts and ends on a MiB boundary."""
    if disk_size % MIB or esp_size % MIB:
        raise ValueError("disk and ESP sizes must be whole MiB")
    per_mib = MIB // SECTOR
    bios = Partition(1, "BIOS boot", BIOS_BOOT_TYPE, per_mib, per_mib)
    esp = Partition(2, "EFI system", ESP_TYPE, bios.start + bios.size, esp_size // SECTOR)
    root_start = esp.start + esp.size
    root_end = disk_size // SECTOR - per_mib  # the backup GPT needs 33 sectors
    if root_end - root_start < 64 * per_mib:
        raise ValueError(f"a {disk_size} byte disk leaves no room for the root partition")
    root = Partition(3, "root", LINUX_FS_TYPE, root_start, root_end - root_start)
    return bios, esp, root


def _derived_uuid(key: str, what: str) -> str:
    """A version-4-shaped UUID derived from the cache key (reproducible builds)."""
    digest = hashlib.sha256(f"tabvm-desktop {key} {what}".encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


def _esp_volume_id(key: str) -> str:
    return hashlib.sha256(f"tabvm-desktop {key} esp".encode()).hexdigest()[:8].upper()


def with_uuids(layout: Sequence[Partition], key: str) -> tuple[Partition, ...]:
    return tuple(dataclasses.replace(p, uuid=_derived_uuid(key, f"part{p.number}"))
                 for p in layout)


def sfdisk_script(layout: Sequence[Partition], disk_guid: str) -> str:
    """The sfdisk input for a GPT with ``layout``."""
    lines = ["label: gpt", f"label-id: {disk_guid}", "unit: sectors",
             "sector-size: 512", ""]
    for p in layout:
        fields = [f"start={p.start}", f"size={p.size}", f"type={p.type_guid}"]
        if p.uuid:
            fields.append(f"uuid={p.uuid}")
        fields.append(f'name="{p.name}"')
        lines.append(", ".join(fields))
    return "\n".join(lines) + "\n"


def _guid_from_disk(raw: bytes) -> str:
    return str(uuid.UUID(bytes_le=raw)).upper()


def read_gpt(data: bytes) -> list[Partition]:
    """The used entries of the primary GPT in ``data`` (the disk's first sectors:
    at least through the partition entry array, 34 sectors for 128 entries)."""
    header = data[SECTOR:2 * SECTOR]
    if len(header) < 92 or header[:8] != b"EFI PART":
        raise ValueError("no GPT header at LBA 1")
    entries_lba, count, entry_size = struct.unpack_from("<QII", header, 72)
    table = data[entries_lba * SECTOR:entries_lba * SECTOR + count * entry_size]
    if len(table) < count * entry_size:
        raise ValueError(f"the GPT needs {entries_lba * SECTOR + count * entry_size} bytes, "
                         f"got {len(data)}")
    parts = []
    for i in range(count):
        entry = table[i * entry_size:(i + 1) * entry_size]
        if entry[:16] == bytes(16):
            continue
        first, last = struct.unpack_from("<QQ", entry, 32)
        name = entry[56:128].decode("utf-16-le").rstrip("\0")
        parts.append(Partition(i + 1, name, _guid_from_disk(entry[:16]), first,
                               last - first + 1, _guid_from_disk(entry[16:32]).lower()))
    return parts


# -- cache key -------------------------------------------------------------------


def config_files(src: Path = DESKTOP_SRC) -> dict[str, bytes]:
    """Every file the image gets from guest/desktop (its rootfs/: the README is
    documentation, not an input): {path relative to guest/desktop: content}."""
    if not src.is_dir():
        raise DesktopImageError(f"{src} is missing: the desktop configuration files "
                                "are part of the repository")
    files = {}
    for path in sorted((src / "rootfs").rglob("*")):
        if path.is_file() or path.is_symlink():
            try:
                files[path.relative_to(src).as_posix()] = path.read_bytes()
            except OSError as e:
                raise DesktopImageError(f"cannot read {path}: {e.strerror}") from None
    return files


def cache_key(packages: Sequence[str], files: Mapping[str, bytes], builder: bytes,
              archive_state: str) -> str:
    """sha256 (16 hex digits) over the package list, the configuration files,
    the builder's source and the archive's state."""
    h = hashlib.sha256()
    h.update(f"suite {SUITE} {ARCH}\narchive {archive_state}\n".encode())
    for name in packages:
        h.update(f"pkg {name}\n".encode())
    for rel in sorted(files):
        h.update(f"file {rel} {len(files[rel])}\n".encode())
        h.update(files[rel])
    h.update(f"builder {len(builder)}\n".encode())
    h.update(builder)
    return h.hexdigest()[:16]


def archive_state(progress: Progress, refresh: bool = True) -> str:
    """sha256 of the archive's bookworm InRelease, fetched with a private apt
    configuration (tabvm.debian.PrivateApt); the last one fetched if the archive
    cannot be reached, or (``refresh`` off) if there is one."""
    from tabvm.debian import AptError, PrivateApt
    try:
        apt = PrivateApt(SUITE, types="deb")
    except AptError as e:
        raise DesktopImageError(str(e)) from None
    lists = apt.root / "lists"
    if not refresh and _release_files(lists):
        return hashlib.sha256(_release_files(lists)[0].read_bytes()).hexdigest()
    try:
        apt.run("apt-get", "-q", "-o", "Acquire::Languages=none", "update")
    except (AptError, OSError) as e:
        if not _release_files(lists):
            raise DesktopImageError(f"cannot fetch the {SUITE} release file from the Debian "
                                    f"archive (check the network and apt's sources):\n{e}"
                                    ) from None
        progress(f"note: the archive did not answer; using the {SUITE} release file "
                 "fetched before")
    found = _release_files(lists)
    if not found:
        raise DesktopImageError(f"apt-get update wrote no {SUITE} InRelease/Release into "
                                f"{lists}")
    return hashlib.sha256(found[0].read_bytes()).hexdigest()


def _release_files(lists: Path) -> list[Path]:
    return [p for pattern in (f"*_dists_{SUITE}_InRelease", f"*_dists_{SUITE}_Release")
            for p in sorted(lists.glob(pattern))]


def _builder_source() -> bytes:
    return Path(__file__).read_bytes()


# -- build -------------------------------------------------------------------------


def build_desktop_image(progress: Progress = print, outputs=None,
                        refresh: bool = True) -> DesktopImage:
    """Builds (or returns from cache) the desktop image; ``outputs`` is a
    glue.profile.BuildOutputs (default: the project's build/). ``refresh`` off
    (starting a VM): key on the archive state fetched last, without asking the
    archive again, so a cached image is found with no network and at once."""
    if outputs is None:
        from glue.profile import default_outputs
        outputs = default_outputs()
    key = cache_key(PACKAGES, config_files(), _builder_source(),
                    archive_state(progress, refresh))
    final = cache_subdir("desktop") / key
    cached = _load_cached(final, key)
    if cached:
        progress(f"desktop image {key} from cache")
        return cached
    if os.geteuid() != 0:
        raise DesktopImageNeedsRoot("building the desktop image needs root (mmdebstrap, "
                                    "chroot, file ownership): run it as root or with sudo")
    _check_tools(outputs)
    _remove_stale_builds(final.parent)
    start = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=final.parent))
    try:
        out = tmp / "out"
        out.mkdir()
        meta = _build_into(tmp, out, key, outputs, progress)
        meta["build_s"] = round(time.monotonic() - start, 1)
        (out / "image.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
        _publish(out, final)
    except OSError as e:
        raise DesktopImageError(f"desktop image build failed: {e}") from e
    finally:
        _remove_tree(tmp)
    image = _load_cached(final, key)
    if not image:
        raise DesktopImageError(f"desktop cache entry {final} is incomplete after build")
    progress(f"desktop image {key} built in {image.build_s:.0f} s: {image.path} "
             f"({image.size_bytes / MIB:.0f} MiB, virtual {image.virtual_size >> 30} GiB, "
             f"{image.packages} packages)")
    return image


def _check_tools(outputs) -> None:
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    debs = {"mmdebstrap": "mmdebstrap", "sfdisk": "fdisk", "mkfs.ext4": "e2fsprogs",
            "mkfs.vfat": "dosfstools", "chroot": "coreutils"}
    missing = sorted({deb for tool, deb in debs.items() if not shutil.which(tool, path=search)})
    if missing:
        raise DesktopImageError("building the desktop image needs "
                                f"{', '.join(missing)}: apt-get install {' '.join(missing)}")
    if not Path(KEYRING).is_file():
        raise DesktopImageError(f"{KEYRING} is missing: apt-get install debian-archive-keyring")
    for path in (outputs.qemu, outputs.qemu_img, outputs.firmware / "bios-256k.bin"):
        if not Path(path).exists():
            raise DesktopImageError(f"{path} is missing: run `tabvm build` first")


def _build_into(tmp: Path, out: Path, key: str, outputs, progress: Progress) -> dict:
    timings: dict[str, float] = {}
    root = tmp / "root"
    layout = with_uuids(partition_layout(), key)
    root_uuid = _derived_uuid(key, "rootfs")
    esp_id = _esp_volume_id(key)
    # the system's configuration files (not the user's) and /etc/fstab go in
    # before the packages, so that e.g. update-initramfs sees its settings;
    # none of them is a dpkg conffile
    stage = tmp / "stage"
    _install_system_files(stage)
    (stage / "etc" / "fstab").write_text(fstab_text(root_uuid, esp_id))
    t = time.monotonic()
    _mmdebstrap(root, stage, progress)
    timings["mmdebstrap_s"] = round(time.monotonic() - t, 1)

    progress("configuring: files from guest/desktop/rootfs, user, units")
    _configure(root)
    versions = _installed_versions(root)
    kernel, initrd, kernel_version = _copy_boot_files(root, tmp)
    _write_grub_script(root)

    t = time.monotonic()
    progress("making the root file system (mkfs.ext4 -d) and the ESP (mkfs.vfat)")
    rootfs = tmp / "root.ext4"
    _mkfs_ext4(rootfs, root, layout[2].size_bytes, root_uuid)
    _remove_tree(root)
    esp = tmp / "esp.vfat"
    _run(["mkfs.vfat", "-C", "-F", "32", "-n", "EFI", "-i", esp_id, str(esp),
          str(layout[1].size_bytes // 1024)])
    disk = tmp / "disk.raw"
    _make_disk(disk, layout, _derived_uuid(key, "disk"), {2: esp, 3: rootfs})
    rootfs.unlink()
    esp.unlink()
    timings["filesystems_s"] = round(time.monotonic() - t, 1)

    t = time.monotonic()
    progress("installing GRUB (BIOS and UEFI) in a one-shot VM (TCG, about a minute)")
    _install_grub(disk, kernel, initrd, outputs, out / "grub-vm.log", progress)
    timings["grub_vm_s"] = round(time.monotonic() - t, 1)

    t = time.monotonic()
    progress("converting to a compressed qcow2 (qemu-img convert -c)")
    qcow2 = out / "desktop.qcow2"
    _run([str(outputs.qemu_img), "convert", "-c", "-f", "raw", "-O", "qcow2",
          str(disk), str(qcow2)])
    disk.unlink()
    info = json.loads(_run([str(outputs.qemu_img), "info", "--output=json", str(qcow2)]))
    timings["qcow2_s"] = round(time.monotonic() - t, 1)
    return {
        "key": key,
        "suite": SUITE,
        "size_bytes": qcow2.stat().st_size,
        "virtual_size": info["virtual-size"],
        "packages": len(versions),
        "versions": versions,
        "kernel_version": kernel_version,
        "root_uuid": root_uuid,
        "esp_volume_id": f"{esp_id[:4]}-{esp_id[4:]}",
        "partitions": [dataclasses.asdict(p) for p in layout],
        "user": {"name": USER, "uid": UID, "display": DISPLAY, "xauthority": XAUTHORITY},
        "timings": timings,
    }


def fstab_text(root_uuid: str, esp_id: str) -> str:
    return ("# <file system> <mount point> <type> <options> <dump> <pass>\n"
            f"UUID={root_uuid} / ext4 errors=remount-ro 0 1\n"
            f"UUID={esp_id[:4]}-{esp_id[4:]} /boot/efi vfat umask=0077 0 0\n")


def _mmdebstrap(root: Path, stage: Path, progress: Progress) -> None:
    from tabvm.debian import AptError, archive_uri
    try:
        mirror = archive_uri()
    except AptError as e:
        raise DesktopImageError(str(e)) from None
    progress(f"mmdebstrap: {SUITE} main, {len(PACKAGES)} packages and their dependencies "
             "(about 2 minutes)")
    cmd = ["mmdebstrap", "--mode=root", "--variant=apt", f"--arch={ARCH}",
           "--components=main", f"--keyring={KEYRING}",
           "--aptopt=APT::Install-Recommends \"false\"",
           f"--include={','.join(PACKAGES)}",
           f"--setup-hook=cp -R {shlex.quote(str(stage))}/. \"$1/\"",
           SUITE, str(root), f"deb {mirror} {SUITE} main"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", LC_ALL="C.UTF-8")
    tail: list[str] = []
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, errors="replace", env=env)
    except FileNotFoundError:
        raise DesktopImageError("mmdebstrap not found: apt-get install mmdebstrap") from None
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip()
        tail = (tail + [line])[-30:]
        if line.startswith("I: ") and "seconds" not in line:
            progress(f"mmdebstrap: {line[3:]}")
    if proc.wait() != 0:
        raise DesktopImageError(f"mmdebstrap failed (exit {proc.returncode}); last lines:\n"
                                + "\n".join(tail))


def _install_system_files(root: Path) -> None:
    """Copies guest/desktop/rootfs but the user's home into root (mode 0644)."""
    for src in sorted(ROOTFS_SRC.rglob("*")):
        rel = src.relative_to(ROOTFS_SRC)
        if not src.is_dir() and rel.parts[0] != "home":
            _install_file(src, root / rel)


def _configure(root: Path) -> None:
    """Installs guest/desktop/rootfs (again: mmdebstrap copies the host's
    /etc/hostname), the user with its files and the unit settings."""
    home = Path("home") / USER
    _install_system_files(root)
    (root / "boot" / "efi").mkdir(parents=True, exist_ok=True)
    _write_link(root / "etc" / "resolv.conf", "../run/systemd/resolve/stub-resolv.conf")
    # empty: systemd makes a new machine id at every boot of a fresh overlay
    # without treating it as a first boot (no preset-all)
    (root / "etc" / "machine-id").write_text("")
    dbus_id = root / "var" / "lib" / "dbus" / "machine-id"
    if dbus_id.is_symlink() or dbus_id.exists():
        dbus_id.unlink()
        dbus_id.symlink_to("/etc/machine-id")

    groups = [g for g in USER_GROUPS if _has_group(root, g)]
    _chroot(root, "useradd", "--create-home", "--uid", str(UID), "--user-group",
            "--shell", "/bin/bash", "--groups", ",".join(groups), USER)
    _chroot(root, "passwd", "--lock", USER)
    for src in sorted((ROOTFS_SRC / home).rglob("*")):
        rel = src.relative_to(ROOTFS_SRC)
        dest = root / rel
        if src.is_dir():
            dest.mkdir(parents=True, exist_ok=True)
        else:
            _install_file(src, dest)
    for dirpath, dirnames, filenames in os.walk(root / home):
        for name in [dirpath, *(os.path.join(dirpath, n) for n in dirnames + filenames)]:
            os.lchown(name, UID, UID)

    _chroot(root, "systemctl", "enable", *ENABLE_UNITS)
    _chroot(root, "systemctl", "disable", *DISABLE_UNITS)
    _chroot(root, "systemctl", "mask", *MASK_UNITS)
    for leftover in (root / "var" / "cache" / "apt").glob("*.bin"):
        leftover.unlink()


def _install_file(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_symlink() or dest.exists():
        dest.unlink()
    shutil.copyfile(src, dest)
    dest.chmod(0o644)


def _write_link(path: Path, target: str) -> None:
    if path.is_symlink() or path.exists():
        path.unlink()
    path.symlink_to(target)


def _has_group(root: Path, group: str) -> bool:
    text = (root / "etc" / "group").read_text()
    return re.search(rf"^{re.escape(group)}:", text, re.MULTILINE) is not None


def _chroot(root: Path, *args: str) -> str:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8",
           "SYSTEMD_OFFLINE": "1"}
    return _run(["chroot", str(root), *args], env=env)


def _installed_versions(root: Path) -> dict[str, str]:
    out = _run(["dpkg-query", f"--admindir={root / 'var' / 'lib' / 'dpkg'}", "-W",
                "-f", "${db:Status-Abbrev}\t${Package}\t${Version}\n"])
    versions = {}
    for line in out.splitlines():
        status, name, version = line.split("\t")
        if status.startswith("ii"):
            versions[name] = version
    missing = sorted(set(PACKAGES) - set(versions))
    if missing:
        raise DesktopImageError(f"mmdebstrap left out {', '.join(missing)}")
    return versions


def _copy_boot_files(root: Path, tmp: Path) -> tuple[Path, Path, str]:
    kernels = sorted((root / "boot").glob("vmlinuz-*"))
    if len(kernels) != 1:
        raise DesktopImageError(f"expected one kernel in the image's /boot, found "
                                f"{[k.name for k in kernels]}")
    version = kernels[0].name[len("vmlinuz-"):]
    initrd = root / "boot" / f"initrd.img-{version}"
    if not initrd.is_file():
        raise DesktopImageError(f"{initrd.name} is missing: update-initramfs did not run "
                                "in the chroot (see mmdebstrap's output)")
    shutil.copyfile(kernels[0], tmp / "vmlinuz")
    shutil.copyfile(initrd, tmp / "initrd.img")
    return tmp / "vmlinuz", tmp / "initrd.img", version


def _mkfs_ext4(image: Path, root: Path, size: int, fs_uuid: str) -> None:
    with image.open("wb") as f:
        f.truncate(size)
    # GRUB 2.06 cannot read ext4 with metadata_csum_seed; newer mke2fs.conf files
    # (not Debian 12's) may turn it or orphan_file on
    features = ["^metadata_csum_seed"]
    if _mke2fs_version() >= (1, 47):
        features.append("^orphan_file")
    env = dict(os.environ)
    env.pop("MKE2FS_CONFIG", None)
    _run(["mkfs.ext4", "-q", "-F", "-L", "root", "-U", fs_uuid, "-E",
          f"hash_seed={fs_uuid}", "-O", ",".join(features), "-d", str(root), str(image)],
         env=env)


def _mke2fs_version() -> tuple[int, ...]:
    proc = subprocess.run(["mke2fs", "-V"], capture_output=True, text=True)
    m = re.search(r"mke2fs (\d+)\.(\d+)", proc.stdout + proc.stderr)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def _make_disk(disk: Path, layout: Sequence[Partition], disk_guid: str,
               contents: Mapping[int, Path]) -> None:
    """A sparse raw GPT disk of DISK_SIZE with each contents[n] at partition n."""
    with disk.open("wb") as f:
        f.truncate(DISK_SIZE)
    _run(["sfdisk", "--no-reread", "--no-tell-kernel", "-q", str(disk)],
         stdin=sfdisk_script(layout, disk_guid))
    by_number = {p.number: p for p in layout}
    for number, src in contents.items():
        part = by_number[number]
        if src.stat().st_size > part.size_bytes:
            raise DesktopImageError(f"{src.name} does not fit partition {number}")
        copy_sparse(src, disk, part.offset)


def copy_sparse(src: Path, dest: Path, offset: int, block: int = MIB) -> None:
    """Writes src into dest at offset, skipping holes and all-zero blocks (dest
    is sparse and reads as zeros there)."""
    zero = bytes(block)
    with src.open("rb") as fin, dest.open("r+b") as fout:
        size = os.fstat(fin.fileno()).st_size
        pos = 0
        while pos < size:
            try:
                data_start = os.lseek(fin.fileno(), pos, os.SEEK_DATA)
            except OSError:  # ENXIO: only a hole is left
                break
            hole = os.lseek(fin.fileno(), data_start, os.SEEK_HOLE)
            fin.seek(data_start)
            at = data_start
            while at < hole:
                chunk = fin.read(min(block, hole - at))
                if not chunk:
                    break
                if chunk != zero[:len(chunk)]:
                    fout.seek(offset + at)
                    fout.write(chunk)
                at += len(chunk)
            pos = hole


# -- the one-shot GRUB VM -------------------------------------------------------------

_GRUB_SCRIPT_TEXT = f"""#!/bin/sh
# One-shot GRUB installation: run once as init by the tabvm image builder, which
# boots the image's own kernel with root=/dev/vda3. It deletes itself first.
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
if [ "$0" != /run{GRUB_SCRIPT} ]; then
    # go on from a copy on the tmpfs: a deleted file still open on the root file
    # system would keep it from being remounted read-only (clean) at the end
    mountpoint -q /run || mount -t tmpfs tmpfs /run
    cp {GRUB_SCRIPT} /run{GRUB_SCRIPT} && rm -f {GRUB_SCRIPT} && \
        exec /bin/sh /run{GRUB_SCRIPT}
    echo "{GRUB_FAILED}: cannot run from /run"
    echo o > /proc/sysrq-trigger
    sleep 600
fi
install_grub() {{
    set -ex
    mountpoint -q /proc || mount -t proc proc /proc
    mountpoint -q /sys || mount -t sysfs sysfs /sys
    mountpoint -q /dev || mount -t devtmpfs devtmpfs /dev
    modprobe vfat
    mount -t vfat /dev/vda2 /boot/efi
    grub-install --target=i386-pc /dev/vda
    grub-install --target=x86_64-efi --efi-directory=/boot/efi --removable --no-nvram
    update-grub
    test -f /boot/efi/EFI/BOOT/BOOTX64.EFI
    test -s /boot/grub/grub.cfg
    umount /boot/efi
}}
if (install_grub); then status={GRUB_OK}; else status={GRUB_FAILED}; fi
sync
# read-only = clean: GRUB does not replay the ext4 journal
mount -o remount,ro / || status="{GRUB_FAILED}: cannot remount / read-only"
sync
echo "$status"
echo o > /proc/sysrq-trigger
sleep 600
"""


def _write_grub_script(root: Path) -> None:
    path = root / GRUB_SCRIPT.lstrip("/")
    path.write_text(_GRUB_SCRIPT_TEXT)
    path.chmod(0o755)


def grub_vm_command(outputs, disk: Path, kernel: Path, initrd: Path, log: Path) -> list[str]:
    """The one-shot VM: the raw disk on virtio-blk, the image's kernel and
    initramfs, the GRUB script as init, the serial console into ``log``."""
    return [str(outputs.qemu), "-M", "q35", "-accel", "tcg", "-nodefaults",
            "-display", "none", "-L", str(outputs.firmware), "-m", "1G", "-smp", "2",
            "-blockdev", f"driver=raw,node-name=disk,file.driver=file,"
            f"file.filename={disk}",
            "-device", "virtio-blk-pci,drive=disk",
            "-kernel", str(kernel), "-initrd", str(initrd),
            "-append", f"root=/dev/vda3 rw console=ttyS0 init={GRUB_SCRIPT}",
            "-serial", f"file:{log}", "-no-reboot"]


def _install_grub(disk: Path, kernel: Path, initrd: Path, outputs, log: Path,
                  progress: Progress) -> None:
    cmd = grub_vm_command(outputs, disk, kernel, initrd, log)
    start = time.monotonic()
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace")
    except OSError as e:
        raise DesktopImageError(f"cannot start {outputs.qemu}: {e}") from None
    try:
        qemu_out, _ = proc.communicate(timeout=GRUB_VM_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise DesktopImageError(
            f"the GRUB installation VM did not finish within {GRUB_VM_TIMEOUT:.0f} s; "
            f"the end of its console log ({log}):\n{_tail(log)}") from None
    console = log.read_text(errors="replace") if log.exists() else ""
    if GRUB_OK not in (line.strip() for line in console.splitlines()):
        why = "a step failed" if GRUB_FAILED in console else \
            f"QEMU exited with {proc.returncode} without the success marker"
        raise DesktopImageError(
            f"installing GRUB in the one-shot VM failed ({why}); QEMU said:\n"
            f"{qemu_out.strip()}\nthe end of its console log:\n{_tail(log)}")
    progress(f"GRUB installed for i386-pc and x86_64-efi in {time.monotonic() - start:.0f} s")


def _tail(log: Path, lines: int = 40) -> str:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return "(no console log)"
    return "\n".join(text.splitlines()[-lines:])


# -- cache -------------------------------------------------------------------------


def _load_cached(final: Path, key: str) -> DesktopImage | None:
    try:
        meta = json.loads((final / "image.json").read_text())
    except (OSError, ValueError):
        return None
    path = final / "desktop.qcow2"
    if meta.get("key") != key or not path.is_file():
        return None
    try:
        return DesktopImage(path=path, key=key, build_s=float(meta["build_s"]),
                            size_bytes=path.stat().st_size,
                            virtual_size=int(meta["virtual_size"]),
                            packages=int(meta["packages"]))
    except (KeyError, TypeError, ValueError):
        return None


def _publish(out: Path, final: Path) -> None:
    """Renames the finished build into place (replacing an empty directory)."""
    try:
        os.rename(out, final)
    except OSError:
        if not (final / "image.json").is_file():  # not a concurrent winner
            raise


def _mounts_under(path: Path) -> list[str]:
    """Mount points at or below path (mmdebstrap mounts /dev, /proc, ... in its
    root while it runs; a build killed hard may leave them)."""
    prefix = str(path.resolve())
    found = []
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                point = line.split()[1].replace("\\040", " ")
                if point == prefix or point.startswith(prefix + "/"):
                    found.append(point)
    except OSError:
        pass
    return found


def _remove_tree(path: Path) -> None:
    """rmtree, unless something is mounted below path (never delete through a
    bind mount of the host's /dev or /sys)."""
    if not path.exists():
        return
    if _mounts_under(path):
        return
    shutil.rmtree(path, ignore_errors=True)


def _remove_stale_builds(parent: Path) -> None:
    """Removes leftovers of builds killed hard (older than STALE_BUILD_SECONDS)."""
    limit = time.time() - STALE_BUILD_SECONDS
    for path in parent.glob(".build-*"):
        try:
            if path.stat().st_mtime < limit:
                _remove_tree(path)
        except OSError:
            pass


# -- helpers -----------------------------------------------------------------------


def _run(args: Sequence[str], env: Mapping[str, str] | None = None,
         stdin: str | None = None) -> str:
    try:
        proc = subprocess.run(list(args), capture_output=True, text=True, input=stdin,
                              env=dict(env) if env is not None else None)
    except FileNotFoundError:
        raise DesktopImageError(f"{args[0]} not found (needed for: {' '.join(args)})") from None
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip()
        raise DesktopImageError(f"{' '.join(args)} failed (exit {proc.returncode}):\n{detail}")
    return proc.stdout


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tabvm.desktop_image``: builds the image and prints where it is."""
    del argv
    try:
        image = build_desktop_image()
    except DesktopImageError as e:
        print(f"tabvm: error: {e}", file=sys.stderr)
        return 1
    print(describe(image))
    return 0


def describe(image: DesktopImage) -> str:
    return (f"path     {image.path}\nkey      {image.key}\n"
            f"size     {image.size_bytes / MIB:.0f} MiB (virtual {image.virtual_size >> 30} "
            f"GiB)\npackages {image.packages}\nbuilt in {image.build_s:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
