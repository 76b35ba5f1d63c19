"""The serving side of ``/dcent/blob/1.0.0``: answers have / leaves / chunks from the blob store.

One stream serves any number of requests, one at a time and in order (see
:mod:`protocol.blobs.wire`): a client that pipelines requests is held back by yamux's flow
control, never by our memory. Only complete blobs are served.

Bounds, and the attack each one answers:

- *Oversized or garbage frames*: a request frame is read with the limit
  :data:`~protocol.blobs.wire.MAX_REQUEST_BYTES` named up front (a larger length prefix resets the
  stream before its body is read); a request that does not decode, or names an unknown op or a
  bad range, gets a typed refusal (:class:`BadBlobRequest`, :class:`RangeOutOfBlob`) and, for
  garbage, the end of the stream.
- *A peer opening streams to pin our memory or file descriptors*: at most
  ``max_streams_per_peer`` streams per peer and ``max_streams`` in all; when the server is full
  a new stream takes the place of the oldest stream whose client lately took less than
  ``evict_below_bytes_per_s`` from us, else it is answered with :class:`BlobBusy` and closed
  (:mod:`node.blobs.places`: places are kept by use, not by presence). Each stream holds at most
  two chunks in memory (one on the wire, the next read ahead) and one pair of open files, and
  all streams together at most ``max_send_bytes`` of chunks read and not yet sent (64 streams of
  4 MiB chunks were 512 MiB).
- *A peer opening a stream and going silent* (slowloris), or *asking and not reading*: a stream
  with no request for ``idle_timeout_s``, or whose client takes no frame for as long, is dropped,
  freeing its slot. Only a request we serve data for (leaves, chunks, the manifest of a blob we
  hold) keeps a stream alive: a few made-up identities asking "have" for random content ids
  every 29 s held every slot, and each honest fetcher was told "busy"; one asking for a blob we
  hold every 29 s keeps its stream only until a newcomer needs the place. (If the client stops reading altogether, libp2p 0.8.1 cannot close that
  connection either: its yamux writes the close under the lock the blocked send holds. That
  costs the connection, not our slots.)
- *A peer asking for a blob we do not have, over and over*: "not here" is one small reply from
  the index; nothing is fetched on a peer's behalf.
- *Serving rotten data unknowingly*: the fetcher verifies every chunk, and a lie costs the
  liar, not us; ``dcent blob get --out`` re-verifies local copies on export.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable
from functools import partial

import trio

from node.blobs.deadlines import progress_deadline
from node.blobs.errors import UnknownBlob
from node.blobs.places import RECLAIM_EVERY_S, Place, Places, SendBudget
from node.blobs.reader import BlobReader
from node.blobs.settings import BlobSettings
from node.blobs.store import BlobStore
from node.blobs.tasks import open_task_group
from node.p2p.errors import StreamClosedError
from node.p2p.framing import FRAME_HEADER, Stream
from protocol.blobs.errors import BadBlobRequest, BlobBusy, BlobNotHere, BlobRefused, RangeOutOfBlob
from protocol.blobs.wire import (
    MAX_REQUEST_BYTES,
    OP_CHUNKS,
    OP_HAVE,
    REPLY_OK_BYTES,
    BlobReply,
    BlobRequest,
)
from protocol.encoding import DecodeError

log = logging.getLogger("dcent.blobs.server")

#: Called after each chunk is sent: (peer id, content id, chunk index). For metrics and tests.
ChunkObserver = Callable[[str, bytes, int], None]


class BlobServer:
    """The stream handler for ``/dcent/blob/1.0.0``; register :meth:`handle` on the host."""

    def __init__(
        self, store: BlobStore, settings: BlobSettings, *, on_chunk_sent: ChunkObserver | None = None
    ):
        self._store = store
        self._settings = settings
        self._on_chunk_sent = on_chunk_sent
        self.places = Places(
            max_streams=settings.max_streams,
            max_streams_per_peer=settings.max_streams_per_peer,
            evict_below_bytes_per_s=settings.evict_below_bytes_per_s,
        )
        self.send_budget = SendBudget(settings.max_send_bytes)
        self._reclaimed_at = -math.inf
        #: Totals since start, for metrics.
        self.chunks_sent = 0
        self.bytes_sent = 0
        self.refusals: Counter[int] = Counter()

    @property
    def open_streams(self) -> int:
        return len(self.places)

    async def handle(self, stream: Stream) -> None:
        """Serve one stream until the client closes it, goes idle, sends garbage, or (taking
        little lately, while the server is full) yields its place to a newcomer."""
        peer = stream.peer_id
        settings = self._settings
        place = self.places.take(peer, stream.remote_host)
        if place is None:
            with trio.move_on_after(settings.idle_timeout_s):
                await self._refuse(stream, BlobBusy("too many blob streams open; retry later"))
            return
        slot = _ReaderSlot()
        idle_until = trio.current_time() + settings.idle_timeout_s
        try:
            with place.scope:
                await self._serve(stream, place, slot, idle_until)
            if place.evicted:
                log.debug("blob stream from %s took little lately; evicted for another", peer)
                await stream.reset()  # a frame may have been cut short on the wire
        finally:
            slot.swap(None)
            self.places.give_back(place)

    async def _serve(self, stream: Stream, place: Place, slot: _ReaderSlot, idle_until: float) -> None:
        peer = stream.peer_id
        settings = self._settings
        while True:
            raw = None
            with trio.move_on_at(idle_until):
                try:
                    raw = await stream.receive_frame(MAX_REQUEST_BYTES)
                except StreamClosedError:
                    return  # the client is done
            if raw is None:
                log.debug("blob stream from %s idle for %s s; closed", peer, settings.idle_timeout_s)
                return
            try:
                request = BlobRequest.decode(raw)
            except DecodeError as exc:
                await self._refuse(stream, BadBlobRequest(f"malformed request: {exc.message}"), place)
                return
            try:
                if await self._answer(stream, request, slot, place):
                    idle_until = trio.current_time() + settings.idle_timeout_s
            except trio.TooSlowError:
                log.info("blob stream to %s: the client stopped reading; dropped", peer)
                return
            except (OSError, EOFError) as exc:  # our disk, not the peer: log, drop the stream
                log.warning("serving blob %s to %s failed: %s", request.cid.hex(), peer, exc)
                await stream.reset()
                return

    async def _send(self, stream: Stream, frame: bytes, place: Place | None = None) -> None:
        """Send one frame; raises :class:`trio.TooSlowError` if the client does not take it
        within ``idle_timeout_s`` (a client that stops reading must not hold its place). While
        the frame waits for the client, the stream is its client's to lose (see places)."""
        with trio.fail_after(self._settings.idle_timeout_s):
            await stream.send_frame(frame)
        if place is not None:
            place.took(len(frame))

    async def _refuse(self, stream: Stream, refusal: BlobRefused, place: Place | None = None) -> None:
        self.refusals[refusal.code] += 1
        await self._send(stream, BlobReply(refusal.code, refusal.message).encode(), place)

    async def _answer(self, stream: Stream, request: BlobRequest, slot: _ReaderSlot, place: Place) -> bool:
        """Answer one request; returns whether it was served (not refused). The blob's reader
        stays in ``slot`` for the next request."""
        reader = slot.reader
        if reader is None or reader.info.cid != request.cid:
            slot.swap(None)
            try:
                with place.reading_disk():
                    reader = await trio.to_thread.run_sync(
                        partial(self._store.reader, request.cid, touch=False)
                    )
            except UnknownBlob:
                await self._refuse(stream, BlobNotHere("no complete copy of this blob here"), place)
                return False
            slot.swap(reader)
        manifest = reader.manifest
        if request.op == OP_HAVE:
            await self._send(stream, REPLY_OK_BYTES, place)
            await self._send(stream, manifest.encode(), place)
            return True
        end = request.start + request.count
        if end > manifest.chunks:
            await self._refuse(
                stream, RangeOutOfBlob(f"{request.op} {request.start}..{end - 1} of {manifest.chunks}"), place
            )
            return False
        if request.op == OP_CHUNKS:
            await self._send(stream, REPLY_OK_BYTES, place)
            await self._send_chunks(stream, request, reader, place)
        else:
            with place.reading_disk():
                leaves = await trio.to_thread.run_sync(reader.read_leaves, request.start, request.count)
            await self._send(stream, REPLY_OK_BYTES, place)
            await self._send(stream, leaves, place)
        return True

    async def _send_chunks(
        self, stream: Stream, request: BlobRequest, reader: BlobReader, place: Place
    ) -> None:
        """Send the requested chunks, reading the next one from disk (in a worker thread) while
        the current one is on the wire: at most two chunks of this stream in memory. Each chunk
        is read straight into its frame (prefix room, then the bytes) and sent in one write.
        Each chunk holds its bytes of the node's send budget from before its read until it has
        left."""
        read, sendable = trio.open_memory_channel[tuple[int, bytearray, int]](0)
        budget = self.send_budget

        async def read_ahead() -> None:
            async with read:
                for index in range(request.start, request.start + request.count):
                    length = reader.manifest.chunk_length(index)
                    taken = budget.try_acquire(length) or await self._wait_for_memory(length)
                    place.held_bytes += taken
                    try:
                        with place.reading_disk():
                            frame = await trio.to_thread.run_sync(reader.read_chunk_frame, index)
                        await read.send((index, frame, taken))
                    except BaseException:
                        place.held_bytes -= taken
                        budget.release(taken)
                        raise

        async with open_task_group() as nursery:
            nursery.start_soon(read_ahead)
            async with sendable:
                async for index, frame, taken in sendable:
                    try:
                        await self._send_watched(stream, frame, place)
                    finally:
                        place.held_bytes -= taken
                        budget.release(taken)
                    self.chunks_sent += 1
                    self.bytes_sent += len(frame) - FRAME_HEADER.size
                    if self._on_chunk_sent is not None:
                        self._on_chunk_sent(stream.peer_id, request.cid, index)

    async def _send_watched(self, stream: Stream, frame: bytearray, place: Place) -> None:
        """Send a chunk frame, counting what leaves as the client's progress; raises
        :class:`trio.TooSlowError` once the client takes too little for ``idle_timeout_s`` (not
        after ``idle_timeout_s`` in all: a 4 MiB chunk to a client reading 64 KiB/s takes 64 s)."""
        with progress_deadline(self._settings.idle_timeout_s) as progressed:

            def sent(count: int) -> None:
                place.took(count)
                progressed(count)

            await stream.send_frame_buffer(frame, on_sent=sent)

    async def _wait_for_memory(self, size: int) -> int:
        """The send budget's bytes for a chunk of ``size``, in turn; meanwhile, every
        ``RECLAIM_EVERY_S`` (once for all waiters), the stream holding memory that would be
        evicted first is (see :mod:`node.blobs.places`)."""
        async with trio.open_nursery() as nursery:

            async def reclaim() -> None:
                while True:
                    await trio.sleep(RECLAIM_EVERY_S)
                    # Every waiter runs this; one eviction a period is done for all of them.
                    now = trio.current_time()
                    if now - self._reclaimed_at >= RECLAIM_EVERY_S:
                        self._reclaimed_at = now
                        self.places.evict_for_memory()

            nursery.start_soon(reclaim)
            taken = await self.send_budget.acquire(size)
            nursery.cancel_scope.cancel()
        return taken


class _ReaderSlot:
    """The open blob of one stream; closed when replaced and when the stream ends."""

    def __init__(self) -> None:
        self.reader: BlobReader | None = None

    def swap(self, reader: BlobReader | None) -> None:
        if self.reader is not None:
            self.reader.close()
        self.reader = reader
