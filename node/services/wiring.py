"""The services a running node is made of, wired once by :meth:`node.daemon.Node.run`.

:class:`NodeServices` holds every running service, none of them optional: it exists only once
the store is open, the ledger replayed and each service started, so nothing that holds one checks
for a service "not started yet". The operator endpoints (the JSON-RPC methods, the metrics
endpoint) never see it whole: each reads a narrow protocol of what it needs
(:mod:`node.rpc.views`), which this class satisfies structurally, so neither imports the daemon.
"""

from __future__ import annotations

from dataclasses import dataclass

from node.blobs.service import BlobService
from node.market.readiness import ProviderReadiness
from node.market.service import MarketService
from node.p2p.interface import Host
from node.services.availability import AvailabilityResponder
from node.services.capacity import CapacityService
from node.services.consensus_driver import ConsensusDriver
from node.services.economics_recorder import RecordingLedgerApp
from node.services.mempool import Mempool
from node.store import ChainStore
from protocol.crypto import PrivateKey
from protocol.ledger.genesis import Genesis
from protocol.ledger.tx import Tx


@dataclass(frozen=True, slots=True)
class NodeIdentity:
    """Who the node is and what it declares selling, as its operator configured it."""

    moniker: str
    genesis: Genesis
    #: The node's account and validator key (it signs its transactions, votes and offers).
    key: PrivateKey
    #: The sandbox jobs run in (``market.executor``).
    executor: str
    #: Whether the GPUs it sells are declared (``market.simulated_gpus``) rather than probed.
    simulated_gpus: bool

    def __post_init__(self) -> None:
        if not self.moniker:
            raise ValueError("a node identity needs a moniker")
        if not self.executor:
            raise ValueError("a node identity needs an executor name")

    @property
    def chain_id(self) -> str:
        return self.genesis.chain_id


@dataclass(frozen=True, slots=True)
class NodeServices:
    """Every service of a running node, started in this order by ``Node.run``: the store and the
    replayed ledger, the host, consensus, the sandbox's readiness, the capacity table, the blob
    store, the job market and the availability responder."""

    identity: NodeIdentity
    store: ChainStore
    app: RecordingLedgerApp
    host: Host
    mempool: Mempool
    driver: ConsensusDriver
    readiness: ProviderReadiness
    capacity: CapacityService
    blobs: BlobService
    market: MarketService
    availability: AvailabilityResponder

    async def submit_tx(self, raw: bytes) -> Tx:
        """Admit a signed transaction locally and relay it to peers. Raises the ledger's or the
        mempool's error that refuses it."""
        tx = self.mempool.add(raw, self.app.state)
        await self.driver.relay_txs([raw])
        return tx


@dataclass(frozen=True, slots=True)
class OperatorEndpoints:
    """Where the node's operator reaches it once it runs."""

    #: The JSON-RPC server's URL (port 0 resolved), as ``<home>/data/rpc.url`` says.
    rpc_url: str
    #: ``http://HOST:PORT/metrics``; None when ``metrics.addr`` is not configured (the endpoint
    #: is opt-in), the one optional part of a running node.
    metrics_url: str | None
