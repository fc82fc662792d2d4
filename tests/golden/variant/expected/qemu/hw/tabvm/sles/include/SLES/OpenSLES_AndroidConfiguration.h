/*
 * SPDX-License-Identifier: MIT
 *
 * OpenSLES_AndroidConfiguration.h - keys and values of Android's OpenSL ES
 * configuration interface, for the tabvm OpenSL ES test stand-in (see
 * opensles/README.md).
 *
 * Written for tabvm from the Android NDK's documentation (The Android Open
 * Source Project); not a copy of the AOSP header.  The stand-in does not
 * implement SL_IID_ANDROIDCONFIGURATION: these definitions are here so that
 * code which names them builds against the stand-in's headers too.
 */

#ifndef OPENSL_ES_ANDROIDCONFIGURATION_H_
#define OPENSL_ES_ANDROIDCONFIGURATION_H_

#ifdef __cplusplus
extern "C" {
#endif

/* Audio recorder: the recording preset (an SLuint32). */
#define SL_ANDROID_KEY_RECORDING_PRESET \
    ((const SLchar *) "androidRecordingPreset")

#define SL_ANDROID_RECORDING_PRESET_NONE                ((SLuint32) 0x00000000)
#define SL_ANDROID_RECORDING_PRESET_GENERIC             ((SLuint32) 0x00000001)
#define SL_ANDROID_RECORDING_PRESET_CAMCORDER           ((SLuint32) 0x00000002)
#define SL_ANDROID_RECORDING_PRESET_VOICE_RECOGNITION   ((SLuint32) 0x00000003)
#define SL_ANDROID_RECORDING_PRESET_VOICE_COMMUNICATION ((SLuint32) 0x00000004)

/* Audio player: the stream type (an SLint32, as android.media.AudioManager). */
#define SL_ANDROID_KEY_STREAM_TYPE \
    ((const SLchar *) "androidPlaybackStreamType")

#define SL_ANDROID_STREAM_VOICE        ((SLint32) 0x00000000)
#define SL_ANDROID_STREAM_SYSTEM       ((SLint32) 0x00000001)
#define SL_ANDROID_STREAM_RING         ((SLint32) 0x00000002)
#define SL_ANDROID_STREAM_MEDIA        ((SLint32) 0x00000003)
#define SL_ANDROID_STREAM_ALARM        ((SLint32) 0x00000004)
#define SL_ANDROID_STREAM_NOTIFICATION ((SLint32) 0x00000005)

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* OPENSL_ES_ANDROIDCONFIGURATION_H_ */
