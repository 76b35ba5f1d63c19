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
import os
import stat
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import ClassVar, TypeVar

from node.blobs.errors import BlobSettingsError
from node.blobs.settings import BlobSettings
from node.errors import NodeError
from node.executor.errors import InvalidSandboxConfig
from node.executor.settings import ExecutorSettings
from node.market.pricing import PricingSettings, PricingSettingsError  # i16view
from node.rpc.address import DEFAULT_RPC_HOST, DEFAULT_RPC_PORT, is_loopback, parse_rpc_addr
from node.rpc.errors import InvalidBindAddress
from node.services.mempool.errors import MempoolSettingsError
from node.services.mempool.settings import MempoolSettings
from protocol.crypto import PrivateKey
from protocol.units import AmountError, parse_amount

DEFAULT_HOME = Path("~/.dcent")
TEMPLATE = Path(__file__).resolve().parent.parent / "configs" / "node.toml"


class ConfigError(NodeError):
    """A bad config file or home directory: the operator's to fix (codes 5000-5099)."""

    code: ClassVar[int] = 5001


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
    """Create ``path`` with mode 0600 from the start (never world-readable, even briefly)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(content)


def load_key(path: Path) -> PrivateKey:
    """Load a hex seed key file. Refuses files readable by group or others.

    Raises :class:`KeyFileError`.
    """
    try:
        mode = path.stat().st_mode
        text = path.read_text().strip()
    except OSError as exc:
        raise KeyFileError(f"{path}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(f"{path}: key file is accessible by other users; run: chmod 600 {path}")
    try:
        return PrivateKey.from_seed(bytes.fromhex(text))
    except ValueError:
        raise KeyFileError(f"{path}: not a hex-encoded 32-byte key seed") from None


def create_key(path: Path) -> PrivateKey:
    key = PrivateKey.generate()
    write_secret(path, key.seed().hex() + "\n")
    return key


DEFAULT_LISTEN = "/ip4/127.0.0.1/tcp/26656"


@dataclass(frozen=True, slots=True)
class P2PConfig:
    listen: str = DEFAULT_LISTEN
    bootstrap: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RpcConfig:
    host: str = DEFAULT_RPC_HOST
    #: 0 picks a free port at start; ``<home>/data/rpc.url`` then tells clients which.
    port: int = DEFAULT_RPC_PORT
    #: Binding a non-loopback host needs this: the cookie travels in clear HTTP.
    allow_remote: bool = False


@dataclass(frozen=True, slots=True)
class ConsensusConfig:
    timeout_propose_ms: int = 1000
    timeout_prevote_ms: int = 500
    timeout_precommit_ms: int = 500
    #: Added to each step's timeout every round, so rounds grow until a quorum meets.
    timeout_delta_ms: int = 250
    #: How often a node re-sends its own messages of the current round (lossy gossip).
    gossip_interval_ms: int = 1000
    #: Pause after a commit before starting the next height: the block-time floor.
    timeout_commit_ms: int = 500
    max_block_txs: int = 5000
    #: Store a ledger checkpoint every this many blocks; restarts resume from the newest.
    snapshot_interval: int = 100


@dataclass(frozen=True, slots=True)
class MarketConfig:
    price_per_gpu_second: int = 1_000_000
    collateral: int = 10 * 10**9
    executor: str = "bubblewrap"
    allow_unsandboxed: bool = False
    simulated_gpus: str = ""
    #: False: this node sells no GPUs, whatever NVML finds (a testnet node on a GPU host that is
    #: not meant to be a provider, or an operator keeping the GPUs for itself).
    sell_gpus: bool = True
    announce_interval_s: int = 10
    announce_ttl_s: int = 30
    #: Blocks a provider waits for the requester's escrow before releasing the GPUs it sold.
    escrow_wait_blocks: int = 30
    #: Blocks a contract's deadline leaves for delivery and settlement after the run.
    settle_margin_blocks: int = 20
    #: How often a provider re-runs its executor's self-test (it sells nothing while it fails).
    self_test_interval_s: int = 600
    #: The most bytes of inputs by reference (and image archive) a provider fetches for one job;
    #: a request for more is refused (InputsTooLarge 4047).
    max_input_bytes: int = 64 * 2**30
    #: Base units per GiB of inputs by reference, added to the quoted price per GPU-second.
    input_price_per_gib: int = 0
    #: CA bundle for https inputs ("" : the system's).
    url_ca_file: str = ""
    #: Let https inputs reach loopback and private addresses (tests; a provider's own mirror).
    allow_private_urls: bool = False


@dataclass(frozen=True, slots=True)
class NodeConfig:
    moniker: str = "dcent-node"
    p2p: P2PConfig = field(default_factory=P2PConfig)
    rpc: RpcConfig = field(default_factory=RpcConfig)
    consensus: ConsensusConfig = field(default_factory=ConsensusConfig)
    market: MarketConfig = field(default_factory=MarketConfig)
    #: ``max_block_txs`` always follows ``consensus.max_block_txs``; the rest is ``[mempool]``.
    mempool: MempoolSettings = field(default_factory=MempoolSettings)
    blobs: BlobSettings = field(default_factory=BlobSettings)
    #: ``[pricing]``: a provider's ask that moves with its utilization (off unless ``floor`` is set).
    pricing: PricingSettings = field(default_factory=PricingSettings)
    #: How the job sandbox enforces limits and builds itself (``[executor]``).
    executor: ExecutorSettings = field(default_factory=ExecutorSettings)
    #: ``HOST:PORT`` (loopback only) serving Prometheus metrics at ``GET /metrics``; "" for none.
    metrics_addr: str = ""
    log_format: str = "text"
    log_level: str = "info"


EXECUTORS = ("bubblewrap", "docker", "podman", "subprocess")


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


#: The keys each table accepts (besides the dataclass-backed ones, which take their fields). A
#: misspelt key is refused rather than silently ignored: ``escrow_wiat_blocks = 5`` would otherwise
#: leave the default in force with the operator none the wiser.
_TABLE_KEYS: dict[str, frozenset[str]] = {
    "p2p": frozenset({"listen", "bootstrap"}),
    "rpc": frozenset({"addr", "allow_remote"}),
    "metrics": frozenset({"addr"}),
    "log": frozenset({"format", "level"}),
    "consensus": frozenset(ConsensusConfig.__slots__),
    "market": frozenset(MarketConfig.__slots__),
    "mempool": frozenset(MempoolSettings.__slots__) - {"max_block_txs"},
    "blobs": frozenset(BlobSettings.__slots__),
    "pricing": frozenset(PricingSettings.__slots__),
    "executor": frozenset(ExecutorSettings.__slots__),
}


def _section(doc: dict[str, object], name: str) -> dict[str, object]:
    value = doc.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{name}: expected a table")
    known = _TABLE_KEYS.get(name)
    if known is not None:
        for key in sorted(set(value) - known):
            if name == "mempool" and key == "max_block_txs":
                raise ConfigError(
                    "mempool.max_block_txs: set consensus.max_block_txs; the mempool follows it"
                )
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"{name}.{key}: unknown setting{hint}")
    return value


_T = TypeVar("_T")


def _settings_table(doc: dict[str, object], name: str, cls: type[_T], **fixed: object) -> _T:
    """A frozen settings dataclass from table ``name``: each field typed by its annotation (int,
    float, bool or str), the class's own range checks wrapped as :class:`ConfigError`."""
    section = _section(doc, name)
    values: dict[str, object] = dict(fixed)
    for item in fields(cls):  # type: ignore[arg-type]
        if item.name in fixed or item.name not in section:
            continue
        value = section[item.name]
        kind = str(item.type)
        if kind == "float" and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        expected = {"int": int, "float": float, "bool": bool, "str": str}[kind]
        if isinstance(value, bool) is not (expected is bool) or not isinstance(value, expected):
            raise ConfigError(f"{name}.{item.name}: expected {kind}, got {value!r}")
        values[item.name] = value
    try:
        return cls(**values)
    except (MempoolSettingsError, BlobSettingsError, PricingSettingsError) as exc:
        raise ConfigError(exc.message) from None


def _typed(section: dict[str, object], name: str, key: str, kind: type, default: object) -> object:
    value = section.get(key, default)
    if kind is int and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ConfigError(f"{name}.{key}: expected a non-negative integer, got {value!r}")
    if kind is not int and not isinstance(value, kind):
        raise ConfigError(f"{name}.{key}: expected {kind.__name__}, got {value!r}")
    return value


def _amount(section: dict[str, object], name: str, key: str, default: int) -> int:
    value = section.get(key, default)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        try:
            return parse_amount(value)
        except AmountError as exc:
            raise ConfigError(f"{name}.{key}: {exc.message}") from None
    raise ConfigError(f'{name}.{key}: expected an amount such as "0.001 DCT", got {value!r}')


def _executor_settings(doc: dict[str, object]) -> ExecutorSettings:
    """``[executor]``: ``disk_backend``, ``cgroups``, ``probe_dir``, ``extra_ro_binds``,
    ``podman_runtime``, ``podman_nofile``, ``podman_nproc``, ``container_image`` (see
    :class:`ExecutorSettings`). Raises :class:`ConfigError` naming the field."""
    section = _section(doc, "executor")
    defaults = ExecutorSettings()
    binds = section.get("extra_ro_binds", [])
    if not isinstance(binds, list) or not all(isinstance(item, str) for item in binds):
        raise ConfigError("executor.extra_ro_binds: expected a list of absolute paths")
    probe_dir = _typed(section, "executor", "probe_dir", str, "")
    try:
        return ExecutorSettings(
            disk_backend=str(_typed(section, "executor", "disk_backend", str, defaults.disk_backend)),
            cgroups=bool(_typed(section, "executor", "cgroups", bool, defaults.cgroups)),
            probe_dir=Path(str(probe_dir)) if probe_dir else None,
            extra_ro_binds=tuple(binds),
            podman_runtime=str(_typed(section, "executor", "podman_runtime", str, defaults.podman_runtime)),
            podman_nofile=_typed(section, "executor", "podman_nofile", int, defaults.podman_nofile),  # type: ignore[arg-type]
            podman_nproc=_typed(section, "executor", "podman_nproc", int, defaults.podman_nproc),  # type: ignore[arg-type]
            container_image=str(_typed(section, "executor", "container_image", str, "")),
        )
    except InvalidSandboxConfig as exc:
        raise ConfigError(exc.message) from None


def _input_bytes(market: dict[str, object]) -> int:
    value = _typed(market, "market", "max_input_bytes", int, 64 * 2**30)
    if not isinstance(value, int) or not 0 <= value <= 2**40:
        raise ConfigError(f"market.max_input_bytes: between 0 and 2^40 bytes, got {value}")
    return value


def _self_test_interval(market: dict[str, object]) -> int:
    value: int = _typed(market, "market", "self_test_interval_s", int, 600)  # type: ignore[assignment]
    if not 10 <= value <= 86_400:
        raise ConfigError(f"market.self_test_interval_s: between 10 and 86400 seconds, got {value}")
    return value


def parse_config(text: str) -> NodeConfig:
    """Parse config.toml text. Raises :class:`ConfigError` naming the field."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config.toml: {exc}") from None
    known = {"moniker", "p2p", "rpc", "consensus", "market", "metrics", "log", "mempool", "blobs", "executor"}
    known.add("pricing")  # i16view
    for key in sorted(doc):
        if key not in known:
            raise ConfigError(f"{key}: unknown setting")
    p2p = _section(doc, "p2p")
    bootstrap = p2p.get("bootstrap", [])
    if not isinstance(bootstrap, list) or not all(isinstance(b, str) for b in bootstrap):
        raise ConfigError("p2p.bootstrap: expected a list of multiaddr strings")
    rpc = _section(doc, "rpc")
    default_addr = f"{DEFAULT_RPC_HOST}:{DEFAULT_RPC_PORT}"
    host, port = parse_rpc_bind(str(_typed(rpc, "rpc", "addr", str, default_addr)), "rpc.addr")
    metrics_addr = str(_typed(_section(doc, "metrics"), "metrics", "addr", str, ""))
    parse_metrics_bind(metrics_addr, "metrics.addr")
    consensus = _section(doc, "consensus")
    defaults = ConsensusConfig()
    consensus_values = {
        key: _typed(consensus, "consensus", key, int, getattr(defaults, key))
        for key in ConsensusConfig.__slots__
    }
    market = _section(doc, "market")
    executor = _typed(market, "market", "executor", str, "bubblewrap")
    if executor not in EXECUTORS:
        raise ConfigError(f"market.executor: one of {', '.join(EXECUTORS)}, got {executor!r}")
    log = _section(doc, "log")
    log_format = _typed(log, "log", "format", str, "text")
    if log_format not in ("text", "json"):
        raise ConfigError(f"log.format: 'text' or 'json', got {log_format!r}")
    return NodeConfig(
        moniker=str(_typed(doc, "config", "moniker", str, "dcent-node")),
        p2p=P2PConfig(str(_typed(p2p, "p2p", "listen", str, DEFAULT_LISTEN)), tuple(bootstrap)),
        rpc=RpcConfig(host, port, bool(_typed(rpc, "rpc", "allow_remote", bool, False))),
        consensus=ConsensusConfig(**consensus_values),  # type: ignore[arg-type]
        market=MarketConfig(
            price_per_gpu_second=_amount(market, "market", "price_per_gpu_second", 1_000_000),
            collateral=_amount(market, "market", "collateral", 10 * 10**9),
            executor=str(executor),
            allow_unsandboxed=bool(_typed(market, "market", "allow_unsandboxed", bool, False)),
            simulated_gpus=str(_typed(market, "market", "simulated_gpus", str, "")),
            sell_gpus=bool(_typed(market, "market", "sell_gpus", bool, True)),
            announce_interval_s=int(_typed(market, "market", "announce_interval_s", int, 10)),  # type: ignore[call-overload]
            announce_ttl_s=int(_typed(market, "market", "announce_ttl_s", int, 30)),  # type: ignore[call-overload]
            escrow_wait_blocks=int(_typed(market, "market", "escrow_wait_blocks", int, 30)),  # type: ignore[call-overload]
            settle_margin_blocks=int(_typed(market, "market", "settle_margin_blocks", int, 20)),  # type: ignore[call-overload]
            self_test_interval_s=_self_test_interval(market),
            max_input_bytes=_input_bytes(market),
            input_price_per_gib=_amount(market, "market", "input_price_per_gib", 0),
            url_ca_file=str(_typed(market, "market", "url_ca_file", str, "")),
            allow_private_urls=bool(_typed(market, "market", "allow_private_urls", bool, False)),
        ),
        mempool=_settings_table(
            doc, "mempool", MempoolSettings, max_block_txs=consensus_values["max_block_txs"]
        ),
        blobs=_settings_table(doc, "blobs", BlobSettings),
        pricing=_settings_table(doc, "pricing", PricingSettings),
        executor=_executor_settings(doc),
        metrics_addr=metrics_addr,
        log_format=str(log_format),
        log_level=str(_typed(log, "log", "level", str, "info")),
    )


def load_config(paths: HomePaths) -> NodeConfig:
    try:
        text = paths.config.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{paths.config}: not found; run `dcent init --home {paths.root}` first") from None
    return parse_config(text)
