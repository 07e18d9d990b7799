"""BYOC ("bring your own container"): what both sides of BYOC share, and the container kit.

- :mod:`lpnode.byoc.job_request`: the ``Livepeer`` job header, its signature and job parameters;
  :mod:`lpnode.byoc.ledger`: per-second charging and balances.
- :mod:`lpnode.byoc.registry`: capabilities, their prices and pluggable targets (the seam for
  runner-hosted pipelines); :mod:`lpnode.byoc.container`: the external-container target, health-polled.
- The roles' routes live with the roles: :mod:`lpnode.orchestrator.byoc_routes` (``/capability/register``,
  ``/process/token``, ``/process/request``) and :mod:`lpnode.gateway.byoc_routes` (the gateway's
  ``/process/request``).
- :mod:`lpnode.byoc.kit`: serve Python functions as a BYOC container (``lpnode byoc serve``).
- :mod:`lpnode.byoc.command`: the ``lpnode byoc`` command. See ``docs/byoc.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lpnode.lazy_exports import lazy_exports

if TYPE_CHECKING:
    from lpnode.byoc.kit import ByocApp, UploadedFile
    from lpnode.byoc.registry import CapabilityRegistry, CapabilityTarget, Price, RegisteredCapability, TargetLease

__getattr__ = lazy_exports(
    __name__,
    {
        "kit": ("ByocApp", "UploadedFile"),
        "registry": ("CapabilityRegistry", "CapabilityTarget", "Price", "RegisteredCapability", "TargetLease"),
    },
)

__all__ = [
    "ByocApp",
    "CapabilityRegistry",
    "CapabilityTarget",
    "Price",
    "RegisteredCapability",
    "TargetLease",
    "UploadedFile",
]
