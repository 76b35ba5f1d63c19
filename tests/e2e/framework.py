"""The functional test framework: real `dcent node run` processes driven over JSON-RPC.

In the style of bitcoin's ``test/functional/test_framework``:

- a :class:`TestNetwork` lays out a testnet with ``node.testnet`` (homes, genesis, keys) and runs
  each node as a real process (``node.testnet.processes``), started, stopped (SIGTERM), killed
  (SIGKILL), restarted, partitioned and healed one at a time;
- ports derive from a base port that is chosen per pytest-xdist worker in a range of its own,
  at a random free offset, and logged;
- every key, the chain id and the scenarios' random choices derive from one seed, logged and
  reproducible with ``DCENT_E2E_SEED=<seed>``;
- tests never sleep: they wait for conditions with deadlines (:meth:`TestNetwork.wait_until`).

Partitions: :meth:`TestNetwork.partition` freezes a node with SIGSTOP. Its sockets stay open but
nothing answers on them, so to its peers it is cut off: their health checks fail within seconds
and they drop it, and its consensus votes stop. :meth:`TestNetwork.heal` sends SIGCONT: the node
wakes up behind, reconnects (its bootstrap peers and theirs redial) and syncs the blocks it
missed. A frozen node cannot answer RPC either, so calls skip it (see :meth:`TestNetwork.live`).

Later scenarios fit the same controls: :meth:`TestNetwork.add_node` lays out a node that is not
in the genesis (a late joiner), or with ``validator_key=`` a second node signing with an existing
validator's key (double signing); :meth:`TestNetwork.build` writes homes without starting them.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import trio

from node.rpc.client import RpcClient
from node.rpc.errors import RpcCallError, RpcError
from node.testnet.faucet import UNKNOWN_TX, FaucetReceipt, send_from_key
from node.testnet.layout import (
    PORT_STRIDE,
    TESTNET_CONSENSUS,
    TESTNET_PARAMS,
    NetworkLayout,
    NetworkPlan,
    NodeLayout,
    add_node,
    build_network,
)
from node.testnet.processes import (
    NodeProcess,
    StopResult,
    kill_node,
    log_tail,
    pause_node,
    port_is_free,
    resume_node,
    start_node,
    stop_node,
)
from node.testnet.readiness import client_for, wait_ready
from protocol.crypto import Address, PrivateKey
from protocol.ledger.params import Params
from protocol.ledger.tx import Msg, sign_tx
from tests.integration.executor_helpers import testnet_executor
from tests.waiting import wait_until_blocking

log = logging.getLogger("dcent.e2e")
T = TypeVar("T")

SEED_ENV = "DCENT_E2E_SEED"
#: Generous: the machine running the suite may be loaded; a healthy network answers in seconds.
DEFAULT_TIMEOUT_S = 90.0
#: Each pytest-xdist worker picks base ports in its own range of this many ports.
WORKER_PORT_RANGE = 1500
FIRST_PORT = 20000
#: Room reserved per network: nodes started later (late joiners) take the next port slots.
MAX_NODES_PER_NETWORK = 8

#: Short voting and unbonding periods so that governance and staking finish within a test.
E2E_PARAMS = replace(TESTNET_PARAMS, gov_voting_period=15, unbonding_period=100)
E2E_CONSENSUS = replace(TESTNET_CONSENSUS, timeout_commit_ms=200, snapshot_interval=20)

RUNNING, PAUSED, STOPPED = "running", "paused", "stopped"


def session_seed() -> int:
    """``$DCENT_E2E_SEED`` when set, else a fresh random seed (print it: it reproduces the run)."""
    raw = os.environ.get(SEED_ENV)
    return int(raw) if raw else random.SystemRandom().randrange(2**32)


def derived_seed(seed: int, label: str) -> int:
    """A per-network seed: networks of one run differ, and each is reproducible from the run's."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{label}".encode()).digest()[:4], "big")


def worker_index() -> int:
    """The pytest-xdist worker number (``gw3`` -> 3), 0 without xdist."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    digits = worker.removeprefix("gw")
    return int(digits) if digits.isdigit() else 0


def pick_base_port(nodes: int = MAX_NODES_PER_NETWORK, attempts: int = 50) -> int:
    """A base port in this worker's range whose derived ports are all free now.

    Below the kernel's ephemeral range (32768+), so outgoing connections never take them.
    Raises AssertionError when no free range is found.
    """
    low = FIRST_PORT + worker_index() * WORKER_PORT_RANGE
    span = WORKER_PORT_RANGE - PORT_STRIDE * nodes
    chooser = random.SystemRandom()
    for _ in range(attempts):
        base = low + chooser.randrange(0, span, PORT_STRIDE)
        ports = [base + PORT_STRIDE * i + offset for i in range(nodes) for offset in range(3)]
        if all(port_is_free(port) for port in ports):
            return base
    raise AssertionError(f"no free port range in {low}-{low + WORKER_PORT_RANGE} after {attempts} tries")


class TestNetwork:
    """A testnet of real node processes in ``root``. Build, start, drive, and always
    :meth:`shutdown` (the fixture does)."""

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        root: Path,
        *,
        seed: int,
        nodes: int = 4,
        validators: int | None = None,
        providers: int = 0,
        simulated_gpus: str = "1xH100-80GB",
        executor: str | None = None,
        base_port: int | None = None,
        params: Params = E2E_PARAMS,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.root = root
        self.seed = seed
        #: Scenario choices (which node to kill, amounts) come from here, so the seed replays them.
        self.rng = random.Random(seed)
        self.timeout_s = timeout_s
        self.base_port = base_port if base_port is not None else pick_base_port()
        self.plan = NetworkPlan(
            nodes=nodes,
            validators=validators,
            providers=providers,
            simulated_gpus=simulated_gpus,
            base_port=self.base_port,
            # By default what `dcent testnet up` picks here: bubblewrap where its self-test passes,
            # else the subprocess executor (a chroot); a test about the sandbox names it.
            executor=executor if executor is not None else testnet_executor(),
            seed=seed.to_bytes(8, "big"),
            params=params,
            consensus=E2E_CONSENSUS,
        )
        self._layout: NetworkLayout | None = None
        self.processes: dict[int, NodeProcess] = {}
        self.state: dict[int, str] = {}
        #: The last nonce this framework used per sender, so transactions can be pipelined.
        self._nonces: dict[bytes, int] = {}
        self._chain_id: str | None = None
        log.info("e2e network in %s: seed %d, base port %d", root, seed, self.base_port)
        print(f"e2e network: seed {seed}, base port {self.base_port}, dir {root}")

    # --- layout ------------------------------------------------------------------------------
    @property
    def layout(self) -> NetworkLayout:
        if self._layout is None:
            raise AssertionError("build() the network first")
        return self._layout

    def build(self) -> NetworkLayout:
        """Write the genesis and every home; start nothing."""
        self._layout = build_network(self.root, self.plan)
        self._chain_id = self._layout.chain_id
        for node in self._layout.nodes:
            self.state[node.index] = STOPPED
        return self._layout

    def add_node(self, *, validator_key: PrivateKey | None = None, gpu_spec: str = "") -> int:
        """Lay out one more node (not started): a full node outside the genesis, or one signing
        with ``validator_key``. Returns its index."""
        self._layout, node = add_node(self.layout, validator_key=validator_key, gpu_spec=gpu_spec)
        self.state[node.index] = STOPPED
        return node.index

    @property
    def chain_id(self) -> str:
        return self.layout.chain_id

    def node(self, index: int) -> NodeLayout:
        return self.layout.node(index)

    @property
    def indexes(self) -> list[int]:
        return [node.index for node in self.layout.nodes]

    def validator_key(self, index: int) -> PrivateKey:
        return self.layout.validator_key(index)

    def address(self, index: int) -> str:
        return self.node(index).address

    def new_key(self, label: str) -> PrivateKey:
        """A key derived from the seed: the same account in a rerun with the same seed."""
        return PrivateKey.from_label(f"e2e/{self.seed}/{label}")

    # --- processes ---------------------------------------------------------------------------
    def start(self, index: int, *, wait: bool = True, min_peers: int = 1) -> None:
        """Start node ``index``; with ``wait``, return once it answers RPC, has ``min_peers``
        peers and has seen a new block."""
        self.processes[index] = start_node(self.node(index))
        self.state[index] = RUNNING
        if wait:
            self._wait_ready([index], min_peers=min_peers)

    def start_all(self) -> None:
        """Start every built node that is stopped and wait until all are connected to each other
        and making blocks."""
        stopped = [i for i in self.indexes if self.state[i] == STOPPED]
        for index in stopped:
            self.start(index, wait=False)
        self._wait_ready(self.live(), min_peers=len(self.live()) - 1)

    def _wait_ready(self, indexes: Sequence[int], *, min_peers: int) -> None:
        nodes = [self.node(i) for i in indexes]
        trio.run(partial(wait_ready, nodes, min_peers=min_peers, timeout_s=self.timeout_s))

    def stop(self, index: int) -> StopResult:
        """SIGTERM and wait; the node must exit 0 (a clean shutdown)."""
        result = stop_node(self.node(index))
        self._reaped(index)
        assert not result.killed and result.exit_code == 0, (
            f"node-{index} did not stop cleanly on SIGTERM: {result}\n{self.log_tail(index)}"
        )
        return result

    def kill(self, index: int) -> StopResult:
        """kill -9: a crash; nothing of the node's shutdown code runs."""
        result = kill_node(self.node(index))
        self._reaped(index)
        return result

    def restart(self, index: int, *, wait: bool = True) -> None:
        if self.state[index] != STOPPED:
            self.stop(index)
        self.start(index, wait=wait)

    def partition(self, index: int) -> None:
        """Freeze node ``index`` (SIGSTOP): its peers see it as partitioned away."""
        pause_node(self.node(index))
        self.state[index] = PAUSED

    def heal(self, index: int) -> None:
        """Continue a frozen node (SIGCONT): it rejoins and catches up."""
        resume_node(self.node(index))
        self.state[index] = RUNNING

    def live(self) -> list[int]:
        """The nodes running and not frozen: the ones that can answer RPC."""
        return [i for i in self.indexes if self.state.get(i) == RUNNING]

    def _reaped(self, index: int) -> None:
        process = self.processes.pop(index, None)
        if process is not None and process.supervisor is not None:
            process.supervisor.wait(timeout=self.timeout_s)
        self.state[index] = STOPPED

    def shutdown(self) -> list[StopResult]:
        """Stop every node (frozen ones are continued first); the results, for the fixture to
        check that each exited cleanly."""
        results = []
        for index in self.indexes:
            if self.state.get(index, STOPPED) == STOPPED:
                continue
            results.append(stop_node(self.node(index)))
            self._reaped(index)
        return results

    def log_tail(self, index: int, lines: int = 40) -> str:
        return f"--- node-{index} log ({self.node(index).log_path}) ---\n{log_tail(self.node(index), lines)}"

    # --- RPC ---------------------------------------------------------------------------------
    def client(self, index: int) -> RpcClient:
        return client_for(self.node(index))

    def call(self, index: int, method: str, *args: object, **params: object) -> Any:
        """One JSON-RPC call to node ``index``; raises RpcCallError for an error answer."""
        assert self.state.get(index) == RUNNING, f"node-{index} is {self.state.get(index)}: it cannot answer"
        return self.client(index).call_blocking(method, *args, **params)

    def height(self, index: int) -> int:
        return int(self.call(index, "node_info")["height"])

    def height_or_zero(self, index: int) -> int:
        """The height, or 0 while the node does not answer (restarting, catching up)."""
        try:
            return self.height(index)
        except RpcError:
            return 0

    def blocks(self, index: int, heights: Iterable[int]) -> dict[int, dict[str, Any]]:
        """``chain_getBlock`` for each height, in one batch call."""
        wanted = list(heights)
        if not wanted:
            return {}

        async def fetch() -> list[Any]:
            async with self.client(index) as client:
                return await client.batch([("chain_getBlock", {"height": h}) for h in wanted])

        answers = trio.run(fetch)
        for height, answer in zip(wanted, answers, strict=True):
            if isinstance(answer, RpcCallError):
                raise AssertionError(f"node-{index} has no block {height}: {answer.message}")
        return dict(zip(wanted, answers, strict=True))

    def account(self, index: int, address: str | Address) -> dict[str, Any]:
        return dict(self.call(index, "account_get", address=str(address)))

    def balance(self, index: int, address: str | Address) -> int:
        return int(self.account(index, address)["balance"])

    # --- waiting -----------------------------------------------------------------------------
    def wait_until(self, predicate: Callable[[], T | None], *, what: str, timeout: float | None = None) -> T:
        """Poll ``predicate`` until it returns something truthy; fail naming ``what`` at the
        deadline (default :attr:`timeout_s`)."""
        value = wait_until_blocking(predicate, what=what, timeout=timeout or self.timeout_s)
        assert value is not None
        return value

    def wait_for_height(self, height: int, nodes: Sequence[int] | None = None) -> None:
        indexes = list(nodes) if nodes is not None else self.live()
        self.wait_until(
            lambda: all(self.height_or_zero(i) >= height for i in indexes),
            what=f"nodes {indexes} at height {height}",
        )

    def sync_all(self, nodes: Sequence[int] | None = None) -> int:
        """Wait until every node (default: the live ones) has reached the highest height any of
        them had, then check they hold the same block and state hash there. Returns that height."""
        indexes = list(nodes) if nodes is not None else self.live()
        target = max(self.height_or_zero(i) for i in indexes)
        self.wait_for_height(target, indexes)
        blocks = {i: self.blocks(i, [target])[target] for i in indexes}
        hashes = {(b["hash"], b["state_hash"]) for b in blocks.values()}
        assert len(hashes) == 1, f"nodes disagree at height {target}: {blocks}"
        return target

    # --- transactions ------------------------------------------------------------------------
    def min_fee(self, index: int = 0) -> int:
        return int(self.call(index, "economics_params")["params"]["min_fee"])

    def submit(self, index: int, key: PrivateKey, msg: Msg, *, fee: int | None = None) -> str:
        """Sign ``msg`` with ``key`` (the next nonce: after the committed one and after any this
        framework already used) and submit it to node ``index``; the transaction hash."""
        sender = key.address.raw
        committed = int(self.account(index, key.address)["nonce"])
        nonce = max(committed, self._nonces.get(sender, 0)) + 1
        raw = sign_tx(key, self.chain_id, nonce, self.min_fee(index) if fee is None else fee, msg)
        tx_hash = str(self.call(index, "tx_submit", tx=raw.hex())["hash"])
        self._nonces[sender] = nonce
        return tx_hash

    def wait_committed(self, index: int, tx_hash: str) -> dict[str, Any]:
        """Wait until node ``index`` reports the transaction committed; its ``tx_get`` answer."""

        def committed() -> dict[str, Any] | None:
            try:
                answer = self.call(index, "tx_get", hash=tx_hash)
            except RpcCallError as exc:
                if exc.code == UNKNOWN_TX:
                    return None
                raise
            return dict(answer) if answer["status"] == "committed" else None

        return self.wait_until(committed, what=f"transaction {tx_hash[:16]} committed on node-{index}")

    def send(self, index: int, key: PrivateKey, msg: Msg) -> dict[str, Any]:
        """:meth:`submit`, then :meth:`wait_committed`."""
        return self.wait_committed(index, self.submit(index, key, msg))

    def faucet(self, to: str | Address, amount: int, *, index: int = 0) -> FaucetReceipt:
        """Fund ``to`` from the testnet's faucet through node ``index`` and wait for the commit."""
        recipient = to if isinstance(to, Address) else Address.parse(to)

        async def transfer() -> FaucetReceipt:
            async with self.client(index) as client:
                return await send_from_key(
                    client, self.layout.faucet_key(), recipient, amount, timeout_s=self.timeout_s
                )

        return trio.run(transfer)
