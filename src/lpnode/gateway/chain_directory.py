"""The gateway's orchestrators found on chain: the active orchestrators of Livepeer's pool, each at the service
URI it registered, fed to the :class:`~lpnode.gateway.directory.Directory` (its ``discover`` hook), and their
stakes for the stake selection (:mod:`lpnode.gateway.selection_chain`).

What a caller may rely on:

- :meth:`ChainDirectory.discover` reads the pool (:class:`~lpnode.payments.transcoder_pool.TranscoderPool`) and
  answers the URLs of the orchestrators active this round that registered a service URI. The directory asks at
  every refresh: on its period, and on demand when a job finds no offer. An orchestrator that leaves the active
  set is dropped at the round it stops being active; one that changes its service URI is asked at the new one.
  A read that fails leaves the list as it was (and says so in the log).
- :meth:`ChainDirectory.run` watches the pool's contracts every ``poll_seconds`` (one JSON-RPC batch: the block,
  the round and the contracts' logs since the last look); a new round or anything logged reads the pool again and,
  when the list changed, refreshes the directory at once, so the gateway follows within a poll. go-livepeer
  follows the same events with its contract watchers; its pool cache refreshes every 25 minutes besides.
- Orchestrators that stop answering are the directory's to suspend, as any other.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from lpnode.gateway.directory import normalize_address
from lpnode.logs import log_event
from lpnode.payments.chain_errors import ChainError
from lpnode.payments.transcoder_pool import PoolMember, PoolRead, TranscoderPool

if TYPE_CHECKING:
    from lpnode.gateway.directory import Directory

log = logging.getLogger("lpnode.gateway.chain_directory")
POLL_SECONDS = 5.0
"""How often the pool's contracts are checked for changes (go-livepeer polls blocks every 5 s)."""
FRESH_SECONDS = 1.0
"""A pool read this recent answers :meth:`ChainDirectory.discover` without reading again."""


class ChainDirectory:
    """Orchestrators from the chain's pool. ``pool``: the reader (closed by :meth:`close`)."""

    def __init__(self, pool: TranscoderPool, *, poll_seconds: float = POLL_SECONDS) -> None:
        self.pool = pool
        self.poll_seconds = poll_seconds
        self.last: PoolRead | None = None
        self.read_at = 0.0  # monotonic
        self.problem = ""  # why the last read failed ("" when it did not)
        self._by_url: dict[str, PoolMember] = {}
        self._by_address: dict[bytes, PoolMember] = {}
        self._listed: tuple[str, ...] = ()
        self._skipped: set[tuple[bytes, str]] = set()
        self._block: int | None = None  # the block looked at last (None: not yet)
        self._reading: asyncio.Task[PoolRead] | None = None

    # --- what the directory and the selector ask ---------------------------------------------------------------

    async def discover(self) -> Sequence[str] | None:
        """The URLs of the active orchestrators now (None: the chain could not be read; keep the list)."""
        if self.last is None or time.monotonic() - self.read_at > FRESH_SECONDS:
            try:
                await self.read()
            except ChainError:
                return None
        return self._listed

    def stake(self, url: str, directory: Directory | None = None) -> int | None:
        """The stake of the orchestrator at ``url``: the pool member listed there, or (for an orchestrator listed
        otherwise, e.g. by ``-orchAddr``) the member whose address its info names. None: not in the pool."""
        member = self._by_url.get(url)
        if member is None and directory is not None:
            known = directory.orchestrators.get(url)
            info = known.info if known is not None else None
            if info is not None:
                recipient = info.ticket_params.recipient if info.HasField("ticket_params") else b""
                member = self._by_address.get(bytes(recipient or info.address))
        return member.stake if member is not None else None

    def member(self, url: str) -> PoolMember | None:
        """The pool member listed at ``url``."""
        return self._by_url.get(url)

    # --- reading -----------------------------------------------------------------------------------------------

    async def read(self) -> PoolRead:
        """Read the pool now (joins a read already running). Raises :class:`ChainError`."""
        if self._reading is None or self._reading.done():
            self._reading = asyncio.ensure_future(self._read())
        return await asyncio.shield(self._reading)

    async def _read(self) -> PoolRead:
        try:
            found = await self.pool.read()
        except ChainError as exc:
            if str(exc) != self.problem:
                log_event(log, "orchestrator pool unreadable", logging.WARNING, problem=str(exc))
            self.problem = str(exc)
            raise
        if self.problem:
            log_event(log, "orchestrator pool readable again")
        self.problem = ""
        self._take(found)
        return found

    def _take(self, found: PoolRead) -> None:
        by_url: dict[str, PoolMember] = {}
        for member in found.active:
            url = self._url(member)
            if url and url not in by_url:
                by_url[url] = member
        listed = tuple(sorted(by_url))
        if listed != self._listed:
            log_event(
                log, "orchestrator pool", round=found.round, active=len(found.active), listed=len(listed),
                urls=",".join(listed) or "-",
            )  # fmt: skip
        self.last, self.read_at = found, time.monotonic()
        self._by_url, self._listed = by_url, listed
        self._by_address = {m.address: m for m in found.members}

    def _url(self, member: PoolMember) -> str:
        """Where to reach ``member`` ("" when its service URI is unusable; said once in the log)."""
        uri = member.service_uri
        try:
            url = normalize_address(uri) if uri else ""
        except ValueError:
            url = ""
        host = url.split("://", 1)[-1].rsplit(":", 1)[0] if url else ""
        if not host:
            if (member.address, uri) not in self._skipped:
                self._skipped.add((member.address, uri))
                log_event(
                    log, "orchestrator skipped", logging.WARNING, address=member.checksum_address,
                    service_uri=uri or "-", reason="no usable service URI on chain",
                )  # fmt: skip
            return ""
        return url

    # --- following the chain -----------------------------------------------------------------------------------

    async def run(self, directory: Directory) -> None:
        """Watch the pool's contracts and refresh ``directory`` when its list changes, forever (cancel to stop)."""
        while True:
            try:
                await self._follow(directory)
            except ChainError:
                pass  # said by _read, or below; the next poll tries again
            except Exception as exc:  # a poll must never end the loop
                log_event(log, "orchestrator pool watch failed", logging.ERROR, problem=str(exc))
            await asyncio.sleep(self.poll_seconds)

    async def _follow(self, directory: Directory) -> None:
        try:
            changes = await self.pool.changes(self._block)
        except ChainError as exc:
            if str(exc) != self.problem:
                log_event(log, "orchestrator pool unreadable", logging.WARNING, problem=str(exc))
            self.problem = str(exc)
            raise
        moved = self.last is None or changes.round != self.last.round or changes.logged
        self._block = changes.block
        if not moved:
            return
        before = self._listed
        await self.read()
        if self._listed != before:
            await directory.refresh()

    async def close(self) -> None:
        if self._reading is not None and not self._reading.done():
            self._reading.cancel()
            await asyncio.gather(self._reading, return_exceptions=True)
        await asyncio.to_thread(self.pool.close)
