"""Release decoded frames at their presentation times, so a burst of input does not become a burst of drops.

A gateway that publishes whole segments (a second of video at once) makes the decoder produce that second's
frames in a few milliseconds. The queue into the pipeline holds one frame and drops the rest, which is right
when the pipeline is slower than real time, and wrong here: the frames were not late, they arrived early.
:class:`FramePacer` holds each frame until its PTS, measured from the stream's first frame, comes due on the
wall clock. Frames that are already due pass at once, so a slow input adds no delay; a jump in PTS (a new
segment series, a seek) larger than :data:`MAX_AHEAD` restarts the clock instead of waiting.
"""

from __future__ import annotations

import time
from collections.abc import Callable

MAX_AHEAD = 2.0
"""Seconds a frame may be ahead of the wall clock before the pacer resynchronises instead of waiting."""
MIN_SPACING = 0.015
"""Seconds kept between two frames even when both are late (the demuxer releases a segment's last frame
only when the next segment's bytes arrive, so it comes back to back with the next one): the pipeline
process takes a frame in a few milliseconds, and a frame handed over sooner would find the one-frame queue
full and be dropped. 15 ms allows 66 fps, well above the runner's 24 fps cap."""


class FramePacer:
    def __init__(
        self, clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._origin: tuple[float, float] | None = None  # (wall clock, PTS seconds) of the reference frame
        self._released = float("-inf")

    def wait(self, seconds: float) -> None:
        """Block (in the decoder's thread) until the frame at PTS ``seconds`` is due."""
        now = self._clock()
        delay = 0.0
        if self._origin is None:
            self._origin = (now, seconds)
        else:
            wall, pts = self._origin
            ahead = (wall + seconds - pts) - now
            if ahead > MAX_AHEAD or seconds < pts:
                self._origin = (now, seconds)
            elif ahead > 0:
                delay = ahead
            elif ahead < -MAX_AHEAD:  # far behind: start counting from here, so later frames are not all "due"
                self._origin = (now, seconds)
        delay = max(delay, self._released + MIN_SPACING - now)
        if delay > 0:
            self._sleep(delay)
        self._released = self._clock()
