"""aiModels.json: go-livepeer's format read exactly, every problem reported at once, one line each."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pytest

from lpnode.orchestrator import AIModelsError, load_ai_models, parse_ai_models

UPSTREAM_EXAMPLE = """[
 {"pipeline":"text-to-image","model_id":"ByteDance/SDXL-Lightning","warm":true,"price_per_unit":4768371,
  "pixels_per_unit":1,"optimization_flags":{"SFAST":true}},
 {"pipeline":"llm","model_id":"meta-llama/Meta-Llama-3.1-8B-Instruct","url":"http://llm:8000","token":"secret",
  "capacity":4,"price_per_unit":0.18,"currency":"USD","pixels_per_unit":1000000},
 {"pipeline":"live-video-to-video","model_id":"comfyui","warm":true,"capacity":2}
]"""


def problems_of(entries: list[object]) -> list[str]:
    with pytest.raises(AIModelsError) as caught:
        parse_ai_models(json.dumps(entries))
    return caught.value.problems


def test_reads_a_go_livepeer_file_with_every_field() -> None:
    configs, warnings = parse_ai_models(UPSTREAM_EXAMPLE)
    assert warnings == []
    lightning, llm, live = configs
    assert (lightning.pipeline, lightning.model_id, lightning.warm, lightning.capacity) == (
        "text-to-image",
        "ByteDance/SDXL-Lightning",
        True,
        1,
    )
    assert dict(lightning.optimization_flags) == {"SFAST": "true"}
    assert lightning.price_per_unit == 4768371 and lightning.price_per_pixel == 4768371
    assert llm.external and llm.url == "http://llm:8000" and llm.token == "secret" and llm.capacity == 4
    assert llm.price_per_unit == Fraction(18, 100) and llm.currency == "USD"
    assert llm.price_per_pixel == Fraction(18, 100_000_000)  # exact, no float rounding
    assert (live.pipeline, live.capacity, live.gateway) == ("live-video-to-video", 2, "default")


def test_empty_array_is_valid() -> None:
    assert parse_ai_models("[]") == ([], [])


def test_every_problem_is_one_line_naming_entry_field_and_fix() -> None:
    problems = problems_of(
        [
            {"pipeline": "text-to-imag", "model_id": "a/b", "price_per_unit": "abc"},
            {"pipeline": "llm", "model_id": "x/y", "warm": "true", "capacity": 1.5},
            {"model_id": "m/n", "pixels_per_unit": 0},
            {"pipeline": "upscale", "model_id": "", "url": "llm:8000", "gateway": "someone"},
            {"pipeline": "upscale", "model_id": "q/r", "optimization_flags": {"SFAST": 1}, "currency": "$"},
            7,
        ]
    )
    assert problems == [
        "aiModels.json entry 1 (text-to-imag, \"a/b\"): pipeline 'text-to-imag' is not a Livepeer AI pipeline; "
        "did you mean 'text-to-image'? choose one of text-to-image, image-to-image, image-to-video, upscale, "
        "audio-to-text, segment-anything-2, llm, image-to-text, live-video-to-video, text-to-speech",
        'aiModels.json entry 1 (text-to-imag, "a/b"): price_per_unit must be a number, got "abc"; '
        "write it without quotes, e.g. 0.5",
        'aiModels.json entry 2 (llm, "x/y"): warm must be true or false (without quotes), got "true"',
        'aiModels.json entry 2 (llm, "x/y"): capacity must be a whole number of concurrent requests (1 or more), '
        "got 1.5",
        'aiModels.json entry 3 ("m/n"): pipeline is required: one of text-to-image, image-to-image, '
        "image-to-video, upscale, audio-to-text, segment-anything-2, llm, image-to-text, live-video-to-video, "
        "text-to-speech",
        'aiModels.json entry 3 ("m/n"): pixels_per_unit must be a whole number of units, 1 or more, got 0',
        'aiModels.json entry 4 (upscale, ""): model_id is required, e.g. "stabilityai/sd-turbo"',
        'aiModels.json entry 4 (upscale, ""): url must be an http(s) URL of a running runner, got "llm:8000"',
        'aiModels.json entry 4 (upscale, ""): gateway must be "default" or a gateway\'s 0x address, got "someone"',
        'aiModels.json entry 5 (upscale, "q/r"): optimization_flags.SFAST must be true, false or a string, got 1',
        'aiModels.json entry 5 (upscale, "q/r"): currency must be a currency code such as "wei", "eth" or "USD", '
        'got "$"',
        "aiModels.json entry 6: must be a JSON object with pipeline and model_id, got 7",
    ]


def test_a_price_with_its_currency_in_a_string_says_how_to_split_it() -> None:
    (problem,) = problems_of([{"pipeline": "llm", "model_id": "a/b", "price_per_unit": "0.5e-3USD"}])
    assert problem.endswith('write 0.5e-3 without quotes and put "USD" in "currency"')


def test_the_same_model_warm_and_cold_is_refused() -> None:
    (problem,) = problems_of(
        [
            {"pipeline": "upscale", "model_id": "m/n", "warm": True},
            {"pipeline": "upscale", "model_id": "m/n"},
        ]
    )
    assert problem == (
        'aiModels.json: upscale "m/n" is configured both warm and cold; keep one of the two '
        "(capacities of entries with the same warm flag add up)"
    )


def test_unknown_fields_and_cold_optimisation_flags_are_warnings() -> None:
    configs, warnings = parse_ai_models(
        json.dumps(
            [
                {"pipeline": "upscale", "model_id": "m/n", "capcity": 2, "optimization_flags": {"DEEPCACHE": False}},
            ]
        )
    )
    assert configs[0].capacity == 1
    assert warnings == [
        "aiModels.json entry 1 (upscale, \"m/n\"): unknown field 'capcity' ignored (did you mean 'capacity'?)",
        'aiModels.json entry 1 (upscale, "m/n"): optimization_flags apply to warm models only (set "warm": true)',
    ]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            '[{"pipeline": "llm",}]',
            "aiModels.json: not valid JSON: Expecting property name enclosed in double quotes at line 1, column 21",
        ),
        ('{"pipeline": "llm"}', "aiModels.json: must be a JSON array of model entries, e.g. "),
    ],
)
def test_bad_json_is_one_line(text: str, problem: str) -> None:
    with pytest.raises(AIModelsError) as caught:
        parse_ai_models(text)
    assert caught.value.problems[0].startswith(problem)


def test_inline_form_and_file_paths(tmp_path: Path) -> None:
    configs, _ = load_ai_models("text-to-image:stabilityai/sd-turbo:true, llm:meta-llama/x:0")
    assert [(c.pipeline, c.model_id, c.warm) for c in configs] == [
        ("text-to-image", "stabilityai/sd-turbo", True),
        ("llm", "meta-llama/x", False),
    ]
    with pytest.raises(AIModelsError, match="expected <pipeline>:<model_id>:<warm>"):
        load_ai_models("text-to-image:stabilityai/sd-turbo")
    with pytest.raises(AIModelsError, match="no such file"):
        load_ai_models(str(tmp_path / "aiModels.json"))
    path = tmp_path / "models.json"
    path.write_text(UPSTREAM_EXAMPLE)
    assert len(load_ai_models(str(path))[0]) == 3
