"""Market latency between two real nodes: request -> countersigned contract, and escrow final ->
job process started.

Starts two full nodes in one process (real libp2p hosts on 127.0.0.1, SQLite stores, consensus
between them as the two validators); node 0 sells simulated GPUs with the bubblewrap executor.

- negotiation: node 1 runs the requester's side against node 0 over ``/dcent/market/1.0.0``:
  request for quote -> signed quote -> contract signed by the requester -> countersigned. The
  time is from opening the stream to holding the fully signed contract.
- escrow -> start: node 1 submits real jobs; each one's first action prints the wall clock inside
  the sandbox. The figure is that time minus the wall time node 0 committed the block holding the
  escrow (both read the same machine clock).

Prints figures and one JSON line:
{"bench": "negotiation", "p50_ms": ..., "p99_ms": ..., "escrow_to_start_p50_ms": ..., ...}
Goals (issue 5): negotiation p50 <= 25 ms; escrow final -> job process started <= 200 ms.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
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
from node.market.records import JobState
from protocol.crypto import PrivateKey
from protocol.ledger.genesis import dev_genesis
from protocol.market.jobspec import JobSpec
from protocol.market.matching import match
from protocol.market.negotiation import RequesterNegotiation, RequesterState, derive_nonce
from protocol.units import DCT

CHAIN_ID = "dcent-bench-market"
CONSENSUS = ConsensusSettings(
    timeout_propose_ms=800,
    timeout_prevote_ms=400,
    timeout_precommit_ms=400,
    timeout_delta_ms=200,
    gossip_interval_ms=400,
    timeout_commit_ms=100,
    snapshot_interval=1000,
)


def spec(name: str, script: str) -> JobSpec:
    return JobSpec.from_document(
        {
            "name": name,
            "argv": ["sh", "-c", script],
            "max_runtime_s": "30s",
            "max_price_per_gpu_second": "0.01 DCT",
            "resources": {"gpu_count": 1},
        }
    )


def homes(root: Path) -> list[tuple[HomePaths, PrivateKey]]:
    keys = [PrivateKey.from_label(f"bench-market-{i}") for i in range(2)]
    genesis = dev_genesis(
        CHAIN_ID,
        [(k.public_key.raw, 100 * DCT) for k in keys],
        [(k.address.raw, 1_000_000 * DCT) for k in keys],
    )
    out = []
    for i, key in enumerate(keys):
        paths = HomePaths(root / f"node{i}")
        write_secret(paths.validator_key, key.seed().hex() + "\n")
        write_secret(paths.node_key, PrivateKey.from_label(f"bench-market-node-{i}").seed().hex() + "\n")
        paths.data.mkdir(parents=True, exist_ok=True)
        paths.genesis.write_text(genesis.to_json())
        out.append((paths, key))
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def bench(root: Path, rounds: int, jobs: int) -> dict[str, object]:
    (paths0, _), (paths1, _) = homes(root)
    market = MarketConfig(executor="bubblewrap", announce_interval_s=1, announce_ttl_s=5)
    provider = Node(
        paths0,
        NodeConfig(
            moniker="provider",
            p2p=P2PConfig(listen="/ip4/127.0.0.1/tcp/0"),
            rpc=RpcConfig(addr="127.0.0.1:0"),
            consensus=CONSENSUS,
            market=dataclasses.replace(market, simulated_gpus="8xH100-80GB"),
        ),
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(provider.run)
        requester = Node(
            paths1,
            NodeConfig(
                moniker="requester",
                p2p=P2PConfig(listen="/ip4/127.0.0.1/tcp/0", bootstrap=tuple(provider.host.listen_addrs)),
                rpc=RpcConfig(addr="127.0.0.1:0"),
                consensus=CONSENSUS,
                market=market,
            ),
        )
        await nursery.start(requester.run)
        assert requester.market is not None and provider.market is not None and requester.capacity is not None
        assert requester.market.requester is not None and provider.driver is not None
        provider_key = provider.validator_key.public_key.raw
        while provider_key not in {a.provider for a in requester.capacity.entries()}:
            await trio.sleep(0.05)
        await requester.wait_for_height(2)

        # --- negotiation ---------------------------------------------------------------------
        job = spec("bench-negotiation", "true")
        offer = match(
            job, requester.capacity.entries(), now_ms=int(time.time() * 1000), min_provider_stake=0
        )[0]
        seed = os.urandom(32)
        times_ms: list[float] = []
        for attempt in range(rounds):
            negotiation = RequesterNegotiation(
                key=requester.validator_key,
                chain_id=CHAIN_ID,
                spec=job,
                offer=offer,
                nonce=derive_nonce(seed, attempt),
                deadline_height=requester.app.height + 10_000,  # type: ignore[union-attr]
            )
            started = time.perf_counter()
            await requester.market.requester.negotiate(negotiation)
            elapsed = (time.perf_counter() - started) * 1000
            assert negotiation.state is RequesterState.AGREED, negotiation.failure
            times_ms.append(elapsed)
            # Never escrowed: hand the provider's GPUs back for the next round at once.
            held = provider.market.allocator.allocations()
            for job_id in held:
                provider.market.allocator.release(job_id)

        # --- escrow final -> job process started ---------------------------------------------
        starts_ms: list[float] = []
        for index in range(jobs):
            record = await requester.market.submit(spec(f"bench-start-{index}", "date +%s%N"))
            while requester.market.get(record.job_id).state not in (JobState.SETTLED, JobState.FAILED):
                await trio.sleep(0.05)
            done = requester.market.get(record.job_id)
            assert done.state is JobState.SETTLED, done.error_message
            stdout, _, _ = await requester.market.logs(done.job_id)
            process_start_ms = int(stdout.split()[0]) / 1e6
            assert done.contract_hash is not None
            provider_record = provider.market.get("p-" + done.contract_hash.hex()[:24])
            escrow_final_ms = provider.driver.commit_wall_ms[provider_record.escrow_height]
            starts_ms.append(process_start_ms - escrow_final_ms)
        nursery.cancel_scope.cancel()
    return {
        "bench": "negotiation",
        "rounds": rounds,
        "p50_ms": round(statistics.median(times_ms), 2),
        "p99_ms": round(percentile(times_ms, 0.99), 2),
        "jobs": jobs,
        "escrow_to_start_p50_ms": round(statistics.median(starts_ms), 1),
        "escrow_to_start_max_ms": round(max(starts_ms), 1),
        "goal_p50_ms": 25,
        "goal_escrow_to_start_ms": 200,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dcent-bench-market-") as tmp:
        result = trio.run(bench, Path(tmp), args.rounds, args.jobs)
    print(
        f"negotiation (request -> countersigned contract), {result['rounds']} rounds between two real nodes:"
    )
    print(f"  p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms (goal p50 <= 25 ms)")
    print(f"escrow final -> job process started, {result['jobs']} jobs in bubblewrap:")
    print(
        f"  p50 {result['escrow_to_start_p50_ms']} ms, max {result['escrow_to_start_max_ms']} ms (goal <= 200 ms)"
    )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
