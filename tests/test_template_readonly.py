"""Why a session gets its own copy of the golden template's RAM.

Mapping the template read-only (``memory-backend-file,share=off,readonly=on,
rom=off``: the guest writes to private copy-on-write pages, the template file
stays untouched) would start a session without copying anything, but then QEMU
can never give memory back: virtio-balloon (and free page reporting) discard
guest pages with ram_block_discard_range(), which refuses a RAM block whose file
is open read-only — it logs

    ram_block_discard_range: Discarding RAM with readonly files is not supported

and leaves the pages mapped (it returns before madvise), so the guest's balloon
inflates but QEMU's RSS stays where it was. With tabvm's RAM (glue.snapshot.FileRam:
a writable file, ``share=on``) the same balloon punches holes in the file.

Both VMs run one after the other on the same file: first the tabvm way (its RAM
file is then a booted guest's RAM, like a template), then read-only on that file.
"""

from __future__ import annotations

import dataclasses
import shutil
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
RAM = 512 * MiB
HOG_MIB = 200
# the balloon policy's min_size_mib (devspecs/balloon.yaml): what the guest keeps
MIN_SIZE = 256 * MiB
READONLY_DISCARD_ERROR = ("ram_block_discard_range: Discarding RAM with readonly files "
                          "is not supported")


def allocated(path: Path) -> int:
    return path.stat().st_blocks * 512


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


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
        time.sleep(0.5)                      # the last discards of the last batch
        return Figures(rss_touched, file_touched, rss(q.proc.pid), allocated(ram_file),
                       balloon, agent.mem().balloon or 0)
    finally:
        agent.close()


@pytest.fixture
def rundir():
    path = new_runtime_dir("test-ro-template")
    yield path
    shutil.rmtree(path, ignore_errors=True)          # a 512 MiB RAM file


def test_a_readonly_template_mapping_cannot_give_memory_back(rundir, build_outputs,
                                                             guest_image):
    ram_file = rundir / "ram"
    base = builtin_profile(build_outputs, guest_image.vmlinux, guest_image.initrd, "tcg",
                           touch=False, balloon=BalloonSetup(foreground=True))

    # -- the tabvm way: a writable file, share=on --------------------------------
    q = Qemu(FileRam(ram_file, RAM).apply(base), rundir).start()
    try:
        tabvm = touch_then_balloon(q, ram_file)
    finally:
        q.stop()
    tabvm_log = q.log.read_text(errors="replace")
    print(f"share=on file: RSS {tabvm.rss_touched >> 20} -> {tabvm.rss_ballooned >> 20} MiB, "
          f"file {tabvm.file_touched >> 20} -> {tabvm.file_ballooned >> 20} MiB, "
          f"balloon {tabvm.balloon >> 20} MiB")
    assert tabvm.balloon >= RAM - MIN_SIZE - MiB
    assert tabvm.guest_balloon == tabvm.balloon
    assert tabvm.file_touched >= HOG_MIB * MiB
    # the ballooned pages were punched out of the file (and unmapped from QEMU)
    assert tabvm.file_touched - tabvm.file_ballooned >= tabvm.balloon - 32 * MiB, tabvm
    assert tabvm.file_ballooned <= RAM - tabvm.balloon + 64 * MiB, tabvm
    assert tabvm.rss_touched - tabvm.rss_ballooned >= tabvm.balloon - 32 * MiB, tabvm
    assert "ram_block_discard_range" not in tabvm_log, tabvm_log[-2000:]

    # -- the same file as a read-only template: share=off,readonly=on,rom=off ------
    ram_file.chmod(0o444)
    before = ram_file.stat()
    q = Qemu(readonly_ram(base, ram_file, RAM), rundir).start()
    try:
        ro = touch_then_balloon(q, ram_file)
        ro_pid = q.proc.pid
    finally:
        q.stop()
    ro_log = q.log.read_text(errors="replace")
    print(f"share=off,readonly=on: RSS {ro.rss_touched >> 20} -> {ro.rss_ballooned >> 20} MiB, "
          f"file {ro.file_touched >> 20} -> {ro.file_ballooned >> 20} MiB, "
          f"balloon {ro.balloon >> 20} MiB; {ro_log.count(READONLY_DISCARD_ERROR)} "
          f"discard errors in {q.log}")
    # the guest ran on private copies: the template is exactly as it was
    after = ram_file.stat()
    assert (after.st_blocks, after.st_mtime_ns, after.st_size) == \
        (before.st_blocks, before.st_mtime_ns, before.st_size)
    # the guest's balloon inflated just as far ...
    assert ro.balloon >= RAM - MIN_SIZE - MiB
    assert ro.guest_balloon == ro.balloon
    assert ro.rss_touched >= HOG_MIB * MiB
    # ... but QEMU could not discard a single page: it says so, and keeps them all
    assert READONLY_DISCARD_ERROR in ro_log, ro_log[-2000:]
    assert ro.rss_ballooned >= ro.rss_touched - 16 * MiB, (ro, ro_pid)
