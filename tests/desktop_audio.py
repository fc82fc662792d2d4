"""Audio through the Debian desktop's own sound server: PipeWire (with its
PulseAudio server, pipewire-pulse) plays and records through the guest's
snd-hda-intel, QEMU's HDA device and -audiodev opensles, here on the project's
OpenSL ES stand-in (its playback WAV, its 440 Hz capture sine and its log are
in the glue's run directory: glue.audio.standin_env).

The guest runs nothing of the project's: qemu-guest-agent (`tabvm exec`) runs
PipeWire's own clients (pw-play, pw-record, paplay) as the logged-in user, in
the user's session (XDG_RUNTIME_DIR). The tone they play is a WAV file the
test copies in. The backend's counters come from QMP (qom-get
/backend/audiodev-snd0).

The tests run in test_desktop_app_e2e.py, on its desktop (``vm``) with every
device; here are they and their helpers."""

from __future__ import annotations

import base64
import io
import math
import struct
import time
import wave

from audio_analysis import Wav, read_wav, silent_runs, sounding, tone_frequency
from desktop_harness import Desktop
from generator.ir import Opensles
from generator.main import check, spec_files
from glue.audio import AUDIODEV_ID
from tabvm.desktop_image import UID, USER

SPEC = next(d for d in check(spec_files()) if isinstance(d, Opensles) and d.name == "opensles")
RATE = 48000            # what the tone files are; PipeWire resamples as it needs
STATS = f"/backend/audiodev-{AUDIODEV_ID}"


def as_user(*argv: str) -> tuple[str, ...]:
    """argv as the desktop user, a client of the session's PipeWire."""
    return ("runuser", "-u", USER, "--", "env", f"XDG_RUNTIME_DIR=/run/user/{UID}", *argv)


def tone_wav(freq: float, seconds: float, amplitude: float = 0.5) -> bytes:
    """A mono 16-bit WAV of a sine."""
    n = int(RATE * seconds)
    peak = amplitude * 32767
    frames = struct.pack(f"<{n}h", *(round(peak * math.sin(2 * math.pi * freq * i / RATE))
                                     for i in range(n)))
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(frames)
    return out.getvalue()


def wait_for(ok, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not ok():
        assert time.monotonic() < deadline, what
        time.sleep(1)


def stats(vm: Desktop) -> dict[str, int]:
    """The OpenSL ES backend's counters, over QMP."""
    from qemu.qmp.legacy import QEMUMonitorProtocol
    qmp = QEMUMonitorProtocol(("127.0.0.1", vm.qmp_port))
    qmp.connect()
    try:
        return {p: qmp.cmd("qom-get", path=STATS, property=p)
                for p in ("underruns", "overruns", "buffers")}
    finally:
        qmp.close()


def played(vm: Desktop) -> Wav:
    """What the stand-in's player has played so far (its WAV's header is kept
    up to date every quarter of a second)."""
    return read_wav(vm.glue.rundir / "playback.wav")


def test_pipewire_plays_a_1_khz_tone_through_hda(vm):
    sinks = vm.exec(*as_user("pactl", "list", "short", "sinks")).stdout.decode()
    assert "alsa_output.pci" in sinks, sinks          # the HDA card, through ALSA
    p = vm.exec(*as_user("pw-play", "/tmp/tone1k.wav"), timeout=60)
    assert p.returncode == 0, p
    time.sleep(1)                                     # the WAV's header follows
    wav = played(vm)
    left = wav.frames[0][-12 * wav.rate:]             # this tone is in the last 12 s
    first, last = sounding(left, threshold=300)
    assert last - first >= 9 * wav.rate, (first, last, wav.rate)
    tone = left[first:last]
    # its pitch on its longest stretch without a gap: 1 kHz within 1 Hz
    cuts = [0] + [i for start, n in silent_runs(tone, 0) if n > 8
                  for i in (start, start + n)] + [len(tone)]
    a, b = max(zip(cuts[::2], cuts[1::2]), key=lambda c: c[1] - c[0])
    assert b - a >= wav.rate, cuts[:20]
    stretch = tone[a:a + 2 * wav.rate]
    assert abs(tone_frequency(stretch, wav.rate) - 1000.0) < 1.0


def test_pipewire_records_the_440_hz_input(vm):
    rec = "/tmp/rec.wav"
    record = " ".join(as_user("timeout", "4", "pw-record", "--rate", str(RATE),
                              "--channels", "1", "--format", "s16", rec))
    p = vm.exec("sh", "-c", f"rm -f {rec}; {record}; test -s {rec} && base64 {rec}",
                timeout=60)
    assert p.returncode == 0, p
    with wave.open(io.BytesIO(base64.b64decode(p.stdout)), "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (RATE, 1, 2)
        raw = w.readframes(w.getnframes())
    samples = list(struct.unpack(f"<{len(raw) // 2}h", raw))
    # the last 2 s (the source starts up first)
    tail = samples[-2 * RATE:]
    assert len(tail) == 2 * RATE, len(samples)
    rms = math.sqrt(sum(s * s for s in tail) / len(tail)) / 32768
    assert rms > 0.05, rms
    assert abs(tone_frequency(tail, RATE) - 440.0) < 1.0


def test_a_minute_of_playback_without_underruns(vm):
    """60 s through pipewire-pulse (paplay): the backend counts no underrun and
    OpenSL ES played a buffer every buffer length."""
    before = stats(vm)
    t0 = time.monotonic()
    p = vm.exec("sh", "-c", " && ".join(
        [" ".join(as_user("paplay", "/tmp/tone1k.wav"))] * 6), timeout=120)
    seconds = time.monotonic() - t0
    assert p.returncode == 0, p
    after = stats(vm)
    print(f"60 s of paplay took {seconds:.1f} s; backend: {before} -> {after}")
    assert seconds >= 59, seconds
    assert after["buffers"] - before["buffers"] >= 60_000 // SPEC.playback.buffer_ms * 0.95
    assert after["underruns"] == before["underruns"], (before, after)
