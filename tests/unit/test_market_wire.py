"""The node's negotiation over ``/dcent/market/1.0.0``: the requester and provider sides of
node/market on memory hosts, in virtual time. What a rogue peer sends is refused with its code,
and reserved GPUs come back."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from gpu.allocator import GpuAllocator
from gpu.simulated import simulated_report
from node.market.context import JobBook, MarketContext
from node.market.errors import JobCancelled
from node.market.provider import ProviderSide
from node.market.records import JobState
from node.market.requester import MATCH_WAIT_S, RequesterSide
from node.p2p.framing import Stream
from node.p2p.memory import MemoryHost, MemoryNetwork
from node.services.chain_feed import ChainFeed
from node.store import ChainStore
from protocol.crypto import PrivateKey
from protocol.market.capacity import sign_announcement
from protocol.market.errors import (
    ContractMismatch,
    ForgedQuote,
    NegotiationTimedOut,
    NoOffersLeft,
    QuoteExpired,
)
from protocol.market.jobspec import JobSpec
from protocol.market.matching import Offer, match
from protocol.market.messages import (
    MARKET_PROTOCOL_ID,
    MAX_MESSAGE_BYTES,
    ContractProposal,
    QuoteBody,
    QuoteRequest,
    Refusal,
    decode_message,
    encode_message,
    sign_quote,
)
from protocol.market.negotiation import (
    NegotiationPlan,
    ProviderNegotiation,
    ProviderPolicy,
    RequesterNegotiation,
    RequesterState,
    derive_nonce,
)
from tests.unit.market_builders import OFFERED_LIMITS

CHAIN = "dcent-wire-test"
EPOCH_MS = 1_800_000_000_000
PROVIDER = PrivateKey.from_label("wire-provider")
ROGUE = PrivateKey.from_label("wire-rogue")
REQUESTER = PrivateKey.from_label("wire-requester")
SPEC = JobSpec.from_document(
    {"argv": ["true"], "max_runtime_s": 60, "max_price_per_gpu_second": 10, "resources": {"gpu_count": 1}}
)


def now_ms() -> int:
    return EPOCH_MS + int(trio.current_time() * 1000)


@pytest.fixture
def clock() -> trio.testing.MockClock:
    # Jump only once the run has been idle a moment of real time: the provider's store write
    # runs in a worker thread, which virtual time must wait for rather than skip.
    return trio.testing.MockClock(autojump_threshold=0.05)


class _Recorder:
    """Stands in for the provider's nursery: the contract's life (escrow, run) is not this test's."""

    def __init__(self) -> None:
        self.started: list[tuple[Callable[..., Awaitable[object]], tuple[object, ...]]] = []

    def start_soon(self, fn: Callable[..., Awaitable[object]], *args: object) -> None:
        self.started.append((fn, args))


@dataclass
class Wire:
    network: MemoryNetwork
    provider_host: MemoryHost
    requester_host: MemoryHost
    provider: ProviderSide
    requester: RequesterSide
    allocator: GpuAllocator
    recorder: _Recorder
    offer: Offer

    def negotiation(self, attempt: int = 0, offer: Offer | None = None) -> RequesterNegotiation:
        return RequesterNegotiation(
            key=REQUESTER,
            chain_id=CHAIN,
            spec=SPEC,
            offer=offer or self.offer,
            nonce=derive_nonce(b"w" * 32, attempt),
            deadline_height=10_000,
            response_timeout_ms=5_000,
        )


def _context(key: PrivateKey, host: MemoryHost, store: ChainStore, root: Path) -> MarketContext:
    return MarketContext(
        key=key,
        chain_id=CHAIN,
        host=host,
        app=None,  # type: ignore[arg-type]  # negotiation reads no ledger state
        lane=None,  # type: ignore[arg-type]
        book=JobBook(store, now_ms),
        clock_ms=now_ms,
        feed=ChainFeed(1),  # never published to: negotiation reads no ledger state
        jobs_dir=root,
        block_ms_floor=1000,
    )


def _offer_of(key: PrivateKey, host: MemoryHost, units: Any) -> Offer:
    announcement = sign_announcement(
        key,
        CHAIN,
        peer_id=host.peer_id,
        sequence=1,
        gpus=tuple(units),
        price_per_gpu_second=5,
        collateral=100,
        stake=1,
        executors=("bubblewrap",),
        limits=OFFERED_LIMITS,
        issued_at_ms=now_ms(),
        expires_at_ms=now_ms() + 60_000,
    )
    [offer] = match(SPEC, [announcement], now_ms=now_ms(), min_provider_stake=0)
    return offer


@pytest.fixture
async def wire(tmp_path: Path) -> AsyncIterator[Wire]:
    network = MemoryNetwork()
    provider_host = network.create_host(PrivateKey.from_label("wire-provider-node").seed())
    requester_host = network.create_host(PrivateKey.from_label("wire-requester-node").seed())
    store = ChainStore.open(tmp_path / "chain.db")
    async with trio.open_nursery() as nursery:
        await nursery.start(provider_host.run)
        await nursery.start(requester_host.run)
        await requester_host.connect(provider_host.listen_addrs[0])
        units = simulated_report("2xH100-80GB", "wire").schedulable_units()
        allocator = GpuAllocator(units)
        recorder = _Recorder()
        provider = ProviderSide(
            _context(PROVIDER, provider_host, store, tmp_path),
            policy=ProviderPolicy(PROVIDER, CHAIN, 5, 100, frozenset({"bubblewrap"}), limits=OFFERED_LIMITS),
            allocator=allocator,
            executor=None,  # type: ignore[arg-type]
            nursery=recorder,  # type: ignore[arg-type]
        )
        provider_host.set_stream_handler(MARKET_PROTOCOL_ID, provider.handle_negotiation)
        requester = RequesterSide(
            _context(REQUESTER, requester_host, store, tmp_path),
            capacity=list,
            response_timeout_ms=5_000,
            nursery=nursery,
        )
        yield Wire(
            network,
            provider_host,
            requester_host,
            provider,
            requester,
            allocator,
            recorder,
            _offer_of(PROVIDER, provider_host, units),
        )
        nursery.cancel_scope.cancel()
    store.close()


async def test_an_honest_negotiation_ends_countersigned_and_the_gpu_held_for_the_job(
    wire: Wire, clock: trio.testing.MockClock
) -> None:
    negotiation = wire.negotiation()
    await wire.requester.negotiate(negotiation)
    assert negotiation.state is RequesterState.AGREED, negotiation.failure
    contract = negotiation.contract
    assert contract is not None and contract.is_fully_signed()
    job_id = "p-" + contract.terms.contract_hash().hex()[:24]
    # The provider recorded the contract and holds exactly the sold GPU under the job's id.
    assert wire.provider.ctx.book.get(job_id).state is JobState.CONTRACTED
    assert wire.allocator.allocations() == {job_id: contract.terms.gpu_uuids}
    assert [fn.__name__ for fn, _ in wire.recorder.started] == ["fulfil"]


async def _rogue(host: MemoryHost, answer: Callable[[QuoteRequest], object]) -> None:
    async def handle(stream: Stream) -> None:
        request = decode_message(await stream.receive_frame(MAX_MESSAGE_BYTES))
        assert isinstance(request, QuoteRequest)
        reply = answer(request)
        if reply is not None:
            await stream.send_frame(encode_message(reply))  # type: ignore[arg-type]
        await trio.sleep_forever()

    host.set_stream_handler(MARKET_PROTOCOL_ID, handle)


def _honest_quote(request: QuoteRequest) -> Any:
    quote = ProviderNegotiation(
        ProviderPolicy(PROVIDER, CHAIN, 5, 100, frozenset({"bubblewrap"}), limits=OFFERED_LIMITS)
    ).receive_request(
        request,
        now_ms=now_ms(),
        free_gpus=simulated_report("2xH100-80GB", "wire").schedulable_units(),
        min_deadline_height=1,
    )
    return quote


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        # The provider's signature over another quote.
        (lambda r: dataclasses.replace(_honest_quote(r), provider_sig=ROGUE.sign(b"x")), ForgedQuote.code),
        # Signed, but already expired.
        (
            lambda r: sign_quote(PROVIDER, QuoteBody(r.request_hash(), _honest_quote(r).terms, now_ms() - 1)),
            QuoteExpired.code,
        ),
        # No answer at all: the requester times out (virtual time).
        (lambda r: None, NegotiationTimedOut.code),
    ],
    ids=["forged", "expired", "silent"],
)
async def test_a_rogue_providers_answer_fails_the_negotiation_with_its_code(
    wire: Wire, clock: trio.testing.MockClock, answer: Callable[[QuoteRequest], object], code: int
) -> None:
    await _rogue(wire.provider_host, answer)
    negotiation = wire.negotiation()
    await wire.requester.negotiate(negotiation)
    assert negotiation.state is RequesterState.FAILED
    assert negotiation.failure is not None and negotiation.failure.code == code
    assert negotiation.contract is None


async def test_a_contract_that_differs_from_the_quote_is_refused_and_the_gpu_released(
    wire: Wire, clock: trio.testing.MockClock
) -> None:
    negotiation = wire.negotiation()
    stream = await wire.requester_host.open_stream(wire.provider_host.peer_id, MARKET_PROTOCOL_ID)
    await stream.send_frame(encode_message(negotiation.start(now_ms())))
    quote = decode_message(await stream.receive_frame(MAX_MESSAGE_BYTES))
    negotiation.receive_quote(quote, now_ms())  # type: ignore[arg-type]
    assert len(wire.allocator.allocations()) == 1  # quoted units are held
    cheaper = dataclasses.replace(quote.terms, price_per_gpu_second=1)  # type: ignore[union-attr]
    await stream.send_frame(encode_message(ContractProposal(cheaper, cheaper.sign(REQUESTER))))
    refusal = decode_message(await stream.receive_frame(MAX_MESSAGE_BYTES))
    assert isinstance(refusal, Refusal) and refusal.code == ContractMismatch.code
    assert "price_per_gpu_second" in refusal.message
    await stream.close()
    assert wire.allocator.allocations() == {}
    assert wire.provider.ctx.book.jobs == {}


async def test_an_unanswered_quote_releases_its_gpus_at_expiry(
    wire: Wire, clock: trio.testing.MockClock
) -> None:
    negotiation = wire.negotiation()
    stream = await wire.requester_host.open_stream(wire.provider_host.peer_id, MARKET_PROTOCOL_ID)
    await stream.send_frame(encode_message(negotiation.start(now_ms())))
    await stream.receive_frame(MAX_MESSAGE_BYTES)
    assert len(wire.allocator.allocations()) == 1
    clock.jump(31)  # past the default 30 s quote validity, in virtual time
    await trio.testing.wait_all_tasks_blocked()
    assert wire.allocator.allocations() == {}


async def test_the_plan_moves_past_a_forged_quote_to_an_honest_provider(
    wire: Wire, clock: trio.testing.MockClock
) -> None:
    rogue_host = wire.network.create_host(PrivateKey.from_label("wire-rogue-node").seed())
    async with trio.open_nursery() as nursery:
        await nursery.start(rogue_host.run)
        await wire.requester_host.connect(rogue_host.listen_addrs[0])
        await _rogue(
            rogue_host, lambda r: dataclasses.replace(_honest_quote(r), provider_sig=ROGUE.sign(b"x"))
        )
        rogue_offer = dataclasses.replace(wire.offer, peer_id=rogue_host.peer_id)
        plan = NegotiationPlan(
            key=REQUESTER,
            chain_id=CHAIN,
            spec=SPEC,
            offers=[rogue_offer, wire.offer],
            deadline_height=10_000,
            seed=b"p" * 32,
        )
        while (negotiation := plan.next_negotiation()) is not None:
            await wire.requester.negotiate(negotiation)
        assert plan.contract is not None and plan.contract.is_fully_signed()
        assert [failure.code for _, failure in plan.failures] == [ForgedQuote.code]
        nursery.cancel_scope.cancel()


async def test_a_job_still_matching_can_be_cancelled(wire: Wire, clock: trio.testing.MockClock) -> None:
    record = await wire.requester.submit(SPEC, max_attempts=1)  # the capacity table is empty
    await trio.testing.wait_all_tasks_blocked()
    assert record.state is JobState.MATCHING
    assert wire.requester.cancel(record)
    await trio.testing.wait_all_tasks_blocked()
    assert record.state is JobState.CANCELLED and record.error_code == JobCancelled.code
    assert not wire.requester.cancel(record)  # nothing left to cancel


async def test_a_job_no_provider_can_run_fails_with_no_offers_left(
    wire: Wire, clock: trio.testing.MockClock
) -> None:
    record = await wire.requester.submit(SPEC, max_attempts=1)
    await trio.testing.wait_all_tasks_blocked()
    clock.jump(MATCH_WAIT_S + 1)
    await trio.testing.wait_all_tasks_blocked()
    assert record.state is JobState.FAILED and record.error_code == NoOffersLeft.code
    assert [state for state, _ in record.history] == ["matching", "failed"]
