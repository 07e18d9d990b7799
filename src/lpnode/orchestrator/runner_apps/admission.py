"""Where a runner-app session or single-shot call is admitted: the one seam payments plug into.

Off-chain (all there is today) admission is a plain reservation. A paid admission (research §13: the 402
challenge, ``Livepeer-Payment`` checks, metering) replaces :class:`FreeAdmission` with another
:class:`Admission` and nothing else changes: routes call :meth:`Admission.admit` before proxying and
:meth:`Admission.done` when the session ends.
"""

from __future__ import annotations

from typing import Protocol

from starlette.requests import HTTPConnection

from lpnode.orchestrator.runner_apps.records import AppRunner, AppSession
from lpnode.orchestrator.runner_apps.registry import AppRegistry


class Admission(Protocol):
    async def admit(self, request: HTTPConnection, runner: AppRunner, *, single_shot: bool) -> AppSession:
        """Reserve a slot for ``request`` (a session reservation or one single-shot call), or raise AppError."""
        ...

    def done(self, runner: AppRunner, session: AppSession) -> None:
        """The session ended (released by whoever): stop anything admission started for it."""
        ...


class FreeAdmission:
    """Off-chain: every request within capacity is admitted; nothing is charged."""

    def __init__(self, registry: AppRegistry) -> None:
        self.registry = registry

    async def admit(self, request: HTTPConnection, runner: AppRunner, *, single_shot: bool) -> AppSession:
        return self.registry.reserve(runner)

    def done(self, runner: AppRunner, session: AppSession) -> None:
        return None
