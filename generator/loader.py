"""Load YAML specs keeping the line of every key and value.

PyYAML's ``safe_load`` forgets where things came from; we compose the node graph
ourselves and record ``path -> line`` for every mapping key and sequence item, so a
Cerberus error (which names a document path) can be reported as ``file:line``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import SourceLoc, SpecError, SpecErrors

try:  # libyaml is faster, same behaviour
    _Loader = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on the PyYAML build
    _Loader = yaml.SafeLoader

Path_ = tuple[Any, ...]


@dataclass
class Document:
    """A loaded spec: plain data plus the line of every path in it."""

    path: str
    data: Any
    lines: dict[Path_, int] = field(default_factory=dict)
    text: str = ""

    def loc(self, path: Path_ = ()) -> SourceLoc:
        """The line of ``path``, or of its nearest ancestor that exists."""
        path = tuple(path)
        while path not in self.lines and path:
            path = path[:-1]
        return SourceLoc(self.path, self.lines.get(path, 1))


def _scalar(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
    return loader.construct_object(node, deep=True)


def _build(loader, node, path: Path_, doc: Document, errors: list[SpecError]) -> Any:
    doc.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                errors.append(SpecError(SourceLoc(doc.path, key_node.start_mark.line + 1),
                                        _dotted(path), "mapping keys must be plain scalars"))
                continue
            key = _scalar(loader, key_node)
            child = path + (key,)
            if key in out:
                errors.append(SpecError(SourceLoc(doc.path, key_node.start_mark.line + 1),
                                        _dotted(child), "duplicate key"))
                continue
            doc.lines[child] = key_node.start_mark.line + 1
            out[key] = _build(loader, value_node, child, doc, errors)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(loader, item, path + (i,), doc, errors)
                for i, item in enumerate(node.value)]
    return _scalar(loader, node)


def _dotted(path: Path_) -> str:
    return ".".join(str(p) for p in path)


def load_text(text: str, path: str) -> Document:
    """Parse ``text`` (named ``path`` in errors). Raises SpecErrors."""
    doc = Document(path=path, data=None, text=text)
    errors: list[SpecError] = []
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise SpecErrors([SpecError(SourceLoc(path, 1), "", "empty spec")])
        doc.data = _build(loader, node, (), doc, errors)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        problem = exc.problem or "invalid YAML"
        raise SpecErrors([SpecError(SourceLoc(path, line), "", f"invalid YAML: {problem}")]) from None
    except yaml.YAMLError as exc:
        raise SpecErrors([SpecError(SourceLoc(path, 1), "", f"invalid YAML: {exc}")]) from None
    finally:
        loader.dispose()
    if errors:
        raise SpecErrors(errors)
    return doc


def load_file(path: Path, display: str | None = None) -> Document:
    name = display or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecErrors([SpecError(SourceLoc(name, 1), "", f"cannot read: {exc}")]) from None
    return load_text(text, name)
