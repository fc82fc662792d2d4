"""Device kinds: each module gives a schema, semantic checks and an IR builder.

A kind is registered in ``KINDS`` under the string a spec's ``kind:`` field names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ..checks import Claim
from ..errors import SpecError
from ..ir import Device
from ..loader import Document
from . import balloon, battery, hci, multitouch, opensles


@dataclass(frozen=True)
class Kind:
    name: str
    schema: dict[str, Any]
    check: Callable[[Document, dict[str, Any]], list[SpecError]]
    build: Callable[[Document, dict[str, Any]], Device]
    claims: Callable[[Document, dict[str, Any]], list[Claim]]


KINDS: dict[str, Kind] = {
    k.name: k for k in (
        Kind(battery.KIND, battery.SCHEMA, battery.check, battery.build, battery.claims),
        Kind(multitouch.KIND, multitouch.SCHEMA, multitouch.check, multitouch.build,
             multitouch.claims),
        Kind(hci.KIND, hci.SCHEMA, hci.check, hci.build, hci.claims),
        Kind(opensles.KIND, opensles.SCHEMA, opensles.check, opensles.build,
             opensles.claims),
        Kind(balloon.KIND, balloon.SCHEMA, balloon.check, balloon.build, balloon.claims),
    )
}
