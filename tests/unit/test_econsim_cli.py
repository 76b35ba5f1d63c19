"""`dcent economics simulate` and the governance preview entry point.

The CLI writes the CSV series, the summary and the PNG charts; two runs with one seed are
byte-identical, another seed is not; bad input exits 2 with the field named and writes nothing;
an unwritable output exits 1. The preview runs one start twice and the changed parameter shows
in the projected supply and bonded ratio (``fee_burn_share`` and ``inflation_max``, the two
changes the issue names).
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from node.cli.economics import preview_rows, write_preview
from node.cli.main import main
from protocol.econsim.economy import EconomyStart
from protocol.econsim.engine import preview
from protocol.econsim.scenario import Scenario
from protocol.ledger.genesis import genesis_state
from protocol.units import DCT, percent
from tests.unit.ledger_helpers import VALIDATOR_LABELS, make_genesis

BASELINE = str(Path(__file__).resolve().parents[2] / "configs" / "economics" / "baseline.toml")
FAST = ["--set", "blocks_per_year=36525", "--set", "unbonding_period=50"]
CHARTS = {
    "supply.png",
    "inflation.png",
    "bonded_ratio.png",
    "burn_vs_issuance.png",
    "provider_income.png",
    "gpu_hour_price.png",
    "active_providers.png",
    "utilization.png",
    "overview.png",
}


def _simulate(out: Path, *extra: str) -> int:
    return main(
        ["economics", "simulate", "--scenario", BASELINE, "--years", "0.1", *FAST, "--out", str(out), *extra]
    )


def test_simulate_writes_csv_and_charts_byte_identical_for_a_seed(tmp_path: Path) -> None:
    first, second, other = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    assert _simulate(first, "--seed", "5") == 0
    assert _simulate(second, "--seed", "5") == 0
    assert _simulate(other, "--seed", "6", "--no-plots") == 0
    names = {path.name for path in first.iterdir()}
    assert names == CHARTS | {"series.csv", "summary.csv"}
    for name in sorted(names):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
        if name.endswith(".png"):
            assert (first / name).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert {path.name for path in other.iterdir()} == {"series.csv", "summary.csv"}
    assert (other / "series.csv").read_bytes() != (first / "series.csv").read_bytes()


def test_series_csv_is_exact_and_consistent(tmp_path: Path) -> None:
    assert _simulate(tmp_path, "--no-plots") == 0
    rows = list(csv.DictReader((tmp_path / "series.csv").open()))
    assert len(rows) == 36  # 0.1 year of daily steps

    def base_units(text: str) -> int:
        whole, fraction = text.split(".")
        return int(whole) * 10**9 + int(fraction)

    previous = None
    for row in rows:
        supply = base_units(row["supply_dct"])
        if previous is not None:
            assert supply == previous + base_units(row["issued_dct"]) - base_units(row["burned_step_dct"])
        previous = supply
        assert 0 <= float(row["bonded_ratio_pct"]) <= 100
        assert float(row["price_per_gpu_hour_dct"]) >= 0.6  # the baseline's price floor
    summary = dict(csv.reader((tmp_path / "summary.csv").open()))
    assert summary["scenario"] == "baseline"
    assert summary["end_supply_dct"] == rows[-1]["supply_dct"]


def test_set_changes_the_ledger_parameter_used(tmp_path: Path) -> None:
    assert _simulate(tmp_path / "half", "--no-plots") == 0
    assert _simulate(tmp_path / "all", "--no-plots", "--set", "fee_burn_share=100%") == 0

    def burned(directory: Path) -> str:
        return dict(csv.reader((directory / "summary.csv").open()))["burned_dct"]

    assert float(burned(tmp_path / "all")) > float(burned(tmp_path / "half"))


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--set", "fee_burn_share=150%"], "params.fee_burn_share"),
        (["--set", "warp_speed=9"], "warp_speed: unknown setting"),
        (["--set", "novalue"], "write PARAM=VALUE"),
        (["--years", "-1"], "--years"),
        (["--seed", "-3"], "--seed"),
    ],
)
def test_bad_input_exits_2_naming_the_problem_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], fragment: str
) -> None:
    out = tmp_path / "out"
    assert _simulate(out, *args) == 2
    assert fragment in capsys.readouterr().err
    assert not out.exists()


def test_bad_scenario_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[agents]\nproviders = -4\n")
    code = main(["economics", "simulate", "--scenario", str(bad), "--out", str(tmp_path / "o")])
    assert code == 2
    assert "agents.providers" in capsys.readouterr().err
    assert (
        main(["economics", "simulate", "--scenario", str(tmp_path / "missing.toml"), "--out", str(tmp_path)])
        == 2
    )


def test_unwritable_output_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert _simulate(blocker / "out", "--no-plots", "--years", "0.01") == 1
    assert "cannot write" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("param", "value"), [("fee_burn_share", percent(100)), ("inflation_max", percent(14))]
)
def test_preview_from_a_chain_state_shows_the_change(param: str, value: int) -> None:
    """From a real ledger state (a genesis with 3 validators), with and without the change."""
    # Holders who want 60% elsewhere do not bond: inflation climbs toward its maximum.
    scenario = (
        Scenario()
        .with_setting("blocks_per_year", "36525")
        .with_setting("tx_per_day", "2000000")
        .with_setting("outside_rate", "60%")
    )
    state = genesis_state(
        make_genesis(
            scenario.params,
            stakes=[(label, 5_000_000 * DCT) for label in VALIDATOR_LABELS],
            balances=[(label, 20_000_000 * DCT) for label in ("alice", "bob", "carol", "dave")],
        )
    )
    origin = EconomyStart.from_ledger(state)
    start = scenario.start
    small = Scenario(
        start=type(start)(
            supply=origin.supply,
            validators=3,
            requester_balance=origin.supply // 20,
            provider_balance=origin.supply // 100,
        ),
        params=scenario.params,
        agents=scenario.agents,
    )
    result = preview(origin, small, param, value, years=0.5, seed=3)
    base, changed = result.base.rows, result.changed.rows
    assert len(base) == len(changed) == 182
    assert changed[-1].supply < base[-1].supply
    if param == "inflation_max":
        assert max(row.inflation for row in changed) <= value < max(row.inflation for row in base)
    else:
        assert changed[-1].burned > base[-1].burned
    assert base[0].height == origin.height + 100  # continues the chain's heights
    table = dict((what, (before, after)) for what, before, after in preview_rows(result))
    assert table["supply after"][0] != table["supply after"][1]


def test_preview_is_written_as_two_csv_and_shared_charts(tmp_path: Path) -> None:
    scenario = Scenario().with_setting("blocks_per_year", "36525")
    origin = EconomyStart.from_start(scenario.start, scenario.params)
    result = preview(origin, scenario, "fee_burn_share", percent(100), years=0.05, seed=1)
    written = write_preview(tmp_path, result, changed_label="fee_burn_share 100%")
    assert {path.name for path in written} == CHARTS | {"as_is.csv", "changed.csv"}
    assert (tmp_path / "as_is.csv").read_text() != (tmp_path / "changed.csv").read_text()
