"""Trying orchestrators in turn until one serves: the one loop batch jobs, live starts and BYOC jobs share, and
the classification of an orchestrator's refusal (go-livepeer's, ``research`` §5.2).

An attempt that does not serve raises :class:`Retry` with its reason; the loop moves to the next candidate (or
gives the same one a second chance when ``again``), and when none is left, or the deadline has passed, the
caller gets a 503 (504 past the deadline) listing every reason.

What an orchestrator's error answer means (:func:`refusal`):

- a refused payment (go-livepeer's ``TicketParams expired`` and ``invalid ticket senderNonce`` answers, and
  ``Insufficient balance``, which an orchestrator answers with 400): the session's params are dropped; after
  expired params (go's rule, §5.2) or a balance the orchestrator lost (a restart), they are fetched again and this
  orchestrator is tried once more, paid in full; after a bad nonce the others are tried;
- 400/413/415/422: the input is wrong — the caller gets it, in the runner's words; no retry;
- 402/403: payment or credentials — its info and token are fetched again and it is tried once more;
- 503: at capacity — the next one is tried; this one is not blamed;
- anything else: this orchestrator's offer of that (pipeline, model) is suspended, the next one tried;
- no answer at all (:func:`unreachable`): the whole orchestrator is suspended, the next one tried.

A try that finds every orchestrator at capacity ends with :attr:`Tries.busy` set, so the caller may wait for
capacity (:mod:`lpnode.gateway.capacity_queue`) instead of failing.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Collection
from typing import Generic, TypeVar

from lpnode.errors import GatewayTimeoutError, JobError, UnavailableError
from lpnode.gateway.directory import Directory
from lpnode.protocol.job_hop import FINAL_STATUSES, answer_error, error_message

BUSY_RETRY = 1.0
"""Seconds before asking an orchestrator at capacity again when its answer gave no ``Retry-After``."""
PAYMENT_REFUSALS = {
    "ticketparams expired": "expired",
    "invalid ticket sendernonce": "nonce",
    "insufficient balance": "balance",
}
"""go-livepeer's payment refusals (lower-cased, as its gateway matches them) and what each is called here."""
C = TypeVar("C")
R = TypeVar("R")


class Retry(Exception):
    """This orchestrator did not serve the job; ``again``: it may be tried once more; ``busy``: it is at
    capacity (and ``retry_after`` is its hint, in seconds, of when to ask again)."""

    def __init__(
        self, reason: str, *, again: bool = False, busy: bool = False, retry_after: float | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.again = again
        self.busy = busy
        self.retry_after = retry_after


class Tries(Generic[C]):
    """One job's tries. ``pick(tried)`` names the next candidate (``None``: none is left) and may add to
    :attr:`reasons` why it found none; ``key`` names a candidate in reasons and in ``tried``."""

    def __init__(
        self,
        what: str,
        pick: Callable[[Collection[str]], Awaitable[C | None]],
        key: Callable[[C], str],
        *,
        deadline: float | None = None,
        limit: int = 6,
    ) -> None:
        self.what = what
        self.pick = pick
        self.key = key
        self.deadline = deadline
        self.limit = limit
        self.reasons: list[str] = []
        self.busy = 0  # tries that found the orchestrator at capacity
        self.retry_after: float | None = None  # the longest Retry-After those gave

    async def run(self, attempt: Callable[[C], Awaitable[R]]) -> R:
        tried: set[str] = set()
        second_chance: set[str] = set()
        for _ in range(self.limit):
            self._check_deadline()
            candidate = await self.pick(tried)
            if candidate is None:
                break
            name = self.key(candidate)
            try:
                return await attempt(candidate)
            except Retry as retry:
                self.reasons.append(f"{name}: {retry.reason}")
                if retry.busy:
                    self.busy += 1
                    if retry.retry_after is not None:
                        self.retry_after = max(self.retry_after or 0.0, retry.retry_after)
                if retry.again and name not in second_chance:
                    second_chance.add(name)
                else:
                    tried.add(name)
        self._check_deadline()
        why = "; ".join(self.reasons) if self.reasons else "no orchestrator offers it"
        raise UnavailableError(f"no orchestrator could {self.what}: {why}", 1)

    def _check_deadline(self) -> None:
        if self.deadline is not None and time.monotonic() >= self.deadline:
            why = f": {'; '.join(self.reasons)}" if self.reasons else ""
            raise GatewayTimeoutError(f"no orchestrator answered before the deadline{why}")


def refusal(
    directory: Directory,
    url: str,
    status: int,
    body: bytes,
    *,
    pipeline: str,
    model_id: str,
    final_prefix: str = "",
    retry_after: str | None = None,
) -> JobError:
    """What orchestrator ``url``'s error answer to a (pipeline, model_id) job means: a :class:`JobError` for the
    caller (returned), or a :class:`Retry` (raised). Where the orchestrator is to blame, only that offer is
    suspended: the node answered, so its other pipelines and models stay on offer."""
    refused = payment_refusal(status, body)
    if refused:
        directory.forget_session(url)  # new ticket params (and token) before this orchestrator is used again
        message = error_message(body)
        # Expired params (go's rule) and a balance the orchestrator no longer holds (it restarted or moved, and our
        # credit with it was dropped above) are paid afresh on this orchestrator once; a bad nonce moves on.
        raise Retry(f"refused our payment ({status}: {message})", again=refused in ("expired", "balance"))
    if status in FINAL_STATUSES:  # the caller's mistake, not the orchestrator's
        error = answer_error(status, body)
        if final_prefix:
            error.message = f"{final_prefix}{error.message}"
        return error
    message = error_message(body)
    if status in (402, 403):
        directory.forget_session(url)
        raise Retry(f"refused our credentials ({status}: {message})", again=True)
    if status == 503:
        hint = _seconds(retry_after)
        raise Retry(message or "insufficient capacity", busy=True, retry_after=BUSY_RETRY if hint is None else hint)
    directory.suspend_offer(url, pipeline, model_id, f"answered {status}: {message}")
    raise Retry(f"answered {status}: {message}")


def payment_refusal(status: int, body: bytes) -> str:
    """Which of go-livepeer's payment refusals an error answer is (:data:`PAYMENT_REFUSALS`' names), or ""."""
    if status not in (400, 402, 403):
        return ""
    text = error_message(body).lower()
    return next((name for words, name in PAYMENT_REFUSALS.items() if words in text), "")


def unreachable(directory: Directory, url: str, problem: str) -> Retry:
    """An orchestrator that gave no (whole) answer (``problem`` says how): suspended, and the :class:`Retry` to
    raise."""
    directory.suspend(url, problem)
    return Retry(problem)


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None
