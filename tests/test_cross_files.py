"""Cross files, the machine-file reader, the dependency pins and the bundle
manifest, without building anything. The Android cross files are checked by
meson itself in a dry configure against a stand-in NDK tree whose compiler
entries are the build machine's gcc (no NDK can be installed here)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from glue.bundle import BundleError, spec_hashes, verify, write_manifest
from tabvm.cross_build import (NDK_PREBUILT, TARGETS, CrossError, configure_command,
                               load_deps, load_target)
from tabvm.machine_file import MachineFileError, load
from tabvm.paths import REPO
from tabvm.recipe import load_recipe


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_constants_from_an_earlier_file(tmp_path):
    a = write(tmp_path / "a.ini", "[constants]\nroot = '/opt/x'\n")
    b = write(tmp_path / "b.ini", "[constants]\nbin = root / 'bin'\napi = '28'\n"
              "[binaries]\nc = bin / 'cc' + api\nar = [bin / 'ar', '-x']\n"
              "[built-in options]\nc_args = ['-a'] + ['-b']\n[properties]\nflag = true\n")
    m = load([a, b])
    assert m.binary("c") == ["/opt/x/bin/cc28"]
    assert m.binary("ar") == ["/opt/x/bin/ar", "-x"]
    assert m.get("built-in options", "c_args") == ["-a", "-b"]
    assert m.get("properties", "flag") is True


@pytest.mark.parametrize("text,message", [
    ("[binaries]\nc = nowhere / 'cc'\n", "unknown constant 'nowhere'"),
    ("[binaries]\nc = 'a' +\n", "cannot parse"),
    ("[binaries]\nc = __import__('os')\n", "not a machine-file value"),
    ("[binaries]\nc = 'a' / 3\n", "'/' joins two strings"),
    ("[binaries]\nc = 'a' + ['b']\n", "'+' joins two strings or two arrays"),
    ("c = 'x'\n", "no section headers"),
])
def test_bad_machine_files(tmp_path, text, message):
    with pytest.raises(MachineFileError, match=re.escape(message)):
        load([write(tmp_path / "bad.ini", text)])


def fake_ndk(root: Path) -> Path:
    """An NDK-shaped tree whose tools are the build machine's (for meson's dry run)."""
    bindir = root / NDK_PREBUILT / "bin"
    bindir.mkdir(parents=True)
    tools = {"x86_64-linux-android28-clang": "exec gcc \"$@\"",
             "i686-linux-android28-clang": "exec gcc -m32 \"$@\"",
             "llvm-ar": "exec ar \"$@\"", "llvm-nm": "exec nm \"$@\"",
             "llvm-ranlib": "exec ranlib \"$@\"", "llvm-strip": "exec strip \"$@\"",
             "llvm-objcopy": "exec objcopy \"$@\""}
    for name, body in tools.items():
        path = bindir / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)
    return root


@pytest.mark.parametrize("target,cpu_family,compiler", [
    ("android-x86_64", "x86_64", "x86_64-linux-android28-clang"),
    ("android-x86", "x86", "i686-linux-android28-clang"),
])
def test_android_cross_files_dry_configure(tmp_path, target, cpu_family, compiler):
    ndk = fake_ndk(tmp_path / "ndk")
    t = load_target(target, ndk, tmp_path / "work")
    assert t.tool("c") == [str(ndk.resolve() / NDK_PREBUILT / "bin" / compiler)]
    assert t.triple.endswith("-linux-android")
    assert t.binary == ("qemu-system-x86_64" if cpu_family == "x86_64" else "qemu-system-i386")
    assert "-pie" in t.c_link_args and "-fPIE" in t.c_args
    project = tmp_path / "probe"
    project.mkdir()
    write(project / "meson.build", "project('probe', 'c')\n"
          "assert(host_machine.system() == 'android')\n"
          f"assert(host_machine.cpu_family() == '{cpu_family}')\n"
          "assert(meson.is_cross_build())\n"
          "executable('probe', 'probe.c')\n")
    write(project / "probe.c", "int main(void) { return 0; }\n")
    meson = shutil.which("meson", path=str(Path(sys.executable).parent)) or "meson"
    cmd = [meson, "setup", str(tmp_path / "build"), str(project)]
    for f in t.files:
        cmd += ["--cross-file", str(f)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 and "-m32" in (ndk / NDK_PREBUILT / "bin" / compiler).read_text() \
            and "sanity check" in proc.stdout + proc.stderr:
        pytest.skip("this machine's gcc cannot build 32-bit x86 (gcc-multilib)")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    info = json.loads(subprocess.run([meson, "introspect", "--compilers",
                                      str(tmp_path / "build")], capture_output=True,
                                     text=True, check=True).stdout)
    assert info["host"]["c"]["exelist"] == t.tool("c")


def test_android_targets_need_the_ndk(tmp_path, monkeypatch):
    monkeypatch.delenv("ANDROID_NDK_HOME", raising=False)
    with pytest.raises(CrossError, match="needs the Android NDK"):
        load_target("android-x86_64", None, tmp_path)
    with pytest.raises(CrossError, match="is not an Android NDK"):
        load_target("android-x86_64", tmp_path, tmp_path)
    monkeypatch.setenv("ANDROID_NDK_HOME", str(fake_ndk(tmp_path / "ndk")))
    assert load_target("android-x86_64", None, tmp_path / "w").triple == "x86_64-linux-android"
    with pytest.raises(CrossError, match="unknown cross target"):
        load_target("android-arm64", None, tmp_path)


def test_every_target_has_a_cross_file():
    assert sorted(p.stem for p in (REPO / "cross").glob("*.ini")) == sorted(TARGETS)


def test_qemu_configure_for_the_stand_in():
    t = load_target("linux-musl-x86_64")
    cmd = configure_command(load_recipe(), t, Path("/src"), Path("/venv"))
    assert "--cross-prefix=x86_64-linux-musl-" in cmd
    assert "--target-list=x86_64-softmmu" in cmd
    assert "--extra-ldflags=-pie" in cmd
    # the same features as the native build: their libraries are cross-deps
    assert {"--enable-pixman", "--enable-slirp", "--enable-png"} <= set(cmd)


def test_dependencies_are_pinned():
    suite, deps = load_deps()
    assert suite == load_recipe().debian_suite
    assert [d.name for d in deps] == ["zlib", "libffi", "pcre2", "glib", "pixman", "libslirp",
                                     "libpng"]
    for d in deps:
        assert len(d.sha256) == 64 and d.orig.startswith(d.debian_package + "_")
        assert d.build in ("zlib", "autotools", "meson")


def test_bundle_manifest(tmp_path):
    (tmp_path / "firmware").mkdir()
    write(tmp_path / "qemu-system-x86_64", "binary")
    write(tmp_path / "firmware" / "bios-256k.bin", "bios")
    specs = spec_hashes()
    write_manifest(tmp_path, {"target": "t", "specs": specs})
    assert verify(tmp_path, specs)["target"] == "t"
    write(tmp_path / "qemu-system-x86_64", "changed")
    (tmp_path / "firmware" / "bios-256k.bin").unlink()
    write(tmp_path / "extra", "x")
    with pytest.raises(BundleError) as err:
        verify(tmp_path, {**specs, "devspecs/new.yaml": "0" * 64})
    text = str(err.value)
    for what in ("qemu-system-x86_64: sha256 differs", "firmware/bios-256k.bin: missing",
                 "extra: not in the manifest", "device spec devspecs/new.yaml"):
        assert what in text, text
    write(tmp_path / "manifest.json", "{")
    with pytest.raises(BundleError, match="unreadable"):
        verify(tmp_path)


def test_the_device_set_is_generated_for_both_system_targets(tmp_path):
    """android-x86 builds qemu-system-i386 (--with-devices-i386=tabvm)."""
    from generator.render import DEVICE_CONFIG_PATH, DEVICE_CONFIG_PATH_I386
    gen = REPO / "tests" / "golden" / "devspecs" / "expected" / "qemu"
    x86_64 = (gen / DEVICE_CONFIG_PATH).read_text()
    assert (gen / DEVICE_CONFIG_PATH_I386).read_text() == x86_64
    assert "CONFIG_Q35=y" in x86_64
