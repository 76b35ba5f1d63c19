"""Stepping many empty blocks at once, exactly as the ledger would apply them one by one.

A block without transactions, evidence, unbonding releases, governance tallies or a provider
payout does only one thing in :func:`protocol.ledger.block.apply_block`: the end-block issuance.
Per block, with the supply ``S`` (after the previous block), the bonded stake ``B`` and the
inflation ``I``::

    I  <- economics.next_inflation(I, B, S)         (moves toward the bonded goal, clamped)
    p   = economics.block_provision(S, I)            (minted)
    v, r, c = economics.split_issuance(p)             (validators, provider pool, community)
    shares, dust = economics.pro_rata(v, powers)     (credited to the validators; dust to community)
    S  <- S + p

There is no closed form for many such blocks: ``S <- S + floor(S * I / (DEC * blocks_per_year))``
is a Mahler-type floor recursion, and every later truncation depends on every earlier one, so
the only exact way to jump N blocks is to do the N integer steps. What this module does is make
each step cheap, without changing a single result:

- **Constant inflation spans.** ``next_inflation``'s change is a non-decreasing function of the
  supply for a fixed bonded stake (every operation in it is monotone; ``test_econsim_kernel``
  checks it). So once inflation sits at ``inflation_max`` with a non-negative change it stays
  there for the rest of the span, and at ``inflation_min`` (or an interior value with zero
  change) it stays until the supply passes a threshold found by bisection *with the ledger's
  own* ``next_inflation`` as the predicate. Inside such a span the inflation update is skipped.
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
from collections.abc import Sequence
from dataclasses import dataclass
from math import gcd

from protocol import economics
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
    minted = community = provider_pool = validator_issuance = 0
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


class _RulesChanged(Exception):
    """The inlined arithmetic no longer matches protocol/economics.py."""


class _Fast:
    """The fast path's constants for one span (reduced fractions, weights)."""

    def __init__(self, powers: Sequence[int], params: Params) -> None:
        self.params = params
        self.val_num, self.val_den = _reduced(params.validator_reward_share, DEC)
        self.prov_num, self.prov_den = _reduced(params.provider_reward_share, DEC)
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
    except _RulesChanged:
        pass
    return span_by_functions(supply, bonded, inflation, powers, params, blocks, issued=issued_before)


def _fast_blocks(fast: _Fast, supply: int, bonded: int, inflation: int, blocks: int) -> SpanResult:
    params = fast.params
    count = len(fast.weights)
    # Per-validator sums of floor(v * w / W); with equal powers only the common floor(v / K).
    per_weight = [0] * count
    equal_share = 0
    validator_total = 0
    provider_total = 0
    start_supply = supply
    done = 0
    bpy = params.blocks_per_year
    scale = DEC * bpy
    val_num, val_den = fast.val_num, fast.val_den
    prov_num, prov_den = fast.prov_num, fast.prov_den
    weights, total_weight, equal = fast.weights, fast.total_weight, fast.equal
    paid_count = count if total_weight else 0  # no positive power: pro_rata pays nobody
    while done < blocks:
        if economics.next_inflation(inflation, bonded, supply, params) == inflation:
            limit = _constant_until(inflation, bonded, supply, params)
            num, den = _reduced(inflation, scale)
            # Constant inflation while supply <= limit (None: for good). Before each block the
            # supply is at most supply + j * most (most: the provision at the limit), so the
            # next (limit - supply) // most + 1 blocks need no check; then look again.
            while done < blocks and (limit is None or supply <= limit):
                if limit is None:
                    run = blocks - done
                else:
                    most = limit * num // den
                    run = min(blocks - done, (limit - supply) // most + 1 if most else blocks - done)
                if equal:
                    for _ in range(run):
                        provision = supply * num // den
                        supply += provision
                        to_validators = provision * val_num // val_den
                        validator_total += to_validators
                        provider_total += provision * prov_num // prov_den
                        equal_share += to_validators // count
                else:
                    for _ in range(run):
                        provision = supply * num // den
                        supply += provision
                        to_validators = provision * val_num // val_den
                        validator_total += to_validators
                        provider_total += provision * prov_num // prov_den
                        for index in range(paid_count):
                            per_weight[index] += to_validators * weights[index] // total_weight
                done += run
            continue
        # The inflation moves: next_inflation every block until it reaches a bound. Inlined
        # (the same integer operations); its first block is checked against the ledger's own.
        goal, rate_change = params.goal_bonded, params.inflation_rate_change
        low, high = params.inflation_min, params.inflation_max
        bonded_scaled = bonded * DEC
        expected = economics.next_inflation(inflation, bonded, supply, params)
        first = True
        while done < blocks:
            ratio = bonded_scaled // supply if supply > 0 else 0
            yearly = (DEC - ratio * DEC // goal) * rate_change
            if yearly >= 0:
                inflation += yearly // DEC // bpy
            else:
                inflation -= -yearly // DEC // bpy
            bound = False
            if inflation <= low:
                inflation, bound = low, True
            elif inflation >= high:
                inflation, bound = high, True
            if first:
                if inflation != expected:
                    raise _RulesChanged
                first = False
            provision = supply * inflation // scale
            supply += provision
            to_validators = provision * val_num // val_den
            validator_total += to_validators
            provider_total += provision * prov_num // prov_den
            if equal:
                equal_share += to_validators // count
            elif total_weight:
                for index in range(count):
                    per_weight[index] += to_validators * weights[index] // total_weight
            done += 1
            if bound:
                break
    rewards = tuple(equal_share for _ in range(count)) if equal else tuple(per_weight)
    minted = supply - start_supply
    paid = sum(rewards)
    community = minted - validator_total - provider_total + (validator_total - paid)
    return SpanResult(blocks, supply, inflation, minted, community, provider_total, rewards, validator_total)
