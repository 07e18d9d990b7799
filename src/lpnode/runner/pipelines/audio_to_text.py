"""audio-to-text: Whisper-family speech recognition through transformers' ASR pipeline.

The upload is decoded with PyAV (any container/codec FFmpeg reads) to mono float32 at 16 kHz in the
worker thread. Audio up to one chunk long is transcribed in one pass; longer audio is cut into
``chunk_length_s`` windows (30 s, 25 s for distil-large-v3) and batched. Model-specific behaviour, keyed
on the model id as in the reference runner: fp16 on CUDA except ``openai/whisper-medium`` (fp32).

The measured length of the audio is sent back in the ``X-Audio-Duration`` response header (seconds,
three decimals), for callers that bill by audio seconds.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any, Literal

from lpnode.errors import BadRequestError, ModelStoreError
from lpnode.logs import log_event
from lpnode.runner.audio import decode_audio, too_long
from lpnode.runner.model_files import require_cached
from lpnode.runner.pipelines.base import BatchPipeline, Job, LoadContext, RouteSpec
from lpnode.schemas.audio import AudioToTextForm, Chunk, TextResponse

log = logging.getLogger("lpnode.runner")

SAMPLING_RATE = 16000  # what every Whisper feature extractor expects
MAX_AUDIO_SECONDS = 3600.0  # the reference runner's limit for word timestamps; here for every mode
DURATION_HEADER = "X-Audio-Duration"
_DISTIL_LARGE_V3 = "distil-whisper/distil-large-v3"
_FP32_ONLY = "openai/whisper-medium"

Timestamps = bool | Literal["word"]


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


def _chunk(raw: dict[str, Any]) -> Chunk:
    return Chunk(timestamp=list(raw.get("timestamp") or (None, None)), text=str(raw.get("text", "")))


class _StopWhenCancelled:
    """A generate() stopping criterion that never stops, but raises once the client has gone away."""

    def __init__(self, job: Job) -> None:
        self.job = job

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        self.job.checkpoint()
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


class AudioToTextPipeline(BatchPipeline[AudioToTextForm]):
    route = RouteSpec(
        name="audio-to-text",
        operation_id="genAudioToText",
        sdk_name="audioToText",
        summary="Audio To Text",
        description="Transcribe an audio file to text, with sentence or word timestamps.",
        params=AudioToTextForm,
        response=TextResponse,
        multipart=True,
        default_error="Audio-to-text pipeline error.",
        oom_error="Out of memory error. Try reducing input audio length.",
        extra_error_codes=(413, 415),
    )

    def __init__(self, ctx: LoadContext) -> None:
        super().__init__(ctx)
        import torch
        import transformers

        lib: Any = transformers
        model_id = ctx.model_id
        if not ctx.allow_downloads:
            require_cached(ctx.model_dir, model_id, "config.json", kind="transformers model")
        use_fp16 = ctx.device.startswith("cuda") and _FP32_ONLY not in model_id
        dtype = torch.float16 if use_fp16 else torch.float32
        options: dict[str, Any] = {"cache_dir": str(ctx.model_dir), "local_files_only": not ctx.allow_downloads}
        try:
            model = lib.AutoModelForSpeechSeq2Seq.from_pretrained(
                model_id, dtype=dtype, attn_implementation="eager", **options
            )
            processor = lib.AutoProcessor.from_pretrained(model_id, **options)
        except (OSError, ValueError, KeyError) as exc:
            raise ModelStoreError(f"could not load {model_id!r} from {ctx.model_dir}: {exc}") from exc
        self.chunk_length_s = 25 if _DISTIL_LARGE_V3 in model_id else 30
        self.batch_size = 16
        self.asr = lib.pipeline(
            "automatic-speech-recognition",
            model=model,
            tokenizer=processor.tokenizer,
            feature_extractor=processor.feature_extractor,
            max_new_tokens=128,
            dtype=dtype,
            device=ctx.device,
        )
        log_event(
            log,
            "speech recognition model loaded",
            model_id=model_id,
            cls=type(model).__name__,
            dtype=str(dtype).removeprefix("torch."),
            device=ctx.device,
        )

    def check(self, params: AudioToTextForm) -> None:
        parse_return_timestamps(params.return_timestamps)
        declared = parse_metadata_duration(params.metadata)
        if declared is not None and declared > MAX_AUDIO_SECONDS:
            raise too_long(MAX_AUDIO_SECONDS, declared)

    def run(self, params: AudioToTextForm, job: Job) -> TextResponse:
        timestamps = parse_return_timestamps(params.return_timestamps)
        audio = decode_audio(params.audio, SAMPLING_RATE, MAX_AUDIO_SECONDS)
        job.headers[DURATION_HEADER] = f"{audio.seconds:.3f}"
        job.checkpoint()
        kwargs: dict[str, Any] = {
            "return_timestamps": timestamps,
            "generate_kwargs": {"stopping_criteria": [_StopWhenCancelled(job)]},
        }
        if audio.seconds > self.chunk_length_s:
            # Long audio: fixed windows, batched; fewer at a time for word timestamps (memory).
            batch_size = 4 if timestamps == "word" and audio.seconds > 200 else self.batch_size
            kwargs.update(chunk_length_s=self.chunk_length_s, batch_size=batch_size, ignore_warning=True)
        output = self.asr({"raw": audio.samples, "sampling_rate": SAMPLING_RATE}, **kwargs)
        chunks = [_chunk(raw) for raw in output.get("chunks", [])] if timestamps else []
        return TextResponse(text=str(output.get("text", "")), chunks=chunks)
