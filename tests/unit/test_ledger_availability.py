"""Standing offers: collateral-backed capacity, challenges answered by the node's key, takes at the
posted price that the provider must accept, and availability rewards for blocks stood."""

from __future__ import annotations

import dataclasses

from protocol.contracts import OUTCOME_COMPLETED, UsageReceipt
from protocol.economics import mul_ratio, pro_rata
from protocol.ledger.errors import NotAParty
from protocol.ledger.liquidity_errors import (
    BadAvailabilityProof,
    ChallengeOpen,
    ChallengeWindowClosed,
    ChallengeWindowOpen,
    CollateralTooLow,
    NoChallenge,
    OfferNotStanding,
    OwnOffer,
    PriceTooHigh,
    TakeWindowClosed,
    TakeWindowOpen,
    TooManyGpus,
)
from protocol.ledger.snapshot import decode_snapshot, encode_snapshot
from protocol.ledger.tx import (
    OfferAccept,
    OfferAnswer,
    OfferChallenge,
    OfferMiss,
    OfferRefused,
    OfferStand,
    OfferTake,
    OfferWithdraw,
    Settle,
    Transfer,
    availability_bytes,
    decode_tx,
)
from protocol.units import percent

from .ledger_helpers import CHAIN_ID, FEE, TEST_PARAMS, Chain, addr, assert_block_rejected, key, make_genesis

PARAMS = dataclasses.replace(
    TEST_PARAMS,
    availability_share=percent(5),
    challenge_window=3,
    challenge_deposit=100,
    availability_slash_share=percent(10),
    standing_collateral_per_gpu=1_000,
    standing_max_price=50,
    epoch_length=6,
)
NODE = key("bob-node")
PERIOD = 40


def offer_chain(gpus: int = 8, collateral: int = 100_000) -> tuple[Chain, bytes]:
    chain = Chain(make_genesis(PARAMS))
    raw = chain.tx("bob", OfferStand(NODE.public_key.raw, "H100", gpus, 10, PERIOD, collateral))
    chain.block([raw])
    return chain, decode_tx(raw).hash


def answer_of(chain: Chain, offer: bytes, signer=NODE) -> OfferAnswer:  # type: ignore[no-untyped-def]
    seed = chain.state.offers[offer].seed
    return OfferAnswer(offer, signer.sign(availability_bytes(CHAIN_ID, offer, seed)))


def to_epoch_end(chain: Chain) -> None:
    length = chain.params.epoch_length
    chain.advance_to((chain.height // length + 1) * length - 1)


def epoch_rewards_after(chain: Chain, result: object) -> dict[bytes, int]:
    """The payouts of the epoch that the block of ``result`` belongs to."""
    if chain.height % chain.params.epoch_length == 0:
        return dict(result.mining_rewards)  # type: ignore[attr-defined]
    to_epoch_end(chain)
    return dict(chain.block().mining_rewards)


# --- posting -----------------------------------------------------------------------------------------
def test_an_offer_bonds_its_collateral_and_stands_for_its_period() -> None:
    before = Chain(make_genesis(PARAMS)).balance("bob")
    chain, offer = offer_chain()
    record = chain.state.offers[offer]
    assert chain.balance("bob") == before - 100_000 - FEE
    assert (record.gpu_count, record.price, record.end) == (8, 10, record.start + PERIOD)


def test_an_offer_needs_collateral_per_gpu_and_a_price_within_the_standing_maximum() -> None:
    chain = Chain(make_genesis(PARAMS))
    low = OfferStand(NODE.public_key.raw, "H100", 8, 10, PERIOD, 7_999)
    assert_block_rejected(chain, [chain.tx("bob", low)], CollateralTooLow, 2332)
    chain.forget_reserved_nonces()
    dear = OfferStand(NODE.public_key.raw, "H100", 8, 51, PERIOD, 8_000)
    assert_block_rejected(chain, [chain.tx("bob", dear)], PriceTooHigh, 2333)


def test_the_provider_withdraws_its_collateral_only_after_the_period() -> None:
    chain, offer = offer_chain()
    assert_block_rejected(chain, [chain.tx("bob", OfferWithdraw(offer))], OfferNotStanding, 2321)
    chain.forget_reserved_nonces()
    chain.advance_to(chain.state.offers[offer].end)
    before = chain.balance("bob")
    chain.block([chain.tx("bob", OfferWithdraw(offer))])
    assert chain.balance("bob") == before + 100_000 - FEE and offer not in chain.state.offers


# --- challenges --------------------------------------------------------------------------------------
def test_a_challenge_answered_by_the_node_key_pays_the_deposit_to_the_provider() -> None:
    chain, offer = offer_chain()
    chain.block([chain.tx("dave", OfferChallenge(offer))])
    assert chain.state.offers[offer].seed
    before = chain.balance("bob")
    chain.block([chain.tx("carol", answer_of(chain, offer))])  # anyone may relay the answer
    assert chain.balance("bob") == before + PARAMS.challenge_deposit
    assert not chain.state.offers[offer].seed


def test_the_providers_wallet_key_cannot_answer_for_its_node() -> None:
    chain, offer = offer_chain()
    chain.block([chain.tx("dave", OfferChallenge(offer))])
    wrong = answer_of(chain, offer, signer=key("bob"))
    assert_block_rejected(chain, [chain.tx("bob", wrong)], BadAvailabilityProof, 2326)


def test_an_answer_is_bound_to_its_seed_a_stale_one_does_not_answer_the_next_challenge() -> None:
    chain, offer = offer_chain()
    chain.block([chain.tx("dave", OfferChallenge(offer))])
    stale = answer_of(chain, offer)
    chain.block([chain.tx("carol", stale)])
    chain.block([chain.tx("dave", OfferChallenge(offer))])
    assert_block_rejected(chain, [chain.tx("carol", stale)], BadAvailabilityProof, 2326)


def test_a_provider_cannot_challenge_itself_and_one_challenge_at_a_time() -> None:
    chain, offer = offer_chain()
    assert_block_rejected(chain, [chain.tx("bob", OfferChallenge(offer))], OwnOffer, 2327)
    chain.forget_reserved_nonces()
    chain.block([chain.tx("dave", OfferChallenge(offer))])
    assert_block_rejected(chain, [chain.tx("alice", OfferChallenge(offer))], ChallengeOpen, 2322)


def test_a_missed_challenge_slashes_the_collateral_pays_the_challenger_and_forfeits_the_epoch() -> None:
    chain, offer = offer_chain()
    chain.block([chain.tx("dave", OfferChallenge(offer))])
    deadline = chain.state.offers[offer].deadline
    assert_block_rejected(chain, [chain.tx("alice", OfferMiss(offer))], ChallengeWindowOpen, 2324)
    chain.forget_reserved_nonces()
    chain.advance_to(deadline)
    late = answer_of(chain, offer)
    chain.advance_to(deadline)
    dave, burned = chain.balance("dave"), chain.state.vars["burned"]
    result = chain.block([chain.tx("alice", OfferMiss(offer))])
    slashed = mul_ratio(100_000, PARAMS.availability_slash_share)
    assert chain.balance("dave") == dave + PARAMS.challenge_deposit + slashed // 2
    assert chain.state.offers[offer].collateral == 100_000 - slashed
    assert chain.state.vars["burned"] - burned >= slashed - slashed // 2
    assert addr("bob") not in epoch_rewards_after(chain, result)
    assert_block_rejected(chain, [chain.tx("carol", late)], NoChallenge, 2323)


def test_an_answer_after_the_window_is_refused() -> None:
    chain, offer = offer_chain()
    chain.block([chain.tx("dave", OfferChallenge(offer))])
    late = answer_of(chain, offer)
    chain.advance_to(chain.state.offers[offer].deadline)
    assert_block_rejected(chain, [chain.tx("carol", late)], ChallengeWindowClosed, 2325)


# --- rewards -----------------------------------------------------------------------------------------
def test_an_epoch_pays_standing_offers_pro_rata_gpus_times_blocks() -> None:
    chain, bob_offer = offer_chain(gpus=8)
    raw = chain.tx("carol", OfferStand(key("carol-node").public_key.raw, "A100", 2, 5, PERIOD, 2_000))
    chain.block([raw])
    carol_offer = decode_tx(raw).hash
    to_epoch_end(chain)
    pot = chain.state.vars["availability_pool"]
    bob, carol = chain.state.offers[bob_offer], chain.state.offers[carol_offer]
    result = chain.block()
    pot += mul_ratio(result.minted, PARAMS.availability_share)
    end = chain.height
    weights = [
        (bob_offer, 8 * (end - max(bob.credited_until, bob.start))),
        (carol_offer, 2 * (end - max(carol.credited_until, carol.start))),
    ]
    expected, dust = pro_rata(pot, sorted(weights))
    paid = dict(result.mining_rewards)
    owner = {bob_offer: addr("bob"), carol_offer: addr("carol")}
    assert {owner[o]: amount for o, amount in expected} == paid
    assert sum(paid.values()) + dust == pot and chain.state.vars["availability_pool"] == 0


def test_challenging_oneself_from_a_second_key_gains_nothing() -> None:
    honest, offer_a = offer_chain()
    selfish, offer_b = offer_chain()
    selfish.block([selfish.tx("bob", Transfer(addr("erin"), 10_000))])
    honest.block([honest.tx("bob", Transfer(addr("erin"), 10_000))])
    # erin is bob's second key: it challenges bob's offer, bob's node answers.
    selfish.block([selfish.tx("erin", OfferChallenge(offer_b))])
    selfish.block([selfish.tx("bob", answer_of(selfish, offer_b))])
    for chain in (honest, selfish):
        to_epoch_end(chain)
        chain.block()
    honest_total = honest.balance("bob") + honest.balance("erin")
    selfish_total = selfish.balance("bob") + selfish.balance("erin")
    assert selfish_total < honest_total  # the same rewards, minus two fees
    assert offer_a == offer_b


# --- takes -------------------------------------------------------------------------------------------
def test_a_take_accepted_becomes_an_escrow_settled_at_the_posted_price() -> None:
    chain, offer = offer_chain()
    raw = chain.tx("alice", OfferTake(offer, 2, 100))
    chain.block([raw])
    take_id = decode_tx(raw).hash
    chain.block([chain.tx("bob", OfferAccept(offer))])
    escrow = chain.state.escrows[take_id]
    assert (escrow.price_per_gpu_second, escrow.max_cost, escrow.provider) == (10, 2_000, addr("bob"))
    assert chain.state.offers[offer].collateral == 100_000 - escrow.collateral
    receipt = UsageReceipt(CHAIN_ID, take_id, OUTCOME_COMPLETED, 150_000, 0, bytes(32), "")
    bob = chain.balance("bob")
    chain.block([chain.tx("alice", Settle(receipt, receipt.sign(key("bob")), receipt.sign(key("alice"))))])
    pay = 150 * 10
    assert chain.balance("bob") - bob == pay - mul_ratio(pay, PARAMS.protocol_fee_share) + escrow.collateral
    assert chain.state.closed_contracts[take_id] == "settled"


def test_a_take_the_provider_lets_pass_is_refunded_with_a_slash_and_forfeits_the_epoch() -> None:
    chain, offer = offer_chain()
    alice = chain.balance("alice")
    chain.block([chain.tx("alice", OfferTake(offer, 2, 100))])
    deadline = chain.state.takes[offer].deadline
    assert_block_rejected(chain, [chain.tx("alice", OfferRefused(offer))], TakeWindowOpen, 2330)
    chain.forget_reserved_nonces()
    chain.advance_to(deadline)
    assert_block_rejected(chain, [chain.tx("bob", OfferAccept(offer))], TakeWindowClosed, 2331)
    chain.forget_reserved_nonces()
    result = chain.block([chain.tx("alice", OfferRefused(offer))])
    slashed = mul_ratio(100_000, PARAMS.availability_slash_share)
    assert chain.balance("alice") == alice - 2 * FEE + slashed
    assert offer not in chain.state.takes
    assert addr("bob") not in epoch_rewards_after(chain, result)


def test_takes_by_the_provider_or_of_more_gpus_than_stand_are_refused() -> None:
    chain, offer = offer_chain(gpus=2, collateral=2_000)
    assert_block_rejected(chain, [chain.tx("bob", OfferTake(offer, 1, 10))], OwnOffer, 2327)
    chain.forget_reserved_nonces()
    assert_block_rejected(chain, [chain.tx("alice", OfferTake(offer, 3, 10))], TooManyGpus, 2335)
    chain.forget_reserved_nonces()
    chain.block([chain.tx("alice", OfferTake(offer, 1, 10))])
    assert_block_rejected(chain, [chain.tx("dave", OfferAccept(offer))], NotAParty, 2024)


def test_offers_and_takes_round_trip_through_a_snapshot() -> None:
    chain, offer = offer_chain()
    chain.block([chain.tx("dave", OfferChallenge(offer)), chain.tx("alice", OfferTake(offer, 1, 10))])
    restored = decode_snapshot(encode_snapshot(chain.state))
    assert restored.state_hash() == chain.state.state_hash()
    assert (
        restored.offers[offer] == chain.state.offers[offer]
        and restored.takes[offer] == chain.state.takes[offer]
    )


def test_a_take_whose_escrow_would_end_past_the_last_encodable_height_cannot_be_accepted() -> None:
    # Unreachable with real balances (the cost would pass the supply); the guard keeps it typed.
    from protocol.ledger.errors import AmountOverflow
    from protocol.ledger.liquidity_state import Take
    from protocol.units import MAX_AMOUNT

    chain, offer = offer_chain()
    huge = Take(
        bytes(32), addr("alice"), key("alice").public_key.raw, 1, MAX_AMOUNT - 2, 1, chain.height + 3, 1
    )
    chain.state.takes.set(offer, huge)
    assert_block_rejected(chain, [chain.tx("bob", OfferAccept(offer))], AmountOverflow, 2009)
