HXCOMM SPDX-License-Identifier: GPL-2.0-or-later
HXCOMM -audiodev help of the generated OpenSL ES drivers
HXCOMM Generated from tests/golden/variant/specs/speaker.yaml
HXCOMM by the tabvm generator -- do not edit. Regenerate with: tabvm gen
#ifdef CONFIG_AUDIO_SPEAKER
    "-audiodev speaker,id=id[,prop[=value][,...]]\n"
    "                in|out.buffer-count= number of OpenSL ES buffers\n"
#endif
