"""Pipelines written outside lpnode: the :class:`CustomPipeline` base and the route a class gets.

A custom pipeline declares a pydantic ``params`` model and a ``response`` model and implements ``run``; the
runner turns that into ``POST /<name>`` with the same machinery, error shapes and OpenAPI as the built-in
pipelines (a ``bytes`` field in ``params`` makes the route a multipart form with a file upload). ``name``
defaults to the class name in kebab case, less a ``Pipeline`` suffix (``EdgeDetectPipeline`` →
``edge-detect``). A class may instead subclass :class:`BatchPipeline` and spell out its whole
:class:`RouteSpec`; the operator's ``--pipeline NAME`` renames either kind.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from typing import Any, ClassVar

from pydantic import BaseModel

from lpnode.errors import ConfigError
from lpnode.runner.pipelines.base import BatchPipeline, ParamsT, RouteSpec

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*[a-z0-9]$|^[a-z0-9]$")
# Paths the runner serves itself; a pipeline named like one of them would be hidden or would hide it.
RESERVED_NAMES = frozenset({"health", "hardware", "version", "metrics", "openapi.json", "docs", "redoc"})


class CustomPipeline(BatchPipeline[ParamsT]):
    """Base class for a pipeline that lives in your own package.

    Set ``params`` (the request body: a pydantic model; ``bytes`` fields are file uploads) and ``response``
    (what ``run`` returns), load your model in ``__init__`` (it runs in a background thread while
    ``/health`` says LOADING) and implement ``run``. Raise ``ValueError`` for input the model cannot take
    (the caller gets 400 with your message); anything else becomes a 500 with ``<Name> pipeline error.``
    """

    name: ClassVar[str] = ""
    params: ClassVar[type[BaseModel]]
    response: ClassVar[type[BaseModel]]
    summary: ClassVar[str] = ""
    description: ClassVar[str] = ""
    max_in_flight: ClassVar[int] = 1  # requests run at once; more than 1 needs a thread-safe ``run``


def default_name(cls: type) -> str:
    """The route name of ``cls``: its ``name`` attribute, else its class name in kebab case."""
    declared = getattr(cls, "name", "")
    if isinstance(declared, str) and declared:
        return declared
    base = cls.__name__
    if base.endswith("Pipeline") and base != "Pipeline":
        base = base[: -len("Pipeline")]
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "-", base)
    return re.sub(r"[^a-z0-9-]+", "-", words.lower()).strip("-")


def check_name(name: str, what: str = "pipeline name") -> str:
    """``name`` if it can be a route (``/edge-detect``); otherwise a ConfigError saying how to write it."""
    if not _NAME.match(name):
        raise ConfigError(
            f"{what} {name!r} cannot be a route: use lower-case letters, digits and dashes, e.g. edge-detect"
        )
    if name in RESERVED_NAMES:
        raise ConfigError(f"{what} {name!r} is a path the runner serves itself; choose another name")
    return name


def _pascal(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("-"))


def _model_attr(cls: type, attr: str) -> type[BaseModel]:
    value = getattr(cls, attr, None)
    if not (isinstance(value, type) and issubclass(value, BaseModel)):
        raise ConfigError(
            f"pipeline class {cls.__module__}:{cls.__qualname__} must set {attr} to a pydantic model class "
            f"(got {value!r}); e.g. {attr} = My{attr.capitalize()}"
        )
    return value


def route_for(cls: type[BatchPipeline[Any]], name: str) -> RouteSpec:
    """The route ``cls`` is served on under ``name``. A class with its own ``route`` keeps it (renamed);
    a :class:`CustomPipeline` gets one built from its ``params``, ``response`` and docstring."""
    check_name(name)
    own: RouteSpec | None = next(
        (c.__dict__["route"] for c in cls.__mro__ if isinstance(c.__dict__.get("route"), RouteSpec)), None
    )
    if own is not None:
        return own if own.name == name else dataclasses.replace(own, name=name)
    if not issubclass(cls, CustomPipeline):
        raise ConfigError(
            f"pipeline class {cls.__module__}:{cls.__qualname__} has no route: subclass "
            "lpnode.runner.pipelines.CustomPipeline and set params and response"
        )
    params = _model_attr(cls, "params")
    response = _model_attr(cls, "response")
    title = name.replace("-", " ").capitalize()
    doc = inspect.getdoc(cls) or ""
    if doc == inspect.getdoc(CustomPipeline):  # not documented: the base class's text is no description
        doc = ""
    summary = cls.summary or (doc.split("\n\n", 1)[0].replace("\n", " ") if doc else title)
    label = name[:1].upper() + name[1:]
    return RouteSpec(
        name=name,
        operation_id="gen" + _pascal(name),
        sdk_name=_pascal(name)[:1].lower() + _pascal(name)[1:],
        summary=summary,
        description=cls.description or doc or f"The {name} pipeline.",
        params=params,
        response=response,
        multipart=any(field.annotation is bytes for field in params.model_fields.values()),
        default_error=f"{label} pipeline error.",
        oom_error="Out of memory error.",
        max_in_flight=max(1, cls.max_in_flight),
        sdk_data_name=False,
    )
