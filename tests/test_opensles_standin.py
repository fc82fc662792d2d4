"""The OpenSL ES test stand-in (opensles/): real-time buffer queues, WAV output, capture.

The library and tests/opensles/client.c (which drives it the way the OpenSL ES
audio backend does) are built here with gcc directly, without `tabvm build`.
What the library played is read back from its WAV file and measured with a DFT
written here (no numpy): a Goertzel evaluation of a Hann-windowed stretch,
maximised around the zero-crossing estimate, which is accurate to a few
hundredths of a hertz on 2 s of a clean tone.  Timing comes from the
library's event log ($TABVM_SLES_LOG).
"""

from __future__ import annotations

import array
import math
import os
import re
import shutil
import struct
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import REPO

INCLUDE = REPO / "opensles" / "include"
LIB_SRC = REPO / "opensles" / "standin" / "opensles.c"
CLIENT_SRC = REPO / "tests" / "opensles" / "client.c"
CFLAGS = ["-std=gnu11", "-g", "-Wall", "-Wextra", "-Werror", f"-I{INCLUDE}"]

# Values of the OpenSL ES 1.0.1 specification and Android's extensions.
SL_CONSTANTS = {
    "SL_RESULT_SUCCESS": 0, "SL_RESULT_PRECONDITIONS_VIOLATED": 1,
    "SL_RESULT_PARAMETER_INVALID": 2, "SL_RESULT_MEMORY_FAILURE": 3,
    "SL_RESULT_RESOURCE_ERROR": 4, "SL_RESULT_BUFFER_INSUFFICIENT": 7,
    "SL_RESULT_CONTENT_UNSUPPORTED": 9, "SL_RESULT_FEATURE_UNSUPPORTED": 12,
    "SL_RESULT_CONTROL_LOST": 16,
    "SL_OBJECT_STATE_UNREALIZED": 1, "SL_OBJECT_STATE_REALIZED": 2,
    "SL_PLAYSTATE_STOPPED": 1, "SL_PLAYSTATE_PAUSED": 2, "SL_PLAYSTATE_PLAYING": 3,
    "SL_RECORDSTATE_STOPPED": 1, "SL_RECORDSTATE_PAUSED": 2, "SL_RECORDSTATE_RECORDING": 3,
    "SL_DATALOCATOR_IODEVICE": 3, "SL_DATALOCATOR_OUTPUTMIX": 4,
    "SL_DATALOCATOR_BUFFERQUEUE": 6,
    "SL_DATALOCATOR_ANDROIDSIMPLEBUFFERQUEUE": 0x800007BD,
    "SL_DATAFORMAT_PCM": 2, "SL_ANDROID_DATAFORMAT_PCM_EX": 4,
    "SL_ANDROID_PCM_REPRESENTATION_FLOAT": 3,
    "SL_IODEVICE_AUDIOINPUT": 1, "SL_DEFAULTDEVICEID_AUDIOINPUT": 0xFFFFFFFF,
    "SL_BYTEORDER_LITTLEENDIAN": 2, "SL_PCMSAMPLEFORMAT_FIXED_16": 16,
    "SL_SPEAKER_FRONT_LEFT": 1, "SL_SPEAKER_FRONT_RIGHT": 2, "SL_SPEAKER_FRONT_CENTER": 4,
    "SL_SAMPLINGRATE_44_1": 44100000, "SL_SAMPLINGRATE_48": 48000000,
    "SL_MILLIBEL_MIN": -32768, "SL_BOOLEAN_TRUE": 1, "SL_OBJECTID_AUDIOPLAYER": 0x1004,
}

KHR = "0x00, 0x02, 0xa5, 0xd5, 0xc5, 0x1b"
SL_IIDS = {
    "SL_IID_NULL": "0xec7178ec, 0xe5e1, 0x4432, 0xa3f4, 0x46, 0x57, 0xe6, 0x79, 0x52, 0x10",
    "SL_IID_OBJECT": f"0x79216360, 0xddd7, 0x11db, 0xac16, {KHR}",
    "SL_IID_ENGINE": f"0x8d97c260, 0xddd4, 0x11db, 0x958f, {KHR}",
    "SL_IID_PLAY": f"0xef0bd9c0, 0xddd7, 0x11db, 0xbf49, {KHR}",
    "SL_IID_RECORD": f"0xc5657aa0, 0xdddb, 0x11db, 0x82f7, {KHR}",
    "SL_IID_VOLUME": f"0x09e8ede0, 0xddde, 0x11db, 0xb4f6, {KHR}",
    "SL_IID_BUFFERQUEUE": f"0x2bc99cc0, 0xddd4, 0x11db, 0x8d99, {KHR}",
    "SL_IID_OUTPUTMIX": f"0x97750f60, 0xddd7, 0x11db, 0x92b1, {KHR}",
    "SL_IID_ANDROIDSIMPLEBUFFERQUEUE": f"0x198e4940, 0xc5d7, 0x11df, 0xa2a6, {KHR}",
    "SL_IID_ANDROIDCONFIGURATION": f"0x89f6a7e0, 0xbeac, 0x11df, 0x8b5c, {KHR}",
}

# The function pointers of each interface, in the order of the specification.
VTABLES = {
    "SLObjectItf_": ["Realize", "Resume", "GetState", "GetInterface", "RegisterCallback",
                     "AbortAsyncOperation", "Destroy", "SetPriority", "GetPriority",
                     "SetLossOfControlInterfaces"],
    "SLEngineItf_": ["CreateLEDDevice", "CreateVibraDevice", "CreateAudioPlayer",
                     "CreateAudioRecorder", "CreateMidiPlayer", "CreateListener",
                     "Create3DGroup", "CreateOutputMix", "CreateMetadataExtractor",
                     "CreateExtensionObject", "QueryNumSupportedInterfaces",
                     "QuerySupportedInterfaces", "QueryNumSupportedExtensions",
                     "QuerySupportedExtension", "IsExtensionSupported"],
    "SLPlayItf_": ["SetPlayState", "GetPlayState", "GetDuration", "GetPosition",
                   "RegisterCallback", "SetCallbackEventsMask", "GetCallbackEventsMask",
                   "SetMarkerPosition", "ClearMarkerPosition", "GetMarkerPosition",
                   "SetPositionUpdatePeriod", "GetPositionUpdatePeriod"],
    "SLRecordItf_": ["SetRecordState", "GetRecordState", "SetDurationLimit", "GetPosition",
                     "RegisterCallback", "SetCallbackEventsMask", "GetCallbackEventsMask",
                     "SetMarkerPosition", "ClearMarkerPosition", "GetMarkerPosition",
                     "SetPositionUpdatePeriod", "GetPositionUpdatePeriod"],
    "SLVolumeItf_": ["SetVolumeLevel", "GetVolumeLevel", "GetMaxVolumeLevel", "SetMute",
                     "GetMute", "EnableStereoPosition", "IsEnabledStereoPosition",
                     "SetStereoPosition", "GetStereoPosition"],
    "SLBufferQueueItf_": ["Enqueue", "Clear", "GetState", "RegisterCallback"],
    "SLAndroidSimpleBufferQueueItf_": ["Enqueue", "Clear", "GetState", "RegisterCallback"],
    "SLOutputMixItf_": ["GetDestinationOutputDeviceIDs", "RegisterDeviceChangeCallback",
                        "ReRoute"],
}

# Struct layouts: (type, [fields in order], size in bytes on LP64).
STRUCTS = [
    ("struct SLInterfaceID_", ["time_low", "time_mid", "time_hi_and_version", "clock_seq",
                               "node"], 16),
    ("SLDataFormat_PCM", ["formatType", "numChannels", "samplesPerSec", "bitsPerSample",
                          "containerSize", "channelMask", "endianness"], 28),
    ("SLAndroidDataFormat_PCM_EX", ["formatType", "numChannels", "sampleRate", "bitsPerSample",
                                    "containerSize", "channelMask", "endianness",
                                    "representation"], 32),
    ("SLDataLocator_AndroidSimpleBufferQueue", ["locatorType", "numBuffers"], 8),
    ("SLDataLocator_BufferQueue", ["locatorType", "numBuffers"], 8),
    ("SLDataLocator_OutputMix", ["locatorType", "outputMix"], 16),
    ("SLDataLocator_IODevice", ["locatorType", "deviceType", "deviceID", "device"], 24),
    ("SLDataSource", ["pLocator", "pFormat"], 16),
    ("SLDataSink", ["pLocator", "pFormat"], 16),
    ("SLAndroidSimpleBufferQueueState", ["count", "index"], 8),
    ("SLBufferQueueState", ["count", "playIndex"], 8),
    ("SLEngineOption", ["feature", "data"], 8),
]


def gcc(*args: str) -> None:
    proc = subprocess.run(["gcc", *args], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def build(out: Path, extra: tuple[str, ...] = ("-O2",)) -> Path:
    """The library and the client, with @extra flags (e.g. sanitizers); the client's path."""
    out.mkdir(parents=True, exist_ok=True)
    gcc(*CFLAGS, *extra, "-fPIC", "-shared", "-fvisibility=hidden", str(LIB_SRC),
        "-o", str(out / "libOpenSLES.so"), "-lpthread", "-lm")
    gcc(*CFLAGS, *extra, str(CLIENT_SRC), "-o", str(out / "client"), f"-L{out}",
        "-lOpenSLES", f"-Wl,-rpath,{out}", "-lpthread", "-lm")
    return out / "client"


@pytest.fixture(scope="module")
def client(tmp_path_factory) -> Path:
    if not shutil.which("gcc"):
        pytest.fail("gcc is needed (bootstrap installs it)")
    return build(tmp_path_factory.mktemp("sles"))


@dataclass
class Run:
    values: dict[str, str]
    checks: dict[str, str]
    stderr: str
    returncode: int

    def num(self, key: str) -> float:
        return float(self.values[key])


def run_client(client: Path, *args: str, env: dict[str, str] | None = None,
               prefix: tuple[str, ...] = (), expect_rc: int = 0, timeout: float = 120) -> Run:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("TABVM_SLES_")}
    full_env.update(env or {})
    proc = subprocess.run([*prefix, str(client), *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout)
    assert proc.returncode == expect_rc, f"rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    values, checks = {}, {}
    for line in proc.stdout.splitlines():
        if line.startswith("check "):
            _, name, result = line.split()
            checks[name] = result
        elif "=" in line:
            key, value = line.split("=", 1)
            values[key] = value
    return Run(values, checks, proc.stderr, proc.returncode)


# --------------------------------------------------------------------------
# WAV files and measurements
# --------------------------------------------------------------------------

@dataclass
class Wav:
    tag: int                    # 1 integer PCM, 3 float
    rate: int
    channels: int
    bits: int
    samples: list[float]        # interleaved, in [-1, 1)
    raw: bytes
    riff_size: int
    data_size: int

    @property
    def frames(self) -> int:
        return len(self.samples) // self.channels

    def channel(self, c: int, start: float = 0.0, end: float | None = None) -> list[float]:
        first = int(start * self.rate)
        last = self.frames if end is None else min(self.frames, int(end * self.rate))
        return self.samples[first * self.channels + c:last * self.channels:self.channels]


def read_wav(path: Path) -> Wav:
    """A RIFF/WAVE file; the sizes in its header decide how much data counts."""
    blob = path.read_bytes()
    assert blob[:4] == b"RIFF" and blob[8:12] == b"WAVE", f"{path} is not a WAV file"
    riff_size = struct.unpack_from("<I", blob, 4)[0]
    pos, fmt, data = 12, None, None
    while pos + 8 <= len(blob):
        cid, size = blob[pos:pos + 4], struct.unpack_from("<I", blob, pos + 4)[0]
        if cid == b"fmt ":
            fmt = struct.unpack_from("<HHIIHH", blob, pos + 8)
        elif cid == b"data":
            data = blob[pos + 8:pos + 8 + size]
            data_size = size
            break
        pos += 8 + size + (size & 1)
    assert fmt and data is not None, f"{path}: no fmt/data chunk"
    tag, channels, rate, _, _, bits = fmt
    if tag == 3:
        samples = list(array.array("f", data))
    elif bits == 8:
        samples = [(b - 128) / 128 for b in data]
    elif bits == 16:
        samples = [s / 32768 for s in array.array("h", data)]
    elif bits == 32:
        samples = [s / 2147483648 for s in array.array("i", data)]
    else:
        raise AssertionError(f"{path}: {bits}-bit samples")
    return Wav(tag, rate, channels, bits, samples, data, riff_size, data_size)


def write_wav16(path: Path, rate: int, channels: list[list[float]]) -> None:
    frames = len(channels[0])
    pcm = array.array("h", (int(round(channels[c][i] * 32767))
                            for i in range(frames) for c in range(len(channels))))
    data = pcm.tobytes()
    nch = len(channels)
    path.write_bytes(b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt "
                     + struct.pack("<IHHIIHH", 16, 1, nch, rate, rate * nch * 2, nch * 2, 16)
                     + b"data" + struct.pack("<I", len(data)) + data)


def goertzel_power(x: list[float], freq: float, rate: int) -> float:
    """|X(freq)|^2 of @x (already windowed): one DFT bin at any frequency."""
    coeff = 2.0 * math.cos(2.0 * math.pi * freq / rate)
    s1 = s2 = 0.0
    for v in x:
        s1, s2 = v + coeff * s1 - s2, s1
    return s1 * s1 + s2 * s2 - coeff * s1 * s2


def zero_crossing_frequency(x: list[float], rate: int) -> float:
    first = last = None
    n = 0
    for i in range(1, len(x)):
        if x[i - 1] < 0 <= x[i]:
            t = i - 1 + (-x[i - 1]) / (x[i] - x[i - 1])
            if first is None:
                first = t
            else:
                n += 1
            last = t
    assert first is not None and n > 0, "no zero crossings: silence?"
    return n * rate / (last - first)


def dominant_frequency(x: list[float], rate: int) -> tuple[float, float]:
    """(frequency, share of the signal's power in that one sinusoid)."""
    n = len(x)
    window = [0.5 - 0.5 * math.cos(2 * math.pi * i / (n - 1)) for i in range(n)]
    xw = [a * b for a, b in zip(x, window)]
    guess = zero_crossing_frequency(x, rate)
    # Scan +-3 Hz around the guess, then narrow down by golden-section search.
    grid = [guess + k * 0.25 for k in range(-12, 13)]
    best = max(grid, key=lambda f: goertzel_power(xw, f, rate))
    lo, hi = best - 0.25, best + 0.25
    g = (math.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    pa, pb = goertzel_power(xw, a, rate), goertzel_power(xw, b, rate)
    while hi - lo > 0.002:
        if pa > pb:
            hi, b, pb = b, a, pa
            a = hi - g * (hi - lo)
            pa = goertzel_power(xw, a, rate)
        else:
            lo, a, pa = a, b, pb
            b = lo + g * (hi - lo)
            pb = goertzel_power(xw, b, rate)
    freq = (lo + hi) / 2
    amplitude = 2 * math.sqrt(goertzel_power(xw, freq, rate)) / sum(window)
    power = sum(v * v for v in x) / n
    return freq, (amplitude * amplitude / 2) / power if power else 0.0


def rms(x: list[float]) -> float:
    return math.sqrt(sum(v * v for v in x) / len(x))


def longest_silence(wav: Wav) -> tuple[int, int]:
    """(first frame that is not silent, longest run of exactly silent frames after it)."""
    ch = wav.channels
    silent = 0.0
    start, run, longest = None, 0, 0
    for f in range(wav.frames):
        frame = wav.samples[f * ch:(f + 1) * ch]
        if all(v == silent for v in frame):
            run += 1
        else:
            if start is None:
                start = f
            elif run > longest:
                longest = run
            run = 0
    if start is not None and run > longest:
        longest = run
    return (start if start is not None else wav.frames), longest


@dataclass
class LogLine:
    ns: int
    kind: str
    obj: int
    size: int
    count: int
    xruns: int


def read_log(path: Path) -> tuple[list[LogLine], dict[str, int]]:
    """The callback lines and the (last) summary of the log."""
    events, summary = [], {}
    for line in path.read_text().splitlines():
        fields = line.split()
        if fields[3] == "summary":
            summary = {k: int(v) for k, v in (f.split("=") for f in fields[4:])}
            summary["id"] = int(fields[2])
            continue
        assert len(fields) == 6, line
        events.append(LogLine(int(fields[0]), fields[1], int(fields[2]), int(fields[3]),
                              int(fields[4]), int(fields[5])))
    return events, summary


def callback_timing(events: list[LogLine], period_s: float) -> tuple[float, float]:
    """(callback period in s, largest deviation in s from the grid of the nominal
    period best aligned with the callbacks).

    The stand-in waits for absolute CLOCK_MONOTONIC deadlines, so a callback is
    never early, only late by the scheduler's wake-up latency. The period is
    therefore measured on the earliest callbacks, those closest to the deadline
    grid: the slope between the least late callback of the first half and that
    of the second half. A late wake-up near either end (a busy host) then does
    not pass for drift, while real drift still shows in full."""
    t = [e.ns / 1e9 for e in events]
    n = len(t)
    late = [v - i * period_s for i, v in enumerate(t)]
    i1 = min(range(n // 2), key=late.__getitem__)
    i2 = min(range(n // 2, n), key=late.__getitem__)
    period = period_s + (late[i2] - late[i1]) / (i2 - i1)
    anchor = sum(late) / n
    jitter = max(abs(v - anchor) for v in late)
    return period, jitter


# --------------------------------------------------------------------------
# The headers
# --------------------------------------------------------------------------

def test_headers_match_the_specification(tmp_path):
    """Constants, IDs, vtable order and struct layouts, checked at compile time."""
    lines = ["#include <stddef.h>", "#include <string.h>", "#include <SLES/OpenSLES.h>",
             "#include <SLES/OpenSLES_Android.h>"]
    for name, value in SL_CONSTANTS.items():
        lines.append(f"_Static_assert((long long){name} == {value}LL, \"{name}\");")
    for struct_name, members in VTABLES.items():
        for i, member in enumerate(members):
            lines.append(f"_Static_assert(offsetof(struct {struct_name}, {member}) == "
                         f"{i} * sizeof(void (*)(void)), \"{struct_name}.{member}\");")
        lines.append(f"_Static_assert(sizeof(struct {struct_name}) == {len(members)} * "
                     f"sizeof(void (*)(void)), \"{struct_name} size\");")
    for type_name, fields, size in STRUCTS:
        offsets = []
        for f in fields:
            offsets.append(f"offsetof({type_name}, {f})")
        for a, b in zip(offsets, offsets[1:]):
            lines.append(f"_Static_assert({a} < {b}, \"{type_name} order\");")
        lines.append(f"_Static_assert(sizeof({type_name}) == {size}, \"{type_name} size\");")
    lines.append("int main(void) {")
    lines.append("    int bad = 0;")
    for name, value in SL_IIDS.items():
        low, mid, high, seq, node = value.split(", ", 4)
        lines.append(f"    {{ static const struct SLInterfaceID_ want = "
                     f"{{ {low}, {mid}, {high}, {seq}, {{ {node} }} }};")
        lines.append(f"      if (memcmp({name}, &want, sizeof(want))) {{ bad = 1; "
                     f"__builtin_printf(\"%s\\n\", \"{name}\"); }} }}")
    lines.append("    return bad;\n}")
    src = tmp_path / "layout.c"
    src.write_text("\n".join(lines) + "\n")
    lib = build(tmp_path / "lib")
    exe = tmp_path / "layout"
    gcc(*CFLAGS, str(src), "-o", str(exe), f"-L{lib.parent}", "-lOpenSLES",
        f"-Wl,-rpath,{lib.parent}")
    proc = subprocess.run([str(exe)], capture_output=True, text=True)
    assert proc.returncode == 0, f"interface IDs differ: {proc.stdout}"


@pytest.mark.parametrize("header", ["OpenSLES.h", "OpenSLES_Android.h",
                                    "OpenSLES_AndroidConfiguration.h", "OpenSLES_Platform.h"])
def test_each_header_compiles_on_its_own_and_as_cxx(tmp_path, header):
    src = tmp_path / "one.c"
    if header == "OpenSLES_AndroidConfiguration.h":
        src.write_text("#include <SLES/OpenSLES.h>\n#include <SLES/OpenSLES_AndroidConfiguration.h>\n")
    else:
        src.write_text(f"#include <SLES/{header}>\n#include <SLES/{header}>\n")
    gcc(*CFLAGS, "-Wpedantic", "-fsyntax-only", str(src))
    if shutil.which("g++"):
        subprocess.run(["g++", "-x", "c++", "-Wall", "-Wextra", "-Werror", f"-I{INCLUDE}",
                        "-fsyntax-only", str(src)], check=True)


def test_headers_name_their_licence():
    for header in sorted((INCLUDE / "SLES").glob("*.h")):
        text = header.read_text()
        assert "SPDX-License-Identifier: MIT" in text, header.name
        assert "Khronos" in text or "Android" in text, header.name


def test_library_exports_only_the_api(client):
    out = subprocess.run(["nm", "-D", "--defined-only", str(client.parent / "libOpenSLES.so")],
                         capture_output=True, text=True, check=True).stdout
    names = {line.split()[-1] for line in out.splitlines()}
    assert {"slCreateEngine", "slQueryNumSupportedEngineInterfaces",
            "slQuerySupportedEngineInterfaces", *SL_IIDS} <= names
    assert all(n.startswith(("sl", "SL_IID_")) for n in names), sorted(names)


def test_meson_builds_the_stand_in():
    text = (REPO / "meson.build").read_text()
    listed = re.search(r"opensles_sources\s*=\s*files\(([^)]*)\)", text)
    assert listed, "meson.build has no opensles_sources = files(...)"
    sources = set(re.findall(r"'([^']*)'", listed.group(1)))
    assert sources == {p.relative_to(REPO).as_posix()
                       for p in (REPO / "opensles" / "standin").glob("*.c")}
    assert re.search(r"shared_library\('OpenSLES',\s*opensles_sources", text)


# --------------------------------------------------------------------------
# Playback
# --------------------------------------------------------------------------

RATE, PERIOD_MS, BUFFERS = 48000, 20, 4


def test_playback_is_real_time_and_faithful(client, tmp_path):
    wav_path, log = tmp_path / "out.wav", tmp_path / "sles.log"
    run = run_client(client, "play", "--seconds", "3", "--buffers", str(BUFFERS),
                     "--ms", str(PERIOD_MS), "--rate", str(RATE), "--channels", "2",
                     "--freq", "997",
                     env={"TABVM_SLES_PLAYBACK_WAV": str(wav_path), "TABVM_SLES_LOG": str(log)})
    wav = read_wav(wav_path)
    assert (wav.tag, wav.rate, wav.channels, wav.bits) == (1, RATE, 2, 16)
    assert wav.data_size == len(wav.raw) and wav.riff_size == 36 + wav.data_size

    # Duration: every frame from PLAYING to STOPPED, in real time.
    elapsed = run.num("elapsed_ns") / 1e9
    assert abs(wav.frames / RATE - elapsed) < 0.005, (wav.frames / RATE, elapsed)
    assert abs(run.num("position_ms") / 1000 - elapsed) < 0.025

    # The tone, on both channels.
    freq, share = dominant_frequency(wav.channel(0, 0.5, 2.5), RATE)
    assert abs(freq - 997) < 1.0 and share > 0.99, (freq, share)
    assert wav.channel(0) == wav.channel(1)
    assert abs(rms(wav.channel(0, 0.5, 2.5)) - 0.5 / math.sqrt(2)) < 0.005

    # The client kept the queue fed: no gap longer than one buffer after start-up.
    start, gap = longest_silence(wav)
    assert start < RATE * PERIOD_MS / 1000
    assert gap <= RATE * PERIOD_MS / 1000, gap

    # Callbacks: one per buffer, from the library's thread, paced in real time.
    events, summary = read_log(log)
    # The last completion may still be waiting for its callback when the client stops.
    assert run.num("callbacks") == len(events)
    assert 0 <= run.num("queue_index") - len(events) <= 1
    assert abs(len(events) - 3000 / PERIOD_MS) <= 2
    assert run.num("callbacks_on_caller_thread") == 0
    assert run.num("callbacks_reentrant") == 0
    assert run.num("enqueue_failures") == 0
    assert {e.kind for e in events} == {"player"}
    assert all(e.size == RATE * PERIOD_MS // 1000 * 4 for e in events)
    assert sum(e.count == BUFFERS - 1 for e in events) >= 0.9 * len(events)
    mean, jitter = callback_timing(events, PERIOD_MS / 1000)
    print(f"callback period {mean * 1e3:.4f} ms, max jitter {jitter * 1e3:.3f} ms")
    assert abs(mean - PERIOD_MS / 1000) < PERIOD_MS / 1000 * 2e-4, mean   # no drift
    assert jitter < 0.015
    assert summary["underruns"] == 0 and summary["underrun_frames"] == 0
    assert summary["frames"] == wav.frames
    assert summary["buffers"] - len(events) in (0, 1)


@pytest.mark.parametrize("fmt,rate,channels,itf,tag,bits", [
    ("u8", 22050, 1, "asbq", 1, 8),
    ("s32", 16000, 1, "bq", 1, 32),
    ("f32", 44100, 2, "asbq", 3, 32),
])
def test_playback_formats(client, tmp_path, fmt, rate, channels, itf, tag, bits):
    wav_path = tmp_path / "out.wav"
    run_client(client, "play", "--seconds", "2.2", "--format", fmt, "--rate", str(rate),
               "--channels", str(channels), "--itf", itf, "--freq", "440", "--ms", "10",
               env={"TABVM_SLES_PLAYBACK_WAV": str(wav_path)})
    wav = read_wav(wav_path)
    assert (wav.tag, wav.rate, wav.channels, wav.bits) == (tag, rate, channels, bits)
    freq, share = dominant_frequency(wav.channel(0, 0.1, 2.1), rate)
    assert abs(freq - 440) < 1.0 and share > 0.98, (freq, share)


def test_volume_and_mute_are_applied_as_gain(client, tmp_path):
    wav_path = tmp_path / "out.wav"
    run = run_client(client, "play", "--seconds", "3", "--freq", "600",
                     "--volume-at", "1.0:-600", "--mute-at", "2.0",
                     env={"TABVM_SLES_PLAYBACK_WAV": str(wav_path)})
    wav = read_wav(wav_path)
    t_volume, t_mute = run.num("event_0_ns") / 1e9, run.num("event_1_ns") / 1e9
    before = rms(wav.channel(0, 0.1, t_volume - 0.01))
    after = rms(wav.channel(0, t_volume + 0.01, t_mute - 0.01))
    assert abs(after / before - 10 ** (-600 / 2000)) < 0.005, (before, after)
    # Muting takes effect at the frame of the call: exact silence from there on.
    muted = wav.channel(0, t_mute + 0.001)
    assert muted and all(v == 0 for v in muted)
    assert any(v != 0 for v in wav.channel(0, t_mute - 0.003, t_mute - 0.001))
    assert run.num("max_volume_mb") == 0


def test_underrun_plays_silence_and_is_counted(client, tmp_path):
    wav_path, log = tmp_path / "out.wav", tmp_path / "sles.log"
    run = run_client(client, "play", "--seconds", "2.5", "--buffers", str(BUFFERS),
                     "--ms", str(PERIOD_MS), "--starve-at", "1.0", "--resume-at", "1.6",
                     env={"TABVM_SLES_PLAYBACK_WAV": str(wav_path), "TABVM_SLES_LOG": str(log)})
    wav = read_wav(wav_path)
    events, summary = read_log(log)
    assert summary["underruns"] == 1
    starve = (run.num("event_3_ns") - run.num("event_2_ns")) / 1e9
    lost = summary["underrun_frames"] / RATE
    # The queue (3 or 4 buffers) still played after the client stopped feeding it.
    assert starve - BUFFERS * PERIOD_MS / 1000 - 0.005 < lost < starve - 0.04, (starve, lost)
    # The WAV holds that silence, in real time, at the right place.
    _, gap = longest_silence(wav)
    assert abs(gap - summary["underrun_frames"]) <= 3, (gap, summary["underrun_frames"])
    assert abs(wav.frames / RATE - run.num("elapsed_ns") / 1e9) < 0.010
    # The log's underrun column counts it from the first callback after the gap.
    assert [e.xruns for e in events] == sorted(e.xruns for e in events)
    assert events[0].xruns == 0 and events[-1].xruns == 1


def test_enqueue_does_not_copy(client, tmp_path):
    """Buffers written after Enqueue (but before they play) play what was written."""
    wav_path = tmp_path / "out.wav"
    run_client(client, "play", "--seconds", "0.5", "--fill-after-enqueue", "1",
               env={"TABVM_SLES_PLAYBACK_WAV": str(wav_path)})
    wav = read_wav(wav_path)
    start, gap = longest_silence(wav)
    assert start <= 1 and gap <= 2, (start, gap)


def test_killed_process_leaves_a_readable_wav(client, tmp_path):
    wav_path = tmp_path / "out.wav"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TABVM_SLES_")}
    env["TABVM_SLES_PLAYBACK_WAV"] = str(wav_path)
    started = time.monotonic()
    proc = subprocess.Popen([str(client), "play", "--seconds", "10"], env=env,
                            stdout=subprocess.DEVNULL)
    try:
        time.sleep(1.3)
    finally:
        proc.kill()
        proc.wait()
    lived = time.monotonic() - started
    wav = read_wav(wav_path)
    # The header was fixed up at least every quarter of a second.
    assert wav.riff_size == 36 + wav.data_size
    assert wav.data_size % 4 == 0 and wav.data_size <= wav_path.stat().st_size - 44
    assert lived - 0.4 < wav.frames / RATE < lived, (wav.frames / RATE, lived)
    freq, _ = dominant_frequency(wav.channel(0, 0.1, 0.7), RATE)
    assert abs(freq - 997) < 2.0


# --------------------------------------------------------------------------
# Capture
# --------------------------------------------------------------------------

def test_capture_sine(client, tmp_path):
    out, log = tmp_path / "rec.wav", tmp_path / "sles.log"
    run = run_client(client, "record", "--seconds", "2.2", "--channels", "1",
                     "--ms", "10", "--out", str(out),
                     env={"TABVM_SLES_CAPTURE_SINE": "523.25:0.25", "TABVM_SLES_LOG": str(log)})
    assert abs(run.num("freq") - 523.25) < 1.0
    wav = read_wav(out)
    freq, share = dominant_frequency(wav.channel(0, 0.1, 2.1), RATE)
    assert abs(freq - 523.25) < 1.0 and share > 0.99, (freq, share)
    assert abs(max(wav.channel(0)) - 0.25) < 0.002
    assert abs(wav.frames / RATE - 2.2) < 0.03
    assert run.num("callbacks_on_caller_thread") == 0 and run.num("enqueue_failures") == 0
    events, summary = read_log(log)
    assert {e.kind for e in events} == {"recorder"}
    assert summary["overruns"] == 0
    mean, jitter = callback_timing(events, 0.010)
    print(f"recorder callback period {mean * 1e3:.4f} ms, max jitter {jitter * 1e3:.3f} ms")
    assert abs(mean - 0.010) < 0.010 * 2e-4 and jitter < 0.015


def test_capture_from_wav_file_mixed_down(client, tmp_path):
    # 1 s holding exactly 1234 periods: the loop is seamless.
    rate, n = 44100, 44100
    tone = [math.sin(2 * math.pi * 1234 * i / rate) for i in range(n)]
    source = tmp_path / "source.wav"
    write_wav16(source, rate, [[0.6 * v for v in tone], [0.2 * v for v in tone]])
    out = tmp_path / "rec.wav"
    run = run_client(client, "record", "--seconds", "2.2", "--channels", "1",
                     "--rate", str(rate), "--out", str(out),
                     env={"TABVM_SLES_CAPTURE_WAV": str(source)})
    assert abs(run.num("freq") - 1234) < 1.0
    wav = read_wav(out)
    freq, share = dominant_frequency(wav.channel(0, 0.1, 2.1), rate)
    assert abs(freq - 1234) < 1.0 and share > 0.99, (freq, share)
    assert abs(max(wav.channel(0)) - 0.4) < 0.003         # the mean of both channels

    # No resampling: another rate is refused at Realize.
    run = run_client(client, "record", "--seconds", "0.2", "--rate", "48000",
                     env={"TABVM_SLES_CAPTURE_WAV": str(source)}, expect_rc=3)
    assert run.values["realize"] == "CONTENT_UNSUPPORTED"
    assert "44100 Hz" in run.stderr


def test_capture_overrun_is_counted(client, tmp_path):
    log = tmp_path / "sles.log"
    run = run_client(client, "record", "--seconds", "1.5", "--buffers", "4", "--ms", "20",
                     "--starve-at", "0.5", "--resume-at", "1.0",
                     env={"TABVM_SLES_CAPTURE_SINE": "440", "TABVM_SLES_LOG": str(log)})
    _, summary = read_log(log)
    assert summary["overruns"] == 1
    assert 0.5 - 0.085 < summary["overrun_frames"] / RATE < 0.5 - 0.04, summary
    assert run.num("callbacks_on_caller_thread") == 0


# --------------------------------------------------------------------------
# API results, life cycle, memory and threads
# --------------------------------------------------------------------------

EXPECTED_CHECKS = {
    "create_engine_null": "PARAMETER_INVALID",
    "create_engine_required_play": "FEATURE_UNSUPPORTED",
    "create_engine_ids_null": "PARAMETER_INVALID",
    "create_engine": "SUCCESS",
    "create_second_engine": "RESOURCE_ERROR",
    "get_interface_unrealized": "PRECONDITIONS_VIOLATED",
    "realize_async": "FEATURE_UNSUPPORTED",
    "realize": "SUCCESS",
    "realize_twice": "PRECONDITIONS_VIOLATED",
    "get_interface_null_iid": "PARAMETER_INVALID",
    "get_interface_unsupported": "FEATURE_UNSUPPORTED",
    "get_interface_engine": "SUCCESS",
    "query_num_engine_itfs": "SUCCESS",
    "num_engine_itfs": "2",
    "create_mix": "SUCCESS",
    "create_mix2": "SUCCESS",
    "realize_mix": "SUCCESS",
    "player_null_out": "PARAMETER_INVALID",
    "player_ok": "SUCCESS",
    "player_zero_buffers": "PARAMETER_INVALID",
    "player_no_format": "PARAMETER_INVALID",
    "player_3_channels": "CONTENT_UNSUPPORTED",
    "player_24_bits": "CONTENT_UNSUPPORTED",
    "player_rate_in_hz": "CONTENT_UNSUPPORTED",
    "player_container_too_small": "PARAMETER_INVALID",
    "player_mask_mismatch": "PARAMETER_INVALID",
    "player_big_endian": "CONTENT_UNSUPPORTED",
    "player_required_seek": "FEATURE_UNSUPPORTED",
    "player_optional_seek": "SUCCESS",
    "player_no_mix": "PARAMETER_INVALID",
    "player_unrealized_mix": "PRECONDITIONS_VIOLATED",
    "player_plain": "SUCCESS",
    "player_plain_realize": "SUCCESS",
    "player_plain_get_bq": "FEATURE_UNSUPPORTED",
    "player_plain_get_play": "SUCCESS",
    "player_bq": "SUCCESS",
    "player_bq_realize": "SUCCESS",
    "get_asbq": "SUCCESS",
    "get_std_bq_alias": "SUCCESS",
    "get_seek": "FEATURE_UNSUPPORTED",
    "enqueue_null": "PARAMETER_INVALID",
    "enqueue_empty": "PARAMETER_INVALID",
    "enqueue_partial_frame": "PARAMETER_INVALID",
    "enqueue_1": "SUCCESS",
    "enqueue_2": "SUCCESS",
    "enqueue_full": "BUFFER_INSUFFICIENT",
    "state_count_full": "2",
    "clear": "SUCCESS",
    "state_count_cleared": "0",
    "get_state_null": "PARAMETER_INVALID",
    "set_play_state_bad": "PARAMETER_INVALID",
    "set_play_state_playing": "SUCCESS",
    "register_callback_playing": "PRECONDITIONS_VIOLATED",
    "set_play_state_stopped": "SUCCESS",
    "register_callback_stopped": "SUCCESS",
    "volume_above_max": "PARAMETER_INVALID",
    "volume_min": "SUCCESS",
    "max_volume": "0",
    "volume_read_back": "-32768",
    "engine_still_alive": "SUCCESS",
    "recorder_bad_device": "PARAMETER_INVALID",
    "recorder_std_bq_sink": "FEATURE_UNSUPPORTED",
    "recorder_volume_required": "FEATURE_UNSUPPORTED",
    "recorder_ok": "SUCCESS",
    "recorder_missing_wav": "CONTENT_NOT_FOUND",
    "recorder_sine_above_nyquist": "PARAMETER_INVALID",
    "recorder_realize": "SUCCESS",
    "recorder_get_volume": "FEATURE_UNSUPPORTED",
    "create_engine_again": "SUCCESS",
}


def test_bad_calls_give_the_right_results(client):
    run = run_client(client, "errors")
    assert run.checks == EXPECTED_CHECKS
    assert "Destroy() of the engine ignored" in run.stderr


def test_create_destroy_cycles(client, tmp_path):
    log = tmp_path / "sles.log"
    run = run_client(client, "cycle", "--times", "12", env={"TABVM_SLES_LOG": str(log)})
    assert run.num("cycles") == 12 and run.num("callbacks") > 0
    summaries = [line for line in log.read_text().splitlines() if " summary " in line]
    assert len(summaries) == 24                 # a player and a recorder per cycle


def test_playback_wav_path_takes_the_object_id(client, tmp_path):
    run_client(client, "play", "--seconds", "0.3",
               env={"TABVM_SLES_PLAYBACK_WAV": str(tmp_path / "p{id}.wav")})
    files = list(tmp_path.glob("p*.wav"))
    assert len(files) == 1 and re.fullmatch(r"p\d+\.wav", files[0].name)
    assert read_wav(files[0]).frames > 0


SHORT_RUNS = [
    ("cycle", "--times", "3"),
    ("errors",),
    ("play", "--seconds", "0.6", "--starve-at", "0.2", "--resume-at", "0.35",
     "--volume-at", "0.4:-300"),
    ("record", "--seconds", "0.6", "--starve-at", "0.2", "--resume-at", "0.35"),
]


def run_short(client: Path, tmp_path: Path, prefix: tuple[str, ...] = ()) -> list[str]:
    """The short runs; the stderr of each."""
    env = {"TABVM_SLES_PLAYBACK_WAV": str(tmp_path / "p.wav"),
           "TABVM_SLES_CAPTURE_SINE": "300", "TABVM_SLES_LOG": str(tmp_path / "log")}
    return [run_client(client, *args, env=env, prefix=prefix, timeout=300).stderr
            for args in SHORT_RUNS]


def test_valgrind_finds_no_error_or_leak(client, tmp_path):
    if not shutil.which("valgrind"):
        pytest.skip("valgrind is not installed (apt-get install valgrind)")
    run_short(client, tmp_path, ("valgrind", "-q", "--error-exitcode=1", "--leak-check=full",
                                 "--errors-for-leak-kinds=all"))


def test_address_sanitizer_finds_nothing(tmp_path):
    client = build(tmp_path / "asan", ("-O1", "-fsanitize=address,undefined",
                                       "-fno-omit-frame-pointer", "-fno-sanitize-recover=all"))
    for err in run_short(client, tmp_path):
        assert "Sanitizer" not in err and "runtime error" not in err, err


def test_thread_sanitizer_finds_no_race(tmp_path):
    client = build(tmp_path / "tsan", ("-O1", "-fsanitize=thread"))
    probe = subprocess.run([str(client), "errors"], capture_output=True, text=True)
    if "FATAL: ThreadSanitizer" in probe.stderr:     # e.g. an unsupported memory layout
        pytest.skip(probe.stderr.strip().splitlines()[0])
    for err in run_short(client, tmp_path):
        assert "ThreadSanitizer" not in err, err
