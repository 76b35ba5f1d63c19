"""Who pays for what: settlement follows the receipt's outcome (protocol.ledger.escrow's table).

The job's own ending (completed, failed, a limit, a timeout) is paid by its metered GPU time,
rounded up to a base unit and capped at the maximum cost; a provider error refunds the requester
in full and slashes the provider's collateral, as a refund after the deadline does.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.contracts import (
    OUTCOME_COMPLETED,
    OUTCOME_JOB_FAILED,
    OUTCOME_LIMIT_EXCEEDED,
    OUTCOME_PROVIDER_ERROR,
    OUTCOME_TIMED_OUT,
    OUTCOMES,
    ContractFormatError,
    UsageReceipt,
)
from protocol.economics import mul_ratio
from protocol.ledger.escrow import SETTLEMENT_RULES, claim_status, metered_pay
from protocol.ledger.tx import EscrowDispute, EscrowFinalize, OpenEscrow, Settle

from .ledger_helpers import (
    TEST_PARAMS,
    Chain,
    addr,
    claim_msg,
    key,
    make_receipt,
    make_terms,
    sign_contract,
)

# price 7 per GPU-second x 100 GPU-seconds: the requester locks 700, the provider 300 collateral.
PRICE, MAX_SECONDS, COLLATERAL = 7, 100, 300
TERMS = make_terms(
    "alice", "bob", price=PRICE, max_gpu_seconds=MAX_SECONDS, collateral=COLLATERAL, deadline=10
)
HASH = TERMS.contract_hash()
MAX_COST = PRICE * MAX_SECONDS
SLASH = mul_ratio(COLLATERAL, TEST_PARAMS.collateral_slash_share)


def opened() -> Chain:
    chain = Chain()
    chain.block([chain.tx("alice", OpenEscrow(sign_contract(TERMS)))])
    return chain


def receipt(outcome: str, gpu_ms: int, *, limit: str = "") -> UsageReceipt:
    if outcome == OUTCOME_LIMIT_EXCEEDED and not limit:
        limit = "memory"
    return make_receipt(TERMS, 0, outcome=outcome, gpu_ms=gpu_ms, limit=limit)


def settle(chain: Chain, signed: UsageReceipt) -> None:
    """The provider settles the receipt both signed; its fee is added back in the assertions."""
    chain.block([chain.tx("bob", Settle(signed, signed.sign(key("bob")), signed.sign(key("alice"))))])


def money(chain: Chain) -> tuple[int, int, int]:
    return chain.balance("alice"), chain.balance("bob"), chain.state.vars["burned"]


# --- the table, outcome by outcome ------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "gpu_ms", "pay"),
    [
        # 55.5 GPU-seconds x 7 = 388.5 -> rounded up to 389.
        (OUTCOME_COMPLETED, 55_500, 389),
        (OUTCOME_JOB_FAILED, 55_500, 389),  # the job's own failure: the time it used
        (OUTCOME_LIMIT_EXCEEDED, 12_000, 84),  # stopped at its limit: the time it used
        (OUTCOME_TIMED_OUT, 110_000, MAX_COST),  # the whole runtime plus the grace: capped at the max
    ],
)
def test_the_jobs_own_ending_pays_the_metered_time_and_returns_the_collateral(
    outcome: str, gpu_ms: int, pay: int
) -> None:
    chain = opened()
    alice, bob, burned = money(chain)
    settle(chain, receipt(outcome, gpu_ms))
    protocol_fee = mul_ratio(pay, TEST_PARAMS.protocol_fee_share)
    assert chain.balance("alice") == alice + MAX_COST - pay
    assert chain.balance("bob") == bob + pay - protocol_fee + COLLATERAL - TEST_PARAMS.min_fee
    fee_burn = mul_ratio(TEST_PARAMS.min_fee, TEST_PARAMS.fee_burn_share)
    assert chain.state.vars["burned"] - burned == protocol_fee + fee_burn
    assert chain.state.closed_contracts[HASH] == "settled"
    # The provider's reward weight is the fee its settlement burned (issue 12), not its GPU time.
    assert chain.state.epoch_work[addr("bob")] == protocol_fee


def test_a_provider_error_refunds_the_requester_in_full_and_slashes_the_collateral() -> None:
    chain = opened()
    alice, bob, burned = money(chain)
    settle(chain, receipt(OUTCOME_PROVIDER_ERROR, 0))
    assert chain.balance("alice") == alice + MAX_COST
    assert chain.balance("bob") == bob + COLLATERAL - SLASH - TEST_PARAMS.min_fee
    fee_burn = mul_ratio(TEST_PARAMS.min_fee, TEST_PARAMS.fee_burn_share)
    assert SLASH > 0 and chain.state.vars["burned"] - burned == SLASH + fee_burn
    assert chain.state.closed_contracts[HASH] == "refunded"
    assert chain.state.vars["total_escrowed"] == 0
    assert addr("bob") not in chain.state.epoch_work  # no work credited for a failure of ours


def test_a_claimed_provider_error_finalizes_as_a_refund_with_the_slash() -> None:
    chain = opened()
    chain.block([chain.tx("bob", claim_msg(TERMS, 0, outcome=OUTCOME_PROVIDER_ERROR))])
    status = claim_status(chain.state, HASH, chain.height + 1)
    assert status is not None and status.pay == 0
    chain.advance_to(status.dispute_until)
    alice, bob, _ = money(chain)
    chain.block([chain.tx("bob", EscrowFinalize(HASH))])
    assert chain.balance("alice") == alice + MAX_COST
    assert chain.balance("bob") == bob + COLLATERAL - SLASH - TEST_PARAMS.min_fee
    assert chain.state.closed_contracts[HASH] == "refunded"


def test_a_disputed_claim_burns_what_its_outcome_would_pay() -> None:
    chain = opened()
    chain.block([chain.tx("bob", claim_msg(TERMS, 10, outcome=OUTCOME_JOB_FAILED))])
    alice, _, burned = money(chain)
    chain.block([chain.tx("alice", EscrowDispute(HASH))])
    pay = 10 * PRICE
    assert chain.balance("alice") == alice + MAX_COST - pay - TEST_PARAMS.min_fee
    fee_burn = mul_ratio(TEST_PARAMS.min_fee, TEST_PARAMS.fee_burn_share)
    assert chain.state.vars["burned"] - burned == pay + SLASH + fee_burn


def test_every_outcome_has_exactly_one_rule() -> None:
    assert set(SETTLEMENT_RULES) == set(OUTCOMES)
    for outcome, rule in SETTLEMENT_RULES.items():
        assert rule.pays_metered != rule.slashes_collateral, outcome


# --- rounding: no job is free ---------------------------------------------------------------------


def test_one_gpu_millisecond_at_any_positive_price_costs_at_least_one_base_unit() -> None:
    assert metered_pay(1, price_per_gpu_second=1, max_gpu_seconds=10, max_cost=10) == 1
    assert metered_pay(1, price_per_gpu_second=0, max_gpu_seconds=10, max_cost=0) == 0
    assert metered_pay(999, price_per_gpu_second=1000, max_gpu_seconds=10, max_cost=10_000) == 999
    assert metered_pay(1001, price_per_gpu_second=1000, max_gpu_seconds=10, max_cost=10_000) == 1001
    assert metered_pay(1001, price_per_gpu_second=1, max_gpu_seconds=10, max_cost=10) == 2


@settings(max_examples=300, deadline=None)
@given(
    gpu_ms=st.integers(0, 2**63 - 1),
    price=st.integers(0, 2**40),
    max_seconds=st.integers(1, 2**20),
)
def test_metered_pay_is_rounded_up_capped_and_monotonic(gpu_ms: int, price: int, max_seconds: int) -> None:
    max_cost = price * max_seconds
    pay = metered_pay(gpu_ms, price_per_gpu_second=price, max_gpu_seconds=max_seconds, max_cost=max_cost)
    assert 0 <= pay <= max_cost
    if gpu_ms > 0 and price > 0:
        assert pay >= 1
    exact_thousandths = min(gpu_ms, max_seconds * 1000) * price
    # Rounded up to the next whole base unit: never less than the exact price, never a unit more.
    if pay == 0:
        assert exact_thousandths == 0
    else:
        assert (pay - 1) * 1000 < exact_thousandths <= pay * 1000
    more = metered_pay(gpu_ms + 1, price_per_gpu_second=price, max_gpu_seconds=max_seconds, max_cost=max_cost)
    assert more >= pay


@settings(max_examples=60, deadline=None)
@given(
    outcome=st.sampled_from(OUTCOMES),
    gpu_ms=st.integers(0, 200_000),
    settler=st.sampled_from(("alice", "bob")),
)
def test_any_receipt_moves_exactly_the_deposit_and_the_collateral(
    outcome: str, gpu_ms: int, settler: str
) -> None:
    """Whatever the outcome: the requester loses at most the maximum cost, the provider loses at
    most the slash, and what left the escrow is what the parties got plus what was burned."""
    if outcome == OUTCOME_PROVIDER_ERROR:
        gpu_ms = 0
    chain = opened()
    alice, bob, burned = money(chain)
    signed = receipt(outcome, gpu_ms)
    msg = Settle(signed, signed.sign(key("bob")), signed.sign(key("alice")))
    result = chain.block([chain.tx(settler, msg)])  # check_invariants runs inside
    fee = {"alice": 0, "bob": 0} | {settler: TEST_PARAMS.min_fee}
    alice_delta = chain.balance("alice") - alice + fee["alice"]
    bob_delta = chain.balance("bob") - bob + fee["bob"]
    burned_delta = chain.state.vars["burned"] - burned - mul_ratio(result.fees, TEST_PARAMS.fee_burn_share)
    assert alice_delta + bob_delta + burned_delta == MAX_COST + COLLATERAL
    assert MAX_COST - alice_delta <= MAX_COST
    if SETTLEMENT_RULES[outcome].slashes_collateral:
        assert (alice_delta, bob_delta, burned_delta) == (MAX_COST, COLLATERAL - SLASH, SLASH)
    else:
        assert bob_delta >= COLLATERAL and burned_delta >= 0
        if gpu_ms > 0:
            assert alice_delta < MAX_COST  # a job that ran is never free


# --- receipts that contradict themselves are refused when built (and so when decoded) -------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"outcome": "finished"}, "receipt.outcome"),
        ({"outcome": OUTCOME_COMPLETED, "exit_status": 1}, "with status 0"),
        ({"outcome": OUTCOME_JOB_FAILED, "exit_status": 0}, "non-zero"),
        ({"outcome": OUTCOME_PROVIDER_ERROR, "gpu_ms": 5}, "meters nothing"),
        ({"outcome": OUTCOME_LIMIT_EXCEEDED, "limit": ""}, "receipt.limit"),
        ({"outcome": OUTCOME_LIMIT_EXCEEDED, "limit": "gpus"}, "receipt.limit"),
        ({"outcome": OUTCOME_TIMED_OUT, "limit": "memory"}, "only a limit_exceeded"),
        ({"gpu_ms": -1}, "receipt.gpu_ms"),
    ],
)
def test_a_self_contradicting_receipt_is_refused(fields: dict[str, object], message: str) -> None:
    base: dict[str, object] = {
        "chain_id": TERMS.chain_id,
        "contract_hash": HASH,
        "outcome": OUTCOME_COMPLETED,
        "gpu_ms": 1000,
        "exit_status": 0,
        "output_hash": bytes(32),
        "limit": "",
    }
    with pytest.raises(ContractFormatError, match=message):
        UsageReceipt(**(base | fields))  # type: ignore[arg-type]


def test_gpu_seconds_are_the_metered_milliseconds_rounded_up() -> None:
    assert receipt(OUTCOME_COMPLETED, 1).gpu_seconds == 1
    assert receipt(OUTCOME_COMPLETED, 1000).gpu_seconds == 1
    assert receipt(OUTCOME_COMPLETED, 1001).gpu_seconds == 2
    assert receipt(OUTCOME_PROVIDER_ERROR, 0).gpu_seconds == 0
