"""Pipelines named by import path or entry point: what loads, what each mistake says, and the route a
custom class gets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from custom_pipelines.installed import declare_pipelines
from custom_pipelines.text_stats import WordCountParams, WordCountPipeline, WordCountResult
from lpnode.errors import ConfigError
from lpnode.runner.pipelines import (
    BatchPipeline,
    CustomPipeline,
    Job,
    default_name,
    installed_pipelines,
    load_pipeline_class,
    served_pipeline,
)
from lpnode.runner.pipelines.custom import route_for
from lpnode.runner.pipelines.text_to_image import TextToImagePipeline

EXAMPLE_SRC = Path(__file__).parents[2] / "examples" / "custom-pipeline" / "src"


def test_an_import_path_loads_the_class() -> None:
    assert load_pipeline_class("custom_pipelines.text_stats:WordCountPipeline", BatchPipeline) is WordCountPipeline


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (
            "custom_pipelines.nowhere:X",
            "pipeline class 'custom_pipelines.nowhere:X': no module named 'custom_pipelines.nowhere'; "
            "install the package that provides it, or add its directory to PYTHONPATH",
        ),
        (
            "custom_pipelines.text_stats:WordCount",
            "pipeline class 'custom_pipelines.text_stats:WordCount': module 'custom_pipelines.text_stats' has no "
            "attribute 'WordCount'; pipeline classes there: WordCountPipeline",
        ),
        (
            "custom_pipelines.not_pipelines:Helper",
            "pipeline class 'custom_pipelines.not_pipelines:Helper' names class Helper, not a pipeline class: "
            "it must subclass lpnode.runner.pipelines.BatchPipeline",
        ),
        (
            "custom_pipelines.not_pipelines:ANSWER",
            "pipeline class 'custom_pipelines.not_pipelines:ANSWER' names a value of type int, not a pipeline "
            "class: it must subclass lpnode.runner.pipelines.BatchPipeline",
        ),
        (
            "custom_pipelines.broken:Anything",
            "pipeline class 'custom_pipelines.broken:Anything': importing 'custom_pipelines.broken' failed: "
            "RuntimeError: cannot reach the licence server",
        ),
        (
            "custom_pipelines.missing_dependency:Anything",
            "pipeline class 'custom_pipelines.missing_dependency:Anything': importing "
            "'custom_pipelines.missing_dependency' failed: ModuleNotFoundError: No module named "
            "'lpnode_no_such_dependency'",
        ),
        (
            "custom_pipelines.not_pipelines:Unfinished",
            "pipeline class 'custom_pipelines.not_pipelines:Unfinished' is abstract: define run on it",
        ),
        ("custom_pipelines.text_stats:", "pipeline class 'custom_pipelines.text_stats:' must be written module:Class"),
    ],
)
def test_each_bad_target_is_one_line_saying_what_to_do(target: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_pipeline_class(target, BatchPipeline)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_the_base_class_is_whatever_the_caller_needs() -> None:
    class LivePipeline:  # stands for the live pipeline interface, which has no relation to BatchPipeline
        pass

    with pytest.raises(ConfigError, match=r"it must subclass .*LivePipeline"):
        load_pipeline_class("custom_pipelines.text_stats:WordCountPipeline", LivePipeline)


def test_an_entry_point_name_loads_the_class_it_declares(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLE_SRC))
    site = declare_pipelines(tmp_path, "my-pipelines", {"edges": "lpnode_example_pipelines.edges:EdgeDetect"})
    monkeypatch.syspath_prepend(str(site))
    assert [i.distribution for i in installed_pipelines()["edges"]] == ["my-pipelines"]
    served = served_pipeline("edges")
    assert (served.name, served.cls.__name__, served.route.path, served.builtin) == (
        "edges",
        "EdgeDetect",
        "/edges",
        False,
    )
    assert served.route.multipart  # its params have a file field


def test_unknown_names_list_built_in_and_installed_pipelines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(declare_pipelines(tmp_path, "p", {"word-count": "custom_pipelines.text_stats:X"})))
    with pytest.raises(ConfigError) as caught:
        served_pipeline("word-cont")
    assert str(caught.value) == (
        "unknown pipeline 'word-cont'; choose one of: text-to-image, image-to-image, image-to-video, upscale, "
        "audio-to-text, segment-anything-2, llm, image-to-text, text-to-speech; installed: word-count; "
        "or serve a class of your own with --pipeline-class module:Class"
    )


def test_built_in_names_win_over_installed_ones_and_the_clash_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = "custom_pipelines.text_stats:WordCountPipeline"
    monkeypatch.syspath_prepend(str(declare_pipelines(tmp_path, "squatter", {"upscale": target})))
    served = served_pipeline("upscale")
    assert served.builtin and served.cls.__name__ == "UpscalePipeline"
    assert served.notes == (
        f"installed package squatter declares a pipeline named 'upscale' ({target}); the built-in one is served",
    )


def test_two_packages_declaring_one_name_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    declare_pipelines(tmp_path, "first", {"count": "custom_pipelines.text_stats:WordCountPipeline"})
    declare_pipelines(tmp_path, "second", {"count": "lpnode_example_pipelines.edges:EdgeDetect"})
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match="pipeline 'count' is declared by more than one installed package"):
        served_pipeline("count")


def test_a_class_takes_its_route_name_from_name_or_class_name() -> None:
    assert default_name(WordCountPipeline) == "word-count"

    class HTTPThingPipeline(WordCountPipeline):
        pass

    class Named(WordCountPipeline):
        name = "tally"

    assert default_name(HTTPThingPipeline) == "http-thing"
    assert default_name(Named) == "tally"
    assert served_pipeline("", "custom_pipelines.text_stats:WordCountPipeline").name == "word-count"
    assert served_pipeline("counts", "custom_pipelines.text_stats:WordCountPipeline").route.path == "/counts"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("text-to-image", "'text-to-image' is a built-in pipeline; serve custom_pipelines.text_stats:WordCountPipeline "
         "under its own name, e.g. --pipeline my-text-to-image"),
        ("health", "pipeline name 'health' is a path the runner serves itself; choose another name"),
        ("Word Count", "pipeline name 'Word Count' cannot be a route: use lower-case letters, digits and dashes"),
    ],
)  # fmt: skip
def test_route_names_that_cannot_work_are_refused(name: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        served_pipeline(name, "custom_pipelines.text_stats:WordCountPipeline")
    assert str(caught.value).startswith(message)


def test_a_custom_route_is_built_from_params_response_and_docstring() -> None:
    route = route_for(WordCountPipeline, "word-count")
    assert (route.path, route.operation_id, route.sdk_name) == ("/word-count", "genWordCount", "wordCount")
    assert (route.params, route.response, route.multipart) == (WordCountParams, WordCountResult, False)
    assert route.summary == "Count the words of a text."
    assert route.default_error == "Word-count pipeline error."


def test_a_batch_pipeline_with_its_own_route_keeps_it_under_a_new_name() -> None:
    route = route_for(TextToImagePipeline, "my-images")
    assert route.path == "/my-images" and route.params is TextToImagePipeline.route.params


def test_a_custom_class_without_params_is_refused() -> None:
    class Result(BaseModel):
        ok: bool

    class NoParams(CustomPipeline[Any]):
        response = Result

        def run(self, params: Any, job: Job) -> BaseModel:
            return Result(ok=True)

    with pytest.raises(ConfigError, match="must set params to a pydantic model class"):
        route_for(NoParams, "no-params")
