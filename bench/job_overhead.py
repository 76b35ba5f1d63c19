"""What the market adds around a job: escrow final -> the job's first output line, and the job's
exit -> settlement.

Starts two full nodes in one process (real libp2p hosts on 127.0.0.1, SQLite stores, consensus
between them as the two validators); node 0 sells simulated GPUs with the bubblewrap executor,
node 1 submits real jobs, one at a time. Each job prints the wall clock as its first line and
again as its last action, a moment later (``date +%s%N``), then exits. Per job:

- escrow final -> first line printed: the job's first reading minus the wall time node 0
  committed the block holding the escrow;
- escrow final -> first line at the requester: when that line reached node 1 live
  (``/dcent/joblog/1.0.0``), minus the same commit time;
- exit -> settlement: the wall time node 0 committed the block that settled the contract, minus
  the job's last reading (the exit follows it within a millisecond). This includes collecting
  the outputs, tearing the sandbox down, delivering the result, the countersignature and the
  settle transaction's block.

All readings come from the same machine clock. Prints figures and one JSON line:
{"bench": "job_overhead", "escrow_to_first_line_p50_ms": ..., "exit_to_settlement_p50_ms": ...}
Exits non-zero if a job does not complete and settle.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import trio

from node.config import (
    ConsensusSettings,
    HomePaths,
    MarketConfig,
    NodeConfig,
    P2PConfig,
    RpcConfig,
    write_secret,
)
from node.daemon import Node
from node.market.records import TERMINAL, JobState
from protocol.crypto import PrivateKey
from protocol.ledger.genesis import dev_genesis
from protocol.market.jobspec import JobSpec
from protocol.units import DCT

CHAIN_ID = "dcent-bench-overhead"
CONSENSUS = ConsensusSettings(
    timeout_propose_ms=800,
    timeout_prevote_ms=400,
    timeout_precommit_ms=400,
    timeout_delta_ms=200,
    gossip_interval_ms=400,
    timeout_commit_ms=100,
    snapshot_interval=1000,
)
SCRIPT = "date +%s%N; sleep 0.2; date +%s%N"
JOB_TIMEOUT_S = 120


def spec(index: int) -> JobSpec:
    return JobSpec.from_document(
        {
            "name": f"bench-overhead-{index}",
            "argv": ["sh", "-c", SCRIPT],
            "max_runtime_s": "30s",
            "max_price_per_gpu_second": "0.01 DCT",
            "resources": {"gpu_count": 1},
            "limits": {"memory": "256 MiB", "cpu_cores": 1, "processes": 64, "disk": "128 MiB"},
        }
    )


def homes(root: Path) -> list[HomePaths]:
    keys = [PrivateKey.from_label(f"bench-overhead-{i}") for i in range(2)]
    genesis = dev_genesis(
        CHAIN_ID,
        [(k.public_key.raw, 100 * DCT) for k in keys],
        [(k.address.raw, 1_000_000 * DCT) for k in keys],
    )
    out = []
    for i, key in enumerate(keys):
        paths = HomePaths(root / f"node{i}")
        write_secret(paths.validator_key, key.seed().hex() + "\n")
        write_secret(paths.node_key, PrivateKey.from_label(f"bench-overhead-node-{i}").seed().hex() + "\n")
        paths.data.mkdir(parents=True, exist_ok=True)
        paths.genesis.write_text(genesis.to_json())
        out.append(paths)
    return out


def config(name: str, market: MarketConfig, bootstrap: tuple[str, ...] = ()) -> NodeConfig:
    return NodeConfig(
        moniker=name,
        p2p=P2PConfig(listen="/ip4/127.0.0.1/tcp/0", bootstrap=bootstrap),
        rpc=RpcConfig(addr="127.0.0.1:0"),
        consensus=CONSENSUS,
        market=market,
    )


@dataclasses.dataclass
class Figures:
    printed_ms: list[float] = dataclasses.field(default_factory=list)
    received_ms: list[float] = dataclasses.field(default_factory=list)
    settled_ms: list[float] = dataclasses.field(default_factory=list)
    failed: list[str] = dataclasses.field(default_factory=list)


async def bench(root: Path, jobs: int) -> Figures:
    paths0, paths1 = homes(root)
    market = MarketConfig(executor="bubblewrap", announce_interval_s=1, announce_ttl_s=5)
    provider = Node(paths0, config("provider", dataclasses.replace(market, simulated_gpus="2xH100-80GB")))
    figures = Figures()
    async with trio.open_nursery() as nursery:
        await nursery.start(provider.run)
        requester = Node(paths1, config("requester", market, tuple(provider.host.listen_addrs)))
        await nursery.start(requester.run)
        assert requester.market is not None and provider.market is not None and requester.capacity is not None
        assert requester.market.requester is not None and provider.driver is not None
        if not provider.readiness.status().selling:
            figures.failed.append(f"the provider does not sell: {provider.readiness.status().summary}")
            nursery.cancel_scope.cancel()
            return figures
        provider_key = provider.validator_key.public_key.raw
        with trio.fail_after(60):
            while provider_key not in {a.provider for a in requester.capacity.entries()}:
                await trio.sleep(0.05)
        await requester.wait_for_height(2)
        for index in range(jobs):
            record = await requester.market.submit(spec(index), max_attempts=1)
            with trio.move_on_after(JOB_TIMEOUT_S):
                while requester.market.get(record.job_id).state not in TERMINAL:
                    await trio.sleep(0.02)
            done = requester.market.get(record.job_id)
            if (
                done.state is not JobState.SETTLED
                or done.receipt is None
                or done.receipt.outcome != "completed"
            ):
                figures.failed.append(f"{done.job_id}: {done.state.value} {done.error_message}")
                continue
            assert done.contract_hash is not None
            stdout, _, _ = await requester.market.logs(done.job_id)
            first_ns, last_ns = (int(word) for word in stdout.split()[:2])
            sold = provider.market.get("p-" + done.contract_hash.hex()[:24])
            await provider.wait_for_height(max(done.settled_height, sold.settled_height))
            escrow_final_ms = provider.driver.commit_wall_ms[sold.escrow_height]
            settled_ms = provider.driver.commit_wall_ms[max(done.settled_height, sold.settled_height)]
            received = requester.market.requester.live.first_output_ms.get(done.job_id)
            figures.printed_ms.append(first_ns / 1e6 - escrow_final_ms)
            if received is not None:
                figures.received_ms.append(received - escrow_final_ms)
            figures.settled_ms.append(settled_ms - last_ns / 1e6)
        nursery.cancel_scope.cancel()
    return figures


def summary(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "max": None}
    return {"p50": round(statistics.median(values), 1), "max": round(max(values), 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10)
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dcent-bench-overhead-") as tmp:
        figures = trio.run(bench, Path(tmp), args.jobs)
    printed, received, settled = (
        summary(figures.printed_ms),
        summary(figures.received_ms),
        summary(figures.settled_ms),
    )
    done = len(figures.settled_ms)
    print(f"{done} of {args.jobs} jobs completed and settled in bubblewrap between two real nodes:")
    print(f"  escrow final -> first line printed:        p50 {printed['p50']} ms, max {printed['max']} ms")
    print(f"  escrow final -> first line at requester:   p50 {received['p50']} ms, max {received['max']} ms")
    print(f"  job exit -> settlement block committed:    p50 {settled['p50']} ms, max {settled['max']} ms")
    for failure in figures.failed:
        print(f"  FAILED: {failure}")
    result = {
        "bench": "job_overhead",
        "jobs": args.jobs,
        "completed": done,
        "escrow_to_first_line_p50_ms": printed["p50"],
        "escrow_to_first_line_max_ms": printed["max"],
        "escrow_to_first_line_at_requester_p50_ms": received["p50"],
        "escrow_to_first_line_at_requester_max_ms": received["max"],
        "exit_to_settlement_p50_ms": settled["p50"],
        "exit_to_settlement_max_ms": settled["max"],
        "block_floor_ms": CONSENSUS.timeout_commit_ms,
        "wall_s": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(result))
    return 0 if done == args.jobs else 1


if __name__ == "__main__":
    sys.exit(main())
