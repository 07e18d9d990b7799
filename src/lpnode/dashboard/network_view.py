"""The network page's data: a ``/getNetworkCapabilities`` document (go-livepeer's or lpnode's) turned into
pipelines → models → orchestrator offers, with prices per unit and per output.

The document comes from the network, so nothing in it is trusted: every field is read with a type check and
a missing or malformed field reads as absent. Models are taken from ``capabilities.constraints.PerCapability``
(where warm, capacity, in-use and runner version live) and, as the Livepeer tools page does, also from
``capabilities_prices`` and ``hardware`` (a model seen only there has an unknown warm flag, ``None``).

Callers may add facts per offer (the gateway adds its selection measurements) through ``annotate`` and the
gateway's price cap per model through ``max_price``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from lpnode.dashboard.sources import Annotate, MaxPrice
from lpnode.dashboard.units import OUTPUT_UNITS, price_per_output, wei_text
from lpnode.pipelines import PIPELINES

BYOC_CAPABILITY = 37
_PIPELINE_NAMES: Mapping[int, str] = {spec.capability: name for name, spec in PIPELINES.items()}


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _int(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, str | float):
        try:
            return int(value)
        except (ValueError, OverflowError):
            return 0
    return 0


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def pipeline_name(capability: int, names: Mapping[str, Any]) -> str:
    """``text-to-image`` for 27, ``byoc`` for 37; other numbers by the document's own name, or ``capability N``."""
    if capability == BYOC_CAPABILITY:
        return "byoc"
    known = _PIPELINE_NAMES.get(capability)
    if known is not None:
        return known
    name = _str(names.get(str(capability)))
    return name.lower().replace(" ", "-") if name else f"capability {capability}"


@dataclass
class _Model:
    warm: bool | None = None
    capacity: int = 0
    in_use: int = 0
    runner_version: str = ""
    price: Fraction | None = None
    gpus: list[str] = field(default_factory=list)


def _prices(orch: Mapping[str, Any]) -> dict[tuple[int, str], Fraction]:
    found: dict[tuple[int, str], Fraction] = {}
    for entry in _list(orch.get("capabilities_prices")):
        entry = _dict(entry)
        per, pixels = _int(entry.get("pricePerUnit")), _int(entry.get("pixelsPerUnit"))
        if pixels > 0:
            found[(_int(entry.get("capability")), _str(entry.get("constraint")))] = Fraction(per, pixels)
    return found


def _gpu_names(entry: Mapping[str, Any]) -> list[str]:
    names = []
    for key, gpu in sorted(_dict(entry.get("gpu_info")).items()):
        name = _str(_dict(gpu).get("name")) or "GPU"
        names.append(f"{key}: {name}")
    return names


def _orchestrator_models(orch: Mapping[str, Any], names: Mapping[str, Any]) -> dict[tuple[str, str], _Model]:
    models: dict[tuple[str, str], _Model] = {}
    per_cap = _dict(_dict(_dict(orch.get("capabilities")).get("constraints")).get("PerCapability"))
    for cap_text, constraint in per_cap.items():
        cap = _int(cap_text)
        for model_id, facts in _dict(_dict(constraint).get("models")).items():
            facts = _dict(facts)
            models[(pipeline_name(cap, names), str(model_id))] = _Model(
                warm=bool(facts.get("warm", False)),
                capacity=_int(facts.get("capacity")),
                in_use=_int(facts.get("capacityInUse")),
                runner_version=_str(facts.get("runnerVersion")),
            )
    prices = _prices(orch)
    for cap, model_id in prices:
        if model_id:
            models.setdefault((pipeline_name(cap, names), model_id), _Model())
    for entry in _list(orch.get("hardware")):
        entry = _dict(entry)
        pipeline, model_id = _str(entry.get("pipeline")), _str(entry.get("model_id"))
        if pipeline and model_id:
            models.setdefault((pipeline, model_id), _Model()).gpus = _gpu_names(entry)
    numbers = {pipeline_name(cap, names): cap for cap, _ in prices}
    for (pipeline, model_id), model in models.items():
        number = numbers.get(pipeline)
        if number is not None:
            model.price = prices.get((number, model_id), prices.get((number, "")))
    return models


def network_view(
    document: Any,
    *,
    annotate: Annotate | None = None,
    max_price: MaxPrice | None = None,
) -> dict[str, Any]:
    """``{"pipelines": [{pipeline, output_label, models: [{model_id, warm, cold, max_price_wei, offers}]}],
    "orchestrators": n}``, pipelines and models sorted by name, offers warm first then by price.

    Each offer: ``orchestrator`` (its service URI), ``address``, ``warm`` (``None``: unknown), ``capacity``,
    ``in_use``, ``price_wei`` (per unit, decimal string, ``""``: not advertised), ``price_per_output_wei``,
    ``runner_version``, ``node_version``, ``gpus`` (``"<index>: <name>"``), ``over_cap`` (``None``: no cap or
    no price), and whatever ``annotate`` adds.
    """
    document = _dict(document)
    names = _dict(document.get("capabilities_names"))
    orchestrators = _list(document.get("orchestrators"))
    grouped: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for index, orch in enumerate(orchestrators):
        orch = _dict(orch)
        node_version = _str(_dict(orch.get("capabilities")).get("version"))
        uri = _str(orch.get("orch_uri"))
        for (pipeline, model_id), model in _orchestrator_models(orch, names).items():
            per_output, _ = price_per_output(pipeline, model.price)
            cap = max_price(pipeline, model_id) if max_price else None
            offer: dict[str, Any] = {
                "orchestrator": uri,
                "address": _str(orch.get("address")),
                "warm": model.warm,
                "capacity": model.capacity,
                "in_use": model.in_use,
                "price_wei": "" if model.price is None else wei_text(model.price),
                "price_per_output_wei": per_output,
                "runner_version": model.runner_version,
                "node_version": node_version,
                "gpus": model.gpus,
                "over_cap": None if cap is None or model.price is None else model.price > cap,
            }
            if annotate is not None:
                offer.update(annotate(index, pipeline, model_id))
            grouped.setdefault(pipeline, {}).setdefault(model_id, []).append(offer)
    pipelines = []
    for pipeline in sorted(grouped):
        models = []
        for model_id in sorted(grouped[pipeline]):
            offers = grouped[pipeline][model_id]
            offers.sort(key=lambda o: (o["warm"] is not True, _sort_price(o["price_wei"]), o["orchestrator"]))
            cap = max_price(pipeline, model_id) if max_price else None
            models.append(
                {
                    "model_id": model_id,
                    "warm": sum(1 for o in offers if o["warm"] is True),
                    "cold": sum(1 for o in offers if o["warm"] is False),
                    "max_price_wei": "" if cap is None else wei_text(cap),
                    "offers": offers,
                }
            )
        unit = OUTPUT_UNITS.get(pipeline)
        pipelines.append({"pipeline": pipeline, "output_label": unit.label if unit else "", "models": models})
    return {"pipelines": pipelines, "orchestrators": len(orchestrators)}


def _sort_price(text: str) -> Fraction:
    return Fraction(text) if text else Fraction(10**40)
