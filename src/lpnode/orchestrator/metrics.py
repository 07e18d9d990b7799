"""The orchestrator's Prometheus metrics: jobs by pipeline, model and status, and the runner pool's state,
each also under go-livepeer's AI metric names (:mod:`lpnode.protocol.go_metrics`).

Job counters are updated by the job handlers (:meth:`OrchestratorMetrics.job_finished`); the pool's figures
(capacity, in use, runners by state, cold starts, go-livepeer's container counts) are read from its snapshot at
scrape time, so they are never stale.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from fractions import Fraction

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from lpnode import __version__
from lpnode.orchestrator.pool import ModelStatus
from lpnode.protocol.go_metrics import ORCHESTRATOR_NODE, Containers, GoAIMetrics

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
_MODEL = ["pipeline", "model_id"]
_READY = {"IDLE", "OK"}  # runner states that take a request now

Snapshot = Callable[[], Mapping[tuple[str, str], ModelStatus]]


class OrchestratorMetrics:
    """``slots``: the runner slots of the pool (go-livepeer's GPUs), 0 when unknown."""

    def __init__(self, snapshot: Snapshot, slots: int = 0) -> None:
        self.registry = CollectorRegistry()
        Gauge("lpnode_orchestrator_info", "This orchestrator's version.", ["version"], registry=self.registry).labels(
            version=__version__
        ).set(1)
        self.jobs = Counter(
            "lpnode_orchestrator_jobs",
            "AI jobs by pipeline, model and HTTP status.",
            [*_MODEL, "status"],
            registry=self.registry,
        )
        self.job_seconds = Histogram(
            "lpnode_orchestrator_job_duration_seconds",
            "Time from a job's arrival to the end of its response, by pipeline and model.",
            _MODEL,
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "lpnode_orchestrator_jobs_in_flight", "AI jobs being served now.", _MODEL, registry=self.registry
        )
        self.get_orchestrator = Counter(
            "lpnode_orchestrator_get_orchestrator",
            "GetOrchestrator calls answered.",
            registry=self.registry,
        )
        self.registry.register(_PoolCollector(snapshot))
        self.go = GoAIMetrics(
            ORCHESTRATOR_NODE,
            containers=lambda: _containers(snapshot()),
            idle_slots=(lambda: _idle_slots(snapshot(), slots)) if slots > 0 else None,
        )
        self.registry.register(self.go)

    def job_finished(
        self, pipeline: str, model_id: str, status: int, seconds: float, units: int = 0, price: Fraction | None = None
    ) -> None:
        """Count one finished AI job (``price``: wei per unit it was paid at, on chain) in lpnode's series and
        go-livepeer's."""
        self.jobs.labels(pipeline=pipeline, model_id=model_id, status=str(status)).inc()
        self.job_seconds.labels(pipeline=pipeline, model_id=model_id).observe(seconds)
        self.go.job_finished(pipeline, model_id, status, seconds, units, price)


def _containers(snapshot: Mapping[tuple[str, str], ModelStatus]) -> list[Containers]:
    """Runners counted as go-livepeer counts containers: busy ones in use, ready and unused ones idle."""
    return [
        Containers(
            pipeline,
            model_id,
            in_use=sum(1 for r in status.runners if r.in_use > 0),
            idle=sum(1 for r in status.runners if r.in_use == 0 and r.state in _READY),
        )
        for (pipeline, model_id), status in snapshot.items()
    ]


def _idle_slots(snapshot: Mapping[tuple[str, str], ModelStatus], slots: int) -> int:
    used = {r.slot for status in snapshot.values() for r in status.runners if r.slot is not None}
    return max(slots - len(used), 0)


class _PoolCollector(Collector):
    def __init__(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        capacity = GaugeMetricFamily(
            "lpnode_orchestrator_model_capacity", "Requests a model may serve at once.", labels=_MODEL
        )
        in_use = GaugeMetricFamily("lpnode_orchestrator_model_in_use", "Requests a model serves now.", labels=_MODEL)
        warm = GaugeMetricFamily("lpnode_orchestrator_model_warm", "1 if the model is kept warm.", labels=_MODEL)
        cold = CounterMetricFamily(
            "lpnode_orchestrator_cold_starts", "Runners started by a request, not at boot.", labels=_MODEL
        )
        runners = GaugeMetricFamily("lpnode_orchestrator_runners", "Runners by state.", labels=[*_MODEL, "state"])
        for (pipeline, model_id), status in self._snapshot().items():
            labels = [pipeline, model_id]
            capacity.add_metric(labels, status.capacity)
            in_use.add_metric(labels, status.in_use)
            warm.add_metric(labels, 1 if status.warm else 0)
            cold.add_metric(labels, status.cold_starts)
            states: dict[str, int] = {}
            for runner in status.runners:
                states[runner.state] = states.get(runner.state, 0) + 1
            for state, count in sorted(states.items()):
                runners.add_metric([*labels, state], count)
        yield from (capacity, in_use, warm, cold, runners)
