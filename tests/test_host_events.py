"""glue/host_events.py (the host-event socket) with the balloon's events, and
glue/ctl.py (``tabvm ctl``), against FakeQemu (tests/test_balloon_glue.py)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time

import pytest

from glue.balloon import AndroidHostAdapter, BalloonBridge, PolicyLink
from glue.ctl import add_ctl_arguments, cmd_ctl, parse_fields
from glue.host_events import SOCKET_NAME, HostEventServer, request
from test_balloon_glue import ANDROID_MINFREE, SPEC, Clock, Logs, qemu  # noqa: F401 (fixture)

T = 226_492_416


class Client:
    """One connection to the host-event socket."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5)
        self.sock.connect(str(path))
        self.file = self.sock.makefile("rb")

    def raw(self, data: bytes) -> dict:
        self.sock.sendall(data)
        line = self.file.readline()
        assert line.endswith(b"\n"), line
        return json.loads(line)

    def send(self, obj) -> dict:
        return self.raw(json.dumps(obj).encode() + b"\n")

    def close(self):
        self.file.close()
        self.sock.close()


@pytest.fixture
def rundir(tmp_path):
    d = tmp_path / "vm-1"
    d.mkdir(mode=0o700)
    return d


@pytest.fixture
def env(rundir, qemu):
    """(server, bridge, fake QEMU, logs) with the balloon's events registered."""
    logs = Logs()
    bridge = BalloonBridge(PolicyLink(qemu.path, timeout=1), SPEC,
                           android=AndroidHostAdapter(SPEC, clock=Clock()), log=logs)
    server = HostEventServer(rundir, log=logs)
    bridge.register(server)
    server.start()
    yield server, bridge, qemu, logs
    server.stop()
    bridge.stop()


@pytest.fixture
def client(env):
    c = Client(env[0].path)
    yield c
    c.close()


# --- the socket ---------------------------------------------------------------------

def test_socket_is_private(env, rundir):
    server = env[0]
    assert server.path == rundir / SOCKET_NAME
    st = server.path.lstat()
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    server.stop()
    assert not server.path.exists()


def test_refuses_an_open_rundir(tmp_path):
    d = tmp_path / "open"
    d.mkdir()
    d.chmod(0o755)
    with pytest.raises(OSError, match="open to other users .*0755"):
        HostEventServer(d).start()
    assert not (d / SOCKET_NAME).exists()


def test_replaces_a_stale_socket(rundir):
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(rundir / SOCKET_NAME))
    stale.close()                                   # the path stays, nobody listens
    server = HostEventServer(rundir)
    server.register("ping", lambda ev: {"pong": True})
    with server:
        assert request(server.path, {"event": "ping"}) == {"ok": True, "pong": True}


# --- good events --------------------------------------------------------------------

def test_balloon_events(env, client):
    server, bridge, qemu, logs = env
    assert server.events() == ["background", "foreground", "lmkd", "memory-info",
                               "pressure", "status", "trim-memory"]
    r = client.send({"event": "pressure", "level": "low"})
    assert r["ok"] is True and r["level"] == "low" and r["qemu"]["host_level"] == "low"
    assert qemu.lines == ["level low", "foreground"]
    r = client.send({"event": "background"})
    assert r == {"ok": True, "level": "low", "foreground": False,
                 "qemu": {"level": "low", "host_level": "low", "foreground": False,
                          "target": 0}}
    assert qemu.lines[2:] == ["background"]
    client.send({"event": "pressure", "level": "normal"})
    r = client.send({"event": "lmkd", "minfree": ANDROID_MINFREE, "free_kib": 0})
    assert r["level"] == "critical" and qemu.host_level == "critical"
    r = client.send({"event": "lmkd", "minfree": ANDROID_MINFREE, "free_kib": 10 << 20})
    assert r["level"] == "normal"
    r = client.send({"event": "memory-info", "avail": 2 * T - 1, "threshold": T,
                     "total": 4 << 30, "low": False})
    assert r["level"] == "low" and qemu.host_level == "low"
    r = client.send({"event": "trim-memory", "level": "RUNNING_CRITICAL"})
    assert r["level"] == "critical"
    r = client.send({"event": "trim-memory", "level": 10})        # the value works too
    assert r["level"] == "low"
    r = client.send({"event": "foreground"})
    assert r["foreground"] is True and qemu.foreground is True
    r = client.send({"event": "trim-memory", "level": "UI_HIDDEN"})
    assert r["foreground"] is False and qemu.foreground is False
    assert qemu.lines[-1] == "background"


def test_status(env, client):
    server, bridge, qemu, logs = env
    client.send({"event": "lmkd", "minfree": ANDROID_MINFREE, "free_kib": 147_456 + 1000})
    r = client.send({"event": "status"})
    assert r["ok"] is True and r["level"] == "critical" and r["foreground"] is True
    assert r["sources"] == {"pressure": "normal", "lmkd": "critical"}
    assert r["android"]["lmkd"] == {"free_kib": 148_456, "kill_line_kib": 147_456}
    assert r["qemu"] == {"level": "critical", "host_level": "critical", "foreground": True,
                         "target": 0}


def test_several_clients(env):
    server, bridge, qemu, logs = env
    clients = [Client(server.path) for _ in range(5)]
    try:
        for i in range(3):
            for n, c in enumerate(clients):
                level = ["normal", "moderate", "low", "critical"][(n + i) % 4]
                assert c.send({"event": "pressure", "level": level})["level"] == level
        results = []

        def hammer(c):
            results.extend(c.send({"event": "status"})["ok"] for _ in range(10))

        threads = [threading.Thread(target=hammer, args=(c,)) for c in clients]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results == [True] * 50
    finally:
        for c in clients:
            c.close()


# --- bad input ----------------------------------------------------------------------

BAD = [
    (b"{not json}\n", "bad JSON"),
    (b"[1, 2]\n", "a request is a JSON object"),
    (b'"pressure"\n', "a request is a JSON object"),
    (b'{"level": "low"}\n', 'needs "event"'),
    (b'{"event": 7}\n', 'needs "event"'),
    (b'{"event": "reboot"}\n', "unknown event 'reboot' (events: background, foreground"),
    (b'{"event": "pressure"}\n', "pressure: missing field level"),
    (b'{"event": "pressure", "level": 2}\n', "field level must be a string, not 2"),
    (b'{"event": "pressure", "level": "high"}\n', "unknown level 'high'"),
    (b'{"event": "pressure", "level": "low", "why": "x"}\n',
     "pressure: unexpected field why (fields: level)"),
    (b'{"event": "pressure", "level": "low", "level": "critical"}\n', "duplicate key 'level'"),
    (b'{"event": "lmkd", "minfree": "18432:0", "free_kib": "1000"}\n',
     "field free_kib must be an integer"),
    (b'{"event": "lmkd", "minfree": "18432:0", "free_kib": true}\n',
     "field free_kib must be an integer, not true"),
    (b'{"event": "lmkd", "minfree": "18432:0", "free_kib": 1.5}\n', "must be an integer"),
    (b'{"event": "lmkd", "minfree": "18432:0", "free_kib": NaN}\n', "NaN is not JSON"),
    (b'{"event": "lmkd", "minfree": "18432;0", "free_kib": 1}\n', "bad minfree entry"),
    (b'{"event": "lmkd", "minfree": "18432:0", "free_kib": -1}\n', "must not be negative"),
    (b'{"event": "memory-info", "avail": 1, "threshold": 1, "total": 2, "low": 0}\n',
     "field low must be true or false, not 0"),
    (b'{"event": "memory-info", "avail": 1, "threshold": 1, "low": false}\n',
     "missing field total"),
    (b'{"event": "memory-info", "avail": 9, "threshold": 1, "total": 2, "low": false}\n',
     "avail (9) is more than total (2)"),
    (b'{"event": "trim-memory", "level": "SOMETIMES"}\n', "unknown trim-memory level"),
    (b'{"event": "trim-memory", "level": false}\n', "must be a string or an integer"),
    (b'{"event": "foreground", "now": true}\n', "unexpected field now (fields: none)"),
    (b'\xff\xfe{}\n', "not UTF-8"),
]


@pytest.mark.parametrize("line, error", BAD)
def test_bad_requests_change_nothing(env, client, line, error):
    server, bridge, qemu, logs = env
    client.send({"event": "lmkd", "minfree": ANDROID_MINFREE, "free_kib": 147_456 + 200 * 1024})
    before = (bridge.status(query_qemu=False), list(qemu.lines))
    reply = client.raw(line)
    assert reply["ok"] is False and error in reply["error"], reply
    assert set(reply) == {"ok", "error"}
    assert (bridge.status(query_qemu=False), qemu.lines) == before
    # the connection and the server still work
    assert client.send({"event": "pressure", "level": "critical"})["level"] == "critical"


def test_oversized_and_blank_lines(env, client):
    server, bridge, qemu, logs = env
    big = b'{"event": "pressure", "level": "' + b"x" * (70 * 1024) + b'"}\n'
    reply = client.raw(big)
    assert reply == {"ok": False, "error": "line too long (over 65536 bytes)"}
    # exactly at the limit is fine (and a bad level), blank lines get no reply
    body = b'{"event": "pressure", "level": "'
    at_limit = body + b"y" * (64 * 1024 - len(body) - 2) + b'"}'
    assert len(at_limit) == 64 * 1024
    reply = client.raw(b"\n\r\n   \n" + at_limit + b"\n")
    assert reply["ok"] is False and "unknown level 'yyy" in reply["error"]
    assert client.send({"event": "pressure", "level": "low"})["ok"] is True
    assert qemu.lines == ["level low", "foreground"]


def test_failing_handler_does_not_stop_the_server(rundir):
    logs = Logs()
    server = HostEventServer(rundir, log=logs)

    def broken(ev):
        raise RuntimeError("the VM is gone")

    server.register("suspend", broken)
    server.register("ping", lambda ev: {"seq": ev["seq"]}, optional={"seq": int})
    with server:
        c = Client(server.path)
        assert c.send({"event": "suspend"}) == {"ok": False,
                                                "error": "suspend failed: the VM is gone"}
        assert c.send({"event": "ping", "seq": 3}) == {"ok": True, "seq": 3}
        assert c.send({"event": "ping"}) == {"ok": False, "error": "ping failed: 'seq'"}
        c.close()
    assert logs.events("host-event-failed")[0]["name"] == "suspend"


def test_link_failure_is_an_error_reply(env, client):
    server, bridge, qemu, logs = env
    qemu.stop()
    bridge.link.connect_timeout = 0.1
    reply = client.send({"event": "pressure", "level": "low"})
    assert reply["ok"] is False and "cannot connect" in reply["error"]
    qemu.start()
    bridge.tick()                                     # the bridge's thread catches up
    assert qemu.host_level == "low"


def test_registry():
    server = HostEventServer("/nonexistent")
    server.register("resume", lambda ev: None)
    with pytest.raises(ValueError, match="already registered"):
        server.register("resume", lambda ev: None)
    with pytest.raises(ValueError, match="not field names"):
        server.register("x", lambda ev: None, fields={"event": str})
    assert server.handle_line(b'{"event": "resume"}') == {"ok": True}
    assert server.dispatch({"event": ["resume"]})["ok"] is False


# --- peer credentials ---------------------------------------------------------------

OTHER_UID = 65534

PEER = r"""
import json, os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(5)
s.connect(sys.argv[1])
try:
    s.sendall(b'{"event": "pressure", "level": "critical"}\n')
except OSError:
    pass
data = b""
while True:
    try:
        chunk = s.recv(4096)
    except OSError as exc:
        break
    if not chunk:
        break
    data += chunk
print(json.dumps({"uid": os.getuid(), "received": data.decode()}))
"""


def python_for(uid: int) -> str:
    """A Python that ``uid`` can run (the venv's may live under a 0700 home)."""
    tried = []
    for exe in dict.fromkeys([sys.executable, shutil.which("python3"), "/usr/bin/python3"]):
        if not exe:
            continue
        try:
            if subprocess.run([exe, "-I", "-c", "import json, socket"], user=uid, group=uid,
                              extra_groups=[], capture_output=True, timeout=30).returncode == 0:
                return exe
            tried.append(f"{exe}: fails")
        except OSError as exc:
            tried.append(f"{exe}: {exc.strerror}")
    pytest.skip(f"no Python that uid {uid} can run ({'; '.join(tried)})")


def test_other_uid_refused(qemu, tmp_path):
    if os.getuid() != 0:
        pytest.skip("needs root to run a client as another uid (as non-root there "
                    "is no other uid to become)")
    rundir = tmp_path / "vm-peer"
    rundir.mkdir(mode=0o700)
    logs = Logs()
    bridge = BalloonBridge(PolicyLink(qemu.path, timeout=1), SPEC, log=logs)
    server = HostEventServer(rundir, log=logs)
    bridge.register(server)
    try:
        server.start()
        # open the file permissions up, as a mistake would: SO_PEERCRED still refuses
        rundir.chmod(0o711)
        server.path.chmod(0o666)
        # the directories above (pytest's, /tmp) may be 0700: the child reaches the
        # socket through an inherited descriptor of the runtime directory
        dirfd = os.open(rundir, os.O_PATH | os.O_DIRECTORY)
        try:
            python = python_for(OTHER_UID)
            proc = subprocess.run([python, "-I", "-c", PEER,
                                   f"/proc/self/fd/{dirfd}/{SOCKET_NAME}"],
                                  user=OTHER_UID, group=OTHER_UID, extra_groups=[],
                                  pass_fds=(dirfd,), capture_output=True, text=True,
                                  timeout=30)
        finally:
            os.close(dirfd)
        assert proc.returncode == 0, proc.stderr
        out = json.loads(proc.stdout)
        assert out["uid"] == OTHER_UID
        replies = [json.loads(line) for line in out["received"].splitlines()]
        assert replies == [{"ok": False, "error": f"uid {OTHER_UID} may not use this "
                            "socket (only uid 0)"}]            # and then disconnected
        assert logs.events("host-events-refused") == [{"uid": OTHER_UID}]
        assert qemu.lines == [] and bridge.level() == 0
        # our own uid still gets through
        assert request(server.path, {"event": "pressure", "level": "low"})["ok"] is True
        assert qemu.lines == ["level low", "foreground"]
    finally:
        server.stop()
        bridge.stop()


def test_allowed_uids(rundir):
    server = HostEventServer(rundir)
    assert server.allowed_uids == {os.getuid(), 0}


# --- tabvm ctl ----------------------------------------------------------------------

def ctl(*argv):
    p = argparse.ArgumentParser(prog="tabvm ctl")
    add_ctl_arguments(p)
    return cmd_ctl(p.parse_args([str(a) for a in argv]))


def test_parse_fields():
    assert parse_fields(["avail=300", "low=false", "ok=true", "level=low", "n=-5",
                         "minfree=18432:0,23040:100", "s=", "x=1.5"]) == {
        "avail": 300, "low": False, "ok": True, "level": "low", "n": -5,
        "minfree": "18432:0,23040:100", "s": "", "x": "1.5"}
    for bad in (["level"], ["=1"], ["a=1", "a=2"], ["event=x"]):
        with pytest.raises(ValueError):
            parse_fields(bad)


def test_ctl_ok(env, rundir, capsys):
    server, bridge, qemu, logs = env
    assert ctl(rundir, "memory-info", "avail=300", f"threshold={T}", "total=4000000000",
               "low=true") == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is True and out["level"] == "critical"
    assert bridge.android.details()["memory-info"] == {
        "avail": 300, "threshold": T, "total": 4_000_000_000, "low": True}
    assert ctl(server.path, "background") == 0           # the socket itself works too
    assert qemu.foreground is False


def test_ctl_error_reply(env, rundir, capsys):
    assert ctl(rundir, "pressure", "level=high") == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out)["ok"] is False
    assert "unknown level 'high'" in captured.err
    assert ctl(rundir, "lmkd", "minfree=18432:0", "free_kib=x") == 1
    assert "free_kib must be an integer" in capsys.readouterr().err


def test_ctl_missing_socket(tmp_path, capsys):
    assert ctl(tmp_path, "status") == 2
    err = capsys.readouterr().err
    assert f"{tmp_path}/host-events.sock: no such socket" in err
    assert ctl(tmp_path / "nowhere", "status") == 2


def test_ctl_stale_socket(rundir, capsys):
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(rundir / SOCKET_NAME))
    stale.close()
    assert ctl(rundir, "status") == 2
    assert "cannot connect" in capsys.readouterr().err


def test_ctl_bad_fields(rundir, capsys):
    assert ctl(rundir, "pressure", "low") == 2
    assert "'low' is not key=value" in capsys.readouterr().err


def test_ctl_no_reply(rundir, capsys):
    mute = socket.socket(socket.AF_UNIX)
    mute.bind(str(rundir / SOCKET_NAME))
    mute.listen(1)
    try:
        t0 = time.monotonic()
        assert ctl(rundir, "status", "--timeout", "0.3") == 1
        assert time.monotonic() - t0 < 3
        assert "no reply" in capsys.readouterr().err
    finally:
        mute.close()
