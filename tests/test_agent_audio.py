"""Tests of the guest agent's audio verbs (pcmplay, pcmrec, ctllist, ctlset) and
their host client methods (glue/agent_client.py):

- the client's parsers and argument checks, and its requests against a scripted
  fake agent on a socketpair;
- the real agent on a pty: usage errors, devices that do not exist;
- the real agent.c linked with a simulated ALSA kernel (FAKE_ALSA below) under
  AddressSanitizer/UBSan. The simulation is compiled on its own against the
  kernel's uapi <sound/asound.h>, so every structure and ioctl number the agent
  defines by hand is checked against the real header. It checks the samples
  played (exact, phase-continuous across partial writes and underruns), the
  hw/sw parameters asked for and the fallback, xrun recovery, the frequency
  estimator on sines with noise, the raw capture file, every bounded wait, and the
  control verbs;
- end to end (marked e2e): a real guest under TCG with ich9-intel-hda and two
  hda-duplex codecs, one on -audiodev wav (playback is checked in the WAV file
  after QEMU exits), one on -audiodev none (capture gives silence: the wav
  backend has no input, so its capture stream never moves, which shows the
  agent's deadline).
"""

from __future__ import annotations

import array
import dataclasses
import math
import random
import re
import socket
import subprocess
import time
import wave
from pathlib import Path

import pytest

from audio_analysis import tone_frequency
from fake_agent import FakeAgent, PtyAgents, compile_with_fakes
from glue.agent_client import (AgentClient, AgentError, CtlElem, PcmPlayResult,
                               PcmRecordResult, _parse_ctl_list, _parse_ctl_values,
                               _parse_pcm_play, _parse_pcm_record)
from tabvm import guest

# -- parsers -------------------------------------------------------------------


def test_parse_pcm_play():
    assert _parse_pcm_play("frames 96000 xruns 0 ms 1972 rate 48000 channels 2 period 480 "
                           "buffer 1920") == PcmPlayResult(96000, 0, 1972, 48000, 2, 480, 1920)


@pytest.mark.parametrize("text", [
    "", "frames 96000 xruns 0 ms 1972 rate 48000 channels 2 period 480",
    "frames 96000 xruns 0 ms 1972 rate 48000 channels 2 period 480 buffer 1920 ",
    "frames 96000 xruns -1 ms 1972 rate 48000 channels 2 period 480 buffer 1920",
    "frames 96000 xruns 0 ms 1972 rate 48000 channels 2 period 480 buffer 1920\n",
    "frames 96000  xruns 0 ms 1972 rate 48000 channels 2 period 480 buffer 1920",
    "frames x xruns 0 ms 1972 rate 48000 channels 2 period 480 buffer 1920",
    "frames 96000 xruns 0 ms 1.5 rate 48000 channels 2 period 480 buffer 1920",
    "frames \u0661 xruns 0 ms 1 rate 48000 channels 2 period 480 buffer 1920",
])
def test_parse_pcm_play_rejects(text):
    with pytest.raises(AgentError, match="pcmplay: malformed"):
        _parse_pcm_play(text)


def test_parse_pcm_record():
    r = _parse_pcm_record("frames 96000 xruns 1 freq 440.37 rms 0.353564 peak 0.499969")
    assert r == PcmRecordResult(96000, 1, 440.37, 0.353564, 0.499969)
    assert isinstance(r.freq, float) and isinstance(r.frames, int)
    assert _parse_pcm_record("frames 9600 xruns 0 freq 0.00 rms 0.000000 peak 1.000000").peak == 1.0


@pytest.mark.parametrize("text", [
    "", "frames 96000 xruns 0 freq 440.37 rms 0.353564",
    "frames 96000 xruns 0 freq 440.4 rms 0.353564 peak 0.499969",
    "frames 96000 xruns 0 freq 440 rms 0.353564 peak 0.499969",
    "frames 96000 xruns 0 freq 440.37 rms 0.35356 peak 0.499969",
    "frames 96000 xruns 0 freq 440.37 rms 1.353564 peak 0.499969",
    "frames 96000 xruns 0 freq 440.37 rms 0.353564 peak 1.000001",
    "frames 96000 xruns 0 freq -440.37 rms 0.353564 peak 0.499969",
    "frames 96000 xruns 0 freq 440.37 rms 0.353564 peak 0.499969 ",
])
def test_parse_pcm_record_rejects(text):
    with pytest.raises(AgentError, match="pcmrec: malformed"):
        _parse_pcm_record(text)


CTL_LINES = (
    "numid 1 iface mixer type integer access rw count 2 values 0,0 min 0 max 74 step 0 "
    "index 0 device 0 name Master Playback Volume\n"
    "numid 5 iface mixer type iec958 access rw count 1 values - min 0 max 0 step 0 "
    "index 0 device 0 name IEC958 Playback Default\n"
    "numid 6 iface pcm type integer64 access rw count 1 values -5 min -5 max 1000000000000 "
    "step 1 index 3 device 2 name Big?Offset\n"
    "numid 8 iface mixer type integer access - count 1 values - min 0 max 1 step 0 "
    "index 0 device 0 name Secret")


def test_parse_ctl_list():
    assert _parse_ctl_list("") == []
    elems = _parse_ctl_list(CTL_LINES)
    assert elems[0] == CtlElem(1, "mixer", "integer", "rw", 2, (0, 0), 0, 74, 0, 0, 0,
                               "Master Playback Volume")
    assert elems[0].writable
    assert elems[1].values is None
    assert elems[2] == CtlElem(6, "pcm", "integer64", "rw", 1, (-5,), -5, 10**12, 1, 3, 2,
                               "Big?Offset")
    assert elems[3].access == "" and not elems[3].writable


@pytest.mark.parametrize("line", [
    "numid 1 iface mixer type integer access rw count 2 values 0,0 min 0 max 74 step 0 index 0",
    "numid 1 iface mixer type integer access rw count 2 values 0, min 0 max 74 step 0 index 0 "
    "device 0 name X",
    "numid 1 iface mixer type integer access wr count 2 values 0 min 0 max 74 step 0 index 0 "
    "device 0 name X",
    "numid 1 iface mixer type integer access  count 2 values 0 min 0 max 74 step 0 index 0 "
    "device 0 name X",
    "numid 1 iface foo type integer access rw count 2 values 0 min 0 max 74 step 0 index 0 "
    "device 0 name X",
    "numid 1 iface mixer type integer access rw count 2 values 0 min 0 max 74 step 0 index 0 "
    "device 0 name " + "x" * 45,
    "numid 1 iface mixer type integer access rw count 2 values 0 min 0 max 74 step 0 index 0 "
    "device 0 name tab\there",
])
def test_parse_ctl_list_rejects(line):
    with pytest.raises(AgentError, match="ctllist: malformed"):
        _parse_ctl_list(line)


def test_parse_ctl_values():
    assert _parse_ctl_values("74,74", "ctlset") == (74, 74)
    assert _parse_ctl_values("-3", "ctlset") == (-3,)
    for text in ("", "74,", ",74", "7 4", "x", "74,74\n"):
        with pytest.raises(AgentError, match="ctlset: malformed"):
            _parse_ctl_values(text, "ctlset")


# -- client requests against a scripted fake agent --------------------------------


PLAY = "frames 96000 xruns 0 ms 1972 rate 48000 channels 2 period 480 buffer 1920"
REC = "frames 9600 xruns 0 freq 440.00 rms 0.353553 peak 0.500000"


def test_client_requests_and_answers():
    fake = FakeAgent([("ok", PLAY), ("ok", PLAY), ("ok", REC), ("ok", REC), ("ok", CTL_LINES),
                      ("ok", "74,74"), ("ok", "74,70")])
    c = fake.client
    assert c.pcm_play(0, 0, 48000, 2, 1000, 2000) == _parse_pcm_play(PLAY)
    c.pcm_play(3, 7, 8000, 1, 3999, 120_000, amplitude_permille=1000)
    assert c.pcm_record(0, 2, 48000, 2, 200).freq == 440.0
    c.pcm_record(1, 0, 44100, 8, 10_000, path="/tmp/rec.raw")
    assert len(c.ctl_list(0)) == 4
    assert c.ctl_set(0, 1, 74) == (74, 74)
    assert c.ctl_set(0, 1, [74, 70]) == (74, 70)
    assert fake.requests == [
        "pcmplay 0 0 48000 2 1000 2000 500", "pcmplay 3 7 8000 1 3999 120000 1000",
        "pcmrec 0 2 48000 2 200", "pcmrec 1 0 44100 8 10000 /tmp/rec.raw", "ctllist 0",
        "ctlset 0 1 74", "ctlset 0 1 74,70",
    ]


def test_client_mixer_unmute():
    listing = (
        "numid 1 iface mixer type integer access rw count 2 values 0,0 min 0 max 74 step 0 "
        "index 0 device 0 name Master Playback Volume\n"
        "numid 2 iface mixer type boolean access rw count 2 values 0,0 min 0 max 1 step 0 "
        "index 0 device 0 name Master Playback Switch\n"
        "numid 3 iface mixer type integer access rw count 2 values 0,0 min 0 max 31 step 0 "
        "index 0 device 0 name Capture Volume\n"
        "numid 4 iface mixer type boolean access rw count 2 values 0,0 min 0 max 1 step 0 "
        "index 0 device 0 name Capture Switch\n"
        "numid 5 iface card type boolean access r count 1 values 1 min 0 max 1 step 0 "
        "index 0 device 0 name Line Phantom Jack\n"
        "numid 6 iface mixer type integer access rwi count 1 values 0 min 0 max 9 step 0 "
        "index 0 device 0 name Inactive Volume\n"
        "numid 7 iface mixer type integer access r count 1 values 0 min 0 max 9 step 0 "
        "index 0 device 0 name Meter Volume\n"
        "numid 8 iface pcm type integer access rw count 2 values 0,0 min 0 max 36 step 0 "
        "index 0 device 0 name Playback Channel Map")
    fake = FakeAgent([("ok", listing), ("ok", "74,74"), ("ok", "1,1"), ("ok", "31,31"),
                      ("ok", "1,1"), ("ok", listing)])
    assert len(fake.client.mixer_unmute(0)) == 8
    assert fake.requests == ["ctllist 0", "ctlset 0 1 74", "ctlset 0 2 1", "ctlset 0 3 31",
                             "ctlset 0 4 1", "ctllist 0"]


def test_client_default_timeouts_cover_the_verb():
    seen = []
    c = AgentClient(socket.socketpair()[0])

    def call(verb, *args, timeout):
        seen.append((verb, timeout))
        return PLAY if verb == "pcmplay" else REC
    c.call = call
    c.pcm_play(0, 0, 48000, 2, 1000, 2000)
    c.pcm_play(0, 0, 48000, 2, 1000, 120_000)
    c.pcm_record(0, 0, 48000, 2, 10_000)
    c.pcm_record(0, 0, 48000, 2, 2000, timeout=3)
    assert seen == [("pcmplay", 17.0), ("pcmplay", 135.0), ("pcmrec", 45.0), ("pcmrec", 3)]


def test_client_err_and_malformed_answers():
    fake = FakeAgent([("err", "/dev/snd/pcmC0D0p: HW_PARAMS (...): Invalid argument"),
                      ("ok", "frames 1"), ("ok", "74;74")])
    with pytest.raises(AgentError, match="pcmplay: /dev/snd/pcmC0D0p: HW_PARAMS"):
        fake.client.pcm_play(0, 0, 48000, 1, 1000, 10)
    with pytest.raises(AgentError, match="pcmrec: malformed"):
        fake.client.pcm_record(0, 0, 48000, 2, 200)
    with pytest.raises(AgentError, match="ctlset: malformed"):
        fake.client.ctl_set(0, 1, 74)


BAD_CALLS = {
    "card negative": lambda c: c.pcm_play(-1, 0, 48000, 2, 1000, 10),
    "card big": lambda c: c.pcm_record(256, 0, 48000, 2, 200),
    "dev big": lambda c: c.pcm_play(0, 256, 48000, 2, 1000, 10),
    "dev str": lambda c: c.pcm_play(0, "0", 48000, 2, 1000, 10),
    "rate low": lambda c: c.pcm_play(0, 0, 7999, 2, 1000, 10),
    "rate high": lambda c: c.pcm_record(0, 0, 192_001, 2, 200),
    "rate float": lambda c: c.pcm_play(0, 0, 48000.0, 2, 1000, 10),
    "channels 0": lambda c: c.pcm_play(0, 0, 48000, 0, 1000, 10),
    "channels 9": lambda c: c.pcm_record(0, 0, 48000, 9, 200),
    "channels bool": lambda c: c.pcm_play(0, 0, 48000, True, 1000, 10),
    "freq 0": lambda c: c.pcm_play(0, 0, 48000, 2, 0, 10),
    "freq nyquist": lambda c: c.pcm_play(0, 0, 48000, 2, 24000, 10),
    "freq float": lambda c: c.pcm_play(0, 0, 48000, 2, 440.5, 10),
    "play ms 0": lambda c: c.pcm_play(0, 0, 48000, 2, 1000, 0),
    "play ms big": lambda c: c.pcm_play(0, 0, 48000, 2, 1000, 120_001),
    "amplitude big": lambda c: c.pcm_play(0, 0, 48000, 2, 1000, 10, amplitude_permille=1001),
    "amplitude negative": lambda c: c.pcm_play(0, 0, 48000, 2, 1000, 10, amplitude_permille=-1),
    "rec ms short": lambda c: c.pcm_record(0, 0, 48000, 2, 199),
    "rec ms long": lambda c: c.pcm_record(0, 0, 48000, 2, 10_001),
    "rec path space": lambda c: c.pcm_record(0, 0, 48000, 2, 200, path="/tmp/a b"),
    "rec path empty": lambda c: c.pcm_record(0, 0, 48000, 2, 200, path=""),
    "ctl card": lambda c: c.ctl_list(256),
    "ctl numid 0": lambda c: c.ctl_set(0, 0, 1),
    "ctl numid big": lambda c: c.ctl_set(0, 1 << 32, 1),
    "ctl no values": lambda c: c.ctl_set(0, 1, []),
    "ctl many values": lambda c: c.ctl_set(0, 1, [0] * 129),
    "ctl value str": lambda c: c.ctl_set(0, 1, "1"),
    "ctl value float": lambda c: c.ctl_set(0, 1, [1.0]),
    "ctl value huge": lambda c: c.ctl_set(0, 1, 1 << 63),
    "unmute card": lambda c: c.mixer_unmute(-1),
}


@pytest.mark.parametrize("name", sorted(BAD_CALLS))
def test_client_checks_args_before_sending(name):
    fake = FakeAgent([])
    with pytest.raises(ValueError):
        BAD_CALLS[name](fake.client)
    assert fake.nothing_sent()


def test_client_limits_are_inclusive():
    fake = FakeAgent([("ok", PLAY), ("ok", PLAY), ("ok", REC), ("ok", REC), ("ok", "1")])
    c = fake.client
    c.pcm_play(255, 255, 192_000, 8, 95_999, 120_000, amplitude_permille=0)
    c.pcm_play(0, 0, 8000, 1, 1, 1)
    c.pcm_record(0, 0, 8000, 1, 200)
    c.pcm_record(0, 0, 192_000, 8, 10_000)
    c.ctl_set(255, (1 << 32) - 1, [-(1 << 63)] + [0] * 127)
    assert fake.requests[:2] == ["pcmplay 255 255 192000 8 95999 120000 0",
                                 "pcmplay 0 0 8000 1 1 1 500"]


# -- the real agent on a pty ------------------------------------------------------


BAD_REQUESTS = [
    "pcmplay", "pcmplay 0 0 48000 2 1000", "pcmplay 0 0 48000 2 1000 10 500 1",
    "pcmplay x 0 48000 2 1000 10", "pcmplay 256 0 48000 2 1000 10", "pcmplay 0 256 48000 2 1000 10",
    "pcmplay 0 0 7999 2 1000 10", "pcmplay 0 0 192001 2 1000 10", "pcmplay 0 0 48000 0 1000 10",
    "pcmplay 0 0 48000 9 1000 10", "pcmplay 0 0 48000 2 0 10", "pcmplay 0 0 48000 2 24000 10",
    "pcmplay 0 0 8000 2 4000 10", "pcmplay 0 0 48000 2 1000 0", "pcmplay 0 0 48000 2 1000 120001",
    "pcmplay 0 0 48000 2 1000 10 1001", "pcmplay 0 0 48000 2 1000 10 -1",
    "pcmplay 0 0 48000 2 1000.5 10", "pcmplay 0 0 48000 2 1000  10", "pcmplay 0 0 48000 2 0x10 10",
    "pcmplay 0 0 48000 2 1000 99999999999999999999999",
    "pcmrec", "pcmrec 0 0 48000 2", "pcmrec 0 0 48000 2 199", "pcmrec 0 0 48000 2 10001",
    "pcmrec 0 0 48000 2 200 /tmp/a /tmp/b", "pcmrec 0 0 48000 2 200 ", "pcmrec 0 0 5 2 200",
    "pcmrec 0 0 48000 2 2s",
    "ctllist", "ctllist x", "ctllist 256", "ctllist 0 0",
    "ctlset", "ctlset 0", "ctlset 0 1", "ctlset 0 0 1", "ctlset 0 4294967296 1", "ctlset 0 1 x",
    "ctlset 0 1 1,", "ctlset 0 1 ,1", "ctlset 0 1 1,,2", "ctlset 0 1 -", "ctlset 0 1 +1",
    "ctlset 0 1 1 2", "ctlset 0 1 99999999999999999999", "ctlset 0 1 " + ",".join(["1"] * 129),
]


@pytest.mark.parametrize("request_line", BAD_REQUESTS)
def test_audio_verbs_bad_args(real_agent, request_line):
    client, proc = real_agent
    verb = request_line.split(" ")[0]
    with pytest.raises(AgentError, match=f"{verb}: usage: {verb}"):
        client.call(verb, *request_line.split(" ")[1:])
    assert proc.poll() is None


@pytest.mark.parametrize("request_line, message", [
    ("pcmplay 255 255 48000 2 1000 10",
     r"open /dev/snd/pcmC255D255p: No such file or directory \(PCM devices: /proc/asound/pcm\)"),
    ("pcmrec 255 3 48000 2 200", r"open /dev/snd/pcmC255D3c: No such file or directory"),
    ("ctllist 255", r"open /dev/snd/controlC255: No such file or directory \(sound cards"),
    ("ctlset 255 1 1", r"open /dev/snd/controlC255: No such file or directory"),
])
def test_missing_devices(real_agent, request_line, message):
    client, proc = real_agent
    with pytest.raises(AgentError, match=message):
        client.call(*request_line.split(" "))
    client.ping()


# -- the real agent with a simulated ALSA kernel ------------------------------------

# Compiled on its own (it includes the kernel's <sound/asound.h>, which agent.c must
# not see): open() of /dev/snd/pcmC0D0[pc] and /dev/snd/controlC0 returns the read
# end of a pipe (poll never finds it ready, so every wait runs to its timeout) and
# ioctl() on it plays the device. Environment: FAKE_LOG (one line per call),
# FAKE_PCM_OUT (raw frames played), FAKE_PCM_FREQ/AMP/NOISE/PHASE/DC (capture:
# channel 0 that sine, other channels 3x the frequency), FAKE_PCM_STEP (period granularity),
# FAKE_PCM_PERIODS_MIN, FAKE_PCM_STEREO_ONLY, FAKE_PCM_CHUNK (frames per transfer),
# FAKE_PCM_EAGAIN_EVERY, FAKE_PCM_XRUN_AT (frames), FAKE_PCM_STALL (no room / no
# data), FAKE_PCM_DRAIN_STUCK, FAKE_PCM_DRAIN_POLLS. Rates: 8000, 44100, 48000, 192000.
FAKE_ALSA = r"""#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <sound/asound.h>

enum { S_OPEN, S_SETUP, S_PREPARED, S_RUNNING, S_XRUN, S_DRAINING };
struct fpcm {
    int used, ctl, capture, state, wfd, xrun_done;
    unsigned rate, channels;
    unsigned long period, buffer, start_threshold, frames, pos, drain_left, calls;
};
static struct fpcm pcms[1024];

static long env_num(const char *name, long dflt)
{
    const char *v = getenv(name);
    return v && *v ? strtol(v, NULL, 0) : dflt;
}
static double env_dbl(const char *name, double dflt)
{
    const char *v = getenv(name);
    return v && *v ? strtod(v, NULL) : dflt;
}
static void logf_(const char *fmt, ...)
{
    const char *path = getenv("FAKE_LOG");
    va_list ap;
    if (!path)
        return;
    FILE *f = fopen(path, "a");
    if (!f)
        return;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fputc('\n', f);
    fclose(f);
}

int fake_open(const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    int mode = (flags & O_CREAT) ? va_arg(ap, int) : 0;
    va_end(ap);
    unsigned card, dev = 0;
    char dir = 0;
    int ctl = sscanf(path, "/dev/snd/controlC%u", &card) == 1;
    if (!ctl && sscanf(path, "/dev/snd/pcmC%uD%u%c", &card, &dev, &dir) != 3)
        return open(path, flags, mode);
    logf_("open %s nonblock %d", path, !!(flags & O_NONBLOCK));
    if (card != 0 || dev != 0) {
        errno = ENOENT;
        return -1;
    }
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0 || p[0] >= 1024)
        abort();
    struct fpcm *f = &pcms[p[0]];
    memset(f, 0, sizeof(*f));
    f->used = 1;
    f->ctl = ctl;
    f->capture = dir == 'c';
    f->wfd = p[1];          /* kept open: the read end never polls ready */
    return p[0];
}

static struct snd_interval *iv(struct snd_pcm_hw_params *p, int n)
{
    return &p->intervals[n - SNDRV_PCM_HW_PARAM_FIRST_INTERVAL];
}
static void fix(struct snd_pcm_hw_params *p, int n, unsigned v)
{
    struct snd_interval *i = iv(p, n);
    i->min = i->max = v;
    i->integer = 1;
    i->openmin = i->openmax = i->empty = 0;
}
static int only_bit(const struct snd_mask *m, unsigned bit)
{
    for (unsigned i = 0; i < 8; i++)
        if (m->bits[i] != (i == bit / 32 ? 1u << (bit % 32) : 0))
            return 0;
    return 1;
}

static int hw_params(struct fpcm *f, struct snd_pcm_hw_params *p)
{
    unsigned step = (unsigned)env_num("FAKE_PCM_STEP", 32);    /* period frames */
    unsigned pmin = (unsigned)env_num("FAKE_PCM_PERIODS_MIN", 2);
    unsigned rate = iv(p, SNDRV_PCM_HW_PARAM_RATE)->min;
    unsigned ch = iv(p, SNDRV_PCM_HW_PARAM_CHANNELS)->min;
    struct snd_interval *ps = iv(p, SNDRV_PCM_HW_PARAM_PERIOD_SIZE);
    struct snd_interval *pn = iv(p, SNDRV_PCM_HW_PARAM_PERIODS);
    logf_("HW_PARAMS rate %u..%u channels %u..%u bits %u..%u period %u..%u periods %u..%u "
          "rmask %#x", rate, iv(p, SNDRV_PCM_HW_PARAM_RATE)->max, ch,
          iv(p, SNDRV_PCM_HW_PARAM_CHANNELS)->max, iv(p, SNDRV_PCM_HW_PARAM_SAMPLE_BITS)->min,
          iv(p, SNDRV_PCM_HW_PARAM_SAMPLE_BITS)->max, ps->min, ps->max, pn->min, pn->max,
          p->rmask);
    if (!only_bit(&p->masks[SNDRV_PCM_HW_PARAM_ACCESS], SNDRV_PCM_ACCESS_RW_INTERLEAVED) ||
        !only_bit(&p->masks[SNDRV_PCM_HW_PARAM_FORMAT], SNDRV_PCM_FORMAT_S16_LE) ||
        !only_bit(&p->masks[SNDRV_PCM_HW_PARAM_SUBFORMAT], SNDRV_PCM_SUBFORMAT_STD) ||
        iv(p, SNDRV_PCM_HW_PARAM_SAMPLE_BITS)->min > 16 ||
        iv(p, SNDRV_PCM_HW_PARAM_SAMPLE_BITS)->max < 16 ||
        rate != iv(p, SNDRV_PCM_HW_PARAM_RATE)->max ||
        ch != iv(p, SNDRV_PCM_HW_PARAM_CHANNELS)->max)
        return -EINVAL;
    if ((rate != 44100 && rate != 48000 && rate != 8000 && rate != 192000) ||
        (env_num("FAKE_PCM_STEREO_ONLY", 0) && ch != 2) || ch > 8)
        return -EINVAL;
    unsigned period = (ps->min + step - 1) / step * step;
    unsigned periods = pn->min > pmin ? pn->min : pmin;
    if (period > ps->max || periods > pn->max || periods > 32)
        return -EINVAL;
    f->rate = rate;
    f->channels = ch;
    f->period = period;
    f->buffer = (unsigned long)period * periods;
    fix(p, SNDRV_PCM_HW_PARAM_SAMPLE_BITS, 16);
    fix(p, SNDRV_PCM_HW_PARAM_FRAME_BITS, 16 * ch);
    fix(p, SNDRV_PCM_HW_PARAM_CHANNELS, ch);
    fix(p, SNDRV_PCM_HW_PARAM_RATE, rate);
    fix(p, SNDRV_PCM_HW_PARAM_PERIOD_SIZE, period);
    fix(p, SNDRV_PCM_HW_PARAM_PERIOD_BYTES, period * 2 * ch);
    fix(p, SNDRV_PCM_HW_PARAM_PERIODS, periods);
    fix(p, SNDRV_PCM_HW_PARAM_BUFFER_SIZE, period * periods);
    fix(p, SNDRV_PCM_HW_PARAM_BUFFER_BYTES, period * periods * 2 * ch);
    fix(p, SNDRV_PCM_HW_PARAM_PERIOD_TIME, (unsigned)(period * 1000000ull / rate));
    fix(p, SNDRV_PCM_HW_PARAM_BUFFER_TIME, (unsigned)(f->buffer * 1000000ull / rate));
    fix(p, SNDRV_PCM_HW_PARAM_TICK_TIME, 0);
    p->rate_num = rate;
    p->rate_den = 1;
    p->msbits = 16;
    p->fifo_size = 0x5a5a5a5a;
    f->state = S_SETUP;
    return 0;
}

static void sample_out(struct fpcm *f, const int16_t *s, unsigned long n)
{
    const char *path = getenv("FAKE_PCM_OUT");
    if (!path)
        return;
    FILE *o = fopen(path, "ab");
    if (!o)
        abort();
    fwrite(s, 2 * f->channels, n, o);
    fclose(o);
}

/* Capture: channel 0 a sine (FAKE_PCM_FREQ, FAKE_PCM_AMP) plus uniform noise
 * (FAKE_PCM_NOISE, fraction of full scale); other channels 3x the frequency. */
static void sample_in(struct fpcm *f, int16_t *s, unsigned long n)
{
    double freq = env_dbl("FAKE_PCM_FREQ", 440), amp = env_dbl("FAKE_PCM_AMP", 0.5);
    double noise = env_dbl("FAKE_PCM_NOISE", 0), ph = env_dbl("FAKE_PCM_PHASE", 0.3);
    double dc = env_dbl("FAKE_PCM_DC", 0);
    for (unsigned long i = 0; i < n; i++, f->pos++) {
        double t = (double)f->pos / f->rate;
        for (unsigned c = 0; c < f->channels; c++) {
            double v = dc + amp * sin(2 * M_PI * freq * (c ? 3 : 1) * t + ph);
            v += noise * (2.0 * rand() / RAND_MAX - 1);
            v *= 32767;
            s[i * f->channels + c] = (int16_t)lrint(v > 32767 ? 32767 : v < -32768 ? -32768 : v);
        }
    }
}

static int xfer(struct fpcm *f, struct snd_xferi *x, int capture)
{
    unsigned long chunk = (unsigned long)env_num("FAKE_PCM_CHUNK", 1 << 30);
    long xrun_at = env_num("FAKE_PCM_XRUN_AT", -1);
    long eagain = env_num("FAKE_PCM_EAGAIN_EVERY", 0);
    f->calls++;
    if (f->state == S_XRUN)
        return -EPIPE;
    if (f->state != S_PREPARED && f->state != S_RUNNING)
        return -EBADFD;
    if (capture && f->state != S_RUNNING)
        return -EBADFD;                     /* the agent STARTs capture itself */
    if (env_num("FAKE_PCM_STALL", 0) && f->frames >= (capture ? 0 : f->buffer))
        return -EAGAIN;
    if (eagain && f->calls % eagain == 0)
        return -EAGAIN;
    if (xrun_at >= 0 && !f->xrun_done && f->frames >= (unsigned long)xrun_at) {
        f->xrun_done = 1;
        f->state = S_XRUN;
        f->pos += 1000;                     /* capture: frames lost in the overrun */
        logf_("xrun at %lu", f->frames);
        return -EPIPE;
    }
    unsigned long n = x->frames < chunk ? x->frames : chunk;
    if (capture)
        sample_in(f, x->buf, n);
    else
        sample_out(f, x->buf, n);
    f->frames += n;
    x->result = (long)n;
    if (!capture && f->state == S_PREPARED && n >= f->start_threshold)
        f->state = S_RUNNING;
    return 0;
}

/* Card 0's control elements; "\x01" in a name must come out as '?'. */
struct felem {
    const char *name;
    int iface, type;
    unsigned access, count, index;
    long long min, max, values[4];
};
static struct felem elems[] = {
    {"Master Playback Volume", SNDRV_CTL_ELEM_IFACE_MIXER, SNDRV_CTL_ELEM_TYPE_INTEGER,
     SNDRV_CTL_ELEM_ACCESS_READWRITE, 2, 0, 0, 74, {0, 0}},
    {"Master Playback Switch", SNDRV_CTL_ELEM_IFACE_MIXER, SNDRV_CTL_ELEM_TYPE_BOOLEAN,
     SNDRV_CTL_ELEM_ACCESS_READWRITE, 2, 0, 0, 1, {0, 0}},
    {"Capture Source", SNDRV_CTL_ELEM_IFACE_MIXER, SNDRV_CTL_ELEM_TYPE_ENUMERATED,
     SNDRV_CTL_ELEM_ACCESS_READWRITE, 1, 0, 0, 2, {1}},
    {"Line Phantom Jack", SNDRV_CTL_ELEM_IFACE_CARD, SNDRV_CTL_ELEM_TYPE_BOOLEAN,
     SNDRV_CTL_ELEM_ACCESS_READ, 1, 0, 0, 1, {1}},
    {"IEC958 Playback Default", SNDRV_CTL_ELEM_IFACE_MIXER, SNDRV_CTL_ELEM_TYPE_IEC958,
     SNDRV_CTL_ELEM_ACCESS_READWRITE, 1, 0, 0, 0, {0}},
    {"Big\x01Offset", SNDRV_CTL_ELEM_IFACE_PCM, SNDRV_CTL_ELEM_TYPE_INTEGER64,
     SNDRV_CTL_ELEM_ACCESS_READWRITE, 1, 3, -5, 1000000000000LL, {-5}},
    {"Capture Volume", SNDRV_CTL_ELEM_IFACE_MIXER, SNDRV_CTL_ELEM_TYPE_INTEGER,
     SNDRV_CTL_ELEM_ACCESS_READWRITE | SNDRV_CTL_ELEM_ACCESS_INACTIVE, 4, 1, -10, 10,
     {-10, 0, 5, 10}},
    {"Secret", SNDRV_CTL_ELEM_IFACE_MIXER, SNDRV_CTL_ELEM_TYPE_INTEGER, 0, 1, 0, 0, 1, {0}},
};
#define NELEMS (sizeof(elems) / sizeof(elems[0]))

static void elem_id(unsigned k, struct snd_ctl_elem_id *id)
{
    memset(id, 0, sizeof(*id));
    id->numid = k + 1;
    id->iface = elems[k].iface;
    id->index = elems[k].index;
    strncpy((char *)id->name, elems[k].name, sizeof(id->name));
}

static int ctl_ioctl(unsigned long req, void *arg)
{
    switch (req) {
    case SNDRV_CTL_IOCTL_ELEM_LIST: {
        struct snd_ctl_elem_list *l = arg;
        l->count = NELEMS;
        l->used = 0;
        for (unsigned k = l->offset; k < NELEMS && l->used < l->space; k++)
            elem_id(k, &l->pids[l->used++]);
        return 0;
    }
    case SNDRV_CTL_IOCTL_ELEM_INFO: {
        struct snd_ctl_elem_info *i = arg;
        unsigned k = i->id.numid - 1;
        if (!i->id.numid || k >= NELEMS)
            return -ENOENT;
        memset(i, 0x5a, sizeof(*i));            /* what we do not fill is garbage */
        elem_id(k, &i->id);
        i->type = elems[k].type;
        i->access = elems[k].access;
        i->count = elems[k].count;
        i->owner = 0;
        if (elems[k].type == SNDRV_CTL_ELEM_TYPE_INTEGER) {
            i->value.integer.min = (long)elems[k].min;
            i->value.integer.max = (long)elems[k].max;
            i->value.integer.step = 0;
        } else if (elems[k].type == SNDRV_CTL_ELEM_TYPE_INTEGER64) {
            i->value.integer64.min = elems[k].min;
            i->value.integer64.max = elems[k].max;
            i->value.integer64.step = 1;
        } else if (elems[k].type == SNDRV_CTL_ELEM_TYPE_ENUMERATED) {
            i->value.enumerated.items = (unsigned)elems[k].max + 1;
        }
        return 0;
    }
    case SNDRV_CTL_IOCTL_ELEM_READ:
    case SNDRV_CTL_IOCTL_ELEM_WRITE: {
        struct snd_ctl_elem_value *v = arg;
        unsigned k = v->id.numid - 1;
        struct felem *e = &elems[k];
        int write = req == SNDRV_CTL_IOCTL_ELEM_WRITE;
        if (!v->id.numid || k >= NELEMS)
            return -ENOENT;
        if (!(e->access & (write ? SNDRV_CTL_ELEM_ACCESS_WRITE : SNDRV_CTL_ELEM_ACCESS_READ)))
            return -EPERM;
        for (unsigned c = 0; c < e->count; c++) {
            long long *x = &e->values[c];
            if (write) {
                long long n = e->type == SNDRV_CTL_ELEM_TYPE_INTEGER64 ? v->value.integer64.value[c]
                    : e->type == SNDRV_CTL_ELEM_TYPE_ENUMERATED ? v->value.enumerated.item[c]
                    : v->value.integer.value[c];
                if (n < e->min || n > e->max)
                    return -EINVAL;
                *x = n;
            } else if (e->type == SNDRV_CTL_ELEM_TYPE_INTEGER64) {
                v->value.integer64.value[c] = *x;
            } else if (e->type == SNDRV_CTL_ELEM_TYPE_ENUMERATED) {
                v->value.enumerated.item[c] = (unsigned)*x;
            } else {
                v->value.integer.value[c] = (long)*x;
            }
        }
        if (write)
            logf_("ELEM_WRITE %u", v->id.numid);
        return 0;
    }
    }
    logf_("unknown control ioctl %#lx", req);
    return -ENOTTY;
}

int fake_ioctl(int fd, unsigned long req, ...)
{
    void *arg = NULL;
    if (_IOC_SIZE(req)) {
        va_list ap;
        va_start(ap, req);
        arg = va_arg(ap, void *);
        va_end(ap);
    }
    if (fd < 0 || fd >= 1024 || !pcms[fd].used)
        return ioctl(fd, req, arg);
    struct fpcm *f = &pcms[fd];
    int r = 0;
    if (f->ctl) {
        r = ctl_ioctl(req, arg);
        if (r < 0) {
            errno = -r;
            return -1;
        }
        return 0;
    }
    switch (req) {
    case SNDRV_PCM_IOCTL_HW_REFINE: {
        struct snd_pcm_hw_params *p = arg;
        iv(p, SNDRV_PCM_HW_PARAM_RATE)->min = 44100;
        iv(p, SNDRV_PCM_HW_PARAM_RATE)->max = 48000;
        iv(p, SNDRV_PCM_HW_PARAM_CHANNELS)->min = 2;
        iv(p, SNDRV_PCM_HW_PARAM_CHANNELS)->max = 2;
        iv(p, SNDRV_PCM_HW_PARAM_PERIOD_SIZE)->min = 32;
        iv(p, SNDRV_PCM_HW_PARAM_PERIOD_SIZE)->max = 16384;
        logf_("HW_REFINE");
        break;
    }
    case SNDRV_PCM_IOCTL_HW_PARAMS:
        r = hw_params(f, arg);
        break;
    case SNDRV_PCM_IOCTL_SW_PARAMS: {
        struct snd_pcm_sw_params *s = arg;
        logf_("SW_PARAMS avail_min %lu start %lu stop %lu silence %lu/%lu tstamp %d",
              s->avail_min, s->start_threshold, s->stop_threshold, s->silence_threshold,
              s->silence_size, s->tstamp_mode);
        if (f->state != S_SETUP || !s->avail_min) {
            r = -EINVAL;
            break;
        }
        f->start_threshold = s->start_threshold;
        s->boundary = f->buffer << 20;
        break;
    }
    case SNDRV_PCM_IOCTL_PREPARE:
        logf_("PREPARE");
        if (f->state == S_OPEN)
            r = -EBADFD;
        else
            f->state = S_PREPARED;
        break;
    case SNDRV_PCM_IOCTL_START:
        logf_("START");
        if (f->state != S_PREPARED)
            r = -EBADFD;
        else
            f->state = S_RUNNING;
        break;
    case SNDRV_PCM_IOCTL_DROP:
        logf_("DROP");
        f->state = S_SETUP;
        break;
    case SNDRV_PCM_IOCTL_DRAIN:
        logf_("DRAIN");
        if (f->state == S_XRUN || (f->state == S_PREPARED && !f->frames)) {
            f->state = S_SETUP;
        } else if (f->state == S_PREPARED || f->state == S_RUNNING) {
            f->state = S_DRAINING;
            f->drain_left = env_num("FAKE_PCM_DRAIN_POLLS", 2);
        }
        r = -EAGAIN;                        /* non-blocking: the drain goes on */
        break;
    case SNDRV_PCM_IOCTL_DELAY:
        if (f->state == S_XRUN)
            r = -EPIPE;
        else if (f->state == S_DRAINING) {
            *(long *)arg = (long)f->drain_left * 100;
            if (!env_num("FAKE_PCM_DRAIN_STUCK", 0) && f->drain_left-- == 0)
                f->state = S_SETUP;
        } else if (f->state == S_RUNNING || f->state == S_PREPARED)
            *(long *)arg = 0;
        else
            r = -EBADFD;
        break;
    case SNDRV_PCM_IOCTL_WRITEI_FRAMES:
    case SNDRV_PCM_IOCTL_READI_FRAMES:
        if ((req == SNDRV_PCM_IOCTL_READI_FRAMES) != f->capture)
            r = -EINVAL;
        else
            r = xfer(f, arg, f->capture);
        break;
    default:
        logf_("unknown ioctl %#lx", req);
        r = -ENOTTY;
    }
    if (r < 0) {
        errno = -r;
        return -1;
    }
    return 0;
}
"""

AGENT_WITH_FAKES = r"""
int fake_open(const char *path, int flags, ...);
int fake_ioctl(int fd, unsigned long req, ...);
#define open fake_open
#define ioctl fake_ioctl
#include AGENT_C
"""


@pytest.fixture(scope="module")
def fake_agent_bin(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("fake-alsa")
    fake, wrapper = d / "fake_alsa.c", d / "agent_fakes.c"
    fake.write_text(FAKE_ALSA)
    wrapper.write_text(AGENT_WITH_FAKES)
    return compile_with_fakes(d / "agent-fake-alsa", [wrapper, fake], libs=["-lm"])


@dataclasses.dataclass
class Fake:
    client: AgentClient
    proc: subprocess.Popen
    log: Path
    out: Path

    def log_lines(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def played(self, channels: int) -> list[list[int]]:
        data = array.array("h", self.out.read_bytes() if self.out.exists() else b"")
        return [list(data[c::channels]) for c in range(channels)]


@pytest.fixture
def fake_alsa(fake_agent_bin, tmp_path):
    """start(**env) -> Fake: the agent with a simulated ALSA kernel."""
    agents, logs = PtyAgents(), []

    def start(**env: str) -> Fake:
        log, out = tmp_path / f"fake{len(logs)}.log", tmp_path / f"out{len(logs)}.raw"
        logs.append(log)
        env = {"FAKE_LOG": str(log), "FAKE_PCM_OUT": str(out),
               "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1", **env}
        client, proc = agents.start(fake_agent_bin, env)
        return Fake(client, proc, log, out)

    yield start
    assert agents.stop() == []


def expected_sine(n: int, rate: int, freq: int, permille: int) -> list[float]:
    amp = 32767 * permille / 1000
    return [amp * math.sin(2 * math.pi * ((freq * k) % rate) / rate) for k in range(n)]


@pytest.mark.parametrize("rate, channels, freq, ms, permille, env", [
    (48000, 2, 1000, 2000, 900, {}),
    (48000, 2, 1000, 2000, 500, {"FAKE_PCM_CHUNK": "100", "FAKE_PCM_EAGAIN_EVERY": "250",
                                 "FAKE_PCM_XRUN_AT": "20000"}),
    (44100, 1, 440, 500, 1000, {"FAKE_PCM_CHUNK": "333"}),
    (8000, 3, 3999, 300, 250, {}),
    (192000, 8, 95_999, 50, 0, {}),
    (192000, 2, 20_000, 100, 700, {"FAKE_PCM_XRUN_AT": "0"}),
])
def test_fake_play_exact_samples(fake_alsa, rate, channels, freq, ms, permille, env):
    fake = fake_alsa(**env)
    r = fake.client.pcm_play(0, 0, rate, channels, freq, ms, amplitude_permille=permille)
    frames = ms * rate // 1000
    assert (r.frames, r.rate, r.channels) == (frames, rate, channels)
    assert r.xruns == (1 if "FAKE_PCM_XRUN_AT" in env else 0)
    assert r.period >= rate // 100 and r.buffer == 4 * r.period
    played = fake.played(channels)
    assert all(ch == played[0] for ch in played)     # every channel the same
    want = expected_sine(frames, rate, freq, permille)
    assert len(played[0]) == frames                  # nothing lost or doubled at an xrun
    worst = max(abs(a - b) for a, b in zip(played[0], want))
    assert worst <= 0.5 + 1e-6, worst                # rounded, phase-continuous


def test_fake_play_asks_for_the_documented_setup(fake_alsa):
    fake = fake_alsa(FAKE_PCM_XRUN_AT="10000")
    r = fake.client.pcm_play(0, 0, 48000, 2, 1000, 500)
    assert (r.period, r.buffer, r.xruns) == (480, 1920, 1)
    assert fake.log_lines() == [
        "open /dev/snd/pcmC0D0p nonblock 1",
        "HW_PARAMS rate 48000..48000 channels 2..2 bits 16..16 period 480..960 periods 4..4 "
        "rmask 0xffffffff",
        "SW_PARAMS avail_min 480 start 480 stop 1920 silence 0/0 tstamp 0",
        "PREPARE", "xrun at 10080", "PREPARE", "DRAIN"]


def test_fake_play_falls_back_when_the_driver_refuses_4_periods(fake_alsa):
    fake = fake_alsa(FAKE_PCM_PERIODS_MIN="5", FAKE_PCM_STEP="64")
    r = fake.client.pcm_play(0, 0, 48000, 1, 1000, 100)
    assert (r.period, r.buffer) == (128, 640)        # smallest 64-multiple >= 2.5 ms, 5 periods
    hw = [line for line in fake.log_lines() if line.startswith("HW_PARAMS")]
    assert hw[1].endswith("period 120..3840 periods 2..32 rmask 0xffffffff"), hw
    assert "SW_PARAMS avail_min 128 start 128 stop 640 silence 0/0 tstamp 0" in fake.log_lines()


def test_fake_refused_setup_says_what_the_device_offers(fake_alsa):
    fake = fake_alsa(FAKE_PCM_STEREO_ONLY="1")
    with pytest.raises(AgentError, match=re.escape(
            "pcmplay: /dev/snd/pcmC0D0p: HW_PARAMS (S16_LE interleaved, rate 48000, "
            "channels 1): Invalid argument; with S16_LE interleaved the device offers rate "
            "44100..48000 channels 2..2 period 32..16384 frames")):
        fake.client.pcm_play(0, 0, 48000, 1, 1000, 100)
    with pytest.raises(AgentError, match=r"pcmrec: .*pcmC0D0c: HW_PARAMS .*rate 96000"):
        fake.client.pcm_record(0, 0, 96000, 2, 200)
    fake.client.ping()


@pytest.mark.parametrize("rate, freq, amp, noise, dc, ms, tolerance", [
    (48000, 440.0, 0.4, 0.0, 0.0, 2000, 0.005),
    (48000, 440.0, 0.4, 0.2, 0.0, 2000, 0.02),
    (48000, 1000.0, 0.4, 0.0, 0.0, 2000, 0.005),
    (44100, 997.31, 0.4, 0.05, 0.0, 1000, 0.01),
    (8000, 3900.5, 0.4, 0.05, 0.0, 500, 0.05),
    (48000, 30.25, 0.4, 0.0, 0.0, 3000, 0.01),
    (192000, 17123.4, 0.4, 0.1, 0.0, 200, 0.2),
    (48000, 12345.67, 0.4, 0.05, 0.0, 10_000, 0.005),
    (48000, 440.0, 0.05, 0.01, 0.6, 2000, 0.01),     # DC 12x the tone
])
def test_fake_record_measures_the_frequency(fake_alsa, rate, freq, amp, noise, dc, ms,
                                            tolerance):
    fake = fake_alsa(FAKE_PCM_FREQ=str(freq), FAKE_PCM_AMP=str(amp), FAKE_PCM_NOISE=str(noise),
                     FAKE_PCM_DC=str(dc))
    r = fake.client.pcm_record(0, 0, rate, 2, ms)
    assert (r.frames, r.xruns) == (ms * rate // 1000, 0)
    assert abs(r.freq - freq) <= tolerance + 0.005, r   # + the 2-decimal rounding
    # rms of DC plus a sine plus uniform noise; peak at most dc + amp + noise
    assert r.rms == pytest.approx(math.sqrt(dc ** 2 + amp ** 2 / 2 + noise ** 2 / 3), rel=0.02)
    assert (dc + amp) * 0.99 <= r.peak <= dc + amp + noise + 1e-4


def test_fake_record_channel_0_raw_file_and_xrun(fake_alsa, tmp_path):
    raw = tmp_path / "rec.raw"
    fake = fake_alsa(FAKE_PCM_FREQ="440", FAKE_PCM_AMP="0.5", FAKE_PCM_XRUN_AT="20000")
    r = fake.client.pcm_record(0, 0, 48000, 3, 2000, path=str(raw))
    assert (r.frames, r.xruns) == (96000, 1)
    assert abs(r.freq - 440) < 0.05 and r.peak == pytest.approx(0.5, abs=1e-4)
    data = array.array("h", raw.read_bytes())
    assert len(data) == 96000 * 3
    # reads are of one buffer (1920 frames): the overrun comes at the 12th, after
    # 21120 frames; channel 0 as generated (1000 frames lost there), 2 at 3x
    ph = 0.3
    for k in (0, 1, 21_119, 21_120, 95_999):
        pos = k + (1000 if k >= 21_120 else 0)
        want = 0.5 * math.sin(2 * math.pi * 440 * pos / 48000 + ph) * 32767
        assert abs(data[3 * k] - want) <= 0.5 + 1e-6, k
        want3 = 0.5 * math.sin(2 * math.pi * 1320 * pos / 48000 + ph) * 32767
        assert abs(data[3 * k + 2] - want3) <= 0.5 + 1e-6, k
    assert fake.log_lines()[-5:] == ["START", "xrun at 21120", "PREPARE", "START", "DROP"]


def test_fake_record_silence(fake_alsa):
    fake = fake_alsa(FAKE_PCM_AMP="0")
    assert fake.client.pcm_record(0, 0, 48000, 2, 200) == PcmRecordResult(9600, 0, 0.0, 0.0,
                                                                          0.0)


def test_fake_record_file_error(fake_alsa, tmp_path):
    fake = fake_alsa()
    with pytest.raises(AgentError, match=r"pcmrec: open /nonexistent/dir/rec.raw: No such"):
        fake.client.pcm_record(0, 0, 48000, 2, 200, path="/nonexistent/dir/rec.raw")
    fake.client.ping()


@pytest.mark.parametrize("verb, env, message", [
    ("pcmplay 0 0 48000 2 1000 100", {"FAKE_PCM_STALL": "1"},
     r"pcmplay: /dev/snd/pcmC0D0p: wrote 1920 of 4800 frames within 5100 ms"),
    ("pcmplay 0 0 48000 2 1000 100", {"FAKE_PCM_DRAIN_STUCK": "1"},
     r"pcmplay: /dev/snd/pcmC0D0p: drain not done within 5100 ms of the start"),
    ("pcmrec 0 0 48000 2 200", {"FAKE_PCM_STALL": "1"},
     r"pcmrec: /dev/snd/pcmC0D0c: read 0 of 9600 frames within 5200 ms"),
])
def test_fake_every_wait_is_bounded(fake_alsa, verb, env, message):
    fake = fake_alsa(**env)
    t0 = time.monotonic()
    with pytest.raises(AgentError, match=message):
        fake.client.call(*verb.split(" "), timeout=30)
    assert 5.0 <= time.monotonic() - t0 < 8.0
    assert fake.log_lines()[-1] == "DROP"            # the stream is stopped
    fake.client.ping()


FAKE_ELEMS = [
    CtlElem(1, "mixer", "integer", "rw", 2, (0, 0), 0, 74, 0, 0, 0, "Master Playback Volume"),
    CtlElem(2, "mixer", "boolean", "rw", 2, (0, 0), 0, 1, 0, 0, 0, "Master Playback Switch"),
    CtlElem(3, "mixer", "enumerated", "rw", 1, (1,), 0, 2, 0, 0, 0, "Capture Source"),
    CtlElem(4, "card", "boolean", "r", 1, (1,), 0, 1, 0, 0, 0, "Line Phantom Jack"),
    CtlElem(5, "mixer", "iec958", "rw", 1, None, 0, 0, 0, 0, 0, "IEC958 Playback Default"),
    CtlElem(6, "pcm", "integer64", "rw", 1, (-5,), -5, 10**12, 1, 3, 0, "Big?Offset"),
    CtlElem(7, "mixer", "integer", "rwi", 4, (-10, 0, 5, 10), -10, 10, 0, 1, 0,
            "Capture Volume"),
    CtlElem(8, "mixer", "integer", "", 1, None, 0, 1, 0, 0, 0, "Secret"),
]


def test_fake_ctl_list_set_unmute(fake_alsa):
    fake = fake_alsa()
    c = fake.client
    assert c.ctl_list(0) == FAKE_ELEMS
    assert c.ctl_set(0, 6, 10**12) == (10**12,)
    assert c.ctl_set(0, 6, -5) == (-5,)
    assert c.ctl_set(0, 7, [1, 2, 3, 4]) == (1, 2, 3, 4)
    assert c.ctl_set(0, 3, 2) == (2,)
    after = {e.numid: e for e in c.mixer_unmute(0)}
    assert after[1].values == (74, 74) and after[2].values == (1, 1)
    assert after[7].values == (1, 2, 3, 4)           # inactive: left alone
    writes = [line for line in fake.log_lines() if line.startswith("ELEM_WRITE")]
    assert writes == ["ELEM_WRITE 6", "ELEM_WRITE 6", "ELEM_WRITE 7", "ELEM_WRITE 3",
                      "ELEM_WRITE 1", "ELEM_WRITE 2"]


@pytest.mark.parametrize("request_line, message", [
    ("ctlset 0 1 75", r"numid 1: value 75 is outside 0\.\.74"),
    ("ctlset 0 1 -1,0", r"numid 1: value -1 is outside 0\.\.74"),
    ("ctlset 0 2 2", r"numid 2: value 2 is outside 0\.\.1"),
    ("ctlset 0 3 3", r"numid 3: value 3 is outside 0\.\.2"),
    ("ctlset 0 1 1,2,3", r"numid 1 has 2 values: give 1 or 2"),
    ("ctlset 0 4 0", r"numid 4 is not writable"),
    ("ctlset 0 5 1", r"numid 5: type iec958 is not settable here"),
    ("ctlset 0 9 1", r"/dev/snd/controlC0: no element numid 9"),
    ("ctlset 0 6 1000000000001", r"numid 6: value 1000000000001 is outside -5\.\.1000000000000"),
])
def test_fake_ctlset_errors(fake_alsa, request_line, message):
    fake = fake_alsa()
    with pytest.raises(AgentError, match="ctlset: " + message):
        fake.client.call(*request_line.split(" "))
    assert not [line for line in fake.log_lines() if line.startswith("ELEM_WRITE")]


# -- the host's own tone analysis (tests/audio_analysis.py) ----------------------------


@pytest.mark.parametrize("rate, freq, noise", [(44100, 1000.0, 0), (48000, 440.123, 2000),
                                               (44100, 997.3, 500), (8000, 123.45, 0)])
def test_tone_frequency(rate, freq, noise):
    rng = random.Random(7)
    n = rate  # 1 s
    x = [round(12000 * math.sin(2 * math.pi * freq * i / rate + 0.7) + rng.uniform(-noise, noise))
         for i in range(n)]
    assert abs(tone_frequency(x, rate) - freq) < 0.01


# -- end to end: a real guest, ich9-intel-hda + hda-duplex ------------------------------

RATE = 48000
AUDIO_DEVICES = ("ich9-intel-hda,id=hda", "hda-duplex,audiodev=snd0,cad=0",
                 "hda-duplex,audiodev=snd1,cad=1")
PLAY_PCM, SILENT_PCM = 0, 2          # /proc/asound/pcm: codec 1's analog PCM is device 2


def wait_for_sound_card(agent: AgentClient, node: str, timeout: float = 30.0) -> None:
    """Waits until /dev/snd/<node> exists. snd-hda-intel probes its codecs in a
    work item after the init's modprobe returns; when that runs before
    snd-hda-codec-generic is loaded (tabvm.guest.MODULES loads snd_hda_intel
    first) binding the codec fails ("Cannot probe codecs, giving up"): then the
    controller is rebound once, the codec driver being there by now."""
    deadline = time.monotonic() + timeout
    rebound = False
    while node not in agent.sh("ls /dev/snd 2>/dev/null").output.split():
        dmesg = agent.sh("dmesg | grep -E 'snd|hda' | tail -20").output
        if "Cannot probe codecs" in dmesg and not rebound:
            agent.sh("cd /sys/bus/pci/drivers/snd_hda_intel && for d in 0000:*; do "
                     "echo $d > unbind; echo $d > bind; done")
            rebound = True
        assert time.monotonic() < deadline, f"the guest has no {node}:\n{dmesg}"
        time.sleep(0.5)


def qemu_lacks(qemu: Path) -> list[str]:
    devices = subprocess.run([str(qemu), "-device", "help"], capture_output=True, text=True,
                             timeout=30).stdout
    audiodevs = subprocess.run([str(qemu), "-audiodev", "help"], capture_output=True,
                               text=True, timeout=30).stdout.split()
    return ([d for d in ("ich9-intel-hda", "hda-duplex") if f'"{d}"' not in devices] +
            [f"-audiodev {a}" for a in ("wav", "none") if a not in audiodevs])


@dataclasses.dataclass
class AudioVm:
    vm: object
    agent: AgentClient
    wav: Path


@pytest.fixture(scope="module")
def audio_vm(build_outputs, guest_image):
    from glue.profile import builtin_profile
    from glue.qemu import Qemu
    from glue.runtime import new_runtime_dir

    lacks = qemu_lacks(build_outputs.qemu)
    assert not lacks, f"{build_outputs.qemu} has no {', '.join(lacks)}"
    rundir = new_runtime_dir("test-audio-agent")
    wav = rundir / "out.wav"
    config = builtin_profile(build_outputs, guest_image.vmlinux, guest_image.initrd, "tcg",
                             touch=False)
    config = dataclasses.replace(
        config, devices=config.devices + AUDIO_DEVICES,
        extra=config.extra + ("-audiodev", f"wav,id=snd0,path={wav}",
                              "-audiodev", "none,id=snd1"))
    vm = Qemu(config, rundir).start()
    try:
        agent = AgentClient(str(vm.agent_socket), connect_timeout=30)
        agent.wait_ready(timeout=180)
        for pcm in (PLAY_PCM, SILENT_PCM):
            wait_for_sound_card(agent, f"pcmC0D{pcm}p")
        yield AudioVm(vm, agent, wav)
        agent.close()
    finally:
        vm.stop()


@pytest.mark.e2e
class TestGuestAudio:
    """In file order: the last test stops QEMU to read the WAV file."""

    def test_sound_card(self, audio_vm):
        pcms = audio_vm.agent.read("/proc/asound/pcm")
        for pcm in (PLAY_PCM, SILENT_PCM):
            assert re.search(rf"^00-0{pcm}: .*: playback 1 : capture 1$", pcms, re.M), pcms
        names = {e.name: e for e in audio_vm.agent.ctl_list(0)}
        assert names["Master Playback Volume"].values == (0, 0)    # ALSA's muted start
        assert names["Master Playback Switch"].values == (0, 0)

    def test_mixer_unmute(self, audio_vm):
        names = {e.name: e for e in audio_vm.agent.mixer_unmute(0)}
        for name in ("Master Playback", "Capture"):
            volume, switch = names[f"{name} Volume"], names[f"{name} Switch"]
            assert volume.values == (volume.max, volume.max) and volume.max > 0
            assert switch.values == (1, 1)

    def test_record_from_the_none_backend_gives_silence(self, audio_vm):
        t0 = time.monotonic()
        r = audio_vm.agent.pcm_record(0, SILENT_PCM, RATE, 2, 2000)
        assert r == PcmRecordResult(RATE * 2, 0, 0.0, 0.0, 0.0)
        assert time.monotonic() - t0 < 2 + 5

    def test_record_without_input_voice_gives_up_at_the_deadline(self, audio_vm):
        # -audiodev wav has no input: the codec's capture stream never delivers.
        t0 = time.monotonic()
        with pytest.raises(AgentError, match=r"pcmC0D0c: read 0 of 14400 frames within "
                                             r"5300 ms"):
            audio_vm.agent.pcm_record(0, PLAY_PCM, RATE, 2, 300)
        assert 5.3 <= time.monotonic() - t0 < 9
        audio_vm.agent.ping()

    def test_play_a_1khz_tone_into_the_wav_file(self, audio_vm):
        agent = audio_vm.agent
        agent.mixer_unmute(0)
        r = agent.pcm_play(0, PLAY_PCM, RATE, 2, 1000, 2000)
        assert (r.frames, r.rate, r.channels) == (RATE * 2, RATE, 2)
        assert r.xruns == 0, r
        assert r.period == 480 and r.buffer == 1920, r   # 10 ms, 4 periods
        # the drain ends when the codec has taken the last data (~30 ms early)
        assert 1850 <= r.elapsed_ms <= 3000, r
        agent.close()
        assert audio_vm.vm.stop() == 0                  # the wav backend writes its header

        with wave.open(str(audio_vm.wav), "rb") as w:
            assert (w.getnchannels(), w.getsampwidth()) == (2, 2)
            rate = w.getframerate()                      # the audiodev's (44100 by default)
            data = array.array("h", w.readframes(w.getnframes()))
        left, right = list(data[0::2]), list(data[1::2])
        assert left == right
        peak = max(abs(v) for v in left)
        assert 0.45 * 32768 <= peak <= 0.55 * 32768, peak   # 500 permille at 0 dB
        loud = [i for i, v in enumerate(left) if abs(v) > peak // 10]
        first, last = loud[0], loud[-1] + 1
        seconds = (last - first) / rate
        # QEMU's hda-codec drops what it holds when the stream stops: ~40 ms short
        assert 1.85 <= seconds <= 2.1, seconds
        tone = left[first:last]
        gaps = [n for n in silent_run_lengths(tone, peak // 100) if n > 4]
        assert not gaps, gaps[:10]
        trim = rate // 20
        freq = tone_frequency(tone[trim:-trim], rate)
        assert abs(freq - 1000.0) < 0.1, freq


def silent_run_lengths(x: list[int], threshold: int) -> list[int]:
    runs, n = [], 0
    for v in x:
        if abs(v) <= threshold:
            n += 1
        elif n:
            runs.append(n)
            n = 0
    return runs + ([n] if n else [])
