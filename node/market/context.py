"""What both sides of the job service share: the node's parts they use, the job book, and the
conversions between wall-clock milliseconds (what protocol messages carry) and trio's clock."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import trio

from node.market.errors import UnknownJob
from node.market.records import JobRecord
from node.market.txlane import TxLane
from node.p2p.interface import Host
from node.services.chain_feed import ChainFeed
from node.store import ChainStore
from protocol.consensus.ledger_app import LedgerApp
from protocol.crypto import PrivateKey
from protocol.market.jobspec import OUTPUT_BLOBS, JobSpec

log = logging.getLogger("dcent.market")

#: Blocks the provider allows the requester to get the escrow included before giving up.
DEFAULT_ESCROW_WAIT_BLOCKS = 30
#: Blocks added to a deadline on top of the run time: delivery and settlement.
DEFAULT_SETTLE_MARGIN_BLOCKS = 20
#: The slowest transfer a deadline allows for: 4 MiB/s.
TRANSFER_FLOOR_BYTES_PER_S = 4 * 2**20


def data_bytes(spec: JobSpec) -> int:
    """What a job moves besides its inline parts: inputs by reference, the image archive, and
    (for outputs as blobs) up to its output limit."""
    outputs = spec.output_limit_bytes if spec.output_mode == OUTPUT_BLOBS else 0
    return spec.transfer_bytes + outputs


@dataclass
class JobBook:
    """Every job this node knows, by id, persisted on each change."""

    store: ChainStore
    clock_ms: Callable[[], int]
    jobs: dict[str, JobRecord] = field(default_factory=dict)
    changed: trio.Event = field(default_factory=trio.Event)

    def get(self, job_id: str) -> JobRecord:
        record = self.jobs.get(job_id)
        if record is None:
            raise UnknownJob(f"no job {job_id!r} on this node")
        return record

    def by_contract(self, contract_hash: bytes) -> JobRecord | None:
        for record in self.jobs.values():
            if record.contract_hash == contract_hash:
                return record
        return None

    async def save(self, record: JobRecord) -> None:
        self.jobs[record.job_id] = record
        data, now = record.to_stored(), self.clock_ms()
        await trio.to_thread.run_sync(self.store.put_job, record.job_id, record.state.value, data, now)
        event, self.changed = self.changed, trio.Event()
        event.set()


@dataclass
class MarketContext:
    key: PrivateKey
    chain_id: str
    host: Host
    app: LedgerApp
    lane: TxLane
    book: JobBook
    clock_ms: Callable[[], int]
    #: Committed heights and ledger events: job loops wait on it, not on every block.
    feed: ChainFeed
    #: Where jobs run (provider) and results are kept (requester): ``<home>/data/jobs``.
    jobs_dir: Path
    #: The shortest a block can take (the commit timeout): deadlines in blocks computed with it
    #: are never shorter in wall time than intended.
    block_ms_floor: int
    escrow_wait_blocks: int = DEFAULT_ESCROW_WAIT_BLOCKS
    settle_margin_blocks: int = DEFAULT_SETTLE_MARGIN_BLOCKS

    def trio_deadline(self, wall_ms: int) -> float:
        """The trio clock reading at wall-clock time ``wall_ms``."""
        return trio.current_time() + max(0, wall_ms - self.clock_ms()) / 1000

    def blocks_for(self, seconds: int) -> int:
        return -(-(seconds * 1000) // self.block_ms_floor)

    def transfer_blocks(self, transfer_bytes: int) -> int:
        """Blocks to move ``transfer_bytes`` (inputs by reference, outputs as blobs) at
        :data:`TRANSFER_FLOOR_BYTES_PER_S`: a job with large data gets a deadline that leaves
        time to fetch it, whichever side counts."""
        return self.blocks_for(-(-transfer_bytes // TRANSFER_FLOOR_BYTES_PER_S))

    def requested_deadline(self, max_runtime_s: int, transfer_bytes: int = 0) -> int:
        """The deadline height a requester asks for: time to escrow, the run time twice over (a
        provider may start late in its escrow wait), time to move the job's data, and time to
        deliver and settle. Counted at the block-time floor, so it is never shorter in wall time."""
        run = self.blocks_for(max_runtime_s)
        moves = self.transfer_blocks(transfer_bytes)
        return self.height() + self.escrow_wait_blocks + 2 * run + moves + self.settle_margin_blocks

    def min_deadline(self, max_runtime_s: int, transfer_bytes: int = 0) -> int:
        """The earliest deadline a provider accepts: escrow, one run, the data's transfer, half
        the settle margin."""
        run = self.blocks_for(max_runtime_s)
        moves = self.transfer_blocks(transfer_bytes)
        return self.height() + self.escrow_wait_blocks + run + moves + self.settle_margin_blocks // 2

    def height(self) -> int:
        """The last committed and stored height."""
        return self.feed.height

    async def next_block(self) -> int:
        """Wait for the next committed height; returns it."""
        return await self.feed.next_block(self.feed.height)

    def job_dir(self, job_id: str) -> Path:
        return self.jobs_dir / job_id
