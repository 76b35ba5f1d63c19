"""What the blob server hands out to its streams: places (one per stream) and send memory.

**Places are kept by use, not by presence.** The server serves at most ``max_streams`` streams
(and ``max_streams_per_peer`` per peer). Refusing every stream beyond the cap let anyone who
can make up identities hold every place at almost no cost: 16 identities asking for a blob
every 29 s kept 64 places, and every honest fetcher was told "busy". So when the server is full,
a new stream takes the place of the oldest *slow* stream: one whose client lately took fewer than
``evict_below_bytes_per_s`` from us (a rate decayed over :data:`RATE_TAU_S`, averaged over the
stream's life while it is young). Every byte a stream's client takes counts,
whatever the reply (chunks, leaves, manifests, refusals), and a chunk frame as each yamux data
frame of it leaves, so a client reading a large chunk slowly is seen taking it. (Bytes leave as
the client's yamux window allows, so a client that reads nothing is seen taking its window's
worth, 256 KiB at first, then nothing.) Only a stream waiting for a worker thread to read our
disk is never evicted: our slowness is not its fault.

What it was built against (reviews 34 and 35 broke two earlier versions):

- *Churn*: a peer opening streams to push out others. New streams have no grace (one that was
  protected for 2 s let a churner keep every place young), but among slow streams the oldest goes
  first, so a churner pushes out its own older streams before a newcomer, which has had time for
  its answer: ranking by rate instead let a churner's streams that had taken one 70-byte answer
  outrank an honest newcomer still at 0 (review 35). A fetcher whose stream is reset anyway asks
  again (``node/blobs/fetcher.py``).
- *Asking and not reading*, or granting a byte of credit now and then, whatever the reply: the
  rate decays below the threshold and the stream is slow.
- *Slow honest links*: a client taking 64 KiB/s or more keeps its place however long a chunk
  takes (an earlier version counted only whole chunks and evicted a 1 MiB/s reader mid-chunk).
- *Holding memory*: a stream waiting for send memory is judged by its rate like any other (one
  protected while waiting let slow readers fill the budget and their idle siblings wait unevictably).

- *Churn while honest downloads fill most places* (review 36): with only a slot or two slow, a
  newcomer lived a few milliseconds, too short for its first answer; honest fetches failed. A
  stream not yet answered now goes only after :data:`FIRST_ANSWER_GRACE_S` or when no other slow
  stream is left (then the youngest such first), and each remote address (the connection's IP) may cause at most
  :data:`EVICTION_BURST` evictions, refilled at :data:`EVICTIONS_PER_S`; past that its streams are
  told busy. Made-up identities cost nothing; addresses do. (Local testnets share 127.0.0.1 and so
  one bucket, which matters only on a full server.)

To keep a place against newcomers a peer must keep downloading from us at the threshold rate:
what an honest fetcher does anyway, and as costly to it as to us.

**Send memory is one budget for the node.** Each stream reads at most one chunk ahead of the
one on the wire, but 64 streams of a blob with 4 MiB chunks made that 512 MiB. Every chunk read
from disk now holds its bytes of ``max_send_bytes`` until its frame has left; a chunk larger
than the whole budget takes all of it. Waiters are served in arrival order. Streams whose
clients take nothing would hold the budget with their unsent frames, so while a stream waits for
memory, every :data:`RECLAIM_EVERY_S` (once for all waiters) the stream holding some that would
be evicted first (as above) is evicted, and its memory freed; the waiter keeps its turn.
"""

from __future__ import annotations

import contextlib
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import trio

#: The time constant (s) over which a stream's bytes taken are averaged into its rate.
RATE_TAU_S = 5.0
#: A stream's rate is averaged over at least this long (a burst in its first moments is not more).
MIN_AGE_S = 1.0
#: Evictions one remote address (its IP; the peer id where the transport gives none) may cause:
#: a bucket of EVICTION_BURST refilled at EVICTIONS_PER_S. Past it, its new streams are refused
#: as busy (which fetchers retry) instead of pushing others out.
EVICTIONS_PER_S = 1.0
EVICTION_BURST = 4
#: Addresses whose buckets are kept; beyond it, those idle longest (full again) are forgotten.
MAX_BUCKETS = 4096
#: A stream not yet answered is evicted only after this long, or when no other slow stream is
#: left: the time its first request needs to arrive and be answered.
FIRST_ANSWER_GRACE_S = 0.5
#: How often a stream waiting for send memory evicts a holder that takes nothing.
RECLAIM_EVERY_S = 1.0


@dataclass(eq=False)
class Place:
    """One served stream's place: cancel ``scope`` to end the stream's handler."""

    peer: str
    opened_at: float
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    #: True while a worker thread reads our disk for the stream: our slowness, not its client's.
    busy_here: bool = False
    #: Bytes of the send budget its chunks hold.
    held_bytes: int = 0
    evicted: bool = False
    #: Whether any reply of it has left yet.
    answered: bool = False
    # Bytes taken, decayed with RATE_TAU_S, as of _scored_at.
    _score: float = 0.0
    _scored_at: float = 0.0

    @contextlib.contextmanager
    def reading_disk(self) -> Iterator[None]:
        """Not evicted while inside: the stream waits on our disk."""
        self.busy_here = True
        try:
            yield
        finally:
            self.busy_here = False

    def took(self, count: int) -> None:
        """The client took ``count`` more bytes."""
        self._score = self._decayed(trio.current_time()) + count
        self.answered = True

    def rate(self, now: float) -> float:
        """Bytes per second the client took lately: its decayed byte count over the decayed
        length of its life, so a young stream's rate is its average so far, not a fraction of it."""
        age = max(now - self.opened_at, MIN_AGE_S)
        return self._decayed(now) / (RATE_TAU_S * -math.expm1(-age / RATE_TAU_S))

    def _decayed(self, now: float) -> float:
        if now > self._scored_at:
            self._score *= math.exp((self._scored_at - now) / RATE_TAU_S)
            self._scored_at = now
        return self._score


class Places:
    """The server's places, per peer and in all, with eviction of the oldest slow stream."""

    def __init__(self, *, max_streams: int, max_streams_per_peer: int, evict_below_bytes_per_s: int) -> None:
        self._max_streams = max_streams
        self._max_per_peer = max_streams_per_peer
        self._evict_below = evict_below_bytes_per_s
        self._places: list[Place] = []
        self._per_peer: Counter[str] = Counter()
        # Per remote address: (evictions it may still cause, as of when).
        self._buckets: dict[str, tuple[float, float]] = {}
        #: Streams that lost their place to another, since start (metrics and tests).
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._places)

    def take(self, peer: str, address: str | None = None) -> Place | None:
        """A place for a new stream from ``peer`` at ``address``, evicting the oldest slow
        stream if the server is full and the address may still evict; None if there is none to
        give (the stream is refused as busy)."""
        if self._per_peer[peer] >= self._max_per_peer:
            return None  # the peer's own streams fill its share: it can close one
        if len(self._places) >= self._max_streams:
            source = address or peer
            if not self._may_evict(source) or not self._evict(self._places):
                return None
            self._spend(source)
        now = trio.current_time()
        place = Place(peer, opened_at=now, _scored_at=now)
        self._places.append(place)
        self._per_peer[peer] += 1
        return place

    def evict_for_memory(self) -> bool:
        """Evict, of the streams holding send memory, the one that would go first; whether one did."""
        return self._evict([place for place in self._places if place.held_bytes])

    def give_back(self, place: Place) -> None:
        """The stream ended; its place is free (unless another already took it)."""
        if not place.evicted:
            self._drop(place)

    def _evict(self, candidates: list[Place]) -> bool:
        now = trio.current_time()
        slow = [p for p in candidates if not p.busy_here and p.rate(now) < self._evict_below]
        if not slow:
            return False

        def order(place: Place) -> tuple[bool, float]:
            # Answered (or past the grace) first, the oldest of them; then the youngest of those
            # still in their grace, which a churner's latest stream is, not the newcomer before it.
            in_grace = not place.answered and now - place.opened_at < FIRST_ANSWER_GRACE_S
            return (in_grace, -place.opened_at if in_grace else place.opened_at)

        victim = min(slow, key=order)
        victim.evicted = True
        victim.scope.cancel()
        self._drop(victim)
        self.evictions += 1
        return True

    def _tokens(self, source: str, now: float) -> float:
        tokens, since = self._buckets.get(source, (float(EVICTION_BURST), now))
        return min(float(EVICTION_BURST), tokens + (now - since) * EVICTIONS_PER_S)

    def _may_evict(self, source: str) -> bool:
        return self._tokens(source, trio.current_time()) >= 1.0

    def _spend(self, source: str) -> None:
        now = trio.current_time()
        self._buckets[source] = (self._tokens(source, now) - 1.0, now)
        if len(self._buckets) > MAX_BUCKETS:  # forget the fullest: they have evicted least lately
            for forgotten in sorted(self._buckets, key=lambda key: -self._tokens(key, now))[
                : MAX_BUCKETS // 4
            ]:
                del self._buckets[forgotten]

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

    def try_acquire(self, size: int) -> int:
        """What :meth:`acquire` takes, if it is free now and nobody waits; else 0."""
        taken = min(size, self.total)
        if self._turn.locked() or self.free < taken:
            return 0
        self._take(taken)
        return taken

    async def acquire(self, size: int) -> int:
        taken = min(size, self.total)
        async with self._turn:
            while self.free < taken:
                await self._released.wait()
            self._take(taken)
        return taken

    def release(self, taken: int) -> None:
        self.free += taken
        self._released.set()
        self._released = trio.Event()

    def _take(self, taken: int) -> None:
        self.free -= taken
        self.peak = max(self.peak, self.held)
