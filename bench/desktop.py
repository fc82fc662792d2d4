"""Desktop benchmark: the Debian desktop guest's cold boot to the desktop on
screen, and resume from a checkpoint to the same screen, each timed to the first
matching screenshot; the image's build time and size; the bundle's size.

  python bench/desktop.py [--reps 3] [--firmware bios|uefi] [--memory 2048]
                          [--json FILE]

One VM at a time under TCG, the project's QEMU and the desktop image
(`tabvm guest desktop`, built first if needed), configured as
profiles/desktop.yaml configures it (virtio disk over a fresh qcow2 overlay,
virtio-gpu at 1280x800, virtio-net, qemu-guest-agent, 2 vCPUs) without the
tablet devices (their host peers are not what is measured here):

- cold boot: QEMU's Popen to the first screenshot that equals the settled
  desktop. Screenshots (QMP screendump, PPM) are taken every 0.25 s from the
  start; the desktop is settled once the X session has its window manager
  (checked through qemu-guest-agent) and the screen then stays unchanged for
  5 s; the cold boot time is that of the first screenshot with those pixels.
  The agent's first answer is printed too.
- tabvm resume (the lifecycle's way, glue.snapshot): RAM in a share=on file,
  suspend saves the device state only; resume starts QEMU on the file and loads
  it. Timed from Popen to the first screenshot equal to the one taken just
  before the suspend (screenshots every 20 ms).
- the peers, stock QEMU's own save/restore: a full migration to a file (all
  guest RAM) and `-incoming` from it into a fresh QEMU; and (BIOS) `savevm`
  into the disk's qcow2 and a fresh QEMU with `-loadvm`; timed the same way.

Each repetition suspends the running desktop, resumes it each way (order
rotating), and carries on with the tabvm-resumed VM. Printed: medians with
min-max, the ratios cold/tabvm and stock/tabvm, save times and sizes.
Everything lives in a new_runtime_dir("bench-desktop"), removed at the end.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import shutil
import re
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from glue.desktop import ppm_pixels, wait_agent, wait_session  # noqa: E402
from glue.hardware import QGA_SOCKET, disk_device, uefi_args  # noqa: E402
from glue.profile import builtin_profile, default_outputs  # noqa: E402
from glue.profile_spec import Display, Network, OVMF_CODE, OVMF_VARS  # noqa: E402
from glue.qemu import Qemu, VmConfig  # noqa: E402
from glue.runtime import new_runtime_dir  # noqa: E402
from glue.session import DISK_NODE, QemuImg, disk_blockdev  # noqa: E402
from glue.snapshot import FileRam, load, save, wait_migration  # noqa: E402
from tabvm.desktop_image import SESSION_CHECK, build_desktop_image  # noqa: E402

BOOT_TIMEOUT = 900.0
RESUME_TIMEOUT = 120.0
SETTLE_S = 5.0


class BenchError(RuntimeError):
    pass


def screen(q: Qemu, path: Path) -> str:
    """A hash of the screen's pixels (QMP screendump, PPM)."""
    q.cmd("screendump", filename=str(path), format="ppm")
    width, height, pixels = ppm_pixels(path.read_bytes())
    return hashlib.sha256(f"{width}x{height}".encode() + pixels).hexdigest()


def first_match(q: Qemu, shot: Path, want: str, t0: float, timeout: float,
                interval: float = 0.02) -> float:
    """Seconds from ``t0`` to the first screenshot equal to ``want``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if screen(q, shot) == want:
            return time.monotonic() - t0
        time.sleep(interval)
    raise BenchError("the screen never matched the one saved")


@dataclasses.dataclass
class Setup:
    root: Path
    config: VmConfig            # with the disk, without RAM and UEFI variables
    uefi: tuple[Path, Path] | None

    def vm_config(self, ram: Path, size: int, uefi_vars: Path) -> VmConfig:
        c = FileRam(ram, size).apply(self.config)
        if self.uefi:
            c = dataclasses.replace(c, extra=c.extra + uefi_args(self.uefi[0], uefi_vars))
        return c


def setup(root: Path, firmware: str, memory_mib: int) -> Setup:
    outputs = default_outputs()
    image = build_desktop_image(progress=lambda m: print(f"  image: {m}", flush=True))
    overlay = root / "disk.qcow2"
    QemuImg(outputs.qemu_img).create_overlay(image.path, "qcow2", overlay)
    config = builtin_profile(outputs, None, None, "tcg", memory=f"{memory_mib}M",
                             touch=False, battery=False, cpus=2,
                             display=Display("virtio-gpu", 1280, 800),
                             network=Network("virtio-net"), qga_socket=root / QGA_SOCKET,
                             serial_agent=False)
    config = dataclasses.replace(config, blockdevs=config.blockdevs + (disk_blockdev(overlay),),
                                 devices=config.devices + (disk_device(DISK_NODE, "virtio", 1),))
    uefi = None
    if firmware == "uefi":
        uefi = (outputs.firmware / OVMF_CODE, outputs.firmware / OVMF_VARS)
        shutil.copyfile(uefi[1], root / "efivars.fd")
    return Setup(root, config, uefi)


def cold_boot(s: Setup, size: int) -> tuple[Qemu, dict]:
    shot = s.root / "shot.ppm"
    config = s.vm_config(s.root / "ram", size, s.root / "efivars.fd")
    t0 = time.monotonic()
    q = Qemu(config, s.root).start()
    shots: list[tuple[float, str]] = []
    agent_s = session_s = None
    deadline = t0 + BOOT_TIMEOUT
    while time.monotonic() < deadline:
        shots.append((time.monotonic() - t0, screen(q, shot)))
        if agent_s is None:
            try:
                wait_agent(q, s.root, time.monotonic() + 0.2)
                agent_s = time.monotonic() - t0
            except RuntimeError:
                pass
        elif session_s is None:
            try:
                wait_session(s.root, SESSION_CHECK, time.monotonic() + 1)
                session_s = time.monotonic() - t0
            except RuntimeError:
                pass
        else:
            last = shots[-1]
            stable = [t for t, h in shots if h == last[1] and t >= session_s]
            changed_after = [t for t, h in shots if t >= session_s and h != last[1]]
            since = max(changed_after, default=session_s)
            if stable and last[0] - since >= SETTLE_S:
                break
        time.sleep(0.25)
    else:
        q.stop()
        raise BenchError("the desktop did not settle")
    final = shots[-1][1]
    first = next(t for t, h in shots if h == final)
    return q, {"agent_s": agent_s, "session_s": session_s, "desktop_s": first}


def tabvm_cycle(s: Setup, q: Qemu, size: int, rep: int) -> tuple[Qemu, dict]:
    """Suspend (device state only), resume on the RAM file: times."""
    shot = s.root / "shot.ppm"
    want = screen(q, shot)
    state = s.root / f"devstate-{rep}"
    t0 = time.monotonic()
    save(q, state)
    q.stop()
    suspend_s = time.monotonic() - t0
    config = s.vm_config(s.root / "ram", size, s.root / "efivars.fd")
    t0 = time.monotonic()
    q = load(config, s.root, state)
    q.cmd("cont")
    running = time.monotonic() - t0
    resume_s = first_match(q, shot, want, t0, RESUME_TIMEOUT)
    return q, {"suspend_s": suspend_s, "resume_s": resume_s, "running_s": running,
               "state_bytes": state.stat().st_size}


def stock_cycle(s: Setup, q: Qemu, size: int, rep: int) -> tuple[Qemu, dict]:
    """Stock QEMU: a full migration to a file (every RAM page), restored into a
    fresh QEMU with ordinary anonymous RAM, timed to the same screen. Then the
    tabvm checkpoint taken at the same moment carries on (untimed)."""
    shot = s.root / "shot.ppm"
    want = screen(q, shot)
    full = s.root / f"full-{rep}"
    t0 = time.monotonic()
    q.cmd("migrate-set-capabilities", capabilities=[
        {"capability": "x-ignore-shared", "state": False}])
    q.cmd("stop")
    q.cmd("migrate", uri=f"file:{full}")
    wait_migration(q, 600, "stock save")
    save_s = time.monotonic() - t0
    # QEMU migrates only once from a VM paused by a migration: let it run for
    # the moment of tabvm's own save, which the run carries on from
    q.cmd("cont")
    carry = s.root / f"devstate-carry-{rep}"
    save(q, carry)
    q.stop()
    stock_vars = s.root / "efivars-stock.fd"
    if s.uefi:
        shutil.copyfile(s.root / "efivars.fd", stock_vars)
    config = s.vm_config(s.root / "unused", size, stock_vars)
    config = dataclasses.replace(config, extra=tuple(
        a.replace("memory-backend-file,", "memory-backend-ram,")
        .replace(f",mem-path={s.root / 'unused'},share=on", "")
        for a in config.extra) + ("-incoming", "defer"))
    t0 = time.monotonic()
    q = Qemu(config, s.root).start()
    try:
        q.cmd("migrate-incoming", uri=f"file:{full}")
        wait_migration(q, 600, "stock restore")
        q.cmd("cont")
        restore_s = first_match(q, shot, want, t0, RESUME_TIMEOUT)
    finally:
        q.stop()
    size_bytes = full.stat().st_size
    full.unlink()
    q = load(s.vm_config(s.root / "ram", size, s.root / "efivars.fd"), s.root, carry)
    q.cmd("cont")
    return q, {"save_s": save_s, "restore_s": restore_s, "state_bytes": size_bytes}


def hmp(q: Qemu, command: str) -> str:
    """An HMP command (savevm, loadvm and info snapshots have no QMP command
    that runs without a job) and its output."""
    return q.cmd("human-monitor-command", **{"command-line": command}) or ""


def loadvm_cycle(s: Setup, q: Qemu, size: int, rep: int) -> tuple[Qemu, dict]:
    """Stock QEMU's internal snapshot: ``savevm`` into the disk's qcow2 (RAM and
    device state), then a fresh QEMU (ordinary anonymous RAM) started with
    ``-loadvm``, timed from its start to the same screen. Then the tabvm
    checkpoint taken at the same moment carries on (untimed)."""
    shot = s.root / "shot.ppm"
    want = screen(q, shot)
    tag = f"bench{rep}"
    t0 = time.monotonic()
    # every RAM page into the snapshot (tabvm's own saves skip the shared RAM file)
    q.cmd("migrate-set-capabilities", capabilities=[
        {"capability": "x-ignore-shared", "state": False}])
    out = hmp(q, f"savevm {tag}")
    if out.strip():
        raise BenchError(f"savevm: {out.strip()}")
    save_s = time.monotonic() - t0
    carry = s.root / f"devstate-carry-{rep}"
    save(q, carry)
    q.stop()
    config = s.vm_config(s.root / "unused", size, s.root / "efivars.fd")
    config = dataclasses.replace(config, extra=tuple(
        a.replace("memory-backend-file,", "memory-backend-ram,")
        .replace(f",mem-path={s.root / 'unused'},share=on", "")
        for a in config.extra) + ("-loadvm", tag))
    t0 = time.monotonic()
    q = Qemu(config, s.root).start()
    try:
        restore_s = first_match(q, shot, want, t0, RESUME_TIMEOUT)
        info = hmp(q, "info snapshots")
        size_bytes = sum(int(float(m.group(1)) * {"K": 1e3, "M": 1e6, "G": 1e9}[m.group(2)])
                         for m in re.finditer(rf"\s{tag}\s+([\d.]+)\s*([KMG])iB", info))
        hmp(q, f"delvm {tag}")
    finally:
        q.stop()
    q = load(s.vm_config(s.root / "ram", size, s.root / "efivars.fd"), s.root, carry)
    q.cmd("cont")
    return q, {"save_s": save_s, "restore_s": restore_s, "state_bytes": size_bytes}


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def fmt(values: list[float], unit: float = 1000.0, suffix: str = "ms") -> str:
    vs = [v * unit for v in values]
    return f"{statistics.median(vs):.0f} {suffix} ({min(vs):.0f}-{max(vs):.0f})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--firmware", choices=["bios", "uefi"], default="bios")
    ap.add_argument("--memory", type=int, default=2048, help="guest RAM, MiB")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    root = new_runtime_dir("bench-desktop")
    q = None
    results: dict = {"firmware": args.firmware, "memory_mib": args.memory}
    try:
        t0 = time.monotonic()
        s = setup(root, args.firmware, args.memory)
        image = build_desktop_image(progress=lambda m: None)
        meta = json.loads((image.path.parent / "image.json").read_text())
        results["image"] = {"path": str(image.path), "build_s": image.build_s,
                            "size_bytes": image.size_bytes,
                            "virtual_size": image.virtual_size, "packages": image.packages,
                            "ready_s": round(time.monotonic() - t0, 1), "key": meta.get("key")}
        size = args.memory << 20
        print(f"cold boot ({args.firmware}, {args.memory} MiB, TCG)...", flush=True)
        q, cold = cold_boot(s, size)
        results["cold"] = cold
        print(f"  agent answered {cold['agent_s']:.1f} s, X session {cold['session_s']:.1f} s, "
              f"desktop on screen (first matching screenshot) {cold['desktop_s']:.1f} s",
              flush=True)
        runs: dict[str, list[dict]] = {"tabvm": [], "stock": [], "loadvm": []}
        cycles = {"tabvm": tabvm_cycle, "stock": stock_cycle, "loadvm": loadvm_cycle}
        methods = ["tabvm", "stock"] + (["loadvm"] if not s.uefi else [])
        for rep in range(args.reps):
            order = methods[rep % len(methods):] + methods[:rep % len(methods)]
            for method in order:
                q, r = cycles[method](s, q, size, rep)
                runs[method].append(r)
                print(f"  rep {rep + 1} {method}: "
                      + (f"suspend {r['suspend_s'] * 1000:.0f} ms, resume to the same screen "
                         f"{r['resume_s'] * 1000:.0f} ms" if method == "tabvm" else
                         f"save {r['save_s'] * 1000:.0f} ms, restore to the same screen "
                         f"{r['restore_s'] * 1000:.0f} ms"), flush=True)
        tabvm_runs, stock_runs, loadvm_runs = runs["tabvm"], runs["stock"], runs["loadvm"]
        q.stop()
        q = None
        tab = [r["resume_s"] for r in tabvm_runs]
        stock = [r["restore_s"] for r in stock_runs]
        results.update(tabvm=tabvm_runs, stock=stock_runs, loadvm=loadvm_runs)
        bundle = REPO / "build-cross" / "linux-musl-x86_64"
        outputs = default_outputs()
        native = sum(p.stat().st_size for p in (outputs.qemu, outputs.qemu_img)) \
            + dir_size(outputs.firmware)
        results["bundle_bytes"] = dir_size(bundle) if bundle.is_dir() else None
        results["native_outputs_bytes"] = native

        print()
        print(f"desktop image: {image.size_bytes / 1e6:.0f} MB qcow2 (virtual "
              f"{image.virtual_size >> 30} GiB, {image.packages} packages), built in "
              f"{image.build_s:.0f} s")
        if results["bundle_bytes"]:
            print(f"bundle (linux-musl-x86_64): {results['bundle_bytes'] / 1e6:.1f} MB")
        print(f"native QEMU + qemu-img + firmware: {native / 1e6:.1f} MB")
        print(f"cold boot to the desktop on screen: {cold['desktop_s']:.1f} s "
              f"(agent {cold['agent_s']:.1f} s)")
        print(f"tabvm resume to the same screen:   {fmt(tab)} (suspend "
              f"{fmt([r['suspend_s'] for r in tabvm_runs])}, device state "
              f"{tabvm_runs[0]['state_bytes'] / 1e6:.1f} MB)")
        print(f"stock restore to the same screen:  {fmt(stock)} (save "
              f"{fmt([r['save_s'] for r in stock_runs])}, "
              f"{stock_runs[0]['state_bytes'] / 1e6:.0f} MB file)")
        if loadvm_runs:
            print(f"stock loadvm to the same screen:   "
                  f"{fmt([r['restore_s'] for r in loadvm_runs])} (savevm "
                  f"{fmt([r['save_s'] for r in loadvm_runs])}, "
                  f"{loadvm_runs[0]['state_bytes'] / 1e6:.0f} MB snapshot)")
        med = statistics.median(tab)
        print(f"ratios: cold boot / tabvm resume {cold['desktop_s'] / med:.0f}x, "
              f"stock restore / tabvm resume {statistics.median(stock) / med:.1f}x")
        if loadvm_runs:
            lv = statistics.median([r["restore_s"] for r in loadvm_runs])
            print(f"the seed's headline (cold boot 50 s -> 5 s from a snapshot, 10x), here: "
                  f"cold {cold['desktop_s']:.1f} s -> stock loadvm {lv:.2f} s "
                  f"({cold['desktop_s'] / lv:.0f}x) -> tabvm resume {med:.2f} s "
                  f"({cold['desktop_s'] / med:.0f}x)")
        if args.json:
            args.json.write_text(json.dumps(results, indent=1, default=str))
        return 0
    except (BenchError, RuntimeError, OSError) as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1
    finally:
        if q is not None:
            q.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
