"""Build the tabvm test guest: Debian kernel + busybox initramfs + static agent.

``build_guest()`` returns a :class:`GuestImage` (kernel, gzip'd newc initramfs).
Results are cached under ``cache_subdir("guest", key)``; the key covers the
exact Debian package versions (resolved with apt at build time), guest/agent.c,
guest/init and this file. Downloaded .debs are kept in ``cache_subdir("debs")``.

Boot it with ``-kernel K -initrd I -append APPEND``, the console on the first
serial port and the agent (guest/README.md) on the second.

Run ``python -m tabvm.guest`` to build from the command line.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import lzma
import os
import re
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from tabvm.paths import REPO, cache_subdir

__all__ = ["APPEND", "MODULES", "GuestBuildError", "GuestImage", "build_guest",
           "compile_agent", "extract_vmlinux", "write_newc"]

GUEST_SRC = REPO / "guest"
AGENT_SRC = GUEST_SRC / "agent.c"
INIT_SRC = GUEST_SRC / "init"

KERNEL_META = "linux-image-amd64"
BUSYBOX = "busybox-static"
ARCH = "amd64"

#: Kernel command line for the guest: console on ttyS0, reboot on panic.
APPEND = "console=ttyS0 panic=-1 quiet"

#: Modules loaded at boot (``/etc/tabvm-modules``), in order; their dependency
#: closure (modinfo ``depends=`` and ``softdep=``) is copied too. Names use ``_``.
MODULES: tuple[str, ...] = (
    "virtio_pci", "virtio_balloon", "virtio_console", "virtio_blk", "virtio_input",
    "ext4",
    "battery", "ac", "sbshc", "sbs",
    "xhci_pci", "xhci_hcd", "usbhid", "hid_generic", "hid_multitouch", "evdev",
    "btusb",
    # the codec driver first: loaded after the controller, the codec probe
    # often times out under TCG ("Cannot probe codecs, giving up")
    "snd_hda_codec_generic", "snd_hda_intel",
)

#: Copied next to the modules so depmod/modprobe know the built-in ones.
MODULE_META_FILES = ("modules.order", "modules.builtin", "modules.builtin.modinfo")

#: apt's package lists and configuration: resolved versions are remembered
#: until one of these files changes.
APT_STATE_DIRS = ("/var/lib/apt/lists", "/etc/apt")

STALE_BUILD_SECONDS = 12 * 3600
XZ_MAGIC = b"\xfd7zXZ\x00"
CPIO_MTIME = 0


class GuestBuildError(Exception):
    """A guest build step failed; the message says what and how to fix it."""


@dataclasses.dataclass(frozen=True)
class GuestImage:
    """The built guest. ``kernel`` is Debian's bzImage (``-kernel`` needs
    linuxboot_dma.bin); ``vmlinux`` is the same kernel uncompressed, an ELF with
    a PVH entry note: ``-kernel vmlinux`` skips the in-guest XZ decompression
    (about 5 s under TCG) and needs pvh.bin in QEMU's firmware path instead."""

    kernel: Path
    initrd: Path
    kernel_version: str
    key: str
    vmlinux: Path


Progress = Callable[[str], None]


def build_guest(progress: Progress = print) -> GuestImage:
    """Builds (or returns from cache) the test guest."""
    apt = _Apt(progress)
    try:
        try:
            return _build_guest(apt, progress)
        except _ListsUpdated:  # a resolved version could not be fetched: resolve again
            return _build_guest(apt, progress)
    except OSError as e:
        raise GuestBuildError(f"guest build failed: {e}") from e


def _build_guest(apt: _Apt, progress: Progress) -> GuestImage:
    packages = _resolve_packages(apt)
    key = _cache_key(packages)
    final = cache_subdir("guest") / key
    cached = _load_cached(final, key)
    if cached:
        progress(f"guest {key} from cache")
        return cached
    _remove_stale_builds(final.parent)
    debs = {name: _download(apt, name, version) for name, version in packages.items()}
    with tempfile.TemporaryDirectory(prefix=".build-", dir=final.parent) as tmp:
        out = Path(tmp) / "out"
        out.mkdir()
        kernel_version = _build_into(Path(tmp), out, debs, progress)
        meta = {"key": key, "kernel_version": kernel_version, "packages": packages}
        (out / "guest.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
        _publish(out, final)
    image = _load_cached(final, key)
    if not image:
        raise GuestBuildError(f"guest cache entry {final} is incomplete after build")
    progress(f"guest {key} built in {final}")
    return image


# -- cache -------------------------------------------------------------------


def _cache_key(packages: dict[str, str]) -> str:
    h = hashlib.sha256()
    for name in sorted(packages):
        h.update(f"pkg {name}={packages[name]}\n".encode())
    for path in (AGENT_SRC, INIT_SRC, Path(__file__)):
        data = _read_source(path)
        h.update(f"file {path.name} {len(data)}\n".encode())
        h.update(data)
    return h.hexdigest()[:16]


def _read_source(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise GuestBuildError(f"cannot read guest source {path}: {e.strerror}") from None


def _load_cached(final: Path, key: str) -> GuestImage | None:
    try:
        meta = json.loads((final / "guest.json").read_text())
    except (OSError, ValueError):
        return None
    image = GuestImage(kernel=final / "vmlinuz", initrd=final / "initrd.img",
                       kernel_version=meta.get("kernel_version", ""), key=key,
                       vmlinux=final / "vmlinux")
    files = (image.kernel, image.initrd, image.vmlinux)
    if meta.get("key") != key or not all(f.is_file() for f in files):
        return None
    return image


def _publish(out: Path, final: Path) -> None:
    """Renames the finished build into place (replacing an empty directory)."""
    try:
        os.rename(out, final)
    except OSError:
        if not (final / "guest.json").is_file():  # not a concurrent winner
            raise


def _remove_stale_builds(parent: Path) -> None:
    """Removes leftovers of builds killed hard (older than STALE_BUILD_SECONDS)."""
    limit = time.time() - STALE_BUILD_SECONDS
    for path in parent.glob(".build-*"):
        try:
            if path.stat().st_mtime < limit:
                shutil.rmtree(path, ignore_errors=True)
        except OSError:
            pass


# -- apt ---------------------------------------------------------------------


class _Apt:
    """Runs apt commands; the first failure triggers one ``apt-get update``."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.updated = False

    def run(self, args: Sequence[str], cwd: Path | None = None) -> str:
        """Runs args; on failure updates the package lists once and retries."""
        try:
            return _run(args, cwd=cwd)
        except GuestBuildError:
            if self.updated:
                raise
        self.update()
        return _run(args, cwd=cwd)

    def update(self) -> None:
        self.progress("apt: package lists missing or stale, running apt-get update")
        self.updated = True
        _run(["apt-get", "update", "-q"])


class _ListsUpdated(Exception):
    """apt-get update ran after a download failed: versions must be resolved again."""


def _resolve_packages(apt: _Apt) -> dict[str, str]:
    """Returns {package: exact version} for the kernel image and busybox.

    apt-cache takes ~1 s here (no pkgcache.bin), so the answer is remembered
    for as long as apt's package lists and configuration are unchanged.
    """
    memo = cache_subdir("guest") / "resolved.json"
    state = _apt_state()
    try:
        saved = json.loads(memo.read_text())
        if saved["state"] == state:
            return saved["packages"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    apt.progress("resolving Debian package versions")
    _check_arch()
    packages = _query_packages(apt)
    tmp = memo.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"state": _apt_state(), "packages": packages}))
    os.replace(tmp, memo)
    return packages


def _apt_state() -> str:
    """A digest of the names, sizes and mtimes of apt's lists and config files."""
    h = hashlib.sha256()
    for top in APT_STATE_DIRS:
        for path in sorted(Path(top).rglob("*")) if Path(top).is_dir() else ():
            if path.name == "lock":
                continue
            try:
                st = path.stat()
            except OSError:
                continue
            h.update(f"{path} {st.st_size} {st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _query_packages(apt: _Apt) -> dict[str, str]:
    out = apt.run(["apt-cache", "show", "--no-all-versions", KERNEL_META, BUSYBOX])
    stanzas = {_field(s, "Package"): s for s in out.split("\n\n") if s.strip()}
    if set(stanzas) != {KERNEL_META, BUSYBOX}:
        raise GuestBuildError(f"apt-cache show {KERNEL_META} {BUSYBOX} gave {sorted(stanzas)}")
    depends = _field(stanzas[KERNEL_META], "Depends")
    m = re.search(r"\b(linux-image-\d[^\s,(]*-amd64)\b(?:\s*\(=\s*([^)\s]+)\))?", depends)
    if not m:
        raise GuestBuildError(f"cannot find the kernel image in {KERNEL_META}'s Depends")
    image, version = m.group(1), m.group(2)
    if not version:
        info = apt.run(["apt-cache", "show", "--no-all-versions", image])
        version = _field(info, "Version")
    return {image: version, BUSYBOX: _field(stanzas[BUSYBOX], "Version")}


def _field(control: str, name: str) -> str:
    m = re.search(rf"^{name}: *(.*)$", control, re.MULTILINE)
    if not m:
        raise GuestBuildError(f"apt-cache output has no {name} field")
    return m.group(1).strip()


def _check_arch() -> None:
    arch = _run(["dpkg", "--print-architecture"]).strip()
    if arch != ARCH:
        raise GuestBuildError(f"the guest builder needs an {ARCH} host (this is {arch})")


def _download(apt: _Apt, name: str, version: str) -> Path:
    """Returns the cached .deb for name=version, downloading it if needed."""
    debs = cache_subdir("debs")
    deb = debs / f"{name}_{version.replace(':', '%3a')}_{ARCH}.deb"
    if deb.is_file():
        return deb
    apt.progress(f"downloading {name} {version}")
    with tempfile.TemporaryDirectory(prefix=".dl-", dir=debs) as tmp:
        try:
            _run(["apt-get", "download", "-q", f"{name}={version}"], cwd=Path(tmp))
        except GuestBuildError:
            if apt.updated:
                raise
            apt.update()
            raise _ListsUpdated from None
        got = sorted(Path(tmp).glob("*.deb"))
        if len(got) != 1:
            raise GuestBuildError(f"apt-get download {name}={version} gave {len(got)} files")
        os.replace(got[0], deb)
    return deb


# -- build steps -------------------------------------------------------------


def _build_into(tmp: Path, out: Path, debs: dict[str, Path], progress: Progress) -> str:
    kernel_deb = next(deb for name, deb in debs.items() if name != BUSYBOX)
    root = tmp / "root"
    root.mkdir()
    progress(f"extracting {kernel_deb.name}")
    kernel_tree = _extract(kernel_deb, tmp / "kernel")
    version = _kernel_version(kernel_tree)
    shutil.copyfile(kernel_tree / "boot" / f"vmlinuz-{version}", out / "vmlinuz")
    progress("unpacking vmlinux (PVH ELF) from the bzImage")
    (out / "vmlinux").write_bytes(extract_vmlinux(out / "vmlinuz"))

    progress(f"extracting {debs[BUSYBOX].name}")
    busybox = _extract(debs[BUSYBOX], tmp / "busybox") / "bin" / "busybox"
    _install_busybox(busybox, root)

    progress("compiling guest agent (gcc -static)")
    compile_agent(root / "sbin" / "tabvm-agent")
    _install(INIT_SRC, root / "init", 0o755)

    progress(f"staging kernel modules for {version}")
    loaded = _stage_modules(kernel_tree, root, version, progress)
    (root / "etc").mkdir(exist_ok=True)
    (root / "etc" / "tabvm-modules").write_text("".join(f"{m}\n" for m in loaded))
    for d in ("dev", "proc", "sys", "tmp", "run", "root", "mnt"):
        (root / d).mkdir(exist_ok=True)

    progress("packing initramfs (newc + gzip)")
    with gzip.GzipFile(out / "initrd.img", "wb", compresslevel=6, mtime=0) as f:
        write_newc(root, f, DEVICE_NODES)
    return version


def _extract(deb: Path, dest: Path) -> Path:
    dest.mkdir()
    _run(["dpkg-deb", "-x", str(deb), str(dest)])
    return dest


def _kernel_version(tree: Path) -> str:
    """The single VERSION with both boot/vmlinuz-VERSION and a modules directory."""
    mods = _modules_dir(tree)
    versions = sorted(p.name for p in mods.iterdir()) if mods.is_dir() else []
    if len(versions) != 1 or not (tree / "boot" / f"vmlinuz-{versions[0]}").is_file():
        raise GuestBuildError(f"unexpected kernel package layout: modules for {versions}")
    return versions[0]


def _modules_dir(tree: Path) -> Path:
    """lib/modules, or usr/lib/modules in packages built for merged /usr."""
    for rel in ("lib/modules", "usr/lib/modules"):
        if (tree / rel).is_dir():
            return tree / rel
    return tree / "lib" / "modules"


def extract_vmlinux(bzimage: Path) -> bytes:
    """Returns the ELF kernel inside an XZ-compressed bzImage (Debian's choice)."""
    data = bzimage.read_bytes()
    start = data.find(XZ_MAGIC)
    while start >= 0:
        try:
            elf = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data[start:])
        except lzma.LZMAError:
            elf = b""
        if elf.startswith(b"\x7fELF"):
            return elf
        start = data.find(XZ_MAGIC, start + 1)
    raise GuestBuildError(f"{bzimage} holds no XZ-compressed ELF kernel")


def _install(src: Path, dest: Path, mode: int) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)
    dest.chmod(mode)


def _install_busybox(busybox: Path, root: Path) -> None:
    """Installs busybox as /bin/busybox with a symlink for every applet."""
    _install(busybox, root / "bin" / "busybox", 0o755)
    applets = _run([str(busybox), "--list-full"]).split()
    for applet in applets:
        link = root / applet
        if link.name == "busybox" or link.exists():
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to("/bin/busybox")
    if not (root / "sbin" / "modprobe").is_symlink():
        raise GuestBuildError("busybox-static has no modprobe applet")


def compile_agent(dest: Path) -> None:
    """Compiles guest/agent.c into a static binary at dest."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    cmd = ["gcc", "-static", "-Os", "-Wall", "-Werror", "-s", "-o", str(dest), str(AGENT_SRC)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True)
    except FileNotFoundError:
        raise GuestBuildError("gcc not found: install the Debian package gcc") from None
    if proc.returncode == 0:
        return
    if re.search(r"cannot find -lc\b|fatal error: [\w/]+\.h: No such file", proc.stderr):
        raise GuestBuildError("building the static agent needs the C library's headers "
                              "and libc.a: install the Debian package libc6-dev\n"
                              + proc.stderr.strip())
    raise GuestBuildError(f"compiling {AGENT_SRC} failed:\n{proc.stderr.strip()}")


# -- kernel modules ----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Module:
    name: str
    path: Path  # relative to lib/modules/VERSION
    depends: tuple[str, ...]
    softdeps: tuple[str, ...]  # module names or aliases, "pre:" before "post:"
    aliases: tuple[str, ...]


def _stage_modules(tree: Path, root: Path, version: str, progress: Progress) -> list[str]:
    """Copies MODULES + closure, runs depmod; returns the names to load at boot."""
    src = _modules_dir(tree) / version
    index = scan_modules(src)
    wanted = [m for m in MODULES if m in index]
    for missing in sorted(set(MODULES) - set(wanted)):
        progress(f"note: module {missing} is not in kernel {version}, skipped")
    closure = module_closure(index, wanted)
    dest = root / "lib" / "modules" / version
    for name in sorted(closure):
        _install(src / index[name].path, dest / index[name].path, 0o644)
    for meta in MODULE_META_FILES:
        if (src / meta).is_file():
            _install(src / meta, dest / meta, 0o644)
    _depmod(root, version)
    return boot_order(index, wanted)


def scan_modules(moddir: Path) -> dict[str, Module]:
    """Reads the .modinfo section of every .ko below moddir/kernel."""
    index = {}
    for ko in sorted((moddir / "kernel").rglob("*.ko")):
        name = ko.name[:-3].replace("-", "_")
        info = read_modinfo(ko)
        index[name] = Module(
            name=name,
            path=ko.relative_to(moddir),
            depends=tuple(d.replace("-", "_") for v in info.get("depends", [])
                          for d in v.split(",") if d),
            softdeps=tuple(w for v in info.get("softdep", []) for w in v.split()
                           if not w.endswith(":")),
            aliases=tuple(info.get("alias", [])),
        )
    return index


def read_modinfo(ko: Path) -> dict[str, list[str]]:
    """Parses the ``.modinfo`` section of an ELF64 little-endian kernel module."""
    data = ko.read_bytes()
    if data[:6] != b"\x7fELF\x02\x01":
        raise GuestBuildError(f"{ko} is not an uncompressed ELF64 LE module")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize)
                for i in range(shnum)]
    strtab = sections[shstrndx][4]
    info: dict[str, list[str]] = {}
    for name_off, _type, _flags, _addr, offset, size in sections:
        start = strtab + name_off
        if data[start:data.index(b"\0", start)] != b".modinfo":
            continue
        for entry in data[offset:offset + size].split(b"\0"):
            key, sep, value = entry.decode(errors="replace").partition("=")
            if sep:
                info.setdefault(key, []).append(value)
    return info


def _resolve(index: dict[str, Module], ref: str) -> list[str]:
    """Module names for a module name or an (exact) alias, e.g. crypto-crc32c."""
    name = ref.replace("-", "_")
    if name in index:
        return [name]
    return sorted(m.name for m in index.values() if ref in m.aliases)


def module_closure(index: dict[str, Module], names: Iterable[str]) -> set[str]:
    """Names plus everything they depend on (hard deps and softdeps)."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        mod = index[name]
        todo.extend(d for d in mod.depends if d in index)
        for ref in mod.softdeps:
            todo.extend(_resolve(index, ref))
    return seen


def boot_order(index: dict[str, Module], wanted: Sequence[str]) -> list[str]:
    """Wanted modules in order, each preceded by its softdep targets.

    busybox modprobe follows modules.dep but not softdeps, so those are loaded
    explicitly (e.g. crc32c before ext4).
    """
    order: list[str] = []
    for name in wanted:
        for ref in index[name].softdeps:
            order.extend(m for m in _resolve(index, ref) if m not in order)
        if name not in order:
            order.append(name)
    return order


def _depmod(root: Path, version: str) -> None:
    """Writes modules.dep/alias/... with kmod's depmod, else busybox's applet."""
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    depmod = shutil.which("depmod", path=search)
    cmd = [depmod] if depmod else [str(root / "bin" / "busybox"), "depmod"]
    _run(cmd + ["-b", str(root), version])
    if not (root / "lib" / "modules" / version / "modules.dep").is_file():
        raise GuestBuildError(f"{' '.join(cmd)} wrote no modules.dep")


# -- initramfs (newc written in Python) ----------------------------------------
# The archive is written here rather than with GNU cpio so that it needs no
# root (device nodes), and is reproducible by construction: entries sorted by
# path, uid/gid 0, mtime CPIO_MTIME, inode numbers assigned in order,
# permissions normalized (0755 dirs and executables, 0644 other files).

#: (path, mode, major, minor) of device nodes put in the archive itself;
#: the kernel needs /dev/console to give /init its stdin/stdout.
DEVICE_NODES: tuple[tuple[str, int, int, int], ...] = (
    ("dev/console", stat.S_IFCHR | 0o600, 5, 1),
    ("dev/null", stat.S_IFCHR | 0o666, 1, 3),
)


def write_newc(root: Path, out, nodes: Sequence[tuple[str, int, int, int]] = ()) -> None:
    """Writes root's tree (plus device nodes) as a newc cpio archive to out."""
    entries: dict[str, tuple[int, int, Path | None]] = {}  # path -> (mode, rdev, source)
    for path in root.rglob("*"):
        entries[path.relative_to(root).as_posix()] = (_cpio_mode(path), 0, path)
    for rel, mode, major, minor in nodes:
        entries[rel] = (mode, os.makedev(major, minor), None)
    for ino, rel in enumerate(sorted(entries), start=1):
        mode, rdev, source = entries[rel]
        if stat.S_ISLNK(mode):
            data = os.readlink(source).encode()
        elif stat.S_ISREG(mode):
            data = source.read_bytes()
        else:
            data = b""
        _write_cpio_entry(out, rel, ino, mode, rdev, data)
    _write_cpio_entry(out, "TRAILER!!!", 0, 0, 0, b"")


def _cpio_mode(path: Path) -> int:
    st = path.lstat()
    if stat.S_ISLNK(st.st_mode):
        return stat.S_IFLNK | 0o777
    if stat.S_ISDIR(st.st_mode):
        return stat.S_IFDIR | 0o755
    if stat.S_ISREG(st.st_mode):
        return stat.S_IFREG | (0o755 if st.st_mode & 0o111 else 0o644)
    raise GuestBuildError(f"cannot put {path} in the initramfs: not a file, dir or symlink")


def _write_cpio_entry(out, name: str, ino: int, mode: int, rdev: int, data: bytes) -> None:
    encoded = name.encode() + b"\0"
    fields = (ino, mode, 0, 0, 2 if stat.S_ISDIR(mode) else 1, CPIO_MTIME, len(data),
              0, 0, os.major(rdev), os.minor(rdev), len(encoded), 0)
    header = b"070701" + b"".join(b"%08X" % f for f in fields)
    out.write(header + encoded + _pad(len(header) + len(encoded)))
    out.write(data + _pad(len(data)))


def _pad(n: int) -> bytes:
    return b"\0" * (-n % 4)


# -- helpers -----------------------------------------------------------------


def _run(args: Sequence[str], cwd: Path | None = None) -> str:
    try:
        proc = subprocess.run(list(args), cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError:
        raise GuestBuildError(f"{args[0]} not found (needed for: {' '.join(args)})") from None
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip()
        raise GuestBuildError(f"{' '.join(args)} failed (exit {proc.returncode}):\n{detail}")
    return proc.stdout


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m tabvm.guest``: builds the guest and prints where it is."""
    del argv
    try:
        image = build_guest()
    except GuestBuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"kernel:  {image.kernel}\nvmlinux: {image.vmlinux}\ninitrd:  {image.initrd}\n"
          f"version: {image.kernel_version}\nkey:     {image.key}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
