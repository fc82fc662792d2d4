"""audio-opensles: a QEMU audiodev driver playing and recording through OpenSL ES."""

from __future__ import annotations

from typing import Any

from ..checks import Claim
from ..errors import SpecError
from ..ir import AudioDirection, Opensles
from ..loader import Document
from ..schema import KINDS_COMMON, safe_string, uint

KIND = "audio-opensles"
FORMATS = ("u8", "s16")               # SLDataFormat_PCM: 8-bit unsigned, 16-bit signed
RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
LIBRARY = r"[A-Za-z0-9_./+-]*"

DIRECTION = {
    "type": "dict", "default": {},
    "schema": {
        "enabled": {"type": "boolean", "default": True},
        "buffers": uint(1, 32, default=2),
        "buffer_ms": uint(1, 500, default=20),
    },
}

SCHEMA: dict[str, Any] = {
    **KINDS_COMMON,
    "loading": {"type": "string", "allowed": ["dlopen", "link"], "default": "dlopen"},
    "library": {**safe_string(128), "regex": LIBRARY, "default": "libOpenSLES.so"},
    "playback": DIRECTION,
    "capture": DIRECTION,
    "formats": {"type": "list", "minlength": 1, "maxlength": len(FORMATS),
                "schema": {"type": "string", "allowed": list(FORMATS)},
                "default": ["s16"]},
    "rates": {"type": "list", "minlength": 1, "maxlength": len(RATES),
              "schema": {"type": "integer", "allowed": list(RATES)},
              "default": [44100, 48000]},
    "channels": {"type": "list", "minlength": 1, "maxlength": 2,
                 "schema": uint(1, 2), "default": [1, 2]},
}


def check(doc: Document, spec: dict[str, Any]) -> list[SpecError]:
    errors = []

    def err(path: tuple[Any, ...], message: str) -> None:
        errors.append(SpecError(doc.loc(path), ".".join(map(str, path)), message))

    if not spec["playback"]["enabled"] and not spec["capture"]["enabled"]:
        err(("playback", "enabled"), "a driver needs playback, capture or both")
    for field in ("formats", "rates", "channels"):
        values = spec[field]
        for i, v in enumerate(values):
            if v in values[:i]:
                err((field, i), f"{v} is listed twice")
    if spec["loading"] == "link" and doc.data.get("library") is not None:
        err(("library",), "only used with loading: dlopen")
    return errors


def claims(doc: Document, spec: dict[str, Any]) -> list[Claim]:
    return []


def _direction(d: dict[str, Any]) -> AudioDirection | None:
    return AudioDirection(d["buffers"], d["buffer_ms"]) if d["enabled"] else None


def build(doc: Document, spec: dict[str, Any]) -> Opensles:
    return Opensles(
        kind=KIND, name=spec["name"], description=spec["description"],
        spec_path=doc.path, loc=doc.loc(),
        loading=spec["loading"], library=spec["library"],
        playback=_direction(spec["playback"]), capture=_direction(spec["capture"]),
        formats=tuple(spec["formats"]), rates=tuple(sorted(spec["rates"])),
        channels=tuple(sorted(spec["channels"])),
    )
