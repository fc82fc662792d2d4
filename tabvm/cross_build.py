"""``tabvm build --cross TARGET``: QEMU and its target dependencies for another host.

One meson cross file per target (``cross/TARGET.ini``; the Android ones take the
NDK from ``--ndk``/``ANDROID_NDK_HOME`` through a generated constants file)
drives everything, in the same order for the Android targets and the stand-in:

1. the dependencies in ``qemu-tree/cross-deps.toml`` (zlib, libffi, pcre2, glib,
   pixman, libslirp, libpng), from Debian's source packages pinned by sha256,
   each with its own build system, static, position-independent, into one prefix;
2. QEMU from the same patched tree as the native build (generated devices
   included), configured with that compiler and pkg-config on that prefix;
3. a bundle: the binaries, the firmware and SSDTs of the native build, and
   ``manifest.json`` (versions, sha256 of every file, of every device spec and of
   the sources), which the glue checks before starting QEMU (glue/bundle.py).

Everything is cached under ``~/.cache/tabvm/cross/TARGET/KEY`` (KEY: the cross
file, the dependency pins and the QEMU source key), so a second build only
reruns QEMU's ninja.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

from .debian import AptError, PrivateApt
from .machine_file import MachineFile, MachineFileError, load
from .paths import REPO, cache_subdir
from .progress import say
from .qemu_build import (DEVICE_CONFIG, BuildError, _run_logged, install_generated, locked,
                         tools_env, tools_venv)
from .qemu_source import _download, prepared_tree, sha256_of
from .recipe import QEMU_TREE, Recipe, load_recipe

CROSS_DIR = REPO / "cross"
DEPS = QEMU_TREE / "cross-deps.toml"
TARGETS = ("android-x86_64", "android-x86", "linux-musl-x86_64")
NDK_PREBUILT = "toolchains/llvm/prebuilt/linux-x86_64"


class CrossError(RuntimeError):
    pass


@dataclass(frozen=True)
class Dep:
    name: str
    version: str
    debian_package: str
    debian_version: str
    orig: str
    sha256: str
    build: str                     # zlib | autotools | meson
    options: tuple[str, ...]
    autoreconf: bool = False       # generate configure first (a git snapshot)


def load_deps(path: Path = DEPS) -> tuple[str, list[Dep]]:
    data = tomllib.loads(path.read_text())
    return data["suite"], [Dep(d["name"], d["version"], d["debian_package"],
                               d["debian_version"], d["orig"], d["sha256"], d["build"],
                               tuple(d.get("options", ())), d.get("autoreconf", False))
                         for d in data["dep"]]


# -- the target -------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    name: str
    files: tuple[Path, ...]        # machine files, in meson's order
    machine: MachineFile

    @property
    def triple(self) -> str:
        return self.machine.require("properties", "tabvm_triple")

    @property
    def qemu_target(self) -> str:
        return self.machine.require("properties", "tabvm_target")

    @property
    def binary(self) -> str:
        return f"qemu-system-{self.qemu_target.split('-')[0]}"

    def tool(self, name: str) -> list[str]:
        return self.machine.binary(name)

    @property
    def c_args(self) -> list[str]:
        return list(self.machine.get("built-in options", "c_args", []))

    @property
    def c_link_args(self) -> list[str]:
        return list(self.machine.get("built-in options", "c_link_args", []))

    def env(self, prefix: Path) -> dict[str, str]:
        """Environment for autotools-style builds: the cross tools, pkg-config on
        ``prefix`` only (never the build machine's libraries)."""
        q = _shell_join
        cflags = q(self.c_args + ["-O2", "-fPIC"])
        return {**os.environ,
                "CC": q(self.tool("c")), "AR": q(self.tool("ar")), "NM": q(self.tool("nm")),
                "RANLIB": q(self.tool("ranlib")), "STRIP": q(self.tool("strip")),
                "OBJCOPY": q(self.tool("objcopy")), "PKG_CONFIG": q(self.tool("pkg-config")),
                "PKG_CONFIG_LIBDIR": str(prefix / "lib" / "pkgconfig"),
                "PKG_CONFIG_PATH": "", "PKG_CONFIG_SYSROOT_DIR": "",
                "CFLAGS": cflags, "LDFLAGS": q(self.c_link_args)}


def _shell_join(words: list[str]) -> str:
    return " ".join(words)


#: Linux UAPI headers musl-tools does not ship (the NDK's sysroot has its own):
#: the stand-in takes the build machine's linux-libc-dev, as Alpine's musl
#: toolchains take their linux-headers package.
KERNEL_HEADERS = {"linux": "/usr/include/linux", "asm-generic": "/usr/include/asm-generic",
                  "asm": "/usr/include/x86_64-linux-gnu/asm"}


def constants_file(target: str, ndk: Path | None, out: Path) -> Path | None:
    """The generated ``[constants]`` file a target's cross file reads first: the
    NDK for the Android targets, the kernel headers for the stand-in."""
    out.mkdir(parents=True, exist_ok=True)
    if target.startswith("linux-musl"):
        headers = out / "kernel-headers"
        headers.mkdir(exist_ok=True)
        for name, src in KERNEL_HEADERS.items():
            if not Path(src).is_dir():
                raise CrossError(f"{src} missing: install Debian's linux-libc-dev")
            link = headers / name
            if not link.is_symlink():
                link.symlink_to(src)
        path = out / "toolchain.ini"
        path.write_text(f"# generated by tabvm build --cross {target}\n"
                        f"[constants]\nkernel_headers = '{headers}'\n")
        return path
    return ndk_constants(target, ndk, out)


def ndk_constants(target: str, ndk: Path | None, out: Path) -> Path | None:
    """The constants file naming the NDK for an Android target (None for others)."""
    if not target.startswith("android-"):
        return None
    ndk = ndk or (Path(os.environ["ANDROID_NDK_HOME"]) if os.environ.get("ANDROID_NDK_HOME")
                  else None)
    if ndk is None:
        raise CrossError(f"{target} needs the Android NDK: --ndk PATH or ANDROID_NDK_HOME")
    if not (ndk / NDK_PREBUILT / "bin").is_dir():
        raise CrossError(f"{ndk} is not an Android NDK (no {NDK_PREBUILT}/bin)")
    out.mkdir(parents=True, exist_ok=True)
    path = out / "ndk.ini"
    path.write_text(f"# generated by tabvm build --cross {target}\n"
                    f"[constants]\nndk = '{ndk.resolve()}'\n")
    return path


def load_target(name: str, ndk: Path | None = None, workdir: Path | None = None) -> Target:
    if name not in TARGETS:
        raise CrossError(f"unknown cross target {name!r} (targets: {', '.join(TARGETS)})")
    main = CROSS_DIR / f"{name}.ini"
    constants = constants_file(name, ndk, workdir or cache_subdir("cross", name))
    files = tuple(p for p in (constants, main) if p)
    try:
        return Target(name, files, load(list(files)))
    except MachineFileError as exc:
        raise CrossError(str(exc)) from None


# -- sources ----------------------------------------------------------------

def fetch(dep: Dep, suite: str) -> Path:
    """The dependency's Debian .orig tarball, verified, downloaded once."""
    dl = cache_subdir("dl")
    dest = dl / dep.orig
    if dest.is_file() and sha256_of(dest) == dep.sha256:
        return dest
    say(f"fetching {dep.orig} (Debian source package {dep.debian_package} "
        f"{dep.debian_version})")
    apt = PrivateApt(suite)
    try:
        apt.update()
        uris = apt.run("apt-get", "source", "--download-only", "--print-uris",
                       f"{dep.debian_package}={dep.debian_version}")
    except AptError as exc:
        raise CrossError(str(exc)) from None
    for line in uris.splitlines():
        m = re.match(r"'(\S+)' (\S+) ", line)
        if m and m.group(2) == dep.orig:
            _download(m.group(1), dest, timeout=60)
            break
    else:
        raise CrossError(f"{dep.debian_package} {dep.debian_version} has no {dep.orig}")
    if sha256_of(dest) != dep.sha256:
        dest.unlink()
        raise CrossError(f"{dep.orig}: sha256 does not match the pinned {dep.sha256}")
    return dest


def _unpack(tarball: Path, dest: Path) -> Path:
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    with tarfile.open(tarball) as tf:
        tf.extractall(dest, filter="data")
    (top,) = [p for p in dest.iterdir() if p.is_dir()]
    return top


# -- building ---------------------------------------------------------------

def _key(target: Target, deps: list[Dep], recipe: Recipe) -> str:
    h = hashlib.sha256()
    for path in (*target.files, DEPS):
        h.update(path.read_bytes())
    h.update(recipe.source_key().encode())
    return h.hexdigest()[:12]


def _run(cmd: list[str], cwd: Path, label: str, log: Path, env: dict[str, str]) -> None:
    """Run one step, its output in ``log`` with the step's name (``glib-build.log``)."""
    step = log.with_name(f"{log.stem}-{label.split()[-1]}{log.suffix}")
    _run_logged(cmd, cwd, label, step, env)


def build_dep(dep: Dep, target: Target, src: Path, work: Path, prefix: Path,
              venv: Path) -> None:
    env = target.env(prefix)
    log = work / f"{dep.name}.log"
    jobs = f"-j{os.cpu_count() or 2}"
    if dep.build == "zlib":
        # zlib's own configure: no --host, the compiler comes from CC
        _run(["./configure", "--static", f"--prefix={prefix}", *dep.options], src,
             f"{dep.name} configure", log, env)
        _run(["make", jobs, "install"], src, f"{dep.name} build", log, env)
    elif dep.build == "autotools":
        # the libraries already in the prefix (libpng's configure looks for zlib
        # with the compiler, not with pkg-config)
        env = {**env, "CPPFLAGS": f"-I{prefix / 'include'}",
               "LDFLAGS": _shell_join([*target.c_link_args, f"-L{prefix / 'lib'}"])}
        if dep.autoreconf:
            _run(["autoreconf", "-fi"], src, f"{dep.name} autoreconf", log, env)
        _run(["./configure", f"--host={target.triple}", f"--prefix={prefix}",
              "--libdir", str(prefix / "lib"), "--disable-shared", "--enable-static",
              "--with-pic", *dep.options], src, f"{dep.name} configure", log, env)
        _run(["make", jobs, "install"], src, f"{dep.name} build", log, env)
    elif dep.build == "meson":
        # meson reads the target's cross files itself, plus where the prefix is
        props = work / f"{dep.name}-prefix.ini"
        props.write_text("[properties]\n"
                         f"pkg_config_libdir = ['{prefix / 'lib' / 'pkgconfig'}']\n")
        build = work / f"{dep.name}-build"
        shutil.rmtree(build, ignore_errors=True)
        meson = str(venv / "bin" / "meson")
        cross = [a for f in (*target.files, props) for a in ("--cross-file", str(f))]
        _run([meson, "setup", str(build), str(src), *cross, f"--prefix={prefix}",
              "--libdir=lib", "--default-library=static", "--buildtype=release",
              "--wrap-mode=nodownload", *dep.options], src, f"{dep.name} configure", log,
             tools_env(venv))
        _run([meson, "install", "-C", str(build), "--quiet"], src, f"{dep.name} build", log,
             tools_env(venv))
    else:
        raise CrossError(f"{dep.name}: unknown build kind {dep.build!r}")


def build_deps(target: Target, home: Path, venv: Path) -> Path:
    """Every dependency into ``home/prefix``; each is skipped when its stamp matches."""
    suite, deps = load_deps()
    prefix = home / "prefix"
    work = home / "deps"
    work.mkdir(parents=True, exist_ok=True)
    for dep in deps:
        stamp = prefix / ".tabvm" / f"{dep.name}.stamp"
        wanted = json.dumps([dep.sha256, dep.options, dep.build, dep.autoreconf])
        if stamp.exists() and stamp.read_text() == wanted:
            continue
        tarball = fetch(dep, suite)
        say(f"building {dep.name} {dep.version} for {target.name}")
        t0 = time.monotonic()
        src = _unpack(tarball, work / dep.name)
        build_dep(dep, target, src, work, prefix, venv)
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.write_text(wanted)
        shutil.rmtree(work / dep.name, ignore_errors=True)
        say(f"{dep.name} built in {time.monotonic() - t0:.0f} s")
    return prefix


def configure_command(recipe: Recipe, target: Target, src: Path, venv: Path) -> list[str]:
    return [str(src / "configure"), f"--python={venv / 'bin' / 'python3'}",
            f"--cross-prefix={target.triple}-", "--host-cc=cc",
            f"--target-list={target.qemu_target}",
            f"--with-devices-{target.qemu_target.split('-')[0]}={DEVICE_CONFIG}",
            f"--extra-cflags={_shell_join(target.c_args)}",
            f"--extra-ldflags={_shell_join(target.c_link_args)}",
            *recipe.configure_args]


def build_qemu(target: Target, gen_dir: Path, recipe: Recipe) -> tuple[Path, Path]:
    """QEMU for ``target``: (its build dir, the dependency prefix)."""
    src = prepared_tree(recipe)
    qhome = src.parent
    with locked(qhome / "lock"):
        install_generated(gen_dir, src)
        venv = tools_venv(recipe, qhome)
        home = cache_subdir("cross", target.name, _key(target, load_deps()[1], recipe))
        prefix = build_deps(target, home, venv)
        build = home / "qemu-build"
        cmd = configure_command(recipe, target, src, venv)
        # the cross flags go in as --extra-cflags/--extra-ldflags
        env = {**target.env(prefix), "PATH": tools_env(venv)["PATH"]}
        del env["CFLAGS"], env["LDFLAGS"]
        stamp = build / ".tabvm-configure"
        if not (stamp.exists() and stamp.read_text() == "\0".join(cmd)):
            say(f"configuring QEMU for {target.name}")
            shutil.rmtree(build, ignore_errors=True)
            build.mkdir(parents=True)
            _run(cmd, build, "configure", home / "configure.log", env)
            stamp.write_text("\0".join(cmd))
        say(f"building {target.binary} and qemu-img for {target.name}")
        _run([str(venv / "bin" / "ninja"), target.binary, "qemu-img"], build, "ninja",
             home / "ninja.log", env)
    return build, prefix


# -- the bundle -------------------------------------------------------------

def make_bundle(target: Target, build: Path, native_out: Path, out: Path,
                recipe: Recipe) -> Path:
    """``out``: the binaries, firmware, SSDTs and manifest.json."""
    from glue.bundle import MANIFEST, spec_hashes, write_manifest
    if out.exists():
        shutil.rmtree(out)
    (out / "firmware").mkdir(parents=True)
    for name in (target.binary, "qemu-img"):
        shutil.copy2(build / name, out / name)
        subprocess.run([*target.tool("strip"), str(out / name)], check=True)
    for fw in sorted((native_out / "firmware").iterdir()):
        if fw.is_dir():                 # keymaps/
            shutil.copytree(fw, out / "firmware" / fw.name)
        else:
            shutil.copy2(fw, out / "firmware" / fw.name)
    for aml in sorted(native_out.glob("*.aml")):
        shutil.copy2(aml, out / aml.name)
    suite, deps = load_deps()
    write_manifest(out, {
        "target": target.name, "triple": target.triple, "qemu_target": target.qemu_target,
        "qemu": {"version": recipe.version, "source_sha256": recipe.debian_orig_sha256,
                 "tree": recipe.source_key()},
        "dependencies": {d.name: {"version": d.version, "debian": d.debian_version,
                                  "sha256": d.sha256} for d in deps},
        "specs": spec_hashes(REPO),
    })
    say(f"bundle for {target.name}: {out} ({MANIFEST})")
    return out


def cross_build(name: str, ndk: Path | None, native_out: Path, out: Path) -> Path:
    recipe = load_recipe()
    target = load_target(name, ndk)
    for tool in ("c", "ar"):
        if shutil.which(target.tool(tool)[0]) is None:
            raise CrossError(f"{target.tool(tool)[0]} not found (the {name} toolchain)")
    try:
        build, _ = build_qemu(target, native_out / "gen", recipe)
    except BuildError as exc:
        raise CrossError(str(exc)) from None
    return make_bundle(target, build, native_out, out, recipe)
