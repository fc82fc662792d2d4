/*
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * OpenSL ES test stand-in: libOpenSLES.so for desktop Linux, so that tabvm's
 * OpenSL ES audio backend can be run and measured off Android.
 *
 * This is NOT an audio driver and not for production: on Android the
 * system's libOpenSLES.so is used.  It implements the OpenSL ES 1.0.1 subset
 * the backend needs (engine, output mix, buffer-queue audio player, audio
 * recorder) with the semantics of Android's implementation, and it makes
 * what happens observable:
 *
 *  - a player consumes its queued buffers in real time (CLOCK_MONOTONIC
 *    absolute deadlines derived from its sample rate, so there is no drift)
 *    and writes every frame it "plays", silence included, to a WAV file
 *    ($TABVM_SLES_PLAYBACK_WAV);
 *  - a recorder fills its queued buffers in real time from a WAV file
 *    ($TABVM_SLES_CAPTURE_WAV), a sine ($TABVM_SLES_CAPTURE_SINE) or
 *    silence;
 *  - every buffer callback, and a summary per object, is appended to a log
 *    ($TABVM_SLES_LOG).
 *
 * See opensles/README.md for the environment variables and the log format.
 *
 * Threads and locking: each player and recorder has one worker thread, which
 * is the only thread that invokes its buffer-queue callback.  The object's
 * mutex is shared by the worker and every API call on the object; callbacks
 * run without it, so they may call back into the API (Enqueue, GetState...).
 * No API call ever invokes a callback itself.
 *
 * Timeline: while PLAYING (RECORDING), frame N of the current run is due at
 * run_start + N / rate.  stream_advance() moves the object's timeline up to
 * "now": it consumes (fills) the head buffer, or plays silence (drops
 * captured frames) when the queue is empty.  The worker calls it when the
 * head buffer is due to complete and at least every IDLE_TICK_NS; every API
 * call that changes what is played calls it first, so each change takes
 * effect at the exact frame of the call.
 */

#define _GNU_SOURCE

/* Export the API; everything else is hidden (-fvisibility=hidden). */
#define SL_API __attribute__((visibility("default")))

#include <SLES/OpenSLES.h>
#include <SLES/OpenSLES_Android.h>

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NS_PER_SEC 1000000000LL

/*
 * The worker wakes at least this often while running, to play silence
 * (count lost frames) in real time and to write the WAV progressively.
 */
#define IDLE_TICK_NS (20 * 1000 * 1000LL)

/* Buffer queues longer than this are refused (Android has no such limit). */
#define MAX_QUEUE_BUFFERS 1024

/* Supported sample rates, in Hz. */
#define MIN_RATE_HZ 8000
#define MAX_RATE_HZ 192000

/* A capture WAV file may hold at most this much sample data. */
#define MAX_CAPTURE_WAV_BYTES (64u * 1024 * 1024)

#define container_of(ptr, type, member) \
    ((type *)((char *)(ptr) - offsetof(type, member)))

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* ======================================================================== */
/* Interface IDs (the values of the OpenSL ES 1.0.1 specification and of    */
/* Android's extensions)                                                    */
/* ======================================================================== */

/* An interface ID: its UUID, and the exported pointer to it. */
#define DEFINE_IID(name, l, m, h, c, n0, n1, n2, n3, n4, n5)               \
    static const struct SLInterfaceID_ name##_uuid = {                      \
        l, m, h, c, { n0, n1, n2, n3, n4, n5 } };                           \
    SL_API const SLInterfaceID name = &name##_uuid

/* Most IDs share the node 00:02:a5:d5:c5:1b. */
#define DEFINE_KHR_IID(name, l, m, h, c)                                    \
    DEFINE_IID(name, l, m, h, c, 0x00, 0x02, 0xa5, 0xd5, 0xc5, 0x1b)

DEFINE_IID(SL_IID_NULL, 0xec7178ec, 0xe5e1, 0x4432, 0xa3f4, 0x46, 0x57, 0xe6,
           0x79, 0x52, 0x10);
DEFINE_KHR_IID(SL_IID_OBJECT, 0x79216360, 0xddd7, 0x11db, 0xac16);
DEFINE_KHR_IID(SL_IID_ENGINE, 0x8d97c260, 0xddd4, 0x11db, 0x958f);
DEFINE_KHR_IID(SL_IID_ENGINECAPABILITIES, 0x8320d0a0, 0xddd5, 0x11db, 0xa1b1);
DEFINE_KHR_IID(SL_IID_THREADSYNC, 0xf6ac6b40, 0xdddc, 0x11db, 0xa62e);
DEFINE_KHR_IID(SL_IID_DYNAMICINTERFACEMANAGEMENT, 0x63936540, 0xf775, 0x11db,
               0x9cc4);
DEFINE_KHR_IID(SL_IID_AUDIOIODEVICECAPABILITIES, 0xb2564dc0, 0xddd3, 0x11db,
               0xbd62);
DEFINE_KHR_IID(SL_IID_OUTPUTMIX, 0x97750f60, 0xddd7, 0x11db, 0x92b1);
DEFINE_KHR_IID(SL_IID_PLAY, 0xef0bd9c0, 0xddd7, 0x11db, 0xbf49);
DEFINE_KHR_IID(SL_IID_RECORD, 0xc5657aa0, 0xdddb, 0x11db, 0x82f7);
DEFINE_KHR_IID(SL_IID_VOLUME, 0x09e8ede0, 0xddde, 0x11db, 0xb4f6);
DEFINE_KHR_IID(SL_IID_DEVICEVOLUME, 0xe1634760, 0xf3e2, 0x11db, 0x9ca9);
DEFINE_KHR_IID(SL_IID_BUFFERQUEUE, 0x2bc99cc0, 0xddd4, 0x11db, 0x8d99);
DEFINE_KHR_IID(SL_IID_PREFETCHSTATUS, 0x2a41ee80, 0xddd8, 0x11db, 0xa41f);
DEFINE_KHR_IID(SL_IID_PLAYBACKRATE, 0x2e3b2a40, 0xddda, 0x11db, 0xa349);
DEFINE_KHR_IID(SL_IID_SEEK, 0xd43135a0, 0xdddc, 0x11db, 0xb458);
DEFINE_KHR_IID(SL_IID_MUTESOLO, 0x5a28ebe0, 0xddd7, 0x11db, 0x8220);
DEFINE_KHR_IID(SL_IID_DYNAMICSOURCE, 0xc55cc100, 0x038b, 0x11dc, 0xbb45);
DEFINE_KHR_IID(SL_IID_METADATAEXTRACTION, 0xaa5b1f80, 0xddd6, 0x11db, 0xac8e);
DEFINE_KHR_IID(SL_IID_METADATATRAVERSAL, 0xc43662c0, 0xddd6, 0x11db, 0xa7ab);
DEFINE_KHR_IID(SL_IID_EQUALIZER, 0x0bed4300, 0xddd6, 0x11db, 0x8f34);
DEFINE_KHR_IID(SL_IID_PRESETREVERB, 0x47382d60, 0xddd8, 0x11db, 0xbf3a);
DEFINE_IID(SL_IID_ENVIRONMENTALREVERB, 0xc2e5d5f0, 0x94bd, 0x4763, 0x9cac,
           0x4e, 0x23, 0x4d, 0x06, 0x83, 0x9e);
DEFINE_KHR_IID(SL_IID_EFFECTSEND, 0x56e7d200, 0xddd4, 0x11db, 0xaefb);
DEFINE_KHR_IID(SL_IID_BASSBOOST, 0x0634f220, 0xddd4, 0x11db, 0xa0fc);
DEFINE_KHR_IID(SL_IID_VIRTUALIZER, 0x37cc2c00, 0xdddd, 0x11db, 0x8577);
DEFINE_KHR_IID(SL_IID_VISUALIZATION, 0xe46b26a0, 0xdddd, 0x11db, 0x8afd);
DEFINE_KHR_IID(SL_IID_PITCH, 0xc7e8ee00, 0xddd7, 0x11db, 0xa42c);
DEFINE_KHR_IID(SL_IID_RATEPITCH, 0x61b62e60, 0xddda, 0x11db, 0x9eb8);
DEFINE_KHR_IID(SL_IID_AUDIODECODERCAPABILITIES, 0x3fe5a3a0, 0xfcc6, 0x11db,
               0x94ac);
DEFINE_KHR_IID(SL_IID_AUDIOENCODERCAPABILITIES, 0x0f52a340, 0xfcd1, 0x11db,
               0xa993);
DEFINE_IID(SL_IID_AUDIOENCODER, 0xd7d5af7a, 0x351c, 0x41a6, 0x94ec, 0x1a, 0xc9,
           0x5c, 0x71, 0x82, 0x2c);
DEFINE_KHR_IID(SL_IID_LED, 0x2cc1cd80, 0xddd6, 0x11db, 0x807e);
DEFINE_KHR_IID(SL_IID_VIBRA, 0x169a8d60, 0xdddd, 0x11db, 0x923d);
DEFINE_KHR_IID(SL_IID_MIDIMESSAGE, 0xddf4a820, 0xddd6, 0x11db, 0xb174);
DEFINE_KHR_IID(SL_IID_MIDIMUTESOLO, 0x039eaf80, 0xddd7, 0x11db, 0x9a02);
DEFINE_KHR_IID(SL_IID_MIDITEMPO, 0x1f347400, 0xddd7, 0x11db, 0xa7ce);
DEFINE_KHR_IID(SL_IID_MIDITIME, 0x3da51de0, 0xddd7, 0x11db, 0xaf70);
DEFINE_KHR_IID(SL_IID_3DCOMMIT, 0x3564ad80, 0xdd0f, 0x11db, 0x9e19);
DEFINE_KHR_IID(SL_IID_3DDOPPLER, 0xb45c9a80, 0xddd2, 0x11db, 0xb028);
DEFINE_KHR_IID(SL_IID_3DGROUPING, 0xebe844e0, 0xddd2, 0x11db, 0xb510);
DEFINE_KHR_IID(SL_IID_3DLOCATION, 0x2b878020, 0xddd3, 0x11db, 0x8a01);
DEFINE_KHR_IID(SL_IID_3DMACROSCOPIC, 0x5089aec0, 0xddd3, 0x11db, 0x9ad3);
DEFINE_KHR_IID(SL_IID_3DSOURCE, 0x70bc7b00, 0xddd3, 0x11db, 0xa873);

DEFINE_KHR_IID(SL_IID_ANDROIDEFFECT, 0xae12da60, 0x99ac, 0x11df, 0xb456);
DEFINE_KHR_IID(SL_IID_ANDROIDEFFECTCAPABILITIES, 0x6a4f6d60, 0xb5e6, 0x11df,
               0xbb3b);
DEFINE_KHR_IID(SL_IID_ANDROIDEFFECTSEND, 0x7be462c0, 0xbc43, 0x11df, 0x8670);
DEFINE_KHR_IID(SL_IID_ANDROIDCONFIGURATION, 0x89f6a7e0, 0xbeac, 0x11df, 0x8b5c);
DEFINE_KHR_IID(SL_IID_ANDROIDSIMPLEBUFFERQUEUE, 0x198e4940, 0xc5d7, 0x11df,
               0xa2a6);

/* IDs are compared by value: a caller may pass a copy of the UUID. */
static bool iid_equal(SLInterfaceID a, SLInterfaceID b)
{
    return a == b || memcmp(a, b, sizeof(*a)) == 0;
}

/* ======================================================================== */
/* Small helpers                                                            */
/* ======================================================================== */

static void warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void warn(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    fputs("opensles-standin: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static int64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * NS_PER_SEC + ts.tv_nsec;
}

static struct timespec ns_to_timespec(int64_t ns)
{
    struct timespec ts = {
        .tv_sec = ns / NS_PER_SEC,
        .tv_nsec = ns % NS_PER_SEC,
    };
    return ts;
}

static void put_le16(uint8_t *p, uint16_t v)
{
    p[0] = v;
    p[1] = v >> 8;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    p[0] = v;
    p[1] = v >> 8;
    p[2] = v >> 16;
    p[3] = v >> 24;
}

static uint16_t get_le16(const uint8_t *p)
{
    return p[0] | (uint16_t)p[1] << 8;
}

static uint32_t get_le32(const uint8_t *p)
{
    return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

/* ======================================================================== */
/* PCM formats and samples                                                  */
/* ======================================================================== */

typedef struct PcmFormat {
    unsigned channels;          /* 1 or 2 */
    unsigned rate;              /* frames per second */
    unsigned bits;              /* 8, 16 or 32 (container == sample) */
    SLuint32 representation;    /* SL_ANDROID_PCM_REPRESENTATION_* */
    unsigned frame_bytes;
} PcmFormat;

/*
 * Check an SLDataFormat_PCM or SLAndroidDataFormat_PCM_EX and fill @fmt.
 * Malformed descriptions are SL_RESULT_PARAMETER_INVALID; well-formed ones
 * the stand-in (like Android) does not play are SL_RESULT_CONTENT_UNSUPPORTED.
 */
static SLresult parse_pcm_format(const void *format, PcmFormat *fmt)
{
    SLuint32 channels, rate_mhz, bits, container, mask, endianness, rep;

    if (!format) {
        return SL_RESULT_PARAMETER_INVALID;
    }
    switch (*(const SLuint32 *)format) {
    case SL_DATAFORMAT_PCM: {
        const SLDataFormat_PCM *pcm = format;

        channels = pcm->numChannels;
        rate_mhz = pcm->samplesPerSec;
        bits = pcm->bitsPerSample;
        container = pcm->containerSize;
        mask = pcm->channelMask;
        endianness = pcm->endianness;
        rep = bits == 8 ? SL_ANDROID_PCM_REPRESENTATION_UNSIGNED_INT
                        : SL_ANDROID_PCM_REPRESENTATION_SIGNED_INT;
        break;
    }
    case SL_ANDROID_DATAFORMAT_PCM_EX: {
        const SLAndroidDataFormat_PCM_EX *ex = format;

        channels = ex->numChannels;
        rate_mhz = ex->sampleRate;
        bits = ex->bitsPerSample;
        container = ex->containerSize;
        mask = ex->channelMask;
        endianness = ex->endianness;
        rep = ex->representation;
        break;
    }
    case SL_DATAFORMAT_MIME:
        return SL_RESULT_CONTENT_UNSUPPORTED;
    default:
        return SL_RESULT_PARAMETER_INVALID;
    }

    if (channels == 0) {
        return SL_RESULT_PARAMETER_INVALID;
    }
    if (channels > 2) {
        return SL_RESULT_CONTENT_UNSUPPORTED;
    }
    if (rate_mhz == 0) {
        return SL_RESULT_PARAMETER_INVALID;
    }
    if (rate_mhz % 1000 != 0 || rate_mhz / 1000 < MIN_RATE_HZ ||
        rate_mhz / 1000 > MAX_RATE_HZ) {
        return SL_RESULT_CONTENT_UNSUPPORTED;
    }
    if (bits == 0 || container < bits) {
        return SL_RESULT_PARAMETER_INVALID;
    }
    if ((bits != 8 && bits != 16 && bits != 32) || container != bits) {
        return SL_RESULT_CONTENT_UNSUPPORTED;
    }
    switch (rep) {
    case SL_ANDROID_PCM_REPRESENTATION_UNSIGNED_INT:
        if (bits != 8) {
            return SL_RESULT_CONTENT_UNSUPPORTED;
        }
        break;
    case SL_ANDROID_PCM_REPRESENTATION_SIGNED_INT:
        if (bits == 8) {
            return SL_RESULT_CONTENT_UNSUPPORTED;
        }
        break;
    case SL_ANDROID_PCM_REPRESENTATION_FLOAT:
        if (bits != 32) {
            return SL_RESULT_CONTENT_UNSUPPORTED;
        }
        break;
    default:
        return SL_RESULT_PARAMETER_INVALID;
    }
    if (bits > 8) {
        if (endianness == SL_BYTEORDER_BIGENDIAN) {
            return SL_RESULT_CONTENT_UNSUPPORTED;
        }
        if (endianness != SL_BYTEORDER_LITTLEENDIAN) {
            return SL_RESULT_PARAMETER_INVALID;
        }
    }
    /* A mask of 0 lets the implementation choose (Android accepts it). */
    if (mask != 0) {
        if ((unsigned)__builtin_popcount(mask) != channels) {
            return SL_RESULT_PARAMETER_INVALID;
        }
        if (channels == 1 && mask != SL_SPEAKER_FRONT_CENTER &&
            mask != SL_SPEAKER_FRONT_LEFT) {
            return SL_RESULT_CONTENT_UNSUPPORTED;
        }
        if (channels == 2 &&
            mask != (SL_SPEAKER_FRONT_LEFT | SL_SPEAKER_FRONT_RIGHT)) {
            return SL_RESULT_CONTENT_UNSUPPORTED;
        }
    }

    fmt->channels = channels;
    fmt->rate = rate_mhz / 1000;
    fmt->bits = bits;
    fmt->representation = rep;
    fmt->frame_bytes = channels * bits / 8;
    return SL_RESULT_SUCCESS;
}

/* One sample at @p as a value in [-1, 1). */
static double sample_read(const PcmFormat *fmt, const uint8_t *p)
{
    float f;

    switch (fmt->bits) {
    case 8:
        return (p[0] - 128) / 128.0;
    case 16:
        return (int16_t)get_le16(p) / 32768.0;
    default:
        if (fmt->representation == SL_ANDROID_PCM_REPRESENTATION_FLOAT) {
            uint32_t u = get_le32(p);

            memcpy(&f, &u, sizeof(f));
            return f;
        }
        return (int32_t)get_le32(p) / 2147483648.0;
    }
}

/* Store @v (clipped to the format's range) as one sample at @p. */
static void sample_write(const PcmFormat *fmt, uint8_t *p, double v)
{
    if (fmt->bits == 32 &&
        fmt->representation == SL_ANDROID_PCM_REPRESENTATION_FLOAT) {
        float f = v;
        uint32_t u;

        memcpy(&u, &f, sizeof(u));
        put_le32(p, u);
        return;
    }
    if (v > 1.0) {
        v = 1.0;
    } else if (v < -1.0) {
        v = -1.0;
    }
    switch (fmt->bits) {
    case 8: {
        long s = lrint(v * 128.0) + 128;

        p[0] = s > 255 ? 255 : s;
        break;
    }
    case 16: {
        long s = lrint(v * 32768.0);

        put_le16(p, s > INT16_MAX ? INT16_MAX : s);
        break;
    }
    default: {
        long long s = llrint(v * 2147483648.0);

        put_le32(p, s > INT32_MAX ? INT32_MAX : s);
        break;
    }
    }
}

/* Bytes of one frame of digital silence (8-bit PCM is unsigned). */
static void fill_silence(const PcmFormat *fmt, uint8_t *p, size_t bytes)
{
    memset(p, fmt->bits == 8 ? 0x80 : 0, bytes);
}

/* ======================================================================== */
/* WAV output                                                               */
/* ======================================================================== */

#define WAV_HEADER_BYTES 44
#define WAV_MAX_DATA_BYTES (UINT32_MAX - (WAV_HEADER_BYTES - 8))

typedef struct WavWriter {
    FILE *file;
    unsigned frame_bytes;
    uint64_t data_bytes;        /* sample bytes written */
    uint64_t fixed_bytes;       /* sample bytes the header accounts for */
    uint64_t fixup_every;       /* bytes between two header fix-ups */
    bool full;                  /* the 4 GiB RIFF limit was reached */
} WavWriter;

/* Rewrite the RIFF and data sizes so the file is valid up to here. */
static void wav_fixup(WavWriter *w)
{
    uint8_t size[4];
    int fd = fileno(w->file);

    if (fflush(w->file) != 0) {
        return;
    }
    put_le32(size, WAV_HEADER_BYTES - 8 + w->data_bytes);
    if (pwrite(fd, size, 4, 4) != 4) {
        return;
    }
    put_le32(size, w->data_bytes);
    if (pwrite(fd, size, 4, WAV_HEADER_BYTES - 4) != 4) {
        return;
    }
    w->fixed_bytes = w->data_bytes;
}

static bool wav_open(WavWriter *w, const char *path, const PcmFormat *fmt)
{
    uint8_t h[WAV_HEADER_BYTES];
    bool is_float = fmt->representation == SL_ANDROID_PCM_REPRESENTATION_FLOAT;

    memset(w, 0, sizeof(*w));
    w->file = fopen(path, "wbe");
    if (!w->file) {
        return false;
    }
    memcpy(h, "RIFF", 4);
    put_le32(h + 4, WAV_HEADER_BYTES - 8);
    memcpy(h + 8, "WAVEfmt ", 8);
    put_le32(h + 16, 16);
    put_le16(h + 20, is_float ? 3 : 1);     /* IEEE float or integer PCM */
    put_le16(h + 22, fmt->channels);
    put_le32(h + 24, fmt->rate);
    put_le32(h + 28, fmt->rate * fmt->frame_bytes);
    put_le16(h + 32, fmt->frame_bytes);
    put_le16(h + 34, fmt->bits);
    memcpy(h + 36, "data", 4);
    put_le32(h + 40, 0);
    if (fwrite(h, sizeof(h), 1, w->file) != 1) {
        fclose(w->file);
        w->file = NULL;
        return false;
    }
    w->frame_bytes = fmt->frame_bytes;
    /* A quarter of a second of audio. */
    w->fixup_every = (uint64_t)fmt->rate * fmt->frame_bytes / 4;
    wav_fixup(w);
    return true;
}

static void wav_write(WavWriter *w, const void *data, size_t bytes)
{
    if (!w->file || w->full) {
        return;
    }
    if (w->data_bytes + bytes > WAV_MAX_DATA_BYTES) {
        bytes = (WAV_MAX_DATA_BYTES - w->data_bytes) / w->frame_bytes *
                w->frame_bytes;
        w->full = true;
        warn("playback WAV reached the 4 GiB limit; later frames dropped");
    }
    if (fwrite(data, 1, bytes, w->file) != bytes) {
        warn("writing the playback WAV failed: %s", strerror(errno));
        w->full = true;
        return;
    }
    w->data_bytes += bytes;
    if (w->data_bytes - w->fixed_bytes >= w->fixup_every) {
        wav_fixup(w);
    }
}

static void wav_close(WavWriter *w)
{
    if (w->file) {
        wav_fixup(w);
        fclose(w->file);
        w->file = NULL;
    }
}

/* ======================================================================== */
/* Capture sources                                                          */
/* ======================================================================== */

typedef enum {
    SOURCE_SILENCE,
    SOURCE_SINE,
    SOURCE_WAV,
} SourceKind;

typedef struct CaptureSource {
    SourceKind kind;
    /* SOURCE_SINE */
    double amplitude;
    double phase;               /* radians, in [0, 2 pi) */
    double phase_step;          /* radians per frame */
    /* SOURCE_WAV: the file converted to the recorder's channel count */
    float *samples;
    size_t frames;
    size_t pos;
} CaptureSource;

/*
 * Load a WAV file for a recorder of format @fmt: integer PCM (8, 16, 24 or
 * 32 bits) or 32-bit float, at the recorder's rate; channels are mixed down
 * to mono or spread to stereo.  Errors are reported on stderr.
 */
static SLresult capture_load_wav(CaptureSource *src, const char *path,
                                 const PcmFormat *fmt)
{
    FILE *f;
    uint8_t hdr[12], chunk[8], fmtbuf[40];
    unsigned tag = 0, channels = 0, rate = 0, bits = 0, block = 0;
    uint8_t *data = NULL;
    uint32_t data_bytes = 0;
    bool have_fmt = false, have_data = false;
    SLresult ret = SL_RESULT_CONTENT_CORRUPTED;

    f = fopen(path, "rbe");
    if (!f) {
        warn("cannot open capture WAV %s: %s", path, strerror(errno));
        return SL_RESULT_CONTENT_NOT_FOUND;
    }
    if (fread(hdr, sizeof(hdr), 1, f) != 1 || memcmp(hdr, "RIFF", 4) ||
        memcmp(hdr + 8, "WAVE", 4)) {
        warn("%s is not a RIFF/WAVE file", path);
        goto out;
    }
    while (!have_data && fread(chunk, sizeof(chunk), 1, f) == 1) {
        uint32_t size = get_le32(chunk + 4);

        if (!memcmp(chunk, "fmt ", 4)) {
            if (size < 16 || size > sizeof(fmtbuf) ||
                fread(fmtbuf, size, 1, f) != 1) {
                break;
            }
            tag = get_le16(fmtbuf);
            channels = get_le16(fmtbuf + 2);
            rate = get_le32(fmtbuf + 4);
            block = get_le16(fmtbuf + 12);
            bits = get_le16(fmtbuf + 14);
            if (tag == 0xFFFE && size >= 26) {
                tag = get_le16(fmtbuf + 24);  /* WAVE_FORMAT_EXTENSIBLE */
            }
            have_fmt = true;
        } else if (!memcmp(chunk, "data", 4)) {
            long here = ftell(f);

            /* A writer that died leaves 0 or too big a size: take the rest. */
            if (fseek(f, 0, SEEK_END) != 0) {
                break;
            }
            if (size == 0 || size > (uint64_t)(ftell(f) - here)) {
                size = ftell(f) - here;
            }
            if (fseek(f, here, SEEK_SET) != 0) {
                break;
            }
            if (size > MAX_CAPTURE_WAV_BYTES) {
                warn("capture WAV %s is larger than %u bytes", path,
                     MAX_CAPTURE_WAV_BYTES);
                ret = SL_RESULT_CONTENT_UNSUPPORTED;
                goto out;
            }
            data = malloc(size ? size : 1);
            if (!data) {
                ret = SL_RESULT_MEMORY_FAILURE;
                goto out;
            }
            if (fread(data, 1, size, f) != size) {
                break;
            }
            data_bytes = size;
            have_data = true;
        } else if (fseek(f, size + (size & 1), SEEK_CUR) != 0) {
            break;
        }
    }
    if (!have_fmt || !have_data || channels == 0 ||
        block != channels * ((bits + 7) / 8)) {
        warn("capture WAV %s: no usable fmt/data chunks", path);
        goto out;
    }
    if (!((tag == 1 && (bits == 8 || bits == 16 || bits == 24 ||
                        bits == 32)) ||
          (tag == 3 && bits == 32))) {
        warn("capture WAV %s: format %u with %u bits is not supported",
             path, tag, bits);
        ret = SL_RESULT_CONTENT_UNSUPPORTED;
        goto out;
    }
    if (rate != fmt->rate) {
        warn("capture WAV %s is at %u Hz, the recorder at %u Hz (no "
             "resampling)", path, rate, fmt->rate);
        ret = SL_RESULT_CONTENT_UNSUPPORTED;
        goto out;
    }

    src->frames = data_bytes / block;
    if (src->frames == 0) {
        warn("capture WAV %s holds no samples", path);
        goto out;
    }
    src->samples = calloc(src->frames * fmt->channels, sizeof(float));
    if (!src->samples) {
        ret = SL_RESULT_MEMORY_FAILURE;
        goto out;
    }
    for (size_t i = 0; i < src->frames; i++) {
        double in[8] = { 0 }, mono = 0;
        unsigned used = channels < 8 ? channels : 8;

        for (unsigned c = 0; c < used; c++) {
            const uint8_t *p = data + i * block + c * (bits / 8);

            switch (bits) {
            case 8:
                in[c] = (p[0] - 128) / 128.0;
                break;
            case 16:
                in[c] = (int16_t)get_le16(p) / 32768.0;
                break;
            case 24:
                in[c] = (int32_t)((uint32_t)p[0] << 8 | (uint32_t)p[1] << 16 |
                                  (uint32_t)p[2] << 24) / 2147483648.0;
                break;
            default:
                if (tag == 3) {
                    uint32_t u = get_le32(p);
                    float x;

                    memcpy(&x, &u, sizeof(x));
                    in[c] = x;
                } else {
                    in[c] = (int32_t)get_le32(p) / 2147483648.0;
                }
                break;
            }
            mono += in[c];
        }
        for (unsigned c = 0; c < fmt->channels; c++) {
            float *out = &src->samples[i * fmt->channels + c];

            if (fmt->channels == 1) {
                *out = mono / used;
            } else {
                *out = in[c % used];
            }
        }
    }
    src->kind = SOURCE_WAV;
    ret = SL_RESULT_SUCCESS;
out:
    free(data);
    fclose(f);
    return ret;
}

/* Choose the recorder's source from the environment. */
static SLresult capture_open(CaptureSource *src, const PcmFormat *fmt)
{
    const char *wav = getenv("TABVM_SLES_CAPTURE_WAV");
    const char *sine = getenv("TABVM_SLES_CAPTURE_SINE");

    memset(src, 0, sizeof(*src));
    if (wav && *wav) {
        return capture_load_wav(src, wav, fmt);
    }
    if (sine) {
        double freq = 440.0, amplitude = 0.5;
        char *end = (char *)sine;

        if (*sine && *sine != ':') {
            freq = strtod(sine, &end);
        }
        if (*end == ':') {
            amplitude = strtod(end + 1, &end);
        }
        if (*end != '\0' || !(freq > 0) || freq >= fmt->rate / 2.0 ||
            !(amplitude >= 0) || amplitude > 1.0) {
            warn("TABVM_SLES_CAPTURE_SINE=%s: want FREQ_HZ[:AMPLITUDE] with "
                 "0 < FREQ_HZ < rate/2 and 0 <= AMPLITUDE <= 1", sine);
            return SL_RESULT_PARAMETER_INVALID;
        }
        src->kind = SOURCE_SINE;
        src->amplitude = amplitude;
        src->phase_step = 2.0 * M_PI * freq / fmt->rate;
    }
    return SL_RESULT_SUCCESS;
}

/* Produce @frames frames of the source into @dst, in format @fmt. */
static void capture_read(CaptureSource *src, const PcmFormat *fmt,
                         uint8_t *dst, size_t frames)
{
    unsigned bytes = fmt->bits / 8;

    for (size_t i = 0; i < frames; i++) {
        for (unsigned c = 0; c < fmt->channels; c++) {
            double v = 0;

            if (src->kind == SOURCE_SINE) {
                v = src->amplitude * sin(src->phase);
            } else if (src->kind == SOURCE_WAV) {
                v = src->samples[src->pos * fmt->channels + c];
            }
            sample_write(fmt, dst, v);
            dst += bytes;
        }
        if (src->kind == SOURCE_SINE) {
            src->phase += src->phase_step;
            if (src->phase >= 2.0 * M_PI) {
                src->phase -= 2.0 * M_PI;
            }
        } else if (src->kind == SOURCE_WAV) {
            src->pos = (src->pos + 1) % src->frames;
        }
    }
}

/* Let @frames frames of the source go by (they are lost: an overrun). */
static void capture_skip(CaptureSource *src, uint64_t frames)
{
    if (src->kind == SOURCE_SINE) {
        src->phase = fmod(src->phase + fmod(frames * src->phase_step,
                                            2.0 * M_PI), 2.0 * M_PI);
    } else if (src->kind == SOURCE_WAV) {
        src->pos = (src->pos + frames % src->frames) % src->frames;
    }
}

static void capture_close(CaptureSource *src)
{
    free(src->samples);
    src->samples = NULL;
}

/* ======================================================================== */
/* Objects                                                                  */
/* ======================================================================== */

typedef enum {
    KIND_ENGINE,
    KIND_OUTPUTMIX,
    KIND_PLAYER,
    KIND_RECORDER,
} ObjectKind;

/* The interfaces the stand-in implements. */
typedef enum {
    ITF_OBJECT,
    ITF_ENGINE,
    ITF_PLAY,
    ITF_RECORD,
    ITF_VOLUME,
    ITF_BUFFERQUEUE,
    ITF_ANDROIDSIMPLEBUFFERQUEUE,
} ItfKind;

/*
 * One interface of a class.  Implicit interfaces are always there;
 * explicit ones only when requested at creation (@grant bit).
 */
typedef struct ItfEntry {
    const SLInterfaceID *iid;
    ItfKind itf;
    unsigned grant;             /* 0 for implicit interfaces */
} ItfEntry;

#define GRANT_BUFFERQUEUE 1u

static const ItfEntry engine_itfs[] = {
    { &SL_IID_OBJECT, ITF_OBJECT, 0 },
    { &SL_IID_ENGINE, ITF_ENGINE, 0 },
};

static const ItfEntry outputmix_itfs[] = {
    { &SL_IID_OBJECT, ITF_OBJECT, 0 },
};

/*
 * As on Android, the buffer queue must be asked for at creation; the two
 * IDs give the same queue.
 */
static const ItfEntry player_itfs[] = {
    { &SL_IID_OBJECT, ITF_OBJECT, 0 },
    { &SL_IID_PLAY, ITF_PLAY, 0 },
    { &SL_IID_VOLUME, ITF_VOLUME, 0 },
    { &SL_IID_ANDROIDSIMPLEBUFFERQUEUE, ITF_ANDROIDSIMPLEBUFFERQUEUE,
      GRANT_BUFFERQUEUE },
    { &SL_IID_BUFFERQUEUE, ITF_BUFFERQUEUE, GRANT_BUFFERQUEUE },
};

static const ItfEntry recorder_itfs[] = {
    { &SL_IID_OBJECT, ITF_OBJECT, 0 },
    { &SL_IID_RECORD, ITF_RECORD, 0 },
    { &SL_IID_ANDROIDSIMPLEBUFFERQUEUE, ITF_ANDROIDSIMPLEBUFFERQUEUE,
      GRANT_BUFFERQUEUE },
};

typedef struct ItfTable {
    const ItfEntry *entries;
    size_t count;
} ItfTable;

static const ItfTable class_itfs[] = {
    [KIND_ENGINE] = { engine_itfs, ARRAY_SIZE(engine_itfs) },
    [KIND_OUTPUTMIX] = { outputmix_itfs, ARRAY_SIZE(outputmix_itfs) },
    [KIND_PLAYER] = { player_itfs, ARRAY_SIZE(player_itfs) },
    [KIND_RECORDER] = { recorder_itfs, ARRAY_SIZE(recorder_itfs) },
};

static const ItfEntry *find_itf(ObjectKind kind, SLInterfaceID iid)
{
    const ItfTable *t = &class_itfs[kind];

    for (size_t i = 0; i < t->count; i++) {
        if (iid_equal(*t->entries[i].iid, iid)) {
            return &t->entries[i];
        }
    }
    return NULL;
}

/*
 * Check the interfaces asked for in a Create call: an unknown one that is
 * required fails the creation, an optional one is ignored.  Returns the
 * explicit interfaces granted in @granted.
 */
static SLresult check_interfaces(ObjectKind kind, SLuint32 num,
                                 const SLInterfaceID *ids,
                                 const SLboolean *required,
                                 unsigned *granted)
{
    *granted = 0;
    if (num > 0 && (!ids || !required)) {
        return SL_RESULT_PARAMETER_INVALID;
    }
    for (SLuint32 i = 0; i < num; i++) {
        const ItfEntry *e;

        if (!ids[i]) {
            return SL_RESULT_PARAMETER_INVALID;
        }
        e = find_itf(kind, ids[i]);
        if (e) {
            *granted |= e->grant;
        } else if (required[i]) {
            return SL_RESULT_FEATURE_UNSUPPORTED;
        }
    }
    return SL_RESULT_SUCCESS;
}

typedef struct Engine Engine;

/* What every object starts with. */
typedef struct SlesObject {
    const struct SLObjectItf_ *itf;     /* the SLObjectItf is &obj->itf */
    ObjectKind kind;
    unsigned id;                        /* unique in the process, for logs */
    Engine *engine;                     /* the engine that created it */
    /* Guards the fields below and the mutable state of the object. */
    pthread_mutex_t lock;
    SLuint32 state;                     /* SL_OBJECT_STATE_* */
    unsigned granted;                   /* explicit interfaces (GRANT_*) */
    slObjectCallback callback;
    void *callback_context;
    SLint32 priority;
    SLboolean preemptable;
} SlesObject;

struct Engine {
    SlesObject obj;
    const struct SLEngineItf_ *engine_itf;
    unsigned children;                  /* live objects; under global_lock */
    int log_fd;                         /* $TABVM_SLES_LOG, or -1 */
};

/*
 * A buffer the application enqueued: not copied, owned by the stand-in
 * until its callback.
 */
typedef struct QueuedBuffer {
    uint8_t *data;
    SLuint32 size;
} QueuedBuffer;

/* An audio player or an audio recorder. */
typedef struct Stream {
    SlesObject obj;
    const struct SLPlayItf_ *play_itf;
    const struct SLRecordItf_ *record_itf;
    const struct SLVolumeItf_ *volume_itf;
    const struct SLBufferQueueItf_ *bq_itf;
    const struct SLAndroidSimpleBufferQueueItf_ *asbq_itf;

    bool is_player;
    PcmFormat fmt;

    /* The buffer queue: a ring of @capacity entries. */
    QueuedBuffer *queue;
    SLuint32 capacity;
    SLuint32 head;
    SLuint32 count;
    size_t head_offset;                 /* bytes of the head buffer done */
    SLuint32 index;                     /* buffers completed (GetState) */
    slAndroidSimpleBufferQueueCallback asbq_callback;
    slBufferQueueCallback bq_callback;
    void *bq_context;

    /* Completed buffers whose callback is still due (their sizes). */
    SLuint32 *done;
    size_t done_head;
    size_t done_len;
    size_t done_cap;

    /* SL_PLAYSTATE_* or SL_RECORDSTATE_*: the values are the same. */
    SLuint32 state;
    int64_t run_start;                  /* when this run began (ns) */
    uint64_t run_frames;                /* frames of this run accounted */
    bool primed;                        /* data flowed in this run */
    bool starving;                      /* in an underrun/overrun */
    uint64_t position;                  /* frames since STOPPED */

    /* Statistics for the log's summary line. */
    uint64_t total_frames;
    uint64_t buffers_done;
    uint64_t xruns;                     /* underruns or overruns */
    uint64_t xrun_frames;

    /* Player */
    SLmillibel volume;
    bool mute;
    WavWriter wav;

    /* Recorder */
    CaptureSource source;

    pthread_t thread;
    bool thread_started;
    pthread_cond_t wake;                /* on CLOCK_MONOTONIC */
    bool quit;
} Stream;

#define STATE_STOPPED SL_PLAYSTATE_STOPPED
#define STATE_PAUSED SL_PLAYSTATE_PAUSED
#define STATE_RUNNING SL_PLAYSTATE_PLAYING

_Static_assert(SL_RECORDSTATE_STOPPED == SL_PLAYSTATE_STOPPED &&
               SL_RECORDSTATE_PAUSED == SL_PLAYSTATE_PAUSED &&
               SL_RECORDSTATE_RECORDING == SL_PLAYSTATE_PLAYING,
               "play and record states share values");

/* There is at most one engine, as on Android. */
static pthread_mutex_t global_lock = PTHREAD_MUTEX_INITIALIZER;
static Engine *the_engine;
static atomic_uint next_object_id = 1;

static SlesObject *object_from_itf(SLObjectItf self)
{
    return container_of(self, SlesObject, itf);
}

static void object_init(SlesObject *obj, ObjectKind kind, Engine *engine,
                        unsigned granted);

/* ======================================================================== */
/* Log                                                                      */
/* ======================================================================== */

static void log_line(Engine *engine, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * Append one line to $TABVM_SLES_LOG, in one write() (O_APPEND keeps lines
 * of several objects, or processes, whole).
 */
static void log_line(Engine *engine, const char *fmt, ...)
{
    char line[256];
    va_list ap;
    int len;

    if (engine->log_fd < 0) {
        return;
    }
    va_start(ap, fmt);
    len = vsnprintf(line, sizeof(line) - 1, fmt, ap);
    va_end(ap);
    if (len < 0) {
        return;
    }
    if ((size_t)len > sizeof(line) - 2) {
        len = sizeof(line) - 2;
    }
    line[len++] = '\n';
    if (write(engine->log_fd, line, len) != len) {
        /* Nothing useful to do: the log is a diagnostic. */
    }
}

static const char *stream_kind_name(const Stream *s)
{
    return s->is_player ? "player" : "recorder";
}

/* ======================================================================== */
/* Stream timeline                                                          */
/* ======================================================================== */

/* Frames of the current run that are due by @now. */
static uint64_t frames_due(const Stream *s, int64_t now)
{
    int64_t dt = now - s->run_start;

    if (dt <= 0) {
        return 0;
    }
    return (uint64_t)(dt / NS_PER_SEC) * s->fmt.rate +
           (uint64_t)(dt % NS_PER_SEC) * s->fmt.rate / NS_PER_SEC;
}

/* When frame @frames of the current run is due (rounded up). */
static int64_t frame_deadline(const Stream *s, uint64_t frames)
{
    uint64_t rate = s->fmt.rate;

    return s->run_start + (int64_t)(frames / rate) * NS_PER_SEC +
           (int64_t)(((frames % rate) * NS_PER_SEC + rate - 1) / rate);
}

/* Volume and mute as a linear gain. */
static double stream_gain(const Stream *s)
{
    if (s->mute || s->volume <= SL_MILLIBEL_MIN) {
        return 0.0;
    }
    return pow(10.0, s->volume / 2000.0);
}

/* "Play" @frames frames of @data: they go to the WAV with the gain applied. */
static void play_frames(Stream *s, const uint8_t *data, size_t frames)
{
    unsigned sample_bytes = s->fmt.bits / 8;
    size_t bytes = frames * s->fmt.frame_bytes;
    double gain = stream_gain(s);
    uint8_t scratch[4096];

    if (!s->wav.file) {
        return;
    }
    if (gain == 1.0) {
        wav_write(&s->wav, data, bytes);
        return;
    }
    while (bytes > 0) {
        size_t n = bytes < sizeof(scratch) ? bytes : sizeof(scratch);

        n -= n % s->fmt.frame_bytes;
        for (size_t i = 0; i < n; i += sample_bytes) {
            sample_write(&s->fmt, scratch + i,
                         gain * sample_read(&s->fmt, data + i));
        }
        wav_write(&s->wav, scratch, n);
        data += n;
        bytes -= n;
    }
}

/* Play @frames frames of silence: the queue is empty. */
static void play_silence(Stream *s, uint64_t frames)
{
    uint8_t zeros[4096];
    size_t per = sizeof(zeros) / s->fmt.frame_bytes;

    if (!s->wav.file) {
        return;
    }
    fill_silence(&s->fmt, zeros, sizeof(zeros));
    while (frames > 0) {
        size_t n = frames < per ? frames : per;

        wav_write(&s->wav, zeros, n * s->fmt.frame_bytes);
        frames -= n;
    }
}

/* The head buffer is done: dequeue it and queue its callback. */
static void complete_head(Stream *s)
{
    SLuint32 size = s->queue[s->head].size;

    s->head = (s->head + 1) % s->capacity;
    s->count--;
    s->head_offset = 0;
    s->index++;
    s->buffers_done++;

    if (s->done_head + s->done_len == s->done_cap) {
        if (s->done_head > 0) {
            memmove(s->done, s->done + s->done_head,
                    s->done_len * sizeof(*s->done));
            s->done_head = 0;
        } else {
            size_t cap = s->done_cap * 2;
            SLuint32 *done = realloc(s->done, cap * sizeof(*done));

            if (!done) {
                warn("out of memory: a buffer callback is lost");
                return;
            }
            s->done = done;
            s->done_cap = cap;
        }
    }
    s->done[s->done_head + s->done_len++] = size;
}

/*
 * Move the timeline of @s up to @now: consume (fill) queued buffers, or
 * play silence (lose captured frames) while the queue is empty.
 * Called with the object's lock held.
 */
static void stream_advance(Stream *s, int64_t now)
{
    uint64_t target;

    if (s->state != STATE_RUNNING) {
        return;
    }
    target = frames_due(s, now);
    while (s->run_frames < target) {
        uint64_t n = target - s->run_frames;

        if (s->count > 0) {
            QueuedBuffer *b = &s->queue[s->head];
            uint64_t left = (b->size - s->head_offset) / s->fmt.frame_bytes;

            if (n > left) {
                n = left;
            }
            if (s->is_player) {
                play_frames(s, b->data + s->head_offset, n);
            } else {
                capture_read(&s->source, &s->fmt, b->data + s->head_offset, n);
            }
            s->head_offset += n * s->fmt.frame_bytes;
            s->primed = true;
            s->starving = false;
            if (s->head_offset == b->size) {
                complete_head(s);
            }
        } else {
            if (s->is_player) {
                play_silence(s, n);
            } else {
                capture_skip(&s->source, n);
            }
            /*
             * Silence before the first data of a run is start-up, not an
             * underrun (nor are frames nobody asked for an overrun).
             */
            if (s->primed) {
                if (!s->starving) {
                    s->xruns++;
                    s->starving = true;
                }
                s->xrun_frames += n;
            }
        }
        s->run_frames += n;
        s->position += n;
        s->total_frames += n;
    }
}

/* ======================================================================== */
/* Worker thread                                                            */
/* ======================================================================== */

/*
 * Invoke the callbacks of the completed buffers, in order, without the lock.
 * Called and returns with the object's lock held.
 */
static void stream_deliver(Stream *s)
{
    while (s->done_len > 0 && !s->quit) {
        SLuint32 size = s->done[s->done_head];
        slAndroidSimpleBufferQueueCallback asbq_cb = s->asbq_callback;
        slBufferQueueCallback bq_cb = s->bq_callback;
        void *context = s->bq_context;

        s->done_head++;
        if (--s->done_len == 0) {
            s->done_head = 0;
        }
        log_line(s->obj.engine, "%lld %s %u %u %u %llu", (long long)now_ns(),
                 stream_kind_name(s), s->obj.id, (unsigned)size,
                 (unsigned)s->count, (unsigned long long)s->xruns);

        pthread_mutex_unlock(&s->obj.lock);
        if (asbq_cb) {
            asbq_cb((SLAndroidSimpleBufferQueueItf)&s->asbq_itf, context);
        } else if (bq_cb) {
            bq_cb((SLBufferQueueItf)&s->bq_itf, context);
        }
        pthread_mutex_lock(&s->obj.lock);
    }
}

static void *stream_thread(void *opaque)
{
    Stream *s = opaque;

    pthread_mutex_lock(&s->obj.lock);
    while (!s->quit) {
        int64_t now = now_ns(), deadline;
        struct timespec ts;

        stream_advance(s, now);
        if (s->done_len > 0) {
            stream_deliver(s);
            continue;
        }
        if (s->state != STATE_RUNNING) {
            pthread_cond_wait(&s->wake, &s->obj.lock);
            continue;
        }
        /* Sleep until the head buffer is done, or for one idle tick. */
        deadline = now + IDLE_TICK_NS;
        if (s->count > 0) {
            const QueuedBuffer *b = &s->queue[s->head];
            uint64_t left = (b->size - s->head_offset) / s->fmt.frame_bytes;
            int64_t t = frame_deadline(s, s->run_frames + left);

            if (t < deadline) {
                deadline = t;
            }
        }
        ts = ns_to_timespec(deadline);
        pthread_cond_timedwait(&s->wake, &s->obj.lock, &ts);
    }
    pthread_mutex_unlock(&s->obj.lock);
    return NULL;
}

/* ======================================================================== */
/* SLPlayItf / SLRecordItf                                                  */
/* ======================================================================== */

static SLresult stream_set_state(Stream *s, SLuint32 state)
{
    int64_t now;

    if (state != STATE_STOPPED && state != STATE_PAUSED &&
        state != STATE_RUNNING) {
        return SL_RESULT_PARAMETER_INVALID;
    }
    pthread_mutex_lock(&s->obj.lock);
    if (state != s->state) {
        now = now_ns();
        stream_advance(s, now);
        if (state == STATE_RUNNING) {
            s->run_start = now;
            s->run_frames = 0;
            s->primed = false;
            s->starving = false;
        } else if (state == STATE_STOPPED) {
            s->position = 0;
        }
        s->state = state;
        pthread_cond_signal(&s->wake);
    }
    pthread_mutex_unlock(&s->obj.lock);
    return SL_RESULT_SUCCESS;
}

static SLresult stream_get_state(Stream *s, SLuint32 *state)
{
    if (!state) {
        return SL_RESULT_PARAMETER_INVALID;
    }
    pthread_mutex_lock(&s->obj.lock);
    *state = s->state;
    pthread_mutex_unlock(&s->obj.lock);
    return SL_RESULT_SUCCESS;
}

static SLresult stream_get_position(Stream *s, SLmillisecond *msec)
{
    if (!msec) {
        return SL_RESULT_PARAMETER_INVALID;
    }
    pthread_mutex_lock(&s->obj.lock);
    stream_advance(s, now_ns());
    *msec = s->position * 1000 / s->fmt.rate;
    pthread_mutex_unlock(&s->obj.lock);
    return SL_RESULT_SUCCESS;
}

static Stream *stream_from_play(SLPlayItf self)
{
    return container_of(self, Stream, play_itf);
}

static SLresult play_SetPlayState(SLPlayItf self, SLuint32 state)
{
    return self ? stream_set_state(stream_from_play(self), state)
                : SL_RESULT_PARAMETER_INVALID;
}

static SLresult play_GetPlayState(SLPlayItf self, SLuint32 *pState)
{
    return self ? stream_get_state(stream_from_play(self), pState)
                : SL_RESULT_PARAMETER_INVALID;
}

static SLresult play_GetDuration(SLPlayItf self, SLmillisecond *pMsec)
{
    if (!self || !pMsec) {
        return SL_RESULT_PARAMETER_INVALID;
    }
    *pMsec = SL_TIME_UNKNOWN;       /* a buffer queue has no duration */
    return SL_RESULT_SUCCESS;
}

static SLresult play_GetPosition(SLPlayItf self, SLmillisecond *pMsec)
{
    return self ? stream_get_position(stream_from_play(self), pMsec)
                : SL_RESULT_PARAMETER_INVALID;
}

/* Play events (head at end, markers, position updates) are not generated. */
static SLresult play_RegisterCallback(SLPlayItf self, slPlayCallback callback,
                                      void *pContext)
{
    (void)self, (void)callback, (void)pContext;
    return SL_RESULT_FEATURE_UNSUPPORTED;
}

static SLresult play_SetCallbackEventsMask(SLPlayItf self, SLuint32 flags)
{
    (void)self, (void)flags;
    return SL_RESULT_FEATURE_UNSUPPORTED;
}

static SLresult play_GetCallbackEventsMask(SLPlayItf self, SLuint32 *pFlags)
{
    (void)self, (void)pFlags;
    return SL_RESULT_FEATURE_UNSUPPORTED;
}

static SLresult play_SetMarkerPosition(SLPlayItf self, SLmillisecond mSec)
{
    (void)self, (void)mSec;
    return SL_RESULT_FEATURE_UNSUPPORTED;
}

static SLresult play_ClearMarkerPosition(SLPlayItf self)
{
    (void)self;
    return SL_RESULT_FEATURE_UNSUPPORTED;
}

static SLresult play_GetMarkerPosition(SLPlayItf self, SLmillisecond *pMsec)
{
    (void)self, (void)pMsec;
    return SL_RESULT_FEATURE_UNSUPPORTED;
}

static SLresult play_SetPositionUpdatePeriod(SLPlayItf self,
                                             SLmillisecond mSec)
{
    (void)self, (void)mSec;
    return SL_RESULT_FEATURE_UNSUPPORTED;
}

static SLresult play_GetPositionUpdatePeriod(SLPlayItf self,
                                             SLmillisecond *pMsec)
{
    (void)self, (void)pMsec;
    return SL_RESULT_FEATURE_UNSUPPORTED;
}

static const struct SLPlayItf_ play_vtable = {
    .SetPlayState = play_SetPlayState,
    .GetPlayState = play_GetPlayState,
    .GetDuration = play_GetDuration,
    .GetPosition = play_GetPosition,
    .RegisterCallback = play_RegisterCallback,
    .SetCallbackEventsMask = play_SetCallbackEventsMask,
    .GetCallbackEventsMask = play_GetCallbackEventsMask,
    .SetMarkerPosition = play_SetMarkerPosition,
    .ClearMarkerPosition = play_ClearMarkerPosition,
    .GetMarkerPosition = play_GetMarkerPosition,
    .SetPositionUpdatePeriod = play_SetPositionUpdatePeriod,
    .GetPositionUpdatePeriod = play_GetPositionUpdatePeriod,
};

static Stream *stream_from_record(SLRecordItf self)
{
    return container_of(self, Stream, record_itf);
}

static SLresult record_SetRecordState(SLRecordItf self, SLuint32 state)
{
    return self ? stream_set_state(stream_from_record(self), state)
                : SL_RESULT_PARAMETER_INVALID;
}

static SLresult record_GetRecordState(SLRecordItf self, SLuint32 *pState)
{
    return self ? stream_get_state(stream_from_record(self), pState)
                : SL_RESULT_PARAMETER_INVALID;
}

static SLresult record_SetDurationLimit(SLRecordItf self, SLmillisecond msec)
{
    (void)self, (void)msec;
    return SL_RESULT_FEATURE_UNSUPPORTED;
}

static SLresult record_GetPosition(SLRecordItf self, SLmillisecond *pMsec)
{
    return self ? stream_get_position(stream_from_record(self), pMsec)
                : SL_RESULT_PARAMETER_INVALID;
}

/* Record events are not generated. */
static SLresult record_RegisterCallback(SLRecordItf self,
                                        slRecordCallback callback,
                                        void *pContext)
{
    (void)self, (void)callback, (void)pContext;
    return SL_RESULT_FEATURE_UNSUPPORTED;
}

static SLresult record_SetCallbackEventsMask(SLRecordItf self, SLuint32 flags)
{
    (void)self, (void)flags;
    return SL_RESULT_FEATURE_UNSUPPORTED;
}

static SLresult record_GetCallbackEventsMask(SLRecordItf self,
                                             SLuint32 *pFlags)
{
    (void)self, (void)pFlags;
    return SL_RESULT_FEATURE_UNSUPPORTED;
}

static SLresult record_SetMarkerPosition(SLRecordItf self, SLmillisecond mSec)
{
    (void)self, (void)mSec;
    return SL_RESULT_FEATURE_UNSUPPORTED;
}

static SLresult record_ClearMarkerPosition(SLRecordItf self)
{
    (void)self;
    return SL_RESULT_FEATURE_UNSUPPORTED;
}

static SLresult record_GetMarkerPosition(SLRecordItf self,
                                         SLmillisecond *pMsec)
{
    (void)self, (void)pMsec;
    return SL_RESULT_FEATURE_UNSUPPORTED;
}

static SLresult record_SetPositionUpdatePeriod(SLRecordItf self,
                                               SLmillisecond mSec)
{
    (void)self, (void)mSec;
    return SL_RESULT_FEATURE_UNSUPPORTED;
}

static SLresult record_GetPositionUpdatePeriod(SLRecordItf self,
                                               SLmillisecond *pMsec)
{
    (void)self, (void)pMsec;
    return SL_RESULT_FEATURE_UNSUPPORTED;
}

static const struct SLRecordItf_ record_vtable = {
    .SetRecordState = record_SetRecordState,
    .GetRecordState = record_GetRecordState,
    .SetDurationLimit = record_SetDurationLimit,
    .GetPosition = record_GetPosition,
    .RegisterCallback = record_RegisterCallback,
    .SetCallbackEventsMask = record_SetCallbackEventsMask,
    .GetCallbackEventsMask = record_GetCallbackEventsMask,
    .SetMarkerPosition = record_SetMarkerPosition,
    .ClearMarkerPosition = record_ClearMarkerPosition,
    .GetMarkerPosition = record_GetMarkerPosition,
    .SetPositionUpdatePeriod = record_SetPositionUpdatePeriod,
    .GetPositionUpdatePeriod = record_GetPositionUpdatePeriod,
};

/* ======================================================================== */
/* SLVolumeItf (players)                                                    */
/* ======================================================================== */

/* Android's maximum volume level: unity gain. */
#define MAX_VOLUME_MB 0

static Stream *stream_from_volume(SLVolumeItf self)
{
    return container_of(self, Stream, volume_itf);
}

static SLresult volume_SetVolumeLevel(SLVolumeItf self, SLmillibel level)
{
    Stream *s;

    if (!self || level > MAX_VOLUME_MB) {
        return SL_RESULT_PARAMETER_INVALID;
    }
    s = stream_from_volume(self);
    pthread_mutex_lock(&s->obj.lock);
    stream_advance(s, now_ns());    /* the frames so far had the old gain */
    s->volume = level;
    pthread_mutex_unlock(&s->obj.lock);
    return SL_RESULT_SUCCESS;
}

static SLresult volume_GetVolumeLevel(SLVolumeItf self, SLmillibel *pLevel)
{
    Stream *s;

    if (!self || !pLevel) {
        return SL_RESULT_PARAMETER_INVALID;
    }
    s = stream_from_volume(self);
    pthread_mutex_lock(&s->obj.lock);
    *pLevel = s->volume;
    pthread_mutex_unlock(&s->obj.lock);
    return SL_RESULT_SUCCESS;
}

static SLresult volume_GetMaxVolumeLevel(SLVolumeItf self,
                                         SLmillibel *pMaxLevel)
{
    if (!self || !pMaxLevel) {
        return SL_RESULT_PARAMETER_INVALID;
    }
    *pMaxLevel = MAX_VOLUME_MB;
    return SL_RESULT_SUCCESS;
}

static SLresult volume_SetMute(SLVolumeItf self, SLboolean mute)
{
    Stream *s;

    if (!self) {
        return SL_RESULT_PARAMETER_INVALID;
    }
    s = stream_from_volume(self);
    pthread_mutex_lock(&s->obj.lock);
    stream_advance(s, now_ns());
    s->mute = mute != SL_BOOLEAN_FALSE;
    pthread_mutex_unlock(&s->obj.lock);
    return SL_RESULT_SUCCESS;
}

static SLresult volume_GetMute(SLVolumeItf self, SLboolean *pMute)
{
    Stream *s;

    if (!self || !pMute) {
        return SL_RESULT_PARAMETER_INVALID;
    }
    s = stream_from_volume(self);
    pthread_mutex_lock(&s->obj.lock);
    *pMute = s->mute ? SL_BOOLEAN_TRUE : SL_BOOLEAN_FALSE;
    pthread_mutex_unlock(&s->obj.lock);
    return SL_RESULT_SUCCESS;
}

/* Stereo positioning is not implemented. */
static SLresult volume_EnableStereoPosition(SLVolumeItf self, SLboolean enable)
{
    (void)self, (void)enable;
    return SL_RESULT_FEATURE_UNSUPPORTED;
}

static SLresult volume_IsEnabledStereoPosition(SLVolumeItf self,
                                               SLboolean *pEnable)
{
    (void)self, (void)pEnable;
    return SL_RESULT_FEATURE_UNSUPPORTED;
}

static SLresult volume_SetStereoPosition(SLVolumeItf self,
                                         SLpermille stereoPosition)
{
    (void)self, (void)stereoPosition;
    return SL_RESULT_FEATURE_UNSUPPORTED;
}

static SLresult volume_GetStereoPosition(SLVolumeItf self,
                                         SLpermille *pStereoPosition)
{
    (void)self, (void)pStereoPosition;
    return SL_RESULT_FEATURE_UNSUPPORTED;
}

static const struct SLVolumeItf_ volume_vtable = {
    .SetVolumeLevel = volume_SetVolumeLevel,
    .GetVolumeLevel = volume_GetVolumeLevel,
    .GetMaxVolumeLevel = volume_GetMaxVolumeLevel,
    .SetMute = volume_SetMute,
    .GetMute = volume_GetMute,
    .EnableStereoPosition = volume_EnableStereoPosition,
    .IsEnabledStereoPosition = volume_IsEnabledStereoPosition,
    .SetStereoPosition = volume_SetStereoPosition,
    .GetStereoPosition = volume_GetStereoPosition,
};

/* ======================================================================== */
/* Buffer queues: SLAndroidSimpleBufferQueueItf and SLBufferQueueItf        */
/* ======================================================================== */

static SLresult bq_enqueue(Stream *s, const void *buffer, SLuint32 size)
{
    SLresult ret = SL_RESULT_SUCCESS;

    /* Android refuses empty buffers; the stand-in also wants whole frames. */
    if (!buffer || size == 0 || size % s->fmt.frame_bytes != 0) {
        return SL_RESULT_PARAMETER_INVALID;
    }
    pthread_mutex_lock(&s->obj.lock);
    stream_advance(s, now_ns());
    if (s->count == s->capacity) {
        ret = SL_RESULT_BUFFER_INSUFFICIENT;
    } else {
        QueuedBuffer *b = &s->queue[(s->head + s->count) % s->capacity];

        /* Recorders write into the buffer: the const is the API's. */
        b->data = (uint8_t *)buffer;
        b->size = size;
        s->count++;
        pthread_cond_signal(&s->wake);
    }
    pthread_mutex_unlock(&s->obj.lock);
    return ret;
}

/* Drop every queued buffer, without callbacks; the index restarts at 0. */
static SLresult bq_clear(Stream *s)
{
    pthread_mutex_lock(&s->obj.lock);
    stream_advance(s, now_ns());
    s->head = 0;
    s->count = 0;
    s->head_offset = 0;
    s->index = 0;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->obj.lock);
    return SL_RESULT_SUCCESS;
}

static void bq_get_state(Stream *s, SLuint32 *count, SLuint32 *index)
{
    pthread_mutex_lock(&s->obj.lock);
    stream_advance(s, now_ns());
    *count = s->count;
    *index = s->index;
    pthread_mutex_unlock(&s->obj.lock);
}

/* As on Android, the callback may only be changed while stopped. */
static SLresult bq_register(Stream *s,
                            slAndroidSimpleBufferQueueCallback asbq_callback,
                            slBufferQueueCallback bq_callback, void *context)
{
    SLresult ret = SL_RESULT_SUCCESS;

    pthread_mutex_lock(&s->obj.lock);
    if (s->state != STATE_STOPPED) {
        ret = SL_RESULT_PRECONDITIONS_VIOLATED;
    } else {
        s->asbq_callback = asbq_callback;
        s->bq_callback = bq_callback;
        s->bq_context = context;
    }
    pthread_mutex_unlock(&s->obj.lock);
    return ret;
}

static Stream *stream_from_asbq(SLAndroidSimpleBufferQueueItf self)
{
    return container_of(self, Stream, asbq_itf);
}

static SLresult asbq_Enqueue(SLAndroidSimpleBufferQueueItf self,
                             const void *pBuffer, SLuint32 size)
{
    return self ? bq_enqueue(stream_from_asbq(self), pBuffer, size)
                : SL_RESULT_PARAMETER_INVALID;
}

static SLresult asbq_Clear(SLAndroidSimpleBufferQueueItf self)
{
    return self ? bq_clear(stream_from_asbq(self))
                : SL_RESULT_PARAMETER_INVALID;
}

static SLresult asbq_GetState(SLAndroidSimpleBufferQueueItf self,
                              SLAndroidSimpleBufferQueueState *pState)
{
    if (!self || !pState) {
        return SL_RESULT_PARAMETER_INVALID;
    }
    bq_get_state(stream_from_asbq(self), &pState->count, &pState->index);
    return SL_RESULT_SUCCESS;
}

static SLresult asbq_RegisterCallback(SLAndroidSimpleBufferQueueItf self,
                                      slAndroidSimpleBufferQueueCallback cb,
                                      void *pContext)
{
    return self ? bq_register(stream_from_asbq(self), cb, NULL, pContext)
                : SL_RESULT_PARAMETER_INVALID;
}

static const struct SLAndroidSimpleBufferQueueItf_ asbq_vtable = {
    .Enqueue = asbq_Enqueue,
    .Clear = asbq_Clear,
    .GetState = asbq_GetState,
    .RegisterCallback = asbq_RegisterCallback,
};

static Stream *stream_from_bq(SLBufferQueueItf self)
{
    return container_of(self, Stream, bq_itf);
}

static SLresult bq_Enqueue(SLBufferQueueItf self, const void *pBuffer,
                           SLuint32 size)
{
    return self ? bq_enqueue(stream_from_bq(self), pBuffer, size)
                : SL_RESULT_PARAMETER_INVALID;
}

static SLresult bq_Clear(SLBufferQueueItf self)
{
    return self ? bq_clear(stream_from_bq(self))
                : SL_RESULT_PARAMETER_INVALID;
}

static SLresult bq_GetState(SLBufferQueueItf self, SLBufferQueueState *pState)
{
    if (!self || !pState) {
        return SL_RESULT_PARAMETER_INVALID;
    }
    bq_get_state(stream_from_bq(self), &pState->count, &pState->playIndex);
    return SL_RESULT_SUCCESS;
}

static SLresult bq_RegisterCallback(SLBufferQueueItf self,
                                    slBufferQueueCallback cb, void *pContext)
{
    return self ? bq_register(stream_from_bq(self), NULL, cb, pContext)
                : SL_RESULT_PARAMETER_INVALID;
}

static const struct SLBufferQueueItf_ bq_vtable = {
    .Enqueue = bq_Enqueue,
    .Clear = bq_Clear,
    .GetState = bq_GetState,
    .RegisterCallback = bq_RegisterCallback,
};

/* ======================================================================== */
/* Stream life cycle                                                        */
/* ======================================================================== */

static Stream *stream_new(Engine *engine, bool is_player, const PcmFormat *fmt,
                          SLuint32 num_buffers, unsigned granted)
{
    Stream *s = calloc(1, sizeof(*s));
    pthread_condattr_t attr;

    if (!s) {
        return NULL;
    }
    s->queue = calloc(num_buffers, sizeof(*s->queue));
    s->done_cap = 2 * num_buffers + 2;
    s->done = calloc(s->done_cap, sizeof(*s->done));
    if (!s->queue || !s->done) {
        free(s->queue);
        free(s->done);
        free(s);
        return NULL;
    }
    object_init(&s->obj, is_player ? KIND_PLAYER : KIND_RECORDER, engine,
                granted);
    s->is_player = is_player;
    s->fmt = *fmt;
    s->capacity = num_buffers;
    s->state = STATE_STOPPED;
    s->play_itf = &play_vtable;
    s->record_itf = &record_vtable;
    s->volume_itf = &volume_vtable;
    s->bq_itf = &bq_vtable;
    s->asbq_itf = &asbq_vtable;

    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&s->wake, &attr);
    pthread_condattr_destroy(&attr);
    return s;
}

/* $TABVM_SLES_PLAYBACK_WAV with "{id}" replaced by the object's id. */
static char *playback_path(const Stream *s)
{
    const char *tmpl = getenv("TABVM_SLES_PLAYBACK_WAV");
    const char *mark;
    char *path;

    if (!tmpl || !*tmpl) {
        return NULL;
    }
    mark = strstr(tmpl, "{id}");
    if (!mark) {
        return strdup(tmpl);
    }
    if (asprintf(&path, "%.*s%u%s", (int)(mark - tmpl), tmpl, s->obj.id,
                 mark + 4) < 0) {
        return NULL;
    }
    return path;
}

/* Acquire what a stream needs to run: its output or source, its thread. */
static SLresult stream_realize(Stream *s)
{
    char name[16];
    SLresult ret;
    int err;

    if (s->is_player) {
        char *path = playback_path(s);

        if (path) {
            bool ok = wav_open(&s->wav, path, &s->fmt);

            if (!ok) {
                warn("cannot create the playback WAV %s: %s", path,
                     strerror(errno));
            }
            free(path);
            if (!ok) {
                return SL_RESULT_IO_ERROR;
            }
        }
    } else {
        ret = capture_open(&s->source, &s->fmt);
        if (ret != SL_RESULT_SUCCESS) {
            return ret;
        }
    }

    err = pthread_create(&s->thread, NULL, stream_thread, s);
    if (err) {
        warn("cannot start a worker thread: %s", strerror(err));
        wav_close(&s->wav);
        capture_close(&s->source);
        return SL_RESULT_RESOURCE_ERROR;
    }
    s->thread_started = true;
    snprintf(name, sizeof(name), "sles-%s-%u", s->is_player ? "play" : "rec",
             s->obj.id);
    pthread_setname_np(s->thread, name);
    return SL_RESULT_SUCCESS;
}

static void stream_destroy(Stream *s)
{
    if (s->thread_started) {
        pthread_mutex_lock(&s->obj.lock);
        stream_advance(s, now_ns());    /* account up to the very end */
        s->quit = true;
        pthread_cond_signal(&s->wake);
        pthread_mutex_unlock(&s->obj.lock);
        pthread_join(s->thread, NULL);

        log_line(s->obj.engine,
                 "%lld %s %u summary frames=%llu buffers=%llu %s=%llu "
                 "%s_frames=%llu", (long long)now_ns(), stream_kind_name(s),
                 s->obj.id, (unsigned long long)s->total_frames,
                 (unsigned long long)s->buffers_done,
                 s->is_player ? "underruns" : "overruns",
                 (unsigned long long)s->xruns,
                 s->is_player ? "underrun" : "overrun",
                 (unsigned long long)s->xrun_frames);
    }
    wav_close(&s->wav);
    capture_close(&s->source);
    pthread_cond_destroy(&s->wake);
    pthread_mutex_destroy(&s->obj.lock);
    free(s->queue);
    free(s->done);
    free(s);
}

/* ======================================================================== */
/* SLObjectItf                                                              */
/* ======================================================================== */

static SLresult object_Realize(SLObjectItf self, SLboolean async)
{
    SlesObject *obj;
    SLresult ret = SL_RESULT_SUCCESS;

    if (!self) {
        return SL_RESULT_PARAMETER_INVALID;
    }
    /* Asynchronous realization (a callback when done) is not implemented. */
    if (async != SL_BOOLEAN_FALSE) {
        return SL_RESULT_FEATURE_UNSUPPORTED;
    }
    obj = object_from_itf(self);
    pthread_mutex_lock(&obj->lock);
    if (obj->state != SL_OBJECT_STATE_UNREALIZED) {
        ret = SL_RESULT_PRECONDITIONS_VIOLATED;
    } else {
        if (obj->kind == KIND_PLAYER || obj->kind == KIND_RECORDER) {
            ret = stream_realize(container_of(obj, Stream, obj));
        }
        if (ret == SL_RESULT_SUCCESS) {
            obj->state = SL_OBJECT_STATE_REALIZED;
        }
    }
    pthread_mutex_unlock(&obj->lock);
    return ret;
}

/* Objects are never suspended, so there is nothing to resume. */
static SLresult object_Resume(SLObjectItf self, SLboolean async)
{
    (void)async;
    return self ? SL_RESULT_PRECONDITIONS_VIOLATED
                : SL_RESULT_PARAMETER_INVALID;
}

static SLresult object_GetState(SLObjectItf self, SLuint32 *pState)
{
    SlesObject *obj;

    if (!self || !pState) {
        return SL_RESULT_PARAMETER_INVALID;
    }
    obj = object_from_itf(self);
    pthread_mutex_lock(&obj->lock);
    *pState = obj->state;
    pthread_mutex_unlock(&obj->lock);
    return SL_RESULT_SUCCESS;
}

/* Where the interface @itf of @obj lives: what GetInterface hands out. */
static void *object_itf_slot(SlesObject *obj, ItfKind itf)
{
    switch (itf) {
    case ITF_OBJECT:
        return &obj->itf;
    case ITF_ENGINE:
        return &container_of(obj, Engine, obj)->engine_itf;
    case ITF_PLAY:
        return &container_of(obj, Stream, obj)->play_itf;
    case ITF_RECORD:
        return &container_of(obj, Stream, obj)->record_itf;
    case ITF_VOLUME:
        return &container_of(obj, Stream, obj)->volume_itf;
    case ITF_BUFFERQUEUE:
        return &container_of(obj, Stream, obj)->bq_itf;
    case ITF_ANDROIDSIMPLEBUFFERQUEUE:
        return &container_of(obj, Stream, obj)->asbq_itf;
    }
    return NULL;
}

static SLresult object_GetInterface(SLObjectItf self, const SLInterfaceID iid,
                                    void *pInterface)
{
    SlesObject *obj;
    const ItfEntry *e;
    SLresult ret = SL_RESULT_SUCCESS;
    void *slot = NULL;

    if (!self || !iid || !pInterface) {
        return SL_RESULT_PARAMETER_INVALID;
    }
    obj = object_from_itf(self);
    pthread_mutex_lock(&obj->lock);
    e = find_itf(obj->kind, iid);
    if (obj->state != SL_OBJECT_STATE_REALIZED) {
        ret = SL_RESULT_PRECONDITIONS_VIOLATED;
    } else if (!e || (e->grant && !(obj->granted & e->grant))) {
        ret = SL_RESULT_FEATURE_UNSUPPORTED;
    } else {
        slot = object_itf_slot(obj, e->itf);
    }
    pthread_mutex_unlock(&obj->lock);
    *(void **)pInterface = slot;
    return ret;
}

/* Stored, but there are no object events to report. */
static SLresult object_RegisterCallback(SLObjectItf self,
                                        slObjectCallback callback,
                                        void *pContext)
{
    SlesObject *obj;

    if (!self) {
        return SL_RESULT_PARAMETER_INVALID;
    }
    obj = object_from_itf(self);
    pthread_mutex_lock(&obj->lock);
    obj->callback = callback;
    obj->callback_context = pContext;
    pthread_mutex_unlock(&obj->lock);
    return SL_RESULT_SUCCESS;
}

static void object_AbortAsyncOperation(SLObjectItf self)
{
    (void)self;     /* nothing is ever asynchronous */
}

static void engine_destroy(Engine *engine);

static void object_Destroy(SLObjectItf self)
{
    SlesObject *obj;
    Engine *engine;

    if (!self) {
        return;
    }
    obj = object_from_itf(self);
    if (obj->kind == KIND_ENGINE) {
        engine_destroy(container_of(obj, Engine, obj));
        return;
    }
    if (obj->kind == KIND_PLAYER || obj->kind == KIND_RECORDER) {
        Stream *s = container_of(obj, Stream, obj);

        if (s->thread_started && pthread_equal(pthread_self(), s->thread)) {
            warn("Destroy() of object %u from its own callback ignored",
                 obj->id);
            return;
        }
    }

    engine = obj->engine;
    if (obj->kind == KIND_OUTPUTMIX) {
        pthread_mutex_destroy(&obj->lock);
        free(obj);
    } else {
        stream_destroy(container_of(obj, Stream, obj));
    }
    pthread_mutex_lock(&global_lock);
    engine->children--;
    pthread_mutex_unlock(&global_lock);
}

static SLresult object_SetPriority(SLObjectItf self, SLint32 priority,
                                   SLboolean preemptable)
{
    SlesObject *obj;

    if (!self) {
        return SL_RESULT_PARAMETER_INVALID;
    }
    obj = object_from_itf(self);
    pthread_mutex_lock(&obj->lock);
    obj->priority = priority;
    obj->preemptable = preemptable;
    pthread_mutex_unlock(&obj->lock);
    return SL_RESULT_SUCCESS;
}

static SLresult object_GetPriority(SLObjectItf self, SLint32 *pPriority,
                                   SLboolean *pPreemptable)
{
    SlesObject *obj;

    if (!self || !pPriority || !pPreemptable) {
        return SL_RESULT_PARAMETER_INVALID;
    }
    obj = object_from_itf(self);
    pthread_mutex_lock(&obj->lock);
    *pPriority = obj->priority;
    *pPreemptable = obj->preemptable;
    pthread_mutex_unlock(&obj->lock);
    return SL_RESULT_SUCCESS;
}

static SLresult object_SetLossOfControlInterfaces(SLObjectItf self,
                                                  SLint16 numInterfaces,
                                                  SLInterfaceID *pInterfaceIDs,
                                                  SLboolean enabled)
{
    (void)self, (void)numInterfaces, (void)pInterfaceIDs, (void)enabled;
    return SL_RESULT_FEATURE_UNSUPPORTED;
}

static const struct SLObjectItf_ object_vtable = {
    .Realize = object_Realize,
    .Resume = object_Resume,
    .GetState = object_GetState,
    .GetInterface = object_GetInterface,
    .RegisterCallback = object_RegisterCallback,
    .AbortAsyncOperation = object_AbortAsyncOperation,
    .Destroy = object_Destroy,
    .SetPriority = object_SetPriority,
    .GetPriority = object_GetPriority,
    .SetLossOfControlInterfaces = object_SetLossOfControlInterfaces,
};

static void object_init(SlesObject *obj, ObjectKind kind, Engine *engine,
                        unsigned granted)
{
    obj->itf = &object_vtable;
    obj->kind = kind;
    obj->id = atomic_fetch_add(&next_object_id, 1);
    obj->engine = engine;
    pthread_mutex_init(&obj->lock, NULL);
    obj->state = SL_OBJECT_STATE_UNREALIZED;
    obj->granted = granted;
    obj->priority = SL_PRIORITY_NORMAL;
    obj->preemptable = SL_BOOLEAN_FALSE;
}

/* Count a new object of @engine: the engine outlives its objects. */
static void engine_add_child(Engine *engine)
{
    pthread_mutex_lock(&global_lock);
    engine->children++;
    pthread_mutex_unlock(&global_lock);
}

/* ======================================================================== */
/* SLEngineItf                                                              */
/* ======================================================================== */

static Engine *engine_from_itf(SLEngineItf self)
{
    return container_of(self, Engine, engine_itf);
}

static SLresult engine_CreateLEDDevice(SLEngineItf self, SLObjectItf *pDevice,
                                       SLuint32 deviceID,
                                       SLuint32 numInterfaces,
                                       const SLInterfaceID *pInterfaceIds,
                                       const SLboolean *pInterfaceRequired)
{
    (void)self, (void)deviceID, (void)numInterfaces, (void)pInterfaceIds;
    (void)pInterfaceRequired;
    if (pDevice) {
        *pDevice = NULL;
    }
    return SL_RESULT_FEATURE_UNSUPPORTED;
}

static SLresult engine_CreateVibraDevice(SLEngineItf self,
                                         SLObjectItf *pDevice,
                                         SLuint32 deviceID,
                                         SLuint32 numInterfaces,
                                         const SLInterfaceID *pInterfaceIds,
                                         const SLboolean *pInterfaceRequired)
{
    (void)self, (void)deviceID, (void)numInterfaces, (void)pInterfaceIds;
    (void)pInterfaceRequired;
    if (pDevice) {
        *pDevice = NULL;
    }
    return SL_RESULT_FEATURE_UNSUPPORTED;
}

/* The queue locator of a player's source or a recorder's sink. */
static SLresult parse_queue_locator(const void *locator, bool allow_std_bq,
                                    SLuint32 *num_buffers)
{
    SLuint32 type = *(const SLuint32 *)locator;

    if (type == SL_DATALOCATOR_ANDROIDSIMPLEBUFFERQUEUE) {
        *num_buffers =
            ((const SLDataLocator_AndroidSimpleBufferQueue *)locator)
                ->numBuffers;
    } else if (type == SL_DATALOCATOR_BUFFERQUEUE && allow_std_bq) {
        *num_buffers = ((const SLDataLocator_BufferQueue *)locator)->numBuffers;
    } else {
        switch (type) {
        case SL_DATALOCATOR_URI:
        case SL_DATALOCATOR_ADDRESS:
        case SL_DATALOCATOR_IODEVICE:
        case SL_DATALOCATOR_OUTPUTMIX:
        case SL_DATALOCATOR_BUFFERQUEUE:
        case SL_DATALOCATOR_MIDIBUFFERQUEUE:
        case SL_DATALOCATOR_ANDROIDFD:
        case SL_DATALOCATOR_ANDROIDBUFFERQUEUE:
            return SL_RESULT_FEATURE_UNSUPPORTED;
        default:
            return SL_RESULT_PARAMETER_INVALID;
        }
    }
    if (*num_buffers == 0 || *num_buffers > MAX_QUEUE_BUFFERS) {
        return SL_RESULT_PARAMETER_INVALID;
    }
    return SL_RESULT_SUCCESS;
}

static SLresult engine_CreateAudioPlayer(SLEngineItf self, SLObjectItf *pPlayer,
                                         SLDataSource *pAudioSrc,
                                         SLDataSink *pAudioSnk,
                                         SLuint32 numInterfaces,
                                         const SLInterfaceID *pInterfaceIds,
                                         const SLboolean *pInterfaceRequired)
{
    const SLDataLocator_OutputMix *sink;
    SlesObject *mix;
    SLuint32 num_buffers;
    PcmFormat fmt;
    unsigned granted;
    Engine *engine;
    Stream *s;
    SLresult ret;

    if (!pPlayer) {
        return SL_RESULT_PARAMETER_INVALID;
    }
    *pPlayer = NULL;
    if (!self) {
        return SL_RESULT_PARAMETER_INVALID;
    }
    engine = engine_from_itf(self);
    ret = check_interfaces(KIND_PLAYER, numInterfaces, pInterfaceIds,
                           pInterfaceRequired, &granted);
    if (ret != SL_RESULT_SUCCESS) {
        return ret;
    }

    /* Source: a buffer queue of PCM. */
    if (!pAudioSrc || !pAudioSrc->pLocator) {
        return SL_RESULT_PARAMETER_INVALID;
    }
    ret = parse_queue_locator(pAudioSrc->pLocator, true, &num_buffers);
    if (ret != SL_RESULT_SUCCESS) {
        return ret;
    }
    ret = parse_pcm_format(pAudioSrc->pFormat, &fmt);
    if (ret != SL_RESULT_SUCCESS) {
        return ret;
    }

    /* Sink: a realized output mix of this engine. */
    if (!pAudioSnk || !pAudioSnk->pLocator) {
        return SL_RESULT_PARAMETER_INVALID;
    }
    sink = pAudioSnk->pLocator;
    if (sink->locatorType != SL_DATALOCATOR_OUTPUTMIX) {
        return SL_RESULT_FEATURE_UNSUPPORTED;
    }
    if (!sink->outputMix) {
        return SL_RESULT_PARAMETER_INVALID;
    }
    mix = object_from_itf(sink->outputMix);
    if (mix->kind != KIND_OUTPUTMIX || mix->engine != engine) {
        return SL_RESULT_PARAMETER_INVALID;
    }
    pthread_mutex_lock(&mix->lock);
    ret = mix->state == SL_OBJECT_STATE_REALIZED
              ? SL_RESULT_SUCCESS : SL_RESULT_PRECONDITIONS_VIOLATED;
    pthread_mutex_unlock(&mix->lock);
    if (ret != SL_RESULT_SUCCESS) {
        return ret;
    }

    s = stream_new(engine, true, &fmt, num_buffers, granted);
    if (!s) {
        return SL_RESULT_MEMORY_FAILURE;
    }
    engine_add_child(engine);
    *pPlayer = (SLObjectItf)&s->obj.itf;
    return SL_RESULT_SUCCESS;
}

static SLresult engine_CreateAudioRecorder(SLEngineItf self,
                                           SLObjectItf *pRecorder,
                                           SLDataSource *pAudioSrc,
                                           SLDataSink *pAudioSnk,
                                           SLuint32 numInterfaces,
                                           const SLInterfaceID *pInterfaceIds,
                                           const SLboolean *pInterfaceRequired)
{
    const SLDataLocator_IODevice *dev;
    SLuint32 num_buffers;
    PcmFormat fmt;
    unsigned granted;
    Engine *engine;
    Stream *s;
    SLresult ret;

    if (!pRecorder) {
        return SL_RESULT_PARAMETER_INVALID;
    }
    *pRecorder = NULL;
    if (!self) {
        return SL_RESULT_PARAMETER_INVALID;
    }
    engine = engine_from_itf(self);
    ret = check_interfaces(KIND_RECORDER, numInterfaces, pInterfaceIds,
                           pInterfaceRequired, &granted);
    if (ret != SL_RESULT_SUCCESS) {
        return ret;
    }

    /* Source: the default audio input device (its format is ignored). */
    if (!pAudioSrc || !pAudioSrc->pLocator) {
        return SL_RESULT_PARAMETER_INVALID;
    }
    dev = pAudioSrc->pLocator;
    if (dev->locatorType != SL_DATALOCATOR_IODEVICE) {
        return SL_RESULT_FEATURE_UNSUPPORTED;
    }
    if (dev->deviceType != SL_IODEVICE_AUDIOINPUT ||
        dev->deviceID != SL_DEFAULTDEVICEID_AUDIOINPUT || dev->device) {
        return SL_RESULT_PARAMETER_INVALID;
    }

    /* Sink: an Android simple buffer queue of PCM. */
    if (!pAudioSnk || !pAudioSnk->pLocator) {
        return SL_RESULT_PARAMETER_INVALID;
    }
    ret = parse_queue_locator(pAudioSnk->pLocator, false, &num_buffers);
    if (ret != SL_RESULT_SUCCESS) {
        return ret;
    }
    ret = parse_pcm_format(pAudioSnk->pFormat, &fmt);
    if (ret != SL_RESULT_SUCCESS) {
        return ret;
    }

    s = stream_new(engine, false, &fmt, num_buffers, granted);
    if (!s) {
        return SL_RESULT_MEMORY_FAILURE;
    }
    engine_add_child(engine);
    *pRecorder = (SLObjectItf)&s->obj.itf;
    return SL_RESULT_SUCCESS;
}

static SLresult engine_CreateMidiPlayer(SLEngineItf self, SLObjectItf *pPlayer,
                                        SLDataSource *pMIDISrc,
                                        SLDataSource *pBankSrc,
                                        SLDataSink *pAudioOutput,
                                        SLDataSink *pVibra,
                                        SLDataSink *pLEDArray,
                                        SLuint32 numInterfaces,
                                        const SLInterfaceID *pInterfaceIds,
                                        const SLboolean *pInterfaceRequired)
{
    (void)self, (void)pMIDISrc, (void)pBankSrc, (void)pAudioOutput;
    (void)pVibra, (void)pLEDArray, (void)numInterfaces, (void)pInterfaceIds;
    (void)pInterfaceRequired;
    if (pPlayer) {
        *pPlayer = NULL;
    }
    return SL_RESULT_FEATURE_UNSUPPORTED;
}

static SLresult engine_CreateListener(SLEngineItf self, SLObjectItf *pListener,
                                      SLuint32 numInterfaces,
                                      const SLInterfaceID *pInterfaceIds,
                                      const SLboolean *pInterfaceRequired)
{
    (void)self, (void)numInterfaces, (void)pInterfaceIds;
    (void)pInterfaceRequired;
    if (pListener) {
        *pListener = NULL;
    }
    return SL_RESULT_FEATURE_UNSUPPORTED;
}

static SLresult engine_Create3DGroup(SLEngineItf self, SLObjectItf *pGroup,
                                     SLuint32 numInterfaces,
                                     const SLInterfaceID *pInterfaceIds,
                                     const SLboolean *pInterfaceRequired)
{
    (void)self, (void)numInterfaces, (void)pInterfaceIds;
    (void)pInterfaceRequired;
    if (pGroup) {
        *pGroup = NULL;
    }
    return SL_RESULT_FEATURE_UNSUPPORTED;
}

static SLresult engine_CreateOutputMix(SLEngineItf self, SLObjectItf *pMix,
                                       SLuint32 numInterfaces,
                                       const SLInterfaceID *pInterfaceIds,
                                       const SLboolean *pInterfaceRequired)
{
    SlesObject *mix;
    unsigned granted;
    Engine *engine;
    SLresult ret;

    if (!pMix) {
        return SL_RESULT_PARAMETER_INVALID;
    }
    *pMix = NULL;
    if (!self) {
        return SL_RESULT_PARAMETER_INVALID;
    }
    engine = engine_from_itf(self);
    ret = check_interfaces(KIND_OUTPUTMIX, numInterfaces, pInterfaceIds,
                           pInterfaceRequired, &granted);
    if (ret != SL_RESULT_SUCCESS) {
        return ret;
    }
    mix = calloc(1, sizeof(*mix));
    if (!mix) {
        return SL_RESULT_MEMORY_FAILURE;
    }
    object_init(mix, KIND_OUTPUTMIX, engine, granted);
    engine_add_child(engine);
    *pMix = (SLObjectItf)&mix->itf;
    return SL_RESULT_SUCCESS;
}

static SLresult engine_CreateMetadataExtractor(
    SLEngineItf self, SLObjectItf *pMetadataExtractor,
    SLDataSource *pDataSource, SLuint32 numInterfaces,
    const SLInterfaceID *pInterfaceIds, const SLboolean *pInterfaceRequired)
{
    (void)self, (void)pDataSource, (void)numInterfaces, (void)pInterfaceIds;
    (void)pInterfaceRequired;
    if (pMetadataExtractor) {
        *pMetadataExtractor = NULL;
    }
    return SL_RESULT_FEATURE_UNSUPPORTED;
}

static SLresult engine_CreateExtensionObject(
    SLEngineItf self, SLObjectItf *pObject, void *pParameters,
    SLuint32 objectID, SLuint32 numInterfaces,
    const SLInterfaceID *pInterfaceIds, const SLboolean *pInterfaceRequired)
{
    (void)self, (void)pParameters, (void)objectID, (void)numInterfaces;
    (void)pInterfaceIds, (void)pInterfaceRequired;
    if (pObject) {
        *pObject = NULL;
    }
    return SL_RESULT_FEATURE_UNSUPPORTED;
}

static const ItfTable *table_for_object_id(SLuint32 objectID)
{
    switch (objectID) {
    case SL_OBJECTID_ENGINE:
        return &class_itfs[KIND_ENGINE];
    case SL_OBJECTID_OUTPUTMIX:
        return &class_itfs[KIND_OUTPUTMIX];
    case SL_OBJECTID_AUDIOPLAYER:
        return &class_itfs[KIND_PLAYER];
    case SL_OBJECTID_AUDIORECORDER:
        return &class_itfs[KIND_RECORDER];
    }
    return NULL;
}

static SLresult engine_QueryNumSupportedInterfaces(SLEngineItf self,
                                                   SLuint32 objectID,
                                                   SLuint32 *pNum)
{
    const ItfTable *t = table_for_object_id(objectID);

    if (!self || !pNum) {
        return SL_RESULT_PARAMETER_INVALID;
    }
    if (!t) {
        return SL_RESULT_FEATURE_UNSUPPORTED;
    }
    *pNum = t->count;
    return SL_RESULT_SUCCESS;
}

static SLresult engine_QuerySupportedInterfaces(SLEngineItf self,
                                                SLuint32 objectID,
                                                SLuint32 index,
                                                SLInterfaceID *pInterfaceId)
{
    const ItfTable *t = table_for_object_id(objectID);

    if (!self || !pInterfaceId) {
        return SL_RESULT_PARAMETER_INVALID;
    }
    if (!t) {
        return SL_RESULT_FEATURE_UNSUPPORTED;
    }
    if (index >= t->count) {
        return SL_RESULT_PARAMETER_INVALID;
    }
    *pInterfaceId = *t->entries[index].iid;
    return SL_RESULT_SUCCESS;
}

/* The stand-in has no engine extensions. */
static SLresult engine_QueryNumSupportedExtensions(SLEngineItf self,
                                                   SLuint32 *pNumExtensions)
{
    if (!self || !pNumExtensions) {
        return SL_RESULT_PARAMETER_INVALID;
    }
    *pNumExtensions = 0;
    return SL_RESULT_SUCCESS;
}

static SLresult engine_QuerySupportedExtension(SLEngineItf self,
                                               SLuint32 index,
                                               SLchar *pExtensionName,
                                               SLint16 *pNameLength)
{
    (void)self, (void)index, (void)pExtensionName, (void)pNameLength;
    return SL_RESULT_PARAMETER_INVALID;     /* no index is valid */
}

static SLresult engine_IsExtensionSupported(SLEngineItf self,
                                            const SLchar *pExtensionName,
                                            SLboolean *pSupported)
{
    if (!self || !pExtensionName || !pSupported) {
        return SL_RESULT_PARAMETER_INVALID;
    }
    *pSupported = SL_BOOLEAN_FALSE;
    return SL_RESULT_SUCCESS;
}

static const struct SLEngineItf_ engine_vtable = {
    .CreateLEDDevice = engine_CreateLEDDevice,
    .CreateVibraDevice = engine_CreateVibraDevice,
    .CreateAudioPlayer = engine_CreateAudioPlayer,
    .CreateAudioRecorder = engine_CreateAudioRecorder,
    .CreateMidiPlayer = engine_CreateMidiPlayer,
    .CreateListener = engine_CreateListener,
    .Create3DGroup = engine_Create3DGroup,
    .CreateOutputMix = engine_CreateOutputMix,
    .CreateMetadataExtractor = engine_CreateMetadataExtractor,
    .CreateExtensionObject = engine_CreateExtensionObject,
    .QueryNumSupportedInterfaces = engine_QueryNumSupportedInterfaces,
    .QuerySupportedInterfaces = engine_QuerySupportedInterfaces,
    .QueryNumSupportedExtensions = engine_QueryNumSupportedExtensions,
    .QuerySupportedExtension = engine_QuerySupportedExtension,
    .IsExtensionSupported = engine_IsExtensionSupported,
};

/* ======================================================================== */
/* The engine and the global entry points                                   */
/* ======================================================================== */

/* As on Android, an engine that still has objects is not destroyed. */
static void engine_destroy(Engine *engine)
{
    pthread_mutex_lock(&global_lock);
    if (engine->children > 0) {
        warn("Destroy() of the engine ignored: %u of its objects are alive",
             engine->children);
        pthread_mutex_unlock(&global_lock);
        return;
    }
    the_engine = NULL;
    pthread_mutex_unlock(&global_lock);

    if (engine->log_fd >= 0) {
        close(engine->log_fd);
    }
    pthread_mutex_destroy(&engine->obj.lock);
    free(engine);
}

SL_API SLresult SLAPIENTRY slCreateEngine(SLObjectItf *pEngine,
                                          SLuint32 numOptions,
                                          const SLEngineOption *pEngineOptions,
                                          SLuint32 numInterfaces,
                                          const SLInterfaceID *pInterfaceIds,
                                          const SLboolean *pInterfaceRequired)
{
    const char *log_path = getenv("TABVM_SLES_LOG");
    unsigned granted;
    Engine *engine;
    SLresult ret;

    if (!pEngine) {
        return SL_RESULT_PARAMETER_INVALID;
    }
    *pEngine = NULL;
    if (numOptions > 0 && !pEngineOptions) {
        return SL_RESULT_PARAMETER_INVALID;
    }
    for (SLuint32 i = 0; i < numOptions; i++) {
        /* Always thread-safe; loss of control never happens. */
        if (pEngineOptions[i].feature != SL_ENGINEOPTION_THREADSAFE &&
            pEngineOptions[i].feature != SL_ENGINEOPTION_LOSSOFCONTROL) {
            return SL_RESULT_PARAMETER_INVALID;
        }
    }
    ret = check_interfaces(KIND_ENGINE, numInterfaces, pInterfaceIds,
                           pInterfaceRequired, &granted);
    if (ret != SL_RESULT_SUCCESS) {
        return ret;
    }

    engine = calloc(1, sizeof(*engine));
    if (!engine) {
        return SL_RESULT_MEMORY_FAILURE;
    }
    pthread_mutex_lock(&global_lock);
    if (the_engine) {
        pthread_mutex_unlock(&global_lock);
        free(engine);
        return SL_RESULT_RESOURCE_ERROR;
    }
    the_engine = engine;
    pthread_mutex_unlock(&global_lock);

    object_init(&engine->obj, KIND_ENGINE, NULL, granted);
    engine->obj.engine = engine;
    engine->engine_itf = &engine_vtable;
    engine->log_fd = -1;
    if (log_path && *log_path) {
        engine->log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND |
                              O_CLOEXEC, 0644);
        if (engine->log_fd < 0) {
            warn("cannot open the log %s: %s", log_path, strerror(errno));
        }
    }
    *pEngine = (SLObjectItf)&engine->obj.itf;
    return SL_RESULT_SUCCESS;
}

SL_API SLresult SLAPIENTRY
slQueryNumSupportedEngineInterfaces(SLuint32 *pNumSupportedInterfaces)
{
    if (!pNumSupportedInterfaces) {
        return SL_RESULT_PARAMETER_INVALID;
    }
    *pNumSupportedInterfaces = ARRAY_SIZE(engine_itfs);
    return SL_RESULT_SUCCESS;
}

SL_API SLresult SLAPIENTRY
slQuerySupportedEngineInterfaces(SLuint32 index, SLInterfaceID *pInterfaceId)
{
    if (!pInterfaceId) {
        return SL_RESULT_PARAMETER_INVALID;
    }
    if (index >= ARRAY_SIZE(engine_itfs)) {
        *pInterfaceId = NULL;
        return SL_RESULT_PARAMETER_INVALID;
    }
    *pInterfaceId = *engine_itfs[index].iid;
    return SL_RESULT_SUCCESS;
}
