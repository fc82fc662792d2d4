"""glue.desktop: when a guest's screen counts as a settled desktop, with a
stand-in for QEMU's screendump."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from glue.desktop import DesktopTimeout, ppm_pixels, uniform, wait_screen


def ppm(width: int, height: int, pixels: bytes) -> bytes:
    return b"P6\n%d %d\n255\n" % (width, height) + pixels


class Screens:
    """screendump writes the next of ``frames`` (the last one repeats)."""

    def __init__(self, frames: list[bytes]):
        self.frames = frames
        self.calls: list[str] = []

    def cmd(self, name: str, **args):
        assert name == "screendump"
        self.calls.append(args["format"])
        frame = self.frames[min(len(self.calls) - 1, len(self.frames) - 1)]
        if args["format"] == "png":
            frame = b"\x89PNG fake"
        Path(args["filename"]).write_bytes(frame)


BLACK = ppm(4, 2, bytes(24))
BLUE = ppm(4, 2, b"\x35\x64\x8f" * 8)
DESKTOP = ppm(4, 2, b"\x35\x64\x8f" * 6 + b"\xff\xff\xff" * 2)
OTHER = ppm(4, 2, b"\x35\x64\x8f" * 7 + b"\xff\xff\xff")


def test_ppm_pixels():
    assert ppm_pixels(DESKTOP) == (4, 2, b"\x35\x64\x8f" * 6 + b"\xff\xff\xff" * 2)
    with pytest.raises(ValueError):
        ppm_pixels(b"P5\n4 2\n255\n" + bytes(8))
    with pytest.raises(ValueError, match="4x2 PPM with 23 bytes"):
        ppm_pixels(ppm(4, 2, bytes(23)))
    # pixels that start with bytes which are whitespace in the header
    dark = b"\n\t " + bytes(21)
    assert ppm_pixels(ppm(4, 2, dark)) == (4, 2, dark)


def test_uniform():
    assert uniform(ppm_pixels(BLACK)[2]) and uniform(ppm_pixels(BLUE)[2])
    assert not uniform(ppm_pixels(DESKTOP)[2])


def test_settles_on_the_first_unchanged_non_blank_screen(tmp_path):
    vm = Screens([BLACK, BLACK, DESKTOP, OTHER, OTHER])
    shot = wait_screen(vm, tmp_path, time.monotonic() + 5, settle_s=0.01)
    assert shot.read_bytes() == b"\x89PNG fake"
    assert vm.calls == ["ppm"] * 5 + ["png"]      # black twice is not a desktop
    assert not (tmp_path / "settle.ppm").exists()


def test_a_screen_that_keeps_changing_or_stays_blank_times_out(tmp_path):
    frames = [ppm(4, 2, bytes([i % 256]) + bytes(23)) for i in range(1, 500)]
    with pytest.raises(DesktopTimeout):
        wait_screen(Screens(frames), tmp_path, time.monotonic() + 0.3, settle_s=0.01)
    with pytest.raises(DesktopTimeout):
        wait_screen(Screens([BLUE]), tmp_path, time.monotonic() + 0.3, settle_s=0.01)
