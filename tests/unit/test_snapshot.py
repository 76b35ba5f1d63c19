"""Ledger snapshots restore the exact state; corrupt ones are refused with a typed error."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.contracts import ContractTerms, SignedContract
from protocol.crypto import PrivateKey
from protocol.encoding import decode, encode
from protocol.ledger.block import BlockContext, apply_block
from protocol.ledger.genesis import dev_genesis, genesis_state
from protocol.ledger.snapshot import SnapshotError, decode_snapshot, encode_snapshot
from protocol.ledger.state import LedgerState
from protocol.ledger.tx import (
    Delegate,
    GovPropose,
    GovVote,
    OpenEscrow,
    Redelegate,
    Transfer,
    Undelegate,
    sign_tx,
)
from protocol.units import DCT, percent

CHAIN = "dcent-snap"
VALIDATOR = PrivateKey.from_label("snap-validator")
ALICE = PrivateKey.from_label("snap-alice")
BOB = PrivateKey.from_label("snap-bob")
CAROL = PrivateKey.from_label("snap-carol")


def _busy_state() -> LedgerState:
    """A state with something in every section: escrow, unbonding, proposal, votes."""
    state = genesis_state(
        dev_genesis(
            CHAIN,
            [(VALIDATOR.public_key.raw, 100 * DCT), (CAROL.public_key.raw, 100 * DCT)],
            [
                (ALICE.address.raw, 1_000 * DCT),
                (BOB.address.raw, 1_000 * DCT),
                (VALIDATOR.address.raw, 50 * DCT),
            ],
        )
    )
    fee = state.params.min_fee
    terms = ContractTerms(
        chain_id=CHAIN,
        requester=ALICE.public_key.raw,
        provider=BOB.public_key.raw,
        job_hash=hashlib.sha256(b"job").digest(),
        gpu_uuids=("GPU-0",),
        price_per_gpu_second=1_000,
        max_gpu_seconds=100,
        collateral=10 * DCT,
        deadline_height=50,
        salt=b"s",
    )
    txs = [
        sign_tx(ALICE, CHAIN, 1, fee, Transfer(BOB.address.raw, 5 * DCT)),
        sign_tx(BOB, CHAIN, 1, fee, Delegate(VALIDATOR.address.raw, 20 * DCT)),
        sign_tx(BOB, CHAIN, 2, fee, Undelegate(VALIDATOR.address.raw, 5 * DCT)),
        sign_tx(BOB, CHAIN, 3, fee, Redelegate(VALIDATOR.address.raw, CAROL.address.raw, 5 * DCT)),
        sign_tx(ALICE, CHAIN, 2, fee, OpenEscrow(SignedContract(terms, terms.sign(ALICE), terms.sign(BOB)))),
        sign_tx(VALIDATOR, CHAIN, 1, fee, GovPropose("min_fee", 20_000, 10 * DCT)),
        sign_tx(VALIDATOR, CHAIN, 2, fee, GovVote(1, "yes")),
    ]
    # CAROL signed the parent and VALIDATOR did not: a miss, and rewards for CAROL.
    ctx = BlockContext(
        1, VALIDATOR.address.raw, signers=(CAROL.address.raw,), voters=(VALIDATOR.address.raw,)
    )
    apply_block(state, ctx, txs)
    assert state.escrows and state.unbonding and state.proposals and state.votes
    assert state.redelegations and state.delegations and state.signing[VALIDATOR.address.raw].missed
    return state


def test_snapshot_roundtrip_gives_the_same_state_hash() -> None:
    state = _busy_state()
    restored = decode_snapshot(encode_snapshot(state))
    assert restored.state_hash() == state.state_hash()
    assert restored.height == state.height == 1
    # The restored replica keeps working identically.
    block = [sign_tx(ALICE, CHAIN, 3, state.params.min_fee, Transfer(BOB.address.raw, 1))]
    a = apply_block(state, BlockContext(2, VALIDATOR.address.raw), block)
    b = apply_block(restored, BlockContext(2, VALIDATOR.address.raw), block)
    assert a.state_hash == b.state_hash


def test_garbage_is_refused() -> None:
    with pytest.raises(SnapshotError) as err:
        decode_snapshot(b"\x00garbage")
    assert err.value.code == 2098


def test_snapshot_with_tampered_balance_breaks_the_invariant_and_is_refused() -> None:
    state = _busy_state()
    state.credit(ALICE.address.raw, 1)  # money from nowhere, outside any handler
    with pytest.raises(SnapshotError, match="supply"):
        decode_snapshot(encode_snapshot(state))


def test_unknown_version_is_refused() -> None:
    with pytest.raises(SnapshotError, match="version"):
        decode_snapshot(encode({"version": 99}))


def test_params_survive_the_roundtrip() -> None:
    state = _busy_state()
    state.set_params(state.params.with_value("fee_burn_share", percent(80)))
    assert decode_snapshot(encode_snapshot(state)).params.fee_burn_share == percent(80)


SECTIONS = (
    "vars",
    "accounts",
    "validators",
    "delegations",
    "unbonding",
    "redelegations",
    "signing",
    "escrows",
    "proposals",
    "votes",
)
ODD_VALUES = ([], [1], [b""], ["x"], -1, 2**64 - 1, b"\x00" * 20, "text", True, {"a": 1})


@pytest.mark.parametrize("section", SECTIONS)
@pytest.mark.parametrize("damage", ["empty row", "short row", "long row", "odd cell", "row not a list"])
def test_a_malformed_row_is_a_snapshot_error_never_another_exception(section: str, damage: str) -> None:
    # Was: an empty escrow row raised IndexError, and the node exited instead of replaying.
    doc = decode(encode_snapshot(_busy_state()))
    rows = doc[section]
    assert rows, f"the busy state has rows in {section}"
    row = list(rows[0])
    if damage == "empty row":
        row = []
    elif damage == "short row":
        row = row[:-1]
    elif damage == "long row":
        row = [*row, 0]
    elif damage == "odd cell":
        row[0] = {"a": 1}
    else:
        row = 7  # type: ignore[assignment]
    doc[section] = [row, *rows[1:]]
    with pytest.raises(SnapshotError):
        decode_snapshot(encode(doc))


@settings(max_examples=200, deadline=None)
@given(section=st.sampled_from(SECTIONS), cell=st.integers(0, 20), value=st.sampled_from(ODD_VALUES))
def test_any_odd_cell_is_refused_or_restores_a_state_that_hashes(
    section: str, cell: int, value: object
) -> None:
    doc = decode(encode_snapshot(_busy_state()))
    row = list(doc[section][0])
    row[cell % len(row)] = value
    doc[section] = [row, *doc[section][1:]]
    try:
        restored = decode_snapshot(encode(doc))
    except SnapshotError:
        return
    restored.state_hash()
    restored.check_invariants()
