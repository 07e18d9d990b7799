"""Where a runner-app session or single-shot call is admitted: the one seam payments plug into.

Off-chain admission is a plain reservation (:class:`FreeAdmission`). On chain
:class:`~lpnode.orchestrator.runner_apps.payments.PaidAdmission` answers the 402 challenge, takes the payment,
meters the session and serves the payment routes. Routes call :meth:`Admission.admit` before proxying,
:meth:`Admission.bind` with the task serving a single-shot call (so a failed debit can cut it off) and
:meth:`Admission.done` when the session ends, whoever ended it.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from starlette.requests import HTTPConnection
from starlette.responses import Response

from lpnode.orchestrator.runner_apps.records import AppRunner, AppSession
from lpnode.orchestrator.runner_apps.registry import AppError, AppRegistry


class JsonRefusal(AppError):
    """A refusal answered with a JSON body (the 402 challenge, go's ``{"error": {"message"}}`` envelope)."""

    def __init__(self, status: int, document: Any) -> None:
        super().__init__(status, str(document))
        self.document = document


def json_error(status: int, message: str) -> JsonRefusal:
    return JsonRefusal(status, {"error": {"message": message}})


class Admission(Protocol):
    async def admit(self, request: HTTPConnection, runner: AppRunner, *, single_shot: bool) -> AppSession:
        """Reserve a slot for ``request`` (a session reservation or one single-shot call), or raise AppError."""
        ...

    def bind(self, runner: AppRunner, session: AppSession, task: asyncio.Task[Any]) -> None:
        """``task`` serves ``session``'s single-shot call: cancel it if the session is released under it."""
        ...

    def done(self, runner: AppRunner, session: AppSession) -> None:
        """The session ended (released by whoever): stop anything admission started for it."""
        ...


class PaymentRoutes(Protocol):
    """What a paid admission serves besides admitting: the payment routes and discovery's prices."""

    async def session_payment(self, request: HTTPConnection, route: str, session_id: str) -> Response:
        """``POST /apps/{route}/session/{sid}/payment``."""
        ...

    async def refresh_payment(self, body: bytes) -> Response:
        """``POST /refresh-payment``."""
        ...

    def discovery_price(self, runner: AppRunner) -> dict[str, Any] | None:
        """``price_info`` of ``runner`` in discovery (None: left out)."""
        ...


class FreeAdmission:
    """Off-chain: every request within capacity is admitted; nothing is charged."""

    def __init__(self, registry: AppRegistry) -> None:
        self.registry = registry

    async def admit(self, request: HTTPConnection, runner: AppRunner, *, single_shot: bool) -> AppSession:
        return self.registry.reserve(runner)

    def bind(self, runner: AppRunner, session: AppSession, task: asyncio.Task[Any]) -> None:
        return None

    def done(self, runner: AppRunner, session: AppSession) -> None:
        return None
