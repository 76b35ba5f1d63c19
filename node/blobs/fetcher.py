"""Fetching a blob by content id from the peers that have it, verifying every byte.

A fetch goes through four steps:

1. **Find providers.** Ask "have" of the hinted peers (the requester's node first, for a job
   input), then of connected peers in random order (at most ``MAX_HAVE_QUERIES`` in all), all at
   once with a deadline; a peer that answers busy is asked again within it. A peer that answers
   with a manifest that does not hash to the content id is banned. Peers banned for an earlier
   lie are not asked.
2. **The leaf list**, in 256 KiB pages from one provider into a file, folded into a Merkle root
   as it arrives (O(log n) memory); a list that does not give the manifest's root bans that
   provider and the next one is asked. Skipped when resuming with a verified list on disk.
3. **The chunks**, from up to ``max_fetch_peers`` providers at once, each on one long-lived
   stream with requests pipelined: a shared scheduler hands out runs of missing chunks, so a fast
   peer serves more. Each chunk is checked against its leaf (in a worker thread, with the write)
   *before* a byte of it is written; its bit is set only after the write.
4. **Install**: once every bit is set, the data is fsynced and renamed into ``objects/``.

Bounds and the attacks they answer:

- *A lying peer* (a chunk, a leaf list or a manifest that does not verify, a frame of the wrong
  length): proof of bad faith or bad disk, so it is banned for ``ban_s`` (every fetch), its
  chunks in flight go back to the scheduler and are fetched from the others.
- *A slow or vanishing peer*: a stream that delivers nothing for ``stall_timeout_s`` counts as a
  failure, as do resets; after ``peer_retries`` consecutive failures the peer is dropped from this
  fetch (not banned: it may only be unlucky). Its chunks go back to the others.
- *A peer that trickles* (a chunk just inside the stall deadline, never a failure): while other
  providers wait for a place, the slowest peer in a place yields it every ``stall_timeout_s`` if
  it delivered less than a peer window (:meth:`BlobFetcher._rotate_slow_peers`); once nothing is
  left to hand out, peers with room fetch the chunks others still hold (the endgame, see
  :class:`~node.blobs.scheduling.ChunkScheduler`), and the fetch ends at its last verified
  chunk, closing the streams that still owe copies.
- *Memory*: chunks requested and not yet written are capped at ``window_chunks`` per fetch and
  ``peer_window_chunks`` per peer; a stream buffers at most one frame, whose length is known
  from the manifest before it is read. A 2 GiB blob moves through ~16 MiB of buffers.
- *A broken connection or a killed node*: verified chunks are on disk and in the bitmap
  (checkpointed every ``checkpoint_interval_s``, data fsynced before the bitmap that claims it),
  so the next attempt asks only for the missing ones.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import trio

from node.blobs.deadlines import progress_deadline
from node.blobs.errors import FetchFailed, LocalDiskError, NoProviders, UnexpectedBlobSize
from node.blobs.partial import PartialBlob
from node.blobs.scheduling import ChunkScheduler, have_candidates
from node.blobs.settings import BlobSettings
from node.blobs.store import BlobInfo, BlobStore
from node.blobs.tasks import open_task_group
from node.errors import NodeError
from node.p2p.errors import FrameTooLargeError, P2PError, PeerError, StreamResetError
from node.p2p.framing import Stream
from node.p2p.interface import Host
from protocol.blobs.errors import (
    BlobBusy,
    BlobError,
    BlobNotHere,
    ChunkMismatch,
    LeavesMismatch,
    MalformedBlobMessage,
    refusal_for,
)
from protocol.blobs.merkle import HASH_LEN, BlobManifest, MerkleAccumulator, format_content_id
from protocol.blobs.wire import (
    BLOB_PROTOCOL_ID,
    MAX_LEAVES_PER_REQUEST,
    MAX_MANIFEST_BYTES,
    MAX_REPLY_BYTES,
    BlobReply,
    BlobRequest,
)
from protocol.encoding import DecodeError
from protocol.errors import ProtocolError

log = logging.getLogger("dcent.blobs.fetch")
T = TypeVar("T")

#: How long closing a stream may take.
CLOSE_TIMEOUT_S = 2.0
#: Pause before retrying a peer whose stream failed (doubles per consecutive failure).
RETRY_BASE_S = 0.2
#: Pause before asking "have" again of a peer that answered busy (doubles, within have_timeout_s).
BUSY_RETRY_S = 0.25


class PeerLied(Exception):
    """A peer sent data that does not verify; carries the proving error."""

    def __init__(self, error: ProtocolError | PeerError) -> None:
        super().__init__(str(error))
        self.error = error


class PeerScores:
    """Peers banned for sending data that did not verify, until a deadline (trio time)."""

    def __init__(self, ban_s: float) -> None:
        self._ban_s = ban_s
        self._until: dict[str, float] = {}

    def ban(self, peer: str, reason: str) -> None:
        log.warning("peer %s banned from blob fetches for %g s: %s", peer, self._ban_s, reason)
        self._until[peer] = trio.current_time() + self._ban_s

    def banned(self, peer: str) -> bool:
        until = self._until.get(peer)
        if until is None:
            return False
        if trio.current_time() >= until:
            del self._until[peer]
            return False
        return True


@dataclass
class PeerProgress:
    chunks: int = 0
    failures: int = 0
    banned: bool = False
    error: str = ""


@dataclass
class FetchProgress:
    """What a fetch has done so far; the RPC's ``blob_status`` reports it live."""

    cid: bytes
    state: str = "finding"  # finding -> leaves -> fetching -> complete | failed | cancelled
    chunks: int = 0
    size: int = 0
    resumed_chunks: int = 0
    fetched_chunks: int = 0
    fetched_bytes: int = 0
    peers: dict[str, PeerProgress] = field(default_factory=dict)
    error: NodeError | ProtocolError | None = None
    done: trio.Event = field(default_factory=trio.Event)

    @property
    def have_chunks(self) -> int:
        return self.resumed_chunks + self.fetched_chunks

    def peer(self, peer_id: str) -> PeerProgress:
        return self.peers.setdefault(peer_id, PeerProgress())

    def to_json(self) -> dict[str, object]:
        return {
            "cid": format_content_id(self.cid),
            "state": self.state,
            "size": self.size,
            "chunks": self.chunks,
            "have_chunks": self.have_chunks,
            "resumed_chunks": self.resumed_chunks,
            "fetched_chunks": self.fetched_chunks,
            "fetched_bytes": self.fetched_bytes,
            "peers": {
                peer: {"chunks": p.chunks, "failures": p.failures, "banned": p.banned, "error": p.error}
                for peer, p in sorted(self.peers.items())
            },
            "error": None if self.error is None else {"code": self.error.code, "message": self.error.message},
        }


@dataclass
class _Fetch:
    """One fetch's shared state while its chunks move."""

    cid: bytes
    manifest: BlobManifest
    partial: PartialBlob
    scheduler: ChunkScheduler
    window: trio.Semaphore
    progress: FetchProgress


class BlobFetcher:
    """Fetches blobs over ``host`` into ``store``. ``scores`` is shared by all fetches of a node."""

    def __init__(self, host: Host, store: BlobStore, settings: BlobSettings, scores: PeerScores) -> None:
        self._host = host
        self._store = store
        self._settings = settings
        self._scores = scores

    async def fetch(
        self,
        cid: bytes,
        *,
        peers: Sequence[str] = (),
        progress: FetchProgress | None = None,
        expected_size: int | None = None,
    ) -> BlobInfo:
        """Fetch ``cid`` into the store (resuming what is there); returns the complete blob.

        Raises :class:`NoProviders`, :class:`FetchFailed`, :class:`StoreFull`. The verified chunks
        stay on disk whatever happens, cancellation included.
        """
        progress = progress if progress is not None else FetchProgress(cid)
        info = self._store.get(cid)
        if info is not None and info.complete:
            if expected_size is not None and info.manifest.size != expected_size:
                raise UnexpectedBlobSize(
                    f"blob {format_content_id(cid)} is {info.manifest.size} bytes, not the {expected_size} expected"
                )
            progress.resumed_chunks, progress.chunks, progress.size = (
                info.manifest.chunks,
                info.manifest.chunks,
                info.manifest.size,
            )
            # Complete already: the service must see it so, not as a fetch that never ended.
            progress.state = "complete"
            return info
        providers = await self._find_providers(cid, peers, progress)
        manifest = providers[0][1]
        if expected_size is not None and manifest.size != expected_size:
            raise UnexpectedBlobSize(
                f"blob {format_content_id(cid)} is {manifest.size} bytes, not the {expected_size} expected"
            )
        progress.chunks, progress.size = manifest.chunks, manifest.size
        partial = await trio.to_thread.run_sync(self._store.begin_fetch, cid, manifest)
        if partial is None:  # completed meanwhile (a put of the same content)
            done = self._store.get(cid)
            assert done is not None
            return done
        finished = False
        try:
            progress.resumed_chunks = partial.have.set_count
            order = [peer for peer, _ in providers]
            if not partial.has_leaves:
                progress.state = "leaves"
                await self._fetch_leaves(partial, order, progress)
            progress.state = "fetching"
            await self._fetch_chunks(partial, order, progress)
            info = await trio.to_thread.run_sync(partial.finish)
            finished = True
            progress.state = "complete"
        finally:
            if not finished:
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(partial.abandon)
        log.info(
            "blob %s fetched: %d chunks (%d resumed) from %s",
            format_content_id(cid),
            manifest.chunks,
            progress.resumed_chunks,
            ", ".join(f"{peer}: {p.chunks}" for peer, p in sorted(progress.peers.items()) if p.chunks),
        )
        return info

    # --- 1. providers ----------------------------------------------------------------------------
    async def _find_providers(
        self, cid: bytes, hints: Sequence[str], progress: FetchProgress
    ) -> list[tuple[str, BlobManifest]]:
        candidates = have_candidates(
            hints,
            self._host.peer_ids(),
            exclude=lambda peer: peer == self._host.peer_id or self._scores.banned(peer),
        )
        answers: dict[str, BlobManifest] = {}

        async def ask(peer: str) -> None:
            with trio.move_on_after(self._settings.have_timeout_s):
                pause = BUSY_RETRY_S
                while True:
                    try:
                        manifest = await self._ask_have(peer, cid)
                    # Its places are full (maybe held by others), or a full server gave our
                    # stream's place to another (node/blobs/places.py): ask again.
                    except (BlobBusy, StreamResetError):
                        await trio.sleep(pause)
                        pause *= 2
                        continue
                    except PeerLied as lie:
                        self._ban(peer, progress, lie.error)
                    except (P2PError, BlobError) as exc:
                        log.debug("peer %s: no blob %s (%r)", peer, format_content_id(cid), exc)
                    else:
                        if manifest is not None:
                            answers[peer] = manifest
                    return

        async with open_task_group() as nursery:
            for peer in candidates:
                nursery.start_soon(ask, peer)
        providers = [(peer, answers[peer]) for peer in candidates if peer in answers]
        if not providers:
            raise NoProviders(f"none of {len(candidates)} peer(s) asked has blob {format_content_id(cid)}")
        return providers

    async def _ask_have(self, peer: str, cid: bytes) -> BlobManifest | None:
        """The peer's manifest for ``cid``, or None if it has no complete copy. Raises
        :class:`PeerLied` for a manifest that does not hash to ``cid``."""
        stream = await self._host.open_stream(peer, BLOB_PROTOCOL_ID)
        try:
            await stream.send_frame(BlobRequest.have(cid).encode())
            reply = await _read_reply(stream)
            if not reply.ok:
                if reply.code == BlobNotHere.code:
                    return None
                raise refusal_for(reply.code, reply.message)
            try:
                manifest = BlobManifest.decode(await stream.receive_frame(MAX_MANIFEST_BYTES))
                manifest.check_content_id(cid)
            except (DecodeError, BlobError) as exc:
                raise PeerLied(exc) from None
            return manifest
        finally:
            await _close(stream)

    # --- 2. the leaf list ------------------------------------------------------------------------
    async def _fetch_leaves(
        self, partial: PartialBlob, order: Sequence[str], progress: FetchProgress
    ) -> None:
        # Each provider is asked up to peer_retries + 1 times, as for chunks: a stream reset (a
        # full server giving our place to another, a dropped connection) is not "cannot serve".
        for peer in order:
            for attempt in range(self._settings.peer_retries + 1):
                if self._scores.banned(peer):
                    break
                if attempt:
                    await trio.sleep(RETRY_BASE_S * 2 ** (attempt - 1))
                path = partial.directory / "leaves.part"
                try:
                    await self._leaves_from(peer, partial, path)
                except PeerLied as lie:
                    self._ban(peer, progress, lie.error)
                except (P2PError, BlobError, trio.TooSlowError) as exc:
                    progress.peer(peer).failures += 1
                    progress.peer(peer).error = repr(exc)
                    if isinstance(exc, BlobNotHere):
                        break
                else:
                    await trio.to_thread.run_sync(partial.install_leaves, path)
                    return
                finally:
                    if not partial.has_leaves:
                        path.unlink(missing_ok=True)
        raise FetchFailed(f"no provider delivered the leaf list of blob {format_content_id(partial.cid)}")

    async def _leaves_from(self, peer: str, partial: PartialBlob, path: os.PathLike[str]) -> None:
        manifest = partial.manifest
        accumulator = MerkleAccumulator()
        stream = await self._host.open_stream(peer, BLOB_PROTOCOL_ID)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            for start in range(0, manifest.chunks, MAX_LEAVES_PER_REQUEST):
                count = min(MAX_LEAVES_PER_REQUEST, manifest.chunks - start)
                await stream.send_frame(BlobRequest.leaves(partial.cid, start, count).encode())
                reply = await _with_stall(self._settings, functools.partial(_read_reply, stream))
                if not reply.ok:
                    raise refusal_for(reply.code, reply.message)
                page = await _with_stall(
                    self._settings, functools.partial(_receive_exact, stream, count * HASH_LEN)
                )
                accumulator.add_many(page)
                os.write(fd, page)
            if accumulator.root() != manifest.root:
                raise PeerLied(LeavesMismatch("the leaf list does not hash to the manifest's root"))
            os.fsync(fd)
        finally:
            os.close(fd)
            await _close(stream)

    # --- 3. the chunks ---------------------------------------------------------------------------
    async def _fetch_chunks(
        self, partial: PartialBlob, order: Sequence[str], progress: FetchProgress
    ) -> None:
        settings = self._settings
        fetch = _Fetch(
            cid=partial.cid,
            manifest=partial.manifest,
            partial=partial,
            # Off the loop: a content id may name 2^20 chunks (a second's work here).
            scheduler=ChunkScheduler(await trio.to_thread.run_sync(partial.have.missing)),
            window=trio.Semaphore(settings.window_chunks),
            progress=progress,
        )
        if fetch.scheduler.complete:
            return
        # Up to max_fetch_peers peers at once; when one is dropped or banned, the next provider
        # in line takes its place.
        waiting = deque(peer for peer in order if not self._scores.banned(peer))
        active: dict[str, tuple[trio.CancelScope, float]] = {}  # peer: its place, taken when

        async def slot() -> None:
            while waiting and not fetch.scheduler.complete:
                peer = waiting.popleft()
                if self._scores.banned(peer):
                    continue
                with trio.CancelScope() as scope:
                    active[peer] = (scope, trio.current_time())
                    await self._worker(fetch, peer)
                del active[peer]
                if scope.cancelled_caught:  # rotated out for a slower one: to the back of the line
                    waiting.append(peer)

        async with open_task_group() as nursery:
            nursery.start_soon(self._checkpoints, partial)
            async with open_task_group() as workers:
                # Done is done: a peer still owing endgame copies is not waited for.
                nursery.start_soon(_cancel_when_complete, fetch.scheduler, workers.cancel_scope)
                nursery.start_soon(self._rotate_slow_peers, progress, waiting, active)
                for _ in range(min(settings.max_fetch_peers, len(waiting))):
                    workers.start_soon(slot)
            nursery.cancel_scope.cancel()
        if not fetch.scheduler.complete:
            failures = "; ".join(
                f"{peer}: {p.error}" for peer, p in sorted(progress.peers.items()) if p.error
            )
            raise FetchFailed(
                f"blob {format_content_id(partial.cid)}: {fetch.scheduler.remaining} of "
                f"{partial.manifest.chunks} chunks missing after every provider failed ({failures}); "
                "fetch again to resume"
            )

    async def _rotate_slow_peers(
        self, progress: FetchProgress, waiting: deque[str], active: dict[str, tuple[trio.CancelScope, float]]
    ) -> None:
        """Every ``stall_timeout_s`` while providers wait for a place: the peer in a place that
        delivered the fewest chunks in that time, if fewer than a peer window, yields its place
        to the next in line. A provider that trickles chunks just inside the stall deadline is
        never a failure; made-up providers doing it in every place kept an honest one waiting
        for good (a fetch 200 times slower in the review's run). A peer is judged only once it
        has held its place for a whole period."""
        period = self._settings.stall_timeout_s
        delivered_before: dict[str, int] = {}
        while True:
            await trio.sleep(period)
            now = trio.current_time()
            delivered = {
                peer: progress.peer(peer).chunks - delivered_before.get(peer, 0)
                for peer, (_, since) in active.items()
                if now - since >= period
            }
            delivered_before = {peer: state.chunks for peer, state in progress.peers.items()}
            if not waiting or not delivered:
                continue
            slowest = min(delivered, key=lambda peer: delivered[peer])
            if delivered[slowest] < self._settings.peer_window_chunks:
                log.info(
                    "blob fetch: %s delivered %d chunks in %g s; its place goes to the next provider",
                    slowest,
                    delivered[slowest],
                    self._settings.stall_timeout_s,
                )
                active[slowest][0].cancel()

    async def _checkpoints(self, partial: PartialBlob) -> None:
        while True:
            await trio.sleep(self._settings.checkpoint_interval_s)
            bits = partial.have.to_bytes()
            await trio.to_thread.run_sync(partial.checkpoint, bits)

    async def _worker(self, fetch: _Fetch, peer: str) -> None:
        """Fetch chunks from one peer until none are left, retrying it after transient failures."""
        state = fetch.progress.peer(peer)
        failures = 0
        while not fetch.scheduler.complete and not self._scores.banned(peer):
            in_flight: list[int] = []
            fetched_before = state.chunks
            try:
                stream = await self._host.open_stream(peer, BLOB_PROTOCOL_ID)
                try:
                    await self._pump(fetch, peer, stream, in_flight)
                finally:
                    # Closed, not reset, even when cancelled (the fetch done without the copies
                    # this peer still owes, or its place given to another): libp2p does not wake
                    # a server blocked reading a stream that is reset, so each fetch left a
                    # stream, and a place among the server's 4 per peer, open for its idle timeout.
                    with trio.CancelScope(shield=True):
                        await _close(stream)
                return
            except PeerLied as lie:
                self._ban(peer, fetch.progress, lie.error)
                return
            except (P2PError, BlobError, trio.TooSlowError) as exc:
                failures = 1 if state.chunks > fetched_before else failures + 1
                state.failures += 1
                state.error = repr(exc)
                log.info("blob fetch from %s failed (%d in a row): %r", peer, failures, exc)
                if isinstance(exc, BlobNotHere) or failures > self._settings.peer_retries:
                    return
            finally:
                if in_flight:
                    fetch.scheduler.give_back(in_flight)
                    for _ in in_flight:
                        fetch.window.release()
                    in_flight.clear()
            await trio.sleep(RETRY_BASE_S * 2 ** (failures - 1))

    async def _pump(self, fetch: _Fetch, peer: str, stream: Stream, in_flight: list[int]) -> None:
        """Pipeline chunk requests to ``peer`` and verify-and-write the answers, until done.

        ``in_flight`` holds the chunks requested and not yet written; the caller gives them back
        if this raises. The peer window counts chunks requested and not yet received, the
        fetch's window chunks requested and not yet written. Raises :class:`PeerLied` for data
        that does not verify.
        """
        settings = self._settings
        send_ranges, receive_ranges = trio.open_memory_channel[list[int]](settings.peer_window_chunks)
        peer_window = trio.Semaphore(settings.peer_window_chunks)

        # Requests carry a whole run, not a chunk each: a request costs a request and a reply
        # frame each way and a task group on the server, so freeing the peer window one chunk at
        # a time (as chunks arrive) and asking for each at once made every request one chunk.
        # A run is at most half the peer window, so the next request is always queued at the
        # server while it serves the current one.
        run_size = max(1, min(settings.request_chunks, settings.peer_window_chunks // 2))

        async def request_runs() -> None:
            async with send_ranges:
                while True:
                    # Room on this peer for a whole run. Its units come back as this peer's
                    # chunks arrive, so this waits at most for the requests already in flight.
                    for _ in range(run_size):
                        await peer_window.acquire()
                    # Room in the fetch's window (shared by its peers): one chunk, then as many
                    # more of the run as it has free now.
                    await fetch.window.acquire()
                    granted = 1
                    while granted < run_size and _try_acquire(fetch.window):
                        granted += 1
                    run = fetch.scheduler.take(granted, holding=in_flight)
                    for _ in range(run_size - len(run)):
                        peer_window.release()
                    for _ in range(granted - len(run)):
                        fetch.window.release()
                    if not run:
                        if fetch.scheduler.complete:
                            return
                        await fetch.scheduler.changed()
                        continue
                    in_flight.extend(run)
                    await stream.send_frame(BlobRequest.chunks(fetch.cid, run[0], len(run)).encode())
                    await send_ranges.send(run)

        # Received chunks go to one writer task, which verifies and writes them in a worker
        # thread while this task reads the next frames (hashlib and pwrite release the GIL):
        # whatever has arrived meanwhile goes as one batch, one thread hop. The channel holds at
        # most a peer window of chunks, all counted in the fetch's window until written.
        send_chunks, receive_chunks = trio.open_memory_channel[tuple[int, list[bytes]]](
            settings.peer_window_chunks
        )

        async def write_chunks() -> None:
            async for first in receive_chunks:
                batch = [first]
                with contextlib.suppress(trio.WouldBlock, trio.EndOfChannel):
                    while True:
                        batch.append(receive_chunks.receive_nowait())
                written, failure = await trio.to_thread.run_sync(_assemble_and_write, fetch.partial, batch)
                for index, _pieces in batch[:written]:
                    in_flight.remove(index)
                    fetch.window.release()
                    if fetch.partial.mark(index):
                        fetch.scheduler.done(index)
                        fetch.progress.fetched_chunks += 1
                        fetch.progress.fetched_bytes += fetch.manifest.chunk_length(index)
                        fetch.progress.peer(peer).chunks += 1
                if isinstance(failure, ChunkMismatch):
                    raise PeerLied(failure)
                if failure is not None:  # our disk: the whole fetch fails, no peer is blamed
                    index = batch[written][0]
                    raise LocalDiskError(f"writing chunk {index}: {failure.strerror or failure}")

        async with open_task_group() as nursery:
            nursery.start_soon(request_runs)
            nursery.start_soon(write_chunks)
            async with send_chunks:
                async for run in receive_ranges:
                    reply = await _with_stall(settings, functools.partial(_read_reply, stream))
                    if not reply.ok:
                        raise refusal_for(reply.code, reply.message)
                    for index in run:
                        chunk = await _receive_chunk(stream, fetch.manifest, index, settings.stall_timeout_s)
                        peer_window.release()
                        await send_chunks.send((index, chunk))

    def _ban(self, peer: str, progress: FetchProgress, error: ProtocolError | PeerError) -> None:
        self._scores.ban(peer, f"{type(error).__name__}: {error}")
        state = progress.peer(peer)
        state.banned = True
        state.error = repr(error)


async def _cancel_when_complete(scheduler: ChunkScheduler, scope: trio.CancelScope) -> None:
    await scheduler.wait_complete()
    scope.cancel()


def _try_acquire(*semaphores: trio.Semaphore) -> bool:
    """Acquire every semaphore without waiting, or none."""
    taken: list[trio.Semaphore] = []
    for semaphore in semaphores:
        try:
            semaphore.acquire_nowait()
        except trio.WouldBlock:
            for held in taken:
                held.release()
            return False
        taken.append(semaphore)
    return True


async def _with_stall(settings: BlobSettings, read: Callable[[], Awaitable[T]]) -> T:
    """``read()``, failing with :class:`trio.TooSlowError` when the peer stalls."""
    with trio.fail_after(settings.stall_timeout_s):
        return await read()


async def _read_reply(stream: Stream) -> BlobReply:
    """The next reply header. Raises :class:`PeerLied` if it does not decode."""
    raw = await stream.receive_frame(MAX_REPLY_BYTES)
    try:
        return BlobReply.decode(raw)
    except DecodeError as exc:
        raise PeerLied(MalformedBlobMessage(f"malformed reply: {exc.message}")) from None


async def _receive_exact(stream: Stream, length: int) -> bytes:
    """A body frame of exactly ``length`` bytes; any other length is a lie."""
    data = await stream.receive_frame(length)
    if len(data) != length:
        raise PeerLied(MalformedBlobMessage(f"expected a {length}-byte frame, got {len(data)}"))
    return data


async def _receive_chunk(stream: Stream, manifest: BlobManifest, index: int, stall_s: float) -> list[bytes]:
    """Chunk ``index``'s frame, of exactly its length (any other length is a lie), as the pieces
    it arrived in (:meth:`Stream.receive_frame_pieces`): the writer's worker thread assembles
    it, off the event loop. Raises :class:`trio.TooSlowError` when the peer sends too little
    for ``stall_s`` (a slow honest link is never dropped while it keeps sending: a 4 MiB chunk
    at 64 KiB/s takes 64 s; a trickling peer's chunks are fetched elsewhere in the endgame)."""
    length = manifest.chunk_length(index)
    try:
        with progress_deadline(stall_s) as progressed:
            pieces = await stream.receive_frame_pieces(length, on_received=progressed)
    except FrameTooLargeError as exc:  # a chunk longer than the content id allows: a lie
        raise PeerLied(exc) from None
    received = sum(map(len, pieces))
    if received != length:
        raise PeerLied(MalformedBlobMessage(f"expected a {length}-byte frame, got {received}"))
    return pieces


def _assemble_and_write(
    partial: PartialBlob, batch: Sequence[tuple[int, list[bytes]]]
) -> tuple[int, ChunkMismatch | OSError | None]:
    """:meth:`PartialBlob.verify_and_write_many` for chunks received in pieces; runs in a worker
    thread, where joining a chunk's pieces (a large ``bytes.join``) releases the GIL. Each chunk
    is joined as its turn comes, so the batch is never held twice."""
    return partial.verify_and_write_many((index, b"".join(pieces)) for index, pieces in batch)


async def _close(stream: Stream) -> None:
    """Close our side, within :data:`CLOSE_TIMEOUT_S`: a peer that stopped reading (its socket
    buffer full) must not hold the fetch. A stream that cannot close is left to its connection."""
    with trio.move_on_after(CLOSE_TIMEOUT_S), contextlib.suppress(P2PError):
        await stream.close()
