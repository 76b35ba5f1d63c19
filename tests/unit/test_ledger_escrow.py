"""Escrow of job contracts: open (maximum cost + collateral locked), settle against a receipt
signed by both parties, refund after the deadline with the collateral slashed; every failure."""

from __future__ import annotations

from protocol.economics import mul_ratio
from protocol.ledger.errors import (
    BadContractSignature,
    ContractClosed,
    ContractExists,
    ContractExpired,
    InsufficientFunds,
    NotAParty,
    RefundTooEarly,
    UnknownContract,
    WrongChainId,
)
from protocol.ledger.tx import OpenEscrow, Refund, Settle
from protocol.units import percent

from .ledger_helpers import (
    OTHER_CHAIN_ID,
    TEST_PARAMS,
    Chain,
    addr,
    assert_block_rejected,
    make_genesis,
    make_terms,
    settle_msg,
    sign_contract,
)

# price 7 x 100 GPU-seconds: the requester locks 700; the provider 300 of collateral.
TERMS = make_terms("alice", "bob", price=7, max_gpu_seconds=100, collateral=300, deadline=10)
HASH = TERMS.contract_hash()


def opened() -> Chain:
    """A chain where Alice's contract with Bob (``TERMS``) is escrowed at height 1."""
    chain = Chain()
    chain.block([chain.tx("alice", OpenEscrow(sign_contract(TERMS)))])
    return chain


def test_open_locks_the_maximum_cost_and_the_collateral() -> None:
    chain = Chain()
    alice, bob = chain.balance("alice"), chain.balance("bob")
    chain.block([chain.tx("alice", OpenEscrow(sign_contract(TERMS)))])
    assert chain.balance("alice") == alice - 700 - chain.params.min_fee
    assert chain.balance("bob") == bob - 300
    assert chain.state.vars["total_escrowed"] == 1_000
    escrow = chain.state.escrows[HASH]
    assert (escrow.max_cost, escrow.collateral, escrow.opened_height) == (700, 300, 1)
    assert (escrow.requester, escrow.provider) == (addr("alice"), addr("bob"))


def test_settle_pays_metered_burns_the_protocol_fee_refunds_the_rest_returns_collateral() -> None:
    chain = opened()
    alice, bob = chain.balance("alice"), chain.balance("bob")
    burned = chain.state.vars["burned"]
    result = chain.block([chain.tx("bob", settle_msg(TERMS, 55))])
    # 55 GPU-seconds x 7 = 385; 2% protocol fee = 7.7 -> 7 burned; the provider gets 378 + 300.
    assert chain.balance("bob") == bob + 385 - 7 + 300 - chain.params.min_fee
    assert chain.balance("alice") == alice + 700 - 385
    fee_burn = mul_ratio(result.fees, TEST_PARAMS.fee_burn_share)
    assert chain.state.vars["burned"] - burned == 7 + fee_burn
    assert chain.state.vars["total_escrowed"] == 0
    assert HASH not in chain.state.escrows
    assert chain.state.closed_contracts[HASH] == "settled"
    assert chain.state.epoch_work[addr("bob")] == 7  # the provider's reward weight: the fee burned


def test_settle_never_pays_more_than_the_maximum_cost() -> None:
    chain = opened()
    alice, bob = chain.balance("alice"), chain.balance("bob")
    chain.block([chain.tx("alice", settle_msg(TERMS, 10_000))])
    protocol_fee = mul_ratio(700, percent(2))
    assert chain.balance("bob") == bob + 700 - protocol_fee + 300
    assert chain.balance("alice") == alice - chain.params.min_fee  # nothing left to refund
    assert chain.state.epoch_work[addr("bob")] == protocol_fee  # weighs the capped pay's burn


def test_settle_with_zero_usage_refunds_everything() -> None:
    chain = opened()
    alice, bob = chain.balance("alice"), chain.balance("bob")
    chain.block([chain.tx("alice", settle_msg(TERMS, 0))])
    assert chain.balance("alice") == alice + 700 - chain.params.min_fee
    assert chain.balance("bob") == bob + 300


def test_refund_after_the_deadline_slashes_the_governed_share_of_the_collateral() -> None:
    chain = opened()
    chain.advance_to(TERMS.deadline_height)
    alice, bob = chain.balance("alice"), chain.balance("bob")
    burned = chain.state.vars["burned"]
    result = chain.block([chain.tx("alice", Refund(HASH))])
    slashed = mul_ratio(300, TEST_PARAMS.collateral_slash_share)
    assert slashed == 150
    assert chain.balance("alice") == alice + 700 - chain.params.min_fee
    assert chain.balance("bob") == bob + 300 - slashed
    assert chain.state.vars["burned"] - burned == slashed + mul_ratio(result.fees, TEST_PARAMS.fee_burn_share)
    assert chain.state.closed_contracts[HASH] == "refunded"


def test_collateral_slash_share_is_a_parameter() -> None:
    chain = Chain(make_genesis(TEST_PARAMS.with_value("collateral_slash_share", percent(10))))
    chain.block([chain.tx("alice", OpenEscrow(sign_contract(TERMS)))])
    chain.advance_to(TERMS.deadline_height)
    bob = chain.balance("bob")
    chain.block([chain.tx("alice", Refund(HASH))])
    assert chain.balance("bob") == bob + 270


# --- failures ----------------------------------------------------------------------------------


def test_open_with_a_forged_provider_signature() -> None:
    chain = Chain()
    forged = sign_contract(TERMS, provider_signer="mallory")
    raw = chain.tx("alice", OpenEscrow(forged))
    assert_block_rejected(chain, [raw], BadContractSignature, 2026, tx_index=0)


def test_open_with_a_forged_requester_signature() -> None:
    chain = Chain()
    raw = chain.tx("alice", OpenEscrow(sign_contract(TERMS, requester_signer="mallory")))
    assert_block_rejected(chain, [raw], BadContractSignature, 2026)


def test_open_by_someone_other_than_the_requester() -> None:
    chain = Chain()
    raw = chain.tx("bob", OpenEscrow(sign_contract(TERMS)))
    assert_block_rejected(chain, [raw], NotAParty, 2024)


def test_open_a_contract_of_another_chain() -> None:
    chain = Chain()
    terms = make_terms(chain_id=OTHER_CHAIN_ID)
    raw = chain.tx("alice", OpenEscrow(sign_contract(terms)))
    assert_block_rejected(chain, [raw], WrongChainId, 2002)


def test_open_at_or_after_the_deadline() -> None:
    chain = Chain()
    chain.advance_to(TERMS.deadline_height - 1)  # the next block is at the deadline
    raw = chain.tx("alice", OpenEscrow(sign_contract(TERMS)))
    assert_block_rejected(chain, [raw], ContractExpired, 2025)


def test_open_without_the_requesters_funds() -> None:
    terms = make_terms(price=10**6, max_gpu_seconds=10**6)
    chain = Chain()
    raw = chain.tx("alice", OpenEscrow(sign_contract(terms)))
    assert_block_rejected(chain, [raw], InsufficientFunds, 2006)


def test_open_without_the_providers_collateral() -> None:
    chain = Chain()
    terms = make_terms(collateral=chain.balance("bob") + 1)
    raw = chain.tx("alice", OpenEscrow(sign_contract(terms)))
    exc = assert_block_rejected(chain, [raw], InsufficientFunds, 2006)
    assert "collateral" in exc.message


def test_open_the_same_contract_twice() -> None:
    chain = opened()
    raw = chain.tx("alice", OpenEscrow(sign_contract(TERMS)))
    assert_block_rejected(chain, [raw], ContractExists, 2021)


def test_a_settled_contract_can_never_be_escrowed_again() -> None:
    chain = opened()
    chain.block([chain.tx("bob", settle_msg(TERMS, 1))])
    assert_block_rejected(chain, [chain.tx("alice", OpenEscrow(sign_contract(TERMS)))], ContractExists, 2021)


def test_settle_an_unknown_contract() -> None:
    chain = Chain()
    assert_block_rejected(chain, [chain.tx("bob", settle_msg(TERMS, 1))], UnknownContract, 2020)


def test_settle_twice() -> None:
    chain = opened()
    chain.block([chain.tx("bob", settle_msg(TERMS, 5))])
    assert_block_rejected(chain, [chain.tx("bob", settle_msg(TERMS, 5))], ContractClosed, 2022)


def test_double_settle_within_one_block_rolls_back_the_first() -> None:
    chain = opened()
    txs = [chain.tx("bob", settle_msg(TERMS, 5)), chain.tx("alice", settle_msg(TERMS, 6))]
    assert_block_rejected(chain, txs, ContractClosed, 2022, tx_index=1)
    assert HASH in chain.state.escrows


def test_settle_by_a_third_party() -> None:
    chain = opened()
    assert_block_rejected(chain, [chain.tx("carol", settle_msg(TERMS, 5))], NotAParty, 2024)


def test_settle_with_a_forged_provider_receipt_signature() -> None:
    chain = opened()
    msg = settle_msg(TERMS, 5, provider_signer="alice")
    assert_block_rejected(chain, [chain.tx("alice", msg)], BadContractSignature, 2026)


def test_settle_without_the_requesters_countersignature() -> None:
    chain = opened()
    msg = settle_msg(TERMS, 5, requester_signer="bob")
    assert_block_rejected(chain, [chain.tx("bob", msg)], BadContractSignature, 2026)


def test_settle_with_signatures_over_another_receipt() -> None:
    chain = opened()
    honest = settle_msg(TERMS, 5)
    inflated = settle_msg(TERMS, 100)
    swapped = Settle(inflated.receipt, honest.provider_sig, honest.requester_sig)
    assert_block_rejected(chain, [chain.tx("bob", swapped)], BadContractSignature, 2026)


def test_settle_with_a_receipt_of_another_chain() -> None:
    chain = opened()
    msg = settle_msg(TERMS, 5, chain_id=OTHER_CHAIN_ID)
    assert_block_rejected(chain, [chain.tx("bob", msg)], WrongChainId, 2002)


def test_refund_before_or_at_the_deadline() -> None:
    chain = opened()
    chain.advance_to(TERMS.deadline_height - 1)  # the next block is at the deadline: too early
    assert_block_rejected(chain, [chain.tx("alice", Refund(HASH))], RefundTooEarly, 2023)


def test_refund_an_unknown_contract() -> None:
    chain = Chain()
    assert_block_rejected(chain, [chain.tx("alice", Refund(bytes(32)))], UnknownContract, 2020)


def test_refund_by_the_provider() -> None:
    chain = opened()
    chain.advance_to(TERMS.deadline_height)
    assert_block_rejected(chain, [chain.tx("bob", Refund(HASH))], NotAParty, 2024)


def test_refund_after_settle_and_settle_after_refund() -> None:
    chain = opened()
    chain.block([chain.tx("bob", settle_msg(TERMS, 5))])
    chain.advance_to(TERMS.deadline_height)
    assert_block_rejected(chain, [chain.tx("alice", Refund(HASH))], ContractClosed, 2022)

    other = make_terms(salt=b"salt-2", deadline=TERMS.deadline_height + 2)
    chain.block([chain.tx("alice", OpenEscrow(sign_contract(other)))])
    chain.advance_to(other.deadline_height)
    chain.block([chain.tx("alice", Refund(other.contract_hash()))])
    assert_block_rejected(chain, [chain.tx("bob", settle_msg(other, 1))], ContractClosed, 2022)
    assert_block_rejected(chain, [chain.tx("alice", Refund(other.contract_hash()))], ContractClosed, 2022)


def test_settle_after_the_deadline_is_still_allowed_while_not_refunded() -> None:
    chain = opened()
    chain.advance_to(TERMS.deadline_height + 5)
    chain.block([chain.tx("bob", settle_msg(TERMS, 5))])
    assert chain.state.closed_contracts[HASH] == "settled"
