/*
 * SPDX-License-Identifier: MIT
 *
 * OpenSLES_Android.h - the Android extensions to OpenSL ES used by tabvm, for
 * the tabvm OpenSL ES test stand-in (see opensles/README.md).
 *
 * Written for tabvm from the Android NDK's documentation of its OpenSL ES
 * extensions (The Android Open Source Project); not a copy of the AOSP
 * header.  Names, values, layouts and the interface ID are Android's, so code
 * written against these declarations builds unchanged with the NDK's
 * <SLES/OpenSLES_Android.h>.  The base API is the Khronos Group's OpenSL ES
 * 1.0.1; see the licence note in OpenSLES.h.
 *
 * Left out: the Android effect, metadata, Android buffer queue (MPEG-2 TS
 * streaming), echo canceller, gain control and noise suppression interfaces,
 * and the Android configuration interface, whose NDK form needs <jni.h>.
 */

#ifndef OPENSL_ES_ANDROID_H_
#define OPENSL_ES_ANDROID_H_

#include "OpenSLES.h"
#include "OpenSLES_AndroidConfiguration.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef sl_int64_t  SLAint64;
typedef sl_uint64_t SLAuint64;

/* ------------------------------------------------------------------------ */
/* Extended PCM data format (API level 21): adds the sample representation  */
/* ------------------------------------------------------------------------ */

#define SL_ANDROID_DATAFORMAT_PCM_EX ((SLuint32) 0x00000004)

#define SL_ANDROID_PCM_REPRESENTATION_SIGNED_INT   ((SLuint32) 0x00000001)
#define SL_ANDROID_PCM_REPRESENTATION_UNSIGNED_INT ((SLuint32) 0x00000002)
#define SL_ANDROID_PCM_REPRESENTATION_FLOAT        ((SLuint32) 0x00000003)

/* SLDataFormat_PCM plus a representation; sampleRate is in milliHertz. */
typedef struct SLAndroidDataFormat_PCM_EX_ {
    SLuint32 formatType;                /* SL_ANDROID_DATAFORMAT_PCM_EX */
    SLuint32 numChannels;
    SLuint32 sampleRate;
    SLuint32 bitsPerSample;
    SLuint32 containerSize;
    SLuint32 channelMask;
    SLuint32 endianness;
    SLuint32 representation;            /* SL_ANDROID_PCM_REPRESENTATION_* */
} SLAndroidDataFormat_PCM_EX;

/* ------------------------------------------------------------------------ */
/* Interface IDs                                                            */
/* ------------------------------------------------------------------------ */

extern SL_API const SLInterfaceID SL_IID_ANDROIDEFFECT;
extern SL_API const SLInterfaceID SL_IID_ANDROIDEFFECTSEND;
extern SL_API const SLInterfaceID SL_IID_ANDROIDEFFECTCAPABILITIES;
extern SL_API const SLInterfaceID SL_IID_ANDROIDCONFIGURATION;
extern SL_API const SLInterfaceID SL_IID_ANDROIDSIMPLEBUFFERQUEUE;

/* ------------------------------------------------------------------------ */
/* SLAndroidSimpleBufferQueueItf                                            */
/* ------------------------------------------------------------------------ */

struct SLAndroidSimpleBufferQueueItf_;
typedef const struct SLAndroidSimpleBufferQueueItf_ * const
    *SLAndroidSimpleBufferQueueItf;

typedef void (SLAPIENTRY *slAndroidSimpleBufferQueueCallback)(
    SLAndroidSimpleBufferQueueItf caller,
    void *pContext);

typedef struct SLAndroidSimpleBufferQueueState_ {
    SLuint32 count;                     /* queued, incl. the current one */
    SLuint32 index;                     /* buffers completed */
} SLAndroidSimpleBufferQueueState;

struct SLAndroidSimpleBufferQueueItf_ {
    SLresult (*Enqueue)(SLAndroidSimpleBufferQueueItf self,
                        const void *pBuffer, SLuint32 size);
    SLresult (*Clear)(SLAndroidSimpleBufferQueueItf self);
    SLresult (*GetState)(SLAndroidSimpleBufferQueueItf self,
                         SLAndroidSimpleBufferQueueState *pState);
    SLresult (*RegisterCallback)(SLAndroidSimpleBufferQueueItf self,
                                 slAndroidSimpleBufferQueueCallback callback,
                                 void *pContext);
};

/* ------------------------------------------------------------------------ */
/* Android data locators                                                    */
/* ------------------------------------------------------------------------ */

#define SL_DATALOCATOR_ANDROIDFD                ((SLuint32) 0x800007BC)
#define SL_DATALOCATOR_ANDROIDSIMPLEBUFFERQUEUE ((SLuint32) 0x800007BD)
#define SL_DATALOCATOR_ANDROIDBUFFERQUEUE       ((SLuint32) 0x800007BE)

#define SL_DATALOCATOR_ANDROIDFD_USE_FILE_SIZE ((SLAint64) 0xFFFFFFFFFFFFFFFFll)

typedef struct SLDataLocator_AndroidFD_ {
    SLuint32 locatorType;               /* SL_DATALOCATOR_ANDROIDFD */
    SLint32 fd;
    SLAint64 offset;
    SLAint64 length;
} SLDataLocator_AndroidFD;

typedef struct SLDataLocator_AndroidSimpleBufferQueue {
    SLuint32 locatorType;   /* SL_DATALOCATOR_ANDROIDSIMPLEBUFFERQUEUE */
    SLuint32 numBuffers;
} SLDataLocator_AndroidSimpleBufferQueue;

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* OPENSL_ES_ANDROID_H_ */
