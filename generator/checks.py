"""Checks across all specs: names, I/O port ranges and GPE bits.

Each kind reports the resources a spec claims; here they are checked against q35's
own use and against each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import q35
from .errors import SourceLoc, SpecError


@dataclass(frozen=True)
class Claim:
    """A resource a spec wants: an I/O port range or a GPE bit."""

    what: str                  # "io" or "gpe"
    first: int
    last: int
    field: str
    loc: SourceLoc
    owner: str                 # device name

    def describe(self) -> str:
        if self.what == "gpe":
            return f"GPE bit {self.first}"
        return f"I/O ports 0x{self.first:x}-0x{self.last:x}"


def _overlaps(a: Claim, b: Claim) -> bool:
    return a.what == b.what and a.first <= b.last and b.first <= a.last


def check_claims(claims: list[Claim]) -> list[SpecError]:
    errors = []
    for c in claims:
        if c.what == "gpe" and c.first in q35.GPE_BITS_TAKEN:
            errors.append(SpecError(c.loc, c.field, f"GPE bit {c.first} is used by q35 "
                                    f"({q35.GPE_BITS_TAKEN[c.first]}); free bits are "
                                    f"{_free_gpe_bits()}"))
        if c.what == "io":
            for first, last, user in q35.IO_PORTS_TAKEN:
                if c.first <= last and first <= c.last:
                    errors.append(SpecError(c.loc, c.field, f"{c.describe()} overlap "
                                            f"0x{first:x}-0x{last:x} used by q35 ({user})"))
    for i, a in enumerate(claims):
        for b in claims[i + 1:]:
            if _overlaps(a, b):
                later, earlier = max(a, b, key=_order), min(a, b, key=_order)
                errors.append(SpecError(later.loc, later.field,
                                        f"{later.describe()}: already claimed by "
                                        f"{earlier.owner} ({earlier.describe()} at "
                                        f"{earlier.loc})"))
    return errors


def _order(c: Claim) -> Any:
    return (c.loc.path, c.loc.line)


def _free_gpe_bits() -> str:
    return ", ".join(str(b) for b in q35.GPE_BITS_USABLE if b not in q35.GPE_BITS_TAKEN)


def check_names(devices: list[tuple[str, SourceLoc]]) -> list[SpecError]:
    errors = []
    seen: dict[str, SourceLoc] = {}
    for name, loc in devices:
        if name in seen:
            errors.append(SpecError(loc, "name", f"device name {name!r} is already used "
                                    f"by {seen[name]}"))
        seen.setdefault(name, loc)
    return errors
