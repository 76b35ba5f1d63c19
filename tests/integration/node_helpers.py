"""Build node homes for in-process multi-node tests: real keys, genesis, SQLite and libp2p."""

from __future__ import annotations

import dataclasses
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
from node.executor.settings import ExecutorSettings
from protocol.crypto import PrivateKey
from protocol.ledger.genesis import Genesis, dev_genesis
from protocol.ledger.params import Params
from protocol.units import DCT
from tests.integration.executor_helpers import host_sandbox_verdict
from tests.waiting import wait_until  # noqa: F401  (re-exported for the node tests)

CHAIN_ID = "dcent-itest"
FAUCET = PrivateKey.from_label("itest-faucet")
#: Short timeouts: loopback is fast, and tests should not idle.
FAST = ConsensusSettings(
    timeout_propose_ms=800,
    timeout_prevote_ms=400,
    timeout_precommit_ms=400,
    timeout_delta_ms=200,
    gossip_interval_ms=400,
    timeout_commit_ms=50,
    max_block_txs=1000,
    snapshot_interval=4,
)


def validator_key(index: int) -> PrivateKey:
    return PrivateKey.from_label(f"itest-validator-{index}")


#: Each validator's liquid balance: its node pays for the jobs it requests and locks collateral
#: for the jobs it sells from it.
VALIDATOR_BALANCE = 1_000 * DCT


def make_genesis(validators: int, **params: int) -> Genesis:
    """``params`` override ledger parameters (``dispute_window_blocks=200``, say)."""
    return dev_genesis(
        CHAIN_ID,
        [(validator_key(i).public_key.raw, 100 * DCT) for i in range(validators)],
        [(FAUCET.address.raw, 1_000_000 * DCT)]
        + [(validator_key(i).address.raw, VALIDATOR_BALANCE) for i in range(validators)],
        Params(**{"unbonding_period": 5, "gov_voting_period": 5, **params}),  # type: ignore[arg-type]
    )


def make_home(root: Path, index: int, genesis: Genesis) -> HomePaths:
    paths = HomePaths(root / f"node{index}")
    write_secret(paths.validator_key, validator_key(index).seed().hex() + "\n")
    write_secret(paths.node_key, PrivateKey.from_label(f"itest-node-{index}").seed().hex() + "\n")
    paths.data.mkdir(parents=True, exist_ok=True)
    paths.genesis.write_text(genesis.to_json())
    return paths


def node_config(
    index: int,
    bootstrap: tuple[str, ...] = (),
    executor_settings: ExecutorSettings | None = None,
    **market: object,
) -> NodeConfig:
    """A fast-blocks config; ``market`` overrides :class:`MarketConfig` fields.

    The executor is bubblewrap where its self-test passes on this host, else the unsandboxed
    one, as ``testnet up --executor auto`` chooses: a node sells only through an executor that
    works, and the tests of gossip and capacity must not depend on the host's sandbox. Tests of
    the sandbox itself skip (or fail under CI=true) where bubblewrap cannot run.
    """
    executor = "bubblewrap" if host_sandbox_verdict().ok else "subprocess"
    return NodeConfig(
        moniker=f"node{index}",
        p2p=P2PConfig(listen="/ip4/127.0.0.1/tcp/0", bootstrap=bootstrap),
        rpc=RpcConfig(addr="127.0.0.1:0"),
        consensus=dataclasses.replace(FAST),
        market=dataclasses.replace(
            MarketConfig(
                executor=executor,
                allow_unsandboxed=executor == "subprocess",
                simulated_gpus="1xH100-80GB",
                announce_interval_s=1,
                announce_ttl_s=3,
                escrow_wait_blocks=10,
                settle_margin_blocks=6,
            ),
            **market,
        ),
        executor=executor_settings if executor_settings is not None else ExecutorSettings(),
    )


class LocalNet:
    """In-process nodes, each in its own cancel scope so one can be stopped and restarted."""

    def __init__(
        self,
        nursery: trio.Nursery,
        root: Path,
        validators: int,
        market: dict[int, dict[str, object]] | None = None,
        params: dict[str, int] | None = None,
        executor: dict[int, ExecutorSettings] | None = None,
    ) -> None:
        self.nursery = nursery
        #: Per node index, ``[executor]`` settings (a container image for a podman provider).
        self.executor = executor or {}
        #: Per node index, MarketConfig overrides.
        self.market = market or {}
        self.root = root
        self.genesis = make_genesis(validators, **(params or {}))
        self.nodes: dict[int, Node] = {}
        self.scopes: dict[int, trio.CancelScope] = {}
        #: Per node index, set once its ``run`` has returned (every finally of it has run).
        self.ended: dict[int, trio.Event] = {}

    def bootstrap_for(self, index: int) -> tuple[str, ...]:
        return tuple(a for i, n in sorted(self.nodes.items()) if i != index for a in n.host.listen_addrs)

    async def start(self, index: int) -> Node:
        paths = HomePaths(self.root / f"node{index}")
        if not paths.genesis.exists():
            make_home(self.root, index, self.genesis)
        config = node_config(
            index, self.bootstrap_for(index), self.executor.get(index), **self.market.get(index, {})
        )
        node = Node(paths, config)
        ended = trio.Event()
        self.scopes[index] = await self.nursery.start(self._run, node, ended)
        self.nodes[index] = node
        self.ended[index] = ended
        return node

    @staticmethod
    async def _run(
        node: Node,
        ended: trio.Event,
        *,
        task_status: trio.TaskStatus[trio.CancelScope] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        try:
            with trio.CancelScope() as scope:
                await node.run(task_status=_Relay(task_status, scope))
        finally:
            ended.set()

    def stop(self, index: int) -> Node:
        self.scopes.pop(index).cancel()
        return self.nodes.pop(index)

    async def stop_and_wait(self, index: int) -> Node:
        """Stop node ``index`` and wait until it has fully stopped (its stores closed)."""
        ended = self.ended.pop(index)
        node = self.stop(index)
        await ended.wait()
        return node


class _Relay:
    """Hands ``scope`` to ``nursery.start`` once the node reports it started."""

    def __init__(self, status: trio.TaskStatus[trio.CancelScope], scope: trio.CancelScope) -> None:
        self._status = status
        self._scope = scope

    def started(self, value: object = None) -> None:
        self._status.started(self._scope)
