"""The live runner's state machine (ai-runner's ProcessGuardian rules), driven with made-up clock times."""

from __future__ import annotations

import hashlib
import json

from lpnode.live.status import PipelineState, StatusTracker, health_of

S = PipelineState
T0 = 1_000_000.0


def ready_tracker() -> StatusTracker:
    tracker = StatusTracker(pipeline="noop", start_time=T0)
    tracker.loading(T0)
    tracker.loaded(True)
    return tracker


def stream_at_fps(tracker: StatusTracker, start: float, seconds: float, in_fps: float, out_fps: float) -> float:
    """Feed input and output frames for ``seconds`` from ``start``; the time reached."""
    tracker.stream_started(start)
    t = start
    next_in, next_out = start, start + 0.05
    while t < start + seconds:
        t = min(next_in, next_out)
        if t == next_in:
            tracker.input_frame(t)
            next_in += 1 / in_fps
        else:
            tracker.output_frame(t)
            next_out += 1 / out_fps
    return t


def test_health_maps_states_like_ai_runner() -> None:
    assert health_of(S.LOADING) == "LOADING"
    assert health_of(S.OFFLINE) == "IDLE"
    assert health_of(S.ERROR) == "ERROR"
    for state in (S.ONLINE, S.DEGRADED_INPUT, S.DEGRADED_INFERENCE):
        assert health_of(state) == "OK"


def test_loading_then_offline_and_load_timeout() -> None:
    tracker = StatusTracker(pipeline="noop", start_time=T0)
    tracker.loading(T0)
    assert tracker.compute(T0 + 1, process_alive=True).state is S.LOADING
    assert tracker.compute(T0 + 181, process_alive=True).state is S.ERROR
    tracker.loading(T0 + 200)  # a restarted process clears the sticky ERROR
    tracker.loaded(True)
    assert tracker.compute(T0 + 201, process_alive=True).state is S.OFFLINE


def test_dead_process_is_error_and_error_is_sticky() -> None:
    tracker = ready_tracker()
    assert tracker.compute(T0 + 1, process_alive=False).state is S.ERROR
    assert tracker.compute(T0 + 2, process_alive=True).state is S.ERROR


def test_healthy_stream_is_online_and_slow_inference_degrades() -> None:
    tracker = ready_tracker()
    t = stream_at_fps(tracker, T0, 12, in_fps=24, out_fps=24)
    assert tracker.compute(t, True).state is S.ONLINE
    slow = ready_tracker()
    t = stream_at_fps(slow, T0, 12, in_fps=24, out_fps=4)
    assert slow.compute(t, True).state is S.DEGRADED_INFERENCE


def test_low_input_fps_degrades_input() -> None:
    tracker = ready_tracker()
    t = stream_at_fps(tracker, T0, 12, in_fps=10, out_fps=10)
    assert tracker.compute(t, True).state is S.DEGRADED_INPUT


def test_a_new_stream_is_online_until_output_is_overdue() -> None:
    tracker = ready_tracker()
    tracker.stream_started(T0)
    assert tracker.state is S.ONLINE  # at once, so /health says OK right after the start answer
    for i in range(48):
        tracker.input_frame(T0 + i / 24)
    assert tracker.compute(T0 + 1, True).state is S.ONLINE
    assert tracker.compute(T0 + 1.9, True).state is S.ONLINE
    assert tracker.compute(T0 + 2.05, True).state is S.DEGRADED_INFERENCE
    tracker.input_frame(T0 + 10.5)
    assert tracker.compute(T0 + 10.5, True).state is S.ERROR


def test_stalled_output_is_error() -> None:
    tracker = ready_tracker()
    t = stream_at_fps(tracker, T0, 5, in_fps=24, out_fps=24)
    for i in range(1, 150):  # input goes on, output stops
        tracker.input_frame(t + i / 24)
    assert tracker.compute(t + 6.2, True).state is S.ERROR


def test_no_input_for_60_s_stops_the_stream() -> None:
    tracker = ready_tracker()
    t = stream_at_fps(tracker, T0, 3, in_fps=24, out_fps=24)
    verdict = tracker.compute(t + 30, True)
    assert verdict.state is S.DEGRADED_INPUT and not verdict.stop_stream
    verdict = tracker.compute(t + 61, True)
    assert verdict.state is S.DEGRADED_INPUT and verdict.stop_stream
    tracker.stream_stopped()
    assert tracker.compute(t + 62, True).state is S.OFFLINE


def test_recent_error_or_restart_degrades_inference() -> None:
    tracker = ready_tracker()
    t = stream_at_fps(tracker, T0, 12, in_fps=24, out_fps=24)
    tracker.error("boom", t - 1)
    assert tracker.compute(t, True).state is S.DEGRADED_INFERENCE
    assert tracker.compute(t + 0.01, True).state is S.DEGRADED_INFERENCE


def test_after_a_stream_ends_offline_follows_a_short_grace() -> None:
    tracker = ready_tracker()
    t = stream_at_fps(tracker, T0, 3, in_fps=24, out_fps=24)
    tracker.stream_stopped()
    assert tracker.compute(t + 1, True).state is S.DEGRADED_INPUT
    assert tracker.compute(t + 3.5, True).state is S.OFFLINE


def test_status_event_sends_params_and_restart_logs_once() -> None:
    tracker = ready_tracker()
    tracker.params_updated({"prompt": "a", "width": 512}, T0)
    tracker.restarted(["line 1", "line 2"], T0 + 1)
    first = tracker.status_event(T0 + 2)
    assert first["type"] == "status" and first["pipeline"] == "noop"
    info = first["inference_status"]
    assert info["last_params"] == {"prompt": "a", "width": 512}
    assert info["last_restart_logs"] == ["line 1", "line 2"] and info["restart_count"] == 1
    expected = hashlib.md5(json.dumps({"prompt": "a", "width": 512}, sort_keys=True).encode()).hexdigest()
    assert info["last_params_hash"] == expected
    assert first["start_time"] == int(T0 * 1000) and first["timestamp"] == int((T0 + 2) * 1000)
    second = tracker.status_event(T0 + 3)["inference_status"]
    assert second["last_params"] is None and second["last_restart_logs"] is None
    assert second["last_params_hash"] == info["last_params_hash"]


def test_a_new_stream_does_not_inherit_the_last_ones_input_gap() -> None:
    tracker = ready_tracker()
    t = stream_at_fps(tracker, T0, 3, in_fps=24, out_fps=24)
    tracker.error("boom", t)
    tracker.stream_stopped()
    tracker.stream_started(t + 120)
    verdict = tracker.compute(t + 121, True)
    assert verdict.state is S.ONLINE and not verdict.stop_stream
    event = tracker.status_event(t + 121)
    assert event["input_status"]["last_input_time"] is None
    assert event["inference_status"]["last_error"] is None
