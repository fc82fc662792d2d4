"""Tests of the guest agent's memory verbs (mem, memhog, memhogstat; for the
automatic-ballooning work) and their host client methods (glue/agent_client.py):

- the client's parsers and argument checks, and its requests against a scripted
  fake agent on a socketpair;
- the real agent.c built under AddressSanitizer/UBSan with open() and mmap()
  redefined (FAKE_PROC below): /proc/meminfo and /proc/vmstat come from files the
  test writes (FAKE_MEMINFO, FAKE_VMSTAT), mmap can be made to fail above
  FAKE_MMAP_MAX bytes. memhog runs for real on the host there (a few MiB): its
  memory is checked in /proc/PID/smaps and /proc/PID/mem, its progress, pacing,
  end (stopped, killed by a signal, mmap failure) and reaping (no zombie);
- the static agent as the guest gets it, against the host's own /proc.

No VM is booted here.
"""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from fake_agent import FakeAgent, PtyAgents, compile_with_fakes
from glue.agent_client import (AgentClient, AgentError, GuestMem, MemHogStat, _parse_mem,
                               _parse_memhog_stat)
from tabvm import guest

MIB = 1 << 20
ASAN_ENV = {"ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1"}

# -- parsers -------------------------------------------------------------------

MEM_LINE = ("total=2015732 free=1523400 available=1702212 cached=190120 buffers=4096 "
            "shmem=1200 anon=60312 balloon=524288 oom_kills=2")


def test_parse_mem():
    m = _parse_mem(MEM_LINE)
    assert m == GuestMem(2015732 * 1024, 1523400 * 1024, 1702212 * 1024, 190120 * 1024,
                         4096 * 1024, 1200 * 1024, 60312 * 1024, 512 * MIB, 2)
    assert dataclasses.is_dataclass(m)
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.total = 0
    m = _parse_mem("total=0 free=0 available=0 cached=0 buffers=0 shmem=0 anon=0 balloon=-1 "
                   "oom_kills=-1")
    assert m.balloon is None and m.oom_kills is None and m.total == 0
    m = _parse_mem(MEM_LINE.replace("balloon=524288", "balloon=0").replace("=2015732",
                                                                            "=17179869184"))
    assert m.balloon == 0 and m.total == 16 << 40


@pytest.mark.parametrize("text", [
    "", MEM_LINE + " ", MEM_LINE + "\n", " " + MEM_LINE, MEM_LINE.replace(" ", "  ", 1),
    MEM_LINE.replace("total=2015732 ", ""), MEM_LINE.replace(" oom_kills=2", ""),
    MEM_LINE.replace("free=1523400", "free=-1"), MEM_LINE.replace("balloon=524288", "balloon=-2"),
    MEM_LINE.replace("balloon=524288", "balloon="), MEM_LINE.replace("anon=60312", "anon=6e4"),
    MEM_LINE.replace("cached=190120", "cached=0190120"),
    MEM_LINE.replace("shmem=1200", "shmem=1.5"), MEM_LINE.replace("shmem=1200", "shmem=\u0661"),
    MEM_LINE.replace("total=2015732", "total=123456789012345678901"),
    MEM_LINE.replace("buffers", "buffer"), MEM_LINE + " extra=1",
    "free=1523400 total=2015732 available=1702212 cached=190120 buffers=4096 shmem=1200 "
    "anon=60312 balloon=524288 oom_kills=2",
])
def test_parse_mem_rejects(text):
    with pytest.raises(AgentError, match="mem: malformed"):
        _parse_mem(text)


def test_parse_memhog_stat():
    assert _parse_memhog_stat("pid=0 touched_kib=0 target_kib=0 done=0 alive=0 status=none") \
        == MemHogStat(0, 0, 0, False, False, "none")
    st = _parse_memhog_stat("pid=4242 touched_kib=2048 target_kib=8192 done=0 alive=1 "
                            "status=running")
    assert st == MemHogStat(4242, 2 * MIB, 8 * MIB, False, True, "running")
    assert st.exit_code is None and st.signal is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        st.alive = False
    st = _parse_memhog_stat("pid=7 touched_kib=8192 target_kib=8192 done=1 alive=0 "
                            "status=killed KILL")
    assert st.signal == "KILL" and st.exit_code is None and st.done and not st.alive
    st = _parse_memhog_stat("pid=7 touched_kib=0 target_kib=8192 done=0 alive=0 status=exited 2")
    assert st.exit_code == 2 and st.signal is None
    assert _parse_memhog_stat("pid=7 touched_kib=8192 target_kib=8192 done=1 alive=0 "
                              "status=stopped").status == "stopped"
    assert _parse_memhog_stat("pid=7 touched_kib=0 target_kib=1024 done=0 alive=0 "
                              "status=killed 34").signal == "34"


@pytest.mark.parametrize("text", [
    "", "pid=7 touched_kib=0 target_kib=1024 done=0 alive=1",
    "pid=7 touched_kib=0 target_kib=1024 done=0 alive=1 status=running ",
    "pid=7 touched_kib=0 target_kib=1024 done=0 alive=1 status=running\n",
    "pid=7 touched_kib=0 target_kib=1024 done=0 alive=1 status=",
    "pid=7 touched_kib=0 target_kib=1024 done=0 alive=1 status=sleeping",
    "pid=7 touched_kib=0 target_kib=1024 done=2 alive=1 status=running",
    "pid=7 touched_kib=-1 target_kib=1024 done=0 alive=1 status=running",
    "pid=x touched_kib=0 target_kib=1024 done=0 alive=1 status=running",
    "pid=7 touched_kib=0 target_kib=1024 alive=1 done=0 status=running",
    "pid=7 touched_kib=0 target_kib=1024 done=0 alive=0 status=running",   # dead but running
    "pid=7 touched_kib=0 target_kib=1024 done=0 alive=1 status=stopped",   # alive but ended
    "pid=7 touched_kib=0 target_kib=1024 done=0 alive=1 status=exited 0",
    "pid=0 touched_kib=0 target_kib=1024 done=0 alive=1 status=running",   # no pid
    "pid=7 touched_kib=0 target_kib=0 done=0 alive=0 status=none",         # none with a pid
    "pid=7 touched_kib=2048 target_kib=1024 done=1 alive=1 status=running",  # past target
    "pid=7 touched_kib=1000 target_kib=1024 done=1 alive=1 status=running",  # done early
    "pid=7 touched_kib=0 target_kib=1024 done=0 alive=0 status=exited x",
    "pid=7 touched_kib=0 target_kib=1024 done=0 alive=0 status=exited 1000",
    "pid=7 touched_kib=0 target_kib=1024 done=0 alive=0 status=killed kill",
    "pid=7 touched_kib=0 target_kib=1024 done=0 alive=0 status=killed",
    "pid=7 touched_kib=0 target_kib=1024 done=0 alive=0 status=killed KILL extra",
])
def test_parse_memhog_stat_rejects(text):
    with pytest.raises(AgentError, match="memhogstat: malformed"):
        _parse_memhog_stat(text)


# -- client requests against a scripted fake agent --------------------------------


def test_client_requests_and_answers():
    stat = "pid=321 touched_kib=1024 target_kib=4096 done=0 alive=1 status=running"
    fake = FakeAgent([("ok", MEM_LINE), ("ok", "321"), ("ok", "322"), ("ok", stat),
                      ("ok", "322"), ("ok", "0"), ("err", "MIB 99999 is more than 4 x MemTotal "
                                                          "(7872 MiB)")])
    c = fake.client
    assert c.mem() == _parse_mem(MEM_LINE)
    assert c.memhog(8) == 321
    assert c.memhog(1 << 40, rate=1 << 20) == 322
    assert c.memhog_stat() == MemHogStat(321, MIB, 4 * MIB, False, True, "running")
    assert c.memhog_stop() == 322
    assert c.memhog_stop() is None
    with pytest.raises(AgentError, match=r"memhog: MIB 99999 is more than 4 x MemTotal"):
        c.memhog(99999, 50)
    assert fake.requests == ["mem", "memhog 8 0", f"memhog {1 << 40} 1048576", "memhogstat",
                             "memhog 0", "memhog 0", "memhog 99999 50"]


@pytest.mark.parametrize("method, answer", [
    ("mem", MEM_LINE.replace(" oom_kills=2", "")), ("memhog", ""), ("memhog", "0"),
    ("memhog", "-5"), ("memhog", "12 13"), ("memhog", "012"), ("memhog_stop", ""),
    ("memhog_stop", "x"), ("memhog_stat", "pid=1"),
])
def test_client_malformed_answers(method, answer):
    fake = FakeAgent([("ok", answer)])
    call = {"mem": lambda c: c.mem(), "memhog": lambda c: c.memhog(1),
            "memhog_stop": lambda c: c.memhog_stop(), "memhog_stat": lambda c: c.memhog_stat()}
    with pytest.raises(AgentError, match="malformed"):
        call[method](fake.client)


@pytest.mark.parametrize("args", [(0,), (-1,), (1.5,), ("8",), (True,), ((1 << 40) + 1,),
                                  (8, -1), (8, (1 << 20) + 1), (8, 0.5), (8, True)])
def test_client_checks_memhog_args_before_sending(args):
    fake = FakeAgent([])
    with pytest.raises(ValueError):
        fake.client.memhog(*args)
    assert fake.nothing_sent()


# -- the real agent with simulated /proc files ----------------------------------------

# open() of /proc/meminfo and /proc/vmstat goes to the files FAKE_MEMINFO and
# FAKE_VMSTAT name (if set; every other path is opened as is); mmap() of more
# than FAKE_MMAP_MAX bytes fails with ENOMEM, and every mmap() of 1 MiB or more
# appends "PID ADDRESS LENGTH" (decimal) to the file FAKE_MMAP_LOG.
FAKE_PROC = r"""#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <unistd.h>

int fake_open(const char *path, int flags, ...)
{
    mode_t mode = 0;
    if (flags & (O_CREAT | O_TMPFILE)) {
        va_list ap;
        va_start(ap, flags);
        mode = (mode_t)va_arg(ap, int);
        va_end(ap);
    }
    const char *env = !strcmp(path, "/proc/meminfo") ? "FAKE_MEMINFO"
                      : !strcmp(path, "/proc/vmstat") ? "FAKE_VMSTAT" : NULL;
    const char *sub = env ? getenv(env) : NULL;
    return open(sub && *sub ? sub : path, flags, mode);
}

void *fake_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    const char *max = getenv("FAKE_MMAP_MAX");
    if (max && *max && len > strtoull(max, NULL, 10)) {
        errno = ENOMEM;
        return MAP_FAILED;
    }
    void *p = mmap(addr, len, prot, flags, fd, off);
    const char *log = getenv("FAKE_MMAP_LOG");
    if (p != MAP_FAILED && len >= (1 << 20) && log && *log) {
        int lfd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (lfd >= 0) {
            dprintf(lfd, "%d %lu %zu\n", (int)getpid(), (unsigned long)p, len);
            close(lfd);
        }
    }
    return p;
}
"""

AGENT_WITH_FAKES = r"""
#define open fake_open
#define mmap fake_mmap
#include AGENT_C
"""

# A Debian 6.1 guest's /proc/meminfo, shortened; SwapCached before Cached and
# ShmemHugePages before Shmem, as lookalike keys.
MEMINFO = """\
MemTotal:       {total} kB
MemFree:         1523400 kB
MemAvailable:    1702212 kB
Buffers:            4096 kB
SwapCached:          777 kB
Cached:           190120 kB
Active:           102344 kB
Inactive:         120116 kB
Active(anon):      55020 kB
AnonPages:         60312 kB
Mapped:            40220 kB
ShmemHugePages:        3 kB
Shmem:              1200 kB
KReclaimable:      10312 kB
CommitLimit:     1007864 kB
HugePages_Total:       0
Hugepagesize:       2048 kB
DirectMap1G:     1048576 kB
"""

VMSTAT = """\
nr_free_pages 380850
nr_anon_pages 15078
pgfault 4567890
oom_kill {ooms}
balloon_inflate {inflate}
balloon_deflate {deflate}
balloon_migrate 17
swap_ra 0
"""


def meminfo(total: int = 2015732) -> str:
    return MEMINFO.format(total=total)


def vmstat(ooms: int = 3, inflate: int = 300000, deflate: int = 100000) -> str:
    return VMSTAT.format(ooms=ooms, inflate=inflate, deflate=deflate)


@pytest.fixture(scope="module")
def fake_agent_bin(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("fake-proc")
    fake, wrapper = d / "fake_proc.c", d / "agent_fakes.c"
    fake.write_text(FAKE_PROC)
    wrapper.write_text(AGENT_WITH_FAKES)
    return compile_with_fakes(d / "agent-fake-proc", [wrapper, fake])


@dataclasses.dataclass
class Fake:
    client: AgentClient
    proc: subprocess.Popen
    meminfo: Path
    vmstat: Path
    mmap_log: Path

    def mmaps(self, pid: int) -> list[tuple[int, int]]:
        """(address, length) of the mmap()s of 1 MiB or more process pid made."""
        lines = self.mmap_log.read_text().splitlines() if self.mmap_log.exists() else []
        return [(int(a), int(n)) for p, a, n in (line.split() for line in lines)
                if int(p) == pid]


@pytest.fixture
def fake_proc(fake_agent_bin, tmp_path):
    """start(meminfo=, vmstat=, **env) -> Fake: the agent with simulated /proc files
    (rewrite fake.meminfo / fake.vmstat to change them)."""
    agents = PtyAgents()

    def start(meminfo_text: str = meminfo(), vmstat_text: str = vmstat(), **env: str) -> Fake:
        n = len(agents.started)
        mi, vm = tmp_path / f"meminfo{n}", tmp_path / f"vmstat{n}"
        log = tmp_path / f"mmap{n}.log"
        mi.write_text(meminfo_text)
        vm.write_text(vmstat_text)
        client, proc = agents.start(fake_agent_bin, {
            "FAKE_MEMINFO": str(mi), "FAKE_VMSTAT": str(vm), "FAKE_MMAP_LOG": str(log),
            **ASAN_ENV, **env})
        return Fake(client, proc, mi, vm, log)

    yield start
    assert agents.stop() == []


def test_fake_mem_values(fake_proc):
    fake = fake_proc()
    page_kib = os.sysconf("SC_PAGESIZE") // 1024
    assert fake.client.call("mem") == (
        "total=2015732 free=1523400 available=1702212 cached=190120 buffers=4096 shmem=1200 "
        f"anon=60312 balloon={200000 * page_kib} oom_kills=3")
    assert fake.client.mem() == GuestMem(2015732 * 1024, 1523400 * 1024, 1702212 * 1024,
                                         190120 * 1024, 4096 * 1024, 1200 * 1024, 60312 * 1024,
                                         200000 * page_kib * 1024, 3)
    # the files are read afresh each time; 64-bit sizes
    fake.meminfo.write_text(meminfo(total=17179869184))
    fake.vmstat.write_text(vmstat(ooms=0, inflate=5, deflate=5))
    m = fake.client.mem()
    assert (m.total, m.balloon, m.oom_kills) == (16 << 40, 0, 0)
    fake.vmstat.write_text(vmstat(inflate=5, deflate=9))  # never negative
    assert fake.client.mem().balloon == 0


@pytest.mark.parametrize("text, balloon, ooms", [
    ("nr_free_pages 1\noom_kill 7\n", None, 7),                       # no CONFIG_MEMORY_BALLOON
    ("balloon_inflate 10\nnr_free_pages 1\n", None, None),           # half the counters
    ("balloon_deflate 0\nballoon_inflate 256", 256, None),           # no oom_kill, no \n
    ("oom_kill_x 5\nxoom_kill 6\nballoon_inflate_x 1\n", None, None),  # lookalike keys
    ("", None, None),
])
def test_fake_mem_absent_counters(fake_proc, text, balloon, ooms):
    fake = fake_proc(vmstat_text=text)
    m = fake.client.mem()
    page_kib = os.sysconf("SC_PAGESIZE") // 1024
    assert m.balloon == (None if balloon is None else balloon * page_kib * 1024)
    assert m.oom_kills == ooms
    assert fake.client.call("mem").endswith(
        f"balloon={-1 if balloon is None else balloon * page_kib} "
        f"oom_kills={-1 if ooms is None else ooms}")


@pytest.mark.parametrize("meminfo_text, vmstat_text, message", [
    (meminfo().replace("MemAvailable:    1702212 kB\n", ""), vmstat(),
     "/proc/meminfo: no MemAvailable line"),
    (meminfo().replace("AnonPages", "AnonPagez"), vmstat(), "/proc/meminfo: no AnonPages line"),
    (meminfo(total="abc"), vmstat(), "/proc/meminfo: malformed MemTotal line"),
    (meminfo(total="-5"), vmstat(), "/proc/meminfo: malformed MemTotal line"),
    (meminfo(total="99999999999999999999999"), vmstat(),
     "/proc/meminfo: malformed MemTotal line"),
    (meminfo().replace("1200 kB", "1200"), vmstat(), "/proc/meminfo: malformed Shmem line"),
    (meminfo().replace("1200 kB", "1200 kB x"), vmstat(), "/proc/meminfo: malformed Shmem line"),
    (meminfo().replace("1200 kB", "1200 MB"), vmstat(), "/proc/meminfo: malformed Shmem line"),
    ("", vmstat(), "/proc/meminfo: no MemTotal line"),
    (meminfo(), vmstat(ooms="x"), "/proc/vmstat: malformed oom_kill line"),
    (meminfo(), vmstat(inflate="1e5"), "/proc/vmstat: malformed balloon_inflate line"),
    (meminfo(), vmstat(deflate="99999999999999999999999"),
     "/proc/vmstat: malformed balloon_deflate line"),
    (meminfo(), vmstat(inflate=1 << 62, deflate=0),
     r"/proc/vmstat: balloon_inflate \d+, balloon_deflate 0: absurd"),
])
def test_fake_mem_malformed_files(fake_proc, meminfo_text, vmstat_text, message):
    fake = fake_proc(meminfo_text, vmstat_text)
    with pytest.raises(AgentError, match=f"mem: {message}"):
        fake.client.mem()
    fake.client.ping()


def test_fake_mem_missing_files(fake_proc, tmp_path):
    fake = fake_proc()
    fake.meminfo.unlink()
    with pytest.raises(AgentError, match="mem: open /proc/meminfo: No such file"):
        fake.client.mem()
    with pytest.raises(AgentError, match="memhog: open /proc/meminfo: No such file"):
        fake.client.memhog(1)
    fake.meminfo.write_text(meminfo())
    fake.vmstat.unlink()
    with pytest.raises(AgentError, match="mem: open /proc/vmstat: No such file"):
        fake.client.mem()
    fake.vmstat.mkdir()
    with pytest.raises(AgentError, match="mem: read /proc/vmstat: Is a directory"):
        fake.client.mem()
    fake.vmstat.rmdir()
    fake.vmstat.write_text("x" * (300 * 1024))
    with pytest.raises(AgentError, match="mem: /proc/vmstat: larger than"):
        fake.client.mem()
    fake.client.ping()


# -- memhog for real on the host ----------------------------------------------------


def proc_state(pid: int) -> str | None:
    """The State letter of /proc/PID/status, None if there is no such process."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return re.search(r"^State:\s+(\S)", text, re.M).group(1)


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def rss_anon_kib(pid: int) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^RssAnon:\s+(\d+) kB$", text, re.M).group(1))


def check_resident(pid: int, address: int, length: int) -> None:
    """Every page of [address, address + length) of process pid is present in RAM
    and mapped by it alone (/proc/PID/pagemap bits 63 and 56), and where ptrace
    rules let us read /proc/PID/mem, non-zero and different on every page."""
    page = os.sysconf("SC_PAGESIZE")
    with open(f"/proc/{pid}/pagemap", "rb") as f:
        f.seek(address // page * 8)
        data = f.read(length // page * 8)
    entries = [int.from_bytes(data[i:i + 8], "little") for i in range(0, len(data), 8)]
    assert len(entries) == length // page
    missing = [i for i, e in enumerate(entries) if not e >> 63 & 1]
    assert not missing, f"{len(missing)} pages not present, first {missing[:5]}"
    assert all(e >> 56 & 1 for e in entries), "pages shared with another process"
    try:
        with open(f"/proc/{pid}/mem", "rb") as mem:
            pages = []
            for k in sorted({0, 1, length // page // 2, length // page - 1}):
                mem.seek(address + k * page)
                pages.append(mem.read(page))
    except PermissionError:
        return
    assert all(p.count(0) < 64 for p in pages)
    assert len(set(pages)) == len(pages)


def stat_until(client: AgentClient, predicate, timeout: float = 20.0) -> MemHogStat:
    deadline = time.monotonic() + timeout
    while True:
        st = client.memhog_stat()
        if predicate(st):
            return st
        assert time.monotonic() < deadline, st
        time.sleep(0.02)


def test_fake_memhog_allocates_holds_and_stops(fake_proc):
    fake = fake_proc()
    c = fake.client
    assert c.memhog_stat() == MemHogStat(0, 0, 0, False, False, "none")
    assert c.memhog_stop() is None                       # nothing to stop: fine
    pid = c.memhog(8)
    assert pid > 0 and proc_state(pid) is not None
    st = stat_until(c, lambda s: s.done)
    assert st == MemHogStat(pid, 8 * MIB, 8 * MIB, True, True, "running")
    # really allocated: one 8 MiB mmap, every page resident, its own, written
    [(address, length)] = fake.mmaps(pid)
    assert length == 8 * MIB
    check_resident(pid, address, length)
    # the child keeps none of the agent's descriptors (the pty); prefers the OOM killer
    fds = {int(fd) for fd in os.listdir(f"/proc/{pid}/fd")}
    assert fds <= {0, 1, 2}, os.listdir(f"/proc/{pid}/fd")
    assert Path(f"/proc/{pid}/oom_score_adj").read_text().strip() == "1000"
    # sh (its own waitpid) still works while the hog runs
    assert c.sh("echo hi; exit 3") == ("hi\n", 3)
    assert c.memhog_stat().alive
    # stop: killed and reaped at once
    assert c.memhog_stop() == pid
    assert proc_state(pid) is None
    st = c.memhog_stat()
    assert st == MemHogStat(pid, 8 * MIB, 8 * MIB, True, False, "stopped")
    assert c.memhog_stop() is None
    assert c.memhog_stat() == st


def test_fake_memhog_paced(fake_proc):
    c = fake_proc().client
    t0 = time.monotonic()
    pid = c.memhog(4, rate=4)                 # 4 MiB at 4 MiB/s: done after ~1 s
    seen = set()
    st = stat_until(c, lambda s: seen.add(s.touched) or s.done)
    elapsed = time.monotonic() - t0
    assert st.pid == pid and st.touched == 4 * MIB
    assert 0.9 <= elapsed < 10, elapsed
    partial = {t for t in seen if 0 < t < 4 * MIB}
    assert len(partial) >= 3, sorted(seen)
    assert all(t % (256 * 1024) == 0 for t in seen)
    c.memhog_stop()


def test_fake_memhog_replaces_previous(fake_proc):
    c = fake_proc().client
    first = c.memhog(2, rate=1)               # slow: still touching when replaced
    assert not c.memhog_stat().done
    second = c.memhog(3)
    assert second != first
    assert proc_state(first) is None          # killed and reaped before the new one
    st = stat_until(c, lambda s: s.done)
    assert (st.pid, st.target, st.touched, st.alive) == (second, 3 * MIB, 3 * MIB, True)
    assert c.memhog_stop() == second


@pytest.mark.parametrize("sig, status", [(signal.SIGKILL, "killed KILL"),
                                         (signal.SIGTERM, "killed TERM"),
                                         (signal.SIGUSR1, "killed USR1")])
def test_fake_memhog_death_is_reported_and_reaped(fake_proc, sig, status):
    c = fake_proc().client
    pid = c.memhog(2)
    stat_until(c, lambda s: s.done)
    os.kill(pid, sig)                         # as the guest's OOM killer would (KILL)
    # reaped by the agent's idle loop within ~1 s, without any request: no zombie
    assert wait_for(lambda: proc_state(pid) is None, timeout=5), proc_state(pid)
    st = c.memhog_stat()
    assert st == MemHogStat(pid, 2 * MIB, 2 * MIB, True, False, status)
    assert st.signal == status.split()[1]
    assert c.memhog_stop() is None            # already dead: nothing stopped
    assert c.memhog_stat().status == status   # its fate stays visible


def test_fake_memhog_mmap_failure_and_size_limit(fake_proc):
    # MemTotal 16 MiB: at most 64 MiB; the hog's mmap fails above 32 MiB
    fake = fake_proc(meminfo(total=16384), FAKE_MMAP_MAX=str(32 * MIB))
    c = fake.client
    with pytest.raises(AgentError, match=r"memhog: MIB 65 is more than 4 x MemTotal \(64 MiB\)"):
        c.memhog(65)
    assert c.memhog_stat().status == "none"
    pid = c.memhog(64)                        # the limit itself is allowed
    st = stat_until(c, lambda s: not s.alive)
    assert st == MemHogStat(pid, 0, 64 * MIB, False, False, "exited 2")
    assert st.exit_code == 2
    assert wait_for(lambda: proc_state(pid) is None, timeout=5)


BAD_MEMHOG = [
    ("memhog", "usage: memhog MIB"),
    ("memhog 1 2 3", "usage: memhog MIB"),
    ("memhog x", "MIB must be a non-negative decimal number: x"),
    ("memhog -1", "MIB must be a non-negative decimal number: -1"),
    ("memhog +1", "MIB must be a non-negative decimal number"),
    ("memhog 1.5", "MIB must be a non-negative decimal number: 1.5"),
    ("memhog 0x10", "MIB must be a non-negative decimal number"),
    ("memhog 8k", "MIB must be a non-negative decimal number"),
    ("memhog  8", "MIB must be a non-negative decimal number"),
    ("memhog 8 ", "MIB_PER_S must be a non-negative decimal number"),
    ("memhog 99999999999999999999999", "MIB 99999999999999999999999 is too large"),
    ("memhog 18446744073709551616", "MIB 18446744073709551616 is too large"),
    ("memhog 18446744073709551615", "MIB 18446744073709551615 is more than 4 x MemTotal"),
    ("memhog 7874", r"MIB 7874 is more than 4 x MemTotal \(7872 MiB\)"),
    ("memhog 1 x", "MIB_PER_S must be a non-negative decimal number: x"),
    ("memhog 1 -5", "MIB_PER_S must be a non-negative decimal number: -5"),
    ("memhog 1 1048577", "MIB_PER_S 1048577 is more than 1048576"),
    ("memhog 1 99999999999999999999", "MIB_PER_S 99999999999999999999 is too large"),
    ("memhogstat x", "usage: memhogstat"),
    ("mem x", "usage: mem"),
]


def test_fake_bad_args_keep_the_agent_and_the_hog(fake_proc):
    fake = fake_proc()                        # MemTotal 2015732 kB: at most 7872 MiB
    c = fake.client
    pid = c.memhog(2)
    before = stat_until(c, lambda s: s.done)
    for line, message in BAD_MEMHOG:
        verb, *args = line.split(" ")
        with pytest.raises(AgentError, match=f"^{verb}: {message}"):
            c.call(verb, *args)
        assert fake.proc.poll() is None, line
    c.ping()
    assert c.memhog_stat() == before          # a bad request leaves the running hog alone
    assert c.memhog_stop() == pid


def test_fake_agent_death_takes_the_hog(fake_agent_bin, tmp_path):
    mi = tmp_path / "meminfo"
    mi.write_text(meminfo())
    agents = PtyAgents()
    try:
        client, proc = agents.start(fake_agent_bin, {"FAKE_MEMINFO": str(mi), **ASAN_ENV})
        pid = client.memhog(2)
        stat_until(client, lambda s: s.done)
        proc.kill()
        proc.wait()
        # PR_SET_PDEATHSIG: the hog dies with the agent (its new parent reaps it)
        assert wait_for(lambda: proc_state(pid) in (None, "Z"), timeout=5), proc_state(pid)
    finally:
        agents.stop()


# -- the agent as the guest gets it, on the host's own /proc ---------------------------


def test_agent_compiles_with_wextra(tmp_path):
    proc = subprocess.run(["gcc", "-fsyntax-only", "-Wall", "-Wextra", "-Werror",
                           str(guest.AGENT_SRC)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def host_meminfo_kib(key: str) -> int:
    m = re.search(rf"^{key}:\s+(\d+) kB$", Path("/proc/meminfo").read_text(), re.M)
    return int(m.group(1))


def test_real_agent_mem_and_memhog(real_agent):
    client, proc = real_agent
    m = client.mem()
    assert m.total == host_meminfo_kib("MemTotal") * 1024
    assert 0 < m.free <= m.total and 0 < m.available <= m.total
    assert m.anon > 0
    assert m.oom_kills is not None            # every kernel since 4.13
    pid = client.memhog(16)
    st = stat_until(client, lambda s: s.done)
    assert (st.pid, st.touched, st.alive) == (pid, 16 * MIB, True)
    assert rss_anon_kib(pid) >= 16 * 1024     # the static agent itself has ~100 kB
    assert client.memhog_stop() == pid
    assert proc_state(pid) is None
    assert client.memhog_stat().status == "stopped"
    assert proc.poll() is None
