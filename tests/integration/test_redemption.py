"""The winning-ticket queue: durable across ``kill -9``, and redeemed on a real anvil in order, with the gas cap,
round boundaries, expiry, unfunded senders and each outcome recorded."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import textwrap
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from lpnode.cli import main
from lpnode.payments.chain_client import ChainClient
from lpnode.payments.chain_watcher import ChainWatcher
from lpnode.payments.devchain import DevChain, start_devchain
from lpnode.payments.keystore import Wallet
from lpnode.payments.redemption import QUEUE_FILE, Redeemer, RedemptionQueue
from lpnode.payments.signatures import sign
from lpnode.payments.ticket import MAX_WIN_PROB, Ticket, rand_hash

T = TypeVar("T")
ETH = 10**18
FACE_VALUE = 10**15
GWEI = 10**9
RECIPIENT = 1


class Chain:
    """The module's dev chain, the recipient's client and watcher, and the loop they live on."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.dev: DevChain = self.loop.run_until_complete(start_devchain())
        wallet = Wallet.from_key(self.dev.accounts[RECIPIENT].key)
        self.client = ChainClient(self.dev.url, self.dev.controller, wallet)
        self.watcher = ChainWatcher(self.client, poll_seconds=3600)  # refreshed by hand for determinism
        self.run(lambda: self.dev.activate(wallet.address))
        self.run(self.watcher.start)

    def run(self, make: Callable[[], Awaitable[T]]) -> T:
        async def bounded() -> T:
            return await asyncio.wait_for(make(), 60)

        return self.loop.run_until_complete(bounded())

    async def ticket(self, sender: int, *, signer: int | None = None) -> tuple[Ticket, bytes, int]:
        """A ticket that wins for sure, created in the last initialised round."""
        await self.watcher.refresh()
        rand = int.from_bytes(secrets.token_bytes(32), "big")
        ticket = Ticket(
            recipient=self.dev.accounts[RECIPIENT].address,
            sender=self.dev.accounts[sender].address,
            face_value=FACE_VALUE,
            win_prob=MAX_WIN_PROB,
            sender_nonce=secrets.randbelow(2**32),
            recipient_rand_hash=rand_hash(rand),
            creation_round=self.watcher.last_initialized_round(),
            creation_round_block_hash=self.watcher.round_block_hash(),
        )
        return ticket, sign(self.dev.accounts[signer if signer is not None else sender].key, ticket.hash()), rand

    def close(self) -> None:
        self.run(self.watcher.close)
        self.client.close()
        self.loop.run_until_complete(self.dev.close())
        self.loop.close()


@pytest.fixture(scope="module")
def chain() -> Iterator[Chain]:
    c = Chain()
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def queue(tmp_path: Path) -> Iterator[RedemptionQueue]:
    q = RedemptionQueue(tmp_path / QUEUE_FILE)
    try:
        yield q
    finally:
        q.close()


def test_a_queued_ticket_survives_kill_9(tmp_path: Path) -> None:
    db = tmp_path / QUEUE_FILE
    child = textwrap.dedent(
        f"""
        import time
        from pathlib import Path
        from lpnode.payments.redemption import RedemptionQueue
        from lpnode.payments.ticket import Ticket
        queue = RedemptionQueue(Path({str(db)!r}))
        ticket = Ticket(recipient=b"\\x01" * 20, sender=b"\\x02" * 20, face_value=10**30, win_prob=5,
                        sender_nonce=7, recipient_rand_hash=b"\\x03" * 32, creation_round=4,
                        creation_round_block_hash=b"\\x04" * 32, params_expiration_block=99)
        queue.note_received(3)
        queue.flush()
        queue.add(ticket, b"\\x05" * 65, 2**255 + 1)
        print("added", flush=True)
        time.sleep(60)
        """
    )
    with subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            assert process.stdout.readline().strip() == "added"
        finally:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(10)
    queue = RedemptionQueue(db)
    try:
        [item] = queue.queued()
        stats = queue.stats()
    finally:
        queue.close()
    assert item.ticket.face_value == 10**30 and item.rand == 2**255 + 1 and item.sig == b"\x05" * 65
    assert item.ticket.params_expiration_block == 99 and item.ticket.creation_round_block_hash == b"\x04" * 32
    assert (stats["received"], stats["won"], stats["queued"], stats["queued_wei"]) == (3, 1, 1, 10**30)


def test_tickets_are_redeemed_in_order_and_each_outcome_recorded(chain: Chain, queue: RedemptionQueue) -> None:
    sender = 2
    chain.run(lambda: chain.dev.fund_sender(chain.dev.accounts[sender].key, ETH, ETH))
    redeemer = Redeemer(queue, chain.client, chain.watcher)

    async def scenario() -> None:
        good = await chain.ticket(sender)
        forged = await chain.ticket(sender, signer=5)
        later = await chain.ticket(sender)
        fees_before = await chain.client.pending_fees(chain.dev.accounts[RECIPIENT].address)
        for ticket, sig, rand in (good, forged, later):
            redeemer.add(ticket, sig, rand)
        assert queue.add(*good) is False  # the same ticket twice is one ticket
        assert await redeemer.redeem_due() == 2
        fees = await chain.client.pending_fees(chain.dev.accounts[RECIPIENT].address)
        assert fees == fees_before + 2 * FACE_VALUE
        assert await chain.client.is_used(good[0].hash()) and await chain.client.is_used(later[0].hash())

    chain.run(scenario)
    stats = redeemer.stats()
    assert (stats["won"], stats["queued"], stats["redeemed"], stats["failed"], stats["expired"]) == (3, 0, 2, 1, 0)
    assert stats["earned_wei"] == 2 * FACE_VALUE
    outcomes = {o["status"]: o for o in stats["recent"]}
    assert outcomes["failed"]["reason"] == "invalid signature over ticket hash"
    assert outcomes["redeemed"]["tx_hash"].startswith("0x")


def test_gas_above_the_cap_holds_tickets_until_it_falls(chain: Chain, queue: RedemptionQueue) -> None:
    sender = 3
    chain.run(lambda: chain.dev.fund_sender(chain.dev.accounts[sender].key, ETH, ETH))
    redeemer = Redeemer(queue, chain.client, chain.watcher, max_gas_price=10 * GWEI)

    async def set_base_fee(wei: int) -> None:
        await chain.dev.rpc("anvil_setNextBlockBaseFeePerGas", [hex(wei)])
        await chain.dev.mine(1)
        await chain.watcher.refresh()

    async def scenario() -> None:
        redeemer.add(*await chain.ticket(sender))
        await set_base_fee(50 * GWEI)
        assert chain.watcher.gas_price() > 10 * GWEI
        assert await redeemer.redeem_due() == 0
        assert redeemer.stats()["queued"] == 1
        assert "above -maxGasPrice" in redeemer.holding
        await set_base_fee(GWEI // 10)
        assert chain.watcher.gas_price() <= 10 * GWEI
        assert await redeemer.redeem_due() == 1
        assert redeemer.holding == ""

    chain.run(scenario)
    assert redeemer.stats()["redeemed"] == 1


def test_a_round_boundary_is_fine_within_validity_and_older_tickets_expire(
    chain: Chain, queue: RedemptionQueue
) -> None:
    sender = 4
    chain.run(lambda: chain.dev.fund_sender(chain.dev.accounts[sender].key, ETH, ETH))
    redeemer = Redeemer(queue, chain.client, chain.watcher)

    async def scenario() -> None:
        old = await chain.ticket(sender)
        await chain.dev.advance_round()
        recent = await chain.ticket(sender)
        await chain.dev.advance_round()
        await chain.watcher.refresh()
        redeemer.add(*old)  # two rounds old: past the validity period of 2
        redeemer.add(*recent)  # one round old: still valid
        assert await redeemer.redeem_due() == 1
        assert not await chain.client.is_used(old[0].hash())
        assert await chain.client.is_used(recent[0].hash())

    chain.run(scenario)
    stats = redeemer.stats()
    assert (stats["redeemed"], stats["expired"], stats["queued"]) == (1, 1, 0)


def test_an_unfunded_senders_ticket_waits_for_funds(chain: Chain, queue: RedemptionQueue) -> None:
    sender = 6
    redeemer = Redeemer(queue, chain.client, chain.watcher)

    async def scenario() -> None:
        redeemer.add(*await chain.ticket(sender))
        assert await redeemer.redeem_due() == 0
        assert "to fund its deposit" in redeemer.holding
        await chain.dev.fund_sender(chain.dev.accounts[sender].key, ETH, 0)
        await chain.watcher.refresh()
        assert await redeemer.redeem_due() == 1

    chain.run(scenario)
    assert redeemer.stats()["redeemed"] == 1


def test_a_ticket_already_redeemed_counts_as_redeemed(
    chain: Chain, queue: RedemptionQueue, capsys: pytest.CaptureFixture[str]
) -> None:
    sender = 7
    chain.run(lambda: chain.dev.fund_sender(chain.dev.accounts[sender].key, ETH, ETH))
    redeemer = Redeemer(queue, chain.client, chain.watcher)

    async def scenario() -> None:
        ticket, sig, rand = await chain.ticket(sender)
        await chain.client.redeem_winning_ticket(ticket, sig, rand)  # e.g. mined just before a restart
        redeemer.add(ticket, sig, rand)
        assert await redeemer.redeem_due() == 1

    chain.run(scenario)
    queue.note_received(40)
    queue.flush()
    [outcome] = redeemer.stats()["recent"]
    assert (outcome["status"], outcome["reason"]) == ("redeemed", "already redeemed on chain")
    assert main(["tickets", "--data-dir", str(queue.path.parent)]) == 0
    out = capsys.readouterr().out
    assert "received  40" in out and "redeemed  1" in out and "earned    0.001 ETH" in out
