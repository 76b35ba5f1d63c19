"""The SQLite store: a real database file in WAL mode, appended in order, reopened intact; the
transaction index written with each block."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import pytest

from node.store import ChainStore, CorruptStore, IndexedTx, NotContiguous, StoredBlock, WrongChain
from protocol.consensus.messages import Block, CommitCertificate
from protocol.crypto import PrivateKey
from protocol.ledger.tx import Stake, Transfer, decode_tx, sign_tx

CHAIN = "dcent-store-test"
ALICE = PrivateKey.from_label("store-alice")
BOB = PrivateKey.from_label("store-bob")
CAROL = PrivateKey.from_label("store-carol")


def _parent_hash(height: int) -> bytes:
    return hashlib.sha256(f"block-{height - 1}".encode()).digest()


def _block(height: int, txs: Sequence[bytes] = ()) -> StoredBlock:
    """A stored block whose bytes are a real, decodable block carrying ``txs``."""
    parent = _parent_hash(height)
    state_hash = hashlib.sha256(f"state-{height}".encode()).digest()
    block = Block(
        chain_id=CHAIN,
        height=height,
        time_ms=1_000 * height,
        parent_hash=parent,
        proposer=ALICE.address.raw,
        txs=tuple(txs),
        evidence=(),
        last_commit=CommitCertificate(height - 1, 0, parent, ()),
        state_hash=state_hash,
    )
    return StoredBlock(
        height=height,
        hash=hashlib.sha256(f"block-{height}".encode()).digest(),
        state_hash=state_hash,
        block=block.encode(),
        certificate=f"cert-{height}".encode(),
    )


def _transfer(sender: PrivateKey, nonce: int, to: PrivateKey, amount: int = 5) -> bytes:
    return sign_tx(sender, CHAIN, nonce, 10_000, Transfer(to.address.raw, amount))


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


# --- the transaction index ---------------------------------------------------------------------


@pytest.mark.parametrize("decoded", [False, True], ids=["decoded-here", "decoded-by-consensus"])
def test_appending_a_block_indexes_its_transactions(db_path: Path, decoded: bool) -> None:
    to_bob = _transfer(ALICE, 1, BOB)
    stake = sign_tx(ALICE, CHAIN, 2, 10_000, Stake(7))
    store = ChainStore.open(db_path)
    store.append_block(
        _block(1, [to_bob, stake]), txs=[decode_tx(to_bob), decode_tx(stake)] if decoded else None
    )

    assert store.tx(hashlib.sha256(to_bob).digest()) == IndexedTx(
        hash=hashlib.sha256(to_bob).digest(),
        height=1,
        index=0,
        sender=ALICE.address.raw,
        recipient=BOB.address.raw,
        kind="transfer",
    )
    staked = store.tx(hashlib.sha256(stake).digest())
    assert staked is not None
    assert (staked.height, staked.index, staked.kind, staked.recipient) == (1, 1, "stake", None)
    assert store.tx(b"\x00" * 32) is None
    store.close()


def test_history_is_sent_and_received_newest_first_and_limited(db_path: Path) -> None:
    store = ChainStore.open(db_path)
    alice_to_bob = _transfer(ALICE, 1, BOB)
    bob_to_carol = _transfer(BOB, 1, CAROL)
    alice_to_carol = _transfer(ALICE, 2, CAROL)
    bob_to_bob = _transfer(BOB, 2, BOB)  # to oneself: listed once
    store.append_block(_block(1, [alice_to_bob]))
    store.append_block(_block(2, [bob_to_carol, alice_to_carol]))
    store.append_block(_block(3))
    store.append_block(_block(4, [bob_to_bob]))

    def hashes(entries: list[IndexedTx]) -> list[bytes]:
        return [entry.hash for entry in entries]

    def digest(raw: bytes) -> bytes:
        return hashlib.sha256(raw).digest()

    assert hashes(store.txs_of(BOB.address.raw, 10)) == [
        digest(bob_to_bob),
        digest(bob_to_carol),
        digest(alice_to_bob),
    ]
    assert hashes(store.txs_of(CAROL.address.raw, 10)) == [digest(alice_to_carol), digest(bob_to_carol)]
    assert hashes(store.txs_of(ALICE.address.raw, 1)) == [digest(alice_to_carol)]
    assert store.txs_of(PrivateKey.from_label("store-nobody").address.raw, 10) == []
    store.close()

    reopened = ChainStore.open(db_path)
    assert len(reopened.txs_of(BOB.address.raw, 10)) == 3
    reopened.close()


def test_a_block_that_does_not_decode_is_refused_and_changes_nothing(db_path: Path) -> None:
    store = ChainStore.open(db_path)
    store.append_block(_block(1, [_transfer(ALICE, 1, BOB)]))
    garbage = StoredBlock(2, b"\x02" * 32, b"\x03" * 32, b"not a block", b"cert")
    with pytest.raises(CorruptStore) as refused:
        store.append_block(garbage)
    assert refused.value.code == 5403
    bad_tx = _block(2, [b"\x91\x01"])  # a block whose transaction is not a transaction
    with pytest.raises(CorruptStore):
        store.append_block(bad_tx)
    head = store.head()
    assert head is not None and head.height == 1
    assert len(store.txs_of(ALICE.address.raw, 10)) == 1
    store.close()


def test_a_database_from_before_the_index_gets_it_on_open(db_path: Path) -> None:
    store = ChainStore.open(db_path)
    store.append_block(_block(1))
    store.close()
    old = sqlite3.connect(db_path)
    old.executescript("DROP INDEX txs_by_sender; DROP INDEX txs_by_recipient; DROP TABLE txs;")
    old.close()

    reopened = ChainStore.open(db_path)
    transfer = _transfer(CAROL, 1, ALICE)
    reopened.append_block(_block(2, [transfer]))
    indexed = reopened.tx(hashlib.sha256(transfer).digest())
    assert indexed is not None and indexed.height == 2
    reopened.close()


def test_job_counts_by_state(db_path: Path) -> None:
    store = ChainStore.open(db_path)
    assert store.job_counts() == {}
    store.put_job("job-1", "running", b"r", 1)
    store.put_job("job-2", "running", b"r", 2)
    store.put_job("job-3", "settled", b"r", 3)
    store.put_job("job-1", "delivered", b"r", 4)  # moves from running
    assert store.job_counts() == {"delivered": 1, "running": 1, "settled": 1}
    store.close()
