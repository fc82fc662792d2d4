/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Per-direction options of the generated OpenSL ES drivers
 *
 * Generated from tests/golden/variant/specs/speaker.yaml
 * by the tabvm generator -- do not edit. Regenerate with: tabvm gen
 */
#ifdef CONFIG_AUDIO_SPEAKER
    case AUDIODEV_DRIVER_SPEAKER:
        return qapi_AudiodevSpeakerPerDirectionOptions_base(
            dev->u.speaker.TYPE);
#endif
