"""qemu-tree/recipe.toml: the pinned QEMU source, configure options, base devices."""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass
from pathlib import Path

from .paths import REPO

QEMU_TREE = REPO / "qemu-tree"
RECIPE = QEMU_TREE / "recipe.toml"
PATCHES = QEMU_TREE / "patches"


@dataclass(frozen=True)
class Recipe:
    version: str
    upstream_url: str
    upstream_sha256: str
    debian_package: str
    debian_version: str
    debian_suite: str
    debian_orig: str
    debian_orig_sha256: str
    debian_orig_size: int
    target: str
    configure_args: tuple[str, ...]
    python_packages: tuple[str, ...]
    base_devices: tuple[str, ...]

    @property
    def patches(self) -> list[Path]:
        """The patch series, in the order of qemu-tree/patches/series."""
        series = PATCHES / "series"
        names = [line.split("#")[0].strip() for line in series.read_text().splitlines()]
        return [PATCHES / n for n in names if n]

    def source_key(self) -> str:
        """Identifies the patched source tree: pinned tarball + patch series."""
        h = hashlib.sha256(self.debian_orig_sha256.encode())
        for p in self.patches:
            h.update(p.name.encode() + b"\0" + p.read_bytes())
        return f"{self.version}-{h.hexdigest()[:12]}"


def load_recipe(path: Path = RECIPE) -> Recipe:
    data = tomllib.loads(path.read_text())
    src, conf, dev = data["source"], data["configure"], data["devices"]
    return Recipe(
        version=src["version"], upstream_url=src["upstream_url"],
        upstream_sha256=src["upstream_sha256"], debian_package=src["debian_package"],
        debian_version=src["debian_version"], debian_suite=src["debian_suite"],
        debian_orig=src["debian_orig"], debian_orig_sha256=src["debian_orig_sha256"],
        debian_orig_size=src["debian_orig_size"], target=conf["target"],
        configure_args=tuple(conf["args"]),
        python_packages=tuple(data["tools"]["python_packages"]),
        base_devices=tuple(dev["base"]),
    )
