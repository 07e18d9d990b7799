"""go-livepeer's AI metric names on /metrics: exact names (no ``_total``), go-livepeer's labels, fed per job."""

from __future__ import annotations

from fractions import Fraction

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from lpnode.protocol.go_metrics import GATEWAY_NODE, ORCHESTRATOR_NODE, Containers, GoAIMetrics


def samples(metrics: GoAIMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry()
    registry.register(metrics)
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k not in ("node_id",)))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_an_orchestrators_jobs_and_runners_under_go_livepeers_names() -> None:
    metrics = GoAIMetrics(
        ORCHESTRATOR_NODE,
        containers=lambda: [Containers("text-to-image", "m/a", in_use=1, idle=2)],
        idle_slots=lambda: 3,
        node_id="node-1",
    )
    metrics.job_finished("text-to-image", "m/a", 200, 2.0, units=4, price_per_unit=Fraction(5, 2))
    metrics.job_finished("text-to-image", "m/a", 200, 3.0, units=6)
    metrics.job_finished("text-to-image", "m/a", 503, 0.1)
    model = (("model_name", "m/a"), ("node_type", "orch"), ("pipeline", "text-to-image"))
    assert samples(metrics) == {
        ("livepeer_ai_models_requested", model): 2,
        ("livepeer_ai_request_latency_score", model): 0.5,  # the last job: 3 s for 6 units
        ("livepeer_ai_request_price", model): 0,
        ("livepeer_ai_request_errors", (("error_code", "503"), *model)): 1,
        ("livepeer_ai_container_in_use", model): 1,
        ("livepeer_ai_container_idle", model): 2,
        ("livepeer_ai_gpus_idle", (("node_type", "orch"),)): 3,
    }


def test_a_gateway_labels_each_series_with_the_orchestrator() -> None:
    metrics = GoAIMetrics(GATEWAY_NODE, node_id="gw")
    metrics.job_finished("llm", "m/b", 200, 1.5, units=0, price_per_unit=Fraction(7), orchestrator_uri="https://o:1")
    labels = (("model_name", "m/b"), ("node_type", "bctr"), ("orchestrator_uri", "https://o:1"), ("pipeline", "llm"))
    found = samples(metrics)
    assert found[("livepeer_ai_request_latency_score", labels)] == 1.5  # units not counted: the job's seconds
    assert found[("livepeer_ai_request_price", labels)] == 7
    assert found[("livepeer_ai_models_requested", labels)] == 1
    assert not any(name.startswith("livepeer_ai_container") for name, _ in found)
