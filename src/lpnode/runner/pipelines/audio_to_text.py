"""audio-to-text: Whisper-family speech recognition through transformers' ASR pipeline.

The upload is decoded with PyAV (any container/codec FFmpeg reads) to mono float32 at 16 kHz in the
worker thread. Audio up to one chunk long is transcribed in one pass; longer audio is cut into
``chunk_length_s`` windows (30 s, 25 s for distil-large-v3) and batched. Model-specific behaviour, keyed
on the model id as in the reference runner: fp16 on CUDA except ``openai/whisper-medium`` (fp32).

The measured length of the audio is sent back in the ``X-Audio-Duration`` response header (seconds,
three decimals), for callers that bill by audio seconds.
"""

from __future__ import annotations

import logging
from typing import Any

from lpnode.errors import ModelStoreError
from lpnode.logs import log_event
from lpnode.runner.audio import decode_audio
from lpnode.runner.model_files import require_cached
from lpnode.runner.pipelines.base import BatchPipeline, Job, LoadContext, RouteSpec
from lpnode.schemas.audio import AudioToTextForm, Chunk, TextResponse
from lpnode.schemas.checks import parse_return_timestamps
from lpnode.schemas.limits import limits_for

log = logging.getLogger("lpnode.runner")

SAMPLING_RATE = 16000  # what every Whisper feature extractor expects
DURATION_HEADER = "X-Audio-Duration"
_DISTIL_LARGE_V3 = "distil-whisper/distil-large-v3"
_FP32_ONLY = "openai/whisper-medium"


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

    def run(self, params: AudioToTextForm, job: Job) -> TextResponse:
        timestamps = parse_return_timestamps(params.return_timestamps)
        audio = decode_audio(params.audio, SAMPLING_RATE, limits_for(self.route.name).max_audio_seconds)
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
