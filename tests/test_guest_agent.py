"""glue.guest_agent against a stand-in qemu-guest-agent on a unix socket that
speaks QGA's protocol as qga/main.c does (a parse error for the 0xFF reset,
guest-sync, guest-exec/guest-exec-status), including what a previous client can
leave behind, an agent that never answers, and one that closes."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from pathlib import Path

import pytest

from glue.guest_agent import ExecResult, GuestAgent, GuestAgentError


class FakeQga:
    """One client at a time, like QEMU's socket chardev in front of the agent."""

    def __init__(self, path: Path, stale: list[bytes] = (), mute: bool = False,
                 close_after_sync: bool = False):
        self.path, self.stale, self.mute = path, list(stale), mute
        self.close_after_sync = close_after_sync
        self.seen: list[dict] = []
        self.execs: dict[int, dict] = {}
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(4)
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                self.session(conn)

    def session(self, conn: socket.socket) -> None:
        buf = b""
        for line in self.stale:          # replies meant for a client that went away
            conn.sendall(line + b"\n")
        self.stale = []
        while True:
            try:
                chunk = conn.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            if buf.startswith(b"\xff"):
                buf = buf[1:]
                if not self.mute:
                    conn.sendall(b'{"error": {"class": "GenericError", "desc": '
                                 b'"JSON parse error, stray \'\\uFFFD\'"}}\n')
            while True:                  # a JSON stream, like QGA's (no newlines needed)
                text = buf.decode().lstrip()
                try:
                    req, end = json.JSONDecoder().raw_decode(text)
                except ValueError:
                    break
                buf = text[end:].encode()
                if self.mute:
                    continue
                self.seen.append(req)
                conn.sendall(json.dumps(self.answer(req)).encode() + b"\n")
                if req["execute"] == "guest-sync" and self.close_after_sync:
                    return

    def answer(self, req: dict) -> dict:
        args = req.get("arguments", {})
        name = req["execute"]
        if name == "guest-sync":
            return {"return": args["id"]}
        if name == "guest-ping":
            return {"return": {}}
        if name == "guest-exec":
            pid = 100 + len(self.execs)
            self.execs[pid] = {**args, "polls": 0}
            return {"return": {"pid": pid}}
        if name == "guest-exec-status":
            run = self.execs[args["pid"]]
            run["polls"] += 1
            if run["path"] == "sleep" or run["polls"] < 3:
                return {"return": {"exited": False}}
            stdin = base64.b64decode(run.get("input-data", ""))
            if run["path"] == "die":
                return {"return": {"exited": True, "signal": 9}}
            out = " ".join([run["path"], *run["arg"], *run.get("env", [])]).encode() + stdin
            return {"return": {"exited": True, "exitcode": 3,
                               "out-data": base64.b64encode(out).decode(),
                               "err-data": base64.b64encode(b"warn\n").decode()}}
        return {"error": {"class": "CommandNotFound",
                          "desc": f"The command {name} has not been found"}}

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def sock(tmp_path):
    return tmp_path / "qga.sock"


def test_exec_round_trip(sock):
    qga = FakeQga(sock)
    try:
        with GuestAgent(sock, timeout=2) as agent:
            agent.ping()
            r = agent.exec(["echo", "hi"], env=["A=1"], stdin=b"<in>")
        assert r == ExecResult(exitcode=3, signal=None, stdout=b"echo hi A=1<in>",
                               stderr=b"warn\n")
        assert r.status == 3
        assert qga.seen[2] == {"execute": "guest-exec", "arguments": {
            "path": "echo", "arg": ["hi"], "capture-output": True, "env": ["A=1"],
            "input-data": base64.b64encode(b"<in>").decode()}}
    finally:
        qga.close()


def test_a_signal_is_128_plus_it(sock):
    qga = FakeQga(sock)
    try:
        with GuestAgent(sock, timeout=2) as agent:
            r = agent.exec(["die"])
        assert (r.exitcode, r.signal, r.status) == (None, 9, 137)
    finally:
        qga.close()


def test_stale_replies_from_a_previous_client_are_dropped(sock):
    qga = FakeQga(sock, stale=[b'{"return": {"pid": 7}}', b'{"return": 12345}',
                               b'{"error": {"class": "GenericError", "desc": "x"}}',
                               b'not json at all'])
    try:
        with GuestAgent(sock, timeout=2) as agent:
            assert agent.cmd("guest-ping") == {}
            assert agent.exec(["true"]).status == 3
    finally:
        qga.close()


def test_an_agent_that_never_answers_is_an_error_not_a_hang(sock):
    qga = FakeQga(sock, mute=True)
    try:
        t0 = time.monotonic()
        with pytest.raises(GuestAgentError, match="did not answer within 1 s"):
            GuestAgent(sock, timeout=1).connect()
        assert time.monotonic() - t0 < 5
    finally:
        qga.close()


def test_an_agent_that_goes_away(sock):
    """Closed right after the sync: a GuestAgentError (from connecting or from the
    next command, whichever sees the end first), never a hang or a traceback."""
    qga = FakeQga(sock, close_after_sync=True)
    try:
        with pytest.raises(GuestAgentError, match="connection"):
            with GuestAgent(sock, timeout=2) as agent:
                agent.ping()
    finally:
        qga.close()


def test_no_socket(sock):
    with pytest.raises(GuestAgentError, match="cannot talk to the guest agent"):
        GuestAgent(sock, timeout=1).connect()


def test_command_errors_and_timeouts(sock):
    qga = FakeQga(sock)
    try:
        with GuestAgent(sock, timeout=2) as agent:
            with pytest.raises(GuestAgentError, match="guest-nope: The command guest-nope"):
                agent.cmd("guest-nope")
            with pytest.raises(GuestAgentError, match="still running after 0.3 s"):
                agent.exec(["sleep"], timeout=0.3)
            with pytest.raises(ValueError):
                agent.exec([])
    finally:
        qga.close()


def test_one_client_at_a_time(sock):
    """A second client waits for the lock the first holds, and says so when it
    waits too long."""
    qga = FakeQga(sock)
    try:
        first = GuestAgent(sock, timeout=2).connect()
        with pytest.raises(GuestAgentError, match="busy with another client"):
            GuestAgent(sock, timeout=2, lock_timeout=0.3).connect()
        first.close()
        with GuestAgent(sock, timeout=2, lock_timeout=0.3) as second:
            second.ping()
    finally:
        qga.close()
