"""Stepping many empty blocks at once, exactly as the ledger would apply them one by one.

A block without transactions, evidence, unbonding releases, governance tallies or a provider
payout does only one thing in :func:`protocol.ledger.block.apply_block`: the end-block issuance.
Per block, with the supply ``S`` (after the previous block), the bonded stake ``B`` and the
inflation ``I``::

    I  <- economics.next_inflation(I, B, S)         (moves toward the bonded goal, clamped)
    p   = economics.block_provision(S, I)            (minted)
    v, r, c = economics.split_issuance(p)             (validators, provider pool, community)
    m, a = mul_ratio(p, mining share), mul_ratio(p, availability share)
                                                     (out of c: liquidity mining's and standing
                                                      offers' pots, or c when none is bonded/stands)
    shares, dust = economics.pro_rata(v, powers)     (credited to the validators; dust to community)
    S  <- S + p

There is no closed form for many such blocks: ``S <- S + floor(S * I / (DEC * blocks_per_year))``
is a Mahler-type floor recursion, and every later truncation depends on every earlier one, so
no formula jumps N blocks. What this module does is make each step cheap, or solve many steps
at once where their integers can be checked at once, without changing a single result:

- **Constant inflation spans.** ``next_inflation``'s change is a non-decreasing function of the
  supply for a fixed bonded stake (every operation in it is monotone; ``test_econsim_kernel``
  checks it). So once inflation sits at ``inflation_max`` with a non-negative change it stays
  there for the rest of the span, and at ``inflation_min`` (or an interior value with zero
  change) it stays until the supply passes a threshold found by bisection *with the ledger's
  own* ``next_inflation`` as the predicate. Inside such a span the inflation update is skipped.
  When the span is short enough that the supply provably stays below ``S + S // 32 + 1``, one
  ``next_inflation`` call at that bound replaces the bisection (kept at both ends of a
  monotone change is kept in between).
- **Array windows at a constant rate.** :mod:`protocol.econsim.constant_rate` solves up to
  2**17 constant-rate blocks as int64 arrays: the provisions are the unique fixed point of a
  causal carry recursion, reached from below and checked (a sequence the recursion maps onto
  itself is the block-by-block one); windows that could leave 64 bits take the loop.
- **Moving inflation without checks.** Above the bonded goal the inflation only falls, by at
  most its first block's fall, until the supply reaches the (closed-form, re-checked) supply
  where the ratio crosses the goal; below it, it rises by at most ``DEC * rate`` a block. So
  the blocks that cannot reach a bound or the goal are stepped without testing for them, and
  :mod:`protocol.econsim.moving_rate` solves runs of them as int64 array windows (every product
  written as an offset from the window's first block; float estimates made exact by wrapped
  64-bit remainders; the same fixed point as the constant-rate windows). A window outside its
  guards is stepped by the loop.
- **Reduced fractions.** ``floor(floor(S*I/DEC)/bpy) == floor(S*I/(DEC*bpy)) == floor(S*a/b)``
  with ``a/b`` the reduced fraction (true for non-negative integers), and likewise for the
  split ratios and the validator powers: the same integers, computed on smaller numbers.
- **Equal powers.** When every rewarded validator has the same power, ``pro_rata`` gives each
  ``floor(v / K)``: one division per block instead of K.

Two guards keep the fast path honest. Each call re-derives its first block with the ledger's
functions (``next_inflation``, ``block_provision``, ``split_issuance``, ``pro_rata``) and
compares every number; on any difference (someone changed the rules in ``protocol/economics.py``)
the span is recomputed block by block through those functions and the result says so
(``exact_by="functions"``), so a rule change flows into the simulator, only slower, and the
kernel tests fail until the fast path follows. Changes to the *structure* of end-block (who gets
what) are caught by :func:`protocol.econsim.chain.SimChain`'s self-check against ``apply_block``.

Attacks: none from outside; the inputs are the simulator's own state. Every loop is bounded by
the block count it is given.
"""

from __future__ import annotations

import dataclasses
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from math import gcd

import numpy

from protocol import economics
from protocol.econsim import constant_rate, moving_rate
from protocol.ledger.params import Params
from protocol.units import DEC


@dataclass(frozen=True, slots=True)
class SpanResult:
    """What ``blocks`` empty blocks did, in total."""

    blocks: int
    supply: int
    inflation: int
    minted: int
    #: Added to the community pool: the split's remainder plus the validators' pro-rata dust.
    community: int
    provider_pool: int
    #: Credited to each rewarded validator, in the order of the ``powers`` given.
    validator_rewards: tuple[int, ...]
    #: The validators' part of the issuance before the pro-rata split (its dust is in
    #: ``community``); positive means ``apply_block`` credited every positive power, even by 0.
    validator_issuance: int
    #: ``"kernel"`` (the fast path, checked on its first block) or ``"functions"`` (the rules
    #: in protocol/economics.py changed under the fast path; computed block by block with them).
    exact_by: str = "kernel"
    #: Liquidity mining's and standing offers' shares of the issuance (``mul_ratio`` of each
    #: block's provision, summed), already counted in ``community``: end-block moves them out of
    #: the community pool's part into their pots when something is bonded / an offer stands.
    mining: int = 0
    availability: int = 0


def _reduced(numerator: int, denominator: int) -> tuple[int, int]:
    g = gcd(numerator, denominator)
    return (numerator // g, denominator // g) if g else (0, 1)


def span_by_functions(
    supply: int,
    bonded: int,
    inflation: int,
    powers: Sequence[int],
    params: Params,
    blocks: int,
    *,
    issued: int | None = None,
) -> SpanResult:
    """``blocks`` empty blocks, one at a time, through the ledger's own economics functions.
    ``issued`` is the genesis supply plus everything minted so far (the supply when not given),
    which caps issuance at ``economics.MAX_ISSUANCE``.

    The reference the fast path is proven against, and its fallback. Raises nothing.
    """
    keyed = [(index, power) for index, power in enumerate(powers)]
    rewards = [0] * len(powers)
    minted = community = provider_pool = validator_issuance = to_mining = to_availability = 0
    issued_before = supply if issued is None else issued
    for _ in range(blocks):
        inflation = economics.next_inflation(inflation, bonded, supply, params)
        provision = economics.block_provision(supply, inflation, params, issued=issued_before + minted)
        split = economics.split_issuance(provision, params)
        shares, dust = economics.pro_rata(split.validators, keyed)
        for index, share in shares:
            rewards[index] += share
        supply += provision
        minted += provision
        community += split.community + dust
        provider_pool += split.providers
        validator_issuance += split.validators
        to_mining += economics.mul_ratio(provision, params.liquidity_mining_share)
        to_availability += economics.mul_ratio(provision, params.availability_share)
    return SpanResult(
        blocks,
        supply,
        inflation,
        minted,
        community,
        provider_pool,
        tuple(rewards),
        validator_issuance,
        "functions",
        to_mining,
        to_availability,
    )


def _constant_until(inflation: int, bonded: int, supply: int, params: Params) -> int | None:
    """The largest supply up to which ``next_inflation`` keeps ``inflation`` unchanged, given it
    does at ``supply``; None when it does for every larger supply (pinned at the maximum).

    Sound because the change is non-decreasing in the supply (see the module docstring).
    """
    if inflation == params.inflation_max:
        return None

    def keeps(candidate: int) -> bool:
        return economics.next_inflation(inflation, bonded, candidate, params) == inflation

    low, high = supply, max(supply * 2, supply + 1)
    while keeps(high):
        low, high = high, high * 2
        if high > 2**200:  # unreachable for amounts that fit the ledger; bounds the loop
            return None
    while high - low > 1:
        middle = (low + high) // 2
        if keeps(middle):
            low = middle
        else:
            high = middle
    return low


def _keeps_to_the_end(
    inflation: int, bonded: int, supply: int, params: Params, num: int, den: int, blocks: int
) -> bool:
    """Whether ``inflation`` (kept at ``supply``) provably stays for all ``blocks``: when
    ``64 * blocks * num <= den`` the supply stays at most ``supply + supply // 32 + 1`` (it grows
    at most by ``(1 + num/den) ** blocks <= exp(1/64)``), and ``next_inflation`` keeping the rate
    there too keeps it everywhere in between (the change is non-decreasing in the supply, so
    kept at both ends is kept between, whether at a bound or inside them). Saves the bisection
    of :func:`_constant_until` for most spans."""
    if 64 * blocks * num > den:
        return False
    return economics.next_inflation(inflation, bonded, supply + supply // 32 + 1, params) == inflation


class _RulesChanged(Exception):
    """The inlined arithmetic no longer matches protocol/economics.py."""


class _TooLarge(Exception):
    """A provision beyond 64 bits: no ledger holds it; the functions step such a span."""


class _Fast:
    """The fast path's constants for one span (reduced fractions, weights)."""

    def __init__(self, powers: Sequence[int], params: Params) -> None:
        self.params = params
        self.val_num, self.val_den = _reduced(params.validator_reward_share, DEC)
        self.prov_num, self.prov_den = _reduced(params.provider_reward_share, DEC)
        self.mining_num, self.mining_den = _reduced(params.liquidity_mining_share, DEC)
        self.avail_num, self.avail_den = _reduced(params.availability_share, DEC)
        positive = [power for power in powers if power > 0]
        common = 0
        for power in positive:
            common = gcd(common, power)
        self.weights = [power // common if power > 0 else 0 for power in powers] if common else []
        self.total_weight = sum(self.weights)
        self.equal = bool(positive) and len(positive) == len(powers) and all(w == 1 for w in self.weights)


def span(
    supply: int,
    bonded: int,
    inflation: int,
    powers: Sequence[int],
    params: Params,
    blocks: int,
    *,
    issued: int | None = None,
) -> SpanResult:
    """``blocks`` empty blocks from (``supply``, ``bonded``, ``inflation``), rewarded validators
    with ``powers``; equal, number for number, to :func:`span_by_functions`. Raises nothing.

    The fast path ignores the issuance cap: its result is used only when the span stays below
    the cap (then the cap never bound, as issuance only grows); otherwise the span is stepped
    through the functions."""
    if blocks <= 0:
        return SpanResult(0, supply, inflation, 0, 0, 0, tuple(0 for _ in powers), 0)
    issued_before = supply if issued is None else issued
    reference = span_by_functions(supply, bonded, inflation, powers, params, 1, issued=issued_before)
    fast = _Fast(powers, params)
    try:
        if (
            dataclasses.replace(_fast_blocks(fast, supply, bonded, inflation, 1), exact_by="functions")
            == reference
        ):
            result = _fast_blocks(fast, supply, bonded, inflation, blocks)
            if issued_before + result.minted <= economics.MAX_ISSUANCE:
                return result
    except (_RulesChanged, _TooLarge):
        pass
    return span_by_functions(supply, bonded, inflation, powers, params, blocks, issued=issued_before)


def _fast_blocks(fast: _Fast, supply: int, bonded: int, inflation: int, blocks: int) -> SpanResult:
    """The fast path. Each block's provision is found in a tight loop (the supply recursion
    cannot be jumped: see the module docstring) and collected; the split of the provisions
    (validators, provider pool, each validator's pro-rata share) is summed afterwards, over
    arrays (:func:`_split_totals`). Raises _RulesChanged, or _TooLarge for provisions above the
    64-bit range the arrays hold (then the caller steps the span through the functions)."""
    params = fast.params
    provisions = array("q")
    start_supply = supply
    done = 0
    scale = DEC * params.blocks_per_year
    try:
        while done < blocks:
            if economics.next_inflation(inflation, bonded, supply, params) == inflation:
                num, den = _reduced(inflation, scale)
                if _keeps_to_the_end(inflation, bonded, supply, params, num, den, blocks - done):
                    supply = _constant_run(supply, num, den, blocks - done, provisions)
                    done = blocks
                    continue
                limit = _constant_until(inflation, bonded, supply, params)
                # Constant inflation while supply <= limit (None: for good). Before each block
                # the supply is at most supply + j * most (most: the provision at the limit), so
                # the next (limit - supply) // most + 1 blocks need no check; then look again.
                while done < blocks and (limit is None or supply <= limit):
                    if limit is None:
                        run = blocks - done
                    else:
                        most = limit * num // den
                        run = min(blocks - done, (limit - supply) // most + 1 if most else blocks - done)
                    supply = _constant_run(supply, num, den, run, provisions)
                    done += run
                continue
            supply, inflation, steps = _moving_run(fast, supply, bonded, inflation, blocks - done, provisions)
            done += steps
    except OverflowError:
        raise _TooLarge from None
    validator_total, provider_total, rewards, liquidity = _split_totals(fast, provisions)
    minted = supply - start_supply
    paid = sum(rewards)
    community = minted - validator_total - provider_total + (validator_total - paid)
    return SpanResult(
        blocks,
        supply,
        inflation,
        minted,
        community,
        provider_total,
        rewards,
        validator_total,
        "kernel",
        *liquidity,
    )


def _constant_run(supply: int, num: int, den: int, blocks: int, provisions: array[int]) -> int:
    """``blocks`` blocks at the constant rate ``num / den`` per block: appends each provision,
    returns the supply after them. Whole windows are solved as arrays where they fit 64 bits
    (:mod:`protocol.econsim.constant_rate`: the same integers); the rest is the loop, unrolled
    by four (the interpreter's per-iteration cost is a good part of a block's)."""
    while blocks > 0:
        window = constant_rate.window_for(supply, num, den, blocks)
        solved = constant_rate.constant_rate_provisions(supply, num, den, window) if window else None
        if solved is None:
            break
        supply, chunk = solved
        provisions.frombytes(chunk.tobytes())
        blocks -= window
    collect = provisions.append
    for _ in range(blocks >> 2):
        provision = supply * num // den
        supply += provision
        collect(provision)
        provision = supply * num // den
        supply += provision
        collect(provision)
        provision = supply * num // den
        supply += provision
        collect(provision)
        provision = supply * num // den
        supply += provision
        collect(provision)
    for _ in range(blocks & 3):
        provision = supply * num // den
        supply += provision
        collect(provision)
    return supply


def _moving_run(
    fast: _Fast, supply: int, bonded: int, inflation: int, blocks: int, provisions: array[int]
) -> tuple[int, int, int]:
    """Blocks whose inflation moves every block, until it reaches a bound (that block included),
    the bonded ratio crosses the goal, or ``blocks`` are done: ``(supply, inflation, blocks
    done)``, at least one. ``next_inflation`` inlined with reduced fractions (the same integers:
    ``floor(ratio * DEC / goal)`` is ``floor(ratio * gn / gd)`` for ``gn / gd = DEC / goal``
    reduced, and the two truncating divisions by ``DEC`` and ``blocks_per_year`` are one by
    their product); its first block is checked against the ledger's own. Appends each block's
    provision to ``provisions``. Raises _RulesChanged (and OverflowError past 64 bits)."""
    if economics.next_inflation(inflation, bonded, supply, fast.params) != _next_inflation_inlined(
        fast, inflation, bonded, supply
    ):
        raise _RulesChanged
    collected: list[int] = []
    if supply > 0 and inflation <= fast.params.inflation_max and _gap(fast, bonded, supply) < 0:
        result = _above_goal(fast, supply, bonded, inflation, blocks, collected, provisions)
    else:
        result = _general(fast, supply, bonded, inflation, blocks, collected, provisions)
    provisions.fromlist(collected)
    return result


def _moving_windows(
    fast: _Fast,
    supply: int,
    inflation: int,
    bonded: int,
    above: bool,
    blocks: int,
    out: list[int],
    provisions: array[int],
) -> tuple[int, int, int]:
    """As many of ``blocks`` unchecked moving blocks (no bound, no goal crossing) as whole
    :mod:`protocol.econsim.moving_rate` windows solve: ``(supply, inflation, blocks done)``.
    ``out`` (provisions not yet in ``provisions``) is flushed first so the order is kept."""
    params = fast.params
    goal = _reduced(DEC, params.goal_bonded)
    rate = _reduced(params.inflation_rate_change, DEC * params.blocks_per_year)
    done = 0
    while blocks - done >= moving_rate.MIN_WINDOW:
        window = min(blocks - done, moving_rate.MAX_WINDOW)
        solved = moving_rate.moving_provisions(
            supply, inflation, bonded * DEC, goal, rate, params.blocks_per_year, above, window
        )
        if solved is None:
            break
        supply, inflation, chunk = solved
        provisions.fromlist(out)
        out.clear()
        provisions.frombytes(chunk.tobytes())
        done += window
    return supply, inflation, done


def _gap(fast: _Fast, bonded: int, supply: int) -> int:
    """``DEC - floor(bonded ratio * DEC / goal)``: the sign of ``next_inflation``'s change."""
    goal_num, goal_den = _reduced(DEC, fast.params.goal_bonded)
    return DEC - bonded * DEC // supply * goal_num // goal_den


def _above_goal(
    fast: _Fast, supply: int, bonded: int, inflation: int, blocks: int, out: list[int], provisions: array[int]
) -> tuple[int, int, int]:
    """Above the bonded goal (``_gap`` negative) with the inflation at most the maximum: each
    block lowers it by ``floor(-gap * rate)``, and only the minimum can bind. The gap is
    non-decreasing in the supply, so it stays negative while the supply is at most ``cross``
    (found in closed form, checked with ``_gap`` itself); a provision is at most ``most`` (the supply at most
    ``cross``, the inflation only falling), so ``(cross - supply) // most + 1`` blocks need no
    check. Stops at ``cross`` (the caller looks again) or at the minimum."""
    params = fast.params
    low = params.inflation_min
    goal_num, goal_den = _reduced(DEC, params.goal_bonded)
    scale = DEC * params.blocks_per_year
    rate_num, rate_den = _reduced(params.inflation_rate_change, scale)
    bonded_scaled = bonded * DEC
    # -gap = floor(ratio * gn / gd) - DEC = floor((ratio * gn - DEC * gd) / gd)
    shift = DEC * goal_den
    # gap < 0  <=>  floor(ratio * gn / gd) >= DEC + 1  <=>  ratio >= ceil((DEC + 1) * gd / gn)
    # <=>  supply <= bonded * DEC // that: the last supply above the goal, checked with _gap.
    cross = bonded_scaled // -(-(DEC + 1) * goal_den // goal_num)
    if not _gap(fast, bonded, cross) < 0 <= _gap(fast, bonded, cross + 1):
        return _general(fast, supply, bonded, inflation, blocks, out, provisions)
    done = 0
    append = out.append
    while done < blocks and supply <= cross:
        most = cross * inflation // scale
        run = min(blocks - done, (cross - supply) // most + 1 if most else blocks - done)
        # The fall is largest at the run's first block (the gap only shrinks as the supply
        # grows), so the first ``unchecked`` blocks cannot reach the minimum: no check there.
        fall = (bonded_scaled // supply * goal_num - shift) // goal_den * rate_num // rate_den
        unchecked = min(run, max(0, (inflation - low - 1) // fall if fall else run if inflation > low else 0))
        supply, inflation, solved = _moving_windows(
            fast, supply, inflation, bonded, True, unchecked, out, provisions
        )
        for _ in range((unchecked - solved) >> 1):
            inflation -= (bonded_scaled // supply * goal_num - shift) // goal_den * rate_num // rate_den
            append(provision := supply * inflation // scale)
            supply += provision
            inflation -= (bonded_scaled // supply * goal_num - shift) // goal_den * rate_num // rate_den
            append(provision := supply * inflation // scale)
            supply += provision
        for _ in range((unchecked - solved) & 1):
            inflation -= (bonded_scaled // supply * goal_num - shift) // goal_den * rate_num // rate_den
            append(provision := supply * inflation // scale)
            supply += provision
        done += unchecked
        for _ in range(run - unchecked):
            done += 1
            inflation -= (bonded_scaled // supply * goal_num - shift) // goal_den * rate_num // rate_den
            if inflation <= low:
                provision = supply * low // scale
                supply += provision
                append(provision)
                return supply, low, done
            provision = supply * inflation // scale
            supply += provision
            append(provision)
    return supply, inflation, done


def _general(
    fast: _Fast, supply: int, bonded: int, inflation: int, blocks: int, out: list[int], provisions: array[int]
) -> tuple[int, int, int]:
    """At or below the goal (only the maximum binds), or anything else (both bounds)."""
    params = fast.params
    low, high = params.inflation_min, params.inflation_max
    goal_num, goal_den = _reduced(DEC, params.goal_bonded)
    scale = DEC * params.blocks_per_year
    rate_num, rate_den = _reduced(params.inflation_rate_change, scale)
    bonded_scaled = bonded * DEC
    append = out.append
    if supply <= 0:  # nothing is minted; the ratio stays 0: the general step, block by block
        for done in range(1, blocks + 1):
            inflation = _next_inflation_inlined(fast, inflation, bonded, supply)
            append(0)
            if inflation in (low, high):
                return supply, inflation, done
        return supply, inflation, blocks
    if inflation >= low and DEC - bonded_scaled // supply * goal_num // goal_den >= 0:
        # At or below the bonded goal the change is never negative, and as the supply grows the
        # bonded ratio only falls: it stays so for the whole run, and only the maximum can bind
        # (clamping to the minimum from at or above it would change nothing; an inflation below
        # the minimum, after governance raised it, takes the general loop).
        # The rise is at most DEC * rate a block (the gap is at most DEC), so the first
        # ``unchecked`` blocks cannot reach the maximum: no check there.
        rise = DEC * rate_num // rate_den
        unchecked = min(
            blocks, max(0, (high - inflation - 1) // rise if rise else blocks if inflation < high else 0)
        )
        supply, inflation, solved = _moving_windows(
            fast, supply, inflation, bonded, False, unchecked, out, provisions
        )
        for _ in range((unchecked - solved) >> 1):
            inflation += (DEC - bonded_scaled // supply * goal_num // goal_den) * rate_num // rate_den
            append(provision := supply * inflation // scale)
            supply += provision
            inflation += (DEC - bonded_scaled // supply * goal_num // goal_den) * rate_num // rate_den
            append(provision := supply * inflation // scale)
            supply += provision
        for _ in range((unchecked - solved) & 1):
            inflation += (DEC - bonded_scaled // supply * goal_num // goal_den) * rate_num // rate_den
            append(provision := supply * inflation // scale)
            supply += provision
        for done in range(unchecked + 1, blocks + 1):
            inflation += (DEC - bonded_scaled // supply * goal_num // goal_den) * rate_num // rate_den
            if inflation >= high:
                provision = supply * high // scale
                supply += provision
                append(provision)
                return supply, high, done
            provision = supply * inflation // scale
            supply += provision
            append(provision)
        return supply, inflation, blocks
    done = 0
    while done < blocks:
        done += 1
        gap = DEC - bonded_scaled // supply * goal_num // goal_den
        if gap >= 0:
            inflation += gap * rate_num // rate_den
        else:
            inflation -= -gap * rate_num // rate_den
        if inflation <= low:
            inflation = low
        elif inflation >= high:
            inflation = high
        else:
            provision = supply * inflation // scale
            supply += provision
            append(provision)
            continue
        provision = supply * inflation // scale
        supply += provision
        append(provision)
        break
    return supply, inflation, done


def _next_inflation_inlined(fast: _Fast, inflation: int, bonded: int, supply: int) -> int:
    """The moving loop's arithmetic for one block (compared with ``next_inflation``)."""
    params = fast.params
    goal_num, goal_den = _reduced(DEC, params.goal_bonded)
    rate_num, rate_den = _reduced(params.inflation_rate_change, DEC * params.blocks_per_year)
    ratio = bonded * DEC // supply if supply > 0 else 0
    gap = DEC - ratio * goal_num // goal_den
    change = gap * rate_num // rate_den if gap >= 0 else -(-gap * rate_num // rate_den)
    return max(params.inflation_min, min(params.inflation_max, inflation + change))


#: Provisions per array chunk when splitting: sums of a chunk stay far inside 64 bits.
_CHUNK = 1 << 16
_INT64 = 2**63


def _split_totals(fast: _Fast, provisions: array[int]) -> tuple[int, int, tuple[int, ...], tuple[int, int]]:
    """``(validators' issuance, provider pool, rewards per validator, (mining, availability))``
    of the collected provisions: per block ``floor(p * vn / vd)``, ``floor(p * pn / pd)``, each
    validator's ``floor(v * w / W)`` (or ``floor(v / K)`` with equal powers) and the two liquidity
    shares ``floor(p * mn / md)``, summed. Over int64 arrays when no product can leave 64 bits
    (checked from the largest provision), else in Python ints."""
    count = len(fast.weights)
    validator_total = provider_total = equal_share = 0
    liquidity = [0, 0]
    cuts = [(fast.mining_num, fast.mining_den), (fast.avail_num, fast.avail_den)]
    per_weight = [0] * count
    paid_count = count if fast.total_weight else 0
    largest = int(numpy.frombuffer(provisions, dtype=numpy.int64).max()) if len(provisions) else 0
    # Every product is at most largest * widest (a validator's share never exceeds its block's
    # provision), every chunk's sum at most largest * _CHUNK.
    widest = max(
        [1, fast.val_num, fast.prov_num, fast.mining_num, fast.avail_num]
        + ([] if fast.equal else fast.weights)
    )
    vectorized = largest * widest < _INT64 and largest * _CHUNK < _INT64
    if not vectorized:
        for provision in provisions:
            to_validators = provision * fast.val_num // fast.val_den
            validator_total += to_validators
            provider_total += provision * fast.prov_num // fast.prov_den
            for index, (num, den) in enumerate(cuts):
                if num:
                    liquidity[index] += provision * num // den
            if fast.equal:
                equal_share += to_validators // count
            else:
                for index in range(paid_count):
                    per_weight[index] += to_validators * fast.weights[index] // fast.total_weight
    else:
        values = (
            numpy.frombuffer(provisions, dtype=numpy.int64)
            if len(provisions)
            else numpy.zeros(0, numpy.int64)
        )
        for start in range(0, len(values), _CHUNK):
            chunk = values[start : start + _CHUNK]
            validator_shares = chunk * fast.val_num // fast.val_den
            validator_total += int(validator_shares.sum())
            provider_total += int((chunk * fast.prov_num // fast.prov_den).sum())
            for index, (num, den) in enumerate(cuts):
                if num:
                    liquidity[index] += int((chunk * num // den).sum())
            if fast.equal:
                equal_share += int((validator_shares // count).sum())
            else:
                for index in range(paid_count):
                    weight = fast.weights[index]
                    per_weight[index] += int((validator_shares * weight // fast.total_weight).sum())
    rewards = tuple(equal_share for _ in range(count)) if fast.equal else tuple(per_weight)
    return validator_total, provider_total, rewards, (liquidity[0], liquidity[1])
