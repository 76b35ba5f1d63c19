"""The economics simulator's liquidity agents (protocol/econsim/liquidity.py): a pool funded by
the holders, its shares bonded to liquidity mining, a trader swapping through it and the provider
standing GPUs, all as real transactions; the programmes are paid by the ledger's end-block."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from protocol.econsim.engine import simulate
from protocol.econsim.errors import ScenarioError
from protocol.econsim.report import COLUMNS, series_csv, summary
from protocol.econsim.scenario import Scenario, parse_scenario
from protocol.units import DCT, DEC, percent

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "economics"
DAYS = 0.03  # about 11 one-day steps: each a whole epoch


def _liquidity() -> Scenario:
    return parse_scenario((CONFIGS / "liquidity.toml").read_text(), source="liquidity")


def test_the_liquidity_scenario_is_the_baseline_with_the_programmes_on() -> None:
    scenario = _liquidity()
    baseline = parse_scenario((CONFIGS / "baseline.toml").read_text())
    assert scenario.params.liquidity_mining_share == percent(5)
    assert scenario.params.availability_share == percent(3)
    assert scenario.params.epoch_length == scenario.params.blocks_per_year * 100 // 36_525  # one step
    assert (scenario.agents.pool_dct, scenario.agents.standing_gpus) == (1_000_000 * DCT, 64)
    assert scenario.start == baseline.start
    plain = dataclasses.replace(
        scenario.agents, pool_dct=0, swap_dct_per_day=0.0, standing_gpus=0, mining_bonded_share=1.0
    )
    assert plain == baseline.agents


def test_each_programme_earns_its_share_of_each_steps_issuance() -> None:
    run = simulate(_liquidity(), years=DAYS)
    rows = run.rows
    assert len(rows) >= 10
    blocks = rows[1].height - rows[0].height
    assert rows[0].mining_rewards == 0  # shares are bonded from the second step
    for row in rows[1:]:
        # One epoch per step, one bond and one offer: each pot is paid whole, dust-free. Each
        # block's share is truncated on its own, so the sum is at most one unit a block short.
        mining = row.issued * percent(5) // DEC
        assert mining - blocks <= row.mining_rewards <= mining
        standing = row.issued * percent(3) // DEC
        assert standing - blocks <= row.availability_rewards <= standing
        assert row.standing_gpus == 64
    assert rows[0].availability_rewards > 0
    prices = {row.pool_price for row in rows}
    assert len(prices) > 2 and all(0.8 * DCT < price < 1.2 * DCT for price in prices)  # swaps both ways
    assert all(row.pool_dct > 900_000 * DCT for row in rows)
    totals = summary(run)
    assert (
        totals["mining_rewards_dct"] != "0.000000000" and totals["availability_rewards_dct"] != "0.000000000"
    )
    assert run.ledger_blocks >= 2 * len(rows)  # the agent block and the epoch's payout block


def test_a_liquidity_run_is_deterministic_for_its_seed() -> None:
    first, second = simulate(_liquidity(), years=0.01), simulate(_liquidity(), years=0.01)
    assert first.rows == second.rows


def test_the_programmes_shares_leave_the_community_pools_part() -> None:
    scenario = _liquidity()
    off = dataclasses.replace(
        scenario,
        params=dataclasses.replace(scenario.params, liquidity_mining_share=0, availability_share=0),
    )
    on_rows, off_rows = simulate(scenario, years=DAYS).rows, simulate(off, years=DAYS).rows
    assert on_rows[-1].community_pool < off_rows[-1].community_pool
    assert all(row.mining_rewards == row.availability_rewards == 0 for row in off_rows)


def test_a_run_without_liquidity_writes_zeros_in_the_new_columns() -> None:
    rows = simulate(Scenario(), years=0.01).rows
    assert all(
        (row.pool_dct, row.mining_rewards, row.availability_rewards, row.standing_gpus) == (0, 0, 0, 0)
        for row in rows
    )
    header, first = series_csv(rows, 1).splitlines()[:2]
    assert header.split(",") == list(COLUMNS) and header.endswith("standing_gpus")
    assert first.endswith(",0.000000000,0.000000000,0.000000000,0.000000000,0")


def test_a_pool_bigger_than_the_holders_hold_is_a_scenario_error() -> None:
    scenario = _liquidity().with_setting("pool_dct", "90000000 DCT")
    with pytest.raises(ScenarioError, match=r"agents\.pool_dct"):
        simulate(scenario, years=0.01)
