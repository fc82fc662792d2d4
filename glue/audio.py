"""The VM's sound card: ich9-intel-hda + hda-duplex on the audiodev ``snd0``.

On Android the audiodev is ``opensles`` with the system's libOpenSLES.so. On a
desktop Linux host there is no OpenSL ES: ``tabvm run --audio opensles`` then
uses the project's test stand-in (build/libOpenSLES.so, opensles/README.md),
which writes what it plays to a WAV file and records a 440 Hz sine.
"""

from __future__ import annotations

import time
from pathlib import Path

HDA_DEVICES = ("ich9-intel-hda,id=hda", "hda-duplex,audiodev=snd0")
AUDIODEV_ID = "snd0"


def audiodev(driver: str, library: Path | None = None, **options: object) -> str:
    """The -audiodev option string for ``driver`` (``library=`` for OpenSL ES)."""
    opts = {"id": AUDIODEV_ID, **({"library": library} if library else {}), **options}
    return driver + "".join(f",{k.replace('_', '.')}={v}" for k, v in opts.items())


def standin_env(rundir: Path) -> tuple[tuple[str, str], ...]:
    """The OpenSL ES stand-in's settings: playback WAV, a 440 Hz capture sine, log."""
    return (("TABVM_SLES_PLAYBACK_WAV", str(rundir / "playback.wav")),
            ("TABVM_SLES_CAPTURE_SINE", "440"),
            ("TABVM_SLES_LOG", str(rundir / "sles.log")))


def ensure_sound_card(agent, attempts: int = 3, seconds: float = 15.0) -> None:
    """Waits for the guest's /dev/snd/pcmC0D0p (it comes a few seconds after the
    agent answers); should the codec probe still time out under TCG ("Cannot
    probe codecs"), loads the driver again, as a user would. Unmutes the card's
    mixer (Linux starts it muted)."""
    for _ in range(attempts):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if "pcmC0D0p" in agent.ls("/dev/snd"):
                agent.mixer_unmute(0)
                return
            time.sleep(0.5)
        agent.sh("rmmod snd_hda_codec_generic snd_hda_intel; "
                 "modprobe snd_hda_codec_generic; modprobe snd_hda_intel")
    raise RuntimeError("the guest has no sound card: " + agent.sh(
        "dmesg | grep -i -E 'hda|snd' | tail").output)
