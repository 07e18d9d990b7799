"""``aiModels.json``: what an orchestrator serves, in go-livepeer's format.

The value of ``-aiModels`` is a JSON file holding an array of entries, or the inline form
``pipeline:model_id:warm[,...]``. Every field keeps go-livepeer's meaning (``pipeline``, ``model_id``,
``url``, ``token``, ``warm``, ``capacity``, ``optimization_flags``, ``gateway``, ``price_per_unit``,
``pixels_per_unit``, ``currency``). Where go-livepeer panics or stops at the first problem, this parser
reports every problem at once, one line each, naming the entry, the field and the fix; unknown fields
are ignored with a warning (a misspelt ``capcity`` would otherwise silently mean capacity 1).

Besides the Livepeer AI pipelines, an entry may name a custom pipeline (``docs/custom-pipelines.md``): its
``pipeline`` is the route name and ``pipeline_class`` the ``module:Class`` serving it, or ``pipeline`` alone
when an installed package declares it (entry-point group ``lpnode.pipelines``). Its ``model_id`` is optional
(default: the pipeline name). The class is imported while the file is read, so a class that cannot be
loaded is reported at start, naming the entry.

``"runner_app": true`` (lpnode's own field) has the orchestrator start that entry's runner as a Live Runner app
registered with the orchestrator itself (``-useLiveRunners`` and ``-orchSecret`` required), instead of serving
it on the pipeline's classic route; ``{"name": "...", "price": "0.5/hour"}`` in place of ``true`` names the app
and prices it like ``lpnode runner --app-name/--app-price`` (``docs/live-runner.md``).
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from pathlib import Path
from typing import Any

from lpnode.errors import ConfigError
from lpnode.pipelines import NETWORK_PIPELINES
from lpnode.runner.app_advert import parse_app_price
from lpnode.runner.pipelines import BatchPipeline, installed_pipelines, load_pipeline_class
from lpnode.runner.pipelines.custom import check_name, route_for
from lpnode.runner.pipelines.loader import installed_target

PIPELINES = NETWORK_PIPELINES
FIELDS = (
    "pipeline",
    "model_id",
    "url",
    "token",
    "warm",
    "capacity",
    "optimization_flags",
    "gateway",
    "price_per_unit",
    "pixels_per_unit",
    "currency",
    "pipeline_class",
    "runner_app",
)
_ETH_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_CURRENCY = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")
_INLINE_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_INLINE_FALSE = {"0", "f", "F", "FALSE", "false", "False"}
_CLASS_FIX = '"pipeline_class": "module:Class"'


@dataclass(frozen=True)
class RunnerAppOption:
    """An entry served as a Live Runner app: its app name ("": ``<pipeline>/<model_id>``) and price ("": none),
    written as ``lpnode runner``'s ``--app-name`` and ``--app-price``."""

    name: str = ""
    price: str = ""


class AIModelsError(ConfigError):
    """An unusable aiModels.json; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class AIModelConfig:
    """One aiModels.json entry, validated. Prices are exact fractions (wei unless ``currency`` says not)."""

    pipeline: str
    model_id: str
    url: str = ""
    token: str = ""
    warm: bool = False
    capacity: int = 1
    optimization_flags: Mapping[str, str] = field(default_factory=dict)
    gateway: str = "default"
    price_per_unit: Fraction | None = None
    pixels_per_unit: Fraction = Fraction(1)
    currency: str = ""
    pipeline_class: str = ""  # "module:Class" of a custom pipeline; empty for built-in or installed ones
    runner_app: RunnerAppOption | None = None
    """Served only as a Live Runner app registered with this orchestrator (its runner always started, as if warm)."""

    @property
    def custom(self) -> bool:
        """Not a Livepeer AI pipeline: a class of the operator's own (advertised as a BYOC capability)."""
        return self.pipeline not in PIPELINES

    @property
    def external(self) -> bool:
        """Served by a runner the operator runs (``url``), not one lpnode starts."""
        return bool(self.url)

    @property
    def price_per_pixel(self) -> Fraction | None:
        """``price_per_unit / pixels_per_unit`` in ``currency`` (wei when empty)."""
        return None if self.price_per_unit is None else self.price_per_unit / self.pixels_per_unit


@dataclass
class _Entry:
    """Collects one entry's problems while it is read."""

    label: str
    problems: list[str]

    def problem(self, field_name: str, text: str) -> None:
        self.problems.append(f"{self.label}: {field_name} {text}")


def _label(source: str, index: int, raw: Mapping[str, Any]) -> str:
    pipeline, model = raw.get("pipeline"), raw.get("model_id")
    what = ", ".join(
        [
            p
            for p in (
                pipeline if isinstance(pipeline, str) else None,
                json.dumps(model) if isinstance(model, str) else None,
            )
            if p
        ]
    )
    return f"{source} entry {index}" + (f" ({what})" if what else "")


def _show(value: Any) -> str:
    """A value as it appeared in the JSON (numbers unquoted, strings quoted)."""
    return str(value) if isinstance(value, Decimal) else json.dumps(value)


def _number(entry: _Entry, name: str, value: Any) -> Fraction | None:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        hint = ""
        if isinstance(value, str):
            match = re.match(r"^\s*([0-9.eE+-]+)\s*([A-Za-z]+)\s*$", value)
            if match:
                hint = f'; write {match.group(1)} without quotes and put "{match.group(2)}" in "currency"'
            else:
                hint = "; write it without quotes, e.g. 0.5"
        entry.problem(name, f"must be a number, got {_show(value)}{hint}")
        return None
    try:
        return Fraction(Decimal(str(value)))
    except (InvalidOperation, ValueError, OverflowError):
        entry.problem(name, f"must be a finite number, got {value}")
        return None


def _custom(entry: _Entry, name: str, target: Any, *, external: bool, load_classes: bool) -> None:
    """Check a custom pipeline entry: a usable route name, and a class that loads (when it runs here)."""
    try:
        check_name(name)
    except ConfigError as exc:
        entry.problem("pipeline", str(exc).removeprefix("pipeline name "))
        return
    if not isinstance(target, str):
        entry.problem(
            "pipeline_class", f'must be a string such as "my_pipelines.edges:EdgeDetect", got {_show(target)}'
        )
        return
    if target and ":" not in target:
        entry.problem("pipeline_class", f"must be written module:Class, got {_show(target)}")
        return
    close = difflib.get_close_matches(name, PIPELINES, n=1, cutoff=0.85)
    if not target:
        try:
            declared = installed_target(name) is not None
        except ConfigError as exc:
            entry.problems.append(f"{entry.label}: {exc}")
            return
        if close and not declared:
            entry.problem(
                "pipeline",
                f"{name!r} is not a Livepeer AI pipeline; did you mean {close[0]!r}? choose one of "
                + ", ".join(PIPELINES),
            )
            return
        if not declared and not external and load_classes:
            entry.problem(
                "pipeline",
                f"{name!r} is not a Livepeer AI pipeline nor one an installed package declares; choose one of "
                + ", ".join(PIPELINES)
                + f", or name the class that serves it: {_CLASS_FIX}",
            )
            return
    if external or not load_classes:  # the class runs elsewhere (a url, or a container image)
        return
    try:
        route_for(load_pipeline_class(target or name, BatchPipeline), name)
    except ConfigError as exc:
        entry.problems.append(f"{entry.label}: {exc}")


def _entry(
    source: str, index: int, raw: Any, warnings: list[str], problems: list[str], load_classes: bool = True
) -> AIModelConfig | None:
    if not isinstance(raw, dict):
        problems.append(
            f"{source} entry {index}: must be a JSON object with pipeline and model_id, got {json.dumps(raw)}"
        )
        return None
    entry = _Entry(_label(source, index, raw), problems)
    before = len(problems)
    for key in raw:
        if key not in FIELDS:
            close = difflib.get_close_matches(key, FIELDS, n=1)
            guess = f" (did you mean {close[0]!r}?)" if close else ""
            warnings.append(f"{entry.label}: unknown field {key!r} ignored{guess}")

    url = raw.get("url", "")
    pipeline = raw.get("pipeline")
    target = raw.get("pipeline_class", "")
    custom = isinstance(pipeline, str) and bool(pipeline) and pipeline not in PIPELINES
    if not isinstance(pipeline, str) or not pipeline:
        entry.problem("pipeline", "is required: one of " + ", ".join(PIPELINES))
    elif custom:
        _custom(entry, pipeline, target, external=bool(url), load_classes=load_classes)
    elif target:
        entry.problem(
            "pipeline_class",
            f"cannot replace the built-in {pipeline} pipeline; give the custom pipeline a name of its own, "
            f'e.g. "pipeline": "my-{pipeline}"',
        )
    model_id = raw.get("model_id", pipeline if custom else None)
    if not isinstance(model_id, str) or not model_id.strip():
        entry.problem("model_id", 'is required, e.g. "stabilityai/sd-turbo"')

    if not isinstance(url, str) or (url and not re.match(r"^https?://[^/\s]+", url)):
        entry.problem("url", f"must be an http(s) URL of a running runner, got {json.dumps(url)}")
    token = raw.get("token", "")
    if not isinstance(token, str):
        entry.problem("token", "must be a string")
    warm = raw.get("warm", False)
    if not isinstance(warm, bool):
        entry.problem("warm", f"must be true or false (without quotes), got {_show(warm)}")

    capacity = raw.get("capacity", 0)
    if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 0:
        entry.problem(
            "capacity",
            f"must be a whole number of concurrent requests (1 or more), got {_show(capacity)}",
        )

    flags: dict[str, str] = {}
    raw_flags = raw.get("optimization_flags", {})
    if not isinstance(raw_flags, dict):
        entry.problem("optimization_flags", 'must be an object such as {"SFAST": true}')
    else:
        for key, value in raw_flags.items():
            if isinstance(value, bool):
                flags[key] = "true" if value else "false"
            elif isinstance(value, str):
                flags[key] = value
            else:
                entry.problem(
                    f"optimization_flags.{key}",
                    f"must be true, false or a string, got {_show(value)}",
                )
        if flags and warm is False:
            warnings.append(f'{entry.label}: optimization_flags apply to warm models only (set "warm": true)')

    gateway = raw.get("gateway", "default") or "default"
    if not isinstance(gateway, str) or (gateway != "default" and not _ETH_ADDRESS.match(gateway)):
        entry.problem("gateway", f'must be "default" or a gateway\'s 0x address, got {_show(gateway)}')

    price = _number(entry, "price_per_unit", raw["price_per_unit"]) if "price_per_unit" in raw else None
    if price is not None and price < 0:
        entry.problem("price_per_unit", f"must not be negative, got {raw['price_per_unit']}")
    pixels = _number(entry, "pixels_per_unit", raw["pixels_per_unit"]) if "pixels_per_unit" in raw else Fraction(1)
    if pixels is not None and (pixels <= 0 or pixels.denominator != 1):
        entry.problem("pixels_per_unit", f"must be a whole number of units, 1 or more, got {raw['pixels_per_unit']}")
    currency = raw.get("currency", "")
    if not isinstance(currency, str) or (currency and not _CURRENCY.match(currency)):
        entry.problem(
            "currency",
            f'must be a currency code such as "wei", "eth" or "USD", got {_show(currency)}',
        )

    runner_app = _runner_app(entry, raw.get("runner_app", False), external=bool(url))

    if len(problems) > before:
        return None
    return AIModelConfig(
        pipeline=str(pipeline),
        model_id=str(model_id).strip(),
        url=str(url).rstrip("/"),
        token=str(token),
        warm=bool(warm) or runner_app is not None,  # an app is offered only while its runner runs
        capacity=int(capacity) or 1,
        optimization_flags=flags,
        gateway=str(gateway).lower() if gateway != "default" else "default",
        price_per_unit=price,
        pixels_per_unit=pixels or Fraction(1),
        currency="" if str(currency).lower() == "wei" else str(currency),
        pipeline_class=str(target).strip(),
        runner_app=runner_app,
    )


def _runner_app(entry: _Entry, value: Any, *, external: bool) -> RunnerAppOption | None:
    """``runner_app``: false, true, or ``{"name", "price"}`` (checked as the runner checks its flags)."""
    if value is False:
        return None
    if value is not True and not isinstance(value, dict):
        entry.problem("runner_app", f'must be true, false or {{"name": ..., "price": "0.5/hour"}}, got {_show(value)}')
        return None
    if external:
        entry.problem(
            "runner_app",
            "applies to runners this orchestrator starts; start the runner at url with "
            "--live-runner-orch and --orch-secret instead",
        )
        return None
    option = value if isinstance(value, dict) else {}
    for key in option:
        if key not in ("name", "price"):
            entry.problem(f"runner_app.{key}", 'is not known; use "name" and "price"')
    name, price = option.get("name", ""), option.get("price", "")
    if not isinstance(name, str) or name != name.strip():
        entry.problem("runner_app.name", f"must be a string without surrounding spaces, got {_show(name)}")
        return None
    if isinstance(price, int | float | Decimal) and not isinstance(price, bool):
        price = str(price)
    if not isinstance(price, str):
        entry.problem("runner_app.price", f'must be US dollars per unit such as "0.5/hour", got {_show(price)}')
        return None
    try:
        parse_app_price(price)
    except ConfigError as exc:
        entry.problem("runner_app.price", str(exc).removeprefix("--app-price "))
        return None
    return RunnerAppOption(name=name, price=price.strip())


def _check_together(source: str, configs: list[AIModelConfig], problems: list[str]) -> None:
    warmth: dict[tuple[str, str], bool] = {}
    for config in configs:
        key = (config.pipeline, config.model_id)
        if key in warmth and warmth[key] != config.warm:
            problems.append(
                f"{source}: {config.pipeline} {json.dumps(config.model_id)} is configured both warm and cold; "
                "keep one of the two (capacities of entries with the same warm flag add up)"
            )
        warmth.setdefault(key, config.warm)
    apps: dict[tuple[str, str], RunnerAppOption | None] = {}
    for config in configs:
        key = (config.pipeline, config.model_id)
        if key in apps and apps[key] != config.runner_app:
            problems.append(
                f"{source}: {config.pipeline} {json.dumps(config.model_id)} has entries with different runner_app "
                "values; a model is served either as a runner app or on its classic route, so give them the same"
            )
        apps.setdefault(key, config.runner_app)
    classes: dict[str, str] = {}
    for config in configs:
        if config.custom and not config.external:
            known = classes.setdefault(config.pipeline, config.pipeline_class)
            if known != config.pipeline_class:
                problems.append(
                    f"{source}: {config.pipeline} is served by two different classes "
                    f"({known or 'the installed one'} and {config.pipeline_class or 'the installed one'}); "
                    "keep one, or give each its own pipeline name"
                )
                classes[config.pipeline] = config.pipeline_class


def _shadowed(source: str, configs: list[AIModelConfig], warnings: list[str]) -> None:
    """Installed packages declaring a built-in pipeline's name are ignored; say so."""
    installed = installed_pipelines()
    for name in sorted({c.pipeline for c in configs if not c.custom and c.pipeline in installed}):
        for item in installed[name]:
            warnings.append(
                f"{source}: installed package {item.distribution} declares a pipeline named {name!r} "
                f"({item.target}); the built-in {name} pipeline is served"
            )


def parse_ai_models(
    text: str, source: str = "aiModels.json", *, load_classes: bool = True
) -> tuple[list[AIModelConfig], list[str]]:
    """The entries of a JSON document and the warnings about it; AIModelsError listing every problem.
    ``load_classes``: import custom pipeline classes to check them (off when runners run in containers,
    whose images hold the code)."""
    try:
        data = json.loads(text, parse_float=Decimal)
    except json.JSONDecodeError as exc:
        raise AIModelsError([f"{source}: not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"]) from None
    if not isinstance(data, list):
        raise AIModelsError(
            [
                f"{source}: must be a JSON array of model entries, e.g. "
                '[{"pipeline": "text-to-image", "model_id": "stabilityai/sd-turbo", "warm": true}]'
            ]
        )
    problems: list[str] = []
    warnings: list[str] = []
    configs = [
        c for i, raw in enumerate(data, start=1) if (c := _entry(source, i, raw, warnings, problems, load_classes))
    ]
    _check_together(source, configs, problems)
    if problems:
        raise AIModelsError(problems)
    _shadowed(source, configs, warnings)
    return configs, warnings


def parse_inline(value: str) -> list[AIModelConfig]:
    """The inline form ``pipeline:model_id:warm[,...]`` (go-livepeer's fallback when no file exists)."""
    problems: list[str] = []
    configs: list[AIModelConfig] = []
    for index, item in enumerate(filter(None, (p.strip() for p in value.split(","))), start=1):
        parts = item.split(":")
        if len(parts) < 3:
            problems.append(f"-aiModels item {index} ({item!r}): expected <pipeline>:<model_id>:<warm>")
            continue
        pipeline, model_id, warm_text = parts[0], ":".join(parts[1:-1]), parts[-1]
        if warm_text not in _INLINE_TRUE | _INLINE_FALSE:
            problems.append(f"-aiModels item {index} ({item!r}): warm must be true or false, got {warm_text!r}")
            continue
        if pipeline not in PIPELINES and pipeline not in installed_pipelines():
            problems.append(
                f"-aiModels item {index} ({item!r}): {pipeline!r} is not a Livepeer AI pipeline; "
                "choose one of " + ", ".join(PIPELINES)
            )
            continue
        configs.append(AIModelConfig(pipeline=pipeline, model_id=model_id, warm=warm_text in _INLINE_TRUE))
    _check_together("-aiModels", configs, problems)
    if problems:
        raise AIModelsError(problems)
    return configs


def load_ai_models(value: str, *, load_classes: bool = True) -> tuple[list[AIModelConfig], list[str]]:
    """``-aiModels``: a path to a JSON file, or the inline form. A value that looks like a file name
    (``.json``) but does not exist is an error, not an inline list. ``load_classes``: see
    :func:`parse_ai_models`."""
    path = Path(value).expanduser()
    if path.is_file():
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise AIModelsError([f"{path}: cannot be read: {exc}"]) from None
        return parse_ai_models(text, source=path.name, load_classes=load_classes)
    if value.strip().endswith(".json") or ("/" in value and ":" not in value):
        raise AIModelsError([f"{value}: no such file; pass the path of your aiModels.json"])
    return parse_inline(value), []
