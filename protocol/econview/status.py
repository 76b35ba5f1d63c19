"""The economy now, in the figures a person reasons with: ``dcent economics status``.

Exact integers (base units, DEC-scaled ratios); the CLI turns them into DCT and percentages.
What is a rate and over which period is stated on each field:

- ``staking_apr``: what a bonded base unit earns in a year at today's rates: the validators'
  share of this year's issuance at the current inflation, plus the validators' share of the fees
  of the recent window, annualized, over the bonded stake. Rewards are paid pro rata bonded stake
  (among the validators that signed), so this is every bonded unit's yield before any commission.
- ``provider_earnings_per_gpu_hour``: what providers received per GPU-hour they sold over the
  recent window: the pay for the work settled (after the protocol fee) plus the provider-pool
  rewards paid out in the window (each epoch pays the pool pro rata the protocol fees a provider's
  settlements burned, capped below that burn); None when nothing settled.
- ``price_per_gpu_hour``: what requesters paid per GPU-hour over the window (volume-weighted).

Pure: the state and the window's block records in, one frozen record out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from protocol.economics import bonded_ratio, mul_ratio
from protocol.econview.record import BlockEconomics
from protocol.ledger.state import LedgerState
from protocol.units import DEC

SECONDS_PER_HOUR = 3600


@dataclass(frozen=True, slots=True)
class EconomicsStatus:
    height: int
    genesis_supply: int
    supply: int
    minted: int
    burned: int
    inflation: int
    inflation_min: int
    inflation_max: int
    #: The issuance of a year at the current rate: ``supply * inflation``.
    annual_issuance: int
    bonded: int
    bonded_ratio: int
    goal_bonded: int
    unbonding: int
    escrowed: int
    deposits: int
    community_pool: int
    provider_pool: int
    fee_burn_share: int
    protocol_fee_share: int
    staking_apr: int
    # The recent window (the last ``window_blocks`` records).
    window_blocks: int
    window_issued: int
    window_burned: int
    window_fees: int
    window_gpu_seconds: int
    window_paid: int
    price_per_gpu_hour: int | None
    provider_earnings_per_gpu_hour: int | None


def _per_hour(amount: int, gpu_seconds: int) -> int | None:
    return amount * SECONDS_PER_HOUR // gpu_seconds if gpu_seconds > 0 else None


def economics_status(state: LedgerState, window: Sequence[BlockEconomics]) -> EconomicsStatus:
    """The status of ``state`` with the recent ``window`` of block records (any length, may be
    empty: the window's figures are then zero or None). Raises nothing."""
    params = state.params
    v = state.vars
    supply = state.total_supply()
    bonded = v["total_bonded"]
    annual_issuance = mul_ratio(supply, v["inflation"])
    blocks = len(window)
    fees = sum(row.fees for row in window)
    gpu_seconds = sum(row.gpu_seconds for row in window)
    paid = sum(row.paid for row in window)
    issued = sum(row.issued for row in window)
    # The validators' fee income over the window, scaled to a year of blocks.
    fee_income = fees - mul_ratio(fees, params.fee_burn_share)
    annual_fee_income = fee_income * params.blocks_per_year // blocks if blocks else 0
    annual_validator_income = mul_ratio(annual_issuance, params.validator_reward_share) + annual_fee_income
    staking_apr = annual_validator_income * DEC // bonded if bonded > 0 else 0
    rewards = sum(row.provider_rewards for row in window)
    provider_income = paid - mul_ratio(paid, params.protocol_fee_share) + rewards
    return EconomicsStatus(
        height=state.height,
        genesis_supply=v["genesis_supply"],
        supply=supply,
        minted=v["minted"],
        burned=v["burned"],
        inflation=v["inflation"],
        inflation_min=params.inflation_min,
        inflation_max=params.inflation_max,
        annual_issuance=annual_issuance,
        bonded=bonded,
        bonded_ratio=bonded_ratio(bonded, supply),
        goal_bonded=params.goal_bonded,
        unbonding=v["total_unbonding"],
        escrowed=v["total_escrowed"],
        deposits=v["total_deposits"],
        community_pool=v["community_pool"],
        provider_pool=v["provider_pool"],
        fee_burn_share=params.fee_burn_share,
        protocol_fee_share=params.protocol_fee_share,
        staking_apr=staking_apr,
        window_blocks=blocks,
        window_issued=issued,
        window_burned=sum(row.burned_in_block for row in window),
        window_fees=fees,
        window_gpu_seconds=gpu_seconds,
        window_paid=paid,
        price_per_gpu_hour=_per_hour(paid, gpu_seconds),
        provider_earnings_per_gpu_hour=_per_hour(provider_income, gpu_seconds),
    )
