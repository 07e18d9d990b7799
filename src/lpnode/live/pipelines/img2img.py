"""``img2img``: one-step image-to-image diffusion on every frame, StreamDiffusion's idea at toy scale.

Each frame is encoded by the VAE, noised to the timestep ``strength`` picks (with noise fixed per seed, so
consecutive frames stay alike), denoised by one UNet prediction of the clean latent, and decoded. The
default checkpoint is ``lpnode/tiny-image-to-image``: the real Stable Diffusion 1.5 architecture shrunk to
random weights (built into the models dir on first use), so the output is coloured noise shaped by the
input, at several frames per second on a CPU. Any SD1.5-architecture checkpoint in the models dir works
via the ``model_id`` param (a distilled one-step model such as ``stabilityai/sd-turbo`` gives real images).

A prompt, strength or seed change applies from the next frame; a ``model_id`` change returns a reload
Task, so the runner shows its loading overlay meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lpnode.live.pipeline import Pipeline, VideoFrame, VideoOutput
from lpnode.live.pipelines.img2img_params import TINY_MODEL_ID, Img2ImgParams
from lpnode.logs import log_event

log = logging.getLogger("lpnode.live.img2img")


def _models_dir() -> Path:
    from lpnode.runner.config import DEFAULT_MODEL_DIR

    raw = os.environ.get("MODEL_DIR", "")
    return Path(raw).expanduser() if raw else DEFAULT_MODEL_DIR


@dataclass
class _Model:
    model_id: str
    vae: Any
    unet: Any
    text_encoder: Any
    tokenizer: Any
    alphas_cumprod: Any
    device: str


def _load(model_id: str) -> _Model:
    import diffusers
    import transformers

    from lpnode.runner.device import select_device
    from lpnode.runner.libraries import quiet_model_libraries

    quiet_model_libraries()
    models_dir = _models_dir()
    if model_id == TINY_MODEL_ID:
        from lpnode.runner import tiny

        tiny.build(models_dir, "image-to-image")
    device = select_device(os.environ.get("RUNNER_DEVICE", ""))
    offline = os.environ.get("HF_HUB_OFFLINE", "1").strip() not in {"0", "false"}
    common: dict[str, Any] = {"cache_dir": models_dir, "local_files_only": offline}
    d: Any = diffusers
    t: Any = transformers
    vae = d.AutoencoderKL.from_pretrained(model_id, subfolder="vae", **common).to(device).eval()
    unet = d.UNet2DConditionModel.from_pretrained(model_id, subfolder="unet", **common).to(device).eval()
    text_encoder = t.CLIPTextModel.from_pretrained(model_id, subfolder="text_encoder", **common).to(device).eval()
    tokenizer = t.CLIPTokenizer.from_pretrained(model_id, subfolder="tokenizer", **common)
    scheduler = d.DDIMScheduler.from_pretrained(model_id, subfolder="scheduler", **common)
    return _Model(model_id, vae, unet, text_encoder, tokenizer, scheduler.alphas_cumprod.to(device), device)


class Img2Img(Pipeline):
    params_cls = Img2ImgParams

    def __init__(self) -> None:
        super().__init__()
        self._model: _Model | None = None
        self._params = Img2ImgParams()
        self._embeds: Any = None
        self._noise: dict[tuple[int, int, int], Any] = {}
        self._inputs: asyncio.Queue[tuple[VideoFrame, str]] = asyncio.Queue(maxsize=1)
        self._outputs: asyncio.Queue[VideoOutput | Exception] = asyncio.Queue(maxsize=1)
        self._worker: asyncio.Task[None] | None = None

    @classmethod
    def prepare_models(cls) -> None:
        from lpnode.runner import tiny

        tiny.build(_models_dir(), "image-to-image")

    async def initialize(self, **params: Any) -> None:
        self._params = Img2ImgParams(**params)
        self._model = await asyncio.to_thread(_load, self._params.model_id)
        await asyncio.to_thread(self._encode_prompt)
        self._worker = asyncio.create_task(self._work())

    async def put_video_frame(self, frame: VideoFrame, request_id: str) -> None:
        if self._inputs.full():  # the newest frame wins: latency over completeness
            self._inputs.get_nowait()
        self._inputs.put_nowait((frame, request_id))

    async def get_processed_video_frame(self) -> VideoOutput:
        item = await self._outputs.get()
        if isinstance(item, Exception):
            raise item  # reported by the runner as this frame's error; the next frames go on
        return item

    async def update_params(self, **params: Any) -> asyncio.Task[None] | None:
        new = Img2ImgParams(**params)
        old, self._params = self._params, new
        if new.model_id != old.model_id:
            return asyncio.create_task(self._reload(new.model_id))
        if new.prompt != old.prompt:
            await asyncio.to_thread(self._encode_prompt)
        return None

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()

    async def _reload(self, model_id: str) -> None:
        log_event(log, "loading checkpoint", model_id=model_id)
        self._model = await asyncio.to_thread(_load, model_id)
        self._noise.clear()
        await asyncio.to_thread(self._encode_prompt)

    async def _work(self) -> None:
        while True:
            frame, request_id = await self._inputs.get()
            item: VideoOutput | Exception
            try:
                item = VideoOutput(frame.replace_tensor(await asyncio.to_thread(self._infer, frame)), request_id)
            except Exception as exc:
                item = exc
            if self._outputs.full():
                self._outputs.get_nowait()
            self._outputs.put_nowait(item)

    def _encode_prompt(self) -> None:
        import torch

        model = self._model
        if model is None:
            return
        ids = model.tokenizer(
            [self._params.prompt],
            padding="max_length",
            max_length=model.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids.to(model.device)
        with torch.inference_mode():
            self._embeds = model.text_encoder(ids)[0]

    def _infer(self, frame: VideoFrame) -> Any:
        import torch

        model = self._model
        if model is None or self._embeds is None:
            return frame.tensor
        params = self._params
        with torch.inference_mode():
            image = frame.tensor.to(model.device).permute(0, 3, 1, 2) * 2 - 1
            scale = model.vae.config.scaling_factor
            latents = model.vae.encode(image).latent_dist.mean * scale
            step = int(params.strength * (len(model.alphas_cumprod) - 1))
            alpha = model.alphas_cumprod[step]
            noise = self._fixed_noise(latents.shape, params.seed)
            noisy = alpha.sqrt() * latents + (1 - alpha).sqrt() * noise
            eps = model.unet(noisy, step, encoder_hidden_states=self._embeds).sample
            clean = (noisy - (1 - alpha).sqrt() * eps) / alpha.sqrt()
            out = model.vae.decode(clean / scale).sample
            return ((out + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1).float().cpu()

    def _fixed_noise(self, shape: Any, seed: int) -> Any:
        import torch

        key = (seed, int(shape[2]), int(shape[3]))
        if key not in self._noise:
            generator = torch.Generator().manual_seed(seed)
            device = self._model.device if self._model is not None else "cpu"
            self._noise = {key: torch.randn(tuple(shape), generator=generator).to(device)}
        return self._noise[key]
