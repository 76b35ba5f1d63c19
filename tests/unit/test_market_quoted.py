"""Providers quoting in a stable unit (issue 17, item 4) on the normal market path: their
announcement carries the asset and price, requesters rank them by the DCT value at the pool's
time-weighted price and cap it at the job's maximum, and the negotiated contract carries the
quote with the job's maximum as the requester's signed DCT cap."""

from __future__ import annotations

import dataclasses

import pytest

from protocol.contracts import ContractTerms
from protocol.market.capacity import CapacityAnnouncement, InvalidAnnouncement
from protocol.market.errors import PriceBelowAsk, QuoteMismatch, QuoteNotPriced
from protocol.market.matching import match
from protocol.market.messages import Quote, QuoteBody, Refusal, sign_quote
from protocol.market.negotiation import ProviderNegotiation, RequesterNegotiation, RequesterState
from protocol.market.quoting import asset_surcharge, terms_price
from protocol.units import DCT
from tests.unit.market_builders import (
    CHAIN_ID,
    DEADLINE_HEIGHT,
    MIN_DEADLINE_HEIGHT,
    NONCE,
    NOW_MS,
    PROVIDER,
    PROVIDER_COLLATERAL,
    PROVIDER_GPUS,
    REQUESTER,
    announce,
    deal_spec,
    key,
    make_spec,
    provider_policy,
)

SYMBOL = "TUSD"
#: The pool's average: 2 TUSD per DCT (base units of TUSD per DCT).
TWAP = 2 * DCT
#: 2,000 TUSD base units per GPU-second: 1,000 DCT base units at TWAP (the job pays at most 2,000).
QUOTED = 2_000


def twap_of(symbol: str) -> int | None:
    return TWAP if symbol == SYMBOL else None


def quoted_ann(
    label: str = PROVIDER, quote_price: int = QUOTED, symbol: str = SYMBOL
) -> CapacityAnnouncement:
    return announce(
        label, PROVIDER_GPUS, price=1, collateral=PROVIDER_COLLATERAL, quote=symbol, quote_price=quote_price
    )


# --- announcements ------------------------------------------------------------------------------------
def test_a_quoted_announcement_round_trips_and_a_dct_one_keeps_its_bytes() -> None:
    quoted = quoted_ann()
    assert CapacityAnnouncement.decode(quoted.encode()) == quoted
    assert (quoted.quote, quoted.quote_price_per_gpu_second) == (SYMBOL, QUOTED)
    plain = announce(PROVIDER)
    assert "quote" not in plain.to_wire()
    assert b"quote" not in plain.body()


@pytest.mark.parametrize(("symbol", "price"), [("tusd", 5), (SYMBOL, 0), ("", 5), ("DCT", 5)])
def test_a_malformed_quote_in_an_announcement_is_refused(symbol: str, price: int) -> None:
    with pytest.raises(InvalidAnnouncement, match="quote"):
        quoted_ann(symbol=symbol, quote_price=price)


# --- matching -----------------------------------------------------------------------------------------
def test_requesters_rank_a_quoted_provider_by_its_dct_value_at_the_average_price() -> None:
    spec = deal_spec()  # at most 2,000 per GPU-second
    dct_provider = announce("carol", PROVIDER_GPUS, price=1_500)
    offers = match(spec, [dct_provider, quoted_ann()], now_ms=NOW_MS, min_provider_stake=0, twap_of=twap_of)
    assert [o.peer_id for o in offers] == [f"12D3KooW{PROVIDER}", "12D3KooWcarol"]
    quoted = offers[0]
    assert (quoted.price_per_gpu_second, quoted.quote, quoted.quote_twap) == (1_000, SYMBOL, TWAP)
    # DCT loses half its value: the same quote is worth 2,000, now dearer than carol's 1,500.
    halved = match(
        spec, [dct_provider, quoted_ann()], now_ms=NOW_MS, min_provider_stake=0, twap_of=lambda _: DCT
    )
    assert [o.price_per_gpu_second for o in halved] == [1_500, 2_000]


def test_a_quoted_provider_above_the_jobs_maximum_or_without_a_price_is_left_out() -> None:
    spec = deal_spec()
    assert (
        match(spec, [quoted_ann(quote_price=4_001)], now_ms=NOW_MS, min_provider_stake=0, twap_of=twap_of)
        == []
    )
    assert match(spec, [quoted_ann()], now_ms=NOW_MS, min_provider_stake=0) == []
    assert match(spec, [quoted_ann(symbol="EUR")], now_ms=NOW_MS, min_provider_stake=0, twap_of=twap_of) == []


# --- the provider's quote -------------------------------------------------------------------------------
def quoting_provider(quote_price: int = QUOTED) -> ProviderNegotiation:
    return ProviderNegotiation(provider_policy(quote=SYMBOL, quote_price_per_gpu_second=quote_price))


def quoted_requester(spec_max: int = 2_000) -> RequesterNegotiation:
    spec = make_spec(resources={"gpu_count": 2}, max_runtime_s=600, max_price_per_gpu_second=spec_max)
    [offer] = match(spec, [quoted_ann()], now_ms=NOW_MS, min_provider_stake=0, twap_of=twap_of)
    return RequesterNegotiation(
        key=key(REQUESTER),
        chain_id=CHAIN_ID,
        spec=spec,
        offer=offer,
        nonce=NONCE,
        deadline_height=DEADLINE_HEIGHT,
    )


def ask(
    provider: ProviderNegotiation, requester: RequesterNegotiation, twap: int | None = TWAP
) -> Quote | Refusal:
    return provider.receive_request(
        requester.start(NOW_MS),
        now_ms=NOW_MS,
        free_gpus=PROVIDER_GPUS,
        min_deadline_height=MIN_DEADLINE_HEIGHT,
        quote_twap=twap,
    )


def test_a_quoted_negotiation_agrees_on_the_asset_price_under_the_jobs_maximum_as_cap() -> None:
    provider, requester = quoting_provider(), quoted_requester()
    quote = ask(provider, requester)
    assert isinstance(quote, Quote)
    proposal = requester.receive(quote, NOW_MS)
    assert proposal is not None
    accepted = provider.receive(proposal, NOW_MS)
    contract = requester.receive_accepted(accepted)  # type: ignore[arg-type]
    assert requester.state is RequesterState.AGREED and contract.is_fully_signed()
    terms = contract.terms
    assert (terms.quote, terms.quote_price_per_gpu_second) == (SYMBOL, QUOTED)
    assert terms.price_per_gpu_second == 2_000  # the job's maximum: the requester's DCT cap
    assert ContractTerms.decode(terms.encode()) == terms


def test_a_quoting_provider_refuses_while_its_asset_has_no_average_price() -> None:
    refusal = ask(quoting_provider(), quoted_requester(), twap=None)
    assert isinstance(refusal, Refusal) and refusal.code == QuoteNotPriced.code == 4048


def test_a_quoting_provider_refuses_a_job_whose_maximum_its_quote_exceeds_at_the_average() -> None:
    # 2,000 TUSD is 2,000 DCT base units when a DCT is worth 1 TUSD: above a 1,999 maximum.
    refusal = ask(quoting_provider(), quoted_requester(spec_max=1_999), twap=DCT)
    assert isinstance(refusal, Refusal) and refusal.code == PriceBelowAsk.code
    assert "TUSD" in refusal.message


def _requoted(original: Quote, **changes: object) -> Quote:
    terms = dataclasses.replace(original.terms, **changes)  # type: ignore[arg-type]
    return sign_quote(key(PROVIDER), QuoteBody(original.request_hash, terms, original.expires_at_ms))


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"quote_price_per_gpu_second": 4_001}, "quote_price_per_gpu_second"),  # 2,001 DCT at TWAP
        ({"quote": "EUR"}, "quote.terms.quote"),
        ({"quote": "", "quote_price_per_gpu_second": 0}, "quote.terms.quote"),
    ],
)
def test_the_requester_refuses_a_quote_that_is_not_what_the_provider_announced(
    changes: dict[str, object], field: str
) -> None:
    provider, requester = quoting_provider(), quoted_requester()
    quote = ask(provider, requester)
    assert isinstance(quote, Quote)
    with pytest.raises(QuoteMismatch, match=field):
        requester.receive_quote(_requoted(quote, **changes), NOW_MS)
    assert requester.quote is None


def test_a_transfer_surcharge_is_added_in_the_asset_at_the_average_price() -> None:
    assert asset_surcharge(3, TWAP) == 6
    assert asset_surcharge(1, DCT // 3) == 1  # a third rounds up
    spec = make_spec(max_price_per_gpu_second=2_000)
    plain = terms_price(
        spec, price_per_gpu_second=1_000, transfer_price_per_gib=0, quote="", quote_price=0, twap=None
    )
    assert (plain.cap, plain.quote) == (1_000, "")
    quoted = terms_price(
        spec,
        price_per_gpu_second=1_000,
        transfer_price_per_gib=0,
        quote=SYMBOL,
        quote_price=QUOTED,
        twap=TWAP,
    )
    assert (quoted.cap, quoted.quote, quoted.quote_price_per_gpu_second) == (2_000, SYMBOL, QUOTED)


# --- the node's job record ------------------------------------------------------------------------------
def test_a_quoted_jobs_record_shows_the_quote_and_costs_the_escrows_fixed_price() -> None:
    from node.market.records import JobRecord, JobState
    from protocol.contracts import OUTCOME_COMPLETED, SignedContract, UsageReceipt

    provider, requester = quoting_provider(), quoted_requester()
    quote = ask(provider, requester)
    assert isinstance(quote, Quote)
    terms = quote.terms
    record = JobRecord(
        job_id="job-q",
        role="requester",
        spec=requester.spec,
        created_ms=0,
        state=JobState.SETTLED,
        contract=SignedContract(terms, b"r", b"p"),
        receipt=UsageReceipt(CHAIN_ID, terms.contract_hash(), OUTCOME_COMPLETED, 100_000, 0, bytes(32), ""),
    )
    assert record.cost() == 100 * 2_000  # before the escrow is seen: the cap, the most it pays
    record.escrow_price = 1_000
    restored = JobRecord.from_stored(record.to_stored())
    assert restored.escrow_price == 1_000 and restored.cost() == 100 * 1_000
    shown = restored.to_json()
    assert shown["price_per_gpu_second"] == "1000"
    assert shown["max_cost"] == str(1_000 * terms.max_gpu_seconds)
    assert shown["quote"] == {
        "asset": SYMBOL,
        "price_per_gpu_second": str(QUOTED),
        "max_dct_price_per_gpu_second": "2000",
    }


async def test_a_quoting_node_announces_its_quote_and_its_dct_value_at_the_average(
    autojump_clock: object,
) -> None:
    import trio

    from gpu.simulated import simulated_report
    from node.p2p.memory import MemoryNetwork
    from node.services.capacity import CapacityService
    from protocol.hardware import ProbeReport
    from tests.unit.market_builders import OFFERED_LIMITS

    host = MemoryNetwork().create_host(key("quoting-host").seed())

    async def probe() -> ProbeReport:
        return simulated_report("1xH100-80GB", "quoting")

    service = CapacityService(
        chain_id=CHAIN_ID,
        key=key(PROVIDER),
        host=host,
        probe=probe,
        price_per_gpu_second=7,
        collateral=1,
        stake=lambda: 0,
        executors=("bubblewrap",),
        clock_ms=lambda: NOW_MS + int(trio.current_time() * 1000),
        limits=lambda: OFFERED_LIMITS,
        quote=SYMBOL,
        quote_price_per_gpu_second=QUOTED,
        twap_of=twap_of,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(host.run)
        await nursery.start(service.run)
        nursery.cancel_scope.cancel()
    [announced] = service.entries()
    assert (announced.quote, announced.quote_price_per_gpu_second) == (SYMBOL, QUOTED)
    assert announced.price_per_gpu_second == 1_000  # 2,000 TUSD at 2 TUSD per DCT, for views
