"""Cheap checks of a request beyond what its pydantic model enforces: the rules a runner applies before it
queues a job, kept here so a gateway refuses the same requests with the same words.

Every check raises :class:`~lpnode.errors.BadRequestError` (400; :class:`~lpnode.errors.LoraLoadingError`
for the ``loras`` field, :class:`~lpnode.errors.PayloadTooLargeError` (413) for an upload over its limit) with
the runner's message, and none of them loads a model or decodes pixels: an uploaded image is opened far
enough to read its size, never decoded. The request checks take the pipeline's
:class:`~lpnode.schemas.limits.Limits`; a value over a limit is refused naming the field, the limit and the value.
"""

from __future__ import annotations

import io
import json
import math
import re
import warnings
from typing import Literal

from PIL import Image, UnidentifiedImageError

from lpnode.errors import BadRequestError, LoraLoadingError, PayloadTooLargeError
from lpnode.schemas.audio import AudioToTextForm, TextToSpeechParams
from lpnode.schemas.images import ImageToImageForm, ImageToVideoForm, TextToImageParams, UpscaleForm
from lpnode.schemas.limits import Limits
from lpnode.schemas.llm import LLMRequest
from lpnode.schemas.vision import ImageToTextForm, SegmentAnything2Form

MAX_SEED = 2**63 - 1
MAX_LORAS_PER_REQUEST = 4
MAX_LORAS_CHARS = 2000  # four repo ids and weights fit many times over
MIN_IMAGE_SIDE = 8
"""Diffusion models shrink an uploaded image into 8-pixel latent blocks: a smaller side leaves nothing."""
MAX_IMAGE_PIXELS = Limits().max_input_pixels
"""Uploaded images larger than this (about 8k x 8k) are refused before their pixels are decoded."""
MAX_AUDIO_SECONDS = float(Limits().max_audio_seconds)  # the reference runner's limit for word timestamps
MAX_TEXT_CHARS = Limits().max_text_chars  # text-to-speech: about ten minutes of speech
LLM_ROLES = ("system", "user", "assistant")
SAM2_MAX_ANSWER_BYTES = 256 * 1024 * 1024
"""segment-anything-2 answers its masks as text at image size: about 24 bytes per logit
("-3.098562592640519e-05, ") and 5 per 0.0/1.0. Requests whose answer would pass this are refused rather than
built as gigabytes of text."""
_STREAM_REPR = re.compile(r"\s*<_io\.\w+ object at 0x[0-9a-fA-F]+>")

Timestamps = bool | Literal["word"]


# -- limits ---------------------------------------------------------------------------------------------
def check_at_most(field: str, value: int, limit: int) -> None:
    """400 ``<field> must be at most <limit> on this node, got <value>.`` when ``value`` is over ``limit``."""
    if value > limit:
        raise BadRequestError(f"{field} must be at most {limit} on this node, got {value}.")


def check_chars(field: str, text: str, limit: int) -> None:
    """400 naming the length of ``text`` and the limit when ``text`` is longer than ``limit`` characters."""
    if len(text) > limit:
        raise BadRequestError(f"{field} is {len(text)} characters long; the limit on this node is {limit} characters.")


def check_upload(field: str, data: bytes, limit: int) -> None:
    """413 naming the upload's size and the limit when ``data`` is over ``limit`` bytes."""
    if len(data) > limit:
        raise PayloadTooLargeError(
            f"The uploaded {field} is {len(data)} bytes; the limit on this node is {limit} bytes."
        )


def check_output_size(height: int, width: int, limits: Limits) -> None:
    """The requested ``height`` and ``width``: within the pipeline's limits, multiples of 8."""
    check_at_most("width", width, limits.max_width)
    check_at_most("height", height, limits.max_height)
    check_size(height, width)
    if width * height > limits.max_pixels:
        raise BadRequestError(
            f"width x height must be at most {limits.max_pixels} pixels on this node, "
            f"got {width}x{height} = {width * height}."
        )


def check_steps(steps: int, limits: Limits) -> None:
    """``num_inference_steps`` within the limit (0 or less means the model's default)."""
    check_at_most("num_inference_steps", steps, limits.max_steps)


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


def check_count(count: int, limit: int | None = None) -> None:
    if count < 1:
        raise BadRequestError("num_images_per_prompt must be at least 1.")
    if limit is not None:
        check_at_most("num_images_per_prompt", count, limit)


def parse_loras(raw: str) -> dict[str, float]:
    """The ``loras`` field as ``{repo_id: weight}``; LoraLoadingError (400) saying what is wrong."""
    if not raw.strip():
        return {}
    if len(raw) > MAX_LORAS_CHARS:
        raise LoraLoadingError(f"loras is {len(raw)} characters long; the limit is {MAX_LORAS_CHARS}.")
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


def image_error_reason(exc: BaseException) -> str:
    """PIL's words for ``exc`` without the repr of the in-memory file it read (``<_io.BytesIO object at 0x...>``)."""
    return _STREAM_REPR.sub("", str(exc)).strip() or type(exc).__name__


def open_image(
    data: bytes, field: str = "image", max_pixels: int | None = MAX_IMAGE_PIXELS, min_side: int = 1
) -> Image.Image:
    """The uploaded image, opened lazily: its header is read, its pixels are not (``load()`` decodes them).

    400 when the upload is empty, is not an image PIL recognises, is over ``max_pixels`` pixels (None: only
    PIL's own decompression-bomb guard) or has a side shorter than ``min_side`` pixels. The messages never show
    Python internals.
    """
    if not data:
        raise BadRequestError(f"The uploaded {field} is empty.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise BadRequestError(
            f"The uploaded {field} is not a readable image: its format is not recognised. "
            "Send a PNG, JPEG, WebP, GIF, BMP or TIFF file."
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadRequestError(f"The uploaded {field} is not a readable image: {image_error_reason(exc)}") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise BadRequestError(f"The uploaded {field} could not be decoded: {image_error_reason(exc)}") from None
    if max_pixels is not None and image.width * image.height > max_pixels:
        raise BadRequestError(
            f"The uploaded {field} is {image.width}x{image.height} pixels; the limit on this node is "
            f"{max_pixels} pixels."
        )
    if min(image.width, image.height) < min_side:
        raise BadRequestError(
            f"The uploaded {field} is {image.width}x{image.height} pixels; this pipeline needs at least "
            f"{min_side} pixels on each side."
        )
    return image


def check_image_upload(data: bytes, limits: Limits, min_side: int = 1, field: str = "image") -> Image.Image:
    """An uploaded image within the pipeline's upload limits (bytes, then pixels), opened lazily."""
    check_upload(field, data, limits.max_upload_bytes)
    return open_image(data, field, limits.max_input_pixels, min_side)


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


def check_sam2_answer_size(width: int, height: int, form: SegmentAnything2Form) -> None:
    """400 when the masks of a ``width`` x ``height`` image would pass :data:`SAM2_MAX_ANSWER_BYTES` as text."""
    count = 3 if form.multimask_output else 1
    size = count * width * height * (24 if form.return_logits else 5)
    if size > SAM2_MAX_ANSWER_BYTES:
        kind = "logits" if form.return_logits else "binary masks"
        raise BadRequestError(
            f"The answer for a {width}x{height} image would hold {count} full-size {kind}, about "
            f"{size // 2**20} MB of text; the limit is {SAM2_MAX_ANSWER_BYTES // 2**20} MB. Send a smaller image, "
            "return_logits=false or multimask_output=false."
        )


# -- one check per request model, in the order the runner has always applied them ---------------------
# Limits on text come first: nothing else reads a prompt before its length is known to be sane.
def check_text_to_image(params: TextToImageParams, limits: Limits) -> None:
    if not params.prompt:
        raise BadRequestError("Prompt must be provided.")
    check_chars("prompt", params.prompt, limits.max_prompt_chars)
    check_chars("negative_prompt", params.negative_prompt, limits.max_prompt_chars)
    check_output_size(params.height, params.width, limits)
    check_steps(params.num_inference_steps, limits)
    check_count(params.num_images_per_prompt, limits.max_images)
    check_seed(params.seed, params.num_images_per_prompt)
    parse_loras(params.loras)


def check_image_to_image(params: ImageToImageForm, limits: Limits) -> None:
    check_chars("prompt", params.prompt, limits.max_prompt_chars)
    check_chars("negative_prompt", params.negative_prompt, limits.max_prompt_chars)
    check_steps(params.num_inference_steps, limits)
    check_count(params.num_images_per_prompt, limits.max_images)
    if not 0.0 <= params.strength <= 1.0:
        raise BadRequestError(f"strength must be between 0 and 1, got {params.strength}.")
    check_seed(params.seed, params.num_images_per_prompt)
    parse_loras(params.loras)
    check_image_upload(params.image, limits, MIN_IMAGE_SIDE)


def check_image_to_video(params: ImageToVideoForm, limits: Limits) -> None:
    check_output_size(params.height, params.width, limits)
    check_steps(params.num_inference_steps, limits)
    check_seed(params.seed)
    check_image_upload(params.image, limits, MIN_IMAGE_SIDE)


def check_upscale(params: UpscaleForm, limits: Limits) -> None:
    check_chars("prompt", params.prompt, limits.max_prompt_chars)
    check_steps(params.num_inference_steps, limits)
    check_seed(params.seed)
    check_image_upload(params.image, limits, MIN_IMAGE_SIDE)


def check_audio_to_text(params: AudioToTextForm, limits: Limits) -> None:
    check_upload("audio", params.audio, limits.max_upload_bytes)
    parse_return_timestamps(params.return_timestamps)
    declared = parse_metadata_duration(params.metadata)
    if declared is not None and declared > limits.max_audio_seconds:
        raise audio_too_long(limits.max_audio_seconds, declared)


def check_segment_anything_2(params: SegmentAnything2Form, limits: Limits) -> None:
    # The prompts are checked by the runner, against the loaded model's mask size.
    image = check_image_upload(params.image, limits)
    check_sam2_answer_size(image.width, image.height, params)


def check_llm(params: LLMRequest, limits: Limits) -> None:
    if not params.messages:
        raise BadRequestError("messages must hold at least one message.")
    check_at_most("the number of messages", len(params.messages), limits.max_messages)
    for i, message in enumerate(params.messages):
        if message.role not in LLM_ROLES:
            raise BadRequestError(f"messages[{i}].role must be one of {', '.join(LLM_ROLES)}, got {message.role!r}.")
    chars = sum(len(m.content) for m in params.messages)
    if chars > limits.max_prompt_chars:
        raise BadRequestError(
            f"The messages hold {chars} characters; the limit on this node is {limits.max_prompt_chars} characters."
        )
    if params.max_tokens < 1:
        raise BadRequestError(f"max_tokens must be at least 1, got {params.max_tokens}.")
    check_at_most("max_tokens", params.max_tokens, limits.max_tokens)
    if not 0.0 <= params.temperature <= 2.0:
        raise BadRequestError(f"temperature must be between 0 and 2, got {params.temperature}.")
    if not 0.0 < params.top_p <= 1.0:
        raise BadRequestError(f"top_p must be greater than 0 and at most 1, got {params.top_p}.")
    if params.top_k == 0 or params.top_k < -1:
        raise BadRequestError(f"top_k must be -1 (off) or at least 1, got {params.top_k}.")


def check_image_to_text(params: ImageToTextForm, limits: Limits) -> None:
    check_chars("prompt", params.prompt, limits.max_prompt_chars)
    check_image_upload(params.image, limits)


def check_text_to_speech(params: TextToSpeechParams, limits: Limits) -> None:
    if not params.text.strip():
        raise BadRequestError("Text input must be provided.")
    if len(params.text) > limits.max_text_chars:
        raise BadRequestError(
            f"Text is {len(params.text)} characters long; the limit is {limits.max_text_chars}. "
            "Split it into several requests."
        )
    check_chars("description", params.description, limits.max_description_chars)
