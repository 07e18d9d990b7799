"""OpenAI Chat Completions on top of the Livepeer ``llm`` capability: pure request/response mapping.

The gateway accepts ``POST /v1/chat/completions`` and ``GET /v1/models`` in OpenAI's format and runs them as
Livepeer ``llm`` jobs, whose request and response shapes are the runner's (``lpnode.schemas.llm``). The runner
streams ``data: <LLMResponse>`` events with ``choices[0].delta`` and a running ``usage``, ends with a chunk whose
``finish_reason`` is set, then ``data: [DONE]``; a failure after the headers is ``data: {"error": "..."}``.

What the ``llm`` pipeline cannot do is refused with a 400 naming the field (``ChatRequestError``, a
``BadRequestError``) rather than silently dropped: ``n`` > 1, tools and function calling, JSON response formats,
and non-text content parts. ``stop`` is the exception: it is validated and then ignored (the pipeline has no
stop sequences), because many clients send it on every call and would otherwise be unusable.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from starlette.responses import JSONResponse, Response

from lpnode.errors import CANCELLED_STATUS, ChatRequestError, JobCancelledError, JobError

DEFAULT_MAX_TOKENS = 256
"""``max_tokens`` when the client sends none. go-livepeer charges ``max_tokens`` units (not the tokens actually
generated), so this also bounds what an unbounded request costs."""

DONE = b"data: [DONE]\n\n"
"""The event that ends an OpenAI stream."""

_FINISH_REASONS = frozenset({"stop", "length", "tool_calls", "content_filter", "function_call"})
_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
_UNSUPPORTED = ("tools", "functions", "function_call", "tool_choice")


_KINDS = ((bool, "a boolean"), (int, "an integer"), (float, "a number"), (str, "a string"), (list, "an array"))


def _kind(value: object) -> str:
    if value is None:
        return "null"
    kind = next((name for t, name in _KINDS if isinstance(value, t)), None)
    return kind or ("an object" if isinstance(value, Mapping) else type(value).__name__)


def _wrong_type(param: str, expected: str, value: object) -> ChatRequestError:
    return ChatRequestError(f"Invalid type for '{param}': expected {expected}, but got {_kind(value)} instead.", param)


def _integer(body: Mapping[str, Any], param: str) -> int | None:
    value = body.get(param)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise _wrong_type(param, "an integer", value)
    return value


def _number(body: Mapping[str, Any], param: str, high: float) -> float | None:
    value = body.get(param)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise _wrong_type(param, "a number", value)
    if value is not None and not 0 <= value <= high:
        raise ChatRequestError(f"Invalid value for '{param}': {value} is not between 0 and {high:g}.", param)
    return None if value is None else float(value)


def _content(message: Mapping[str, Any], where: str, role: str) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if content is None:
        if role == "assistant":  # an assistant turn may carry only tool calls; those are refused elsewhere
            return ""
        raise ChatRequestError(f"Missing required parameter: '{where}.content'.", f"{where}.content")
    if not isinstance(content, list):
        raise _wrong_type(f"{where}.content", "a string or an array of content parts", content)
    texts = []
    for i, part in enumerate(content):
        param = f"{where}.content[{i}]"
        if not isinstance(part, Mapping):
            raise _wrong_type(param, "an object", part)
        kind = part.get("type")
        if kind == "text":
            text = part.get("text")
            if not isinstance(text, str):
                raise _wrong_type(f"{param}.text", "a string", text)
            texts.append(text)
        elif kind == "image_url":
            raise ChatRequestError(f"Invalid content part '{param}': image input is not supported; send text.", param)
        else:
            raise ChatRequestError(f"Invalid content part '{param}': type {kind!r} is not supported.", f"{param}.type")
    return "\n".join(texts)


def _messages(body: Mapping[str, Any]) -> list[dict[str, str]]:
    messages = body.get("messages")
    if messages is None:
        raise ChatRequestError("Missing required parameter: 'messages'.", "messages")
    if not isinstance(messages, list):
        raise _wrong_type("messages", "an array", messages)
    if not messages:
        raise ChatRequestError("Invalid 'messages': empty array. Expected at least one message.", "messages")
    out = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, Mapping):
            raise _wrong_type(where, "an object", message)
        role = message.get("role")
        if not isinstance(role, str):
            raise _wrong_type(f"{where}.role", "a string", role)
        if role in ("tool", "function") or message.get("tool_calls") or message.get("function_call"):
            raise ChatRequestError(f"Invalid '{where}': tool and function calling are not supported.", where)
        if role not in _ROLES:
            known = ", ".join(_ROLES)
            raise ChatRequestError(f"Invalid value for '{where}.role': {role!r}; use one of {known}.", f"{where}.role")
        out.append({"role": _ROLES[role], "content": _content(message, where, role)})
    return out


def _refuse_unsupported(body: Mapping[str, Any]) -> None:
    for param in _UNSUPPORTED:
        if body.get(param) not in (None, [], "none"):
            raise ChatRequestError(f"Invalid parameter '{param}': tool and function calling are not supported.", param)
    n = _integer(body, "n")
    if n is not None and n != 1:
        raise ChatRequestError(f"Invalid value for 'n': {n}; only one choice per request is supported.", "n")
    response_format = body.get("response_format")
    if response_format is not None:
        if not isinstance(response_format, Mapping):
            raise _wrong_type("response_format", "an object", response_format)
        if (kind := response_format.get("type")) != "text":
            raise ChatRequestError(f"Invalid 'response_format': type {kind!r} is not supported.", "response_format")
    stop = body.get("stop")
    ok = stop is None or isinstance(stop, str) or (isinstance(stop, list) and all(isinstance(s, str) for s in stop))
    if not ok:
        raise _wrong_type("stop", "a string or an array of strings", stop)


def chat_request_to_llm(body: Mapping[str, Any], default_model: str) -> dict[str, Any]:
    """Map an OpenAI chat completion request body to the Livepeer ``llm`` request JSON.

    Returns ``{"model", "model_id", "messages", "max_tokens", "stream"}`` plus ``temperature``, ``top_p`` and
    ``top_k`` when given; the runner's defaults apply to the rest. ``model_id`` equals ``model`` (the gateway
    routes on it); an absent or empty ``model`` becomes ``default_model``.

    Differences from OpenAI: ``developer`` messages become ``system`` ones; text content parts are joined with
    newlines; ``max_completion_tokens`` wins over ``max_tokens`` and both default to ``DEFAULT_MAX_TOKENS``;
    ``top_k`` (a common extension) is passed through; ``stop`` is validated then ignored; other sampling
    options (penalties, ``seed``, ``logprobs``, ``user``, ...) are ignored. Refused with ``ChatRequestError``:
    a body that is not an object, wrongly typed or out-of-range fields, ``n`` other than 1, tools and function
    calling, ``response_format`` other than text, and non-text content parts.
    """
    if not isinstance(body, Mapping):
        raise ChatRequestError("The request body must be a JSON object.")
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise _wrong_type("model", "a string", model)
    model = model or default_model
    _refuse_unsupported(body)
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _wrong_type("stream", "a boolean", stream)
    include_usage(body)

    limits = {param: _integer(body, param) for param in ("max_tokens", "max_completion_tokens")}
    for param, limit in limits.items():
        if limit is not None and limit < 1:
            raise ChatRequestError(f"Invalid value for '{param}': {limit}; it must be at least 1.", param)
    max_tokens = limits["max_completion_tokens"] or limits["max_tokens"]
    llm: dict[str, Any] = {
        "model": model,
        "model_id": model,
        "messages": _messages(body),
        "max_tokens": DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens,
        "stream": bool(stream),
    }
    for name, high in (("temperature", 2), ("top_p", 1)):
        if (value := _number(body, name, high)) is not None:
            llm[name] = value
    top_k = _integer(body, "top_k")
    if top_k is not None:
        if top_k == 0 or top_k < -1:
            raise ChatRequestError(f"Invalid value for 'top_k': {top_k}; use -1 (all) or at least 1.", "top_k")
        llm["top_k"] = top_k
    return llm


def include_usage(body: Mapping[str, Any]) -> bool:
    """Whether a streamed request asked for a final usage chunk; ``stream_options`` is ignored when not streaming."""
    options = body.get("stream_options")
    if options is None:
        return False
    if not isinstance(options, Mapping):
        raise _wrong_type("stream_options", "an object", options)
    wanted = options.get("include_usage")
    if wanted is not None and not isinstance(wanted, bool):
        raise _wrong_type("stream_options.include_usage", "a boolean", wanted)
    return bool(wanted) and body.get("stream") is True


def _usage(llm: Mapping[str, Any]) -> dict[str, int]:
    usage = llm.get("usage")
    usage = usage if isinstance(usage, Mapping) else {}
    counts = {key: int(usage.get(key) or 0) for key in ("prompt_tokens", "completion_tokens", "total_tokens")}
    counts["total_tokens"] = counts["total_tokens"] or counts["prompt_tokens"] + counts["completion_tokens"]
    return counts


def _choices(llm: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    choices = llm.get("choices")
    if not isinstance(choices, list) or not choices or not all(isinstance(c, Mapping) for c in choices):
        raise ValueError("llm response has no choices")
    return choices


def _text(choice: Mapping[str, Any], *keys: str) -> str:
    for key in keys:
        part = choice.get(key)
        if isinstance(part, Mapping) and isinstance(part.get("content"), str):
            return str(part["content"])
    return ""


def _envelope(llm: Mapping[str, Any], kind: str) -> dict[str, Any]:
    raw = str(llm.get("id") or "")
    completion_id = raw if raw.startswith("chatcmpl-") else f"chatcmpl-{raw}"
    return {
        "id": completion_id,
        "object": kind,
        "created": int(llm.get("created") or 0),
        "model": str(llm.get("model") or ""),
    }


def llm_response_to_chat(llm: Mapping[str, Any]) -> dict[str, Any]:
    """Map a non-streamed Livepeer ``LLMResponse`` to an OpenAI ``chat.completion`` object.

    The role is always ``assistant``; an empty or unknown ``finish_reason`` becomes ``stop``; ``logprobs`` is
    null; missing usage counts are 0. ``ValueError`` if the response has no choices.
    """
    choices = []
    for i, choice in enumerate(_choices(llm)):
        reason = choice.get("finish_reason") if choice.get("finish_reason") in _FINISH_REASONS else "stop"
        message = {"role": "assistant", "content": _text(choice, "message", "delta")}
        choices.append(
            {"index": int(choice.get("index") or i), "message": message, "finish_reason": reason, "logprobs": None}
        )
    return {**_envelope(llm, "chat.completion"), "choices": choices, "usage": _usage(llm)}


def chunk_error(chunk: Mapping[str, Any]) -> str | None:
    """The message of a runner's mid-stream error event (``{"error": ...}``), or ``None`` for a normal chunk."""
    error = chunk.get("error")
    if error is None:
        return None
    if isinstance(error, Mapping):
        return str(error.get("message") or error.get("msg") or "llm stream failed")
    return str(error) or "llm stream failed"


def llm_chunk_to_chat(chunk: Mapping[str, Any], *, first: bool, include_usage: bool = False) -> dict[str, Any]:
    """Map one streamed ``LLMResponse`` chunk to an OpenAI ``chat.completion.chunk``.

    The ``first`` chunk's delta carries ``role: assistant``; the finishing chunk (``finish_reason`` set) has an
    empty delta unless it brings text; ``finish_reason`` is null until then (the runner sends ``""``). The
    runner's running ``usage`` is dropped: with ``include_usage`` the chunk carries ``"usage": null`` as OpenAI's
    do, and the totals go in ``usage_chunk`` at the end. Check ``chunk_error`` first: error events have no
    choices, and this raises ``ValueError`` for them.
    """
    choices = []
    for i, choice in enumerate(_choices(chunk)):
        reason = choice.get("finish_reason") or None
        if reason is not None and reason not in _FINISH_REASONS:
            reason = "stop"
        text = _text(choice, "delta", "message")
        delta: dict[str, str] = {"role": "assistant"} if first else {}
        if first or text or reason is None:
            delta["content"] = text
        index = int(choice.get("index") or i)
        choices.append({"index": index, "delta": delta, "finish_reason": reason, "logprobs": None})
    out = {**_envelope(chunk, "chat.completion.chunk"), "choices": choices}
    if include_usage:
        out["usage"] = None
    return out


def usage_chunk(last: Mapping[str, Any]) -> dict[str, Any]:
    """The closing ``include_usage`` chunk (no choices) from the stream's last ``LLMResponse`` (usage is cumulative)."""
    return {**_envelope(last, "chat.completion.chunk"), "choices": [], "usage": _usage(last)}


def sse(obj: object) -> bytes:
    """One server-sent event carrying ``obj`` as compact JSON."""
    return b"data: " + json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() + b"\n\n"


def models_list(model_ids: Iterable[str], owned_by: str = "livepeer") -> dict[str, Any]:
    """The ``GET /v1/models`` body (duplicates dropped, order kept; ``created`` 0: the network has no such date)."""
    data = [{"id": m, "object": "model", "created": 0, "owned_by": owned_by} for m in dict.fromkeys(model_ids)]
    return {"object": "list", "data": data}


def openai_error(
    message: str, *, status: int, type_: str | None = None, param: str | None = None, code: str | int | None = None
) -> dict[str, Any]:
    """An error body in OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``.

    ``type_`` defaults from ``status`` as OpenAI's do: ``invalid_request_error`` below 500, ``server_error`` from
    500. ``code`` is rendered as a string (the SDK reads it as one).
    """
    if type_ is None:
        type_ = "server_error" if status >= 500 else "invalid_request_error"
    return {"error": {"message": message, "type": type_, "param": param, "code": None if code is None else str(code)}}


def openai_json_response(exc: JobError) -> Response:
    """A job error in OpenAI's dialect (the ``/v1`` routes); a validation failure is a 400 there."""
    if isinstance(exc, JobCancelledError):
        return Response(status_code=CANCELLED_STATUS)
    status = 400 if exc.status_code == 422 else exc.status_code
    return JSONResponse(openai_error(exc.message, status=status), status_code=status, headers=exc.headers or None)
