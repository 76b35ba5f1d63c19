"""Issuance (Cosmos x/mint), fee burning and reward splitting: integer math checked by hand."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from protocol.economics import (
    IssuanceSplit,
    block_provision,
    bonded_ratio,
    div_trunc,
    mul_ratio,
    next_inflation,
    pro_rata,
    split_fees,
    split_issuance,
)
from protocol.ledger.params import Params
from protocol.units import DEC, percent

# Round numbers for hand computation: goal 50%, the rate moves by at most 10% a year, 100 blocks a year.
SIMPLE = Params(
    goal_bonded=percent(50),
    inflation_rate_change=percent(10),
    inflation_min=percent(5),
    inflation_max=percent(20),
    blocks_per_year=100,
)
TEN_PERCENT = 100_000_000_000_000_000


def test_div_trunc_rounds_toward_zero() -> None:
    assert [div_trunc(7, 2), div_trunc(-7, 2), div_trunc(7, -2), div_trunc(-7, -2)] == [3, -3, -3, 3]
    assert -7 // 2 == -4  # what plain floor division would have given


@given(st.integers(-(10**40), 10**40), st.integers(-(10**20), 10**20).filter(bool))
def test_div_trunc_properties(numerator: int, denominator: int) -> None:
    quotient = div_trunc(numerator, denominator)
    remainder = numerator - quotient * denominator
    assert abs(remainder) < abs(denominator)
    assert remainder == 0 or (remainder > 0) == (numerator > 0)  # never overshoots
    assert abs(quotient * denominator) <= abs(numerator)


def test_mul_ratio_truncates() -> None:
    assert mul_ratio(157, percent(30)) == 47
    assert mul_ratio(-157, percent(30)) == -47
    assert mul_ratio(10**18, DEC) == 10**18


def test_below_the_goal_inflation_rises_by_a_hand_computed_step() -> None:
    # bonded 25% of a 50% goal: (1 - 0.25/0.5) * 10% = 5% a year, over 100 blocks = 0.05% a block.
    assert bonded_ratio(1, 4) == DEC // 4
    assert next_inflation(TEN_PERCENT, 1, 4, SIMPLE) == 100_500_000_000_000_000


def test_above_the_goal_inflation_falls_by_a_hand_computed_step() -> None:
    # bonded 75%: (1 - 0.75/0.5) * 10% = -5% a year: -0.05% a block.
    assert next_inflation(TEN_PERCENT, 3, 4, SIMPLE) == 99_500_000_000_000_000


def test_at_the_goal_inflation_holds() -> None:
    assert next_inflation(TEN_PERCENT, 1, 2, SIMPLE) == TEN_PERCENT


def test_steps_truncate_toward_zero() -> None:
    # -5% a year over 3 blocks is -1.6666...% a block: truncated to -16666666666666666, not ...667.
    three_blocks = SIMPLE.with_value("blocks_per_year", 3)
    assert next_inflation(TEN_PERCENT, 3, 4, three_blocks) == 83_333_333_333_333_334


def test_cosmos_defaults_with_nothing_bonded() -> None:
    # The full 13% a year over 6,311,520 blocks: 130000000000000000 // 6311520 = 20597257079.
    assert next_inflation(percent(13), 0, 10**9, Params()) == percent(13) + 20_597_257_079


def test_inflation_is_clamped_between_min_and_max() -> None:
    near_max = percent(20) - 10**14
    assert next_inflation(near_max, 1, 4, SIMPLE) == percent(20)
    near_min = percent(5) + 10**14
    assert next_inflation(near_min, 3, 4, SIMPLE) == percent(5)
    # A rate outside the band (parameters changed by governance) is pulled inside at once.
    assert next_inflation(percent(50), 1, 2, SIMPLE) == percent(20)
    assert next_inflation(0, 1, 2, SIMPLE) == percent(5)


def test_no_supply_means_no_bonded_ratio() -> None:
    assert bonded_ratio(0, 0) == 0
    # Nothing bonded: the full 10% a year, 0.1% a block.
    assert next_inflation(TEN_PERCENT, 0, 0, SIMPLE) == 101_000_000_000_000_000


@given(
    current=st.integers(percent(5), percent(20)),
    bonded=st.integers(0, 10**15),
    extra=st.integers(0, 10**15),
)
def test_steering_direction_and_band(current: int, bonded: int, extra: int) -> None:
    supply = bonded + extra
    updated = next_inflation(current, bonded, supply, SIMPLE)
    assert percent(5) <= updated <= percent(20)
    ratio = bonded_ratio(bonded, supply)
    if ratio < SIMPLE.goal_bonded:
        assert updated >= current
    elif ratio > SIMPLE.goal_bonded:
        assert updated <= current
    else:
        assert updated == current


def test_block_provision_by_hand() -> None:
    # 1e9 supply at 10% a year over 100 blocks: 1e6 a block.
    assert block_provision(1_000_000_000, TEN_PERCENT, SIMPLE) == 1_000_000
    # 1,234,567 at 10% = 123,456.7 -> 123,456 a year -> 1,234 a block.
    assert block_provision(1_234_567, TEN_PERCENT, SIMPLE) == 1_234


def test_issuance_split_gives_the_dust_to_the_community_pool() -> None:
    params = Params(validator_reward_share=percent(60), provider_reward_share=percent(30))
    assert split_issuance(1_000, params) == IssuanceSplit(600, 300, 100)
    assert split_issuance(7, params) == IssuanceSplit(4, 2, 1)  # 4.2 and 2.1 truncated
    assert split_issuance(1, params) == IssuanceSplit(0, 0, 1)
    everything_to_validators = Params(validator_reward_share=DEC, provider_reward_share=0)
    assert split_issuance(999, everything_to_validators) == IssuanceSplit(999, 0, 0)


@given(st.integers(0, 10**18), st.integers(0, DEC), st.integers(0, DEC))
def test_issuance_split_adds_up(provision: int, validators: int, providers: int) -> None:
    if validators + providers > DEC:
        validators, providers = providers // 2, validators // 2
    split = split_issuance(
        provision, Params(validator_reward_share=validators, provider_reward_share=providers)
    )
    assert min(split.validators, split.providers, split.community) >= 0
    assert split.validators + split.providers + split.community == provision


def test_fee_split() -> None:
    assert split_fees(11, Params(fee_burn_share=percent(50))) == (5, 6)
    assert split_fees(11, Params(fee_burn_share=DEC)) == (11, 0)
    assert split_fees(11, Params(fee_burn_share=0)) == (0, 11)


def test_pro_rata_by_hand() -> None:
    assert pro_rata(10, [("a", 1), ("b", 2)]) == ([("a", 3), ("b", 6)], 1)
    assert pro_rata(10, [("a", 0), ("b", 5)]) == ([("b", 10)], 0)
    assert pro_rata(10, [("a", 0)]) == ([], 10)
    assert pro_rata(10, []) == ([], 10)
    assert pro_rata(0, [("a", 1)]) == ([], 0)


@given(
    st.integers(0, 10**18),
    st.lists(st.tuples(st.binary(min_size=1, max_size=4), st.integers(0, 10**12)), max_size=12),
)
def test_pro_rata_conserves_and_is_proportional(amount: int, weights: list[tuple[bytes, int]]) -> None:
    shares, dust = pro_rata(amount, weights)
    assert sum(share for _, share in shares) + dust == amount
    positive = [(k, w) for k, w in weights if w > 0]
    if amount == 0:
        assert (shares, dust) == ([], 0)
    elif positive:
        assert [k for k, _ in shares] == [k for k, _ in positive]  # order kept
        total = sum(w for _, w in positive)
        assert [s for _, s in shares] == [amount * w // total for _, w in positive]
        assert 0 <= dust < len(positive)
    else:
        assert dust == amount
