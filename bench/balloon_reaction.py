"""Balloon reaction benchmark: a host pressure signal through tabvm's ballooning
policy, against stock QEMU's manual path (a QMP `balloon` command) to the same target.

  python bench/balloon_reaction.py [--reps 5] [--steps 256,1024] [--memory 2G]

One test guest under TCG (virtio-balloon with deflate-on-oom and free page
reporting, the policy object from devspecs/balloon.yaml, a scratch disk), wired
the way `tabvm run` wires it: host events on the host-event socket ->
glue.balloon.BalloonBridge -> the policy's chardev. The host's own pressure
sources (PSI, /proc/meminfo) stay off, so only the benchmark's signal moves the
level.

Starting state of every repetition: the VM in the foreground at level normal
(no balloon), the guest's available memory mostly page cache (reclaimable, as on
a desktop guest: the scratch disk read into it), sized with an anonymous memory
hog so that available = keep + STEP, where keep is the guest memory the
policy leaves the foreground VM under the signal's level (critical: 256 MiB).
In the background the policy takes any surplus over its level's keep on its own,
and the background keeps differ by 448 MiB at most: a steady state from which
one signal makes a 1 GiB step exists only in the foreground. Steps at
inflate.max_step_mib or larger are aimed a little above it, so the policy's step
is the cap.

- policy: t0 just before {"event":"pressure","level":LEVEL} goes to the
  host-event socket; the decision latency is t0 -> the TABVM_BALLOON_DECISION
  event (its QEMU timestamp); the reaction is t0 -> query-balloon (polled every
  10 ms) shows the balloon within 1 MiB of the decision's target. Between
  repetitions the pressure goes back to normal, the policy deflates after
  level_down_delay_s, and the cache is refilled.
- peer, paired with each policy repetition (the pair's order alternates): the
  policy object removed (object-del: stock virtio-balloon; object-add brings it
  back, on the same chardev, for the next policy repetition), the same starting
  state, t0 just before QMP `balloon` with value = RAM - the target the policy
  chose (in the pair, or the pair before when the peer goes first); command
  latency = the command's round trip; the same polling. Then `balloon` back to RAM.
- peer, free: once per step, the manual path again with the guest's page cache
  dropped just before (echo 1 > drop_caches): the balloon takes free memory, so
  the rates above against this one show what the guest's reclaim costs.

Inflation rate: the step over the inflation phase (from the decision, or from
the command, to the first poll that shows the target), in MB/s (10^6 bytes) and
MiB/s; ChromeOS ARCVM counts an inflation under 15 MB/s as a stall. Printed per
step: the step the policy chose (target - balloon in its decision) and the
guest's available memory it saw, median/min/max of each figure per path, the
ratios policy/peer and how far the rate is above the stall threshold.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from contextlib import ExitStack
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from glue.agent_client import AgentClient  # noqa: E402
from glue.balloon import (PRESSURE_SOCKET, BalloonBridge, PolicyLink,  # noqa: E402
                          levels_from_spec)
from glue.host_events import HostEventServer, socket_path  # noqa: E402
from glue.host_events import request as host_event  # noqa: E402
from glue.profile import (BALLOON_ID, POLICY_ID, POLICY_PATH,  # noqa: E402
                          PRESSURE_CHARDEV_ID, BalloonSetup, builtin_profile,
                          default_outputs, scratch_image)
from glue.qemu import Qemu  # noqa: E402
from glue.runtime import new_runtime_dir  # noqa: E402
from tabvm.guest import build_guest  # noqa: E402

MiB = 1 << 20
SPEC = levels_from_spec()
EVENT = SPEC.qapi_event
CAP = SPEC.inflate_max_mib * MiB
STALL_MBPS = 15.0            # ChromeOS ARCVM: slower inflation is a stall (10^6 B/s)
POLL_S = 0.010
DISK = 64 << 30              # sparse scratch disk, read at a moving offset
TOLERANCE = 12 * MiB         # how close the guest's available memory is set to its aim
CAP_MARGIN = 32 * MiB        # steps at the cap: aim this far above it


def signal_level() -> tuple[str, int]:
    """The lowest level that limits the foreground VM, and what it keeps."""
    for lv in SPEC.levels:
        if lv.foreground_keep_mib is not None:
            return lv.name, lv.foreground_keep_mib * MiB
    raise SystemExit("devspecs/balloon.yaml: no level limits the foreground VM")


LEVEL, KEEP = signal_level()


@dataclasses.dataclass
class Rep:
    step: int                    # target - balloon when asked
    target: int
    available: int               # the guest's available memory the policy saw
    latency: float               # s: to the decision event / the command's return
    reaction: float | None       # s: to the balloon within 1 MiB of target; None: timeout
    rate: float | None           # bytes/s over the inflation phase
    note: str = ""


class Vm:
    """The guest: its agent, QMP, and whether the policy object is there."""

    def __init__(self, q: Qemu, agent: AgentClient):
        self.q, self.agent = q, agent
        self.ram = q.cmd("query-memory-size-summary")["base-memory"]
        self.offset_mib = 0
        self.holder = False
        self.hog_mib = 0
        self.floor = 0                # free memory the guest keeps with a full cache
        self.policy = True            # the policy object is there

    def poll(self) -> tuple[float, int, list[dict]]:
        """(monotonic time of the answer, balloon bytes, QMP events since the last poll)."""
        with self.q.lock:
            resp = self.q.qmp.cmd_raw("query-balloon")
            events = self.q.qmp.get_events()
            self.q.qmp.clear_events()
        t = time.monotonic()
        if "error" in resp:
            raise RuntimeError(f"query-balloon: {resp['error']}")
        return t, self.ram - resp["return"]["actual"], events

    def balloon(self) -> int:
        return self.poll()[1]

    def drain_events(self) -> None:
        self.poll()

    def wait_balloon(self, size: int, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while abs(self.balloon() - size) >= MiB:
            if time.monotonic() > deadline:
                raise SystemExit(f"{what}: balloon {self.balloon() / MiB:.1f} MiB, "
                                 f"not {size / MiB:.0f} MiB, after {timeout} s")
            time.sleep(0.1)

    def stats_available(self) -> int:
        """The guest's available memory from a statistics report sent after now."""
        dev = f"/machine/peripheral/{BALLOON_ID}"
        first = self.q.qom_get(dev, "guest-stats")["last-update"]
        deadline = time.monotonic() + 10
        while True:
            stats = self.q.qom_get(dev, "guest-stats")
            if stats["last-update"] != first:
                return stats["stats"]["stat-available-memory"]
            if time.monotonic() > deadline:
                raise SystemExit("the guest sent no balloon statistics for 10 s")
            time.sleep(0.05)

    def fill_cache(self) -> None:
        """Read fresh blocks of the scratch disk until the guest's free memory is
        page cache. A holder keeps /dev/vda open (Linux drops a block device's
        cache when its last user closes it)."""
        mib = max(0, self.agent.mem().free - self.floor) // MiB + 32
        if self.offset_mib + mib > DISK // MiB:
            self.offset_mib = 0       # the oldest blocks: long reclaimed
        holder = "" if self.holder else "sleep 1000000 </dev/vda >/dev/null 2>&1 & "
        r = self.agent.sh(f"{holder}dd if=/dev/vda of=/dev/null bs=1M count={mib} "
                          f"skip={self.offset_mib} 2>&1", timeout=300)
        if r.status:
            raise SystemExit(f"dd in the guest failed: {r.output}")
        self.holder = True
        self.offset_mib += mib

    def hog(self, mib: int) -> None:
        """Hold ``mib`` MiB of anonymous memory in the guest (0: none)."""
        if mib <= 0:
            self.agent.memhog_stop()
            self.hog_mib = 0
            return
        self.agent.memhog(mib)
        deadline = time.monotonic() + 180
        while not (stat := self.agent.memhog_stat()).done:
            if not stat.alive or time.monotonic() > deadline:
                raise SystemExit(f"the guest's memory hog did not finish: {stat}")
            time.sleep(0.2)
        self.hog_mib = mib

    def prepare(self, aim: int) -> int:
        """Balloon empty (the caller deflated it): page cache refilled and the
        guest's available memory set to ``aim``, as its statistics (what the
        policy decides on) report it; returns what they report."""
        for _ in range(6):
            self.fill_cache()
            err = self.stats_available() - aim
            if abs(err) <= TOLERANCE:
                return aim + err
            self.hog(self.hog_mib + round(err / MiB))
        raise SystemExit(f"cannot set the guest's available memory to {aim / MiB:.0f} "
                         f"MiB (off by {err / MiB:+.0f} MiB)")

    def follow(self, t0: float, target: int | None, decision: bool,
               timeout: float) -> tuple[float | None, dict | None, list[dict]]:
        """Poll until the balloon is within 1 MiB of the target (``decision``: the
        target of the first matching decision event). (seconds from t0 or None,
        the decision, all decisions seen)."""
        seen: list[dict] = []
        first = None
        while True:
            t, balloon, events = self.poll()
            for e in events:
                if e["event"] == EVENT:
                    seen.append(e)
                    if decision and first is None and e["data"]["level"] == LEVEL:
                        first, target = e, e["data"]["target"]
            if target is not None and abs(balloon - target) < MiB:
                return t - t0, first, seen
            if t - t0 > timeout:
                return None, first, seen
            time.sleep(POLL_S)


def aim_for(step: int) -> int:
    return KEEP + step + (CAP_MARGIN if step >= CAP else 0)


def timeout_for(step: int) -> float:
    return 10 + step / (STALL_MBPS * 1e6)       # a stall-rate inflation, and then some


def event_time(event: dict) -> float:
    ts = event["timestamp"]
    return ts["seconds"] + ts["microseconds"] / 1e6


def policy_rep(vm: Vm, step: int) -> Rep:
    path = socket_path(vm.q.rundir)
    available = vm.prepare(aim_for(step))
    vm.drain_events()
    try:
        t0_wall, t0 = time.time(), time.monotonic()
        reply = host_event(path, {"event": "pressure", "level": LEVEL})
        if not reply.get("ok"):
            raise SystemExit(f"host event refused: {reply}")
        reaction, d, seen = vm.follow(t0, None, True, timeout_for(step))
        if d is None:
            raise SystemExit(f"no {LEVEL} decision within {timeout_for(step):.0f} s; "
                             f"events {seen}")
        data = d["data"]
        latency = event_time(d) - t0_wall
        rep_step = data["target"] - data["balloon"]
        rate = rep_step / (reaction - latency) if reaction else None
        others = [e["data"]["reason"] for e in seen if e is not d]
        note = f"also {','.join(others)}" if others else ""
        if data["reason"] != "host-pressure":
            note = f"{data['reason']} {note}".strip()
        return Rep(rep_step, data["target"], data.get("guest-available", available),
                   latency, reaction, rate, note)
    finally:
        # back to normal: the policy deflates after level_down_delay_s
        host_event(path, {"event": "pressure", "level": SPEC.levels[0].name})
        vm.wait_balloon(0, SPEC.level_down_delay_s + 60, "deflating after normal")
        deadline = time.monotonic() + 10
        while vm.q.qom_get(POLICY_PATH, "level") != SPEC.levels[0].name:
            if time.monotonic() > deadline:
                raise SystemExit("the policy stayed above normal")
            time.sleep(0.1)


def peer_rep(vm: Vm, step: int, target: int, drop_cache: bool = False) -> Rep:
    """The manual path; ``drop_cache``: the guest's page cache dropped first, so
    the balloon takes free memory (the reference for what reclaim costs)."""
    available = vm.prepare(aim_for(step))
    if drop_cache:
        vm.agent.sh("sync; echo 1 >/proc/sys/vm/drop_caches")
        available = vm.stats_available()
    vm.drain_events()
    try:
        t0 = time.monotonic()
        vm.q.cmd("balloon", value=vm.ram - target)
        latency = time.monotonic() - t0
        reaction, _, seen = vm.follow(t0, target, False, timeout_for(step))
        rate = target / reaction if reaction else None
        note = f"decisions {seen}" if seen else ""      # none: no policy object
        return Rep(target, target, available, latency, reaction, rate, note)
    finally:
        vm.q.cmd("balloon", value=vm.ram)
        vm.wait_balloon(0, 60, "peer deflating")


def set_policy(vm: Vm, bridge: BalloonBridge, on: bool) -> None:
    """Remove the policy object (QEMU is stock virtio-balloon then), or add it back
    on the same chardev, where the bridge's connection is still open."""
    if vm.policy == on:
        return
    if on:
        vm.q.cmd("object-add", **{"qom-type": "tabvm-balloon", "id": POLICY_ID,
                                  "balloon": BALLOON_ID, "chardev": PRESSURE_CHARDEV_ID,
                                  "foreground": bridge.foreground})
        reply = bridge.link.query()
        if reply["host_level"] != SPEC.levels[0].name or reply["target"]:
            raise SystemExit(f"the policy object came back as {reply}")
    else:
        vm.q.cmd("object-del", id=POLICY_ID)
    vm.policy = on


def boot(stack: ExitStack, memory: str) -> tuple[Vm, BalloonBridge]:
    image = build_guest(progress=lambda m: None)
    rundir = new_runtime_dir("bench-balloon")
    disk = scratch_image(rundir / "scratch.img", DISK)
    stack.callback(disk.unlink, missing_ok=True)
    config = builtin_profile(default_outputs(), image.vmlinux, image.initrd, "tcg",
                             memory=memory, touch=False, scratch_disk=disk,
                             balloon=BalloonSetup(pressure_socket=rundir / PRESSURE_SOCKET,
                                                  foreground=True))
    q = Qemu(config, rundir)
    stack.callback(q.stop)
    q.start()
    agent = AgentClient(str(q.agent_socket), connect_timeout=30)
    stack.callback(agent.close)
    agent.wait_ready(timeout=180)
    bridge = BalloonBridge(PolicyLink(rundir / PRESSURE_SOCKET, connect_timeout=10.0), SPEC,
                           foreground=True, log=lambda *a, **k: None)
    stack.callback(bridge.stop)
    bridge.start()
    server = HostEventServer(rundir, log=lambda *a, **k: None)
    bridge.register(server)
    stack.callback(server.stop)
    server.start()
    return Vm(q, agent), bridge


def spread(values: list[float], fmt: str, scale: float = 1.0) -> str:
    """median (min..max)"""
    if not values:
        return "-"
    v = [x * scale for x in values]
    if len(v) == 1:
        return f"{v[0]:{fmt}}"
    return f"{statistics.median(v):{fmt}} ({min(v):{fmt}}..{max(v):{fmt}})"


def median(reps: list[Rep], field: str) -> float:
    return statistics.median(getattr(r, field) for r in reps)


def report(step: int, policy: list[Rep], peer: list[Rep], free: Rep) -> None:
    steps = [r.step / MiB for r in policy]
    avail = [r.available / MiB for r in policy]
    capped = sum(r.step == CAP and r.available - KEEP > CAP for r in policy)
    print(f"\n{step // MiB} MiB step: the policy chose {spread(steps, '.0f')} MiB of "
          f"guest available {spread(avail, '.0f')} MiB (keep {KEEP // MiB}); capped at "
          f"inflate.max_step_mib ({SPEC.inflate_max_mib}): {capped} of {len(policy)}")
    print(f"  {'path':<11} {'decision/command ms':>20} {'reaction s':>22} "
          f"{'rate MB/s':>16} {'rate MiB/s':>16}")
    rows = (("policy", policy), ("peer", peer), ("peer, free", [free]))
    for name, reps in rows:
        ok = [r for r in reps if r.reaction is not None]
        print(f"  {name:<11} {spread([r.latency for r in reps], '.2f', 1e3):>20} "
              f"{spread([r.reaction for r in ok], '.3f'):>22} "
              f"{spread([r.rate for r in ok], '.0f', 1e-6):>16} "
              f"{spread([r.rate for r in ok], '.0f', 1 / MiB):>16}"
              + (f"  {len(reps) - len(ok)} timed out" if len(ok) < len(reps) else ""))
        for i, r in enumerate(reps):
            if r.note:
                print(f"    {name} rep {i + 1}: {r.note}")
    pol = [r for r in policy if r.reaction is not None]
    per = [r for r in peer if r.reaction is not None]
    if pol and per:
        react, rate = (median(pol, f) / median(per, f) for f in ("reaction", "rate"))
        extra = median(pol, "reaction") - median(per, "reaction")
        print(f"  policy/peer: reaction x{react:.2f} ({extra * 1e3:+.0f} ms), rate "
              f"x{rate:.2f}; decision vs command latency {median(pol, 'latency') * 1e3:.2f}"
              f" vs {median(per, 'latency') * 1e3:.2f} ms")
    for name, reps in (("policy", pol), ("peer", per)):
        if reps:
            print(f"  {name} rate vs ARCVM's {STALL_MBPS:.0f} MB/s stall: median "
                  f"x{median(reps, 'rate') / 1e6 / STALL_MBPS:.1f}, slowest "
                  f"x{min(r.rate for r in reps) / 1e6 / STALL_MBPS:.1f}")
    if per and free.rate:
        print(f"  reclaiming page cache: the peer inflates at "
              f"{median(per, 'rate') / free.rate:.2f} of its rate from free memory")


def show(path: str, s: int, i: int, r: Rep) -> None:
    what = "decision" if path == "policy" else "command"
    reaction = "timeout" if r.reaction is None else f"{r.reaction:.3f} s"
    print(f"{path:<10} {s // MiB:>5} MiB rep {i}: step {r.step / MiB:.0f} MiB, {what} "
          f"{r.latency * 1e3:.2f} ms, reaction {reaction}", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=5, help="repetitions per step and path")
    p.add_argument("--steps", default="256,1024",
                   help="step sizes in MiB, comma-separated (default 256,1024)")
    p.add_argument("--memory", default="2G", help="guest RAM (default 2G)")
    args = p.parse_args(argv)
    try:
        steps = [int(s) * MiB for s in args.steps.split(",")]
    except ValueError:
        p.error(f"--steps: not MiB numbers: {args.steps!r}")
    if args.reps < 1 or any(s < SPEC.inflate_min_mib * MiB for s in steps):
        p.error(f"--reps must be >= 1 and steps >= inflate.min_step_mib "
                f"({SPEC.inflate_min_mib} MiB)")

    policy: dict[int, list[Rep]] = {s: [] for s in steps}
    peer: dict[int, list[Rep]] = {s: [] for s in steps}
    free: dict[int, Rep] = {}
    with ExitStack() as stack:
        vm, bridge = boot(stack, args.memory)
        print(f"Balloon reaction: guest {vm.ram // MiB} MiB under TCG in the foreground at "
              f"{SPEC.levels[0].name}; signal: host pressure {LEVEL} (keep {KEEP // MiB} "
              f"MiB); guest available memory = keep + step, page cache; {args.reps} "
              f"repetitions per step and path; peer: QMP balloon to the same target",
              flush=True)
        vm.fill_cache()
        mem = vm.agent.mem()
        full, vm.floor = mem.available, mem.free
        for s in steps:
            if aim_for(s) > full - 16 * MiB or s > vm.ram - SPEC.min_size_mib * MiB:
                raise SystemExit(f"a {s // MiB} MiB step needs more guest RAM than "
                                 f"{args.memory} (available {full // MiB} MiB with a full "
                                 f"page cache, min_size_mib {SPEC.min_size_mib})")
        for s in steps:
            vm.hog((full - aim_for(s)) // MiB)
            target = 0
            for i in range(args.reps):
                # alternate which path goes first: the guest's state drifts a little
                for path in ("policy", "peer") if i % 2 == 0 else ("peer", "policy"):
                    set_policy(vm, bridge, path == "policy")
                    if path == "policy":
                        r = policy_rep(vm, s)
                        target = r.target
                        policy[s].append(r)
                    else:
                        r = peer_rep(vm, s, target)
                        peer[s].append(r)
                    show(path, s, i + 1, r)
            set_policy(vm, bridge, False)
            free[s] = peer_rep(vm, s, target, drop_cache=True)
            show("peer, free", s, 1, free[s])
        if not vm.q.alive():
            raise SystemExit("QEMU died")
    for s in steps:
        report(s, policy[s], peer[s], free[s])
    return 0


if __name__ == "__main__":
    sys.exit(main())
