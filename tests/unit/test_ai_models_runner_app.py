"""aiModels.json ``runner_app``: how an entry asks for a runner app, what is refused, and the runner's environment
that makes it one (the variables ``lpnode runner`` reads for ``--live-runner-orch``/``--orch-secret``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from lpnode.errors import ConfigError
from lpnode.orchestrator import AIModelsError, parse_ai_models
from lpnode.orchestrator.ai_models import RunnerAppOption
from lpnode.orchestrator.pool import ProcessBackend, ProcessSettings, RunnerSpec
from lpnode.orchestrator.pool.runner_app_env import RunnerAppHost, runner_app_env, runner_app_host
from lpnode.runner.config import config_from_env

MODEL = "lpnode/tiny-text-to-image"


def problems_of(entries: Sequence[object]) -> list[str]:
    with pytest.raises(AIModelsError) as caught:
        parse_ai_models(json.dumps(entries))
    return caught.value.problems


def test_runner_app_true_is_a_warm_entry_served_as_an_app() -> None:
    (config,), warnings = parse_ai_models(
        json.dumps([{"pipeline": "text-to-image", "model_id": MODEL, "runner_app": True}])
    )
    assert warnings == []
    assert config.runner_app == RunnerAppOption() and config.warm  # an app is offered only while its runner runs


def test_runner_app_object_names_and_prices_the_app() -> None:
    entry = {"pipeline": "text-to-image", "model_id": MODEL, "runner_app": {"name": "acme/images", "price": "0.5/hour"}}
    (config,), _ = parse_ai_models(json.dumps([entry]))
    assert config.runner_app == RunnerAppOption(name="acme/images", price="0.5/hour")


def test_runner_app_false_is_a_classic_entry() -> None:
    (config,), _ = parse_ai_models(json.dumps([{"pipeline": "text-to-image", "model_id": MODEL, "runner_app": False}]))
    assert config.runner_app is None and not config.warm


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("yes", 'runner_app must be true, false or {"name": ..., "price": "0.5/hour"}, got "yes"'),
        ({"price": "abc"}, "runner_app.price must be a positive number of US dollars"),
        ({"price": "1/minute"}, "runner_app.price unit must be hour, 720p, fixed"),
        ({"name": " padded "}, "runner_app.name must be a string without surrounding spaces"),
        ({"capacity": 2}, 'runner_app.capacity is not known; use "name" and "price"'),
    ],
)
def test_a_bad_runner_app_value_is_one_line_naming_the_entry(value: object, expected: str) -> None:
    (problem,) = problems_of([{"pipeline": "text-to-image", "model_id": MODEL, "runner_app": value}])
    assert problem.startswith(f'aiModels.json entry 1 (text-to-image, "{MODEL}"): ') and expected in problem


def test_an_external_runner_cannot_be_made_an_app_by_the_orchestrator() -> None:
    (problem,) = problems_of([{"pipeline": "llm", "model_id": "m", "url": "http://llm:8000", "runner_app": True}])
    assert "runner_app applies to runners this orchestrator starts" in problem and "--live-runner-orch" in problem


def test_entries_of_one_model_must_agree_on_runner_app() -> None:
    entries = [
        {"pipeline": "text-to-image", "model_id": MODEL, "warm": True, "runner_app": True},
        {"pipeline": "text-to-image", "model_id": MODEL, "warm": True},
    ]
    (problem,) = problems_of(entries)
    assert "different runner_app values" in problem


def test_runner_app_entries_need_an_orchestrator_hosting_runner_apps() -> None:
    (config,), _ = parse_ai_models(json.dumps([{"pipeline": "text-to-image", "model_id": MODEL, "runner_app": True}]))
    args = {"orch_secret": "s3cret", "runner_addr": "", "service_url": "https://127.0.0.1:8935"}
    with pytest.raises(ConfigError, match="start the orchestrator with -useLiveRunners and -orchSecret"):
        runner_app_host([config], use_live_runners=False, **args)
    with pytest.raises(ConfigError, match="-useLiveRunners and -orchSecret"):
        runner_app_host([config], use_live_runners=True, **{**args, "orch_secret": ""})
    host = runner_app_host([config], use_live_runners=True, **args)
    assert host == RunnerAppHost("https://127.0.0.1:8935", "s3cret") and "s3cret" not in repr(host)
    runner_addr = runner_app_host([config], use_live_runners=True, **{**args, "runner_addr": "http://10.0.0.2:8935/"})
    assert runner_addr is not None and runner_addr.url == "http://10.0.0.2:8935"  # -liveRunnerAddr wins
    assert runner_app_host([], use_live_runners=False, **args) is None


def test_the_runner_of_an_app_entry_reads_its_registration_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A classic runner must not register anywhere, even when the orchestrator's own environment says so.
    monkeypatch.setenv("LIVE_RUNNER_ORCH", "https://elsewhere:8935")
    monkeypatch.setenv("ORCH_SECRET", "not-this-one")
    host = RunnerAppHost("https://127.0.0.1:8935", "s3cret")
    backend = ProcessBackend(ProcessSettings(models_dir=tmp_path, runner_apps=host), tmp_path / "logs")
    classic = backend.runner_env(RunnerSpec("text-to-image", MODEL, slot=0), 9000)
    assert "LIVE_RUNNER_ORCH" not in classic and "ORCH_SECRET" not in classic
    assert config_from_env(classic).app_orchestrator == ""

    spec = RunnerSpec("text-to-image", MODEL, slot=0, runner_app=RunnerAppOption("acme/images", "0.5/hour"))
    env = backend.runner_env(spec, 9000)
    assert {k: env[k] for k in runner_app_env(spec, host)} == {
        "LIVE_RUNNER_ORCH": "https://127.0.0.1:8935",
        "ORCH_SECRET": "s3cret",
        "LIVE_RUNNER_APP_NAME": "acme/images",
        "LIVE_RUNNER_APP_PRICE": "0.5/hour",
    }
    config = config_from_env(env)
    assert (config.app_orchestrator, config.app_orch_secret) == ("https://127.0.0.1:8935", "s3cret")
    assert (config.app_name, config.app_price) == ("acme/images", "0.5/hour")
    with pytest.raises(ConfigError, match="does not host runner apps"):
        runner_app_env(spec, None)
