/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Per-direction options of the generated OpenSL ES drivers
 *
 * Generated from devspecs/opensles.yaml, devspecs/opensles_lowlat.yaml
 * by the tabvm generator -- do not edit. Regenerate with: tabvm gen
 */
#ifdef CONFIG_AUDIO_OPENSLES
    case AUDIODEV_DRIVER_OPENSLES:
        return qapi_AudiodevOpenslesPerDirectionOptions_base(
            dev->u.opensles.TYPE);
#endif
#ifdef CONFIG_AUDIO_OPENSLES_LOWLAT
    case AUDIODEV_DRIVER_OPENSLES_LOWLAT:
        return qapi_AudiodevOpenslesLowlatPerDirectionOptions_base(
            dev->u.opensles_lowlat.TYPE);
#endif
