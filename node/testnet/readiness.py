"""Wait until a testnet is usable: every node answers its RPC, is connected to the others, and
the chain makes blocks that every node sees.

"Makes blocks" is checked after the nodes are connected: the highest height seen at the moment
the last node reached its peers is the baseline, and the testnet is ready once every node is past
it. A node process that dies while we wait fails the wait at once, with the end of its log.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import trio

from node.rpc.client import RpcClient
from node.rpc.errors import RpcError
from node.testnet.errors import NodeStartFailed, NotReady
from node.testnet.layout import NodeLayout
from node.testnet.processes import log_tail, running

POLL_S = 0.25
READY_TIMEOUT_S = 120.0
#: One RPC call may take this long on a loaded machine before the poll counts it as unanswered.
CALL_TIMEOUT_S = 10.0


def client_for(node: NodeLayout, *, timeout_s: float = CALL_TIMEOUT_S) -> RpcClient:
    """An RPC client for ``node``: its derived URL, its cookie (re-read on every call)."""
    return RpcClient.for_home(node.home, node.rpc_url, timeout_s=timeout_s)


@dataclass(slots=True)
class NodeProgress:
    """What the last poll learnt about one node."""

    index: int
    answering: bool = False
    peers: int = 0
    height: int = 0
    #: Why it did not answer (the RPC error), "" when it did.
    waiting_for: str = "starting"


@dataclass(slots=True)
class Progress:
    nodes: list[NodeProgress]
    min_peers: int
    #: The height every node must pass; None until every node is connected.
    baseline: int | None = None

    @property
    def connected(self) -> bool:
        return all(n.answering and n.peers >= self.min_peers for n in self.nodes)

    @property
    def ready(self) -> bool:
        return (
            self.baseline is not None and self.connected and all(n.height > self.baseline for n in self.nodes)
        )

    def stage(self) -> str:
        if not all(n.answering for n in self.nodes):
            return "waiting for every node's RPC"
        if not self.connected:
            return "waiting for the nodes to connect"
        if not self.ready:
            return "waiting for blocks"
        return "ready"


async def poll_node(node: NodeLayout, progress: NodeProgress) -> None:
    """Update ``progress`` from one ``node_info`` and one ``net_peers`` call; never raises for a
    node that does not answer (yet)."""
    client = client_for(node)
    try:
        async with client:
            info = await client.call("node_info")
            peers = await client.call("net_peers")
    except RpcError as exc:
        progress.answering = False
        progress.waiting_for = exc.message
        return
    progress.answering = True
    progress.waiting_for = ""
    progress.height = int(info["height"])
    progress.peers = len(peers)


async def wait_ready(
    nodes: Sequence[NodeLayout],
    *,
    min_peers: int | None = None,
    timeout_s: float = READY_TIMEOUT_S,
    on_progress: Callable[[Progress], None] | None = None,
    check_processes: bool = True,
) -> Progress:
    """Return once every node in ``nodes`` answers, has ``min_peers`` peers (default: all the
    others) and has passed the baseline height. ``on_progress`` sees every poll.

    Raises :class:`NodeStartFailed` when a node process has died (``check_processes``), and
    :class:`NotReady` at the deadline, describing each node.
    """
    progress = Progress(
        [NodeProgress(n.index) for n in nodes], len(nodes) - 1 if min_peers is None else min_peers
    )
    with trio.move_on_after(timeout_s):
        while True:
            async with trio.open_nursery() as nursery:
                for node, entry in zip(nodes, progress.nodes, strict=True):
                    nursery.start_soon(poll_node, node, entry)
            if check_processes:
                for node in nodes:
                    if running(node) is None:
                        raise NodeStartFailed(
                            f"node-{node.index} exited while the testnet was starting; the end of "
                            f"{node.log_path}:\n{log_tail(node)}"
                        )
            if progress.baseline is None and progress.connected:
                progress.baseline = max(n.height for n in progress.nodes)
            if on_progress is not None:
                on_progress(progress)
            if progress.ready:
                return progress
            await trio.sleep(POLL_S)
    raise NotReady(
        f"the testnet was not ready after {timeout_s:.0f} s ({progress.stage()}): " + describe(progress)
    )


def describe(progress: Progress) -> str:
    return "; ".join(
        f"node-{n.index}: height {n.height}, {n.peers} peers"
        if n.answering
        else f"node-{n.index}: no answer ({n.waiting_for})"
        for n in progress.nodes
    )
