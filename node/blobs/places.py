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
worth, 256 KiB at first, then nothing.) Never evicted: a stream waiting for a worker thread to
read our disk (our slowness is not its fault), and one not yet answered within its first
:data:`FIRST_ANSWER_GRACE_S`.

What it was built against (reviews 34 to 37 broke four earlier versions):

- *Churn*: a peer opening streams to push out others. A grace of 2 s for every new stream, whatever
  it did, let a churner keep every place young (review 34), so the grace is short and ends with the
  first answer. Among slow streams the oldest goes first, so a churner pushes out its own older
  streams before a newcomer: ranking by rate instead let a churner's streams that had taken one
  70-byte answer outrank an honest newcomer still at 0 (review 35). A fetcher whose stream is
  reset anyway asks again (``node/blobs/fetcher.py``).
- *Asking and not reading*, or granting a byte of credit now and then, whatever the reply: the
  rate decays below the threshold and the stream is slow.
- *Slow honest links*: a client taking 64 KiB/s or more keeps its place however long a chunk
  takes (an earlier version counted only whole chunks and evicted a 1 MiB/s reader mid-chunk).
- *Holding memory*: a stream waiting for send memory is judged by its rate like any other (one
  protected while waiting let slow readers fill the budget and their idle siblings wait unevictably).
- *Churn while honest downloads fill most places* (review 36): with only a slot or two slow, a
  newcomer lived a few milliseconds, too short for its first answer; honest fetches failed. A
  stream not yet answered is never evicted within :data:`FIRST_ANSWER_GRACE_S`, and each remote
  address may cause at most :data:`EVICTION_BURST` evictions, refilled at
  :data:`EVICTIONS_PER_S`; past that its streams are told busy. Made-up identities cost nothing;
  addresses do, so an address is an IPv4 address or an IPv6 /64 (:func:`address_key`).
- *Holding places for free* (review 37): an attacker took each place an honest stream freed, so
  every honest newcomer had to evict and spent its address's bucket. One address may hold at most
  1 / :data:`ADDRESS_SHARE` of the places.

Loopback is exempt from the address limits (every local node is on 127.0.0.1; a local user is
not the adversary here), and so is an address shared by many honest clients behind one NAT only
in that they share its share and its bucket: an attacker behind the same NAT can spend them
(review 37 F3, left open).

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
import ipaddress
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
#: Addresses whose buckets are kept. Full buckets are forgotten (the same as none); while more
#: than this many are not full, an address without one may not evict.
MAX_BUCKETS = 4096
#: One remote address may hold at most this share of the places (1 / ADDRESS_SHARE of them).
ADDRESS_SHARE = 4
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
    #: Its remote address's key (see :func:`address_key`), None where there is none.
    address: str | None = None
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


def address_key(address: str | None) -> str | None:
    """What one party is assumed to control: an IPv4 address, an IPv6 /64 (one host's usual
    allocation: its 2^64 addresses are one key, review 37); None for none and for loopback,
    where every local node is (their streams are then told apart by peer id)."""
    if address is None:
        return None
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if ip.is_loopback:
        return None
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class Places:
    """The server's places, per peer, per address and in all, with eviction of the oldest slow
    stream."""

    def __init__(self, *, max_streams: int, max_streams_per_peer: int, evict_below_bytes_per_s: int) -> None:
        self._max_streams = max_streams
        self._max_per_peer = max_streams_per_peer
        self._evict_below = evict_below_bytes_per_s
        self._places: list[Place] = []
        self._per_peer: Counter[str] = Counter()
        self._per_address: Counter[str] = Counter()
        self._max_per_address = max(1, max_streams // ADDRESS_SHARE)
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
        key = address_key(address)
        if self._per_peer[peer] >= self._max_per_peer:
            return None  # the peer's own streams fill its share: it can close one
        if key is not None and self._per_address[key] >= self._max_per_address:
            return None  # its address holds its share of the places (review 37: held for free)
        if len(self._places) >= self._max_streams:
            source = key or peer
            if not self._may_evict(source) or not self._evict(self._places):
                return None
            self._spend(source)
        now = trio.current_time()
        place = Place(peer, opened_at=now, address=key, _scored_at=now)
        self._places.append(place)
        self._per_peer[peer] += 1
        if key is not None:
            self._per_address[key] += 1
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
        # A stream still in its grace (not yet answered, younger than FIRST_ANSWER_GRACE_S) is
        # never evicted: evicting the youngest of them let churners from fresh addresses push out
        # each honest newcomer before its answer (review 37).
        slow = [
            p
            for p in candidates
            if not p.busy_here
            and p.rate(now) < self._evict_below
            and (p.answered or now - p.opened_at >= FIRST_ANSWER_GRACE_S)
        ]
        if not slow:
            return False
        victim = min(slow, key=lambda place: place.opened_at)
        victim.evicted = True
        victim.scope.cancel()
        self._drop(victim)
        self.evictions += 1
        return True

    def _tokens(self, source: str, now: float) -> float:
        tokens, since = self._buckets.get(source, (float(EVICTION_BURST), now))
        return min(float(EVICTION_BURST), tokens + (now - since) * EVICTIONS_PER_S)

    def _may_evict(self, source: str) -> bool:
        now = trio.current_time()
        if source not in self._buckets and len(self._buckets) >= MAX_BUCKETS:
            for full in [key for key in self._buckets if self._tokens(key, now) >= EVICTION_BURST]:
                del self._buckets[full]  # a full bucket is the same as none
            if len(self._buckets) >= MAX_BUCKETS:
                return False  # too many addresses evicting at once: no new ones (fail closed)
        return self._tokens(source, now) >= 1.0

    def _spend(self, source: str) -> None:
        now = trio.current_time()
        self._buckets[source] = (self._tokens(source, now) - 1.0, now)

    def _drop(self, place: Place) -> None:
        self._places.remove(place)
        self._per_peer[place.peer] -= 1
        if not self._per_peer[place.peer]:
            del self._per_peer[place.peer]
        if place.address is not None:
            self._per_address[place.address] -= 1
            if not self._per_address[place.address]:
                del self._per_address[place.address]


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
