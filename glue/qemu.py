"""Start QEMU for a VM, talk QMP to it (qemu.qmp), stop it.

The command line is built from a ``VmConfig``: ``-nodefaults``, only the devices
asked for, QMP on a unix socket inside the private runtime directory.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qemu.qmp import QMPError
from qemu.qmp.legacy import QEMUMonitorProtocol


class QemuError(RuntimeError):
    pass


@dataclass(frozen=True)
class VmConfig:
    qemu: Path
    firmware_dir: Path
    kernel: Path | None              # None: the firmware boots the disk (or CD-ROM)
    initrd: Path | None
    append: str = "console=ttyS0 panic=-1"
    memory: str = "512M"
    cpus: int = 1
    accel: str = "tcg"               # tcg | kvm (see glue.accel for "auto")
    acpi_tables: tuple[Path, ...] = ()
    chardevs: tuple[str, ...] = ()   # -chardev arguments, for the devices' backends
    devices: tuple[str, ...] = ()    # -device arguments
    objects: tuple[str, ...] = ()    # -object arguments (after the devices' chardevs)
    blockdevs: tuple[str, ...] = ()  # -blockdev arguments
    extra: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()   # added to QEMU's environment
    #: UEFI: OVMF's code image and the variable-store template a session copies
    #: (the lifecycle maps the session's copy; None = SeaBIOS)
    uefi: tuple[Path, Path] | None = None
    serial_agent: bool = True        # the test guest's agent on the second serial port
    no_reboot: bool = True           # a guest reboot ends QEMU (the test guest's panic=-1)
    #: QEMU's VNC server on this unix socket (the guest's screen for viewers;
    #: None: no VNC); ``vnc_options`` are added to its -vnc argument
    vnc: Path | None = None
    vnc_options: str = ""


PR_SET_PDEATHSIG = 1


_prctl = ctypes.CDLL(None, use_errno=True).prctl    # looked up before any fork


def _die_with_parent() -> None:
    """In the child before exec: the kernel kills QEMU when the glue dies, so a
    killed glue never leaves a VM running on its session's files. (The kernel
    ties this to the thread that forks: the lifecycle starts QEMU from the
    glue's main thread, which lives as long as the glue.)"""
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


@dataclass
class Qemu:
    """A running QEMU. Use as a context manager; ``stop()`` always cleans up."""

    config: VmConfig
    rundir: Path
    die_with_parent: bool = False    # SIGKILL QEMU when the starting thread exits
    proc: subprocess.Popen | None = None
    qmp: QEMUMonitorProtocol | None = None
    log: Path = field(init=False)
    lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.log = self.rundir / "qemu.log"

    @property
    def qmp_socket(self) -> Path:
        return self.rundir / "qmp.sock"

    @property
    def agent_socket(self) -> Path:
        return self.rundir / "agent.sock"

    @property
    def console_log(self) -> Path:
        return self.rundir / "console.log"

    def command(self) -> list[str]:
        c = self.config
        cmd = [str(c.qemu), "-M", "q35", "-accel", c.accel, "-m", c.memory,
               "-smp", str(c.cpus), "-nodefaults", "-no-user-config", "-display", "none",
               "-L", str(c.firmware_dir)]
        if c.kernel is not None:
            cmd += ["-kernel", str(c.kernel), "-append", c.append]
            if c.initrd is not None:
                cmd += ["-initrd", str(c.initrd)]
        cmd += ["-chardev", f"file,id=console,path={self.console_log}",
                "-serial", "chardev:console"]
        if c.serial_agent:
            cmd += ["-chardev", f"socket,id=agent,path={self.agent_socket},server=on,wait=off",
                    "-serial", "chardev:agent"]
        cmd += ["-qmp", f"unix:{self.qmp_socket},server=on,wait=off"]
        if c.vnc is not None:
            # every client shares the screen (a viewer, the glue's display
            # resize, a second viewer); nobody can take it exclusively
            cmd += ["-vnc", f"unix:{c.vnc},share=force-shared{c.vnc_options}"]
        if c.no_reboot:
            cmd.append("-no-reboot")
        for table in c.acpi_tables:
            cmd += ["-acpitable", f"file={table}"]
        for chardev in c.chardevs:
            cmd += ["-chardev", chardev]
        for blockdev in c.blockdevs:
            cmd += ["-blockdev", blockdev]
        for obj in c.objects:
            cmd += ["-object", obj]
        for dev in c.devices:
            cmd += ["-device", dev]
        return cmd + list(c.extra)

    def start(self, timeout: float = 15.0) -> Qemu:
        if self.log.exists():            # the previous QEMU's, for a post-mortem
            self.log.replace(self.log.with_name(self.log.name + ".1"))
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True,
                                         preexec_fn=_die_with_parent if self.die_with_parent
                                         else None,
                                         env={**os.environ, **dict(self.config.env)})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise QemuError(f"QEMU exited with {self.proc.returncode}: "
                                f"{self.log.read_text().strip()}")
            if self.qmp_socket.exists():
                try:
                    qmp = QEMUMonitorProtocol(str(self.qmp_socket))
                    qmp.connect()
                    self.qmp = qmp
                    return self
                except (OSError, QMPError):
                    pass
            time.sleep(0.002)        # a resume is tens of ms: do not add 50 to it
        self.stop()
        raise QemuError(f"QMP socket did not answer within {timeout} s")

    def cmd(self, name: str, **args: Any) -> Any:
        """Run a QMP command; raise QemuError with QEMU's message on failure."""
        with self.lock:                # bridges call from their own threads
            if self.qmp is None:
                raise QemuError("QEMU is not running")
            try:
                resp = self.qmp.cmd_raw(name, args or None)
            except (OSError, EOFError, QMPError) as exc:
                raise QemuError(f"QMP {name}: connection to QEMU lost "
                                f"({type(exc).__name__}: {exc})") from None
        if "error" in resp:
            raise QemuError(resp["error"].get("desc", str(resp["error"])))
        return resp.get("return")

    def qom_set(self, path: str, prop: str, value: Any) -> None:
        self.cmd("qom-set", path=path, property=prop, value=value)

    def qom_get(self, path: str, prop: str) -> Any:
        return self.cmd("qom-get", path=path, property=prop)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 5.0) -> int | None:
        if self.qmp is not None:
            try:
                self.qmp.cmd_raw("quit")
            except (OSError, QMPError, EOFError):
                pass
            try:
                self.qmp.close()
            except (OSError, QMPError, EOFError):
                pass
            self.qmp = None
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait()

    def __enter__(self) -> Qemu:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
