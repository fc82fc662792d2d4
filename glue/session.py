"""A VM session's files on the host, and the few file operations the lifecycle needs.

The state directory of a profile (``Profile.state_dir``, mode 0700) holds::

    lock            flock'd by the one glue that runs this session
    journal.json    what the files below hold (glue.journal)
    ram             guest RAM (memory-backend-file, share=on): live while running
    devstate-N      device state saved by the suspend of epoch N
    disk.qcow2      the session's writes, a qcow2 overlay over the read-only base
    efivars.fd      UEFI's variable store (boot entries, settings): the session's
                    own copy of OVMF's template, written by the firmware like a
                    disk, kept like one (UEFI profiles only)
    qemu.pid        the QEMU the last glue started (killed if a new glue finds it)
    template/       the golden template: ram, devstate, disk.qcow2, efivars.fd, meta.json

The base disk image is never written: QEMU opens it read-only as the overlay's
backing file.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tabvm.paths import cache_subdir

from .journal import Journal, fsync_dir
from .qemu import VmConfig
from .runtime import private_dir

RAM_NAME = "ram"
DISK_NAME = "disk.qcow2"
UEFI_VARS_NAME = "efivars.fd"
TEMPLATE_DIR = "template"
TEMPLATE_META = "meta.json"
DISK_NODE = "disk"


class SessionError(RuntimeError):
    pass


def identity(path: Path) -> str:
    """Cheap identity of a build output: size and mtime (a rebuild changes it)."""
    try:
        st = path.stat()
    except OSError:
        return "missing"
    return f"{st.st_size}:{st.st_mtime_ns}"


def config_key(config: VmConfig, rundir: Path, disk: bool) -> str:
    """What a saved device state depends on: the emulator, firmware (OVMF's code
    image for UEFI), kernel, devices and RAM size. Paths inside the runtime
    directory are normalized."""
    def norm(items: tuple[str, ...]) -> list[str]:
        return [s.replace(str(rundir), "$RUNDIR") for s in items]

    firmware = sorted((p.name, identity(p)) for p in config.firmware_dir.glob("*"))
    data = {
        "qemu": identity(config.qemu), "firmware": firmware,
        "kernel": identity(config.kernel) if config.kernel else None,
        "initrd": identity(config.initrd) if config.initrd else None,
        "uefi": identity(config.uefi[0]) if config.uefi else None,
        "append": config.append, "memory": config.memory, "cpus": config.cpus,
        "accel": config.accel,
        "acpi": [(p.name, identity(p)) for p in config.acpi_tables],
        "chardevs": norm(config.chardevs), "devices": norm(config.devices),
        "objects": norm(config.objects), "blockdevs": norm(config.blockdevs),
        "extra": norm(config.extra), "disk": disk,
        "serial_agent": config.serial_agent, "no_reboot": config.no_reboot,
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def copy_file(src: Path, dst: Path) -> None:
    """Copy ``src`` to ``dst`` (writable by us) through a temporary name."""
    tmp = dst.with_name(f".{dst.name}.tmp")
    shutil.copyfile(src, tmp)
    tmp.chmod(0o600)
    tmp.replace(dst)


def sparse_copy(src: Path, dst: Path) -> int:
    """Copy ``src`` to ``dst`` keeping holes (guest RAM files are mostly holes);
    written to a temporary name and renamed. Bytes of data copied."""
    tmp = dst.with_name(f".{dst.name}.tmp")
    copied = 0
    with src.open("rb") as fin, open(tmp, "wb") as fout:
        size = os.fstat(fin.fileno()).st_size
        fout.truncate(size)
        pos = 0
        while pos < size:
            try:
                start = os.lseek(fin.fileno(), pos, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno == errno.ENXIO:       # only a hole is left
                    break
                raise
            end = os.lseek(fin.fileno(), start, os.SEEK_HOLE)
            off = start
            while off < end:
                n = os.copy_file_range(fin.fileno(), fout.fileno(), end - off, off, off)
                if n == 0:
                    raise SessionError(f"copying {src}: unexpected end at {off}")
                off += n
            copied += end - start
            pos = end
    tmp.replace(dst)
    return copied


def allocated(path: Path) -> int:
    """Bytes of ``path`` backed by disk blocks (a RAM file's real size)."""
    try:
        return path.stat().st_blocks * 512
    except OSError:
        return 0


def builtin_base_disk(size_mib: int) -> Path:
    """An empty ext4 image (label ``tabvm``) the test guest mounts: made once in
    the cache, read-only."""
    path = cache_subdir("disk") / f"ext4-{size_mib}M.img"
    if path.exists():
        return path
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    try:
        with tmp.open("wb") as f:
            f.truncate(size_mib << 20)
        proc = subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "tabvm", "-E",
                               "root_owner=0:0,lazy_itable_init=0", str(tmp)],
                              capture_output=True, text=True)
    except FileNotFoundError:
        raise SessionError("mkfs.ext4 not found: install e2fsprogs") from None
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise SessionError(f"mkfs.ext4 failed: {proc.stderr.strip()}")
    tmp.chmod(0o444)
    tmp.replace(path)
    return path


@dataclass(frozen=True)
class DiskCheck:
    rc: int           # qemu-img check: 0 clean, 2 corrupt, 3 leaked clusters only
    output: str

    @property
    def verdict(self) -> str:
        return {0: "clean", 2: "corrupt", 3: "leaks"}.get(self.rc, f"failed (exit {self.rc})")


class QemuImg:
    def __init__(self, binary: Path):
        self.binary = binary

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        if not self.binary.exists():
            raise SessionError(f"{self.binary} missing: run `tabvm build` first")
        return subprocess.run([str(self.binary), *args], capture_output=True, text=True)

    def create_overlay(self, base: Path, base_format: str, overlay: Path) -> None:
        tmp = overlay.with_name(f".{overlay.name}.tmp")
        proc = self._run("create", "-q", "-f", "qcow2", "-b", str(base.resolve()),
                         "-F", base_format, str(tmp))
        if proc.returncode != 0:
            raise SessionError(f"qemu-img create: {proc.stderr.strip()}")
        tmp.replace(overlay)

    def check(self, image: Path, repair_leaks: bool = False) -> DiskCheck:
        args = ["check", "-f", "qcow2"] + (["-r", "leaks"] if repair_leaks else [])
        proc = self._run(*args, str(image))
        return DiskCheck(proc.returncode, (proc.stdout + proc.stderr).strip())


def disk_blockdev(overlay: Path) -> str:
    return (f"driver=qcow2,node-name={DISK_NODE},file.driver=file,"
            f"file.filename={overlay}")


class Session:
    """The state directory of one profile."""

    def __init__(self, directory: Path):
        directory.parent.mkdir(parents=True, exist_ok=True)
        self.dir = private_dir(directory)
        self.journal = Journal(self.dir)
        self._lock_fd: int | None = None

    ram = property(lambda self: self.dir / RAM_NAME)
    disk = property(lambda self: self.dir / DISK_NAME)
    uefi_vars = property(lambda self: self.dir / UEFI_VARS_NAME)
    template = property(lambda self: self.dir / TEMPLATE_DIR)
    pidfile = property(lambda self: self.dir / "qemu.pid")

    def device_state(self, epoch: int) -> Path:
        return self.dir / f"devstate-{epoch}"

    def lock(self) -> None:
        """Take the session: one glue per session. Refuses if another holds it."""
        fd = os.open(self.dir / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise SessionError(f"{self.dir} is in use by another tabvm (pid {holder})") \
                from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def record_qemu(self, pid: int) -> None:
        self.pidfile.write_text(f"{pid}\n")

    def kill_stale_qemu(self) -> int | None:
        """A QEMU left by a killed glue still maps this session's RAM: kill it.
        Its pid, if there was one."""
        try:
            pid = int(self.pidfile.read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        if str(self.ram).encode() not in cmdline:
            return None
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return None
        wait_exited(pid, timeout=10)
        return pid

    def remove_device_states(self, keep: str | None = None) -> None:
        for path in self.dir.glob("devstate-*"):
            if path.name != keep:
                path.unlink(missing_ok=True)

    def fresh_ram(self) -> None:
        """Drop the RAM file: QEMU creates a new, empty one."""
        self.ram.unlink(missing_ok=True)


def wait_exited(pid: int, timeout: float) -> bool:
    """Wait until process ``pid`` is gone, or a zombie whose threads have all
    exited: only then are its files closed (a zombie thread-group leader may
    wait for other threads still exiting, with a disk image open and locked).
    False if it is still there after ``timeout``."""
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists():
        try:
            zombie = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0] == "Z"
            if zombie and len(os.listdir(f"/proc/{pid}/task")) <= 1:
                return True
        except (OSError, IndexError):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def rss_kib(pid: int) -> int | None:
    """Resident memory of process ``pid`` in KiB (VmRSS); None when it has none
    (a zombie). OSError when there is no such process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return None


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_dir(src: Path, dst: Path) -> None:
    """Move directory ``src`` to ``dst``, replacing what was there."""
    old = dst.with_name(f".{dst.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if dst.exists():
        dst.rename(old)
    src.rename(dst)
    fsync_dir(dst.parent)
    shutil.rmtree(old, ignore_errors=True)
