"""Start-up benchmark: cold boot against stock `loadvm`, a `mapped-ram` migration
from a file, and tabvm's resume (glue.snapshot: RAM in a file, device state only).

  python bench/resume.py [--sizes 512,1024,2048,4096] [--reps 5] [--touch-pct 40]
                         [--json FILE]

For each guest RAM size, one test guest at a time under TCG (the project's QEMU
and test guest, `builtin_profile` without the touchscreen), four ways to get it
to answer; each is timed from just before QEMU's Popen to the guest agent's first
answer to a ping (AgentClient.wait_ready, pinging every 50 ms):

- cold boot: the plain profile, booted from the kernel.
- loadvm: the profile plus a 64 MiB qcow2 disk (internal snapshots need a
  writable qcow2 node), started with `-loadvm tabvm`; the snapshot was taken
  with HMP `savevm tabvm` (RAM and device state into the qcow2).
- mapped-ram: the plain profile started with `-incoming defer`, capability
  mapped-ram, `migrate-incoming uri=file:PATH`, wait for `completed`, `cont`;
  the file was written with mapped-ram on, `stop`, `migrate uri=file:PATH`
  (every non-zero RAM page at its fixed offset, zero pages left as holes).
- tabvm: `glue.snapshot.resume` on the RAM file (`FileRam`) and the device
  state `glue.snapshot.suspend` wrote.

Before each method's first save, a fresh boot of its configuration has the guest
agent's memhog touch --touch-pct of RAM with non-zero pages and keep holding
them, so the saved RAM is as big as a used guest's, not mostly zero pages. The
agent also holds a marker (hold/recall). Every repetition of a snapshot method
restores (timed), checks the marker it last held and that the memhog is still
alive with all its pages (the benchmark stops if a restore lost state), holds a
new marker, saves again (timed: the suspend figures) and quits; the next
repetition restores from that newer save. tabvm's RAM file is live after a
resume (the guest writes to it), so its old device state would not match it
any more: re-saving every time is required there, and done for all three for
symmetry. The order of the four methods rotates from one repetition to the next.

Save times run from the first save command to QEMU's exit, as `suspend` counts:
`savevm` (it stops the guest itself) + quit; mapped-ram: capability, `stop`,
`migrate`, `completed` + quit; tabvm: `suspend`. Every save is counted (the one
after the fresh boot and one per repetition).

The host's page cache is warm: every file was just written (dropping caches
needs root); a restore from a cold cache reads the saved RAM from disk.

Printed per size: median/min/max ms per method, cold boot / method, and for the
migration-based methods when the guest ran again (the QMP RESUME event); the
save times; the files' sizes on disk. Then the goal lines for tabvm's resume and
suspend. All files live under a fresh new_runtime_dir("bench-resume"), removed
at the end (also on Ctrl-C, SIGTERM and failures).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from glue.agent_client import AgentClient, AgentError  # noqa: E402
from glue.profile import builtin_profile, default_outputs  # noqa: E402
from glue.qemu import Qemu, QemuError, VmConfig  # noqa: E402
from glue.runtime import new_runtime_dir  # noqa: E402
from glue.snapshot import (FileRam, SnapshotError, resume, suspend,  # noqa: E402
                           wait_migration)
from tabvm.guest import build_guest  # noqa: E402

MiB = 1 << 20
TAG = "tabvm"                    # the qcow2 internal snapshot's name
MARKER = "bench-resume"          # the agent's hold/recall key
DISK_SIZE = "64M"
PING_INTERVAL = 0.05             # wait_ready: a ping every 50 ms until one is answered
BOOT_TIMEOUT = 180.0             # a cold boot (TCG) to the agent's answer
RESTORE_TIMEOUT = 120.0          # QMP, loading a 4 GiB snapshot, the agent's answer
HOG_TIMEOUT = 600.0              # memhog writing its pages under TCG
GOAL_RESUME_S = 0.100
GOAL_SUSPEND_S = 0.100
GOAL_SPEEDUP = 30.0
GOAL_FLAT = 1.25                 # max/min of the resume medians across sizes

METHODS = ("cold", "loadvm", "mapped-ram", "tabvm")
LABELS = {"cold": "cold boot", "loadvm": "stock loadvm (qcow2)",
          "mapped-ram": "mapped-ram (file)", "tabvm": "tabvm resume"}
SAVE_LABELS = {"loadvm": "savevm (qcow2)", "mapped-ram": "mapped-ram save",
               "tabvm": "tabvm suspend"}


class BenchError(RuntimeError):
    pass


@dataclasses.dataclass
class Sample:
    total: float                 # s: Popen -> the agent's first answer
    running: float | None        # s: Popen -> the QMP RESUME event (migration methods)
    position: int                # where in the repetition's order the method ran


class Run:
    """The benchmark's directory and the one QEMU that may be running."""

    def __init__(self, touch_pct: int):
        self.outputs = default_outputs()
        self.image = build_guest(progress=lambda m: None)
        self.qemu_img = self.outputs.root / "qemu-img"
        if not self.qemu_img.exists():
            raise BenchError(f"{self.qemu_img} missing: run `tabvm build` first")
        self.root = new_runtime_dir("bench-resume")
        self.touch_pct = touch_pct
        self.current: Qemu | None = None
        self.last: Qemu | None = None       # for its log when something fails

    def base(self, mib: int) -> VmConfig:
        return builtin_profile(self.outputs, self.image.vmlinux, self.image.initrd, "tcg",
                               memory=f"{mib}M", touch=False)

    def track(self, q: Qemu) -> Qemu:
        self.current = self.last = q
        return q

    def log_tail(self, lines: int = 20) -> str:
        if self.last is None or not self.last.log.exists():
            return ""
        text = self.last.log.read_text(errors="replace").strip().splitlines()[-lines:]
        return "\n".join(f"  | {line}" for line in text)

    def stop(self) -> None:
        q, self.current = self.current, None
        if q is not None:
            q.stop()

    def cleanup(self) -> None:
        """Stop the QEMU we know of, kill any other one still running on our
        directory (one interrupted inside glue.snapshot.resume before it handed
        its Qemu back), remove every file."""
        try:
            self.stop()
        finally:
            kill_ours(self.root)
            shutil.rmtree(self.root, ignore_errors=True)


def kill_ours(root: Path) -> None:
    """SIGKILL processes whose command line names ``root`` (only QEMUs this run
    started: the directory is fresh and private) and wait for them to go."""
    needle = str(root).encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "cmdline").read_bytes():
                os.kill(int(entry.name), signal.SIGKILL)
                pids.append(int(entry.name))
        except (OSError, ValueError):
            pass
    deadline = time.monotonic() + 10
    while pids and time.monotonic() < deadline:
        pids = [p for p in pids if Path(f"/proc/{p}").exists()
                and b"zombie" not in _status(p)]
        time.sleep(0.05)


def _status(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/status").read_bytes().lower()
    except OSError:
        return b""


def resumed_at(q: Qemu, t0_wall: float) -> float | None:
    """Seconds from ``t0_wall`` to the QMP RESUME event seen so far, if any."""
    assert q.qmp is not None
    for e in q.qmp.get_events(wait=False):
        if e["event"] == "RESUME":
            ts = e["timestamp"]
            return ts["seconds"] + ts["microseconds"] / 1e6 - t0_wall
    return None


def allocated(path: Path) -> int:
    return path.stat().st_blocks * 512 if path.exists() else 0


class Method:
    """One way to bring the guest up; a snapshot method also saves it."""

    name = ""
    snapshot = True

    def __init__(self, run: Run, mib: int):
        self.run, self.mib = run, mib
        self.dir = run.root / f"{mib}-{self.name}"
        self.dir.mkdir(mode=0o700)
        self.config = self.make_config(run.base(mib))
        self.marker: str | None = None
        self.saves = 0

    def make_config(self, base: VmConfig) -> VmConfig:
        return base

    def fresh(self) -> None:
        """Stale sockets of the previous QEMU gone (so the connects do not retry
        on them inside the timed part)."""
        for sock in ("qmp.sock", "agent.sock"):
            (self.dir / sock).unlink(missing_ok=True)

    def boot(self, config: VmConfig, timeout: float = 15.0) -> Qemu:
        self.fresh()
        q = self.run.track(Qemu(config, self.dir))
        return q.start(timeout=timeout)

    def start(self) -> Qemu:
        """The timed part up to a running guest."""
        return self.boot(self.config)

    def save(self, q: Qemu) -> float:
        raise NotImplementedError

    def files(self) -> dict[str, int]:
        return {}

    def prepare(self) -> float | None:
        """A snapshot method: boot fresh, touch and hold memory, hold a marker,
        save; the save time (None: nothing to prepare)."""
        if not self.snapshot:
            return None
        self.boot(self.config)
        assert self.run.current is not None
        with AgentClient(str(self.run.current.agent_socket), connect_timeout=30) as agent:
            agent.wait_ready(timeout=BOOT_TIMEOUT)
            mib = self.mib * self.run.touch_pct // 100
            if mib:
                agent.memhog(mib)
                deadline = time.monotonic() + HOG_TIMEOUT
                while not (st := agent.memhog_stat()).done:
                    if not st.alive or time.monotonic() > deadline:
                        raise BenchError(f"{self.name} {self.mib} MiB: the guest's memhog "
                                         f"of {mib} MiB did not finish: {st}")
                    time.sleep(0.2)
            return self._hold_and_save(agent)

    def _hold_and_save(self, agent: AgentClient) -> float:
        self.saves += 1
        self.marker = f"{self.name}-{self.mib}-{self.saves}-{time.monotonic_ns()}"
        agent.hold(MARKER, self.marker)
        q = self.run.current
        assert q is not None
        took = self.save(q)
        self.run.current = None           # save quit it
        return took

    def rep(self, position: int) -> tuple[Sample, float | None]:
        """One timed start; for snapshot methods the state checked and saved
        again. (the sample, the save time)."""
        t0_wall, t0 = time.time(), time.monotonic()
        q = self.start()
        with AgentClient(str(q.agent_socket), connect_timeout=30) as agent:
            agent.wait_ready(timeout=RESTORE_TIMEOUT if self.snapshot else BOOT_TIMEOUT,
                             interval=PING_INTERVAL)
            total = time.monotonic() - t0
            running = resumed_at(q, t0_wall)
            if not self.snapshot:
                self.run.stop()
                return Sample(total, running, position), None
            try:
                got: str | None = agent.recall(MARKER)
            except AgentError as e:
                got = f"none ({e})"
            if got != self.marker:
                raise BenchError(f"{LABELS[self.name]} {self.mib} MiB lost the guest's state: "
                                 f"marker {got!r}, expected {self.marker!r}")
            st = agent.memhog_stat()
            if self.run.touch_pct and not (st.alive and st.done):
                raise BenchError(f"{LABELS[self.name]} {self.mib} MiB: the guest's memhog "
                                 f"is not holding its memory after the restore: {st}")
            status = q.cmd("query-status")["status"]
            if status != "running":
                raise BenchError(f"{LABELS[self.name]} {self.mib} MiB: guest {status}")
            return Sample(total, running, position), self._hold_and_save(agent)


class Cold(Method):
    name = "cold"
    snapshot = False


class LoadVm(Method):
    name = "loadvm"

    def make_config(self, base: VmConfig) -> VmConfig:
        self.disk = self.dir / "disk.qcow2"
        r = subprocess.run([str(self.run.qemu_img), "create", "-q", "-f", "qcow2",
                            str(self.disk), DISK_SIZE], capture_output=True, text=True)
        if r.returncode:
            raise BenchError(f"qemu-img create: {r.stderr.strip() or r.stdout.strip()}")
        return dataclasses.replace(
            base,
            blockdevs=base.blockdevs + (f"driver=qcow2,node-name=disk,file.driver=file,"
                                        f"file.filename={self.disk}",),
            devices=base.devices + ("virtio-blk-pci,drive=disk,id=disk",))

    def start(self) -> Qemu:
        return self.boot(dataclasses.replace(self.config,
                                             extra=self.config.extra + ("-loadvm", TAG)),
                         timeout=RESTORE_TIMEOUT)

    def save(self, q: Qemu) -> float:
        t0 = time.monotonic()
        out = q.cmd("human-monitor-command", **{"command-line": f"savevm {TAG}"})
        if out and out.strip():
            raise BenchError(f"savevm {TAG}: {out.strip()}")
        q.stop()
        return time.monotonic() - t0

    def files(self) -> dict[str, int]:
        return {"qcow2 (disk + snapshot)": allocated(self.disk)}


class MappedRam(Method):
    name = "mapped-ram"
    CAPS = [{"capability": "mapped-ram", "state": True}]

    def make_config(self, base: VmConfig) -> VmConfig:
        self.state = self.dir / "state"
        return base

    def start(self) -> Qemu:
        q = self.boot(dataclasses.replace(self.config,
                                          extra=self.config.extra + ("-incoming", "defer")))
        q.cmd("migrate-set-capabilities", capabilities=self.CAPS)
        q.cmd("migrate-incoming", uri=f"file:{self.state}")
        wait_migration(q, RESTORE_TIMEOUT, "mapped-ram load")
        q.cmd("cont")
        return q

    def save(self, q: Qemu) -> float:
        t0 = time.monotonic()
        partial = self.state.with_name("state.partial")
        partial.unlink(missing_ok=True)
        q.cmd("migrate-set-capabilities", capabilities=self.CAPS)
        q.cmd("stop")
        q.cmd("migrate", uri=f"file:{partial}")
        wait_migration(q, RESTORE_TIMEOUT, "mapped-ram save")
        partial.rename(self.state)
        q.stop()
        return time.monotonic() - t0

    def files(self) -> dict[str, int]:
        return {"migration file": allocated(self.state),
                "its apparent size": self.state.stat().st_size}


class TabVm(Method):
    name = "tabvm"

    def make_config(self, base: VmConfig) -> VmConfig:
        self.ram = FileRam(self.dir / "ram", self.mib * MiB)
        self.state = self.dir / "state"
        return self.ram.apply(base)

    def start(self) -> Qemu:
        self.fresh()
        return self.run.track(resume(self.config, self.dir, self.state))

    def save(self, q: Qemu) -> float:
        return suspend(q, self.state)

    def files(self) -> dict[str, int]:
        return {"RAM file": allocated(self.ram.path), "device state": allocated(self.state)}


CLASSES = {"cold": Cold, "loadvm": LoadVm, "mapped-ram": MappedRam, "tabvm": TabVm}


@dataclasses.dataclass
class SizeResult:
    mib: int
    samples: dict[str, list[Sample]]
    saves: dict[str, list[float]]
    files: dict[str, dict[str, int]]


def measure(run: Run, mib: int, reps: int) -> SizeResult:
    methods = [CLASSES[m](run, mib) for m in METHODS]
    samples: dict[str, list[Sample]] = {m.name: [] for m in methods}
    saves: dict[str, list[float]] = {m.name: [] for m in methods if m.name != "cold"}
    for m in methods:
        took = m.prepare()
        if took is not None:
            saves[m.name].append(took)
            print(f"{mib:>5} MiB setup: {SAVE_LABELS[m.name]} after a fresh boot "
                  f"{took * 1e3:.0f} ms", flush=True)
    for i in range(reps):
        k = i % len(methods)                    # rotate the order every repetition
        for pos, m in enumerate(methods[k:] + methods[:k]):
            sample, took = m.rep(pos)
            samples[m.name].append(sample)
            save = "" if took is None else f", {SAVE_LABELS[m.name]} {took * 1e3:.0f} ms"
            if took is not None:
                saves[m.name].append(took)
            print(f"{mib:>5} MiB rep {i + 1}: {LABELS[m.name]:<21} "
                  f"{sample.total * 1e3:8.0f} ms{save}", flush=True)
    files = {m.name: m.files() for m in methods if m.files()}
    for m in methods:                       # this size's files go before the next size
        shutil.rmtree(m.dir, ignore_errors=True)
    return SizeResult(mib, samples, saves, files)


def ms(v: float) -> str:
    return f"{v * 1e3:.1f}" if v < 1 else f"{v * 1e3:.0f}"


def report(r: SizeResult) -> None:
    cold = statistics.median(s.total for s in r.samples["cold"])
    print(f"\n### {r.mib} MiB guest ({len(r.samples['cold'])} repetitions)\n")
    print("| method | median ms | min ms | max ms | cold / method | guest running ms |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in METHODS:
        t = [s.total for s in r.samples[name]]
        run = [s.running for s in r.samples[name] if s.running is not None]
        med = statistics.median(t)
        print(f"| {LABELS[name]} | {ms(med)} | {ms(min(t))} | {ms(max(t))} | "
              f"{cold / med:.1f}x | {ms(statistics.median(run)) if run else '-'} |")
    print("\n| save | median ms | min ms | max ms | n |")
    print("|---|---:|---:|---:|---:|")
    for name in ("tabvm", "loadvm", "mapped-ram"):
        t = r.saves[name]
        print(f"| {SAVE_LABELS[name]} | {ms(statistics.median(t))} | {ms(min(t))} | "
              f"{ms(max(t))} | {len(t)} |")
    print("\non disk after the last save: " + "; ".join(
        f"{LABELS[name]}: " + ", ".join(f"{what} {size / MiB:.1f} MiB"
                                        for what, size in f.items())
        for name, f in r.files.items()))


def goals(results: list[SizeResult]) -> None:
    def med(r: SizeResult, name: str) -> float:
        return statistics.median(s.total for s in r.samples[name])

    resumes = {r.mib: med(r, "tabvm") for r in results}
    speedups = {r.mib: med(r, "cold") / med(r, "tabvm") for r in results}
    suspends = {r.mib: statistics.median(r.saves["tabvm"]) for r in results}
    flat = max(resumes.values()) / min(resumes.values())

    def per_size(values: dict[int, float], fmt) -> str:
        return ", ".join(f"{mib} MiB {fmt(v)}" for mib, v in values.items())

    def yn(ok: bool) -> str:
        return "yes" if ok else "no"

    print("\n### goals (tabvm)\n")
    print(f"- resume median < {GOAL_RESUME_S * 1e3:.0f} ms: "
          f"{yn(all(v < GOAL_RESUME_S for v in resumes.values()))} "
          f"({per_size(resumes, lambda v: ms(v) + ' ms')})")
    print(f"- flat across sizes (max/min of medians <= {GOAL_FLAT}): "
          f"{yn(flat <= GOAL_FLAT)} ({flat:.2f}"
          + (", one size only" if len(results) == 1 else "") + ")")
    print(f"- >= {GOAL_SPEEDUP:.0f}x faster than cold boot: "
          f"{yn(all(v >= GOAL_SPEEDUP for v in speedups.values()))} "
          f"({per_size(speedups, lambda v: f'{v:.1f}x')})")
    print(f"- suspend < {GOAL_SUSPEND_S * 1e3:.0f} ms: "
          f"{yn(all(v < GOAL_SUSPEND_S for v in suspends.values()))} "
          f"({per_size(suspends, lambda v: ms(v) + ' ms')})")


def to_json(results: list[SizeResult], args: argparse.Namespace) -> dict:
    return {"args": {"sizes": args.sizes, "reps": args.reps, "touch_pct": args.touch_pct},
            "sizes": {str(r.mib): {
                "restore": {name: [dataclasses.asdict(s) for s in samples]
                            for name, samples in r.samples.items()},
                "save": r.saves, "files": r.files} for r in results}}


def _raise_exit(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="512,1024,2048,4096",
                   help="guest RAM sizes in MiB, comma-separated (default 512,1024,2048,4096)")
    p.add_argument("--reps", type=int, default=5, help="repetitions per size and method")
    p.add_argument("--touch-pct", type=int, default=40,
                   help="percent of guest RAM the guest touches and holds before saving")
    p.add_argument("--json", type=Path, help="also write the raw samples to this file")
    args = p.parse_args(argv)
    try:
        sizes = [int(s) for s in args.sizes.split(",")]
    except ValueError:
        p.error(f"--sizes: not MiB numbers: {args.sizes!r}")
    if args.reps < 1 or not 0 <= args.touch_pct <= 80 or any(s < 256 for s in sizes):
        p.error("--reps must be >= 1, --touch-pct 0..80, sizes >= 256 MiB")

    signal.signal(signal.SIGTERM, _raise_exit)
    signal.signal(signal.SIGHUP, _raise_exit)
    run = Run(args.touch_pct)
    results: list[SizeResult] = []
    try:
        print(f"Start-up to the guest agent's first answer, TCG, one VM at a time, "
              f"{args.reps} repetitions per size and method (order rotating); before "
              f"saving, the guest holds {args.touch_pct}% of its RAM written; files under "
              f"{run.root}", flush=True)
        for mib in sizes:
            results.append(measure(run, mib, args.reps))
    except (BenchError, QemuError, SnapshotError, AgentError) as e:
        print(f"bench/resume.py: {type(e).__name__}: {e}", file=sys.stderr)
        if tail := run.log_tail():
            print(f"the last QEMU's log ({run.last.log.name}):\n{tail}", file=sys.stderr)
        return 1
    finally:
        run.cleanup()
    for r in results:
        report(r)
    goals(results)
    if args.json:
        args.json.write_text(json.dumps(to_json(results, args), indent=1) + "\n")
        print(f"\nraw samples: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
