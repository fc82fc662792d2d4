"""Reading WAV files and measuring tones, for the audio tests and benchmarks.

Pure Python (no numpy here): a tone's frequency comes from its rising zero
crossings, interpolated between samples, over a stretch with no silence in it.
"""

from __future__ import annotations

import wave
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Wav:
    rate: int
    channels: int
    width: int                    # bytes per sample
    frames: list[list[int]]       # per channel, signed samples

    @property
    def seconds(self) -> float:
        return len(self.frames[0]) / self.rate if self.frames else 0.0


def read_wav(path: Path) -> Wav:
    with wave.open(str(path), "rb") as w:
        rate, channels, width = w.getframerate(), w.getnchannels(), w.getsampwidth()
        raw = w.readframes(w.getnframes())
    if width == 1:
        samples = [b - 128 for b in raw]
    elif width == 2:
        samples = [int.from_bytes(raw[i:i + 2], "little", signed=True)
                   for i in range(0, len(raw) - 1, 2)]
    else:
        raise ValueError(f"{path}: {8 * width}-bit samples are not handled")
    return Wav(rate, channels, width, [samples[c::channels] for c in range(channels)])


def silent_runs(samples: list[int], threshold: int = 0) -> list[tuple[int, int]]:
    """(start, length) of every run of samples with |s| <= threshold."""
    runs, start = [], None
    for i, s in enumerate(samples):
        if abs(s) <= threshold:
            if start is None:
                start = i
        elif start is not None:
            runs.append((start, i - start))
            start = None
    if start is not None:
        runs.append((start, len(samples) - start))
    return runs


def sounding(samples: list[int], threshold: int = 0) -> tuple[int, int]:
    """[first, last) sample that is not silence."""
    loud = [i for i, s in enumerate(samples) if abs(s) > threshold]
    return (loud[0], loud[-1] + 1) if loud else (0, 0)


def tone_frequency(samples: list[int], rate: int) -> float:
    """Frequency of a clean tone from its rising zero crossings (linear
    interpolation between the samples around each crossing)."""
    crossings = []
    for i in range(1, len(samples)):
        a, b = samples[i - 1], samples[i]
        if a < 0 <= b:
            crossings.append(i - 1 + (-a) / (b - a))
    if len(crossings) < 3:
        return 0.0
    return (len(crossings) - 1) * rate / (crossings[-1] - crossings[0])
