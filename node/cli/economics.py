"""`dcent economics ...`: the token economy, simulated (and ``status``/``history``/``plot`` of a
running node, in :mod:`node.cli.economics_node`).

    dcent economics simulate [--scenario FILE] [--years N] [--set PARAM=VALUE ...] [--seed S] --out DIR

``simulate`` runs :mod:`protocol.econsim` (the ledger's own rules, driven by an agent model whose
assumptions are the scenario's parameters) and writes ``DIR/series.csv`` (one row per agent
step), ``DIR/summary.csv`` and one PNG per chart (supply, inflation, bonded ratio, burn vs
issuance, provider income, price of a GPU-hour, active providers, utilization, and an overview).
The same scenario, seed and overrides give byte-identical files.

``--set`` takes a ledger parameter in the units the genesis file and ``dcent gov propose`` use
(``fee_burn_share=90%``, ``min_fee="0.0001 DCT"``, ``blocks_per_year=31557600``) or a scenario
setting (``outside_rate=4%``, ``providers=500``, ``demand_growth=0.5``).

The group is a table of subcommands (:data:`SUBCOMMANDS`): ``status``, ``history`` and ``plot``
(a node's recorded series) register beside ``simulate`` the same way; the charts live in
:mod:`node.cli.economics_plots` and take any labelled series.

Exit status: 0 done, 1 the files could not be written, 2 a bad scenario, setting or argument.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeAlias

from node.cli import economics_node
from node.cli.report import FILE_ACCESS, USAGE, report_error
from node.wallet.cliargs import add_command_group
from protocol.econsim.engine import Preview, Run, simulate
from protocol.econsim.errors import EconsimError
from protocol.econsim.report import series_csv, summary
from protocol.econsim.scenario import MAX_YEARS, Scenario, parse_scenario

EXIT_OK = 0
EXIT_IO = 1
EXIT_USAGE = 2

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def register(subparsers: Subparsers) -> None:
    """Add ``economics`` and its subcommands to the ``dcent`` command tree."""
    commands = add_command_group(
        subparsers,
        "economics",
        help_text="the token economy: a node's status, history and charts; simulate it",
        description="Supply, inflation, staking, burn and the compute market: as a node recorded "
        "them (status, history, plot) and simulated (simulate).",
    )
    for add in SUBCOMMANDS.values():
        add(commands)


def _add_simulate(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "simulate",
        help="simulate years of the network; writes CSV and PNG charts",
        description="Simulate the network with the ledger's own issuance, fee, burn and reward "
        "rules and an agent model of holders, providers and requesters.",
    )
    parser.add_argument(
        "--scenario",
        type=Path,
        metavar="FILE",
        help="scenario TOML (default: the baseline, as configs/economics/baseline.toml)",
    )
    parser.add_argument(
        "--years", type=float, metavar="N", help="years to simulate (default: the scenario's)"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        dest="settings",
        metavar="PARAM=VALUE",
        help='override a ledger parameter ("fee_burn_share=90%%") or scenario setting; repeatable',
    )
    parser.add_argument(
        "--seed", type=int, metavar="S", help="seed of the agents' randomness (default: the scenario's)"
    )
    parser.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="directory for the CSV and PNG files"
    )
    parser.add_argument("--no-plots", action="store_true", help="write the CSV files only")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON line")
    parser.set_defaults(func=run_simulate)


#: Subcommand name -> the function that registers it.
SUBCOMMANDS: dict[str, Callable[[Subparsers], None]] = {
    "status": economics_node.add_status,
    "history": economics_node.add_history,
    "plot": economics_node.add_plot,
    "simulate": _add_simulate,
}


def load_scenario(path: Path | None, settings: list[str]) -> Scenario:
    """The scenario of ``path`` (or the built-in defaults) with ``--set`` overrides applied.

    Raises EconsimError (ScenarioError, UnknownSetting) and OSError (an unreadable file)."""
    scenario = parse_scenario(path.read_text(encoding="utf-8"), source=str(path)) if path else Scenario()
    for setting in settings:
        name, sep, value = setting.partition("=")
        if not sep or not name.strip():
            raise _usage(f"--set {setting!r}: write PARAM=VALUE")
        scenario = scenario.with_setting(name.strip(), value)
    return scenario


class _UsageError(Exception):
    pass


def _usage(message: str) -> _UsageError:
    return _UsageError(message)


def write_outputs(out: Path, run: Run, *, plots: bool) -> list[Path]:
    """Write the run's CSV files (and charts). Raises OSError."""
    out.mkdir(parents=True, exist_ok=True)
    series_path = out / "series.csv"
    series_path.write_text(series_csv(run.rows, run.scenario.agents.step_days), encoding="utf-8", newline="")
    facts = summary(run)
    summary_path = out / "summary.csv"
    summary_path.write_text(
        "name,value\n" + "".join(f"{key},{'' if value is None else value}\n" for key, value in facts.items()),
        encoding="utf-8",
        newline="",
    )
    written = [series_path, summary_path]
    if plots and run.rows:
        from node.cli.economics_plots import write_charts  # matplotlib only when charts are wanted

        title = f"{run.scenario.name} (seed {run.seed})"
        written += write_charts(out, {run.scenario.name: run.rows}, title=title)
    return written


#: The rows of a preview's side-by-side table: (label, summary key).
PREVIEW_TABLE = (
    ("supply after", "end_supply_dct"),
    ("issued", "issued_dct"),
    ("burned", "burned_dct"),
    ("inflation at the end", "end_inflation_pct"),
    ("bonded ratio at the end", "end_bonded_ratio_pct"),
    ("price of a GPU-hour", "end_price_per_gpu_hour_dct"),
    ("active providers", "end_providers"),
    ("first deflating day", "first_deflation_day"),
)


def preview_rows(preview: Preview) -> list[tuple[str, str, str]]:
    """``(what, as the parameters are, with the change)`` for ``gov propose ... --preview``."""
    base, changed = summary(preview.base), summary(preview.changed)

    def cell(facts: dict[str, str | int | None], key: str) -> str:
        value = facts.get(key)
        return "never" if value is None else str(value)

    return [(label, cell(base, key), cell(changed, key)) for label, key in PREVIEW_TABLE]


def write_preview(out: Path, preview: Preview, *, changed_label: str) -> list[Path]:
    """Both series of a preview as ``DIR/as_is.csv``, ``DIR/changed.csv`` and charts drawing the
    two on the same axes (supply and bonded ratio among them). Raises OSError."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, run in (("as_is", preview.base), ("changed", preview.changed)):
        path = out / f"{name}.csv"
        path.write_text(series_csv(run.rows, run.scenario.agents.step_days), encoding="utf-8", newline="")
        written.append(path)
    from node.cli.economics_plots import write_charts

    series = {"as is": preview.base.rows, changed_label: preview.changed.rows}
    return written + write_charts(out, series, title=f"Preview: {changed_label}")


def run_simulate(args: argparse.Namespace) -> int:
    def fail(message: str, exit_code: int, code: int = USAGE) -> int:
        return report_error(message, code, exit_code=exit_code)

    try:
        scenario = load_scenario(args.scenario, args.settings)
    except OSError as exc:
        return fail(f"cannot read {args.scenario}: {exc.strerror}", EXIT_USAGE, FILE_ACCESS)
    except EconsimError as exc:
        return fail(exc.message, EXIT_USAGE, exc.code)
    except _UsageError as exc:
        return fail(str(exc), EXIT_USAGE)
    if args.years is not None and not 0 <= args.years <= MAX_YEARS:
        return fail(f"--years: {args.years} is outside [0, {MAX_YEARS}]", EXIT_USAGE)
    if args.seed is not None and not 0 <= args.seed < 2**64:
        return fail("--seed: a whole number in [0, 2^64)", EXIT_USAGE)
    started = time.perf_counter()
    try:
        run = simulate(scenario, years=args.years, seed=args.seed)
    except EconsimError as exc:
        return fail(exc.message, EXIT_USAGE, exc.code)
    seconds = time.perf_counter() - started
    try:
        written = write_outputs(args.out, run, plots=not args.no_plots)
    except OSError as exc:
        return fail(f"cannot write to {args.out}: {exc.strerror or exc}", EXIT_IO, FILE_ACCESS)
    facts = summary(run)
    if args.json:
        print(json.dumps({**facts, "seconds": round(seconds, 3), "files": [str(p) for p in written]}))
        return EXIT_OK
    width = max(len(key) for key in facts)
    for key, value in facts.items():
        print(f"{key:<{width}}  {'never' if value is None else value}")
    print(f"{'seconds':<{width}}  {seconds:.1f}")
    print(f"wrote {len(written)} files to {args.out}")
    return EXIT_OK
