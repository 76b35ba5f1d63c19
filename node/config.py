"""The node's home directory and `config.toml`.

Home layout (``--home``, ``DCENT_HOME``, default ``~/.dcent``)::

    config.toml          this node's settings (from configs/node.toml)
    genesis.json         the chain's genesis
    keys/node_key        libp2p identity seed (hex, mode 0600)
    keys/validator_key   consensus signing seed (hex, mode 0600)
    data/chain.db        SQLite store (WAL)
    data/.cookie         RPC cookie, written at start, removed at exit
    data/rpc.url         the URL the RPC listens on (the real port), written at start, removed at exit

Every config problem is a :class:`ConfigError` naming the field (``rpc.addr: ...``).
"""

from __future__ import annotations

import difflib
import json
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import get_type_hints

from node.blobs.settings import BlobSettings
from node.executor.settings import ExecutorSettings
from node.market.pricing import PricingSettings
from node.rpc.address import DEFAULT_RPC_HOST, DEFAULT_RPC_PORT, is_loopback, parse_rpc_addr
from node.rpc.errors import InvalidBindAddress
from node.secret_files import key_seed_text, read_key_seed, write_secret_file
from node.services.mempool.settings import MempoolSettings
from node.tomlschema import Amount, read_table, render_table
from node.tomlschema import ConfigError as ConfigError
from protocol.consensus.effects import ConsensusConfig
from protocol.contracts import is_asset_symbol
from protocol.crypto import PrivateKey

DEFAULT_HOME = Path("~/.dcent")
#: A copy of :func:`default_config_text` kept in the repository for readers (not read by the node).
TEMPLATE = Path(__file__).resolve().parent.parent / "configs" / "node.toml"


class KeyFileError(ConfigError):
    code = 5002


def resolve_home(arg: str | None) -> Path:
    """``--home`` if given, else ``$DCENT_HOME``, else ``~/.dcent``."""
    raw = arg or os.environ.get("DCENT_HOME") or str(DEFAULT_HOME)
    return Path(raw).expanduser().resolve()


@dataclass(frozen=True, slots=True)
class HomePaths:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.toml"

    @property
    def genesis(self) -> Path:
        return self.root / "genesis.json"

    @property
    def node_key(self) -> Path:
        return self.root / "keys" / "node_key"

    @property
    def validator_key(self) -> Path:
        return self.root / "keys" / "validator_key"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def chain_db(self) -> Path:
        return self.data / "chain.db"

    @property
    def cookie(self) -> Path:
        return self.data / ".cookie"

    @property
    def rpc_url(self) -> Path:
        return self.data / "rpc.url"


def write_secret(path: Path, content: str) -> None:
    """Create ``path`` holding ``content``, mode 0600 from the first byte (never world-readable,
    even briefly; see :mod:`node.secret_files`). Raises :class:`FileExistsError` if it exists,
    :class:`OSError`."""
    write_secret_file(path, content.encode())


def load_key(path: Path) -> PrivateKey:
    """Load a hex seed key file. Refuses files readable by group or others.

    Raises :class:`KeyFileError`.
    """
    return PrivateKey.from_seed(read_key_seed(path, KeyFileError, what="key file"))


def create_key(path: Path) -> PrivateKey:
    key = PrivateKey.generate()
    write_secret_file(path, key_seed_text(key.seed()))
    return key


DEFAULT_LISTEN = "/ip4/127.0.0.1/tcp/26656"
EXECUTORS = ("bubblewrap", "docker", "podman", "subprocess")
LOG_FORMATS = ("text", "json")
DEFAULT_MONIKER = "dcent-node"


@dataclass(frozen=True, slots=True)
class P2PConfig:
    #: libp2p listen address (TCP; Noise + yamux only).
    listen: str = DEFAULT_LISTEN
    #: Full multiaddrs with /p2p/<peer id> of peers to dial at start and keep reconnecting to.
    bootstrap: tuple[str, ...] = ()
    #: Peer ids (12D3KooW...) whose places in the gossip mesh identities made up by others cannot
    #: take, beside the bootstrap peers: a full mesh still takes their GRAFTs, a trim keeps them
    #: first (CometBFT's persistent peers play this part). List the validators you peer with.
    trusted_peers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RpcConfig:
    #: JSON-RPC 2.0 over HTTP, authenticated by the cookie in <home>/data/.cookie. Port 0 picks a
    #: free port at start; <home>/data/rpc.url then tells clients which.
    addr: str = f"{DEFAULT_RPC_HOST}:{DEFAULT_RPC_PORT}"
    #: Binding a non-loopback address also needs this (or --rpc-allow-remote): the cookie travels
    #: in clear HTTP.
    allow_remote: bool = False

    def __post_init__(self) -> None:
        parse_rpc_bind(self.addr, "rpc.addr")

    @property
    def host(self) -> str:
        return parse_rpc_bind(self.addr, "rpc.addr")[0]

    @property
    def port(self) -> int:
        return parse_rpc_bind(self.addr, "rpc.addr")[1]


@dataclass(frozen=True, slots=True)
class ConsensusSettings(ConsensusConfig):
    """``[consensus]``: the core's own config (timeouts, buffers; it checks them) with the node's
    defaults, plus what the node around the core needs. The node hands this object to the core
    as it is: there is no second copy to keep in step."""

    #: Step timeouts in milliseconds; each grows by timeout_delta_ms every round.
    timeout_propose_ms: int = 1000
    timeout_prevote_ms: int = 500
    timeout_precommit_ms: int = 500
    timeout_delta_ms: int = 250
    #: How often a node re-sends its own messages of the current round (gossip may drop them).
    gossip_interval_ms: int = 1000
    #: Pause after a commit before the next height (the block-time floor).
    timeout_commit_ms: int = 500
    #: Transactions a proposer puts in one block; the mempool's admission control counts in it.
    max_block_txs: int = 5000
    #: A ledger checkpoint is stored every this many blocks; a restart resumes from the newest one
    #: instead of replaying the chain from genesis.
    snapshot_interval: int = 100

    @property
    def assembly_budget_ms(self) -> int:
        """How long a proposer may spend choosing a block's transactions (issue 14): a third of
        the propose timeout, so that a full block, sent and re-executed by every validator, is
        still prevoted for inside the others' propose timeout."""
        return max(1, self.timeout_propose_ms // 3)

    def __post_init__(self) -> None:
        ConsensusConfig.__post_init__(self)
        if not 1 <= self.max_block_txs <= 1_000_000:
            raise ConfigError(f"consensus.max_block_txs: between 1 and 1000000, got {self.max_block_txs}")
        if not 1 <= self.snapshot_interval <= 1_000_000:
            raise ConfigError(
                f"consensus.snapshot_interval: between 1 and 1000000, got {self.snapshot_interval}"
            )


@dataclass(frozen=True, slots=True)
class MarketConfig:
    #: Price this node asks, per GPU-second, when it sells compute (see [pricing] for a moving one).
    price_per_gpu_second: Amount = 1_000_000
    #: Collateral a provider locks per contract, slashed if it fails the job.
    collateral: Amount = 10 * 10**9
    #: bubblewrap (default), docker, podman, or subprocess (development only: no sandbox).
    executor: str = "bubblewrap"
    #: The subprocess executor needs this: jobs then run unconfined, as the node's user.
    allow_unsandboxed: bool = False
    #: Declared GPUs for testnets, e.g. "2xH100-80GB"; marked simulated everywhere they appear.
    simulated_gpus: str = ""
    #: false: sell no GPUs whatever NVML finds (a node not meant to be a provider).
    sell_gpus: bool = True
    #: Capacity announcements: re-sent this often, each valid this long (seconds).
    announce_interval_s: int = 10
    announce_ttl_s: int = 30
    #: Blocks a provider waits for the requester's escrow before releasing the GPUs it sold.
    escrow_wait_blocks: int = 30
    #: Blocks a contract's deadline leaves for delivery and settlement after the run.
    settle_margin_blocks: int = 20
    #: How often a provider re-runs its executor's self-test, in seconds (it sells nothing while
    #: the self-test fails).
    self_test_interval_s: int = 600
    #: The most bytes of inputs by reference (and image archive) a provider fetches for one job;
    #: a request for more is refused (InputsTooLarge 4047).
    max_input_bytes: int = 64 * 2**30
    #: Base units per GiB of inputs by reference, added to the quoted price per GPU-second.
    input_price_per_gib: Amount = 0
    #: Quote in a registered asset instead of DCT (its symbol, e.g. "TUSD"; "" quotes in DCT):
    #: requesters then pay the DCT value of quote_price_per_gpu_second at the DCT/asset pool's
    #: time-weighted price, fixed when the escrow opens, so the asset price holds during a job.
    quote: str = ""
    #: The price per GPU-second in the quote asset's base units (with quote set).
    quote_price_per_gpu_second: int = 0
    #: CA bundle for https inputs ("" : the system's).
    url_ca_file: str = ""
    #: Let https inputs reach loopback and private addresses (tests; a provider's own mirror).
    allow_private_urls: bool = False

    def __post_init__(self) -> None:
        if self.executor not in EXECUTORS:
            raise ConfigError(f"market.executor: one of {', '.join(EXECUTORS)}, got {self.executor!r}")
        if not 10 <= self.self_test_interval_s <= 86_400:
            raise ConfigError(
                f"market.self_test_interval_s: between 10 and 86400 seconds, got {self.self_test_interval_s}"
            )
        if not 0 <= self.max_input_bytes <= 2**40:
            raise ConfigError(f"market.max_input_bytes: between 0 and 2^40 bytes, got {self.max_input_bytes}")
        if self.quote and not is_asset_symbol(self.quote):
            raise ConfigError(
                f"market.quote: an asset's symbol (2 to 10 capitals and digits), got {self.quote!r}"
            )
        if bool(self.quote) != (self.quote_price_per_gpu_second > 0) or not (
            0 <= self.quote_price_per_gpu_second < 2**63
        ):
            raise ConfigError(
                "market.quote_price_per_gpu_second: a positive number of the quote asset's base units "
                f"with market.quote set, 0 without; got {self.quote_price_per_gpu_second}"
            )


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    #: Prometheus metrics at GET /metrics, opt-in: e.g. "127.0.0.1:26660" (loopback only: the
    #: endpoint has no authentication). Empty disables.
    addr: str = ""

    def __post_init__(self) -> None:
        parse_metrics_bind(self.addr, "metrics.addr")


@dataclass(frozen=True, slots=True)
class LogConfig:
    #: "text" or "json" (one object per line).
    format: str = "text"
    #: debug, info, warning or error.
    level: str = "info"

    def __post_init__(self) -> None:
        if self.format not in LOG_FORMATS:
            raise ConfigError(f"log.format: 'text' or 'json', got {self.format!r}")


@dataclass(frozen=True, slots=True)
class NodeConfig:
    moniker: str = DEFAULT_MONIKER
    p2p: P2PConfig = field(default_factory=P2PConfig)
    rpc: RpcConfig = field(default_factory=RpcConfig)
    consensus: ConsensusSettings = field(default_factory=ConsensusSettings)
    market: MarketConfig = field(default_factory=MarketConfig)
    #: ``max_block_txs`` always follows ``consensus.max_block_txs``; the rest is ``[mempool]``.
    mempool: MempoolSettings = field(default_factory=MempoolSettings)
    blobs: BlobSettings = field(default_factory=BlobSettings)
    #: ``[pricing]``: a provider's ask that moves with its utilization (off unless ``floor`` is set).
    pricing: PricingSettings = field(default_factory=PricingSettings)
    #: How the job sandbox enforces limits and builds itself (``[executor]``).
    executor: ExecutorSettings = field(default_factory=ExecutorSettings)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    log: LogConfig = field(default_factory=LogConfig)

    def __post_init__(self) -> None:
        if self.market.quote and self.pricing.enabled:
            # [pricing] moves a DCT ask; a quote in an asset is held steady on purpose.
            raise ConfigError("market.quote: a provider quoting in an asset cannot also set pricing.floor")

    @property
    def metrics_addr(self) -> str:
        return self.metrics.addr

    @property
    def log_format(self) -> str:
        return self.log.format

    @property
    def log_level(self) -> str:
        return self.log.level


#: Every table of config.toml, in the order the file lists them: the whole schema.
TABLES: tuple[str, ...] = tuple(item.name for item in fields(NodeConfig) if item.name != "moniker")
_TABLE_TYPES: dict[str, type] = {
    name: kind for name, kind in get_type_hints(NodeConfig).items() if name in TABLES
}
#: Keys of a table that another table sets (they are not written or read there).
_FOLLOWS = {"mempool": frozenset({"max_block_txs"})}


def parse_rpc_bind(text: str, where: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT``, ``:PORT``) for the RPC. Raises :class:`ConfigError` naming ``where``."""
    try:
        return parse_rpc_addr(text)
    except InvalidBindAddress as exc:
        raise ConfigError(f"{where}: {exc.message}") from None


def check_rpc_bind(rpc: RpcConfig, where: str) -> None:
    """Refuse a non-loopback RPC host unless ``allow_remote``. Raises :class:`ConfigError`."""
    if not rpc.allow_remote and not is_loopback(rpc.host):
        raise ConfigError(
            f"{where}: {rpc.host} is not a loopback address; serving the RPC (and its cookie, in "
            "clear HTTP) to the network needs rpc.allow_remote = true or --rpc-allow-remote"
        )


def parse_metrics_bind(text: str, where: str) -> tuple[str, int] | None:
    """The metrics ``HOST:PORT``, or None for "" (metrics off). Loopback only: the endpoint has
    no authentication. Raises :class:`ConfigError` naming ``where``."""
    if not text:
        return None
    try:
        host, port = parse_rpc_addr(text)
    except InvalidBindAddress:
        raise ConfigError(f"{where}: expected HOST:PORT with a port in 0-65535, got {text!r}") from None
    if not is_loopback(host):
        raise ConfigError(f"{where}: {host} is not a loopback address; metrics are served on loopback only")
    return host, port


def parse_config(text: str) -> NodeConfig:
    """Parse config.toml text. Raises :class:`ConfigError` naming the field."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config.toml: {exc}") from None
    for key in sorted(set(doc) - {"moniker", *TABLES}):
        close = difflib.get_close_matches(key, ["moniker", *TABLES], n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"{key}: unknown setting{hint}")
    moniker = doc.get("moniker", DEFAULT_MONIKER)
    if not isinstance(moniker, str):
        raise ConfigError(f"moniker: expected str, got {moniker!r}")
    if "max_block_txs" in (doc.get("mempool") or {}):
        raise ConfigError("mempool.max_block_txs: set consensus.max_block_txs; the mempool follows it")
    tables: dict[str, object] = {}
    for item in fields(NodeConfig):
        if item.name == "moniker":
            continue
        section = doc.get(item.name, {})
        if not isinstance(section, dict):
            raise ConfigError(f"{item.name}: expected a table")
        fixed = None
        if item.name == "mempool":
            consensus = tables["consensus"]
            assert isinstance(consensus, ConsensusSettings)
            fixed = {"max_block_txs": consensus.max_block_txs}
        tables[item.name] = read_table(section, item.name, _TABLE_TYPES[item.name], fixed=fixed)
    return NodeConfig(moniker=moniker, **tables)  # type: ignore[arg-type]


def render_config(config: NodeConfig, *, header: str = "") -> str:
    """``config`` as config.toml text, every setting with its comment; parses back to ``config``."""
    parts = [header] if header else []
    parts.append(f"moniker = {json.dumps(config.moniker)}\n")
    for name in TABLES:
        parts.append(render_table(name, getattr(config, name), skip=_FOLLOWS.get(name, frozenset())))
    return "\n".join(parts)


#: The file ``dcent init`` writes and configs/node.toml holds (a test keeps the two equal).
TEMPLATE_HEADER = """# dcent node configuration, written by `dcent init` with every setting at its default.
# Each table and key is documented where it is defined (node/config.py and the settings classes
# it names); an unknown or misspelt key is refused with the nearest known name.
"""


def default_config_text() -> str:
    return render_config(NodeConfig(), header=TEMPLATE_HEADER)


def load_config(paths: HomePaths) -> NodeConfig:
    try:
        text = paths.config.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{paths.config}: not found; run `dcent init --home {paths.root}` first") from None
    return parse_config(text)
