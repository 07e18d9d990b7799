"""Slot accounting and which idle runner gives its slot up."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from lpnode.orchestrator.ai_models import AIModelConfig
from lpnode.orchestrator.pool import PoolConfigError, ProcessSettings, RunnerPool
from lpnode.orchestrator.pool.slots import SlotTable, choose_victim


def test_slots_are_taken_lowest_first_and_reused_after_release() -> None:
    table = SlotTable(2)
    assert (table.take(), table.take(), table.take()) == (0, 1, None)
    table.release(0)
    assert table.free == 1 and table.take() == 0


@dataclass
class FakeRunner:
    name: str
    warm: bool = False
    in_use: int = 0
    idle: bool = True
    last_used: float = 0.0


def test_victim_is_the_least_recently_used_idle_cold_runner() -> None:
    runners = [
        FakeRunner("warm", warm=True, last_used=0),
        FakeRunner("leased", in_use=1, idle=False, last_used=1),
        FakeRunner("loading", idle=False, last_used=2),
        FakeRunner("recent", last_used=9),
        FakeRunner("old", last_used=5),
    ]
    victim = choose_victim(runners)
    assert victim is not None and victim.name == "old"


def test_warm_runners_are_never_evicted() -> None:
    assert choose_victim([FakeRunner("warm", warm=True)]) is None


def test_more_warm_runners_than_slots_is_refused_with_the_fix(tmp_path: Path) -> None:
    configs = [AIModelConfig(pipeline="llm", model_id="a", warm=True, capacity=2)]
    with pytest.raises(PoolConfigError, match=r"need 2 runner slot.*only 1.*raise the slot count"):
        RunnerPool(configs, ProcessSettings(models_dir=tmp_path), tmp_path, slots=1)
