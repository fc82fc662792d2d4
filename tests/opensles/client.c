/*
 * SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Test client of the OpenSL ES stand-in (opensles/), used by
 * tests/test_opensles_standin.py.  It drives the API the way tabvm's
 * OpenSL ES audio backend does (standard Android NDK usage) and prints what
 * it saw as "key=value" lines.
 *
 *   client play   [options]   play a sine through a buffer-queue player
 *   client record [options]   record, print the dominant frequency
 *   client cycle  [--times N] create, use and destroy everything N times
 *   client errors             print "check NAME RESULT" for bad calls
 *
 * Options: --seconds S, --buffers K, --ms M (buffer length), --rate HZ,
 * --channels 1|2, --format s16|u8|s32|f32, --freq HZ (play), --itf asbq|bq
 * (play: which buffer queue interface), --volume-at T:MB, --mute-at T,
 * --starve-at T and --resume-at T (stop and restart feeding the queue),
 * --fill-after-enqueue 1 (play: write the first buffers only after queueing
 * them, before playing: the library must not have copied them), --out FILE
 * (record: the captured audio as a 16-bit WAV).
 */

#define _GNU_SOURCE

#include <SLES/OpenSLES.h>
#include <SLES/OpenSLES_Android.h>

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NS_PER_SEC 1000000000LL

#define CHECK(expr)                                                         \
    do {                                                                    \
        SLresult r_ = (expr);                                               \
        if (r_ != SL_RESULT_SUCCESS) {                                      \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #expr,   \
                    result_name(r_));                                       \
            exit(2);                                                        \
        }                                                                   \
    } while (0)

static const char *result_name(SLresult r)
{
    static const char *const names[] = {
        "SUCCESS", "PRECONDITIONS_VIOLATED", "PARAMETER_INVALID",
        "MEMORY_FAILURE", "RESOURCE_ERROR", "RESOURCE_LOST", "IO_ERROR",
        "BUFFER_INSUFFICIENT", "CONTENT_CORRUPTED", "CONTENT_UNSUPPORTED",
        "CONTENT_NOT_FOUND", "PERMISSION_DENIED", "FEATURE_UNSUPPORTED",
        "INTERNAL_ERROR", "UNKNOWN_ERROR", "OPERATION_ABORTED",
        "CONTROL_LOST",
    };
    return r < sizeof(names) / sizeof(names[0]) ? names[r] : "?";
}

static int64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * NS_PER_SEC + ts.tv_nsec;
}

static void sleep_until(int64_t t)
{
    struct timespec ts = { .tv_sec = t / NS_PER_SEC,
                           .tv_nsec = t % NS_PER_SEC };
    int err;

    do {
        err = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
    } while (err == EINTR);
}

/* ------------------------------------------------------------------------ */
/* Options                                                                  */
/* ------------------------------------------------------------------------ */

typedef struct Options {
    double seconds;
    unsigned buffers;
    unsigned ms;
    unsigned rate;
    unsigned channels;
    const char *format;
    double freq;
    const char *itf;
    double volume_at;
    int volume_mb;
    double mute_at;
    double starve_at;
    double resume_at;
    const char *out;
    unsigned times;
    bool fill_after_enqueue;
} Options;

static void parse_options(int argc, char **argv, Options *o)
{
    *o = (Options) {
        .seconds = 2.0, .buffers = 4, .ms = 20, .rate = 48000,
        .channels = 2, .format = "s16", .freq = 997.0, .itf = "asbq",
        .volume_at = -1, .mute_at = -1, .starve_at = -1, .resume_at = -1,
        .times = 5,
    };
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

        if (!v) {
            fprintf(stderr, "%s needs a value\n", a);
            exit(2);
        }
        i++;
        if (!strcmp(a, "--seconds")) {
            o->seconds = atof(v);
        } else if (!strcmp(a, "--buffers")) {
            o->buffers = atoi(v);
        } else if (!strcmp(a, "--ms")) {
            o->ms = atoi(v);
        } else if (!strcmp(a, "--rate")) {
            o->rate = atoi(v);
        } else if (!strcmp(a, "--channels")) {
            o->channels = atoi(v);
        } else if (!strcmp(a, "--format")) {
            o->format = v;
        } else if (!strcmp(a, "--freq")) {
            o->freq = atof(v);
        } else if (!strcmp(a, "--itf")) {
            o->itf = v;
        } else if (!strcmp(a, "--volume-at")) {
            if (sscanf(v, "%lf:%d", &o->volume_at, &o->volume_mb) != 2) {
                fprintf(stderr, "--volume-at wants T:MILLIBEL\n");
                exit(2);
            }
        } else if (!strcmp(a, "--mute-at")) {
            o->mute_at = atof(v);
        } else if (!strcmp(a, "--starve-at")) {
            o->starve_at = atof(v);
        } else if (!strcmp(a, "--resume-at")) {
            o->resume_at = atof(v);
        } else if (!strcmp(a, "--out")) {
            o->out = v;
        } else if (!strcmp(a, "--times")) {
            o->times = atoi(v);
        } else if (!strcmp(a, "--fill-after-enqueue")) {
            o->fill_after_enqueue = atoi(v) != 0;
        } else {
            fprintf(stderr, "unknown option %s\n", a);
            exit(2);
        }
    }
}

/*
 * The PCM format the options ask for (an SLAndroidDataFormat_PCM_EX for
 * float, else an SLDataFormat_PCM, as Android code does).
 */
typedef struct Format {
    union {
        SLDataFormat_PCM pcm;
        SLAndroidDataFormat_PCM_EX ex;
    } u;
    unsigned sample_bytes;
    bool is_float;
} Format;

static void make_format(const Options *o, Format *f)
{
    SLuint32 mask = o->channels == 2
        ? SL_SPEAKER_FRONT_LEFT | SL_SPEAKER_FRONT_RIGHT
        : SL_SPEAKER_FRONT_CENTER;

    memset(f, 0, sizeof(*f));
    if (!strcmp(o->format, "f32")) {
        f->u.ex = (SLAndroidDataFormat_PCM_EX) {
            SL_ANDROID_DATAFORMAT_PCM_EX, o->channels, o->rate * 1000, 32, 32,
            mask, SL_BYTEORDER_LITTLEENDIAN,
            SL_ANDROID_PCM_REPRESENTATION_FLOAT,
        };
        f->sample_bytes = 4;
        f->is_float = true;
        return;
    }
    f->sample_bytes = !strcmp(o->format, "u8") ? 1
                    : !strcmp(o->format, "s32") ? 4 : 2;
    f->u.pcm = (SLDataFormat_PCM) {
        SL_DATAFORMAT_PCM, o->channels, o->rate * 1000,
        f->sample_bytes * 8, f->sample_bytes * 8, mask,
        SL_BYTEORDER_LITTLEENDIAN,
    };
}

static void put_sample(const Format *f, uint8_t *p, double v)
{
    switch (f->sample_bytes) {
    case 1:
        p[0] = (uint8_t)lrint(v * 127.0 + 128.0);
        break;
    case 2: {
        int16_t s = (int16_t)lrint(v * 32767.0);

        memcpy(p, &s, 2);
        break;
    }
    default:
        if (f->is_float) {
            float x = (float)v;

            memcpy(p, &x, 4);
        } else {
            int32_t s = (int32_t)llrint(v * 2147483647.0);

            memcpy(p, &s, 4);
        }
        break;
    }
}

static double get_sample(const Format *f, const uint8_t *p)
{
    switch (f->sample_bytes) {
    case 1:
        return (p[0] - 128) / 128.0;
    case 2: {
        int16_t s;

        memcpy(&s, p, 2);
        return s / 32768.0;
    }
    default:
        if (f->is_float) {
            float x;

            memcpy(&x, p, 4);
            return x;
        } else {
            int32_t s;

            memcpy(&s, p, 4);
            return s / 2147483648.0;
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Engine and output mix                                                    */
/* ------------------------------------------------------------------------ */

typedef struct Engine {
    SLObjectItf object;
    SLEngineItf engine;
    SLObjectItf mix;
} Engine;

static void engine_open(Engine *e)
{
    CHECK(slCreateEngine(&e->object, 0, NULL, 0, NULL, NULL));
    CHECK((*e->object)->Realize(e->object, SL_BOOLEAN_FALSE));
    CHECK((*e->object)->GetInterface(e->object, SL_IID_ENGINE, &e->engine));
    CHECK((*e->engine)->CreateOutputMix(e->engine, &e->mix, 0, NULL, NULL));
    CHECK((*e->mix)->Realize(e->mix, SL_BOOLEAN_FALSE));
}

static void engine_close(Engine *e)
{
    (*e->mix)->Destroy(e->mix);
    (*e->object)->Destroy(e->object);
}

/* ------------------------------------------------------------------------ */
/* Callback bookkeeping shared by play and record                           */
/* ------------------------------------------------------------------------ */

typedef struct Stats {
    pthread_t main_thread;
    atomic_uint callbacks;
    atomic_uint on_caller_thread;   /* callbacks run on the API caller */
    atomic_uint reentrant;          /* callbacks run inside another one */
    atomic_uint enqueue_failures;
} Stats;

static __thread int callback_depth;

static void callback_enter(Stats *st)
{
    if (pthread_equal(pthread_self(), st->main_thread)) {
        atomic_fetch_add(&st->on_caller_thread, 1);
    }
    if (callback_depth++ > 0) {
        atomic_fetch_add(&st->reentrant, 1);
    }
    atomic_fetch_add(&st->callbacks, 1);
}

static void callback_leave(void)
{
    callback_depth--;
}

static void print_stats(Stats *st)
{
    printf("callbacks=%u\n", atomic_load(&st->callbacks));
    printf("callbacks_on_caller_thread=%u\n",
           atomic_load(&st->on_caller_thread));
    printf("callbacks_reentrant=%u\n", atomic_load(&st->reentrant));
    printf("enqueue_failures=%u\n", atomic_load(&st->enqueue_failures));
}

/* ------------------------------------------------------------------------ */
/* play                                                                     */
/* ------------------------------------------------------------------------ */

typedef struct Player {
    Stats stats;
    Format fmt;
    unsigned channels;
    SLAndroidSimpleBufferQueueItf asbq;
    SLBufferQueueItf bq;
    uint8_t **buffers;
    unsigned nbuffers;
    size_t buffer_bytes;
    unsigned next;              /* the buffer to refill next */
    double phase, step;
    bool feeding;
    pthread_mutex_t lock;       /* the client's own: guards the above */
} Player;

static SLresult player_enqueue(Player *p, const void *buf, SLuint32 size)
{
    return p->asbq ? (*p->asbq)->Enqueue(p->asbq, buf, size)
                   : (*p->bq)->Enqueue(p->bq, buf, size);
}

/*
 * Fill the next buffer with the sine and queue it, or (@late) queue it
 * silent and fill it afterwards.  Called with p->lock.
 */
static void player_feed_one(Player *p, bool late)
{
    uint8_t *buf = p->buffers[p->next];
    size_t frames = p->buffer_bytes / (p->fmt.sample_bytes * p->channels);
    SLresult res = SL_RESULT_SUCCESS;

    if (late) {
        memset(buf, p->fmt.sample_bytes == 1 ? 0x80 : 0, p->buffer_bytes);
        res = player_enqueue(p, buf, p->buffer_bytes);
    }
    for (size_t i = 0; i < frames; i++) {
        double v = 0.5 * sin(p->phase);

        for (unsigned c = 0; c < p->channels; c++) {
            put_sample(&p->fmt, buf + (i * p->channels + c) *
                       p->fmt.sample_bytes, v);
        }
        p->phase = fmod(p->phase + p->step, 2 * M_PI);
    }
    if (!late) {
        res = player_enqueue(p, buf, p->buffer_bytes);
    }
    if (res != SL_RESULT_SUCCESS) {
        atomic_fetch_add(&p->stats.enqueue_failures, 1);
    }
    p->next = (p->next + 1) % p->nbuffers;
}

static void player_completed(Player *p)
{
    callback_enter(&p->stats);
    pthread_mutex_lock(&p->lock);
    if (p->feeding) {
        player_feed_one(p, false);
    }
    pthread_mutex_unlock(&p->lock);
    callback_leave();
}

static void asbq_callback(SLAndroidSimpleBufferQueueItf caller, void *ctx)
{
    (void)caller;
    player_completed(ctx);
}

static void bq_callback(SLBufferQueueItf caller, void *ctx)
{
    (void)caller;
    player_completed(ctx);
}

static void set_feeding(Player *p, bool on, bool late)
{
    pthread_mutex_lock(&p->lock);
    p->feeding = on;
    if (on) {
        /* The queue is empty (or ran dry): fill it. */
        for (unsigned i = 0; i < p->nbuffers; i++) {
            player_feed_one(p, late);
        }
    }
    pthread_mutex_unlock(&p->lock);
}

static int cmd_play(const Options *o)
{
    Engine e;
    Player p = { .channels = o->channels, .nbuffers = o->buffers };
    SLObjectItf obj;
    SLPlayItf play;
    SLVolumeItf volume;
    bool use_bq = !strcmp(o->itf, "bq");
    SLDataLocator_AndroidSimpleBufferQueue loc_asbq = {
        SL_DATALOCATOR_ANDROIDSIMPLEBUFFERQUEUE, o->buffers };
    SLDataLocator_BufferQueue loc_bq = { SL_DATALOCATOR_BUFFERQUEUE,
                                         o->buffers };
    SLDataLocator_OutputMix loc_mix;
    SLDataSource src;
    SLDataSink sink;
    SLInterfaceID ids[2];
    const SLboolean req[2] = { SL_BOOLEAN_TRUE, SL_BOOLEAN_TRUE };
    SLAndroidSimpleBufferQueueState state;
    int64_t t0, t_end;
    SLmillibel max_mb;
    SLmillisecond pos;

    make_format(o, &p.fmt);
    p.stats.main_thread = pthread_self();
    pthread_mutex_init(&p.lock, NULL);
    p.step = 2 * M_PI * o->freq / o->rate;
    p.buffer_bytes = (size_t)o->rate * o->ms / 1000 * o->channels *
                     p.fmt.sample_bytes;
    p.buffers = calloc(o->buffers, sizeof(*p.buffers));
    for (unsigned i = 0; i < o->buffers; i++) {
        p.buffers[i] = malloc(p.buffer_bytes);
    }

    engine_open(&e);
    loc_mix = (SLDataLocator_OutputMix) { SL_DATALOCATOR_OUTPUTMIX, e.mix };
    src = (SLDataSource) { use_bq ? (void *)&loc_bq : (void *)&loc_asbq,
                           &p.fmt.u };
    sink = (SLDataSink) { &loc_mix, NULL };
    ids[0] = use_bq ? SL_IID_BUFFERQUEUE : SL_IID_ANDROIDSIMPLEBUFFERQUEUE;
    ids[1] = SL_IID_VOLUME;
    CHECK((*e.engine)->CreateAudioPlayer(e.engine, &obj, &src, &sink, 2, ids,
                                         req));
    CHECK((*obj)->Realize(obj, SL_BOOLEAN_FALSE));
    CHECK((*obj)->GetInterface(obj, SL_IID_PLAY, &play));
    CHECK((*obj)->GetInterface(obj, SL_IID_VOLUME, &volume));
    CHECK((*volume)->GetMaxVolumeLevel(volume, &max_mb));
    if (use_bq) {
        CHECK((*obj)->GetInterface(obj, SL_IID_BUFFERQUEUE, &p.bq));
        CHECK((*p.bq)->RegisterCallback(p.bq, bq_callback, &p));
    } else {
        CHECK((*obj)->GetInterface(obj, SL_IID_ANDROIDSIMPLEBUFFERQUEUE,
                                   &p.asbq));
        CHECK((*p.asbq)->RegisterCallback(p.asbq, asbq_callback, &p));
    }

    /* Prime the queue, then play; the callbacks keep it full. */
    set_feeding(&p, true, o->fill_after_enqueue);
    t0 = now_ns();
    CHECK((*play)->SetPlayState(play, SL_PLAYSTATE_PLAYING));

    /* The scripted events, in time order. */
    {
        struct { double t; int what; } ev[4];
        int n = 0;

        if (o->volume_at >= 0) {
            ev[n].t = o->volume_at, ev[n++].what = 0;
        }
        if (o->mute_at >= 0) {
            ev[n].t = o->mute_at, ev[n++].what = 1;
        }
        if (o->starve_at >= 0) {
            ev[n].t = o->starve_at, ev[n++].what = 2;
        }
        if (o->resume_at >= 0) {
            ev[n].t = o->resume_at, ev[n++].what = 3;
        }
        for (int i = 0; i < n; i++) {
            for (int j = i + 1; j < n; j++) {
                if (ev[j].t < ev[i].t) {
                    double t = ev[i].t;
                    int w = ev[i].what;

                    ev[i] = ev[j];
                    ev[j].t = t, ev[j].what = w;
                }
            }
        }
        for (int i = 0; i < n; i++) {
            sleep_until(t0 + (int64_t)(ev[i].t * NS_PER_SEC));
            switch (ev[i].what) {
            case 0:
                CHECK((*volume)->SetVolumeLevel(volume, o->volume_mb));
                break;
            case 1:
                CHECK((*volume)->SetMute(volume, SL_BOOLEAN_TRUE));
                break;
            case 2:
                set_feeding(&p, false, false);
                break;
            case 3:
                set_feeding(&p, true, false);
                break;
            }
            printf("event_%d_ns=%lld\n", ev[i].what,
                   (long long)(now_ns() - t0));
        }
    }
    sleep_until(t0 + (int64_t)(o->seconds * NS_PER_SEC));

    CHECK((*play)->GetPosition(play, &pos));
    if (p.asbq) {
        CHECK((*p.asbq)->GetState(p.asbq, &state));
    } else {
        SLBufferQueueState s;

        CHECK((*p.bq)->GetState(p.bq, &s));
        state.count = s.count;
        state.index = s.playIndex;
    }
    t_end = now_ns();
    CHECK((*play)->SetPlayState(play, SL_PLAYSTATE_STOPPED));
    (*obj)->Destroy(obj);
    engine_close(&e);

    printf("elapsed_ns=%lld\n", (long long)(t_end - t0));
    printf("position_ms=%u\n", (unsigned)pos);
    printf("max_volume_mb=%d\n", max_mb);
    printf("queue_count=%u\nqueue_index=%u\n", (unsigned)state.count,
           (unsigned)state.index);
    print_stats(&p.stats);
    for (unsigned i = 0; i < o->buffers; i++) {
        free(p.buffers[i]);
    }
    free(p.buffers);
    pthread_mutex_destroy(&p.lock);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* record                                                                   */
/* ------------------------------------------------------------------------ */

typedef struct Recorder {
    Stats stats;
    SLAndroidSimpleBufferQueueItf bq;
    uint8_t **buffers;
    unsigned nbuffers;
    size_t buffer_bytes;
    unsigned next;              /* the buffer that completes next */
    uint8_t *captured;
    size_t captured_bytes, captured_cap;
    bool feeding;
    pthread_mutex_t lock;
} Recorder;

static void recorder_callback(SLAndroidSimpleBufferQueueItf caller, void *ctx)
{
    Recorder *r = ctx;
    uint8_t *buf;

    callback_enter(&r->stats);
    pthread_mutex_lock(&r->lock);
    buf = r->buffers[r->next];
    r->next = (r->next + 1) % r->nbuffers;
    if (r->captured_bytes + r->buffer_bytes <= r->captured_cap) {
        memcpy(r->captured + r->captured_bytes, buf, r->buffer_bytes);
        r->captured_bytes += r->buffer_bytes;
    }
    if (r->feeding &&
        (*caller)->Enqueue(caller, buf, r->buffer_bytes) != SL_RESULT_SUCCESS) {
        atomic_fetch_add(&r->stats.enqueue_failures, 1);
    }
    pthread_mutex_unlock(&r->lock);
    callback_leave();
}

static void recorder_set_feeding(Recorder *r, bool on)
{
    pthread_mutex_lock(&r->lock);
    r->feeding = on;
    if (on) {
        SLAndroidSimpleBufferQueueState s;

        /* Requeue the buffers that are not queued any more. */
        (*r->bq)->GetState(r->bq, &s);
        for (unsigned i = s.count; i < r->nbuffers; i++) {
            unsigned b = (r->next + i) % r->nbuffers;

            if ((*r->bq)->Enqueue(r->bq, r->buffers[b], r->buffer_bytes) !=
                SL_RESULT_SUCCESS) {
                atomic_fetch_add(&r->stats.enqueue_failures, 1);
            }
        }
    }
    pthread_mutex_unlock(&r->lock);
}

/* Frequency of channel 0 from its rising zero crossings (interpolated). */
static double dominant_frequency(const Format *f, unsigned channels,
                                 const uint8_t *data, size_t frames,
                                 unsigned rate)
{
    double first = -1, last = -1, prev = 0;
    unsigned crossings = 0;
    size_t stride = (size_t)channels * f->sample_bytes;

    for (size_t i = 0; i < frames; i++) {
        double v = get_sample(f, data + i * stride);

        if (i > 0 && prev < 0 && v >= 0) {
            double t = i - 1 + (-prev) / (v - prev);

            if (first < 0) {
                first = t;
            } else {
                crossings++;
            }
            last = t;
        }
        prev = v;
    }
    return crossings ? crossings * (double)rate / (last - first) : 0.0;
}

static void write_wav16(const char *path, const Format *f, unsigned channels,
                        unsigned rate, const uint8_t *data, size_t frames)
{
    FILE *out = fopen(path, "wb");
    uint32_t bytes = frames * channels * 2;
    uint8_t h[44];

    if (!out) {
        perror(path);
        exit(2);
    }
    memcpy(h, "RIFF", 4);
    h[4] = (36 + bytes), h[5] = (36 + bytes) >> 8;
    h[6] = (36 + bytes) >> 16, h[7] = (36 + bytes) >> 24;
    memcpy(h + 8, "WAVEfmt \x10\0\0\0\x01\0", 14);
    h[22] = channels, h[23] = 0;
    h[24] = rate, h[25] = rate >> 8, h[26] = rate >> 16, h[27] = rate >> 24;
    h[28] = rate * channels * 2, h[29] = (rate * channels * 2) >> 8;
    h[30] = (rate * channels * 2) >> 16, h[31] = (rate * channels * 2) >> 24;
    h[32] = channels * 2, h[33] = 0, h[34] = 16, h[35] = 0;
    memcpy(h + 36, "data", 4);
    h[40] = bytes, h[41] = bytes >> 8, h[42] = bytes >> 16, h[43] = bytes >> 24;
    fwrite(h, sizeof(h), 1, out);
    for (size_t i = 0; i < frames * channels; i++) {
        double v = get_sample(f, data + i * f->sample_bytes);
        long s = lrint(v * 32768.0);
        int16_t x = s > 32767 ? 32767 : s < -32768 ? -32768 : s;

        fwrite(&x, 2, 1, out);
    }
    fclose(out);
}

static int cmd_record(const Options *o)
{
    Engine e;
    Recorder r = { .nbuffers = o->buffers };
    Format fmt;
    SLObjectItf obj;
    SLRecordItf rec;
    SLDataLocator_IODevice loc_dev = {
        SL_DATALOCATOR_IODEVICE, SL_IODEVICE_AUDIOINPUT,
        SL_DEFAULTDEVICEID_AUDIOINPUT, NULL };
    SLDataLocator_AndroidSimpleBufferQueue loc_bq = {
        SL_DATALOCATOR_ANDROIDSIMPLEBUFFERQUEUE, o->buffers };
    SLDataSource src = { &loc_dev, NULL };
    SLDataSink sink;
    const SLInterfaceID ids[1] = { SL_IID_ANDROIDSIMPLEBUFFERQUEUE };
    const SLboolean req[1] = { SL_BOOLEAN_TRUE };
    size_t frame_bytes;
    int64_t t0;
    SLresult res;

    make_format(o, &fmt);
    frame_bytes = (size_t)o->channels * fmt.sample_bytes;
    r.stats.main_thread = pthread_self();
    pthread_mutex_init(&r.lock, NULL);
    r.buffer_bytes = (size_t)o->rate * o->ms / 1000 * frame_bytes;
    r.buffers = calloc(o->buffers, sizeof(*r.buffers));
    for (unsigned i = 0; i < o->buffers; i++) {
        r.buffers[i] = malloc(r.buffer_bytes);
    }
    r.captured_cap = (size_t)((o->seconds + 1) * o->rate) * frame_bytes;
    r.captured = malloc(r.captured_cap);

    engine_open(&e);
    sink = (SLDataSink) { &loc_bq, &fmt.u };
    CHECK((*e.engine)->CreateAudioRecorder(e.engine, &obj, &src, &sink, 1, ids,
                                           req));
    res = (*obj)->Realize(obj, SL_BOOLEAN_FALSE);
    printf("realize=%s\n", result_name(res));
    if (res != SL_RESULT_SUCCESS) {
        (*obj)->Destroy(obj);
        engine_close(&e);
        for (unsigned i = 0; i < o->buffers; i++) {
            free(r.buffers[i]);
        }
        free(r.buffers);
        free(r.captured);
        pthread_mutex_destroy(&r.lock);
        return 3;
    }
    CHECK((*obj)->GetInterface(obj, SL_IID_RECORD, &rec));
    CHECK((*obj)->GetInterface(obj, SL_IID_ANDROIDSIMPLEBUFFERQUEUE, &r.bq));
    CHECK((*r.bq)->RegisterCallback(r.bq, recorder_callback, &r));
    recorder_set_feeding(&r, true);

    t0 = now_ns();
    CHECK((*rec)->SetRecordState(rec, SL_RECORDSTATE_RECORDING));
    if (o->starve_at >= 0) {
        sleep_until(t0 + (int64_t)(o->starve_at * NS_PER_SEC));
        recorder_set_feeding(&r, false);
    }
    if (o->resume_at >= 0) {
        sleep_until(t0 + (int64_t)(o->resume_at * NS_PER_SEC));
        recorder_set_feeding(&r, true);
    }
    sleep_until(t0 + (int64_t)(o->seconds * NS_PER_SEC));
    CHECK((*rec)->SetRecordState(rec, SL_RECORDSTATE_STOPPED));
    (*obj)->Destroy(obj);
    engine_close(&e);

    {
        size_t frames = r.captured_bytes / frame_bytes;

        printf("frames=%zu\n", frames);
        printf("freq=%.4f\n", dominant_frequency(&fmt, o->channels, r.captured,
                                                 frames, o->rate));
        if (o->out) {
            write_wav16(o->out, &fmt, o->channels, o->rate, r.captured, frames);
        }
    }
    print_stats(&r.stats);
    for (unsigned i = 0; i < o->buffers; i++) {
        free(r.buffers[i]);
    }
    free(r.buffers);
    free(r.captured);
    pthread_mutex_destroy(&r.lock);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* cycle                                                                    */
/* ------------------------------------------------------------------------ */

static void count_callback(SLAndroidSimpleBufferQueueItf caller, void *ctx)
{
    static uint8_t silence[480 * 4];

    (void)caller;
    atomic_fetch_add((atomic_uint *)ctx, 1);
    /* Keep the queue busy; the player may be destroyed meanwhile. */
    (*caller)->Enqueue(caller, silence, sizeof(silence));
}

/*
 * Create an engine, a player and a recorder, run them briefly and tear
 * everything down, in a different order each time; some objects are
 * destroyed while running with callbacks in flight.
 */
static int cmd_cycle(const Options *o)
{
    static uint8_t bufs[3][480 * 4], rbufs[3][480 * 4];
    atomic_uint callbacks = 0;

    for (unsigned i = 0; i < o->times; i++) {
        Engine e;
        SLObjectItf player, recorder;
        SLPlayItf play;
        SLRecordItf rec;
        SLAndroidSimpleBufferQueueItf pbq, rbq;
        SLDataLocator_AndroidSimpleBufferQueue loc_bq = {
            SL_DATALOCATOR_ANDROIDSIMPLEBUFFERQUEUE, 3 };
        SLDataFormat_PCM pcm = {
            SL_DATAFORMAT_PCM, 2, SL_SAMPLINGRATE_48, 16, 16,
            SL_SPEAKER_FRONT_LEFT | SL_SPEAKER_FRONT_RIGHT,
            SL_BYTEORDER_LITTLEENDIAN };
        SLDataLocator_OutputMix loc_mix;
        SLDataLocator_IODevice loc_dev = {
            SL_DATALOCATOR_IODEVICE, SL_IODEVICE_AUDIOINPUT,
            SL_DEFAULTDEVICEID_AUDIOINPUT, NULL };
        SLDataSource psrc = { &loc_bq, &pcm }, rsrc = { &loc_dev, NULL };
        SLDataSink psink, rsink = { &loc_bq, &pcm };
        const SLInterfaceID ids[2] = { SL_IID_ANDROIDSIMPLEBUFFERQUEUE,
                                       SL_IID_VOLUME };
        const SLboolean req[2] = { SL_BOOLEAN_TRUE, SL_BOOLEAN_FALSE };
        struct timespec pause = { 0, (20 + 7 * (i % 4)) * 1000 * 1000 };

        engine_open(&e);
        loc_mix = (SLDataLocator_OutputMix) { SL_DATALOCATOR_OUTPUTMIX, e.mix };
        psink = (SLDataSink) { &loc_mix, NULL };
        CHECK((*e.engine)->CreateAudioPlayer(e.engine, &player, &psrc, &psink,
                                             2, ids, req));
        CHECK((*e.engine)->CreateAudioRecorder(e.engine, &recorder, &rsrc,
                                               &rsink, 1, ids, req));
        CHECK((*player)->Realize(player, SL_BOOLEAN_FALSE));
        CHECK((*recorder)->Realize(recorder, SL_BOOLEAN_FALSE));
        CHECK((*player)->GetInterface(player, SL_IID_PLAY, &play));
        CHECK((*player)->GetInterface(player, SL_IID_ANDROIDSIMPLEBUFFERQUEUE,
                                      &pbq));
        CHECK((*recorder)->GetInterface(recorder, SL_IID_RECORD, &rec));
        CHECK((*recorder)->GetInterface(recorder,
                                        SL_IID_ANDROIDSIMPLEBUFFERQUEUE, &rbq));
        CHECK((*pbq)->RegisterCallback(pbq, count_callback, &callbacks));
        for (unsigned b = 0; b < 3; b++) {
            CHECK((*pbq)->Enqueue(pbq, bufs[b], sizeof(bufs[b])));
            if (i % 2 == 0) {
                CHECK((*rbq)->Enqueue(rbq, rbufs[b], sizeof(rbufs[b])));
            }
        }
        CHECK((*play)->SetPlayState(play, SL_PLAYSTATE_PLAYING));
        CHECK((*rec)->SetRecordState(rec, SL_RECORDSTATE_RECORDING));
        nanosleep(&pause, NULL);
        if (i % 3 == 0) {
            CHECK((*play)->SetPlayState(play, SL_PLAYSTATE_PAUSED));
            CHECK((*pbq)->Clear(pbq));
        }
        if (i % 2) {
            (*player)->Destroy(player);
            (*recorder)->Destroy(recorder);
        } else {
            /* The engine outlives its objects: this Destroy is ignored. */
            (*e.object)->Destroy(e.object);
            (*recorder)->Destroy(recorder);
            (*player)->Destroy(player);
        }
        engine_close(&e);
    }
    printf("cycles=%u\n", o->times);
    printf("callbacks=%u\n", atomic_load(&callbacks));
    return 0;
}

/* ------------------------------------------------------------------------ */
/* errors                                                                   */
/* ------------------------------------------------------------------------ */

static void check(const char *name, SLresult r)
{
    printf("check %s %s\n", name, result_name(r));
}

static void check_value(const char *name, long v)
{
    printf("check %s %ld\n", name, v);
}

/* Create a player of @pcm (with @nbuf buffers); returns the result. */
static SLresult try_player(Engine *e, SLObjectItf *obj, void *format,
                           SLuint32 nbuf, SLObjectItf mix, SLuint32 nitf,
                           const SLInterfaceID *ids, const SLboolean *req)
{
    SLDataLocator_AndroidSimpleBufferQueue loc_bq = {
        SL_DATALOCATOR_ANDROIDSIMPLEBUFFERQUEUE, nbuf };
    SLDataLocator_OutputMix loc_mix = { SL_DATALOCATOR_OUTPUTMIX, mix };
    SLDataSource src = { &loc_bq, format };
    SLDataSink sink = { &loc_mix, NULL };
    SLObjectItf tmp = NULL;
    SLresult r;

    r = (*e->engine)->CreateAudioPlayer(e->engine, obj ? obj : &tmp, &src,
                                        &sink, nitf, ids, req);
    if (!obj && tmp) {
        (*tmp)->Destroy(tmp);
    }
    return r;
}

static int cmd_errors(void)
{
    Engine e;
    SLObjectItf obj, obj2, player, mix2;
    SLEngineItf eng;
    void *itf;
    const SLDataFormat_PCM good = {
        SL_DATAFORMAT_PCM, 2, SL_SAMPLINGRATE_44_1, 16, 16,
        SL_SPEAKER_FRONT_LEFT | SL_SPEAKER_FRONT_RIGHT,
        SL_BYTEORDER_LITTLEENDIAN };
    SLDataFormat_PCM pcm;
    const SLInterfaceID bq_ids[2] = { SL_IID_ANDROIDSIMPLEBUFFERQUEUE,
                                      SL_IID_VOLUME };
    const SLboolean bq_req[2] = { SL_BOOLEAN_TRUE, SL_BOOLEAN_TRUE };
    const SLInterfaceID seek_id[1] = { SL_IID_SEEK };
    const SLboolean yes[1] = { SL_BOOLEAN_TRUE }, no[1] = { SL_BOOLEAN_FALSE };
    SLPlayItf play;
    SLVolumeItf volume;
    SLAndroidSimpleBufferQueueItf bq;
    SLAndroidSimpleBufferQueueState st;
    SLmillibel mb;
    SLuint32 n;
    static int16_t buf[4][64];

    /* Engine creation. */
    check("create_engine_null", slCreateEngine(NULL, 0, NULL, 0, NULL, NULL));
    check("create_engine_required_play",
          slCreateEngine(&obj, 0, NULL, 1, (SLInterfaceID[]) { SL_IID_PLAY },
                         yes));
    check("create_engine_ids_null", slCreateEngine(&obj, 0, NULL, 1, NULL,
                                                   yes));
    check("create_engine", slCreateEngine(&obj, 0, NULL, 0, NULL, NULL));
    check("create_second_engine", slCreateEngine(&obj2, 0, NULL, 0, NULL,
                                                 NULL));
    check("get_interface_unrealized",
          (*obj)->GetInterface(obj, SL_IID_ENGINE, &eng));
    check("realize_async", (*obj)->Realize(obj, SL_BOOLEAN_TRUE));
    check("realize", (*obj)->Realize(obj, SL_BOOLEAN_FALSE));
    check("realize_twice", (*obj)->Realize(obj, SL_BOOLEAN_FALSE));
    check("get_interface_null_iid", (*obj)->GetInterface(obj, NULL, &eng));
    check("get_interface_unsupported",
          (*obj)->GetInterface(obj, SL_IID_SEEK, &itf));
    check("get_interface_engine",
          (*obj)->GetInterface(obj, SL_IID_ENGINE, &eng));
    check("query_num_engine_itfs", slQueryNumSupportedEngineInterfaces(&n));
    check_value("num_engine_itfs", n);
    e.object = obj;
    e.engine = eng;

    /* Output mixes. */
    check("create_mix", (*eng)->CreateOutputMix(eng, &e.mix, 0, NULL, NULL));
    check("create_mix2", (*eng)->CreateOutputMix(eng, &mix2, 0, NULL, NULL));
    check("realize_mix", (*e.mix)->Realize(e.mix, SL_BOOLEAN_FALSE));

    /* Player creation. */
    pcm = good;
    check("player_null_out",
          (*eng)->CreateAudioPlayer(eng, NULL, NULL, NULL, 0, NULL, NULL));
    check("player_ok", try_player(&e, NULL, &pcm, 2, e.mix, 2, bq_ids,
                                  bq_req));
    check("player_zero_buffers", try_player(&e, NULL, &pcm, 0, e.mix, 0, NULL,
                                            NULL));
    check("player_no_format", try_player(&e, NULL, NULL, 2, e.mix, 0, NULL,
                                         NULL));
    pcm = good, pcm.numChannels = 3;
    pcm.channelMask = 7;
    check("player_3_channels", try_player(&e, NULL, &pcm, 2, e.mix, 0, NULL,
                                          NULL));
    pcm = good, pcm.bitsPerSample = pcm.containerSize = 24;
    check("player_24_bits", try_player(&e, NULL, &pcm, 2, e.mix, 0, NULL,
                                       NULL));
    pcm = good, pcm.samplesPerSec = 44100;  /* Hz where mHz are wanted */
    check("player_rate_in_hz", try_player(&e, NULL, &pcm, 2, e.mix, 0, NULL,
                                          NULL));
    pcm = good, pcm.containerSize = 8;
    check("player_container_too_small", try_player(&e, NULL, &pcm, 2, e.mix,
                                                   0, NULL, NULL));
    pcm = good, pcm.channelMask = SL_SPEAKER_FRONT_CENTER;
    check("player_mask_mismatch", try_player(&e, NULL, &pcm, 2, e.mix, 0,
                                             NULL, NULL));
    pcm = good, pcm.endianness = SL_BYTEORDER_BIGENDIAN;
    check("player_big_endian", try_player(&e, NULL, &pcm, 2, e.mix, 0, NULL,
                                          NULL));
    pcm = good;
    check("player_required_seek", try_player(&e, NULL, &pcm, 2, e.mix, 1,
                                             seek_id, yes));
    check("player_optional_seek", try_player(&e, NULL, &pcm, 2, e.mix, 1,
                                             seek_id, no));
    check("player_no_mix", try_player(&e, NULL, &pcm, 2, NULL, 0, NULL, NULL));
    check("player_unrealized_mix", try_player(&e, NULL, &pcm, 2, mix2, 0,
                                              NULL, NULL));

    /* A player without the buffer queue asked for. */
    check("player_plain", try_player(&e, &player, &pcm, 2, e.mix, 0, NULL,
                                     NULL));
    check("player_plain_realize", (*player)->Realize(player, SL_BOOLEAN_FALSE));
    check("player_plain_get_bq",
          (*player)->GetInterface(player, SL_IID_ANDROIDSIMPLEBUFFERQUEUE,
                                  &itf));
    check("player_plain_get_play",
          (*player)->GetInterface(player, SL_IID_PLAY, &play));
    (*player)->Destroy(player);

    /* The buffer queue. */
    check("player_bq", try_player(&e, &player, &pcm, 2, e.mix, 2, bq_ids,
                                  bq_req));
    check("player_bq_realize", (*player)->Realize(player, SL_BOOLEAN_FALSE));
    (*player)->GetInterface(player, SL_IID_PLAY, &play);
    (*player)->GetInterface(player, SL_IID_VOLUME, &volume);
    check("get_asbq", (*player)->GetInterface(
              player, SL_IID_ANDROIDSIMPLEBUFFERQUEUE, &bq));
    check("get_std_bq_alias",
          (*player)->GetInterface(player, SL_IID_BUFFERQUEUE, &itf));
    check("get_seek", (*player)->GetInterface(player, SL_IID_SEEK, &itf));
    check("enqueue_null", (*bq)->Enqueue(bq, NULL, 256));
    check("enqueue_empty", (*bq)->Enqueue(bq, buf[0], 0));
    check("enqueue_partial_frame", (*bq)->Enqueue(bq, buf[0], 6));
    check("enqueue_1", (*bq)->Enqueue(bq, buf[0], sizeof(buf[0])));
    check("enqueue_2", (*bq)->Enqueue(bq, buf[1], sizeof(buf[1])));
    check("enqueue_full", (*bq)->Enqueue(bq, buf[2], sizeof(buf[2])));
    (*bq)->GetState(bq, &st);
    check_value("state_count_full", st.count);
    check("clear", (*bq)->Clear(bq));
    (*bq)->GetState(bq, &st);
    check_value("state_count_cleared", st.count);
    check("get_state_null", (*bq)->GetState(bq, NULL));
    check("set_play_state_bad", (*play)->SetPlayState(play, 0));
    check("set_play_state_playing",
          (*play)->SetPlayState(play, SL_PLAYSTATE_PLAYING));
    check("register_callback_playing",
          (*bq)->RegisterCallback(bq, NULL, NULL));
    check("set_play_state_stopped",
          (*play)->SetPlayState(play, SL_PLAYSTATE_STOPPED));
    check("register_callback_stopped",
          (*bq)->RegisterCallback(bq, NULL, NULL));
    check("volume_above_max", (*volume)->SetVolumeLevel(volume, 100));
    check("volume_min", (*volume)->SetVolumeLevel(volume, SL_MILLIBEL_MIN));
    (*volume)->GetMaxVolumeLevel(volume, &mb);
    check_value("max_volume", mb);
    (*volume)->GetVolumeLevel(volume, &mb);
    check_value("volume_read_back", mb);

    /* The engine outlives its objects: Destroy() is ignored meanwhile. */
    (*obj)->Destroy(obj);
    check("engine_still_alive",
          (*eng)->CreateOutputMix(eng, &obj2, 0, NULL, NULL));
    (*obj2)->Destroy(obj2);
    (*player)->Destroy(player);

    /* Recorders. */
    {
        SLDataLocator_IODevice dev = {
            SL_DATALOCATOR_IODEVICE, SL_IODEVICE_AUDIOINPUT,
            SL_DEFAULTDEVICEID_AUDIOINPUT, NULL };
        SLDataLocator_AndroidSimpleBufferQueue loc_asbq = {
            SL_DATALOCATOR_ANDROIDSIMPLEBUFFERQUEUE, 2 };
        SLDataLocator_BufferQueue loc_bq = { SL_DATALOCATOR_BUFFERQUEUE, 2 };
        SLDataSource src = { &dev, NULL };
        SLDataSink sink = { &loc_asbq, &pcm };
        SLObjectItf r;

        dev.deviceID = 7;
        check("recorder_bad_device",
              (*eng)->CreateAudioRecorder(eng, &r, &src, &sink, 1, bq_ids,
                                          bq_req));
        dev.deviceID = SL_DEFAULTDEVICEID_AUDIOINPUT;
        sink.pLocator = &loc_bq;
        check("recorder_std_bq_sink",
              (*eng)->CreateAudioRecorder(eng, &r, &src, &sink, 1, bq_ids,
                                          bq_req));
        sink.pLocator = &loc_asbq;
        check("recorder_volume_required",
              (*eng)->CreateAudioRecorder(eng, &r, &src, &sink, 2, bq_ids,
                                          bq_req));
        check("recorder_ok",
              (*eng)->CreateAudioRecorder(eng, &r, &src, &sink, 1, bq_ids,
                                          bq_req));
        setenv("TABVM_SLES_CAPTURE_WAV", "/nonexistent/capture.wav", 1);
        check("recorder_missing_wav", (*r)->Realize(r, SL_BOOLEAN_FALSE));
        unsetenv("TABVM_SLES_CAPTURE_WAV");
        setenv("TABVM_SLES_CAPTURE_SINE", "30000", 1);
        check("recorder_sine_above_nyquist",
              (*r)->Realize(r, SL_BOOLEAN_FALSE));
        unsetenv("TABVM_SLES_CAPTURE_SINE");
        check("recorder_realize", (*r)->Realize(r, SL_BOOLEAN_FALSE));
        check("recorder_get_volume",
              (*r)->GetInterface(r, SL_IID_VOLUME, &itf));
        (*r)->Destroy(r);
    }

    (*mix2)->Destroy(mix2);
    engine_close(&e);
    check("create_engine_again", slCreateEngine(&obj, 0, NULL, 0, NULL, NULL));
    (*obj)->Destroy(obj);
    return 0;
}

int main(int argc, char **argv)
{
    Options o;
    int ret;

    if (argc < 2) {
        fprintf(stderr, "usage: %s play|record|cycle|errors [options]\n",
                argv[0]);
        return 2;
    }
    parse_options(argc, argv, &o);
    if (!strcmp(argv[1], "play")) {
        ret = cmd_play(&o);
    } else if (!strcmp(argv[1], "record")) {
        ret = cmd_record(&o);
    } else if (!strcmp(argv[1], "cycle")) {
        ret = cmd_cycle(&o);
    } else if (!strcmp(argv[1], "errors")) {
        ret = cmd_errors();
    } else {
        fprintf(stderr, "unknown command %s\n", argv[1]);
        return 2;
    }
    fflush(stdout);
    return ret;
}
