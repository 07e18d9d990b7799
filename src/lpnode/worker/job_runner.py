"""Running one job an orchestrator sent: its input, the local runner call, and the result upload.

The job's ``requestData`` names the model and carries the request (see :mod:`lpnode.protocol.ai_worker`).
An input file is fetched from ``input_url`` (bounded by :data:`INPUT_TIMEOUT`), the request goes to one
of this worker's runners as the orchestrator would send it (JSON, or a multipart form with the file),
and the answer goes back to ``POST /aiResults``: images and audio (``data:`` URLs) as file parts whose
names the JSON's ``url`` fields carry, image-to-video frames as one MP4 per video (as the orchestrator
encodes them), LLM streams as server-sent events relayed as they come, and failures as
``livepeer/ai-worker-error`` with the status the orchestrator would have answered (``Lpnode-Status``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp

from lpnode.errors import BadRequestError, JobError, PipelineFailedError
from lpnode.logs import log_event
from lpnode.orchestrator.pool import RunnerPool
from lpnode.pipelines import PIPELINES, Results, model_field
from lpnode.protocol.ai_worker import (
    AI_RESULTS_PATH,
    CREDENTIALS_HEADER,
    ERROR_CONTENT_TYPE,
    FILE_FIELDS,
    PIPELINE_HEADER,
    STATUS_HEADER,
    STREAM_CONTENT_TYPE,
    TASK_ID_HEADER,
    JobData,
    ResultFile,
    build_multipart,
    build_result,
)
from lpnode.protocol.job_hop import WORKER_AUTHORIZATION, runner_error
from lpnode.protocol.lp_rpc_pb2 import NotifyAIJob
from lpnode.results import decode_data_url, extension_for
from lpnode.worker.link import OrchestratorLink

log = logging.getLogger("lpnode.worker")
INPUT_TIMEOUT = 10.0
"""Seconds to fetch a job's input file (go-livepeer workers allow 4)."""
UPLOAD_TIMEOUT = 300.0
ERROR_BODY_LIMIT = 1024 * 1024
VIDEO_FPS = 7


class JobRunner:
    """Runs jobs on ``pool``'s runners and uploads their results to the orchestrator behind ``link``."""

    def __init__(self, pool: RunnerPool, link: OrchestratorLink, secret: str, session: aiohttp.ClientSession) -> None:
        self.pool = pool
        self.link = link
        self.secret = secret
        self.session = session

    async def run(self, notify: NotifyAIJob) -> None:
        """Run one job and upload its result (or its error); never raises (cancellation aside)."""
        pipeline, task_id = notify.AIJobData.pipeline, notify.taskId
        log_event(log, "job received", task=task_id, pipeline=pipeline)
        try:
            await self._run(pipeline, task_id, notify.AIJobData.requestData)
        except JobError as exc:
            log_event(log, "job failed", logging.WARNING, task=task_id, pipeline=pipeline, problem=exc.message)
            await self._upload(pipeline, task_id, exc.message.encode(), ERROR_CONTENT_TYPE, exc.status_code)
        except Exception as exc:  # a bug: log it whole, tell the orchestrator without the traceback
            log.exception("job failed unexpectedly", extra={"fields": {"task": task_id}})
            message = f"internal error on the worker: {type(exc).__name__}"
            await self._upload(pipeline, task_id, message.encode(), ERROR_CONTENT_TYPE, 500)

    async def _run(self, pipeline: str, task_id: int, data: bytes) -> None:
        try:
            job = JobData.decode(data)
        except ValueError as exc:
            raise BadRequestError(str(exc)) from None
        field = model_field(pipeline)
        model_id = job.request.get(field) or job.request.get("model_id") or ""
        if not isinstance(model_id, str) or not model_id:
            raise BadRequestError(f"{field} is required")
        upload = await self._input(job.input_url) if job.input_url else None
        async with self.pool.lease(pipeline, model_id) as runner:
            body, content_type = _runner_request(pipeline, job.request, upload)
            headers = {"Content-Type": content_type, **runner.headers}
            try:
                async with self.session.post(f"{runner.url}/{pipeline}", data=body, headers=headers) as answer:
                    if answer.status != 200:
                        error = await answer.content.read(ERROR_BODY_LIMIT)
                        raise runner_error(pipeline, answer.status, error, answer.headers.get("Retry-After"))
                    if answer.headers.get("content-type", "").startswith(STREAM_CONTENT_TYPE):
                        await self._upload(pipeline, task_id, _chunks(answer), STREAM_CONTENT_TYPE)
                        return
                    result = await answer.read()
            except aiohttp.ClientError as exc:
                raise PipelineFailedError(f"the {pipeline} runner failed: {exc or type(exc).__name__}") from None
        content_type, body = await asyncio.to_thread(_result_upload, pipeline, result)
        await self._upload(pipeline, task_id, body, content_type)
        log_event(log, "job done", task=task_id, pipeline=pipeline, model=model_id)

    async def _input(self, url: str) -> bytes:
        try:
            async with self.session.get(
                url, ssl=self.link.ssl_for(url), timeout=aiohttp.ClientTimeout(total=INPUT_TIMEOUT)
            ) as response:
                if response.status != 200:
                    raise PipelineFailedError(f"could not fetch the job's input {url}: HTTP {response.status}")
                return await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise PipelineFailedError(f"could not fetch the job's input {url}: {exc or type(exc).__name__}") from None

    async def _upload(
        self, pipeline: str, task_id: int, body: bytes | AsyncIterator[bytes], content_type: str, status: int = 0
    ) -> None:
        url = self.link.url + AI_RESULTS_PATH
        headers = {
            "Authorization": WORKER_AUTHORIZATION,
            CREDENTIALS_HEADER: self.secret,
            TASK_ID_HEADER: str(task_id),
            PIPELINE_HEADER: pipeline,
            "Content-Type": content_type,
        }
        if status:
            headers[STATUS_HEADER] = str(status)
        if content_type == STREAM_CONTENT_TYPE:
            headers |= {"Cache-Control": "no-cache", "Connection": "keep-alive"}
        try:
            async with self.session.post(
                url,
                data=body,
                headers=headers,
                ssl=self.link.ssl_for(url),
                timeout=aiohttp.ClientTimeout(total=None if content_type == STREAM_CONTENT_TYPE else UPLOAD_TIMEOUT),
            ) as response:
                if response.status >= 300:
                    text = (await response.content.read(2048)).decode("utf-8", "replace").strip()
                    log_event(
                        log,
                        "the orchestrator refused a result",
                        logging.WARNING,
                        task=task_id,
                        status=response.status,
                        reply=text,
                    )
        except (aiohttp.ClientError, TimeoutError) as exc:
            log_event(
                log, "could not upload a result", logging.WARNING, task=task_id, problem=str(exc) or type(exc).__name__
            )


async def _chunks(answer: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    async for chunk in answer.content.iter_any():
        yield chunk


def _runner_request(pipeline: str, request: Mapping[str, Any], upload: bytes | None) -> tuple[bytes, str]:
    """The body and Content-Type the runner takes for ``request``: JSON, or a form with the file."""
    file_field = FILE_FIELDS.get(pipeline)
    if file_field is None:
        return json.dumps(request).encode(), "application/json"
    if upload is None:
        raise BadRequestError(f"{pipeline} needs an input file and the job named none (input_url is empty)")
    parts: list[tuple[Mapping[str, str], bytes]] = []
    for name, value in request.items():
        if name == file_field or value is None:
            continue
        text = value if isinstance(value, str) else json.dumps(value)
        parts.append(({"Content-Disposition": f'form-data; name="{name}"'}, text.encode()))
    disposition = f'form-data; name="{file_field}"; filename="input"'
    parts.append(({"Content-Disposition": disposition, "Content-Type": "application/octet-stream"}, upload))
    content_type, body = build_multipart(parts, subtype="form-data")
    return body, content_type


_VIDEO_PIPELINES = frozenset(name for name, p in PIPELINES.items() if p.results is Results.VIDEO)


def _result_upload(pipeline: str, answer: bytes) -> tuple[str, bytes]:
    """The ``multipart/mixed`` upload for a runner's 200 ``answer``."""
    try:
        data = json.loads(answer)
    except ValueError:
        raise PipelineFailedError(f"{pipeline} container returned a body that is not JSON") from None
    files: list[ResultFile] = []
    try:
        if pipeline in _VIDEO_PIPELINES and isinstance(data, dict):
            data = {"images": _videos(data, files)}
        else:
            for holder in _url_holders(data):
                if holder["url"].startswith("data:"):
                    mime, content = decode_data_url(holder["url"])
                    name = f"{secrets.token_hex(8)}.{extension_for(mime)}"
                    files.append(ResultFile(name, mime, content))
                    holder["url"] = name
    except (ValueError, KeyError, TypeError) as exc:
        raise PipelineFailedError(f"could not read the {pipeline} result: {exc}") from None
    return build_result(json.dumps(data).encode(), files)


def _videos(data: Mapping[str, Any], files: list[ResultFile]) -> list[dict[str, Any]]:
    from lpnode.mp4 import encode_mp4  # PyAV: the media extra, checked at start (install_check)

    videos = []
    for frames in data.get("frames") or []:
        if not frames:
            continue
        images = [decode_data_url(frame["url"])[1] for frame in frames]
        name = f"{secrets.token_hex(8)}.mp4"
        files.append(ResultFile(name, "video/mp4", encode_mp4(images, fps=VIDEO_FPS)))
        first = frames[0]
        videos.append({"url": name, "seed": first.get("seed", 0), "nsfw": bool(first.get("nsfw", False))})
    if not videos:
        raise ValueError("the runner returned no frames")
    return videos


def _url_holders(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, dict):
        found = [value] if isinstance(value.get("url"), str) else []
        return found + [h for item in value.values() for h in _url_holders(item)]
    if isinstance(value, list):
        return [h for item in value for h in _url_holders(item)]
    return []
