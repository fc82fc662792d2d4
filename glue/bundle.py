"""The cross-built runtime bundle and its manifest (``tabvm build --cross``).

A bundle directory holds the emulator, qemu-img, the firmware, the SSDTs and
``manifest.json``: what it was built for and from (target, QEMU version and
source, dependency versions and their source hashes), the sha256 of every
file in the bundle and of every device spec it was generated from. The glue
checks it before starting QEMU from a bundle (``verify``): a file that is
missing, extra or changed, or device specs that differ from the ones the glue
carries, stop the start with what is wrong.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tabvm.qemu_source import sha256_of

MANIFEST = "manifest.json"
FORMAT = 1


class BundleError(RuntimeError):
    pass


def _files(root: Path) -> dict[str, dict[str, Any]]:
    return {str(p.relative_to(root)): {"sha256": sha256_of(p), "size": p.stat().st_size}
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != MANIFEST}


def spec_hashes(repo: Path | None = None) -> dict[str, str]:
    """{devspecs/NAME.yaml: sha256} of the device specs the glue carries."""
    if repo is None:
        from tabvm.paths import REPO as repo
    return {str(p.relative_to(repo)): sha256_of(p)
            for p in sorted((repo / "devspecs").glob("*.yaml"))}


def write_manifest(root: Path, info: dict[str, Any]) -> Path:
    manifest = {"format": FORMAT, **info, "files": _files(root)}
    path = root / MANIFEST
    path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return path


def read_manifest(root: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise BundleError(f"{root / MANIFEST}: unreadable ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"{root / MANIFEST}: not a format {FORMAT} tabvm manifest")
    return manifest


def verify(root: Path, specs: dict[str, str] | None = None) -> dict[str, Any]:
    """Check ``root`` against its manifest (and, given ``specs`` {path: sha256},
    the device specs the glue carries); the manifest, or BundleError."""
    manifest = read_manifest(root)
    want = manifest.get("files", {})
    have = _files(root)
    problems = [f"{name}: missing" for name in sorted(set(want) - set(have))]
    problems += [f"{name}: not in the manifest" for name in sorted(set(have) - set(want))]
    problems += [f"{name}: sha256 differs (changed after the build)"
                 for name in sorted(set(want) & set(have))
                 if want[name].get("sha256") != have[name]["sha256"]]
    if specs is not None:
        built = manifest.get("specs", {})
        problems += [f"device spec {name}: the bundle was built from another version"
                     for name in sorted(set(built) | set(specs))
                     if built.get(name) != specs.get(name)]
    if problems:
        raise BundleError(f"bundle {root} does not match its manifest:\n  "
                          + "\n  ".join(problems))
    return manifest
