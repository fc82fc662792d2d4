"""Meson machine (cross) files, read the way meson reads them.

tabvm builds QEMU's target dependencies with their own build systems (autotools,
zlib's configure, meson) and QEMU with its configure, all from one cross file
per target (``cross/*.ini``). Meson reads those files itself; for the others we
need the same values, so this module evaluates the file format: INI sections
whose values are meson expressions — strings, arrays, ``+`` (concatenation) and
``/`` (path join) — that may name entries of ``[constants]`` sections, also
from an earlier file (meson's rule). Hand-written because meson's own parser is
not a public API; it accepts only what meson documents for machine files.
"""

from __future__ import annotations

import ast
import configparser
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class MachineFileError(ValueError):
    pass


Value = str | bool | int | list


def _eval(node: ast.AST, names: dict[str, Value], where: str) -> Value:
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, bool, int)):
        return node.value
    if isinstance(node, ast.Name):
        if node.id in ("true", "false"):
            return node.id == "true"
        if node.id not in names:
            raise MachineFileError(f"{where}: unknown constant {node.id!r}")
        return names[node.id]
    if isinstance(node, ast.List):
        return [_eval(e, names, where) for e in node.elts]
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Div)):
        left, right = _eval(node.left, names, where), _eval(node.right, names, where)
        if isinstance(node.op, ast.Div):
            if not (isinstance(left, str) and isinstance(right, str)):
                raise MachineFileError(f"{where}: '/' joins two strings")
            return os.path.join(left, right)
        if type(left) is not type(right) or not isinstance(left, (str, list)):
            raise MachineFileError(f"{where}: '+' joins two strings or two arrays")
        return left + right
    raise MachineFileError(f"{where}: not a machine-file value")


@dataclass
class MachineFile:
    """The merged sections of one or more machine files, evaluated."""

    sections: dict[str, dict[str, Value]] = field(default_factory=dict)

    def get(self, section: str, key: str, default: Any = None) -> Any:
        return self.sections.get(section, {}).get(key, default)

    def require(self, section: str, key: str) -> Any:
        value = self.get(section, key)
        if value is None:
            raise MachineFileError(f"[{section}] {key} missing")
        return value

    def binary(self, name: str) -> list[str]:
        """A [binaries] entry as an argv list (meson allows a string or an array)."""
        value = self.require("binaries", name)
        return [value] if isinstance(value, str) else list(value)


def load(paths: list[Path]) -> MachineFile:
    """Read ``paths`` in order, as meson does with several --cross-file options."""
    mf = MachineFile()
    constants: dict[str, Value] = {}
    for path in paths:
        parser = configparser.ConfigParser(interpolation=None, delimiters=("=",),
                                           comment_prefixes=("#",), strict=True)
        parser.optionxform = str          # keys are case-sensitive
        try:
            parser.read_string(path.read_text(), source=str(path))
        except (configparser.Error, OSError) as exc:
            raise MachineFileError(f"{path}: {exc}") from None
        # constants first: a file may use its own constants in other sections
        ordered = sorted(parser.sections(), key=lambda s: s != "constants")
        for section in ordered:
            for key, text in parser.items(section):
                where = f"{path}: [{section}] {key}"
                try:
                    tree = ast.parse(text.strip(), mode="eval").body
                except SyntaxError:
                    raise MachineFileError(f"{where}: cannot parse {text!r}") from None
                value = _eval(tree, constants, where)
                if section == "constants":
                    constants[key] = value
                mf.sections.setdefault(section, {})[key] = value
    return mf
