"""The scenario fitted to a real chain: quantities that scale with the economy follow its supply;
prices, rates and the chain's own parameters are kept; bad chains are typed errors."""

from __future__ import annotations

import dataclasses

import pytest

from protocol.econsim.economy import EconomyStart
from protocol.econsim.errors import ScenarioError
from protocol.econsim.scenario import Scenario
from protocol.econview.preview import chain_scenario
from protocol.ledger.params import Params
from protocol.units import DCT


def origin(supply: int, bonded: int, **params: int) -> EconomyStart:
    return EconomyStart(10, supply, 0, 0, 13 * 10**16, bonded, 0, 0, Params(**params))  # type: ignore[arg-type]


def test_a_chain_a_hundredth_of_the_baseline_gets_a_hundredth_of_its_market() -> None:
    base = Scenario()
    fitted = chain_scenario(base, origin(base.start.supply // 100, 300 * DCT, epoch_length=7), validators=3)
    assert fitted.start.supply == base.start.supply // 100 and fitted.start.validators == 3
    assert fitted.start.requester_balance == base.start.requester_balance // 100
    assert fitted.start.provider_balance == base.start.provider_balance // 100
    assert fitted.agents.providers == 2 and fitted.agents.tx_per_day == 1_000
    assert fitted.agents.demand_gpu_hours_per_day == pytest.approx(200.0)
    # Per-GPU-hour prices and yearly rates do not depend on the economy's size.
    same = ("price_floor_per_gpu_hour", "provider_cost_per_gpu_hour", "outside_rate", "demand_growth")
    assert all(getattr(fitted.agents, name) == getattr(base.agents, name) for name in same)
    assert fitted.params.epoch_length == 7  # the chain's parameters, not the scenario's


def test_validators_too_small_for_the_minimum_stake_are_merged_and_empty_chains_refused() -> None:
    base = Scenario()
    fitted = chain_scenario(base, origin(10**6 * DCT, 5 * DCT, min_validator_stake=2 * DCT), validators=4)
    assert fitted.start.validators == 2  # 5 DCT over 4 would be 1.25 each, below 2
    with pytest.raises(ScenarioError):
        chain_scenario(base, origin(0, 0), validators=1)
    with pytest.raises(ScenarioError):
        chain_scenario(base, origin(10**6 * DCT, DCT), validators=0)
    tiny = dataclasses.replace(base, agents=dataclasses.replace(base.agents, providers=1))
    assert chain_scenario(tiny, origin(DCT, 0), validators=1).agents.providers == 1  # at least one
