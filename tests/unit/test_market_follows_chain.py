"""The market's settlement on the node, driven block by block: the real requester and provider
sides, a real ledger, mempool, transaction lane and job store, and the chain feed; the test is the
consensus, applying the mempool's transactions one block at a time and publishing each block's
events. No network, no sleeps (MockClock).

Each test also counts how often the job read the ledger: a job that waits for a deadline ten
blocks away reads it a handful of times, not once per block (it reacts to events and to the
heights its rules name)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import pytest
import trio
import trio.testing

import node.market.provider as provider_module
import node.market.requester as requester_module
from gpu.allocator import GpuAllocator
from node.executor.select import select_executor
from node.market.context import JobBook, MarketContext
from node.market.provider import ProviderSide
from node.market.records import PROVIDER, REQUESTER, JobRecord, JobState
from node.market.requester import SETTLE_GRACE_BLOCKS, RequesterSide
from node.market.txlane import TxLane
from node.p2p.interface import Host
from node.services.chain_feed import ChainFeed
from node.services.mempool import Mempool, MempoolSettings
from node.store import ChainStore
from protocol.consensus.ledger_app import LedgerApp
from protocol.ledger.state import LedgerState
from protocol.ledger.tx import OpenEscrow, decode_tx
from protocol.market.negotiation import ProviderPolicy
from protocol.market.settlement import ContractOnChain

from .ledger_helpers import (
    TEST_PARAMS,
    Chain,
    claim_msg,
    key,
    make_genesis,
    make_receipt,
    make_terms,
    sign_contract,
)
from .market_builders import make_spec

DEADLINE = 12
TERMS = make_terms("alice", "bob", price=7, max_gpu_seconds=100, collateral=300, deadline=DEADLINE)
HASH = TERMS.contract_hash()
WINDOW = TEST_PARAMS.dispute_window_blocks


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


class _LedgerView:
    """The ``LedgerApp`` surface the market reads: the committed state."""

    def __init__(self, chain: Chain) -> None:
        self._chain = chain

    @property
    def state(self) -> LedgerState:
        return self._chain.state


class MemoryJobBook(JobBook):
    """Job records kept in memory: a save that hops to a thread (SQLite) would let the test's
    consensus run ahead of the market it drives (the store has its own tests)."""

    async def save(self, record: JobRecord) -> None:
        self.jobs[record.job_id] = record
        event, self.changed = self.changed, trio.Event()
        event.set()


class ChainRig:
    """The test's consensus: blocks of the mempool's transactions, published to the feed."""

    def __init__(self, jobs_dir: Path) -> None:
        self.chain = Chain(make_genesis())
        self.feed = ChainFeed(self.chain.height)
        self.mempool = Mempool(MempoolSettings())
        self.jobs_dir = jobs_dir
        #: Heights at which the market read a contract from the ledger.
        self.reads: list[int] = []
        #: The kinds of the transactions each block included, by height.
        self.included: dict[int, list[str]] = {}

    def context(self, label: str) -> MarketContext:
        app = cast(LedgerApp, _LedgerView(self.chain))

        async def relay(raws: list[bytes]) -> None:
            pass

        async def wait_for_height(height: int) -> None:
            while self.feed.height < height:
                await self.feed.next_block(self.feed.height)

        lane = TxLane(
            key=key(label),
            app=app,
            mempool=self.mempool,
            relay=relay,
            height=lambda: self.feed.height,
            wait_for_height=wait_for_height,
        )
        return MarketContext(
            key=key(label),
            chain_id=self.chain.state.chain_id,
            host=cast(Host, None),  # settlement talks to no peer
            app=app,
            lane=lane,
            book=MemoryJobBook(cast(ChainStore, None), lambda: 0),
            clock_ms=lambda: 0,
            feed=self.feed,
            jobs_dir=self.jobs_dir,
            block_ms_floor=1000,
        )

    def count_reads(self, monkeypatch: pytest.MonkeyPatch, module: Any) -> None:
        read = module.read_contract

        def counting(state: LedgerState, contract_hash: bytes) -> ContractOnChain:
            self.reads.append(state.height)
            return read(state, contract_hash)

        monkeypatch.setattr(module, "read_contract", counting)

    async def block(self, *extra: bytes) -> None:
        """One block: whatever the mempool holds, plus ``extra``; then let the market react."""
        raws = [tx.raw for tx in self.mempool.reap(100)] + list(extra)
        result = self.chain.block(raws)
        self.mempool.remove_committed(self.chain.state, {hashlib.sha256(raw).digest() for raw in raws})
        self.included[self.chain.height] = [kind_of(raw) for raw in raws]
        self.feed.publish(self.chain.height, result.events)
        await trio.testing.wait_all_tasks_blocked()

    async def until(self, done: Callable[[], bool], *, limit: int = 60) -> None:
        for _ in range(limit):
            if done():
                return
            await self.block()
        raise AssertionError(f"not done after {limit} blocks (height {self.chain.height})")


def kind_of(raw: bytes) -> str:
    return decode_tx(raw).msg.KIND


@asynccontextmanager
async def rig(tmp_path: Path) -> AsyncIterator[tuple[ChainRig, trio.Nursery]]:
    chain_rig = ChainRig(tmp_path / "jobs")
    async with trio.open_nursery() as nursery:
        yield chain_rig, nursery
        nursery.cancel_scope.cancel()


def requester_record(**fields: Any) -> JobRecord:
    return JobRecord(
        job_id="job-r",
        role=REQUESTER,
        spec=make_spec(),
        created_ms=0,
        state=JobState.ESCROWED,
        contract=sign_contract(TERMS),
        **fields,
    )


async def escrowed_requester(chain_rig: ChainRig, nursery: trio.Nursery) -> JobRecord:
    """Alice escrows ``TERMS`` at height 1, and her requester side follows the contract."""
    await chain_rig.block(chain_rig.chain.tx("alice", OpenEscrow(sign_contract(TERMS))))
    side = RequesterSide(chain_rig.context("alice"), capacity=list, response_timeout_ms=1000, nursery=nursery)
    record = requester_record()
    nursery.start_soon(side.see_closed, record)
    await trio.testing.wait_all_tasks_blocked()
    return record


def heights_of(chain_rig: ChainRig, kind: str) -> list[int]:
    return [height for height, kinds in sorted(chain_rig.included.items()) if kind in kinds]


async def test_a_provider_that_never_delivers_is_refunded_in_the_block_after_the_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    async with rig(tmp_path) as (chain_rig, nursery):
        chain_rig.count_reads(monkeypatch, requester_module)
        record = await escrowed_requester(chain_rig, nursery)
        burned_before = chain_rig.chain.state.vars["burned"]
        await chain_rig.until(lambda: record.terminal)
    assert record.state is JobState.REFUNDED
    # Decided at the deadline + 1, included in the next block: not a block late, not early.
    assert heights_of(chain_rig, "escrow_refund") == [DEADLINE + 2]
    # The absent provider pays for it: its collateral's slash share is burned.
    state = chain_rig.chain.state
    assert state.closed_contracts.get(HASH) == "refunded"
    slash = TERMS.collateral * state.params.collateral_slash_share // 10**18
    assert slash > 0 and state.vars["burned"] - burned_before >= slash
    state.check_invariants()
    # Read at start, at the deadline + 1 and when the refund's block closed it: not every block.
    assert chain_rig.reads == [1, DEADLINE + 1, DEADLINE + 2]


async def test_a_countersigned_receipt_the_provider_does_not_settle_is_settled_after_the_grace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    async with rig(tmp_path) as (chain_rig, nursery):
        chain_rig.count_reads(monkeypatch, requester_module)
        record = await escrowed_requester(chain_rig, nursery)
        await chain_rig.block()
        await chain_rig.block()
        # The delivery arrives at height 3: countersigned, and the node nudges the feed as
        # RequesterSide.handle_delivery does; the grace starts now, not at the next event.
        receipt = make_receipt(TERMS, 40)
        record.receipt, record.provider_sig = receipt, receipt.sign(key("bob"))
        record.requester_sig = receipt.sign(key("alice"))
        record.move(JobState.DELIVERED, 0)
        chain_rig.feed.nudge(HASH)
        await trio.testing.wait_all_tasks_blocked()
        await chain_rig.until(lambda: record.terminal)
    assert record.state is JobState.SETTLED
    assert heights_of(chain_rig, "escrow_settle") == [3 + SETTLE_GRACE_BLOCKS + 1]
    assert chain_rig.reads == [1, 3, 3 + SETTLE_GRACE_BLOCKS, 3 + SETTLE_GRACE_BLOCKS + 1]


async def test_a_claim_for_a_result_never_received_is_disputed_in_the_next_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    async with rig(tmp_path) as (chain_rig, nursery):
        chain_rig.count_reads(monkeypatch, requester_module)
        record = await escrowed_requester(chain_rig, nursery)
        await chain_rig.block()
        await chain_rig.block(chain_rig.chain.tx("bob", claim_msg(TERMS, 55)))
        await chain_rig.until(lambda: record.terminal)
    assert record.state is JobState.DISPUTED
    assert heights_of(chain_rig, "escrow_dispute") == [4]
    assert chain_rig.reads == [1, 3, 4]  # the quiet block 2 woke nothing


async def test_a_provider_without_a_countersignature_claims_and_finalizes_when_the_window_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    async with rig(tmp_path) as (chain_rig, nursery):
        chain_rig.count_reads(monkeypatch, provider_module)
        await chain_rig.block(chain_rig.chain.tx("alice", OpenEscrow(sign_contract(TERMS))))
        ctx = chain_rig.context("bob")
        policy = ProviderPolicy(
            key=key("bob"),
            chain_id=ctx.chain_id,
            price_per_gpu_second=7,
            collateral=300,
            executors=frozenset(),
        )
        side = ProviderSide(
            ctx,
            policy=policy,
            allocator=GpuAllocator(),
            executor=select_executor("subprocess", allow_unsandboxed=True),
            nursery=nursery,
        )
        receipt = make_receipt(TERMS, 55)
        record = JobRecord(
            job_id="job-p",
            role=PROVIDER,
            spec=make_spec(),
            created_ms=0,
            state=JobState.RUNNING,
            contract=sign_contract(TERMS),
            receipt=receipt,
            provider_sig=receipt.sign(key("bob")),
        )
        nursery.start_soon(side._get_paid, record)
        await trio.testing.wait_all_tasks_blocked()
        await chain_rig.until(lambda: record.terminal)
    assert record.state is JobState.SETTLED
    [claimed] = heights_of(chain_rig, "escrow_claim")
    assert claimed == 2
    assert heights_of(chain_rig, "escrow_finalize") == [claimed + WINDOW + 1]
    assert chain_rig.chain.state.closed_contracts.get(HASH) == "settled"
    chain_rig.chain.state.check_invariants()
    # Read once after the claim and once when the window is over: not at every block between.
    assert chain_rig.reads == [claimed, claimed + WINDOW]
