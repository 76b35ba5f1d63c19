"""A local testnet on disk: one genesis, one home per node, deterministic ports, a faucet key.

Directory layout (``DIR``)::

    testnet.json        the manifest: chain id, base port, and per node its ports, peer id, role
    genesis.json        the chain's genesis (each node home holds a copy)
    faucet.key          the faucet account's key seed (hex, mode 0600)
    testnet.env         shell exports for wallets and scripts (written by ``dcent testnet up``)
    node-<i>/           node i's home: config.toml, genesis.json, keys/, data/
    node-<i>/node.log   its log (stdout and stderr)
    node-<i>/node.pid   ``<pid> <start time>`` while it runs (see node.testnet.processes)
    node-<i>/ports      ``p2p rpc metrics`` ports, one line

Ports are derived from ``--base-port`` P: node i listens for peers on P+10i, serves the RPC on
P+10i+1 and metrics on P+10i+2, so a testnet's endpoints are known before anything starts and
survive restarts. Every node dials the nodes before it (node i bootstraps to nodes 0..i-1) and
keeps redialling them; the later nodes redial a restarted earlier one, so any node can be stopped
and started again and the network closes up without a full mesh of duplicate dials. Each node
trusts all the others (``p2p.trusted_peers``; node/p2p/mesh_quota.py): an attacker's identities
cannot take their places in its gossip mesh. A node added later trusts those before it.

With a :class:`~node.testnet.netns.Placement` (``up --netns``) node i lives in network namespace
``dcent-<tag>-<i>`` and listens (p2p and RPC) on ``<subnet>.<i+1>`` instead of 127.0.0.1; the
manifest records each node's host and namespace, and the placement, so that every later command
(``status``, ``down``, wallets through ``testnet.env``) finds them. Ports are derived as above.

Keys are fresh random keys, or, given a seed (the e2e tests' logged seed), derived from it so a
run can be reproduced exactly.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from gpu.errors import InvalidGpuSpec
from gpu.simulated import parse_gpu_spec
from node.config import (
    ConfigError,
    ConsensusSettings,
    HomePaths,
    LogConfig,
    MarketConfig,
    MetricsConfig,
    NodeConfig,
    P2PConfig,
    RpcConfig,
    load_key,
    write_secret,
)
from node.config import render_config as render_config_text
from node.p2p.identity import peer_id_from_seed
from node.testnet.errors import InvalidPlan, NotATestnet
from node.testnet.netns import Placement
from protocol.consensus.errors import InvalidConfig
from protocol.crypto import PrivateKey
from protocol.ledger.genesis import Genesis, dev_genesis, genesis_state
from protocol.ledger.params import Params, min_voting_period
from protocol.units import DCT

MANIFEST_NAME = "testnet.json"
MANIFEST_VERSION = 1
DEFAULT_BASE_PORT = 27000
LOOPBACK = "127.0.0.1"
PORT_STRIDE = 10
#: p2p, RPC, metrics.
PORTS_PER_NODE = 3
MAX_PORT = 65535
MAX_NODES = 64
DEFAULT_GPU_SPEC = "2xH100-80GB"
EXECUTOR_NAMES = ("bubblewrap", "docker", "podman", "subprocess")

VALIDATOR_STAKE = 100_000 * DCT
#: Liquid balance of every node's account: providers lock collateral from it, and proposers pay
#: governance deposits from it.
NODE_BALANCE = 10_000 * DCT
FAUCET_BALANCE = 100_000_000 * DCT

#: Local blocks come every ~300 ms; issuance per block follows.
TESTNET_BLOCKS_PER_YEAR = 31_557_600 * 1000 // 300
#: Short periods so that unbonding and rewards can be watched in minutes; the voting period is
#: the shortest governance allows at this block rate (ten minutes), long enough to vote by hand.
TESTNET_PARAMS = Params(
    unbonding_period=20,
    gov_voting_period=min_voting_period(TESTNET_BLOCKS_PER_YEAR),
    epoch_length=20,
    blocks_per_year=TESTNET_BLOCKS_PER_YEAR,
)
#: Loopback is fast: short step timeouts, and a 250 ms pause after each commit.
TESTNET_CONSENSUS = ConsensusSettings(
    timeout_propose_ms=1000,
    timeout_prevote_ms=500,
    timeout_precommit_ms=500,
    timeout_delta_ms=250,
    gossip_interval_ms=500,
    timeout_commit_ms=250,
    max_block_txs=5000,
    snapshot_interval=50,
)
ANNOUNCE_INTERVAL_S = 2
ANNOUNCE_TTL_S = 6

#: What a node sells: declared (simulated) GPUs, the host's real GPUs through NVML, or nothing.
GPU_SIMULATED = "simulated"
GPU_NVML = "nvml"
GPU_NONE = "none"


@dataclass(frozen=True, slots=True)
class NetworkPlan:
    """What ``build_network`` lays out. The first ``validators`` nodes (all by default) are the
    genesis validators; the first ``providers`` nodes sell GPUs."""

    nodes: int
    validators: int | None = None
    providers: int = 0
    simulated_gpus: str = DEFAULT_GPU_SPEC
    #: Provider 0 sells the host's real GPUs (NVML) instead of simulated ones.
    real_gpus: bool = False
    base_port: int = DEFAULT_BASE_PORT
    executor: str = "bubblewrap"
    #: Derive every key and the chain id from this seed (reproducible runs); None: random keys.
    seed: bytes | None = None
    params: Params = field(default_factory=lambda: TESTNET_PARAMS)
    consensus: ConsensusSettings = field(default_factory=lambda: TESTNET_CONSENSUS)
    log_level: str = "info"
    #: Each node in a network namespace of its own (``--netns``): see :mod:`node.testnet.netns`.
    placement: Placement | None = None

    @property
    def validator_count(self) -> int:
        return self.nodes if self.validators is None else self.validators

    def check(self) -> None:
        """Raises :class:`InvalidPlan` naming the impossible argument."""
        if not 1 <= self.nodes <= MAX_NODES:
            raise InvalidPlan(f"nodes: between 1 and {MAX_NODES}, got {self.nodes}")
        if not 1 <= self.validator_count <= self.nodes:
            raise InvalidPlan(f"validators: between 1 and the {self.nodes} nodes, got {self.validator_count}")
        if not 0 <= self.providers <= self.nodes:
            raise InvalidPlan(f"providers: between 0 and the {self.nodes} nodes, got {self.providers}")
        if self.providers and not self.simulated_gpus.strip():
            raise InvalidPlan("simulated GPUs: providers need a spec such as 2xH100-80GB")
        try:
            parse_gpu_spec(self.simulated_gpus, "plan")
        except InvalidGpuSpec as exc:
            raise InvalidPlan(f"simulated GPUs: {exc.message}") from None
        if self.executor not in EXECUTOR_NAMES:
            raise InvalidPlan(f"executor: one of {', '.join(EXECUTOR_NAMES)}, got {self.executor!r}")
        check_base_port(self.base_port, self.nodes)


def check_base_port(base_port: int, nodes: int) -> None:
    """Raises :class:`InvalidPlan` unless every derived port of ``nodes`` nodes is a valid port."""
    if base_port < 1024 or base_port + PORT_STRIDE * (nodes - 1) + 2 > MAX_PORT:
        raise InvalidPlan(
            f"base port: {base_port} leaves no room for {nodes} nodes' ports "
            f"(base + {PORT_STRIDE} per node, at most {MAX_PORT}; at least 1024)"
        )


@dataclass(frozen=True, slots=True)
class NodeLayout:
    """One node of the testnet: where its home is, its ports and identities, its role."""

    index: int
    home: Path
    p2p_port: int
    rpc_port: int
    metrics_port: int
    peer_id: str
    #: The node's account: its validator key's address (``dct1...``).
    address: str
    public_key: str
    #: In the genesis validator set.
    validator: bool
    #: ``simulated``, ``nvml`` or ``none``.
    gpu_source: str
    gpu_spec: str
    bootstrap: tuple[str, ...]
    #: The address it listens on (p2p and RPC): loopback, or its namespace's address.
    host: str = LOOPBACK
    #: Its network namespace (``ip netns``), or None when it runs in the caller's.
    namespace: str | None = None

    @property
    def moniker(self) -> str:
        return f"node-{self.index}"

    @property
    def paths(self) -> HomePaths:
        return HomePaths(self.home)

    @property
    def provider(self) -> bool:
        return self.gpu_source != GPU_NONE

    @property
    def rpc_url(self) -> str:
        return f"http://{self.host}:{self.rpc_port}/"

    @property
    def metrics_url(self) -> str:
        # Metrics are served on loopback only: in a namespace, on that namespace's loopback.
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def p2p_addr(self) -> str:
        return f"/ip4/{self.host}/tcp/{self.p2p_port}/p2p/{self.peer_id}"

    @property
    def log_path(self) -> Path:
        return self.home / "node.log"

    @property
    def pid_path(self) -> Path:
        return self.home / "node.pid"

    @property
    def exit_path(self) -> Path:
        return self.home / "node.exit"

    @property
    def ports_path(self) -> Path:
        return self.home / "ports"

    def to_dict(self, root: Path) -> dict[str, object]:
        return {
            "index": self.index,
            "home": str(self.home.relative_to(root)),
            "p2p_port": self.p2p_port,
            "rpc_port": self.rpc_port,
            "metrics_port": self.metrics_port,
            "peer_id": self.peer_id,
            "address": self.address,
            "public_key": self.public_key,
            "validator": self.validator,
            "gpu_source": self.gpu_source,
            "gpu_spec": self.gpu_spec,
            "bootstrap": list(self.bootstrap),
            "host": self.host,
            "namespace": self.namespace,
        }

    @classmethod
    def from_dict(cls, root: Path, doc: dict[str, object]) -> NodeLayout:
        """Raises KeyError / TypeError / ValueError for a damaged manifest entry."""
        bootstrap = doc["bootstrap"]
        if not isinstance(bootstrap, list):
            raise TypeError("bootstrap: expected a list")
        return cls(
            index=_int(doc["index"]),
            home=root / str(doc["home"]),
            p2p_port=_int(doc["p2p_port"]),
            rpc_port=_int(doc["rpc_port"]),
            metrics_port=_int(doc["metrics_port"]),
            peer_id=str(doc["peer_id"]),
            address=str(doc["address"]),
            public_key=str(doc["public_key"]),
            validator=bool(doc["validator"]),
            gpu_source=str(doc["gpu_source"]),
            gpu_spec=str(doc["gpu_spec"]),
            bootstrap=tuple(str(item) for item in bootstrap),
            host=str(doc.get("host", LOOPBACK)),
            namespace=None if doc.get("namespace") is None else str(doc["namespace"]),
        )


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class NetworkLayout:
    """A testnet directory: its chain, its nodes and the settings every added node shares."""

    root: Path
    chain_id: str
    base_port: int
    nodes: tuple[NodeLayout, ...]
    faucet_address: str
    executor: str
    consensus: ConsensusSettings
    log_level: str
    seed: bytes | None = None
    #: The supervisors' policy (``no`` or ``on-failure``): set by ``up --restart``, used by ``start``.
    restart: str = "no"
    #: Set when the nodes run in network namespaces (``up --netns``); ``down`` removes them.
    placement: Placement | None = None

    @property
    def manifest_path(self) -> Path:
        return self.root / MANIFEST_NAME

    @property
    def genesis_path(self) -> Path:
        return self.root / "genesis.json"

    @property
    def faucet_key_path(self) -> Path:
        return self.root / "faucet.key"

    @property
    def env_path(self) -> Path:
        return self.root / "testnet.env"

    def node(self, index: int) -> NodeLayout:
        return self.nodes[index]

    def genesis(self) -> Genesis:
        return Genesis.from_text(self.genesis_path.read_text(), fmt="json")

    def faucet_key(self) -> PrivateKey:
        """Raises :class:`~node.config.KeyFileError`."""
        return load_key(self.faucet_key_path)

    def validator_key(self, index: int) -> PrivateKey:
        """Node ``index``'s validator (account) key. Raises :class:`~node.config.KeyFileError`."""
        return load_key(self.nodes[index].paths.validator_key)

    def save(self) -> None:
        doc = {
            "version": MANIFEST_VERSION,
            "chain_id": self.chain_id,
            "base_port": self.base_port,
            "faucet_address": self.faucet_address,
            "executor": self.executor,
            "log_level": self.log_level,
            "consensus": {item.name: getattr(self.consensus, item.name) for item in fields(self.consensus)},
            "seed": self.seed.hex() if self.seed is not None else None,
            "restart": self.restart,
            "netns": self.placement.to_dict() if self.placement is not None else None,
            "nodes": [node.to_dict(self.root) for node in self.nodes],
        }
        temporary = self.manifest_path.with_suffix(".json.tmp")
        temporary.write_text(json.dumps(doc, indent=2) + "\n")
        temporary.replace(self.manifest_path)

    @classmethod
    def load(cls, root: Path) -> NetworkLayout:
        """Read ``root/testnet.json``. Raises :class:`NotATestnet` when it is missing or damaged."""
        root = root.resolve()
        path = root / MANIFEST_NAME
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            raise NotATestnet(f"{root} holds no testnet ({MANIFEST_NAME} not found)") from None
        except (OSError, ValueError) as exc:
            raise NotATestnet(f"{path}: unreadable ({exc})") from None
        try:
            if doc["version"] != MANIFEST_VERSION:
                raise ValueError(f"version {doc['version']!r}, this dcent reads {MANIFEST_VERSION}")
            seed = doc.get("seed")
            netns = doc.get("netns")
            return cls(
                root=root,
                chain_id=str(doc["chain_id"]),
                base_port=_int(doc["base_port"]),
                nodes=tuple(NodeLayout.from_dict(root, entry) for entry in doc["nodes"]),
                faucet_address=str(doc["faucet_address"]),
                executor=str(doc["executor"]),
                consensus=ConsensusSettings(**{k: _int(v) for k, v in doc["consensus"].items()}),
                log_level=str(doc["log_level"]),
                seed=bytes.fromhex(seed) if isinstance(seed, str) else None,
                restart=str(doc.get("restart", "no")),
                placement=Placement.from_dict(netns) if isinstance(netns, dict) else None,
            )
        except (KeyError, TypeError, ValueError, AttributeError, ConfigError, InvalidConfig) as exc:
            raise NotATestnet(f"{path}: damaged manifest ({exc!r})") from None


def default_dir() -> Path:
    """Where a testnet lives when no ``--dir`` is given: ``$DCENT_TESTNET_DIR``, else ``./testnet``."""
    return Path(os.environ.get("DCENT_TESTNET_DIR") or "testnet")


def is_testnet_dir(root: Path) -> bool:
    return (root / MANIFEST_NAME).is_file()


def derive_key(seed: bytes | None, label: str) -> PrivateKey:
    """A fresh random key, or with ``seed`` the same key for the same (seed, label)."""
    if seed is None:
        return PrivateKey.generate()
    return PrivateKey.from_seed(hashlib.sha256(b"dcent/testnet-key/" + seed + b"/" + label.encode()).digest())


def chain_id_for(seed: bytes | None) -> str:
    suffix = hashlib.sha256(b"dcent/testnet-chain/" + seed).hexdigest()[:8] if seed else secrets.token_hex(4)
    return f"dcent-testnet-{suffix}"


def render_config(
    node: NodeLayout,
    consensus: ConsensusSettings,
    executor: str,
    log_level: str,
    *,
    peers: Sequence[NodeLayout],
) -> str:
    """The node's config.toml: the defaults with the testnet's values, every setting written out
    with its comment (the same schema as ``dcent init``'s file). The node trusts every other
    node of ``peers`` (``p2p.trusted_peers``): the testnet's operator chose them all."""
    config = NodeConfig(
        moniker=node.moniker,
        p2p=P2PConfig(
            listen=f"/ip4/{node.host}/tcp/{node.p2p_port}",
            bootstrap=tuple(node.bootstrap),
            trusted_peers=tuple(peer.peer_id for peer in peers if peer.peer_id != node.peer_id),
        ),
        # A node in a namespace serves its RPC on the namespace's address, for the root namespace's
        # CLI and wallets (through the bridge); the cookie still guards it.
        rpc=RpcConfig(addr=f"{node.host}:{node.rpc_port}", allow_remote=node.host != LOOPBACK),
        consensus=consensus,
        market=MarketConfig(
            executor=executor,
            # The dev-only subprocess executor runs jobs unsandboxed; a testnet that names it allows it.
            allow_unsandboxed=executor == "subprocess",
            # NVML nodes leave the spec empty (the node then probes NVML); the others carry theirs.
            simulated_gpus="" if node.gpu_source == GPU_NVML else node.gpu_spec,
            sell_gpus=node.gpu_source != GPU_NONE,
            announce_interval_s=ANNOUNCE_INTERVAL_S,
            announce_ttl_s=ANNOUNCE_TTL_S,
        ),
        metrics=MetricsConfig(addr=f"127.0.0.1:{node.metrics_port}"),
        log=LogConfig(level=log_level),
    )
    header = f"# dcent testnet node {node.index}: written by `dcent testnet up`; ports derive from the base port.\n"
    return render_config_text(config, header=header)


def _node_layout(
    root: Path,
    index: int,
    base_port: int,
    validator_key: PrivateKey,
    node_key: PrivateKey,
    *,
    validator: bool,
    gpu_source: str,
    gpu_spec: str,
    bootstrap: Sequence[str],
    placement: Placement | None,
) -> NodeLayout:
    p2p = base_port + PORT_STRIDE * index
    return NodeLayout(
        index=index,
        home=root / f"node-{index}",
        p2p_port=p2p,
        rpc_port=p2p + 1,
        metrics_port=p2p + 2,
        peer_id=peer_id_from_seed(node_key.seed()),
        address=str(validator_key.address),
        public_key=validator_key.public_key.raw.hex(),
        validator=validator,
        gpu_source=gpu_source,
        gpu_spec=gpu_spec,
        bootstrap=tuple(bootstrap),
        host=placement.address(index) if placement is not None else LOOPBACK,
        namespace=placement.namespace(index) if placement is not None else None,
    )


def _write_home(
    node: NodeLayout, genesis: Genesis, validator_key: PrivateKey, node_key: PrivateKey, config: str
) -> None:
    paths = node.paths
    write_secret(paths.validator_key, validator_key.seed().hex() + "\n")
    write_secret(paths.node_key, node_key.seed().hex() + "\n")
    paths.data.mkdir(parents=True, exist_ok=True, mode=0o700)
    paths.genesis.write_text(genesis.to_json())
    write_secret(paths.config, config)
    node.ports_path.write_text(f"{node.p2p_port} {node.rpc_port} {node.metrics_port}\n")


def gpu_role(plan: NetworkPlan, index: int) -> tuple[str, str]:
    """(gpu source, spec) of node ``index`` under ``plan``."""
    if index < plan.providers:
        if plan.real_gpus and index == 0:
            return GPU_NVML, ""
        return GPU_SIMULATED, plan.simulated_gpus
    # On a host with real GPUs a node with no spec would probe NVML and sell them too.
    return GPU_NONE, ""


#: The testnet's stable unit, registered at genesis with the faucet as its issuer.
TESTNET_STABLE = "TUSD"


def build_network(root: Path, plan: NetworkPlan) -> NetworkLayout:
    """Write a new testnet into ``root`` (created; must hold no testnet yet): genesis, faucet key,
    every node's home and the manifest. Starts nothing.

    Raises :class:`InvalidPlan`, :class:`~node.config.ConfigError` (a bad GPU spec or executor
    caught by the config check), :class:`~protocol.ledger.errors.GenesisError`, OSError.
    """
    plan.check()
    root = root.resolve()
    if is_testnet_dir(root):
        raise InvalidPlan(f"{root} already holds a testnet")
    root.mkdir(parents=True, exist_ok=True)
    validator_keys = [derive_key(plan.seed, f"validator-{i}") for i in range(plan.nodes)]
    node_keys = [derive_key(plan.seed, f"node-{i}") for i in range(plan.nodes)]
    faucet = derive_key(plan.seed, "faucet")
    genesis = dev_genesis(
        chain_id_for(plan.seed),
        [(key.public_key.raw, VALIDATOR_STAKE) for key in validator_keys[: plan.validator_count]],
        [(faucet.address.raw, FAUCET_BALANCE)] + [(key.address.raw, NODE_BALANCE) for key in validator_keys],
        plan.params,
        # i17: a testnet stable unit the faucet issues (`dcent asset mint TUSD ...` with its key).
        assets=[(TESTNET_STABLE, faucet.address.raw)],
    )
    genesis_state(genesis)  # a genesis that cannot start a chain fails here, not in every node
    nodes: list[NodeLayout] = []
    for index in range(plan.nodes):
        source, spec = gpu_role(plan, index)
        nodes.append(
            _node_layout(
                root,
                index,
                plan.base_port,
                validator_keys[index],
                node_keys[index],
                validator=index < plan.validator_count,
                gpu_source=source,
                gpu_spec=spec,
                bootstrap=[n.p2p_addr for n in nodes],
                placement=plan.placement,
            )
        )
    layout = NetworkLayout(
        root=root,
        chain_id=genesis.chain_id,
        base_port=plan.base_port,
        nodes=tuple(nodes),
        faucet_address=str(faucet.address),
        executor=plan.executor,
        consensus=plan.consensus,
        log_level=plan.log_level,
        seed=plan.seed,
        placement=plan.placement,
    )
    configs = [render_config(n, plan.consensus, plan.executor, plan.log_level, peers=nodes) for n in nodes]
    layout.genesis_path.write_text(genesis.to_json())
    write_secret(layout.faucet_key_path, faucet.seed().hex() + "\n")
    for node, config, vkey, nkey in zip(nodes, configs, validator_keys, node_keys, strict=True):
        _write_home(node, genesis, vkey, nkey, config)
    layout.save()
    return layout


def add_node(
    layout: NetworkLayout,
    *,
    validator_key: PrivateKey | None = None,
    gpu_spec: str = "",
) -> tuple[NetworkLayout, NodeLayout]:
    """Lay out one more node for an existing testnet (a late joiner, or a second node signing
    with an existing validator's key when ``validator_key`` is given). It bootstraps to every
    node before it; nothing is started. Returns the updated (and saved) layout and the node.

    Raises :class:`InvalidPlan` when the derived ports run past 65535, ConfigError for a bad
    ``gpu_spec``, OSError.
    """
    index = len(layout.nodes)
    check_base_port(layout.base_port, index + 1)
    key = validator_key or derive_key(layout.seed, f"validator-{index}")
    node_key = derive_key(layout.seed, f"node-{index}")
    genesis = layout.genesis()
    node = _node_layout(
        layout.root,
        index,
        layout.base_port,
        key,
        node_key,
        validator=any(v.public_key == key.public_key.raw for v in genesis.validators),
        gpu_source=GPU_SIMULATED if gpu_spec else GPU_NONE,
        gpu_spec=gpu_spec,
        bootstrap=[n.p2p_addr for n in layout.nodes],
        placement=layout.placement,
    )
    config = render_config(node, layout.consensus, layout.executor, layout.log_level, peers=layout.nodes)
    _write_home(node, genesis, key, node_key, config)
    updated = replace(layout, nodes=(*layout.nodes, node))
    updated.save()
    return updated, node
