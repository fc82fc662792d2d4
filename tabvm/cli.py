"""The ``tabvm`` command."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from .paths import REPO

BUILD_DIR = REPO / "build"


def _meson() -> list[str]:
    local = Path(sys.executable).parent / "meson"
    if local.exists():
        return [str(local)]
    found = shutil.which("meson")
    if found is None:
        raise SystemExit("tabvm: error: meson not found (run ./bootstrap first)")
    return [found]


def cmd_check(args: argparse.Namespace) -> int:
    from generator.main import cmd_check as check, spec_files
    return check(args.specs or spec_files())


def cmd_gen(args: argparse.Namespace) -> int:
    from generator.main import cmd_gen as gen, spec_files
    return gen(args.specs or spec_files(), args.out)


def cmd_spec_doc(args: argparse.Namespace) -> int:
    from generator.docs import reference
    from generator.output import write_if_changed
    target = REPO / "devspecs" / "README.md"
    print(f"{target}: {'written' if write_if_changed(target, reference()) else 'up to date'}")
    return 0


def build(builddir: Path = BUILD_DIR) -> int:
    """meson setup (once) + meson compile: generate, ACPI, QEMU."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    # meson, ninja and the Python QEMU's configure uses all come from this venv
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    if not (builddir / "build.ninja").exists():
        rc = subprocess.call([*_meson(), "setup", str(builddir), str(REPO)], env=env)
        if rc:
            return rc
    return subprocess.call([*_meson(), "compile", "-C", str(builddir)], env=env)


def cmd_build(args: argparse.Namespace) -> int:
    rc = build(args.builddir)
    if rc or not args.cross:
        return rc
    from .cross_build import CrossError, cross_build
    out = args.out or REPO / "build-cross" / args.cross
    try:
        bundle = cross_build(args.cross, args.ndk, args.builddir, out)
    except (CrossError, OSError) as exc:
        print(f"tabvm: error: {exc}", file=sys.stderr)
        return 1
    print(f"bundle {bundle}")
    return 0


def cmd_guest(args: argparse.Namespace) -> int:
    if args.kind == "desktop":
        return _desktop_guest()
    from .guest import GuestBuildError, build_guest
    try:
        image = build_guest()
    except GuestBuildError as exc:
        print(f"tabvm: error: {exc}", file=sys.stderr)
        return 1
    print(f"kernel  {image.kernel}\ninitrd  {image.initrd}\nversion {image.kernel_version}")
    return 0


def _desktop_guest() -> int:
    from .desktop_image import main as build_desktop
    return build_desktop()


def cmd_run(args: argparse.Namespace) -> int:
    from glue.cli import run
    return run(args)


def cmd_demo(args: argparse.Namespace) -> int:
    rc = build(args.builddir or BUILD_DIR)
    if rc:
        return rc
    from glue.cli import demo
    return demo(args)


def cmd_status(args: argparse.Namespace) -> int:
    from glue.cli import status
    return status(args)


def cmd_template(args: argparse.Namespace) -> int:
    from glue.cli import run
    return run(args, template=True)


def cmd_exec(args: argparse.Namespace) -> int:
    from glue.guest_cmds import cmd_exec as run_exec
    return run_exec(args)


def cmd_screenshot(args: argparse.Namespace) -> int:
    from glue.guest_cmds import cmd_screenshot as shot
    return shot(args)


def cmd_view(args: argparse.Namespace) -> int:
    from glue.guest_cmds import cmd_view as view
    return view(args)


def cmd_ctl(args: argparse.Namespace) -> int:
    from glue.ctl import cmd_ctl as ctl
    return ctl(args)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tabvm", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("check", help="validate device specs")
    s.add_argument("specs", nargs="*", type=Path)
    s.set_defaults(func=cmd_check)

    s = sub.add_parser("gen", help="render device specs into QEMU sources and ASL")
    s.add_argument("specs", nargs="*", type=Path)
    s.add_argument("--out", type=Path, default=BUILD_DIR / "gen")
    s.set_defaults(func=cmd_gen)

    s = sub.add_parser("spec-doc", help="rewrite devspecs/README.md from the schemas")
    s.set_defaults(func=cmd_spec_doc)

    s = sub.add_parser("build", help="generate and build QEMU with the devices")
    s.add_argument("--builddir", type=Path, default=BUILD_DIR)
    s.add_argument("--cross", metavar="TARGET", default=None,
                   choices=["android-x86_64", "android-x86", "linux-musl-x86_64"],
                   help="also cross-build QEMU and its dependencies for TARGET into a "
                   "bundle (cross/TARGET.ini; linux-musl-x86_64 is the stand-in for "
                   "the Android targets on machines without the NDK)")
    s.add_argument("--ndk", type=Path, default=None,
                   help="the Android NDK for the android-* targets (default: "
                   "$ANDROID_NDK_HOME)")
    s.add_argument("--out", type=Path, default=None,
                   help="where the bundle goes (default: build-cross/TARGET)")
    s.set_defaults(func=cmd_build)

    s = sub.add_parser("guest", help="build a guest: the test guest (kernel + initramfs "
                       "+ agent) or the Debian desktop disk image (cached by input hash)")
    s.add_argument("kind", nargs="?", choices=["test", "desktop"], default="test",
                   help="test: the busybox test guest (default); desktop: the Debian 12 "
                   "X11 desktop image (qcow2; building it needs root)")
    s.set_defaults(func=cmd_guest)

    from glue.cli import add_run_arguments
    s = sub.add_parser("run", help="start the VM with the glue (battery bridge, QMP)")
    add_run_arguments(s)
    s.set_defaults(func=cmd_run)

    s = sub.add_parser("status", help="state of a profile's VM: lifecycle, resume "
                       "source, memory, bridges (or its journal when no glue runs)")
    s.add_argument("profile", nargs="?", default=None)
    s.add_argument("--state-dir", type=Path, default=None)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_status)

    s = sub.add_parser("snapshot", help="snapshots of a profile's VM")
    snap = s.add_subparsers(dest="snapshot", required=True)
    t = snap.add_parser("template", help="boot the profile's guest fresh and save it as "
                        "the golden template a new session starts from")
    add_run_arguments(t)
    t.add_argument("--settle", type=float, default=60.0,
                   help="for a guest with neither the test guest's agent nor a display: "
                   "seconds to let it boot")
    t.add_argument("--boot-timeout", type=float, default=600.0,
                   help="for a guest with a display: seconds to wait for its desktop "
                   "(qemu-guest-agent, its session, a settled screen)")
    t.set_defaults(func=cmd_template)

    from glue.ctl import add_ctl_arguments
    s = sub.add_parser("ctl", help="send a host event to a running VM "
                       "(RUNDIR/host-events.sock), e.g. background, pressure level=low")
    add_ctl_arguments(s)
    s.set_defaults(func=cmd_ctl)

    from glue.guest_cmds import add_exec_arguments, add_screenshot_arguments
    s = sub.add_parser("exec", help="run a command in a running VM's guest through "
                       "qemu-guest-agent: tabvm exec [PROFILE] -- CMD ARGS...; exits with "
                       "its status")
    add_exec_arguments(s)
    s.set_defaults(func=cmd_exec)

    s = sub.add_parser("screenshot", help="write a running VM's screen as PNG: "
                       "tabvm screenshot [PROFILE] FILE.png")
    add_screenshot_arguments(s)
    s.set_defaults(func=cmd_screenshot)

    from glue.guest_cmds import add_view_arguments
    s = sub.add_parser("view", help="show a running VM's screen in a browser, with "
                       "multitouch: tabvm view [PROFILE] prints the page's URL "
                       "(127.0.0.1, a per-run token)")
    add_view_arguments(s)
    s.set_defaults(func=cmd_view)

    s = sub.add_parser("demo", help="build everything, boot the test guest and show the "
                       "guest's battery following the host")
    add_run_arguments(s)
    s.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if not hasattr(args, "builddir"):
        args.builddir = BUILD_DIR
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
