"""Raw frames in, complete MPEG-TS segments out: how WHIP ingest feeds a live stream.

:class:`TsSegmenter` encodes video frames to H.264 (libx264, ``superfast``/``zerolatency``, no B-frames, an
IDR forced every ``keyframe_interval`` seconds of PTS) and, when the stream has audio, audio frames to AAC,
and muxes them into MPEG-TS. A new segment starts only at an IDR once ``min_segment`` seconds of PTS have
passed since the current one started, so every segment begins with PAT/PMT and an IDR and decodes on its own
(the rule go-livepeer's WHIP segmenter follows). Timestamps are the caller's, in 1/90000, written unchanged
(``mpegts_copyts``) so PTS runs on across segments without a gap.

Video is always re-encoded: WebRTC hands over decoded frames whatever the browser sent (VP8 or H.264), and
re-encoding is what guarantees the keyframe cadence, the missing B-frames and a fixed picture size (a browser
lowers its resolution under congestion; later frames are scaled to the size of the first). AAC is used for
audio because every MPEG-TS demuxer reads it.

The class is synchronous and not thread-safe: call it from one thread (the WHIP session runs it in a worker
thread so encoding never holds the event loop).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from fractions import Fraction

import av
from av.audio.stream import AudioStream
from av.container import OutputContainer
from av.packet import Packet
from av.video.frame import PictureType
from av.video.stream import VideoStream

TIME_BASE = Fraction(1, 90000)
"""The time base of every timestamp the segmenter takes and writes."""
AUDIO_RATE = 48000
X264_OPTIONS = {"preset": "superfast", "tune": "zerolatency", "bf": "0", "forced-idr": "1"}


@dataclass
class _Segment:
    buffer: io.BytesIO
    container: OutputContainer
    video: VideoStream
    audio: AudioStream | None
    start_pts: int


class TsSegmenter:
    """Encodes frames and cuts the result into MPEG-TS segments.

    Each ``push_*`` call returns the segments it completed (usually none, one at each cut); :meth:`close`
    returns the last, partial one. Frames whose PTS does not move forward are dropped, as are audio
    frames before the first video frame (a segment must start with video).
    """

    def __init__(
        self,
        *,
        audio: bool,
        min_segment: float = 1.0,
        keyframe_interval: float = 1.0,
        frame_rate: int = 30,
    ) -> None:
        if min_segment <= 0 or keyframe_interval <= 0:
            raise ValueError("min_segment and keyframe_interval must be positive")
        self._with_audio = audio
        self._min_ticks = round(min_segment / TIME_BASE)
        self._keyframe_ticks = round(keyframe_interval / TIME_BASE)
        self._frame_rate = frame_rate
        # Encoders live on the streams of a template container that is never written to: its streams carry
        # the codec parameters (AAC's extradata) each segment's container copies.
        self._template = av.open(io.BytesIO(), "w", format="mpegts")
        self._video: VideoStream | None = None
        self._audio: AudioStream | None = None
        self._resampler: av.AudioResampler | None = None
        self._size: tuple[int, int] | None = None
        self._last_video_pts: int | None = None
        self._last_audio_pts: int | None = None
        self._last_idr_pts: int | None = None
        self._first_video_pts: int | None = None
        self._segment: _Segment | None = None
        self._closed = False
        self.segments_made = 0
        self.frames_dropped = 0

    @property
    def size(self) -> tuple[int, int] | None:
        """The encoded picture size (width, height), known after the first video frame."""
        return self._size

    def push_video(self, frame: av.VideoFrame, pts: int) -> list[bytes]:
        """Encode one video frame shown at ``pts`` (1/90000)."""
        if self._closed:
            raise RuntimeError("the segmenter is closed")
        if self._last_video_pts is not None and pts <= self._last_video_pts:
            self.frames_dropped += 1
            return []
        self._last_video_pts = pts
        if self._video is None:
            self._open_encoders(frame)
        assert self._video is not None and self._size is not None
        width, height = self._size
        picture = frame.reformat(width=width, height=height, format="yuv420p")
        picture.pts = pts
        picture.time_base = TIME_BASE
        if self._last_idr_pts is None or pts - self._last_idr_pts >= self._keyframe_ticks:
            picture.pict_type = PictureType.I
            self._last_idr_pts = pts
        done: list[bytes] = []
        for packet in self._video.encode(picture):
            self._mux_video(packet, done)
        return done

    def push_audio(self, frame: av.AudioFrame, pts: int) -> list[bytes]:
        """Encode one audio frame whose first sample plays at ``pts`` (1/90000). Ignored without audio."""
        if self._closed:
            raise RuntimeError("the segmenter is closed")
        if not self._with_audio or self._audio is None or self._first_video_pts is None:
            return []
        if pts < self._first_video_pts or (self._last_audio_pts is not None and pts <= self._last_audio_pts):
            self.frames_dropped += 1
            return []
        self._last_audio_pts = pts
        assert self._resampler is not None
        frame.pts = round(pts * TIME_BASE * frame.sample_rate)
        frame.time_base = Fraction(1, frame.sample_rate)
        for resampled in self._resampler.resample(frame):
            for packet in self._audio.encode(resampled):
                self._mux_audio(packet)
        return []  # segments are cut at video keyframes only

    def close(self) -> list[bytes]:
        """Flush the encoders and return the last segments. The segmenter takes no more frames."""
        if self._closed:
            return []
        self._closed = True
        done: list[bytes] = []
        if self._video is not None:
            for packet in self._video.encode(None):
                self._mux_video(packet, done)
        if self._audio is not None and self._segment is not None:
            for packet in self._audio.encode(None):
                self._mux_audio(packet)
        if self._segment is not None:
            done.append(self._finish())
        self._template.close()
        return done

    def _open_encoders(self, frame: av.VideoFrame) -> None:
        self._size = (max(2, frame.width - frame.width % 2), max(2, frame.height - frame.height % 2))
        video = self._template.add_stream("libx264", rate=self._frame_rate, options=dict(X264_OPTIONS))
        video.width, video.height = self._size
        video.pix_fmt = "yuv420p"
        video.time_base = TIME_BASE
        video.codec_context.time_base = TIME_BASE
        # Keyframes come from the forced IDRs; keep x264's own cadence out of the way.
        video.codec_context.gop_size = 10 * self._frame_rate
        self._video = video
        if self._with_audio:
            audio = self._template.add_stream("aac", rate=AUDIO_RATE)
            audio.layout = "stereo"
            self._audio = audio
            self._resampler = av.AudioResampler(format="fltp", layout="stereo", rate=AUDIO_RATE, frame_size=1024)
        self._template.start_encoding()

    def _mux_video(self, packet: Packet[VideoStream], done: list[bytes]) -> None:
        if packet.pts is None:
            return
        pts = packet.pts
        if packet.is_keyframe and (self._segment is None or pts - self._segment.start_pts >= self._min_ticks):
            if self._segment is not None:
                done.append(self._finish())
            self._segment = self._open_segment(pts)
            if self._first_video_pts is None:
                self._first_video_pts = pts
        if self._segment is None:
            return  # nothing before the first keyframe
        packet.stream = self._segment.video
        self._segment.container.mux(packet)

    def _mux_audio(self, packet: Packet[AudioStream]) -> None:
        segment = self._segment
        if segment is None or segment.audio is None or packet.pts is None:
            return
        # The AAC encoder's priming packet is stamped before the first sample; nothing may precede the video.
        assert self._first_video_pts is not None
        if packet.pts * packet.time_base < self._first_video_pts * TIME_BASE:
            return
        packet.stream = segment.audio
        segment.container.mux(packet)

    def _open_segment(self, start_pts: int) -> _Segment:
        assert self._video is not None
        buffer = io.BytesIO()
        container = av.open(buffer, "w", format="mpegts", options={"mpegts_copyts": "1"})
        video = container.add_stream_from_template(self._video)
        audio = container.add_stream_from_template(self._audio) if self._audio is not None else None
        return _Segment(buffer, container, video, audio, start_pts)

    def _finish(self) -> bytes:
        assert self._segment is not None
        self._segment.container.close()
        data = self._segment.buffer.getvalue()
        self._segment = None
        self.segments_made += 1
        return data
