"""The provider's unilateral path: claim its own signed receipt, finalize after the dispute
window (paid exactly as a two-signature settle), or the requester disputes within the window (the
claimed pay is burned); settle supersedes a claim, refund is refused while one is pending.

``Chain.block`` checks ``state.check_invariants()`` (the supply equation) after every block, and
``assert_block_rejected`` checks that a refused block leaves the state hash unchanged.
"""

from __future__ import annotations

import dataclasses

import pytest

from protocol.economics import mul_ratio
from protocol.ledger.block import check_tx
from protocol.ledger.errors import (
    BadContractSignature,
    ClaimPending,
    ContractClosed,
    DisputeWindowClosed,
    DisputeWindowOpen,
    InvalidParamValue,
    InvariantError,
    LedgerError,
    MalformedTx,
    NoClaim,
    NotAParty,
    RefundBlockedByClaim,
    UnknownContract,
    WrongChainId,
)
from protocol.ledger.escrow import claim_status
from protocol.ledger.params import Params
from protocol.ledger.snapshot import SnapshotError, decode_snapshot, encode_snapshot
from protocol.ledger.tx import (
    EscrowDispute,
    EscrowFinalize,
    GovPropose,
    GovVote,
    OpenEscrow,
    Refund,
    decode_tx,
)

from .ledger_helpers import (
    OTHER_CHAIN_ID,
    TEST_PARAMS,
    VALIDATOR_LABELS,
    Chain,
    addr,
    assert_block_rejected,
    claim_msg,
    make_genesis,
    make_receipt,
    make_terms,
    settle_msg,
    sign_contract,
)

# price 7 x 100 GPU-seconds: the requester locks 700; the provider 300 of collateral.
TERMS = make_terms("alice", "bob", price=7, max_gpu_seconds=100, collateral=300, deadline=10)
HASH = TERMS.contract_hash()
WINDOW = TEST_PARAMS.dispute_window_blocks
CLAIM_HEIGHT = 2
#: The last height at which the requester may dispute a claim made at CLAIM_HEIGHT.
DISPUTE_UNTIL = CLAIM_HEIGHT + WINDOW
# 55 GPU-seconds x 7 = 385; 2% protocol fee = 7.7 -> 7 burned.
SECONDS, PAY, PROTOCOL_FEE = 55, 385, 7


def opened(genesis_params: Params = TEST_PARAMS) -> Chain:
    """Alice's contract with Bob (``TERMS``) escrowed at height 1."""
    chain = Chain(make_genesis(genesis_params))
    chain.block([chain.tx("alice", OpenEscrow(sign_contract(TERMS)))])
    return chain


def claimed(gpu_seconds: int = SECONDS) -> Chain:
    """``opened()`` plus Bob's claim of ``gpu_seconds`` recorded at CLAIM_HEIGHT."""
    chain = opened()
    chain.block([chain.tx("bob", claim_msg(TERMS, gpu_seconds))])
    assert chain.height == CLAIM_HEIGHT
    return chain


def fee_burn(fees: int) -> int:
    return mul_ratio(fees, TEST_PARAMS.fee_burn_share)


# --- claim -------------------------------------------------------------------------------------


def test_claim_records_the_receipt_and_pays_nothing() -> None:
    chain = opened()
    alice, bob = chain.balance("alice"), chain.balance("bob")
    msg = claim_msg(TERMS, SECONDS)
    chain.block([chain.tx("bob", msg)])
    escrow = chain.state.escrows[HASH]
    assert escrow.has_claim
    assert escrow.claim == msg.receipt.encode()
    assert escrow.claim_provider_sig == msg.provider_sig
    assert escrow.claimed_height == CLAIM_HEIGHT
    assert chain.balance("bob") == bob - chain.params.min_fee  # only the transaction fee
    assert chain.balance("alice") == alice
    assert chain.state.vars["total_escrowed"] == 700 + 300
    assert addr("bob") not in chain.state.epoch_work
    chain.state.check_invariants()


def test_claim_status_reports_the_window_as_finalize_and_dispute_see_it() -> None:
    chain = opened()
    assert claim_status(chain.state, HASH, 2) is None  # open, but nothing claimed
    assert claim_status(chain.state, bytes(32), 2) is None  # no such escrow
    msg = claim_msg(TERMS, SECONDS)
    chain.block([chain.tx("bob", msg)])
    status = claim_status(chain.state, HASH, chain.height + 1)
    assert status is not None
    assert (status.contract_hash, status.receipt, status.provider_sig) == (
        HASH,
        msg.receipt,
        msg.provider_sig,
    )
    assert (status.claimed_height, status.dispute_until, status.finalizable_from) == (
        CLAIM_HEIGHT,
        DISPUTE_UNTIL,
        DISPUTE_UNTIL + 1,
    )
    assert status.pay == PAY
    # At every next height, window_over says exactly whether a finalize applies and a dispute not.
    while chain.height <= DISPUTE_UNTIL + 1:
        status = claim_status(chain.state, HASH, chain.height + 1)
        assert status is not None
        finalize = chain.tx("bob", EscrowFinalize(HASH))
        dispute = chain.tx("alice", EscrowDispute(HASH))
        chain.forget_reserved_nonces()
        assert _applies(chain, finalize) is status.window_over
        assert _applies(chain, dispute) is not status.window_over
        chain.block()
    finished = claim_status(chain.state, HASH, chain.height + 1)
    assert finished is not None and finished.window_over


def _applies(chain: Chain, raw: bytes) -> bool:
    try:
        check_tx(chain.state, raw)
    except LedgerError:
        return False
    return True


def test_claim_status_caps_the_pay_like_settlement() -> None:
    chain = claimed(gpu_seconds=10_000)
    status = claim_status(chain.state, HASH, chain.height + 1)
    assert status is not None and status.pay == 700


def test_only_the_provider_claims() -> None:
    chain = opened()
    for label in ("alice", "carol"):
        assert_block_rejected(chain, [chain.tx(label, claim_msg(TERMS, SECONDS))], NotAParty, 2024)


def test_claim_with_a_forged_provider_signature() -> None:
    chain = opened()
    for forger in ("mallory", "alice"):
        msg = claim_msg(TERMS, SECONDS, provider_signer=forger)
        assert_block_rejected(chain, [chain.tx("bob", msg)], BadContractSignature, 2026)


def test_claim_with_the_signature_of_another_receipt() -> None:
    chain = opened()
    honest = claim_msg(TERMS, SECONDS)
    inflated = dataclasses.replace(honest, receipt=make_receipt(TERMS, 100))
    assert_block_rejected(chain, [chain.tx("bob", inflated)], BadContractSignature, 2026)


def test_claim_with_a_receipt_of_another_chain() -> None:
    chain = opened()
    msg = claim_msg(TERMS, SECONDS, chain_id=OTHER_CHAIN_ID)
    assert_block_rejected(chain, [chain.tx("bob", msg)], WrongChainId, 2002)


def test_claim_on_an_unknown_or_closed_contract() -> None:
    chain = Chain()
    assert_block_rejected(chain, [chain.tx("bob", claim_msg(TERMS, SECONDS))], UnknownContract, 2020)
    chain = opened()
    chain.block([chain.tx("bob", settle_msg(TERMS, SECONDS))])
    assert_block_rejected(chain, [chain.tx("bob", claim_msg(TERMS, SECONDS))], ContractClosed, 2022)


def test_a_second_claim_is_refused() -> None:
    chain = claimed()
    before = chain.state.escrows[HASH]
    assert_block_rejected(chain, [chain.tx("bob", claim_msg(TERMS, 100))], ClaimPending, 2050)
    assert chain.state.escrows[HASH] == before


def test_two_claims_in_one_block_roll_back_the_first() -> None:
    chain = opened()
    txs = [chain.tx("bob", claim_msg(TERMS, SECONDS)), chain.tx("bob", claim_msg(TERMS, 100))]
    assert_block_rejected(chain, txs, ClaimPending, 2050, tx_index=1)
    assert not chain.state.escrows[HASH].has_claim


# --- finalize ----------------------------------------------------------------------------------


def test_finalize_after_the_window_pays_the_provider_burns_the_fee_returns_the_collateral() -> None:
    chain = claimed()
    chain.advance_to(DISPUTE_UNTIL)
    alice, bob = chain.balance("alice"), chain.balance("bob")
    burned = chain.state.vars["burned"]
    result = chain.block([chain.tx("bob", EscrowFinalize(HASH))])
    assert result.height == DISPUTE_UNTIL + 1
    assert chain.balance("bob") == bob + PAY - PROTOCOL_FEE + 300 - chain.params.min_fee
    assert chain.balance("alice") == alice + 700 - PAY
    assert chain.state.vars["burned"] - burned == PROTOCOL_FEE + fee_burn(result.fees)
    assert chain.state.vars["total_escrowed"] == 0
    assert HASH not in chain.state.escrows
    assert chain.state.closed_contracts[HASH] == "settled"
    assert chain.state.epoch_work[addr("bob")] == PROTOCOL_FEE
    chain.state.check_invariants()


def test_finalize_pays_exactly_what_a_two_signature_settle_pays() -> None:
    for seconds in (0, 1, SECONDS, 100, 10_000):
        finalized = claimed(seconds)
        finalized.advance_to(DISPUTE_UNTIL)
        settled = opened()
        settled.advance_to(DISPUTE_UNTIL)
        # Compare what each payout block moved (Bob sends one transaction, one fee, in both).
        changes = []
        for chain, msg in ((finalized, EscrowFinalize(HASH)), (settled, settle_msg(TERMS, seconds))):
            alice, bob, burned = chain.balance("alice"), chain.balance("bob"), chain.state.vars["burned"]
            result = chain.block([chain.tx("bob", msg)])
            changes.append(
                (
                    chain.balance("alice") - alice,
                    chain.balance("bob") - bob,
                    chain.state.vars["burned"] - burned - fee_burn(result.fees),
                    chain.state.epoch_work.get(addr("bob")),
                    chain.state.closed_contracts[HASH],
                )
            )
        assert changes[0] == changes[1], seconds


@pytest.mark.parametrize("height", [CLAIM_HEIGHT + 1, DISPUTE_UNTIL])
def test_finalize_inside_the_window_is_refused(height: int) -> None:
    chain = claimed()
    chain.advance_to(height - 1)  # the next block is at ``height``
    exc = assert_block_rejected(chain, [chain.tx("bob", EscrowFinalize(HASH))], DisputeWindowOpen, 2052)
    assert str(DISPUTE_UNTIL) in exc.message
    assert chain.state.escrows[HASH].has_claim


def test_finalize_in_the_block_of_the_claim_is_refused() -> None:
    chain = opened()
    txs = [chain.tx("bob", claim_msg(TERMS, SECONDS)), chain.tx("bob", EscrowFinalize(HASH))]
    assert_block_rejected(chain, txs, DisputeWindowOpen, 2052, tx_index=1)


def test_only_the_provider_finalizes() -> None:
    chain = claimed()
    chain.advance_to(DISPUTE_UNTIL)
    for label in ("alice", "carol"):
        assert_block_rejected(chain, [chain.tx(label, EscrowFinalize(HASH))], NotAParty, 2024)


def test_finalize_without_a_claim() -> None:
    chain = opened()
    chain.advance_to(DISPUTE_UNTIL)
    assert_block_rejected(chain, [chain.tx("bob", EscrowFinalize(HASH))], NoClaim, 2051)
    assert_block_rejected(chain, [chain.tx("bob", EscrowFinalize(bytes(32)))], UnknownContract, 2020)


def test_finalize_twice() -> None:
    chain = claimed()
    chain.advance_to(DISPUTE_UNTIL)
    chain.block([chain.tx("bob", EscrowFinalize(HASH))])
    assert_block_rejected(chain, [chain.tx("bob", EscrowFinalize(HASH))], ContractClosed, 2022)


# --- dispute -----------------------------------------------------------------------------------


@pytest.mark.parametrize("height", [CLAIM_HEIGHT + 1, DISPUTE_UNTIL])
def test_dispute_inside_the_window_burns_the_pay_and_the_slash_and_returns_the_rest(height: int) -> None:
    chain = claimed()
    chain.advance_to(height - 1)
    alice, bob = chain.balance("alice"), chain.balance("bob")
    burned = chain.state.vars["burned"]
    slash = mul_ratio(300, chain.params.collateral_slash_share)
    assert 0 < slash < 300
    result = chain.block([chain.tx("alice", EscrowDispute(HASH))])
    assert result.height == height
    assert chain.balance("alice") == alice + 700 - PAY - chain.params.min_fee
    # Nothing for the work, and the slash a refund would have taken: claiming for work never
    # delivered does not dodge it.
    assert chain.balance("bob") == bob + 300 - slash
    assert chain.state.vars["burned"] - burned == PAY + slash + fee_burn(result.fees)
    assert chain.state.vars["total_escrowed"] == 0
    assert HASH not in chain.state.escrows
    assert chain.state.closed_contracts[HASH] == "disputed"
    assert addr("bob") not in chain.state.epoch_work  # disputed work earns no provider rewards
    chain.state.check_invariants()


def test_dispute_of_an_inflated_claim_burns_no_more_than_the_maximum_cost() -> None:
    chain = claimed(gpu_seconds=10_000)
    alice, bob = chain.balance("alice"), chain.balance("bob")
    chain.block([chain.tx("alice", EscrowDispute(HASH))])
    assert chain.balance("alice") == alice - chain.params.min_fee  # nothing left to return
    assert chain.balance("bob") == bob + 300 - mul_ratio(300, chain.params.collateral_slash_share)


def test_dispute_after_the_window_is_refused() -> None:
    chain = claimed()
    chain.advance_to(DISPUTE_UNTIL)  # the next block is the first past the window
    exc = assert_block_rejected(chain, [chain.tx("alice", EscrowDispute(HASH))], DisputeWindowClosed, 2053)
    assert str(DISPUTE_UNTIL) in exc.message
    # ...and the provider can then collect.
    chain.block([chain.tx("bob", EscrowFinalize(HASH))])
    assert chain.state.closed_contracts[HASH] == "settled"


def test_only_the_requester_disputes() -> None:
    chain = claimed()
    for label in ("bob", "carol"):
        assert_block_rejected(chain, [chain.tx(label, EscrowDispute(HASH))], NotAParty, 2024)


def test_dispute_without_a_claim() -> None:
    chain = opened()
    assert_block_rejected(chain, [chain.tx("alice", EscrowDispute(HASH))], NoClaim, 2051)
    assert_block_rejected(chain, [chain.tx("alice", EscrowDispute(bytes(32)))], UnknownContract, 2020)


def test_nothing_follows_a_dispute() -> None:
    chain = claimed()
    chain.block([chain.tx("alice", EscrowDispute(HASH))])
    chain.advance_to(TERMS.deadline_height)
    for label, msg in (
        ("bob", EscrowFinalize(HASH)),
        ("alice", EscrowDispute(HASH)),
        ("bob", settle_msg(TERMS, SECONDS)),
        ("alice", Refund(HASH)),
        ("bob", claim_msg(TERMS, SECONDS)),
    ):
        assert_block_rejected(chain, [chain.tx(label, msg)], ContractClosed, 2022)


# --- settle and refund while a claim is pending ---------------------------------------------------


def test_settle_with_both_signatures_supersedes_a_pending_claim() -> None:
    chain = claimed(gpu_seconds=100)  # Bob claimed the maximum; the requester countersigns 55
    alice, bob = chain.balance("alice"), chain.balance("bob")
    chain.block([chain.tx("alice", settle_msg(TERMS, SECONDS))])
    assert chain.balance("bob") == bob + PAY - PROTOCOL_FEE + 300
    assert chain.balance("alice") == alice + 700 - PAY - chain.params.min_fee
    assert chain.state.closed_contracts[HASH] == "settled"
    assert chain.state.epoch_work[addr("bob")] == PROTOCOL_FEE
    assert claim_status(chain.state, HASH, chain.height + 1) is None
    chain.advance_to(DISPUTE_UNTIL)
    assert_block_rejected(chain, [chain.tx("bob", EscrowFinalize(HASH))], ContractClosed, 2022)
    assert_block_rejected(chain, [chain.tx("alice", EscrowDispute(HASH))], ContractClosed, 2022)


def test_settle_after_the_window_still_supersedes_an_unfinalized_claim() -> None:
    chain = claimed(gpu_seconds=100)
    chain.advance_to(DISPUTE_UNTIL + 1)  # settles at height 7: after the window, before an epoch end
    bob = chain.balance("bob")
    chain.block([chain.tx("bob", settle_msg(TERMS, SECONDS))])
    assert chain.balance("bob") == bob + PAY - PROTOCOL_FEE + 300 - chain.params.min_fee


def test_refund_is_refused_while_a_claim_is_pending() -> None:
    chain = claimed()
    chain.advance_to(TERMS.deadline_height)  # past the deadline: a refund would otherwise apply
    bob = chain.balance("bob")
    exc = assert_block_rejected(chain, [chain.tx("alice", Refund(HASH))], RefundBlockedByClaim, 2054)
    assert isinstance(exc, ClaimPending)
    assert chain.balance("bob") == bob  # the collateral of a provider that claimed is not slashed


def test_refund_before_the_deadline_with_a_claim_names_the_claim() -> None:
    chain = claimed()
    assert_block_rejected(chain, [chain.tx("alice", Refund(HASH))], RefundBlockedByClaim, 2054)


# --- governance of the window ----------------------------------------------------------------------


def _pass_window_change(chain: Chain, blocks: int) -> None:
    """Propose ``dispute_window_blocks = blocks`` in the next block; every validator votes yes."""
    start = chain.height + 1
    chain.block(
        [chain.tx("carol", GovPropose("dispute_window_blocks", blocks, chain.params.gov_min_deposit))]
    )
    proposal_id = chain.state.vars["next_proposal_id"] - 1
    chain.block([chain.tx(label, GovVote(proposal_id, "yes")) for label in VALIDATOR_LABELS])
    chain.advance_to(start + chain.params.gov_voting_period)
    assert chain.state.proposals[proposal_id].status == "passed"


def test_a_governance_change_of_the_window_applies_to_later_claims() -> None:
    chain = Chain()
    _pass_window_change(chain, 6)
    assert chain.params.dispute_window_blocks == 6
    terms = make_terms("alice", "bob", salt=b"gov", deadline=chain.height + 50)
    contract = terms.contract_hash()
    chain.block([chain.tx("alice", OpenEscrow(sign_contract(terms)))])
    chain.block([chain.tx("bob", claim_msg(terms, 10))])
    claimed_at = chain.height
    chain.advance_to(claimed_at + WINDOW)  # the old window would be over in the next block
    assert_block_rejected(chain, [chain.tx("bob", EscrowFinalize(contract))], DisputeWindowOpen, 2052)
    chain.advance_to(claimed_at + 6)
    chain.block([chain.tx("bob", EscrowFinalize(contract))])
    assert chain.state.closed_contracts[contract] == "settled"


def test_a_governance_change_of_the_window_moves_a_pending_claims_window() -> None:
    chain = opened()
    start = chain.height + 1
    chain.block(
        [
            chain.tx("bob", claim_msg(TERMS, SECONDS)),
            chain.tx("carol", GovPropose("dispute_window_blocks", 6, chain.params.gov_min_deposit)),
        ]
    )
    chain.block([chain.tx(label, GovVote(1, "yes")) for label in VALIDATOR_LABELS])
    chain.advance_to(start + chain.params.gov_voting_period)
    assert chain.params.dispute_window_blocks == 6
    status = claim_status(chain.state, HASH, chain.height + 1)
    assert status is not None and status.dispute_until == CLAIM_HEIGHT + 6
    chain.advance_to(DISPUTE_UNTIL)
    assert_block_rejected(chain, [chain.tx("bob", EscrowFinalize(HASH))], DisputeWindowOpen, 2052)
    chain.block([chain.tx("alice", EscrowDispute(HASH))])  # still inside the longer window
    assert chain.state.closed_contracts[HASH] == "disputed"


@pytest.mark.parametrize("value", [0, 100_001])
def test_a_window_outside_its_bounds_cannot_be_proposed(value: int) -> None:
    chain = Chain()
    msg = GovPropose("dispute_window_blocks", value, chain.params.gov_min_deposit)
    assert_block_rejected(chain, [chain.tx("carol", msg)], InvalidParamValue, 2031)


def test_the_window_defaults_to_twenty_blocks_within_its_bounds() -> None:
    assert Params().dispute_window_blocks == 20
    assert Params().with_value("dispute_window_blocks", 1).dispute_window_blocks == 1
    assert Params().with_value("dispute_window_blocks", 100_000).dispute_window_blocks == 100_000
    with pytest.raises(InvalidParamValue):
        Params().with_value("dispute_window_blocks", 100_001)


# --- messages, state hash, snapshots ----------------------------------------------------------------


def test_claim_messages_decode_from_transactions() -> None:
    chain = opened()
    for msg in (claim_msg(TERMS, SECONDS), EscrowFinalize(HASH), EscrowDispute(HASH)):
        assert decode_tx(chain.tx("bob", msg)).msg == msg
    for short in (EscrowFinalize, EscrowDispute):
        with pytest.raises(MalformedTx):
            short(bytes(31))


def test_the_state_hash_covers_every_claim_field() -> None:
    chain = claimed()
    escrow = chain.state.escrows[HASH]
    other = claim_msg(TERMS, SECONDS + 1)
    hashes = {chain.state.state_hash()}
    for change in (
        {"claim": other.receipt.encode()},
        {"claim_provider_sig": other.provider_sig},
        {"claimed_height": CLAIM_HEIGHT - 1},
    ):
        replica = chain.state.copy()
        replica.escrows.set(HASH, dataclasses.replace(escrow, **change))
        hashes.add(replica.state_hash())
    assert len(hashes) == 4


def test_a_snapshot_keeps_the_pending_claim() -> None:
    chain = claimed()
    restored = decode_snapshot(encode_snapshot(chain.state))
    assert restored.state_hash() == chain.state.state_hash()
    assert restored.escrows[HASH] == chain.state.escrows[HASH]
    assert claim_status(restored, HASH, 3) == claim_status(chain.state, HASH, 3)


def test_a_snapshot_whose_claim_names_another_contract_is_refused() -> None:
    chain = claimed()
    escrow = chain.state.escrows[HASH]
    other = claim_msg(TERMS, SECONDS, contract_hash=bytes(32))
    chain.state.escrows.set(HASH, dataclasses.replace(escrow, claim=other.receipt.encode()))
    with pytest.raises(SnapshotError, match="another contract"):
        decode_snapshot(encode_snapshot(chain.state))
    chain.state.escrows.set(HASH, dataclasses.replace(escrow, claim=b"\x01garbage"))
    with pytest.raises(SnapshotError, match="not a receipt"):
        decode_snapshot(encode_snapshot(chain.state))


def test_claim_fields_without_a_claim_break_the_invariants() -> None:
    chain = opened()
    escrow = chain.state.escrows[HASH]
    chain.state.escrows.set(HASH, dataclasses.replace(escrow, claimed_height=1))
    with pytest.raises(InvariantError):
        chain.state.check_invariants()
    chain.state.escrows.set(HASH, dataclasses.replace(escrow, claim=b"x", claimed_height=chain.height + 1))
    with pytest.raises(InvariantError):
        chain.state.check_invariants()
