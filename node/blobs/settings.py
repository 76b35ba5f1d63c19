"""The blob store's settings, with defaults: the lead folds them into the node's config schema
(``[blobs]`` in ``config.toml``).

Every limit here is one of the bounds the store, the server and the fetcher keep against a
hostile peer or a careless caller; each field says what it bounds.
"""

from __future__ import annotations

from dataclasses import dataclass

from node.blobs.errors import BlobSettingsError
from protocol.blobs.merkle import DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE
from protocol.blobs.wire import MAX_CHUNKS_PER_REQUEST

MIB = 1 << 20
GIB = 1 << 30


@dataclass(frozen=True, slots=True)
class BlobSettings:
    """Raises :class:`BlobSettingsError` for a value out of range."""

    #: The store's size cap (complete and partial blobs, with their leaf lists). Above it, garbage
    #: collection evicts unpinned blobs, least recently used first; a blob that cannot fit even
    #: then is refused with StoreFull.
    max_bytes: int = 50 * GIB
    #: Chunk size of blobs this node puts (fetched blobs keep the chunk size of their content id).
    chunk_size: int = DEFAULT_CHUNK_SIZE
    #: How often garbage collection runs on its own (it also runs after each put and fetch).
    gc_interval_s: float = 300.0

    # --- the fetcher: memory is bounded by window_chunks x chunk size per fetch ----------------
    #: Chunks requested and not yet written, per fetch, across all its peers.
    window_chunks: int = 16
    #: Chunks requested and not yet received, per peer of a fetch.
    peer_window_chunks: int = 8
    #: Chunks per request (a request is answered as one run of chunk frames). A request asks for
    #: at most half the peer window, so the next one is queued at the peer while it serves one.
    request_chunks: int = 4
    #: Peers one fetch downloads from at once.
    max_fetch_peers: int = 4
    #: Fetches the node runs at once (each holds at most window_chunks chunks).
    max_concurrent_fetches: int = 4
    #: How long a peer may take to answer "have" before it counts as not having the blob.
    have_timeout_s: float = 10.0
    #: How long a stream may go without delivering a reply, or 16 KiB of a chunk, before the
    #: peer counts as failed (a chunk may take longer in all while its bytes keep coming).
    stall_timeout_s: float = 30.0
    #: Consecutive failures (resets, stalls) before a peer is dropped from one fetch.
    peer_retries: int = 3
    #: How long a peer that sent data that does not verify is not asked again.
    ban_s: float = 3600.0
    #: How often a fetch records its verified chunks on disk (a crash loses at most this much).
    checkpoint_interval_s: float = 1.0

    # --- the server ----------------------------------------------------------------------------
    #: Streams one peer may have open to us on /dcent/blob/1.0.0; more are refused (BlobBusy).
    max_streams_per_peer: int = 4
    #: Streams all peers together may have open to us.
    max_streams: int = 64
    #: A stream that sends no request for this long is closed.
    idle_timeout_s: float = 30.0
    #: When every place is taken, a new stream takes the place of the one whose client lately took
    #: the fewest bytes from us, if fewer than this many a second (0: never).
    evict_below_bytes_per_s: int = 64 * 1024
    #: Chunk bytes all streams together may hold read from disk and not yet sent.
    max_send_bytes: int = 128 * MIB

    def __post_init__(self) -> None:
        size = self.chunk_size
        if not (MIN_CHUNK_SIZE <= size <= MAX_CHUNK_SIZE and size & (size - 1) == 0):
            raise BlobSettingsError(
                f"blobs.chunk_size: a power of two between {MIN_CHUNK_SIZE} and {MAX_CHUNK_SIZE}"
            )
        if self.max_bytes < 0:
            raise BlobSettingsError("blobs.max_bytes: not negative")
        if not 1 <= self.request_chunks <= MAX_CHUNKS_PER_REQUEST:
            raise BlobSettingsError(f"blobs.request_chunks: between 1 and {MAX_CHUNKS_PER_REQUEST}")
        if not self.request_chunks <= self.peer_window_chunks <= self.window_chunks <= 1024:
            raise BlobSettingsError("blobs: request_chunks <= peer_window_chunks <= window_chunks <= 1024")
        for name in ("max_fetch_peers", "max_concurrent_fetches", "max_streams_per_peer", "max_streams"):
            if not 1 <= getattr(self, name) <= 1024:
                raise BlobSettingsError(f"blobs.{name}: between 1 and 1024")
        if not 0 <= self.evict_below_bytes_per_s <= GIB:
            raise BlobSettingsError(f"blobs.evict_below_bytes_per_s: between 0 and {GIB}")
        if not MIN_CHUNK_SIZE <= self.max_send_bytes <= 64 * GIB:
            raise BlobSettingsError(f"blobs.max_send_bytes: between {MIN_CHUNK_SIZE} and {64 * GIB}")
        if not 0 <= self.peer_retries <= 100:
            raise BlobSettingsError("blobs.peer_retries: between 0 and 100")
        for name in (
            "gc_interval_s",
            "have_timeout_s",
            "stall_timeout_s",
            "ban_s",
            "checkpoint_interval_s",
            "idle_timeout_s",
        ):
            if not 0 < getattr(self, name) <= 7 * 24 * 3600:
                raise BlobSettingsError(f"blobs.{name}: more than 0 s and at most a week")
