"""An orchestrator's duties on chain, as go-livepeer's do them: the service URI check, reward, round initialisation.

- At start, :meth:`ChainDuties.check_service_uri` refuses (one :class:`ConfigError` line naming both and the fix)
  when the service URI registered on chain is not this node's ``-serviceAddr``: gateways dial the URI on chain,
  so they would reach another address. go-livepeer compares host and port and only logs; lpnode stops, since a
  node that no gateway reaches earns nothing. No URI on chain yet is a warning.
- Each round (``-reward``, on by default as in go-livepeer): when the orchestrator is in the round's active set
  and has not called ``reward`` yet, it calls it, once.
- ``-initializeRound``: when the current round is not initialised, it initialises it. Another node doing it
  first is not an error (the revert ``round already initialized`` is expected and stays quiet).
- At start and at each new round, a node not in the active set is warned about, with why and the stake it
  needs to enter (:meth:`lpnode.payments.staking.OperatorState.why_not_active`).

The loop reads the round from the chain watcher each poll period; chain trouble is a warning, never a stop.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from lpnode.errors import ConfigError
from lpnode.logs import log_event
from lpnode.payments.chain_errors import ChainError, ChainRevert
from lpnode.payments.settings import ChainNode
from lpnode.payments.signatures import checksum
from lpnode.payments.staking import OperatorState, Staking, format_token, same_service
from lpnode.payments.staking_reverts import explain_revert

log = logging.getLogger("lpnode.orchestrator.chain")
ALREADY_INITIALIZED = "round already initialized"
ALREADY_REWARDED = "caller has already called reward for the current round"


@dataclass(frozen=True)
class DutyFlags:
    """go-livepeer's ``-reward`` (default true) and ``-initializeRound`` (default false)."""

    reward: bool = True
    initialize_round: bool = False


class ChainDuties:
    """The duties of the orchestrator whose wallet is ``chain``'s, advertised at ``service_url``."""

    def __init__(self, chain: ChainNode, service_url: str, flags: DutyFlags) -> None:
        self.chain = chain
        self.service_url = service_url
        self.flags = flags
        self.staking = Staking(chain.client)
        self.state: OperatorState | None = None
        self.service_uri = ""
        self.last_reward_tx = ""
        self.problem = ""
        self._checked_round = -1

    @property
    def address(self) -> str:
        return checksum(self.chain.wallet.address)

    async def check_service_uri(self) -> None:
        """ConfigError when the URI on chain names another host or port than ``service_url``."""
        try:
            self.service_uri = await self.staking.service_uri()
        except ChainError as exc:
            raise ConfigError(f"cannot read this orchestrator's service URI on chain: {exc}") from None
        if not self.service_uri:
            log_event(
                log, "no service URI on chain: gateways that discover orchestrators on chain cannot find this one",
                logging.WARNING, address=self.address,
                fix=f"lpnode chain set-service-uri {self.service_url} (with this node's chain and keystore flags)",
            )  # fmt: skip
        elif not same_service(self.service_uri, self.service_url):
            raise ConfigError(
                f"the service URI on chain for {self.address} is {self.service_uri}, but this node's -serviceAddr "
                f"is {self.service_url}: gateways would dial the other; run `lpnode chain set-service-uri "
                f"{self.service_url}` (with this node's chain and keystore flags), or start with -serviceAddr "
                f"{self.service_uri.split('://', 1)[-1]}"
            )

    async def run(self) -> None:
        """Do this round's duties now, then each round's, until cancelled."""
        while True:
            await self.tick()
            await asyncio.sleep(self.chain.watcher.poll_seconds)

    async def tick(self) -> None:
        """One pass: initialise the round if asked and needed, read this node's state once per round (warning
        when it is not active), and call reward once per round while active. Never raises ChainError."""
        watcher = self.chain.watcher
        try:
            if self.flags.initialize_round and not watcher.current_round_initialized():
                await self._initialize_round()
            if not await self.chain.client.current_round_initialized():
                return  # nothing can be read or rewarded for a round nobody initialised yet
            current = await self.chain.client.current_round()
            if current != self._checked_round:
                self.state = await self.staking.state()
                self._checked_round = current
                self._warn_if_inactive(self.state)
            state = self.state
            if self.flags.reward and state is not None and state.active and not state.reward_called:
                await self._reward(state)
        except ChainError as exc:
            if str(exc) != self.problem:
                log_event(log, "on-chain duties: the chain failed; retrying", logging.WARNING, problem=str(exc))
            self.problem = str(exc)

    async def _initialize_round(self) -> None:
        current = await self.chain.client.current_round()
        try:
            tx = await self.chain.client.initialize_round()
        except ChainRevert as exc:
            if exc.reason != ALREADY_INITIALIZED:  # another node (or a keeper) was first: expected, quiet
                raise
            log.debug("round %d was initialised by someone else", current)
            return
        log_event(log, "round initialised", round=current, transaction=tx)

    async def _reward(self, state: OperatorState) -> None:
        try:
            tx = await self.staking.send(self.staking.reward_step(state.current_round))
        except ChainRevert as exc:
            if exc.reason != ALREADY_REWARDED:  # called by hand meanwhile: fine
                raise ChainError(f"reward for round {state.current_round}: {explain_revert(exc.reason)}") from None
            tx = ""
        self.state = await self.staking.state()
        self.last_reward_tx = tx or self.last_reward_tx
        self.problem = ""
        if tx:
            gained = self.state.pending_stake - state.pending_stake
            log_event(
                log, "reward called", round=state.current_round, transaction=tx, reward=format_token(gained, "LPT")
            )

    def _warn_if_inactive(self, state: OperatorState) -> None:
        why = state.why_not_active()
        if why is None:
            log_event(log, "active on chain", round=state.current_round, address=self.address)
            return
        need = state.stake_to_enter()
        log_event(
            log, "not in the active set: gateways on chain will not pay this orchestrator", logging.WARNING,
            round=state.current_round, address=self.address, why=why,
            **({"stake_needed": format_token(need, "LPT")} if need else {}),
        )  # fmt: skip

    def snapshot(self) -> dict[str, Any]:
        """The ``operator`` part of the payments status: what ``lpnode doctor`` checks (JSON-ready)."""
        s = self.state
        document: dict[str, Any] = {
            "reward_enabled": self.flags.reward,
            "initialize_round_enabled": self.flags.initialize_round,
            "service_addr": self.service_url,
            "service_uri": self.service_uri,
            "service_uri_matches": bool(self.service_uri) and same_service(self.service_uri, self.service_url),
            "last_reward_tx": self.last_reward_tx,
            "problem": self.problem,
        }
        if s is not None:
            document |= {
                "round": s.current_round,
                "registered": s.registered,
                "active": s.active,
                "in_pool": s.in_pool,
                "why_not_active": s.why_not_active(),
                "stake_wei": str(s.delegator.delegated),
                "stake_to_enter_wei": str(s.stake_to_enter()),
                "last_reward_round": s.transcoder.last_reward_round,
                "reward_called_this_round": s.reward_called,
                "pending_fees_wei": str(s.pending_fees),
            }
        return document
