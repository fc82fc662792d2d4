"""The generated OpenSL ES audiodev drivers end to end: a real guest under TCG.

QEMU runs ich9-intel-hda + hda-duplex on -audiodev <driver> with the project's
OpenSL ES stand-in (opensles/standin, built as build/libOpenSLES.so): the guest's
snd-hda-intel plays a 1 kHz sine through /dev/snd (the guest agent's pcmplay) and
the stand-in writes what its player consumed to a WAV file; the stand-in feeds a
440 Hz sine to the recorder and the guest measures it (pcmrec). Every driver
generated from devspecs/ is tested, each from its own spec's defaults.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from audio_analysis import read_wav, silent_runs, sounding, tone_frequency
from glue.audio import audiodev, ensure_sound_card, standin_env
from generator.ir import Opensles
from generator.main import check, spec_files
from glue.agent_client import AgentClient
from glue.profile import builtin_profile
from glue.qemu import Qemu
from glue.runtime import new_runtime_dir

pytestmark = pytest.mark.e2e

DRIVERS = [d for d in check(spec_files()) if isinstance(d, Opensles)]
RATE = 48000


@dataclasses.dataclass
class Audio:
    spec: Opensles
    vm: Qemu
    agent: AgentClient
    rundir: Path

    @property
    def playback_wav(self) -> Path:
        return self.rundir / "playback.wav"      # glue.audio.standin_env

    def qemu_threads(self) -> int:
        return len(os.listdir(f"/proc/{self.vm.proc.pid}/task"))


def standin_library(build_outputs) -> Path:
    lib = build_outputs.root / "libOpenSLES.so"
    assert lib.is_file(), f"{lib} missing: `tabvm build` builds the OpenSL ES stand-in"
    return lib


def boot(spec: Opensles, build_outputs, guest_image, tag: str) -> Audio:
    rundir = new_runtime_dir(f"test-{spec.name}-{tag}")
    config = builtin_profile(
        build_outputs, guest_image.vmlinux, guest_image.initrd, "tcg", touch=False,
        audiodev=audiodev(spec.qapi_name, standin_library(build_outputs),
                          out_frequency=RATE, in_frequency=RATE),
        env=standin_env(rundir))
    vm = Qemu(config, rundir).start()
    try:
        agent = AgentClient(str(vm.agent_socket), connect_timeout=30)
        agent.wait_ready(timeout=180)
        ensure_sound_card(agent)
    except BaseException:
        vm.stop()
        raise
    return Audio(spec, vm, agent, rundir)


@pytest.fixture(scope="module", params=DRIVERS, ids=lambda d: d.qapi_name)
def audio(request, build_outputs, guest_image):
    a = boot(request.param, build_outputs, guest_image, "vm")
    yield a
    a.agent.close()
    a.vm.stop()


def test_both_specs_generate_drivers():
    assert {d.qapi_name for d in DRIVERS} >= {"opensles", "opensles-lowlat"}
    assert len({(d.playback, d.capture) for d in DRIVERS}) == len(DRIVERS)


def test_guest_records_the_standin_sine(audio):
    rec = audio.agent.pcm_record(0, 0, RATE, 2, 2000)
    assert rec.frames >= RATE * 2 * 0.95
    assert abs(rec.freq - 440.0) < 1.0, rec
    assert rec.rms > 0.1, rec


def underruns(audio: Audio) -> int:
    return audio.vm.qom_get("/backend/audiodev-snd0", "underruns")


def test_streams_start_without_underruns(audio):
    """A stream starts playing once every OpenSL ES buffer is queued, so the
    first callback finds the next one there (it used to start on the first
    buffer alone: the second came exactly when the first ended, an underrun
    at almost every start)."""
    before = underruns(audio)
    for _ in range(4):
        audio.agent.pcm_play(0, 0, RATE, 2, 1000, 300)
    assert underruns(audio) == before


def test_a_starved_queue_counts_underruns(audio, tmp_path):
    """A real starvation still counts: QEMU's main loop is blocked (a QMP
    pmemsave of all guest RAM runs in it) while the guest plays, so nobody
    refills the queue and OpenSL ES plays it out."""
    before = underruns(audio)
    player = threading.Thread(target=audio.agent.pcm_play,
                              args=(0, 0, RATE, 2, 1000, 3000))
    player.start()
    time.sleep(1.5)
    t0 = time.monotonic()
    audio.vm.cmd("pmemsave", val=0, size=512 << 20, filename=str(tmp_path / "ram"))
    stalled = time.monotonic() - t0
    player.join(30)
    buffering = audio.spec.playback.buffers * audio.spec.playback.buffer_ms / 1000
    assert stalled > 2 * buffering, stalled        # longer than the queue lasts
    assert underruns(audio) > before


def test_guest_plays_a_sine_to_the_standin(audio, build_outputs, guest_image):
    """Runs last on its VM: QEMU is stopped so the stand-in closes its WAV."""
    threads = audio.qemu_threads()
    play = audio.agent.pcm_play(0, 0, RATE, 2, 1000, 2000)
    assert play.frames == RATE * 2
    # start/stop cycles and a driver reload leave no thread behind
    for _ in range(3):
        audio.agent.pcm_play(0, 0, RATE, 2, 1000, 200)
    out = audio.agent.sh("rmmod snd_hda_intel && modprobe snd_hda_intel && sleep 2 && "
                         "ls /dev/snd")
    assert out.status == 0 and "pcmC0D0p" in out.output, out
    audio.agent.pcm_play(0, 0, RATE, 2, 1000, 200)
    assert audio.qemu_threads() <= threads + 1          # + a QEMU worker at most
    # the callbacks' counters, over QMP
    stats = {p: audio.vm.qom_get("/backend/audiodev-snd0", p)
             for p in ("buffers", "underruns", "overruns")}
    assert stats["buffers"] >= 2 * 1000 // audio.spec.playback.buffer_ms, stats
    assert all(isinstance(v, int) for v in stats.values()), stats
    audio.agent.close()
    assert audio.vm.stop() == 0

    wav = read_wav(audio.playback_wav)
    assert (wav.rate, wav.channels) == (RATE, 2)
    left = wav.frames[0]
    first, _ = sounding(left, threshold=200)
    tone = left[first:first + RATE * 2]
    # its pitch, on the longest stretch without silence: 1 kHz within 1 Hz
    cuts = [0] + [i for start, n in silent_runs(tone, 0) if n > 8
                  for i in (start, start + n)] + [len(tone)]
    longest = max(zip(cuts[::2], cuts[1::2]), key=lambda c: c[1] - c[0])
    assert longest[1] - longest[0] >= RATE // 2, cuts
    assert abs(tone_frequency(tone[longest[0]:longest[1]], RATE) - 1000.0) < 1.0
    # no gap longer than one OpenSL ES buffer once it has started, over its
    # first 1.5 s: the end of a stream under TCG is looser (the guest drains
    # and QEMU's hda-codec drops what it read ahead when the guest stops)
    buffer_frames = RATE * audio.spec.playback.buffer_ms // 1000
    gaps = [n for start, n in silent_runs(tone[:RATE * 3 // 2], 0) if n > 8]
    assert max(gaps, default=0) <= buffer_frames, gaps[:10]


def test_bad_options_give_qemus_usual_errors(build_outputs):
    qemu = str(build_outputs.qemu)
    cases = [
        (f"{DRIVERS[0].qapi_name},id=a,in.buffer-count=many",
         "Parameter 'in.buffer-count' expects integer"),
        (f"{DRIVERS[0].qapi_name},id=a,library=/nonexistent/libOpenSLES.so",
         "cannot load the OpenSL ES library /nonexistent/libOpenSLES.so"),
        (f"{DRIVERS[0].qapi_name},id=a,bogus=1", "Parameter 'bogus' is unexpected"),
    ]
    for option, message in cases:
        proc = subprocess.run([qemu, "-M", "none", "-display", "none", "-nodefaults",
                               "-audiodev", option], capture_output=True, text=True,
                              timeout=30)
        assert proc.returncode == 1, (option, proc.stderr)
        assert message in proc.stderr, (option, proc.stderr)


def test_audiodevs_of_both_drivers_share_one_engine(build_outputs):
    """Android allows one OpenSL ES engine per process (so does the stand-in):
    two audiodevs of two generated drivers must share it."""
    lib = standin_library(build_outputs)
    cmd = [str(build_outputs.qemu), "-M", "none", "-display", "none", "-nodefaults",
           "-monitor", "stdio"]
    for i, d in enumerate(DRIVERS):
        cmd += ["-audiodev", f"{d.qapi_name},id=a{i},library={lib}"]
    proc = subprocess.run(cmd, input="info qom-tree /backend\nquit\n",
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr
    for i in range(len(DRIVERS)):
        assert f"/audiodev-a{i} (container)" in proc.stdout, proc.stdout
