"""go-livepeer's AI metric names on lpnode's ``/metrics``, so dashboards built for go-livepeer keep working.

go-livepeer (``monitor/census.go``, with ``-monitor``) records OpenCensus views and exports them to Prometheus
under the namespace ``livepeer``; its AI views are listed in :data:`GO_AI_METRICS`. Labels are go-livepeer's tag
names: ``node_id`` and ``node_type`` (``orch`` or ``bctr``) on every series, ``pipeline`` and ``model_name``,
``error_code``, and on a gateway ``orchestrator_uri``.

A view aggregated as a last value is a gauge here. go-livepeer's count and sum views are counters whose names
carry no ``_total``; they keep those exact names here, written as untyped samples (a prometheus-client counter
would add ``_total``, and dashboards query the names go-livepeer writes). Where lpnode measures differently the
value says so in :data:`GO_AI_METRICS` (docs/metrics.md has the table).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction

from prometheus_client.core import GaugeMetricFamily, UnknownMetricFamily
from prometheus_client.registry import Collector

NAMESPACE = "livepeer"
ORCHESTRATOR_NODE = "orch"
GATEWAY_NODE = "bctr"

GO_AI_METRICS: dict[str, str] = {
    "ai_models_requested": "Number of AI models requested over time",
    "ai_request_latency_score": "AI request latency score (seconds per unit of work; lower is faster)",
    "ai_request_price": "AI request price per unit (wei)",
    "ai_request_errors": "Errors when processing AI requests",
    "ai_container_in_use": "Number of containers currently used for AI processing",
    "ai_container_idle": "Number of containers currently available for AI processing",
    "ai_gpus_idle": "Number of idle GPUs (with no configured container)",
}
"""Each exported go-livepeer AI view (without the namespace) and its description."""


@dataclass(frozen=True)
class Containers:
    """One model's runners as go-livepeer counts containers: serving a request, and ready but unused."""

    pipeline: str
    model_id: str
    in_use: int
    idle: int


def latency_score(seconds: float, units: int) -> float:
    """Seconds per unit of work (the job's billing units: pixels, tokens, audio milliseconds), or the job's seconds
    when its units were not counted. go-livepeer divides by a per-pipeline measure of the same work."""
    return seconds / units if units > 0 else seconds


class GoAIMetrics(Collector):
    """go-livepeer's AI series for one node, fed by :meth:`job_finished` (one call per finished job) and, on an
    orchestrator, read from its runners at scrape time (``containers`` and ``slots``). Thread-safe."""

    def __init__(
        self,
        node_type: str,
        *,
        containers: Callable[[], Iterable[Containers]] | None = None,
        idle_slots: Callable[[], int] | None = None,
        node_id: str = "",
    ) -> None:
        self._base = {"node_id": node_id or socket.gethostname(), "node_type": node_type}
        self._gateway = node_type == GATEWAY_NODE
        self._containers = containers
        self._idle_slots = idle_slots
        self._lock = threading.Lock()
        self._requested: dict[tuple[str, ...], int] = {}
        self._latency: dict[tuple[str, ...], float] = {}
        self._price: dict[tuple[str, ...], float] = {}
        self._errors: dict[tuple[str, ...], int] = {}

    def job_finished(
        self,
        pipeline: str,
        model_id: str,
        status: int,
        seconds: float,
        units: int = 0,
        price_per_unit: Fraction | None = None,
        orchestrator_uri: str = "",
    ) -> None:
        """Count one finished job: a success (status below 400) as a requested model with its latency score and
        price, anything else as an error whose ``error_code`` is the HTTP status."""
        key = (pipeline, model_id, orchestrator_uri) if self._gateway else (pipeline, model_id)
        with self._lock:
            if status < 400:
                self._requested[key] = self._requested.get(key, 0) + 1
                self._latency[key] = latency_score(seconds, units)
                self._price[key] = float(price_per_unit or 0)
            else:
                error_key = (str(status), *key)
                self._errors[error_key] = self._errors.get(error_key, 0) + 1

    def collect(self) -> Iterator[GaugeMetricFamily | UnknownMetricFamily]:
        base_names, base_values = list(self._base), list(self._base.values())
        model = ["pipeline", "model_name", *(["orchestrator_uri"] if self._gateway else [])]
        requested = self._family(UnknownMetricFamily, "ai_models_requested", [*model, *base_names])
        latency = self._family(GaugeMetricFamily, "ai_request_latency_score", [*model, *base_names])
        price = self._family(GaugeMetricFamily, "ai_request_price", [*model, *base_names])
        errors = self._family(UnknownMetricFamily, "ai_request_errors", ["error_code", *model, *base_names])
        with self._lock:
            for key, count in self._requested.items():
                requested.add_metric([*key, *base_values], count)
                latency.add_metric([*key, *base_values], self._latency[key])
                price.add_metric([*key, *base_values], self._price[key])
            for error_key, count in self._errors.items():
                errors.add_metric([*error_key, *base_values], count)
        yield from (requested, latency, price, errors)
        if self._containers is not None:
            in_use = self._family(GaugeMetricFamily, "ai_container_in_use", ["pipeline", "model_name", *base_names])
            idle = self._family(GaugeMetricFamily, "ai_container_idle", ["pipeline", "model_name", *base_names])
            for each in self._containers():
                in_use.add_metric([each.pipeline, each.model_id, *base_values], each.in_use)
                idle.add_metric([each.pipeline, each.model_id, *base_values], each.idle)
            yield from (in_use, idle)
        if self._idle_slots is not None:
            gpus = self._family(GaugeMetricFamily, "ai_gpus_idle", base_names)
            gpus.add_metric(base_values, self._idle_slots())
            yield gpus

    @staticmethod
    def _family(
        kind: type[GaugeMetricFamily] | type[UnknownMetricFamily], name: str, labels: list[str]
    ) -> GaugeMetricFamily | UnknownMetricFamily:
        return kind(f"{NAMESPACE}_{name}", GO_AI_METRICS[name], labels=labels)
