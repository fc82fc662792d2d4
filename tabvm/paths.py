"""Where tabvm keeps things: the repository, and the cache outside it."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    """Root of the download/build cache (``$TABVM_CACHE`` or ``~/.cache/tabvm``)."""
    root = os.environ.get("TABVM_CACHE")
    path = Path(root) if root else Path.home() / ".cache" / "tabvm"
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_subdir(*parts: str) -> Path:
    path = cache_dir().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
