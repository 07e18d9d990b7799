"""Audio routes: audio-to-text (speech recognition) and text-to-speech.

Field names, types, defaults and required sets follow the ai-runner OpenAPI document
(``Body_genAudioToText``, ``TextResponse``, ``Chunk``, ``TextToSpeechParams``, ``AudioResponse``).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from lpnode.schemas.common import MediaURL

_MODEL_ID = "Hugging Face model ID of the model to use; empty means the loaded model."
DEFAULT_SPEAKER_DESCRIPTION = (
    "A male speaker delivers a slightly expressive and animated speech with a moderate speed and pitch."
)


class AudioToTextForm(BaseModel):
    """Transcribe an uploaded audio file."""

    audio: bytes = Field(..., description="The audio to transcribe: WAV, MP3, FLAC, Ogg/Opus, M4A, WebM, ...")
    model_id: str = Field(default="", description=_MODEL_ID)
    return_timestamps: str = Field(
        default="true",
        description=("Timestamps to return: 'true' or 'sentence' (per segment), 'word' (per word) or 'false' (none)."),
    )
    metadata: str = Field(
        default="{}",
        description='Job information as a JSON object, e.g. {"duration": 12.5} (seconds, as the caller measured).',
    )


class Chunk(BaseModel):
    """A piece of the transcript with its time span."""

    timestamp: list[Any] = Field(..., description="[start, end] in seconds; end is null when unknown.")
    text: str = Field(..., description="The text spoken in this span.")


class TextResponse(BaseModel):
    """A transcript."""

    text: str = Field(..., description="The whole transcript.")
    chunks: list[Chunk] = Field(..., description="Timed pieces of the transcript; empty when timestamps are off.")


class TextToSpeechParams(BaseModel):
    """Speak a text."""

    model_id: str = Field(default="", description=_MODEL_ID)
    text: str = Field(default="", description="The text to speak.")
    description: str = Field(
        default=DEFAULT_SPEAKER_DESCRIPTION,
        description="The voice to use, in words (models that take a speaker description, e.g. Parler-TTS).",
    )


class AudioResponse(BaseModel):
    """Generated audio."""

    audio: MediaURL = Field(..., description="The audio as a data:audio/wav;base64 URL.")
