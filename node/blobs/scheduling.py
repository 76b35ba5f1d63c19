"""Which chunks a fetch asks for next, and which peers it asks "have": the fetcher's pure
parts (no I/O), with the attacks each rule answers."""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Collection, Sequence

import trio

#: Peers asked "have" per fetch: the hints, then connected peers (in random order), up to this many.
MAX_HAVE_QUERIES = 32
_RANDOM = random.SystemRandom()


class ChunkScheduler:
    """The chunks still to fetch, handed out as contiguous runs; failed runs come back first.

    Endgame (BitTorrent's): once every missing chunk has been handed out, a peer with room asks
    for chunks another peer holds in flight, once each. A provider that trickles its chunks just
    inside the stall deadline is never a failure, and its chunks would otherwise hold the end of
    the fetch (8 chunks x 30 s = 4 minutes per blob at the defaults) while a fast peer sat idle;
    the first copy that verifies counts, and the fetch ends without waiting for the other.
    """

    def __init__(self, missing: Sequence[int]) -> None:
        self._pending: deque[int] = deque(missing)
        #: Handed out and not yet done, ascending order not kept.
        self._outstanding: set[int] = set()
        #: Asked of a second peer in the endgame.
        self._duplicated: set[int] = set()
        self.remaining = len(missing)
        self._changed = trio.Event()

    @property
    def complete(self) -> bool:
        return self.remaining == 0

    def take(self, limit: int, *, holding: Collection[int] = ()) -> list[int]:
        """A run of at most ``limit`` chunks: missing ones not yet handed out, or (endgame) ones
        in flight at another peer; ``holding`` is what the asking peer has in flight."""
        run: list[int] = []
        while self._pending and len(run) < limit and (not run or self._pending[0] == run[-1] + 1):
            run.append(self._pending.popleft())
        if not run and self._outstanding:
            run = self._endgame_run(limit, holding)
        self._outstanding.update(run)
        return run

    def _endgame_run(self, limit: int, holding: Collection[int]) -> list[int]:
        candidates = sorted(i for i in self._outstanding if i not in self._duplicated and i not in holding)
        run = candidates[:1]
        for index in candidates[1:limit]:
            if index != run[-1] + 1:
                break
            run.append(index)
        self._duplicated.update(run)
        return run

    def give_back(self, indices: Sequence[int]) -> None:
        for index in sorted(indices, reverse=True):
            if index in self._outstanding:  # not done meanwhile (by an endgame copy)
                self._outstanding.discard(index)
                self._pending.appendleft(index)
        self._wake()

    def done(self, index: int) -> None:
        self._outstanding.discard(index)
        self.remaining -= 1
        if not self.remaining:
            self._wake()

    async def changed(self) -> None:
        await self._changed.wait()

    async def wait_complete(self) -> None:
        while not self.complete:
            await self.changed()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()


def have_candidates(
    hints: Sequence[str],
    connected: Sequence[str],
    *,
    exclude: Callable[[str], bool],
    limit: int = MAX_HAVE_QUERIES,
    rng: random.Random = _RANDOM,
) -> list[str]:
    """The peers a fetch asks "have": the hints in their order, then connected peers in random
    order, at most ``limit`` in all (a node with many peers asks a bounded few). Random, because
    peer ids cost nothing to make: with any fixed order (libp2p's is sorted) made-up ids that sort
    first filled the list, and a connected provider was never asked."""
    shuffled = list(connected)
    rng.shuffle(shuffled)
    candidates: list[str] = []
    for peer in [*hints, *shuffled]:
        if len(candidates) == limit:
            break
        if peer not in candidates and not exclude(peer):
            candidates.append(peer)
    return candidates
