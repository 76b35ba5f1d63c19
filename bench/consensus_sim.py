"""Consensus simulator throughput: seeded runs with faults, on one core.

Prints one JSON line:
    {"bench": "consensus_sim", "runs": ..., "validators": ..., "heights": ..., "seconds": ...,
     "cpu_seconds": ..., "runs_per_s": ..., "safety_violations": ..., "liveness_failures": ...}
Goal (issue 3): >= 1,000 runs of 4 validators x 20 heights with faults in <= 60 s on one core.
"""

from __future__ import annotations

import argparse
import json
import time

from protocol.sim.runner import run_seeds
from protocol.sim.world import SimConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--validators", type=int, default=4)
    parser.add_argument("--byzantine", type=int, default=0)
    parser.add_argument("--heights", type=int, default=20)
    parser.add_argument("--seed-start", type=int, default=0)
    args = parser.parse_args()
    config = SimConfig(validators=args.validators, byzantine=args.byzantine, heights=args.heights)
    wall, cpu = time.perf_counter(), time.process_time()
    summary = run_seeds(range(args.seed_start, args.seed_start + args.runs), config)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(
        json.dumps(
            {
                "bench": "consensus_sim",
                "runs": summary.runs,
                "validators": args.validators,
                "byzantine": args.byzantine,
                "heights": args.heights,
                "seconds": round(wall, 2),
                "cpu_seconds": round(cpu, 2),
                "runs_per_s": round(summary.runs / wall, 1) if wall > 0 else None,
                "events": summary.events,
                "safety_violations": summary.safety_violations,
                "liveness_failures": summary.liveness_failures,
            }
        )
    )


if __name__ == "__main__":
    main()
