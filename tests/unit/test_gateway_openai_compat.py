"""OpenAI Chat Completions <-> Livepeer llm mapping."""

from __future__ import annotations

import json
from typing import Any

import pytest

from lpnode.errors import BadRequestError
from lpnode.gateway.openai_compat import (
    DEFAULT_MAX_TOKENS,
    DONE,
    ChatRequestError,
    chat_request_to_llm,
    chunk_error,
    include_usage,
    llm_chunk_to_chat,
    llm_response_to_chat,
    models_list,
    openai_error,
    sse,
    usage_chunk,
)
from lpnode.schemas.llm import LLMRequest, LLMResponse

DEFAULT = "meta-llama/Meta-Llama-3.1-8B-Instruct"
USER = {"role": "user", "content": "Hi"}


def _chunk(content: str, finish: str = "", usage: tuple[int, int] = (5, 1)) -> dict[str, Any]:
    return {
        "id": "chatcmpl-abc",
        "model": DEFAULT,
        "created": 1700000000,
        "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)},
        "choices": [
            {"index": 0, "finish_reason": finish, "delta": {"role": "assistant", "content": content}, "message": None}
        ],
    }


def test_minimal_request_maps_to_the_runner_schema_with_defaults() -> None:
    llm = chat_request_to_llm({"messages": [USER]}, DEFAULT)
    assert llm == {
        "model": DEFAULT,
        "model_id": DEFAULT,
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": DEFAULT_MAX_TOKENS,
        "stream": False,
    }
    assert DEFAULT_MAX_TOKENS == 256
    LLMRequest.model_validate(llm)  # extra model_id is ignored by the runner's schema


def test_full_request() -> None:
    body = {
        "model": "Qwen/Qwen2.5-7B-Instruct",
        "messages": [
            {"role": "developer", "content": "Be brief."},
            {"role": "system", "content": [{"type": "text", "text": "Answer"}, {"type": "text", "text": "in French."}]},
            {"role": "user", "content": "Hi", "name": "ann"},
            {"role": "assistant", "content": None},
        ],
        "temperature": 0,
        "top_p": 0.5,
        "top_k": 40,
        "max_tokens": 9,
        "max_completion_tokens": 12,
        "stream": True,
        "stream_options": {"include_usage": True},
        "stop": ["\n\n"],
        "n": 1,
        "seed": 7,
        "tools": [],
        "tool_choice": "none",
        "response_format": {"type": "text"},
    }
    llm = chat_request_to_llm(body, DEFAULT)
    assert llm == {
        "model": "Qwen/Qwen2.5-7B-Instruct",
        "model_id": "Qwen/Qwen2.5-7B-Instruct",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "system", "content": "Answer\nin French."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": ""},
        ],
        "max_tokens": 12,
        "stream": True,
        "temperature": 0.0,
        "top_p": 0.5,
        "top_k": 40,
    }
    assert include_usage(body) is True
    assert include_usage({**body, "stream": False}) is False
    assert include_usage({"messages": [USER]}) is False
    LLMRequest.model_validate(llm)


@pytest.mark.parametrize(
    ("change", "param", "fragment"),
    [
        ({"messages": None}, "messages", "Missing required parameter: 'messages'"),
        ({"messages": []}, "messages", "empty array"),
        ({"messages": "hi"}, "messages", "expected an array, but got a string"),
        ({"messages": [{"role": "user", "content": 3}]}, "messages[0].content", "but got an integer"),
        ({"messages": [{"role": "user"}]}, "messages[0].content", "Missing required parameter"),
        ({"messages": [{"role": "bot", "content": "x"}]}, "messages[0].role", "'bot'"),
        ({"messages": [{"role": "tool", "content": "x", "tool_call_id": "1"}]}, "messages[0]", "not supported"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x"}}]}]},
            "messages[0].content[0]",
            "image input is not supported",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]},
            "messages[0].content[0].type",
            "'input_audio' is not supported",
        ),
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": 1}]}]}, "messages[0].content[0].text", ""),
        ({"model": 5}, "model", "expected a string"),
        ({"temperature": "hot"}, "temperature", "expected a number"),
        ({"temperature": True}, "temperature", "got a boolean"),
        ({"temperature": 2.5}, "temperature", "not between 0 and 2"),
        ({"top_p": 1.5}, "top_p", "not between 0 and 1"),
        ({"top_k": 0}, "top_k", "-1 (all)"),
        ({"max_tokens": 0}, "max_tokens", "at least 1"),
        ({"max_completion_tokens": 1.5}, "max_completion_tokens", "expected an integer"),
        ({"stream": "yes"}, "stream", "expected a boolean"),
        ({"stream_options": {"include_usage": 1}}, "stream_options.include_usage", "expected a boolean"),
        ({"n": 2}, "n", "only one choice"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools", "not supported"),
        ({"functions": [{"name": "f"}]}, "functions", "not supported"),
        ({"response_format": {"type": "json_object"}}, "response_format", "'json_object' is not supported"),
        ({"stop": [1]}, "stop", "a string or an array of strings"),
    ],
)
def test_bad_requests_name_the_field(change: dict[str, Any], param: str, fragment: str) -> None:
    body = {"model": DEFAULT, "messages": [USER], **change}
    with pytest.raises(ChatRequestError) as caught:
        chat_request_to_llm(body, DEFAULT)
    assert isinstance(caught.value, BadRequestError)
    assert caught.value.status_code == 400
    assert caught.value.param == param
    assert fragment in caught.value.message
    assert f"'{param}" in caught.value.message or param.startswith("messages[")


def test_body_must_be_an_object() -> None:
    with pytest.raises(ChatRequestError, match="JSON object"):
        chat_request_to_llm([USER], DEFAULT)  # type: ignore[arg-type]


def test_stop_is_accepted_and_ignored() -> None:
    assert "stop" not in chat_request_to_llm({"messages": [USER], "stop": "END"}, DEFAULT)


def test_non_streamed_response() -> None:
    llm = {
        "id": "abc",
        "model": DEFAULT,
        "created": 1700000000,
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Hello!"}}],
    }
    LLMResponse.model_validate(llm)
    assert llm_response_to_chat(llm) == {
        "id": "chatcmpl-abc",
        "object": "chat.completion",
        "created": 1700000000,
        "model": DEFAULT,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello!"},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
    }
    llm["id"] = "chatcmpl-xyz"
    llm["choices"][0]["finish_reason"] = ""
    chat = llm_response_to_chat(llm)
    assert chat["id"] == "chatcmpl-xyz"
    assert chat["choices"][0]["finish_reason"] == "stop"


def test_response_without_choices_is_an_error() -> None:
    with pytest.raises(ValueError, match="no choices"):
        llm_response_to_chat({"id": "x", "model": "m", "created": 1, "choices": []})


def test_stream_chunks() -> None:
    first = llm_chunk_to_chat(_chunk("Hel"), first=True)
    assert first == {
        "id": "chatcmpl-abc",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": DEFAULT,
        "choices": [
            {"index": 0, "delta": {"role": "assistant", "content": "Hel"}, "finish_reason": None, "logprobs": None}
        ],
    }
    middle = llm_chunk_to_chat(_chunk("lo"), first=False, include_usage=True)
    assert middle["choices"][0]["delta"] == {"content": "lo"}
    assert middle["usage"] is None
    last = _chunk("", "stop", (5, 3))
    final = llm_chunk_to_chat(last, first=False)
    assert final["choices"][0]["delta"] == {}
    assert final["choices"][0]["finish_reason"] == "stop"
    assert "usage" not in final
    assert usage_chunk(last) == {
        "id": "chatcmpl-abc",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": DEFAULT,
        "choices": [],
        "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
    }


def test_stream_error_events() -> None:
    assert chunk_error(_chunk("x")) is None
    assert chunk_error({"error": "CUDA out of memory"}) == "CUDA out of memory"
    assert chunk_error({"error": {"message": "boom"}}) == "boom"
    with pytest.raises(ValueError):
        llm_chunk_to_chat({"error": "boom"}, first=False)


def test_sse_framing() -> None:
    assert sse({"a": "é"}) == 'data: {"a":"é"}\n\n'.encode()
    assert DONE == b"data: [DONE]\n\n"


def test_models_list() -> None:
    assert models_list(["a/b", "c/d", "a/b"]) == {
        "object": "list",
        "data": [
            {"id": "a/b", "object": "model", "created": 0, "owned_by": "livepeer"},
            {"id": "c/d", "object": "model", "created": 0, "owned_by": "livepeer"},
        ],
    }
    assert models_list([], owned_by="me") == {"object": "list", "data": []}


def test_openai_error_shape() -> None:
    assert openai_error("bad", status=400, param="n") == {
        "error": {"message": "bad", "type": "invalid_request_error", "param": "n", "code": None}
    }
    assert openai_error("down", status=503)["error"]["type"] == "server_error"
    assert openai_error("no", status=404, code=404, type_="not_found")["error"] == {
        "message": "no",
        "type": "not_found",
        "param": None,
        "code": "404",
    }
    json.dumps(openai_error("x", status=500))
