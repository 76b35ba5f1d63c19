"""What the operator endpoints may read of a running node: one narrow protocol per reader.

The JSON-RPC handlers and the metrics endpoint never hold the node. Each takes the protocol
below that names exactly the services and members it reads; the node's
:class:`~node.services.wiring.NodeServices` satisfies every one of them structurally (mypy checks
it where the daemon hands it over), and a test can hand a handler a small fake instead. Members
are read-only properties, so a frozen record of running services satisfies them and no reader
can swap a service out.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Protocol

from node.blobs.settings import BlobSettings
from node.blobs.store import BlobInfo, GcReport
from node.market.readiness import Readiness
from node.market.records import JobRecord
from node.p2p.guard import PeerGuard
from node.p2p.interface import PeerInfo
from node.services.wiring import NodeIdentity
from node.store import Head, IndexedTx, StoredBlock
from node.tx_history import ContractInfo
from protocol.hardware import ProbeReport
from protocol.ledger.state import LedgerState
from protocol.ledger.tx import Tx
from protocol.market.capacity import CapacityAnnouncement
from protocol.market.jobspec import JobSpec

# --- the services, as read --------------------------------------------------------------------


class CommittedLedger(Protocol):
    """The ledger application: its committed state (replaced whole on the trio thread)."""

    @property
    def state(self) -> LedgerState: ...


class ChainProgress(Protocol):
    """Consensus: the last height committed and stored."""

    @property
    def height(self) -> int: ...


class ConsensusProgress(ChainProgress, Protocol):
    """Consensus, as the metrics read it: its height and the core's survived faults."""

    @property
    def core_faults(self) -> int: ...


class PeerView(Protocol):
    """The p2p host: who it is, where it listens, its peers and their standing."""

    @property
    def peer_id(self) -> str: ...

    @property
    def listen_addrs(self) -> list[str]: ...

    @property
    def guard(self) -> PeerGuard: ...

    def peers(self) -> list[PeerInfo]: ...


class CapacityEntries(Protocol):
    """The capacity table: the verified announcements this node holds."""

    def entries(self) -> list[CapacityAnnouncement]: ...


class CapacityView(CapacityEntries, Protocol):
    """The capacity service: the table, this node's last probe, and a fresh probe."""

    @property
    def last_report(self) -> ProbeReport | None: ...

    @property
    def probe(self) -> Callable[[], Awaitable[ProbeReport]]: ...


class LastProbe(Protocol):
    """The capacity service, as the metrics read it: this node's last probe."""

    @property
    def last_report(self) -> ProbeReport | None: ...


class ReadinessView(Protocol):
    """Whether this node sells jobs now (its sandbox's self-test)."""

    def status(self) -> Readiness: ...


class PendingTxs(Protocol):
    """The mempool, as RPC reads it: a waiting transaction by hash."""

    def get(self, tx_hash: bytes) -> Tx | None: ...


class ChainReader(Protocol):
    """The chain store's reads the chain and transaction methods make (in worker threads)."""

    def head(self) -> Head | None: ...

    def block(self, height: int) -> StoredBlock | None: ...

    def tx(self, tx_hash: bytes) -> IndexedTx | None: ...

    def txs_of(self, address: bytes, limit: int) -> list[IndexedTx]: ...

    def contract(self, contract_hash: bytes) -> ContractInfo | None: ...


class EconomicsRecords(Protocol):
    """The chain store's per-block economics records (read in worker threads)."""

    def economics(self, start: int, end: int) -> list[tuple[int, bytes]]: ...


class JobCounts(Protocol):
    """The chain store's local job records, counted by state (read in a worker thread)."""

    def job_counts(self) -> dict[str, int]: ...


class BusyGpus(Protocol):
    """The job market: the GPU units allocated to jobs now."""

    def busy_gpu_uuids(self) -> tuple[str, ...]: ...


class SizedPool(Protocol):
    """The mempool, as the metrics read it: how many transactions wait."""

    def __len__(self) -> int: ...


class BlobStatuses(Protocol):
    """The blob service, as the job methods read it: a blob's or its fetch's progress."""

    def status(self, cid: bytes) -> dict[str, object] | None: ...


class BlobOperations(BlobStatuses, Protocol):
    """The blob service, as the blob methods use it: the operator's store operations."""

    @property
    def settings(self) -> BlobSettings: ...

    async def put(self, path: Path, *, pin: bool = ...) -> tuple[BlobInfo, bool]: ...

    def start_fetch(self, cid: bytes, *, peers: Sequence[str] = ..., pin: bool = ...) -> object: ...

    async def export(self, cid: bytes, destination: Path) -> BlobInfo: ...

    async def pin(self, cid: bytes, pinned: bool) -> BlobInfo: ...

    async def remove(self, cid: bytes) -> bool: ...

    async def gc(self) -> GcReport: ...

    # Last: a method named ``list`` hides the builtin from the annotations of the members after it.
    def list(self) -> list[BlobInfo]: ...


class RequestedJobs(Protocol):
    """The job service, as the job methods use it: submit, read and cancel jobs, and the blob
    service its outputs arrive through (None on a node without one)."""

    @property
    def blobs(self) -> BlobStatuses | None: ...

    async def submit(
        self, spec: JobSpec, *, max_attempts: int = ..., payer: bytes = ..., payer_signs: bool = ...
    ) -> JobRecord: ...

    def get(self, job_id: str) -> JobRecord: ...

    def cancel(self, job_id: str) -> JobRecord: ...

    async def logs(self, job_id: str) -> tuple[bytes, bytes, bool]: ...

    async def result_files(self, job_id: str) -> dict[str, bytes]: ...

    async def output_listing(self, job_id: str) -> tuple[tuple[tuple[str, int, bytes], ...], bool]: ...

    # Last: a method named ``list`` hides the builtin from the annotations of the members after it.
    def list(self, state: str | None = ...) -> list[JobRecord]: ...


# --- the readers ------------------------------------------------------------------------------


class LedgerReads(Protocol):
    """The grant and liquidity methods: the committed ledger."""

    @property
    def app(self) -> CommittedLedger: ...


class SigningLedgerReads(LedgerReads, Protocol):
    """The staking and offer methods: the committed ledger, and the node's key they sign with."""

    @property
    def identity(self) -> NodeIdentity: ...


class EconomicsReads(Protocol):
    """The economics and market-view methods."""

    @property
    def app(self) -> CommittedLedger: ...

    @property
    def driver(self) -> ChainProgress: ...

    @property
    def store(self) -> EconomicsRecords: ...

    @property
    def capacity(self) -> CapacityEntries: ...


class NodeReads(Protocol):
    """The node, peer, GPU, chain, account, transaction, validator and governance methods."""

    @property
    def identity(self) -> NodeIdentity: ...

    @property
    def app(self) -> CommittedLedger: ...

    @property
    def driver(self) -> ChainProgress: ...

    @property
    def store(self) -> ChainReader: ...

    @property
    def host(self) -> PeerView: ...

    @property
    def capacity(self) -> CapacityView: ...

    @property
    def readiness(self) -> ReadinessView: ...

    @property
    def mempool(self) -> PendingTxs: ...

    async def submit_tx(self, raw: bytes) -> Tx: ...


class MetricsReads(Protocol):
    """The metrics endpoint's gauges."""

    @property
    def store(self) -> JobCounts: ...

    @property
    def capacity(self) -> LastProbe: ...

    @property
    def market(self) -> BusyGpus: ...

    @property
    def host(self) -> PeerView: ...

    @property
    def mempool(self) -> SizedPool: ...

    @property
    def driver(self) -> ConsensusProgress: ...
