"""Configure and build the patched QEMU, out of the repository, keyed by its inputs.

``cache/qemu/<source key>/`` holds ``src`` (pristine + patches + generated devices)
and ``build``. Configure runs again only when its command line changes; after that
QEMU's own ninja decides what to rebuild, so a spec edit recompiles only the device
files whose text changed.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
from collections import deque
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from generator.render import DEVICE_CONFIG

from .progress import Ticker, say
from .qemu_source import prepared_tree
from .qemu_tree import install_generated
from .recipe import Recipe

SEABIOS = Path("/usr/share/seabios/bios-256k.bin")
#: Firmware from Debian packages copied beside the binary (``-L build/firmware``),
#: with the package that ships each file.
PACKAGED_FIRMWARE = (
    (SEABIOS, "seabios"),
    # the VGA BIOSes SeaBIOS runs for the display adapters (each device's romfile,
    # found on -L): VGA, virtio-vga, bochs-display; virtio-gpu-pci needs none
    (Path("/usr/share/seabios/vgabios-stdvga.bin"), "seabios"),
    (Path("/usr/share/seabios/vgabios-virtio.bin"), "seabios"),
    (Path("/usr/share/seabios/vgabios-bochs-display.bin"), "seabios"),
    # UEFI: OVMF's code (pflash0, read-only) and the variable store template a
    # session copies (pflash1), the 4 MiB layout
    (Path("/usr/share/OVMF/OVMF_CODE_4M.fd"), "ovmf"),
    (Path("/usr/share/OVMF/OVMF_VARS_4M.fd"), "ovmf"),
)
BINARY = "qemu-system-x86_64"
IMG_TOOL = "qemu-img"


class BuildError(RuntimeError):
    pass


@contextmanager
def locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def tools_venv(recipe: Recipe, home: Path) -> Path:
    """``home/tools``: a venv with the recipe's meson/ninja, made once per tree key."""
    venv = home / "tools"
    stamp = venv / ".tabvm-packages"
    wanted = "\n".join(recipe.python_packages)
    if (venv / "bin" / "python3").exists() and stamp.exists() and stamp.read_text() == wanted:
        return venv
    say(f"creating QEMU's build tools venv ({', '.join(recipe.python_packages)})")
    shutil.rmtree(venv, ignore_errors=True)
    for cmd in ([sys.executable, "-m", "venv", str(venv)],
                [str(venv / "bin" / "python3"), "-m", "pip", "install", "-q",
                 *recipe.python_packages]):
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            shutil.rmtree(venv, ignore_errors=True)
            raise BuildError(f"{' '.join(cmd[:4])}... failed:\n{proc.stdout}{proc.stderr}")
    stamp.write_text(wanted)
    return venv


def tools_env(venv: Path) -> dict[str, str]:
    return {**os.environ, "PATH": os.pathsep.join([str(venv / "bin"), os.environ["PATH"]])}


def configure_command(recipe: Recipe, src: Path, venv: Path) -> list[str]:
    return [str(src / "configure"), f"--python={venv / 'bin' / 'python3'}",
            f"--target-list={recipe.target}",
            f"--with-devices-{recipe.target.split('-')[0]}={DEVICE_CONFIG}",
            *recipe.configure_args]


def _run_logged(cmd: list[str], cwd: Path, label: str, log: Path,
                env: dict[str, str] | None = None) -> list[str]:
    """Run ``cmd`` printing ninja-style progress; return its output lines."""
    tail: deque[str] = deque(maxlen=80)
    lines = []
    ticker = Ticker(label)
    with log.open("w") as logf, subprocess.Popen(
            cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            bufsize=1, env=env) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            logf.write(line)
            tail.append(line.rstrip())
            lines.append(line.rstrip())
            m = re.match(r"\[(\d+)/(\d+)\]", line)
            if m:
                ticker.update(int(m.group(1)), int(m.group(2)))
        rc = proc.wait()
    if rc != 0:
        raise BuildError(f"{label} failed (exit {rc}); last lines of {log}:\n"
                         + "\n".join(tail))
    return lines


def configure(recipe: Recipe, src: Path, build: Path, venv: Path) -> bool:
    cmd = configure_command(recipe, src, venv)
    stamp = build / ".tabvm-configure"
    wanted = "\0".join(cmd)
    if (build / "build.ninja").exists() and stamp.exists() and stamp.read_text() == wanted:
        return False
    say("configuring QEMU")
    shutil.rmtree(build, ignore_errors=True)
    build.mkdir(parents=True)
    _run_logged(cmd, build, "configure", build.parent / "configure.log", tools_env(venv))
    stamp.write_text(wanted)
    return True


def compile_qemu(build: Path, venv: Path) -> list[str]:
    """Run ninja; return the objects it compiled (for 'what did an edit rebuild')."""
    say(f"building {BINARY} and {IMG_TOOL} (ninja; a full build takes a few minutes "
        "on 2 cores)")
    env = tools_env(venv)
    lines = _run_logged([str(venv / "bin" / "ninja"), BINARY, IMG_TOOL], build, "ninja",
                        build.parent / "ninja.log", env)
    compiled = [m.group(1) for line in lines
                if (m := re.search(r"Compiling C object (\S+)", line))]
    if not (build / "pc-bios/optionrom/config.mak").exists():
        raise BuildError("QEMU's configure found no compiler for 32-bit x86 option ROMs "
                         "(linuxboot_dma.bin, needed for -kernel): install gcc-multilib")
    _run_logged(["make", "-s"], build / "pc-bios/optionrom", "option ROMs",
                build.parent / "optionrom.log", env)
    return compiled


def install_outputs(build: Path, out: Path) -> None:
    """Copy the binary and the firmware it needs into ``out`` (only when changed)."""
    firmware = out / "firmware"
    firmware.mkdir(parents=True, exist_ok=True)
    for path, package in PACKAGED_FIRMWARE:
        if not path.exists():
            raise BuildError(f"{path} missing: install Debian's {package} package")
    roms = build / "pc-bios/optionrom"
    for src, dst in ((build / BINARY, out / BINARY),
                     (build / IMG_TOOL, out / IMG_TOOL),
                     *((path, firmware / path.name) for path, _ in PACKAGED_FIRMWARE),
                     # -kernel with a bzImage, and with an ELF vmlinux (PVH entry)
                     (roms / "linuxboot_dma.bin", firmware / "linuxboot_dma.bin"),
                     (roms / "pvh.bin", firmware / "pvh.bin"),
                     # q35 loads it on every start (the TPR patching of KVM guests;
                     # without it QEMU warns "rom: file kvmvapic.bin")
                     (roms / "kvmvapic.bin", firmware / "kvmvapic.bin"),
                     # the VNC server loads a keymap at start (its fallback for
                     # clients without QEMU's extended key events); QEMU's own
                     # file from its source tree, found on -L as keymaps/en-us
                     (build.parent / "src/pc-bios/keymaps/en-us",
                      firmware / "keymaps" / "en-us")):
        dst.parent.mkdir(parents=True, exist_ok=True)
        if not dst.exists() or dst.read_bytes() != src.read_bytes():
            tmp = dst.with_name(f".{dst.name}.tmp")
            shutil.copy2(src, tmp)
            tmp.replace(dst)


def build_qemu(recipe: Recipe, gen_dir: Path, out: Path) -> list[str]:
    """Prepare, hook in the generated devices, configure, build. Returns compiled objects."""
    src = prepared_tree(recipe)
    home = src.parent
    with locked(home / "lock"):
        changed = install_generated(gen_dir, src)
        for path in changed:
            say(f"QEMU tree: updated {path}")
        build = home / "build"
        venv = tools_venv(recipe, home)
        configure(recipe, src, build, venv)
        compiled = compile_qemu(build, venv)
        install_outputs(build, out)
    (out / "qemu-compiled.txt").write_text("".join(f"{c}\n" for c in compiled))
    return compiled
