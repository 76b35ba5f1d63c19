"""The chain feed: committed heights and the ledger events they carried, for services that react
to the chain (the market) instead of re-reading the ledger at every block.

The consensus driver publishes each block once it is stored (:meth:`ChainFeed.publish`, with
``BlockResult.events``, see ``protocol/ledger/events.py``). A job waits with :meth:`ChainFeed.wait`
for the next event naming its contract, or for the height a settlement rule waits for
(``protocol/market/settlement.py``), whichever comes first; a parameter change wakes every waiter,
since governance may move a window a rule waits for. So a job that waits for a two-hour deadline
costs nothing per block, and a settlement is seen in the block that carries it.

Waiting is race-free without locks: a waiter passes the height its decision was made at, and
:meth:`wait` returns at once if the chain has moved past it since (the caller decides again). The
waiters are our own jobs, so their number is bounded by the job service's, not by any peer.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable

import trio

from protocol.ledger.events import PARAMS_CHANGED, LedgerEvent


class ChainFeed:
    """Committed heights and their events; see the module docstring."""

    def __init__(self, height: int) -> None:
        self._height = height
        self._by_contract: dict[bytes, set[trio.Event]] = {}
        self._by_height: list[tuple[int, int, trio.Event]] = []
        self._order = itertools.count()
        self._any: set[trio.Event] = set()

    @property
    def height(self) -> int:
        """The last height published: committed and stored."""
        return self._height

    def publish(self, height: int, events: Iterable[LedgerEvent]) -> None:
        """Block ``height`` is committed and stored, with ``events``. Heights only move forward."""
        if height <= self._height:
            return
        self._height = height
        woken: set[trio.Event] = set()
        for event in events:
            if event.kind == PARAMS_CHANGED:
                for waiters in self._by_contract.values():
                    woken |= waiters
            elif event.is_contract_event:
                woken |= self._by_contract.get(event.key, set())
        while self._by_height and self._by_height[0][0] <= height:
            woken.add(heapq.heappop(self._by_height)[2])
        woken |= self._any
        for waiter in woken:
            waiter.set()

    def nudge(self, contract: bytes) -> None:
        """Wake the waiters of ``contract`` at the same height: something off the chain changed
        what their rules decide (the requester countersigned a delivery, which starts its grace)."""
        for waiter in self._by_contract.get(contract, set()):
            waiter.set()

    async def wait(self, *, seen_height: int, contract: bytes | None = None, wake_height: int = 0) -> int:
        """Return the new height once a block after ``seen_height`` carries an event for
        ``contract`` (or changes a parameter), or the chain reaches ``wake_height`` (0: no such
        height); with no ``contract``, once any block after ``seen_height`` is published. Returns
        at once if the chain is already past ``seen_height`` (the caller's decision is stale)."""
        if self._height > seen_height:
            return self._height
        waiter = trio.Event()
        if contract is None:
            self._any.add(waiter)
        else:
            self._by_contract.setdefault(contract, set()).add(waiter)
        entry = (wake_height, next(self._order), waiter)
        if wake_height > 0:
            heapq.heappush(self._by_height, entry)
        try:
            await waiter.wait()
        finally:
            self._forget(entry, contract)
        return self._height

    async def next_block(self, seen_height: int) -> int:
        """The next published height after ``seen_height``."""
        return await self.wait(seen_height=seen_height)

    def _forget(self, entry: tuple[int, int, trio.Event], contract: bytes | None) -> None:
        waiter = entry[2]
        self._any.discard(waiter)
        if contract is not None:
            waiters = self._by_contract.get(contract)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._by_contract[contract]
        if entry[0] > self._height:  # woken by an event or cancelled before its height
            self._by_height.remove(entry)
            heapq.heapify(self._by_height)

    @property
    def waiting(self) -> int:
        """Waiters registered now (for tests and metrics)."""
        return len(self._any) + sum(len(w) for w in self._by_contract.values()) + len(self._by_height)
