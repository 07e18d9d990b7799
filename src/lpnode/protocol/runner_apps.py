"""The wire contract of Live Runner (runner apps), shared by orchestrator, runner and gateway.

go-livepeer ≥ 0.9 calls this feature "Live Runner": an orchestrator hosts any HTTP / SSE / WebSocket / trickle
app ("runner app") behind its own URLs. This module holds only the facts every side must agree on: route
templates, header names, JSON keys, modes, event names, timings and the error texts a peer may read back.
It imports nothing from a role.

Routes (all on the orchestrator's public HTTP port; paths are go-livepeer's):

- ``POST /runners/heartbeat`` (:data:`HEARTBEAT_PATH`), ``POST /runners/{id}/unregister`` (:func:`unregister_path`);
- ``GET /discovery`` (:data:`DISCOVERY_PATH`);
- ``POST /apps/{route}/session`` (reserve), ``POST /apps/{route}/session/{sid}/stop``,
  ``ANY /apps/{route}/session/{sid}/app/{path}`` (persistent traffic), ``ANY /apps/{route}/app/{path}``
  (single-shot), ``POST /apps/{route}/session/{sid}/payment``;
- runner callbacks under ``{Livepeer-Session-Control}`` = ``/runner/{route}/session/{sid}``: ``/channels``
  (POST create, DELETE remove), ``/proxy``, ``/stop``;
- ``POST /registerLiveRunners`` on the orchestrator's CLI (admin) port: the static upsert.

Error bodies are plain text with a trailing newline (go's ``http.Error``), which the SDK shows verbatim.
"""

from __future__ import annotations

import json
import re
from typing import Final
from urllib.parse import quote

# --- routes -------------------------------------------------------------------------------------------------

HEARTBEAT_PATH: Final = "/runners/heartbeat"
DISCOVERY_PATH: Final = "/discovery"
STATIC_UPSERT_PATH: Final = "/registerLiveRunners"
"""On the CLI/admin port, not the public one."""
APPS_PREFIX: Final = "/apps"
RUNNER_PREFIX: Final = "/runner"
PROXY_PREFIX: Final = "/run"
TRICKLE_PREFIX: Final = "/ai/trickle/"


def _seg(value: str) -> str:
    return quote(value, safe="")


def unregister_path(runner_id: str) -> str:
    """``/runners/{runner_id}/unregister``."""
    return f"/runners/{_seg(runner_id)}/unregister"


def session_path(route: str) -> str:
    """``/apps/{route}/session``: a persistent app's discovery URL path; POST reserves a session."""
    return f"{APPS_PREFIX}/{_seg(route)}/session"


def single_shot_path(route: str) -> str:
    """``/apps/{route}/app``: a single-shot app's discovery URL path; append the app's own path to call it."""
    return f"{APPS_PREFIX}/{_seg(route)}/app"


def control_path(route: str, session_id: str) -> str:
    """``/apps/{route}/session/{sid}``: a client's ``control_url`` (``/stop``, ``/payment`` below it)."""
    return f"{APPS_PREFIX}/{_seg(route)}/session/{_seg(session_id)}"


def session_app_path(route: str, session_id: str) -> str:
    """``/apps/{route}/session/{sid}/app``: a persistent session's ``app_url`` path."""
    return control_path(route, session_id) + "/app"


def runner_control_path(route: str, session_id: str) -> str:
    """``/runner/{route}/session/{sid}``: the ``Livepeer-Session-Control`` path a runner calls back on."""
    return f"{RUNNER_PREFIX}/{_seg(route)}/session/{_seg(session_id)}"


# --- headers ------------------------------------------------------------------------------------------------

ROUTE_HEADER: Final = "Livepeer-Runner-Route"
SESSION_ID_HEADER: Final = "Livepeer-Session-Id"
SESSION_TOKEN_HEADER: Final = "Livepeer-Session-Token"
SESSION_CONTROL_HEADER: Final = "Livepeer-Session-Control"
INJECTED_HEADERS: Final = (ROUTE_HEADER, SESSION_ID_HEADER, SESSION_TOKEN_HEADER, SESSION_CONTROL_HEADER)
"""The four headers the orchestrator sets (overwriting any client copies) on every proxied request."""
PAYER_HEADER: Final = "Livepeer-Payer-Address"

# --- modes, statuses, events ----------------------------------------------------------------------------------

MODE_PERSISTENT: Final = "persistent"
MODE_SINGLE_SHOT: Final = "single-shot"
MODE_ALIASES: Final = {
    "": MODE_PERSISTENT,
    "persistent": MODE_PERSISTENT,
    "single-shot": MODE_SINGLE_SHOT,
    "single_shot": MODE_SINGLE_SHOT,
}
"""Accepted ``mode`` values and what each means (an empty mode is persistent)."""
READY_STATUSES: Final = frozenset({"", "ready"})
"""A runner is listed and reservable only with one of these ``status`` values."""
STATUS_READY: Final = "ready"
STATUS_LOADING: Final = "loading"
STATUS_ERROR: Final = "error"
"""The statuses an lpnode runner app reports (its ``/health`` IDLE or OK / LOADING / ERROR). Any lowercase word is
valid on the wire; every one but ``ready`` (and empty) keeps the runner unlisted."""
PRICE_UNITS: Final = ("hour", "720p", "fixed")
"""The units a runner registers its USD ``price_info`` in."""
ROUTING_RUNNER_ID: Final = "runner-id"
ROUTING_LABEL: Final = "label"

O2R_CHANNEL_NAME: Final = "o2r"
O2R_EVENT_RESERVED: Final = "reserved"
O2R_EVENT_RELEASED: Final = "released"
O2R_KEEPALIVE: Final = {"keep": "alive"}
"""O2R messages: one JSON object per trickle segment, either this keepalive or
``{"event": "reserved"|"released", "session": <id>, "timestamp": <RFC 3339 UTC>}``."""

JSON_MIME: Final = "application/json"
DEFAULT_CHANNEL_MIME: Final = "application/octet-stream"

# --- JSON keys --------------------------------------------------------------------------------------------------

HEARTBEAT_FIELDS: Final = (
    "runner_id",
    "label",
    "proxy",
    "runner_url",
    "version",
    "metadata",
    "status",
    "mode",
    "gpu",
    "app",
    "capacity",
    "price_info",
    "session_ids",
)
"""Keys of a heartbeat body (and of a static ``runners.json`` entry, which adds :data:`STATIC_FIELDS`)."""
STATIC_FIELDS: Final = ("routing", "health_url", "healthy_status_code")
HEARTBEAT_ANSWER_FIELDS: Final = (
    "runner_id",
    "orchestrator",
    "heartbeat_interval",
    "heartbeat_ttl",
    "heartbeat_secret",
    "o2r",
    "session_ids",
)
"""``heartbeat_secret`` and ``o2r`` come only with the answer to a first registration."""
DISCOVERY_RUNNER_FIELDS: Final = (
    "url",
    "gpu",
    "app",
    "version",
    "metadata",
    "mode",
    "capacity",
    "capacity_used",
    "capacity_available",
    "price_info",
)
"""Keys of one runner in ``GET /discovery``'s ``[{"address", "runners": [...]}]``; ``gpu``, ``version``,
``metadata`` and ``price_info`` are left out when empty (``price_info`` always off-chain)."""
SESSION_FIELDS: Final = ("session_id", "app_url", "control_url")
CHANNEL_FIELDS: Final = ("name", "channel_name", "url", "internal_url", "mime_type")
GPU_FIELDS: Final = ("id", "name", "vram_mb")
PRICE_FIELDS: Final = ("price", "currency", "unit")

# --- limits and timings ------------------------------------------------------------------------------------------

HEARTBEAT_INTERVAL: Final = 5.0
HEARTBEAT_TTL: Final = 20.0
STATIC_HEALTH_INTERVAL: Final = 5.0
STATIC_HEALTH_TIMEOUT: Final = 3.0
O2R_KEEPALIVE_INTERVAL: Final = 10.0
O2R_QUEUE: Final = 32
METADATA_MAX_BYTES: Final = 1024
CHANNELS_PER_CALL: Final = 25
CHANNEL_NAME_RE: Final = re.compile(r"^[A-Za-z0-9_-]+$")

# --- error texts a peer may read back (plain text, go-livepeer's words) ------------------------------------------

NOT_SUPPORTED: Final = "live runners are not supported"
RUNNER_NOT_FOUND: Final = "runner not found"
SESSION_NOT_FOUND: Final = "runner session not found"
NO_CAPACITY: Final = "no capacity available for runner"
REGISTRATION_DISABLED: Final = "dynamic live runner registration is disabled"
INVALID_REGISTRATION_AUTH: Final = "invalid registration authorization"
INVALID_HEARTBEAT_AUTH: Final = "invalid heartbeat authorization"
INVALID_AUTH: Final = "invalid authorization"
STATIC_CANNOT_HEARTBEAT: Final = "static runner cannot heartbeat"
STATIC_CANNOT_UNREGISTER: Final = "static runner cannot unregister with heartbeat credentials"
ONLY_PERSISTENT_SESSIONS: Final = "only persistent runners have sessions"
NOT_SINGLE_SHOT: Final = "runner is not single-shot"
PROXY_NOT_FOUND: Final = "live runner proxy not found"
CHANNEL_NOT_FOUND: Final = "trickle channel not found"


def normalize_mode(mode: str) -> str | None:
    """The canonical mode for ``mode`` (``single_shot`` → ``single-shot``, empty → persistent); None if invalid."""
    return MODE_ALIASES.get(mode)


def sanitize_channel_name(name: str) -> str:
    """A session channel name as the orchestrator keeps it: trimmed, each ``/`` replaced by ``-``."""
    return name.strip().replace("/", "-")


# --- lpnode pipelines as apps ----------------------------------------------------------------------------------------

PIPELINE_APP_KEYS: Final = ("pipeline", "model_id", "path")
"""An lpnode runner's app ``metadata`` is the compact JSON object of these: the pipeline and model it serves and
the path to call under the app URL (``/text-to-image``; ``/stream/start`` for a live pipeline)."""


def pipeline_app_metadata(pipeline: str, model_id: str, path: str) -> str:
    """The ``metadata`` string an lpnode runner app advertises."""
    return json.dumps({"pipeline": pipeline, "model_id": model_id, "path": path}, separators=(",", ":"))


def read_pipeline_app_metadata(metadata: str) -> dict[str, str] | None:
    """``{"pipeline", "model_id", "path"}`` from an app's ``metadata``; None when it is not an lpnode pipeline's."""
    try:
        value = json.loads(metadata)
    except (TypeError, ValueError):
        return None
    if not isinstance(value, dict) or not all(isinstance(value.get(k), str) and value[k] for k in PIPELINE_APP_KEYS):
        return None
    return {k: value[k] for k in PIPELINE_APP_KEYS}


# --- payments on chain (research live-runner.md §12–§13) ---------------------------------------------------------

PAYMENT_PATH_TAIL: Final = "/payment"
"""``POST /apps/{route}/session/{sid}/payment``: a metered session's follow-up payment (:func:`payment_path`)."""
REFRESH_PAYMENT_PATH: Final = "/refresh-payment"
"""``POST /refresh-payment`` ``{"sender", "manifest_id"}``: fresh payment terms for a paid session."""
GENERIC_PAYMENT_PATH: Final = "/payment"
CHALLENGE_FIELDS: Final = ("payment_params", "orchestrator", "manifest_id", "payment_url")
"""A 402 challenge's JSON keys: ``payment_params`` is base64 of a protobuf ``OrchestratorInfo``."""
UNIT_SECONDS: Final = "seconds"
UNIT_720P: Final = "720p-pixel-seconds"
UNIT_FIXED: Final = "fixed"
ADVERTISED_UNITS: Final = {"hour": UNIT_SECONDS, "720p": UNIT_720P, "fixed": UNIT_FIXED}
"""The wei unit advertised (discovery, the signer's ``maxPrice.unit``) for each registered USD unit."""
USD_DIVISORS: Final = {"hour": 3600, "720p": 3600 * 1280 * 720 * 30, "fixed": 1}
"""Billing units in one registered unit: a USD price per ``hour`` is per 3,600 seconds, per ``720p`` hour per
99,532,800,000 pixel-seconds, ``fixed`` per call."""
UNITS_PER_SECOND: Final = {UNIT_SECONDS: 1, UNIT_720P: 1280 * 720 * 30}
"""Metered units a second of a session (a ``fixed`` session is not metered)."""
SIGNER_TYPES: Final = {UNIT_SECONDS: "live", UNIT_720P: "lv2v", UNIT_FIXED: "fixed", "hour": "live", "720p": "lv2v"}
"""The remote signer's payment ``type`` for an advertised (or registered) unit."""

INVALID_PAYER: Final = "invalid live runner payment signer address"
MISMATCHED_MANIFEST: Final = "mismatched manifest and auth token"
MISMATCHED_SESSION: Final = "mismatched session and payment manifest"
PRICE_MISMATCH: Final = "payment price does not match live runner price"
FIXED_NO_FOLLOW_UP: Final = "fixed-price live runner sessions do not accept follow-up payments"
PRICE_UNAVAILABLE: Final = "live runner price unavailable"
FIXED_PRICE_NOT_FOUND: Final = "fixed price not found for session"


def payment_path(route: str, session_id: str) -> str:
    """``/apps/{route}/session/{sid}/payment``: where a paid session's follow-up payments go (``payment_url``)."""
    return control_path(route, session_id) + PAYMENT_PATH_TAIL
