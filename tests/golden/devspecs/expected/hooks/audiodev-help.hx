HXCOMM SPDX-License-Identifier: GPL-2.0-or-later
HXCOMM -audiodev help of the generated OpenSL ES drivers
HXCOMM Generated from devspecs/opensles.yaml, devspecs/opensles_lowlat.yaml
HXCOMM by the tabvm generator -- do not edit. Regenerate with: tabvm gen
#ifdef CONFIG_AUDIO_OPENSLES
    "-audiodev opensles,id=id[,prop[=value][,...]]\n"
    "                in|out.buffer-count= number of OpenSL ES buffers\n"
    "                library= OpenSL ES library to load\n"
#endif
#ifdef CONFIG_AUDIO_OPENSLES_LOWLAT
    "-audiodev opensles-lowlat,id=id[,prop[=value][,...]]\n"
    "                in|out.buffer-count= number of OpenSL ES buffers\n"
    "                library= OpenSL ES library to load\n"
#endif
