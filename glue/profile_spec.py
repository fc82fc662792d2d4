"""VM profiles in YAML (``profiles/*.yaml``), checked like the device specs.

The generator's machinery does the work: ``generator.loader`` keeps the line of every
key, ``generator.schema.validate`` runs the Cerberus schema below, then the semantic
checks here (paths exist, the balloon policy checks and fits in the VM's memory, the
Bluetooth peer and the QMP address parse). Every problem is raised at once as
``generator.errors.SpecErrors`` (``file:line: field.path: message``); on success the
result is a frozen ``Profile`` with every path resolved.

::

    profile = load_profile()                      # profiles/default.yaml
    profile = load_profile(Path("my-vm.yaml"))    # SpecErrors on any problem
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cerberus

from generator.errors import SpecError, SpecErrors
from generator.frontend import spec_display_path
from generator.kinds.balloon import TRIM_LEVELS
from generator.loader import Document, load_file
from generator.schema import uint, validate
from tabvm.paths import REPO

__all__ = ["DEFAULT_PROFILE", "BUILTIN", "DESKTOP", "Devices", "DiskProfile", "Display",
           "Forward", "GuestProfile", "Network", "Profile", "SnapshotPolicy", "SpecErrors",
           "find_profile", "load_profile", "render_errors", "trim_value"]

DEFAULT_PROFILE = REPO / "profiles" / "default.yaml"
DEFAULT_POLICY = REPO / "devspecs" / "balloon.yaml"
PROFILES_DIR = REPO / "profiles"
BUILTIN = "builtin"
DESKTOP = "desktop"                 # disk.base: the Debian desktop image (tabvm guest desktop)
#: OVMF's code and variable-store images (Debian's ovmf package), looked up in
#: ``guest.ovmf`` (default: the build's firmware directory, then OVMF_DIRS)
OVMF_CODE = "OVMF_CODE_4M.fd"
OVMF_VARS = "OVMF_VARS_4M.fd"
OVMF_DIRS = (Path("/usr/share/OVMF"),)
AUTO = "auto"
#: Screen sizes a display adapter is given (QEMU's EDID and the adapters' limits
#: are far above; a tablet panel is well inside)
SCREEN_WIDTH = (320, 7680)
SCREEN_HEIGHT = (200, 4320)
NAME = r"[a-z0-9][a-z0-9-]{0,31}"

# ComponentCallbacks2.TRIM_MEMORY_* values, lowest first (the order of TRIM_LEVELS)
_TRIM_VALUES = dict(zip(TRIM_LEVELS, (5, 10, 15, 20, 40, 60, 80)))


def trim_value(name: str) -> int:
    """Android's numeric onTrimMemory level for ``name``; ValueError if unknown."""
    try:
        return _TRIM_VALUES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown trim level {name!r} (one of: {', '.join(TRIM_LEVELS)})") \
            from None


# -- schema -------------------------------------------------------------------------

_PATH: dict[str, Any] = {"type": "string", "empty": False}


def _one_of(*values: str, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "allowed": list(values), **extra}


def _section(schema: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "dict", "schema": schema, **extra}


_PORT = {"type": "integer", "min": 1, "max": 65535}

SCHEMA: dict[str, Any] = {
    "name": {"type": "string", "required": True, "regex": NAME},
    "guest": _section({
        "boot": _one_of("kernel", "firmware", default="kernel"),
        "kernel": {**_PATH, "default": BUILTIN},
        "initrd": {**_PATH, "default": BUILTIN},
        "firmware": _one_of("bios", "uefi", default="bios"),
        "ovmf": {**_PATH, "default": AUTO},
        "cdrom": {**_PATH, "nullable": True, "default": None},
        # default: tabvm for boot: kernel (the test guest's), qemu-ga for firmware
        "agent": _one_of("tabvm", "qemu-ga", "none", nullable=True, default=None),
    }, default={}),
    "memory_mib": uint(128, 65536, default=512),
    "cpus": uint(1, 64, default=1),
    "accel": _one_of("auto", "tcg", "kvm", default="auto"),
    "disk": _section({
        "base": {**_PATH, "default": BUILTIN},
        "format": _one_of("raw", "qcow2", default="raw"),
        "size_mib": uint(16, 65536, default=64),
        "bus": _one_of("virtio", "ahci", default="virtio"),
    }),
    "display": _section({
        "adapter": _one_of("virtio-gpu", "vga", "bochs", required=True),
        "width": {"type": "integer", "min": SCREEN_WIDTH[0], "max": SCREEN_WIDTH[1],
                  "default": 1280},
        "height": {"type": "integer", "min": SCREEN_HEIGHT[0], "max": SCREEN_HEIGHT[1],
                   "default": 800},
    }),
    "network": _section({
        "model": _one_of("virtio-net", "e1000e", "none", default="virtio-net"),
        "forwards": {"type": "list", "default": [], "schema": _section({
            "proto": _one_of("tcp", "udp", default="tcp"),
            "address": {"type": "string", "empty": False, "default": "127.0.0.1"},
            "host": {**_PORT, "required": True},
            "guest": {**_PORT, "required": True},
        })},
    }, default={}),
    "devices": _section({
        "battery": _section({"source": _one_of("auto", "host", "simulated", default="auto")}),
        "touchscreen": _section({"from": {**_PATH, "nullable": True, "default": None}}),
        "bluetooth": _section({"peer": {"type": "string", "empty": False,
                                        "default": "bumble"}}),
        "audio": _section({"backend": _one_of("opensles", "wav", default="opensles")}),
        "balloon": _section({
            "policy": {**_PATH, "default": BUILTIN},
            "memory_cgroup": {**_PATH, "nullable": True, "default": None},
        }),
    }, default={}),
    "snapshot": _section({
        "template": {"type": "boolean", "default": True},
        "suspend_after_background_s": {"type": "number", "min": 0, "max": 86400,
                                       "nullable": True, "default": 30},
        "suspend_on_trim": _one_of(*TRIM_LEVELS, nullable=True, default="MODERATE"),
        "on_shutdown": _one_of("suspend", "poweroff", default="suspend"),
        "restart_on_crash": {"type": "boolean", "default": True},
        "durable": {"type": "boolean", "default": False},
    }, default={}),
    "state_dir": {**_PATH, "nullable": True, "default": None},
    "qmp_tcp": {"type": "string", "nullable": True, "default": None},
}


# -- the result ---------------------------------------------------------------------

@dataclass(frozen=True)
class GuestProfile:
    kernel: Path | None                # None = builtin (the test guest's)
    initrd: Path | None
    boot: str = "kernel"               # kernel (kernel + initrd) | firmware (disk / cdrom)
    firmware: str = "bios"             # bios (SeaBIOS) | uefi (OVMF)
    ovmf: tuple[Path, Path] | None = None   # (code, vars template) for uefi
    cdrom: Path | None = None          # an ISO image on a SATA CD-ROM
    agent: str = "tabvm"               # tabvm | qemu-ga | none

    @property
    def kernel_boot(self) -> bool:
        return self.boot == "kernel"


@dataclass(frozen=True)
class DiskProfile:
    base: Path | None                  # None = builtin (an empty ext4 image)
    format: str                        # raw | qcow2
    size_mib: int                      # builtin's size; 0 for a given image
    bus: str = "virtio"                # virtio | ahci
    desktop: bool = False              # base is the Debian desktop image (built on demand)


@dataclass(frozen=True)
class Display:
    adapter: str                       # virtio-gpu | vga | bochs
    width: int
    height: int


@dataclass(frozen=True)
class Forward:
    proto: str                         # tcp | udp
    address: str                       # the host address it listens on
    host: int
    guest: int


@dataclass(frozen=True)
class Network:
    model: str                         # virtio-net | e1000e
    forwards: tuple[Forward, ...] = ()


@dataclass(frozen=True)
class Devices:
    battery: str | None                # auto | host | simulated; None = no battery
    touchscreen: bool
    touch_from: Path | None
    bluetooth: str | None              # a BtBackend.parse string or "none"; None = absent
    audio: str | None                  # opensles | wav; None = no sound card
    balloon: bool
    balloon_policy: Path | None
    memory_cgroup: Path | None


@dataclass(frozen=True)
class SnapshotPolicy:
    template: bool
    suspend_after_background_s: float | None
    suspend_on_trim: str | None
    on_shutdown: str                   # suspend | poweroff
    restart_on_crash: bool
    durable: bool


@dataclass(frozen=True)
class Profile:
    name: str
    source: Path
    guest: GuestProfile
    memory_mib: int
    cpus: int
    accel: str
    disk: DiskProfile | None
    devices: Devices
    snapshot: SnapshotPolicy
    state_dir: Path
    qmp_tcp: tuple[str, int] | None
    display: Display | None = None
    network: Network | None = None     # None = no network (network: none)


# -- loading ------------------------------------------------------------------------

def load_profile(path: Path | None = None, display: str | None = None) -> Profile:
    """Load and check the profile at ``path`` (default: profiles/default.yaml).

    Raises SpecErrors with every problem: YAML, schema, then semantic checks (those
    that do not depend on a field the schema rejected)."""
    path = Path(path) if path is not None else DEFAULT_PROFILE
    display = display or spec_display_path(path, REPO)
    doc = load_file(path, display)
    network_none = _network_shorthand(doc)
    errors, spec = validate(doc, SCHEMA)
    errors = [SpecError(e.loc, e.field, "must be none or a mapping (model, forwards)")
              if e.field == "network" and "dict type" in e.message else e for e in errors]
    bad = {tuple(e.field.split(".")) for e in errors if e.field}
    if errors:
        if not isinstance(doc.data, dict) or "" in {e.field for e in errors}:
            raise SpecErrors(errors)
        spec = _partial(doc.data, bad)
    if network_none:
        doc.data["network"] = "none"        # as written, for the checks' messages
        spec["network"] = {"model": "none", "forwards": []}
    checks = _Checks(doc, spec, bad, path.absolute().parent)
    errors += checks.run()
    if errors:
        raise SpecErrors(errors)
    return _build(spec, path.absolute(), checks)


def _network_shorthand(doc: Document) -> bool:
    """``network: none`` is ``network: {model: none}``: rewritten in ``doc.data``
    for the schema (True if it was)."""
    if isinstance(doc.data, dict) and doc.data.get("network") == "none":
        doc.data["network"] = {"model": "none"}
        return True
    return False


def find_profile(arg: str | Path | None) -> Path:
    """The profile file a command line names: a path to a YAML file, or the name
    of one in profiles/ (``desktop`` = profiles/desktop.yaml); None = default.
    ValueError (one line) if there is none."""
    if arg is None:
        return DEFAULT_PROFILE
    text = str(arg)
    path = Path(text).expanduser()
    if path.is_file():
        return path
    if "/" not in text and not text.endswith((".yaml", ".yml")):
        named = PROFILES_DIR / f"{text}.yaml"
        if named.is_file():
            return named
        known = ", ".join(sorted(p.stem for p in PROFILES_DIR.glob("*.yaml")))
        raise ValueError(f"no profile {text!r} (a YAML file, or one of: {known})")
    raise ValueError(f"profile {text}: no such file")


def render_errors(exc: SpecErrors) -> str:
    """The errors one per line, ``file:line: field: message``, as the CLI prints them."""
    return "".join(f"{e}\n" for e in exc.errors)


def _partial(data: dict[str, Any], bad: set[tuple[str, ...]]) -> dict[str, Any]:
    """``data`` without the fields the schema rejected, with defaults filled in."""
    pruned = copy.deepcopy(data)
    for path in sorted(bad, key=len, reverse=True):
        node: Any = pruned
        for key in path[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(path[-1], None)
    normalized = cerberus.Validator(SCHEMA).normalized(pruned, always_return_document=True)
    return normalized if isinstance(normalized, dict) else {}


class _Checks:
    """The semantic checks; each skips fields the schema already rejected."""

    def __init__(self, doc: Document, spec: dict[str, Any], bad: set[tuple[str, ...]],
                 base: Path):
        self.doc, self.spec, self.bad, self.base = doc, spec, bad, base
        self.errors: list[SpecError] = []
        self.policy_min: int | None = None
        self.qmp: tuple[str, int] | None = None
        self.ovmf: tuple[Path, Path] | None = None

    def ok(self, *path: str | int) -> bool:
        parts = tuple(str(p) for p in path)
        return not any(parts[:n] in self.bad for n in range(1, len(parts) + 1))

    def get(self, *path: str) -> Any:
        node: Any = self.spec
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        return node

    def err(self, path: tuple[str, ...], message: str) -> None:
        self.errors.append(SpecError(self.doc.loc(path), ".".join(map(str, path)), message))

    def resolve(self, value: str) -> Path:
        return Path(os.path.normpath(self.base / Path(value).expanduser()))

    def given(self, *path: str) -> bool:
        """``path`` is written in the profile (not a default)."""
        node: Any = self.doc.data
        for key in path:
            if not isinstance(node, dict) or key not in node:
                return False
            node = node[key]
        return True

    def run(self) -> list[SpecError]:
        for path in (("guest", "kernel"), ("guest", "initrd"), ("guest", "cdrom"),
                     ("disk", "base"), ("devices", "balloon", "policy")):
            self._file(path)
        self._exists(("devices", "touchscreen", "from"), directory=False)
        self._exists(("devices", "balloon", "memory_cgroup"), directory=True)
        self._boot()
        self._ovmf()
        self._forwards()
        self._disk()
        self._balloon()
        self._bluetooth()
        self._qmp()
        return self.errors

    def _where(self, value: str) -> str:
        if Path(value).expanduser().is_absolute():
            return ""
        return f" (relative to {Path(self.doc.path).parent.as_posix()}/)"

    def _file(self, path: tuple[str, ...]) -> None:
        value = self.get(*path)
        if not self.ok(*path) or not isinstance(value, str) or value == BUILTIN \
                or (path == ("disk", "base") and value == DESKTOP):
            return
        resolved = self.resolve(value)
        if not resolved.exists():
            self.err(path, f"{value!r} does not exist{self._where(value)}")
        elif resolved.is_dir():
            self.err(path, f"{value!r} is a directory, not a file{self._where(value)}")

    def _exists(self, path: tuple[str, ...], directory: bool) -> None:
        value = self.get(*path)
        if not self.ok(*path) or not isinstance(value, str):
            return
        resolved = self.resolve(value)
        if not resolved.exists():
            self.err(path, f"{value!r} does not exist{self._where(value)}")
        elif directory and not resolved.is_dir():
            self.err(path, f"{value!r} is not a directory{self._where(value)}")

    def _boot(self) -> None:
        """boot: firmware takes no kernel and needs something to boot from; the
        tabvm agent lives in the test guest's initramfs (boot: kernel)."""
        boot = self.get("guest", "boot")
        if not self.ok("guest", "boot") or boot is None:
            return
        if boot == "firmware":
            for key in ("kernel", "initrd"):
                if self.given("guest", key) and self.ok("guest", key):
                    self.err(("guest", key), "only applies to boot: kernel (boot: "
                             "firmware starts the disk's or the CD-ROM's boot loader)")
            if self.get("disk") is None and self.get("guest", "cdrom") is None:
                self.err(("guest", "boot"), "firmware needs a disk or a cdrom to boot from "
                         "(the profile has neither)")
            if self.get("guest", "agent") == "tabvm" and self.ok("guest", "agent"):
                self.err(("guest", "agent"), "tabvm is the test guest's agent (boot: kernel "
                         "with the builtin initrd); a firmware-booted OS has qemu-ga or none")

    def _ovmf(self) -> None:
        """UEFI needs OVMF's code and variable-store images: in ``guest.ovmf``, or
        (auto) in the build's firmware directory or Debian's ovmf package."""
        firmware, ovmf = self.get("guest", "firmware"), self.get("guest", "ovmf")
        if not self.ok("guest", "firmware") or not self.ok("guest", "ovmf"):
            return
        if firmware != "uefi":
            if self.given("guest", "ovmf"):
                self.err(("guest", "ovmf"), "only applies to firmware: uefi")
            return
        if ovmf == AUTO:
            from .profile import default_outputs
            dirs = (default_outputs().firmware, *OVMF_DIRS)
        else:
            dirs = (self.resolve(ovmf),)
        for d in dirs:
            if (d / OVMF_CODE).is_file() and (d / OVMF_VARS).is_file():
                self.ovmf = (d / OVMF_CODE, d / OVMF_VARS)
                return
        where = " or ".join(str(d) for d in dirs) if ovmf == AUTO else repr(ovmf)
        self.err(("guest", "ovmf") if ovmf != AUTO else ("guest", "firmware"),
                 f"uefi: no OVMF found ({OVMF_CODE} and {OVMF_VARS} in {where}; "
                 "install Debian's ovmf package)")

    def _forwards(self) -> None:
        """Each host address/port is forwarded once; addresses are IP literals."""
        import ipaddress
        forwards = self.get("network", "forwards")
        if not self.ok("network", "forwards") or not isinstance(forwards, list):
            return
        if self.get("network", "model") == "none" and forwards:
            self.err(("network", "forwards"), "there is no network to forward to "
                     "(network model none)")
            return
        seen: dict[tuple[str, str, int], int] = {}
        for i, fwd in enumerate(forwards):
            if not isinstance(fwd, dict) or not self.ok("network", "forwards", i):
                continue
            path = ("network", "forwards", i)
            try:
                ipaddress.ip_address(fwd["address"])
            except ValueError:
                self.err(path + ("address",), f"{fwd['address']!r} is not an IP address "
                         "(e.g. 127.0.0.1, the default, or 0.0.0.0 for every interface)")
                continue
            key = (fwd["proto"], fwd["address"], fwd["host"])
            if key in seen:
                self.err(path + ("host",), f"{fwd['proto']} {fwd['address']}:{fwd['host']} "
                         f"is already forwarded by forwards[{seen[key]}]")
            else:
                seen[key] = i

    def _disk(self) -> None:
        disk = self.get("disk")
        if not isinstance(disk, dict) or not self.ok("disk", "base"):
            return
        raw = self.doc.data.get("disk")
        if disk["base"] not in (BUILTIN, DESKTOP):
            if isinstance(raw, dict) and "size_mib" in raw and self.ok("disk", "size_mib"):
                self.err(("disk", "size_mib"), "only applies to base: builtin "
                         "(a given image has its own size)")
        elif disk["base"] == DESKTOP:
            if isinstance(raw, dict) and "size_mib" in raw and self.ok("disk", "size_mib"):
                self.err(("disk", "size_mib"), "only applies to base: builtin "
                         "(the desktop image has its own size)")
            if self.given("disk", "format") and disk["format"] != "qcow2" \
                    and self.ok("disk", "format"):
                self.err(("disk", "format"), f"the desktop image is qcow2, not "
                         f"{disk['format']}")
        elif disk["format"] != "raw" and self.ok("disk", "format"):
            self.err(("disk", "format"), f"must be raw for base: builtin "
                     f"(the glue makes a raw image), not {disk['format']}")

    def _balloon(self) -> None:
        policy = self.get("devices", "balloon", "policy")
        if not self.ok("devices", "balloon", "policy") or not isinstance(policy, str):
            return
        path = DEFAULT_POLICY if policy == BUILTIN else self.resolve(policy)
        if not path.is_file():
            return                                   # reported by _file
        from glue.balloon import levels_from_spec    # the generator's full check
        try:
            spec = levels_from_spec(path)
        except SpecErrors as exc:
            self.errors.extend(exc.errors)
            return
        except ValueError:
            self.err(("devices", "balloon", "policy"),
                     f"{policy!r} is not a balloon-policy spec")
            return
        self.policy_min = spec.min_size_mib
        memory = self.get("memory_mib")
        if self.ok("memory_mib") and isinstance(memory, int) and spec.min_size_mib >= memory:
            self.err(("memory_mib",), f"is not above the balloon policy's min_size_mib "
                     f"({memory} <= {spec.min_size_mib}, {spec.loc.path})")

    def _bluetooth(self) -> None:
        peer = self.get("devices", "bluetooth", "peer")
        if not self.ok("devices", "bluetooth", "peer") or not isinstance(peer, str) \
                or peer == "none":
            return
        from glue.bt_backend import BtBackend
        try:
            BtBackend.parse(peer)
        except ValueError as exc:
            self.err(("devices", "bluetooth", "peer"), str(exc))

    def _qmp(self) -> None:
        value = self.get("qmp_tcp")
        if not self.ok("qmp_tcp") or not isinstance(value, str):
            return
        host, sep, port = value.rpartition(":")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if not sep or not host or any(c.isspace() for c in host):
            self.err(("qmp_tcp",), f"{value!r} is not HOST:PORT")
        elif not port.isdigit() or not 1 <= int(port) <= 65535:
            self.err(("qmp_tcp",), f"{value!r}: the port must be 1..65535")
        else:
            self.qmp = (host, int(port))


def _build(spec: dict[str, Any], source: Path, checks: _Checks) -> Profile:
    def path_or_builtin(value: str) -> Path | None:
        return None if value == BUILTIN else checks.resolve(value)

    def opt_path(value: str | None) -> Path | None:
        return None if value is None else checks.resolve(value)

    guest, dev, snap = spec["guest"], spec["devices"], spec["snapshot"]
    disk, display, net = spec.get("disk"), spec.get("display"), spec["network"]
    touch, balloon = dev.get("touchscreen"), dev.get("balloon")
    after = snap["suspend_after_background_s"]
    kernel_boot = guest["boot"] == "kernel"
    desktop = disk is not None and disk["base"] == DESKTOP
    return Profile(
        name=spec["name"], source=source,
        guest=GuestProfile(
            kernel=path_or_builtin(guest["kernel"]) if kernel_boot else None,
            initrd=path_or_builtin(guest["initrd"]) if kernel_boot else None,
            boot=guest["boot"], firmware=guest["firmware"], ovmf=checks.ovmf,
            cdrom=opt_path(guest["cdrom"]),
            agent=guest["agent"] or ("tabvm" if kernel_boot else "qemu-ga")),
        memory_mib=spec["memory_mib"], cpus=spec["cpus"], accel=spec["accel"],
        disk=None if disk is None else DiskProfile(
            base=None if desktop else path_or_builtin(disk["base"]),
            format="qcow2" if desktop else disk["format"],
            size_mib=disk["size_mib"] if disk["base"] == BUILTIN else 0,
            bus=disk["bus"], desktop=desktop),
        display=None if display is None else Display(
            display["adapter"], display["width"], display["height"]),
        network=None if net["model"] == "none" else Network(net["model"], tuple(
            Forward(f["proto"], f["address"], f["host"], f["guest"])
            for f in net["forwards"])),
        devices=Devices(
            battery=dev["battery"]["source"] if "battery" in dev else None,
            touchscreen=touch is not None,
            touch_from=opt_path(touch["from"]) if touch else None,
            bluetooth=dev["bluetooth"]["peer"] if "bluetooth" in dev else None,
            audio=dev["audio"]["backend"] if "audio" in dev else None,
            balloon=balloon is not None,
            balloon_policy=(DEFAULT_POLICY if balloon["policy"] == BUILTIN
                            else checks.resolve(balloon["policy"])) if balloon else None,
            memory_cgroup=opt_path(balloon["memory_cgroup"]) if balloon else None),
        snapshot=SnapshotPolicy(
            template=snap["template"],
            suspend_after_background_s=None if after is None else float(after),
            suspend_on_trim=snap["suspend_on_trim"], on_shutdown=snap["on_shutdown"],
            restart_on_crash=snap["restart_on_crash"], durable=snap["durable"]),
        state_dir=_state_dir(spec["name"], spec["state_dir"], checks),
        qmp_tcp=checks.qmp,
    )


def _state_dir(name: str, value: str | None, checks: _Checks) -> Path:
    if value is not None:
        return checks.resolve(value)
    xdg = os.environ.get("XDG_DATA_HOME", "")
    root = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share"
    return root / "tabvm" / name
