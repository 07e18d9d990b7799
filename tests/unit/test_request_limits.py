"""What one request may ask of a pipeline: every limit refuses the value just over it with a 400 that names the
field, the limit and the value, at the gateway and at the runner alike (the registry's ``precheck``); huge
integers are 400s, never a model run; the operator changes the limits with ``LPNODE_LIMITS``."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.testclient import TestClient

from lpnode.errors import BadRequestError, ConfigError, JobError, PayloadTooLargeError
from lpnode.pipelines import BATCH_PIPELINES, spec
from lpnode.runner.pipelines import Job, pipeline_class
from lpnode.runner.pipelines.base import BatchPipeline, LoadContext
from lpnode.schemas import (
    AudioToTextForm,
    ImageToImageForm,
    ImageToTextForm,
    ImageToVideoForm,
    LLMMessage,
    LLMRequest,
    TextToImageParams,
    TextToSpeechParams,
    UpscaleForm,
    limits,
)
from lpnode.schemas.limits import APPLIES, DEFAULTS, ENV_VAR, Limits


@pytest.fixture(autouse=True)
def no_operator_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)


def png(width: int = 64, height: int = 64) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "red").save(buffer, format="PNG")
    return buffer.getvalue()


def user(content: str = "hi") -> LLMMessage:
    return LLMMessage(role="user", content=content)


def refusal(pipeline: str, params: BaseModel) -> JobError:
    with pytest.raises(JobError) as refused:
        spec(pipeline).precheck(params, {})
    return refused.value


# pipeline, limit, a request with the limit's value in one field, that field's name.
Case = tuple[str, str, Callable[[int], BaseModel], str]
T2I, I2I, I2V, TTS = "text-to-image", "image-to-image", "image-to-video", "text-to-speech"
STEPS, COUNT = "num_inference_steps", "num_images_per_prompt"
Text, ImageForm, VideoForm = TextToImageParams, ImageToImageForm, ImageToVideoForm
CASES: list[Case] = [
    (T2I, "max_steps", lambda n: Text(prompt="x", num_inference_steps=n), STEPS),
    (T2I, "max_width", lambda n: Text(prompt="x", width=n, height=8), "width"),
    (T2I, "max_height", lambda n: Text(prompt="x", width=8, height=n), "height"),
    (T2I, "max_images", lambda n: Text(prompt="x", num_images_per_prompt=n), COUNT),
    (T2I, "max_prompt_chars", lambda n: Text(prompt="x" * n), "prompt"),
    (T2I, "max_prompt_chars", lambda n: Text(prompt="x", negative_prompt="x" * n), "negative_prompt"),
    (I2I, "max_steps", lambda n: ImageForm(prompt="x", image=png(), num_inference_steps=n), STEPS),
    (I2I, "max_images", lambda n: ImageForm(prompt="x", image=png(), num_images_per_prompt=n), COUNT),
    (I2I, "max_prompt_chars", lambda n: ImageForm(prompt="x" * n, image=png()), "prompt"),
    (I2V, "max_steps", lambda n: VideoForm(image=png(), num_inference_steps=n), STEPS),
    (I2V, "max_width", lambda n: VideoForm(image=png(), width=n, height=8), "width"),
    (I2V, "max_height", lambda n: VideoForm(image=png(), width=8, height=n), "height"),
    ("upscale", "max_steps", lambda n: UpscaleForm(prompt="x", image=png(), num_inference_steps=n), STEPS),
    ("upscale", "max_prompt_chars", lambda n: UpscaleForm(prompt="x" * n, image=png()), "prompt"),
    ("llm", "max_tokens", lambda n: LLMRequest(messages=[user()], max_tokens=n), "max_tokens"),
    ("llm", "max_messages", lambda n: LLMRequest(messages=[user()] * n), "the number of messages"),
    ("image-to-text", "max_prompt_chars", lambda n: ImageToTextForm(image=png(), prompt="x" * n), "prompt"),
    (TTS, "max_description_chars", lambda n: TextToSpeechParams(text="hi", description="x" * n), "description"),
]


@pytest.mark.parametrize(("pipeline", "limit", "request_of", "field"), CASES)
def test_a_value_at_the_limit_passes_and_one_over_is_refused_naming_field_limit_and_value(
    pipeline: str, limit: str, request_of: Callable[[int], BaseModel], field: str
) -> None:
    ceiling = getattr(DEFAULTS[pipeline], limit)
    assert limit in APPLIES[pipeline]
    spec(pipeline).precheck(request_of(ceiling), {})
    refused = refusal(pipeline, request_of(ceiling + 1))
    assert refused.status_code == 400
    if limit.endswith("_chars"):
        assert refused.message == (
            f"{field} is {ceiling + 1} characters long; the limit on this node is {ceiling} characters."
        )
    else:
        assert refused.message == f"{field} must be at most {ceiling} on this node, got {ceiling + 1}."


def test_the_pixels_of_a_generated_image_or_video_frame_are_limited() -> None:
    spec(T2I).precheck(TextToImageParams(prompt="x", width=2048, height=2048), {})
    video = refusal(I2V, ImageToVideoForm(image=png(), width=1024, height=1032))
    assert video.message == "width x height must be at most 1048576 pixels on this node, got 1024x1032 = 1056768."


def test_the_length_of_a_conversation_and_of_a_text_to_speak_are_limited() -> None:
    conversation = refusal("llm", LLMRequest(messages=[user("x" * 100_000), user("x" * 100_001)]))
    assert conversation.message == "The messages hold 200001 characters; the limit on this node is 200000 characters."
    speech = refusal(TTS, TextToSpeechParams(text="x" * 10_001))
    assert speech.message.startswith("Text is 10001 characters long; the limit is 10000.")


def test_uploads_are_limited_by_bytes_pixels_and_audio_length() -> None:
    big = refusal(I2I, ImageToImageForm(prompt="x", image=png(2048, 2056)))
    assert big.message == "The uploaded image is 2048x2056 pixels; the limit on this node is 4194304 pixels."
    upscale = refusal("upscale", UpscaleForm(prompt="x", image=png(1024, 1032)))
    assert upscale.message == "The uploaded image is 1024x1032 pixels; the limit on this node is 1048576 pixels."
    audio = refusal("audio-to-text", AudioToTextForm(audio=b"x", metadata='{"duration": 3601}'))
    assert audio.message.startswith("Audio longer than 3600 s is not accepted; this audio is 3601.0 s long.")


def test_an_upload_over_its_byte_limit_is_a_413_naming_its_size(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        ENV_VAR, json.dumps({"image-to-text": {"max_upload_bytes": 100}, "audio-to-text": {"max_upload_bytes": 10}})
    )
    image = png()
    refused = refusal("image-to-text", ImageToTextForm(image=image))
    assert isinstance(refused, PayloadTooLargeError) and refused.status_code == 413
    assert refused.message == f"The uploaded image is {len(image)} bytes; the limit on this node is 100 bytes."
    audio = refusal("audio-to-text", AudioToTextForm(audio=b"x" * 11))
    assert audio.message == "The uploaded audio is 11 bytes; the limit on this node is 10 bytes."


def over(field: str, limit: int, value: int) -> str:
    return f"{field} must be at most {limit} on this node, got {value}."


@pytest.mark.parametrize(
    ("pipeline", "params", "message"),
    [
        (T2I, Text(prompt="x", width=2**64), over("width", 2048, 2**64)),
        (T2I, Text(prompt="x", height=2**64 + 8), over("height", 2048, 2**64 + 8)),
        (T2I, Text(prompt="x", num_inference_steps=2147483648), over(STEPS, 150, 2147483648)),
        (T2I, Text(prompt="x", num_images_per_prompt=2**63), over(COUNT, 4, 2**63)),
        (I2I, ImageForm(prompt="x", image=png(), num_inference_steps=2**64), over(STEPS, 150, 2**64)),
        (I2V, VideoForm(image=png(), width=2**64, height=8), over("width", 2048, 2**64)),
        ("upscale", UpscaleForm(prompt="x", image=png(), num_inference_steps=2**31), over(STEPS, 150, 2**31)),
        ("llm", LLMRequest(messages=[user()], max_tokens=2**64), over("max_tokens", 4096, 2**64)),
        (
            T2I,
            Text(prompt="x" * 5_000_000),
            "prompt is 5000000 characters long; the limit on this node is 2000 characters.",
        ),
    ],
)
def test_huge_values_are_400s_naming_the_limit(pipeline: str, params: BaseModel, message: str) -> None:
    refused = refusal(pipeline, params)
    assert (refused.status_code, refused.message) == (400, message)


def test_an_image_too_small_for_a_diffusion_model_is_refused_before_it_runs() -> None:
    for pipeline, params in [
        (I2I, ImageToImageForm(prompt="x", image=png(1, 1))),
        (I2V, ImageToVideoForm(image=png(1, 1))),
        ("upscale", UpscaleForm(prompt="x", image=png(64, 7))),
    ]:
        refused = refusal(pipeline, params)
        size = "64x7" if pipeline == "upscale" else "1x1"
        assert refused.message == (
            f"The uploaded image is {size} pixels; this pipeline needs at least 8 pixels on each side."
        ), pipeline
    spec(I2I).precheck(ImageToImageForm(prompt="x", image=png(8, 8)), {})
    spec("image-to-text").precheck(ImageToTextForm(image=png(1, 1)), {})  # captioning takes any size


def test_an_unreadable_image_is_named_without_python_internals() -> None:
    for params in (ImageToImageForm(prompt="x", image=b"definitely not an image"), ImageToTextForm(image=b"junk")):
        refused = refusal(spec_name(params), params)
        assert refused.message == (
            "The uploaded image is not a readable image: its format is not recognised. "
            "Send a PNG, JPEG, WebP, GIF, BMP or TIFF file."
        )
        assert "<" not in refused.message and "0x" not in refused.message
    with pytest.raises(BadRequestError) as units:
        spec("upscale").units(UpscaleForm(prompt="x", image=png()), {"image": b"junk"})
    assert "BytesIO" not in units.value.message


def spec_name(params: BaseModel) -> str:
    return next(name for name in BATCH_PIPELINES if spec(name).params is type(params))


class _Unloaded(BatchPipeline[Any]):
    def run(self, params: Any, job: Job) -> BaseModel:
        raise AssertionError("never runs here")


def test_the_runner_applies_the_same_limits_before_it_queues_a_job() -> None:
    served = type("Served", (_Unloaded,), {"route": pipeline_class(T2I).route})
    runner_pipeline = served(LoadContext(model_id="m", model_dir=Path("."), device="cpu"))
    with pytest.raises(
        BadRequestError, match=r"^num_inference_steps must be at most 150 on this node, got 2147483648\.$"
    ):
        runner_pipeline.check(TextToImageParams(prompt="x", num_inference_steps=2147483648))


# -- the operator's limits ------------------------------------------------------------------------------
def test_lpnode_limits_changes_the_named_limits_and_keeps_the_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, '{"text-to-image": {"max_steps": 60, "max_images": 2}}')
    assert spec(T2I).limits == Limits(max_steps=60, max_images=2)
    assert spec(I2I).limits == DEFAULTS[I2I]
    spec(T2I).precheck(TextToImageParams(prompt="x", num_inference_steps=60, num_images_per_prompt=2), {})
    refused = refusal(T2I, TextToImageParams(prompt="x", num_inference_steps=61))
    assert refused.message == "num_inference_steps must be at most 60 on this node, got 61."
    monkeypatch.delenv(ENV_VAR)
    spec(T2I).precheck(TextToImageParams(prompt="x", num_inference_steps=61), {})


def test_lpnode_limits_may_name_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "limits.json"
    path.write_text('{"llm": {"max_tokens": 512}}')
    monkeypatch.setenv(ENV_VAR, str(path))
    assert spec("llm").limits.max_tokens == 512
    assert limits.configured()["llm"].max_messages == DEFAULTS["llm"].max_messages


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("{nope", "LPNODE_LIMITS is not valid JSON"),
        ("[1]", 'LPNODE_LIMITS must be a JSON object of pipelines, e.g. {"text-to-image": {"max_steps": 60}}'),
        ('{"text-to-imag": {}}', "LPNODE_LIMITS: unknown pipeline 'text-to-imag'; use one of: text-to-image, "),
        ('{"llm": 5}', "LPNODE_LIMITS: llm must be a JSON object of limits"),
        (
            '{"text-to-image": {"max_tokens": 5}}',
            "LPNODE_LIMITS: text-to-image has no limit 'max_tokens'; its limits are: max_steps, max_width, ",
        ),
        ('{"llm": {"max_tokens": 0}}', "LPNODE_LIMITS: llm.max_tokens must be a positive integer, got 0"),
        ('{"llm": {"max_tokens": "9"}}', "LPNODE_LIMITS: llm.max_tokens must be a positive integer, got '9'"),
        ('{"llm": {"max_tokens": true}}', "LPNODE_LIMITS: llm.max_tokens must be a positive integer, got True"),
        ("/nonexistent/limits.json", "LPNODE_LIMITS=/nonexistent/limits.json: cannot read the limits file"),
    ],
)  # fmt: skip
def test_an_unusable_lpnode_limits_is_a_config_error_saying_what_is_wrong(value: str, message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        limits.from_env({ENV_VAR: value})
    assert str(refused.value).startswith(message)


def test_a_runner_with_an_unusable_lpnode_limits_does_not_start() -> None:
    from lpnode.runner.config import config_from_env

    env = {"PIPELINE": T2I, "MODEL_ID": "m", ENV_VAR: '{"text-to-image": {"max_step": 5}}'}
    with pytest.raises(ConfigError, match="text-to-image has no limit 'max_step'"):
        config_from_env(env)


def test_every_batch_pipeline_has_limits() -> None:
    assert tuple(APPLIES) == BATCH_PIPELINES == tuple(DEFAULTS)
    assert all(set(APPLIES[name]) >= {"max_upload_bytes"} for name in BATCH_PIPELINES if spec(name).file_field)


# -- the gateway ----------------------------------------------------------------------------------------
class _NoOrchestrator:
    """A forwarder that fails the test if a request gets past the gateway's checks."""

    async def run(self, *args: Any) -> Any:
        raise AssertionError("the request reached the forwarder")


def test_the_gateway_refuses_a_huge_request_before_any_orchestrator(monkeypatch: pytest.MonkeyPatch) -> None:
    from lpnode.gateway.api import PublicApi
    from lpnode.gateway.job_wrapper import JobWrapper

    monkeypatch.setenv(ENV_VAR, '{"text-to-image": {"max_steps": 40}}')
    api = PublicApi(_NoOrchestrator(), lambda pipeline: "org/model", JobWrapper(), timeout=5.0)  # type: ignore[arg-type]
    app = Starlette(routes=[Route(f"/{name}", api.handle, methods=["POST"]) for name in BATCH_PIPELINES])
    with TestClient(app) as client:
        steps = client.post("/text-to-image", json={"prompt": "x", "num_inference_steps": 2147483648})
        width = client.post("/text-to-image", json={"prompt": "x", "width": 2**64})
        configured = client.post("/text-to-image", json={"prompt": "x", "num_inference_steps": 41})
        tiny = client.post("/image-to-video", files={"image": ("in.png", png(1, 1), "image/png")})
    assert steps.status_code == width.status_code == configured.status_code == tiny.status_code == 400
    assert steps.json()["error"]["message"] == "num_inference_steps must be at most 40 on this node, got 2147483648."
    assert width.json()["error"]["message"] == f"width must be at most 2048 on this node, got {2**64}."
    assert configured.json()["error"]["message"] == "num_inference_steps must be at most 40 on this node, got 41."
    assert tiny.json()["error"]["message"] == (
        "The uploaded image is 1x1 pixels; this pipeline needs at least 8 pixels on each side."
    )


def test_reading_the_limits_again_only_when_the_variable_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, '{"llm": {"max_tokens": 7}}')
    first = limits.configured()
    assert limits.configured() is first and first["llm"].max_tokens == 7
    monkeypatch.setenv(ENV_VAR, '{"llm": {"max_tokens": 8}}')
    assert limits.configured()["llm"].max_tokens == 8


# -- image-to-image: inputs that leave the model no denoising step ------------------------------------
def served_img2img(turbo: bool = False, lightning: int | None = None, pix2pix: bool = False) -> Any:
    """The runner's image-to-image pipeline as a model of each kind would configure it, without loading one."""
    from lpnode.runner.pipelines.image_to_image import ImageToImagePipeline

    served = object.__new__(ImageToImagePipeline)
    served.turbo, served.lightning_steps, served.pix2pix = turbo, lightning, pix2pix
    return served


@pytest.mark.parametrize(
    ("steps", "strength", "message"),
    [
        (1, 0.8, "got 1 x 0.8 = 0.8."),
        (4, 0.2, "got 4 x 0.2 = 0.8."),
        (0, 0.01, "got 50 x 0.01 = 0.5."),  # 0 steps: the library's default of 50
        (3, 0.0, "got 3 x 0.0 = 0."),
    ],
)
def test_img2img_that_would_run_no_denoising_step_is_refused_before_the_queue(
    steps: int, strength: float, message: str
) -> None:
    with pytest.raises(BadRequestError) as refused:
        served_img2img().check(ImageForm(prompt="x", image=png(), num_inference_steps=steps, strength=strength))
    assert refused.value.message == (
        f"num_inference_steps x strength must be at least 1, so that one denoising step runs; {message} "
        "Raise num_inference_steps or strength."
    )


def test_img2img_models_that_choose_their_own_steps_are_not_refused() -> None:
    one_step = ImageForm(prompt="x", image=png(), num_inference_steps=1, strength=0.5)
    served_img2img(turbo=True).check(one_step)  # turbo raises strength to 1/steps
    served_img2img(pix2pix=True).check(one_step)  # instruct-pix2pix takes no strength
    served_img2img(lightning=4).check(one_step.model_copy(update={"strength": 0.25}))
    with pytest.raises(BadRequestError, match=r"got 2 x 0\.3 = 0\.6"):
        served_img2img(lightning=2).check(one_step.model_copy(update={"strength": 0.3}))
    served_img2img().check(one_step.model_copy(update={"num_inference_steps": 2}))
