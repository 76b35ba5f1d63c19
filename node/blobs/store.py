"""The blob store in the node's home: ``<home>/data/blobs``, content-addressed, with an index.

Layout::

    index.db                       SQLite (WAL, synchronous=FULL): one row per blob
    objects/<cc>/<cid>             a complete blob's bytes (sparse where they are zero)
    objects/<cc>/<cid>.leaves      its leaf hashes, 32 bytes per chunk (what the server sends)
    partial/<cid>/data|leaves|have a fetch in progress: the bytes so far, the verified leaf list,
                                   the bitmap of chunks verified and written
    tmp/                           puts being written (emptied at every open)

A complete blob's files are written under ``tmp/`` and renamed into ``objects/`` only once the
content id is known, so ``objects/`` never holds a file that is not exactly its content id's
bytes; the index row is written after the rename, and an open drops files without a row (a crash
in between) and rows without files. Every method is synchronous and thread-safe (one lock over
the index); the async layers call them through ``trio.to_thread``.

**Holds.** Besides the operator's pin, a blob can be *held*: by an owner (a job id) for a
purpose (``input``: it runs from it; ``output``: its requester has yet to fetch it). A held blob
is never evicted, whatever its pin says, and the holds are rows in the index: they survive a
restart, so whoever owns them can release them when it learns the job is over (the market does
at start for jobs that are no longer live). Holds and pins are independent: a job releasing its
hold never unpins what the operator pinned, and the operator unpinning never exposes a blob a job
holds. At most :data:`MAX_HOLDS` rows (:class:`TooManyHolds`).

**Size cap and garbage collection.** The store counts every blob's size plus its leaf list,
complete or partial, plus the space reserved by puts in progress. Before a put or a fetch starts,
and whenever :meth:`BlobStore.gc` runs, unpinned, unheld blobs that no fetch is writing are evicted, least
recently used first (a put, fetch or export uses a blob; serving it to peers does not, so
peers cannot steer which of our blobs goes first), until the total is under
``max_bytes``. If evicting every such blob would not make room, nothing is evicted and the new
blob is refused (:class:`StoreFull`): a pinned blob is never evicted, and a peer can never make
us evict what we pinned, because only our own puts and fetches reserve space.

Attacks this is designed against: a peer cannot write anything here (only our fetcher writes,
and only chunks that verified against the content id we asked for); a request for a huge blob
is bounded by the cap before a byte is fetched; a local caller gets typed errors for bad paths
and existing export destinations, never an overwrite.
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from node.blobs.errors import (
    BlobSourceError,
    BlobStoreError,
    ExportError,
    StoredBlobCorrupt,
    StoreFull,
    TooManyHolds,
    UnknownBlob,
)
from node.blobs.files import fsync_directory, read_sparse, write_sparse
from node.blobs.partial import PartialBlob
from node.blobs.reader import BlobReader
from protocol.blobs.errors import ChunkMismatch, MalformedManifest
from protocol.blobs.merkle import (
    HASH_LEN,
    MAX_BLOB_BYTES,
    MAX_CHUNKS,
    BlobManifest,
    MerkleAccumulator,
    chunk_count,
    format_content_id,
    leaf_hash,
)

log = logging.getLogger("dcent.blobs")

COMPLETE = "complete"
PARTIAL = "partial"
#: The most holds the index records (each job holds its inputs and outputs; jobs at once are
#: bounded by the GPUs sold, and the market releases the holds of jobs that are over).
MAX_HOLDS = 65_536
#: What a hold keeps a blob for.
HOLD_INPUT = "input"
HOLD_OUTPUT = "output"
#: Serving a blob refreshes its last-use time at most this often (an index write each time).
TOUCH_INTERVAL_MS = 60_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS blobs (
    cid BLOB PRIMARY KEY,
    size INTEGER NOT NULL,
    chunk_size INTEGER NOT NULL,
    root BLOB NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('complete', 'partial')),
    pinned INTEGER NOT NULL,
    added_ms INTEGER NOT NULL,
    used_ms INTEGER NOT NULL,
    have_chunks INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS holds (
    owner TEXT NOT NULL,
    purpose TEXT NOT NULL,
    cid BLOB NOT NULL,
    PRIMARY KEY (owner, purpose, cid)
);
CREATE INDEX IF NOT EXISTS holds_by_cid ON holds (cid)
"""


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


def stored_bytes(manifest: BlobManifest) -> int:
    """What a blob costs against the cap: its bytes and its leaf list."""
    return manifest.size + manifest.leaves_bytes


@dataclass(frozen=True, slots=True)
class BlobInfo:
    """One blob as the index knows it."""

    cid: bytes
    manifest: BlobManifest
    state: str
    pinned: bool
    added_ms: int
    used_ms: int
    have_chunks: int

    @property
    def complete(self) -> bool:
        return self.state == COMPLETE

    @property
    def stored_bytes(self) -> int:
        return stored_bytes(self.manifest)

    def to_json(self) -> dict[str, object]:
        return {
            "cid": format_content_id(self.cid),
            "size": self.manifest.size,
            "chunk_size": self.manifest.chunk_size,
            "chunks": self.manifest.chunks,
            "root": self.manifest.root.hex(),
            "state": self.state,
            "pinned": self.pinned,
            "have_chunks": self.have_chunks,
            "added_ms": self.added_ms,
            "used_ms": self.used_ms,
        }


@dataclass(frozen=True, slots=True)
class GcReport:
    evicted: tuple[bytes, ...]
    freed_bytes: int
    used_bytes: int
    max_bytes: int

    def to_json(self) -> dict[str, object]:
        return {
            "evicted": [format_content_id(cid) for cid in self.evicted],
            "freed_bytes": self.freed_bytes,
            "used_bytes": self.used_bytes,
            "max_bytes": self.max_bytes,
        }


class BlobStore:
    """The store. Open with :meth:`open`; every method is thread-safe."""

    def __init__(self, root: Path, db: sqlite3.Connection, *, max_bytes: int, clock_ms: Callable[[], int]):
        self.root = root
        self.max_bytes = max_bytes
        self._db = db
        self._clock_ms = clock_ms
        self._lock = threading.RLock()
        self._reserved = 0
        self._fetching: set[bytes] = set()
        self._touched: dict[bytes, int] = {}

    # --- opening ---------------------------------------------------------------------------------
    @classmethod
    def open(cls, root: Path, *, max_bytes: int, clock_ms: Callable[[], int] = wall_clock_ms) -> BlobStore:
        """Open (creating) the store under ``root`` and reconcile the index with the files.

        Raises :class:`OSError` / :class:`sqlite3.Error` if the directory or database is unusable.
        """
        for sub in ("objects", "partial", "tmp"):
            (root / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
        db = sqlite3.connect(root / "index.db", check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(_SCHEMA)
        store = cls(root, db, max_bytes=max_bytes, clock_ms=clock_ms)
        store._recover()
        return store

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _recover(self) -> None:
        shutil.rmtree(self.root / "tmp", ignore_errors=True)
        (self.root / "tmp").mkdir(mode=0o700, exist_ok=True)
        rows = {info.cid: info for info in self.list_blobs()}
        for cid, info in rows.items():
            ok = (
                self._data_path(cid).is_file() and self._leaves_path(cid).is_file()
                if info.complete
                else (self._partial_dir(cid) / "data").is_file()
            )
            if not ok:
                log.warning("blob %s: files missing; dropped from the index", format_content_id(cid))
                self._delete_row(cid)
        rows = {info.cid: info for info in self.list_blobs()}
        known = {format_content_id(cid) for cid, info in rows.items() if info.complete}
        for shard in (self.root / "objects").iterdir():
            for path in shard.iterdir():
                if path.name.removesuffix(".leaves") not in known:
                    path.unlink()  # a crash between the rename and the index row
        partial = {format_content_id(cid) for cid, info in rows.items() if not info.complete}
        for path in (self.root / "partial").iterdir():
            if path.name not in partial:
                shutil.rmtree(path, ignore_errors=True)

    # --- paths -----------------------------------------------------------------------------------
    def _data_path(self, cid: bytes) -> Path:
        text = format_content_id(cid)
        return self.root / "objects" / text[:2] / text

    def _leaves_path(self, cid: bytes) -> Path:
        text = format_content_id(cid)
        return self.root / "objects" / text[:2] / f"{text}.leaves"

    def _partial_dir(self, cid: bytes) -> Path:
        return self.root / "partial" / format_content_id(cid)

    # --- the index -------------------------------------------------------------------------------
    @staticmethod
    def _info(row: tuple[bytes, int, int, bytes, str, int, int, int, int]) -> BlobInfo:
        cid, size, chunk_size, root, state, pinned, added, used, have = row
        return BlobInfo(cid, BlobManifest(size, chunk_size, root), state, bool(pinned), added, used, have)

    _COLUMNS = "cid, size, chunk_size, root, state, pinned, added_ms, used_ms, have_chunks"

    def get(self, cid: bytes) -> BlobInfo | None:
        with self._lock:
            row = self._db.execute(f"SELECT {self._COLUMNS} FROM blobs WHERE cid = ?", (cid,)).fetchone()
        return self._info(row) if row else None

    def list_blobs(self) -> list[BlobInfo]:
        """Every blob, complete and partial, by content id."""
        with self._lock:
            rows = self._db.execute(f"SELECT {self._COLUMNS} FROM blobs ORDER BY cid").fetchall()
        return [self._info(row) for row in rows]

    def used_bytes(self) -> int:
        """What the stored blobs (complete and partial) and the puts in progress take of the cap."""
        with self._lock:
            return sum(info.stored_bytes for info in self.list_blobs()) + self._reserved

    def _insert(self, cid: bytes, manifest: BlobManifest, state: str, pinned: bool, have: int) -> None:
        now = self._clock_ms()
        self._db.execute(
            f"INSERT OR REPLACE INTO blobs ({self._COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (cid, manifest.size, manifest.chunk_size, manifest.root, state, int(pinned), now, now, have),
        )

    def _delete_row(self, cid: bytes) -> None:
        self._db.execute("DELETE FROM blobs WHERE cid = ?", (cid,))
        self._db.execute("DELETE FROM holds WHERE cid = ?", (cid,))
        self._touched.pop(cid, None)

    def touch(self, cid: bytes) -> None:
        """Record a use of the blob (for least-recently-used eviction), at most once a minute."""
        now = self._clock_ms()
        with self._lock:
            if now - self._touched.get(cid, -TOUCH_INTERVAL_MS) < TOUCH_INTERVAL_MS:
                return
            self._touched[cid] = now
            self._db.execute("UPDATE blobs SET used_ms = ? WHERE cid = ?", (now, cid))

    # --- the cap ---------------------------------------------------------------------------------
    def _make_room(self, need: int) -> list[bytes]:
        """Evict unpinned, idle blobs (least recently used first) until ``need`` more bytes fit.
        Call with the lock held. Raises :class:`StoreFull` (evicting nothing) if they never would."""
        infos = self.list_blobs()
        used = sum(info.stored_bytes for info in infos) + self._reserved
        if used + need <= self.max_bytes:
            return []
        held = {row[0] for row in self._db.execute("SELECT DISTINCT cid FROM holds")}
        candidates = sorted(
            (
                info
                for info in infos
                if not info.pinned and info.cid not in self._fetching and info.cid not in held
            ),
            key=lambda info: (info.used_ms, info.cid),
        )
        if used + need - sum(info.stored_bytes for info in candidates) > self.max_bytes:
            raise StoreFull(
                f"{need} more bytes do not fit under the blob store's cap of {self.max_bytes} bytes: "
                f"{used} are used, and pinned, held or in-progress blobs cannot be evicted"
            )
        evicted = []
        for info in candidates:
            if used + need <= self.max_bytes:
                break
            self._remove_files(info)
            self._delete_row(info.cid)
            used -= info.stored_bytes
            evicted.append(info.cid)
            log.info("blob %s evicted (%d bytes)", format_content_id(info.cid), info.stored_bytes)
        return evicted

    def gc(self) -> GcReport:
        """Evict unpinned, idle blobs, least recently used first, until the store is under its cap.
        Raises :class:`StoreFull` (evicting nothing) if pinned and in-progress blobs alone exceed it."""
        with self._lock:
            before = self.used_bytes()
            evicted = self._make_room(0)
            after = self.used_bytes()
        return GcReport(tuple(evicted), before - after, after, self.max_bytes)

    @contextmanager
    def _reservation(self, need: int) -> Iterator[None]:
        with self._lock:
            self._make_room(need)
            self._reserved += need
        try:
            yield
        finally:
            with self._lock:
                self._reserved -= need

    # --- put -------------------------------------------------------------------------------------
    def put_file(self, path: Path, *, pin: bool, chunk_size: int) -> tuple[BlobInfo, bool]:
        """Add the file at ``path`` (absolute); returns its info and whether it was new.

        Reads the file once: chunks, leaf hashes and the root are computed while it is copied in.
        Raises :class:`BlobSourceError`, :class:`StoreFull`, :class:`MalformedManifest` (a chunk
        size out of range).
        """
        if not path.is_absolute():
            raise BlobSourceError(f"{path}: give an absolute path (the node resolves it, not the caller)")
        try:
            source = os.open(path, os.O_RDONLY)
        except OSError as exc:
            raise BlobSourceError(f"{path}: {exc.strerror}") from None
        try:
            return self.put_open_file(source, path, pin=pin, chunk_size=chunk_size)
        finally:
            os.close(source)

    def put_open_file(
        self,
        source: int,
        path: Path,
        *,
        pin: bool,
        chunk_size: int,
        hold: tuple[str, str] | None = None,
    ) -> tuple[BlobInfo, bool]:
        """Add the regular file open at ``source`` (``path`` names it in errors): what a provider
        uses for a job's outputs, opened without following links. ``hold``: ``(owner, purpose)``
        recorded with the blob, in the same step (garbage collection never sees it unheld).
        Raises as :meth:`put_file`, and :class:`TooManyHolds`."""
        status = os.fstat(source)
        if not stat.S_ISREG(status.st_mode):
            raise BlobSourceError(f"{path}: not a regular file")
        size = status.st_size
        if size > MAX_BLOB_BYTES or chunk_count(size, chunk_size) > MAX_CHUNKS:
            raise BlobSourceError(f"{path}: {size} bytes is more than a blob may hold")
        need = size + chunk_count(size, chunk_size) * HASH_LEN
        with self._reservation(need):
            return self._copy_in(path, source, size, chunk_size, pin=pin, hold=hold)

    def data_path(self, cid: bytes) -> Path:
        """Where a complete blob's bytes are (what a job's read-only mount of it binds). Raises
        :class:`UnknownBlob` for a blob that is not complete here."""
        info = self.get(cid)
        if info is None or not info.complete:
            raise UnknownBlob(f"no complete blob {format_content_id(cid)} in the store")
        return self._data_path(cid)

    def _copy_in(
        self,
        path: Path,
        source: int,
        size: int,
        chunk_size: int,
        *,
        pin: bool,
        hold: tuple[str, str] | None = None,
    ) -> tuple[BlobInfo, bool]:
        tmp = self.root / "tmp"
        data_fd, data_name = tempfile.mkstemp(dir=tmp, prefix="put-")
        leaves_fd, leaves_name = tempfile.mkstemp(dir=tmp, prefix="put-", suffix=".leaves")
        try:
            try:
                manifest = _hash_and_copy(path, source, data_fd, leaves_fd, size, chunk_size)
            except OSError as exc:
                raise BlobSourceError(f"{path}: copying into the store failed: {exc.strerror}") from None
            finally:
                os.close(data_fd)
                os.close(leaves_fd)
        except BaseException:
            os.unlink(data_name)
            os.unlink(leaves_name)
            raise
        cid = manifest.content_id()
        with self._lock:
            existing = self.get(cid)
            if existing is not None and existing.complete:
                os.unlink(data_name)
                os.unlink(leaves_name)
                if pin and not existing.pinned:
                    self.pin(cid, True)
                if hold is not None:
                    self.hold(cid, *hold)
                self.touch(cid)
                return self.get(cid) or existing, False
            if existing is not None and cid not in self._fetching:
                self._remove_files(existing)  # a stale partial fetch: we now have it all
            self._install(cid, Path(data_name), Path(leaves_name))
            self._insert(cid, manifest, COMPLETE, pin, manifest.chunks)
            if hold is not None:
                self.hold(cid, *hold)
            info = self.get(cid)
        assert info is not None
        log.info("blob %s put: %d bytes, %d chunks", format_content_id(cid), size, manifest.chunks)
        return info, True

    def _install(self, cid: bytes, data: Path, leaves: Path) -> None:
        target = self._data_path(cid)
        target.parent.mkdir(exist_ok=True, mode=0o700)
        os.replace(leaves, self._leaves_path(cid))
        os.replace(data, target)
        fsync_directory(target.parent)

    # --- pin, remove -----------------------------------------------------------------------------
    def pin(self, cid: bytes, pinned: bool) -> BlobInfo:
        """Pin (never evicted) or unpin a blob, complete or partial. Raises :class:`UnknownBlob`."""
        with self._lock:
            if self.get(cid) is None:
                raise UnknownBlob(f"no blob {format_content_id(cid)} in the store")
            self._db.execute("UPDATE blobs SET pinned = ? WHERE cid = ?", (int(pinned), cid))
            info = self.get(cid)
        assert info is not None
        return info

    def hold(self, cid: bytes, owner: str, purpose: str) -> None:
        """Keep a blob (complete or partial) from eviction for ``owner``'s ``purpose`` until
        :meth:`release`; holding it again is a no-op. Raises :class:`UnknownBlob`,
        :class:`TooManyHolds`."""
        with self._lock:
            if self.get(cid) is None:
                raise UnknownBlob(f"no blob {format_content_id(cid)} in the store")
            exists = self._db.execute(
                "SELECT 1 FROM holds WHERE owner = ? AND purpose = ? AND cid = ?", (owner, purpose, cid)
            ).fetchone()
            if exists:
                return
            (count,) = self._db.execute("SELECT COUNT(*) FROM holds").fetchone()
            if count >= MAX_HOLDS:
                raise TooManyHolds(f"the blob store already records {count} holds, the most it keeps")
            self._db.execute(
                "INSERT INTO holds (owner, purpose, cid) VALUES (?, ?, ?)", (owner, purpose, cid)
            )

    def release(self, owner: str, purpose: str | None = None) -> int:
        """Drop ``owner``'s holds (of one purpose, or all); returns how many. Garbage collection
        may then evict what nothing else keeps."""
        with self._lock:
            if purpose is None:
                cursor = self._db.execute("DELETE FROM holds WHERE owner = ?", (owner,))
            else:
                cursor = self._db.execute(
                    "DELETE FROM holds WHERE owner = ? AND purpose = ?", (owner, purpose)
                )
            return cursor.rowcount

    def holds(self) -> dict[str, dict[str, list[bytes]]]:
        """Every hold: owner -> purpose -> content ids, all sorted."""
        with self._lock:
            rows = self._db.execute("SELECT owner, purpose, cid FROM holds ORDER BY owner, purpose, cid")
            found: dict[str, dict[str, list[bytes]]] = {}
            for owner, purpose, cid in rows.fetchall():
                found.setdefault(owner, {}).setdefault(purpose, []).append(cid)
        return found

    def remove(self, cid: bytes) -> bool:
        """Delete a blob (complete, or a partial one no fetch is writing). Returns whether it was
        there. Raises :class:`BlobStoreError` while a fetch writes it (cancel that first)."""
        with self._lock:
            info = self.get(cid)
            if info is None:
                return False
            if cid in self._fetching:
                raise BlobStoreError(
                    f"blob {format_content_id(cid)} is being fetched; cancel the fetch first"
                )
            self._remove_files(info)
            self._delete_row(cid)
        return True

    def _remove_files(self, info: BlobInfo) -> None:
        if info.complete:
            for path in (self._data_path(info.cid), self._leaves_path(info.cid)):
                path.unlink(missing_ok=True)
        else:
            shutil.rmtree(self._partial_dir(info.cid), ignore_errors=True)

    # --- read ------------------------------------------------------------------------------------
    def reader(self, cid: bytes, *, touch: bool = True) -> BlobReader:
        """Open a complete blob for reading. ``touch``: count it as a use for eviction order
        (the server does not: peers must not steer which of our blobs is evicted first).

        Raises :class:`UnknownBlob`."""
        info = self.get(cid)
        if info is None or not info.complete:
            raise UnknownBlob(f"no complete blob {format_content_id(cid)} in the store")
        try:
            data_fd = os.open(self._data_path(cid), os.O_RDONLY)
        except FileNotFoundError:
            raise UnknownBlob(f"blob {format_content_id(cid)} was just removed") from None
        try:
            leaves_fd = os.open(self._leaves_path(cid), os.O_RDONLY)
        except FileNotFoundError:
            os.close(data_fd)
            raise UnknownBlob(f"blob {format_content_id(cid)} was just removed") from None
        if touch:
            self.touch(cid)
        return BlobReader(info, data_fd, leaves_fd)

    def export(self, cid: bytes, destination: Path) -> BlobInfo:
        """Copy a complete blob to a new file at ``destination`` (absolute, not existing), checking
        every chunk against the content id on the way.

        Raises :class:`UnknownBlob`, :class:`ExportError`, and :class:`StoredBlobCorrupt` (the
        blob is then removed from the store, and the partial copy deleted).
        """
        if not destination.is_absolute():
            raise ExportError(f"{destination}: give an absolute path")
        with self.reader(cid) as reader:
            try:
                out = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                raise ExportError(f"{destination}: already exists; not overwritten") from None
            except OSError as exc:
                raise ExportError(f"{destination}: {exc.strerror}") from None
            try:
                self._copy_out(reader, out)
            except (ChunkMismatch, MalformedManifest, EOFError) as exc:
                os.close(out)
                destination.unlink(missing_ok=True)
                with self._lock:
                    self._remove_files(reader.info)
                    self._delete_row(cid)
                raise StoredBlobCorrupt(
                    f"blob {format_content_id(cid)} no longer matches its content id ({exc}); removed"
                ) from None
            except OSError as exc:
                os.close(out)
                destination.unlink(missing_ok=True)
                raise ExportError(f"{destination}: {exc.strerror}") from None
            os.close(out)
            return reader.info

    @staticmethod
    def _copy_out(reader: BlobReader, out: int) -> None:
        manifest = reader.manifest
        os.ftruncate(out, manifest.size)
        check = MerkleAccumulator()
        for start in range(0, manifest.chunks, 8192):
            count = min(8192, manifest.chunks - start)
            leaves = reader.read_leaves(start, count)
            check.add_many(leaves)
            for index in range(start, start + count):
                chunk = reader.read_chunk(index)
                offset = (index - start) * HASH_LEN
                manifest.check_chunk(index, chunk, leaves[offset : offset + HASH_LEN])
                write_sparse(out, manifest.chunk_offset(index), chunk)
        if check.root() != manifest.root:
            raise ChunkMismatch("the stored leaf list no longer hashes to the root")
        os.fsync(out)

    # --- fetches ---------------------------------------------------------------------------------
    def begin_fetch(self, cid: bytes, manifest: BlobManifest) -> PartialBlob | None:
        """Start or resume writing blob ``cid`` (whose manifest the caller checked against it).
        Returns None when the blob is already complete.

        Raises :class:`StoreFull`, :class:`BlobStoreError` (a fetch of it is already running).
        """
        with self._lock:
            if cid in self._fetching:
                raise BlobStoreError(f"blob {format_content_id(cid)} is already being fetched")
            info = self.get(cid)
            if info is not None and info.complete:
                return None
            directory = self._partial_dir(cid)
            if info is not None:
                partial = PartialBlob.resume(self, cid, manifest, directory)
                if partial is None:  # unreadable state: start over
                    self._remove_files(info)
                    self._delete_row(cid)
                    info = None
            if info is None:
                self._make_room(stored_bytes(manifest))
                partial = PartialBlob.create(self, cid, manifest, directory)
                self._insert(cid, manifest, PARTIAL, False, 0)
            assert partial is not None
            self._fetching.add(cid)
            return partial

    def _end_fetch(self, partial: PartialBlob) -> None:
        with self._lock:
            self._fetching.discard(partial.cid)
            self._db.execute(
                "UPDATE blobs SET have_chunks = ? WHERE cid = ? AND state = ?",
                (partial.have.set_count, partial.cid, PARTIAL),
            )

    def _finish_fetch(self, partial: PartialBlob) -> BlobInfo:
        with self._lock:
            self._fetching.discard(partial.cid)
            info = self.get(partial.cid)
            if info is not None and info.complete:  # a put of the same content won the race
                shutil.rmtree(partial.directory, ignore_errors=True)
                return info
            pinned = info.pinned if info is not None else False
            self._install(partial.cid, partial.directory / "data", partial.directory / "leaves")
            shutil.rmtree(partial.directory, ignore_errors=True)
            self._insert(partial.cid, partial.manifest, COMPLETE, pinned, partial.manifest.chunks)
            done = self.get(partial.cid)
        assert done is not None
        return done


def _hash_and_copy(
    path: Path, source: int, data_fd: int, leaves_fd: int, size: int, chunk_size: int
) -> BlobManifest:
    """Read ``source`` chunk by chunk into ``data_fd`` (sparse), its leaves into ``leaves_fd``;
    return the manifest. Raises :class:`BlobSourceError` if the file changes size, OSError."""
    os.ftruncate(data_fd, size)  # a hole: write_sparse leaves zero blocks as they are
    accumulator = MerkleAccumulator()
    leaves = bytearray()
    offset = 0
    while offset < size:
        length = min(chunk_size, size - offset)
        try:
            chunk = read_sparse(source, length, offset)
        except EOFError:
            raise BlobSourceError(f"{path}: the file shrank while it was read") from None
        leaf = leaf_hash(chunk)
        accumulator.add(leaf)
        leaves += leaf
        if len(leaves) >= 1 << 20:
            os.write(leaves_fd, leaves)
            leaves.clear()
        write_sparse(data_fd, offset, chunk)
        offset += length
    if os.pread(source, 1, size):
        raise BlobSourceError(f"{path}: the file grew while it was read")
    os.write(leaves_fd, leaves)
    os.fsync(data_fd)
    os.fsync(leaves_fd)
    return BlobManifest(size, chunk_size, accumulator.root())
