"""The agent model reacts the way its parameters say, and a run keeps the ledger's books.

The pure decision functions are checked for their direction; whole runs (real ledger blocks,
fast blocks-per-year so a year is quick) for the behaviour the issue asks the simulator to show:
bonding follows the yield against the outside rate, providers follow income against cost, demand
falls with price, prices follow utilization, and the burn follows the fee-burn share.
"""

from __future__ import annotations

import pytest

from protocol.econsim import agents as model
from protocol.econsim.economy import EconomyStart, build_state
from protocol.econsim.engine import Run, simulate
from protocol.econsim.scenario import Agents, Scenario, Shock
from protocol.sim.rng import SplitMix64
from protocol.units import DCT, percent

#: 100 blocks a day: a simulated year is 36,525 blocks and about a second of test time.
FAST = "36525"


def fast(**settings: str) -> Scenario:
    scenario = Scenario().with_setting("blocks_per_year", FAST).with_setting("unbonding_period", "50")
    for name, value in settings.items():
        scenario = scenario.with_setting(name, value)
    return scenario


def test_price_rises_with_utilization_and_demand_falls_with_price() -> None:
    agents = Agents()
    prices = [model.price_per_gpu_hour(agents, u / 10) for u in range(11)]
    assert prices == sorted(prices) and prices[0] == agents.price_floor_per_gpu_hour < prices[-1]
    factors = [model.demand_factor(agents, p * DCT / 10) for p in range(1, 40)]
    assert factors == sorted(factors, reverse=True)
    assert model.demand_factor(agents, float(agents.reference_price_per_gpu_hour)) == pytest.approx(1.0)
    # Prices move toward the curve by the adjustment share, never below the floor.
    moved = model.next_price(agents, 1.0 * DCT, 1.0)
    assert 1.0 * DCT < moved < model.price_per_gpu_hour(agents, 1.0)
    assert model.next_price(agents, 0.0, 0.0) == agents.price_floor_per_gpu_hour


def test_holders_bond_above_the_outside_rate_and_unbond_below() -> None:
    agents = Agents()
    common = {"bonded": 30 * DCT, "liquid": 60 * DCT, "supply": 100 * DCT, "step_days": 1}
    assert model.staking_decision(agents, staking_yield=0.10, **common).amount > 0
    assert model.staking_decision(agents, staking_yield=0.02, **common).amount < 0
    capped = model.staking_decision(
        agents, staking_yield=50.0, **{**common, "bonded": 89 * DCT, "liquid": 11 * DCT}
    )
    assert capped.amount <= 1 * DCT  # never above max_bonded_ratio (90%) of the supply


def test_providers_follow_income_against_cost() -> None:
    agents = Agents()
    cost = agents.provider_cost_per_gpu_hour

    def after(income: float) -> int:
        return model.provider_change(
            agents, providers=1_000, income_per_gpu_hour=income, step_days=30, rng=SplitMix64(7)
        )

    assert after(2.0 * cost) > 1_000 > after(0.5 * cost)
    assert (
        model.provider_change(agents, providers=1, income_per_gpu_hour=0.0, step_days=365, rng=SplitMix64(1))
        == 1
    )


def test_stochastic_rounding_is_exact_in_expectation_and_seeded() -> None:
    draws = [model.stochastic_round(2.25, SplitMix64(seed)) for seed in range(4_000)]
    assert set(draws) == {2, 3}
    assert abs(sum(draws) / len(draws) - 2.25) < 0.03
    assert draws == [model.stochastic_round(2.25, SplitMix64(seed)) for seed in range(4_000)]


def _final(run: Run) -> tuple[int, int, int]:
    last = run.rows[-1]
    return last.supply, last.bonded_ratio, last.burned


def test_a_run_keeps_the_books_and_is_deterministic_for_a_seed() -> None:
    scenario = fast()
    first, again, other = (
        simulate(scenario, years=0.5),
        simulate(scenario, years=0.5),
        simulate(scenario, years=0.5, seed=2),
    )
    assert first.rows == again.rows
    assert first.rows != other.rows
    previous = first.rows[0].supply - first.rows[0].issued + first.rows[0].burned_step
    for row in first.rows:
        assert row.supply == previous + row.issued - row.burned_step
        assert row.issued > 0 and row.burned_step > 0 and row.fees > 0
        previous = row.supply
    assert first.kernel_blocks > 10 * first.ledger_blocks
    assert first.fallback_spans == 0


def test_a_higher_outside_rate_leaves_less_stake_bonded() -> None:
    low = simulate(fast(outside_rate="2%"), years=1)
    high = simulate(fast(outside_rate="15%"), years=1)
    assert _final(high)[1] < _final(low)[1]


def test_a_higher_fee_burn_share_burns_more_and_leaves_less_supply() -> None:
    base = simulate(fast(tx_per_day="1000000"), years=0.5)
    burn = simulate(fast(tx_per_day="1000000", fee_burn_share="100%"), years=0.5)
    assert _final(burn)[2] > _final(base)[2]
    assert _final(burn)[0] < _final(base)[0]


def test_a_demand_crash_idles_gpus_lowers_prices_and_providers_leave() -> None:
    steady = fast(demand_noise="0", demand_growth="0")
    crash = Scenario(
        name="crash",
        params=steady.params,
        agents=steady.agents,
        start=steady.start,
        shocks=(Shock(at_year=0.25, demand_factor=0.1),),
    )
    calm, crashed = simulate(steady, years=1), simulate(crash, years=1)
    assert crashed.rows[-1].utilization < calm.rows[-1].utilization
    assert crashed.rows[-1].price_per_gpu_hour < calm.rows[-1].price_per_gpu_hour
    assert crashed.rows[-1].providers < calm.rows[-1].providers


def test_busy_network_prices_rise_and_providers_join() -> None:
    busy = simulate(fast(demand_gpu_hours_per_day="60000", demand_noise="0", demand_growth="0"), years=1)
    first, last = busy.rows[0], busy.rows[-1]
    assert first.utilization == pytest.approx(1.0)  # demand exceeds the 200 x 8 GPUs
    assert last.price_per_gpu_hour > first.price_per_gpu_hour
    assert last.providers > first.providers


def test_economy_built_from_a_chain_holds_its_totals() -> None:
    origin = EconomyStart(
        height=12_345,
        genesis_supply=50_000_000 * DCT,
        minted=3_000_000 * DCT,
        burned=250_000 * DCT,
        inflation=percent("11.5"),
        bonded=30_000_000 * DCT,
        community_pool=40_000 * DCT,
        provider_pool=5_000 * DCT,
        params=fast().params,
    )
    state = build_state(origin, Scenario().start)
    assert state.total_supply() == origin.supply
    assert state.vars["total_bonded"] == origin.bonded  # divisible by the 4 validators here
    assert state.height == origin.height
    assert EconomyStart.from_ledger(state) == origin
