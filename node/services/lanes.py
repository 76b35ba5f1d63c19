"""Inbound lanes: what peers send the consensus driver, in separate bounded queues, consensus first.

Everything a peer sends that needs the driver's task (and so the CPU it shares with consensus)
waits in one of three lanes:

- ``CONSENSUS``: votes, evidence, proposals, and our own timer expiries;
- ``SYNC``: committed blocks, fetched by our block sync or pushed by a peer;
- ``TXS``: batches of transactions relayed by peers, admitted into the mempool.

The driver's task (:meth:`InboundLanes.run`) always takes the consensus lane first, then sync,
then transactions; and a transaction batch is admitted in slices, between which
:meth:`InboundLanes.yield_to_consensus` serves whatever consensus (and sync) work arrived
meanwhile. So a vote waits behind at most one slice of signature checks, never behind a
transaction flood, however long; and a flood of pushed blocks waits behind votes too.

Each lane is bounded (items; the transaction lane in transactions). Gossip and pushed blocks
offered to a full lane are dropped and counted (:meth:`InboundLanes.offer`): a vote is
retransmitted, a pushed block re-fetched by sync. Whatever would be lost for good waits for room
instead (:meth:`InboundLanes.put`, the waits counted): our timer expiries (a lost one would stall
a round), the blocks our sync fetched, a proposal, and a peer's relayed batch, whose stream then
stalls, so the relaying peer's own bounded link queue absorbs the excess. Dropping relayed
batches was tried first and lost transactions: a dropped batch left a nonce gap behind which the
sender's later transactions were refused everywhere, so only their origin node held them.

Attack this was built against (issue 14): under a transaction flood the relay handlers admitted
transactions in their own tasks, and a vote arriving behind them waited for every peer's batch
of signature checks; consensus timeouts expired, rounds failed and the chain slowed down exactly
when it was full.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import trio

Event = TypeVar("Event")


class Lane(enum.Enum):
    CONSENSUS = "consensus"
    SYNC = "sync"
    TXS = "txs"


#: The order lanes are served in.
PRIORITY = (Lane.CONSENSUS, Lane.SYNC, Lane.TXS)


@dataclass(frozen=True, slots=True)
class LaneBounds:
    """Room per lane: items for consensus and sync, transactions for the transaction lane."""

    consensus: int = 4096
    sync: int = 64
    txs: int = 16384

    def __post_init__(self) -> None:
        for name in ("consensus", "sync", "txs"):
            if getattr(self, name) < 1:
                raise ValueError(f"lane bound {name}: at least 1")

    def of(self, lane: Lane) -> int:
        bound: int = getattr(self, lane.value)
        return bound


@dataclass(frozen=True, slots=True)
class TxBatch:
    """Transactions a peer relayed, in the order it sent them."""

    peer_id: str
    txs: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class LaneStats:
    lane: Lane
    #: Waiting now (items, or transactions for the transaction lane), and the bound.
    depth: int
    bound: int
    accepted: int
    #: Offered while full: dropped (items, or transactions for the transaction lane).
    dropped: int
    #: Put while full: waited for room (times).
    waited: int
    served: int


class _Queue(Generic[Event]):
    def __init__(self, bound: int) -> None:
        self.bound = bound
        self.items: deque[tuple[Event | TxBatch, int]] = deque()
        self.depth = 0
        self.accepted = self.dropped = self.served = self.waited = 0

    def fits(self, weight: int) -> bool:
        return self.depth + weight <= self.bound


class InboundLanes(Generic[Event]):
    """``step(event)`` handles a consensus or sync event; ``admit(batch)`` a transaction batch
    (and calls :meth:`yield_to_consensus` between its slices)."""

    def __init__(
        self,
        step: Callable[[Event], Awaitable[None]],
        admit: Callable[[TxBatch], Awaitable[None]],
        bounds: LaneBounds | None = None,
    ) -> None:
        self.bounds = bounds or LaneBounds()
        self._step = step
        self._admit = admit
        self._queues: dict[Lane, _Queue[Event]] = {lane: _Queue(self.bounds.of(lane)) for lane in PRIORITY}
        self._arrived = trio.Event()
        self._room = trio.Event()

    # --- producers ---------------------------------------------------------------------------
    def offer(self, lane: Lane, item: Event | TxBatch) -> bool:
        """Queue a peer's input; False (and counted as dropped) when the lane has no room."""
        weight = _weight(item)
        queue = self._queues[lane]
        if not queue.fits(weight):
            queue.dropped += weight
            return False
        self._push(queue, item, weight)
        return True

    async def put(self, lane: Lane, item: Event | TxBatch) -> None:
        """Queue what must not be lost, waiting for room (a batch larger than the lane waits for
        it to empty)."""
        weight = _weight(item)
        queue = self._queues[lane]
        if not (queue.fits(weight) or queue.depth == 0):
            queue.waited += 1
        while not (queue.fits(weight) or queue.depth == 0):
            await self._room.wait()
        self._push(queue, item, weight)

    def _push(self, queue: _Queue[Event], item: Event | TxBatch, weight: int) -> None:
        queue.items.append((item, weight))
        queue.depth += weight
        queue.accepted += weight
        self._arrived.set()

    # --- the consumer ------------------------------------------------------------------------
    async def run(self) -> None:
        """Serve the lanes forever, highest priority first (the driver's one task)."""
        while True:
            lane = self._first_waiting(PRIORITY)
            if lane is None:
                self._arrived = trio.Event()
                await self._arrived.wait()
                continue
            item = self._pop(lane)
            if lane is Lane.TXS:
                assert isinstance(item, TxBatch)
                await self._admit(item)
            else:
                await self._step(item)  # type: ignore[arg-type]

    async def yield_to_consensus(self) -> None:
        """Between slices of transaction work: let producers run, then serve every consensus and
        sync event that is waiting before the transactions go on."""
        await trio.lowlevel.checkpoint()
        while (lane := self._first_waiting((Lane.CONSENSUS, Lane.SYNC))) is not None:
            await self._step(self._pop(lane))  # type: ignore[arg-type]

    def _first_waiting(self, lanes: tuple[Lane, ...]) -> Lane | None:
        for lane in lanes:
            if self._queues[lane].items:
                return lane
        return None

    def _pop(self, lane: Lane) -> Event | TxBatch:
        queue = self._queues[lane]
        item, weight = queue.items.popleft()
        queue.depth -= weight
        queue.served += weight
        self._room.set()
        self._room = trio.Event()
        return item

    # --- views -------------------------------------------------------------------------------
    def waiting(self, lane: Lane) -> int:
        return self._queues[lane].depth

    def stats(self) -> list[LaneStats]:
        return [
            LaneStats(lane, q.depth, q.bound, q.accepted, q.dropped, q.waited, q.served)
            for lane, q in self._queues.items()
        ]

    def dropped(self, lane: Lane) -> int:
        return self._queues[lane].dropped

    def waited(self, lane: Lane) -> int:
        return self._queues[lane].waited


def _weight(item: object) -> int:
    return max(1, len(item.txs)) if isinstance(item, TxBatch) else 1
