HXCOMM SPDX-License-Identifier: GPL-2.0-or-later
HXCOMM -audiodev documentation of the generated OpenSL ES drivers
HXCOMM Generated from devspecs/opensles.yaml, devspecs/opensles_lowlat.yaml
HXCOMM by the tabvm generator -- do not edit. Regenerate with: tabvm gen
``-audiodev opensles,id=id[,prop[=value][,...]]``
    Creates a backend using OpenSL ES, the native audio API of Android
    (OpenSL ES playback and capture, 2 x 20 ms buffers). Playback goes through an audio player fed by an
    Android simple buffer queue, capture through an audio recorder on the
    default audio input. Backend specific options are:

    ``in|out.buffer-count=count``
        Sets the number of buffers in the OpenSL ES buffer queue;
        ``in|out.buffer-length`` sets the length of one buffer.

    ``library=path``
        The OpenSL ES library to load (default ``libOpenSLES.so``).

``-audiodev opensles-lowlat,id=id[,prop[=value][,...]]``
    Creates a backend using OpenSL ES, the native audio API of Android
    (OpenSL ES playback and capture, 4 x 10 ms buffers). Playback goes through an audio player fed by an
    Android simple buffer queue, capture through an audio recorder on the
    default audio input. Backend specific options are:

    ``in|out.buffer-count=count``
        Sets the number of buffers in the OpenSL ES buffer queue;
        ``in|out.buffer-length`` sets the length of one buffer.

    ``library=path``
        The OpenSL ES library to load (default ``libOpenSLES.so``).

