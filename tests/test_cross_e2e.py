"""The stand-in cross build end to end: `tabvm build --cross linux-musl-x86_64`
(musl through Debian's musl-tools, every target dependency built from source
the way the Android targets build them) makes a bundle whose QEMU passes the
battery end-to-end tests and boots the Debian desktop guest; the glue refuses a
bundle that does not match its manifest. The first run builds the dependencies and QEMU (minutes, cached in
~/.cache/tabvm/cross); later runs only rerun QEMU's ninja."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from glue.profile import BuildOutputs, ProfileError
from tabvm.paths import REPO

pytestmark = pytest.mark.e2e

TARGET = "linux-musl-x86_64"


@pytest.fixture(scope="module")
def bundle(build_outputs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cross") / TARGET
    proc = subprocess.run([sys.executable, "-m", "tabvm.cli", "build", "--cross", TARGET,
                           "--out", str(out)], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return out


def readelf(*args: str) -> str:
    return subprocess.run(["readelf", *args], capture_output=True, text=True,
                          check=True).stdout


def test_the_binary_is_a_musl_pie(bundle):
    qemu = bundle / "qemu-system-x86_64"
    assert "DYN (Position-Independent Executable file)" in readelf("-h", str(qemu))
    assert "/lib/ld-musl-x86_64.so.1" in readelf("-l", str(qemu))
    needed = [line.split("[")[1].rstrip("]") for line in readelf("-d", str(qemu)).splitlines()
              if "(NEEDED)" in line]
    # glib, pcre2, libffi, zlib, pixman, libslirp, libpng: static, ours
    assert needed == ["libc.so"], needed


def test_the_bundle_has_everything_and_a_manifest(bundle):
    import json
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["target"] == TARGET and manifest["qemu"]["version"] == "10.0.13"
    assert set(manifest["dependencies"]) == {"zlib", "libffi", "pcre2", "glib", "pixman",
                                             "libslirp", "libpng"}
    assert {"qemu-system-x86_64", "qemu-img", "battery.aml",
            "firmware/bios-256k.bin", "firmware/pvh.bin", "firmware/vgabios-stdvga.bin",
            "firmware/OVMF_CODE_4M.fd", "firmware/OVMF_VARS_4M.fd"} <= set(manifest["files"])
    assert "devspecs/battery.yaml" in manifest["specs"]
    BuildOutputs(bundle).check()


def pytest_on_bundle(bundle: Path, *args: str) -> str:
    """Run pytest ``args`` with the glue and the tests using the bundle's QEMU
    (TABVM_BUNDLE); its output's tail, after asserting it passed."""
    env = {**os.environ, "TABVM_BUNDLE": str(bundle)}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           *args], cwd=REPO, env=env, capture_output=True, text=True)
    tail = proc.stdout[-3000:] + proc.stderr[-2000:]
    print(tail)
    assert proc.returncode == 0, tail
    assert " passed" in tail and "failed" not in tail
    return tail


def test_the_cross_built_qemu_passes_the_battery_e2e(bundle):
    pytest_on_bundle(bundle, "tests/test_battery_e2e.py")


def test_the_cross_built_qemu_has_the_desktop_devices(bundle):
    """Display adapters with PNG screendumps (pixman, libpng), user-mode
    networking (libslirp), AHCI, the NICs, OVMF: tests/test_qemu_devices.py."""
    pytest_on_bundle(bundle, "tests/test_qemu_devices.py")


def test_the_cross_built_qemu_boots_the_desktop_guest(bundle):
    """The musl bundle's QEMU (with its own qemu-img and firmware) boots the
    Debian desktop through SeaBIOS to its X session on screen, and its user-mode
    network reaches the host and back: tests/test_desktop_e2e.py's BIOS checks."""
    tail = pytest_on_bundle(bundle, "tests/test_desktop_e2e.py", "-k",
                            "TestBios and (session_on_screen or network_both_ways or "
                            "exec_returns)")
    assert "3 passed" in tail


def test_a_changed_bundle_is_refused(bundle, tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    with (copy / "firmware" / "pvh.bin").open("r+b") as f:
        f.write(b"\xff")
    with pytest.raises(ProfileError, match="firmware/pvh.bin: sha256 differs"):
        BuildOutputs(copy).check()
