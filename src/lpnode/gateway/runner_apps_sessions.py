"""Runner-app sessions reserved through the gateway, kept in the gateway's state (:mod:`lpnode.gateway.state`).

A session is a row: its app, the orchestrator holding it, the orchestrator's app and control URLs, and the API key
that reserved it. With ``--db-url`` every gateway on the database knows every session, so a client behind a
balancer may reserve on one replica, call the app through another and stop it through a third; with the embedded
SQLite state a restarted gateway still knows the sessions it reserved. A session is forgotten when it is stopped,
when its orchestrator answers that it is gone, or :data:`MAX_AGE_SECONDS` after it was reserved.

What cannot be shared stays in the process that has it: a session paid through a remote signer is paid by the
gateway that reserved it (its :class:`~lpnode.gateway.remote_signer.AppFunding`). Stopped through another gateway,
those payments end at their next interval, when the orchestrator answers that the session is gone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from lpnode.errors import JobError, UnavailableError
from lpnode.gateway.state import AppSessionRecord, GatewayState
from lpnode.logs import log_event

if TYPE_CHECKING:
    from lpnode.gateway.remote_signer import AppFunding

log = logging.getLogger("lpnode.gateway.runner_apps")
MAX_AGE_SECONDS = 7 * 24 * 3600.0
"""How long a session is remembered at most (its orchestrator ends it long before, when its runner leaves)."""
_DROP_EVERY_SECONDS = 60.0


class AppSessions:
    """The sessions in ``state``, and the payments of the ones this gateway pays for. Every method is a coroutine
    that runs the database off the event loop; a session that cannot be recorded is a 503
    (:class:`~lpnode.errors.UnavailableError`), and the caller stops it where it was reserved."""

    def __init__(self, state: GatewayState) -> None:
        self.state = state
        self.funding: dict[str, AppFunding] = {}
        self._dropped_at = 0.0

    async def add(self, session: AppSessionRecord, funding: AppFunding | None) -> None:
        now = time.monotonic()
        try:
            if now - self._dropped_at > _DROP_EVERY_SECONDS:
                self._dropped_at = now
                await asyncio.to_thread(self.state.drop_sessions, time.time() - MAX_AGE_SECONDS)
            await asyncio.to_thread(self.state.session_reserved, session)
        except JobError:
            raise
        except Exception as exc:  # the embedded database's own errors (PostgreSQL's are 503s already)
            log_event(log, "gateway database error", logging.ERROR, database=self.state.where, error=str(exc))
            raise UnavailableError("the gateway could not record the session; retry shortly", retry_after=2) from None
        self.funding = {sid: paid for sid, paid in self.funding.items() if paid.running}  # ended on their own
        if funding is not None:
            self.funding[session.session_id] = funding

    async def get(self, session_id: str, app: str, key_id: int | None) -> AppSessionRecord | None:
        """The session, if it is of ``app`` and was reserved with ``key_id``'s key (another key does not see it)."""
        held = await asyncio.to_thread(self.state.app_session, session_id)
        if held is None or held.app != app or held.key_id != key_id:
            return None
        return held

    async def find(self, session_id: str) -> AppSessionRecord | None:
        """The session whoever reserved it (to recognise a path naming it)."""
        return await asyncio.to_thread(self.state.app_session, session_id)

    async def end(self, session_id: str) -> None:
        """Forget the session and stop paying for it here."""
        funding = self.funding.pop(session_id, None)
        if funding is not None:
            await funding.stop()
        await asyncio.to_thread(self.state.session_ended, session_id)

    async def close(self) -> None:
        """Stop the payments this gateway makes (the sessions stay known to the state)."""
        funding, self.funding = list(self.funding.values()), {}
        for paid in funding:
            await paid.stop()
