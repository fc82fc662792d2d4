"""A discrete-time model of an Android host, the tablet VM's guest and its
virtio balloon, driving the generated balloon policy (policy.c) through ctypes.

The policy's decision (``qemu/hw/tabvm/<name>/policy.c``, generated from
devspecs/balloon.yaml) is plain C without QEMU. :func:`build` compiles it into a
shared library (and, with ``sanitize=True``, a sanitizer-built replay driver);
:class:`PolicyLib` mirrors its structs with ctypes and checks their layout
against the compiler's; :class:`Sim` runs the world below in steps of ``dt_ms``
(100 ms) and calls ``decide()`` the way tabvm-balloon.c does.

Units: the model counts MiB (floats) and seconds; the policy gets bytes and
milliseconds.

Host (an Android tablet)
    ``host_total`` RAM; ``host_others``: everything but the VM and the host
    apps (kernel, system, other apps); host apps that allocate at a rate and may exit; the VM
    process, whose RSS is the guest memory the guest has touched minus the
    balloon (QEMU discards ballooned pages; pages a deflation gives back stay
    untouched until the guest uses them). ``free = total - others - apps - VM``.
    The pressure level is what the spec's lmkd source reports: the VM app's kill
    line is the minfree of its oom_score_adj (``android.own_adj``) in
    ActivityManager's table, and level i is reached when free memory is under
    kill line + ``levels[i].lmkd_margin_mib``. The VM is killed when free memory
    is under the kill line while it is in the background (the run stops there).

Guest (Linux)
    ``ram = anon + cache + free + balloon``. MemAvailable = free above the
    ``reserve`` (min watermark) + page cache; ``pinned_cache`` is cache that
    counts as available but cannot be reclaimed (dirty, mlocked, in use).
    The balloon driver moves toward its target at ``rate`` MiB/s; inflating
    takes free memory first (untouched pages first: they give the host
    nothing), then reclaims cache (at most ``reclaim_rate`` MiB/s when set),
    never anon; when neither is left the balloon stops growing (a stall).
    File reads (``cache_rate``) fill free memory with page cache, touching it.
    Workloads allocate anon at a rate: from free memory, then by direct reclaim
    of cache (each step that needs it counts an allocation stall), then, with
    ``deflate_on_oom``, from the balloon; failing all that the guest OOM-kills
    the workload (its anon is freed, ``oom_kills`` counts it). The balloon
    driver always heads back to the target it was given, as Linux's does after
    a deflate-on-oom.
    Statistics (available, free, cache and, with ``counters``, the two
    counters; optional noise) are sampled every stats interval (the spec's
    ``stats_interval_s``), ``stats_phase_ms`` into it.

The QEMU object (:class:`PolicyObject`)
    As tabvm-balloon.c: a decision every stats interval, and at once
    when the host level or the foreground state changes (its timer restarts
    then); ``balloon = ram - actual``; statistics are stamped with the time the
    object first sees them (virtio-balloon's last-update changed); the target is
    applied when decide() returns true.
"""

from __future__ import annotations

import ctypes
import random
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

if __name__ == "__main__":             # run on its own: python tests/balloon_sim.py
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from generator.ir import Balloon
from generator.main import check, generate, spec_files

MIB = 1 << 20
MB = 1e6 / MIB                     # one MB in MiB
U64_MAX = (1 << 64) - 1

# ActivityManager's minfree table (KB by oom_score_adj), as lmkd's legacy mode
# and sys.lmk.minfree_levels publish it (../shared/notes/devices.md)
AM_MINFREE_KB = {0: 73_728, 100: 92_160, 200: 110_592, 250: 129_024,
                 900: 147_456, 950: 184_320}

CFLAGS = ["-O1", "-g", "-Wall", "-Wextra", "-Werror"]
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all",
            "-fno-omit-frame-pointer"]


def kill_line_mib(adj: int) -> float:
    """lmkd kills a process of this oom_score_adj once free memory is under the
    largest minfree whose adj is not above it."""
    return max(kb for a, kb in AM_MINFREE_KB.items() if a <= adj) / 1024


def to_bytes(mib: float) -> int:
    return max(0, int(round(mib * MIB)))


def balloon_device() -> Balloon:
    """The balloon policy the devspecs describe (exactly one)."""
    found = [d for d in check(spec_files()) if isinstance(d, Balloon)]
    assert len(found) == 1, f"expected one balloon-policy spec, got {len(found)}"
    return found[0]


# -- the C library -----------------------------------------------------------

u64, i64, u32 = ctypes.c_uint64, ctypes.c_int64, ctypes.c_uint32


def _struct(name: str, fields: list) -> type:
    return type(name, (ctypes.Structure,), {"_fields_": fields})


def structs(levels: int) -> dict[str, type]:
    """ctypes mirrors of policy.h, field for field (the layout check compares
    them with the compiler's)."""
    return {
        "Params": _struct("Params", [
            ("min_size", u64), ("emergency_available", u64), ("emergency_deflate", u64),
            ("pressure_hold_ms", i64), ("inflate_max_step", u64),
            ("inflate_min_step", u64), ("deflate_max_step", u64), ("stall_rate", u64),
            ("stall_backoff", u64), ("stall_after_ms", i64),
            ("level_down_delay_ms", i64), ("level_down_delay_max_ms", i64),
            ("levels", u32),
            ("background_keep", u64 * levels), ("foreground_keep", u64 * levels)]),
        "Inputs": _struct("Inputs", [
            ("now_ms", i64), ("ram", u64), ("balloon", u64), ("level", u32),
            ("foreground", ctypes.c_bool), ("stats_valid", ctypes.c_bool),
            ("stats_ms", i64), ("available", u64), ("free", u64), ("cache", u64),
            ("oom_kills", u64), ("alloc_stalls", u64)]),
        "History": _struct("History", [
            ("started", ctypes.c_bool), ("foreground", ctypes.c_bool), ("level", u32),
            ("lower_since_ms", i64), ("hold_until_ms", i64), ("pressure_ms", i64),
            ("keep", u64), ("target", u64), ("target_ms", i64), ("settled_ms", i64),
            ("last_balloon", u64), ("last_ms", i64), ("oom_kills", u64),
            ("alloc_stalls", u64), ("down_delay_ms", i64), ("fell_ms", i64),
            ("level_ms", i64)]),
        "Decision": _struct("Decision", [
            ("target", u64), ("reason", ctypes.c_int), ("level", u32), ("keep", u64),
            ("clamped", ctypes.c_bool)]),
    }


def _layout_c(d: Balloon, types: dict[str, type]) -> str:
    """C that exports sizeof and every field's offset and size, in ctypes' order."""
    rows = []
    for name, t in types.items():
        ct = d.c_type + name
        rows.append(f"sizeof({ct})")
        for f, _ in t._fields_:
            rows += [f"offsetof({ct}, {f})", f"sizeof((({ct} *)0)->{f})"]
    body = ",\n    ".join(rows)
    return (f'#include <stddef.h>\n#include "{d.policy_header}"\n\n'
            f"const size_t tabvm_test_layout[] = {{\n    {body}\n}};\n"
            "const size_t tabvm_test_layout_n = "
            "sizeof(tabvm_test_layout) / sizeof(tabvm_test_layout[0]);\n")


def _driver_c(d: Balloon, types: dict[str, type]) -> str:
    """A replay driver: reads I (init), P <params...> and D <inputs...> lines
    from stdin, prints one line per decision. Built with the sanitizers."""
    p, t = d.policy_prefix, d.c_type
    params = [f for f, _ in types["Params"]._fields_ if f not in
              ("background_keep", "foreground_keep")]
    read_params = "\n".join(
        f"            p.{f} = ({'int64_t' if f.endswith('_ms') else 'uint64_t'})num(&cur);"
        if f != "levels" else "            p.levels = (uint32_t)num(&cur);"
        for f in params)
    inputs = [f for f, _ in types["Inputs"]._fields_]
    read_inputs = "\n".join(f"            in.{f} = num(&cur);" if f not in
                            ("foreground", "stats_valid") else
                            f"            in.{f} = num(&cur) != 0;" for f in inputs)
    return f"""#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "{d.policy_header}"

/* numbers are printed by Python as unsigned 64-bit (two's complement for <0) */
static uint64_t num(char **cur)
{{
    char *end;
    uint64_t v = strtoull(*cur, &end, 10);

    if (end == *cur) {{
        fprintf(stderr, "driver: bad number at '%s'\\n", *cur);
        exit(2);
    }}
    *cur = end;
    return v;
}}

int main(void)
{{
    static char line[4096];
    {t}Params p = {p}_params;
    {t}History s;
    {t}Inputs in;
    {t}Decision out;

    {p}_init(&s);
    while (fgets(line, sizeof(line), stdin)) {{
        char *cur = line + 1;

        if (line[0] == 'I') {{
            {p}_init(&s);
        }} else if (line[0] == 'P') {{
{read_params}
            for (int i = 0; i < {d.c_levels}; i++) {{
                p.background_keep[i] = num(&cur);
            }}
            for (int i = 0; i < {d.c_levels}; i++) {{
                p.foreground_keep[i] = num(&cur);
            }}
        }} else if (line[0] == 'D') {{
            bool changed;

            memset(&in, 0, sizeof(in));
{read_inputs}
            memset(&out, 0x5a, sizeof(out));
            changed = {p}_decide(&p, &s, &in, &out);
            printf("%d %" PRIu64 " %d %" PRIu32 " %" PRIu64 " %d\\n", changed, out.target,
                   out.reason, out.level, out.keep, out.clamped);
        }}
    }}
    return 0;
}}
"""


@dataclass
class Build:
    device: Balloon
    dir: Path
    so: Path
    driver: Path | None


def build(out: Path, sanitize: bool = False) -> Build:
    """Generate policy.{c,h}, compile them (and the layout table) into
    policy.so, and with ``sanitize`` a replay driver under ASan+UBSan."""
    d = balloon_device()
    base = f"qemu/{d.qemu_dir}/"
    wanted = {base + d.policy_c_file, base + d.policy_header}
    got = [o for o in generate(spec_files()) if o.path in wanted]
    assert len(got) == 2, f"the generator did not produce {sorted(wanted)}"
    for o in got:
        (out / Path(o.path).name).write_text(o.text)
    types = structs(len(d.levels))
    (out / "layout.c").write_text(_layout_c(d, types))
    so = out / "policy.so"
    subprocess.run(["gcc", "-shared", "-fPIC", *CFLAGS, f"-I{out}", str(out / d.policy_c_file),
                    str(out / "layout.c"), "-o", str(so)], check=True)
    driver = None
    if sanitize:
        (out / "driver.c").write_text(_driver_c(d, types))
        driver = out / "driver"
        subprocess.run(["gcc", *CFLAGS, *SANITIZE, f"-I{out}", str(out / d.policy_c_file),
                        str(out / "driver.c"), "-o", str(driver)], check=True)
    return Build(d, out, so, driver)


def header_fields(header: str, c_type: str) -> list[str]:
    """Field names of a typedef struct in policy.h, in order."""
    m = re.search(r"typedef struct " + c_type + r" \{(.*?)\} " + c_type + ";", header, re.S)
    assert m, f"{c_type} not found in the header"
    names = []
    for decl in re.sub(r"/\*.*?\*/", "", m.group(1), flags=re.S).split(";")[:-1]:
        decl = decl.strip()
        names.append(re.match(r".*?(\w+)\s*(\[[^]]*\])?$", decl, re.S).group(1))
    return names


def header_reasons(header: str, c_macro: str) -> list[str]:
    m = re.search(r"enum \{(.*?)\};", header, re.S)
    assert m, "the reasons enum is not in the header"
    names = [n.strip() for n in m.group(1).split(",") if n.strip()]
    assert names[-1] == f"{c_macro}_REASONS", names
    return [n.removeprefix(c_macro + "_") for n in names[:-1]]


class PolicyLib:
    """policy.so with its structs mirrored; the constructor checks the mirror
    against the C layout, the header's field lists and its reasons, and fails
    loudly on any difference."""

    def __init__(self, b: Build) -> None:
        self.build = b
        d = self.device = b.device
        self.levels = len(d.levels)
        self.types = structs(self.levels)
        self.Params = self.types["Params"]
        self.Inputs = self.types["Inputs"]
        self.History = self.types["History"]
        self.Decision = self.types["Decision"]
        self.so = ctypes.CDLL(str(b.so))
        self._check_layout((b.dir / d.policy_header).read_text())
        self.reasons = [r.name for r in d.REASONS]
        self._decide = getattr(self.so, f"{d.policy_prefix}_decide")
        self._decide.restype = ctypes.c_bool
        self._decide.argtypes = [ctypes.POINTER(self.Params), ctypes.POINTER(self.History),
                                 ctypes.POINTER(self.Inputs), ctypes.POINTER(self.Decision)]
        self._init = getattr(self.so, f"{d.policy_prefix}_init")
        self._init.restype = None
        self._init.argtypes = [ctypes.POINTER(self.History)]

    def _check_layout(self, header: str) -> None:
        d = self.device
        for name, t in self.types.items():
            mirror = [f for f, _ in t._fields_]
            declared = header_fields(header, d.c_type + name)
            if mirror != declared:
                raise AssertionError(f"{d.c_type}{name}: policy.h declares {declared}, "
                                     f"the ctypes mirror has {mirror}")
        n = ctypes.c_size_t.in_dll(self.so, "tabvm_test_layout_n").value
        table = list((ctypes.c_size_t * n).in_dll(self.so, "tabvm_test_layout"))
        mine = []
        for t in self.types.values():
            mine.append(ctypes.sizeof(t))
            for f, ft in t._fields_:
                mine += [getattr(t, f).offset, ctypes.sizeof(ft)]
        if mine != table:
            raise AssertionError(f"struct layout differs from the compiler's: ctypes "
                                 f"{mine} != C {table}")
        reasons = header_reasons(header, d.c_macro)
        if reasons != [r.c_name for r in d.REASONS]:
            raise AssertionError(f"policy.h reasons {reasons} != the IR's")

    def spec_params(self):
        """A copy of tabvm_balloon_params (the spec's values)."""
        p = self.Params.in_dll(self.so, f"{self.device.policy_prefix}_params")
        copy = self.Params()
        ctypes.memmove(ctypes.byref(copy), ctypes.byref(p), ctypes.sizeof(p))
        return copy


def params_line(p) -> str:
    vals = []
    for f, _ in p._fields_:
        v = getattr(p, f)
        vals += [x & U64_MAX for x in v] if not isinstance(v, int) else [v & U64_MAX]
    return "P " + " ".join(map(str, vals))


def inputs_line(i) -> str:
    return "D " + " ".join(str(int(getattr(i, f)) & U64_MAX) for f, _ in i._fields_)


class Policy:
    """One policy instance: its parameters and history. Every call is recorded
    (``trace``, in the replay driver's format) along with what it returned
    (``results``)."""

    def __init__(self, lib: PolicyLib, params=None) -> None:
        self.lib = lib
        self.params = params if params is not None else lib.spec_params()
        self.history = lib.History()
        lib._init(ctypes.byref(self.history))
        self.trace = ["I", params_line(self.params)]
        self.results: list[str] = []

    def decide(self, inputs) -> tuple[bool, object]:
        out = self.lib.Decision()
        changed = self.lib._decide(ctypes.byref(self.params), ctypes.byref(self.history),
                                   ctypes.byref(inputs), ctypes.byref(out))
        self.trace.append(inputs_line(inputs))
        self.results.append(f"{int(changed)} {out.target} {out.reason} {out.level} "
                            f"{out.keep} {int(out.clamped)}")
        return changed, out

    def inputs(self, **kw):
        return self.lib.Inputs(**kw)


def replay(driver: Path, trace: list[str]) -> list[str]:
    """Run a recorded trace through the sanitizer-built driver; its decisions."""
    r = subprocess.run([str(driver)], input="\n".join(trace) + "\n", capture_output=True,
                       text=True, timeout=120)
    if r.returncode or r.stderr:
        raise AssertionError(f"the sanitizer driver failed (rc {r.returncode}):\n"
                             f"{r.stderr[-4000:]}")
    return r.stdout.splitlines()


# -- the world ----------------------------------------------------------------

@dataclass
class HostApp:
    """A host app that allocates ``total`` MiB at ``rate`` MiB/s from ``start``
    s and frees it all at ``exit`` s (None: never)."""
    start: float
    total: float
    rate: float
    exit: float | None = None
    used: float = 0.0

    def step(self, now: float, dt: float) -> None:
        if self.exit is not None and now >= self.exit:
            self.used = 0.0
        elif now > self.start:
            self.used = min(self.total, self.used + self.rate * dt)


@dataclass
class Workload:
    """A guest process that allocates ``total`` MiB of anon at ``rate`` MiB/s
    from ``start`` s, holds it, and frees it at ``exit`` s (None: never)."""
    start: float
    total: float
    rate: float
    exit: float | None = None
    allocated: float = 0.0
    done: bool = False
    oom_killed_at: float | None = None
    completed_at: float | None = None


@dataclass
class Guest:
    ram: float = 1024.0
    anon: float = 0.0
    cache: float = 0.0
    pinned_cache: float = 0.0      # in ``cache`` and MemAvailable, not reclaimable
    reserve: float = 16.0          # min watermark: not available, never ballooned
    untouched: float = 0.0         # free memory the guest has never touched
    rate: float = 200.0            # balloon inflation / deflation, MiB/s
    reclaim_rate: float | None = None   # cache the balloon can reclaim, MiB/s
    cache_rate: float = 0.0        # file reads filling free memory, MiB/s
    deflate_on_oom: bool = False
    counters: bool = True          # reports oom-kills and alloc-stalls (Linux 6.10+)
    workloads: list[Workload] = field(default_factory=list)
    balloon: float = 0.0           # the balloon's size (virtio "actual" = ram - this)
    target: float = 0.0            # what QEMU asked for
    oom_kills: int = 0
    alloc_stalls: int = 0

    @property
    def free(self) -> float:
        return self.ram - self.anon - self.cache - self.balloon

    @property
    def available(self) -> float:
        """MemAvailable, roughly: free above the watermark plus page cache."""
        return max(0.0, self.free - self.reserve) + self.cache

    @property
    def can_give(self) -> float:
        """What the balloon could still take: free above the watermark and
        reclaimable cache."""
        return max(0.0, self.free - self.reserve) + self.cache - self.pinned_cache

    def rss(self) -> float:
        """The VM process's guest memory on the host."""
        return self.ram - self.balloon - self.untouched

    def _take_free(self, want: float) -> float:
        got = max(0.0, min(want, self.free - self.reserve))
        self.untouched -= min(self.untouched, got)
        return got

    def _alloc_anon(self, want: float) -> float:
        """Allocate anon; returns what could not be had."""
        got = self._take_free(want)
        self.anon += got
        rest = want - got
        if rest > 1e-9:
            self.alloc_stalls += 1             # direct reclaim
            r = min(rest, self.cache - self.pinned_cache)
            self.cache -= r
            self.anon += r
            rest -= r
        if rest > 1e-9 and self.deflate_on_oom and self.balloon > 0:
            r = min(rest, self.balloon)        # the OOM notifier deflates
            self.balloon -= r
            self.anon += r
            rest -= r
        return max(0.0, rest)

    def step(self, now: float, dt: float) -> None:
        for w in self.workloads:
            if w.done or now <= w.start:
                continue
            if w.exit is not None and now >= w.exit:
                self.anon -= w.allocated
                w.allocated, w.done = 0.0, True
                continue
            want = min(w.rate * dt, w.total - w.allocated)
            if want <= 0:
                continue
            short = self._alloc_anon(want)
            w.allocated += want - short
            if short > 0:                      # the OOM killer picks the workload
                self.anon -= w.allocated
                w.allocated, w.done, w.oom_killed_at = 0.0, True, now
                self.oom_kills += 1
            elif w.allocated >= w.total - 1e-9 and w.completed_at is None:
                w.completed_at = now
        if self.cache_rate:
            self.cache += self._take_free(self.cache_rate * dt)
        move = self.rate * dt
        if self.target > self.balloon:
            want = min(move, self.target - self.balloon)
            got = self._take_free(want)
            rest = want - got
            reclaim = self.cache - self.pinned_cache
            if self.reclaim_rate is not None:
                reclaim = min(reclaim, self.reclaim_rate * dt)
            r = max(0.0, min(rest, reclaim))
            self.cache -= r
            self.balloon += got + r
        elif self.target < self.balloon:
            give = min(move, self.balloon - self.target)
            self.balloon -= give
            self.untouched += give             # QEMU discarded those pages


@dataclass
class Stats:
    seq: int
    at: float
    available: float
    free: float
    cache: float
    oom_kills: int
    alloc_stalls: int


@dataclass
class Decided:
    """One decide() call: when, what the policy saw, what it answered."""
    t: float
    changed: bool
    target: float                  # MiB
    reason: str
    level: int
    keep: float                    # MiB (inf: no balloon)
    clamped: bool
    balloon: float                 # the inputs, MiB
    host_level: int
    foreground: bool
    stats_valid: bool
    available: float
    stats_ms: int


@dataclass
class Sample:
    t: float
    host_free: float
    host_level: int
    foreground: bool
    balloon: float
    target: float
    available: float               # the guest's real MemAvailable
    can_give: float                # what the balloon could still take
    vm_rss: float


@dataclass
class Result:
    samples: list[Sample]
    decisions: list[Decided]
    killed_at: float | None
    kill_line: float
    guest: Guest
    policy: Policy | None

    @property
    def min_host_free(self) -> float:
        return min(s.host_free for s in self.samples)

    def min_host_free_between(self, t0: float, t1: float) -> float:
        return min(s.host_free for s in self.samples if t0 <= s.t <= t1)

    def changes(self) -> list[Decided]:
        return [d for d in self.decisions if d.changed]

    def at(self, t: float) -> Sample:
        return min(self.samples, key=lambda s: abs(s.t - t))


class PolicyObject:
    """What tabvm-balloon.c does around decide()."""

    def __init__(self, policy: Policy, interval_ms: int) -> None:
        self.policy = policy
        self.interval_ms = interval_ms
        self.next_tick_ms = 0
        self.seen_seq: int | None = None
        self.stats_ms = 0
        self.level = 0
        self.foreground = False

    def tick(self, now_ms: int, guest: Guest, stats: Stats | None) -> Decided:
        lib = self.policy.lib
        in_ = lib.Inputs(now_ms=now_ms, ram=to_bytes(guest.ram),
                         balloon=to_bytes(guest.balloon), level=self.level,
                         foreground=self.foreground)
        if stats is not None:
            if stats.seq != self.seen_seq:
                self.seen_seq, self.stats_ms = stats.seq, now_ms
            in_.stats_ms = self.stats_ms
            in_.stats_valid = True
            in_.available, in_.free = to_bytes(stats.available), to_bytes(stats.free)
            in_.cache = to_bytes(stats.cache)
            in_.oom_kills, in_.alloc_stalls = stats.oom_kills, stats.alloc_stalls
        changed, out = self.policy.decide(in_)
        if changed:
            guest.target = out.target / MIB
        self.next_tick_ms = now_ms + self.interval_ms
        keep = float("inf") if out.keep == U64_MAX else out.keep / MIB
        return Decided(now_ms / 1000, changed, out.target / MIB, lib.reasons[out.reason],
                       out.level, keep, out.clamped, in_.balloon / MIB, self.level,
                       self.foreground, in_.stats_valid, in_.available / MIB, in_.stats_ms)


class Sim:
    """One run. ``foreground``: [(time s, bool)], the state from then on (the
    first entry should be at 0). ``policy``: a Policy, or None for a balloon
    that stays where it is. ``level_fn(t, lmkd_level) -> level`` replaces the
    host's reported level (e.g. to make it flicker)."""

    def __init__(self, lib: PolicyLib, guest: Guest, *, host_total: float,
                 host_others: float, apps: list[HostApp] | None = None,
                 foreground: list[tuple[float, bool]] | None = None,
                 policy: Policy | None | bool = True, duration: float = 60.0,
                 dt_ms: int = 100, stats_phase_ms: int = 500, stats_noise: float = 0.0,
                 level_fn: Callable[[float, int], int] | None = None, seed: int = 0,
                 stop_on_kill: bool = True) -> None:
        d = lib.device
        self.lib, self.guest = lib, guest
        self.host_total, self.host_others = host_total, host_others
        self.apps = apps or []
        self.foreground = sorted(foreground or [(0.0, False)])
        self.policy = Policy(lib) if policy is True else (policy or None)
        self.duration, self.dt_ms = duration, dt_ms
        self.interval_ms = d.stats_interval_s * 1000
        self.stats_phase_ms, self.stats_noise = stats_phase_ms, stats_noise
        self.level_fn, self.rng = level_fn, random.Random(seed)
        self.stop_on_kill = stop_on_kill
        self.kill_line = kill_line_mib(d.own_adj)
        self.margins = [lv.lmkd_margin_mib for lv in d.levels]

    def host_free(self) -> float:
        return (self.host_total - self.host_others - sum(a.used for a in self.apps)
                - self.guest.rss())

    def lmkd_level(self, free: float) -> int:
        level = 0
        for i, m in enumerate(self.margins):
            if m is not None and free < self.kill_line + m:
                level = i
        return level

    def foreground_at(self, t: float) -> bool:
        fg = False
        for at, state in self.foreground:
            if at <= t + 1e-9:
                fg = state
        return fg

    def _stats(self, seq: int, t: float) -> Stats:
        g, n = self.guest, self.stats_noise

        def noisy(v: float) -> float:
            return max(0.0, v + self.rng.uniform(-n, n)) if n else v
        return Stats(seq, t, noisy(g.available), noisy(g.free), noisy(g.cache),
                     g.oom_kills if g.counters else 0,
                     g.alloc_stalls if g.counters else 0)

    def run(self) -> Result:
        g, dt = self.guest, self.dt_ms / 1000
        obj = PolicyObject(self.policy, self.interval_ms) if self.policy else None
        samples: list[Sample] = []
        decisions: list[Decided] = []
        stats: Stats | None = None
        killed_at = None
        for step in range(int(round(self.duration * 1000 / self.dt_ms)) + 1):
            now_ms = step * self.dt_ms
            t = now_ms / 1000
            if step:
                for a in self.apps:
                    a.step(t, dt)
                g.step(t, dt)
            if now_ms % self.interval_ms == self.stats_phase_ms % self.interval_ms:
                stats = self._stats(0 if stats is None else stats.seq + 1, t)
            free = self.host_free()
            level = self.lmkd_level(free)
            if self.level_fn:
                level = self.level_fn(t, level)
            fg = self.foreground_at(t)
            if obj is not None:
                if (not decisions or level != obj.level or fg != obj.foreground
                        or now_ms >= obj.next_tick_ms):
                    obj.level, obj.foreground = level, fg
                    decisions.append(obj.tick(now_ms, g, stats))
            samples.append(Sample(t, free, level, fg, g.balloon, g.target, g.available,
                                  g.can_give, g.rss()))
            if not fg and free < self.kill_line and killed_at is None:
                killed_at = t
                if self.stop_on_kill:
                    break
        return Result(samples, decisions, killed_at, self.kill_line, g, self.policy)


# -- the seed experiment -------------------------------------------------------

SEED_BACKGROUND_S = 5.0
SEED_APP_START_S = 10.0
SEED_APP_EXIT_S = 30.0
SEED_FOREGROUND_S = 31.0


def seed_guest(**kw) -> Guest:
    """1 GiB guest filled to 80 %: 30 % anon, 50 % page cache, all touched."""
    return Guest(ram=1024.0, anon=0.3 * 1024, cache=0.5 * 1024, **kw)


def seed_run(lib: PolicyLib, policy: bool = True, app_rate_mb_s: float = 100.0,
             duration: float = 40.0, **kw) -> Result:
    """A 3 GiB tablet with 430 MiB free once the VM is in the background: the
    VM's kill line (144 MiB) is 286 MiB (300 MB) away. At 10 s a host app
    allocates 500 MB; it exits at 30 s and the VM comes back at 31 s."""
    total, free0 = 3072.0, kill_line_mib(lib.device.own_adj) + 300 * MB
    return Sim(lib, seed_guest(), host_total=total, host_others=total - 1024.0 - free0,
               apps=[HostApp(SEED_APP_START_S, 500 * MB, app_rate_mb_s * MB,
                             exit=SEED_APP_EXIT_S)],
               foreground=[(0.0, True), (SEED_BACKGROUND_S, False),
                           (SEED_FOREGROUND_S, True)],
               policy=policy, duration=duration, **kw).run()


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        lib = PolicyLib(build(Path(tmp)))
        for with_policy in (True, False):
            r = seed_run(lib, policy=with_policy)
            print(f"policy={with_policy}: min host free {r.min_host_free:.0f} MiB, "
                  f"kill line {r.kill_line:.0f} MiB, killed at {r.killed_at}")
            for d in r.changes():
                print(f"  {d.t:5.1f}s {d.reason:14} level {d.level} keep {d.keep:6.0f} "
                      f"balloon {d.balloon:6.0f} -> {d.target:6.0f} (avail {d.available:.0f})")
