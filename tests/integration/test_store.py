"""The SQLite store: a real database file in WAL mode, appended in order, reopened intact."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from node.store import ChainStore, CorruptStore, NotContiguous, StoredBlock, WrongChain


def _block(height: int) -> StoredBlock:
    payload = f"block-{height}".encode()
    return StoredBlock(
        height=height,
        hash=hashlib.sha256(payload).digest(),
        state_hash=hashlib.sha256(b"state" + payload).digest(),
        block=payload,
        certificate=b"cert-" + payload,
    )


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "chain.db"


def test_blocks_append_in_order_and_survive_reopen(db_path: Path) -> None:
    store = ChainStore.open(db_path)
    for height in range(1, 6):
        store.append_block(_block(height), snapshot=b"snap" if height % 2 == 0 else None)
    store.close()

    reopened = ChainStore.open(db_path)
    head = reopened.head()
    assert head is not None and head.height == 5 and head.hash == _block(5).hash
    assert reopened.block(3) == _block(3)
    assert reopened.block_by_hash(_block(4).hash) == _block(4)
    assert [b.height for b in reopened.blocks(2, 3)] == [2, 3, 4]
    assert reopened.latest_snapshot() == (4, _block(4).state_hash, b"snap")
    assert reopened.integrity_check() == "ok"
    mode = sqlite3.connect(db_path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    reopened.close()


def test_gap_or_duplicate_height_is_refused_and_changes_nothing(db_path: Path) -> None:
    store = ChainStore.open(db_path)
    store.append_block(_block(1))
    with pytest.raises(NotContiguous) as gap:
        store.append_block(_block(3), consensus_updates={"last_signed": b"x"})
    assert gap.value.code == 5402
    with pytest.raises(NotContiguous):
        store.append_block(_block(1))
    head = store.head()
    assert head is not None and head.height == 1
    assert store.consensus() == {}  # the failed transaction wrote nothing
    store.close()


def test_database_is_bound_to_one_chain(db_path: Path) -> None:
    store = ChainStore.open(db_path)
    store.bind_chain("dcent-a", b"\x01" * 32)
    store.bind_chain("dcent-a", b"\x01" * 32)  # same chain: fine
    with pytest.raises(WrongChain):
        store.bind_chain("dcent-a", b"\x02" * 32)
    with pytest.raises(WrongChain):
        store.bind_chain("dcent-b", b"\x01" * 32)
    store.close()


def test_consensus_state_and_jobs_roundtrip(db_path: Path) -> None:
    store = ChainStore.open(db_path)
    store.put_consensus({"last_signed": b"h1r0s2", "lock": b"none"})
    store.put_consensus({"last_signed": b"h2r0s1"})
    assert store.consensus() == {"last_signed": b"h2r0s1", "lock": b"none"}
    store.put_job("job-1", "running", b"rec", 10)
    store.put_job("job-2", "settled", b"rec2", 11)
    assert store.job("job-1") == ("running", b"rec", 10)
    assert [j[0] for j in store.jobs("settled")] == ["job-2"]
    store.prune_snapshots(keep=1)
    store.close()


def test_a_file_that_is_not_a_database_is_reported(tmp_path: Path) -> None:
    bogus = tmp_path / "chain.db"
    bogus.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(CorruptStore):
        ChainStore.open(bogus)
