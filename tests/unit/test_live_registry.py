"""Live pipelines by name or class, their params, and ai-runner's import spellings."""

from __future__ import annotations

import pytest

from lpnode.errors import BadRequestError, ConfigError
from lpnode.live.pipeline import BaseParams, PipelineSpec, VideoOutput, default_pipeline_name
from lpnode.live.registry import builtin_names, parse_params, resolve_spec


def test_builtin_pipelines_resolve_by_name() -> None:
    assert builtin_names() == ["noop", "img2img"]
    assert resolve_spec("noop").pipeline_cls == "lpnode.live.pipelines.noop:Noop"
    with pytest.raises(ConfigError, match="unknown live pipeline 'comfyui'; choose one of: noop, img2img"):
        resolve_spec("comfyui")
    with pytest.raises(ConfigError, match="no live pipeline given"):
        resolve_spec("")


def test_a_class_of_your_own_resolves_with_its_params_class() -> None:
    spec = resolve_spec("", "lpnode.live.pipelines.noop:Noop")
    assert spec.name == "noop" and spec.params_cls == "lpnode.live.pipelines.noop:NoopParams"
    assert resolve_spec("mine", "lpnode.live.pipelines.noop:Noop").name == "mine"
    with pytest.raises(ConfigError, match="must be written module:Class"):
        resolve_spec("", "lpnode.live.pipelines.noop")
    with pytest.raises(ConfigError, match="not a pipeline class"):
        resolve_spec("", "lpnode.live.pipeline:BaseParams")


def test_spec_names_default_like_ai_runner() -> None:
    assert default_pipeline_name("pkg.mod:StreamDiffusionPipeline") == "streamdiffusion"
    assert PipelineSpec(pipeline_cls="scope_runner.pipeline:Scope").name == "scope"


def test_params_are_validated_by_the_pipeline_params_class() -> None:
    base = BaseParams()
    assert base.get_output_resolution() == (512, 512) and base.show_reloading_frame
    noop = resolve_spec("noop")
    assert parse_params(noop, {"width": 64, "height": 128, "extra": 1}).get_output_resolution() == (64, 128)
    with pytest.raises(BadRequestError, match="width"):
        parse_params(noop, {"width": 7})
    img = resolve_spec("img2img")
    assert parse_params(img, {}).get_output_resolution() == (128, 128)
    with pytest.raises(BadRequestError, match="strength"):
        parse_params(img, {"strength": 3})
    with pytest.raises(BadRequestError, match="width"):
        parse_params(PipelineSpec(pipeline_cls="x:Y"), {"width": 64})  # ai-runner's BaseParams: 384 to 1024


def test_ai_runner_import_spellings() -> None:
    from lpnode.live.pipelines import BaseParams as B
    from lpnode.live.pipelines import Pipeline, start_app
    from lpnode.live.pipelines import PipelineSpec as P
    from lpnode.live.trickle import VideoFrame
    from lpnode.live.trickle import VideoOutput as V

    assert B is BaseParams and P is PipelineSpec and V is VideoOutput
    assert callable(start_app) and Pipeline.__abstractmethods__ and VideoFrame is not None
