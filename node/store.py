"""The node's SQLite store (`<home>/data/chain.db`, WAL mode): blocks with their commit
certificates, ledger snapshots, consensus safety state, local job records, a transaction
index, and one economics record per block (``protocol/econview/record.py``: supply, issuance,
burn, fees, work settled), written in the same transaction as its block.

Blocks, certificates and consensus state are stored as opaque bytes (their encodings belong to
`protocol/`); the store indexes them by height and hash. The one place it looks inside a block is
the transaction index: appending a block also records, for each of its transactions, the hash,
position, sender, recipient (transfers only) and kind, so the RPC can find a transaction and an
account's history without scanning the chain. A database written before the index existed gets
the (empty) table on open and indexes blocks from then on. Writes that must survive a crash together
happen in one SQLite transaction, with ``synchronous=FULL`` so a commit is on disk when the call
returns: consensus persists its last-signed step here before it broadcasts its vote.

The API is synchronous; trio code calls it through ``trio.to_thread.run_sync`` with one store
connection owned by one thread at a time (``check_same_thread=False`` plus a lock).

Layout and durability
---------------------

One SQLite file, ``<home>/data/chain.db``, WAL mode and ``synchronous=FULL``: blocks with their commit
certificates (appended at head + 1 only), one economics record per block (written in the block's
transaction; see "Economics views"), ledger snapshots (``protocol/ledger/snapshot.py``, verified
by invariants and by the committed state hash on restore), consensus safety state (persisted before
a vote is broadcast), local job records, and an index for history: ``txs``, `tx_parties(address,
height, idx)` (every account a transaction concerns: a transfer's recipient, an escrow's
requester, provider and payer, a grant's grantee, a delegation's validators) and ``contracts``
(parties, price, caps, claimed pay), created on open (``CREATE TABLE IF NOT EXISTS``; blocks stored
before them have no party rows). ``account_history`` lists every transaction an account is a party
of, with the ``amount`` each kind moved and its ``details`` (``node/tx_history.py``). A database is bound to one chain id and genesis hash;
opening it for another chain fails (``WrongChain``). ``dcent chain head`` reads it offline while the
node runs (WAL readers do not block the writer).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from node import tx_history
from node.errors import NodeError
from node.tx_history import ContractInfo
from protocol.consensus.messages import Block
from protocol.encoding import DecodeError
from protocol.errors import ProtocolError
from protocol.ledger.tx import Transfer, Tx, decode_tx

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS blocks (
    height INTEGER PRIMARY KEY,
    hash BLOB NOT NULL UNIQUE,
    state_hash BLOB NOT NULL,
    block BLOB NOT NULL,
    certificate BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS snapshots (
    height INTEGER PRIMARY KEY,
    state_hash BLOB NOT NULL,
    state BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS consensus (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    record BLOB NOT NULL,
    updated_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state);
CREATE TABLE IF NOT EXISTS txs (
    hash BLOB PRIMARY KEY,
    height INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    sender BLOB NOT NULL,
    recipient BLOB,
    kind TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS txs_by_sender ON txs (sender, height, idx);
CREATE INDEX IF NOT EXISTS txs_by_recipient ON txs (recipient, height, idx);
CREATE TABLE IF NOT EXISTS economics (height INTEGER PRIMARY KEY, record BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS tx_parties (
    address BLOB NOT NULL,
    height INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    PRIMARY KEY (address, height, idx)
);
CREATE TABLE IF NOT EXISTS contracts (
    contract_hash BLOB PRIMARY KEY,
    requester BLOB NOT NULL,
    provider BLOB NOT NULL,
    payer BLOB NOT NULL,
    price INTEGER NOT NULL,
    max_gpu_seconds INTEGER NOT NULL,
    max_cost INTEGER NOT NULL,
    claimed_pay INTEGER
);
"""


class StoreError(NodeError):
    """Root of store errors (codes 5400-5499): our disk, never a peer's fault."""

    code: ClassVar[int] = 5400


class WrongChain(StoreError):
    """The database belongs to another chain or genesis than the one configured."""

    code = 5401


class NotContiguous(StoreError):
    """A block was stored out of order: blocks are appended at head + 1 only."""

    code = 5402


class CorruptStore(StoreError):
    code = 5403


@dataclass(frozen=True, slots=True)
class StoredBlock:
    height: int
    hash: bytes
    state_hash: bytes
    block: bytes
    certificate: bytes


@dataclass(frozen=True, slots=True)
class IndexedTx:
    """Where a committed transaction is, and who it concerns (from the transaction index)."""

    hash: bytes
    height: int
    #: Position of the transaction in its block.
    index: int
    sender: bytes
    #: The account a transfer pays; None for every other kind.
    recipient: bytes | None
    kind: str


_TX_COLUMNS = "hash, height, idx, sender, recipient, kind"


def _indexed_tx(row: tuple[Any, ...]) -> IndexedTx:
    tx_hash, height, index, sender, recipient, kind = row
    return IndexedTx(
        hash=bytes(tx_hash),
        height=int(height),
        index=int(index),
        sender=bytes(sender),
        recipient=None if recipient is None else bytes(recipient),
        kind=str(kind),
    )


def block_txs(block: StoredBlock) -> list[Tx]:
    """The decoded transactions of a stored block. Raises :class:`CorruptStore` when the block or
    one of its transactions does not decode (consensus only stores blocks that applied)."""
    try:
        return [decode_tx(raw) for raw in Block.decode(block.block).txs]
    except (DecodeError, ProtocolError) as exc:
        raise CorruptStore(f"block {block.height} cannot be indexed: {exc}") from None


def index_rows(
    block: StoredBlock, txs: list[Tx] | None = None
) -> list[tuple[bytes, int, int, bytes, bytes | None, str]]:
    """The transaction-index rows of a stored block (``txs``: its transactions, if decoded
    already). Raises :class:`CorruptStore` as :func:`block_txs`."""
    rows = []
    for index, tx in enumerate(block_txs(block) if txs is None else txs):
        recipient = tx.msg.to if isinstance(tx.msg, Transfer) else None
        rows.append((tx.hash, block.height, index, tx.sender, recipient, tx.msg.KIND))
    return rows


_CONTRACT_COLUMNS = "contract_hash, requester, provider, payer, price, max_gpu_seconds, max_cost, claimed_pay"


def _contract_info(row: tuple[Any, ...]) -> ContractInfo:
    contract_hash, requester, provider, payer, price, seconds, max_cost, claimed = row
    return ContractInfo(
        bytes(contract_hash),
        bytes(requester),
        bytes(provider),
        bytes(payer),
        int(price),
        int(seconds),
        int(max_cost),
        None if claimed is None else int(claimed),
    )


def _index_parties(
    db: sqlite3.Connection, height: int, txs: list[Tx], escrow_prices: Mapping[bytes, int] | None
) -> None:
    """Record every party of each transaction (``node.tx_history``) and what the store keeps of
    each contract, inside the block's own database transaction."""

    def lookup(contract_hash: bytes) -> ContractInfo | None:
        row = db.execute(
            f"SELECT {_CONTRACT_COLUMNS} FROM contracts WHERE contract_hash=?", (contract_hash,)
        ).fetchone()
        return None if row is None else _contract_info(row)

    for index, tx in enumerate(txs):
        opened = tx_history.contract_of(tx, escrow_prices)
        if opened is not None:
            db.execute(
                f"INSERT OR IGNORE INTO contracts ({_CONTRACT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, NULL)",
                (
                    opened.contract_hash,
                    opened.requester,
                    opened.provider,
                    opened.payer,
                    opened.price_per_gpu_second,
                    opened.max_gpu_seconds,
                    opened.max_cost,
                ),
            )
        contract_hash = tx_history.contract_hash_of(tx)
        claimed = tx_history.claimed_pay(tx, lookup(contract_hash) if contract_hash else None)
        if claimed is not None:
            db.execute("UPDATE contracts SET claimed_pay=? WHERE contract_hash=?", (claimed, contract_hash))
        db.executemany(
            "INSERT OR IGNORE INTO tx_parties VALUES (?, ?, ?)",
            [(party, height, index) for party in sorted(tx_history.parties(tx, lookup))],
        )


@dataclass(frozen=True, slots=True)
class Head:
    height: int
    hash: bytes
    state_hash: bytes


class ChainStore:
    """One SQLite database file. Open with :meth:`open`; always :meth:`close`."""

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self._db = connection
        self._lock = threading.Lock()
        self.path = path

    @classmethod
    def open(cls, path: Path) -> ChainStore:
        """Open (creating if needed) the database at ``path``. Raises :class:`CorruptStore`."""
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA foreign_keys=ON")
            db.executescript(_SCHEMA)
            version = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if version is None:
                db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION).encode(),))
            elif int(version[0]) != SCHEMA_VERSION:
                raise CorruptStore(f"{path}: schema version {int(version[0])}, expected {SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            raise CorruptStore(f"{path}: {exc}") from None
        return cls(db, path)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _one(self, sql: str, args: tuple[object, ...] = ()) -> tuple[object, ...] | None:
        with self._lock:
            row: tuple[object, ...] | None = self._db.execute(sql, args).fetchone()
            return row

    # --- identity --------------------------------------------------------------------------
    def bind_chain(self, chain_id: str, genesis_hash: bytes) -> None:
        """Record the chain this database belongs to, or check it. Raises :class:`WrongChain`."""
        with self._transaction() as db:
            rows = dict(db.execute("SELECT key, value FROM meta WHERE key IN ('chain_id','genesis_hash')"))
            if not rows:
                db.execute("INSERT INTO meta VALUES ('chain_id', ?)", (chain_id.encode(),))
                db.execute("INSERT INTO meta VALUES ('genesis_hash', ?)", (genesis_hash,))
                return
            if rows.get("chain_id") != chain_id.encode() or rows.get("genesis_hash") != genesis_hash:
                stored = bytes(rows.get("chain_id", b"")).decode(errors="replace")
                raise WrongChain(f"{self.path} holds chain {stored!r} with another genesis; not {chain_id!r}")

    # --- blocks ----------------------------------------------------------------------------
    def append_block(
        self,
        block: StoredBlock,
        *,
        snapshot: bytes | None = None,
        consensus_updates: dict[str, bytes] | None = None,
        economics: bytes | None = None,
        escrow_prices: Mapping[bytes, int] | None = None,
        txs: Sequence[Tx] | None = None,
    ) -> None:
        """Store the block at head + 1 and index its transactions, optionally with a ledger
        snapshot of the state after it, consensus-state updates and the block's economics
        record, all in one transaction. ``escrow_prices``: the DCT price each escrow the block
        opened fixed (from its ledger events), indexed instead of the terms' cap. ``txs``: the
        block's transactions, decoded already (consensus has them from executing the block);
        decoding them here again cost a validator ~3% of its CPU under load.

        Raises :class:`NotContiguous`, or :class:`CorruptStore` for block bytes that do not
        decode as a block of valid transactions; nothing is written when it raises.
        """
        txs = block_txs(block) if txs is None else list(txs)
        rows = index_rows(block, txs)
        with self._transaction() as db:
            row = db.execute("SELECT MAX(height) FROM blocks").fetchone()
            head = row[0] if row and row[0] is not None else 0
            if block.height != head + 1:
                raise NotContiguous(f"block {block.height} does not follow stored head {head}")
            db.execute(
                "INSERT INTO blocks VALUES (?, ?, ?, ?, ?)",
                (block.height, block.hash, block.state_hash, block.block, block.certificate),
            )
            db.executemany(f"INSERT INTO txs ({_TX_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)", rows)
            _index_parties(db, block.height, txs, escrow_prices)
            if snapshot is not None:
                db.execute(
                    "INSERT OR REPLACE INTO snapshots VALUES (?, ?, ?)",
                    (block.height, block.state_hash, snapshot),
                )
            for key, value in sorted((consensus_updates or {}).items()):
                db.execute("INSERT OR REPLACE INTO consensus VALUES (?, ?)", (key, value))
            if economics is not None:
                db.execute("INSERT OR REPLACE INTO economics VALUES (?, ?)", (block.height, economics))

    def head(self) -> Head | None:
        row = self._one("SELECT height, hash, state_hash FROM blocks ORDER BY height DESC LIMIT 1")
        if row is None:
            return None
        height, block_hash, state_hash = row
        return Head(int(height), bytes(block_hash), bytes(state_hash))  # type: ignore[call-overload]

    def block(self, height: int) -> StoredBlock | None:
        row = self._one(
            "SELECT height, hash, state_hash, block, certificate FROM blocks WHERE height=?", (height,)
        )
        return None if row is None else StoredBlock(*row)  # type: ignore[arg-type]

    def block_by_hash(self, block_hash: bytes) -> StoredBlock | None:
        row = self._one(
            "SELECT height, hash, state_hash, block, certificate FROM blocks WHERE hash=?", (block_hash,)
        )
        return None if row is None else StoredBlock(*row)  # type: ignore[arg-type]

    def blocks(self, start: int, limit: int) -> list[StoredBlock]:
        """Up to ``limit`` consecutive blocks from ``start`` (for block sync)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT height, hash, state_hash, block, certificate FROM blocks "
                "WHERE height >= ? ORDER BY height LIMIT ?",
                (start, limit),
            ).fetchall()
        return [StoredBlock(*row) for row in rows]

    # --- transaction index -----------------------------------------------------------------
    def tx(self, tx_hash: bytes) -> IndexedTx | None:
        """The committed transaction with this hash, or None (pending, unknown, or committed
        before this database had the index)."""
        row = self._one(f"SELECT {_TX_COLUMNS} FROM txs WHERE hash=?", (tx_hash,))
        return None if row is None else _indexed_tx(row)

    def txs_of(self, address: bytes, limit: int) -> list[IndexedTx]:
        """Up to ``limit`` committed transactions ``address`` sent, received or is a party of
        (``node.tx_history.parties``: the escrow a wallet's grant paid, its settlement, ...),
        newest first."""
        columns = ", ".join(f"t.{name.strip()}" for name in _TX_COLUMNS.split(","))
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_TX_COLUMNS} FROM txs WHERE sender=? "
                f"UNION SELECT {_TX_COLUMNS} FROM txs WHERE recipient=? "
                f"UNION SELECT {columns} FROM tx_parties p JOIN txs t ON t.height=p.height AND t.idx=p.idx "
                "WHERE p.address=? "
                "ORDER BY height DESC, idx DESC LIMIT ?",
                (address, address, address, limit),
            ).fetchall()
        return [_indexed_tx(row) for row in rows]

    def contract(self, contract_hash: bytes) -> ContractInfo | None:
        """What the store keeps of an escrowed contract (its parties, price, pending claim)."""
        row = self._one(f"SELECT {_CONTRACT_COLUMNS} FROM contracts WHERE contract_hash=?", (contract_hash,))
        return None if row is None else _contract_info(row)

    # --- economics records (one per block) ---------------------------------------------------
    def put_economics(self, rows: list[tuple[int, bytes]]) -> None:
        """Store economics records of blocks already stored (filling in history at start)."""
        with self._transaction() as db:
            db.executemany("INSERT OR REPLACE INTO economics VALUES (?, ?)", rows)

    def economics(self, start: int, end: int) -> list[tuple[int, bytes]]:
        """``(height, record)`` for the stored records with ``start <= height <= end``, ascending."""
        with self._lock:
            rows = self._db.execute(
                "SELECT height, record FROM economics WHERE height BETWEEN ? AND ? ORDER BY height",
                (start, end),
            ).fetchall()
        return [(int(height), bytes(record)) for height, record in rows]

    def first_block_without_economics(self) -> int | None:
        """The lowest stored block height that has no economics record (a database written
        before the records existed), or None when every stored block has one."""
        row = self._one("SELECT MIN(height) FROM blocks WHERE height NOT IN (SELECT height FROM economics)")
        return None if row is None or row[0] is None else int(row[0])  # type: ignore[call-overload]

    # --- snapshots -------------------------------------------------------------------------
    def put_snapshot(self, height: int, state_hash: bytes, state: bytes) -> None:
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO snapshots VALUES (?, ?, ?)", (height, state_hash, state))

    def latest_snapshot(self) -> tuple[int, bytes, bytes] | None:
        """``(height, state_hash, state)`` of the newest snapshot, if any."""
        row = self._one("SELECT height, state_hash, state FROM snapshots ORDER BY height DESC LIMIT 1")
        return None if row is None else (int(row[0]), bytes(row[1]), bytes(row[2]))  # type: ignore[call-overload]

    def prune_snapshots(self, keep: int) -> None:
        """Keep only the newest ``keep`` snapshots."""
        with self._transaction() as db:
            db.execute(
                "DELETE FROM snapshots WHERE height NOT IN "
                "(SELECT height FROM snapshots ORDER BY height DESC LIMIT ?)",
                (keep,),
            )

    # --- consensus safety state ------------------------------------------------------------
    def put_consensus(self, updates: dict[str, bytes]) -> None:
        """Durably store consensus state (last signed step, lock) before a vote is broadcast."""
        with self._transaction() as db:
            for key, value in sorted(updates.items()):
                db.execute("INSERT OR REPLACE INTO consensus VALUES (?, ?)", (key, value))

    def consensus(self) -> dict[str, bytes]:
        with self._lock:
            return {k: bytes(v) for k, v in self._db.execute("SELECT key, value FROM consensus")}

    # --- local job records -----------------------------------------------------------------
    def put_job(self, job_id: str, state: str, record: bytes, updated_ms: int) -> None:
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO jobs VALUES (?, ?, ?, ?)", (job_id, state, record, updated_ms))

    def job(self, job_id: str) -> tuple[str, bytes, int] | None:
        row = self._one("SELECT state, record, updated_ms FROM jobs WHERE job_id=?", (job_id,))
        return None if row is None else (str(row[0]), bytes(row[1]), int(row[2]))  # type: ignore[call-overload]

    def jobs(self, state: str | None = None) -> list[tuple[str, str, bytes, int]]:
        with self._lock:
            if state is None:
                rows = self._db.execute("SELECT job_id, state, record, updated_ms FROM jobs ORDER BY job_id")
            else:
                rows = self._db.execute(
                    "SELECT job_id, state, record, updated_ms FROM jobs WHERE state=? ORDER BY job_id",
                    (state,),
                )
            return [(str(a), str(b), bytes(c), int(d)) for a, b, c, d in rows]

    def job_counts(self) -> dict[str, int]:
        """How many local job records are in each state (states with none are absent)."""
        with self._lock:
            rows = self._db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state ORDER BY state")
            return {str(state): int(count) for state, count in rows}

    def integrity_check(self) -> str:
        row = self._one("PRAGMA integrity_check")
        return str(row[0]) if row else "no answer"
