"""Host ports for managed runners: go-livepeer's per-pipeline bases plus the slot, skipping busy ports.

go-livepeer gives a container ``base + <colocation index><gpu id>`` (t2i on GPU 1 → 8001). Here slot ``s``
first tries ``base + s``, then the other ports of the pipeline's block of 100 that end in the same digit
(``base + s + 10``, ``+ 20``, … wrapping), so one busy port never blocks a slot.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Collection, Iterator, Mapping

from lpnode.orchestrator.pool.errors import PoolConfigError
from lpnode.pipelines import FALLBACK_PORT_BASE, PIPELINES
from lpnode.serving import port_is_free as port_is_free

PORT_BASES: Mapping[str, int] = {name: p.port_base for name, p in PIPELINES.items()}
FALLBACK_BASE = FALLBACK_PORT_BASE  # a pipeline without a base of its own


def port_candidates(base: int, slot: int) -> Iterator[int]:
    """The ports slot ``slot`` may use in the block ``base``..``base + 99``, in order of preference."""
    if not 0 <= slot < 100:
        raise PoolConfigError(f"slot {slot} is out of range; at most 100 slots are supported")
    offsets = sorted(range(slot % 10, 100, 10), key=lambda offset: (offset < slot, offset))
    return (base + offset for offset in offsets)


def claim_port(
    pipeline: str,
    slot: int,
    *,
    host: str = "127.0.0.1",
    taken: Collection[int] = (),
    bases: Mapping[str, int] = PORT_BASES,
) -> socket.socket:
    """A listening socket on the first candidate port for (pipeline, slot) that nobody holds.

    Binding and listening here claims the port at once: another pool (an orchestrator and a worker started
    together) cannot take the same port between the pick and the runner's start, which it could with a
    check-then-bind. The runner inherits the socket (``LPNODE_LISTEN_FD``)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    base = bases.get(pipeline, FALLBACK_BASE)
    for port in port_candidates(base, slot):
        if port in taken:
            continue
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            sock.listen(2048)
        except OSError:
            sock.close()
            continue
        return sock
    raise PoolConfigError(
        f"no free port for a {pipeline} runner in slot {slot} on {host} (tried {base + slot % 10}, "
        f"{base + slot % 10 + 10}, … up to {base + 99}); stop what is listening there or change the port bases"
    )


def pick_port(
    pipeline: str,
    slot: int,
    *,
    host: str = "127.0.0.1",
    taken: Collection[int] = (),
    bases: Mapping[str, int] = PORT_BASES,
    is_free: Callable[[str, int], bool] = port_is_free,
) -> int:
    """The first candidate port for (pipeline, slot) that is neither ``taken`` by the pool nor busy."""
    base = bases.get(pipeline, FALLBACK_BASE)
    for port in port_candidates(base, slot):
        if port not in taken and is_free(host, port):
            return port
    raise PoolConfigError(
        f"no free port for a {pipeline} runner in slot {slot} on {host} (tried {base + slot % 10}, "
        f"{base + slot % 10 + 10}, … up to {base + 99}); stop what is listening there or change the port bases"
    )
