"""The fetcher's batched verify-and-write (issue 15): one worker-thread hop for a run of chunks,
and still not a byte written for a chunk that does not verify, nor a verified one lost."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from node.blobs import fetcher as fetcher_module
from node.blobs import partial as partial_module
from node.blobs.partial import PartialBlob
from node.blobs.store import BlobStore
from node.p2p.framing import FRAME_HEADER
from protocol.blobs.errors import ChunkMismatch
from protocol.blobs.merkle import MIN_CHUNK_SIZE, BlobManifest, leaf_hash, merkle_root

CHUNK = MIN_CHUNK_SIZE
CHUNKS = 6


def begin(tmp_path: Path) -> tuple[BlobStore, PartialBlob, bytes]:
    data = os.urandom(CHUNKS * CHUNK)
    leaves = [leaf_hash(data[i * CHUNK : (i + 1) * CHUNK]) for i in range(CHUNKS)]
    manifest = BlobManifest(len(data), CHUNK, merkle_root(leaves))
    store = BlobStore.open(tmp_path / "blobs", max_bytes=1 << 30)
    partial = store.begin_fetch(manifest.content_id(), manifest)
    assert partial is not None
    leaves_file = partial.directory / "leaves.part"
    leaves_file.write_bytes(b"".join(leaves))
    partial.install_leaves(leaves_file)
    return store, partial, data


def chunk(data: bytes, index: int) -> bytes:
    return data[index * CHUNK : (index + 1) * CHUNK]


def on_disk(partial: PartialBlob, index: int) -> bytes:
    fd = os.open(partial.directory / "data", os.O_RDONLY)
    try:
        return os.pread(fd, CHUNK, index * CHUNK)
    finally:
        os.close(fd)


def test_a_clean_batch_is_verified_and_written_whole(tmp_path: Path) -> None:
    store, partial, data = begin(tmp_path)
    batch = [(index, bytearray(chunk(data, index))) for index in (2, 3, 4)]
    assert partial.verify_and_write_many(batch) == (3, None)
    assert [on_disk(partial, index) for index in (2, 3, 4)] == [chunk(data, i) for i in (2, 3, 4)]
    store.close()


def test_a_corrupted_chunk_inside_a_batch_stops_it_there_and_writes_none_of_it(tmp_path: Path) -> None:
    store, partial, data = begin(tmp_path)
    bad = bytearray(chunk(data, 3))
    bad[100] ^= 1
    batch = [(2, chunk(data, 2)), (3, bad), (4, chunk(data, 4))]
    written, failure = partial.verify_and_write_many(batch)
    # The chunk before it is verified and written (the caller marks it: nothing verified is
    # lost); the liar's chunk and everything after it are not written (fetched elsewhere).
    assert written == 1 and isinstance(failure, ChunkMismatch)
    assert on_disk(partial, 2) == chunk(data, 2)
    assert on_disk(partial, 3) == bytes(CHUNK) and on_disk(partial, 4) == bytes(CHUNK)
    store.close()


def test_a_chunk_of_the_wrong_length_inside_a_batch_is_a_mismatch(tmp_path: Path) -> None:
    store, partial, data = begin(tmp_path)
    written, failure = partial.verify_and_write_many([(0, chunk(data, 0)), (1, chunk(data, 1)[:-1])])
    assert written == 1 and isinstance(failure, ChunkMismatch)
    store.close()


def test_a_disk_error_inside_a_batch_keeps_the_chunks_written_before_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, partial, data = begin(tmp_path)
    real_write = partial_module.write_sparse
    calls = []

    def failing_third_write(fd: int, offset: int, body: bytes | bytearray) -> int:
        calls.append(offset)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, offset, body)

    monkeypatch.setattr(partial_module, "write_sparse", failing_third_write)
    written, failure = partial.verify_and_write_many([(index, chunk(data, index)) for index in range(5)])
    assert written == 2 and isinstance(failure, OSError) and failure.errno == errno.ENOSPC
    for index in (0, 1):
        partial.mark(index)
    partial.abandon()  # the verified chunks are checkpointed, so a resume skips them
    store.close()
    reopened = BlobStore.open(tmp_path / "blobs", max_bytes=1 << 30)
    resumed = reopened.begin_fetch(partial.cid, partial.manifest)
    assert resumed is not None and resumed.have.missing() == [2, 3, 4, 5]
    assert on_disk(resumed, 1) == chunk(data, 1)
    reopened.close()


def test_a_chunk_is_read_straight_into_its_frame(tmp_path: Path) -> None:
    store, partial, data = begin(tmp_path)
    batch = [(index, chunk(data, index)) for index in range(CHUNKS)]
    assert partial.verify_and_write_many(batch) == (CHUNKS, None)
    for index in range(CHUNKS):
        partial.mark(index)
    info = partial.finish()
    with store.reader(info.cid) as reader:
        frame = reader.read_chunk_frame(4)
        assert bytes(frame[: FRAME_HEADER.size]) == bytes(FRAME_HEADER.size)  # room for the prefix
        assert frame[FRAME_HEADER.size :] == chunk(data, 4)
        assert reader.read_chunk(4) == chunk(data, 4)
    store.close()


def test_chunks_received_in_pieces_are_joined_in_the_worker_and_a_bad_one_stops_the_batch(
    tmp_path: Path,
) -> None:
    """The fetcher hands the worker thread each chunk as the pieces its frame arrived in."""
    store, partial, data = begin(tmp_path)
    bad = bytearray(chunk(data, 4))
    bad[-1] ^= 1

    def pieces(index: int, body: bytes | bytearray) -> list[bytes]:
        return [bytes(body[start : start + 1000]) for start in range(0, len(body), 1000)]

    batch = [(index, pieces(index, chunk(data, index))) for index in (1, 2, 3)]
    batch += [(4, pieces(4, bad)), (5, pieces(5, chunk(data, 5)))]
    written, failure = fetcher_module._assemble_and_write(partial, batch)
    assert written == 3 and isinstance(failure, ChunkMismatch)
    assert [on_disk(partial, index) for index in (1, 2, 3)] == [chunk(data, i) for i in (1, 2, 3)]
    assert on_disk(partial, 4) == bytes(CHUNK) and on_disk(partial, 5) == bytes(CHUNK)
    store.close()
