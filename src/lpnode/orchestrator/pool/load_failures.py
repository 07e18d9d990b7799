"""When the pool gives up on a model: runners that keep failing to load it the same way stop being replaced.

A runner that fails before it was ever ready counts against its model; one that differs from the last
reason starts the count again, and a runner that becomes ready clears it. At ``limit`` in a row the model
is *stopped*: state ERROR with that reason, its warm runners' slots kept for it, its files' fingerprint
noted so that a change to them (``lpnode models pull``) lets the pool start it again (:func:`resume`).
"""

from __future__ import annotations

import logging
from pathlib import Path

from lpnode.logs import log_event
from lpnode.orchestrator.pool._state import Model, Runner
from lpnode.orchestrator.pool.model_files import files_fingerprint

log = logging.getLogger("lpnode.orchestrator.pool")


def count_load_failure(model: Model, runner: Runner, problem: str, limit: int, models_dir: Path | None) -> bool:
    """Count ``runner``'s failure to load; True when ``model`` is (now) stopped, so the runner is not
    replaced (its slot, if it kept one, waits in ``model.stopped_slots``)."""
    if problem == model.load_failure:
        model.same_load_failures += 1
    else:
        model.load_failure, model.same_load_failures = problem, 1
    if not model.stopped and model.same_load_failures < limit:
        return False
    if runner.warm and runner.slot is not None:
        model.stopped_slots.append(runner.slot)
    if not model.stopped:
        model.stopped = problem
        model.stopped_log = str(runner.handle.log_path) if runner.handle and runner.handle.log_path else ""
        # A stat of one model's folder, once: cheap enough to stay on the event loop.
        model.stopped_files = files_fingerprint(models_dir, model.model_id) if models_dir else None
        log_event(
            log,
            "runner not restarted: it failed to load its model the same way too many times",
            logging.ERROR,
            model=model.model_id,
            pipeline=model.pipeline,
            failures=model.same_load_failures,
            reason=problem,
            resume="when the model's files change in the models dir, or at the orchestrator's restart",
        )
    return True


def loaded(model: Model) -> None:
    """A runner of ``model`` became ready: its failures so far do not count any more."""
    model.failed_starts = model.same_load_failures = 0
    model.load_failure = ""


def resume(model: Model) -> list[int]:
    """Clear ``model``'s stopped state and counts; the slots its warm runners should start in again."""
    log_event(log, "starting a stopped model's runners again", model=model.model_id, pipeline=model.pipeline)
    model.stopped, model.stopped_log, model.stopped_files = "", "", None
    loaded(model)
    slots, model.stopped_slots = model.stopped_slots, []
    return slots
