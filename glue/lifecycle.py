"""The VM's lifecycle as an Android app lives it, driven by host events.

    cold boot | template | checkpoint --> running (foreground)
    running --background--> running (background; the balloon policy takes over)
    background --suspend_after_background_s / trim-memory / low-memory--> suspended
    suspended --foreground--> resumed (from the checkpoint) --> running

Guest RAM lives in a file (``memory-backend-file``, ``share=on``): suspending
saves only the device state (a few hundred KB) and quits QEMU, freeing its
memory; resuming maps the file back. The session journal (glue.journal) says
which files belong together; every step commits it at the point where the
files on disk become that record:

- a checkpoint (RAM file + device state + flushed disk) is committed only once
  QEMU saved the state and exited cleanly;
- before a resumed or booted guest gets CPU time, the journal drops the
  checkpoint, because the running guest writes to the RAM file and the disk.

So after an unannounced kill at any moment the next start either resumes a
checkpoint nothing has run on since, or cold boots on the flushed disk, and
says which (``source``, ``reason``). A fresh session (no disk yet) starts from
the golden template when there is one (``capture_template``).

All transitions run on one thread (``run``); host-event handlers queue them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import queue
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .balloon import PolicyLinkError, read_meminfo
from .journal import Checkpoint, JournalError, Record, boot_id, fsync_dir
from .log import log_line
from .profile_spec import SnapshotPolicy, trim_value
from .qemu import Qemu, QemuError, VmConfig
from .rfb import RfbError, set_desktop_size
from .screen_input import ScreenInput
from .guest_agent import GuestAgent, GuestAgentError
from .hardware import QGA_CHARDEV_ID, QGA_SOCKET, disk_device, uefi_args
from .session import (DISK_NODE, UEFI_VARS_NAME, DiskCheck, QemuImg, Session, SessionError,
                      allocated, config_key, copy_file, disk_blockdev, fsync_file,
                      replace_dir, rss_kib, sparse_copy)
from .snapshot import FileRam, SnapshotError, load, save

#: Test hook: ``point[,point...]`` where the lifecycle stops for STALL_SECONDS
#: (logging ``step=stall``) so a test can kill it there.
STALL_ENV = "TABVM_STALL_AT"
STALL_SECONDS_ENV = "TABVM_STALL_SECONDS"
STALL_POINTS = ("suspend:stopped", "suspend:saved", "suspend:committed",
                "resume:loaded", "resume:committed", "boot:committed")

RESTARTS_WINDOW_S = 60.0
MAX_RESTARTS = 3


class LifecycleError(RuntimeError):
    pass


@dataclass(frozen=True)
class Disk:
    base: Path
    format: str                           # raw | qcow2
    bus: str = "virtio"                   # virtio | ahci (glue.hardware)
    bootindex: int | None = None          # the firmware boots it first (firmware boot)


@dataclass(frozen=True)
class Plan:
    source: str                           # checkpoint | template | cold
    reason: str


class Lifecycle:
    """One VM session: ``start``, ``suspend``, ``shutdown``; host events through
    ``register(server)`` and ``run()``."""

    def __init__(self, base: VmConfig, ram_bytes: int, rundir: Path, session: Session,
                 qemu_img: QemuImg, disk: Disk | None, policy: SnapshotPolicy,
                 log: Callable[..., None] = log_line):
        self.base = base
        self.ram_bytes = ram_bytes
        self.rundir = rundir
        self.session = session
        self.qemu_img = qemu_img
        self.disk = disk
        self.policy = policy
        self._log = log
        self.key = config_key(base, rundir, disk is not None)
        self.config = self._config(session.ram, session.disk, session.uefi_vars)
        self.vm: Qemu | None = None
        self.state = "stopped"            # booting running suspending suspended crashed stopped
        self.foreground = True
        self.source: str | None = None
        self.reason: str | None = None
        self.epoch = 0
        self.started_at: float | None = None
        self.timings: dict[str, float] = {}
        self.crashes: list[float] = []
        self.last_disk_check: DiskCheck | None = None
        self.listeners: list[Callable[[str], None]] = []   # called with the new state
        # run on the running QEMU before it is saved (e.g. take a passthrough
        # device's link down: QEMU cannot save state that lives outside it)
        self.before_suspend: list[Callable[[Qemu], None]] = []
        self.bridges: dict[str, Callable[[], str]] = {}     # name -> health
        self.balloon: Any = None          # a glue.balloon.BalloonBridge, if any
        self.agent = "tabvm"              # the guest's agent: tabvm | qemu-ga | none
        self._shots = 0
        # the viewer's fingers and mouse (``touch``/``pointer`` host events), sent
        # straight to the running QEMU (not through the lifecycle thread: a
        # touch must not wait behind a suspend's disk work; Qemu.cmd serialises)
        self.screen_input = ScreenInput(self._send_input)
        self.display_size: tuple[int, int] | None = None    # the host's, from ``display``
        self._bg_since: float | None = None
        self._queue: queue.Queue = queue.Queue()
        self._done = threading.Event()
        self._stall = {p.strip() for p in os.environ.get(STALL_ENV, "").split(",") if p}
        self._next_tick = 0.0
        self._committed = False

    # -- configuration --
    def _config(self, ram: Path, overlay: Path, uefi_vars: Path) -> VmConfig:
        config = FileRam(ram, self.ram_bytes).apply(self.base)
        if config.uefi is not None:
            config = dataclasses.replace(config,
                                         extra=config.extra + uefi_args(config.uefi[0], uefi_vars))
        if self.disk is None:
            return config
        return dataclasses.replace(
            config, blockdevs=config.blockdevs + (disk_blockdev(overlay),),
            devices=config.devices + (disk_device(DISK_NODE, self.disk.bus,
                                                  self.disk.bootindex),))

    def _fresh_uefi_vars(self, path: Path) -> None:
        """A UEFI session's variable store starts as a copy of OVMF's template
        and is then the session's, like its disk."""
        if self.base.uefi is not None and not path.exists():
            copy_file(self.base.uefi[1], path)
            self.log("uefi-vars-created", path=path)

    def log(self, step: str, **fields: object) -> None:
        self._log("lifecycle", step=step, **fields)

    def _stall_at(self, point: str) -> None:
        if point in self._stall:
            seconds = float(os.environ.get(STALL_SECONDS_ENV, "30"))
            self.log("stall", point=point, seconds=seconds)
            time.sleep(seconds)

    def _set_state(self, state: str) -> None:
        if state == "booting":
            self.screen_input.reset()
        if state == "running" and self.display_size is not None and self.vnc_socket:
            # the host's display changed while no QEMU ran: tell the new one
            threading.Thread(target=self._apply_display, name="display", daemon=True).start()
        self.state = state
        for listener in self.listeners:
            listener(state)

    # -- deciding where to start from --
    def _template_usable(self) -> str | None:
        meta = self.session.template / "meta.json"
        if not self.policy.template:
            return "templates are off in the profile"
        if not meta.is_file():
            return "no golden template (tabvm snapshot template)"
        try:
            key = json.loads(meta.read_text())["config_key"]
        except (OSError, ValueError, KeyError):
            return "the template's meta.json is unreadable"
        if key != self.key:
            return "the template was captured for another VM configuration"
        for name in ("ram", "devstate") + (("disk.qcow2",) if self.disk else ()) \
                + ((UEFI_VARS_NAME,) if self.base.uefi else ()):
            if not (self.session.template / name).is_file():
                return f"the template has no {name}"
        return None

    def plan(self) -> tuple[Plan, Record]:
        """Where the next start comes from, and the journal it was decided on."""
        try:
            record = self.session.journal.load()
        except JournalError as exc:
            return Plan("cold", f"{exc}; cold boot on the disk as it is"), Record(clean=False)
        if record is None:
            record = Record()
        if record.checkpoint is not None:
            why = record.checkpoint.usable(self.key, self.session.dir)
            if why is None:
                return Plan("checkpoint", f"checkpoint of epoch {record.epoch}"), record
            reason = f"checkpoint of epoch {record.epoch} unusable: {why}"
        elif record.state == "running":
            reason = "the last run ended without a suspend (RAM and device state no " \
                     "longer match)"
        elif record.state == "stopped" and record.epoch:
            reason = "the last run was powered off"
        else:
            reason = "no saved session"
        fresh = self.disk is None or not self.session.disk.exists()
        if fresh:
            why = self._template_usable()
            if why is None:
                return Plan("template", "fresh session from the golden template"), record
            reason += f"; {why}"
        return Plan("cold", reason), record

    # -- transitions --
    def start(self) -> Plan:
        """Start the VM from the best consistent source; falls back to a cold boot
        if resuming fails. Returns what it did."""
        if self.vm is not None:
            raise LifecycleError(f"the VM is already {self.state}")
        stale = self.session.kill_stale_qemu()
        if stale:
            self.log("killed-stale-qemu", pid=stale)
        plan, record = self.plan()
        self.log("start", source=plan.source, reason=repr(plan.reason))
        t0 = time.monotonic()
        # a checkpoint whose resume failed before the journal dropped it is
        # still good (nothing ran on it): try it once more
        attempts = {"checkpoint": (1, 2), "template": (1,)}.get(plan.source, ())
        for attempt in attempts:
            self._committed = False
            try:
                self._resume(plan, record)
                self._started(plan, t0, "resume_ms")
                return plan
            except (QemuError, SnapshotError, SessionError, OSError) as exc:
                self.log("resume-failed", source=plan.source, attempt=attempt,
                         error=repr(str(exc)))
                self._drop_vm()
                failed = Plan("cold", f"resuming the {plan.source} failed: {exc}")
                if self._committed:
                    break
        if plan.source != "cold":
            plan = failed
            record = dataclasses.replace(record, checkpoint=None, clean=False,
                                         epoch=max(record.epoch, self.epoch))
        self._cold_boot(record)
        self._started(plan, t0, "boot_ms")
        return plan

    def _started(self, plan: Plan, t0: float, timing: str) -> None:
        self.timings[timing] = (time.monotonic() - t0) * 1000
        self.source, self.reason = plan.source, plan.reason
        self.started_at = time.monotonic()
        self._set_state("running")
        self.log("running", source=plan.source, epoch=self.epoch,
                 ms=f"{self.timings[timing]:.0f}", foreground=self.foreground)
        if plan.source != "cold" and self.agent == "qemu-ga":
            # the guest's clock stood still while it was suspended: set it
            threading.Thread(target=self._sync_clock, args=(self.epoch,),
                             name="guest-clock", daemon=True).start()

    def _resume(self, plan: Plan, record: Record) -> None:
        s = self.session
        if plan.source == "template":
            t0 = time.monotonic()
            copied = sparse_copy(s.template / "ram", s.ram)
            if self.base.uefi is not None:
                copy_file(s.template / UEFI_VARS_NAME, s.uefi_vars)
            if self.disk:                # its existence marks a used session: last
                tmp = s.disk.with_name(f".{s.disk.name}.tmp")
                shutil.copyfile(s.template / "disk.qcow2", tmp)
                tmp.replace(s.disk)
            self.log("template-copied", ram_mib=copied >> 20,
                     ms=f"{(time.monotonic() - t0) * 1000:.0f}")
            state = s.template / "devstate"
        else:
            assert record.checkpoint is not None
            state = s.dir / record.checkpoint.device_state
        self._set_state("resuming")
        q = load(self.config, self.rundir, state, die_with_parent=True)
        self.vm = q
        s.record_qemu(q.proc.pid)
        self._stall_at("resume:loaded")
        q.cmd("query-status")        # QEMU still there: else the checkpoint stays
        self.epoch = record.epoch + 1
        s.journal.commit(Record("running", self.epoch, None, clean=False))
        self._committed = True
        self._stall_at("resume:committed")
        q.cmd("cont")

    def _cold_boot(self, record: Record) -> None:
        s = self.session
        if self.disk is not None:
            if s.disk.exists() and not record.clean:
                self.last_disk_check = self.qemu_img.check(s.disk, repair_leaks=True)
                self.log("disk-check", image=s.disk, result=self.last_disk_check.verdict)
                if self.last_disk_check.rc == 2:
                    raise LifecycleError(f"{s.disk} is corrupt; qemu-img check says:\n"
                                         f"{self.last_disk_check.output}")
            if not s.disk.exists():
                self.qemu_img.create_overlay(self.disk.base, self.disk.format, s.disk)
                self.log("disk-created", overlay=s.disk, base=self.disk.base)
        self._fresh_uefi_vars(s.uefi_vars)
        s.fresh_ram()
        s.remove_device_states()
        self.epoch = record.epoch + 1
        s.journal.commit(Record("running", self.epoch, None, clean=False))
        self._stall_at("boot:committed")
        self._set_state("booting")
        q = Qemu(self.config, self.rundir, die_with_parent=True)
        try:
            q.start()
        except QemuError as exc:
            self._set_state("crashed")
            self.log("boot-failed", error=repr(str(exc)))
            raise
        self.vm = q
        s.record_qemu(q.proc.pid)

    def suspend(self) -> float:
        """Save the device state, quit QEMU, commit the checkpoint; ms it took."""
        if self.vm is None or self.state != "running":
            raise LifecycleError(f"cannot suspend: the VM is {self.state}")
        q, s = self.vm, self.session
        t0 = time.monotonic()
        self._set_state("suspending")
        state = s.device_state(self.epoch)
        try:
            for prepare in self.before_suspend:
                prepare(q)
            save(q, state, stopped=lambda: self._stall_at("suspend:stopped"))
            self._stall_at("suspend:saved")
            rc = q.stop()
        except (QemuError, SnapshotError, OSError) as exc:
            self._drop_vm()
            self._set_state("crashed")
            self.log("suspend-failed", error=repr(str(exc)))
            raise LifecycleError(f"suspend failed: {exc}") from None
        self.vm = None
        if rc != 0:
            self._set_state("crashed")
            self.log("suspend-failed", error=f"QEMU exited with {rc}")
            raise LifecycleError(f"suspend failed: QEMU exited with {rc}")
        if self.policy.durable:
            fsync_file(s.ram)
            fsync_file(state)
            if self.base.uefi is not None:
                fsync_file(s.uefi_vars)
            fsync_dir(s.dir)
        s.journal.commit(Record("suspended", self.epoch, Checkpoint(
            device_state=state.name, ram=s.ram.name, config_key=self.key, boot_id=boot_id(),
            durable=self.policy.durable), clean=True))
        self._stall_at("suspend:committed")
        s.remove_device_states(keep=state.name)
        self.timings["suspend_ms"] = (time.monotonic() - t0) * 1000
        self._set_state("suspended")
        self.log("suspended", epoch=self.epoch, ms=f"{self.timings['suspend_ms']:.0f}",
                 device_state_kib=state.stat().st_size >> 10,
                 ram_file_mib=allocated(s.ram) >> 20)
        return self.timings["suspend_ms"]

    def poweroff(self, timeout: float = 10.0) -> None:
        """Ask the guest to power off; quit QEMU after ``timeout``. The journal
        then says stopped (the next start is a cold boot)."""
        if self.vm is None:
            return
        q = self.vm
        try:
            q.cmd("system_powerdown")
            deadline = time.monotonic() + timeout
            while q.alive() and time.monotonic() < deadline:
                time.sleep(0.1)
        except QemuError:
            pass
        rc = q.stop()
        self.vm = None
        self.session.journal.commit(Record("stopped", self.epoch, None, clean=rc == 0))
        self._set_state("stopped")
        self.log("powered-off", exit=rc)

    def shutdown(self) -> None:
        """The host is going away: what the profile says (suspend or poweroff)."""
        if self.vm is not None and self.state == "running":
            if self.policy.on_shutdown == "suspend":
                self.suspend()
            else:
                self.poweroff()
        elif self.vm is not None:
            self.poweroff(timeout=0)
        self._done.set()

    def _drop_vm(self) -> None:
        if self.vm is not None:
            self.vm.stop(timeout=2)
            self.vm = None

    def check_alive(self) -> None:
        """Notice QEMU dying on its own; restart it per profile if in the foreground."""
        q = self.vm
        if q is None or q.alive() or self.state not in ("running", "booting"):
            return
        rc = q.proc.returncode if q.proc else None
        self._drop_vm()
        if rc == 0:
            self.session.journal.commit(Record("stopped", self.epoch, None, clean=True))
            self._set_state("stopped")
            self.log("guest-powered-off")
            self._done.set()
            return
        self._set_state("crashed")
        now = time.monotonic()
        self.crashes = [t for t in self.crashes if now - t < RESTARTS_WINDOW_S] + [now]
        self.log("qemu-died", exit=rc, foreground=self.foreground, log=q.log,
                 said=repr(_last_line(q.log)))
        if self.foreground and self.policy.restart_on_crash:
            if len(self.crashes) > MAX_RESTARTS:
                self.log("restart-refused", crashes=len(self.crashes),
                         window_s=RESTARTS_WINDOW_S)
                return
            self.start()

    # -- host events --
    def on_foreground(self) -> dict[str, Any]:
        self.foreground = True
        self._bg_since = None
        if self.vm is None and self.state in ("suspended", "crashed", "stopped"):
            self.start()
        return {}

    def on_background(self) -> dict[str, Any]:
        self.foreground = False
        self._bg_since = time.monotonic()
        if self.policy.suspend_after_background_s == 0 and self.state == "running":
            self.suspend()
        return {}

    def on_trim(self, level: str) -> dict[str, Any]:
        if level == "UI_HIDDEN" and self.foreground:     # the app's UI went away
            self.on_background()
        if (not self.foreground and self.policy.suspend_on_trim is not None
                and trim_value(level) >= trim_value(self.policy.suspend_on_trim)
                and self.state == "running"):
            self.log("suspend-on-trim", level=level)
            self.suspend()
        return {}

    def tick(self) -> None:
        """Timers: suspend after the profile's time in the background."""
        after = self.policy.suspend_after_background_s
        if (self._bg_since is not None and after is not None and self.state == "running"
                and time.monotonic() - self._bg_since >= after):
            self._bg_since = None
            self.log("suspend-after-background", seconds=after)
            self.suspend()

    def status(self) -> dict[str, Any]:
        q = self.vm
        out: dict[str, Any] = {
            "state": self.state, "foreground": self.foreground, "source": self.source,
            "reason": self.reason, "epoch": self.epoch,
            "uptime_s": round(time.monotonic() - self.started_at, 1)
            if self.started_at and q else None,
            "timings_ms": {k: round(v, 1) for k, v in self.timings.items()},
            "crashes": len(self.crashes), "session": str(self.session.dir),
        }
        mem: dict[str, Any] = {"guest_mib": self.ram_bytes >> 20,
                               "ram_file_mib": allocated(self.session.ram) >> 20,
                               "host_available_mib": _host_available_kib() >> 10}
        if q is not None and q.proc is not None and q.alive():
            out["qemu_pid"] = q.proc.pid
            try:
                mem["qemu_rss_mib"] = (rss_kib(q.proc.pid) or 0) >> 10
            except OSError:
                pass
            if self.state == "running":
                try:
                    actual = q.cmd("query-balloon")["actual"]
                    mem["balloon_mib"] = (self.ram_bytes - actual) >> 20
                except QemuError:
                    pass
        out["memory"] = mem
        out["bridges"] = {name: _health(fn) for name, fn in self.bridges.items()}
        return out

    def register(self, server: Any) -> None:
        """The lifecycle's host events on a host_events.HostEventServer. With a
        balloon bridge (``self.balloon``), foreground, background and trim-memory
        reach it too (before a suspend, after a resume)."""
        from .balloon import trim_name

        Bridge = Callable[[Any, dict[str, Any]], Any]

        def balloon(fn: Bridge, ev: dict[str, Any]) -> dict[str, Any]:
            if self.balloon is None:
                return {}
            try:
                return {"balloon": fn(self.balloon, ev) or {}}
            except PolicyLinkError as exc:     # QEMU is down: the bridge resends later
                return {"balloon": {"pending": str(exc)}}

        def handler(fn: Callable[[dict[str, Any]], dict[str, Any]],
                    before: Bridge | None = None, after: Bridge | None = None):
            def handle(ev: dict[str, Any]) -> dict[str, Any]:
                if "level" in ev:
                    ev = {**ev, "level": trim_name(ev["level"])}   # ValueError: bad request
                out: dict[str, Any] = {}
                if before:
                    out.update(balloon(before, ev))
                out.update(self.call(fn, ev) or {})
                if after:
                    out.update(balloon(after, ev))
                return {**out, "state": self.state}
            return handle

        server.register("foreground", handler(lambda ev: self.on_foreground(),
                                              after=lambda b, ev: b.set_foreground(True)))
        server.register("background", handler(lambda ev: self.on_background(),
                                              before=lambda b, ev: b.set_foreground(False)))
        server.register("trim-memory", handler(
            lambda ev: self.on_trim(ev["level"]),
            before=lambda b, ev: b.on_android_event(ev)),
            fields={"level": (str, int)})
        server.register("low-memory", handler(lambda ev: self.on_trim("COMPLETE")))
        server.register("suspend", handler(lambda ev: {"ms": round(self.suspend(), 1)}))
        server.register("resume", handler(lambda ev: self._resume_event()))
        server.register("shutdown", handler(lambda ev: (self.shutdown(), {})[1]))
        server.register("status", lambda ev: self.status())
        server.register("screenshot", handler(lambda ev: self.screenshot()))
        server.register("guest-agent", handler(lambda ev: self.agent_status()))
        if self.has_touchscreen:
            self.screen_input.register(server)
        if self.vnc_socket is not None:
            server.register("display", lambda ev: self.on_display(ev["width"], ev["height"]),
                            fields={"width": int, "height": int})

    @property
    def has_touchscreen(self) -> bool:
        return any(d.split(",", 1)[0] == "tabvm-touchscreen" for d in self.base.devices)

    @property
    def vnc_socket(self) -> Path | None:
        return self.base.vnc

    def _send_input(self, events: list[dict]) -> None:
        vm = self.vm
        if vm is None or self.state != "running":
            raise LifecycleError(f"the VM is {self.state}: no input now")
        # no ``device``: that names a display console; QEMU routes multitouch
        # (and absolute pointer) events to the touchscreen, their only handler
        vm.cmd("input-send-event", events=events)

    def _sync_clock(self, epoch: int, timeout: float = 120.0) -> None:
        """Set the resumed guest's wall clock to the host's through
        qemu-guest-agent (``guest-set-time``: the system clock, then the RTC).
        A guest's clock does not move while its VM is suspended, so after a
        resume it is behind by the time the VM spent suspended (or, from the
        template, since the template was taken). Logs the offset it corrected."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline and self.epoch == epoch and self.state == "running":
            try:
                with GuestAgent(self.rundir / QGA_SOCKET, timeout=10) as agent:
                    before = agent.cmd("guest-get-time")
                    now = time.time_ns()
                    agent.cmd("guest-set-time", time=now)
                self.log("guest-clock", corrected_s=f"{(now - before) / 1e9:.3f}")
                return
            except GuestAgentError as exc:
                last = str(exc)
                time.sleep(1)
        self.log("guest-clock", error=repr(last or "the VM stopped running"))

    def _apply_display(self) -> None:
        try:
            if self.display_size is not None:
                self.on_display(*self.display_size)
        except (LifecycleError, ValueError) as exc:
            self._log("display", error=repr(str(exc)))

    def on_display(self, width: int, height: int) -> dict[str, Any]:
        """The host's display is now ``width`` x ``height`` (the tablet rotated, the
        app resized): the guest's screen follows where its display device takes a
        size from the UI (a virtio GPU: new preferred mode + hotplug, the guest
        switches); other adapters keep their size and the viewer letterboxes."""
        if not (1 <= width <= 16384 and 1 <= height <= 16384):
            raise ValueError(f"display: a size is 1..16384 per side, not {width}x{height}")
        self.display_size = (width, height)
        if self.vm is None or self.state != "running" or self.vnc_socket is None:
            return {"asked": [width, height], "answer": f"kept: the VM is {self.state}, "
                    "the guest is told when it runs", "follows": None}
        try:
            result = set_desktop_size(self.vnc_socket, width, height)
        except RfbError as exc:
            raise LifecycleError(f"display: {exc}") from None
        self._log("display", width=width, height=height, answer=repr(result.text))
        return {"asked": [width, height], "answer": result.text,
                "follows": result.forwarded, "screen": [result.width, result.height]}

    def screenshot(self) -> dict[str, Any]:
        """The guest's screen now, as a PNG in the runtime directory (QMP screendump)."""
        if self.vm is None or self.state != "running":
            raise LifecycleError(f"the VM is {self.state}: no screen to take")
        self._shots += 1
        path = self.rundir / f"screen-{self._shots}.png"
        t0 = time.monotonic()
        try:
            self.vm.cmd("screendump", filename=str(path), format="png")
        except QemuError as exc:
            path.unlink(missing_ok=True)
            raise LifecycleError(f"screendump: {exc}") from None
        return {"path": str(path), "ms": round((time.monotonic() - t0) * 1000, 1)}

    def agent_status(self) -> dict[str, Any]:
        """Whether the guest's qemu-guest-agent has its virtio-serial port open
        (QMP query-chardev's frontend-open), and where its socket is."""
        out: dict[str, Any] = {"agent": self.agent}
        if self.agent == "qemu-ga":
            out["socket"] = str(self.rundir / QGA_SOCKET)
        q = self.vm
        if self.agent != "qemu-ga" or q is None or self.state != "running":
            return out
        chardevs = q.cmd("query-chardev")
        out["open"] = any(c.get("label") == QGA_CHARDEV_ID and c.get("frontend-open")
                          for c in chardevs)
        return out

    def _resume_event(self) -> dict[str, Any]:
        if self.vm is not None:
            raise LifecycleError(f"the VM is already {self.state}")
        plan = self.start()
        return {"source": plan.source, "reason": plan.reason}

    # -- the lifecycle thread --
    def call(self, fn: Callable[..., dict[str, Any]], *args: Any,
             timeout: float = 300.0) -> dict[str, Any]:
        """Run ``fn`` on the lifecycle thread; its result (or its exception)."""
        if self._done.is_set():
            raise LifecycleError("the VM is shutting down")
        done = threading.Event()
        box: list[Any] = []
        self._queue.put((fn, args, box, done))
        if not done.wait(timeout):
            raise LifecycleError(f"no answer within {timeout} s")
        if isinstance(box[0], BaseException):
            raise box[0]
        return box[0]

    def run(self, tick: Callable[[], None] = lambda: None, interval: float = 1.0,
            until: float | None = None) -> None:
        """Serve queued transitions, timers and crash checks until ``shutdown``
        (or the monotonic time ``until``); ``tick`` runs every ``interval``."""
        while not self._done.is_set() and (until is None or time.monotonic() < until):
            try:
                fn, args, box, done = self._queue.get(timeout=0.05)
            except queue.Empty:
                pass
            else:
                try:
                    box.append(fn(*args))
                except Exception as exc:    # reported to the caller, the loop goes on
                    box.append(exc)
                done.set()
            try:
                self.check_alive()
                self.tick()
            except (LifecycleError, QemuError, SessionError, OSError) as exc:
                # logged where it happened; the VM stays down until the next
                # foreground (or resume) event
                self.log("transition-failed", state=self.state, error=repr(str(exc)))
            if time.monotonic() >= self._next_tick:
                self._next_tick = time.monotonic() + interval
                tick()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    # -- the golden template --
    def capture_template(self, ready: Callable[[Qemu], None]) -> dict[str, Any]:
        """Cold boot a fresh guest beside the session, wait for ``ready(q)``, and
        save it as the golden template (RAM, device state, disk overlay; fsync'd)."""
        s = self.session
        tmp = s.dir / "template.new"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(mode=0o700)
        ram, overlay, state = tmp / "ram", tmp / "disk.qcow2", tmp / "devstate"
        uefi_vars = tmp / UEFI_VARS_NAME
        if self.disk is not None:
            self.qemu_img.create_overlay(self.disk.base, self.disk.format, overlay)
        self._fresh_uefi_vars(uefi_vars)
        t0 = time.monotonic()
        q = Qemu(self._config(ram, overlay, uefi_vars), self.rundir,
                 die_with_parent=True).start()
        try:
            ready(q)
            booted = time.monotonic() - t0
            save(q, state)
            rc = q.stop()
        except BaseException:
            q.stop(timeout=2)
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if rc != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            raise LifecycleError(f"capturing the template: QEMU exited with {rc}")
        for path in (ram, state) + ((overlay,) if self.disk else ()) \
                + ((uefi_vars,) if self.base.uefi else ()):
            fsync_file(path)
            path.chmod(0o444)
        meta = {"config_key": self.key, "boot_s": round(booted, 2),
                "ram_mib": allocated(ram) >> 20, "device_state_kib": state.stat().st_size >> 10}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
        fsync_file(tmp / "meta.json")
        replace_dir(tmp, s.template)
        self.log("template-captured", **meta)
        return meta


def _last_line(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1][:200] if lines else ""


def _host_available_kib() -> int:
    try:
        return read_meminfo().get("MemAvailable", 0)
    except (OSError, ValueError):
        return 0


def _health(fn: Callable[[], str]) -> str:
    try:
        return fn()
    except Exception as exc:        # a bridge's health probe must not break status
        return f"error: {exc}"
