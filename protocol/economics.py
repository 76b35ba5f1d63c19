"""Issuance, fee burning and reward splitting: integer math only, shared by ledger and tools.

Issuance follows Cosmos SDK's x/mint: each block the annual inflation rate moves toward the
target bonded ratio, by at most ``inflation_rate_change`` a year, clamped to
``[inflation_min, inflation_max]``; the block mints ``supply * inflation / blocks_per_year``.
All divisions truncate toward zero, so every replica computes the same numbers.

Split, fees, and why provider rewards weigh burned fees
-------------------------------------------------------

Ratios are integers scaled by 10^18 (as Cosmos ``sdk.Dec``); every division truncates toward zero.

- **Issuance** (Cosmos x/mint): each block, annual inflation moves by
  ``(1 - bonded_ratio / goal_bonded) * inflation_rate_change / blocks_per_year``, clamped to
  ``[inflation_min, inflation_max]``; the block mints ``supply * inflation / blocks_per_year``.
- **Split** of each block's issuance: ``validator_reward_share`` to validators, pro rata bonded stake
  among those whose precommits are in the parent's commit certificate (all active validators when
  none are given), accrued to each validator's reward accumulator (see "Validators and
  delegation"); ``provider_reward_share`` accrues in the provider pool and is paid at each epoch's
  end pro rata the protocol fees each provider's settlements burned in the epoch, but never more
  than ``provider_reward_cap`` (default 50%, hard bound 90%) of what it burned (the rest stays in
  the pool). The rest of the issuance, and all rounding dust, goes to the community pool, less
  the liquidity-mining and availability shares (default 0; see "Assets, the DCT pool and
  liquidity mining").
- **Why provider rewards weigh burned fees** (attack: self-dealing). A party trading with itself
  (two keys, any price, any usage) moves pay between its pockets and burns ``protocol_fee_share`` of
  it plus two transaction fees; its payout is at most ``cap x burned < burned``, so every round trip
  loses money, and splitting it over many provider keys changes nothing (the cap is linear). The
  old weight, GPU-seconds, paid the whole pool to whoever settled the most seconds at price 0 or 1.
  A zero-price contract is refused outright (``FreeContract`` 2028). Considered and rejected:
  stake-backed availability (a staked self-dealer still farms) and a per-provider cap without the
  burn weight (farmable once the price is free). ``test_trading_with_oneself_at_any_price_never_pays``.
- **Fees**: every transaction pays at least ``min_fee``; ``fee_burn_share`` of a block's fees is
  burned and the rest joins the validators' reward.
- Every parameter lives in ledger state and changes only through governance.
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
