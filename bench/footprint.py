"""Memory footprint of idle nodes: RSS of a real `dcent node run` process, and a many-node soak.

Default (``make bench``): initialises a --dev home in a temporary directory, runs the node as its
own process until it has made a few blocks, then samples its resident set size (VmRSS) for a few
seconds while it idles along (empty blocks, capacity announcements). Prints figures and one JSON
line:
    {"bench": "footprint", "rss_mb_max": ..., ...}

``--nodes N --minutes M`` (e.g. ``--nodes 32 --minutes 10``): lays out an N-node testnet in a
temporary directory with ``node.testnet`` (the library behind ``dcent testnet up``), of which the
first ``--validators`` are genesis validators and the others full nodes, rewires who dials whom
(``--topology``), starts every node as a real process, waits until they answer and make blocks,
then every ``--every`` seconds (default 30) samples each node's RSS, whether its process lives,
its RPC answers, its height, its peer count and the nodes' CPU, for M minutes. The testnet is
stopped at the end, also on failure or Ctrl-C. Prints figures and one JSON line:
    {"bench": "footprint_soak", "nodes": 32, "alive_end": ..., "rss_mb_p50": ..., ...}

The soak's defaults are what keeps 32 nodes alive AND the chain advancing briskly on a shared
2-core machine: 1 validator, a 1,000 ms commit timeout, and the sparse topology (each full node
dials two earlier nodes). Measured alternatives, on the same machine:
- before the consensus core honoured the commit timer with several validators (it started the
  next height at once, ~20 empty blocks a second), 4 validators stalled within 1-2 minutes at
  any commit timeout, the nodes using both cores;
- since then, ``--validators 4`` (sparse, 1,000 ms) keeps all 32 alive and advancing, but the
  nodes use ~1.9 of the 2 cores and the start (every node answering and following the chain)
  took 558 s;
- ``--validators 4 --topology mesh --timeout-commit-ms 250`` is the plain
  ``dcent testnet up -n 32`` case: too much vote and proposal traffic for 2 cores.

Goals (issues 4 and 7): <= 150 MB RSS per idle node; 32 nodes alive on one machine for 10 minutes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import Any

import trio

from node.testnet.layout import (
    TESTNET_CONSENSUS,
    NetworkLayout,
    NetworkPlan,
    build_network,
    render_config,
)
from node.testnet.processes import free_base_port, process_cpu_seconds, start_node, stop_nodes
from node.testnet.readiness import wait_ready
from node.testnet.status import TestnetNodeStatus, network_status

DCENT = [sys.executable, "-m", "node.cli.main"]


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def height(home: Path) -> int:
    out = subprocess.run(
        [*DCENT, "chain", "head", "--home", str(home), "--json"], capture_output=True, text=True
    )
    return int(json.loads(out.stdout)["height"]) if out.returncode == 0 else 0


# --- one idle node ----------------------------------------------------------------------------


def idle_node(seconds: float) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "node"
        subprocess.run([*DCENT, "init", "--home", str(home), "--dev"], check=True, capture_output=True)
        config = home / "config.toml"
        config.write_text(config.read_text().replace("/tcp/26656", "/tcp/0"))
        node = subprocess.Popen([*DCENT, "node", "run", "--home", str(home)], stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while height(home) < 3:
                if time.monotonic() > deadline or node.poll() is not None:
                    raise SystemExit("the node did not start making blocks")
                time.sleep(0.2)
            samples = []
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                samples.append(rss_kb(node.pid))
                time.sleep(0.5)
            final_height = height(home)
        finally:
            node.send_signal(signal.SIGTERM)
            node.wait(timeout=30)
    result = {
        "bench": "footprint",
        "rss_mb_max": round(max(samples) / 1024, 1),
        "rss_mb_last": round(samples[-1] / 1024, 1),
        "idle_seconds": seconds,
        "height": final_height,
        "goal_rss_mb": 150,
    }
    print(
        f"idle dev node: RSS {result['rss_mb_last']} MB (max {result['rss_mb_max']} MB over {seconds:.0f} s; goal <= 150 MB)"
    )
    print(json.dumps(result))
    return 0


# --- an N-node soak ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Sample:
    at_s: float
    statuses: list[TestnetNodeStatus]
    #: VmRSS in MB per node; None for a node whose process is gone.
    rss_mb: list[float | None]
    #: CPU seconds each node has used so far.
    cpu_s: list[float]

    @property
    def answering(self) -> list[TestnetNodeStatus]:
        return [s for s in self.statuses if s.alive and s.height is not None]


def bootstrap_indices(topology: str, index: int, validators: int) -> list[int]:
    """Which earlier nodes node ``index`` dials. Validators always dial every earlier validator.

    - ``mesh``: every earlier node (the testnet layout's own: N(N-1)/2 connections);
    - ``hub``: a full node dials the validators only (each validator holds N-1 connections);
    - ``sparse``: a full node dials node i-1 and node i//2 (a chain plus a binary tree: at most
      ~5 connections per node, diameter ~2 log2 N); proposals and votes are relayed across it.
    """
    if index < validators:
        return list(range(index))
    if topology == "mesh":
        return list(range(index))
    if topology == "hub":
        return list(range(validators))
    return sorted({index - 1, index // 2})


def apply_topology(layout: NetworkLayout, topology: str) -> NetworkLayout:
    """Rewrite every node's bootstrap list (config.toml and the manifest) for ``topology``."""
    validators = sum(1 for node in layout.nodes if node.validator)
    nodes = []
    for node in layout.nodes:
        peers = bootstrap_indices(topology, node.index, validators)
        node = dataclasses.replace(node, bootstrap=tuple(layout.nodes[i].p2p_addr for i in peers))
        # The file exists with mode 0600; rewriting it in place keeps the mode.
        node.paths.config.write_text(render_config(node, layout.consensus, layout.executor, layout.log_level))
        nodes.append(node)
    updated = dataclasses.replace(layout, nodes=tuple(nodes))
    updated.save()
    return updated


def take_sample(layout: NetworkLayout, started: float) -> Sample:
    statuses = trio.run(network_status, layout)
    rss: list[float | None] = []
    for status in statuses:
        try:
            rss.append(round(rss_kb(status.pid) / 1024, 1) if status.pid is not None else None)
        except (OSError, RuntimeError):
            rss.append(None)
    cpu = [process_cpu_seconds(status.pid) for status in statuses]
    return Sample(time.monotonic() - started, statuses, rss, cpu)


def describe(sample: Sample, previous: Sample | None, nodes: int) -> str:
    answering = sample.answering
    cpu = ""
    if previous is not None and sample.at_s > previous.at_s:
        used = sum(sample.cpu_s) - sum(previous.cpu_s)
        cpu = f", nodes' CPU {used / (sample.at_s - previous.at_s):.2f} cores"
    heights = [s.height for s in answering if s.height is not None]
    peers = [s.peers for s in answering if s.peers is not None]
    rss = [r for r in sample.rss_mb if r is not None]
    return (
        f"t={sample.at_s / 60:4.1f} min: {sum(s.alive for s in sample.statuses)}/{nodes} processes, "
        f"{len(answering)} answering, heights {min(heights, default=0)}-{max(heights, default=0)}, "
        f"peers min {min(peers, default=0)}, RSS p50 {statistics.median(rss) if rss else 0:.0f} MB "
        f"max {max(rss, default=0):.0f} MB{cpu}, load {os.getloadavg()[0]:.1f}"
    )


def soak(args: argparse.Namespace) -> int:
    consensus = dataclasses.replace(TESTNET_CONSENSUS, timeout_commit_ms=args.timeout_commit_ms)
    with tempfile.TemporaryDirectory(prefix="dcent-bench-soak-") as tmp:
        plan = NetworkPlan(
            nodes=args.nodes,
            validators=args.validators,
            providers=0,
            base_port=free_base_port(args.nodes, random.Random()),
            consensus=consensus,
        )
        layout = build_network(args.dir.resolve() if args.dir else Path(tmp) / "testnet", plan)
        layout = apply_topology(layout, args.topology)
        samples: list[Sample] = []
        try:
            began = time.monotonic()
            for node in layout.nodes:
                start_node(node)
            print(
                f"{args.nodes} nodes ({plan.validator_count} validators) started in "
                f"{time.monotonic() - began:.0f} s; waiting until every node answers and follows "
                "the chain ...",
                flush=True,
            )
            trio.run(lambda: wait_ready(layout.nodes, min_peers=1, timeout_s=args.ready_timeout))
            ready_s = time.monotonic() - began
            print(f"ready after {ready_s:.0f} s", flush=True)
            started = time.monotonic()
            end = started + args.minutes * 60
            while True:
                sample = take_sample(layout, started)
                samples.append(sample)
                previous = samples[-2] if len(samples) > 1 else None
                print("  " + describe(sample, previous, args.nodes), flush=True)
                if time.monotonic() >= end:
                    break
                time.sleep(min(args.every, max(0.0, end - time.monotonic())))
        finally:
            stop_results = stop_nodes(layout.nodes)
    result = soak_result(args, samples, ready_s, plan.validator_count)
    result["clean_exits"] = sum(1 for r in stop_results if r.exit_code == 0 and not r.killed)
    print(
        f"{args.nodes} nodes for {args.minutes:g} min: {result['alive_end']} alive and answering at the end, "
        f"{result['advancing']} of them past their first height ({result['height_first']} -> "
        f"{result['height_last']}), {result['advancing_last_interval']} still advancing in the last "
        f"interval, peers min {result['peers_min_end']}"
    )
    print(
        f"RSS per node at the end: p50 {result['rss_mb_p50']} MB, max {result['rss_mb_max']} MB "
        f"(max over the run {result['rss_mb_max_run']} MB; goal <= 150 MB); "
        f"{result['clean_exits']} exited 0 on SIGTERM"
    )
    print(json.dumps(result))
    healthy = result["alive_end"] == args.nodes and result["advancing_last_interval"] == args.nodes
    return 0 if healthy else 1


def soak_result(
    args: argparse.Namespace, samples: list[Sample], ready_s: float, validators: int
) -> dict[str, Any]:
    first, last = samples[0], samples[-1]
    first_heights = {s.index: s.height for s in first.answering if s.height is not None}
    advancing = sum(
        1 for s in last.answering if s.height is not None and s.height > first_heights.get(s.index, 0)
    )
    # Still advancing at the end: past its height in the sample before the last.
    before = samples[-2] if len(samples) > 1 else first
    before_heights = {s.index: s.height for s in before.answering if s.height is not None}
    advancing_end = sum(
        1 for s in last.answering if s.height is not None and s.height > before_heights.get(s.index, 0)
    )
    end_rss = [r for r in last.rss_mb if r is not None]
    all_rss = [r for sample in samples for r in sample.rss_mb if r is not None]
    end_heights = [s.height for s in last.answering if s.height is not None]
    return {
        "bench": "footprint_soak",
        "nodes": args.nodes,
        "validators": validators,
        "minutes": args.minutes,
        "samples": len(samples),
        "ready_s": round(ready_s, 1),
        "alive_end": len(last.answering),
        "advancing": advancing,
        "advancing_last_interval": advancing_end,
        "height_first": max(first_heights.values(), default=0),
        "height_last": max(end_heights, default=0),
        "height_spread_end": max(end_heights, default=0) - min(end_heights, default=0),
        "peers_min_end": min((s.peers for s in last.answering if s.peers is not None), default=0),
        "rss_mb_p50": round(statistics.median(end_rss), 1) if end_rss else None,
        "rss_mb_max": max(end_rss, default=None),
        "rss_mb_max_run": max(all_rss, default=None),
        "timeout_commit_ms": args.timeout_commit_ms,
        "topology": args.topology,
        "nodes_cpu_cores": round((sum(last.cpu_s) - sum(first.cpu_s)) / (last.at_s - first.at_s), 2)
        if last.at_s > first.at_s
        else None,
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
        "goal_rss_mb": 150,
    }


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="idle sampling of the single node")
    parser.add_argument("--nodes", type=int, default=1, help="N > 1: the N-node testnet soak instead")
    parser.add_argument("--minutes", type=float, default=10.0, help="soak duration")
    parser.add_argument("--validators", type=int, default=1, help="genesis validators of the soak")
    parser.add_argument("--every", type=float, default=30.0, help="seconds between soak samples")
    parser.add_argument(
        "--timeout-commit-ms",
        type=int,
        default=1000,
        help="the soak testnet's pause after each commit (the testnet default is "
        f"{TESTNET_CONSENSUS.timeout_commit_ms})",
    )
    parser.add_argument("--dir", type=Path, help="lay the soak testnet out here and keep it (logs)")
    parser.add_argument(
        "--topology",
        choices=("sparse", "hub", "mesh"),
        default="sparse",
        help="who dials whom (see bootstrap_indices): sparse (default), hub, or mesh (the testnet "
        "layout's own full mesh)",
    )
    parser.add_argument(
        "--ready-timeout", type=float, default=600.0, help="seconds to wait for the soak start"
    )
    args = parser.parse_args()
    if args.nodes <= 1:
        return idle_node(args.seconds)
    if not 1 <= args.validators <= args.nodes:
        parser.error("--validators: between 1 and --nodes")
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    return soak(args)


if __name__ == "__main__":
    sys.exit(main())
