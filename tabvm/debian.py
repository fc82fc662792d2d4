"""Debian archive access through apt, without changing the machine's apt setup.

A private apt configuration (lists and cache under the tabvm cache) adds a
``deb-src`` entry for another suite built from the archive URI the machine already
uses, so no host name is written anywhere.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from .paths import cache_subdir

SYSTEM_SOURCES = (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list"))
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"


class AptError(RuntimeError):
    pass


def archive_uri() -> str:
    """The Debian archive URI this machine's apt already uses."""
    for path in SYSTEM_SOURCES:
        if not path.exists():
            continue
        text = path.read_text()
        for line in text.splitlines():
            m = re.match(r"\s*URIs:\s*(\S+)", line)
            if m and "security" not in m.group(1):
                return m.group(1)
            m = re.match(r"\s*deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+\S+", line)
            if m and "security" not in m.group(1):
                return m.group(1)
    raise AptError("cannot find the Debian archive in /etc/apt sources; "
                   "configure apt for Debian first")


class PrivateApt:
    """apt-get/apt-cache with their own sources, lists and cache."""

    def __init__(self, suite: str, types: str = "deb-src"):
        self.root = cache_subdir("apt", f"{suite}-{types}")
        for sub in ("lists/partial", "cache/archives/partial", "parts"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        sources = (f"Types: {types}\nURIs: {archive_uri()}\nSuites: {suite}\n"
                   f"Components: main\nSigned-By: {KEYRING}\n")
        entry = self.root / "parts" / "tabvm.sources"
        if not entry.exists() or entry.read_text() != sources:
            entry.write_text(sources)

    def options(self) -> list[str]:
        r = self.root
        return ["-o", "Dir::Etc::SourceList=/dev/null",
                "-o", f"Dir::Etc::SourceParts={r / 'parts'}",
                "-o", f"Dir::State::Lists={r / 'lists'}",
                "-o", f"Dir::Cache={r / 'cache'}",
                "-o", "Debug::NoLocking=1",
                "-o", "APT::Sandbox::User=root"]

    def run(self, tool: str, *args: str, cwd: Path | None = None) -> str:
        cmd = [tool, *self.options(), *args]
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise AptError(f"{' '.join([tool, *args])} failed:\n{proc.stderr.strip()}")
        return proc.stdout

    def update(self) -> None:
        self.run("apt-get", "update")

    def source_download(self, package: str, version: str, dest: Path) -> None:
        """``apt-get source --download-only package=version`` into ``dest``."""
        dest.mkdir(parents=True, exist_ok=True)
        self.run("apt-get", "source", "--download-only", f"{package}={version}", cwd=dest)
