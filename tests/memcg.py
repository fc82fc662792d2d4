"""A memory cgroup for host-pressure runs: limit, usage, OOM kills.

Made under this process's own memory cgroup, cgroup v2 (unified hierarchy) or
v1 (the ``memory`` controller), whichever the machine has and lets us write.
``MemoryCgroup.create`` raises ``CgroupUnavailable`` with the reason when neither
can be made (e.g. a read-only /sys/fs/cgroup in a container).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from glue.balloon import read_cgroup_stat

ROOT = Path("/sys/fs/cgroup")


class CgroupUnavailable(RuntimeError):
    pass


def _own_path(controller: str) -> str | None:
    """This process's cgroup path for a v1 controller, or for v2 (``""``)."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(",") or (controller == "" and controllers == ""):
            return path
    return None


@dataclass
class MemoryCgroup:
    path: Path
    v2: bool

    @classmethod
    def create(cls, name: str, limit: int) -> MemoryCgroup:
        reasons = []
        candidates = []
        v2_path = _own_path("")
        for base in (ROOT, ROOT / "unified"):
            if v2_path is not None and (base / "cgroup.controllers").exists():
                candidates.append((base / v2_path.lstrip("/"), True))
        v1_path = _own_path("memory")
        if v1_path is not None and (ROOT / "memory").is_dir():
            candidates.append((ROOT / "memory" / v1_path.lstrip("/"), False))
        for parent, v2 in candidates:
            if v2 and "memory" not in (parent / "cgroup.subtree_control").read_text().split():
                reasons.append(f"{parent}: the memory controller is not enabled for "
                               "children")
                continue
            path = parent / f"{name}-{os.getpid()}"
            try:
                path.mkdir()
            except OSError as exc:
                reasons.append(f"{path}: {exc.strerror}")
                continue
            cg = cls(path, v2)
            try:
                cg.set_limit(limit)
            except OSError as exc:
                reasons.append(f"{path}: {exc.strerror}")
                cg.remove()
                continue
            return cg
        raise CgroupUnavailable("; ".join(reasons) or "no memory cgroup hierarchy")

    def _file(self, v2: str, v1: str) -> Path:
        return self.path / (v2 if self.v2 else v1)

    def set_limit(self, limit: int) -> None:
        if self.v2:
            (self.path / "memory.max").write_text(str(limit))
            if (self.path / "memory.swap.max").exists():
                (self.path / "memory.swap.max").write_text("0")
        else:
            (self.path / "memory.limit_in_bytes").write_text(str(limit))

    @property
    def limit(self) -> int:
        text = self._file("memory.max", "memory.limit_in_bytes").read_text().strip()
        return 1 << 62 if text == "max" else int(text)

    @property
    def usage(self) -> int:
        return int(self._file("memory.current", "memory.usage_in_bytes").read_text())

    @property
    def file_cache(self) -> int:
        """Page cache charged to the cgroup: reclaimable, so no limit binds on it."""
        stat = read_cgroup_stat(self.path / "memory.stat")
        return stat["file"] if self.v2 else stat.get("total_cache", stat.get("cache", 0))

    @property
    def oom_kills(self) -> int:
        if self.v2:
            for line in (self.path / "memory.events").read_text().splitlines():
                if line.startswith("oom_kill "):
                    return int(line.split()[1])
            return 0
        for line in (self.path / "memory.oom_control").read_text().splitlines():
            if line.startswith("oom_kill "):
                return int(line.split()[1])
        return 0

    def add(self, pid: int) -> None:
        (self.path / "cgroup.procs").write_text(str(pid))

    def pids(self) -> list[int]:
        return [int(p) for p in (self.path / "cgroup.procs").read_text().split()]

    def remove(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
