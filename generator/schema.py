"""Cerberus schema pieces shared by every device kind, and the schema runner.

Cerberus reports a nested ``{field: [message | {child: ...}]}`` tree; we flatten it to
document paths and look their lines up in the loaded document.
"""

from __future__ import annotations

from typing import Any

import cerberus

from .errors import SpecError
from .loader import Document

# Identifiers that become C names, QOM type suffixes and directory names.
C_NAME = r"[a-z][a-z0-9_]*"
# Strings that end up inside C and ASL string literals: printable ASCII with no quote,
# backslash or control character, so a spec cannot inject code.
SAFE_STRING = r"[ !#-\[\]-~]*"
# An ACPI NameSeg: four characters, leading letter or underscore.
ACPI_NAME = r"[A-Z_][A-Z0-9_]{3}"

KINDS_COMMON: dict[str, Any] = {
    "kind": {"type": "string", "required": True},
    "name": {"type": "string", "required": True, "regex": C_NAME, "maxlength": 20},
    "description": {"type": "string", "required": True, "regex": SAFE_STRING,
                    "maxlength": 120},
}


def safe_string(maxlength: int, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "regex": SAFE_STRING, "maxlength": maxlength, **extra}


def uint(lo: int, hi: int, **extra: Any) -> dict[str, Any]:
    return {"type": "integer", "min": lo, "max": hi, **extra}


class _Validator(cerberus.Validator):
    """Booleans are not integers in a spec (YAML ``yes`` must not become ``1``)."""

    types_mapping = {
        **cerberus.Validator.types_mapping,
        "integer": cerberus.TypeDefinition("integer", (int,), (bool,)),
    }


_MESSAGE_FIXES = {
    "value does not match regex": "has characters that are not allowed",
}


def _flatten(tree: dict[Any, Any], prefix: tuple[Any, ...]) -> list[tuple[tuple[Any, ...], str]]:
    out: list[tuple[tuple[Any, ...], str]] = []
    for key, items in tree.items():
        for item in items:
            if isinstance(item, dict):
                out.extend(_flatten(item, prefix + (key,)))
            else:
                out.append((prefix + (key,), str(item)))
    return out


def _message(path: tuple[Any, ...], raw: str, schema: dict[str, Any]) -> str:
    if raw.startswith("unallowed value"):
        rule = _rule_for(path, schema)
        if rule and rule.get("allowed"):
            return f"{raw} (allowed: {', '.join(map(str, rule['allowed']))})"
    for start, text in _MESSAGE_FIXES.items():
        if raw.startswith(start):
            rule = _rule_for(path, schema)
            if rule and rule.get("regex"):
                return f"{text} (must match {rule['regex']})"
            return text
    return raw


def _rule_for(path: tuple[Any, ...], schema: dict[str, Any]) -> dict[str, Any] | None:
    rule: dict[str, Any] | None = None
    level: dict[str, Any] | None = schema
    for part in path:
        if isinstance(part, int):       # a list item: the list's item rule
            rule = rule.get("schema") if rule else None
            level = rule.get("schema") if rule and rule.get("type") == "dict" else None
            continue
        if level is None:
            return None
        rule = level.get(part)
        if rule is None:
            return None
        level = rule.get("schema") if rule.get("type") == "dict" else None
    return rule


def validate(doc: Document, schema: dict[str, Any]) -> tuple[list[SpecError], dict[str, Any]]:
    """Check ``doc`` against ``schema``; return errors and the normalized document."""
    if not isinstance(doc.data, dict):
        return [SpecError(doc.loc(), "", "a spec must be a mapping")], {}
    validator = _Validator(schema)
    if validator.validate(doc.data):
        return [], validator.document
    errors = []
    for path, raw in _flatten(validator.errors, ()):
        field = ".".join(str(p) for p in path)
        errors.append(SpecError(doc.loc(path), field, _message(path, raw, schema)))
    return errors, {}
