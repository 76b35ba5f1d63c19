"""Random event sequences: the market's state machines raise only typed errors, refuse without
changing state, and never reach AGREED without both valid signatures over the same terms."""

from __future__ import annotations

import dataclasses
from typing import Any

from hypothesis import event, given
from hypothesis import strategies as st

from protocol.encoding import DecodeError
from protocol.market.capacity import CapacityTable
from protocol.market.errors import AnnouncementError, MalformedMessage, MarketError
from protocol.market.messages import (
    ContractAccepted,
    ContractProposal,
    MarketMessage,
    Quote,
    QuoteBody,
    QuoteRequest,
    Refusal,
    decode_message,
    encode_message,
    sign_quote,
)
from protocol.market.negotiation import (
    ProviderNegotiation,
    ProviderState,
    RequesterNegotiation,
    RequesterState,
)
from tests.unit.market_builders import (
    CHAIN_ID,
    NOW_MS,
    OTHER_CHAIN_ID,
    PROVIDER_GPUS,
    REQUESTER,
    announce,
    deal_spec,
    good_exchange,
    key,
    new_requester,
    provider_policy,
    pub,
)

# Around the quote's validity (30 s) and the response timeout (10 s), on both sides of each.
times = st.integers(NOW_MS - 1_000, NOW_MS + 40_000)


def _quotes() -> list[Quote]:
    good = good_exchange().quote
    cheaper = dataclasses.replace(good.terms, price_per_gpu_second=1)
    return [
        good,
        Quote(dataclasses.replace(good.body, terms=cheaper), good.provider_sig),  # tampered
        sign_quote(key("mallory"), good.body),  # forged
        sign_quote(key("bob"), QuoteBody(bytes(32), good.terms, good.expires_at_ms)),  # another request
        sign_quote(key("bob"), dataclasses.replace(good.body, terms=cheaper)),  # mismatched (salt kept)
        sign_quote(key("bob"), dataclasses.replace(good.body, expires_at_ms=NOW_MS + 1)),  # short-lived
    ]


def _acceptances() -> list[ContractAccepted]:
    good = good_exchange().accepted
    return [
        good,
        ContractAccepted(good.contract_hash, good_exchange().proposal.terms.sign(key("mallory"))),
        ContractAccepted(bytes(32), good.provider_sig),
        ContractAccepted(good.contract_hash, good_exchange().proposal.requester_sig),
    ]


# The good path's events are drawn more often (one_of picks a branch uniformly), so that random
# sequences reach every state, AGREED included, and not only the early failures.
requester_ops = st.one_of(
    st.tuples(st.just("start"), times),
    st.tuples(st.just("start"), times),
    st.tuples(st.just("quote"), st.just(0), times),
    st.tuples(st.just("quote"), st.just(0), times),
    st.tuples(st.just("quote"), st.integers(0, 5), times),
    st.tuples(st.just("propose"), times),
    st.tuples(st.just("accepted"), st.just(0)),
    st.tuples(st.just("accepted"), st.just(0)),
    st.tuples(st.just("accepted"), st.integers(0, 3)),
    st.tuples(st.just("refusal"), st.integers(1000, 9999)),
    st.tuples(st.just("timer"), times),
    st.tuples(st.just("abandon")),
    st.tuples(st.just("receive_request"), times),
)


def _requester_snapshot(r: RequesterNegotiation) -> tuple[Any, ...]:
    return (r.state, r.failure, r.timer_at_ms, r.quote, r.proposal, r.contract)


@given(ops=st.lists(requester_ops, max_size=12))
def test_random_events_never_crash_the_requester_nor_agree_without_both_signatures(
    ops: list[tuple[Any, ...]],
) -> None:
    quotes, acceptances = _quotes(), _acceptances()
    good_terms = good_exchange().quote.terms
    requester = new_requester()
    for op in ops:
        before = _requester_snapshot(requester)
        was_finished = requester.finished
        try:
            match op:
                case ("start", now):
                    requester.start(now)
                case ("quote", index, now):
                    requester.receive(quotes[index], now)
                case ("propose", now):
                    requester.propose_contract(now)
                case ("accepted", index):
                    requester.receive_accepted(acceptances[index])
                case ("refusal", code):
                    requester.receive(Refusal(code, "no"), NOW_MS)
                case ("timer", now):
                    requester.on_timer(now)
                case ("abandon",):
                    requester.abandon("gone")
                case ("receive_request", now):
                    requester.receive(good_exchange().request, now)
        except MarketError:
            assert _requester_snapshot(requester) == before, f"{op} was refused but changed the state"
        if was_finished:
            assert _requester_snapshot(requester) == before, "a finished negotiation changed"
        if requester.state is RequesterState.AGREED:
            contract = requester.contract
            assert contract is not None and contract.is_fully_signed()
            assert contract.terms == good_terms
        elif requester.state is RequesterState.FAILED:
            assert requester.failure is not None and requester.contract is None
        else:
            assert requester.contract is None
    event(f"requester ended {requester.state.value}")


def _requests() -> list[QuoteRequest]:
    good = good_exchange().request
    return [
        good,
        dataclasses.replace(good, chain_id=OTHER_CHAIN_ID),
        dataclasses.replace(good, nonce=b"x" * 16),
    ]


def _proposals() -> list[ContractProposal]:
    good = good_exchange().proposal
    other_terms = dataclasses.replace(good.terms, collateral=0)
    return [
        good,
        ContractProposal(other_terms, other_terms.sign(key(REQUESTER))),  # mismatched terms
        ContractProposal(good.terms, other_terms.sign(key(REQUESTER))),  # signature over other bytes
        ContractProposal(good.terms, good.terms.sign(key("mallory"))),  # forged
    ]


provider_ops = st.one_of(
    st.tuples(st.just("request"), st.just(0), st.just(True), times),
    st.tuples(st.just("request"), st.integers(0, 2), st.booleans(), times),
    st.tuples(st.just("contract"), st.just(0), times),
    st.tuples(st.just("contract"), st.just(0), times),
    st.tuples(st.just("contract"), st.integers(0, 3), times),
    st.tuples(st.just("timer"), times),
    st.tuples(st.just("abandon")),
    st.tuples(st.just("receive_quote"), times),
)


def _provider_snapshot(p: ProviderNegotiation) -> tuple[Any, ...]:
    return (p.state, p.failure, p.timer_at_ms, p.quote, p.contract)


@given(ops=st.lists(provider_ops, max_size=10))
def test_random_events_never_crash_the_provider_nor_countersign_other_terms(
    ops: list[tuple[Any, ...]],
) -> None:
    requests, proposals = _requests(), _proposals()
    provider = ProviderNegotiation(provider_policy())
    for op in ops:
        before = _provider_snapshot(provider)
        was_finished = provider.finished
        try:
            match op:
                case ("request", index, has_gpus, now):
                    provider.receive_request(
                        requests[index],
                        now_ms=now,
                        free_gpus=PROVIDER_GPUS if has_gpus else (),
                        min_deadline_height=1,
                    )
                case ("contract", index, now):
                    provider.receive(proposals[index], now)
                case ("timer", now):
                    provider.on_timer(now)
                case ("abandon",):
                    provider.abandon("gone")
                case ("receive_quote", now):
                    provider.receive(good_exchange().quote, now)
        except MarketError:
            assert _provider_snapshot(provider) == before, f"{op} was refused but changed the state"
        if was_finished:
            assert _provider_snapshot(provider) == before, "a finished negotiation changed"
        if provider.state is ProviderState.AGREED:
            contract = provider.contract
            assert contract is not None and contract.is_fully_signed()
            assert provider.quote is not None and contract.terms == provider.quote.terms
            assert contract.terms.requester == pub(REQUESTER)
        else:
            assert provider.contract is None
    event(f"provider ended {provider.state.value}")


# --- the wire ----------------------------------------------------------------------------------------


def _all_messages() -> list[bytes]:
    exchange = good_exchange()
    messages: list[MarketMessage] = [
        exchange.request,
        exchange.quote,
        exchange.proposal,
        exchange.accepted,
        Refusal(4041, "none"),
    ]
    return [encode_message(message) for message in messages]


@given(data=st.binary(max_size=300))
def test_arbitrary_bytes_decode_to_a_message_or_a_malformed_message_error(data: bytes) -> None:
    try:
        decode_message(data)
    except MalformedMessage as exc:
        assert isinstance(exc, DecodeError) and exc.code == 4031


@given(which=st.integers(0, 4), position=st.integers(0, 10**6), value=st.integers(0, 255))
def test_a_corrupted_byte_gives_a_valid_message_or_a_malformed_message_error(
    which: int, position: int, value: int
) -> None:
    original = _all_messages()[which]
    corrupted = bytearray(original)
    corrupted[position % len(corrupted)] = value
    try:
        message = decode_message(bytes(corrupted))
    except MalformedMessage:
        return
    assert encode_message(message) == bytes(corrupted)


def test_every_message_type_round_trips() -> None:
    for data in _all_messages():
        assert encode_message(decode_message(data)) == data


# --- the capacity table ---------------------------------------------------------------------------

table_ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("offer"),
            st.sampled_from(["bob", "carol"]),
            st.integers(1, 6),  # sequence
            st.integers(0, 40_000),  # time step before this event
            st.integers(1_000, 700_000),  # validity
            st.booleans(),  # forged
        ),
        st.tuples(st.just("expire"), st.integers(0, 40_000)),
    ),
    max_size=15,
)


@given(ops=table_ops)
def test_the_capacity_table_keeps_only_current_verified_entries_with_growing_sequences(
    ops: list[tuple[Any, ...]],
) -> None:
    table = CapacityTable(CHAIN_ID)
    now = NOW_MS
    for op in ops:
        now += op[-1] if op[0] == "expire" else op[3]
        before = table.entries()
        if op[0] == "expire":
            removed = table.expire(now)
            assert removed == sorted(removed)
            assert all(ann.expires_at_ms > now for ann in table.entries())
            continue
        _, label, sequence, _, validity, forged = op
        ann = announce(
            label,
            sequence=sequence,
            issued_at_ms=now,
            validity_ms=validity,
            signer="mallory" if forged else None,
        )
        previous = table.get(ann.provider)
        try:
            table.offer(ann, now)
        except AnnouncementError:
            assert table.entries() == before
            continue
        assert not forged
        assert previous is None or sequence > previous.sequence
        assert table.get(pub(label)) == ann
    providers = [ann.provider for ann in table.entries()]
    assert providers == sorted(providers)


def test_the_good_event_sequence_reaches_agreed() -> None:
    """The random sequences above can reach AGREED: the good messages in order get there."""
    requester = new_requester(deal_spec())
    requester.start(NOW_MS)
    requester.receive(good_exchange().quote, NOW_MS)
    requester.receive_accepted(good_exchange().accepted)
    assert requester.state is RequesterState.AGREED
    assert isinstance(requester, RequesterNegotiation)
