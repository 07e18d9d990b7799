"""text-to-speech: VITS/MMS-TTS models, and Parler-TTS when the ``parler_tts`` package is installed.

The backend is chosen from the model's ``config.json`` (``model_type``/``architectures``):

- ``vits`` (``facebook/mms-tts-*``, ``kakao-enterprise/vits-*``): ``VitsModel`` + its tokenizer. The
  speaker ``description`` is ignored. Characters outside the model's alphabet are dropped.
- ``parler_tts`` (``parler-tts/parler-tts-*``): ``ParlerTTSForConditionalGeneration``; ``description``
  steers the voice. Needs ``pip install parler-tts`` (which pins transformers 4.46.1).

Long text is split at sentence boundaries into chunks of at most ``MAX_CHUNK_CHARS`` characters, each
synthesised on its own (so memory stays flat) and joined with a short pause. Every chunk is generated
from the same fixed seed, so the same text always gives the same audio. The result is a 16-bit PCM
mono WAV at the model's own sampling rate (16 kHz for MMS-TTS, 44.1 kHz for Parler-TTS), not
resampled.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from lpnode.errors import BadRequestError, ModelStoreError
from lpnode.logs import log_event
from lpnode.runner.audio import wav_data_url
from lpnode.runner.model_files import require_cached
from lpnode.runner.pipelines.base import BatchPipeline, Job, LoadContext, RouteSpec
from lpnode.schemas.audio import AudioResponse, TextToSpeechParams
from lpnode.schemas.common import MediaURL

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

log = logging.getLogger("lpnode.runner")

SEED = 42  # VITS and Parler sample noise and durations; a fixed seed makes the output repeatable
MAX_CHUNK_CHARS = 400  # one synthesis call; sentences are packed up to this
PAUSE_SECONDS = 0.25  # silence between chunks
_SENTENCE_END = re.compile(r"(?<=[.!?;:。！？])\s+|\n\s*\n?")


def split_text(text: str, max_chars: int = MAX_CHUNK_CHARS) -> list[str]:
    """``text`` as chunks of at most ``max_chars``: whole sentences where they fit, else whole words,
    else (a single word longer than ``max_chars``) hard cuts."""
    pieces: list[str] = []
    for sentence in _SENTENCE_END.split(text):
        sentence = " ".join(sentence.split())
        while len(sentence) > max_chars:
            cut = sentence.rfind(" ", 0, max_chars + 1)
            cut = cut if cut > 0 else max_chars
            pieces.append(sentence[:cut].strip())
            sentence = sentence[cut:].strip()
        if sentence:
            pieces.append(sentence)
    chunks: list[str] = []
    for piece in pieces:
        if chunks and len(chunks[-1]) + 1 + len(piece) <= max_chars:
            chunks[-1] += " " + piece
        else:
            chunks.append(piece)
    return chunks


class SpeechBackend(Protocol):
    """A loaded TTS model."""

    sampling_rate: int

    def spoken(self, text: str) -> str:
        """What of ``text`` the model can say ("" when nothing)."""

    def synthesize(self, text: str, description: str) -> npt.NDArray[np.float32]:
        """Mono float samples in [-1, 1] at ``sampling_rate``."""


class VitsBackend:
    def __init__(self, ctx: LoadContext, options: dict[str, Any]) -> None:
        import transformers

        lib: Any = transformers
        self.device = ctx.device
        self.tokenizer = lib.AutoTokenizer.from_pretrained(ctx.model_id, **options)
        if getattr(self.tokenizer, "phonemize", False) and importlib.util.find_spec("phonemizer") is None:
            raise ModelStoreError(
                f"{ctx.model_id!r} spells its input phonetically: install the phonemizer package and espeak-ng "
                "(pip install phonemizer; apt-get install espeak-ng), or use an MMS-TTS model such as "
                "facebook/mms-tts-eng"
            )
        if getattr(self.tokenizer, "is_uroman", False) and importlib.util.find_spec("uroman") is None:
            log_event(
                log,
                "model reads romanized text; without the uroman package (pip install uroman) characters of "
                "other scripts are dropped",
                logging.WARNING,
                model_id=ctx.model_id,
            )
        self.model = lib.VitsModel.from_pretrained(ctx.model_id, **options).to(ctx.device).eval()
        self.sampling_rate = int(self.model.config.sampling_rate)

    def spoken(self, text: str) -> str:
        prepared, _ = self.tokenizer.prepare_for_tokenization(text)
        return str(prepared).strip()

    def synthesize(self, text: str, description: str) -> npt.NDArray[np.float32]:
        inputs = self.tokenizer(text, return_tensors="pt").to(self.device)
        waveform = self.model(**inputs).waveform[0]
        samples: npt.NDArray[np.float32] = waveform.float().cpu().numpy()
        return samples


class ParlerBackend:
    def __init__(self, ctx: LoadContext, options: dict[str, Any]) -> None:
        if importlib.util.find_spec("parler_tts") is None:
            raise ModelStoreError(
                f"{ctx.model_id!r} is a Parler-TTS model, which needs the parler_tts package "
                "(pip install parler-tts; it requires transformers 4.46.1, so it cannot share lpnode's "
                "environment). Use a VITS/MMS-TTS model such as facebook/mms-tts-eng instead."
            )
        import transformers

        parler: Any = importlib.import_module("parler_tts")
        lib: Any = transformers
        self.device = ctx.device
        self.model = parler.ParlerTTSForConditionalGeneration.from_pretrained(ctx.model_id, **options)
        self.model = self.model.to(ctx.device).eval()
        self.tokenizer = lib.AutoTokenizer.from_pretrained(ctx.model_id, **options)
        self.sampling_rate = int(self.model.config.sampling_rate)

    def spoken(self, text: str) -> str:
        return text.strip()

    def synthesize(self, text: str, description: str) -> npt.NDArray[np.float32]:
        description_ids = self.tokenizer(description, return_tensors="pt").input_ids.to(self.device)
        prompt_ids = self.tokenizer(text, return_tensors="pt").input_ids.to(self.device)
        audio = self.model.generate(input_ids=description_ids, prompt_input_ids=prompt_ids)
        samples: npt.NDArray[np.float32] = audio.float().cpu().numpy().reshape(-1)
        return samples


def model_config(ctx: LoadContext) -> dict[str, Any]:
    """The model's ``config.json``, from the models dir (or the Hub when downloads are allowed)."""
    if ctx.allow_downloads:
        from huggingface_hub import hf_hub_download

        path = Path(hf_hub_download(ctx.model_id, "config.json", cache_dir=str(ctx.model_dir)))
    else:
        path = require_cached(ctx.model_dir, ctx.model_id, "config.json", kind="transformers model")
    config: dict[str, Any] = json.loads(path.read_text())
    return config


def load_backend(ctx: LoadContext) -> SpeechBackend:
    config = model_config(ctx)
    kind = str(config.get("model_type", "")).lower()
    architectures = " ".join(config.get("architectures") or [])
    options: dict[str, Any] = {"cache_dir": str(ctx.model_dir), "local_files_only": not ctx.allow_downloads}
    try:
        if kind == "vits" or "VitsModel" in architectures:
            return VitsBackend(ctx, options)
        if kind.startswith("parler") or "ParlerTTS" in architectures:
            return ParlerBackend(ctx, options)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelStoreError(f"could not load {ctx.model_id!r} from {ctx.model_dir}: {exc}") from exc
    what = kind or architectures or "unknown"
    raise ModelStoreError(
        f"{ctx.model_id!r} is a {what!r} model; text-to-speech serves VITS/MMS-TTS models (e.g. "
        "facebook/mms-tts-eng) and Parler-TTS models (e.g. parler-tts/parler-tts-large-v1)"
    )


class TextToSpeechPipeline(BatchPipeline[TextToSpeechParams]):
    route = RouteSpec(
        name="text-to-speech",
        operation_id="genTextToSpeech",
        sdk_name="textToSpeech",
        summary="Text To Speech",
        description="Speak a text: returns a WAV file, in a voice steered by the speaker description.",
        params=TextToSpeechParams,
        response=AudioResponse,
        multipart=False,
        default_error="Text-to-speech pipeline error.",
        oom_error="Out of memory error. Try reducing text input length.",
        guard_period=False,  # upstream's model_id refusal on this route has no final period
    )

    def __init__(self, ctx: LoadContext) -> None:
        super().__init__(ctx)
        self.backend = load_backend(ctx)
        log_event(
            log,
            "speech synthesis model loaded",
            model_id=ctx.model_id,
            backend=type(self.backend).__name__.removesuffix("Backend").lower(),
            sampling_rate=self.backend.sampling_rate,
            device=ctx.device,
        )

    def run(self, params: TextToSpeechParams, job: Job) -> AudioResponse:
        import numpy as np
        import torch

        chunks = [spoken for chunk in split_text(params.text) if (spoken := self.backend.spoken(chunk))]
        if not chunks:
            raise BadRequestError(
                "The text has no characters this model can speak (unsupported characters are dropped); "
                "send text in the model's language and alphabet."
            )
        rate = self.backend.sampling_rate
        pause = np.zeros(int(PAUSE_SECONDS * rate), dtype=np.float32)
        parts: list[npt.NDArray[np.float32]] = []
        cuda = [torch.device(self.ctx.device).index or 0] if self.ctx.device.startswith("cuda") else []
        for chunk in chunks:
            job.checkpoint()
            with torch.random.fork_rng(devices=cuda):
                torch.manual_seed(SEED)  # per chunk: a sentence sounds the same wherever it appears
                samples = self.backend.synthesize(chunk, params.description)
            parts.extend([pause, samples] if parts else [samples])
        return AudioResponse(audio=MediaURL(url=wav_data_url(np.concatenate(parts), rate)))
