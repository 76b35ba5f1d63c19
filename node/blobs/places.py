"""What the blob server hands out to its streams: places (one per stream) and send memory.

**Places are kept by use, not by presence.** The server serves at most ``max_streams`` streams
(and ``max_streams_per_peer`` per peer). Refusing every stream beyond the cap let anyone who
can make up identities hold every place at almost no cost: 16 identities asking for a blob
every 29 s kept 64 places, and every honest fetcher was told "busy". So when the server is full,
a new stream takes the place of a stream *idle on its client's side* for ``evict_idle_s``: no
chunk of it has left for that long and it is not waiting on us (the disk, the send budget) but
on its client, for a request or to take the frame on the wire. The one idle longest goes first;
a new stream counts from its start. A fetcher keeps its next request queued at the server while
a run of chunks is on the wire, so a stream in use always has chunks leaving; one held by asking
"have" or for a leaf now and then, or by asking and not reading, yields its place to the next
newcomer. To keep a place against newcomers a peer must take a chunk every ``evict_idle_s``:
what an honest fetcher does anyway, and as costly to the holder as to us.

**Send memory is one budget for the node.** Each stream reads at most one chunk ahead of the
one on the wire, but 64 streams of a blob with 4 MiB chunks made that 512 MiB. Every chunk read
from disk now holds its bytes of ``max_send_bytes`` until its frame has left; a chunk larger
than the whole budget takes all of it. Waiters are served in arrival order, so a stream asking
for large chunks is not starved by streams asking for small ones. Clients that ask and stop
reading would hold the budget with their unsent frames: a stream that waits ``evict_idle_s`` for
the budget evicts the idle stream (as above) that holds some, so memory goes to the streams whose
clients take it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import trio


@dataclass(eq=False)
class Place:
    """One served stream's place: cancel ``scope`` to end the stream's handler."""

    peer: str
    #: When a chunk of the stream last left (its start, before the first).
    last_chunk_at: float
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    #: True while the stream waits on us (reading its request, the disk, the send budget), not
    #: on its client: never evicted then.
    busy_here: bool = False
    #: Bytes of the send budget its chunks hold.
    held_bytes: int = 0
    evicted: bool = False


class Places:
    """The server's places, per peer and in all, with eviction of the stream idle longest."""

    def __init__(self, *, max_streams: int, max_streams_per_peer: int, evict_idle_s: float) -> None:
        self._max_streams = max_streams
        self._max_per_peer = max_streams_per_peer
        self._evict_idle_s = evict_idle_s
        self._places: list[Place] = []
        self._per_peer: Counter[str] = Counter()
        #: Streams that lost their place to another, since start (metrics and tests).
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._places)

    def take(self, peer: str) -> Place | None:
        """A place for a new stream from ``peer``, evicting an idle stream if the server is
        full; None if there is none to give (the stream is refused as busy)."""
        if self._per_peer[peer] >= self._max_per_peer:
            return None  # the peer's own streams fill its share: it can close one
        if len(self._places) >= self._max_streams and not self._evict(self._places):
            return None
        place = Place(peer, trio.current_time())
        self._places.append(place)
        self._per_peer[peer] += 1
        return place

    def evict_for_memory(self) -> bool:
        """Evict the idle stream, of those holding send budget, idle longest; whether one was."""
        return self._evict([place for place in self._places if place.held_bytes])

    def give_back(self, place: Place) -> None:
        """The stream ended; its place is free (unless another already took it)."""
        if not place.evicted:
            self._drop(place)

    def _evict(self, candidates: list[Place]) -> bool:
        idle_since = trio.current_time() - self._evict_idle_s
        idle = [p for p in candidates if not p.busy_here and p.last_chunk_at <= idle_since]
        if not idle:
            return False
        victim = min(idle, key=lambda place: place.last_chunk_at)
        victim.evicted = True
        victim.scope.cancel()
        self._drop(victim)
        self.evictions += 1
        return True

    def _drop(self, place: Place) -> None:
        self._places.remove(place)
        self._per_peer[place.peer] -= 1
        if not self._per_peer[place.peer]:
            del self._per_peer[place.peer]


class SendBudget:
    """Bytes the server's streams together may hold read and not yet sent; first come, first
    served. ``acquire`` returns what it took (a request above the whole budget takes all of it),
    which the caller gives back with ``release``."""

    def __init__(self, total: int) -> None:
        if total < 1:
            raise ValueError("a send budget is at least one byte")
        self.total = total
        self.free = total
        #: The most ever held at once (metrics and tests).
        self.peak = 0
        # Held by the one waiter waiting for bytes; trio's Lock is fair, so the others queue in
        # arrival order behind it.
        self._turn = trio.Lock()
        self._released = trio.Event()

    @property
    def held(self) -> int:
        return self.total - self.free

    async def acquire(self, size: int) -> int:
        taken = min(size, self.total)
        async with self._turn:
            while self.free < taken:
                await self._released.wait()
            self.free -= taken
        self.peak = max(self.peak, self.held)
        return taken

    def release(self, taken: int) -> None:
        self.free += taken
        self._released.set()
        self._released = trio.Event()
