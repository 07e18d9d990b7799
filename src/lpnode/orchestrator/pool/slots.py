"""Slots: the places a managed runner can occupy (one per GPU; emulated slots on CPU), and which idle
runner gives its slot up when a cold model needs one."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, TypeVar

from lpnode.orchestrator.pool.errors import PoolConfigError


class SlotTable:
    """``count`` slots numbered 0..count-1; :meth:`take` returns the lowest free one."""

    def __init__(self, count: int) -> None:
        if count < 0:
            raise PoolConfigError(f"slots must be 0 or more, got {count}")
        self.count = count
        self._used: set[int] = set()

    def take(self) -> int | None:
        """The lowest free slot, now marked used; None when every slot is used."""
        for slot in range(self.count):
            if slot not in self._used:
                self._used.add(slot)
                return slot
        return None

    def release(self, slot: int) -> None:
        self._used.discard(slot)

    @property
    def used(self) -> int:
        return len(self._used)

    @property
    def free(self) -> int:
        return self.count - len(self._used)


class Evictable(Protocol):
    @property
    def warm(self) -> bool: ...
    @property
    def in_use(self) -> int: ...
    @property
    def idle(self) -> bool: ...
    @property
    def last_used(self) -> float: ...


E = TypeVar("E", bound=Evictable)


def choose_victim(runners: Iterable[E]) -> E | None:
    """The runner to stop so its slot can be reused: idle, unleased and not warm, least recently used
    first. Warm runners are never chosen."""
    candidates = [r for r in runners if not r.warm and r.in_use == 0 and r.idle]
    return min(candidates, key=lambda r: r.last_used, default=None)
