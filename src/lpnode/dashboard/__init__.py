"""Dashboards: the network page (gateway and ``lpnode dashboard``), the node page (orchestrator), the usage
page (gateway admin port), and the ``lpnode status`` and ``lpnode doctor`` commands."""

from lpnode.dashboard.network_view import network_view
from lpnode.dashboard.units import OUTPUT_UNITS, price_per_output

__all__ = ["OUTPUT_UNITS", "network_view", "price_per_output"]
