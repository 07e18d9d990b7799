"""The WHIP segmenter: synthetic frames in, MPEG-TS segments out, each decodable by PyAV on its own."""

from __future__ import annotations

import io
import itertools

import av
import numpy as np
import pytest

from lpnode.gateway.live.ts_segmenter import TIME_BASE, TsSegmenter

FPS = 30
TICKS = 90000 // FPS


def video_frame(index: int, width: int = 64, height: int = 48) -> av.VideoFrame:
    picture = np.zeros((height, width, 3), np.uint8)
    picture[:, : (index % width) + 1] = 200  # moving edge, so frames differ
    return av.VideoFrame.from_ndarray(picture, format="rgb24")


def audio_frame(samples: int = 960) -> av.AudioFrame:
    tone = (np.sin(np.arange(samples * 2) / 10) * 8000).astype(np.int16).reshape(1, -1)
    frame = av.AudioFrame.from_ndarray(tone, format="s16", layout="stereo")
    frame.sample_rate = 48000
    return frame


def segment(frames: int, *, audio: bool, start_pts: int = 0, **kwargs: float) -> list[bytes]:
    segmenter = TsSegmenter(audio=audio, **kwargs)  # type: ignore[arg-type]
    out: list[bytes] = []
    audio_pts = start_pts
    for index in range(frames):
        pts = start_pts + index * TICKS
        out += segmenter.push_video(video_frame(index), pts)
        while audio and audio_pts <= pts:
            out += segmenter.push_audio(audio_frame(), audio_pts)
            audio_pts += 960 * 90000 // 48000
    out += segmenter.close()
    return out


def decode(data: bytes) -> tuple[list[tuple[int, bool]], list[int]]:
    """(pts, keyframe) of each decoded video frame, and the pts (1/90000) of each decoded audio frame."""
    video: list[tuple[int, bool]] = []
    audio: list[int] = []
    with av.open(io.BytesIO(data), "r", format="mpegts") as container:
        assert container.streams.video[0].codec_context.name == "h264"
        for frame in container.decode(*container.streams):
            assert frame.pts is not None and frame.time_base == TIME_BASE
            if isinstance(frame, av.VideoFrame):
                video.append((frame.pts, frame.key_frame))
            else:
                audio.append(frame.pts)
    return video, audio


def test_segments_start_at_an_idr_last_a_second_and_keep_pts_continuous() -> None:
    segments = segment(4 * FPS + 10, audio=False)

    assert len(segments) == 5
    expected_pts = 0
    for number, data in enumerate(segments):
        video, audio = decode(data)
        assert audio == []
        assert video[0] == (expected_pts, True), f"segment {number} does not start with an IDR"
        assert [pts for pts, _ in video] == list(range(expected_pts, expected_pts + len(video) * TICKS, TICKS))
        if number < len(segments) - 1:
            assert len(video) * TICKS >= 90000, f"segment {number} is shorter than a second"
        expected_pts += len(video) * TICKS
    assert expected_pts == (4 * FPS + 10) * TICKS


def test_audio_rides_along_in_aac_without_gaps() -> None:
    start = 5 * 90000  # timestamps need not start at zero
    segments = segment(3 * FPS, audio=True, start_pts=start)

    assert len(segments) == 3
    every_audio: list[int] = []
    for data in segments:
        video, audio = decode(data)
        assert video[0][1] and audio
        with av.open(io.BytesIO(data), "r", format="mpegts") as container:
            assert container.streams.audio[0].codec_context.name == "aac"
        every_audio += audio
    assert min(every_audio) >= start
    steps = {b - a for a, b in itertools.pairwise(every_audio)}
    assert steps == {1024 * 90000 // 48000}, "AAC frames must follow each other without gaps"


def test_keyframes_follow_the_interval_and_segments_the_minimum() -> None:
    segments = segment(3 * FPS, audio=False, min_segment=2.0, keyframe_interval=0.5)

    assert len(segments) == 2
    video, _ = decode(segments[0])
    assert len(video) == 2 * FPS
    assert [pts for pts, key in video if key] == [0, 45000, 90000, 135000]


def test_size_changes_are_scaled_and_stale_frames_dropped() -> None:
    segmenter = TsSegmenter(audio=False)
    out: list[bytes] = []
    out += segmenter.push_video(video_frame(0, 65, 49), 0)  # odd sizes are rounded down to even
    out += segmenter.push_video(video_frame(1, 32, 24), TICKS)
    out += segmenter.push_video(video_frame(2), TICKS)  # same pts again: dropped
    out += segmenter.close()

    assert segmenter.size == (64, 48) and segmenter.frames_dropped == 1
    assert len(out) == 1
    with av.open(io.BytesIO(out[0]), "r", format="mpegts") as container:
        frames = list(container.decode(video=0))
    assert [(f.width, f.height) for f in frames] == [(64, 48), (64, 48)]


def test_a_closed_segmenter_refuses_frames() -> None:
    segmenter = TsSegmenter(audio=False)
    assert segmenter.close() == []
    with pytest.raises(RuntimeError):
        segmenter.push_video(video_frame(0), 0)
