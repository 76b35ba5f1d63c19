"""The kernel's fast path equals the per-block step through the ledger's economics functions.

This is the proof obligation of "stepping in spans exactly": for random supplies, stakes,
inflations, parameters and validator powers, ``kernel.span`` over N blocks returns the same
numbers as N calls of ``next_inflation`` / ``block_provision`` / ``split_issuance`` /
``pro_rata`` (``kernel.span_by_functions``), and does it on the fast path (not the fallback).
The monotonicity the constant-inflation spans rely on is checked against ``next_inflation``
itself, and a deliberately changed rule must send the kernel to its fallback.
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import economics
from protocol.econsim import kernel
from protocol.ledger.params import Params
from protocol.units import DCT, DEC, percent

ratios = st.integers(min_value=0, max_value=DEC)


@st.composite
def params_strategy(draw: st.DrawFn) -> Params:
    low = draw(st.integers(min_value=0, max_value=percent(30)))
    high = draw(st.integers(min_value=low, max_value=percent(60)))
    validators = draw(ratios)
    providers = draw(st.integers(min_value=0, max_value=DEC - validators))
    return Params(
        inflation_min=low,
        inflation_max=high,
        inflation_rate_change=draw(ratios),
        goal_bonded=draw(st.integers(min_value=1, max_value=DEC)),
        blocks_per_year=draw(st.sampled_from([1_000, 10_000, 6_311_520, 31_557_600])),
        validator_reward_share=validators,
        provider_reward_share=providers,
    )


@st.composite
def spans(draw: st.DrawFn) -> tuple[int, int, int, list[int], Params, int]:
    params = draw(params_strategy())
    supply = draw(st.integers(min_value=0, max_value=10**9 * DCT))
    bonded = draw(st.integers(min_value=0, max_value=supply))
    inflation = draw(
        st.one_of(
            st.just(params.inflation_min),
            st.just(params.inflation_max),
            st.integers(min_value=params.inflation_min, max_value=params.inflation_max),
            # Outside the bounds: governance moved them past the current rate.
            st.integers(min_value=0, max_value=DEC),
        )
    )
    equal = draw(st.booleans())
    count = draw(st.integers(min_value=0, max_value=5))
    if equal and count:
        powers = [draw(st.integers(min_value=1, max_value=10**15))] * count
    else:
        powers = draw(st.lists(st.integers(min_value=1, max_value=10**15), min_size=count, max_size=count))
    blocks = draw(st.integers(min_value=0, max_value=400))
    return supply, bonded, inflation, powers, params, blocks


@settings(max_examples=300, deadline=None)
@given(spans())
def test_span_equals_the_per_block_functions(case: tuple[int, int, int, list[int], Params, int]) -> None:
    supply, bonded, inflation, powers, params, blocks = case
    fast = kernel.span(supply, bonded, inflation, powers, params, blocks)
    reference = kernel.span_by_functions(supply, bonded, inflation, powers, params, blocks)
    assert fast.exact_by == "kernel"
    assert dataclasses.replace(fast, exact_by="functions") == dataclasses.replace(reference, blocks=blocks)


def test_span_crosses_from_pinned_minimum_to_moving_and_to_the_maximum() -> None:
    """A long span that starts pinned at the minimum (above the goal), unpins as the supply grows
    past the bisected threshold, and climbs to the maximum: all three loops, one span."""
    params = Params(blocks_per_year=1_000, inflation_min=percent(5), inflation_max=percent(6))
    supply, bonded = 1_000 * DCT, 680 * DCT  # just above the 67% goal: the change is negative
    blocks = 60_000
    fast = kernel.span(supply, bonded, params.inflation_min, [bonded], params, blocks)
    reference = kernel.span_by_functions(supply, bonded, params.inflation_min, [bonded], params, blocks)
    assert fast.exact_by == "kernel"
    assert dataclasses.replace(fast, exact_by="functions") == reference
    assert fast.inflation == params.inflation_max


@settings(max_examples=300, deadline=None)
@given(params_strategy(), st.integers(min_value=1, max_value=10**27), st.data())
def test_inflation_change_never_decreases_as_supply_grows(
    params: Params, supply: int, data: st.DataObject
) -> None:
    """The property the constant-inflation spans rest on, checked on next_inflation itself."""
    bonded = data.draw(st.integers(min_value=0, max_value=supply))
    larger = data.draw(st.integers(min_value=supply, max_value=supply * 3))
    middle = (params.inflation_min + params.inflation_max) // 2
    for current in (params.inflation_min, middle, params.inflation_max):
        assert economics.next_inflation(current, bonded, larger, params) >= economics.next_inflation(
            current, bonded, supply, params
        )


def test_a_changed_rule_sends_the_kernel_to_the_functions(monkeypatch: pytest.MonkeyPatch) -> None:
    """If protocol/economics.py changes under the kernel, results still follow the functions."""
    original = economics.block_provision

    def doubled(supply: int, inflation: int, params: Params, *, issued: int | None = None) -> int:
        return 2 * original(supply, inflation, params, issued=issued)

    monkeypatch.setattr(economics, "block_provision", doubled)
    params = Params(blocks_per_year=10_000)
    result = kernel.span(10**6 * DCT, 3 * 10**5 * DCT, params.inflation_max, [10**5 * DCT] * 3, params, 500)
    reference = kernel.span_by_functions(
        10**6 * DCT, 3 * 10**5 * DCT, params.inflation_max, [10**5 * DCT] * 3, params, 500
    )
    assert result.exact_by == "functions"
    assert result == reference
    assert result.minted == 2 * sum(
        original(s, params.inflation_max, params) for s in _supplies(10**6 * DCT, params, 500, doubled)
    )


def _supplies(supply: int, params: Params, blocks: int, provision: object) -> list[int]:
    """The supply before each block under the doubled rule (to check the fallback's minting)."""
    out = []
    for _ in range(blocks):
        out.append(supply)
        supply += provision(supply, params.inflation_max, params)  # type: ignore[operator]
    return out


def test_zero_blocks_change_nothing() -> None:
    result = kernel.span(10**6, 10**5, percent(10), [1, 2], Params(), 0)
    assert (result.minted, result.community, result.provider_pool, result.validator_rewards) == (
        0,
        0,
        0,
        (0, 0),
    )
    assert result.supply == 10**6 and result.inflation == percent(10)


@pytest.mark.parametrize(
    ("inflation", "bonded_share", "powers"),
    [
        (percent(20), 30, "equal"),  # pinned at the maximum: the unrolled constant loop
        (percent(13), 30, "equal"),  # moving up every block
        (percent(13), 80, "equal"),  # moving down (above the goal)
        (percent(13), 30, "unequal"),  # per-validator shares over arrays
        (percent(13), 30, "huge"),  # weights too wide for 64-bit products: split in Python ints
    ],
)
def test_a_long_real_scale_span_equals_the_per_block_functions(
    inflation: int, bonded_share: int, powers: str
) -> None:
    """The stepped path (provisions in a tight loop, their split summed over int64 arrays)
    against the per-block functions, over a day and a half of one-second blocks."""
    params = Params(blocks_per_year=31_557_600)
    supply = 100_000_000 * DCT
    bonded = supply * bonded_share // 100
    weights = {
        "equal": [bonded // 4] * 4,
        "unequal": [5 * (bonded // 10), 3 * (bonded // 10), 2 * (bonded // 10)],
        "huge": [2**62 + 1, 3, 2**61 + 7],
    }[powers]
    blocks = 130_000
    fast = kernel.span(supply, bonded, inflation, weights, params, blocks)
    reference = kernel.span_by_functions(supply, bonded, inflation, weights, params, blocks)
    assert fast.exact_by == "kernel"
    assert dataclasses.replace(fast, exact_by="functions") == reference


def test_a_provision_beyond_64_bits_is_stepped_by_the_functions_exactly() -> None:
    params = Params(blocks_per_year=1, inflation_min=percent(50), inflation_max=percent(100))
    supply = 2**80  # no ledger holds this; the kernel's arrays cannot either
    result = kernel.span(supply, 0, percent(100), [1, 1], params, 5)
    assert result.exact_by == "functions"
    assert result == kernel.span_by_functions(supply, 0, percent(100), [1, 1], params, 5)
