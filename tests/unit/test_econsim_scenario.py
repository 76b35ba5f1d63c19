"""Scenario files and ``--set`` overrides: the shipped scenarios parse, units are the genesis/gov
units, and every bad value is a typed error naming its field, leaving the scenario unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest

from protocol.econsim.errors import ScenarioError, UnknownSetting
from protocol.econsim.scenario import Scenario, parse_scenario
from protocol.units import DCT, percent

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "economics"


@pytest.mark.parametrize("name", ["baseline", "demand_boom", "demand_crash", "high_burn"])
def test_shipped_scenarios_parse_with_one_second_blocks(name: str) -> None:
    scenario = parse_scenario((CONFIGS / f"{name}.toml").read_text(), source=name)
    assert scenario.name == name
    assert scenario.params.blocks_per_year == 31_557_600
    assert scenario.years == 10
    assert scenario.description


def test_the_built_in_defaults_are_the_baseline_file() -> None:
    baseline = parse_scenario((CONFIGS / "baseline.toml").read_text())
    assert Scenario(description=baseline.description) == baseline


def test_scenarios_differ_where_their_names_say() -> None:
    load = {
        n: parse_scenario((CONFIGS / f"{n}.toml").read_text())
        for n in ("baseline", "demand_boom", "demand_crash", "high_burn")
    }
    assert load["high_burn"].params.fee_burn_share == percent(100) > load["baseline"].params.fee_burn_share
    assert load["high_burn"].params.protocol_fee_share > load["baseline"].params.protocol_fee_share
    assert load["demand_boom"].agents.demand_growth > load["baseline"].agents.demand_growth
    assert [shock.demand_factor for shock in load["demand_crash"].shocks] == [0.2]


def test_settings_use_the_genesis_and_gov_units() -> None:
    scenario = Scenario()
    changed = (
        scenario.with_setting("fee_burn_share", "90%")
        .with_setting("min_fee", "0.0001 DCT")
        .with_setting("params.blocks_per_year", "31557600")
        .with_setting("outside_rate", "4%")
        .with_setting("agents.providers", "500")
        .with_setting("start.supply", "5000000 DCT")
        .with_setting("provider_cost_per_gpu_hour", "0.25")
    )
    assert changed.params.fee_burn_share == percent(90)
    assert changed.params.min_fee == DCT // 10_000
    assert changed.params.blocks_per_year == 31_557_600
    assert changed.agents.outside_rate == pytest.approx(0.04)
    assert changed.agents.providers == 500
    assert changed.start.supply == 5_000_000 * DCT
    assert changed.agents.provider_cost_per_gpu_hour == DCT // 4
    assert scenario == Scenario(), "with_setting returns a copy"


@pytest.mark.parametrize(
    ("name", "value", "error", "fragment"),
    [
        ("no_such_thing", "1", UnknownSetting, "no_such_thing: unknown setting"),
        ("params.outside_rate", "5%", UnknownSetting, "not a ledger parameter"),
        ("fee_burn_share", "150%", ScenarioError, "between 0% and 100%"),
        ("fee_burn_share", "lots", ScenarioError, "params.fee_burn_share"),
        ("inflation_min", "50%", ScenarioError, "inflation_min: must not exceed inflation_max"),
        ("min_fee", "-1 DCT", ScenarioError, "params.min_fee"),
        ("providers", "0", ScenarioError, "agents.providers: 0 is outside"),
        ("outside_rate", "nan", ScenarioError, "agents.outside_rate"),
        ("demand_noise", "1.5", ScenarioError, "agents.demand_noise"),
        ("supply", "1e30 DCT", ScenarioError, "start.supply"),
        ("validators", "7.5", ScenarioError, "start.validators: expected a whole number"),
    ],
)
def test_bad_settings_are_typed_errors_naming_the_field(
    name: str, value: str, error: type[ScenarioError], fragment: str
) -> None:
    with pytest.raises(error) as caught:
        Scenario().with_setting(name, value)
    assert type(caught.value) is error
    assert fragment in caught.value.message
    assert caught.value.code in (1501, 1502)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("years = [", "not valid TOML"),
        ("colour = 'blue'", "colour: unknown field"),
        ("years = 1000", "years: 1000.0 is outside"),
        ("[params]\nno_param = 1", "params.no_param: unknown parameter"),
        ("[agents]\nbond_speed = 'fast'", "agents.bond_speed"),
        ("[start]\nbonded_ratio = '101%'", "start.bonded_ratio"),
        ("[[shocks]]\ndemand_factor = 0.5", "shocks[0]: a table with at_year"),
        ("[[shocks]]\nat_year = 1\nsize = 2", "shocks[0].size: unknown field"),
        ("name = ''", "name:"),
        ("start = 3", "start: expected a table"),
    ],
)
def test_bad_scenario_files_name_the_field(text: str, fragment: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(text)
    assert fragment in caught.value.message
