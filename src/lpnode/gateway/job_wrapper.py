"""What every public gateway job goes through, whatever its route: admission under an API key, the work, an
error rendered in the route's dialect, and one metering record once the answer has been sent (or the stream
has ended, however it ended).

The recorded status is the one the caller ended up with: a streamed answer whose client went away before
its end is recorded as 499, one cut off upstream as 502 (:class:`lpnode.http_relay.RelayedStream`); only a
2xx keeps its price.

A route gives :meth:`JobWrapper.serve` its work: an async function of the job's :class:`JobRecord` that returns
the answer or raises a :class:`JobError`. The work fills the record in (pipeline, model, units, orchestrator,
price); a refused key is metered against that key. Work that goes on after the answer (an asynchronous job)
takes the admission and the recording with :meth:`JobRecord.detach`.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from fractions import Fraction

from starlette.requests import Request
from starlette.responses import Response

from lpnode.errors import JobError, PipelineFailedError, TooManyRequestsError, gateway_json_response
from lpnode.gateway.key_guard import KeyAdmission
from lpnode.gateway.usage import served
from lpnode.http_relay import when_sent

log = logging.getLogger("lpnode.gateway")


@dataclass
class JobRecord:
    """One job, as metered: filled in by the work, recorded once when the answer is sent."""

    pipeline: str = ""
    model_id: str = ""
    units: int = 0
    orchestrator: str = ""
    price: Fraction | None = None  # wei per unit
    headers: dict[str, str] = field(default_factory=dict)  # the orchestrator's, e.g. X-Audio-Duration
    key_id: int | None = None
    key_name: str = ""
    request_id: str = field(default_factory=lambda: secrets.token_hex(8))
    started: float = field(default_factory=time.monotonic)
    admission: KeyAdmission | None = None
    detached: bool = False
    metered: bool = True  # False: nothing worth a usage record (e.g. a BYOC request refused before it named one)

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started

    def detach(self) -> Callable[[int], None]:
        """Take over this job's end: the wrapper will neither release its admission nor record it; call the
        returned function with the final status when the job is done."""
        self.detached = True
        admission, self.admission = self.admission, None
        wrapper_finish = self._finish

        def finish(status: int) -> None:
            if admission is not None:
                admission.release()
            if wrapper_finish is not None:
                wrapper_finish(self, status)

        return finish

    _finish: Callable[[JobRecord, int], None] | None = None


Recorder = Callable[[JobRecord, int], None]
"""Called once per finished job with its record and the status its caller got."""
Admit = Callable[[str | None], Awaitable[KeyAdmission]]
Settle = Callable[[JobRecord, int], None]
"""Called with the final status before recording, for units known only then (BYOC's seconds, audio's duration)."""


class JobWrapper:
    def __init__(self, *, admit: Admit | None = None, record: Recorder | None = None) -> None:
        self.admit = admit
        self.record = record

    async def serve(
        self,
        request: Request,
        work: Callable[[JobRecord], Awaitable[Response]],
        *,
        render: Callable[[JobError], Response] = gateway_json_response,
        settle: Settle | None = None,
        job: JobRecord | None = None,
    ) -> Response:
        job = job or JobRecord()
        job._finish = self._record
        try:
            if self.admit is not None:
                job.admission = await self.admit(request.headers.get("authorization"))
                job.key_id, job.key_name = job.admission.key.id, job.admission.key.name
            response = await work(job)
        except JobError as exc:
            if isinstance(exc, TooManyRequestsError) and exc.key_id is not None:
                job.key_id, job.key_name = exc.key_id, exc.key_name
            response = render(exc)
        except Exception as exc:  # a bug: log it whole, answer a plain 500 without a traceback
            log.exception("request failed unexpectedly", extra={"fields": {"pipeline": job.pipeline or "-"}})
            response = render(PipelineFailedError(f"internal error: {type(exc).__name__}"))
        if job.detached:
            return response

        def finish(status: int) -> None:
            if job.admission is not None:
                job.admission.release()
            if settle is not None:
                settle(job, status)
            self._record(job, status)

        return when_sent(response, finish)

    def _record(self, job: JobRecord, status: int) -> None:
        if not served(status):
            # Only a served answer is charged: a refused, failed or abandoned job (499: the client left
            # before the whole answer was sent) keeps its units for the record but costs nothing.
            job.price = None
        if self.record is not None and job.metered:
            self.record(job, status)
