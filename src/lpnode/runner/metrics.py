"""The runner's Prometheus metrics, in a registry of its own (one per app)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class RunnerMetrics:
    def __init__(self, pipeline: str, model_id: str, version: str) -> None:
        self.registry = CollectorRegistry()
        labels = {"pipeline": pipeline, "model_id": model_id}
        Gauge("version", "Runner version.", ["app", "version"], registry=self.registry).labels(
            app="ai-runner", version=version
        ).set(1)
        self.requests = Counter(
            "lpnode_runner_requests",
            "HTTP requests by route and status.",
            ["route", "status"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "lpnode_runner_request_duration_seconds",
            "HTTP request latency by route.",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.job_seconds = Histogram(
            "lpnode_runner_job_duration_seconds",
            "Time a job spends running the model.",
            list(labels),
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        ).labels(**labels)
        self.queue_seconds = Histogram(
            "lpnode_runner_queue_wait_seconds",
            "Time a job waits for a slot.",
            list(labels),
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        ).labels(**labels)
        self.in_flight = Gauge(
            "lpnode_runner_jobs_in_flight", "Jobs running now.", list(labels), registry=self.registry
        ).labels(**labels)
        self.queued = Gauge(
            "lpnode_runner_jobs_queued", "Jobs waiting for a slot.", list(labels), registry=self.registry
        ).labels(**labels)
        self.rejected = Counter(
            "lpnode_runner_jobs_rejected",
            "Jobs refused because the queue was full.",
            list(labels),
            registry=self.registry,
        ).labels(**labels)
        self.cancelled = Counter(
            "lpnode_runner_jobs_cancelled",
            "Jobs stopped because the client went away.",
            list(labels),
            registry=self.registry,
        ).labels(**labels)
        self.load_seconds = Gauge(
            "lpnode_runner_model_load_seconds",
            "How long the model took to load.",
            list(labels),
            registry=self.registry,
        ).labels(**labels)
        self.state = Gauge(
            "lpnode_runner_state",
            "1 for the runner's current health state.",
            ["state"],
            registry=self.registry,
        )

    def set_state(self, state: str) -> None:
        for name in ("LOADING", "IDLE", "OK", "ERROR"):
            self.state.labels(state=name).set(1 if name == state else 0)
