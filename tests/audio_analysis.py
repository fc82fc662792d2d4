"""WAV files and tones, for the audio tests and benchmarks.

Pure Python (no numpy here): a tone's frequency comes from its rising zero
crossings, refined to the peak of its Hann-windowed spectrum.
"""

from __future__ import annotations

import array
import math
import sys
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
        pcm = array.array("h", raw[:len(raw) // 2 * 2])
        if sys.byteorder == "big":
            pcm.byteswap()
        samples = pcm.tolist()
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


def tone_frequency(x: list[int], rate: int) -> float:
    """The frequency of a tone in x: first from its rising zero crossings
    (interpolated between samples; with hysteresis, a crossing counts only after
    the signal went below -1/4 of its peak, so noise adds none), then the maximum
    of the Hann-windowed DTFT, found by golden-section search within 1.5 bins
    (rate / len(x)) of that, i.e. inside the main lobe of the true peak."""
    n = len(x)
    low = -max(abs(v) for v in x) / 4
    ups, armed = [], False
    for i in range(n - 1):
        if x[i] < low:
            armed = True
        if armed and x[i] < 0 <= x[i + 1]:
            ups.append(i + x[i] / (x[i] - x[i + 1]))
            armed = False
    if len(ups) < 2:
        raise ValueError("no tone: fewer than 2 rising zero crossings")
    f0 = (len(ups) - 1) * rate / (ups[-1] - ups[0])
    w = [v * (0.5 - 0.5 * math.cos(2 * math.pi * i / (n - 1))) for i, v in enumerate(x)]

    def power(f: float) -> float:       # Goertzel: |DTFT(w)(f)|^2
        coeff = 2 * math.cos(2 * math.pi * f / rate)
        s1 = s2 = 0.0
        for v in w:
            s1, s2 = v + coeff * s1 - s2, s1
        return s1 * s1 + s2 * s2 - coeff * s1 * s2

    g = (math.sqrt(5) - 1) / 2
    lo, hi = f0 - 1.5 * rate / n, f0 + 1.5 * rate / n
    p1, p2 = hi - g * (hi - lo), lo + g * (hi - lo)
    v1, v2 = power(p1), power(p2)
    for _ in range(28):
        if v1 >= v2:
            hi, p2, v2 = p2, p1, v1
            p1 = hi - g * (hi - lo)
            v1 = power(p1)
        else:
            lo, p1, v1 = p1, p2, v2
            p2 = lo + g * (hi - lo)
            v2 = power(p2)
    return (lo + hi) / 2
