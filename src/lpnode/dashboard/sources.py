"""What the dashboards read from a node: the small interface each role implements.

The pages, their JSON and the ``lpnode status`` / ``lpnode doctor`` presentation live in this package; the
code that reads a role's internals lives in the role (``lpnode.gateway.dashboard_source`` and
``lpnode.gateway.doctor``, ``lpnode.orchestrator.dashboard_source`` and ``lpnode.orchestrator.doctor``) and
hands the dashboard these values, so the dashboard never imports a role.

- The gateway's **network view**: :class:`NetworkSnapshot`, a ``/getNetworkCapabilities`` document with the
  gateway's own measurements per offer and its price caps.
- The gateway's **payments** (on chain): :meth:`GatewaySource.payments`, its wallet, funds and tickets sent.
- The gateway's **usage series**: :class:`UsageSource`, usage records already summed per time bucket, API key
  and pipeline.
- The **node view**: the orchestrator's ``GET /status`` document (``models`` with their ``runners``, each
  runner with its ``device``; ``byoc`` and ``workers`` lists), which the node page polls and ``lpnode status``
  prints. The orchestrator serves it itself; :data:`NODE_STATUS_PATH` names it.
- What ``lpnode doctor`` needs from the roles: the orchestrator's :class:`NodeFiles` (its aiModels.json and
  models dir) and the gateway's :data:`Advertisement` (what a gateway is told over gRPC).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, NamedTuple, Protocol

NODE_STATUS_PATH = "/status"
"""Where an orchestrator serves the node view."""

Annotate = Callable[[int, str, str], Mapping[str, Any]]
"""(orchestrator index in the document, pipeline, model id) -> extra fields for that offer."""
MaxPrice = Callable[[str, str], Fraction | None]
"""(pipeline, model id) -> the most wei per unit the gateway pays, or ``None`` for no cap."""


@dataclass(frozen=True)
class NetworkSnapshot:
    """The network as one gateway sees it now."""

    document: Mapping[str, Any]
    """A ``/getNetworkCapabilities`` body over the orchestrators that answered."""
    annotate: Annotate | None = None
    """The gateway's facts per offer (latency, successes, errors, ...); index into ``document["orchestrators"]``."""
    max_price: MaxPrice | None = None
    unreachable: Sequence[Mapping[str, Any]] = field(default_factory=list)
    """``{url, problem, errors}`` for each known orchestrator that has not answered."""
    last_refresh: float = 0.0
    """When the gateway last asked its orchestrators (epoch seconds)."""


class UsageBucket(NamedTuple):
    """Usage records of one API key and pipeline within one time bucket, summed."""

    bucket: int
    """Index of the bucket from the window's start (``(time - since) // step``)."""
    key_name: str | None
    """``None`` for requests made without a key."""
    pipeline: str
    requests: int
    units: int
    errors: int
    """Requests answered with a status of 400 or more."""
    spend_wei: float
    latency_ms: float
    """The sum of the requests' latencies (the series divides by ``requests``)."""


class UsageSource(Protocol):
    """A gateway's usage records, summed by time bucket."""

    def usage_buckets(self, since: float, step: float) -> Iterable[UsageBucket]:
        """Every record made at or after ``since``, summed per ``step``-second bucket, key and pipeline, with
        every record made before the call included. Blocking (call it off the event loop)."""
        ...


class GatewaySource(UsageSource, Protocol):
    """What the gateway's pages read from a running gateway."""

    def network(self) -> NetworkSnapshot:
        """The network view now. Called only while the gateway serves."""
        ...

    @property
    def keys_required(self) -> bool:
        """True when the gateway asks for API keys (the usage page then names keys)."""
        ...

    async def payments(self, *, admin: bool) -> Mapping[str, Any] | None:
        """On chain, the gateway's payments (the shape :mod:`lpnode.dashboard.payments_view` describes), with the
        deposit and reserve read fresh; ``None`` off-chain. ``admin`` adds what only the operator sees (the
        credit held with each orchestrator)."""
        ...


@dataclass(frozen=True)
class ModelEntry:
    """One aiModels.json entry, as the doctor checks it against the node."""

    pipeline: str
    model_id: str
    custom: bool = False
    """Not a Livepeer AI pipeline: a class of the operator's own (advertised as a BYOC capability)."""
    external_url: str = ""
    """The runner the operator runs for it; empty when the node starts the runner itself."""
    needs: tuple[str, ...] = ()
    """Other models its runner loads from the models dir (the image pipelines' safety checker)."""


@dataclass(frozen=True)
class NodeConfig:
    """A node's aiModels.json, read."""

    entries: Sequence[ModelEntry]
    warnings: Sequence[str] = ()


class NodeFiles(Protocol):
    """The orchestrator's side of ``lpnode doctor``: its configuration and models dir, read on this machine."""

    def read_config(self, path: Path) -> NodeConfig:
        """Parse the aiModels.json at ``path``; ``ConfigError`` with one problem per line when it is wrong."""
        ...

    def stored_models(self, models_dir: Path) -> Collection[str]:
        """The ids of the models whose files are in ``models_dir``."""
        ...

    def default_models_dir(self) -> Path:
        """Where the node keeps its models when no directory is named."""
        ...


@dataclass(frozen=True)
class Advertised:
    """What an orchestrator advertises to gateways, from a real ``GetOrchestrator`` call."""

    models: Mapping[tuple[int, str], bool]
    """(capability number, model id) -> warm."""
    hardware: int
    """How many hardware entries it sends."""
    ticket_params: Mapping[str, str] | None = None
    """On chain, the ticket params it gave the caller: ``recipient`` (EIP-55), ``face_value_wei``,
    ``win_prob`` (a fraction of 1, as a decimal string), ``expiration_block`` and ``model`` (``"<pipeline>
    <model id>"`` they price, absent when no model is priced); ``None`` when it gave none."""
    price_info: bool = False
    """Whether the info carries a ``price_info``."""
    signed_by: str = ""
    """The address the request was signed with (EIP-55); ``""`` for an unsigned request."""


@dataclass(frozen=True)
class GatewayWallet:
    """Where the gateway's wallet is: a keystore file or directory, the account in it (``""``: the only one)
    and its password. Unlocked only when an on-chain orchestrator is asked."""

    keystore: Path
    account: str = ""
    password: str = field(default="", repr=False)


class Advertisement(Protocol):
    """The gateway's side of ``lpnode doctor``: ask the orchestrator at a service URL for its info as a gateway
    does (gRPC, TLS included), signed with ``wallet`` when one is given (an orchestrator on chain answers only a
    signed request). Raises :class:`~lpnode.dashboard.fetch.Unreachable` when it does not answer and
    :class:`~lpnode.errors.ConfigError` (one line, never the password) when the wallet cannot be unlocked."""

    def __call__(self, service_url: str, wallet: GatewayWallet | None = None) -> Advertised: ...
