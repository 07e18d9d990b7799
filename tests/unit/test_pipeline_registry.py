"""The pipeline registry (``lpnode.pipelines``): one spec per network pipeline with go-livepeer's facts, billing
units as go-livepeer counts them, and the runner's cheap checks, which refuse the same requests with the same
words whether a gateway or a runner runs them."""

from __future__ import annotations

import io
import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from pydantic import BaseModel

from lpnode.errors import BadRequestError, ConfigError, LoraLoadingError
from lpnode.pipelines import (
    BATCH_PIPELINES,
    FALLBACK_PORT_BASE,
    NETWORK_PIPELINES,
    PIPELINES,
    OutputUnit,
    PipelineSpec,
    Results,
    audio_units,
    model_field,
    spec,
)
from lpnode.protocol.capabilities import PIPELINE_CAPABILITIES, Capability
from lpnode.runner.pipelines import Job, pipeline_class, pipeline_names
from lpnode.runner.pipelines.base import BatchPipeline, LoadContext
from lpnode.schemas import (
    AudioToTextForm,
    ImageToImageForm,
    ImageToTextForm,
    ImageToVideoForm,
    LLMMessage,
    LLMRequest,
    SegmentAnything2Form,
    TextToImageParams,
    TextToSpeechParams,
    UpscaleForm,
)

# go-livepeer's core/capabilities.go numbers and its per-pipeline runner port bases.
GO_LIVEPEER = {
    "text-to-image": (27, 8000),
    "image-to-image": (28, 8100),
    "image-to-video": (29, 8200),
    "upscale": (30, 8300),
    "audio-to-text": (31, 8400),
    "segment-anything-2": (32, 8600),
    "llm": (33, 8500),
    "image-to-text": (34, 8700),
    "live-video-to-video": (35, 8900),
    "text-to-speech": (36, 8800),
}


def png(width: int = 64, height: int = 32) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "red").save(buffer, format="PNG")
    return buffer.getvalue()


def test_every_network_pipeline_has_a_spec_in_upstream_route_order() -> None:
    assert tuple(GO_LIVEPEER) == NETWORK_PIPELINES
    assert tuple(PIPELINES) == NETWORK_PIPELINES
    assert tuple(p for p in NETWORK_PIPELINES if p != "live-video-to-video") == BATCH_PIPELINES
    assert all(isinstance(s, PipelineSpec) and s.name == name for name, s in PIPELINES.items())
    assert not spec("live-video-to-video").batch and spec("live-video-to-video").params is None


def test_capability_numbers_and_port_bases_are_go_livepeers() -> None:
    assert {name: (s.capability, s.port_base) for name, s in PIPELINES.items()} == GO_LIVEPEER
    assert dict(PIPELINE_CAPABILITIES) == {name: Capability(cap) for name, (cap, _) in GO_LIVEPEER.items()}


def test_port_bases_are_distinct_blocks_of_100_below_the_fallback() -> None:
    bases = sorted(s.port_base for s in PIPELINES.values())
    assert len(set(bases)) == len(bases)
    assert all(b % 100 == 0 for b in bases)
    assert all(later - earlier >= 100 for earlier, later in itertools.pairwise(bases))
    assert bases[-1] + 100 <= FALLBACK_PORT_BASE == 9000


def test_the_runner_serves_every_batch_pipeline_with_the_registrys_request_and_answer() -> None:
    assert tuple(pipeline_names()) == BATCH_PIPELINES
    for name in BATCH_PIPELINES:
        route = pipeline_class(name).route
        s = spec(name)
        assert (route.params, route.response, route.multipart, route.model_id_field) == (
            s.params,
            s.response,
            s.multipart,
            s.model_field,
        ), name


def test_model_field_is_model_for_llm_only() -> None:
    assert model_field("llm") == "model"
    assert [model_field(p) for p in NETWORK_PIPELINES if p != "llm"] == ["model_id"] * 9
    assert model_field("my-custom-pipeline") == "model_id"


def test_an_unknown_pipeline_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="unknown pipeline 'text-to-imag'; use one of: text-to-image, image-to-image"):
        spec("text-to-imag")


def test_result_handling_follows_go_livepeer() -> None:
    inline = {name for name, s in PIPELINES.items() if s.asks_inline}
    rehosted = {name for name, s in PIPELINES.items() if s.rehosted}
    assert inline == {"text-to-image", "image-to-image", "upscale", "text-to-speech"}
    assert rehosted == inline | {"image-to-video"}
    assert [name for name, s in PIPELINES.items() if s.results is Results.VIDEO] == ["image-to-video"]


def test_uploads_are_in_the_image_or_audio_field() -> None:
    files = {name: s.file_field for name, s in PIPELINES.items() if s.file_field}
    assert files == {
        "image-to-image": "image",
        "image-to-video": "image",
        "upscale": "image",
        "audio-to-text": "audio",
        "segment-anything-2": "image",
        "image-to-text": "image",
    }


def test_output_units_price_a_typical_output() -> None:
    assert spec("text-to-image").output_unit == OutputUnit("1024×1024 image", 1024 * 1024)
    assert spec("audio-to-text").output_unit.units == 60 * 1000
    assert spec("live-video-to-video").output_unit.units == 1280 * 720 * 30 * 60
    assert all(s.output_unit.units > 0 and s.output_unit.label for s in PIPELINES.values())


@pytest.mark.parametrize(
    ("pipeline", "params", "fields", "units"),
    [
        ("text-to-image", TextToImageParams(prompt="x", width=64, height=32, num_images_per_prompt=3), {}, 64 * 32 * 3),
        ("text-to-image", TextToImageParams(prompt="x"), {}, 1024 * 576),
        (
            "image-to-image",
            ImageToImageForm(prompt="x", image=png()),
            {"image": png(), "num_images_per_prompt": "2"},
            64 * 32 * 2,
        ),
        ("image-to-video", ImageToVideoForm(image=png(), width=64, height=32), {"image": png()}, 64 * 32 * 25),
        ("upscale", UpscaleForm(prompt="x", image=png(16, 8)), {"image": png(16, 8)}, 16 * 8),
        ("audio-to-text", AudioToTextForm(audio=b"RIFF"), {"audio": b"RIFF"}, 0),
        ("segment-anything-2", SegmentAnything2Form(image=png()), {"image": png()}, 64 * 32),
        ("llm", LLMRequest(messages=[LLMMessage(role="user", content="hi")], max_tokens=77), {}, 77),
        ("image-to-text", ImageToTextForm(image=png()), {"image": png()}, 64 * 32),
        ("text-to-speech", TextToSpeechParams(text="hello"), {}, 5000),
    ],
)
def test_units_follow_go_livepeer(pipeline: str, params: BaseModel, fields: dict[str, Any], units: int) -> None:
    assert spec(pipeline).units(params, fields) == units


def test_units_refuse_an_unreadable_upload_and_audio_is_billed_from_the_answer() -> None:
    with pytest.raises(BadRequestError, match="The uploaded image is not a readable image"):
        spec("upscale").units(UpscaleForm(prompt="x", image=b"junk"), {"image": b"junk"})
    assert spec("live-video-to-video").units(TextToImageParams(prompt="x"), {}) == 0
    assert (audio_units("12.7"), audio_units(None), audio_units("soon")) == (12000, 0, 0)


# What the runner answers (tests/integration/test_text_to_image.py, test_image_pipelines.py assert the same).
REFUSED: list[tuple[str, BaseModel, str]] = [
    ("text-to-image", TextToImageParams(prompt=""), "Prompt must be provided."),
    (
        "text-to-image",
        TextToImageParams(prompt="x", width=60),
        "`height` and `width` have to be positive and divisible by 8 but are 576 and 60.",
    ),
    (
        "image-to-video",
        ImageToVideoForm(image=png(), height=60, width=64),
        "`height` and `width` have to be positive and divisible by 8 but are 60 and 64.",
    ),
    (
        "text-to-image",
        TextToImageParams(prompt="x", seed=-1),
        "seed must be between 0 and 9223372036854775806, got -1.",
    ),
    (
        "image-to-image",
        ImageToImageForm(prompt="x", image=png(), seed=2**63 - 2, num_images_per_prompt=2),
        "seed must be between 0 and 9223372036854775805, got 9223372036854775806.",
    ),
    (
        "text-to-image",
        TextToImageParams(prompt="x", num_images_per_prompt=0),
        "num_images_per_prompt must be at least 1.",
    ),
    ("image-to-image", ImageToImageForm(prompt="x", image=png(), strength=1.5), "strength must be between 0 and 1"),
    ("image-to-image", ImageToImageForm(prompt="x", image=b"definitely not"), "The uploaded image is not a readable"),
    ("upscale", UpscaleForm(prompt="x", image=b""), "The uploaded image is empty."),
    ("segment-anything-2", SegmentAnything2Form(image=b"garbage"), "The uploaded image is not a readable image"),
    ("image-to-text", ImageToTextForm(image=b"not an image"), "The uploaded image is not a readable image"),
    ("audio-to-text", AudioToTextForm(audio=b"x", return_timestamps="often"), "return_timestamps must be"),
    (
        "audio-to-text",
        AudioToTextForm(audio=b"x", metadata='{"duration": 7200}'),
        "Audio longer than 3600 s is not accepted; this audio is 7200.0 s long.",
    ),
    ("llm", LLMRequest(messages=[]), "messages must hold at least one message."),
    ("llm", LLMRequest(messages=[LLMMessage(role="robot", content="x")]), "messages[0].role must be one of"),
    ("text-to-speech", TextToSpeechParams(text="  "), "Text input must be provided."),
]


@pytest.mark.parametrize(("pipeline", "params", "message"), REFUSED)
def test_precheck_refuses_what_the_runner_refuses(pipeline: str, params: BaseModel, message: str) -> None:
    with pytest.raises(BadRequestError) as refused:
        spec(pipeline).precheck(params, {})
    assert refused.value.status_code == 400
    assert refused.value.message.startswith(message)


def test_a_bad_lora_field_is_a_lora_error() -> None:
    with pytest.raises(LoraLoadingError, match=r"Too many LoRas provided\. Maximum is 4\."):
        spec("text-to-image").precheck(
            TextToImageParams(prompt="x", loras=json.dumps({f"org/lora-{i}": 1 for i in range(5)})), {}
        )
    with pytest.raises(LoraLoadingError, match="Unable to parse"):
        spec("image-to-image").precheck(ImageToImageForm(prompt="x", image=png(), loras="{"), {})


def test_precheck_passes_good_requests_of_every_batch_pipeline() -> None:
    good: dict[str, BaseModel] = {
        "text-to-image": TextToImageParams(prompt="x", width=64, height=64, seed=1, loras='{"a/b": 1}'),
        "image-to-image": ImageToImageForm(prompt="x", image=png()),
        "image-to-video": ImageToVideoForm(image=png(), width=64, height=64),
        "upscale": UpscaleForm(prompt="x", image=png()),
        "audio-to-text": AudioToTextForm(audio=b"RIFF", metadata='{"duration": 3}'),
        "segment-anything-2": SegmentAnything2Form(image=png(), box="[0, 0, 8, 8]"),
        "llm": LLMRequest(messages=[LLMMessage(role="user", content="hi")]),
        "image-to-text": ImageToTextForm(image=png()),
        "text-to-speech": TextToSpeechParams(text="hello"),
    }
    assert list(good) == list(BATCH_PIPELINES)
    for name, params in good.items():
        spec(name).precheck(params, {})


class _Unloaded(BatchPipeline[Any]):
    """A runner pipeline with a built-in route and no model: its ``check`` is the runner's pre-queue check."""

    def run(self, params: Any, job: Job) -> BaseModel:
        raise AssertionError("never runs here")


@pytest.mark.parametrize(("pipeline", "params", "message"), REFUSED)
def test_the_runner_checks_requests_with_the_same_code(pipeline: str, params: BaseModel, message: str) -> None:
    runner_pipeline = type("Served", (_Unloaded,), {"route": pipeline_class(pipeline).route})
    instance = runner_pipeline(LoadContext(model_id="m", model_dir=Path("."), device="cpu"))
    with pytest.raises(BadRequestError) as refused:
        instance.check(params)
    assert refused.value.message.startswith(message)
