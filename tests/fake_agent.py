"""Guest agents for host-side tests of guest/agent.c and glue/agent_client.py: a
scripted stand-in, the real agent on a pty, and the agent built against a
simulated kernel."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import tty
from pathlib import Path

import pytest

from glue.agent_client import AgentClient
from tabvm import guest


class PtyAgents:
    """Agent binaries serving ptys, started during one test; stop() ends them."""

    def __init__(self) -> None:
        self.started: list[tuple[int, int, subprocess.Popen]] = []

    def start(self, binary: Path, env: dict[str, str] | None = None
              ) -> tuple[AgentClient, subprocess.Popen]:
        master, slave = os.openpty()
        tty.setraw(slave)           # no echo even before the agent sets raw mode
        proc = subprocess.Popen([str(binary), os.ttyname(slave)],
                                env={**os.environ, **(env or {})})
        self.started.append((master, slave, proc))
        client = AgentClient(master)
        client.wait_ready(timeout=20)
        return client, proc

    def stop(self) -> list[str]:
        """Kills every agent; returns a message for each that had died before."""
        died = []
        for master, slave, proc in self.started:
            if proc.poll() is not None:
                died.append(f"the agent died (exit {proc.returncode})")
            proc.kill()
            proc.wait()
            os.close(master)
            os.close(slave)
        self.started.clear()
        return died


def compile_with_fakes(binary: Path, sources: list[Path], flags: list[str] = (),
                       libs: list[str] = ()) -> Path:
    """Builds guest/agent.c (included by ``sources`` as AGENT_C) with a simulated
    kernel, under AddressSanitizer and UBSan; skips without a sanitizer runtime."""
    cmd = ["gcc", "-g", "-O1", "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
           "-fno-omit-frame-pointer", "-Wall", "-Wno-unused-function", *flags,
           f'-DAGENT_C="{guest.AGENT_SRC}"', "-o", str(binary), *map(str, sources), *libs]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode and "sanitize" in proc.stderr:
        pytest.skip(f"no sanitizer runtime: {proc.stderr[-300:]}")
    if proc.returncode and "sound/asound.h" in proc.stderr:
        pytest.skip("no <sound/asound.h> on the host (Debian package linux-libc-dev)")
    assert proc.returncode == 0, proc.stderr
    return binary


class FakeAgent:
    """Answers requests on one end of a socketpair with scripted (status, payload)
    pairs, recording the request lines."""

    def __init__(self, answers: list[tuple[str, str]]):
        self.ours, theirs = socket.socketpair()
        self.client = AgentClient(theirs)
        self.answers = list(answers)
        self.requests: list[str] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        buf = b""
        while self.answers:
            data = self.ours.recv(65536)
            if not data:
                return
            buf += data
            while b"\n" in buf and self.answers:
                line, buf = buf.split(b"\n", 1)
                rid, rest = line.decode().split(" ", 1)
                self.requests.append(rest)
                status, payload = self.answers.pop(0)
                body = payload.encode()
                self.ours.sendall(f"{rid} {status} {len(body)}\n".encode() + body + b"\n")

    def nothing_sent(self) -> bool:
        """True if no request came (call only when no answers are scripted)."""
        self.thread.join(5)
        try:
            return self.ours.recv(1, socket.MSG_DONTWAIT | socket.MSG_PEEK) == b""
        except BlockingIOError:
            return True
