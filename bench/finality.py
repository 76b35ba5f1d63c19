"""Finalized transfers per second and finality latency on a 4-validator testnet of real processes.

Lays out a fresh testnet in a temporary directory (``node.testnet``: genesis, homes, derived
ports), starts four real ``dcent node run`` processes, all validators, and waits until they are
connected and making blocks. Then:

1. funds S sender accounts from the testnet's faucet (JSON-RPC batches of transfers, at most 60
   nonces in flight, the mempool's window being 64);
2. pre-signs S x M transfers (nonces 1..M per sender, M <= 60), so that no signing happens while
   the clock runs;
3. submits them as JSON-RPC batches of ``tx_submit``, each sender's transactions to one node,
   senders spread over the four nodes: by default at an offered load (``--rate``, 2,000 tx/s,
   each node a batch every ~100 ms), or with ``--rate 0`` as fast as the nodes admit them (a
   burst, whose latency measures the queue it builds more than finality);
4. follows the chain on node 0: ``chain_getBlock`` of the next height every 20 ms, so each
   block's commit is seen within ~20 ms (plus one RPC) of being stored there.

Figures:
- finalized tx/s: transactions committed / (last commit seen - first submit);
- finality latency p50/p99: per transaction, the moment its block's commit was seen on node 0
  minus the moment its batch was sent (an upper bound by at most one poll); also against the
  block's ``time_ms`` (the proposer's clock when it proposed, before the votes: a lower bound);
- admission: how fast the nodes answered the ``tx_submit`` batches, and each node's CPU seconds
  (``/proc/<pid>/stat``) during the run, which says where the time went.

``--overload`` finds the peak finalized rate and then offers twice that for a minute
(``finality_overload.py``; issue 14). A run that gives up waiting for commits, in either mode,
prints why and exits 1: what it admitted was lost or stalled.

``--latency MS`` (a round-trip time; with ``--jitter MS``, ``--loss PCT``) or ``--netns`` puts each
node in a network namespace of its own on a netem-shaped veth link, as ``dcent testnet up --netns``
does (``node.testnet.netns``: half the RTT on each node's link); the namespaces are removed at the
end. Issue 14 asks for 4, 8 and 16 validators at 0, 50 and 100 ms RTT; for finality rather than
throughput run it at a low rate, e.g. ``--rate 100 --senders 40 --per-sender 10``. A kernel without
``sch_netem`` shapes the links with a userspace switch on TUN devices instead
(``node/testnet/tunshaper.py``; ``--shaper netem`` refuses with error 5910 and exits 2 there).
``bench/finality_sim.py`` gives the simulator's figures for the same shape, up to 128 validators.

``--profile-node I`` runs node I under cProfile (written to ``--profile-out``) for a profile of
the hot path. The testnet is always stopped at the end, also on failure or Ctrl-C.

Prints figures and one JSON line:
    {"bench": "finality", "validators": ..., "latency_ms": ..., "tx_per_s": ..., "p50_ms": ..., "p99_ms": ..., ...}
Goal (issue 7): >= 1,500 tx/s finalized, p50 <= 1.5 s. Goal (issue 14): 16 validators at 100 ms RTT,
p50 <= 2 s.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import hashlib
import itertools
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import trio

from node.config import ConsensusSettings
from node.rpc.client import RpcClient
from node.rpc.errors import RpcCallError
from node.testnet.errors import LocalnetError
from node.testnet.layout import (
    TESTNET_CONSENSUS,
    NetworkLayout,
    NetworkPlan,
    NodeLayout,
    build_network,
)
from node.testnet.netns import LinkShape, Placement
from node.testnet.processes import (
    NodeProcess,
    free_base_port,
    node_command,
    process_cpu_seconds,
    read_pid_file,
    start_node,
    stop_nodes,
)
from node.testnet.readiness import client_for, wait_ready
from node.testnet.tunshaper import SHAPERS, shaped_fabric
from protocol.crypto import PrivateKey
from protocol.ledger.tx import Transfer, sign_tx
from protocol.units import DCT

UNKNOWN_BLOCK = 5201
#: Refusals a submitter retries with its next batch: busy (5605), and a nonce gap (5607) that a
#: busy refusal of the same sender's earlier nonce left behind.
RETRIED = (5605, 5607)
#: Nonces a sender may have waiting (the mempool allows 64; leave room).
MAX_IN_FLIGHT_NONCES = 60
FOLLOW_POLL_S = 0.02
CALL_TIMEOUT_S = 120.0
#: Give up waiting for the remaining commits after this long without a new committed tx.
STALL_TIMEOUT_S = 60.0
TRANSFER_AMOUNT = 1
SENDER_FUNDS = 10 * DCT


# --- the testnet ------------------------------------------------------------------------------


def start_profiled(node: NodeLayout, out: Path) -> None:
    """Start ``node`` like :func:`start_node` does (under the testnet supervisor, so that
    stop_nodes finds it by its pid file), but under cProfile timed by CPU (``cpu_profile.py``)."""
    command = node_command(node)
    profiled = [sys.executable, str(Path(__file__).with_name("cpu_profile.py")), str(out), *command[1:]]
    with node.log_path.open("ab") as log:
        subprocess.Popen(
            [sys.executable, "-m", "node.testnet.supervisor", str(node.pid_path), str(node.exit_path), "--"]
            + profiled,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
        )
    deadline = time.monotonic() + 30
    while read_pid_file(node.pid_path) is None:
        if time.monotonic() > deadline:
            raise SystemExit(f"node-{node.index} (profiled) did not start")
        time.sleep(0.05)


def node_pids(layout: NetworkLayout) -> list[int]:
    pids = []
    for node in layout.nodes:
        process = read_pid_file(node.pid_path)
        pids.append(process.pid if process is not None else 0)
    return pids


# --- measurement ------------------------------------------------------------------------------


@dataclasses.dataclass
class Run:
    """What the submitters and the follower record, all times in wall-clock ms."""

    submitted_ms: dict[bytes, float] = dataclasses.field(default_factory=dict)
    #: tx hash -> the address of the node it was submitted to
    submitted_to: dict[bytes, str] = dataclasses.field(default_factory=dict)
    #: height -> the proposer's address
    proposers: dict[int, str] = dataclasses.field(default_factory=dict)
    refused: Counter[str] = dataclasses.field(default_factory=Counter)
    #: (node, sent ms, answered ms, transactions) per ``tx_submit`` batch.
    batches: list[tuple[int, float, float, int]] = dataclasses.field(default_factory=list)
    #: height -> (commit seen ms, block time_ms, number of txs)
    blocks: dict[int, tuple[float, int, int]] = dataclasses.field(default_factory=dict)
    committed_at: dict[bytes, int] = dataclasses.field(default_factory=dict)
    last_commit_change: float = 0.0
    #: Submissions refused as busy (or behind such a refusal) and sent again.
    retried: int = 0


def now_ms() -> float:
    return time.time() * 1000


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


async def submit_batch(client: RpcClient, raws: Sequence[bytes]) -> list[Any | RpcCallError]:
    return await client.batch([("tx_submit", {"tx": raw.hex()}) for raw in raws])


async def fund_senders(layout: NetworkLayout, senders: Sequence[PrivateKey], chain_id: str, fee: int) -> None:
    """Faucet -> every sender, at most ``MAX_IN_FLIGHT_NONCES`` transfers per block wait."""
    faucet = layout.faucet_key()
    async with client_for(layout.node(0), timeout_s=CALL_TIMEOUT_S) as client:
        account = await client.call("account_get", address=str(faucet.address))
        nonce = int(account["nonce"])
        for start in range(0, len(senders), MAX_IN_FLIGHT_NONCES):
            chunk = senders[start : start + MAX_IN_FLIGHT_NONCES]
            raws = []
            for key in chunk:
                nonce += 1
                raws.append(sign_tx(faucet, chain_id, nonce, fee, Transfer(key.address.raw, SENDER_FUNDS)))
            for result in await submit_batch(client, raws):
                if isinstance(result, RpcCallError):
                    raise SystemExit(f"the faucet transfer was refused: {result.code} {result.message}")
            deadline = time.monotonic() + 60
            while int((await client.call("account_get", address=str(faucet.address)))["nonce"]) < nonce:
                if time.monotonic() > deadline:
                    raise SystemExit("funding the senders was not committed within 60 s")
                await trio.sleep(0.1)
    # Every node must have applied the funding: a node one block behind refuses its senders'
    # transfers as unfunded (seen as thousands of 2006/5607 refusals on a loaded machine).
    for node in layout.nodes:
        async with client_for(node, timeout_s=CALL_TIMEOUT_S) as client:
            deadline = time.monotonic() + 60
            while int((await client.call("account_get", address=str(faucet.address)))["nonce"]) < nonce:
                if time.monotonic() > deadline:
                    raise SystemExit(f"node-{node.index} did not apply the funding within 60 s")
                await trio.sleep(0.1)


async def submitter(
    node: NodeLayout,
    batches: Sequence[Sequence[tuple[bytes, bytes]]],
    run: Run,
    go: trio.Event,
    interval_s: float,
) -> None:
    """Send ``batches`` to ``node`` one after the other; with ``interval_s`` > 0, one batch per
    interval (an offered load), else each as soon as the previous one is answered.

    A transaction refused as busy (5605: "busy, retry") goes back to the head of the node's queue
    and is sent again in the next batch, as a client told to retry would, and so are the same
    batch's later transactions that the refusal left behind a nonce gap (5607); a batch never holds
    more than the first one did, so retries take the place of new transactions and the offered
    rate stays what was asked. A transaction still refused after ``STALL_TIMEOUT_S`` without any
    admission counts as refused. Without retries one busy refusal cost the sender all its later
    nonces, and node CPU per finalized transaction divided a run's fixed costs by a fraction of its
    transactions."""
    async with client_for(node, timeout_s=CALL_TIMEOUT_S) as client:
        await go.wait()
        start = trio.current_time()
        pending = collections.deque(tx for batch in batches for tx in batch)
        size = max((len(batch) for batch in batches), default=0)
        number = 0
        last_admitted = time.monotonic()
        while pending:
            if interval_s > 0:
                await trio.sleep_until(start + number * interval_s)
            number += 1
            batch = [pending.popleft() for _ in range(min(size, len(pending)))]
            sent = now_ms()
            results = await submit_batch(client, [raw for _, raw in batch])
            answered = now_ms()
            run.batches.append((node.index, sent, answered, len(batch)))
            retry: list[tuple[bytes, bytes]] = []
            retrying = time.monotonic() - last_admitted < STALL_TIMEOUT_S
            for (tx_hash, raw), result in zip(batch, results, strict=True):
                if isinstance(result, RpcCallError):
                    if result.code in RETRIED and retrying:
                        retry.append((tx_hash, raw))
                        run.retried += 1
                    else:
                        run.refused[f"{result.code} {result.message[:60]}"] += 1
                else:
                    run.submitted_ms[tx_hash] = sent
                    run.submitted_to[tx_hash] = node.address
                    last_admitted = time.monotonic()
            pending.extendleft(reversed(retry))
            if retry and interval_s <= 0 and len(retry) == len(batch):
                await trio.sleep(0.1)  # all refused as busy: give the blocks time to drain


async def follower(node: NodeLayout, start_height: int, run: Run, done: trio.Event) -> None:
    """Fetch every block after ``start_height`` from ``node`` as soon as it is stored."""
    height = start_height + 1
    async with client_for(node, timeout_s=CALL_TIMEOUT_S) as client:
        while not done.is_set():
            try:
                block = await client.call("chain_getBlock", height=height)
            except RpcCallError as exc:
                if exc.code != UNKNOWN_BLOCK:
                    raise
                await trio.sleep(FOLLOW_POLL_S)
                continue
            seen = now_ms()
            hashes = [bytes.fromhex(h) for h in block["txs"]]
            run.blocks[height] = (seen, int(block["time_ms"]), len(hashes))
            run.proposers[height] = str(block["proposer"])
            for tx_hash in hashes:
                run.committed_at[tx_hash] = height
            if hashes:
                run.last_commit_change = time.monotonic()
            height += 1


async def measure(
    layout: NetworkLayout, senders_n: int, per_sender: int, batch_size: int, rate: float
) -> dict[str, Any]:
    nodes = layout.nodes
    interval_s = 0.0
    if rate > 0:
        # An offered load: every node gets a batch each ~100 ms, sized to add up to ``rate``.
        batch_size = max(1, round(rate * 0.1 / len(nodes)))
        interval_s = batch_size * len(nodes) / rate
    async with client_for(nodes[0]) as client:
        head = await client.call("chain_head")
        economics = await client.call("economics_params")
    chain_id = str(head["chain_id"])
    fee = int(economics["params"]["min_fee"])
    senders = [PrivateKey.generate() for _ in range(senders_n)]
    print(f"funding {senders_n} senders from the faucet ...", flush=True)
    await fund_senders(layout, senders, chain_id, fee)

    print(f"signing {senders_n} x {per_sender} transfers ...", flush=True)
    # Per node: its senders' transfers, nonce-major (every sender's nonce 1, then 2, ...), so
    # that each batch holds the next nonce of many senders and a block can take all of them.
    per_node: list[list[tuple[bytes, bytes]]] = [[] for _ in nodes]
    for nonce in range(1, per_sender + 1):
        for index, key in enumerate(senders):
            to = senders[(index + 1) % senders_n].address.raw
            raw = sign_tx(key, chain_id, nonce, fee, Transfer(to, TRANSFER_AMOUNT))
            per_node[index % len(nodes)].append((hashlib.sha256(raw).digest(), raw))
    batches = [[txs[i : i + batch_size] for i in range(0, len(txs), batch_size)] for txs in per_node]

    async with client_for(nodes[0]) as client:
        start_height = int((await client.call("chain_head"))["height"])
    run = Run()
    go, done = trio.Event(), trio.Event()
    pids = node_pids(layout)
    cpu_before = [process_cpu_seconds(pid) for pid in pids]
    own_before = time.process_time()
    total = senders_n * per_sender
    pace = (
        f", one batch per node every {interval_s * 1000:.0f} ms ({rate:g} tx/s offered)" if rate > 0 else ""
    )
    print(
        f"submitting {total} transfers to {len(nodes)} nodes in batches of {batch_size}{pace} ...", flush=True
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(follower, nodes[0], start_height, run, done)
        async with trio.open_nursery() as submitters:
            for node, node_batches in zip(nodes, batches, strict=True):
                submitters.start_soon(submitter, node, node_batches, run, go, interval_s)
            await trio.sleep(0.2)  # let the submitters open their connections
            run.last_commit_change = time.monotonic()
            go.set()
        print("all batches answered; waiting for the commits ...", flush=True)
        pending: list[bytes] = []
        while True:
            pending = [h for h in run.submitted_ms if h not in run.committed_at]
            if not pending:
                break
            if time.monotonic() - run.last_commit_change > STALL_TIMEOUT_S:
                print(
                    f"gave up: {len(pending)} admitted transactions not committed after {STALL_TIMEOUT_S:.0f} s"
                )
                break
            await trio.sleep(0.1)
        done.set()
    cpu_after = [process_cpu_seconds(pid) for pid in pids]
    own_cpu = time.process_time() - own_before
    result = summarize(run, start_height, total, cpu_before, cpu_after, own_cpu)
    result["batch_size"] = batch_size
    result["offered_tx_per_s"] = rate if rate > 0 else None
    result["uncommitted"] = len(pending)
    result["stalled"] = bool(pending)
    return result


def summarize(
    run: Run, start_height: int, total: int, cpu_before: list[float], cpu_after: list[float], own_cpu: float
) -> dict[str, Any]:
    committed = [h for h in run.submitted_ms if h in run.committed_at]
    first_submit = min(sent for _, sent, _, _ in run.batches)
    last_answer = max(answered for _, _, answered, _ in run.batches)
    heights = sorted({run.committed_at[h] for h in committed})
    last_commit = max(run.blocks[h][0] for h in heights) if heights else first_submit
    latency = [run.blocks[run.committed_at[h]][0] - run.submitted_ms[h] for h in committed]
    latency_block_time = [run.blocks[run.committed_at[h]][1] - run.submitted_ms[h] for h in committed]
    window = (last_commit - first_submit) / 1000
    busy_blocks = [run.blocks[h] for h in heights]
    intervals = [b[0] - a[0] for a, b in itertools.pairwise(busy_blocks)]
    admission_s = (last_answer - first_submit) / 1000
    node_cpu = [round(after - before, 1) for before, after in zip(cpu_before, cpu_after, strict=True)]
    # Relayed: committed in a block proposed by another node than the one it was submitted to.
    # With working relays and 4 proposers in turn that is ~3/4 of them.
    relayed = sum(1 for h in committed if run.proposers[run.committed_at[h]] != run.submitted_to[h])
    return {
        "bench": "finality",
        "validators": len(cpu_before),
        "txs": total,
        "admitted": len(run.submitted_ms),
        "refused": sum(run.refused.values()),
        "busy_retried": run.retried,
        "refused_by_reason": dict(run.refused),
        "committed": len(committed),
        "tx_per_s": round(len(committed) / window, 1) if window > 0 else 0.0,
        "window_s": round(window, 2),
        "p50_ms": round(statistics.median(latency), 1) if latency else None,
        "p99_ms": round(percentile(latency, 0.99), 1) if latency else None,
        "p50_to_block_time_ms": round(statistics.median(latency_block_time), 1) if latency else None,
        "admission_tx_per_s": round(len(run.submitted_ms) / admission_s, 1) if admission_s > 0 else 0.0,
        "admission_s": round(admission_s, 2),
        "batch_answer_p50_ms": round(statistics.median(a - s for _, s, a, _ in run.batches), 1),
        "blocks": len(heights),
        "block_txs_max": max((b[2] for b in busy_blocks), default=0),
        "block_txs_mean": round(statistics.mean(b[2] for b in busy_blocks), 1) if busy_blocks else 0,
        "block_interval_ms_p50": round(statistics.median(intervals), 1) if intervals else None,
        "first_height": start_height + 1,
        "committed_via_other_proposer_pct": round(100 * relayed / len(committed), 1) if committed else None,
        "node_cpu_s": node_cpu,
        "node_cpu_ms_per_tx": round(1000 * sum(node_cpu) / len(committed), 2) if committed else None,
        "bench_cpu_s": round(own_cpu, 1),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
        "goal_tx_per_s": 1500,
        "goal_p50_ms": 1500,
    }


# --- main -------------------------------------------------------------------------------------


async def run_overload(layout: NetworkLayout, args: argparse.Namespace) -> dict[str, Any]:
    from finality_overload import overload  # a sibling script; bench/ is not a package

    result: dict[str, Any] = await overload(
        layout,
        senders_per_node=args.senders_per_node,
        rate_start=args.rate_start,
        step_s=args.step_s,
        max_steps=args.max_steps,
        overload_s=args.overload_s,
        overload_rate=args.overload_rate,
        stall_timeout_s=STALL_TIMEOUT_S,
        pids=node_pids(layout),
        fund=fund_senders,
        follow=follower,
        run=Run(),
    )
    return result


def print_overload(result: dict[str, Any]) -> None:
    print(
        f"peak: {result['peak_tx_per_s']} tx/s finalized at p50 {result['peak_p50_ms']} ms; "
        f"overload (offered {result['overload_offered_tx_per_s']} tx/s, admitted "
        f"{result['overload_admitted_tx_per_s']}): {result['overload_tx_per_s']} tx/s finalized "
        f"({result['overload_share_of_peak']} of the peak; goal >= 0.9) at p50 {result['overload_p50_ms']} ms "
        "(goal <= 2,000)"
    )
    print(
        f"{result['busy_refused']} busy refusals (expected), other refusals {result['other_refused'] or 0}; "
        f"{result['committed']} of {result['admitted']} admitted committed; stalled: {result['stalled']}; "
        f"node CPU {result['node_cpu_ms_per_tx']} ms per finalized tx (overload phase "
        f"{result['overload_node_cpu_ms_per_tx']}), bench CPU {result['bench_cpu_s']} s, "
        f"load {result['load_avg_1m']} on {result['cpus']} CPUs"
    )


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random()
    consensus: ConsensusSettings = dataclasses.replace(
        TESTNET_CONSENSUS,
        timeout_commit_ms=args.timeout_commit_ms,
        max_block_txs=args.max_block_txs,
    )
    shape = LinkShape(args.latency, args.jitter, args.loss)
    placement = Placement.fresh(shape) if args.netns or shape.shaped else None
    # The namespaces first: a host that cannot make or shape them refuses here, before anything starts.
    fabric, switch = shaped_fabric(placement, args.validators, args.shaper) if placement else (None, None)
    try:
        with tempfile.TemporaryDirectory(prefix="dcent-bench-finality-") as tmp:
            root = args.dir.resolve() if args.dir else Path(tmp) / "testnet"
            plan = NetworkPlan(
                nodes=args.validators,
                providers=0,
                base_port=free_base_port(args.validators, rng),
                consensus=consensus,
                log_level=args.log_level,
                placement=placement,
            )
            layout = build_network(root, plan)
            result = run_testnet(layout, args)
    finally:
        shaper_report = switch.stop() if switch is not None else ""
        if fabric is not None:
            fabric.destroy()
    shaper = None if not shape.shaped else ("tun" if switch is not None else "netem")
    if placement is not None:
        print(
            f"(nodes ran in network namespaces on {placement.subnet}.0/24: RTT {shape.rtt_ms} ms, "
            f"jitter {shape.jitter_ms} ms, loss {shape.loss_pct:g}% per link, shaped by {shaper}) {shaper_report}"
        )
    result["shaper"] = shaper
    result["netns"] = placement is not None
    result["latency_ms"] = shape.rtt_ms
    result["jitter_ms"] = shape.jitter_ms
    result["loss_pct"] = shape.loss_pct
    result["goal_16_at_100ms_p50_ms"] = 2000
    result["timeout_commit_ms"] = consensus.timeout_commit_ms
    result["max_block_txs"] = consensus.max_block_txs
    result.setdefault("senders", args.senders)
    result["per_sender"] = args.per_sender
    return result


def run_testnet(layout: NetworkLayout, args: argparse.Namespace) -> dict[str, Any]:
    """Start the laid-out nodes, wait for blocks, measure, and stop them (also on failure)."""
    started: list[NodeProcess] = []
    try:
        for node in layout.nodes:
            if node.index == args.profile_node:
                start_profiled(node, args.profile_out.resolve())
            else:
                started.append(start_node(node))
        print(
            f"{args.validators}-validator testnet in {layout.root} (base port {layout.base_port}); "
            "waiting for blocks ...",
            flush=True,
        )
        trio.run(lambda: wait_ready(layout.nodes, timeout_s=180))
        result: dict[str, Any]
        if args.overload:
            result = trio.run(run_overload, layout, args)
        else:
            result = trio.run(measure, layout, args.senders, args.per_sender, args.batch_size, args.rate)
    finally:
        stopped = stop_nodes(layout.nodes)
        for entry in stopped:
            if entry.killed or (entry.exit_code not in (0, None)):
                print(f"node-{entry.index}: exit code {entry.exit_code}, killed {entry.killed}")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--validators", type=int, default=4)
    parser.add_argument("--senders", type=int, default=250, help="S: sender accounts")
    parser.add_argument(
        "--per-sender", type=int, default=60, help=f"M: transfers per sender (<= {MAX_IN_FLIGHT_NONCES})"
    )
    parser.add_argument("--batch-size", type=int, default=500, help="tx_submit calls per JSON-RPC batch")
    parser.add_argument(
        "--rate",
        type=float,
        default=2000.0,
        help="offered load in tx/s over all nodes (batches every ~100 ms); 0: as fast as the nodes answer "
        "(a burst: latency then measures the queue, not finality)",
    )
    parser.add_argument(
        "--timeout-commit-ms",
        type=int,
        default=TESTNET_CONSENSUS.timeout_commit_ms,
        help="pause after each commit (the testnet's consensus setting)",
    )
    parser.add_argument("--max-block-txs", type=int, default=TESTNET_CONSENSUS.max_block_txs)
    parser.add_argument("--log-level", default="info")
    parser.add_argument(
        "--dir",
        type=Path,
        help="lay the testnet out here and keep it (logs) after the run; default: a temp dir",
    )
    parser.add_argument(
        "--overload",
        action="store_true",
        help="find the peak finalized rate (a ramp), then offer twice that for --overload-s (issue 14)",
    )
    parser.add_argument("--senders-per-node", type=int, default=200, help="--overload: senders per node")
    parser.add_argument("--rate-start", type=float, default=800.0, help="--overload: the ramp's first rate")
    parser.add_argument("--step-s", type=float, default=10.0, help="--overload: seconds per ramp step")
    parser.add_argument("--max-steps", type=int, default=6, help="--overload: ramp steps at most")
    parser.add_argument(
        "--overload-rate",
        type=float,
        default=None,
        help="--overload: offer this many tx/s in the overload phase (default: twice the ramp's peak)",
    )
    parser.add_argument(
        "--overload-s", type=float, default=60.0, help="--overload: seconds at twice the peak"
    )
    parser.add_argument(
        "--latency", type=int, default=0, metavar="MS", help="round-trip time between nodes (netns + netem)"
    )
    parser.add_argument("--jitter", type=int, default=0, metavar="MS", help="jitter of that RTT (netem)")
    parser.add_argument("--loss", type=float, default=0.0, metavar="PCT", help="loss per node's link (netem)")
    parser.add_argument(
        "--shaper",
        choices=SHAPERS,
        default="auto",
        help="netem, the userspace TUN switch (node/testnet/tunshaper.py), or auto: netem where the "
        "kernel has it (default)",
    )
    parser.add_argument(
        "--netns", action="store_true", help="nodes in network namespaces even at 0 latency (root only)"
    )
    parser.add_argument("--profile-node", type=int, default=-1, help="run this node under cProfile")
    parser.add_argument("--profile-out", type=Path, default=Path("finality-node.prof"))
    args = parser.parse_args()
    if not 1 <= args.per_sender <= MAX_IN_FLIGHT_NONCES:
        parser.error(f"--per-sender: between 1 and {MAX_IN_FLIGHT_NONCES} (the mempool's nonce window)")
    if not 1 <= args.batch_size <= 1000:
        parser.error("--batch-size: between 1 and 1000 (the RPC's batch limit)")
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        result = run_bench(args)
    except LocalnetError as exc:
        print(f"error {exc.code}: {exc.message}", file=sys.stderr)
        return 2
    if args.overload:
        print_overload(result)
        print(json.dumps(result))
        return 1 if result["stalled"] else 0
    where = f" in namespaces at {result['latency_ms']} ms RTT" if result["netns"] else ""
    print(
        f"{result['committed']} of {result['txs']} transfers finalized on {result['validators']} validators"
        f"{where} in {result['window_s']} s: {result['tx_per_s']} tx/s (goal >= 1,500)"
    )
    print(
        f"finality latency, submit -> commit seen: p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms "
        f"(goal p50 <= 1,500 ms); to the block's proposal time p50 {result['p50_to_block_time_ms']} ms"
    )
    print(
        f"admission: {result['admitted']} admitted in {result['admission_s']} s "
        f"({result['admission_tx_per_s']} tx/s), batch of {result['batch_size']} answered p50 "
        f"{result['batch_answer_p50_ms']} ms; {result['refused']} refused {result['refused_by_reason'] or ''}; "
        f"{result['busy_retried']} busy refusals retried"
    )
    print(
        f"blocks: {result['blocks']} holding txs, up to {result['block_txs_max']} txs "
        f"(mean {result['block_txs_mean']}), interval p50 {result['block_interval_ms_p50']} ms; "
        f"{result['committed_via_other_proposer_pct']}% committed by a proposer other than the node "
        "they were submitted to"
    )
    print(
        f"node CPU s {result['node_cpu_s']} ({result['node_cpu_ms_per_tx']} ms per finalized tx), "
        f"bench CPU s {result['bench_cpu_s']}, "
        f"load {result['load_avg_1m']} on {result['cpus']} CPUs"
    )
    print(json.dumps(result))
    if result["stalled"]:
        print(f"FAILED: {result['uncommitted']} admitted transactions were never committed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
