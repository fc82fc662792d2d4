/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * -audiodev opensles: OpenSL ES playback and capture, 2 x 20 ms buffers
 *
 * Generated from devspecs/opensles.yaml
 * by the tabvm generator -- do not edit. Regenerate with: tabvm gen
 */

/*
 * A QEMU audio driver on OpenSL ES, Android's native audio API:
 * engine -> output mix -> audio player fed by an Android simple buffer queue
 * (playback), and an audio recorder from the default audio input device into
 * a buffer queue (capture).
 *
 * OpenSL ES calls the buffer queue callbacks on its own threads. They only
 * move bytes between a buffer and QEMU's emulated ring (hw->buf_emul, under
 * the voice's lock, which also guards QEMU's side of the ring), play
 * silence on underrun and count underruns and overruns; the counters are
 * read back from QEMU's thread for trace events and the QOM object
 * /backend/audiodev-ID (properties underruns, overruns, buffers).
 *
 * Defaults from devspecs/opensles.yaml:
 * playback 2 x 20 ms,
 * capture 2 x 20 ms,
 * formats s16, rates 44100, 48000 Hz, 1 or 2 channel(s).
 * The library is loaded with dlopen() (option library=, default
 * libOpenSLES.so), so QEMU starts without it when no audiodev uses it.
 */

#include "qemu/osdep.h"
#include <dlfcn.h>
#include <math.h>
#include <SLES/OpenSLES.h>
#include <SLES/OpenSLES_Android.h>
#include "qemu/atomic.h"
#include "qemu/lockable.h"
#include "qemu/module.h"
#include "qemu/thread.h"
#include "qemu/timer.h"
#include "qapi/error.h"
#include "qom/object.h"
#include "audio/audio.h"
#include "hw/tabvm/sles/engine.h"

#define AUDIO_CAP "opensles"
#include "audio/audio_int.h"
#include "trace.h"

#define SLES_OUT_BUFFERS     2
#define SLES_OUT_BUFFER_US   20000
#define SLES_IN_BUFFERS      2
#define SLES_IN_BUFFER_US    20000
#define SLES_DEFAULT_RATE    48000

/* This driver's QAPI options (qapi/audio.json) */
typedef AudiodevOpenslesOptions SlesOptions;
typedef AudiodevOpenslesPerDirectionOptions SlesPdo;

/* What the driver uses of the library, however it was found */
typedef struct {
    void *handle;
    TabvmSlesCreateEngine create_engine;
    SLInterfaceID iid_engine;
    SLInterfaceID iid_play;
    SLInterfaceID iid_record;
    SLInterfaceID iid_volume;
    SLInterfaceID iid_buffer_queue;
} SlesApi;

typedef struct {
    Audiodev *dev;
    SlesApi api;
    SLObjectItf engine_obj;
    SLEngineItf engine;
    SLObjectItf mix_obj;
    Object *stats;
    /* updated on OpenSL ES threads */
    uint32_t underruns;
    uint32_t overruns;
    uint32_t buffers;
    uint32_t traced_underruns;
    uint32_t traced_overruns;
} SlesState;

/* One buffer queue and the buffers it owns while they are enqueued */
typedef struct {
    SlesState *s;
    SLObjectItf obj;
    SLAndroidSimpleBufferQueueItf queue;
    QemuMutex lock;             /* the fields below and QEMU's emulated ring */
    uint8_t *bufs;
    size_t buffer_bytes;
    uint32_t buffer_count;
    uint32_t next;              /* the buffer to fill next */
    uint32_t queued;            /* buffers OpenSL ES holds */
    bool running;
} SlesQueue;

typedef struct {
    HWVoiceOut hw;
    SlesQueue q;
    SLPlayItf play;
    SLVolumeItf volume;
    bool draining;              /* disabled: play what is left, then stop */
    bool playing;               /* PLAYING: set once every buffer is queued */
    QEMUTimer *drain_timer;
} SlesVoiceOut;

typedef struct {
    HWVoiceIn hw;
    SlesQueue q;
    SLRecordItf record;
} SlesVoiceIn;

static bool sles_ok(SLresult result, const char *what, Error **errp)
{
    if (result != SL_RESULT_SUCCESS) {
        error_setg(errp, "%s: %s failed (SLresult %u)", AUDIO_CAP, what,
                   (unsigned)result);
        return false;
    }
    return true;
}

/* ---- the library -------------------------------------------------------- */

static bool sles_symbol(SlesApi *api, const char *name, void **out,
                        Error **errp)
{
    *out = dlsym(api->handle, name);
    if (!*out) {
        error_setg(errp, "%s: %s has no symbol %s", AUDIO_CAP,
                   "the OpenSL ES library", name);
        return false;
    }
    return true;
}

static bool sles_iid(SlesApi *api, const char *name, SLInterfaceID *out,
                     Error **errp)
{
    void *sym;

    if (!sles_symbol(api, name, &sym, errp)) {
        return false;
    }
    *out = *(const SLInterfaceID *)sym;
    return true;
}

static bool sles_load(SlesApi *api, const char *library, Error **errp)
{
    void *create;

    api->handle = dlopen(library, RTLD_NOW | RTLD_LOCAL);
    if (!api->handle) {
        error_setg(errp, "%s: cannot load the OpenSL ES library %s: %s",
                   AUDIO_CAP, library, dlerror());
        return false;
    }
    if (!sles_symbol(api, "slCreateEngine", &create, errp) ||
        !sles_iid(api, "SL_IID_ENGINE", &api->iid_engine, errp) ||
        !sles_iid(api, "SL_IID_PLAY", &api->iid_play, errp) ||
        !sles_iid(api, "SL_IID_RECORD", &api->iid_record, errp) ||
        !sles_iid(api, "SL_IID_VOLUME", &api->iid_volume, errp) ||
        !sles_iid(api, "SL_IID_ANDROIDSIMPLEBUFFERQUEUE",
                  &api->iid_buffer_queue, errp)) {
        dlclose(api->handle);
        api->handle = NULL;
        return false;
    }
    api->create_engine = (TabvmSlesCreateEngine)create;
    return true;
}

static void sles_unload(SlesApi *api)
{
    if (api->handle) {
        dlclose(api->handle);
        api->handle = NULL;
    }
}

/* ---- formats ------------------------------------------------------------ */

static const int sles_rates[] = { 44100, 48000 };

/* The closest settings this driver offers to what QEMU asks for */
static void sles_settings(struct audsettings *as, struct audsettings *obt)
{
    int best = sles_rates[0];
    size_t i;

    for (i = 0; i < ARRAY_SIZE(sles_rates); i++) {
        if (abs(sles_rates[i] - as->freq) < abs(best - as->freq)) {
            best = sles_rates[i];
        }
    }
    obt->freq = best;
    obt->nchannels = as->nchannels >= 2 ? 2 : 1;
    obt->fmt = AUDIO_FORMAT_S16;
    obt->endianness = 0;
}

static SLDataFormat_PCM sles_pcm_format(const struct audsettings *obt)
{
    SLuint32 bits = obt->fmt == AUDIO_FORMAT_U8 ? SL_PCMSAMPLEFORMAT_FIXED_8
                                                : SL_PCMSAMPLEFORMAT_FIXED_16;

    return (SLDataFormat_PCM) {
        .formatType = SL_DATAFORMAT_PCM,
        .numChannels = obt->nchannels,
        .samplesPerSec = obt->freq * 1000,      /* milliHertz */
        .bitsPerSample = bits,
        .containerSize = bits,
        .channelMask = obt->nchannels == 2 ?
            SL_SPEAKER_FRONT_LEFT | SL_SPEAKER_FRONT_RIGHT :
            SL_SPEAKER_FRONT_CENTER,
        .endianness = SL_BYTEORDER_LITTLEENDIAN,
    };
}

/* ---- buffer queues ------------------------------------------------------- */

static void sles_queue_init(SlesQueue *q, SlesState *s, uint32_t count,
                            size_t bytes)
{
    q->s = s;
    q->buffer_count = count;
    q->buffer_bytes = bytes;
    q->bufs = g_malloc0(count * bytes);
    qemu_mutex_init(&q->lock);
}

static void sles_queue_fini(SlesQueue *q)
{
    if (q->obj) {
        /* returns once no callback runs any more */
        (*q->obj)->Destroy(q->obj);
        q->obj = NULL;
    }
    qemu_mutex_destroy(&q->lock);
    g_free(q->bufs);
    q->bufs = NULL;
}

static uint8_t *sles_queue_buffer(SlesQueue *q, uint32_t index)
{
    return q->bufs + index * q->buffer_bytes;
}

/* Stops callbacks from touching the ring, and forgets the queued buffers */
static void sles_queue_stop(SlesQueue *q)
{
    qemu_mutex_lock(&q->lock);
    q->running = false;
    qemu_mutex_unlock(&q->lock);
    (*q->queue)->Clear(q->queue);
}

/* Enqueues every buffer (filled by the caller) and lets callbacks run */
static void sles_queue_start(SlesQueue *q)
{
    uint32_t i;

    qemu_mutex_lock(&q->lock);
    q->running = true;
    q->next = 0;
    qemu_mutex_unlock(&q->lock);
    for (i = 0; i < q->buffer_count; i++) {
        (*q->queue)->Enqueue(q->queue, sles_queue_buffer(q, i),
                             q->buffer_bytes);
    }
}

/* Trace what the callbacks counted since the last look */
static void sles_trace_counters(SlesState *s)
{
    uint32_t underruns = qatomic_read(&s->underruns);
    uint32_t overruns = qatomic_read(&s->overruns);

    if (underruns != s->traced_underruns) {
        trace_tabvm_opensles_underruns(underruns - s->traced_underruns,
                                       underruns);
        s->traced_underruns = underruns;
    }
    if (overruns != s->traced_overruns) {
        trace_tabvm_opensles_overruns(overruns - s->traced_overruns,
                                      overruns);
        s->traced_overruns = overruns;
    }
}

/* ---- playback ----------------------------------------------------------- */

/*
 * Under the lock: fills the next buffer from the ring and enqueues it if
 * the ring holds a whole buffer, or anything when draining. Enqueueing
 * under the lock keeps the buffers in order between the two threads.
 */
static bool sles_refill_locked(SlesVoiceOut *v)
{
    HWVoiceOut *hw = &v->hw;
    SlesQueue *q = &v->q;
    size_t done = 0;
    uint8_t *buf;

    if (!q->running || q->queued == q->buffer_count || !hw->pending_emul ||
        (hw->pending_emul < q->buffer_bytes && !v->draining)) {
        return false;
    }
    buf = sles_queue_buffer(q, q->next);
    while (hw->pending_emul && done < q->buffer_bytes) {
        size_t start = audio_ring_posb(hw->pos_emul, hw->pending_emul,
                                       hw->size_emul);
        size_t len = MIN(MIN(hw->pending_emul, q->buffer_bytes - done),
                         hw->size_emul - start);

        memcpy(buf + done, hw->buf_emul + start, len);
        hw->pending_emul -= len;
        done += len;
    }
    if (done < q->buffer_bytes) {               /* the end of the stream */
        audio_pcm_info_clear_buf(&hw->info, buf + done,
                                 (q->buffer_bytes - done) /
                                 hw->info.bytes_per_frame);
    }
    if ((*q->queue)->Enqueue(q->queue, buf, q->buffer_bytes) !=
        SL_RESULT_SUCCESS) {
        return false;
    }
    q->next = (q->next + 1) % q->buffer_count;
    q->queued++;
    return true;
}

/* OpenSL ES thread: a buffer was played; queue the next one if it is there */
static void sles_play_callback(SLAndroidSimpleBufferQueueItf queue,
                               void *opaque)
{
    SlesVoiceOut *v = opaque;
    SlesQueue *q = &v->q;

    qemu_mutex_lock(&q->lock);
    if (q->queued) {
        q->queued--;
    }
    qatomic_inc(&q->s->buffers);
    if (!sles_refill_locked(v) && q->running && !v->draining &&
        q->queued == 0) {
        /* QEMU did not keep up: OpenSL ES plays silence until it does */
        qatomic_inc(&q->s->underruns);
    }
    qemu_mutex_unlock(&q->lock);
}

/*
 * QEMU's thread, under the lock, after it wrote to the ring: queue what is
 * ready. Returns true when the player is to start: a stream starts playing
 * once every buffer is queued (or, when it stops before that, once all it
 * had is queued), so that each refill has a whole buffer's time to come.
 * Started on its first buffer alone, the second came exactly when the
 * first had played (QEMU's audio timer fills the ring at the rate the
 * player empties it): an underrun at almost every start.
 */
static bool sles_kick_locked(SlesVoiceOut *v)
{
    SlesQueue *q = &v->q;

    while (sles_refill_locked(v)) {
        /* one buffer at a time */
    }
    if (v->playing || !q->running || !q->queued ||
        (q->queued < q->buffer_count && !v->draining)) {
        return false;
    }
    v->playing = true;
    return true;
}

/* QEMU's thread, without the lock: start the primed player */
static void sles_start(SlesVoiceOut *v)
{
    trace_tabvm_opensles_play(v->q.queued);
    (*v->play)->SetPlayState(v->play, SL_PLAYSTATE_PLAYING);
}

/* QEMU's side of the emulated ring, under the voice's lock */
static size_t sles_buffer_get_free(HWVoiceOut *hw)
{
    QEMU_LOCK_GUARD(&container_of(hw, SlesVoiceOut, hw)->q.lock);
    return audio_generic_buffer_get_free(hw);
}

static void *sles_get_buffer_out(HWVoiceOut *hw, size_t *size)
{
    QEMU_LOCK_GUARD(&container_of(hw, SlesVoiceOut, hw)->q.lock);
    return audio_generic_get_buffer_out(hw, size);
}

static size_t sles_put_buffer_out(HWVoiceOut *hw, void *buf, size_t size)
{
    SlesVoiceOut *v = container_of(hw, SlesVoiceOut, hw);
    bool start;

    qemu_mutex_lock(&v->q.lock);
    size = audio_generic_put_buffer_out(hw, buf, size);
    start = sles_kick_locked(v);
    qemu_mutex_unlock(&v->q.lock);
    if (start) {
        sles_start(v);
    }
    return size;
}

/* QEMU's thread: the drain time is over; stop unless enabled again */
static void sles_drained(void *opaque)
{
    SlesVoiceOut *v = opaque;
    SlesQueue *q = &v->q;
    bool stop;

    qemu_mutex_lock(&q->lock);
    stop = v->draining;
    if (stop) {
        q->running = false;
        q->queued = 0;
        v->playing = false;
    }
    qemu_mutex_unlock(&q->lock);
    if (stop) {
        (*v->play)->SetPlayState(v->play, SL_PLAYSTATE_STOPPED);
        (*q->queue)->Clear(q->queue);
    }
}

static int sles_init_out(HWVoiceOut *hw, struct audsettings *as,
                         void *drv_opaque)
{
    SlesVoiceOut *v = container_of(hw, SlesVoiceOut, hw);
    SlesState *s = drv_opaque;
    SlesPdo *pdo = s->dev->u.opensles.out;
    struct audsettings obt;
    SLDataFormat_PCM pcm;
    SLDataLocator_AndroidSimpleBufferQueue loc_queue = {
        .locatorType = SL_DATALOCATOR_ANDROIDSIMPLEBUFFERQUEUE,
    };
    SLDataLocator_OutputMix loc_mix = {
        .locatorType = SL_DATALOCATOR_OUTPUTMIX,
        .outputMix = s->mix_obj,
    };
    SLDataSource source = { .pLocator = &loc_queue, .pFormat = &pcm };
    SLDataSink sink = { .pLocator = &loc_mix };
    const SLInterfaceID ids[] = { s->api.iid_buffer_queue, s->api.iid_volume };
    const SLboolean req[] = { SL_BOOLEAN_TRUE, SL_BOOLEAN_TRUE };
    uint32_t count = pdo->has_buffer_count ? pdo->buffer_count
                                           : SLES_OUT_BUFFERS;
    int frames;
    Error *err = NULL;

    sles_settings(as, &obt);
    audio_pcm_init_info(&hw->info, &obt);
    frames = audio_buffer_frames(
        qapi_AudiodevOpenslesPerDirectionOptions_base(pdo),
        &obt, SLES_OUT_BUFFER_US);
    pcm = sles_pcm_format(&obt);
    loc_queue.numBuffers = count;
    sles_queue_init(&v->q, s, count, frames * hw->info.bytes_per_frame);
    hw->samples = count * frames;

    if (!sles_ok((*s->engine)->CreateAudioPlayer(s->engine, &v->q.obj, &source,
                                                 &sink, ARRAY_SIZE(ids), ids,
                                                 req),
                 "CreateAudioPlayer", &err) ||
        !sles_ok((*v->q.obj)->Realize(v->q.obj, SL_BOOLEAN_FALSE),
                 "Realize (player)", &err) ||
        !sles_ok((*v->q.obj)->GetInterface(v->q.obj, s->api.iid_play,
                                           &v->play), "GetInterface (play)",
                 &err) ||
        !sles_ok((*v->q.obj)->GetInterface(v->q.obj, s->api.iid_buffer_queue,
                                           &v->q.queue),
                 "GetInterface (buffer queue)", &err) ||
        !sles_ok((*v->q.obj)->GetInterface(v->q.obj, s->api.iid_volume,
                                           &v->volume),
                 "GetInterface (volume)", &err) ||
        !sles_ok((*v->q.queue)->RegisterCallback(v->q.queue,
                                                 sles_play_callback, v),
                 "RegisterCallback (player)", &err)) {
        error_report_err(err);
        sles_queue_fini(&v->q);
        return -1;
    }
    v->drain_timer = timer_new_ms(QEMU_CLOCK_REALTIME, sles_drained, v);
    trace_tabvm_opensles_init("playback", obt.freq, obt.nchannels,
                         hw->info.bits, count, v->q.buffer_bytes);
    return 0;
}

static void sles_fini_out(HWVoiceOut *hw)
{
    SlesVoiceOut *v = container_of(hw, SlesVoiceOut, hw);

    timer_free(v->drain_timer);
    v->drain_timer = NULL;
    if (v->q.obj) {
        (*v->play)->SetPlayState(v->play, SL_PLAYSTATE_STOPPED);
    }
    sles_queue_fini(&v->q);
}

static void sles_enable_out(HWVoiceOut *hw, bool enable)
{
    SlesVoiceOut *v = container_of(hw, SlesVoiceOut, hw);
    SlesQueue *q = &v->q;
    int64_t drain_ms;
    bool start;

    trace_tabvm_opensles_enable("playback", enable);
    qemu_mutex_lock(&q->lock);
    if (enable) {
        /* buffers are queued as QEMU writes them; all queued, it plays */
        timer_del(v->drain_timer);
        v->draining = false;
        q->running = true;
        start = sles_kick_locked(v);
        qemu_mutex_unlock(&q->lock);
        if (start) {
            sles_start(v);
        }
        return;
    }
    /* let what is in the ring and the queue play out, as hardware would */
    v->draining = true;
    start = sles_kick_locked(v);
    drain_ms = (int64_t)(q->queued + 1) * q->buffer_bytes * 1000 /
               (hw->info.freq * hw->info.bytes_per_frame) + 20;
    qemu_mutex_unlock(&q->lock);
    if (start) {
        sles_start(v);
    }
    timer_mod(v->drain_timer,
              qemu_clock_get_ms(QEMU_CLOCK_REALTIME) + drain_ms);
}

static void sles_volume_out(HWVoiceOut *hw, Volume *vol)
{
    SlesVoiceOut *v = container_of(hw, SlesVoiceOut, hw);
    int level = vol->channels ? vol->vol[0] : 255;
    SLmillibel mb;

    if (vol->mute || level == 0) {
        mb = SL_MILLIBEL_MIN;
    } else {
        /* QEMU's 0..255 is linear in amplitude */
        mb = (SLmillibel)lrint(2000.0 * log10(level / 255.0));
    }
    (*v->volume)->SetMute(v->volume, vol->mute);
    (*v->volume)->SetVolumeLevel(v->volume, mb);
    trace_tabvm_opensles_volume(vol->mute, mb);
}

static void sles_run_buffer_out(HWVoiceOut *hw)
{
    SlesVoiceOut *v = container_of(hw, SlesVoiceOut, hw);

    sles_trace_counters(v->q.s);
}

/* ---- capture ------------------------------------------------------------ */

/* OpenSL ES thread: a buffer was recorded; move it into the ring, requeue */
static void sles_record_callback(SLAndroidSimpleBufferQueueItf queue,
                                 void *opaque)
{
    SlesVoiceIn *v = opaque;
    HWVoiceIn *hw = &v->hw;
    SlesQueue *q = &v->q;
    size_t done = 0;
    uint8_t *buf;

    qemu_mutex_lock(&q->lock);
    if (!q->running) {
        qemu_mutex_unlock(&q->lock);
        return;
    }
    buf = sles_queue_buffer(q, q->next);
    q->next = (q->next + 1) % q->buffer_count;
    while (hw->pending_emul < hw->size_emul && done < q->buffer_bytes) {
        size_t len = MIN(MIN(q->buffer_bytes - done,
                             hw->size_emul - hw->pos_emul),
                         hw->size_emul - hw->pending_emul);

        memcpy(hw->buf_emul + hw->pos_emul, buf + done, len);
        hw->pending_emul += len;
        hw->pos_emul = (hw->pos_emul + len) % hw->size_emul;
        done += len;
    }
    qemu_mutex_unlock(&q->lock);

    if (done < q->buffer_bytes) {
        qatomic_inc(&q->s->overruns);       /* the rest is lost */
    }
    qatomic_inc(&q->s->buffers);
    (*queue)->Enqueue(queue, buf, q->buffer_bytes);
}

/* QEMU's side of the emulated ring, under the voice's lock */
static size_t sles_read(HWVoiceIn *hw, void *buf, size_t size)
{
    QEMU_LOCK_GUARD(&container_of(hw, SlesVoiceIn, hw)->q.lock);
    return audio_generic_read(hw, buf, size);
}

static void *sles_get_buffer_in(HWVoiceIn *hw, size_t *size)
{
    QEMU_LOCK_GUARD(&container_of(hw, SlesVoiceIn, hw)->q.lock);
    return audio_generic_get_buffer_in(hw, size);
}

static void sles_put_buffer_in(HWVoiceIn *hw, void *buf, size_t size)
{
    QEMU_LOCK_GUARD(&container_of(hw, SlesVoiceIn, hw)->q.lock);
    audio_generic_put_buffer_in(hw, buf, size);
}

static int sles_init_in(HWVoiceIn *hw, struct audsettings *as,
                        void *drv_opaque)
{
    SlesVoiceIn *v = container_of(hw, SlesVoiceIn, hw);
    SlesState *s = drv_opaque;
    SlesPdo *pdo = s->dev->u.opensles.in;
    struct audsettings obt;
    SLDataFormat_PCM pcm;
    SLDataLocator_IODevice loc_dev = {
        .locatorType = SL_DATALOCATOR_IODEVICE,
        .deviceType = SL_IODEVICE_AUDIOINPUT,
        .deviceID = SL_DEFAULTDEVICEID_AUDIOINPUT,
    };
    SLDataLocator_AndroidSimpleBufferQueue loc_queue = {
        .locatorType = SL_DATALOCATOR_ANDROIDSIMPLEBUFFERQUEUE,
    };
    SLDataSource source = { .pLocator = &loc_dev };
    SLDataSink sink = { .pLocator = &loc_queue, .pFormat = &pcm };
    const SLInterfaceID ids[] = { s->api.iid_buffer_queue };
    const SLboolean req[] = { SL_BOOLEAN_TRUE };
    uint32_t count = pdo->has_buffer_count ? pdo->buffer_count
                                           : SLES_IN_BUFFERS;
    int frames;
    Error *err = NULL;

    sles_settings(as, &obt);
    audio_pcm_init_info(&hw->info, &obt);
    frames = audio_buffer_frames(
        qapi_AudiodevOpenslesPerDirectionOptions_base(pdo),
        &obt, SLES_IN_BUFFER_US);
    pcm = sles_pcm_format(&obt);
    loc_queue.numBuffers = count;
    sles_queue_init(&v->q, s, count, frames * hw->info.bytes_per_frame);
    hw->samples = count * frames;
    hw->size_emul = hw->samples * hw->info.bytes_per_frame;
    hw->buf_emul = g_malloc(hw->size_emul);
    hw->pos_emul = hw->pending_emul = 0;

    if (!sles_ok((*s->engine)->CreateAudioRecorder(s->engine, &v->q.obj,
                                                   &source, &sink,
                                                   ARRAY_SIZE(ids), ids, req),
                 "CreateAudioRecorder", &err) ||
        !sles_ok((*v->q.obj)->Realize(v->q.obj, SL_BOOLEAN_FALSE),
                 "Realize (recorder)", &err) ||
        !sles_ok((*v->q.obj)->GetInterface(v->q.obj, s->api.iid_record,
                                           &v->record),
                 "GetInterface (record)", &err) ||
        !sles_ok((*v->q.obj)->GetInterface(v->q.obj, s->api.iid_buffer_queue,
                                           &v->q.queue),
                 "GetInterface (buffer queue)", &err) ||
        !sles_ok((*v->q.queue)->RegisterCallback(v->q.queue,
                                                 sles_record_callback, v),
                 "RegisterCallback (recorder)", &err)) {
        error_report_err(err);
        sles_queue_fini(&v->q);
        g_free(hw->buf_emul);
        hw->buf_emul = NULL;
        return -1;
    }
    trace_tabvm_opensles_init("capture", obt.freq, obt.nchannels,
                         hw->info.bits, count, v->q.buffer_bytes);
    return 0;
}

static void sles_fini_in(HWVoiceIn *hw)
{
    SlesVoiceIn *v = container_of(hw, SlesVoiceIn, hw);

    if (v->q.obj) {
        (*v->record)->SetRecordState(v->record, SL_RECORDSTATE_STOPPED);
    }
    sles_queue_fini(&v->q);
}

static void sles_enable_in(HWVoiceIn *hw, bool enable)
{
    SlesVoiceIn *v = container_of(hw, SlesVoiceIn, hw);

    trace_tabvm_opensles_enable("capture", enable);
    if (enable) {
        sles_queue_start(&v->q);
        (*v->record)->SetRecordState(v->record, SL_RECORDSTATE_RECORDING);
    } else {
        (*v->record)->SetRecordState(v->record, SL_RECORDSTATE_STOPPED);
        sles_queue_stop(&v->q);
    }
}

static void sles_run_buffer_in(HWVoiceIn *hw)
{
    SlesVoiceIn *v = container_of(hw, SlesVoiceIn, hw);

    sles_trace_counters(v->q.s);
}

/* ---- the driver ---------------------------------------------------------- */

static void sles_destroy(SlesState *s)
{
    if (s->stats) {
        object_unparent(s->stats);
    }
    if (s->mix_obj) {
        (*s->mix_obj)->Destroy(s->mix_obj);
    }
    if (s->engine_obj) {
        tabvm_sles_engine_put();
    }
    sles_unload(&s->api);
    g_free(s);
}

/* /backend/audiodev-ID: the callbacks' counters, for qom-get */
static void sles_add_stats(SlesState *s)
{
    g_autofree char *name = g_strdup_printf("audiodev-%s", s->dev->id);

    s->stats = object_new(TYPE_CONTAINER);
    object_property_add_uint32_ptr(s->stats, "underruns", &s->underruns,
                                   OBJ_PROP_FLAG_READ);
    object_property_add_uint32_ptr(s->stats, "overruns", &s->overruns,
                                   OBJ_PROP_FLAG_READ);
    object_property_add_uint32_ptr(s->stats, "buffers", &s->buffers,
                                   OBJ_PROP_FLAG_READ);
    object_property_add_child(object_get_container("backend"), name, s->stats);
    object_unref(s->stats);
}

static void *sles_audio_init(Audiodev *dev, Error **errp)
{
    SlesState *s = g_new0(SlesState, 1);
    SlesOptions *opts = &dev->u.opensles;
    const char *library = opts->library ?: "libOpenSLES.so";

    s->dev = dev;
    if (!sles_load(&s->api, library, errp)) {
        g_free(s);
        return NULL;
    }
    s->engine_obj = tabvm_sles_engine_get(s->api.create_engine, errp);
    if (!s->engine_obj ||
        !sles_ok((*s->engine_obj)->GetInterface(s->engine_obj,
                                                s->api.iid_engine,
                                                &s->engine),
                 "GetInterface (engine)", errp) ||
        !sles_ok((*s->engine)->CreateOutputMix(s->engine, &s->mix_obj, 0,
                                               NULL, NULL),
                 "CreateOutputMix", errp) ||
        !sles_ok((*s->mix_obj)->Realize(s->mix_obj, SL_BOOLEAN_FALSE),
                 "Realize (output mix)", errp)) {
        sles_destroy(s);
        return NULL;
    }
    sles_add_stats(s);
    return s;
}

static void sles_audio_fini(void *opaque)
{
    sles_destroy(opaque);
}

static struct audio_pcm_ops sles_pcm_ops = {
    .init_out = sles_init_out,
    .fini_out = sles_fini_out,
    /* through sles_get_buffer_out()/sles_put_buffer_out(), which lock */
    .write = audio_generic_write,
    .buffer_get_free = sles_buffer_get_free,
    .get_buffer_out = sles_get_buffer_out,
    .put_buffer_out = sles_put_buffer_out,
    .run_buffer_out = sles_run_buffer_out,
    .enable_out = sles_enable_out,
    .volume_out = sles_volume_out,
    .init_in = sles_init_in,
    .fini_in = sles_fini_in,
    .read = sles_read,
    .get_buffer_in = sles_get_buffer_in,
    .put_buffer_in = sles_put_buffer_in,
    .run_buffer_in = sles_run_buffer_in,
    .enable_in = sles_enable_in,
};

static struct audio_driver sles_audio_driver = {
    .name = "opensles",
    .descr = "OpenSL ES playback and capture, 2 x 20 ms buffers",
    .init = sles_audio_init,
    .fini = sles_audio_fini,
    .pcm_ops = &sles_pcm_ops,
    .max_voices_out = 1,
    .max_voices_in = 1,
    .voice_size_out = sizeof(SlesVoiceOut),
    .voice_size_in = sizeof(SlesVoiceIn),
};

static void register_audio_tabvm_opensles(void)
{
    audio_driver_register(&sles_audio_driver);
}
type_init(register_audio_tabvm_opensles);
