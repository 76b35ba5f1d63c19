"""Transfers, fees and the ante checks every transaction passes; each failure is typed, coded, and
leaves the state hash unchanged."""

from __future__ import annotations

import hashlib

import pytest

from protocol.economics import mul_ratio
from protocol.ledger.block import apply_block, check_tx
from protocol.ledger.errors import (
    BadNonce,
    BadSignature,
    FeeTooLow,
    InsufficientFunds,
    InvalidAmount,
    MalformedTx,
    UnknownTxKind,
    WrongChainId,
)
from protocol.ledger.tx import Transfer, decode_tx
from protocol.units import percent

from .ledger_helpers import (
    OTHER_CHAIN_ID,
    TEST_PARAMS,
    Chain,
    addr,
    assert_block_rejected,
    assert_rejected,
    flip_signature_bit,
    make_genesis,
    replace_in_envelope,
    sign_raw_body,
    tx_body,
)


def test_transfer_moves_the_amount_and_charges_the_fee() -> None:
    chain = Chain()
    alice, bob = chain.balance("alice"), chain.balance("bob")
    result = chain.block([chain.tx("alice", Transfer(addr("bob"), 12_345), fee=25)])
    assert chain.balance("alice") == alice - 12_345 - 25
    assert chain.balance("bob") == bob + 12_345
    assert chain.nonce("alice") == 1
    assert result.fees == 25


def test_transfer_to_a_new_address_creates_the_account() -> None:
    chain = Chain()
    chain.block([chain.tx("alice", Transfer(addr("mallory"), 777))])
    assert chain.balance("mallory") == 777
    assert chain.nonce("mallory") == 0


def test_several_transactions_of_one_sender_in_one_block_take_consecutive_nonces() -> None:
    chain = Chain()
    txs = [chain.tx("alice", Transfer(addr("bob"), 1)) for _ in range(3)]
    result = chain.block(txs)
    assert chain.nonce("alice") == 3
    assert result.tx_hashes == tuple(hashlib.sha256(raw).digest() for raw in txs)


def test_every_transaction_pays_a_fee_and_the_governed_share_is_burned() -> None:
    chain = Chain(make_genesis(TEST_PARAMS.with_value("fee_burn_share", percent(30))))
    txs = [
        chain.tx("alice", Transfer(addr("bob"), 1), fee=100),
        chain.tx("bob", Transfer(addr("alice"), 1), fee=57),
    ]
    burned_before = chain.state.vars["burned"]
    result = chain.block(txs)
    # 30% of 157 is 47.1: truncated to 47. Nothing else burns in this block.
    assert result.fees == 157
    assert result.burned == 47 == mul_ratio(157, percent(30))
    assert chain.state.vars["burned"] == burned_before + 47
    assert chain.state.vars["fee_pool"] == 0  # the rest went to the validators at end-block


def test_a_block_without_transactions_collects_and_burns_no_fees() -> None:
    chain = Chain()
    result = chain.block()
    assert result.fees == 0
    assert result.burned == 0


# --- failures ----------------------------------------------------------------------------------


def test_insufficient_funds_for_the_amount() -> None:
    chain = Chain()
    too_much = chain.balance("alice") - chain.params.min_fee + 1
    exc = assert_block_rejected(
        chain, [chain.tx("alice", Transfer(addr("bob"), too_much))], InsufficientFunds, 2006, tx_index=0
    )
    assert "transfer" in exc.message


def test_insufficient_funds_for_the_fee_of_an_unknown_account() -> None:
    chain = Chain()
    assert_block_rejected(
        chain, [chain.tx("mallory", Transfer(addr("bob"), 1))], InsufficientFunds, 2006, tx_index=0
    )


def test_exactly_the_whole_balance_can_be_spent() -> None:
    chain = Chain(make_genesis(balances=[("alice", 1_000)]))
    chain.block([chain.tx("alice", Transfer(addr("bob"), 1_000 - chain.params.min_fee))])
    assert chain.balance("alice") == 0


def test_bad_nonce_gap() -> None:
    chain = Chain()
    assert_block_rejected(chain, [chain.tx("alice", Transfer(addr("bob"), 1), nonce=2)], BadNonce, 2004)


def test_bad_nonce_replay_of_an_included_transaction() -> None:
    chain = Chain()
    raw = chain.tx("alice", Transfer(addr("bob"), 1))
    chain.block([raw])
    assert_block_rejected(chain, [raw], BadNonce, 2004, tx_index=0)


def test_bad_nonce_duplicate_in_one_block_rolls_back_the_first_copy() -> None:
    chain = Chain()
    raw = chain.tx("alice", Transfer(addr("bob"), 1))
    assert_block_rejected(chain, [raw, raw], BadNonce, 2004, tx_index=1)
    assert chain.nonce("alice") == 0


def test_bad_signature_flipped_bit() -> None:
    chain = Chain()
    raw = flip_signature_bit(chain.tx("alice", Transfer(addr("bob"), 1)))
    assert_block_rejected(chain, [raw], BadSignature, 2003, tx_index=0)


def test_bad_signature_by_another_key_than_the_envelope_names() -> None:
    chain = Chain()
    alices = chain.tx("alice", Transfer(addr("carol"), 1))
    bobs_key = decode_tx(chain.tx("bob", Transfer(addr("carol"), 1))).public_key
    # Bob's public key on Alice's signature: the sender becomes Bob, and the signature fails.
    assert_block_rejected(chain, [replace_in_envelope(alices, public_key=bobs_key)], BadSignature, 2003)


def test_wrong_chain_id() -> None:
    chain = Chain()
    raw = chain.tx("alice", Transfer(addr("bob"), 1), chain_id=OTHER_CHAIN_ID)
    assert_block_rejected(chain, [raw], WrongChainId, 2002, tx_index=0)


def test_fee_below_the_minimum() -> None:
    chain = Chain()
    raw = chain.tx("alice", Transfer(addr("bob"), 1), fee=chain.params.min_fee - 1)
    assert_block_rejected(chain, [raw], FeeTooLow, 2005)


def test_malformed_bytes_in_a_block() -> None:
    chain = Chain()
    assert_block_rejected(chain, [b"\x93\x01\x02"], MalformedTx, 2001, tx_index=0)


def test_unknown_transaction_kind_is_malformed_with_its_own_code() -> None:
    chain = Chain()
    raw = sign_raw_body("alice", tx_body("mint", {"amount": 10**9}))
    exc = assert_block_rejected(chain, [raw], UnknownTxKind, 2008, tx_index=0)
    assert isinstance(exc, MalformedTx)


def test_invalid_amount_is_refused_when_built() -> None:
    with pytest.raises(InvalidAmount) as caught:
        Transfer(addr("bob"), 0)
    assert caught.value.code == 2007
    with pytest.raises(InvalidAmount):
        Transfer(addr("bob"), 2**63)


def test_invalid_amount_on_the_wire_is_a_malformed_transaction() -> None:
    # Record decoding turns a message's own validation error into a decode error, so on the wire
    # a zero amount surfaces as MalformedTx (2001) naming the field, not as InvalidAmount (2007).
    chain = Chain()
    raw = sign_raw_body("alice", tx_body("transfer", {"amount": 0, "to": addr("bob")}))
    exc = assert_block_rejected(chain, [raw], MalformedTx, 2001)
    assert "transfer.amount" in exc.message


def test_a_failing_transaction_rolls_back_the_valid_ones_before_it() -> None:
    chain = Chain()
    txs = [
        chain.tx("alice", Transfer(addr("bob"), 5)),
        chain.tx("bob", Transfer(addr("carol"), 5)),
        chain.tx("carol", Transfer(addr("dave"), chain.balance("carol") * 2)),
    ]
    assert_block_rejected(chain, txs, InsufficientFunds, 2006, tx_index=2)
    assert (chain.nonce("alice"), chain.nonce("bob")) == (0, 0)
    assert chain.height == 0


def test_check_tx_reports_the_same_error_and_changes_nothing() -> None:
    chain = Chain()
    good = chain.tx("alice", Transfer(addr("bob"), 1))
    before = chain.state.state_hash()
    assert check_tx(chain.state, good).sender == addr("alice")
    assert chain.state.state_hash() == before
    assert_rejected(chain.state, lambda: check_tx(chain.state, flip_signature_bit(good)), BadSignature, 2003)
    assert_rejected(chain.state, lambda: check_tx(chain.state, b""), MalformedTx, 2001)


def test_a_block_may_carry_transactions_already_decoded() -> None:
    chain = Chain()
    tx = decode_tx(chain.tx("alice", Transfer(addr("bob"), 3)))
    apply_block(chain.state, chain.context(), [tx])
    assert chain.nonce("alice") == 1
