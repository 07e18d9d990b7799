"""Frame types under ai-runner's import spelling: ``runner.live.trickle`` → ``lpnode.live.trickle``.

(The trickle protocol itself is :mod:`lpnode.trickle`; this module only re-exports the frame classes a
ported pipeline imports from here.)
"""

from lpnode.live.pipeline import AudioFrame, AudioOutput, VideoFrame, VideoOutput

__all__ = ["AudioFrame", "AudioOutput", "VideoFrame", "VideoOutput"]
