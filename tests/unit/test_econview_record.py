"""Per-block economics records and the status figures, against the ledger's own totals.

A scripted chain of blocks (transfers, a stake, contracts settled in the block that opens them,
a claim finalized after its window, a dispute, a refund past the deadline, epoch payouts) is
applied by ``apply_block``; each block's record must equal the ledger's running totals after it,
the block result's issuance, burn and fees, and the GPU-seconds the ledger credited to the
providers' epoch work. The status's yield and earnings are checked against hand arithmetic.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from protocol.contracts import OUTCOME_JOB_FAILED, OUTCOME_PROVIDER_ERROR
from protocol.economics import mul_ratio
from protocol.econview.record import BlockEconomics, RecordFormatError, record_block, settled_work
from protocol.econview.status import economics_status
from protocol.encoding import DecodeError
from protocol.ledger.state import LedgerState
from protocol.ledger.tx import EscrowDispute, EscrowFinalize, OpenEscrow, Refund, Stake, Transfer
from protocol.units import DEC
from tests.unit.ledger_helpers import (
    Chain,
    addr,
    claim_msg,
    make_terms,
    settle_msg,
    sign_contract,
)


def _epoch_work(state: LedgerState) -> int:
    return sum(seconds for _, seconds in state.epoch_work.sorted_items())


def _scripted_blocks(chain: Chain) -> list[Callable[[], list[bytes]]]:
    """The blocks' transactions, built lazily (each needs the nonces of the one before)."""
    settled_now = make_terms(price=7, max_gpu_seconds=50, deadline=30, salt=b"now")
    claimed = make_terms(price=3, max_gpu_seconds=1_000, deadline=40, salt=b"claimed")
    disputed = make_terms(price=11, max_gpu_seconds=20, deadline=40, salt=b"disputed")
    refunded = make_terms(price=2, max_gpu_seconds=10, deadline=6, salt=b"refunded")
    failed = make_terms(price=5, max_gpu_seconds=10, deadline=30, salt=b"failed")
    broken = make_terms(price=5, max_gpu_seconds=10, deadline=30, salt=b"broken")
    plans: list[Callable[[], list[bytes]]] = [
        lambda: [chain.tx("alice", Transfer(addr("carol"), 1_000)), chain.tx("val-1", Stake(5_000))],
        # Opened and settled in one block: 60 metered seconds capped at the contract's 50.
        lambda: [
            chain.tx("alice", OpenEscrow(sign_contract(settled_now))),
            chain.tx("bob", settle_msg(settled_now, 60)),
            chain.tx("alice", OpenEscrow(sign_contract(claimed))),
            chain.tx("alice", OpenEscrow(sign_contract(disputed))),
            chain.tx("alice", OpenEscrow(sign_contract(refunded))),
        ],
        lambda: [chain.tx("bob", claim_msg(claimed, 400)), chain.tx("bob", claim_msg(disputed, 20))],
        lambda: [chain.tx("alice", EscrowDispute(disputed.contract_hash()))],
        lambda: [],
        lambda: [],
        lambda: [chain.tx("bob", EscrowFinalize(claimed.contract_hash()))],
        lambda: [chain.tx("alice", Refund(refunded.contract_hash()))],
        lambda: [chain.tx("dave", Transfer(addr("alice"), 5), fee=1_000)],
        # The job's own failure pays its metered time (2.5 s: 3 GPU-seconds of work, 13 paid);
        # a provider error closes as a refund: no work sold.
        lambda: [
            chain.tx("alice", OpenEscrow(sign_contract(failed))),
            chain.tx("bob", settle_msg(failed, 0, outcome=OUTCOME_JOB_FAILED, gpu_ms=2_500)),
            chain.tx("alice", OpenEscrow(sign_contract(broken))),
            chain.tx("bob", settle_msg(broken, 0, outcome=OUTCOME_PROVIDER_ERROR)),
        ],
    ]
    return plans


def test_every_record_equals_the_ledgers_own_totals_block_by_block() -> None:
    chain = Chain()
    records: list[BlockEconomics] = []
    for plan in _scripted_blocks(chain):
        before = chain.state.copy()
        work_before = _epoch_work(chain.state)
        txs = plan()
        result = chain.block(txs)
        record = record_block(before, chain.state, txs, result, time_ms=1_000 * result.height)
        records.append(record)
        v = chain.state.vars
        assert record.height == chain.height == result.height
        assert record.time_ms == 1_000 * result.height
        assert record.txs == len(txs)
        assert record.supply == chain.state.total_supply()
        assert record.supply == v["genesis_supply"] + v["minted"] - v["burned"]
        assert (record.minted, record.burned, record.inflation) == (v["minted"], v["burned"], v["inflation"])
        assert (record.bonded, record.unbonding, record.escrowed) == (
            v["total_bonded"],
            v["total_unbonding"],
            v["total_escrowed"],
        )
        assert (record.community_pool, record.provider_pool) == (v["community_pool"], v["provider_pool"])
        assert (record.issued, record.burned_in_block, record.fees) == (
            result.minted,
            result.burned,
            result.fees,
        )
        assert record.validator_rewards == sum(reward for _, reward in result.validator_rewards)
        assert record.provider_rewards == sum(reward for _, reward in result.provider_rewards)
        # The ledger credits each settlement's burned protocol fee to the provider's epoch work
        # (issue 12: rewards that self-dealing cannot farm), which an epoch's end pays out: the
        # record's pay, computed on its own from the block's transactions, must burn exactly that.
        paid_out_epoch = chain.height % chain.params.epoch_length == 0 and result.provider_rewards
        if not paid_out_epoch and record.settlements <= 1:
            burned_fee = mul_ratio(record.paid, chain.params.protocol_fee_share)
            assert _epoch_work(chain.state) - work_before == burned_fee
        assert BlockEconomics.decode(record.encode()) == record
    # Settled: 50 (capped) in block 2 and 400 finalized in block 7; the dispute and refund not.
    assert [r.gpu_seconds for r in records] == [0, 50, 0, 0, 0, 0, 400, 0, 0, 3]
    assert [r.paid for r in records] == [0, 350, 0, 0, 0, 0, 1_200, 0, 0, 13]
    assert [r.settlements for r in records] == [0, 1, 0, 0, 0, 0, 1, 0, 0, 1]
    assert records[1].price_per_gpu_second == 7 and records[0].price_per_gpu_second is None
    assert records[3].burned_in_block > 0  # the dispute burned the claimed pay and the slash
    assert records[7].burned_in_block > 0  # the refund slashed the collateral
    assert sum(r.provider_rewards for r in records) > 0  # an epoch paid the provider pool out


def test_settled_work_of_an_applied_block_needs_the_state_it_was_applied_to() -> None:
    chain = Chain()
    terms = make_terms(price=4, max_gpu_seconds=100, deadline=20, salt=b"x")
    chain.block([chain.tx("alice", OpenEscrow(sign_contract(terms)))])
    before = chain.state.copy()
    txs = [chain.tx("bob", settle_msg(terms, 30))]
    chain.block(txs)
    work = settled_work(before, txs)
    assert (work.gpu_seconds, work.paid, work.contracts) == (30, 120, 1)
    # Transactions that are no escrow are skipped without decoding them.
    assert settled_work(before, [chain.tx("alice", Transfer(addr("bob"), 1))]).contracts == 0


def test_a_corrupt_record_is_refused_with_a_typed_error() -> None:
    chain = Chain()
    before = chain.state.copy()
    result = chain.block([])
    record = record_block(before, chain.state, [], result, time_ms=5)
    with pytest.raises(RecordFormatError):
        BlockEconomics(**{**{f: getattr(record, f) for f in record.__dataclass_fields__}, "supply": -1})
    wire = record.to_wire()
    wire["fees"] = 2**64
    with pytest.raises(DecodeError):
        BlockEconomics.from_wire(wire)


def test_status_figures_follow_the_ledger_and_the_window() -> None:
    chain = Chain()
    records = []
    terms = make_terms(price=10, max_gpu_seconds=360, deadline=20, salt=b"s")
    for txs_of in (
        lambda: [
            chain.tx("alice", OpenEscrow(sign_contract(terms))),
            chain.tx("bob", settle_msg(terms, 360)),
        ],
        lambda: [chain.tx("carol", Transfer(addr("dave"), 1), fee=10_000)],
    ):
        before = chain.state.copy()
        txs = txs_of()
        result = chain.block(txs)
        records.append(record_block(before, chain.state, txs, result, time_ms=result.height))
    params, state = chain.params, chain.state
    status = economics_status(state, records)
    supply, bonded = state.total_supply(), state.vars["total_bonded"]
    assert status.supply == supply and status.bonded == bonded
    assert status.bonded_ratio == bonded * DEC // supply
    annual = mul_ratio(supply, state.vars["inflation"])
    fees = sum(r.fees for r in records)
    fee_income = (fees - mul_ratio(fees, params.fee_burn_share)) * params.blocks_per_year // 2
    assert (
        status.staking_apr == (mul_ratio(annual, params.validator_reward_share) + fee_income) * DEC // bonded
    )
    # 360 GPU-seconds = 0.1 GPU-hour for 3,600 paid: 36,000 per GPU-hour before the fee.
    assert status.price_per_gpu_hour == 36_000
    rewards = sum(r.provider_rewards for r in records)
    income = 3_600 - mul_ratio(3_600, params.protocol_fee_share) + rewards
    assert status.provider_earnings_per_gpu_hour == income * 3_600 // 360
    empty = economics_status(state, [])
    assert empty.price_per_gpu_hour is None and empty.provider_earnings_per_gpu_hour is None
    assert empty.staking_apr == mul_ratio(annual, params.validator_reward_share) * DEC // bonded
