"""The Debian desktop with every tablet device, through its own stacks: the
Bluetooth controller through BlueZ (tests in desktop_bt.py), audio through
PipeWire (desktop_audio.py), both run here on this module's one desktop to
boot it once; then the desktop as an app: suspended (QEMU exits, the guest's RAM stays in its
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
- audio: the stream goes on by itself. The HDA device's state is in the
  checkpoint; the new QEMU opens a new OpenSL ES player, and the guest's
  PipeWire keeps writing its stream: the tone sounds again from the resumed
  QEMU's first seconds, and the player exits normally at its end;
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

from audio_analysis import read_wav, silent_runs, sounding, tone_frequency
import desktop_audio
import desktop_bt
from desktop_audio import as_user, tone_wav, wait_for
from desktop_bt import btctl, connect, gatt_reads, wait_powered
from desktop_harness import Desktop, desktop_profile, free_port
from glue.bt_backend import DEFAULT_ADVERTISER_ADDRESS as PEER

pytestmark = pytest.mark.e2e

# the device tests, on this module's desktop, in this order
test_pipewire_plays_a_1_khz_tone_through_hda = \
    desktop_audio.test_pipewire_plays_a_1_khz_tone_through_hda
test_pipewire_records_the_440_hz_input = desktop_audio.test_pipewire_records_the_440_hz_input
test_a_minute_of_playback_without_underruns = \
    desktop_audio.test_a_minute_of_playback_without_underruns
test_bluez_powers_the_controller_scans_connects_and_reads_gatt = \
    desktop_bt.test_bluez_powers_the_controller_scans_connects_and_reads_gatt
test_the_controller_survives_a_bluetoothd_restart = \
    desktop_bt.test_the_controller_survives_a_bluetoothd_restart
test_the_controller_survives_rfkill_block_and_unblock = \
    desktop_bt.test_the_controller_survives_rfkill_block_and_unblock

RECOVERY_S = 5.0
SLIRP_HOST = "10.0.2.2"         # the host, as user-mode networking shows it to the guest


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
    tmp = tmp_path_factory.mktemp("app")
    qmp = free_port()
    profile = desktop_profile(
        tmp, "desktop-app", qmp_tcp=f"127.0.0.1:{qmp}",
        devices={"battery": {"source": "simulated"}, "touchscreen": {},
                 "bluetooth": {"peer": "bumble"}, "audio": {"backend": "opensles"}})
    d = Desktop(profile, "desktop-app", build_outputs.root, tmp / "state")
    d.tmp, d.qmp_port = tmp, qmp
    d.server = EchoServer()
    try:
        d.glue.running(timeout=120)
        d.wait_session()
        # the session's sound server is up (socket-activated for the user)
        wait_for(lambda: d.exec(*as_user("pactl", "info"), timeout=30).returncode == 0,
                 60, "pipewire-pulse does not answer")
        for name, seconds in (("tone1k", 10), ("tone", 40)):
            p = d.exec("sh", "-c", f"cat > /tmp/{name}.wav", stdin=tone_wav(1000, seconds),
                       timeout=60)
            assert p.returncode == 0, p
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


#: Run at once after a resume: when (uptime) BlueZ connects the peer again, a
#: new TCP connection answers, and the old one is reported broken
RECOVERY_SCRIPT = """
up() {{ cut -d' ' -f1 /proc/uptime; }}
echo "t0 $(up)"
(until bluetoothctl connect {peer} | grep -q 'Connection successful'; do sleep 0.3; done
 echo "bt $(up)") &
(exec 3<>/dev/tcp/{host}/{port} && echo again >&3 && read -t 5 line <&3 &&
 [ "$line" = again ] && echo "net $(up)") &
(until grep -q broken /run/tabvm-net.log; do sleep 0.2; done; echo "broken $(up)") &
wait
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
    # an audio stream: 40 s of 1 kHz through PipeWire, its exit status logged
    player = " ".join(as_user("paplay", "/tmp/tone.wav"))
    vm.sh("rm -f /run/tabvm-audio.log; cd / && setsid sh -c "
          f"'{player}; echo exit $? > /run/tabvm-audio.log' </dev/null >/dev/null 2>&1 &")
    time.sleep(5)

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

    # -- Bluetooth and network, at once, timed in the guest (its uptime: the
    # glue corrects the wall clock just after a resume): BlueZ has the
    # controller again and one connect makes the link; the old TCP connection
    # is reported broken and a new one answers
    script = RECOVERY_SCRIPT.format(peer=PEER, host=SLIRP_HOST, port=vm.server.port)
    started = time.monotonic() - resumed
    out = vm.exec("bash", "-c", script, timeout=120).stdout.decode()
    marks = {k: float(v) for k, v in re.findall(r"^(\w+) ([\d.]+)$", out, re.M)}
    assert {"t0", "bt", "net", "broken"} <= set(marks), out
    took = {k: started + marks[k] - marks["t0"] for k in ("bt", "net", "broken")}
    print(f"after the resume (at most): Bluetooth connected again {took['bt']:.1f} s, "
          f"the old TCP connection reported broken {took['broken']:.1f} s, "
          f"a new one answered {took['net']:.1f} s")
    assert max(took.values()) <= RECOVERY_S, (took, out)
    first, second = gatt_reads(vm)
    assert second == first + 1
    host_closed = [t for t in vm.server.closed if t >= suspended - 1]
    assert host_closed, "the host end of the connection did not close with the suspend"
    assert vm.server.accepted == 2
    assert re.match(r"ok ", net_log(vm)[0])

    # -- audio: the resumed QEMU plays the stream on; after a seam it is whole --
    wav = read_wav(vm.glue.rundir / "playback.wav")  # the resumed QEMU's stand-in's
    tone = wav.frames[0]
    gaps = [(start, n) for start, n in silent_runs(tone, 0) if n > 8]
    print(f"audio: gaps after the resume (at s, ms): "
          f"{[(round(g / wav.rate, 2), round(n * 1000 / wav.rate)) for g, n in gaps[:10]]}")
    whole_from = (gaps[-1][0] + gaps[-1][1]) if gaps else sounding(tone, 300)[0]
    audio_s = whole_from / wav.rate
    print(f"audio: the stream is whole again {audio_s:.2f} s into the resumed QEMU's "
          f"output, for the {(len(tone) - whole_from) / wav.rate:.1f} s since")
    assert audio_s <= RECOVERY_S
    assert len(tone) - whole_from >= 2 * wav.rate
    assert abs(tone_frequency(tone[whole_from:], wav.rate) - 1000.0) < 1.0

    # -- the audio stream ran to its end: the player exited normally ---------
    deadline = time.monotonic() + 60
    while not (done := vm.sh("cat /run/tabvm-audio.log 2>/dev/null || true").strip()):
        assert time.monotonic() < deadline, "paplay did not finish"
        time.sleep(1)
    assert done == "exit 0", done
