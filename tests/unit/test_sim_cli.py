"""`dcent sim`: the summary line, failure reports and exit codes."""

from __future__ import annotations

import argparse
import re

import pytest

from node.cli import sim as sim_cli

SUMMARY = re.compile(r"^runs=(\d+) safety_violations=(\d+) liveness_failures=(\d+) ", re.MULTILINE)


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser()
    sim_cli.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    code = args.func(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_clean_runs_exit_zero_with_one_summary_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(["sim", "--seeds", "3", "--heights", "5"], capsys)
    assert code == 0
    lines = out.strip().splitlines()
    assert len(lines) == 1
    match = SUMMARY.match(lines[-1])
    assert match is not None and match.groups() == ("3", "0", "0")


def test_verbose_prints_a_line_per_seed_starting_at_seed_start(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(["sim", "--seeds", "2", "--seed-start", "40", "--heights", "4", "--verbose"], capsys)
    assert code == 0
    lines = out.strip().splitlines()
    assert [line.split()[0] for line in lines[:2]] == ["seed=40", "seed=41"]
    assert SUMMARY.match(lines[-1])


def test_byzantine_half_the_stake_reports_the_seed_and_schedule_and_exits_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = _run(["sim", "--seeds", "60", "--validators", "4", "--byzantine", "2"], capsys)
    assert code == 1
    match = SUMMARY.search(out)
    assert match is not None
    runs, safety, _ = map(int, match.groups())
    assert runs == 60 and safety > 0
    assert out.strip().splitlines()[-1].startswith("runs=60 ")
    report = out[out.index("FAIL seed=") :]
    seed = int(report.split()[1].removeprefix("seed="))
    assert f"reproduce: dcent sim --seeds 1 --seed-start {seed} --validators 4 --byzantine 2" in report
    assert "fault schedule:" in report and "faults until" in report

    # The printed command reproduces the failure on its own.
    code, out, _ = _run(["sim", "--seeds", "1", "--seed-start", str(seed), "--byzantine", "2"], capsys)
    assert code == 1 and SUMMARY.search(out).groups()[:2] == ("1", "1")  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "argv",
    [
        ["sim", "--seeds", "-1"],
        ["sim", "--seeds", "1", "--validators", "3", "--byzantine", "4"],
        ["sim", "--seeds", "1", "--heights", "0"],
    ],
)
def test_bad_arguments_exit_two(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(argv, capsys)
    assert code == 2
    assert out == "" and re.match(r"error( \d+)?: ", err)
