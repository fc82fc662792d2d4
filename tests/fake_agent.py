"""A scripted stand-in for the guest agent, for tests of glue/agent_client.py."""

from __future__ import annotations

import socket
import threading

from glue.agent_client import AgentClient


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
