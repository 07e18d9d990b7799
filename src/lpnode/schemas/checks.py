"""Cheap checks of a request beyond what its pydantic model enforces: the rules a runner applies before it
queues a job, kept here so a gateway refuses the same requests with the same words.

Every check raises :class:`~lpnode.errors.BadRequestError` (400; :class:`~lpnode.errors.LoraLoadingError`
for the ``loras`` field) with the runner's message, and none of them loads a model or decodes pixels: an
uploaded image is opened far enough to read its size, never decoded.
"""

from __future__ import annotations

import io
import json
import math
import warnings
from typing import Literal

from PIL import Image, UnidentifiedImageError

from lpnode.errors import BadRequestError, LoraLoadingError
from lpnode.schemas.audio import AudioToTextForm, TextToSpeechParams
from lpnode.schemas.images import ImageToImageForm, ImageToVideoForm, TextToImageParams, UpscaleForm
from lpnode.schemas.llm import LLMRequest
from lpnode.schemas.vision import ImageToTextForm, SegmentAnything2Form

MAX_SEED = 2**63 - 1
MAX_LORAS_PER_REQUEST = 4
MAX_IMAGE_PIXELS = 8192 * 8192
"""Uploaded images larger than this (about 8k x 8k) are refused before their pixels are decoded."""
MAX_AUDIO_SECONDS = 3600.0  # the reference runner's limit for word timestamps; here for every mode
MAX_TEXT_CHARS = 10_000  # text-to-speech: about ten minutes of speech
LLM_ROLES = ("system", "user", "assistant")

Timestamps = bool | Literal["word"]


# -- fields shared by several requests ----------------------------------------------------------------
def check_seed(seed: int | None, count: int = 1) -> None:
    """``seed`` leaves room for ``count`` images (image i uses ``seed + i``)."""
    if seed is not None and not 0 <= seed <= MAX_SEED - count:
        raise BadRequestError(f"seed must be between 0 and {MAX_SEED - count}, got {seed}.")


def check_size(height: int, width: int) -> None:
    """Diffusion models work in 8-pixel latent blocks: both sides positive multiples of 8."""
    if height <= 0 or width <= 0 or height % 8 or width % 8:
        raise BadRequestError(
            f"`height` and `width` have to be positive and divisible by 8 but are {height} and {width}."
        )


def check_count(count: int) -> None:
    if count < 1:
        raise BadRequestError("num_images_per_prompt must be at least 1.")


def parse_loras(raw: str) -> dict[str, float]:
    """The ``loras`` field as ``{repo_id: weight}``; LoraLoadingError (400) saying what is wrong."""
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        raise LoraLoadingError(f"Unable to parse '{raw}' as JSON.") from None
    if not isinstance(data, dict):
        raise LoraLoadingError(
            'loras must be a JSON object mapping repo ids to weights, e.g. {"nerijs/pixel-art-xl": 1.2}.'
        )
    if len(data) > MAX_LORAS_PER_REQUEST:
        raise LoraLoadingError(f"Too many LoRas provided. Maximum is {MAX_LORAS_PER_REQUEST}.")
    weights: dict[str, float] = {}
    for repo, weight in data.items():
        if isinstance(weight, bool) or not isinstance(weight, int | float) or weight < 0:
            raise LoraLoadingError("All strengths must be numbers greater than or equal to 0.0.")
        if not repo or repo.count("/") != 1:
            raise LoraLoadingError(f"LoRa repository '{repo}' is not a Hugging Face repo id (org/name).")
        weights[repo] = float(weight)
    return weights


def open_image(data: bytes, field: str = "image") -> Image.Image:
    """The uploaded image, opened lazily: its header is read, its pixels are not (``load()`` decodes them).

    400 when the upload is empty, is not an image PIL recognises, or is over :data:`MAX_IMAGE_PIXELS`.
    """
    if not data:
        raise BadRequestError(f"The uploaded {field} is empty.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadRequestError(f"The uploaded {field} is not a readable image: {exc}") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise BadRequestError(f"The uploaded {field} could not be decoded: {exc}") from None
    if image.width * image.height > MAX_IMAGE_PIXELS:
        raise BadRequestError(
            f"The uploaded {field} is {image.width}x{image.height} pixels; the limit is {MAX_IMAGE_PIXELS} pixels."
        )
    return image


def parse_return_timestamps(value: str) -> Timestamps:
    """``true``/``1``/``sentence`` → True, ``false``/``0`` → False, ``word`` → "word"."""
    lowered = value.strip().lower()
    if lowered in {"true", "1", "sentence"}:
        return True
    if lowered in {"false", "0"}:
        return False
    if lowered == "word":
        return "word"
    raise BadRequestError(f"return_timestamps must be 'true' (or 'sentence'), 'word' or 'false', got {value!r}.")


def parse_metadata_duration(metadata: str) -> float | None:
    """The optional ``duration`` (seconds) in the ``metadata`` JSON object."""
    prefix = "Unable to calculate duration of file"
    try:
        parsed = json.loads(metadata or "{}")
    except json.JSONDecodeError:
        raise BadRequestError(
            f'{prefix}: metadata must be a JSON object such as {{"duration": 12.5}}, got {metadata[:80]!r}.'
        ) from None
    if not isinstance(parsed, dict):
        raise BadRequestError(f'{prefix}: metadata must be a JSON object such as {{"duration": 12.5}}.')
    duration = parsed.get("duration")
    if duration is None:
        return None
    if isinstance(duration, bool) or not isinstance(duration, int | float) or not math.isfinite(duration):
        raise BadRequestError(f"{prefix}: metadata duration must be a number of seconds, got {duration!r}.")
    if duration < 0:
        raise BadRequestError(f"{prefix}: metadata duration must not be negative, got {duration}.")
    return float(duration)


def audio_too_long(max_seconds: float, seconds: float | None = None) -> BadRequestError:
    """The 400 for audio over the length limit; ``seconds`` when the full length is known."""
    length = f"{seconds:.1f} s long" if seconds is not None else "longer than that"
    return BadRequestError(
        f"Audio longer than {max_seconds:.0f} s is not accepted; this audio is {length}. Split it into shorter files."
    )


# -- one check per request model, in the order the runner has always applied them ---------------------
def check_text_to_image(params: TextToImageParams) -> None:
    if not params.prompt:
        raise BadRequestError("Prompt must be provided.")
    check_size(params.height, params.width)
    check_count(params.num_images_per_prompt)
    check_seed(params.seed, params.num_images_per_prompt)
    parse_loras(params.loras)


def check_image_to_image(params: ImageToImageForm) -> None:
    check_count(params.num_images_per_prompt)
    if not 0.0 <= params.strength <= 1.0:
        raise BadRequestError(f"strength must be between 0 and 1, got {params.strength}.")
    check_seed(params.seed, params.num_images_per_prompt)
    parse_loras(params.loras)
    open_image(params.image)


def check_image_to_video(params: ImageToVideoForm) -> None:
    check_size(params.height, params.width)
    check_seed(params.seed)
    open_image(params.image)


def check_upscale(params: UpscaleForm) -> None:
    check_seed(params.seed)
    open_image(params.image)


def check_audio_to_text(params: AudioToTextForm) -> None:
    parse_return_timestamps(params.return_timestamps)
    declared = parse_metadata_duration(params.metadata)
    if declared is not None and declared > MAX_AUDIO_SECONDS:
        raise audio_too_long(MAX_AUDIO_SECONDS, declared)


def check_segment_anything_2(params: SegmentAnything2Form) -> None:
    # The prompts are checked by the runner, against the loaded model's mask size.
    open_image(params.image)


def check_llm(params: LLMRequest) -> None:
    if not params.messages:
        raise BadRequestError("messages must hold at least one message.")
    for i, message in enumerate(params.messages):
        if message.role not in LLM_ROLES:
            raise BadRequestError(f"messages[{i}].role must be one of {', '.join(LLM_ROLES)}, got {message.role!r}.")
    if params.max_tokens < 1:
        raise BadRequestError(f"max_tokens must be at least 1, got {params.max_tokens}.")
    if not 0.0 <= params.temperature <= 2.0:
        raise BadRequestError(f"temperature must be between 0 and 2, got {params.temperature}.")
    if not 0.0 < params.top_p <= 1.0:
        raise BadRequestError(f"top_p must be greater than 0 and at most 1, got {params.top_p}.")
    if params.top_k == 0 or params.top_k < -1:
        raise BadRequestError(f"top_k must be -1 (off) or at least 1, got {params.top_k}.")


def check_image_to_text(params: ImageToTextForm) -> None:
    open_image(params.image)


def check_text_to_speech(params: TextToSpeechParams) -> None:
    if not params.text.strip():
        raise BadRequestError("Text input must be provided.")
    if len(params.text) > MAX_TEXT_CHARS:
        raise BadRequestError(
            f"Text is {len(params.text)} characters long; the limit is {MAX_TEXT_CHARS}. "
            "Split it into several requests."
        )
