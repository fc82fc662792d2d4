HXCOMM SPDX-License-Identifier: GPL-2.0-or-later
HXCOMM -audiodev documentation of the generated OpenSL ES drivers
HXCOMM Generated from tests/golden/variant/specs/speaker.yaml
HXCOMM by the tabvm generator -- do not edit. Regenerate with: tabvm gen
``-audiodev speaker,id=id[,prop[=value][,...]]``
    Creates a backend using OpenSL ES, the native audio API of Android
    (Playback only, linked with libOpenSLES, 3 x 15 ms). Playback goes through an audio player fed by an
    Android simple buffer queue, capture through an audio recorder on the
    default audio input. Backend specific options are:

    ``in|out.buffer-count=count``
        Sets the number of buffers in the OpenSL ES buffer queue;
        ``in|out.buffer-length`` sets the length of one buffer.

