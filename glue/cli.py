"""``tabvm run`` and ``tabvm demo``: boot the VM with the glue attached."""

from __future__ import annotations

import argparse
import dataclasses
import re
import shlex
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

from generator.errors import SpecErrors
from generator.ir import Balloon
from tabvm.desktop_image import DesktopImageError, x_command
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
from .desktop import screendump, wait_desktop, wait_screen
from .guest_agent import GuestAgent, GuestAgentError
from .hardware import QGA_SOCKET, VNC_SOCKET
from .power import POWER_SUPPLY, HostPowerSupply, PowerSource, SimulatedCurve
from .profile import (BT_CHARDEV_ID, POLICY_PATH, READY_MARKER, BalloonSetup, BuildOutputs,
                      ProfileError, builtin_profile, default_outputs)
from .lifecycle import Disk, Lifecycle
from .log import log_line as _log
from .profile_spec import OVMF_CODE, OVMF_DIRS, OVMF_VARS, Profile, find_profile, load_profile
from .qemu import Qemu, QemuError, VmConfig
from .qmp_input import mtt, touch_frame
from .runtime import new_runtime_dir, private_dir, runtime_base
from .session import QemuImg, Session, builtin_base_disk
from .touch_bridge import TouchBridge


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("profile", nargs="?", default=None,
                   help="the VM profile: a YAML file (profiles/README.md) or the name of "
                   "one in profiles/ (desktop, windows; default: profiles/default.yaml, "
                   "the test guest); the options below override it")
    p.add_argument("--builddir", type=Path, default=None,
                   help="where `tabvm build` put QEMU, firmware and AML (default: build/)")
    p.add_argument("--accel", default=None, choices=["auto", "tcg", "kvm"],
                   help="auto: KVM if it really runs the guest here, else TCG")
    p.add_argument("--memory", default=None, type=_memory,
                   help="guest RAM, e.g. 512M or 2G")
    p.add_argument("--battery", default=None, choices=["auto", "host", "simulated"],
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
    p.add_argument("--bt", metavar="SPEC", default=None, type=_bt_spec,
                   help="the Bluetooth controller's host side: bumble (a virtual "
                   "controller and an advertiser, the default), unix:PATH or "
                   "tcp:HOST:PORT (an H4 server such as an HCI bridge), hci:N (the "
                   "host's hciN through an HCI user channel), or none")
    p.add_argument("--audio", choices=["none", "opensles", "wav"], default=None,
                   help="the sound card's backend: opensles (Android's OpenSL ES; on a "
                   "desktop host the project's test stand-in), wav (a file), or none")
    p.add_argument("--balloon", choices=["on", "off"], default=None,
                   help="automatic ballooning (devspecs/balloon.yaml): virtio-balloon "
                   "driven by the policy object in QEMU, fed by the host's memory "
                   "pressure and by host events on RUNDIR/host-events.sock")
    p.add_argument("--memory-cgroup", metavar="DIR", type=Path, default=None,
                   help="the memory cgroup the VM runs in (e.g. an Android app's memcg): "
                   "its limit, not the host's MemAvailable, is the host pressure the "
                   "balloon follows")
    p.add_argument("--state-dir", metavar="DIR", type=Path, default=None,
                   help="the session's state directory (RAM file, journal, disk "
                   "overlay, template; default: the profile's)")
    p.add_argument("--duration", type=float, default=None,
                   help="stop after this many seconds, doing the profile's on_shutdown "
                   "(default: run until a shutdown host event, Ctrl-C or SIGTERM; demo: 30)")


def _memory(text: str) -> str:
    m = re.fullmatch(r"(\d+)([MG])", text.strip().upper())
    if not m or int(m.group(1)) == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size like 512M or 2G")
    return f"{int(m.group(1)) << (10 if m.group(2) == 'G' else 0)}M"


def memory_mib(text: str) -> int:
    return int(text.removesuffix("M"))


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


def _probe_kvm(outputs: BuildOutputs) -> bool:
    """Boot the test guest under KVM (whatever the profile boots: the question is
    whether this host's KVM runs an ordinary guest): the kernel's banner must show
    within 10 s (it takes well under one with working KVM) and the guest must get
    ready."""
    from tabvm.guest import build_guest

    image = build_guest(progress=lambda m: _log("guest", step=repr(m)))
    rundir = new_runtime_dir("kvm-probe")
    config = builtin_profile(outputs, image.vmlinux, image.initrd, "kvm", touch=False,
                             battery=False)
    config = dataclasses.replace(config, append=config.append.replace(" quiet", ""))
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


def _config(args: argparse.Namespace, profile: Profile, rundir: Path, outputs: BuildOutputs,
            bt_chardev: str | None = None, balloon_spec: Balloon | None = None) -> VmConfig:
    """The VM's QEMU configuration from the profile (with the command line's overrides
    already in ``args``), without its RAM file and disk (the lifecycle adds them)."""
    from tabvm.guest import build_guest

    guest = profile.guest
    kernel = initrd = None
    if guest.kernel_boot:
        if guest.kernel is None or guest.initrd is None:
            image = build_guest(progress=lambda m: _log("guest", step=repr(m)))
        # the unpacked ELF kernel boots about twice as fast under TCG (PVH entry)
        kernel = guest.kernel or image.vmlinux
        initrd = guest.initrd or image.initrd

    sound, env = _audio(args, outputs, rundir)
    balloon = _balloon_setup(args, rundir, balloon_spec)
    touch = profile.devices.touchscreen or args.touch_from is not None

    uefi = guest.ovmf if guest.firmware == "uefi" else None
    if uefi is not None and uefi[0].parent in (default_outputs().firmware, *OVMF_DIRS) \
            and (outputs.firmware / OVMF_CODE).is_file():
        # OVMF found in the default places: the one beside this QEMU (a bundle's own)
        uefi = (outputs.firmware / OVMF_CODE, outputs.firmware / OVMF_VARS)

    def config_for(accel: str) -> VmConfig:
        return builtin_profile(outputs, kernel, initrd, accel, args.memory, touch=touch,
                               bt_chardev=bt_chardev, audiodev=sound, balloon=balloon,
                               env=env, battery=args.battery != "off", cpus=profile.cpus,
                               qmp_tcp=profile.qmp_tcp, display=profile.display,
                               network=profile.network,
                               qga_socket=rundir / QGA_SOCKET if guest.agent == "qemu-ga"
                               else None,
                               uefi=uefi,
                               cdrom=guest.cdrom, serial_agent=guest.agent == "tabvm",
                               vnc=rundir / VNC_SOCKET if profile.display else None)

    accel = select_accel(args.accel, probe=lambda: _probe_kvm(outputs))
    return config_for(accel)


def _effective(args: argparse.Namespace, profile: Profile) -> None:
    """Fill the options not given on the command line from the profile."""
    d = profile.devices
    if args.memory is None:
        args.memory = f"{profile.memory_mib}M"
    if args.accel is None:
        args.accel = profile.accel
    if args.battery is None:
        args.battery = d.battery or "off"
    if args.bt is None:
        args.bt = d.bluetooth or "none"
    if args.audio is None:
        args.audio = d.audio or "none"
    if args.balloon is None:
        args.balloon = "on" if d.balloon else "off"
    if args.memory_cgroup is None:
        args.memory_cgroup = d.memory_cgroup
    if args.touch_from is None and d.touch_from is not None:
        args.touch_from = str(d.touch_from)


def _disk(profile: Profile) -> Disk | None:
    """The profile's base disk (the desktop image is built here on first use)."""
    d = profile.disk
    if d is None:
        return None
    boot = None if profile.guest.kernel_boot else 1     # firmware: the disk, then a CD
    if d.desktop:
        from tabvm.desktop_image import build_desktop_image
        image = build_desktop_image(progress=lambda m: _log("desktop-image", step=repr(m)),
                                    refresh=False)
        return Disk(image.path, "qcow2", d.bus, boot)
    if d.base is None:
        return Disk(builtin_base_disk(d.size_mib), "raw", d.bus, boot)
    return Disk(d.base, d.format, d.bus, boot)


def _open_runtime(profile: Profile, state_dir: Path | None) -> tuple[Path, Session]:
    """The profile's runtime directory (stale sockets removed) and its session, locked."""
    session = Session(state_dir or profile.state_dir)
    session.lock()
    rundir = private_dir(private_dir(runtime_base()) / profile.name)
    for stale in rundir.iterdir():
        if stale.is_socket() or stale.suffix in (".log", ".wav", ".png"):
            stale.unlink()
    return rundir, session


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


def _start_balloon_bridge(args: argparse.Namespace, rundir: Path, spec: Balloon | None,
                          server: HostEventServer) -> BalloonBridge | None:
    """The host side of ballooning, or None without a policy ``spec`` (--balloon
    off). On a Linux host the bridge also feeds the host's MemAvailable; on Android,
    host events (lmkd, ActivityManager, onTrimMemory, foreground/background) arrive
    on the host-event socket ``server``."""
    if spec is None:
        return None
    bridge = BalloonBridge(PolicyLink(rundir / PRESSURE_SOCKET, timeout=2.0,
                                      connect_timeout=5.0), spec,
                           linux=None if _on_android() and not args.memory_cgroup
                           else LinuxHostAdapter(spec, cgroup=args.memory_cgroup),
                           foreground=True, log=_log).start()
    bridge.register(server, with_lifecycle=True)
    return bridge


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


DISK_MOUNT = "mkdir -p /mnt/disk && (grep -q ' /mnt/disk ' /proc/mounts || " \
             "mount -t ext4 /dev/vda /mnt/disk)"


def _show_lifecycle(lifecycle: Lifecycle, agent: AgentClient, rundir: Path) -> AgentClient:
    """Background + onTrimMemory(MODERATE) suspends the VM, foreground resumes it:
    a marker in guest RAM and one on the guest's disk are still there. Returns
    the agent connection to the resumed guest."""
    socket_path = socket_path_of(rundir)
    marker = f"demo-{time.monotonic_ns()}"
    agent.hold("demo", marker)
    on_disk = lifecycle.disk is not None
    if on_disk:
        agent.sh(f"{DISK_MOUNT} && echo {marker} > /mnt/disk/marker && sync")
    agent.close()
    host_event(socket_path, {"event": "background"})
    reply = host_event(socket_path, {"event": "trim-memory", "level": "MODERATE"})
    if not reply.get("ok"):
        raise RuntimeError(f"suspend: {reply.get('error')}")
    st = host_event(socket_path, {"event": "status"})
    print(f"lifecycle: background + onTrimMemory(MODERATE) -> {reply.get('state')} in "
          f"{st['timings_ms'].get('suspend_ms', 0):.0f} ms (QEMU exited; guest RAM stays "
          f"in its file: {st['memory']['ram_file_mib']} MiB)", flush=True)
    t0 = time.monotonic()
    reply = host_event(socket_path, {"event": "foreground"}, timeout=120)
    agent = AgentClient(str(rundir / "agent.sock"), connect_timeout=30)
    in_ram = agent.recall("demo")
    answered = (time.monotonic() - t0) * 1000
    disk = agent.sh("cat /mnt/disk/marker").output.strip() if on_disk else None
    st = host_event(socket_path, {"event": "status"})
    print(f"lifecycle: foreground -> {reply.get('state')} from the {st['source']} "
          f"(QEMU start to running {st['timings_ms'].get('resume_ms', 0):.0f} ms, "
          f"guest agent answered after {answered:.0f} ms); marker in guest RAM "
          f"{'kept' if in_ram == marker else 'LOST'}"
          + (f", marker on its disk {'kept' if disk == marker else 'LOST'}"
             if on_disk else ""), flush=True)
    return agent


def _capture_template(args: argparse.Namespace, profile: Profile,
                      lifecycle: Lifecycle) -> int:
    def ready(q: Qemu) -> None:
        if profile.guest.agent == "tabvm":      # the test guest: its agent says when
            agent = AgentClient(str(q.agent_socket), connect_timeout=30)
            try:
                agent.wait_ready(timeout=180)
            finally:
                agent.close()
        elif profile.display is not None:       # a desktop: agent, session, screen
            ready = wait_desktop(q, lifecycle.rundir, timeout=args.boot_timeout,
                                 agent=profile.guest.agent == "qemu-ga",
                                 session_check=_session_check(profile),
                                 progress=lambda m: _log("template", step=repr(m)))
            _log("template", desktop_s=f"{ready.screen_s:.1f}")
        else:
            _log("template", waiting_s=args.settle)
            time.sleep(args.settle)

    meta = lifecycle.capture_template(ready)
    print(f"golden template of profile {profile.name}: {lifecycle.session.template} "
          f"(booted in {meta['boot_s']} s; RAM {meta['ram_mib']} MiB, device state "
          f"{meta['device_state_kib']} KiB)", flush=True)
    return 0


def _session_check(profile: Profile) -> tuple[str, ...] | None:
    """The command that says the guest's graphical session is up: the built-in
    desktop image knows its own; other guests are judged by their screen."""
    if profile.disk is not None and profile.disk.desktop:
        from tabvm.desktop_image import SESSION_CHECK
        return SESSION_CHECK
    return None


def status(args: argparse.Namespace) -> int:
    """``tabvm status``: the running glue's view, or the session journal's."""
    import json

    from .journal import JournalError
    try:
        profile = load_profile(find_profile(args.profile))
        session_dir = args.state_dir or profile.state_dir
    except SpecErrors as exc:
        for error in exc.errors:
            print(f"tabvm: error: {error}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"tabvm: error: {exc}", file=sys.stderr)
        return 1
    sock = socket_path_of(runtime_base() / profile.name)
    try:
        st = host_event(sock, {"event": "status"}, timeout=5)
        st.pop("ok", None)
        running = True
    except OSError:
        running = False
        from .journal import Journal
        try:
            record = Journal(session_dir).load() if session_dir.is_dir() else None
        except JournalError as exc:
            print(f"tabvm: error: {exc}", file=sys.stderr)
            return 1
        st = {"state": "not running", "session": str(session_dir),
              "journal": json.loads(record.to_json()) if record else None}
    if args.json:
        print(json.dumps(st, indent=1, sort_keys=True))
        return 0
    print(f"profile   {profile.name}  ({'glue running' if running else 'glue not running'})")
    if running:
        mem = st.get("memory", {})
        print(f"state     {st['state']} ({'foreground' if st['foreground'] else 'background'})"
              f", epoch {st['epoch']}, up {st.get('uptime_s')} s")
        print(f"source    {st['source']}: {st['reason']}")
        print("timings   " + ", ".join(f"{k} {v}" for k, v in st["timings_ms"].items()))
        print("memory    " + ", ".join(f"{k} {v}" for k, v in mem.items()))
        print("bridges   " + (", ".join(f"{k} {v}" for k, v in st["bridges"].items())
                              or "none"))
    else:
        record = st["journal"]
        if record is None:
            print("session   none yet (the next start is a cold boot or the template)")
        else:
            cp = record.get("checkpoint")
            print(f"journal   {record['state']}, epoch {record['epoch']}, "
                  + (f"checkpoint {cp['device_state']} (resumable)" if cp
                     else "no checkpoint (the next start is a cold boot)"))
    print(f"session   {st['session']}")
    return 0


def _bt_link_down(q: Qemu) -> None:
    """The Bluetooth controller's state lives in the host's controller, not in
    QEMU, so the device blocks migration while its link is up: swap its chardev
    for a null one (the device detaches). The resumed QEMU connects again and the
    guest's btusb probes the controller afresh."""
    q.cmd("chardev-change", id=BT_CHARDEV_ID, backend={"type": "null", "data": {}})


class VmHandle:
    """The current QEMU of a lifecycle, for bridges that outlive a suspend: their
    QMP calls go to whichever QEMU runs now, and fail while none does."""

    def __init__(self, lifecycle: Lifecycle):
        self._lc = lifecycle

    def _vm(self) -> Qemu:
        vm = self._lc.vm
        if vm is None:
            raise QemuError(f"the VM is {self._lc.state}")
        return vm

    def cmd(self, name: str, **args: object):
        return self._vm().cmd(name, **args)

    def qom_set(self, path: str, prop: str, value: object) -> None:
        self._vm().qom_set(path, prop, value)

    def qom_get(self, path: str, prop: str):
        return self._vm().qom_get(path, prop)

    def alive(self) -> bool:
        return self._lc.vm is not None and self._lc.vm.alive()

    agent_socket = property(lambda self: self._lc.rundir / "agent.sock")


def run(args: argparse.Namespace, show_guest: bool = False,
        discard_session: bool = False, template: bool = False,
        show: Callable[[Lifecycle, VmHandle, Path], None] | None = None) -> int:
    """``tabvm run``: the profile's VM through its lifecycle until a shutdown host
    event, --duration, Ctrl-C or SIGTERM. ``discard_session`` (the demo): a
    throwaway session that is powered off and removed at the end. ``template``
    (``tabvm snapshot template``): capture the golden template instead."""
    try:
        profile = load_profile(find_profile(args.profile))
        _effective(args, profile)
        bt = _bt_backend(args)
        balloon_spec = (levels_from_spec(profile.devices.balloon_policy)
                        if args.balloon == "on" else None)
        state_dir = args.state_dir
        if discard_session:
            state_dir = Path(tempfile.mkdtemp(prefix="tabvm-demo-"))
        rundir, session = _open_runtime(profile, state_dir)
    except SpecErrors as exc:
        for error in exc.errors:
            print(f"tabvm: error: {error}", file=sys.stderr)
        return 1
    except (ValueError, OSError, RuntimeError) as exc:
        print(f"tabvm: error: {exc}", file=sys.stderr)
        return 1
    peer = lifecycle = server = balloon = touch = None
    outputs = BuildOutputs(args.builddir) if args.builddir else default_outputs()
    try:
        config = _config(args, profile, rundir, outputs,
                         bt.chardev(BT_CHARDEV_ID, rundir) if bt else None, balloon_spec)
        policy = profile.snapshot
        if discard_session:
            policy = dataclasses.replace(policy, on_shutdown="poweroff", template=False)
        lifecycle = Lifecycle(config, memory_mib(args.memory) << 20, rundir, session,
                              QemuImg(outputs.qemu_img), _disk(profile), policy, log=_log)
        lifecycle.agent = profile.guest.agent
        if bt is not None:
            peer = bt.start(rundir, log_path=rundir / "bt-peer.log")
            ready = peer.ready if peer else {}
            _log("bt", backend=bt, **{k: ready[k] for k in ("controller_address",
                                                         "advertiser_name") if ready.get(k)})
            lifecycle.bridges["bluetooth"] = lambda: "ok" if peer is None or peer.alive() \
                else "peer exited"
            lifecycle.before_suspend.append(_bt_link_down)
        server = HostEventServer(rundir, log=_log)
        balloon = _start_balloon_bridge(args, rundir, balloon_spec, server)
        if balloon is not None:
            lifecycle.balloon = balloon
            lifecycle.bridges["balloon"] = lambda: balloon.status(query_qemu=False)["level"]
        lifecycle.register(server)
        server.start()
        _log("host-events", socket=server.path)
        _log("start", profile=profile.name, accel=config.accel, rundir=rundir,
             session=session.dir)
        t0 = time.monotonic()
        if template:
            return _capture_template(args, profile, lifecycle)
        lifecycle.start()
        vm = VmHandle(lifecycle)
        touch = _start_touch_bridge(args, vm)
        return _run_loop(args, lifecycle, vm, show_guest, t0, rundir, show)
    except SpecErrors as exc:
        for error in exc.errors:
            print(f"tabvm: error: {error}", file=sys.stderr)
        return 1
    except (ProfileError, RuntimeError, OSError, GuestBuildError, BtPeerError, QemuError,
            AgentError, ValueError, PolicyLinkError, DesktopImageError) as exc:
        print(f"tabvm: error: {exc}", file=sys.stderr)
        return 1
    finally:
        if server is not None:
            server.stop()
        if balloon is not None:
            balloon.stop()
        if touch is not None:
            bridge, thread, stop = touch
            stop.set()
            thread.join(timeout=5)
            _log("touch-bridge-stats", **bridge.stats)
        if lifecycle is not None and lifecycle.vm is not None:
            lifecycle.vm.stop()
        if peer is not None:
            peer.stop()
        session.unlock()
        if discard_session:
            shutil.rmtree(session.dir, ignore_errors=True)
        shutil.rmtree(rundir, ignore_errors=True)


def _run_loop(args: argparse.Namespace, lifecycle: Lifecycle, vm: VmHandle,
              show_guest: bool, t0: float, rundir: Path,
              show_other: Callable[[Lifecycle, VmHandle, Path], None] | None = None) -> int:
    """The lifecycle's events and the battery bridge (and, for the demo, the
    guest's view: the test guest's with ``show_guest``, or ``show_other``) until
    the end. 1 if showing failed."""
    failed: list[BaseException] = []
    battery = BatteryBridge(vm, _source(args)) if args.battery != "off" else None
    if battery is not None:
        lifecycle.bridges["battery"] = lambda: "ok" if battery.sent else "waiting"

        def fresh_device(state: str) -> None:
            if state == "booting":          # a new device: everything is to send again
                battery.sent.clear()
        lifecycle.listeners.append(fresh_device)
    shown = threading.Event()
    guest: list[AgentClient] = []       # the demo's agent connection, once shown

    def show() -> None:
        """The demo: what the guest's drivers see, then a suspend and resume. Runs
        beside the lifecycle thread (host events are served by it)."""
        try:
            agent = AgentClient(str(vm.agent_socket))
            agent.wait_ready(timeout=120)
            _log("guest-ready", seconds=f"{time.monotonic() - t0:.2f}")
            _show_touch(vm, agent)
            if args.bt != "none":
                _show_bluetooth(agent)
            if args.audio not in (None, "none"):
                _show_audio(vm, agent, args.audio == "opensles")
            if args.balloon == "on":
                _show_balloon(vm, agent, rundir)
            guest.append(_show_lifecycle(lifecycle, agent, rundir))
        except (AgentError, QemuError, OSError, RuntimeError) as exc:
            print(f"tabvm: error: demo: {exc}", file=sys.stderr, flush=True)
            stop.set()
        finally:
            shown.set()

    def show_by_caller() -> None:
        try:
            assert show_other is not None
            show_other(lifecycle, vm, rundir)
        except (GuestAgentError, QemuError, OSError, RuntimeError) as exc:
            print(f"tabvm: error: demo: {exc}", file=sys.stderr, flush=True)
            failed.append(exc)
            stop.set()
        finally:
            shown.set()

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    if show_guest:
        threading.Thread(target=show, name="demo", daemon=True).start()
    elif show_other is not None:
        threading.Thread(target=show_by_caller, name="demo", daemon=True).start()
    else:
        shown.set()

    def tick() -> None:
        if battery is None or lifecycle.state != "running" or not shown.is_set():
            return
        try:
            ps = battery.update()
        except QemuError as exc:
            _log("battery-bridge", error=repr(str(exc)))
            return
        source = "simulated" if ps.source == "simulated" else ps.source
        line = (f"host {ps.percent:5.1f}% {ps.state:<11} "
                f"AC {'on ' if ps.ac_online else 'off'} ({source})")
        if guest:
            time.sleep(1.2)        # let the guest's battery driver cache expire
            line += " -> " + _guest_power(guest[0])
        print(line, flush=True)

    while not shown.is_set() and not stop.is_set() and not lifecycle.done:
        lifecycle.run(tick, args.interval, until=time.monotonic() + 0.5)
    end = None if args.duration is None else time.monotonic() + args.duration
    while not lifecycle.done and not stop.is_set() and (end is None or time.monotonic() < end):
        lifecycle.run(tick, args.interval, until=time.monotonic() + 0.5)
    if not lifecycle.done:
        why = "signal" if stop.is_set() else "duration reached"
        _log("stop", reason=why)
        lifecycle.shutdown()
    for agent in guest:
        agent.close()
    return 1 if failed else 0


def demo(args: argparse.Namespace) -> int:
    if args.duration is None:
        args.duration = 30.0
    if args.audio is None:
        args.audio = "opensles"
    args.fast_curve = True
    if args.battery in (None, "auto") and \
            not HostPowerSupply(args.power_supply_root).has_battery():
        _log("demo", battery="this host has no battery: showing a simulated discharge curve")
    rc = run(args, show_guest=True, discard_session=True)
    if rc:
        return rc
    return desktop_demo(args.builddir)


#: Where the demo writes the desktop's screenshot
DESKTOP_SCREENSHOT = "desktop.png"


def desktop_demo(builddir: Path | None) -> int:
    """The demo's second part: the Debian desktop (profiles/desktop.yaml) in its
    own session, which is kept: the first run builds the image and cold boots
    (about a minute under TCG), later runs resume the checkpoint the previous
    one left. Writes a screenshot (build/desktop.png), shows the guest's view
    through qemu-guest-agent, and suspends it again."""
    parser = argparse.ArgumentParser()
    add_run_arguments(parser)
    args = parser.parse_args(["desktop", "--duration", "0"]
                             + (["--builddir", str(builddir)] if builddir else []))
    outputs = BuildOutputs(builddir) if builddir else default_outputs()
    profile = load_profile(find_profile("desktop"))
    print("desktop: starting profiles/desktop.yaml (the first run builds the Debian "
          "desktop image and cold boots it under TCG; later runs resume it)", flush=True)

    def show(lifecycle: Lifecycle, vm: VmHandle, rundir: Path) -> None:
        if lifecycle.source == "cold":
            ready = wait_desktop(vm, rundir, timeout=900, session_check=_session_check(profile),
                                 progress=lambda m: print(f"desktop: {m}", flush=True))
            how = (f"cold boot: desktop on screen {ready.screen_s:.1f} s after QEMU "
                   f"started ({lifecycle.timings.get('boot_ms', 0) / 1000:.1f} s to start it)")
            # a terminal in the user's session, with what the guest says of itself;
            # it stays open, so every resume shows it again
            with GuestAgent(rundir / QGA_SOCKET, timeout=30) as agent:
                agent.exec(["sh", "-c", "cd / && setsid " + shlex.join(x_command(
                    "xterm", "-T", "tabvm demo: the Debian desktop guest", "-geometry",
                    "100x16+80+60", "-fa", "DejaVu Sans Mono", "-fs", "11", "-e", "sh", "-c",
                    TERMINAL_VIEW)) + " </dev/null >/dev/null 2>&1 &"], timeout=60)
            shot = wait_screen(vm, rundir, time.monotonic() + 120)
        else:
            shot = rundir / "demo.png"
            screendump(vm, shot)
            how = (f"resumed from its {lifecycle.source} in "
                   f"{lifecycle.timings.get('resume_ms', 0):.0f} ms")
        out = outputs.root / DESKTOP_SCREENSHOT
        shutil.copyfile(shot, out)
        print(f"desktop: {how}; screenshot {out}", flush=True)
        with GuestAgent(rundir / QGA_SOCKET, timeout=30) as agent:
            result = agent.exec(["sh", "-c", GUEST_VIEW], timeout=60)
        for line in result.stdout.decode(errors="replace").splitlines():
            print(f"desktop: guest: {line}", flush=True)

    rc = run(args, show=show)
    st = _journal_state(profile)
    print(f"desktop: {st} (the next demo resumes it; `tabvm run desktop` runs it, and "
          "`tabvm view desktop` then shows it in a browser, touchable)", flush=True)
    return rc


#: What the demo's terminal in the desktop session shows (run as the user)
TERMINAL_VIEW = ". /etc/os-release; echo \"$PRETTY_NAME on tabvm, $(uname -sr)\"; echo; " \
                "xrandr --current | head -2; echo; ip -br -4 addr; echo; " \
                "lsblk -o NAME,SIZE,FSTYPE,MOUNTPOINTS; echo; exec bash"

#: What the demo asks the desktop guest (through qemu-guest-agent)
GUEST_VIEW = ". /etc/os-release; echo \"$PRETTY_NAME, kernel $(uname -r)\"; " \
             "runuser -u user -- env DISPLAY=:0 XAUTHORITY=/home/user/.Xauthority " \
             "xrandr --current | head -1; " \
             "echo \"network: $(ip -4 -o addr show scope global | awk '{print $2, $4}')\"; " \
             "echo \"disk: $(lsblk -dno NAME,TRAN,SIZE | tr '\\n' ' ')\""


def _journal_state(profile: Profile) -> str:
    from .journal import Journal, JournalError
    try:
        record = Journal(profile.state_dir).load()
    except (JournalError, OSError):
        return "session state unknown"
    if record is None:
        return "no session"
    return f"session {record.state}" + (" with a checkpoint" if record.checkpoint else "")
