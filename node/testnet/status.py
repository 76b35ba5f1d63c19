"""What ``dcent testnet status`` reports per node, from its pid file and its RPC."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import trio

from node.rpc.errors import RpcError
from node.testnet.layout import NetworkLayout, NodeLayout
from node.testnet.processes import running
from node.testnet.readiness import client_for


@dataclass(frozen=True, slots=True)
class NodeStatus:
    index: int
    moniker: str
    #: None when the node did not answer.
    height: int | None
    peers: int | None
    #: In the active validator set (node_info), or for a silent node: a genesis validator.
    validator: bool
    #: Schedulable GPU units the node sells (node_info), None when it did not answer.
    gpus: int | None
    rpc_url: str
    pid: int | None
    alive: bool
    #: Why the RPC did not answer, "" when it did.
    error: str = ""
    #: Whether the node sells jobs now (its sandbox's self-test passed); None when unknown.
    selling: bool | None = None
    #: The node's own words on its sandbox: ok, UNSANDBOXED, or why it sells nothing and the fix.
    sandbox: str = ""

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def _status(
    node: NodeLayout,
    pid: int | None,
    *,
    height: int | None = None,
    peers: int | None = None,
    validator: bool | None = None,
    gpus: int | None = None,
    error: str = "",
    provider: dict[str, object] | None = None,
) -> NodeStatus:
    return NodeStatus(
        index=node.index,
        moniker=node.moniker,
        height=height,
        peers=peers,
        validator=node.validator if validator is None else validator,
        gpus=gpus,
        rpc_url=node.rpc_url,
        pid=pid,
        alive=pid is not None,
        error=error,
        selling=bool(provider["selling"]) if provider else None,
        sandbox=_sandbox_words(provider) if provider else "",
    )


def _sandbox_words(provider: dict[str, object]) -> str:
    summary = str(provider.get("summary", ""))
    fix = str(provider.get("fix", ""))
    if provider.get("selling") or not fix:
        return summary
    return f"NOT selling: {summary}. Fix: {fix}"


async def node_status(node: NodeLayout) -> NodeStatus:
    """Never raises for a node that is down or does not answer: the status says so."""
    process = running(node)
    if process is None:
        return _status(node, None, error="not running")
    client = client_for(node)
    try:
        async with client:
            info = await client.call("node_info")
            peers = await client.call("net_peers")
    except RpcError as exc:
        return _status(node, process.pid, error=exc.message)
    return _status(
        node,
        process.pid,
        height=int(info["height"]),
        peers=len(peers),
        validator=bool(info["validator"]),
        gpus=int(info["gpus"]),
        provider=info.get("provider") if isinstance(info.get("provider"), dict) else None,
    )


async def network_status(layout: NetworkLayout) -> list[NodeStatus]:
    """Every node's status, asked concurrently, in index order."""
    results: list[NodeStatus | None] = [None] * len(layout.nodes)

    async def one(position: int, node: NodeLayout) -> None:
        results[position] = await node_status(node)

    async with trio.open_nursery() as nursery:
        for position, node in enumerate(layout.nodes):
            nursery.start_soon(one, position, node)
    return [status for status in results if status is not None]
