"""The node: one trio service that opens the store, replays the chain, joins the network and
runs consensus. `dcent node run` is this service plus signal handling.

Start-up order matters: the store is opened and bound to the genesis before anything listens; the
ledger is replayed from genesis through every stored block (each block's certificate and state
hash are checked again, so a tampered database is refused rather than served); only then does the
host start and consensus resume from the persisted signer state, syncing whatever it missed.
Each service is built once, in ``run``, and the running set is frozen into a
:class:`~node.services.wiring.NodeServices` with no optional member; the JSON-RPC server (and the
metrics endpoint, when configured) start last, from that set, so every method finds the services
it reads already running. They see it only through the narrow views of :mod:`node.rpc.views`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import trio

from gpu.nvml import probe_async
from gpu.simulated import simulated_report
from node.blobs.service import BlobService
from node.config import HomePaths, NodeConfig, P2PConfig, load_key, parse_metrics_bind
from node.errors import NodeError
from node.executor.select import select_executor
from node.executor.selftest import SelfTestService
from node.host import P2PHost
from node.market.pricing import start_pricing
from node.market.readiness import ProviderReadiness
from node.market.service import MarketService
from node.market.txlane import TxLane
from node.metrics import MetricsServer, collect_node_metrics
from node.p2p.host_config import HostConfig
from node.p2p.interface import Host
from node.rpc.node_table import build_node_table
from node.rpc.protocol import Dispatcher
from node.rpc.server import RpcServer
from node.services.availability import AvailabilityResponder
from node.services.capacity import CapacityService
from node.services.consensus_driver import SIGN_STATE_KEY, ConsensusDriver, assembly_timer, wall_clock_ms
from node.services.economics_recorder import RecordingLedgerApp
from node.services.mempool import Mempool
from node.services.wiring import NodeIdentity, NodeServices, OperatorEndpoints
from node.store import ChainStore, CorruptStore
from protocol.consensus.checkpoint import Checkpoint, CheckpointError
from protocol.consensus.core import ConsensusCore
from protocol.consensus.errors import InvalidMessage
from protocol.consensus.ledger_app import LedgerApp
from protocol.consensus.messages import Block, CommitCertificate, SignState
from protocol.crypto import PrivateKey, address_of
from protocol.encoding import DecodeError
from protocol.hardware import ProbeReport
from protocol.ledger.genesis import Genesis, genesis_state
from protocol.ledger.quoted import current_quote_twap
from protocol.ledger.staking import bonded_by  # i12ledger: an account's stake is what it delegated
from protocol.ledger.tx import Tx

if TYPE_CHECKING:
    from trio_typing import TaskStatus

log = logging.getLogger("dcent.node")


class _CoreRound:
    """The consensus core's current round, which the proposer's assembly budget halves by: the
    ledger app is built (replayed) before the core that drives it, so the core is attached once
    it exists, and until then the round is 0."""

    def __init__(self) -> None:
        self.core: ConsensusCore | None = None

    def __call__(self) -> int:
        return self.core.round if self.core is not None else 0


class NodeNotStarted(RuntimeError):
    """A running node's service was asked of a node that has not started (or failed to)."""


@dataclass(frozen=True, slots=True)
class NodeStatus:
    height: int
    state_hash: bytes
    peer_id: str
    listen_addrs: tuple[str, ...]
    peers: int


class Node:
    """A dcent node over a home directory. Start with ``await nursery.start(node.run)``."""

    def __init__(self, paths: HomePaths, config: NodeConfig) -> None:
        self.paths = paths
        self.config = config
        self.genesis = Genesis.from_text(paths.genesis.read_text(), fmt="json")
        self.validator_key = load_key(paths.validator_key)
        self.node_key = load_key(paths.node_key)
        self.mempool = Mempool(config.mempool)
        self._core_round = _CoreRound()
        self.host: Host = P2PHost(
            HostConfig(
                node_key_seed=self.node_key.seed(),
                listen_addr=config.p2p.listen,
                bootstrap=config.p2p.bootstrap,
                trusted_peers=config.p2p.trusted_peers,
            )
        )
        # The sandbox jobs run in, and its self-test: a provider sells only while it passes.
        market = config.market
        self.executor = select_executor(
            market.executor, allow_unsandboxed=market.allow_unsandboxed, settings=config.executor
        )
        self.selftest = (
            SelfTestService(
                self.executor,
                paths.data / "jobs" / "selftest",
                interval_s=market.self_test_interval_s,
                image=config.executor.container_image,
            )
            if market.sell_gpus
            else None
        )
        self.readiness = ProviderReadiness(self.selftest, paths.data / "jobs")
        # The blob store (<home>/data/blobs), bounded by config [blobs].
        self.blobs = BlobService(
            host=self.host,
            root=paths.data / "blobs",
            settings=config.blobs,
            protected=(paths.root / "keys", paths.cookie, paths.config),
        )
        # Set once, when run has started every service (and the endpoints); never unset.
        self._services: NodeServices | None = None
        self._endpoints: OperatorEndpoints | None = None
        self._running = trio.Event()
        #: The checkpoint height the last start resumed from (0: replayed from genesis).
        self.resumed_from = 0

    # --- service ---------------------------------------------------------------------------
    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        store = await trio.to_thread.run_sync(ChainStore.open, self.paths.chain_db)
        try:
            await trio.to_thread.run_sync(
                store.bind_chain, self.genesis.chain_id, self.genesis.genesis_hash()
            )
            app = await trio.to_thread.run_sync(self._replay, store)
            saved = store.consensus().get(SIGN_STATE_KEY)
            core = ConsensusCore(
                app,
                key=self.validator_key,
                config=self.config.consensus,
                sign_state=SignState.decode(saved) if saved else None,
                verifier=app.verifier,
            )
            self._core_round.core = core
            # The blob store outlives every service (the nursery exits first): a job unwinding
            # at shutdown still finds it open.
            async with self.blobs.opened(), trio.open_nursery() as nursery:
                await nursery.start(self.host.run)
                driver = ConsensusDriver(
                    core=core,
                    app=app,
                    store=store,
                    host=self.host,
                    mempool=self.mempool,
                    clock_ms=wall_clock_ms,
                    snapshot_interval=self.config.consensus.snapshot_interval,
                )
                await nursery.start(driver.run)
                market = self.config.market
                if self.selftest is not None:
                    await nursery.start(self.selftest.run)
                key = self.validator_key
                capacity = CapacityService(
                    chain_id=self.genesis.chain_id,
                    key=key,
                    host=self.host,
                    probe=self._probe_gpus,
                    price_per_gpu_second=market.price_per_gpu_second,
                    collateral=market.collateral,
                    stake=lambda: bonded_by(app.state, key.address.raw),
                    stake_of=lambda provider: bonded_by(app.state, address_of(provider)),
                    executors=(market.executor,),
                    clock_ms=wall_clock_ms,
                    interval_s=market.announce_interval_s,
                    ttl_s=market.announce_ttl_s,
                    busy=lambda: jobs.busy_gpu_uuids(),
                    limits=self.readiness.offered_limits,
                    quote=market.quote,
                    quote_price_per_gpu_second=market.quote_price_per_gpu_second,
                    twap_of=lambda symbol: current_quote_twap(app.state, symbol),
                )
                # Built before the capacity service starts: its announcements count the GPU
                # units the job service has allocated.
                jobs = self._job_service(app, store, driver, capacity)
                await nursery.start(capacity.run)
                await nursery.start(self.readiness.run, capacity.announce_now)
                # Before the job service: its jobs fetch inputs and store outputs through it.
                await nursery.start(self.blobs.run)
                await nursery.start(jobs.run)
                # i17: answer availability challenges of the standing offers this node serves.
                availability = AvailabilityResponder(
                    key=key,
                    app=app,
                    submit=jobs.ctx.lane.submit,
                    height=lambda: driver.height,
                    wait_for_height=driver.wait_for_height,
                )
                await nursery.start(availability.run)
                if self.config.pricing.enabled:  # i16view: an ask that moves with utilization
                    await start_pricing(
                        nursery,
                        self.config.pricing,
                        capacity=capacity,
                        market=jobs,
                        store=store,
                        height=lambda: driver.height,
                    )
                services = NodeServices(
                    identity=self._identity(key),
                    store=store,
                    app=app,
                    host=self.host,
                    mempool=self.mempool,
                    driver=driver,
                    readiness=self.readiness,
                    capacity=capacity,
                    blobs=self.blobs,
                    market=jobs,
                    availability=availability,
                )
                self._services = services
                self._endpoints = await self._start_operator_endpoints(nursery, services)
                log.info(
                    "node %s up at height %d, listening on %s",
                    self.config.moniker,
                    app.height,
                    ", ".join(self.host.listen_addrs),
                )
                warning = untrusting_validator_warning(
                    self.config.p2p, bonded_by(app.state, self.validator_key.address.raw)
                )
                if warning is not None:
                    log.warning("%s", warning)
                self._running.set()
                task_status.started()
        finally:
            # Shielded: a cancelled node (Ctrl-C, the test's nursery) still closes its database;
            # unshielded, the await raised Cancelled before the close ran.
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(store.close)

    def _identity(self, key: PrivateKey) -> NodeIdentity:
        market = self.config.market
        return NodeIdentity(
            moniker=self.config.moniker,
            genesis=self.genesis,
            key=key,
            executor=market.executor,
            simulated_gpus=bool(market.simulated_gpus),
        )

    def _job_service(
        self, app: LedgerApp, store: ChainStore, driver: ConsensusDriver, capacity: CapacityService
    ) -> MarketService:
        market = self.config.market
        lane = TxLane(
            key=self.validator_key,
            app=app,
            mempool=self.mempool,
            relay=driver.relay_txs,
            height=lambda: driver.height,
            wait_for_height=driver.wait_for_height,
        )
        return MarketService(
            key=self.validator_key,
            chain_id=self.genesis.chain_id,
            host=self.host,
            app=app,
            lane=lane,
            store=store,
            executor=self.executor,
            capacity=capacity.entries,
            probe_report=lambda: capacity.last_report,
            clock_ms=wall_clock_ms,
            feed=driver.feed,
            jobs_dir=self.paths.data / "jobs",
            block_ms_floor=self.config.consensus.timeout_commit_ms,
            price_per_gpu_second=market.price_per_gpu_second,
            collateral=market.collateral,
            escrow_wait_blocks=market.escrow_wait_blocks,
            settle_margin_blocks=market.settle_margin_blocks,
            readiness=self.readiness,
            blobs=self.blobs,
            max_input_bytes=market.max_input_bytes,
            input_price_per_gib=market.input_price_per_gib,
            url_ca_file=market.url_ca_file,
            allow_private_urls=market.allow_private_urls,
            quote=market.quote,
            quote_price_per_gpu_second=market.quote_price_per_gpu_second,
        )

    async def _start_operator_endpoints(
        self, nursery: trio.Nursery, services: NodeServices
    ) -> OperatorEndpoints:
        """The JSON-RPC server (cookie and rpc.url under data/, removed at exit) and, when
        configured, the metrics endpoint, both over ``services``. Raises RpcBindError /
        MetricsBindError."""
        rpc = self.config.rpc
        server: RpcServer | None = None

        def rpc_url() -> str:
            # node_info is served only once the server listens, so its URL is known by then.
            return server.url if server is not None else ""

        server = RpcServer(
            Dispatcher(build_node_table(services, rpc_url), domain_errors=(NodeError,)),
            home=self.paths.root,
            host=rpc.host,
            port=rpc.port,
            allow_remote=rpc.allow_remote,
            url_path=self.paths.rpc_url,
        )
        url: str = await nursery.start(server.run)
        metrics = parse_metrics_bind(self.config.metrics_addr, "metrics.addr")
        if metrics is None:
            return OperatorEndpoints(rpc_url=url, metrics_url=None)
        exporter = MetricsServer(partial(collect_node_metrics, services), host=metrics[0], port=metrics[1])
        return OperatorEndpoints(rpc_url=url, metrics_url=await nursery.start(exporter.run))

    def _replay(self, store: ChainStore) -> RecordingLedgerApp:
        """The ledger at the stored head: resumed from the newest checkpoint when one is usable,
        else from genesis, re-verifying every block replayed on the way."""
        options = {
            "genesis_hash": self.genesis.genesis_hash(),
            "tx_source": lambda: self.mempool.reap(self.config.consensus.max_block_txs),
            "tx_verified": self.mempool.was_verified,
            "max_txs": self.config.consensus.max_block_txs,
            "assembly_timer": assembly_timer(  # i14over
                self.config.consensus.assembly_budget_ms,
                self._core_round,
            ),
            "tx_decoded": self.mempool.decoded,  # i14over
        }
        # Blocks stored before economics records existed get theirs now (i16view); that needs
        # the state before each such block, so a checkpoint above the first one is not used.
        unrecorded = store.first_block_without_economics()
        app = self._resume_from_checkpoint(store, options, below=unrecorded)
        if app is None:
            app = RecordingLedgerApp(genesis_state(self.genesis), **options)
        start = app.height
        head = store.head()
        backfill: list[tuple[int, bytes]] = []
        for height in range(app.height + 1, (head.height if head else 0) + 1):
            stored = store.block(height)
            if stored is None:
                raise CorruptStore(f"block {height} is missing below the stored head")
            try:
                state_hash = app.commit(
                    Block.decode(stored.block), CommitCertificate.decode(stored.certificate)
                )
            except InvalidMessage as exc:
                raise CorruptStore(f"stored block {height} does not verify: {exc.message}") from None
            if state_hash != stored.state_hash:
                raise CorruptStore(f"replaying block {height} gives another state hash than stored")
            record = app.take_record(height)
            if unrecorded is not None and height >= unrecorded and record is not None:
                backfill.append((height, record))
            if len(backfill) >= 1000:
                store.put_economics(backfill)
                backfill = []
        if backfill:
            store.put_economics(backfill)
        if head is not None:
            log.info(
                "ledger at height %d: resumed at %d, replayed %d blocks",
                head.height,
                start,
                head.height - start,
            )
        return app

    def _resume_from_checkpoint(
        self, store: ChainStore, options: dict[str, object], *, below: int | None = None
    ) -> RecordingLedgerApp | None:
        """The application at the newest usable checkpoint, if it is below height ``below``."""
        latest = store.latest_snapshot()
        if latest is None:
            return None
        height, state_hash, blob = latest
        if below is not None and height >= below:
            return None
        stored = store.block(height)
        try:
            checkpoint = Checkpoint.decode(blob)
            if stored is None or stored.hash != checkpoint.last_hash or stored.state_hash != state_hash:
                raise CheckpointError("checkpoint does not match the stored block of its height")
            app = RecordingLedgerApp.resume(checkpoint, **options)  # type: ignore[arg-type]
            assert isinstance(app, RecordingLedgerApp)  # resume builds ``cls``
        except (DecodeError, CheckpointError) as exc:
            log.warning("checkpoint at height %d unusable (%s); replaying from genesis", height, exc)
            return None
        self.resumed_from = height
        return app

    async def _probe_gpus(self) -> ProbeReport:
        """Declared (simulated) GPUs when configured, so testnet nodes sharing one machine never
        all sell its real GPUs; otherwise what NVML sees."""
        if not self.config.market.sell_gpus:
            return ProbeReport((), "", 0, False, "market.sell_gpus is false: this node sells no GPUs")
        spec = self.config.market.simulated_gpus
        if spec:
            return simulated_report(spec, self.validator_key.address.raw.hex()[:12])
        return await probe_async()

    # --- what tests and the CLI ask ------------------------------------------------------
    @property
    def services(self) -> NodeServices:
        """The running services. Raises :class:`NodeNotStarted` before ``run`` has started them."""
        if self._services is None:
            raise NodeNotStarted("the node is not running")
        return self._services

    @property
    def endpoints(self) -> OperatorEndpoints:
        """Where the operator reaches the node. Raises :class:`NodeNotStarted` before it started."""
        if self._endpoints is None:
            raise NodeNotStarted("the node is not running")
        return self._endpoints

    # Shorthands for the tests, benches and CLI that drive a node directly (production code
    # reads NodeServices through the views of node/rpc/views.py). Each raises NodeNotStarted
    # before the node started, as ``services`` does.
    @property
    def store(self) -> ChainStore:
        return self.services.store

    @property
    def app(self) -> RecordingLedgerApp:
        return self.services.app

    @property
    def driver(self) -> ConsensusDriver:
        return self.services.driver

    @property
    def capacity(self) -> CapacityService:
        return self.services.capacity

    @property
    def market(self) -> MarketService:
        return self.services.market

    @property
    def availability(self) -> AvailabilityResponder:
        return self.services.availability

    @property
    def rpc_url(self) -> str:
        """Where the RPC listens (port 0 resolved), as ``<home>/data/rpc.url`` says."""
        return self.endpoints.rpc_url

    @property
    def metrics_url(self) -> str | None:
        """``http://HOST:PORT/metrics``; None when no metrics endpoint is configured."""
        return self.endpoints.metrics_url

    def status(self) -> NodeStatus:
        services = self.services
        return NodeStatus(
            height=services.driver.height,
            state_hash=services.app.state.state_hash(),
            peer_id=self.host.peer_id,
            listen_addrs=tuple(self.host.listen_addrs),
            peers=len(self.host.peers()),
        )

    @property
    def started(self) -> bool:
        """Whether the node finished starting (what stops it after that is a fault, not a
        start failure)."""
        return self._running.is_set()

    async def wait_for_height(self, height: int) -> None:
        await self._running.wait()
        await self.services.driver.wait_for_height(height)

    async def submit_tx(self, raw: bytes) -> Tx:
        """Admit a signed transaction locally and relay it to peers. Raises the ledger or
        mempool error that refuses it."""
        return await self.services.submit_tx(raw)


def untrusting_validator_warning(p2p: P2PConfig, bonded: int) -> str | None:
    """The warning for a node with bonded stake and no ``p2p.trusted_peers`` (node/p2p/mesh_quota.py)."""
    if bonded <= 0 or p2p.trusted_peers:
        return None
    trusts = "only its bootstrap peers" if p2p.bootstrap else "no peer"
    return (
        f"this validator trusts {trusts} (p2p.trusted_peers is empty): identities made up by anyone "
        "who connects can take the other places in its gossip mesh, and after a restart all of them; "
        "list the validators it peers with in p2p.trusted_peers, and have them list it"
    )
