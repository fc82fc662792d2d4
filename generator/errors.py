"""Errors carrying the place in a spec they come from."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class SourceLoc:
    """A line in a spec file; ``path`` is as given (relative paths stay relative)."""

    path: str
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass(frozen=True, order=True)
class SpecError:
    """One problem: ``file:line: field.path: message``."""

    loc: SourceLoc
    field: str
    message: str

    def __str__(self) -> str:
        if self.field:
            return f"{self.loc}: {self.field}: {self.message}"
        return f"{self.loc}: {self.message}"


class SpecErrors(Exception):
    """Every problem found, raised once after all checks ran."""

    def __init__(self, errors: list[SpecError]):
        self.errors = sorted(set(errors))
        super().__init__("\n".join(str(e) for e in self.errors))
