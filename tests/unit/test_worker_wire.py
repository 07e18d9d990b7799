"""The remote AI worker's HTTP wire format: job data, multipart/mixed results (ours and go-livepeer's
layout), the form a worker rebuilds for its runner, and how form fields get their JSON types."""

from __future__ import annotations

import base64
import json

import pytest

from lpnode.orchestrator.worker_jobs import typed_fields
from lpnode.protocol.ai_worker import (
    JobData,
    ResultFile,
    build_multipart,
    build_result,
    parse_multipart,
    parse_result,
)
from lpnode.worker.job_runner import _result_upload, _runner_request

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) + b"\r\n--not-a-boundary\r\n" * 3


def test_job_data_round_trips_and_bad_data_says_what_is_wrong() -> None:
    job = JobData("https://o:8935/stream/abc/0123456789abcdef.tempfile", {"prompt": "x", "image": ""})
    assert json.loads(job.encode()) == {"input_url": job.input_url, "request": job.request}
    assert JobData.decode(job.encode()) == job
    assert JobData.decode(b'{"request": {"a": 1}}') == JobData("", {"a": 1})
    with pytest.raises(ValueError, match="not JSON"):
        JobData.decode(b"{")
    with pytest.raises(ValueError, match="must be"):
        JobData.decode(b'{"input_url": ""}')


def test_result_with_binary_files_round_trips() -> None:
    files = [ResultFile("aaaa.png", "image/png", PNG), ResultFile("bbbb.wav", "audio/wav", b"RIFF" + b"\x00" * 40)]
    answer = json.dumps({"images": [{"url": "aaaa.png"}], "audio": {"url": "bbbb.wav"}}).encode()
    content_type, body = build_result(answer, files)
    assert content_type.startswith("multipart/mixed; boundary=")
    result = parse_result(content_type, body)
    assert result.answer == answer
    assert result.files == {f.name: f for f in files}


def test_go_livepeer_layout_json_first_is_read_too() -> None:
    parts = [
        ({"Content-Type": "application/json", "Content-Length": "2"}, b"{}"),
        ({"Content-Type": "image/png", "Content-Disposition": "attachment; filename=abcd12340.png"}, PNG),
    ]
    content_type, body = build_multipart(parts, boundary="d1f0c0ffee")
    result = parse_result(content_type, body)
    assert result.answer == b"{}" and result.files["abcd12340.png"].data == PNG


@pytest.mark.parametrize(
    ("content_type", "body", "problem"),
    [
        ("multipart/mixed", b"", "boundary"),
        ("application/json", b"{}", "boundary"),
        (
            "multipart/mixed; boundary=b",
            b"--b\r\nContent-Type: image/png\r\n\r\nxx\r\n--b--\r\n",
            "no application/json",
        ),
        ("multipart/mixed; boundary=b", b"--b\r\nContent-Type: application/json\r\n\r\n{}", "truncated"),
    ],
    ids=["no-boundary", "not-multipart", "no-json-part", "truncated"],
)
def test_unreadable_results_are_value_errors(content_type: str, body: bytes, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_result(content_type, body)


def test_worker_turns_data_urls_into_parts_named_in_the_answer() -> None:
    data_url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    runner_answer = json.dumps({"images": [{"url": data_url, "seed": 1, "nsfw": False}] * 2}).encode()
    content_type, body = _result_upload("text-to-image", runner_answer)
    result = parse_result(content_type, body)
    images = json.loads(result.answer)["images"]
    assert len(result.files) == 2 and {i["url"] for i in images} == set(result.files)
    assert all(f.content_type == "image/png" and f.data == PNG for f in result.files.values())
    assert images[0]["seed"] == 1 and images[0]["nsfw"] is False


def test_worker_sends_file_pipelines_to_its_runner_as_a_form() -> None:
    request = {"prompt": "p", "model_id": "m", "strength": 0.5, "safety_check": False, "image": "", "seed": None}
    body, content_type = _runner_request("image-to-image", request, PNG)
    parts = {part.name: part for part in parse_multipart(content_type, body)}
    assert set(parts) == {"prompt", "model_id", "strength", "safety_check", "image"}
    assert (parts["strength"].data, parts["safety_check"].data) == (b"0.5", b"false")
    assert parts["image"].data == PNG and parts["image"].filename == "input"
    json_body, json_type = _runner_request("text-to-image", {"prompt": "p"}, None)
    assert (json.loads(json_body), json_type) == ({"prompt": "p"}, "application/json")


def test_form_fields_get_the_schema_types_go_workers_decode() -> None:
    fields = {"num_inference_steps": "4", "strength": "0.5", "safety_check": "false", "prompt": "7", "odd": "x"}
    typed = typed_fields("image-to-image", fields | {"seed": "12"})
    assert typed == {
        "num_inference_steps": 4,
        "strength": 0.5,
        "safety_check": False,
        "prompt": "7",
        "odd": "x",
        "seed": 12,
    }
    assert typed_fields("image-to-image", {"seed": "soon", "strength": "lots"}) == {"seed": "soon", "strength": "lots"}
