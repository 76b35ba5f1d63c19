"""The blob store on a real directory and SQLite index: put, dedupe, sparse files, export with
verification, the size cap and least-recently-used eviction of unpinned blobs, partial fetches
that survive a reopen, and recovery from files without rows and rows without files."""

from __future__ import annotations

import os
from itertools import count
from pathlib import Path

import pytest

from node.blobs import partial as partial_module
from node.blobs import store as store_module
from node.blobs.errors import (
    BlobSourceError,
    BlobStoreError,
    ExportError,
    StoredBlobCorrupt,
    StoreFull,
    TooManyHolds,
    UnknownBlob,
)
from node.blobs.files import Bitmap, read_sparse, write_sparse
from node.blobs.store import HOLD_INPUT, HOLD_OUTPUT, BlobStore
from protocol.blobs.errors import ChunkMismatch
from protocol.blobs.merkle import MIN_CHUNK_SIZE, BlobManifest, leaf_hash, merkle_root
from tests.blob_helpers import MIB, file_sha256, flip_byte, write_sparse_input

CHUNK = MIN_CHUNK_SIZE  # 64 KiB: many chunks from small files


def open_store(root: Path, *, max_bytes: int = 1 << 30) -> tuple[BlobStore, list[int]]:
    """A store whose clock advances one millisecond per reading (the list holds the last)."""
    ticks = count(1_000_000)
    last = [0]

    def clock() -> int:
        last[0] = next(ticks)
        return last[0]

    return BlobStore.open(root, max_bytes=max_bytes, clock_ms=clock), last


def manifest_of(data: bytes, chunk: int = CHUNK) -> BlobManifest:
    leaves = [leaf_hash(data[offset : offset + chunk]) for offset in range(0, len(data), chunk)]
    return BlobManifest(len(data), chunk, merkle_root(leaves))


def test_put_computes_the_content_id_and_dedupes(tmp_path: Path) -> None:
    store, _ = open_store(tmp_path / "blobs")
    data = os.urandom(5 * CHUNK + 123)
    (tmp_path / "a").write_bytes(data)
    (tmp_path / "b").write_bytes(data)
    info, new = store.put_file(tmp_path / "a", pin=False, chunk_size=CHUNK)
    assert new and info.complete and not info.pinned
    assert info.manifest == manifest_of(data)
    assert info.cid == manifest_of(data).content_id()
    again, new_again = store.put_file(tmp_path / "b", pin=True, chunk_size=CHUNK)
    assert not new_again and again.cid == info.cid and again.pinned
    assert [blob.cid for blob in store.list_blobs()] == [info.cid]
    with store.reader(info.cid) as reader:
        assert b"".join(reader.read_chunk(i) for i in range(6)) == data
        assert reader.read_leaves(0, 6) == b"".join(
            leaf_hash(data[i * CHUNK : (i + 1) * CHUNK]) for i in range(6)
        )
    assert list((tmp_path / "blobs" / "tmp").iterdir()) == []


def test_empty_file_is_a_blob_too(tmp_path: Path) -> None:
    store, _ = open_store(tmp_path / "blobs")
    (tmp_path / "empty").write_bytes(b"")
    info, _ = store.put_file(tmp_path / "empty", pin=True, chunk_size=CHUNK)
    assert info.manifest.chunks == 0
    store.export(info.cid, tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == b""


def test_zero_blocks_stay_holes_and_read_back_as_zeros(tmp_path: Path) -> None:
    store, _ = open_store(tmp_path / "blobs")
    source = tmp_path / "sparse"
    expected = write_sparse_input(source, 64 * MIB, seed=1)
    info, _ = store.put_file(source, pin=True, chunk_size=MIB)
    stored = next((tmp_path / "blobs" / "objects").glob("*/*[0-9a-f]"))
    # 64 pieces of 4 KiB, each in its own 64 KiB block: 4 MiB allocated at most, not 64.
    assert os.stat(stored).st_blocks * 512 <= 4 * MIB + 64 * 1024
    store.export(info.cid, tmp_path / "out")
    assert file_sha256(tmp_path / "out") == expected


def test_write_sparse_writes_only_non_zero_blocks(tmp_path: Path) -> None:
    data = bytearray(4 * 65536)
    data[70000] = 1  # the second block
    data[-1] = 2  # the fourth
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT)
    try:
        os.ftruncate(fd, len(data))
        assert write_sparse(fd, 0, bytes(data)) == 2 * 65536
        assert os.pread(fd, len(data), 0) == bytes(data)
    finally:
        os.close(fd)


@pytest.mark.parametrize("problem", ["relative", "missing", "directory"])
def test_bad_sources_are_refused_and_leave_nothing(tmp_path: Path, problem: str) -> None:
    store, _ = open_store(tmp_path / "blobs")
    (tmp_path / "dir").mkdir()
    path = {"relative": Path("some/file"), "missing": tmp_path / "nope", "directory": tmp_path / "dir"}[
        problem
    ]
    with pytest.raises(BlobSourceError):
        store.put_file(path, pin=True, chunk_size=CHUNK)
    assert store.list_blobs() == [] and list((tmp_path / "blobs" / "tmp").iterdir()) == []


def test_export_refuses_existing_or_relative_destinations(tmp_path: Path) -> None:
    store, _ = open_store(tmp_path / "blobs")
    (tmp_path / "a").write_bytes(b"x" * 1000)
    info, _ = store.put_file(tmp_path / "a", pin=True, chunk_size=CHUNK)
    (tmp_path / "taken").write_bytes(b"keep me")
    with pytest.raises(ExportError):
        store.export(info.cid, tmp_path / "taken")
    assert (tmp_path / "taken").read_bytes() == b"keep me"
    with pytest.raises(ExportError):
        store.export(info.cid, Path("relative"))
    with pytest.raises(UnknownBlob):
        store.export(bytes(32), tmp_path / "other")


def test_export_detects_a_corrupted_stored_blob_and_drops_it(tmp_path: Path) -> None:
    store, _ = open_store(tmp_path / "blobs")
    (tmp_path / "a").write_bytes(os.urandom(3 * CHUNK))
    info, _ = store.put_file(tmp_path / "a", pin=True, chunk_size=CHUNK)
    stored = next((tmp_path / "blobs" / "objects").glob("*/*[0-9a-f]"))
    flip_byte(stored, CHUNK + 5)
    with pytest.raises(StoredBlobCorrupt):
        store.export(info.cid, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert store.get(info.cid) is None and not stored.exists()


def put_bytes(store: BlobStore, tmp_path: Path, name: str, size: int, *, pin: bool = False) -> bytes:
    path = tmp_path / name
    path.write_bytes(os.urandom(size))
    info, _ = store.put_file(path, pin=pin, chunk_size=CHUNK)
    return info.cid


def test_cap_evicts_unpinned_blobs_least_recently_used_first(tmp_path: Path) -> None:
    size = 4 * CHUNK  # stored: size + 4 leaves
    stored = size + 4 * 32
    store, _ = open_store(tmp_path / "blobs", max_bytes=3 * stored)
    first = put_bytes(store, tmp_path, "1", size)
    second = put_bytes(store, tmp_path, "2", size)
    third = put_bytes(store, tmp_path, "3", size)
    store.export(first, tmp_path / "use-first")  # a use: `second` is now the least recently used
    fourth = put_bytes(store, tmp_path, "4", size)
    assert {info.cid for info in store.list_blobs()} == {first, third, fourth}
    assert store.get(second) is None
    assert store.used_bytes() == 3 * stored
    store.pin(third, True)
    store.pin(first, True)
    fifth = put_bytes(store, tmp_path, "5", size)  # only `fourth` may go
    assert {info.cid for info in store.list_blobs()} == {first, third, fifth}


def test_nothing_is_evicted_when_pinned_blobs_alone_leave_no_room(tmp_path: Path) -> None:
    size = 4 * CHUNK
    store, _ = open_store(tmp_path / "blobs", max_bytes=2 * (size + 128) + 100)
    pinned = put_bytes(store, tmp_path, "p", size, pin=True)
    loose = put_bytes(store, tmp_path, "l", size)
    with pytest.raises(StoreFull):
        put_bytes(store, tmp_path, "big", 2 * size)
    assert {info.cid for info in store.list_blobs()} == {pinned, loose}
    assert list((tmp_path / "blobs" / "tmp").iterdir()) == []


def test_a_held_blob_is_never_evicted_whatever_its_pin_says_and_holds_survive_a_reopen(
    tmp_path: Path,
) -> None:
    size = 4 * CHUNK
    stored = size + 4 * 32
    store, _ = open_store(tmp_path / "blobs", max_bytes=2 * stored)
    held = put_bytes(store, tmp_path, "held", size)
    store.hold(held, "p-job1", HOLD_INPUT)
    store.hold(held, "p-job1", HOLD_INPUT)  # again: one hold
    output = tmp_path / "out"
    output.write_bytes(os.urandom(size))
    fd = os.open(output, os.O_RDONLY)
    try:  # an output is held in the same step as it is stored
        info, _ = store.put_open_file(fd, output, pin=False, chunk_size=CHUNK, hold=("p-job2", HOLD_OUTPUT))
    finally:
        os.close(fd)
    assert store.holds() == {"p-job1": {HOLD_INPUT: [held]}, "p-job2": {HOLD_OUTPUT: [info.cid]}}
    # The operator pinning and unpinning does not touch a job's hold.
    store.pin(held, True)
    store.pin(held, False)
    with pytest.raises(StoreFull):  # both held: nothing may go
        put_bytes(store, tmp_path, "new", size)
    store.close()
    store, _ = open_store(tmp_path / "blobs", max_bytes=2 * stored)
    assert store.holds() == {"p-job1": {HOLD_INPUT: [held]}, "p-job2": {HOLD_OUTPUT: [info.cid]}}
    assert store.release("p-job2", HOLD_INPUT) == 0  # only what was held for that purpose
    assert store.release("p-job2") == 1
    new = put_bytes(store, tmp_path, "new", size)  # the released output is evicted for it
    assert {blob.cid for blob in store.list_blobs()} == {held, new}
    # A job releasing its hold never unpins what the operator pinned.
    store.pin(held, True)
    assert store.release("p-job1", HOLD_INPUT) == 1
    assert store.holds() == {}
    assert store.get(held) is not None and store.get(held).pinned  # type: ignore[union-attr]
    with pytest.raises(UnknownBlob):
        store.hold(b"\x01" * 32, "p-job3", HOLD_INPUT)


def test_holds_are_bounded_and_removing_a_blob_drops_its_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "MAX_HOLDS", 3)
    store, _ = open_store(tmp_path / "blobs")
    cid = put_bytes(store, tmp_path, "a", CHUNK)
    for job in ("p-1", "p-2", "p-3"):
        store.hold(cid, job, HOLD_INPUT)
    with pytest.raises(TooManyHolds) as caught:
        store.hold(cid, "p-4", HOLD_INPUT)
    assert caught.value.code == 6022 and "p-4" not in store.holds()
    store.hold(cid, "p-1", HOLD_INPUT)  # an existing hold is no new row
    assert store.remove(cid)
    assert store.holds() == {}
    store.hold(put_bytes(store, tmp_path, "b", CHUNK), "p-4", HOLD_INPUT)


def test_gc_brings_the_store_under_a_lowered_cap(tmp_path: Path) -> None:
    store, _ = open_store(tmp_path / "blobs")
    old = put_bytes(store, tmp_path, "old", 2 * CHUNK)
    new = put_bytes(store, tmp_path, "new", 2 * CHUNK)
    kept = put_bytes(store, tmp_path, "kept", 2 * CHUNK, pin=True)
    store.max_bytes = 2 * (2 * CHUNK + 64)
    report = store.gc()
    assert report.evicted == (old,)
    assert {info.cid for info in store.list_blobs()} == {new, kept}
    assert report.used_bytes == store.used_bytes() <= store.max_bytes


def test_remove_and_pin_of_unknown_blobs(tmp_path: Path) -> None:
    store, _ = open_store(tmp_path / "blobs")
    cid = put_bytes(store, tmp_path, "a", CHUNK)
    assert store.remove(cid) is True
    assert store.remove(cid) is False
    with pytest.raises(UnknownBlob):
        store.pin(cid, True)


def test_reopen_drops_orphan_files_and_rows_without_files(tmp_path: Path) -> None:
    root = tmp_path / "blobs"
    store, _ = open_store(root)
    kept = put_bytes(store, tmp_path, "kept", CHUNK)
    lost = put_bytes(store, tmp_path, "lost", CHUNK)
    store.close()
    lost_file = root / "objects" / lost.hex()[:2] / lost.hex()
    lost_file.unlink()  # a row without its file
    orphan = root / "objects" / "ab" / ("ab" + "0" * 62)
    orphan.parent.mkdir(exist_ok=True)
    orphan.write_bytes(b"a crash between rename and index row")
    (root / "tmp" / "put-leftover").write_bytes(b"half a put")
    store, _ = open_store(root)
    assert [info.cid for info in store.list_blobs()] == [kept]
    assert not orphan.exists() and list((root / "tmp").iterdir()) == []
    assert not (root / "objects" / lost.hex()[:2] / f"{lost.hex()}.leaves").exists()


def test_a_partial_fetch_keeps_only_verified_chunks_across_a_reopen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "blobs"
    store, _ = open_store(root)
    data = os.urandom(4 * CHUNK)
    manifest = manifest_of(data)
    cid = manifest.content_id()
    partial = store.begin_fetch(cid, manifest)
    assert partial is not None and not partial.has_leaves
    leaves_file = partial.directory / "leaves.part"
    leaves_file.write_bytes(b"".join(leaf_hash(data[i * CHUNK : (i + 1) * CHUNK]) for i in range(4)))
    partial.install_leaves(leaves_file)
    with pytest.raises(BlobStoreError):
        store.begin_fetch(cid, manifest)  # one fetch per blob at a time
    # Leaves are read a block at a time: a block boundary falls between chunks 1 and 2 here.
    monkeypatch.setattr(partial_module, "LEAF_BLOCK", 2)
    assert [partial.leaf(i) for i in (3, 0, 2, 1)] == [
        leaf_hash(data[i * CHUNK : (i + 1) * CHUNK]) for i in (3, 0, 2, 1)
    ]
    chunk = data[CHUNK : 2 * CHUNK]
    with pytest.raises(ChunkMismatch):
        partial.verify_and_write(1, chunk[:-1] + bytes([chunk[-1] ^ 1]))
    assert os.pread(os.open(partial.directory / "data", os.O_RDONLY), CHUNK, CHUNK) == bytes(CHUNK)
    partial.verify_and_write(1, chunk)
    partial.mark(1)
    partial.abandon()
    store.close()

    store, _ = open_store(root)
    info = store.get(cid)
    assert info is not None and not info.complete and info.have_chunks == 1
    resumed = store.begin_fetch(cid, manifest)
    assert resumed is not None and resumed.has_leaves
    assert resumed.have.missing() == [0, 2, 3]
    for index in (0, 2, 3):
        resumed.verify_and_write(index, data[index * CHUNK : (index + 1) * CHUNK])
        resumed.mark(index)
    done = resumed.finish()
    assert done.complete and store.begin_fetch(cid, manifest) is None
    store.export(cid, tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == data
    assert not (root / "partial" / cid.hex()).exists()


def test_a_leaf_list_cut_short_under_a_fetch_fails_the_write_as_our_disk_not_the_node(
    tmp_path: Path,
) -> None:
    """A leaf list shortened under us (a failing disk, an operator's cleanup) made ``leaf`` raise
    EOFError, which nothing caught: it ended the blob service and the node with it."""
    store, _ = open_store(tmp_path / "blobs")
    data = os.urandom(4 * CHUNK)
    manifest = manifest_of(data)
    partial = store.begin_fetch(manifest.content_id(), manifest)
    assert partial is not None
    leaves_file = partial.directory / "leaves.part"
    leaves_file.write_bytes(b"".join(leaf_hash(data[i * CHUNK : (i + 1) * CHUNK]) for i in range(4)))
    partial.install_leaves(leaves_file)
    os.truncate(partial.directory / "leaves", 32)  # one leaf of four left
    written, failure = partial.verify_and_write_many((i, data[i * CHUNK : (i + 1) * CHUNK]) for i in (0, 3))
    assert written == 0 and isinstance(failure, OSError) and "leaf list" in str(failure)
    partial.abandon()
    store.close()


@pytest.mark.parametrize("count", [1, 7, 8, 9, 64, 1000])
def test_bitmap_missing_lists_exactly_the_unset_bits(count: int) -> None:
    bits = Bitmap(count)
    for index in range(0, count, 3):
        bits.add(index)
    assert bits.missing() == [index for index in range(count) if index % 3]
    full = Bitmap(count, bytes([0xFF]) * ((count + 7) // 8))
    assert full.missing() == [] and Bitmap(count).missing() == list(range(count))


def test_bitmap_counts_and_refuses_out_of_range() -> None:
    bits = Bitmap(10)
    assert bits.add(3) and not bits.add(3) and 3 in bits and 4 not in bits
    assert bits.missing() == [0, 1, 2, 4, 5, 6, 7, 8, 9]
    for index in range(10):
        bits.add(index)
    assert bits.complete and Bitmap(10, bits.to_bytes()).complete
    with pytest.raises(IndexError):
        bits.add(10)
    with pytest.raises(ValueError):
        Bitmap(10, b"\x00")
    assert Bitmap(10, b"\xff\xff").set_count == 10  # stray bits past the end are ignored


@pytest.mark.parametrize(
    "layout",
    [
        [],  # all hole
        [(0, 65536)],  # data, then a hole
        [(65536, 4096)],  # hole, data, hole
        [(0, 1 << 20)],  # dense
        [(4096 * 3, 100), (200000, 70000), ((1 << 20) - 10, 10)],  # several extents, data at the end
    ],
)
def test_read_sparse_reads_data_extents_and_fills_holes_with_zeros(
    tmp_path: Path, layout: list[tuple[int, int]]
) -> None:
    size = 1 << 20
    expected = bytearray(size)
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT)
    try:
        os.ftruncate(fd, size + 4096)
        for at, length in layout:
            piece = os.urandom(length)
            os.pwrite(fd, piece, at)
            expected[at : at + length] = piece
        assert read_sparse(fd, size, 0) == bytes(expected)
        assert read_sparse(fd, 5000, 196000) == bytes(expected[196000:201000])
        with pytest.raises(EOFError):
            read_sparse(fd, 8192, size)  # runs past the end of the file
    finally:
        os.close(fd)
