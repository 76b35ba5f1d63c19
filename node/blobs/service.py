"""The node's blob service: the store, the ``/dcent/blob/1.0.0`` server, the fetcher, background
fetches for the RPC, and garbage collection on a timer.

    blobs = BlobService(host=host, root=paths.data / "blobs", settings=BlobSettings())
    await nursery.start(blobs.run)        # opens the store, serves the protocol
    info, new = await blobs.put(Path("/abs/file"), pin=True)
    report = await blobs.fetch(cid, peers=[requester_peer_id])   # waits; resumes what is there
    progress = blobs.start_fetch(cid, peers=())                  # in the background, for the RPC

A fetch of a content id already being fetched joins it rather than starting a second. At most
``max_concurrent_fetches`` run at once (:class:`TooManyFetches` beyond), so a busy RPC caller
cannot make the node hold unbounded chunk windows. ``remove`` cancels a running fetch of the
blob first. Stopping the service (cancelling ``run``) cancels the fetches; what they verified
stays on disk for the next attempt.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from node.blobs.errors import (
    BlobStoreError,
    FetchCancelled,
    LocalDiskError,
    ProtectedPath,
    StoreFull,
    TooManyFetches,
    UnexpectedBlobSize,
)
from node.blobs.fetcher import BlobFetcher, FetchProgress, PeerScores
from node.blobs.server import BlobServer, ChunkObserver
from node.blobs.settings import BlobSettings
from node.blobs.store import BlobInfo, BlobStore, GcReport, wall_clock_ms
from node.blobs.tasks import open_task_group
from node.errors import NodeError
from node.p2p.errors import HostStateError
from node.p2p.interface import Host
from protocol.blobs.merkle import format_content_id
from protocol.blobs.wire import BLOB_PROTOCOL_ID
from protocol.errors import ProtocolError

if TYPE_CHECKING:
    from trio_typing import TaskStatus

log = logging.getLogger("dcent.blobs")

#: Finished fetches kept for ``blob_status`` (the newest; older ones are forgotten).
KEEP_FINISHED = 64


class BlobService:
    """Start with ``await nursery.start(service.run)``; the store is usable once it has started."""

    def __init__(
        self,
        *,
        host: Host,
        root: Path,
        settings: BlobSettings,
        clock_ms: Callable[[], int] = wall_clock_ms,
        on_chunk_sent: ChunkObserver | None = None,
        protected: Sequence[Path] = (),
    ) -> None:
        self.settings = settings
        #: Files and directories that are never put nor exported (the node's keys, its cookie).
        self._protected = tuple(path.resolve() for path in protected)
        self._host = host
        self._root = root
        self._clock_ms = clock_ms
        self._on_chunk_sent = on_chunk_sent
        self._store: BlobStore | None = None
        self._fetcher: BlobFetcher | None = None
        self.server: BlobServer | None = None
        self.scores = PeerScores(settings.ban_s)
        self._nursery: trio.Nursery | None = None
        self._fetches: dict[bytes, tuple[FetchProgress, trio.CancelScope]] = {}
        #: Running fetches that a caller who joined them asked to pin.
        self._pin_when_done: set[bytes] = set()
        self._finished: dict[bytes, FetchProgress] = {}

    @property
    def store(self) -> BlobStore:
        if self._store is None:
            raise HostStateError("the blob service is not running")
        return self._store

    @asynccontextmanager
    async def opened(self) -> AsyncIterator[BlobStore]:
        """Keeps the store open for the block; :meth:`run` inside it serves and leaves the store
        open when it stops. The node opens it around every service that uses it: a job still
        unwinding when the node stops (a fetch's thread finishing, then its mount looked up) must
        find the store open, and a thread must never see it closed under it."""
        if self._store is not None:
            raise HostStateError("the blob store is already open")
        try:
            store = await trio.to_thread.run_sync(
                partial(
                    BlobStore.open, self._root, max_bytes=self.settings.max_bytes, clock_ms=self._clock_ms
                )
            )
        except (OSError, sqlite3.Error) as exc:
            raise LocalDiskError(f"cannot open the blob store at {self._root}: {exc}") from None
        self._store = store
        try:
            yield store
        finally:
            self._store = None
            store.close()

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serves ``/dcent/blob/1.0.0`` and collects garbage; opens the store for its own
        lifetime unless it runs inside :meth:`opened`."""
        if self._store is not None:
            await self._serve(self._store, task_status)
            return
        async with self.opened() as store:
            await self._serve(store, task_status)

    async def _serve(self, store: BlobStore, task_status: TaskStatus[None]) -> None:
        self.server = BlobServer(store, self.settings, on_chunk_sent=self._on_chunk_sent)
        self._fetcher = BlobFetcher(self._host, store, self.settings, self.scores)
        self._host.set_stream_handler(BLOB_PROTOCOL_ID, self.server.handle)
        try:
            async with open_task_group() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._gc_loop)
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None
            self._host.remove_stream_handler(BLOB_PROTOCOL_ID)

    async def _gc_loop(self) -> None:
        while True:
            await trio.sleep(self.settings.gc_interval_s)
            try:
                await self.gc()
            except (OSError, sqlite3.Error) as exc:
                log.error("blob garbage collection failed: %r", exc)

    # --- local operations --------------------------------------------------------------------------
    def _check_unprotected(self, path: Path) -> None:
        """Raises :class:`ProtectedPath` for a path at or under a protected one (links resolved)."""
        if not path.is_absolute():
            return  # the store refuses it with its own error
        resolved = path.resolve()
        for protected in self._protected:
            if resolved == protected or protected in resolved.parents:
                raise ProtectedPath(
                    f"{path}: the node's keys and cookie are never put in or exported from the blob store"
                )

    async def put(self, path: Path, *, pin: bool = True) -> tuple[BlobInfo, bool]:
        """Add a local file; returns its info and whether it is new. See :meth:`BlobStore.put_file`;
        also raises :class:`ProtectedPath`."""
        self._check_unprotected(path)
        store = self.store
        return await trio.to_thread.run_sync(
            partial(store.put_file, path, pin=pin, chunk_size=self.settings.chunk_size)
        )

    async def export(self, cid: bytes, destination: Path) -> BlobInfo:
        """See :meth:`BlobStore.export`; also raises :class:`ProtectedPath`."""
        self._check_unprotected(destination)
        return await trio.to_thread.run_sync(self.store.export, cid, destination)

    async def pin(self, cid: bytes, pinned: bool) -> BlobInfo:
        return await trio.to_thread.run_sync(self.store.pin, cid, pinned)

    async def hold(self, cid: bytes, owner: str, purpose: str) -> None:
        """See :meth:`BlobStore.hold`."""
        await trio.to_thread.run_sync(self.store.hold, cid, owner, purpose)

    async def release(self, owner: str, purpose: str | None = None) -> int:
        """See :meth:`BlobStore.release`."""
        return await trio.to_thread.run_sync(self.store.release, owner, purpose)

    async def remove(self, cid: bytes) -> bool:
        """Delete a blob, cancelling a running fetch of it first. Returns whether it was there."""
        running = self._fetches.get(cid)
        if running is not None:
            progress, scope = running
            scope.cancel()
            await progress.done.wait()
        self._finished.pop(cid, None)
        return await trio.to_thread.run_sync(self.store.remove, cid)

    async def gc(self) -> GcReport:
        """Evict unpinned blobs, least recently used first, down to the cap."""
        try:
            return await trio.to_thread.run_sync(self.store.gc)
        except StoreFull as exc:
            log.warning("blob store over its cap with pinned blobs alone: %s", exc.message)
            used = await trio.to_thread.run_sync(self.store.used_bytes)
            return GcReport((), 0, used, self.store.max_bytes)

    def list(self) -> list[BlobInfo]:
        return self.store.list_blobs()

    def status(self, cid: bytes) -> dict[str, object] | None:
        """A running or recently finished fetch of ``cid`` merged with what the store holds, or
        None if neither knows it."""
        running = self._fetches.get(cid)
        progress = running[0] if running is not None else self._finished.get(cid)
        info = self.store.get(cid)
        if progress is None and info is None:
            return None
        document: dict[str, object] = {
            "cid": format_content_id(cid),
            "state": info.state if info is not None else "absent",
            "pinned": bool(info and info.pinned),
            "fetch": progress.to_json() if progress is not None else None,
        }
        if info is not None:
            document.update(
                size=info.manifest.size, chunks=info.manifest.chunks, have_chunks=info.have_chunks
            )
        if running is not None:
            document["state"] = "fetching"
            document["have_chunks"] = progress.have_chunks if progress is not None else 0
        return document

    # --- fetching ---------------------------------------------------------------------------------
    def start_fetch(
        self, cid: bytes, *, peers: Sequence[str] = (), pin: bool = False, expected_size: int | None = None
    ) -> FetchProgress:
        """Fetch ``cid`` in the background (or join the running fetch of it); returns its progress.

        Raises :class:`TooManyFetches`, :class:`HostStateError` when the service is not running.
        """
        running = self._fetches.get(cid)
        if running is not None:
            # Joined: the running fetch pins at its end if any of its callers asked (a job's
            # output must not be left unpinned because an unpinned fetch of it was running).
            if pin:
                self._pin_when_done.add(cid)
            return running[0]
        if self._nursery is None:
            raise HostStateError("the blob service is not running")
        if len(self._fetches) >= self.settings.max_concurrent_fetches:
            raise TooManyFetches(
                f"{len(self._fetches)} fetches are running, the most this node runs at once; retry later"
            )
        progress = FetchProgress(cid)
        scope = trio.CancelScope()
        self._fetches[cid] = (progress, scope)
        self._finished.pop(cid, None)
        self._nursery.start_soon(self._run_fetch, cid, tuple(peers), pin, progress, scope, expected_size)
        return progress

    async def fetch(
        self, cid: bytes, *, peers: Sequence[str] = (), pin: bool = False, expected_size: int | None = None
    ) -> FetchProgress:
        """Fetch ``cid`` and wait for the end. Returns the finished progress; raises its error
        (:class:`NoProviders`, :class:`FetchFailed`, :class:`StoreFull`, :class:`FetchCancelled`, ...)."""
        # A checkpoint first: a caller cancelled with the node (its service already stopped) gets
        # Cancelled here, not the "not running" error a live caller would be told.
        await trio.lowlevel.checkpoint()
        progress = self.start_fetch(cid, peers=peers, pin=pin, expected_size=expected_size)
        await progress.done.wait()
        if progress.error is not None:
            raise progress.error
        # A joined fetch was started by another caller, without our size to check.
        if expected_size is not None and progress.size != expected_size:
            raise UnexpectedBlobSize(
                f"blob {format_content_id(cid)} is {progress.size} bytes, not the {expected_size} expected"
            )
        return progress

    async def _run_fetch(
        self,
        cid: bytes,
        peers: tuple[str, ...],
        pin: bool,
        progress: FetchProgress,
        scope: trio.CancelScope,
        expected_size: int | None = None,
    ) -> None:
        assert self._fetcher is not None
        try:
            with scope:
                await self._fetcher.fetch(cid, peers=peers, progress=progress, expected_size=expected_size)
                if pin or cid in self._pin_when_done:
                    await self.pin(cid, True)
            if scope.cancelled_caught:
                progress.state = "cancelled"
                progress.error = FetchCancelled(f"the fetch of {format_content_id(cid)} was cancelled")
        except (NodeError, ProtocolError) as exc:
            progress.state = "failed"
            progress.error = exc
            log.warning("fetch of blob %s failed: %r", format_content_id(cid), exc)
        except (OSError, EOFError, sqlite3.Error) as exc:  # our disk or index: fail the fetch, not the node
            progress.state = "failed"
            progress.error = LocalDiskError(f"{type(exc).__name__}: {exc}")
            log.error("fetch of blob %s failed on our side: %r", format_content_id(cid), exc)
        finally:
            if progress.state not in ("complete", "failed", "cancelled"):
                progress.state = "cancelled"  # the service itself is stopping
                progress.error = FetchCancelled("the node stopped during the fetch")
            del self._fetches[cid]
            self._pin_when_done.discard(cid)
            self._finished[cid] = progress
            while len(self._finished) > KEEP_FINISHED:
                del self._finished[next(iter(self._finished))]
            progress.done.set()
        if progress.state == "complete":
            try:
                await self.gc()
            except BlobStoreError as exc:
                log.warning("gc after a fetch failed: %s", exc.message)
