"""Cross-build benchmark: prints figures, asserts nothing.

  python bench/cross_build.py [--target linux-musl-x86_64]

A cold cross build: the target's dependencies and QEMU are built from scratch in
a scratch cache (the source tarballs are copied in from the real cache, so the
download is not timed), then the bundle's size, file by file. The native
build of the same tree comes first in that scratch cache (the cross build needs
its generated sources and firmware) and is timed too, for comparison.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tabvm.paths import cache_dir  # noqa: E402


def run(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "tabvm.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True)
    took = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"tabvm {' '.join(args)} failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return took, proc.stdout + proc.stderr


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", default="linux-musl-x86_64")
    args = p.parse_args()

    real = cache_dir()
    with tempfile.TemporaryDirectory(prefix="tabvm-cross-bench-") as tmp:
        scratch = Path(tmp) / "cache"
        shutil.copytree(real / "dl", scratch / "dl")            # sources: not timed
        for sub in ("apt", "guest"):
            if (real / sub).exists():
                shutil.copytree(real / sub, scratch / sub, symlinks=True)
        env = {**os.environ, "TABVM_CACHE": str(scratch)}
        out = Path(tmp) / "bundle"
        print(f"cold cross build for {args.target} in a scratch cache ({scratch})",
              flush=True)
        # the native build of the same tree comes first (the cross build needs its
        # generated sources and firmware); it is timed separately
        native, _ = run(["build"], env)
        took, log = run(["build", "--cross", args.target, "--out", str(out)], env)
        steps = re.findall(r"tabvm: (\S+) built in (\d+) s", log)

        print(f"\n| step | seconds |\n|---|---:|")
        print(f"| native build of the same tree (QEMU + qemu-img, for comparison) | "
              f"{native:.0f} |")
        for name, secs in steps:
            print(f"| {name} (from source, for {args.target}) | {secs} |")
        deps = sum(int(s) for _, s in steps)
        print(f"| QEMU configure + build for {args.target} | {took - deps:.0f} |")
        print(f"| **cold cross build, total** | **{took:.0f}** |")

        files = sorted((p for p in out.rglob("*") if p.is_file()),
                       key=lambda p: -p.stat().st_size)
        total = sum(f.stat().st_size for f in files)
        print(f"\nbundle {args.target}: {total / 1e6:.1f} MB in {len(files)} files")
        for f in files:
            print(f"  {f.stat().st_size / 1e6:8.2f} MB  {f.relative_to(out)}")
        kind = subprocess.run(["file", "-b", str(out / "qemu-system-x86_64")],
                              capture_output=True, text=True).stdout.strip()
        print(f"\nqemu-system-x86_64: {kind}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
