"""Shared by the market tests over real nodes: a 4-node network on loopback whose node 0 sells two
simulated GPUs through the real bubblewrap sandbox, job specs, and waiting for a job's state."""

from __future__ import annotations

from pathlib import Path

import trio

from node.daemon import Node
from node.market.records import JobRecord, JobState
from protocol.market.jobspec import JobSpec
from tests.integration.executor_helpers import bubblewrap_executor_or_skip
from tests.integration.node_helpers import LocalNet, wait_until

PROVIDER, REQUESTER = 0, 1
#: Node 0 sells two simulated GPUs; the others sell none, whatever NVML would find.
MARKET: dict[int, dict[str, object]] = {PROVIDER: {"simulated_gpus": "2xH100-80GB"}}
MARKET |= {i: {"sell_gpus": False} for i in (REQUESTER, 2, 3)}


def spec(script: str, *, runtime: str = "20s", name: str = "lifecycle", **fields: object) -> JobSpec:
    """A one-GPU job running ``sh -c script``; ``fields`` add to or replace the document's."""
    return JobSpec.from_document(
        {
            "name": name,
            "argv": ["sh", "-c", script],
            "max_runtime_s": runtime,
            "max_price_per_gpu_second": "0.01 DCT",
            "output_limit_bytes": "1 MiB",
            "env": {"GREETING": "hello from dcent"},
            "inputs": {"data/points.csv": "1,2\n2,4\n"},
            "resources": {"gpu_count": 1},
            **fields,
        }
    )


async def start_market(nursery: trio.Nursery, root: Path, **params: int) -> list[Node]:
    bubblewrap_executor_or_skip()
    net = LocalNet(nursery, root, validators=4, market=MARKET, params=params)
    nodes = [await net.start(i) for i in range(4)]
    provider_key = nodes[PROVIDER].validator_key.public_key.raw
    await wait_until(
        lambda: provider_key in {a.provider for a in nodes[REQUESTER].capacity.entries()},  # type: ignore[union-attr]
        what="the provider's capacity reached the requester",
    )
    nodes[PROVIDER].__dict__["_net"] = net
    return nodes


def job(node: Node, job_id: str) -> JobRecord:
    assert node.market is not None
    return node.market.get(job_id)


async def until_state(node: Node, job_id: str, *states: JobState, timeout: float = 90) -> JobRecord:
    try:
        record = await wait_until(
            lambda: job(node, job_id).state in states and job(node, job_id),
            what=f"job {job_id} reached {'/'.join(s.value for s in states)}",
            timeout=timeout,
        )
    except AssertionError as exc:
        now = job(node, job_id)
        raise AssertionError(
            f"{exc}; it is {now.state.value} ({now.error_code} {now.error_message}); the node is at height "
            f"{node.app.height if node.app else '?'} with {len(node.host.peers())} peers"
        ) from None
    assert isinstance(record, JobRecord)
    return record
