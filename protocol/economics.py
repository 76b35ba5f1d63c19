"""Issuance, fee burning and reward splitting: integer math only, shared by ledger and tools.

Issuance follows Cosmos SDK's x/mint: each block the annual inflation rate moves toward the
target bonded ratio, by at most ``inflation_rate_change`` a year, clamped to
``[inflation_min, inflation_max]``; the block mints ``supply * inflation / blocks_per_year``.
All divisions truncate toward zero, so every replica computes the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from protocol.ledger.params import Params
from protocol.units import DEC, MAX_AMOUNT

#: The most base units ever issued: the genesis supply plus everything minted. Every balance,
#: stake, pool and running total of the ledger is at most this (burned is at most what was issued),
#: so each fits a signed 64-bit integer by construction; minting stops once it is reached.
MAX_ISSUANCE = MAX_AMOUNT

K = TypeVar("K")


def div_trunc(numerator: int, denominator: int) -> int:
    """Integer division rounding toward zero (Python's ``//`` rounds toward minus infinity)."""
    quotient = abs(numerator) // abs(denominator)
    return quotient if (numerator >= 0) == (denominator > 0) else -quotient


def mul_ratio(amount: int, ratio: int) -> int:
    """``amount * ratio`` for a DEC-scaled ratio, truncated."""
    return div_trunc(amount * ratio, DEC)


def bonded_ratio(bonded: int, supply: int) -> int:
    return 0 if supply <= 0 else bonded * DEC // supply


def next_inflation(current: int, bonded: int, supply: int, params: Params) -> int:
    """The annual inflation rate for the next block (DEC-scaled)."""
    ratio = bonded_ratio(bonded, supply)
    # (1 - bonded/goal) * rate_change: positive below the goal, negative above it.
    change_per_year = div_trunc(
        (DEC - div_trunc(ratio * DEC, params.goal_bonded)) * params.inflation_rate_change, DEC
    )
    updated = current + div_trunc(change_per_year, params.blocks_per_year)
    return max(params.inflation_min, min(params.inflation_max, updated))


def block_provision(supply: int, inflation: int, params: Params, *, issued: int | None = None) -> int:
    """Base units minted by one block at the given annual inflation rate, capped so that
    ``issued`` (genesis supply plus everything minted so far; the supply when not given) never
    passes :data:`MAX_ISSUANCE`, whatever ``blocks_per_year`` and ``inflation_max`` say."""
    provision = supply * inflation // DEC // params.blocks_per_year
    room = MAX_ISSUANCE - (supply if issued is None else issued)
    return max(0, min(provision, room))


@dataclass(frozen=True, slots=True)
class IssuanceSplit:
    validators: int
    providers: int
    community: int


def split_issuance(provision: int, params: Params) -> IssuanceSplit:
    """Split one block's provision; truncation dust goes to the community pool."""
    validators = mul_ratio(provision, params.validator_reward_share)
    providers = mul_ratio(provision, params.provider_reward_share)
    return IssuanceSplit(validators, providers, provision - validators - providers)


def split_fees(fees: int, params: Params) -> tuple[int, int]:
    """``(burned, to_validators)`` for the fees collected in one block."""
    burned = mul_ratio(fees, params.fee_burn_share)
    return burned, fees - burned


def pro_rata(amount: int, weights: Sequence[tuple[K, int]]) -> tuple[list[tuple[K, int]], int]:
    """Split ``amount`` in proportion to ``weights`` (given in a deterministic order).

    Returns the shares, in the same order, and the undistributed dust. With no positive weight
    everything is dust.
    """
    total = sum(weight for _, weight in weights if weight > 0)
    if total <= 0 or amount <= 0:
        return [], max(amount, 0)
    shares = [(key, amount * weight // total) for key, weight in weights if weight > 0]
    return shares, amount - sum(share for _, share in shares)


def provider_payouts(
    pool: int, burned_by: Sequence[tuple[K, int]], cap: int
) -> tuple[list[tuple[K, int]], int]:
    """One epoch's provider rewards: the pool pro rata the protocol fees each provider's settled
    contracts burned, but never more than ``cap`` (DEC-scaled, below 100%) of what it burned.

    Returns the payouts, in the order given, and what stays in the pool. Why the cap: a party
    that trades with itself (two keys, any price) burns the protocol fee on its own pay; capped
    below the burn, its payout is always less than what it burned to earn it.
    """
    weights = [(key, weight) for key, weight in burned_by if weight > 0]
    if pool <= 0 or not weights:
        return [], pool
    shares, _ = pro_rata(pool, weights)
    paid = [
        (key, min(share, mul_ratio(weight, cap)))
        for (key, share), (_, weight) in zip(shares, weights, strict=True)
    ]
    return paid, pool - sum(amount for _, amount in paid)
