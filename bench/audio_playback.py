"""OpenSL ES audiodev benchmark: long guest playback through -audiodev opensles
(with the project's OpenSL ES stand-in) against QEMU's wav audiodev, same guest.

  python bench/audio_playback.py [--seconds 60] [--driver opensles]

Per backend one VM (TCG, ich9-intel-hda + hda-duplex at 48 kHz stereo): the guest
agent plays a 1 kHz sine for SECONDS through snd-hda-intel. Printed:
- underruns: the driver's own count (QOM /backend/audiodev-snd0 underruns: buffers
  the OpenSL ES callback had to pad with silence after start-up); goal 0;
- added latency: from the guest's first write (the agent reports how long it
  played, from its first write to the end of its drain; its answer dates the
  end, less a few ms on the serial line) to the stand-in's callback for the
  buffer holding the tone's first sample. The stand-in's WAV is a real-time
  timeline from its first played frame, which its first callback dates; goal:
  at most the configured buffering (count x length);
- QEMU's CPU time (user + system) during the playback, and its ratio to wav.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from audio_analysis import read_wav, sounding  # noqa: E402
from glue.audio import audiodev, ensure_sound_card, standin_env  # noqa: E402
from generator.ir import Opensles  # noqa: E402
from generator.main import check, spec_files  # noqa: E402
from glue.agent_client import AgentClient  # noqa: E402
from glue.profile import builtin_profile, default_outputs  # noqa: E402
from glue.qemu import Qemu  # noqa: E402
from glue.runtime import new_runtime_dir  # noqa: E402
from tabvm.guest import build_guest  # noqa: E402

RATE = 48000


@dataclasses.dataclass
class Run:
    backend: str
    cpu_s: float
    underruns: int | None
    latency_ms: float | None
    buffering_ms: float | None


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(backend: str, seconds: int, spec: Opensles | None) -> Run:
    outputs, image = default_outputs(), build_guest(progress=lambda m: None)
    rundir = new_runtime_dir(f"bench-audio-{backend}")
    if spec is None:
        sound, env = audiodev("wav", path=rundir / "playback.wav", out_frequency=RATE), ()
    else:
        sound = audiodev(spec.qapi_name, outputs.root / "libOpenSLES.so",
                         out_frequency=RATE)
        env = standin_env(rundir)
    config = builtin_profile(outputs, image.vmlinux, image.initrd, "tcg", touch=False,
                             audiodev=sound, env=env)
    with Qemu(config, rundir) as vm:
        agent = AgentClient(str(vm.agent_socket), connect_timeout=30)
        agent.wait_ready(timeout=180)
        ensure_sound_card(agent)
        cpu0 = cpu_seconds(vm.proc.pid)
        play = agent.pcm_play(0, 0, RATE, 2, 1000, seconds * 1000)
        # the guest's first write: its answer came ELAPSED ms after it
        first_write_ns = time.monotonic_ns() - play.elapsed_ms * 1_000_000
        cpu = cpu_seconds(vm.proc.pid) - cpu0
        underruns = vm.qom_get("/backend/audiodev-snd0", "underruns") if spec else None
        agent.close()
    if spec is None:
        return Run(backend, cpu, None, None, None)
    wav = read_wav(rundir / "playback.wav")
    onset = sounding(wav.frames[0], threshold=100)[0]
    callbacks = [line.split() for line in (rundir / "sles.log").read_text().splitlines()
                 if line.split()[1:2] == ["player"] and "summary" not in line]
    frames_per_buffer = int(callbacks[0][3]) // (2 * wav.channels)
    first_callback_ns = int(callbacks[0][0])
    start_ns = first_callback_ns - frames_per_buffer * 1e9 / wav.rate
    # the callback that follows the buffer holding the onset
    done_frames = (onset // frames_per_buffer + 1) * frames_per_buffer
    callback_ns = start_ns + done_frames * 1e9 / wav.rate
    return Run(backend, cpu, underruns, (callback_ns - first_write_ns) / 1e6,
               spec.playback.buffers * spec.playback.buffer_ms)


def main(argv: list[str] | None = None) -> int:
    drivers = {d.qapi_name: d for d in check(spec_files()) if isinstance(d, Opensles)}
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=int, default=60)
    p.add_argument("--driver", choices=sorted(drivers), default="opensles")
    args = p.parse_args(argv)
    spec = drivers[args.driver]
    print(f"{args.seconds} s of guest playback, 48 kHz stereo, TCG; -audiodev "
          f"{args.driver} ({spec.playback.buffers} x {spec.playback.buffer_ms} ms) "
          f"vs wav", flush=True)
    runs = [run(args.driver, args.seconds, spec), run("wav", args.seconds, None)]
    base = runs[1].cpu_s
    print(f"\n{'backend':<17} {'underruns':>9} {'latency':>10} {'buffering':>10} "
          f"{'QEMU CPU':>9} {'vs wav':>7}")
    for r in runs:
        under = "-" if r.underruns is None else str(r.underruns)
        lat = "-" if r.latency_ms is None else f"{r.latency_ms:.1f} ms"
        buf = "-" if r.buffering_ms is None else f"{r.buffering_ms:.0f} ms"
        print(f"{r.backend:<17} {under:>9} {lat:>10} {buf:>10} {r.cpu_s:8.2f}s "
              f"{r.cpu_s / base:6.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
