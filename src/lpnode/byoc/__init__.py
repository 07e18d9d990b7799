"""BYOC ("bring your own container"): external capabilities an orchestrator advertises and serves.

- :mod:`lpnode.byoc.registry`: capabilities, their prices and pluggable targets (the seam for
  runner-hosted pipelines); :mod:`lpnode.byoc.container`: the external-container target, health-polled.
- :mod:`lpnode.byoc.orchestrator_routes`: ``/capability/register``, ``/process/token``, ``/process/request``.
- :mod:`lpnode.byoc.gateway_routes`: the gateway's ``/process/request``.
- :mod:`lpnode.byoc.kit`: serve Python functions as a BYOC container (``lpnode byoc serve``).
- :mod:`lpnode.byoc.command`: the ``lpnode byoc`` command. See ``docs/byoc.md``.
"""

from lpnode.byoc.kit import ByocApp, UploadedFile
from lpnode.byoc.registry import CapabilityRegistry, CapabilityTarget, Price, RegisteredCapability, TargetLease

__all__ = [
    "ByocApp",
    "CapabilityRegistry",
    "CapabilityTarget",
    "Price",
    "RegisteredCapability",
    "TargetLease",
    "UploadedFile",
]
