"""Economics simulator speed: 10 years of one-second blocks, exactly, on one core.

Runs the baseline scenario (configs/economics/baseline.toml: blocks_per_year = 31,557,600) for
``--years`` and prints its figures, then one JSON line:
    {"bench": "economics_sim", "years": ..., "blocks": ..., "seconds": ..., "cpu_seconds": ...,
     "kernel_blocks": ..., "ledger_blocks": ..., "kernel_ns_per_block": ..., "fallback_spans": 0}
Goal (issue 16): 10 years of 1-second blocks in <= 60 s on one core.

Every block is exact: blocks with work go through the ledger's apply_block; empty blocks through
the kernel, whose spans equal the per-block economics functions (tests/unit/test_econsim_*.py).
Exits 1 if the run lost blocks (fewer than the years asked for) or if any span had to fall back
to the per-block functions (the fast path no longer matches protocol/economics.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from protocol.econsim.engine import simulate
from protocol.econsim.scenario import parse_scenario

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--years", type=float, default=10.0)
    parser.add_argument("--scenario", type=Path, default=ROOT / "configs" / "economics" / "baseline.toml")
    args = parser.parse_args()
    scenario = parse_scenario(args.scenario.read_text(), source=str(args.scenario))
    wall, cpu = time.perf_counter(), time.process_time()
    run = simulate(scenario, years=args.years)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    fallbacks = run.fallback_spans
    blocks = run.rows[-1].height if run.rows else 0
    expected = int(args.years * 365.25) * (scenario.params.blocks_per_year * 100 // 36_525)
    last = run.rows[-1] if run.rows else None
    print(f"scenario {scenario.name}: {len(run.rows)} daily steps, {blocks:,} blocks of one second")
    print(f"  {run.kernel_blocks:,} empty blocks by the kernel, {run.ledger_blocks:,} by apply_block")
    print(f"  {wall:.1f} s wall, {cpu:.1f} s CPU ({cpu / max(blocks, 1) * 1e9:.0f} ns per block)")
    if last is not None:
        print(f"  end supply {last.supply / 1e9:,.0f} DCT, inflation {last.inflation / 1e16:.2f}%")
    print(
        json.dumps(
            {
                "bench": "economics_sim",
                "years": round(blocks / scenario.params.blocks_per_year, 4),
                "blocks": blocks,
                "seconds": round(wall, 2),
                "cpu_seconds": round(cpu, 2),
                "kernel_blocks": run.kernel_blocks,
                "ledger_blocks": run.ledger_blocks,
                "kernel_ns_per_block": round(cpu / max(run.kernel_blocks, 1) * 1e9),
                "fallback_spans": fallbacks,
            }
        )
    )
    if blocks < expected or fallbacks:
        print(f"FAILED: {blocks} of {expected} blocks, {fallbacks} fallback spans", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
