"""Specs in, IR out: load every spec, check everything, raise all errors at once."""

from __future__ import annotations

from pathlib import Path

from .checks import Claim, check_claims, check_names
from .errors import SpecError, SpecErrors
from .ir import Device
from .kinds import KINDS
from .loader import Document, load_file
from .schema import validate


def _check_one(doc: Document, errors: list[SpecError], claims: list[Claim]) -> Device | None:
    kind_name = doc.data.get("kind") if isinstance(doc.data, dict) else None
    kind = KINDS.get(kind_name) if isinstance(kind_name, str) else None
    if kind is None:
        known = ", ".join(sorted(KINDS))
        field_loc = doc.loc(("kind",))
        if kind_name is None:
            errors.append(SpecError(field_loc, "kind", f"required field (one of: {known})"))
        else:
            errors.append(SpecError(field_loc, "kind",
                                    f"unknown device kind {kind_name!r} (one of: {known})"))
        return None
    schema_errors, spec = validate(doc, kind.schema)
    if schema_errors:
        errors.extend(schema_errors)
        return None
    semantic = kind.check(doc, spec)
    if semantic:
        errors.extend(semantic)
        return None
    claims.extend(kind.claims(doc, spec))
    return kind.build(doc, spec)


def spec_display_path(path: Path, base: Path) -> str:
    """``path`` relative to ``base`` when inside it, for stable messages and banners."""
    try:
        return path.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


def load_specs(paths: list[Path], base: Path) -> list[Device]:
    """Check every spec in ``paths``; return the IR sorted by name or raise SpecErrors."""
    errors: list[SpecError] = []
    claims: list[Claim] = []
    devices: list[Device] = []
    for path in sorted(paths):
        try:
            doc = load_file(path, spec_display_path(path, base))
        except SpecErrors as exc:
            errors.extend(exc.errors)
            continue
        device = _check_one(doc, errors, claims)
        if device is not None:
            devices.append(device)
    errors.extend(check_names([(d.name, d.loc) for d in devices]))
    errors.extend(check_claims(claims))
    if errors:
        raise SpecErrors(errors)
    return sorted(devices, key=lambda d: d.name)
