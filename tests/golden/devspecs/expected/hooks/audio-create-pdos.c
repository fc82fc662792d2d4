/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Per-direction options of the generated OpenSL ES drivers
 *
 * Generated from devspecs/opensles.yaml, devspecs/opensles_lowlat.yaml
 * by the tabvm generator -- do not edit. Regenerate with: tabvm gen
 */
#ifdef CONFIG_AUDIO_OPENSLES
        CASE(OPENSLES, opensles, Opensles);
#endif
#ifdef CONFIG_AUDIO_OPENSLES_LOWLAT
        CASE(OPENSLES_LOWLAT, opensles_lowlat, OpenslesLowlat);
#endif
