"""aiModels.json entries naming custom pipelines: by class, by an installed package's name, or at a url."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pytest

from custom_pipelines.installed import declare_pipelines
from lpnode.orchestrator import AIModelsError, load_ai_models, parse_ai_models
from lpnode.orchestrator.pool import ProcessSettings, RunnerSpec
from lpnode.orchestrator.pool.process import ProcessBackend

WORD_COUNT = "custom_pipelines.text_stats:WordCountPipeline"


def problems_of(entries: list[object], *, load_classes: bool = True) -> list[str]:
    with pytest.raises(AIModelsError) as caught:
        parse_ai_models(json.dumps(entries), load_classes=load_classes)
    return caught.value.problems


def test_an_entry_may_name_a_class_and_leave_out_the_model_id() -> None:
    entries = [
        {"pipeline": "word-count", "pipeline_class": WORD_COUNT, "warm": True, "capacity": 2, "price_per_unit": 3},
        {"pipeline": "text-to-image", "model_id": "stabilityai/sd-turbo"},
    ]
    (custom, builtin), warnings = parse_ai_models(json.dumps(entries))
    assert warnings == []
    assert (custom.pipeline, custom.model_id, custom.pipeline_class) == ("word-count", "word-count", WORD_COUNT)
    assert (custom.warm, custom.capacity, custom.price_per_unit, custom.custom) == (True, 2, Fraction(3), True)
    assert not builtin.custom and builtin.pipeline_class == ""


def test_a_class_that_cannot_be_loaded_names_the_entry_and_the_fix() -> None:
    problems = problems_of(
        [
            {"pipeline": "word-count", "pipeline_class": "custom_pipelines.text_stat:WordCountPipeline"},
            {"pipeline": "helper", "model_id": "m/n", "pipeline_class": "custom_pipelines.not_pipelines:Helper"},
            {"pipeline": "upscale", "model_id": "a/b", "pipeline_class": WORD_COUNT},
            {"pipeline": "Word Count", "pipeline_class": WORD_COUNT},
            {"pipeline": "tally"},
            {"pipeline": "text-to-imag", "model_id": "a/b"},
            {"pipeline": "tally", "pipeline_class": "my_pipes"},
        ]
    )
    assert problems == [
        "aiModels.json entry 1 (word-count): pipeline class 'custom_pipelines.text_stat:WordCountPipeline': "
        "no module named 'custom_pipelines.text_stat'; install the package that provides it, or add its "
        "directory to PYTHONPATH",
        "aiModels.json entry 2 (helper, \"m/n\"): pipeline class 'custom_pipelines.not_pipelines:Helper' names "
        "class Helper, not a pipeline class: it must subclass lpnode.runner.pipelines.BatchPipeline",
        'aiModels.json entry 3 (upscale, "a/b"): pipeline_class cannot replace the built-in upscale pipeline; give '
        'the custom pipeline a name of its own, e.g. "pipeline": "my-upscale"',
        "aiModels.json entry 4 (Word Count): pipeline 'Word Count' cannot be a route: use lower-case letters, "
        "digits and dashes, e.g. edge-detect",
        "aiModels.json entry 5 (tally): pipeline 'tally' is not a Livepeer AI pipeline nor one an installed "
        "package declares; choose one of text-to-image, image-to-image, image-to-video, upscale, audio-to-text, "
        "segment-anything-2, llm, image-to-text, live-video-to-video, text-to-speech, or name the class that "
        'serves it: "pipeline_class": "module:Class"',
        "aiModels.json entry 6 (text-to-imag, \"a/b\"): pipeline 'text-to-imag' is not a Livepeer AI pipeline; "
        "did you mean 'text-to-image'? choose one of text-to-image, image-to-image, image-to-video, upscale, "
        "audio-to-text, segment-anything-2, llm, image-to-text, live-video-to-video, text-to-speech",
        'aiModels.json entry 7 (tally): pipeline_class must be written module:Class, got "my_pipes"',
    ]


def test_an_installed_package_may_provide_the_class(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(declare_pipelines(tmp_path, "my-pipes", {"tally": WORD_COUNT})))
    (config,), _ = parse_ai_models(json.dumps([{"pipeline": "tally", "model_id": "en", "warm": True}]))
    assert (config.pipeline, config.model_id, config.pipeline_class, config.custom) == ("tally", "en", "", True)
    (inline,) = load_ai_models("tally:en:true")[0]
    assert (inline.pipeline, inline.model_id, inline.warm) == ("tally", "en", True)


def test_a_package_declaring_a_built_in_name_is_a_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(declare_pipelines(tmp_path, "squatter", {"upscale": WORD_COUNT})))
    _, warnings = parse_ai_models(json.dumps([{"pipeline": "upscale", "model_id": "a/b"}]))
    assert warnings == [
        f"aiModels.json: installed package squatter declares a pipeline named 'upscale' ({WORD_COUNT}); "
        "the built-in upscale pipeline is served"
    ]


def test_classes_are_not_imported_for_runners_that_hold_their_own_code() -> None:
    entries = [
        {"pipeline": "in-image", "pipeline_class": "pkg_only_in_the_image.mod:Cls", "warm": True},
        {"pipeline": "remote", "model_id": "m", "url": "http://10.0.0.5:9000"},
    ]
    in_image, remote = (
        parse_ai_models(json.dumps(entries[:1]), load_classes=False)[0] + parse_ai_models(json.dumps(entries[1:]))[0]
    )
    assert in_image.pipeline_class == "pkg_only_in_the_image.mod:Cls" and in_image.model_id == "in-image"
    assert remote.external and remote.custom
    assert problems_of(entries[:1]) == [
        "aiModels.json entry 1 (in-image): pipeline class 'pkg_only_in_the_image.mod:Cls': no module named "
        "'pkg_only_in_the_image.mod'; install the package that provides it, or add its directory to PYTHONPATH"
    ]


def test_one_name_served_by_two_classes_is_refused() -> None:
    problems = problems_of(
        [
            {"pipeline": "counts", "model_id": "a", "pipeline_class": WORD_COUNT},
            {"pipeline": "counts", "model_id": "b", "pipeline_class": "lpnode_example_pipelines.edges:EdgeDetect"},
        ],
        load_classes=False,
    )
    assert problems == [
        f"aiModels.json: counts is served by two different classes ({WORD_COUNT} and "
        "lpnode_example_pipelines.edges:EdgeDetect); keep one, or give each its own pipeline name"
    ]


def test_a_runner_process_is_told_its_class(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIPELINE_CLASS", "leaked.from:Orchestrator")
    backend = ProcessBackend(ProcessSettings(models_dir=tmp_path), tmp_path)
    custom = backend.runner_env(RunnerSpec("word-count", "word-count", slot=0, pipeline_class=WORD_COUNT), 9000)
    assert (custom["PIPELINE"], custom["PIPELINE_CLASS"], custom["MODEL_ID"]) == (
        "word-count",
        WORD_COUNT,
        "word-count",
    )
    builtin = backend.runner_env(RunnerSpec("upscale", "a/b", slot=0), 8300)
    assert "PIPELINE_CLASS" not in builtin
