"""The kernel's array and above-goal paths equal block-by-block stepping, number for number.

``constant_rate`` solves a window of constant-rate blocks as the fixed point of the carry
recursion; ``kernel._above_goal`` steps falling inflation without re-checking the goal each
block. Both must give exactly the integers of the plain loop / the ledger's economics
functions: for random rates, supplies and windows, across the boundaries where the rate
changes (the goal crossed, the minimum or maximum reached), and must actually be the path taken
(each test counts it), so a deviation in either fails here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from math import gcd

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.econsim import constant_rate, kernel
from protocol.ledger.params import Params
from protocol.units import DCT, DEC, percent


def stepped(supply: int, num: int, den: int, blocks: int) -> tuple[int, list[int]]:
    provisions = []
    for _ in range(blocks):
        provision = supply * num // den
        supply += provision
        provisions.append(provision)
    return supply, provisions


@st.composite
def windows(draw: st.DrawFn) -> tuple[int, int, int, int]:
    window = draw(st.integers(min_value=constant_rate.MIN_WINDOW, max_value=3_000))
    num = draw(st.integers(min_value=0, max_value=5_000))
    den = draw(st.integers(min_value=max(1, 64 * window * num), max_value=2**62))
    divisor = gcd(num, den) or 1
    num, den = num // divisor, den // divisor
    ceiling = (2**63 - 1) // max(num, 1) * 31 // 32 - 1
    supply = draw(st.one_of(st.integers(0, 10**6), st.integers(0, ceiling), st.just(max(ceiling, 0))))
    return supply, num, den, window


@settings(max_examples=300, deadline=None)
@given(windows())
def test_a_window_equals_the_loop(case: tuple[int, int, int, int]) -> None:
    supply, num, den, window = case
    assert constant_rate.window_for(supply, num, den, window) == window
    solved = constant_rate.constant_rate_provisions(supply, num, den, window)
    assert solved is not None
    after, provisions = solved
    assert (after, provisions.tolist()) == stepped(supply, num, den, window)


@pytest.mark.parametrize(
    ("inflation", "blocks_per_year"),
    [(percent(7), 31_557_600), (percent(20), 31_557_600), (percent(13), 6_311_520), (DEC, 100_000)],
)
def test_a_day_of_real_rates_equals_the_loop(inflation: int, blocks_per_year: int) -> None:
    scale = DEC * blocks_per_year
    divisor = gcd(inflation, scale)
    num, den = inflation // divisor, scale // divisor
    supply, provisions, blocks = 10**8 * DCT + 12_345, [], 86_400
    after = supply
    while len(provisions) < blocks:
        window = constant_rate.window_for(after, num, den, blocks - len(provisions))
        assert window > 0
        solved = constant_rate.constant_rate_provisions(after, num, den, window)
        assert solved is not None
        after, chunk = solved
        provisions.extend(chunk.tolist())
    assert (after, provisions) == stepped(supply, num, den, blocks)


def test_windows_that_could_leave_64_bits_are_refused() -> None:
    assert constant_rate.window_for(2**62, 7, 3_155_760_000, 10_000) == 0  # supply * rate too large
    assert constant_rate.window_for(10**17, 1, 2**64, 10_000) == 0  # the denominator
    assert constant_rate.window_for(10**17, 1, 1_000, 10_000) == 0  # grows too fast to bound
    assert constant_rate.window_for(10**17, 7, 3_155_760_000, constant_rate.MIN_WINDOW - 1) == 0
    assert constant_rate.constant_rate_provisions(2**62, 7, 3_155_760_000, 1_000) is None


@pytest.fixture
def taken(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, int]]:
    """How many blocks each fast path solved during a test."""
    counts = {"windows": 0, "above_goal": 0}
    solve, above = constant_rate.constant_rate_provisions, kernel._above_goal

    def counting_solve(supply: int, num: int, den: int, window: int) -> object:
        solved = solve(supply, num, den, window)
        counts["windows"] += window if solved is not None else 0
        return solved

    def counting_above(*args: object) -> tuple[int, int, int]:
        result = above(*args)  # type: ignore[arg-type]
        counts["above_goal"] += result[2]
        return result

    monkeypatch.setattr(constant_rate, "constant_rate_provisions", counting_solve)
    monkeypatch.setattr(kernel, "_above_goal", counting_above)
    yield counts


@st.composite
def around_the_goal(draw: st.DrawFn) -> tuple[int, int, int, list[int], Params, int]:
    """Spans that start near the bonded goal, so they cross it, reach a bound, and sit there."""
    low = draw(st.integers(min_value=0, max_value=percent(10)))
    params = Params(
        inflation_min=low,
        inflation_max=draw(st.integers(min_value=low, max_value=percent(40))),
        inflation_rate_change=draw(st.integers(min_value=0, max_value=DEC)),
        goal_bonded=draw(st.integers(min_value=percent(1), max_value=DEC)),
        blocks_per_year=draw(st.sampled_from([10_000, 100_000, 1_000_000])),
    )
    supply = draw(st.integers(min_value=1, max_value=10**9 * DCT))
    goal_stake = supply * params.goal_bonded // DEC
    bonded = min(supply, max(0, goal_stake + draw(st.integers(-supply // 1_000, supply // 50))))
    inflation = draw(st.integers(min_value=0, max_value=percent(50)))
    powers = draw(st.lists(st.integers(min_value=1, max_value=10**15), min_size=1, max_size=4))
    blocks = draw(st.integers(min_value=0, max_value=2_500))
    return supply, bonded, inflation, powers, params, blocks


@settings(max_examples=120, deadline=None)
@given(around_the_goal())
def test_spans_across_the_goal_and_the_bounds_equal_the_functions(
    case: tuple[int, int, int, list[int], Params, int],
) -> None:
    supply, bonded, inflation, powers, params, blocks = case
    fast = kernel.span(supply, bonded, inflation, powers, params, blocks)
    reference = kernel.span_by_functions(supply, bonded, inflation, powers, params, blocks)
    assert fast.exact_by == "kernel"
    assert dataclasses.replace(fast, exact_by="functions") == reference


def test_a_span_falls_across_the_goal_to_the_minimum_through_both_fast_paths(taken: dict[str, int]) -> None:
    """Above the goal the inflation falls (the above-goal loop) to the minimum, where the array
    windows take over; the supply's growth then carries the ratio below the goal, unpinning it."""
    params = Params(
        blocks_per_year=10_000,
        inflation_min=percent(5),
        inflation_max=percent(30),
        inflation_rate_change=DEC,
        goal_bonded=percent(67),
    )
    supply = 10**8 * DCT
    bonded = supply * 8 // 10  # above the goal until the supply has grown by a fifth
    blocks = 40_000
    fast = kernel.span(supply, bonded, percent(6), [bonded], params, blocks)
    reference = kernel.span_by_functions(supply, bonded, percent(6), [bonded], params, blocks)
    assert fast.exact_by == "kernel"
    assert dataclasses.replace(fast, exact_by="functions") == reference
    assert taken["above_goal"] > 0 and taken["windows"] > 0
    assert fast.inflation > params.inflation_min  # unpinned: the ratio fell below the goal


@pytest.mark.parametrize("bonded_share", [percent(20), percent(90)])  # below / above the goal
@pytest.mark.parametrize("inflation", [percent(1), percent(50)])  # below the minimum / above the maximum
@pytest.mark.parametrize("rate_change", [0, 1, percent(13)])
def test_an_inflation_outside_the_bounds_is_clamped_on_the_first_block(
    bonded_share: int, inflation: int, rate_change: int
) -> None:
    """Governance moved the bounds past the current rate: the first block clamps it, even when
    the rate would not move it at all (the unchecked runs must not skip that)."""
    params = Params(
        blocks_per_year=100_000,
        inflation_min=percent(5),
        inflation_max=percent(30),
        inflation_rate_change=rate_change,
    )
    supply = 10**8 * DCT
    bonded = supply * bonded_share // DEC
    fast = kernel.span(supply, bonded, inflation, [bonded], params, 3_000)
    reference = kernel.span_by_functions(supply, bonded, inflation, [bonded], params, 3_000)
    assert fast.exact_by == "kernel"
    assert dataclasses.replace(fast, exact_by="functions") == reference


@pytest.mark.parametrize("blocks", [2, 5_000, 20_000, 31_250])
def test_a_pinned_rate_that_unpins_inside_a_short_fast_span_is_followed(blocks: int) -> None:
    """A span short enough for the one-check shortcut (``64 * blocks * rate <= 1``) in which the
    supply's growth carries the bonded ratio below the goal: the minimum unpins mid-span."""
    params = Params(
        blocks_per_year=100_000,
        inflation_min=percent(5),
        inflation_max=percent(30),
        inflation_rate_change=DEC,
        goal_bonded=percent(67),
    )
    supply = 10**8 * DCT
    bonded = supply * 67 * 1_002 // 100_000  # 0.2% above the goal: crossed after 0.2% growth
    fast = kernel.span(supply, bonded, params.inflation_min, [bonded], params, blocks)
    reference = kernel.span_by_functions(supply, bonded, params.inflation_min, [bonded], params, blocks)
    assert fast.exact_by == "kernel"
    assert dataclasses.replace(fast, exact_by="functions") == reference
    assert (fast.inflation > params.inflation_min) == (blocks >= 5_000)
