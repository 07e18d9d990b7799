"""What `lpnode models pull --ai-models` fetches for an aiModels.json, and how a runner's partial health reads."""

from __future__ import annotations

import json

from lpnode.orchestrator.ai_models import parse_ai_models
from lpnode.orchestrator.model_pull import wanted_models
from lpnode.schemas import HealthCheck

CHECKER = "CompVis/stable-diffusion-safety-checker"


def plan(entries: list[dict[str, object]], checker: str = CHECKER) -> tuple[list[tuple[str, str]], list[str]]:
    configs, _ = parse_ai_models(json.dumps(entries), load_classes=False)
    wanted, skipped = wanted_models(configs, checker)
    return [(w.model_id, w.why) for w in wanted], skipped


def test_image_pipelines_bring_the_safety_checker_once_after_their_first_model() -> None:
    wanted, skipped = plan(
        [
            {"pipeline": "audio-to-text", "model_id": "openai/whisper-large-v3"},
            {"pipeline": "text-to-image", "model_id": "stabilityai/sd-turbo", "warm": True},
            {"pipeline": "image-to-image", "model_id": "stabilityai/sd-turbo"},
            {"pipeline": "upscale", "model_id": "stabilityai/stable-diffusion-x4-upscaler"},
        ]
    )
    assert wanted == [
        ("openai/whisper-large-v3", "audio-to-text"),
        ("stabilityai/sd-turbo", "text-to-image, image-to-image"),
        (CHECKER, "safety checker"),
        ("stabilityai/stable-diffusion-x4-upscaler", "upscale"),
    ]
    assert skipped == []


def test_entries_that_keep_no_files_here_are_skipped_with_the_reason() -> None:
    wanted, skipped = plan(
        [
            {"pipeline": "text-to-image", "model_id": "a/b", "url": "http://t2i:8000"},
            {"pipeline": "live-video-to-video", "model_id": "comfyui", "warm": True},
            {"pipeline": "llm", "model_id": "meta-llama/x", "optimization_flags": {"LLM_UPSTREAM_URL": "http://o:1"}},
            {"pipeline": "my-echo", "pipeline_class": "pkg.mod:Echo"},
        ]
    )
    assert wanted == []  # an external text-to-image runner loads its own checker
    assert skipped == [
        "text-to-image a/b: served by the external runner at http://t2i:8000",
        "live-video-to-video comfyui: a live pipeline: its runner prepares its own models",
        "llm meta-llama/x: forwarded to http://o:1",
        "my-echo my-echo: a custom pipeline whose model_id is not a Hugging Face repo id",
    ]


def test_a_custom_pipeline_with_a_repo_id_is_fetched_and_the_checker_can_be_another() -> None:
    wanted, _ = plan(
        [{"pipeline": "my-upscaler", "pipeline_class": "pkg.mod:Up", "model_id": "acme/up"},
         {"pipeline": "image-to-video", "model_id": "acme/svd"}],
        checker="acme/checker",
    )  # fmt: skip
    assert wanted == [("acme/up", "my-upscaler"), ("acme/svd", "image-to-video"), ("acme/checker", "safety checker")]


def test_a_healthy_runner_answers_exactly_ai_runners_health_and_a_degraded_one_adds_warnings() -> None:
    assert HealthCheck(status="IDLE").model_dump(mode="json") == {"status": "IDLE"}
    degraded = HealthCheck(status="OK", warnings=["Safety checker unavailable: ..."])
    assert json.loads(degraded.model_dump_json()) == {"status": "OK", "warnings": ["Safety checker unavailable: ..."]}
