"""Build-time benchmark: prints figures, asserts nothing.

  python bench/build_times.py            # regenerate + one-line spec edit
  python bench/build_times.py --full     # also a cold QEMU build in a scratch cache

1. regenerate: time to check + render all specs and write them (in process, best of
   N runs into a fresh directory, and `tabvm gen` as a whole command);
2. spec edit: change devspecs/battery.yaml's design_capacity by one line, run
   `tabvm build`, report the wall time and what QEMU's ninja compiled; the spec is
   restored (and rebuilt) afterwards;
3. full build (--full): configure + build QEMU from the cached tarball in a scratch
   cache directory (the download itself is not timed).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from generator.main import generate, spec_files  # noqa: E402
from generator.output import write_outputs  # noqa: E402

SPEC = REPO / "devspecs" / "battery.yaml"


def tabvm(*args: str, env: dict | None = None) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "tabvm.cli", *args], cwd=REPO, check=True,
                   env=env or os.environ, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def bench_regenerate(runs: int = 20) -> None:
    times = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            write_outputs(Path(tmp), generate(spec_files()))
            times.append(time.perf_counter() - start)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [tabvm("gen", "--out", tmp) for _ in range(5)]
    print(f"regenerate all specs (in process, {runs} runs): median "
          f"{statistics.median(times) * 1000:.1f} ms, min {min(times) * 1000:.1f} ms")
    print(f"`tabvm gen` whole command (5 runs): median {statistics.median(cmd):.2f} s")


def compiled() -> list[str]:
    return (REPO / "build" / "qemu-compiled.txt").read_text().split()


def bench_spec_edit() -> None:
    original = SPEC.read_text()
    assert "design_capacity: 38000" in original
    print("spec edit: warming up (tabvm build)...", flush=True)
    tabvm("build")
    try:
        SPEC.write_text(original.replace("design_capacity: 38000", "design_capacity: 38001"))
        edit = tabvm("build")
        objs = compiled()
    finally:
        SPEC.write_text(original)
        revert = tabvm("build")
    print(f"one-line spec edit -> rebuilt qemu-system-x86_64: {edit:.1f} s "
          f"(revert: {revert:.1f} s); QEMU compiled {len(objs)} C file(s): "
          f"{', '.join(objs) or 'none'}")
    noop = tabvm("build")
    print(f"no-change `tabvm build`: {noop:.1f} s")


def bench_full() -> None:
    from tabvm.paths import cache_dir
    real_dl = cache_dir() / "dl"
    with tempfile.TemporaryDirectory(prefix="tabvm-bench-") as tmp:
        os.symlink(real_dl, Path(tmp) / "dl")
        env = {**os.environ, "TABVM_CACHE": tmp}
        builddir = Path(tmp) / "build"
        start = time.perf_counter()
        tabvm("build", "--builddir", str(builddir), env=env)
        total = time.perf_counter() - start
        n = len((builddir / "qemu-compiled.txt").read_text().split())
    print(f"full QEMU build (unpack + patch + configure + ninja, cached tarball): "
          f"{total:.0f} s wall, {n} C files, {os.cpu_count()} CPUs")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--full", action="store_true", help="also time a cold QEMU build")
    args = p.parse_args()
    bench_regenerate()
    bench_spec_edit()
    if args.full:
        bench_full()


if __name__ == "__main__":
    main()
