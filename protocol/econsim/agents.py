"""The agents' behaviour: what holders, providers and requesters do with what they observe.

Everything here is an explicit assumption with a parameter in :class:`Agents`; none of it is a
ledger rule. Floats are allowed here and only here, and they reach the ledger only as integers
through these documented roundings:

- amounts to bond, unbond, pay or sell: ``floor`` of the float amount, in base units, then split
  equally over the validators with ``//`` (the remainder stays liquid);
- the price per GPU-second: ``floor(price_per_gpu_hour / 3600)`` base units (at least 1);
- GPU-seconds served: ``floor(gpu_hours * 3600)``;
- the change in the number of providers: its integer part, plus one more with a probability
  equal to its fractional part, drawn from the scenario's seeded SplitMix64 (so the expected
  change is the float and a seed gives the same run everywhere).

Only ``+ - * /`` and integer powers are used on floats (no ``exp``/``log``/float ``**``), which
IEEE 754 rounds identically on every platform: a seed gives byte-identical output.

Attacks: the model has no outside input but the scenario, whose values are bounded when parsed;
every float is clamped before it becomes an amount, so no setting can produce a negative or
unbounded ledger amount.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from protocol.econsim.scenario import Agents, Shock
from protocol.sim.rng import SplitMix64
from protocol.units import DCT

SECONDS_PER_HOUR = 3_600
DAYS_PER_YEAR = 365.25
_MILLION = 1_000_000


def floor_amount(value: float) -> int:
    """A non-negative float amount as base units: floor, and 0 for anything not positive."""
    return math.floor(value) if value > 0 and math.isfinite(value) else 0


def price_per_gpu_hour(agents: Agents, utilization: float) -> float:
    """Provider pricing: ``floor * (1 + slope * utilization ** exponent)``, in base units.

    ``utilization`` is the last step's share of capacity sold, in [0, 1]: a busy network charges
    more, an idle one falls back to the floor."""
    used = min(max(utilization, 0.0), 1.0)
    curve = 1.0
    for _ in range(agents.price_exponent):
        curve *= used
    return agents.price_floor_per_gpu_hour * (1.0 + agents.price_slope * curve)


def next_price(agents: Agents, previous: float, utilization: float) -> float:
    """The price a step asks: ``previous`` moved by ``price_adjustment`` of the way to the
    utilization curve's price (a recent-price reference), never below the floor."""
    target = price_per_gpu_hour(agents, utilization)
    price = previous + agents.price_adjustment * (target - previous)
    return max(price, float(agents.price_floor_per_gpu_hour))


def demand_factor(agents: Agents, price: float) -> float:
    """Demand's response to price: ``ref / (ref + e * (price - ref))``, clamped to [0, 10].

    Its elasticity at the reference price is ``e``; demand vanishes as the price grows and at
    most grows tenfold as it falls."""
    reference = float(agents.reference_price_per_gpu_hour)
    denominator = reference + agents.demand_elasticity * (price - reference)
    if denominator <= reference / 10:
        return 10.0
    return min(max(reference / denominator, 0.0), 10.0)


def shock_factor(shocks: tuple[Shock, ...], year: float) -> float:
    """The product of every demand shock that has happened by ``year``."""
    factor = 1.0
    for shock in shocks:
        if shock.at_year <= year:
            factor *= shock.demand_factor
    return factor


def demand_growth(agents: Agents, shocks: tuple[Shock, ...], year: float) -> float:
    """The yearly demand growth in force at ``year``: the latest shock's, else the scenario's."""
    growth = agents.demand_growth
    for shock in shocks:
        if shock.at_year <= year and shock.demand_growth is not None:
            growth = shock.demand_growth
    return growth


def noise_factor(agents: Agents, rng: SplitMix64) -> float:
    """A factor in ``[1 - noise, 1 + noise]``, uniform in millionths, from the seeded PRNG."""
    if agents.demand_noise <= 0:
        return 1.0
    return 1.0 + agents.demand_noise * (rng.below(2 * _MILLION + 1) - _MILLION) / _MILLION


def stochastic_round(value: float, rng: SplitMix64) -> int:
    """``floor(value)`` plus one with probability ``value - floor(value)`` (exact in millionths)."""
    whole = math.floor(value)
    fraction = value - whole
    return whole + (1 if rng.below(_MILLION) < int(fraction * _MILLION) else 0)


@dataclass(frozen=True, slots=True)
class StakeDecision:
    """What holders do with the staking yield: bond (positive) or unbond (negative), in total."""

    amount: int


def staking_decision(
    agents: Agents, *, staking_yield: float, bonded: int, liquid: int, supply: int, step_days: int
) -> StakeDecision:
    """Holders bond while the yield beats the outside rate and unbond while it does not, at a
    speed proportional to the relative gap; never above ``max_bonded_ratio`` of the supply."""
    per_year = step_days / DAYS_PER_YEAR
    outside = max(agents.outside_rate, 1e-9)
    gap = (staking_yield - agents.outside_rate) / outside
    if gap > 0:
        room = agents.max_bonded_ratio * supply - bonded
        amount = min(liquid * min(1.0, agents.bond_speed * gap * per_year), room)
        return StakeDecision(floor_amount(amount))
    share = min(1.0, agents.unbond_speed * -gap * per_year)
    return StakeDecision(-floor_amount(bonded * share))


def provider_change(
    agents: Agents, *, providers: int, income_per_gpu_hour: float, step_days: int, rng: SplitMix64
) -> int:
    """Providers join while their income per GPU-hour beats their cost and leave while it does
    not, proportionally to the relative margin; the new count, in ``[1, max_providers]``."""
    cost = max(float(agents.provider_cost_per_gpu_hour), 1.0)
    margin = (income_per_gpu_hour - cost) / cost
    speed = agents.provider_join_speed if margin > 0 else agents.provider_leave_speed
    change = providers * min(1.0, max(-1.0, speed * margin * step_days / DAYS_PER_YEAR))
    updated = providers + stochastic_round(change, rng)
    return min(max(updated, 1), agents.max_providers)


def dct(base_units: int | float) -> float:
    """Base units as DCT, for plots and the agents' comparisons only."""
    return base_units / DCT
