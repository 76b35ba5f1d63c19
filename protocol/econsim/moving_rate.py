"""Many blocks of moving inflation, as whole int64 arrays, exactly.

While the bonded ratio sits on one side of the goal and no bound can bind (the kernel's
"unchecked" blocks), each empty block does, with Python's floor division (``kernel._moving_run``)::

    r = floor(Bs / S)                      (Bs = bonded * DEC: the bonded ratio)
    f = floor(r * gn / gd)                 (gn / gd = DEC / goal, reduced)
    I <- I + floor((DEC - f) * rn / rd)    below the goal    (rn / rd = rate change / (DEC * bpy))
    I <- I - floor((f - DEC) * rn / rd)    above it
    p = floor(floor(S * I / DEC) / bpy);  S <- S + p

The products reach 2^120, past int64. Every quantity is instead written as an offset from the
window's first block, whose big parts are divided once in Python ints: with ``S = S0 + T``,
``Bs = r0 * S0 + e0``, ``r0 * gn = A * gd + alpha``, ``C0 * rn = F * rd + phi`` and
``S0 * I0 = U0 * DEC + pi``::

    r = r0 - k,  k = ceil((r0 * T - e0) / S)
    f = A - j,   j = ceil((k * gn - alpha) / gd)
    change = F + floor((phi + s * j * rn) / rd)     (C0, s) = (DEC - A, +1) below, (A - DEC, -1) above
    I = I0 + s * (sum of the changes so far)
    floor(S * I / DEC) = U0 + floor((pi + S0 * (I - I0) + T * I) / DEC)

``k`` and ``floor(Y / DEC)`` still divide numbers past 64 bits. Each is first estimated in float64
(its error is bounded below 2 units by the guards: the estimate's relative error is a few 2^-53
on values capped at 2^49, resp. inputs capped at 2^110), then made exact: the remainder of the
estimate is computed modulo 2^64 with wrapping uint64 products, which is the remainder itself
because the guards keep it inside int64 (``|remainder| < 3 * divisor < 2^63``), and the estimate
is corrected by ``floor(remainder / divisor)``. So every value below equals the loop's.

The supply depends on every earlier provision, so the window is solved as the fixed point of
the whole recursion, as in :mod:`protocol.econsim.constant_rate`: each block's provision depends
only on the provisions before it, so a provision sequence that the recursion maps onto itself is
the block-by-block one. Rounds start from a guess and repeat until nothing changes; the guards
are checked on every round's own values, so the final (checking) round is exact. A window that
leaves the guards, or does not settle in a few rounds, returns None and the caller steps its
blocks one by one.
"""

from __future__ import annotations

import numpy
import numpy.typing

from protocol.units import DEC

#: The most blocks solved as one window; smaller windows settle in fewer rounds.
MAX_WINDOW = 1 << 13
#: Below this many blocks the arrays cost more than the loop.
MIN_WINDOW = 2048
_ROUNDS = 8
_LIMIT = 2**62
#: Inputs to the float estimate of ``floor(Y / DEC)`` stay below this (its error then < 2 units).
_FLOAT_INPUT = 2**110
#: The float estimate of ``k`` stays below this (its error then < 1 unit).
_FLOAT_K = 2**49

Provisions = numpy.typing.NDArray[numpy.int64]
_Int64s = numpy.typing.NDArray[numpy.int64]


class _Window:
    """The window's constants (Python ints), from its first block's supply and inflation."""

    def __init__(
        self,
        supply: int,
        inflation: int,
        bonded_scaled: int,
        goal: tuple[int, int],
        rate: tuple[int, int],
        blocks_per_year: int,
        above: bool,
    ) -> None:
        self.supply, self.inflation, self.bpy = supply, inflation, blocks_per_year
        self.goal_num, self.goal_den = goal
        self.rate_num, self.rate_den = rate
        self.r0, self.e0 = divmod(bonded_scaled, supply)
        self.big_a, self.alpha = divmod(self.r0 * self.goal_num, self.goal_den)
        self.sign = -1 if above else 1
        start = self.big_a - DEC if above else DEC - self.big_a
        self.big_f, self.phi = divmod(start * self.rate_num, self.rate_den)
        self.u0, self.pi = divmod(supply * inflation, DEC)

    def fits(self, window: int) -> bool:
        """The constants the arrays hold fit int64 (the per-round guards check the rest)."""
        return (
            0 < self.supply < 2**60
            and 0 <= self.r0 < _LIMIT
            and 0 <= self.inflation < _LIMIT
            and 0 < self.goal_den < 2**61
            and abs(self.big_f) * window < _LIMIT
            and 0 <= self.u0 < _LIMIT
            and 0 < self.bpy < _LIMIT
        )


def _wrap(value: int) -> numpy.uint64:
    """``value`` modulo 2^64 as a uint64 scalar (for products that wrap)."""
    return numpy.uint64(value % 2**64)


def _floor_div(factor: int, values: _Int64s, most: int, offset: int, divisor: int) -> _Int64s | None:
    """``floor((factor * values + offset) / divisor)`` exactly (``divisor`` positive, ``most``
    at least every ``|value|``), or None when no exact int64 route applies: directly when the
    products fit; by thresholds when the divisor exceeds every product (the quotient of the
    remainder part is then -1, 0 or 1); else by a float estimate corrected through its exact
    wrapped remainder (the quotient under 2^50, the divisor under 2^61: error below 2 units,
    remainder inside int64)."""
    spread = abs(factor) * most
    if most == 0:  # every value is 0 (the factor may not even fit int64)
        constant = offset // divisor
        return numpy.full(len(values), constant, dtype=numpy.int64) if abs(constant) < _LIMIT else None
    if spread + abs(offset) < _LIMIT and divisor < _LIMIT:
        return (values * factor + offset) // divisor
    if spread < _LIMIT <= divisor:
        whole, rest = divmod(offset, divisor)  # floor((f*x + rest) / d), |f*x| < d, 0 <= rest < d
        products = values * factor
        result = (products >= min(divisor - rest, _LIMIT)).astype(numpy.int64)
        result -= products < max(-rest, -_LIMIT)
        result += whole
        return result
    if divisor >= 2**61 or spread + abs(offset) >= _FLOAT_INPUT or (spread + abs(offset)) // divisor >= 2**50:
        return None
    estimate = numpy.floor((float(factor) * values.astype(numpy.float64) + float(offset)) / float(divisor))
    quotient = estimate.astype(numpy.int64)
    remainder = (
        _wrap(factor) * values.view(numpy.uint64)
        + _wrap(offset)
        - quotient.view(numpy.uint64) * _wrap(divisor)
    ).view(numpy.int64)
    quotient += remainder // divisor
    return quotient


def _round(w: _Window, provisions: Provisions) -> tuple[Provisions, int] | None:
    """One application of the recursion to a guessed provision sequence: the provisions it
    implies and the last block's inflation, exactly, or None when a guard fails (the values
    could leave the exact range)."""
    count = len(provisions)
    before = numpy.cumsum(provisions) - provisions  # T: minted in the window before each block
    if int(before[-1]) + w.supply >= 2**61 or int(provisions.min()) < 0:
        return None
    supply = before + w.supply
    supply_u = supply.view(numpy.uint64)
    # k = ceil((r0 * T - e0) / S): estimate, exact remainder modulo 2^64, correct.
    estimate = float(w.r0) * before.astype(numpy.float64) / supply.astype(numpy.float64)
    if float(estimate.max()) >= _FLOAT_K:
        return None
    k = numpy.ceil(estimate).astype(numpy.int64)
    remainder = (
        _wrap(w.r0) * before.view(numpy.uint64) - _wrap(w.e0) - k.view(numpy.uint64) * supply_u
    ).view(numpy.int64)
    k -= (-remainder) // supply  # + ceil(remainder / S)
    if int(k.min()) < 0:
        return None
    level_drop = _floor_div(-w.goal_num, k, int(k.max()), w.alpha, w.goal_den)  # -j: f = A - j
    if level_drop is None:
        return None
    change = _floor_div(-w.sign * w.rate_num, level_drop, -int(level_drop.min()), w.phi, w.rate_den)
    if change is None:
        return None
    change += w.big_f
    if max(abs(int(change.min())), abs(int(change.max()))) * count + w.inflation >= _LIMIT:
        return None
    moved = numpy.cumsum(change)
    if w.sign < 0:
        numpy.negative(moved, out=moved)
    inflation = moved + w.inflation
    moved_most = max(abs(int(moved.min())), abs(int(moved.max())))
    inflation_most = max(abs(int(inflation.min())), abs(int(inflation.max())))
    if w.pi + w.supply * moved_most + int(before[-1]) * inflation_most >= _FLOAT_INPUT:
        return None
    # floor(Y / DEC) with Y = pi + S0 * (I - I0) + T * I: estimate, exact remainder, correct.
    guess = numpy.floor(
        (
            float(w.pi)
            + float(w.supply) * moved.astype(numpy.float64)
            + before.astype(numpy.float64) * inflation.astype(numpy.float64)
        )
        / float(DEC)
    ).astype(numpy.int64)
    remainder = (
        _wrap(w.pi)
        + _wrap(w.supply) * moved.view(numpy.uint64)
        + before.view(numpy.uint64) * inflation.view(numpy.uint64)
        - guess.view(numpy.uint64) * _wrap(DEC)
    ).view(numpy.int64)
    guess += remainder // DEC
    guess += w.u0
    guess //= w.bpy
    return guess, int(inflation[-1])


def moving_provisions(
    supply: int,
    inflation: int,
    bonded_scaled: int,
    goal: tuple[int, int],
    rate: tuple[int, int],
    blocks_per_year: int,
    above: bool,
    window: int,
) -> tuple[int, int, Provisions] | None:
    """``window`` blocks of moving inflation from ``supply`` and ``inflation`` (before the first
    block's update): ``(supply after, inflation after, provisions)``, equal number for number to
    the loop in the module docstring; ``goal = (gn, gd)``, ``rate = (rn, rd)`` reduced as there,
    ``above`` the side of the bonded goal. The caller guarantees no bound or goal crossing is
    reached inside the window (the loop there has no clamp). None when the window cannot be
    solved exactly in 64 bits or does not settle (the caller steps the blocks one by one)."""
    if window < 1 or supply <= 0:
        return None
    constants = _Window(supply, inflation, bonded_scaled, goal, rate, blocks_per_year, above)
    if not constants.fits(window):
        return None
    guess = _first_guess(constants, window)
    for _ in range(_ROUNDS):
        applied = _round(constants, guess)
        if applied is None:
            return None
        solved, last_inflation = applied
        if numpy.array_equal(solved, guess):
            return supply + int(solved.sum()), last_inflation, solved
        guess = solved
    return None


def _first_guess(w: _Window, count: int) -> Provisions:
    """A float guess of the provisions (the supply and the inflation extrapolated linearly), so
    that the rounds start close to the fixed point; any guess gives the same exact result."""
    scale = float(DEC) * float(w.bpy)
    blocks = numpy.arange(count, dtype=numpy.float64)
    first = float(w.supply) * float(w.inflation + w.sign * w.big_f) / scale
    supply = blocks * first + float(w.supply)
    inflation = (blocks + 1.0) * float(w.sign * w.big_f) + float(w.inflation)
    return numpy.maximum(numpy.floor(supply * inflation / scale), 0.0).astype(numpy.int64)
