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

__all__ = ["DEFAULT_PROFILE", "BUILTIN", "Devices", "DiskProfile", "GuestProfile",
           "Profile", "SnapshotPolicy", "SpecErrors", "load_profile", "render_errors",
           "trim_value"]

DEFAULT_PROFILE = REPO / "profiles" / "default.yaml"
DEFAULT_POLICY = REPO / "devspecs" / "balloon.yaml"
BUILTIN = "builtin"
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


SCHEMA: dict[str, Any] = {
    "name": {"type": "string", "required": True, "regex": NAME},
    "guest": _section({
        "kernel": {**_PATH, "default": BUILTIN},
        "initrd": {**_PATH, "default": BUILTIN},
    }, default={}),
    "memory_mib": uint(128, 65536, default=512),
    "cpus": uint(1, 64, default=1),
    "accel": _one_of("auto", "tcg", "kvm", default="auto"),
    "disk": _section({
        "base": {**_PATH, "default": BUILTIN},
        "format": _one_of("raw", "qcow2", default="raw"),
        "size_mib": uint(16, 65536, default=64),
    }),
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


@dataclass(frozen=True)
class DiskProfile:
    base: Path | None                  # None = builtin (an empty ext4 image)
    format: str                        # raw | qcow2
    size_mib: int                      # builtin's size; 0 for a given image


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


# -- loading ------------------------------------------------------------------------

def load_profile(path: Path | None = None, display: str | None = None) -> Profile:
    """Load and check the profile at ``path`` (default: profiles/default.yaml).

    Raises SpecErrors with every problem: YAML, schema, then semantic checks (those
    that do not depend on a field the schema rejected)."""
    path = Path(path) if path is not None else DEFAULT_PROFILE
    display = display or spec_display_path(path, REPO)
    doc = load_file(path, display)
    errors, spec = validate(doc, SCHEMA)
    bad = {tuple(e.field.split(".")) for e in errors if e.field}
    if errors:
        if not isinstance(doc.data, dict) or "" in {e.field for e in errors}:
            raise SpecErrors(errors)
        spec = _partial(doc.data, bad)
    checks = _Checks(doc, spec, bad, path.absolute().parent)
    errors += checks.run()
    if errors:
        raise SpecErrors(errors)
    return _build(spec, path.absolute(), checks)


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

    def ok(self, *path: str) -> bool:
        return not any(path[:n] in self.bad for n in range(1, len(path) + 1))

    def get(self, *path: str) -> Any:
        node: Any = self.spec
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        return node

    def err(self, path: tuple[str, ...], message: str) -> None:
        self.errors.append(SpecError(self.doc.loc(path), ".".join(path), message))

    def resolve(self, value: str) -> Path:
        return Path(os.path.normpath(self.base / Path(value).expanduser()))

    def run(self) -> list[SpecError]:
        for path in (("guest", "kernel"), ("guest", "initrd"), ("disk", "base"),
                     ("devices", "balloon", "policy")):
            self._file(path)
        self._exists(("devices", "touchscreen", "from"), directory=False)
        self._exists(("devices", "balloon", "memory_cgroup"), directory=True)
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
        if not self.ok(*path) or not isinstance(value, str) or value == BUILTIN:
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

    def _disk(self) -> None:
        disk = self.get("disk")
        if not isinstance(disk, dict) or not self.ok("disk", "base"):
            return
        raw = self.doc.data.get("disk")
        if disk["base"] != BUILTIN:
            if isinstance(raw, dict) and "size_mib" in raw and self.ok("disk", "size_mib"):
                self.err(("disk", "size_mib"), "only applies to base: builtin "
                         "(a given image has its own size)")
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
    disk = spec.get("disk")
    touch, balloon = dev.get("touchscreen"), dev.get("balloon")
    after = snap["suspend_after_background_s"]
    return Profile(
        name=spec["name"], source=source,
        guest=GuestProfile(path_or_builtin(guest["kernel"]), path_or_builtin(guest["initrd"])),
        memory_mib=spec["memory_mib"], cpus=spec["cpus"], accel=spec["accel"],
        disk=None if disk is None else DiskProfile(
            base=path_or_builtin(disk["base"]), format=disk["format"],
            size_mib=disk["size_mib"] if disk["base"] == BUILTIN else 0),
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
