"""A scenario fitted to a real chain, for ``dcent gov propose/show ... --preview``.

The simulator's scenarios describe an economy of a given size (the baseline: 100 million DCT,
200 providers, 20,000 GPU-hours of demand a day). A preview starts from a real chain's totals
(:class:`protocol.econsim.economy.EconomyStart`), which may be a testnet of a million DCT; running
the baseline's agents on it would have them spend more than exists. So the scenario's quantities
that scale with the economy are scaled by ``chain supply / scenario supply``: the buyers' and
providers' working balances, demand, the number of providers (at least one) and their ceiling,
and the other transactions per day. Prices, costs, rates and speeds stay as the scenario says
(they are per GPU-hour or per year, not per economy). The validators are the chain's active set
size, each holding an equal share of the bonded stake (the simulator's kernel assumes equal
stakes; the totals are the chain's).

Pure and deterministic; the scaling uses exact integers for amounts and the agents' floats only
where the agent model already has them.
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction

from protocol.econsim.economy import EconomyStart
from protocol.econsim.errors import ScenarioError
from protocol.econsim.scenario import Scenario


def chain_scenario(base: Scenario, origin: EconomyStart, validators: int) -> Scenario:
    """``base`` resized to ``origin``'s supply, with ``validators`` validators sharing the bonded
    stake. Raises ScenarioError when the chain has no supply or no validator, or when the bonded
    stake cannot be spread over its validators above ``min_validator_stake``."""
    if origin.supply <= 0:
        raise ScenarioError("the chain has no supply to simulate")
    if validators < 1:
        raise ScenarioError("the chain has no active validator")
    # Fewer simulated validators when an equal share would fall below the minimum stake.
    minimum = origin.params.min_validator_stake
    count = min(validators, max(1, origin.bonded // minimum)) if origin.bonded else validators
    factor = Fraction(origin.supply, base.start.supply)
    agents = base.agents
    start = dataclasses.replace(
        base.start,
        supply=origin.supply,
        validators=count,
        requester_balance=int(base.start.requester_balance * factor),
        provider_balance=int(base.start.provider_balance * factor),
    )
    scaled = float(factor)
    agents = dataclasses.replace(
        agents,
        providers=max(1, round(agents.providers * scaled)),
        max_providers=max(1, round(agents.max_providers * scaled)),
        demand_gpu_hours_per_day=agents.demand_gpu_hours_per_day * scaled,
        tx_per_day=round(agents.tx_per_day * scaled),
    )
    return dataclasses.replace(base, start=start, agents=agents, params=origin.params)
