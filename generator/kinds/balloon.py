"""balloon-policy: automatic ballooning, a QEMU object driving a virtio-balloon device."""

from __future__ import annotations

from typing import Any

from ..checks import Claim
from ..errors import SpecError
from ..ir import Balloon, BalloonLevel, Psi
from ..loader import Document
from ..schema import C_NAME, KINDS_COMMON, uint

KIND = "balloon-policy"
MIB = uint(0, 1 << 20)
# ComponentCallbacks2.onTrimMemory levels, as Android names them (TRIM_MEMORY_*)
TRIM_LEVELS = ("RUNNING_MODERATE", "RUNNING_LOW", "RUNNING_CRITICAL", "UI_HIDDEN",
               "BACKGROUND", "MODERATE", "COMPLETE")
# Linux PSI triggers: the window is 500 ms to 10 s (kernel/sched/psi.c)
PSI_WINDOW_MS = (500, 10000)

LEVEL: dict[str, Any] = {
    "type": "dict",
    "schema": {
        "name": {"type": "string", "required": True, "regex": C_NAME, "maxlength": 16},
        "psi": {
            "type": "dict",
            "schema": {
                "kind": {"type": "string", "allowed": ["some", "full"], "required": True},
                "stall_ms": uint(1, PSI_WINDOW_MS[1], required=True),
                "window_ms": uint(*PSI_WINDOW_MS, required=True),
            },
        },
        "meminfo_available_pct": uint(1, 99),
        "lmkd_margin_mib": MIB,
        "am_threshold_pct": uint(1, 10000),
        "trim_memory": {"type": "list", "minlength": 1,
                        "schema": {"type": "string", "allowed": list(TRIM_LEVELS)}},
        "background_keep_mib": {**MIB, "nullable": True, "required": True},
        "foreground_keep_mib": {**MIB, "nullable": True, "required": True},
    },
}

SCHEMA: dict[str, Any] = {
    **KINDS_COMMON,
    "stats_interval_s": uint(1, 60, default=1),
    "guest": {
        "type": "dict", "required": True,
        "schema": {
            "ram_mib": uint(64, 1 << 20, required=True),
            "min_size_mib": uint(16, 1 << 20, required=True),
            "emergency_available_mib": {**MIB, "default": 32},
            "emergency_deflate_mib": {**uint(1, 1 << 20), "default": 128},
            "pressure_hold_s": uint(0, 3600, default=10),
        },
    },
    "inflate": {
        "type": "dict", "default": {},
        "schema": {
            "max_step_mib": {**uint(1, 1 << 20), "default": 1024},
            "min_step_mib": {**uint(1, 1 << 20), "default": 16},
            "stall_mib_per_s": {**uint(0, 100000), "default": 15},
            "stall_backoff_mib": {**MIB, "default": 128},
        },
    },
    "deflate": {
        "type": "dict", "default": {},
        "schema": {"max_step_mib": {**uint(1, 1 << 20), "default": 4096}},
    },
    "level_down_delay_s": uint(0, 3600, default=5),
    "level_down_delay_max_s": uint(0, 3600, default=80),
    "android": {
        "type": "dict", "default": {},
        "schema": {"own_adj": uint(0, 1000, default=900)},
    },
    "levels": {"type": "list", "required": True, "minlength": 2, "maxlength": 8,
               "schema": LEVEL},
}

# Sources whose thresholds fall as the level rises (less memory is more pressure)
FALLING = ("meminfo_available_pct", "lmkd_margin_mib", "am_threshold_pct")


def check(doc: Document, spec: dict[str, Any]) -> list[SpecError]:
    errors = []

    def err(path: tuple[Any, ...], message: str) -> None:
        errors.append(SpecError(doc.loc(path), ".".join(map(str, path)), message))

    guest = spec["guest"]
    ram = guest["ram_mib"]
    if guest["min_size_mib"] >= ram:
        err(("guest", "min_size_mib"),
            f"is not below guest.ram_mib ({guest['min_size_mib']} >= {ram})")
    if guest["emergency_available_mib"] >= ram:
        err(("guest", "emergency_available_mib"),
            f"is not below guest.ram_mib ({guest['emergency_available_mib']} >= {ram})")
    if spec["level_down_delay_max_s"] < spec["level_down_delay_s"]:
        err(("level_down_delay_max_s",), "is less than level_down_delay_s "
            f"({spec['level_down_delay_max_s']} < {spec['level_down_delay_s']})")
    if spec["inflate"]["min_step_mib"] > spec["inflate"]["max_step_mib"]:
        err(("inflate", "min_step_mib"), "is more than inflate.max_step_mib "
            f"({spec['inflate']['min_step_mib']} > {spec['inflate']['max_step_mib']})")

    levels = spec["levels"]
    names: dict[str, int] = {}
    trims: dict[str, int] = {}
    for i, level in enumerate(levels):
        if level["name"] in names:
            err(("levels", i, "name"),
                f"level {level['name']!r} is already levels.{names[level['name']]}")
        names.setdefault(level["name"], i)
        if i == 0:
            for source in ("psi", *FALLING, "trim_memory"):
                if source in level:
                    err(("levels", 0, source), "the first level is the baseline; "
                        "no source can name it")
        for j, trim in enumerate(level.get("trim_memory", ())):
            if trim in trims:
                err(("levels", i, "trim_memory", j),
                    f"{trim} is already mapped to level {levels[trims[trim]]['name']}")
            trims.setdefault(trim, i)
        psi = level.get("psi")
        if psi and psi["stall_ms"] >= psi["window_ms"]:
            err(("levels", i, "psi", "stall_ms"),
                f"is not below window_ms ({psi['stall_ms']} >= {psi['window_ms']})")
        for side in ("background_keep_mib", "foreground_keep_mib"):
            keep = level[side]
            if keep is not None and keep >= ram:
                err(("levels", i, side),
                    f"is not below guest.ram_mib ({keep} >= {ram})")
            elif keep is not None and keep <= guest["emergency_available_mib"]:
                err(("levels", i, side), "is not above guest.emergency_available_mib "
                    f"({keep} <= {guest['emergency_available_mib']}): the policy would "
                    "inflate into its own emergency")
    errors += _check_order(doc, levels)
    return errors


def _check_order(doc: Document, levels: list[dict[str, Any]]) -> list[SpecError]:
    """Levels are listed lowest pressure first: each source's threshold and each
    target must move the same way from one level to the next."""
    errors = []

    def err(path: tuple[Any, ...], message: str) -> None:
        errors.append(SpecError(doc.loc(path), ".".join(map(str, path)), message))

    def keep(v: int | None) -> float:
        return float("inf") if v is None else v

    last: dict[str, tuple[int, Any]] = {}
    for i, level in enumerate(levels):
        here = level["name"]
        for source in FALLING:
            if source not in level:
                continue
            if source in last and level[source] >= last[source][1]:
                j, prev = last[source]
                err(("levels", i, source), "levels are out of order: must be below "
                    f"{prev} of level {levels[j]['name']} (a higher level is more "
                    "pressure)")
            last[source] = (i, level[source])
        psi = level.get("psi")
        if psi:
            rank = (psi["kind"] == "full", psi["stall_ms"] / psi["window_ms"])
            if "psi" in last:
                j, prev = last["psi"]
                if psi["kind"] == prev["kind"] and rank[1] <= prev["stall_ms"] / prev["window_ms"]:
                    err(("levels", i, "psi"), "levels are out of order: must stall "
                        f"longer per window than level {levels[j]['name']}")
                elif prev["kind"] == "full" and psi["kind"] == "some":
                    err(("levels", i, "psi", "kind"), "levels are out of order: 'some' "
                        f"after 'full' of level {levels[j]['name']}")
            last["psi"] = (i, psi)
        if i:
            prev_level = levels[i - 1]
            for side in ("background_keep_mib", "foreground_keep_mib"):
                if keep(level[side]) > keep(prev_level[side]):
                    err(("levels", i, side), "levels are out of order: keeps more than "
                        f"level {prev_level['name']} ({_show(level[side])} > "
                        f"{_show(prev_level[side])}); more pressure must not keep more")
        if (level["foreground_keep_mib"] is not None and level["background_keep_mib"]
                is not None and level["foreground_keep_mib"] < level["background_keep_mib"]):
            err(("levels", i, "foreground_keep_mib"), f"is less than background_keep_mib "
                f"of level {here}: the guest the user is in must not keep less")
    return errors


def _show(v: int | None) -> str:
    return "null" if v is None else str(v)


def claims(doc: Document, spec: dict[str, Any]) -> list[Claim]:
    return []


def build(doc: Document, spec: dict[str, Any]) -> Balloon:
    g, inf, dfl = spec["guest"], spec["inflate"], spec["deflate"]
    return Balloon(
        kind=KIND, name=spec["name"], description=spec["description"],
        spec_path=doc.path, loc=doc.loc(),
        stats_interval_s=spec["stats_interval_s"],
        ram_mib=g["ram_mib"], min_size_mib=g["min_size_mib"],
        emergency_available_mib=g["emergency_available_mib"],
        emergency_deflate_mib=g["emergency_deflate_mib"],
        pressure_hold_s=g["pressure_hold_s"],
        inflate_max_mib=inf["max_step_mib"], inflate_min_mib=inf["min_step_mib"],
        stall_mib_per_s=inf["stall_mib_per_s"], stall_backoff_mib=inf["stall_backoff_mib"],
        deflate_max_mib=dfl["max_step_mib"],
        level_down_delay_s=spec["level_down_delay_s"],
        level_down_delay_max_s=spec["level_down_delay_max_s"],
        own_adj=spec["android"]["own_adj"],
        levels=tuple(
            BalloonLevel(
                name=lv["name"],
                psi=Psi(lv["psi"]["kind"], lv["psi"]["stall_ms"], lv["psi"]["window_ms"])
                if "psi" in lv else None,
                meminfo_available_pct=lv.get("meminfo_available_pct"),
                lmkd_margin_mib=lv.get("lmkd_margin_mib"),
                am_threshold_pct=lv.get("am_threshold_pct"),
                trim_memory=tuple(lv.get("trim_memory", ())),
                background_keep_mib=lv["background_keep_mib"],
                foreground_keep_mib=lv["foreground_keep_mib"],
            ) for lv in spec["levels"]),
    )
