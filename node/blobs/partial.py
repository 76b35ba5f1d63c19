"""A fetch in progress: the blob's bytes so far, its verified leaf list, the bitmap of chunks
verified and written. Lives in ``<store>/partial/<cid>/`` until every chunk is there, then the
store renames it into ``objects/``.

Crash safety: a chunk's bit is set only after the chunk verified and was written; a checkpoint
fdatasyncs the data before it writes the bitmap (atomically), so a bitmap on disk never claims a
chunk the disk does not hold. A crash loses at most the chunks since the last checkpoint, and
the next fetch asks for exactly the chunks whose bits are unset.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from node.blobs.errors import BlobStoreError
from node.blobs.files import Bitmap, pread_exact, write_atomically, write_sparse
from protocol.blobs.errors import ChunkMismatch
from protocol.blobs.merkle import HASH_LEN, BlobManifest, format_content_id

if TYPE_CHECKING:
    from node.blobs.store import BlobInfo, BlobStore

log = logging.getLogger("dcent.blobs")

#: Leaves read at once by :meth:`PartialBlob.leaf` (32 KiB: the leaves of 1 GiB of 1 MiB chunks).
LEAF_BLOCK = 1024


class PartialBlob:
    """A fetch's files: the data so far, the verified leaf list, the bitmap of written chunks.

    :meth:`verify_and_write` may run in worker threads (it only reads and writes at offsets);
    :meth:`mark`, :meth:`checkpoint` and the rest belong to the one task that owns the fetch.
    """

    def __init__(self, store: BlobStore, cid: bytes, manifest: BlobManifest, directory: Path, have: Bitmap):
        self.store = store
        self.cid = cid
        self.manifest = manifest
        self.directory = directory
        self.have = have
        self._data_fd = os.open(directory / "data", os.O_RDWR)
        self._leaves_fd = -1
        if (directory / "leaves").is_file():
            self._leaves_fd = os.open(directory / "leaves", os.O_RDONLY)
        self._closed = False
        self._leaf_block: tuple[int, bytes] | None = None

    @classmethod
    def create(cls, store: BlobStore, cid: bytes, manifest: BlobManifest, directory: Path) -> PartialBlob:
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(mode=0o700)
        fd = os.open(directory / "data", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.ftruncate(fd, manifest.size)
        finally:
            os.close(fd)
        have = Bitmap(manifest.chunks)
        write_atomically(directory / "have", have.to_bytes())
        return cls(store, cid, manifest, directory, have)

    @classmethod
    def resume(
        cls, store: BlobStore, cid: bytes, manifest: BlobManifest, directory: Path
    ) -> PartialBlob | None:
        """The partial state on disk, or None if it is unusable (then the fetch starts over)."""
        try:
            if os.stat(directory / "data").st_size != manifest.size:
                return None
            have = Bitmap(manifest.chunks, (directory / "have").read_bytes())
            if have.set_count and not (directory / "leaves").is_file():
                return None
            return cls(store, cid, manifest, directory, have)
        except (OSError, ValueError):
            return None

    @property
    def has_leaves(self) -> bool:
        return self._leaves_fd >= 0

    def install_leaves(self, leaves: Path) -> None:
        """Adopt a leaf list file the caller has checked against the manifest's root."""
        os.replace(leaves, self.directory / "leaves")
        self._leaves_fd = os.open(self.directory / "leaves", os.O_RDONLY)
        self._leaf_block = None

    def leaf(self, index: int) -> bytes:
        """Chunk ``index``'s leaf hash, from the verified leaf list. Leaves are read a block of
        :data:`LEAF_BLOCK` at a time and the last block kept: chunks mostly come in order, and
        a read per chunk was a GIL round trip per chunk for the worker thread that verifies
        them, each one costing the event loop a wait."""
        block_number, position = divmod(index, LEAF_BLOCK)
        cached = self._leaf_block  # one read of the attribute: worker threads may swap it
        if cached is None or cached[0] != block_number:
            first = block_number * LEAF_BLOCK
            count = min(LEAF_BLOCK, self.manifest.chunks - first)
            cached = (block_number, pread_exact(self._leaves_fd, count * HASH_LEN, first * HASH_LEN))
            self._leaf_block = cached
        return cached[1][position * HASH_LEN : (position + 1) * HASH_LEN]

    def verify_and_write(self, index: int, chunk: bytes | bytearray) -> None:
        """Check chunk ``index`` against its leaf, then write it. Raises :class:`ChunkMismatch`
        (nothing written), :class:`OSError`."""
        self.manifest.check_chunk(index, chunk, self.leaf(index))
        write_sparse(self._data_fd, self.manifest.chunk_offset(index), chunk)

    def verify_and_write_many(
        self, chunks: Iterable[tuple[int, bytes | bytearray]]
    ) -> tuple[int, ChunkMismatch | OSError | None]:
        """:meth:`verify_and_write` each chunk in order, in one call (one worker-thread hop for a
        batch), stopping at the first that fails. Returns how many verified and were written,
        and the failure that stopped it (None if none did): the caller marks the chunks before
        it, so a failure inside a batch loses none of the verified ones."""
        done = 0
        for index, chunk in chunks:
            try:
                self.verify_and_write(index, chunk)
            except (ChunkMismatch, OSError) as exc:
                return done, exc
            except EOFError as exc:  # our leaf list is short (truncated under us): our disk
                return done, OSError(errno.EIO, f"leaf list: {exc}")
            done += 1
        return done, None

    def mark(self, index: int) -> bool:
        """Record chunk ``index`` as verified and written; returns whether it was new."""
        return self.have.add(index)

    def checkpoint(self, bits: bytes | None = None) -> None:
        """Make the chunks marked so far durable: data first, then the bitmap that claims them.
        ``bits``: a snapshot of the bitmap taken by its owner (for a checkpoint in a worker thread
        while the owner goes on marking)."""
        snapshot = self.have.to_bytes() if bits is None else bits
        os.fdatasync(self._data_fd)
        write_atomically(self.directory / "have", snapshot)

    def finish(self) -> BlobInfo:
        """Install the complete blob in the store. Call once every chunk is marked."""
        if not self.have.complete:
            raise BlobStoreError(f"blob {format_content_id(self.cid)} is missing chunks")
        os.fsync(self._data_fd)
        self._close_files()
        return self.store._finish_fetch(self)

    def abandon(self) -> None:
        """Stop writing; the verified chunks stay for the next fetch to resume from."""
        if self._closed:
            return
        try:
            self.checkpoint()
        except OSError as exc:
            log.warning("blob %s: checkpoint failed: %s", format_content_id(self.cid), exc)
        self._close_files()
        self.store._end_fetch(self)

    def _close_files(self) -> None:
        self._closed = True
        for fd in (self._data_fd, self._leaves_fd):
            if fd >= 0:
                os.close(fd)
        self._data_fd = self._leaves_fd = -1
