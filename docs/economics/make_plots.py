"""Regenerate the plots and summaries of docs/economics/ from configs/economics/*.toml.

    .venv/bin/python docs/economics/make_plots.py [--years N] [--out docs/economics]

Runs each scenario (the same code as `dcent economics simulate`), writes
``<scenario>.png`` (its overview chart) and ``<scenario>-summary.csv``, then
``compare.png`` with every scenario on the same axes. Deterministic: the scenarios' seeds.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from node.cli.economics_plots import write_charts  # noqa: E402
from protocol.econsim.engine import simulate  # noqa: E402
from protocol.econsim.report import summary  # noqa: E402
from protocol.econsim.scenario import parse_scenario  # noqa: E402

SCENARIOS = ("baseline", "demand_boom", "demand_crash", "high_burn")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--years", type=float, default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "economics")
    args = parser.parse_args()
    scratch = args.out / ".charts"
    scratch.mkdir(parents=True, exist_ok=True)
    runs = {}
    for name in SCENARIOS:
        scenario = parse_scenario((ROOT / "configs" / "economics" / f"{name}.toml").read_text(), source=name)
        started = time.perf_counter()
        run = simulate(scenario, years=args.years)
        print(
            f"{name}: {len(run.rows)} steps, {run.rows[-1].height} blocks in {time.perf_counter() - started:.0f} s"
        )
        runs[name] = run.rows
        facts = summary(run)
        (args.out / f"{name}-summary.csv").write_text(
            "name,value\n" + "".join(f"{k},{'' if v is None else v}\n" for k, v in facts.items())
        )
        write_charts(scratch, {name: run.rows}, title=f"{name} (seed {run.seed})")
        (scratch / "overview.png").replace(args.out / f"{name}.png")
    write_charts(scratch, runs, title="The four scenarios")
    (scratch / "overview.png").replace(args.out / "compare.png")
    for leftover in scratch.iterdir():
        leftover.unlink()
    scratch.rmdir()
    return 0


if __name__ == "__main__":
    sys.exit(main())
