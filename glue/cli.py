"""``tabvm run`` and ``tabvm demo``: boot the VM with the glue attached."""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from generator.errors import SpecErrors
from generator.ir import Balloon
from tabvm.guest import GuestBuildError

from .accel import select_accel, wait_for_console
from .audio import AUDIODEV_ID, audiodev, ensure_sound_card, standin_env
from .agent_client import AgentClient, AgentError
from .balloon import (PRESSURE_SOCKET, PSI_MEMORY, BalloonBridge, LinuxHostAdapter,
                      PolicyLink, PolicyLinkError, cgroup_meminfo, levels_from_spec,
                      psi_usable)
from .battery_bridge import BatteryBridge
from .bt_backend import BtBackend
from .bt_peer import BtPeerError
from .host_events import HostEventServer
from .host_events import request as host_event
from .host_events import socket_path as socket_path_of
from .evdev import INPUT_PROP_DIRECT, contact_frames, input_devices
from .power import POWER_SUPPLY, HostPowerSupply, PowerSource, SimulatedCurve
from .profile import (BT_CHARDEV_ID, POLICY_PATH, READY_MARKER, BalloonSetup, BuildOutputs,
                      ProfileError, builtin_profile)
from .qemu import Qemu, QemuError, VmConfig
from .qmp_input import mtt, touch_frame
from .runtime import new_runtime_dir
from .touch_bridge import TouchBridge


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--builddir", type=Path, default=None,
                   help="where `tabvm build` put QEMU, firmware and AML (default: build/)")
    p.add_argument("--accel", default="auto", choices=["auto", "tcg", "kvm"],
                   help="auto: KVM if it really runs the guest here, else TCG")
    p.add_argument("--memory", default="512M")
    p.add_argument("--battery", default="auto", choices=["auto", "host", "simulated"],
                   help="battery source: the host's power supply, a simulated "
                   "discharge curve, or auto (host if it has a battery)")
    p.add_argument("--power-supply-root", type=Path, default=POWER_SUPPLY,
                   help="host power supply sysfs directory")
    p.add_argument("--interval", type=float, default=1.0,
                   help="seconds between battery bridge updates")
    p.add_argument("--touch-from", metavar="EVDEV", default=None,
                   help="forward a host touchscreen (/dev/input/eventN, or a pipe of "
                   "struct input_event records) to the VM's touchscreen")
    p.add_argument("--touch-range", metavar="X0:X1,Y0:Y1", type=_touch_range,
                   default=None, help="the source's axis ranges, for a source that is "
                   "not an evdev device (a pipe or file)")
    p.add_argument("--bt", metavar="SPEC", default="bumble", type=_bt_spec,
                   help="the Bluetooth controller's host side: bumble (a virtual "
                   "controller and an advertiser, the default), unix:PATH or "
                   "tcp:HOST:PORT (an H4 server such as an HCI bridge), hci:N (the "
                   "host's hciN through an HCI user channel), or none")
    p.add_argument("--audio", choices=["none", "opensles", "wav"], default=None,
                   help="the sound card's backend: opensles (Android's OpenSL ES; on a "
                   "desktop host the project's test stand-in), wav (a file), or none "
                   "(run: none, demo: opensles)")
    p.add_argument("--balloon", choices=["on", "off"], default="on",
                   help="automatic ballooning (devspecs/balloon.yaml): virtio-balloon "
                   "driven by the policy object in QEMU, fed by the host's memory "
                   "pressure and by host events on RUNDIR/host-events.sock")
    p.add_argument("--memory-cgroup", metavar="DIR", type=Path, default=None,
                   help="the memory cgroup the VM runs in (e.g. an Android app's memcg): "
                   "its limit, not the host's MemAvailable, is the host pressure the "
                   "balloon follows")
    p.add_argument("--duration", type=float, default=None,
                   help="stop after this many seconds (default: run until Ctrl-C; "
                   "demo: 30)")


def _bt_spec(text: str) -> str:
    if text != "none":
        try:
            BtBackend.parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _touch_range(text: str) -> tuple[tuple[int, int], tuple[int, int]]:
    try:
        x, y = text.split(",")
        (x0, x1), (y0, y1) = (tuple(int(v) for v in part.split(":")) for part in (x, y))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not X0:X1,Y0:Y1 "
                                         "(e.g. 0:4095,0:2303)") from None
    if x1 <= x0 or y1 <= y0:
        raise argparse.ArgumentTypeError(f"{text!r}: each range must be increasing")
    return (x0, x1), (y0, y1)


def _start_touch_bridge(args: argparse.Namespace, vm: Qemu):
    """(bridge, thread, stop event), or None without --touch-from."""
    if not args.touch_from:
        return None
    ranges = args.touch_range or (None, None)
    bridge = TouchBridge(args.touch_from, vm.cmd, *ranges)
    stop = threading.Event()
    thread = threading.Thread(target=bridge.run, args=(stop,), name="touch-bridge",
                              daemon=True)
    thread.start()
    _log("touch-bridge", source=args.touch_from,
         kind="evdev" if bridge.is_evdev else "records")
    return bridge, thread, stop


def _source(args: argparse.Namespace) -> PowerSource:
    host = HostPowerSupply(args.power_supply_root)
    if args.battery == "host" or (args.battery == "auto" and host.has_battery()):
        return host
    if getattr(args, "fast_curve", False):
        # a whole discharge -> plug in -> charge cycle within the demo's 30 s
        return SimulatedCurve(start=80, low=65, high=80, discharge_rate=1.0,
                              charge_rate=1.0)
    return SimulatedCurve()


def _log(event: str, **fields: object) -> None:
    items = " ".join(f"{k}={v}" for k, v in fields.items())
    print(f"tabvm: {event} {items}".rstrip(), file=sys.stderr, flush=True)


def _probe_kvm(config_for: Callable[[str], VmConfig]) -> bool:
    """Boot the test guest under KVM: the kernel's banner must show within 10 s
    (it takes well under one with working KVM) and the guest must get ready."""
    rundir = new_runtime_dir("kvm-probe")
    full = config_for("kvm")
    # no device that needs a host-side peer: just the boot
    config = dataclasses.replace(full, append=full.append.replace(" quiet", ""),
                                 chardevs=(), objects=(),
                                 devices=tuple(d for d in full.devices
                                               if "chardev=" not in d))
    vm = Qemu(config, rundir)
    _log("accel", probe="booting the test guest under KVM once for this host boot")
    try:
        vm.start()
        ok = (wait_for_console(vm.console_log, "Linux version", 10, vm.alive)
              and wait_for_console(vm.console_log, READY_MARKER, 60, vm.alive))
    except QemuError:
        ok = False
    finally:
        vm.stop()
        shutil.rmtree(rundir, ignore_errors=True)
    return ok


def _bt_backend(args: argparse.Namespace) -> BtBackend | None:
    return None if args.bt == "none" else BtBackend.parse(args.bt)


def _audio(args: argparse.Namespace, outputs: BuildOutputs,
           rundir: Path) -> tuple[str | None, tuple[tuple[str, str], ...]]:
    """The -audiodev option string and QEMU's extra environment for --audio."""
    if args.audio in (None, "none"):
        return None, ()
    if args.audio == "wav":
        return audiodev("wav", path=rundir / "playback.wav"), ()
    standin = outputs.root / "libOpenSLES.so"
    if sys.platform == "linux" and standin.is_file() and not _on_android():
        _log("audio", backend="opensles", library=f"{standin} (the test stand-in)")
        return audiodev("opensles", standin), standin_env(rundir)
    return audiodev("opensles"), ()


def _on_android() -> bool:
    return Path("/system/build.prop").exists()


def _config(args: argparse.Namespace, rundir: Path, bt_chardev: str | None = None,
            balloon_spec: Balloon | None = None) -> VmConfig:
    from tabvm.guest import build_guest

    from .profile import default_outputs
    outputs = BuildOutputs(args.builddir) if args.builddir else default_outputs()
    image = build_guest(progress=lambda m: _log("guest", step=repr(m)))

    sound, env = _audio(args, outputs, rundir)
    balloon = _balloon_setup(args, rundir, balloon_spec)

    def config_for(accel: str) -> VmConfig:
        # the unpacked ELF kernel boots about twice as fast under TCG (PVH entry)
        return builtin_profile(outputs, image.vmlinux, image.initrd, accel, args.memory,
                               bt_chardev=bt_chardev, audiodev=sound, balloon=balloon,
                               env=env)

    accel = select_accel(args.accel, probe=lambda: _probe_kvm(config_for))
    return config_for(accel)


def _balloon_setup(args: argparse.Namespace, rundir: Path,
                   spec: Balloon | None) -> BalloonSetup | None:
    """virtio-balloon and the policy object (None without a policy ``spec``); the
    policy sets its own PSI triggers where the host lets it (else the glue's
    adapters are its only host input)."""
    if spec is None:
        return None
    if args.memory_cgroup is not None:
        try:
            cgroup_meminfo(args.memory_cgroup)
        except (OSError, ValueError) as exc:
            raise ProfileError(f"--memory-cgroup {args.memory_cgroup}: {exc}") from None
    why = psi_usable(spec)
    _log("balloon", psi="on" if why is None else repr(f"off: {why}"))
    return BalloonSetup(pressure_socket=rundir / PRESSURE_SOCKET,
                        psi=PSI_MEMORY if why is None else None, foreground=True)


def _start_balloon_bridge(args: argparse.Namespace, rundir: Path, spec: Balloon | None):
    """The host side of ballooning and the host-event socket: (bridge, server), or
    None without a policy ``spec`` (--balloon off). On a Linux host the bridge also
    feeds the host's MemAvailable; on Android, host events (lmkd, ActivityManager,
    onTrimMemory, foreground/background) arrive on the socket."""
    if spec is None:
        return None
    bridge = BalloonBridge(PolicyLink(rundir / PRESSURE_SOCKET, timeout=2.0,
                                      connect_timeout=5.0), spec,
                           linux=None if _on_android() and not args.memory_cgroup
                           else LinuxHostAdapter(spec, cgroup=args.memory_cgroup),
                           foreground=True, log=_log).start()
    server = HostEventServer(rundir, log=_log)
    bridge.register(server)
    server.start()
    _log("host-events", socket=server.path)
    return bridge, server


def _guest_power(agent: AgentClient) -> str:
    out = agent.sh("cd /sys/class/power_supply && echo $(cat BAT0/capacity) "
                   "$(cat BAT0/status) $(cat BAT0/energy_now 2>/dev/null || "
                   "cat BAT0/charge_now) $(cat ADP0/online) "
                   "$(cat /sys/firmware/acpi/interrupts/gpe00 | cut -c1-10)").output
    cap, status, energy, online, gpe = (out.split() + ["?"] * 5)[:5]
    return (f"guest BAT0 {cap}% {status} now={energy} | ADP0 online={online} | "
            f"GPE count {gpe}")


def _show_touch(vm: Qemu, agent: AgentClient) -> None:
    """Send a two-finger swipe over QMP; print what the guest's driver reported."""
    touchscreens = [event for path, event in input_devices(agent).values()
                    if int(agent.read(f"{path}/properties").strip() or "0", 16)
                    & INPUT_PROP_DIRECT]
    if not touchscreens:
        print("touch: the guest has no touchscreen input device", flush=True)
        return
    frames_out = [
        touch_frame("begin", [(8000, 16000), (24000, 16000)]),
        touch_frame("update", [(12000, 8000), (20000, 8000)]),
        [mtt("end", 0, -1), mtt("end", 1, -1)],
    ]
    agent.ev_start(0, touchscreens[0])
    try:
        for frame in frames_out:
            vm.cmd("input-send-event", events=frame)
            time.sleep(0.3)
        seen = contact_frames(agent.ev_take(0, 10000, 1000))
    finally:
        agent.ev_stop(0)
    shown = " -> ".join("+".join(f"({x},{y})" for _, x, y, _ in state[1:]) or "released"
                        for state in seen)
    print(f"touch: two-finger swipe sent over QMP -> guest {touchscreens[0]}: {shown}",
          flush=True)


def _show_bluetooth(agent: AgentClient, timeout: float = 30.0) -> None:
    """What the guest's Bluetooth stack sees: its controller and an LE scan."""
    deadline = time.monotonic() + timeout
    while not agent.hci_list():
        if time.monotonic() > deadline:
            print("bluetooth: the guest has no Bluetooth controller", flush=True)
            return
        time.sleep(0.5)
    agent.hci_up(0)
    info = agent.hci_info(0)
    seen = ", ".join(f"{a.name} ({a.address})" for a in agent.le_scan(0, 2000)) or "nothing"
    print(f"bluetooth: guest hci0 (btusb) up, address {info.address}, ACL MTU "
          f"{info.acl_mtu}; LE scan for 2 s sees: {seen}", flush=True)


def _show_audio(vm: Qemu, agent: AgentClient, opensles: bool) -> None:
    """The guest plays a 1 kHz tone and records: what its snd-hda-intel reports."""
    ensure_sound_card(agent)
    play = agent.pcm_play(0, 0, 48000, 2, 1000, 1000)
    rec = agent.pcm_record(0, 0, 48000, 2, 1000)
    stats = ""
    if opensles:
        counts = {p: vm.qom_get(f"/backend/audiodev-{AUDIODEV_ID}", p)
                  for p in ("buffers", "underruns")}
        stats = f"; OpenSL ES buffers {counts['buffers']}, underruns {counts['underruns']}"
    print(f"audio: guest played 1 s of 1 kHz ({play.frames} frames, {play.xruns} xruns) "
          f"and recorded {rec.freq:.1f} Hz at {rec.rms:.2f} RMS{stats}", flush=True)


def _show_balloon(vm: Qemu, agent: AgentClient, rundir: Path) -> None:
    """Host events as an Android shell would send them: the VM goes to the
    background under critical memory pressure, then back to the foreground."""
    mem_total = agent.mem().total
    ram = vm.cmd("query-memory-size-summary")["base-memory"]
    socket_path = socket_path_of(rundir)

    def balloon_mib() -> int:
        return (ram - vm.cmd("query-balloon")["actual"]) >> 20

    def settle(done=lambda mib: False, rest: float | None = 1.5,
               timeout: float = 12.0) -> tuple[int, float]:
        """Wait until done(balloon MiB) or the balloon rests for ``rest`` s."""
        t0, last, since = time.monotonic(), -1, time.monotonic()
        while time.monotonic() - t0 < timeout:
            now = balloon_mib()
            if now != last:
                last, since = now, time.monotonic()
            if done(now) or (rest is not None and time.monotonic() - since > rest):
                break
            time.sleep(0.1)
        return last, since - t0

    for event in ({"event": "background"}, {"event": "pressure", "level": "critical"}):
        host_event(socket_path, event)
    inflated, took = settle()
    guest = agent.mem()
    print(f"balloon: background + critical host pressure -> balloon {inflated} MiB in "
          f"{took:.1f} s (policy level {vm.qom_get(POLICY_PATH, 'level')}); guest "
          f"MemAvailable {guest.available >> 20} MiB, balloon seen by the guest "
          f"{(guest.balloon or 0) >> 20} MiB, MemTotal {mem_total >> 20} MiB", flush=True)
    for event in ({"event": "pressure", "level": "normal"}, {"event": "foreground"}):
        host_event(socket_path, event)
    # the policy relaxes once the lower pressure has lasted level_down_delay_s
    deflated, took = settle(lambda mib: mib == 0, rest=None)
    print(f"balloon: foreground, pressure back to normal -> balloon {deflated} MiB in "
          f"{took:.1f} s", flush=True)


def run(args: argparse.Namespace, show_guest: bool = False) -> int:
    try:
        bt = _bt_backend(args)
        rundir = new_runtime_dir()
    except (ValueError, OSError) as exc:
        print(f"tabvm: error: {exc}", file=sys.stderr)
        return 1
    peer = None
    try:
        balloon_spec = levels_from_spec() if args.balloon == "on" else None
        config = _config(args, rundir, bt.chardev(BT_CHARDEV_ID, rundir) if bt else None,
                         balloon_spec)
        if bt is not None:
            peer = bt.start(rundir, log_path=rundir / "bt-peer.log")
            ready = peer.ready if peer else {}
            _log("bt", backend=bt, **{k: ready[k] for k in ("controller_address",
                                                         "advertiser_name") if ready.get(k)})
    except SpecErrors as exc:
        for error in exc.errors:
            print(f"tabvm: error: {error}", file=sys.stderr)
        shutil.rmtree(rundir, ignore_errors=True)
        return 1
    except (ProfileError, RuntimeError, OSError, GuestBuildError, BtPeerError) as exc:
        print(f"tabvm: error: {exc}", file=sys.stderr)
        shutil.rmtree(rundir, ignore_errors=True)
        return 1
    _log("start", accel=config.accel, rundir=rundir)
    t0 = time.monotonic()
    try:
        with Qemu(config, rundir) as vm:
            _log("qmp-connected", seconds=f"{time.monotonic() - t0:.2f}")
            touch = _start_touch_bridge(args, vm)
            balloon = _start_balloon_bridge(args, rundir, balloon_spec)
            try:
                return _run_loop(args, vm, show_guest, t0, rundir)
            finally:
                if balloon is not None:
                    balloon[1].stop()
                    balloon[0].stop()
                if touch is not None:
                    bridge, thread, stop = touch
                    stop.set()
                    thread.join(timeout=5)
                    _log("touch-bridge-stats", **bridge.stats)
    except (QemuError, AgentError, OSError, ValueError, PolicyLinkError) as exc:
        print(f"tabvm: error: {exc}", file=sys.stderr)
        return 1
    finally:
        if peer is not None:
            peer.stop()
        shutil.rmtree(rundir, ignore_errors=True)


def _run_loop(args: argparse.Namespace, vm: Qemu, show_guest: bool, t0: float,
              rundir: Path) -> int:
    """Battery bridge updates (and, for the demo, the guest's view) until the end."""
    bridge = BatteryBridge(vm, _source(args))
    agent = AgentClient(str(vm.agent_socket)) if show_guest else None
    if agent is not None:
        agent.wait_ready(timeout=120)
        _log("guest-ready", seconds=f"{time.monotonic() - t0:.2f}")
        _show_touch(vm, agent)
        if args.bt != "none":
            _show_bluetooth(agent)
        if args.audio not in (None, "none"):
            _show_audio(vm, agent, args.audio == "opensles")
        if args.balloon == "on":
            _show_balloon(vm, agent, rundir)
    end = None if args.duration is None else time.monotonic() + args.duration
    while end is None or time.monotonic() < end:
        if not vm.alive():
            _log("qemu-exited", log=vm.log)
            return 1
        ps = bridge.update()
        source = "simulated" if ps.source == "simulated" else ps.source
        line = (f"host {ps.percent:5.1f}% {ps.state:<11} "
                f"AC {'on ' if ps.ac_online else 'off'} ({source})")
        if agent is not None:
            time.sleep(1.2)        # let the guest's battery driver cache expire
            line += " -> " + _guest_power(agent)
        print(line, flush=True)
        time.sleep(args.interval)
    _log("stop", reason="duration reached")
    return 0


def demo(args: argparse.Namespace) -> int:
    if args.duration is None:
        args.duration = 30.0
    if args.audio is None:
        args.audio = "opensles"
    args.fast_curve = True
    if args.battery == "auto" and not HostPowerSupply(args.power_supply_root).has_battery():
        _log("demo", battery="this host has no battery: showing a simulated discharge curve")
    return run(args, show_guest=True)
