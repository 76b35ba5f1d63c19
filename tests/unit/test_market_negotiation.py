"""Negotiation: the happy path ends in a contract the ledger escrows; forged, expired and mismatched
quotes and contracts are refused with typed errors; events out of order change nothing; the
requester's plan moves to the next provider on a refusal or a timeout."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from typing import Any

import pytest

from protocol.contracts import ContractTerms, SignedContract
from protocol.ledger.block import BlockContext, apply_block
from protocol.ledger.errors import BadContractSignature
from protocol.ledger.tx import OpenEscrow, sign_tx
from protocol.market.capacity import CapacityTable
from protocol.market.errors import (
    ContractMismatch,
    DeadlineTooSoon,
    ExecutorNotOffered,
    ForgedContractSignature,
    ForgedQuote,
    InvalidMarketMessage,
    LimitsNotOffered,
    MarketError,
    NegotiationTimedOut,
    NoMatchingGpus,
    OutOfOrderEvent,
    PriceBelowAsk,
    ProviderNotReady,
    QuoteExpired,
    QuoteMismatch,
    WrongMarketChain,
)
from protocol.market.matching import match
from protocol.market.messages import (
    ContractAccepted,
    ContractProposal,
    Quote,
    QuoteBody,
    QuoteRequest,
    Refusal,
    decode_message,
    encode_message,
    sign_quote,
)
from protocol.market.negotiation import (
    PROVIDER_TRANSITIONS,
    REQUESTER_TRANSITIONS,
    NegotiationPlan,
    ProviderEvent,
    ProviderNegotiation,
    ProviderState,
    RequesterEvent,
    RequesterNegotiation,
    RequesterState,
    derive_nonce,
)
from tests.unit.market_builders import (
    BALANCE,
    CHAIN_ID,
    DEADLINE_HEIGHT,
    MIN_DEADLINE_HEIGHT,
    MIN_FEE,
    NOW_MS,
    OFFERED_LIMITS,
    OTHER_CHAIN_ID,
    PROVIDER,
    PROVIDER_COLLATERAL,
    PROVIDER_GPUS,
    PROVIDER_PRICE,
    REQUESTER,
    VALIDATOR,
    announce,
    deal_spec,
    funded_state,
    good_exchange,
    key,
    make_spec,
    new_requester,
    offer_of,
    provider_answer,
    provider_policy,
    pub,
)


def wire(message: Any) -> Any:
    """What the peer receives: the message encoded, framed and decoded."""
    return decode_message(encode_message(message))


def quoted_requester() -> RequesterNegotiation:
    requester = new_requester()
    requester.start(NOW_MS)
    requester.receive_quote(good_exchange().quote, NOW_MS)
    return requester


def quoted_provider() -> ProviderNegotiation:
    provider = ProviderNegotiation(provider_policy())
    assert isinstance(provider_answer(provider, good_exchange().request), Quote)
    return provider


def state_of(negotiation: RequesterNegotiation | ProviderNegotiation) -> RequesterState | ProviderState:
    """The state, read afresh (mypy would keep an earlier ``assert ... is`` narrowing)."""
    return negotiation.state


def snapshot(negotiation: RequesterNegotiation | ProviderNegotiation) -> tuple[object, ...]:
    return (
        negotiation.state,
        negotiation.failure,
        negotiation.timer_at_ms,
        negotiation.quote,
        negotiation.contract,
    )


# --- the happy path -------------------------------------------------------------------------------


def test_a_negotiation_over_the_wire_yields_a_contract_the_ledger_escrows() -> None:
    spec = deal_spec()
    table = CapacityTable(CHAIN_ID)
    table.offer(
        announce(PROVIDER, PROVIDER_GPUS, price=PROVIDER_PRICE, collateral=PROVIDER_COLLATERAL), NOW_MS
    )
    offers = match(spec, table.entries(), now_ms=NOW_MS, min_provider_stake=1)
    plan = NegotiationPlan(
        key=key(REQUESTER),
        chain_id=CHAIN_ID,
        spec=spec,
        offers=offers,
        deadline_height=DEADLINE_HEIGHT,
        seed=b"fresh randomness",
    )
    requester = plan.next_negotiation()
    assert requester is not None
    provider = ProviderNegotiation(provider_policy())

    request = wire(requester.start(NOW_MS))
    assert requester.state is RequesterState.QUOTE_REQUESTED
    quote = wire(provider_answer(provider, request, NOW_MS + 5))
    assert isinstance(quote, Quote) and provider.state is ProviderState.QUOTED
    assert provider.reserved_gpu_uuids == tuple(gpu.uuid for gpu in PROVIDER_GPUS)
    proposal = wire(requester.receive(quote, NOW_MS + 10))
    assert isinstance(proposal, ContractProposal) and state_of(requester) is RequesterState.CONTRACT_SENT
    accepted = wire(provider.receive(proposal, NOW_MS + 15))
    assert isinstance(accepted, ContractAccepted) and state_of(provider) is ProviderState.AGREED
    assert requester.receive(accepted, NOW_MS + 20) is None
    assert state_of(requester) is RequesterState.AGREED

    contract = requester.contract
    assert contract is not None and contract == provider.contract == plan.contract
    assert contract.is_fully_signed()
    terms = contract.terms
    assert terms.requester == pub(REQUESTER) and terms.provider == pub(PROVIDER)
    assert terms.job_hash == spec.job_hash()
    assert terms.gpu_uuids == tuple(gpu.uuid for gpu in PROVIDER_GPUS)
    assert terms.price_per_gpu_second == PROVIDER_PRICE
    assert terms.max_gpu_seconds == 2 * 600
    assert terms.collateral == PROVIDER_COLLATERAL
    assert terms.deadline_height == DEADLINE_HEIGHT
    assert terms.salt == request.nonce == derive_nonce(b"fresh randomness", 0)
    assert requester.timer_at_ms is None and provider.timer_at_ms is None

    state = funded_state()
    open_escrow = sign_tx(key(REQUESTER), CHAIN_ID, 1, MIN_FEE, OpenEscrow(contract))
    apply_block(state, BlockContext(height=1, proposer=key(VALIDATOR).address.raw), [open_escrow])
    assert terms.contract_hash() in state.escrows
    assert state.balance(key(REQUESTER).address.raw) == BALANCE - MIN_FEE - terms.max_cost
    assert state.balance(key(PROVIDER).address.raw) == BALANCE - PROVIDER_COLLATERAL


def test_the_ledger_refuses_a_contract_with_the_requester_signature_alone() -> None:
    proposal = good_exchange().proposal
    half_signed = SignedContract(proposal.terms, proposal.requester_sig, proposal.requester_sig)
    assert not half_signed.is_fully_signed()
    state = funded_state()
    before = state.state_hash()
    open_escrow = sign_tx(key(REQUESTER), CHAIN_ID, 1, MIN_FEE, OpenEscrow(half_signed))
    with pytest.raises(BadContractSignature):
        apply_block(state, BlockContext(height=1, proposer=key(VALIDATOR).address.raw), [open_escrow])
    assert state.state_hash() == before


# --- the requester refuses bad quotes -------------------------------------------------------------


def _signed_quote(signer: str = PROVIDER, *, request_hash: bytes | None = None, **term_changes: Any) -> Quote:
    good = good_exchange().quote
    terms = dataclasses.replace(good.terms, **term_changes)
    body = QuoteBody(request_hash or good.request_hash, terms, good.expires_at_ms)
    return sign_quote(key(signer), body)


def _tampered_price() -> Quote:
    good = good_exchange().quote
    body = dataclasses.replace(good.body, terms=dataclasses.replace(good.terms, price_per_gpu_second=1))
    return Quote(body, good.provider_sig)


BAD_QUOTES: list[tuple[str, Callable[[], Quote], type[MarketError], str]] = [
    ("tampered after signing", _tampered_price, ForgedQuote, "quote.provider_sig"),
    ("signed by another key", lambda: _signed_quote("mallory"), ForgedQuote, "quote.provider_sig"),
    ("another provider", lambda: _signed_quote("carol", provider=pub("carol")), QuoteMismatch, "provider"),
    ("another request", lambda: _signed_quote(request_hash=bytes(32)), QuoteMismatch, "request_hash"),
    ("another chain", lambda: _signed_quote(chain_id=OTHER_CHAIN_ID), WrongMarketChain, "chain_id"),
    ("price above maximum", lambda: _signed_quote(price_per_gpu_second=2_001), QuoteMismatch, "price"),
    (
        "unannounced GPU",
        lambda: _signed_quote(gpu_uuids=("GPU-other", PROVIDER_GPUS[0].uuid)),
        QuoteMismatch,
        "gpu",
    ),
    ("too few GPUs", lambda: _signed_quote(gpu_uuids=(PROVIDER_GPUS[0].uuid,)), QuoteMismatch, "gpu_uuids"),
    (
        "collateral cut",
        lambda: _signed_quote(collateral=PROVIDER_COLLATERAL - 1),
        QuoteMismatch,
        "collateral",
    ),
    ("another job", lambda: _signed_quote(job_hash=bytes(32)), QuoteMismatch, "job_hash"),
    ("another salt", lambda: _signed_quote(salt=b"x" * 16), QuoteMismatch, "salt"),
    (
        "another deadline",
        lambda: _signed_quote(deadline_height=DEADLINE_HEIGHT + 1),
        QuoteMismatch,
        "deadline",
    ),
    ("more GPU-seconds", lambda: _signed_quote(max_gpu_seconds=10**6), QuoteMismatch, "max_gpu_seconds"),
    ("another requester", lambda: _signed_quote(requester=pub("carol")), QuoteMismatch, "requester"),
]


@pytest.mark.parametrize(("case", "make_quote", "error", "field"), BAD_QUOTES, ids=[q[0] for q in BAD_QUOTES])
def test_a_bad_quote_is_refused_and_changes_nothing(
    case: str, make_quote: Callable[[], Quote], error: type[MarketError], field: str
) -> None:
    requester = new_requester()
    requester.start(NOW_MS)
    before = snapshot(requester)
    with pytest.raises(MarketError) as caught:
        requester.receive_quote(wire(make_quote()), NOW_MS)
    assert type(caught.value) is error
    assert field in caught.value.message
    assert snapshot(requester) == before
    # The refusal left the negotiation intact: the genuine quote is still accepted.
    requester.receive_quote(good_exchange().quote, NOW_MS)
    assert requester.state is RequesterState.QUOTED


def test_an_expired_quote_is_refused() -> None:
    quote = good_exchange().quote
    requester = new_requester()
    requester.start(NOW_MS)
    with pytest.raises(QuoteExpired) as caught:
        requester.receive_quote(quote, quote.expires_at_ms)
    assert caught.value.code == 4034
    assert requester.state is RequesterState.QUOTE_REQUESTED
    requester.receive_quote(quote, quote.expires_at_ms - 1)
    with pytest.raises(QuoteExpired):
        requester.propose_contract(quote.expires_at_ms)
    assert state_of(requester) is RequesterState.QUOTED and requester.proposal is None


def test_a_forged_or_mismatched_countersignature_is_refused() -> None:
    exchange = good_exchange()
    requester = quoted_requester()
    requester.propose_contract(NOW_MS)
    before = snapshot(requester)
    forged = ContractAccepted(exchange.accepted.contract_hash, exchange.proposal.terms.sign(key("mallory")))
    with pytest.raises(ForgedContractSignature):
        requester.receive_accepted(forged)
    other_contract = ContractAccepted(bytes(32), exchange.accepted.provider_sig)
    with pytest.raises(ContractMismatch):
        requester.receive_accepted(other_contract)
    assert snapshot(requester) == before
    assert requester.receive_accepted(exchange.accepted).is_fully_signed()


# --- the provider refuses bad contracts and requests -----------------------------------------------


def _proposal_with(**term_changes: Any) -> ContractProposal:
    terms = dataclasses.replace(good_exchange().quote.terms, **term_changes)
    return ContractProposal(terms, terms.sign(key(REQUESTER)))


@pytest.mark.parametrize(
    ("field", "change"),
    [
        ("price_per_gpu_second", {"price_per_gpu_second": PROVIDER_PRICE - 1}),
        ("gpu_uuids", {"gpu_uuids": (PROVIDER_GPUS[1].uuid, PROVIDER_GPUS[0].uuid)}),
        ("collateral", {"collateral": 0}),
        ("max_gpu_seconds", {"max_gpu_seconds": 1}),
        ("deadline_height", {"deadline_height": DEADLINE_HEIGHT * 10}),
    ],
)
def test_contract_terms_that_differ_from_the_quote_are_refused(field: str, change: dict[str, Any]) -> None:
    provider = quoted_provider()
    reply = provider.receive_contract(wire(_proposal_with(**change)), NOW_MS)
    assert isinstance(reply, Refusal)
    assert reply.code == ContractMismatch.code == 4036
    assert f"contract terms differ from the quote in: {field}" == reply.message
    assert provider.state is ProviderState.FAILED and provider.contract is None
    assert provider.failure is not None and provider.failure.code == 4036
    assert provider.reserved_gpu_uuids == ()


def test_a_requester_signature_over_other_bytes_is_refused() -> None:
    quoted = good_exchange().quote.terms
    other = dataclasses.replace(quoted, price_per_gpu_second=1)
    for signature in (other.sign(key(REQUESTER)), quoted.sign(key("mallory"))):
        provider = quoted_provider()
        reply = provider.receive_contract(ContractProposal(quoted, signature), NOW_MS)
        assert isinstance(reply, Refusal) and reply.code == ForgedContractSignature.code
        assert "requester_sig" in reply.message
        assert provider.contract is None and provider.state is ProviderState.FAILED


def test_a_contract_after_the_quote_expired_is_refused_and_the_requester_fails_with_the_reason() -> None:
    exchange = good_exchange()
    provider = quoted_provider()
    assert provider.quote is not None
    reply = provider.receive_contract(exchange.proposal, provider.quote.expires_at_ms)
    assert isinstance(reply, Refusal) and reply.code == QuoteExpired.code
    requester = quoted_requester()
    requester.propose_contract(NOW_MS)
    requester.receive_refusal(wire(reply))
    assert requester.state is RequesterState.FAILED
    assert requester.failure is not None and requester.failure.code == QuoteExpired.code
    assert requester.contract is None


def _refusal_for(
    spec: Any = None,
    *,
    free_gpus: Any = PROVIDER_GPUS,
    min_deadline: int = MIN_DEADLINE_HEIGHT,
    **policy: Any,
) -> tuple[Refusal, ProviderNegotiation]:
    request = QuoteRequest(CHAIN_ID, spec or deal_spec(), pub(REQUESTER), b"n" * 16, DEADLINE_HEIGHT)
    provider = ProviderNegotiation(provider_policy(**policy))
    reply = provider.receive_request(
        request, now_ms=NOW_MS, free_gpus=free_gpus, min_deadline_height=min_deadline
    )
    assert isinstance(reply, Refusal)
    return reply, provider


@pytest.mark.parametrize(
    ("case", "arguments", "error"),
    [
        ("price below the ask", {"price_per_gpu_second": 2_001}, PriceBelowAsk),
        ("no free GPUs", {"free_gpus": PROVIDER_GPUS[:1]}, NoMatchingGpus),
        ("no container engine", {"spec": make_spec(image="alpine:3", argv=[])}, ExecutorNotOffered),
        ("deadline too soon", {"min_deadline": DEADLINE_HEIGHT + 1}, DeadlineTooSoon),
        ("another chain", {"chain_id": OTHER_CHAIN_ID}, WrongMarketChain),
        ("from itself", {"key": key(REQUESTER)}, InvalidMarketMessage),
        ("sandbox not self-tested", {"limits": None}, ProviderNotReady),
        (
            "more memory than sold",
            {"limits": dataclasses.replace(OFFERED_LIMITS, memory_bytes=2**30)},
            LimitsNotOffered,
        ),
        (
            "a limit it cannot enforce",
            {"limits": dataclasses.replace(OFFERED_LIMITS, enforced=("cpu", "disk", "processes"))},
            LimitsNotOffered,
        ),
    ],
)
def test_a_request_the_provider_cannot_serve_is_refused_with_a_reason(
    case: str, arguments: dict[str, Any], error: type[MarketError]
) -> None:
    refusal, provider = _refusal_for(**arguments)
    assert refusal.code == error.code
    assert provider.state is ProviderState.FAILED
    assert provider.quote is None and provider.reserved_gpu_uuids == ()


# --- events out of order --------------------------------------------------------------------------


def _requester_in(state: RequesterState) -> RequesterNegotiation:
    exchange = good_exchange()
    requester = new_requester()
    if state is RequesterState.FAILED:
        requester.abandon("test")
    steps: list[Callable[[], object]] = [
        lambda: requester.start(NOW_MS),
        lambda: requester.receive_quote(exchange.quote, NOW_MS),
        lambda: requester.propose_contract(NOW_MS),
        lambda: requester.receive_accepted(exchange.accepted),
    ]
    order = [
        RequesterState.QUOTE_REQUESTED,
        RequesterState.QUOTED,
        RequesterState.CONTRACT_SENT,
        RequesterState.AGREED,
    ]
    for step, reached in zip(steps, order, strict=True):
        if requester.state is state:
            break
        step()
        assert requester.state is reached
    assert requester.state is state
    return requester


_REQUESTER_EVENTS: dict[RequesterEvent, Callable[[RequesterNegotiation], object]] = {
    RequesterEvent.SEND_REQUEST: lambda r: r.start(NOW_MS),
    RequesterEvent.RECEIVE_QUOTE: lambda r: r.receive_quote(good_exchange().quote, NOW_MS),
    RequesterEvent.SEND_CONTRACT: lambda r: r.propose_contract(NOW_MS),
    RequesterEvent.RECEIVE_ACCEPTED: lambda r: r.receive_accepted(good_exchange().accepted),
    RequesterEvent.RECEIVE_REFUSAL: lambda r: r.receive_refusal(Refusal(NoMatchingGpus.code, "none free")),
    RequesterEvent.ABANDON: lambda r: r.abandon("stream closed"),
}


@pytest.mark.parametrize("state", list(RequesterState))
@pytest.mark.parametrize("event", list(_REQUESTER_EVENTS))
def test_the_requester_follows_its_transition_table(state: RequesterState, event: RequesterEvent) -> None:
    requester = _requester_in(state)
    target = REQUESTER_TRANSITIONS.get((state, event))
    if target is None:
        before = snapshot(requester)
        with pytest.raises(OutOfOrderEvent) as caught:
            _REQUESTER_EVENTS[event](requester)
        assert caught.value.code == 4039
        assert snapshot(requester) == before
    else:
        _REQUESTER_EVENTS[event](requester)
        assert requester.state is target


def _provider_in(state: ProviderState) -> ProviderNegotiation:
    provider = ProviderNegotiation(provider_policy())
    if state is ProviderState.FAILED:
        provider.abandon("test")
    elif state is not ProviderState.AWAITING_REQUEST:
        provider_answer(provider, good_exchange().request)
        if state is ProviderState.AGREED:
            provider.receive_contract(good_exchange().proposal, NOW_MS)
    assert provider.state is state
    return provider


_PROVIDER_EVENTS: dict[ProviderEvent, Callable[[ProviderNegotiation], object]] = {
    ProviderEvent.SEND_QUOTE: lambda p: provider_answer(p, good_exchange().request),
    ProviderEvent.REFUSE_REQUEST: lambda p: p.receive_request(
        good_exchange().request, now_ms=NOW_MS, free_gpus=(), min_deadline_height=0
    ),
    ProviderEvent.COUNTERSIGN: lambda p: p.receive_contract(good_exchange().proposal, NOW_MS),
    ProviderEvent.REFUSE_CONTRACT: lambda p: p.receive_contract(_proposal_with(collateral=0), NOW_MS),
    ProviderEvent.ABANDON: lambda p: p.abandon("stream closed"),
}


@pytest.mark.parametrize("state", list(ProviderState))
@pytest.mark.parametrize("event", list(_PROVIDER_EVENTS))
def test_the_provider_follows_its_transition_table(state: ProviderState, event: ProviderEvent) -> None:
    provider = _provider_in(state)
    target = PROVIDER_TRANSITIONS.get((state, event))
    if target is None:
        before = snapshot(provider)
        with pytest.raises(OutOfOrderEvent):
            _PROVIDER_EVENTS[event](provider)
        assert snapshot(provider) == before
    else:
        _PROVIDER_EVENTS[event](provider)
        assert provider.state is target


def test_messages_a_peer_never_sends_are_out_of_order() -> None:
    requester = _requester_in(RequesterState.QUOTE_REQUESTED)
    with pytest.raises(OutOfOrderEvent):
        requester.receive(good_exchange().request, NOW_MS)
    provider = _provider_in(ProviderState.QUOTED)
    with pytest.raises(OutOfOrderEvent):
        provider.receive(good_exchange().quote, NOW_MS)
    assert requester.state is RequesterState.QUOTE_REQUESTED and provider.state is ProviderState.QUOTED


# --- timers ---------------------------------------------------------------------------------------


def test_the_requester_times_out_waiting_for_a_quote_and_for_the_countersignature() -> None:
    requester = new_requester()
    assert requester.on_timer(NOW_MS + 10**9) is False  # no timer before the request
    requester.start(NOW_MS)
    assert requester.timer_at_ms == NOW_MS + 10_000
    assert requester.on_timer(NOW_MS + 9_999) is False
    assert requester.state is RequesterState.QUOTE_REQUESTED
    assert requester.on_timer(NOW_MS + 10_000) is True
    assert state_of(requester) is RequesterState.FAILED
    assert requester.failure is not None and requester.failure.code == NegotiationTimedOut.code
    assert requester.on_timer(NOW_MS + 20_000) is False

    requester = quoted_requester()
    requester.propose_contract(NOW_MS + 100)
    assert requester.timer_at_ms == NOW_MS + 10_100
    assert requester.on_timer(NOW_MS + 10_100) is True
    assert requester.failure is not None and requester.failure.code == NegotiationTimedOut.code


def test_a_quote_left_unsigned_until_it_expires_fails_the_requester() -> None:
    requester = quoted_requester()
    expiry = good_exchange().quote.expires_at_ms
    assert requester.timer_at_ms == expiry
    assert requester.on_timer(expiry - 1) is False
    assert requester.on_timer(expiry) is True
    assert requester.failure is not None and requester.failure.code == QuoteExpired.code


def test_the_provider_releases_its_gpus_when_the_quote_expires_unanswered() -> None:
    provider = quoted_provider()
    assert provider.quote is not None
    expiry = provider.quote.expires_at_ms
    assert provider.timer_at_ms == expiry == NOW_MS + 30_000
    assert provider.on_timer(expiry - 1) is False and provider.reserved_gpu_uuids
    assert provider.on_timer(expiry) is True
    assert provider.state is ProviderState.FAILED and provider.reserved_gpu_uuids == ()
    assert provider.failure is not None and provider.failure.code == QuoteExpired.code
    with pytest.raises(OutOfOrderEvent):
        provider.receive_contract(good_exchange().proposal, expiry - 1)


# --- the plan: next provider on refusal, timeout or a refused message ------------------------------


def _plan(labels: list[str], seed: bytes = b"0123456789abcdef") -> NegotiationPlan:
    spec = deal_spec()
    table = CapacityTable(CHAIN_ID)
    for rank, label in enumerate(labels):
        table.offer(
            announce(label, PROVIDER_GPUS, price=100 * (rank + 1), collateral=PROVIDER_COLLATERAL), NOW_MS
        )
    offers = match(spec, table.entries(), now_ms=NOW_MS, min_provider_stake=1)
    assert [offer.provider for offer in offers] == [pub(label) for label in labels]
    return NegotiationPlan(
        key=key(REQUESTER),
        chain_id=CHAIN_ID,
        spec=spec,
        offers=offers,
        deadline_height=DEADLINE_HEIGHT,
        seed=seed,
    )


def _answer(label: str, requester: RequesterNegotiation, now_ms: int, **policy: Any) -> Quote | Refusal:
    provider = ProviderNegotiation(provider_policy(label, price_per_gpu_second=100, **policy))
    return provider_answer(provider, wire(requester.start(now_ms)), now_ms)


def test_the_plan_moves_on_after_a_refusal_and_a_timeout_and_agrees_with_the_third() -> None:
    plan = _plan(["bob", "carol", "dave"])
    first = plan.next_negotiation()
    assert first is not None and first.offer.provider == pub("bob")
    refusal = _answer("bob", first, NOW_MS, executors=frozenset({"docker"}))
    first.receive(wire(refusal), NOW_MS + 1)
    assert first.state is RequesterState.FAILED

    second = plan.next_negotiation()
    assert second is not None and second.offer.provider == pub("carol")
    second.start(NOW_MS + 2)
    with pytest.raises(OutOfOrderEvent):
        plan.next_negotiation()  # carol has not answered yet
    assert second.timer_at_ms is not None
    assert second.on_timer(second.timer_at_ms)

    third = plan.next_negotiation()
    assert third is not None and third.offer.provider == pub("dave")
    provider = ProviderNegotiation(provider_policy("dave", price_per_gpu_second=300))
    quote = provider_answer(provider, wire(third.start(NOW_MS + 3)), NOW_MS + 3)
    proposal = third.receive(wire(quote), NOW_MS + 4)
    assert proposal is not None
    accepted = provider.receive_contract(wire(proposal), NOW_MS + 5)
    third.receive(wire(accepted), NOW_MS + 6)

    assert plan.next_negotiation() is None
    assert plan.contract is not None and plan.contract.terms.provider == pub("dave")
    assert plan.contract.is_fully_signed() and not plan.exhausted
    assert [(offer.provider, failure.code) for offer, failure in plan.failures] == [
        (pub("bob"), ExecutorNotOffered.code),
        (pub("carol"), NegotiationTimedOut.code),
    ]
    nonces = {first.request.nonce, second.request.nonce, third.request.nonce}
    assert len(nonces) == 3
    assert plan.contract.terms.salt == derive_nonce(b"0123456789abcdef", 2)


def test_a_forged_quote_makes_the_host_abandon_that_provider_and_move_on() -> None:
    plan = _plan(["bob", "carol"])
    first = plan.next_negotiation()
    assert first is not None
    quote = _answer("bob", first, NOW_MS)
    assert isinstance(quote, Quote)
    forged = Quote(quote.body, quote.terms.sign(key("bob")))  # a contract signature is not a quote signature
    try:
        first.receive(wire(forged), NOW_MS)
    except MarketError as error:
        first.abandon(error)
    assert first.failure is not None and first.failure.code == ForgedQuote.code
    second = plan.next_negotiation()
    assert second is not None and second.offer.provider == pub("carol")


def test_a_plan_runs_out_of_offers() -> None:
    plan = _plan(["bob", "carol"])
    for _ in range(2):
        negotiation = plan.next_negotiation()
        assert negotiation is not None
        negotiation.start(NOW_MS)
        negotiation.receive_refusal(Refusal(PriceBelowAsk.code, "too cheap"))
    assert plan.next_negotiation() is None
    assert plan.next_negotiation() is None
    assert plan.exhausted and plan.contract is None
    assert [failure.code for _, failure in plan.failures] == [PriceBelowAsk.code, PriceBelowAsk.code]

    empty = NegotiationPlan(
        key=key(REQUESTER), chain_id=CHAIN_ID, spec=deal_spec(), offers=[], deadline_height=9, seed=b"s" * 16
    )
    assert empty.next_negotiation() is None and empty.exhausted


def test_a_plan_needs_a_real_seed() -> None:
    with pytest.raises(InvalidMarketMessage):
        NegotiationPlan(
            key=key(REQUESTER),
            chain_id=CHAIN_ID,
            spec=deal_spec(),
            offers=[],
            deadline_height=9,
            seed=b"short",
        )


def test_nonces_differ_per_attempt_and_per_seed() -> None:
    nonces = {derive_nonce(seed, attempt) for seed in (b"a" * 16, b"b" * 16) for attempt in range(3)}
    assert len(nonces) == 6
    assert all(len(nonce) == 16 for nonce in nonces)


def test_contract_hashes_differ_between_providers_for_the_same_request() -> None:
    spec = deal_spec()
    hashes = set()
    for label in ("bob", "carol"):
        requester = RequesterNegotiation(
            key=key(REQUESTER),
            chain_id=CHAIN_ID,
            spec=spec,
            offer=offer_of(label, spec),
            nonce=b"same nonce twice",
            deadline_height=DEADLINE_HEIGHT,
        )
        quote = provider_answer(ProviderNegotiation(provider_policy(label)), requester.start(NOW_MS))
        assert isinstance(quote, Quote)
        hashes.add(ContractTerms.contract_hash(quote.terms))
    assert len(hashes) == 2
    assert (
        hashlib.sha256(good_exchange().quote.terms.encode()).digest()
        == good_exchange().contract.terms.contract_hash()
    )
