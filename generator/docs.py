"""The spec reference (devspecs/README.md), written from the Cerberus schemas.

One table per device kind: every field with its type, whether it is required or
its default, and its limits. ``tabvm spec-doc`` rewrites the file; a test checks
it is current, so the reference cannot drift from what ``tabvm check`` enforces.
"""

from __future__ import annotations

from typing import Any

from .kinds import KINDS

HEADER = """# Device specs

Each `*.yaml` here describes one generated device. `tabvm check` validates them
(errors as `file:line: field: message`), `tabvm gen` renders them, `tabvm build`
builds them into QEMU. This reference is written from the schemas by
`tabvm spec-doc` -- do not edit it by hand.
"""


def _limits(rule: dict[str, Any]) -> str:
    parts = []
    if "allowed" in rule:
        parts.append("one of " + ", ".join(f"`{a}`" for a in rule["allowed"]))
    if "min" in rule or "max" in rule:
        lo, hi = rule.get("min"), rule.get("max")
        hex_ = hi is not None and hi > 0xFF and (hi + 1) & hi == 0   # 0xFFFF, 0x7FFF...
        fmt = (lambda v: f"0x{v:X}") if hex_ else str
        parts.append(f"{fmt(lo) if lo is not None else '...'}..{fmt(hi) if hi is not None else '...'}")
    if "regex" in rule:
        parts.append(f"matches `{rule['regex']}`")
    if "maxlength" in rule and rule.get("type") == "string":
        parts.append(f"at most {rule['maxlength']} characters")
    if rule.get("type") == "list" and "minlength" in rule:
        lo, hi = rule["minlength"], rule.get("maxlength", rule["minlength"])
        parts.append(f"{lo} items" if lo == hi else f"{lo}..{hi} items")
    if rule.get("type") == "list" and isinstance(rule.get("schema"), dict):
        item = _limits(rule["schema"])
        if item:
            parts.append(f"each {item}")
    if rule.get("nullable"):
        parts.append("or null")
    return "; ".join(parts)


def _default(rule: dict[str, Any]) -> str:
    if rule.get("required"):
        return "required"
    if "default" in rule:
        value = rule["default"]
        if isinstance(value, bool):
            return f"default `{str(value).lower()}`"
        if value is None:
            return "default null"
        if value == {}:
            return "optional"
        return f"default `{value}`"
    return "optional"


def _rows(schema: dict[str, Any], kind: str, prefix: str = "") -> list[str]:
    rows = []
    for name, rule in schema.items():
        path = f"{prefix}{name}"
        type_ = rule.get("type", "")
        if type_ == "list" and "schema" in rule:
            type_ = f"list of {rule['schema'].get('type', '')}"
        limits = f"`{kind}`" if path == "kind" else _limits(rule)
        rows.append(f"| `{path}` | {type_} | {_default(rule)} | {limits} |")
        if rule.get("type") == "dict" and "schema" in rule:
            rows.extend(_rows(rule["schema"], kind, f"{path}."))
    return rows


def reference() -> str:
    out = [HEADER]
    for name in sorted(KINDS):
        out.append(f"\n## `kind: {name}`\n")
        out.append("| field | type | required / default | limits |")
        out.append("|---|---|---|---|")
        out.extend(_rows(KINDS[name].schema, name))
    return "\n".join(out) + "\n"
