"""Finality at scale under link latency, in the consensus simulator (issue 14, "Realistic scale").

For each validator count (default 4, 16, 64, 128) one seeded simulator run
(``protocol.sim.latency``) with the testnet's consensus timeouts (``node.testnet.layout
.TESTNET_CONSENSUS``: what ``bench/finality.py`` runs real nodes with) and links of ``--latency``
ms round trip (half each way, plus a seeded 0..``--jitter`` ms), no faults, equal stakes. Reports
per count the p50/p99 finality of the transactions committed on node 0 (submit -> commit, virtual
ms) and the p50 block interval. The same seed gives the same figures, event for event; CPU time
is not modelled (see ``protocol/sim/latency.py``), so where real nodes are CPU-bound this is the
network's and protocol's share only.

Prints a table and one JSON line:
    {"bench": "finality_sim", "latency_ms": ..., "rows": [{"validators": ..., "tx_p50_ms": ...}, ...]}
Goal (issue 14): 128 validators at 100 ms RTT, p50 <= 3 s. Exits 1 when a run failed its own
liveness check (a height not committed within the bound).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

from node.testnet.layout import TESTNET_CONSENSUS
from protocol.sim.latency import latency_config, measure_finality

GOAL_128_P50_MS = 3000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--validators", type=int, nargs="+", default=[4, 16, 64, 128])
    parser.add_argument(
        "--latency", type=int, default=100, metavar="MS", help="round-trip time (default 100)"
    )
    parser.add_argument("--jitter", type=int, default=0, metavar="MS", help="added 0..MS per message, seeded")
    parser.add_argument("--heights", type=int, default=8, help="heights every node must reach (default 8)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--tx-interval-ms", type=int, default=25, help="a client batch every this many ms")
    args = parser.parse_args()
    rows = []
    print(
        f"{'validators':>10} {'RTT ms':>7} {'txs':>5} {'p50 ms':>7} {'p99 ms':>7} {'block ms':>9} {'cpu s':>6}"
    )
    for validators in args.validators:
        config = latency_config(
            validators,
            args.latency,
            jitter_ms=args.jitter,
            heights=args.heights,
            consensus=TESTNET_CONSENSUS,
            tx_interval_ms=args.tx_interval_ms,
        )
        cpu = time.process_time()
        figures = measure_finality(config, args.seed)
        cpu = time.process_time() - cpu
        row = dataclasses.asdict(figures) | {"cpu_s": round(cpu, 1)}
        rows.append(row)
        print(
            f"{validators:>10} {args.latency:>7} {figures.txs:>5} {figures.tx_p50_ms:>7} {figures.tx_p99_ms:>7} "
            f"{figures.block_interval_p50_ms:>9} {cpu:>6.1f}" + ("" if figures.ok else "  LIVENESS FAILED"),
            flush=True,
        )
    largest = max(rows, key=lambda row: row["validators"])
    print(
        f"{largest['validators']} validators at {args.latency} ms RTT: p50 finality {largest['tx_p50_ms']} ms "
        f"(goal at 128: <= {GOAL_128_P50_MS} ms)"
    )
    print(
        json.dumps(
            {
                "bench": "finality_sim",
                "latency_ms": args.latency,
                "jitter_ms": args.jitter,
                "seed": args.seed,
                "heights": args.heights,
                "rows": rows,
                "goal_128_p50_ms": GOAL_128_P50_MS,
            }
        )
    )
    return 0 if all(row["ok"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
