"""Underruns of the OpenSL ES audiodev over a minute of playback, through the
Debian desktop's sound server and through the busybox test guest.

  python bench/audio_desktop.py [--seconds 60] [--build DIR] [--skip-busybox]

- desktop: the Debian desktop guest (TCG, 2 vCPUs) under the glue (`tabvm run`,
  devices.audio opensles, the OpenSL ES stand-in), PipeWire's paplay (through
  pipewire-pulse) plays a 1 kHz tone for SECONDS as the logged-in user;
- busybox: the test guest's agent plays a 1 kHz sine for SECONDS on the raw
  ALSA device (bench/audio_playback.py).

Printed per guest, from the backend's own counters (QOM /backend/audiodev-snd0):
underruns (the queue ran dry while playing) and buffers played, next to the
configured buffering (buffer count x length). --build DIR runs another build's
QEMU (e.g. a copy of an older build/, for before/after figures).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from desktop_harness import Desktop, desktop_profile, free_port  # noqa: E402
from generator.ir import Opensles  # noqa: E402
from generator.main import check, spec_files  # noqa: E402
from glue.audio import AUDIODEV_ID  # noqa: E402
from glue.profile import BuildOutputs, default_outputs  # noqa: E402
from tabvm.desktop_image import build_desktop_image  # noqa: E402

STATS = f"/backend/audiodev-{AUDIODEV_ID}"
FIELDS = ("underruns", "buffers")


def qom_stats(qom_get) -> dict[str, int]:
    return {prop: qom_get(prop) for prop in FIELDS}


def counted(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """What the counters counted between the two readings."""
    return {k: after[k] - before[k] for k in FIELDS}


def desktop_run(outputs: BuildOutputs, seconds: int) -> dict[str, int]:
    from qemu.qmp.legacy import QEMUMonitorProtocol
    from desktop_audio import as_user, tone_wav, wait_for

    build_desktop_image(progress=lambda m: print("desktop image:", m, flush=True))
    tmp = Path(tempfile.mkdtemp(prefix="bench-audio-desktop-"))
    port = free_port()
    profile = desktop_profile(tmp, "bench-audio-desktop", qmp_tcp=f"127.0.0.1:{port}",
                              devices={"battery": {"source": "simulated"},
                                       "audio": {"backend": "opensles"}})
    d = Desktop(profile, "bench-audio-desktop", outputs.root, tmp / "state")
    try:
        d.glue.running(timeout=300)
        d.wait_session()
        wait_for(lambda: d.exec(*as_user("pactl", "info"), timeout=30).returncode == 0,
                 60, "pipewire-pulse does not answer")
        assert d.exec("sh", "-c", "cat > /tmp/tone.wav", stdin=tone_wav(1000, seconds),
                      timeout=120).returncode == 0
        qmp = QEMUMonitorProtocol(("127.0.0.1", port))
        qmp.connect()

        def get(prop: str) -> int:
            return qmp.cmd("qom-get", path=STATS, property=prop)

        before = qom_stats(get)
        t0 = time.monotonic()
        p = d.exec(*as_user("paplay", "/tmp/tone.wav"), timeout=seconds + 120)
        took = time.monotonic() - t0
        assert p.returncode == 0, p
        after = qom_stats(get)
        qmp.close()
    finally:
        d.glue.stop()
    print(f"desktop: paplay of {seconds} s took {took:.1f} s", flush=True)
    return counted(before, after)


def busybox_run(outputs: BuildOutputs, seconds: int, spec: Opensles) -> dict[str, int]:
    from glue.agent_client import AgentClient
    from glue.audio import audiodev, ensure_sound_card, standin_env
    from glue.profile import builtin_profile
    from glue.qemu import Qemu
    from glue.runtime import new_runtime_dir
    from tabvm.guest import build_guest

    image = build_guest(progress=lambda m: None)
    rundir = new_runtime_dir("bench-audio-busybox")
    config = builtin_profile(outputs, image.vmlinux, image.initrd, "tcg", touch=False,
                             audiodev=audiodev(spec.qapi_name, outputs.root / "libOpenSLES.so",
                                               out_frequency=48000),
                             env=standin_env(rundir))
    with Qemu(config, rundir) as vm:
        agent = AgentClient(str(vm.agent_socket), connect_timeout=30)
        agent.wait_ready(timeout=180)
        ensure_sound_card(agent)
        before = qom_stats(lambda p: vm.qom_get(STATS, p))
        agent.pcm_play(0, 0, 48000, 2, 1000, seconds * 1000)
        after = qom_stats(lambda p: vm.qom_get(STATS, p))
        agent.close()
    return counted(before, after)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=int, default=60)
    p.add_argument("--build", type=Path, default=None,
                   help="a build directory with qemu-system-x86_64 and libOpenSLES.so "
                        "(default: build/)")
    p.add_argument("--skip-busybox", action="store_true")
    p.add_argument("--skip-desktop", action="store_true")
    args = p.parse_args(argv)
    outputs = BuildOutputs(args.build) if args.build else default_outputs()
    spec = next(d for d in check(spec_files()) if isinstance(d, Opensles)
                and d.qapi_name == "opensles")
    buffering_us = spec.playback.buffers * spec.playback.buffer_ms * 1000
    print(f"{args.seconds} s of playback, TCG, -audiodev opensles "
          f"({spec.playback.buffers} x {spec.playback.buffer_ms} ms) on the stand-in; "
          f"QEMU {outputs.qemu}", flush=True)
    runs = []
    if not args.skip_desktop:
        runs.append(("desktop (PipeWire)", desktop_run(outputs, args.seconds)))
    if not args.skip_busybox:
        runs.append(("busybox (ALSA)", busybox_run(outputs, args.seconds, spec)))
    print(f"\n{'guest':<20} {'underruns':>9} {'buffers':>8} {'buffering':>10}")
    for name, r in runs:
        print(f"{name:<20} {r['underruns']:>9} {r['buffers']:>8} {buffering_us / 1000:>7.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
