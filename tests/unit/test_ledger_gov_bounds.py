"""Governance cannot brick the chain: every parameter has bounds, cross-parameter invariants hold,
and a change that breaks one is refused when proposed and again when it would apply; the refusals
name amounts in DCT and ratios in percent.

The attacks (issue 12, item 5), each accepted before: ``gov_threshold = 100%`` (nothing could pass
again), ``gov_quorum = 0`` with ``gov_threshold = 0`` (a 1/301 holder passes ``double_sign_slash =
0`` alone), ``min_validator_stake = 2^63 - 1`` (empties the set), ``max_validators = 1``,
``evidence_max_age = 1``, ``gov_voting_period = 1``, a 1-base-unit deposit.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.ledger.errors import GenesisError, InvalidParamValue
from protocol.ledger.genesis import Genesis
from protocol.ledger.gov import check_change
from protocol.ledger.params import (
    GOVERNANCE_BOUNDS,
    PARAM_BOUNDS,
    Params,
    check_governance_change,
    min_voting_period,
)
from protocol.ledger.tx import GovPropose, GovVote
from protocol.units import DCT, DEC, MAX_AMOUNT, percent

from .ledger_helpers import TEST_PARAMS, Chain, assert_block_rejected, make_genesis

#: A live chain's parameters: 5-second blocks, the defaults.
LIVE = Params()
WEIGHTED = [("val-0", 600), ("val-1", 250), ("val-2", 150)]


@pytest.mark.parametrize(
    ("param", "value", "says"),
    [
        ("gov_threshold", DEC, "100%"),
        ("gov_threshold", 0, "0%"),
        ("gov_quorum", 0, "0%"),
        ("min_validator_stake", MAX_AMOUNT, "DCT"),
        ("max_validators", 1, "1"),
        ("evidence_max_age", 1, "unbonding period"),
        ("gov_voting_period", 1, "minutes"),
        ("gov_min_deposit", 1, "0.000000001 DCT"),
        ("double_sign_slash", 0, "0%"),
        ("min_fee", 2 * DCT, "2 DCT"),
        ("blocks_per_year", 1, "1"),
        ("provider_reward_cap", DEC, "100%"),
        ("protocol_fee_share", percent(60), "60%"),
    ],
)
def test_the_issues_bricking_changes_are_refused_and_say_why_in_dct_and_percent(
    param: str, value: int, says: str
) -> None:
    with pytest.raises(InvalidParamValue) as refused:
        check_governance_change(LIVE, param, value)
    assert refused.value.code == 2031
    assert says in refused.value.message and param in refused.value.message


def test_the_voting_period_lasts_ten_minutes_at_the_chains_declared_block_rate() -> None:
    five_second_blocks = LIVE.blocks_per_year
    assert min_voting_period(five_second_blocks) == 120
    check_governance_change(LIVE, "gov_voting_period", 120)
    with pytest.raises(InvalidParamValue, match="at least 120 blocks"):
        check_governance_change(LIVE, "gov_voting_period", 119)
    # Faster blocks need more of them: a block-rate change that would shorten it is refused too.
    with pytest.raises(InvalidParamValue, match="blocks_per_year"):
        check_governance_change(LIVE, "blocks_per_year", 100 * five_second_blocks)


@settings(max_examples=300, deadline=None)
@given(param=st.sampled_from(sorted(PARAM_BOUNDS)), value=st.integers(-(2**64), 2**64))
def test_any_value_governance_accepts_keeps_every_bound_and_invariant(param: str, value: int) -> None:
    try:
        changed = check_governance_change(LIVE, param, value)
    except InvalidParamValue:
        return
    low, high = GOVERNANCE_BOUNDS.get(param, PARAM_BOUNDS[param])
    assert low <= getattr(changed, param) <= high
    assert changed.gov_threshold < DEC and changed.gov_quorum >= percent(10)
    assert changed.evidence_max_age >= changed.unbonding_period
    assert changed.gov_voting_period >= min_voting_period(changed.blocks_per_year)
    Params.from_wire(changed.to_wire())  # the invariants of __post_init__ hold


def test_a_genesis_is_held_to_the_hard_bounds_and_the_invariants() -> None:
    genesis = make_genesis().to_dict()
    for params, field in (
        ({"evidence_max_age": 10, "unbonding_period": 20}, "evidence_max_age"),
        ({"gov_threshold": "100%"}, "gov_threshold"),
        ({"gov_quorum": "0%"}, "gov_quorum"),
    ):
        with pytest.raises(GenesisError, match=field):
            Genesis.from_dict({**genesis, "params": {**genesis["params"], **params}})  # type: ignore[dict-item]


def test_a_change_that_would_shrink_the_active_set_below_four_is_refused() -> None:
    chain = Chain(make_genesis(stakes=[("val-0", 600), ("val-1", 250), ("val-2", 150), ("alice", 150)]))
    assert len(chain.state.validator_set()) == 4
    with pytest.raises(InvalidParamValue, match="would leave 2 validator"):
        check_change(chain.state, "min_validator_stake", 200)
    check_change(chain.state, "min_validator_stake", 150)
    # A set already smaller than the floor may not shrink further, but may grow.
    small = Chain(make_genesis(stakes=WEIGHTED))
    with pytest.raises(InvalidParamValue, match="fewer than 3"):
        check_change(small.state, "min_validator_stake", 300)


def test_proposing_a_refused_change_is_a_rejected_transaction() -> None:
    chain = Chain(make_genesis(stakes=WEIGHTED))
    for param, value in (("gov_threshold", DEC), ("gov_quorum", 0), ("max_validators", 1)):
        raw = chain.tx("alice", GovPropose(param, value, TEST_PARAMS.gov_min_deposit))
        assert_block_rejected(chain, [raw], InvalidParamValue, 2031, tx_index=0)


def test_a_change_that_passed_but_no_longer_holds_fails_when_it_would_apply() -> None:
    # Both proposals are fine alone; the first to apply makes the second break an invariant.
    chain = Chain(make_genesis(stakes=WEIGHTED))
    deposit = TEST_PARAMS.gov_min_deposit
    assert TEST_PARAMS.unbonding_period == 3
    chain.block(
        [
            chain.tx("alice", GovPropose("evidence_max_age", 5, deposit)),
            chain.tx("alice", GovPropose("unbonding_period", 6, deposit)),
        ]
    )
    chain.block([chain.tx("val-0", GovVote(1, "yes")), chain.tx("val-0", GovVote(2, "yes"))])
    balance = chain.balance("alice")
    chain.advance_to(1 + TEST_PARAMS.gov_voting_period)
    assert [chain.state.proposals[i].status for i in (1, 2)] == ["passed", "failed"]
    assert (chain.params.evidence_max_age, chain.params.unbonding_period) == (5, 3)
    assert chain.balance("alice") == balance + 2 * deposit  # a failed change returns its deposit
