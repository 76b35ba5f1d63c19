"""Job latency on a real testnet: negotiation, and submit -> running, as a wallet sees them.

Runs ``dcent testnet up -n 4 --providers 2`` (real node processes; the first two nodes sell GPUs,
the host's through NVML when it has some, simulated ones otherwise; jobs run in the providers'
bubblewrap sandbox) in a temporary directory, then submits K small jobs (``--spec``, default
``configs/jobs/hello-gpu.toml``) through the JSON-RPC of a node that sells nothing (node 3), one
at a time, and follows each with ``job_get`` every 50 ms until it settles. From the requester's
job history (each state's ``at_ms``, the node's wall clock, the same machine as this script):

- submit -> running: from just before the ``job_submit`` call to the ``running`` entry (the
  provider has told the requester that the process started in its sandbox; the escrow is
  final by then);
- negotiation: ``negotiating`` -> ``contracted`` (request for quote, signed quote, contract signed
  by both, over ``/dcent/market/1.0.0``);
- also the other steps (matching, contracted -> escrowed: the escrow's block; escrowed ->
  running) and submit -> settled.

The testnet is stopped (``dcent testnet down``) at the end, also on failure or Ctrl-C.
Prints figures and one JSON line:
    {"bench": "testnet_market", "submit_to_running_p50_ms": ..., "negotiation_p50_ms": ..., ...}
Goal (issue 7): submit -> running <= 3 s.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import trio

from node.rpc.client import RpcClient
from node.testnet.layout import NetworkLayout
from node.testnet.processes import free_base_port
from node.testnet.readiness import client_for
from protocol.market.jobspec import JobSpec, format_of

DCENT = [sys.executable, "-m", "node.cli.main"]
REPO = Path(__file__).resolve().parent.parent
DEFAULT_SPEC = REPO / "configs" / "jobs" / "hello-gpu.toml"
POLL_S = 0.05
JOB_TIMEOUT_S = 180.0
TERMINAL = {"settled", "failed", "refunded", "disputed", "cancelled"}
#: The steps reported from each job's history: (from state, to state).
STEPS = (
    ("matching", "negotiating"),
    ("negotiating", "contracted"),
    ("contracted", "escrowed"),
    ("escrowed", "running"),
    ("running", "settled"),
)


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def summary(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "max": None}
    return {
        "p50": round(statistics.median(values), 1),
        "p95": round(percentile(values, 0.95), 1),
        "max": round(max(values), 1),
    }


def first_at(history: Sequence[dict[str, Any]], state: str) -> int | None:
    for entry in history:
        if entry["state"] == state:
            return int(entry["at_ms"])
    return None


async def follow_job(client: RpcClient, job_id: str) -> dict[str, Any]:
    """Poll ``job_get`` until the job is in a terminal state; its last answer."""
    with trio.move_on_after(JOB_TIMEOUT_S):
        while True:
            job: dict[str, Any] = await client.call("job_get", job_id=job_id)
            if job["state"] in TERMINAL:
                return job
            await trio.sleep(POLL_S)
    raise SystemExit(f"job {job_id} did not finish within {JOB_TIMEOUT_S:.0f} s (last state {job['state']})")


async def run_jobs(layout: NetworkLayout, requester: int, spec: JobSpec, jobs: int) -> dict[str, Any]:
    node = layout.node(requester)
    submit_to_running: list[float] = []
    submit_to_settled: list[float] = []
    steps: dict[str, list[float]] = {f"{a}->{b}": [] for a, b in STEPS}
    failed: list[str] = []
    async with client_for(node, timeout_s=60) as client:
        for number in range(jobs):
            submitted_ms = time.time() * 1000
            answer = await client.call("job_submit", spec=spec.to_document())
            job = await follow_job(client, str(answer["job_id"]))
            history = job["history"]
            if job["state"] != "settled":
                error = job.get("error") or {}
                failed.append(f"{job['job_id']}: {job['state']} {error.get('code')} {error.get('message')}")
                print(f"  job {number + 1}: {job['state']}: {error.get('message')}", flush=True)
                continue
            running = first_at(history, "running")
            settled = first_at(history, "settled")
            assert running is not None and settled is not None, history
            submit_to_running.append(running - submitted_ms)
            submit_to_settled.append(settled - submitted_ms)
            for a, b in STEPS:
                start, end = first_at(history, a), first_at(history, b)
                if start is not None and end is not None:
                    steps[f"{a}->{b}"].append(end - start)
            print(
                f"  job {number + 1}: running after {running - submitted_ms:.0f} ms "
                f"(negotiation {steps['negotiating->contracted'][-1]:.0f} ms), "
                f"settled after {settled - submitted_ms:.0f} ms",
                flush=True,
            )
    return {
        "jobs": jobs,
        "settled": len(submit_to_running),
        "failed": failed,
        "submit_to_running_ms": summary(submit_to_running),
        "submit_to_settled_ms": summary(submit_to_settled),
        "steps_ms": {name: summary(values) for name, values in steps.items()},
    }


def testnet_up(root: Path, nodes: int, providers: int, base_port: int) -> None:
    command = [
        *DCENT,
        "testnet",
        "up",
        "-n",
        str(nodes),
        "--providers",
        str(providers),
        "--dir",
        str(root),
        "--base-port",
        str(base_port),
    ]
    print("$ dcent " + " ".join(command[len(DCENT) :]), flush=True)
    # A wide console: rich would wrap the lines quoted below at 80 columns.
    started = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ, COLUMNS="200"))
    for line in started.stdout.splitlines():
        if "sells" in line or "NVML" in line or "is up" in line:
            print(f"  {line.strip()}")
    if started.returncode != 0:
        raise SystemExit(
            f"dcent testnet up failed ({started.returncode}):\n{started.stdout}\n{started.stderr}"
        )


def testnet_down(root: Path) -> None:
    subprocess.run([*DCENT, "testnet", "down", "--dir", str(root)], capture_output=True, text=True)


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10, help="K: jobs submitted, one after the other")
    parser.add_argument("--spec", type=Path, default=DEFAULT_SPEC, help="job spec file (TOML or JSON)")
    parser.add_argument("--nodes", type=int, default=4)
    parser.add_argument("--providers", type=int, default=2)
    parser.add_argument("--dir", type=Path, help="lay the testnet out here and keep it; default: a temp dir")
    args = parser.parse_args()
    if args.nodes <= args.providers:
        parser.error("--nodes must exceed --providers: the jobs are submitted from a node that sells nothing")
    spec = JobSpec.from_text(args.spec.read_text(), format_of(args.spec.name))
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    with tempfile.TemporaryDirectory(prefix="dcent-bench-market-") as tmp:
        root = args.dir.resolve() if args.dir else Path(tmp) / "testnet"
        try:
            testnet_up(root, args.nodes, args.providers, free_base_port(args.nodes, random.Random()))
            layout = NetworkLayout.load(root)
            requester = args.nodes - 1
            print(f"submitting {args.jobs} x {spec.name} from node-{requester} ...", flush=True)
            result = trio.run(run_jobs, layout, requester, spec, args.jobs)
        finally:
            testnet_down(root)
    result = {
        "bench": "testnet_market",
        "nodes": args.nodes,
        "providers": args.providers,
        "spec": spec.name,
        **result,
        "submit_to_running_p50_ms": result["submit_to_running_ms"]["p50"],
        "submit_to_running_p95_ms": result["submit_to_running_ms"]["p95"],
        "negotiation_p50_ms": result["steps_ms"]["negotiating->contracted"]["p50"],
        "negotiation_p95_ms": result["steps_ms"]["negotiating->contracted"]["p95"],
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
        "goal_submit_to_running_ms": 3000,
    }
    print(
        f"{result['settled']} of {result['jobs']} jobs settled on a {args.nodes}-node testnet "
        f"({args.providers} providers), submitted one at a time from a node that sells nothing:"
    )
    print(
        f"  submit -> running: p50 {result['submit_to_running_p50_ms']} ms, "
        f"p95 {result['submit_to_running_p95_ms']} ms (goal <= 3,000 ms)"
    )
    print(
        f"  negotiation (negotiating -> contracted): p50 {result['negotiation_p50_ms']} ms, "
        f"p95 {result['negotiation_p95_ms']} ms"
    )
    for name, values in result["steps_ms"].items():
        print(f"  {name}: p50 {values['p50']} ms, p95 {values['p95']} ms")
    print(
        f"  submit -> settled: p50 {result['submit_to_settled_ms']['p50']} ms; "
        f"load {result['load_avg_1m']} on {result['cpus']} CPUs"
    )
    print(json.dumps(result))
    return 0 if not result["failed"] else 1


if __name__ == "__main__":
    sys.exit(main())
