"""Why a session gets its own copy of the golden template's RAM.

Mapping the template read-only (``memory-backend-file,share=off,readonly=on,
rom=off``: the guest writes to private copy-on-write pages, the template file
stays untouched) would start a session without copying anything, but then QEMU
can never give memory back: virtio-balloon (and free page reporting) discard
guest pages with ram_block_discard_range(), which refuses a RAM block whose file
is open read-only, logging (QEMU 10.0, system/physmem.c)

    ram_block_discard_range: Discarding RAM with readonly files is not supported

before it would madvise() the pages away: the guest's balloon inflates but none
of its pages leaves QEMU's RSS. (It even grows: the test guest's kernel zeroes
the pages it allocates, init_on_alloc, so each page put in the balloon becomes a
private copy first.) With tabvm's RAM (glue.snapshot.FileRam: a writable file,
``share=on``) every page the guest puts in the balloon is punched out of the
file and QEMU's RSS goes down.

Both VMs run one after the other on the same file: first the tabvm way (its RAM
file is then a booted guest's RAM, like a template), then read-only on that file.

The RAM file lives on tmpfs (/dev/shm) when the host has one there: on ext4 with
large page-cache folios (Linux 6.18 here; QEMU madvises guest RAM MADV_HUGEPAGE)
a 4 KiB hole punched inside a 2 MiB folio that cannot be split is written back
(as zeros) once another page of that folio is dirtied, so the file's blocks come
back although QEMU discarded the page; tmpfs shows QEMU's side exactly.
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from glue.agent_client import AgentClient
from glue.profile import POLICY_PATH, BalloonSetup, builtin_profile
from glue.qemu import Qemu, VmConfig
from glue.runtime import new_runtime_dir
from glue.snapshot import RAM_BACKEND_ID, FileRam
from test_balloon_e2e import Vm

pytestmark = pytest.mark.e2e

MiB = 1 << 20
PAGE = 4096
RAM = 512 * MiB
HOG_MIB = 200
# the balloon policy's min_size_mib (devspecs/balloon.yaml): what the guest keeps
MIN_SIZE = 256 * MiB
READONLY_DISCARD_ERROR = ("ram_block_discard_range: Discarding RAM with readonly files "
                          "is not supported")
# one line per page the guest puts in (or takes out of) the balloon
BALLOON_TRACE = ("-trace", "virtio_balloon_handle_output")


def allocated(path: Path) -> int:
    return path.stat().st_blocks * 512


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def on_tmpfs(path: Path) -> bool:
    mounts = [line.split() for line in Path("/proc/mounts").read_text().splitlines()]
    best = max((m for m in mounts if path.is_relative_to(m[1])), key=lambda m: len(m[1]))
    return best[2] == "tmpfs"


def ballooned_pages(log: str) -> list[int]:
    """The guest-physical page numbers of the balloon's pages (q35, 512 MiB: the
    offsets in the RAM file) from the trace in QEMU's log."""
    return [int(m, 16) // PAGE for m in
            re.findall(r"^virtio_balloon_handle_output .*gpa: 0x([0-9a-f]+)", log, re.M)]


def pages_with_data(path: Path, pages: list[int]) -> int:
    """How many of ``pages`` are not holes in ``path`` (SEEK_DATA / SEEK_HOLE)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size, off, starts, ends = os.fstat(fd).st_size, 0, [], []
        while off < size:
            try:
                data = os.lseek(fd, off, os.SEEK_DATA)
            except OSError:                   # ENXIO: no data after off
                break
            off = os.lseek(fd, data, os.SEEK_HOLE)
            starts.append(data)
            ends.append(off)
    finally:
        os.close(fd)
    count = 0
    for page in pages:
        i = bisect.bisect_right(starts, page * PAGE) - 1
        count += i >= 0 and page * PAGE < ends[i]
    return count


def content_digest(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "blake2b").hexdigest()


def readonly_ram(config: VmConfig, path: Path, size: int) -> VmConfig:
    """``config`` with its RAM mapped privately from a read-only file."""
    return dataclasses.replace(config, memory=f"{size}B", extra=config.extra + (
        "-object", f"memory-backend-file,id={RAM_BACKEND_ID},size={size},mem-path={path},"
                   "share=off,readonly=on,rom=off",
        "-machine", f"memory-backend={RAM_BACKEND_ID}"))


@dataclasses.dataclass
class Figures:
    rss_touched: int           # QEMU's RSS with HOG_MIB written by the guest
    file_touched: int          # the RAM file's allocated bytes then
    rss_ballooned: int         # after the balloon inflated (and settled)
    file_ballooned: int
    balloon: int               # the balloon's size (QEMU's query-balloon)
    guest_balloon: int         # the balloon as the guest's vmstat counts it


def touch_then_balloon(q: Qemu, ram_file: Path) -> Figures:
    """Boot, have the guest write HOG_MIB and free it again, then background +
    critical host pressure: the policy inflates the balloon to what it may."""
    agent = AgentClient(str(q.agent_socket), connect_timeout=30)
    try:
        agent.wait_ready(timeout=120)
        agent.memhog(HOG_MIB)
        deadline = time.monotonic() + 30
        while not agent.memhog_stat().done:
            assert time.monotonic() < deadline, agent.memhog_stat()
            time.sleep(0.2)
        rss_touched, file_touched = rss(q.proc.pid), allocated(ram_file)
        agent.memhog_stop()
        vm = Vm(q, agent, None, None)
        q.qom_set(POLICY_PATH, "host-level", "critical")
        q.qom_set(POLICY_PATH, "foreground", False)
        vm.wait_balloon(lambda b: b >= RAM - MIN_SIZE - MiB, 15, "background + critical")
        balloon = vm.settle(quiet=1.0)
        return Figures(rss_touched, file_touched, rss(q.proc.pid), allocated(ram_file),
                       balloon, agent.mem().balloon or 0)
    finally:
        agent.close()


@pytest.fixture
def rundir():
    path = new_runtime_dir("test-ro-template")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def ram_dir(rundir):
    """Where the RAM file goes: tmpfs if the host has one at /dev/shm (see above)."""
    shm = Path("/dev/shm")
    if shm.is_dir() and on_tmpfs(shm) and os.access(shm, os.W_OK):
        path = Path(tempfile.mkdtemp(prefix="tabvm-test-ro-template-", dir=shm))
        yield path
        shutil.rmtree(path, ignore_errors=True)          # a RAM file of up to 512 MiB
    else:
        yield rundir


def test_a_readonly_template_mapping_cannot_give_memory_back(rundir, ram_dir, build_outputs,
                                                             guest_image):
    ram_file = ram_dir / "ram"
    base = builtin_profile(build_outputs, guest_image.vmlinux, guest_image.initrd, "tcg",
                           touch=False, balloon=BalloonSetup(foreground=True))
    base = dataclasses.replace(base, extra=base.extra + BALLOON_TRACE)

    # -- the tabvm way: a writable file, share=on --------------------------------
    q = Qemu(FileRam(ram_file, RAM).apply(base), rundir).start()
    try:
        tabvm = touch_then_balloon(q, ram_file)
    finally:
        q.stop()
    log = q.log.read_text(errors="replace")
    pages = ballooned_pages(log)
    holes = len(pages) - pages_with_data(ram_file, pages)
    print(f"\nshare=on ({'tmpfs' if on_tmpfs(ram_file) else 'not tmpfs'}): balloon "
          f"{tabvm.balloon >> 20} MiB; QEMU RSS {tabvm.rss_touched >> 20} -> "
          f"{tabvm.rss_ballooned >> 20} MiB, file {tabvm.file_touched >> 20} -> "
          f"{tabvm.file_ballooned >> 20} MiB; {holes} of {len(pages)} ballooned pages "
          f"are holes in the file")
    assert tabvm.balloon >= RAM - MIN_SIZE - MiB
    assert tabvm.guest_balloon == tabvm.balloon
    assert len(pages) == tabvm.balloon // PAGE           # inflations only
    assert "ram_block_discard_range" not in log, log[-2000:]
    assert tabvm.file_touched >= HOG_MIB * MiB
    # what the guest freed and ballooned left QEMU (free page reporting takes
    # the freed memory back too; the balloon keeps it away)
    assert tabvm.rss_ballooned <= tabvm.rss_touched - (HOG_MIB - 48) * MiB, tabvm
    if on_tmpfs(ram_file):
        # every ballooned page was punched out of the file
        assert holes == len(pages), tabvm
        assert tabvm.file_ballooned <= RAM - tabvm.balloon, tabvm

    # -- the same file as a read-only template: share=off,readonly=on,rom=off ------
    ram_file.chmod(0o444)
    before, digest = ram_file.stat(), content_digest(ram_file)
    q = Qemu(readonly_ram(base, ram_file, RAM), rundir).start()
    try:
        ro = touch_then_balloon(q, ram_file)
    finally:
        q.stop()
    log = q.log.read_text(errors="replace")
    refused = log.count(READONLY_DISCARD_ERROR)
    print(f"share=off,readonly=on: balloon {ro.balloon >> 20} MiB; QEMU RSS "
          f"{ro.rss_touched >> 20} -> {ro.rss_ballooned >> 20} MiB; template file "
          f"{before.st_blocks * 512 >> 20} -> {allocated(ram_file) >> 20} MiB allocated; "
          f"{refused} discards refused ({READONLY_DISCARD_ERROR!r})")
    # the guest ran on private copies: the template is as it was (on tmpfs its
    # holes the guest touched are filled in with zero pages, hence no st_blocks)
    after = ram_file.stat()
    assert (after.st_mtime_ns, after.st_size) == (before.st_mtime_ns, before.st_size)
    assert content_digest(ram_file) == digest
    # the guest's balloon inflated just as far ...
    assert ro.balloon >= RAM - MIN_SIZE - MiB
    assert ro.guest_balloon == ro.balloon
    assert len(ballooned_pages(log)) == ro.balloon // PAGE
    assert ro.rss_touched >= HOG_MIB * MiB
    # ... but QEMU refused to discard any of its pages, and keeps them all
    assert refused >= ro.balloon // PAGE, log[-2000:]
    assert ro.rss_ballooned >= ro.rss_touched - 16 * MiB, ro
