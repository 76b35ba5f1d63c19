"""Signed capacity announcements and the table of them each node keeps from gossip.

A provider announces what it sells: its GPUs (UUID, model, memory, compute capability, MIG,
driver and CUDA versions, health), which of them are busy with jobs, its price per GPU-second,
the collateral it puts up per contract, its stake (as claimed: matching asks the ledger when it
can), the executors it offers, the resource limits one job may ask for (CPU, memory, processes,
disk) and which of them its kernel enforces (:class:`OfferedLimits`), and a validity window. The provider signs
``sign_bytes(chain_id, "capacity", body)`` where ``body`` is the canonical encoding of every field
but the signature, so an announcement is bound to one chain and cannot pass for another message.

Announcements are re-sent periodically and on every change, each with a higher ``sequence``;
peers keep only the newest per provider and drop those that expired. A provider that restarts
must not reuse sequence numbers: use the issue time in milliseconds as the sequence.

The table's room is bounded in entries and bytes, and ranked by stake on the ledger (never the
announced ``stake``): providers without stake share a small quota, so announcements for
thousands of fresh keys cannot squat it (:class:`CapacityTable`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
import itertools
from dataclasses import dataclass
from typing import ClassVar

from protocol.contracts import LIMIT_NAMES, is_asset_symbol
from protocol.crypto import PUBLIC_KEY_LEN, SIGNATURE_LEN, PrivateKey, verify
from protocol.encoding import Record, encode, sign_bytes
from protocol.hardware import GpuDevice
from protocol.market.errors import (
    AnnouncementFromFuture,
    AnnouncementValidityTooLong,
    CapacityTableFull,
    ExpiredAnnouncement,
    ForgedAnnouncement,
    InvalidAnnouncement,
    MalformedMessage,
    StaleAnnouncement,
)

CAPACITY_DOMAIN = "capacity"
MAX_PEER_ID_LEN = 128
MAX_ANNOUNCED_GPUS = 256
MAX_EXECUTORS = 8
MAX_EXECUTOR_NAME_LEN = 32
#: Gossip carries announcements; one larger than this is refused before decoding.
MAX_ANNOUNCEMENT_BYTES = 256 * 1024
#: How far ahead of our clock an announcement's issue time may be.
DEFAULT_MAX_CLOCK_SKEW_MS = 30_000
#: An announcement valid for longer would keep a crashed provider listed for too long.
DEFAULT_MAX_VALIDITY_MS = 10 * 60_000
DEFAULT_MAX_PROVIDERS = 10_000
_INT63_MAX = 2**63 - 1


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise InvalidAnnouncement(message)


@dataclass(frozen=True, slots=True)
class OfferedLimits(Record):
    """What one job may ask of this provider besides its GPUs, and which limits hold.

    The four amounts are the largest limits the provider sells to one job (a job's ``[limits]``
    must fit under each): ``cpu_millicores`` (1000 = one core), ``memory_bytes``, ``processes``
    and ``disk_bytes``. They are ceilings, not reservations: GPUs are what a job holds alone.
    ``enforced``: the limit kinds the provider's kernel enforces (``cpu``, ``disk``, ``memory``,
    ``processes``, ascending). ``sandboxed``: jobs are isolated from the host; False only for the
    development executor, which runs jobs with whatever limits the host can enforce and says so.
    A sandboxed provider never sells a job a limit it cannot enforce.
    """

    cpu_millicores: int
    memory_bytes: int
    processes: int
    disk_bytes: int
    enforced: tuple[str, ...]
    sandboxed: bool

    def __post_init__(self) -> None:
        for name in ("cpu_millicores", "memory_bytes", "processes", "disk_bytes"):
            value = getattr(self, name)
            _check(0 <= value <= _INT63_MAX, f"limits.{name}: between 0 and 2^63-1")
        _check(_strictly_ascending(self.enforced), "limits.enforced: ascending, each once")
        _check(set(self.enforced) <= set(LIMIT_NAMES), f"limits.enforced: among {', '.join(LIMIT_NAMES)}")

    def unenforced(self) -> tuple[str, ...]:
        """The limit kinds this provider cannot enforce (any on a sandboxed provider is a bug)."""
        return tuple(kind for kind in LIMIT_NAMES if kind not in self.enforced)


@dataclass(frozen=True, slots=True)
class CapacityAnnouncement(Record):
    """One provider's signed offer of capacity. Validates its fields when built; the signature
    is checked by :func:`verify_announcement`."""

    #: The provider's Ed25519 public key: it signs quotes and contracts, and owns the stake.
    provider: bytes
    #: The provider's libp2p peer id (text form), to open a negotiation stream to.
    peer_id: str
    #: Higher replaces lower; strictly increasing per provider.
    sequence: int
    gpus: tuple[GpuDevice, ...]
    #: UUIDs of the listed GPUs (or MIG units) running jobs now, ascending.
    busy_gpu_uuids: tuple[str, ...]
    price_per_gpu_second: int
    #: Collateral the provider locks per contract.
    collateral: int
    #: Bonded stake as the provider claims it; the ledger's figure wins where it is known, and
    #: the table ranks providers by the ledger's figure alone.
    stake: int
    #: Executor names (``bubblewrap``, ``docker``, ...), ascending.
    executors: tuple[str, ...]
    #: What one job may ask for besides GPUs, and which limits the provider enforces.
    limits: OfferedLimits
    issued_at_ms: int
    expires_at_ms: int
    signature: bytes
    #: The asset the provider quotes in ("" for DCT): its price is then
    #: ``quote_price_per_gpu_second`` base units of it, and requesters rank it by its DCT value
    #: at the pool's time-weighted price (``protocol.market.matching``), not by
    #: ``price_per_gpu_second``. Both are left off the wire when unset.
    quote: str = ""
    quote_price_per_gpu_second: int = 0

    OMITTED_AT_DEFAULT: ClassVar[tuple[str, ...]] = ("quote", "quote_price_per_gpu_second")

    def __post_init__(self) -> None:
        _check(len(self.provider) == PUBLIC_KEY_LEN, "provider: a 32-byte public key")
        _check(
            0 < len(self.peer_id) <= MAX_PEER_ID_LEN
            and self.peer_id.isascii()
            and self.peer_id.isprintable()
            and " " not in self.peer_id,
            f"peer_id: 1 to {MAX_PEER_ID_LEN} printable ASCII characters without spaces",
        )
        _check(0 < self.sequence <= _INT63_MAX, "sequence: positive")
        _check(len(self.gpus) <= MAX_ANNOUNCED_GPUS, f"gpus: at most {MAX_ANNOUNCED_GPUS}")
        listed = [gpu.uuid for gpu in self.gpus if gpu.uuid]
        _check(len(set(listed)) == len(listed), "gpus: a UUID is listed twice")
        _check(_strictly_ascending(self.busy_gpu_uuids), "busy_gpu_uuids: ascending, each once")
        _check(set(self.busy_gpu_uuids) <= set(listed), "busy_gpu_uuids: names a GPU not listed")
        for name, value in (
            ("price_per_gpu_second", self.price_per_gpu_second),
            ("collateral", self.collateral),
            ("stake", self.stake),
        ):
            _check(0 <= value <= _INT63_MAX, f"{name}: between 0 and 2^63-1")
        _check(0 < len(self.executors) <= MAX_EXECUTORS, f"executors: 1 to {MAX_EXECUTORS} names")
        _check(_strictly_ascending(self.executors), "executors: ascending, each once")
        for executor in self.executors:
            _check(
                0 < len(executor) <= MAX_EXECUTOR_NAME_LEN and executor.isascii() and executor.isidentifier(),
                f"executors: {executor[:40]!r} is not an executor name",
            )
        _check(0 <= self.issued_at_ms < self.expires_at_ms <= _INT63_MAX, "expires_at_ms: after issued_at_ms")
        _check(len(self.signature) == SIGNATURE_LEN, f"signature: {SIGNATURE_LEN} bytes")
        if self.quote or self.quote_price_per_gpu_second:
            _check(is_asset_symbol(self.quote), "quote: an asset's symbol (2 to 10 capitals and digits)")
            _check(
                0 < self.quote_price_per_gpu_second <= _INT63_MAX,
                "quote_price_per_gpu_second: positive, in the asset's base units",
            )

    @property
    def quoted(self) -> bool:
        return bool(self.quote)

    def body(self) -> bytes:
        """The canonical bytes the signature covers: every field but the signature."""
        wire = self.to_wire()
        del wire["signature"]
        return encode(wire)

    def announcement_hash(self) -> bytes:
        """Identifies this exact announcement (for gossip de-duplication and logs)."""
        return hashlib.sha256(self.encode()).digest()

    def free_gpus(self) -> tuple[GpuDevice, ...]:
        """The listed units that could take a job now: schedulable, healthy and not busy."""
        busy = set(self.busy_gpu_uuids)
        return tuple(g for g in self.gpus if g.schedulable and g.healthy and g.uuid not in busy)

    @property
    def simulated(self) -> bool:
        """Some listed GPU is declared, not real (a testnet provider)."""
        return any(gpu.simulated for gpu in self.gpus)


def _strictly_ascending(items: tuple[str, ...]) -> bool:
    return all(a < b for a, b in itertools.pairwise(items))


def sign_announcement(
    key: PrivateKey,
    chain_id: str,
    *,
    peer_id: str,
    sequence: int,
    gpus: tuple[GpuDevice, ...],
    busy_gpu_uuids: tuple[str, ...] = (),
    price_per_gpu_second: int,
    collateral: int,
    stake: int,
    executors: tuple[str, ...],
    limits: OfferedLimits,
    issued_at_ms: int,
    expires_at_ms: int,
    quote: str = "",
    quote_price_per_gpu_second: int = 0,
) -> CapacityAnnouncement:
    """Build and sign an announcement. ``busy_gpu_uuids`` and ``executors`` may come in any
    order. Raises :class:`InvalidAnnouncement` for out-of-range fields."""
    unsigned = CapacityAnnouncement(
        provider=key.public_key.raw,
        peer_id=peer_id,
        sequence=sequence,
        gpus=gpus,
        busy_gpu_uuids=tuple(sorted(busy_gpu_uuids)),
        price_per_gpu_second=price_per_gpu_second,
        collateral=collateral,
        stake=stake,
        executors=tuple(sorted(executors)),
        limits=limits,
        issued_at_ms=issued_at_ms,
        expires_at_ms=expires_at_ms,
        signature=bytes(SIGNATURE_LEN),
        quote=quote,
        quote_price_per_gpu_second=quote_price_per_gpu_second,
    )
    signature = key.sign(sign_bytes(chain_id, CAPACITY_DOMAIN, unsigned.body()))
    return dataclasses.replace(unsigned, signature=signature)


def verify_announcement(
    ann: CapacityAnnouncement,
    chain_id: str,
    now_ms: int,
    *,
    max_clock_skew_ms: int = DEFAULT_MAX_CLOCK_SKEW_MS,
    max_validity_ms: int = DEFAULT_MAX_VALIDITY_MS,
) -> None:
    """Check that ``ann`` is current and signed by its provider for ``chain_id``.

    Raises :class:`ExpiredAnnouncement`, :class:`AnnouncementFromFuture`,
    :class:`AnnouncementValidityTooLong` or :class:`ForgedAnnouncement`. The cheap checks come
    first, so a flood of stale announcements costs no signature verifications.
    """
    if ann.expires_at_ms <= now_ms:
        raise ExpiredAnnouncement(f"announcement expired at {ann.expires_at_ms} ms, now {now_ms} ms")
    if ann.issued_at_ms > now_ms + max_clock_skew_ms:
        raise AnnouncementFromFuture(
            f"announcement issued at {ann.issued_at_ms} ms, more than {max_clock_skew_ms} ms after now ({now_ms})"
        )
    if ann.expires_at_ms - ann.issued_at_ms > max_validity_ms:
        raise AnnouncementValidityTooLong(
            f"announcement valid for {ann.expires_at_ms - ann.issued_at_ms} ms, at most {max_validity_ms}"
        )
    if not verify(ann.provider, ann.signature, sign_bytes(chain_id, CAPACITY_DOMAIN, ann.body())):
        raise ForgedAnnouncement("the signature is not the provider's over this announcement and chain")


def decode_announcement(data: bytes) -> CapacityAnnouncement:
    """Decode gossiped bytes; raises :class:`~protocol.encoding.DecodeError` (or its subclass
    :class:`MalformedMessage` for an oversized message) and nothing else. Does not verify."""
    if len(data) > MAX_ANNOUNCEMENT_BYTES:
        raise MalformedMessage(f"announcement of {len(data)} bytes, at most {MAX_ANNOUNCEMENT_BYTES}")
    return CapacityAnnouncement.decode(data)


@dataclass(frozen=True, slots=True)
class _Tombstone:
    sequence: int
    #: When no announcement at or below ``sequence`` can still be current, the tombstone goes.
    forget_at_ms: int


@dataclass(frozen=True, slots=True)
class Quota:
    """A share of the table: at most ``entries`` announcements of ``max_bytes`` encoded bytes in all."""

    entries: int
    max_bytes: int

    def __post_init__(self) -> None:
        if self.entries < 1 or self.max_bytes < 1:
            raise ValueError("a capacity quota holds at least one entry and one byte")

    def fits(self, entries: int, size: int) -> bool:
        return entries <= self.entries and size <= self.max_bytes


#: The whole table: 10,000 providers, 64 MiB of announcements (an honest one with 8 GPUs is ~3 KiB).
DEFAULT_TABLE_QUOTA = Quota(entries=DEFAULT_MAX_PROVIDERS, max_bytes=64 * 1024 * 1024)
#: What providers without stake on the ledger share. Keys cost nothing, so however many of them
#: announce, together they hold this much and never a staked provider's place.
DEFAULT_UNSTAKED_QUOTA = Quota(entries=256, max_bytes=8 * 1024 * 1024)


@dataclass(frozen=True, slots=True)
class _Entry:
    ann: CapacityAnnouncement
    #: The provider's stake on the ledger when this entry was admitted (each new sequence reads
    #: it again); never the announced one.
    stake: int
    #: Its encoded size in bytes: what it costs the table's byte budget.
    size: int
    #: Admission order (unique, growing): among equal stakes the oldest entry is evicted first.
    order: int

    @property
    def rank(self) -> tuple[int, int, bytes]:
        return (self.stake, self.order, self.ann.provider)


@dataclass(slots=True)
class _Usage:
    entries: int = 0
    size: int = 0

    def add(self, entry: _Entry, sign: int = 1) -> None:
        self.entries += sign
        self.size += sign * entry.size


class CapacityTable:
    """The newest verified announcement of each provider. Pure: every call takes ``now_ms``.

    An expired entry is dropped by :meth:`expire`, and its sequence is remembered until
    ``max_validity_ms`` after its expiry, so an older copy still in flight in the gossip cannot
    bring the provider back.

    Room is bounded twice: the whole table by ``quota`` (entries and encoded bytes), and the
    providers whose ledger stake is below ``min_stake`` (the unstaked) by ``unstaked``, a small
    share they hold together. Providers rank by their ledger stake, then by age (newer ranks
    higher). When there is no room, a newcomer gets in only by evicting entries of strictly less
    stake, lowest first and oldest first among equals; otherwise it is refused. So a flood of
    announcements for fresh unstaked keys fills the unstaked share and stops there: it never
    pushes out a staked provider, and a staked newcomer always finds room among the unstaked.
    """

    def __init__(
        self,
        chain_id: str,
        *,
        max_providers: int = DEFAULT_MAX_PROVIDERS,
        max_bytes: int = DEFAULT_TABLE_QUOTA.max_bytes,
        unstaked: Quota = DEFAULT_UNSTAKED_QUOTA,
        min_stake: int = 1,
        max_entry_bytes: int = MAX_ANNOUNCEMENT_BYTES,
        max_tombstones: int = DEFAULT_MAX_PROVIDERS,
        max_clock_skew_ms: int = DEFAULT_MAX_CLOCK_SKEW_MS,
        max_validity_ms: int = DEFAULT_MAX_VALIDITY_MS,
    ) -> None:
        self.chain_id = chain_id
        self.quota = Quota(max_providers, max_bytes)
        self.unstaked = unstaked
        self.min_stake = min_stake
        self.max_entry_bytes = max_entry_bytes
        self.max_tombstones = max_tombstones
        self.max_clock_skew_ms = max_clock_skew_ms
        self.max_validity_ms = max_validity_ms
        self._entries: dict[bytes, _Entry] = {}
        self._tombstones: dict[bytes, _Tombstone] = {}
        self._used = _Usage()
        self._unstaked_used = _Usage()
        #: Every entry's rank, lowest first; lazily pruned (a rank whose entry was replaced or
        #: removed is skipped when it comes up, and the heap is rebuilt when half of it is dead).
        self._ranks: list[tuple[int, int, bytes]] = []
        self._admitted = 0

    @property
    def max_providers(self) -> int:
        return self.quota.entries

    @property
    def size(self) -> int:
        """The encoded bytes of every entry held."""
        return self._used.size

    def offer(
        self, ann: CapacityAnnouncement, now_ms: int, *, stake: int = 0, encoded_size: int | None = None
    ) -> list[bytes]:
        """Verify ``ann`` and keep it as its provider's newest; returns the providers evicted to
        make room for it (ascending rank).

        ``stake`` is what the provider has bonded on the ledger as the caller reads it: the
        announcement's own ``stake`` field is the provider's word and never counts here.
        ``encoded_size`` is ``len(ann.encode())`` when the caller holds the bytes (decoding is
        canonical, so the gossiped bytes have that length); otherwise it is computed.

        Raises what :func:`verify_announcement` raises, :class:`StaleAnnouncement` for a sequence
        at or below the newest seen (a replay or an older copy), :class:`InvalidAnnouncement`
        for one over ``max_entry_bytes``, or :class:`CapacityTableFull` when there is no room
        and nothing of lower rank to evict. A refused announcement changes nothing.
        """
        verify_announcement(
            ann,
            self.chain_id,
            now_ms,
            max_clock_skew_ms=self.max_clock_skew_ms,
            max_validity_ms=self.max_validity_ms,
        )
        newest = self._newest_sequence(ann.provider, now_ms)
        if newest is not None and ann.sequence <= newest:
            raise StaleAnnouncement(f"sequence {ann.sequence} is not above the newest seen, {newest}")
        size = len(ann.encode()) if encoded_size is None else encoded_size
        if size > self.max_entry_bytes:
            raise InvalidAnnouncement(f"announcement of {size} bytes, at most {self.max_entry_bytes}")
        entry = _Entry(ann, stake if stake >= self.min_stake else 0, size, self._admitted + 1)
        evicted = self._make_room(entry)
        for provider in evicted:
            self._take(provider)
        self._admitted += 1
        self._tombstones.pop(ann.provider, None)
        self._put(entry)
        return evicted

    def _make_room(self, entry: _Entry) -> list[bytes]:
        """The providers to evict so that ``entry`` fits; raises :class:`CapacityTableFull`
        (changing nothing) when evicting every entry of lower stake would not be enough."""
        provider = entry.ann.provider
        current = self._entries.get(provider)
        used = _Usage(self._used.entries, self._used.size)
        unstaked_used = _Usage(self._unstaked_used.entries, self._unstaked_used.size)
        if current is not None:  # a replacement frees its predecessor's room
            used.add(current, -1)
            if current.stake == 0:
                unstaked_used.add(current, -1)
        if entry.stake == 0 and not self.unstaked.fits(
            unstaked_used.entries + 1, unstaked_used.size + entry.size
        ):
            raise CapacityTableFull(
                f"unstaked providers hold their share of {self.unstaked.entries} entries and "
                f"{self.unstaked.max_bytes} bytes; stake on the ledger ranks a provider above them"
            )
        popped: list[tuple[int, int, bytes]] = []
        evicted: list[bytes] = []
        while not self.quota.fits(used.entries + 1, used.size + entry.size):
            lowest = self._pop_lowest_live()
            if lowest is not None:
                popped.append(lowest)
                if lowest[2] == provider:
                    continue  # this provider's own predecessor: already counted as freed
            if lowest is None or lowest[0] >= entry.stake:
                for rank in popped:  # put back what was looked at: a refusal changes nothing
                    heapq.heappush(self._ranks, rank)
                raise CapacityTableFull(
                    f"the table holds its maximum of {self.quota.entries} providers and "
                    f"{self.quota.max_bytes} bytes, none with less stake than {entry.stake}"
                )
            victim = self._entries[lowest[2]]
            used.add(victim, -1)
            evicted.append(lowest[2])
        return evicted

    def _pop_lowest_live(self) -> tuple[int, int, bytes] | None:
        while self._ranks:
            rank = heapq.heappop(self._ranks)
            entry = self._entries.get(rank[2])
            if entry is not None and entry.order == rank[1]:
                return rank
        return None

    def _put(self, entry: _Entry) -> None:
        provider = entry.ann.provider
        if provider in self._entries:
            self._take(provider)
        self._entries[provider] = entry
        self._used.add(entry)
        if entry.stake == 0:
            self._unstaked_used.add(entry)
        heapq.heappush(self._ranks, entry.rank)
        if len(self._ranks) > 2 * len(self._entries) + 64:
            self._ranks = sorted(e.rank for e in self._entries.values())  # a sorted list is a heap

    def _take(self, provider: bytes) -> _Entry | None:
        entry = self._entries.pop(provider, None)
        if entry is not None:
            self._used.add(entry, -1)
            if entry.stake == 0:
                self._unstaked_used.add(entry, -1)
        return entry

    def _newest_sequence(self, provider: bytes, now_ms: int) -> int | None:
        current = self._entries.get(provider)
        if current is not None:
            return current.ann.sequence
        tombstone = self._tombstones.get(provider)
        if tombstone is not None and now_ms < tombstone.forget_at_ms:
            return tombstone.sequence
        return None

    def expire(self, now_ms: int) -> list[bytes]:
        """Drop the entries expired at ``now_ms``; returns their providers' keys, ascending."""
        expired = sorted(
            (entry.ann.expires_at_ms, p)
            for p, entry in self._entries.items()
            if entry.ann.expires_at_ms <= now_ms
        )
        for expires_at_ms, provider in expired:
            sequence = self._entries[provider].ann.sequence
            self._take(provider)
            self._tombstones[provider] = _Tombstone(sequence, expires_at_ms + self.max_validity_ms)
        # Bounded too: announcements valid for a second, churned through the unstaked share, would
        # leave 256 tombstones a second for 10 minutes. The first to expire go first (dicts keep
        # insertion order); a forgotten one only lets a still-valid older copy back in.
        while len(self._tombstones) > self.max_tombstones:
            del self._tombstones[next(iter(self._tombstones))]
        for provider in sorted(p for p, t in self._tombstones.items() if t.forget_at_ms <= now_ms):
            del self._tombstones[provider]
        return sorted(provider for _, provider in expired)

    def remove(self, provider: bytes) -> bool:
        """Forget a provider now (it was slashed, say). Its sequence is not remembered."""
        self._tombstones.pop(provider, None)
        return self._take(provider) is not None

    def get(self, provider: bytes) -> CapacityAnnouncement | None:
        entry = self._entries.get(provider)
        return entry.ann if entry is not None else None

    def stake(self, provider: bytes) -> int | None:
        """The ledger stake ``provider``'s entry was ranked by (0 below ``min_stake``)."""
        entry = self._entries.get(provider)
        return entry.stake if entry is not None else None

    def entries(self) -> tuple[CapacityAnnouncement, ...]:
        """Every entry, in ascending provider key order (expired ones too until :meth:`expire`)."""
        return tuple(self._entries[p].ann for p in sorted(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, provider: object) -> bool:
        return provider in self._entries
