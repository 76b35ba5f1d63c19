"""Moving-inflation windows solved as int64 arrays equal the block-by-block loop, number for number.

``moving_rate.moving_provisions`` replaces the kernel's unchecked moving-inflation loop (the
inflation steps toward the bonded goal every block, no bound in reach) by the fixed point of
the whole recursion, with float estimates made exact through 64-bit wrapped remainders. These
tests compare it with that loop for random and real-scale supplies, stakes, rates and
parameters, on both sides of the goal, at the edges of its guards, and through ``kernel.span``
against the ledger's economics functions, counting that the array path is the one taken.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from math import gcd

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.econsim import kernel, moving_rate
from protocol.ledger.params import Params
from protocol.units import DCT, DEC, percent


def reduced(numerator: int, denominator: int) -> tuple[int, int]:
    divisor = gcd(numerator, denominator) or 1
    return numerator // divisor, denominator // divisor


def stepped(
    supply: int, inflation: int, bonded: int, params: Params, above: bool, blocks: int
) -> tuple[int, int, list[int]]:
    """The kernel's unchecked moving loop, written plainly (no clamp, floor divisions)."""
    goal_num, goal_den = reduced(DEC, params.goal_bonded)
    rate_num, rate_den = reduced(params.inflation_rate_change, DEC * params.blocks_per_year)
    provisions = []
    for _ in range(blocks):
        level = bonded * DEC // supply * goal_num // goal_den
        if above:
            inflation -= (level - DEC) * rate_num // rate_den
        else:
            inflation += (DEC - level) * rate_num // rate_den
        provision = supply * inflation // DEC // params.blocks_per_year
        provisions.append(provision)
        supply += provision
    return supply, inflation, provisions


def solve(
    supply: int, inflation: int, bonded: int, params: Params, above: bool, window: int
) -> tuple[int, int, list[int]] | None:
    solved = moving_rate.moving_provisions(
        supply,
        inflation,
        bonded * DEC,
        reduced(DEC, params.goal_bonded),
        reduced(params.inflation_rate_change, DEC * params.blocks_per_year),
        params.blocks_per_year,
        above,
        window,
    )
    return None if solved is None else (solved[0], solved[1], solved[2].tolist())


@st.composite
def real_scale(draw: st.DrawFn) -> tuple[int, int, int, Params, bool, int]:
    """Ledger-sized supplies and stakes, rates in whole basis points (as governance writes them):
    the windows must be solved. (A rate with 18 significant digits leaves a denominator past 64
    bits; ``test_any_solved_window_equals_the_loop`` covers those: refused or exact.)"""
    basis_point = DEC // 10_000
    params = Params(
        inflation_rate_change=draw(st.integers(min_value=1, max_value=5_000)) * basis_point,
        goal_bonded=draw(st.integers(min_value=100, max_value=10_000)) * basis_point,
        blocks_per_year=draw(st.sampled_from([6_311_520, 31_557_600])),
    )
    supply = draw(st.integers(min_value=10**6 * DCT, max_value=10**9 * DCT))
    bonded = draw(st.integers(min_value=0, max_value=supply))
    inflation = draw(st.integers(min_value=percent(1), max_value=percent(40)))
    above = bonded * DEC // supply * DEC // params.goal_bonded > DEC
    window = draw(st.integers(min_value=moving_rate.MIN_WINDOW, max_value=4_096))
    return supply, inflation, bonded, params, above, window


@settings(max_examples=30, deadline=None)
@given(real_scale())
def test_a_real_scale_window_is_solved_and_equals_the_loop(
    case: tuple[int, int, int, Params, bool, int],
) -> None:
    supply, inflation, bonded, params, above, window = case
    solved = solve(supply, inflation, bonded, params, above, window)
    assert solved is not None
    assert solved == stepped(supply, inflation, bonded, params, above, window)


@st.composite
def anything(draw: st.DrawFn) -> tuple[int, int, int, Params, bool, int]:
    """Any inputs, up to and past the guards (supplies near 2^60, rates of 100% a year, short
    years): when a window is solved it must be exact, otherwise None."""
    params = Params(
        inflation_rate_change=draw(st.integers(min_value=0, max_value=DEC)),
        goal_bonded=draw(st.integers(min_value=1, max_value=DEC)),
        blocks_per_year=draw(st.sampled_from([1_000, 100_000, 31_557_600])),
    )
    supply = draw(st.one_of(st.integers(1, 10**6), st.integers(1, 2**61), st.integers(2**59, 2**60 + 5)))
    bonded = draw(st.integers(min_value=0, max_value=supply))
    inflation = draw(st.integers(min_value=0, max_value=DEC))
    window = draw(st.integers(min_value=1, max_value=3_000))
    return supply, inflation, bonded, params, draw(st.booleans()), window


@settings(max_examples=100, deadline=None)
@given(anything())
def test_any_solved_window_equals_the_loop(case: tuple[int, int, int, Params, bool, int]) -> None:
    supply, inflation, bonded, params, above, window = case
    solved = solve(supply, inflation, bonded, params, above, window)
    if solved is not None:
        assert solved == stepped(supply, inflation, bonded, params, above, window)


def test_inputs_past_the_guards_are_refused() -> None:
    params = Params(blocks_per_year=31_557_600)
    assert solve(2**60, percent(13), 2**59, params, False, 4_096) is None  # supply past 2^60
    assert solve(0, percent(13), 0, params, False, 4_096) is None  # nothing to divide by
    assert solve(10**17, percent(13), 3 * 10**16, params, False, 0) is None  # no blocks
    assert solve(2**59, 16 * DEC, 2**58, params, False, 4_096) is None  # S * I / DEC past 2^62
    # A 300% rate still fits: solved, and exact.
    assert solve(10**17, 3 * DEC, 3 * 10**16, params, False, 4_096) == stepped(
        10**17, 3 * DEC, 3 * 10**16, params, False, 4_096
    )


@pytest.fixture
def windows_taken(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The blocks solved by moving_rate windows during a test."""
    solved_blocks = [0]
    original = moving_rate.moving_provisions

    def counting(*args: object) -> object:
        result = original(*args)  # type: ignore[arg-type]
        if result is not None:
            solved_blocks[0] += len(result[2])
        return result

    monkeypatch.setattr(moving_rate, "moving_provisions", counting)
    yield solved_blocks


@pytest.mark.parametrize(
    ("bonded_share", "inflation", "rate_change"),
    [
        (30, percent(19), percent(13)),  # below the goal: rises to the maximum mid-span, pinned
    ],
)
def test_a_span_through_the_windows_equals_the_per_block_functions(
    windows_taken: list[int], bonded_share: int, inflation: int, rate_change: int
) -> None:
    """``kernel.span`` over a day and a half of one-second blocks, where the moving windows
    carry most of the moving blocks, against the ledger's economics functions."""
    params = Params(blocks_per_year=1_000_000, inflation_rate_change=rate_change)
    supply = 100_000_000 * DCT + 12_345
    bonded = supply * bonded_share // 100
    blocks = 130_000
    fast = kernel.span(supply, bonded, inflation, [bonded // 2, bonded - bonded // 2], params, blocks)
    reference = kernel.span_by_functions(
        supply, bonded, inflation, [bonded // 2, bonded - bonded // 2], params, blocks
    )
    assert fast.exact_by == "kernel"
    assert dataclasses.replace(fast, exact_by="functions") == reference
    assert windows_taken[0] >= moving_rate.MIN_WINDOW
