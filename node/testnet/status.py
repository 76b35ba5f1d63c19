"""What ``dcent testnet status`` reports per node, from its pid file, its supervisor and its RPC,
and for the chain as a whole: whether it is still committing, and if not, which validators are
missing (down, not answering, or absent from the newest commit's signatures).

It sees a node however it was started (``up``, ``start``, by hand with ``dcent node run``): the
pid file says whether it runs, the RPC says the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import trio

from node.rpc.errors import RpcError
from node.testnet.layout import NetworkLayout, NodeLayout
from node.testnet.processes import last_exit_code, running, supervisor_of
from node.testnet.readiness import client_for


@dataclass(frozen=True, slots=True)
class TestnetNodeStatus:
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
    #: ``running``, ``restarting`` (crashed; its supervisor starts it again), ``stopped`` or
    #: ``exited N`` (it ended on its own with that code).
    state: str = "running"
    #: Times its supervisor restarted it after a crash (``--restart on-failure``).
    restarts: int = 0
    #: The node's validator address (its account).
    address: str = ""
    #: Time of the newest block it stores (ms since the epoch), None when it did not answer.
    head_time_ms: int | None = None
    #: Addresses whose precommits committed that block.
    signers: tuple[str, ...] = field(default=())
    #: Where peers dial the node: ``/ip4/.../tcp/N/p2p/<peer id>`` (what it reports, else the
    #: address its layout gives it).
    multiaddr: str = ""

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
    head_time_ms: int | None = None,
    signers: tuple[str, ...] = (),
    multiaddr: str = "",
) -> TestnetNodeStatus:
    supervisor = supervisor_of(node)
    if pid is not None:
        state = "running"
    elif supervisor is not None:
        state = "restarting"
    else:
        code = last_exit_code(node)
        state = "stopped" if code in (None, 0, -15) else f"exited {code}"
    return TestnetNodeStatus(
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
        state=state,
        restarts=supervisor.restarts if supervisor is not None else 0,
        address=node.address,
        head_time_ms=head_time_ms,
        signers=signers,
        multiaddr=multiaddr or node.p2p_addr,
    )


def _sandbox_words(provider: dict[str, object]) -> str:
    summary = str(provider.get("summary", ""))
    fix = str(provider.get("fix", ""))
    if provider.get("selling") or not fix:
        return summary
    return f"NOT selling: {summary}. Fix: {fix}"


async def node_status(node: NodeLayout) -> TestnetNodeStatus:
    """Never raises for a node that is down or does not answer: the status says so."""
    process = running(node)
    if process is None:
        return _status(node, None, error="not running")
    client = client_for(node)
    try:
        async with client:
            info = await client.call("node_info")
            peers = await client.call("net_peers")
            head = await client.call("chain_head")
            newest = await client.call("chain_getBlock", head["height"]) if head["height"] > 0 else None
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
        head_time_ms=int(head["time_ms"]),
        signers=tuple(str(a) for a in newest["signers"]) if newest is not None else (),
        multiaddr=_reported_multiaddr(info.get("listen_addrs")),
    )


def _reported_multiaddr(addrs: object) -> str:
    """The node's first reported listen address (full, with ``/p2p/``); "" if it reports none."""
    if isinstance(addrs, list) and addrs and isinstance(addrs[0], str):
        return addrs[0]
    return ""


async def network_status(layout: NetworkLayout) -> list[TestnetNodeStatus]:
    """Every node's status, asked concurrently, in index order."""
    results: list[TestnetNodeStatus | None] = [None] * len(layout.nodes)

    async def one(position: int, node: NodeLayout) -> None:
        results[position] = await node_status(node)

    async with trio.open_nursery() as nursery:
        for position, node in enumerate(layout.nodes):
            nursery.start_soon(one, position, node)
    return [status for status in results if status is not None]


#: Without a new block for this long the chain counts as stalled (blocks come every ~1 s).
STALL_AFTER_MS = 15_000


@dataclass(frozen=True, slots=True)
class ChainHealth:
    """The chain as the nodes that answered see it."""

    height: int | None
    #: How long ago the newest block any node stores was made; None when no node answered.
    since_block_ms: int | None
    stalled: bool
    #: Validators (by moniker) that did not sign the newest block, with why: "not running",
    #: "restarting", "not answering: ...", or "did not sign".
    missing: tuple[tuple[str, str], ...]

    def to_json(self) -> dict[str, object]:
        return {
            "height": self.height,
            "since_block_ms": self.since_block_ms,
            "stalled": self.stalled,
            "missing_validators": [{"node": name, "why": why} for name, why in self.missing],
        }


def chain_health(
    statuses: Sequence[TestnetNodeStatus], now_ms: int, *, stall_after_ms: int = STALL_AFTER_MS
) -> ChainHealth:
    """Whether the chain still commits, from every node's newest block, and who is missing."""
    answered = [s for s in statuses if s.height is not None and s.head_time_ms is not None]
    if not answered:
        missing = tuple((s.moniker, s.error or s.state) for s in statuses if s.validator)
        return ChainHealth(None, None, bool(statuses), missing)
    newest = max(answered, key=lambda s: (s.height or 0, s.head_time_ms or 0))
    since = max(0, now_ms - (newest.head_time_ms or 0))
    signed = set(newest.signers)
    missing_list = []
    for status in statuses:
        if not status.validator:
            continue
        if not status.alive:
            missing_list.append(
                (status.moniker, "not running" if status.state != "restarting" else "restarting")
            )
        elif status.height is None:
            missing_list.append((status.moniker, f"not answering: {status.error}"))
        elif newest.height and status.address not in signed:
            missing_list.append((status.moniker, "did not sign"))
    return ChainHealth(newest.height, since, since > stall_after_ms, tuple(missing_list))
