"""The ai-runner environment contract and CLI overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from lpnode import __version__
from lpnode.errors import ConfigError
from lpnode.runner.config import config_from_env


def test_reads_the_ai_runner_environment() -> None:
    config = config_from_env(
        {
            "PIPELINE": "upscale",
            "MODEL_ID": "stabilityai/stable-diffusion-x4-upscaler",
            "MODEL_DIR": "/models",
            "AUTH_TOKEN": "t",
            "VERSION": "0.14.1",
            "SFAST": "true",
            "DEEPCACHE": "false",
            "UNRELATED": "x",
        }
    )
    assert (config.pipeline, config.model_id, config.model_dir) == (
        "upscale",
        "stabilityai/stable-diffusion-x4-upscaler",
        Path("/models"),
    )
    assert config.auth_token == "t" and config.version == "0.14.1"
    assert dict(config.optimization_flags) == {"SFAST": "true", "DEEPCACHE": "false"}
    assert config.flag("SFAST") and not config.flag("DEEPCACHE") and not config.flag("TORCH_COMPILE")
    assert (config.host, config.port, config.max_in_flight, config.max_queue) == ("127.0.0.1", 8000, 0, 4)


def test_flags_win_over_the_environment_and_merge_optimization_flags() -> None:
    config = config_from_env(
        {"PIPELINE": "upscale", "MODEL_ID": "a/b", "PORT": "9000", "SFAST": "true"},
        pipeline="text-to-image",
        port=8100,
        optimization_flags={"BFLOAT16": "1"},
        model_id=None,
    )
    assert (config.pipeline, config.model_id, config.port) == ("text-to-image", "a/b", 8100)
    assert dict(config.optimization_flags) == {"SFAST": "true", "BFLOAT16": "1"}
    assert config.version == __version__


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MODEL_ID": "a/b"}, "no pipeline given"),
        ({"PIPELINE": "upscale"}, "no model given"),
        ({"PIPELINE": "upscale", "MODEL_ID": "a/b", "PORT": "http"}, "PORT must be an integer, got 'http'"),
        ({"PIPELINE": "upscale", "MODEL_ID": "a/b", "RUNNER_MAX_IN_FLIGHT": "0"}, "must be at least 1"),
        ({"PIPELINE": "upscale", "MODEL_ID": "a/b", "PORT": "70000"}, "port must be between 1 and 65535"),
    ],
)
def test_unusable_settings_are_one_clear_error(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_env(env)


def test_the_runner_the_models_commands_and_the_orchestrator_share_one_default_models_dir(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from lpnode.cli import build_parser
    from lpnode.orchestrator.command import settings_from_args
    from lpnode.runner.store import models_dir_default

    monkeypatch.delenv("MODEL_DIR", raising=False)
    default = Path("~/.lpnode/models").expanduser()
    runner = config_from_env({"PIPELINE": "upscale", "MODEL_ID": "a/b"}).model_dir
    args = build_parser().parse_args(["orchestrator", "--ai-models", "text-to-image:lpnode/tiny-text-to-image:true"])
    assert runner == models_dir_default() == settings_from_args(args).models_dir == default
    monkeypatch.setenv("MODEL_DIR", "/models")  # the ai-runner contract still wins
    assert models_dir_default() == Path("/models")
