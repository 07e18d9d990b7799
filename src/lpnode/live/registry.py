"""Which live pipeline a runner serves: a built-in one by name, or a class named ``module:Class``.

A live runner's ``MODEL_ID`` is the name of its live pipeline (go-livepeer's convention: ``noop``,
``comfyui``, ``streamdiffusion``...). Built in: ``noop`` (frames pass through unchanged) and ``img2img``
(a one-step image-to-image diffusion on a tiny random-weight model, for CPUs). ``--pipeline-class
module:Class`` serves a :class:`~lpnode.live.pipeline.Pipeline` subclass of your own; its params class is
the class attribute ``params_cls`` (a class or ``module:Class``) when it has one, else
:class:`~lpnode.live.pipeline.BaseParams`.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

from pydantic import BaseModel, ValidationError

from lpnode.errors import BadRequestError, ConfigError
from lpnode.live.pipeline import BaseParams, Pipeline, PipelineSpec, default_pipeline_name
from lpnode.runner.pipelines.loader import is_import_path, load_pipeline_class

NOOP = "noop"
IMG2IMG = "img2img"

_BUILTIN: dict[str, PipelineSpec] = {
    NOOP: PipelineSpec(
        name=NOOP,
        pipeline_cls="lpnode.live.pipelines.noop:Noop",
        params_cls="lpnode.live.pipelines.noop:NoopParams",
    ),
    IMG2IMG: PipelineSpec(
        name=IMG2IMG,
        pipeline_cls="lpnode.live.pipelines.img2img:Img2Img",
        params_cls="lpnode.live.pipelines.img2img_params:Img2ImgParams",
    ),
}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def builtin_names() -> list[str]:
    return list(_BUILTIN)


def builtin_pipeline_spec(name: str) -> PipelineSpec | None:
    """The spec of built-in live pipeline ``name``, or None (ai-runner's ``builtin_pipeline_spec``)."""
    spec = _BUILTIN.get(name)
    return spec.model_copy(deep=True) if spec is not None else None


def resolve_spec(model_id: str, pipeline_class: str = "") -> PipelineSpec:
    """The spec a runner started with ``--model-id``/``--pipeline-class`` serves. A class of your own is
    imported here, so a bad path fails at start with one clear line."""
    if pipeline_class:
        if not is_import_path(pipeline_class):
            raise ConfigError(
                f"--pipeline-class {pipeline_class!r} must be written module:Class, e.g. my_live.invert:InvertPipeline"
            )
        cls = load_pipeline_class(pipeline_class, Pipeline)
        params = getattr(cls, "params_cls", None)
        if isinstance(params, type):
            params = f"{params.__module__}:{params.__qualname__}"
        name = model_id or default_pipeline_name(pipeline_class)
        if not _NAME.match(name):
            raise ConfigError(f"live pipeline name {name!r} must be letters, digits, '.', '_' or '-'")
        spec = PipelineSpec(name=name, pipeline_cls=pipeline_class, params_cls=params)
        load_params_class(spec)
        return spec
    if not model_id:
        raise ConfigError(
            "no live pipeline given: set MODEL_ID or pass --model-id (one of: "
            + ", ".join(_BUILTIN)
            + "), or serve a class of your own with --pipeline-class module:Class"
        )
    builtin = builtin_pipeline_spec(model_id)
    if builtin is None:
        raise ConfigError(
            f"unknown live pipeline {model_id!r}; choose one of: {', '.join(_BUILTIN)}, "
            "or serve a class of your own with --pipeline-class module:Class"
        )
    return builtin


def load_params_class(spec: PipelineSpec) -> type[BaseParams]:
    """The spec's params class (BaseParams when it names none)."""
    if not spec.params_cls:
        return BaseParams
    module_name, _, attr = spec.params_cls.partition(":")
    try:
        value: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            value = getattr(value, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"params class {spec.params_cls!r} of live pipeline {spec.name!r}: {exc}") from None
    if not (isinstance(value, type) and issubclass(value, BaseParams)):
        raise ConfigError(f"params class {spec.params_cls!r} must subclass lpnode.live.pipeline.BaseParams")
    return value


def parse_params(spec: PipelineSpec, params: dict[str, Any]) -> BaseParams:
    """``params`` validated by the spec's params class; BadRequestError saying which field is wrong."""
    cls = load_params_class(spec)
    try:
        return cls(**params)
    except ValidationError as exc:
        raise BadRequestError(f"invalid params for live pipeline {spec.name}: {_first_error(exc)}") from None
    except TypeError as exc:
        raise BadRequestError(f"invalid params for live pipeline {spec.name}: {exc}") from None


def _first_error(exc: ValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return str(exc)
    first = errors[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or "params"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first.get('msg', 'invalid')}{more}"


def params_dump(params: BaseModel) -> dict[str, Any]:
    return params.model_dump(mode="json")
