"""Image-to-video frames encoded as MP4 in memory, checked by decoding the result back with PyAV."""

from __future__ import annotations

import io
import time
from fractions import Fraction

import av
import pytest
from PIL import Image

from lpnode.mp4 import encode_mp4, video_encoder

COLORS = [(230, 20, 20), (20, 230, 20), (20, 20, 230), (230, 230, 20), (20, 230, 230), (230, 20, 230)]


def png(color: tuple[int, int, int], size: tuple[int, int] = (64, 64)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="PNG")
    return out.getvalue()


def decode(data: bytes) -> tuple[av.VideoStream, list[av.VideoFrame], str]:
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
        return stream, frames, container.format.name


def test_frames_become_an_mp4_of_the_same_count_size_and_fps() -> None:
    started = time.monotonic()
    data = encode_mp4([png(c) for c in COLORS * 2])
    assert time.monotonic() - started < 5
    stream, frames, container_format = decode(data)
    assert "mp4" in container_format
    assert stream.codec_context.name == ("h264" if video_encoder() == "libx264" else "mpeg4")
    assert stream.average_rate == 7
    assert len(frames) == 12
    assert {(f.width, f.height) for f in frames} == {(64, 64)}
    assert {f.format.name for f in frames} == {"yuv420p"}
    assert stream.duration is not None and stream.time_base is not None
    assert stream.duration * stream.time_base == Fraction(12, 7)


def test_frames_keep_their_order_and_colours() -> None:
    _, frames, _ = decode(encode_mp4([png(c) for c in COLORS]))
    for frame, color in zip(frames, COLORS, strict=True):
        pixel = frame.to_ndarray(format="rgb24")[32, 32].tolist()
        assert all(abs(got - want) < 30 for got, want in zip(pixel, color, strict=True)), (pixel, color)


def test_moov_comes_before_the_media_data() -> None:
    data = encode_mp4([png(c) for c in COLORS])
    assert 0 < data.find(b"moov") < data.find(b"mdat")


def test_libx264_is_used_when_available() -> None:
    assert video_encoder() == ("libx264" if "libx264" in av.codecs_available else "mpeg4")


def test_fps_is_respected() -> None:
    stream, frames, _ = decode(encode_mp4([png(c) for c in COLORS], fps=24))
    assert stream.average_rate == 24
    assert len(frames) == 6


def test_other_frames_are_resized_to_the_first_and_images_mix_with_bytes() -> None:
    frames_in: list[bytes | Image.Image] = [
        png(COLORS[0]),
        Image.new("RGB", (128, 96), COLORS[1]),
        png(COLORS[2], (32, 32)),
    ]
    _, frames, _ = decode(encode_mp4(frames_in))
    assert [(f.width, f.height) for f in frames] == [(64, 64)] * 3


def test_rgba_and_greyscale_frames_are_accepted() -> None:
    frames_in: list[bytes | Image.Image] = [Image.new("RGBA", (64, 64), (1, 2, 3, 4)), Image.new("L", (64, 64), 128)]
    _, frames, _ = decode(encode_mp4(frames_in))
    assert len(frames) == 2


@pytest.mark.parametrize(("size", "expected"), [((65, 33), (64, 32)), ((1, 1), (2, 2)), ((63, 64), (62, 64))])
def test_odd_sizes_become_even(size: tuple[int, int], expected: tuple[int, int]) -> None:
    _, frames, _ = decode(encode_mp4([png(COLORS[0], size), png(COLORS[1], size)]))
    assert [(f.width, f.height) for f in frames] == [expected] * 2


def test_no_frames_is_an_error() -> None:
    with pytest.raises(ValueError, match="no frames"):
        encode_mp4([])


def test_unreadable_frames_say_which_one() -> None:
    with pytest.raises(ValueError, match="frame 1 is not a readable image"):
        encode_mp4([png(COLORS[0]), b"not an image"])


def test_fps_below_one_is_an_error() -> None:
    with pytest.raises(ValueError, match="fps must be at least 1"):
        encode_mp4([png(COLORS[0])], fps=0)
