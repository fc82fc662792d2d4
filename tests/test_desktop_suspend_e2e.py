"""The desktop as an app: suspended (QEMU exits, the guest's RAM stays in its
file) and resumed with a Bluetooth connection, an audio stream and a network
connection open, through the guest's own stacks (BlueZ, PipeWire, the kernel's
TCP), reached only through qemu-guest-agent.

What survives, and why:
- the screen: pixel-identical (the display device's state and the guest's RAM
  are in the checkpoint);
- Bluetooth: the controller's state lives in the host's peer, not in QEMU, so
  the glue detaches it before the suspend and the LE link ends. The guest's
  BlueZ recovers the controller by itself (the same address: powered again, the
  trusted device remembered) and the connection is made again at the first try.
  BlueZ reconnects on its own only for the profiles it auto-connects (HID over
  GATT, LE Audio); the peer serves a plain GATT service, so the client does;
- the network: the TCP connection's host end was a socket of the QEMU that
  exited (libslirp keeps only guestfwd sockets in a migration), so the
  connection is gone. The guest's TCP learns it at its next segment (the new
  libslirp answers an unknown connection with a reset): the application gets
  ECONNRESET at once instead of hanging, and a new connection works at once
  (the address, route and DNS of the guest are unchanged).
"""

from __future__ import annotations

import re
import socket
import threading
import time

import pytest

from desktop_harness import Desktop, desktop_profile
from glue.bt_backend import DEFAULT_ADVERTISER_ADDRESS as PEER
from test_desktop_bt_e2e import btctl, connect, gatt_reads, wait_powered

pytestmark = pytest.mark.e2e

RECOVERY_S = 5.0
SLIRP_HOST = "10.0.2.2"         # the host, as user-mode networking shows it to the guest


@pytest.fixture(scope="module")
def desktop_image(build_outputs):
    from tabvm.desktop_image import build_desktop_image
    return build_desktop_image(progress=lambda m: print("desktop image:", m))


class EchoServer:
    """A TCP server on the host (127.0.0.1): echoes lines, counts connections
    and remembers when each one ended."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.closed: list[float] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    def _echo(self, conn: socket.socket):
        with conn:
            try:
                while data := conn.recv(4096):
                    conn.sendall(data)
            except OSError:
                pass
        self.closed.append(time.monotonic())

    def close(self):
        self.sock.close()


@pytest.fixture(scope="module")
def vm(desktop_image, build_outputs, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("suspend")
    profile = desktop_profile(
        tmp, "desktop-app",
        devices={"battery": {"source": "simulated"}, "touchscreen": {},
                 "bluetooth": {"peer": "bumble"}, "audio": {"backend": "opensles"}})
    d = Desktop(profile, "desktop-app", build_outputs.root, tmp / "state")
    d.tmp = tmp
    d.server = EchoServer()
    try:
        d.glue.running(timeout=120)
        d.wait_session()
        yield d
    finally:
        d.glue.stop()
        d.server.close()


#: The guest's client: a line every 0.2 s over one TCP connection, each echo
#: logged; when the connection fails, the error and its time, then it stops
NET_CLIENT = """
exec 3<>/dev/tcp/{host}/{port} || exit 1
while echo ping >&3 && read -t 3 line <&3; do
    echo "ok $(date +%s.%N)" >> /run/tabvm-net.log; sleep 0.2
done
echo "broken $(date +%s.%N)" >> /run/tabvm-net.log
"""


def net_log(vm: Desktop) -> list[str]:
    return vm.sh("cat /run/tabvm-net.log 2>/dev/null || true").split("\n")


def test_suspend_and_resume_with_connections_open(vm):
    # -- open: a Bluetooth connection, a network connection -----------------
    wait_powered(vm, "yes")
    btctl(vm, "--timeout", "6", "scan", "on", timeout=60)
    connect(vm)
    assert "trust succeeded" in btctl(vm, "trust", PEER)
    vm.sh("rm -f /run/tabvm-net.log; cd / && setsid bash -c '"
          + NET_CLIENT.format(host=SLIRP_HOST, port=vm.server.port).replace("'", "'\\''")
          + "' </dev/null >/dev/null 2>&1 &")
    deadline = time.monotonic() + 30
    while sum(line.startswith("ok") for line in net_log(vm)) < 3:
        assert time.monotonic() < deadline, net_log(vm)
        time.sleep(0.5)
    assert vm.server.accepted == 1

    # -- suspend and resume: the same screen ---------------------------------
    for _ in range(2):              # the panel clock's minute may tick: once more
        before = vm.screenshot(vm.tmp / "before.png")
        reply = vm.glue.event("suspend")
        assert reply["ok"] and reply["state"] == "suspended", reply
        suspended = time.monotonic()
        time.sleep(1)
        reply = vm.glue.event("resume")
        assert reply["ok"] and reply["source"] == "checkpoint", reply
        resumed = time.monotonic()
        after = vm.screenshot(vm.tmp / "after.png")
        if after.tobytes() == before.tobytes():
            break
    assert after.tobytes() == before.tobytes()

    # -- Bluetooth: BlueZ has the controller again; one connect makes the link
    while True:
        out = btctl(vm, "connect", PEER)
        if "Connection successful" in out:
            break
        assert time.monotonic() - resumed < RECOVERY_S * 3, out
        time.sleep(0.3)
    bt_s = time.monotonic() - resumed
    print(f"Bluetooth: connected again {bt_s:.1f} s after the resume")
    assert bt_s <= RECOVERY_S
    first, second = gatt_reads(vm)
    assert second == first + 1

    # -- network: the old connection is reset at once, a new one works ---------
    host_closed = [t for t in vm.server.closed if t >= suspended - 1]
    assert host_closed, "the host end of the connection did not close with the suspend"
    deadline = resumed + RECOVERY_S * 3
    while not any(line.startswith("broken") for line in net_log(vm)):
        assert time.monotonic() < deadline, net_log(vm)
        time.sleep(0.3)
    broken_s = time.monotonic() - resumed
    new = vm.sh(f"exec 3<>/dev/tcp/{SLIRP_HOST}/{vm.server.port} && echo again >&3 && "
                "read -t 5 line <&3 && echo \"$line\"")
    net_s = time.monotonic() - resumed
    print(f"network: the old connection reported broken within {broken_s:.1f} s, "
          f"a new one answered {net_s:.1f} s after the resume")
    assert new.strip() == "again"
    assert vm.server.accepted == 2
    assert net_s <= RECOVERY_S
    assert re.match(r"ok ", net_log(vm)[0])
