"""The testnet faucet: a transfer signed with ``DIR/faucet.key``, submitted to one node, waited on
until committed; idempotent across retries.

Issue 12 found that ``testnet faucet`` could report "not committed within 60 s" for a transfer
that then committed, so a retry paid twice. A retry must find the transfer it already signed
instead of signing another one. So the faucet keeps a journal of its requests in
``DIR/faucet/requests.json`` (under a lock file, so two faucet commands at once do not pick one
nonce), each with the exact signed bytes, their hash and nonce:

- a request is named by ``request_id``: one the caller gives (``--request-id``), or by default
  one derived from the recipient and the amount;
- a request whose transfer is not known to be committed is *resumed*, never signed again: if the
  node knows the hash, the faucet waits for it; if it does not and the nonce is still free, the
  same bytes are submitted again (the same nonce can commit once only); if another transaction
  took that nonce, the transfer never happened and a new one is signed;
- a committed request named by the caller answers with its receipt (no new payment); a committed
  default-named one is finished, and the same recipient and amount again is a new payment;
- a timeout says the transfer may still commit and that running the same command again waits for
  it without paying twice.

``send_from_key`` is the journal-less primitive (one new transfer, waited on) used by the e2e
framework for its own keys.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import trio

from node.rpc.client import RpcClient
from node.rpc.errors import RpcCallError
from node.testnet.errors import FaucetError
from node.testnet.layout import NetworkLayout
from node.testnet.readiness import client_for
from protocol.crypto import Address, PrivateKey
from protocol.ledger.tx import Transfer, sign_tx

#: ``tx_get`` of a hash the node does not know (yet): the contract's UnknownTx.
UNKNOWN_TX = 5202
#: ``tx_submit`` of bytes the node already holds: the mempool's DuplicateTx.
DUPLICATE_TX = 5601
POLL_S = 0.2
COMMIT_TIMEOUT_S = 60.0
JOURNAL_DIR = "faucet"
JOURNAL_FILE = "requests.json"
#: Finished requests kept in the journal (the oldest are forgotten first).
KEEP_FINISHED = 1000


@dataclass(frozen=True, slots=True)
class FaucetReceipt:
    hash: str
    height: int
    nonce: int
    fee: int
    request_id: str = ""
    #: True when the transfer was signed by an earlier run for the same request: nothing new paid.
    resumed: bool = False


@dataclass(frozen=True, slots=True)
class FaucetRecord:
    """One request in the journal: the signed transfer and what became of it."""

    request_id: str
    to: str
    amount: int
    nonce: int
    fee: int
    hash: str
    raw: str
    #: 0 while not known to be committed.
    height: int = 0
    explicit_id: bool = False

    @property
    def committed(self) -> bool:
        return self.height > 0

    def receipt(self, *, resumed: bool) -> FaucetReceipt:
        return FaucetReceipt(self.hash, self.height, self.nonce, self.fee, self.request_id, resumed)


def default_request_id(to: Address, amount: int) -> str:
    """The request a plain retry of the same recipient and amount continues."""
    return "auto-" + hashlib.sha256(f"{to}:{amount}".encode()).hexdigest()[:16]


class FaucetJournal:
    """``DIR/faucet/requests.json``, read and written only under ``DIR/faucet/lock``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / JOURNAL_FILE
        self.lock_path = directory / "lock"

    @contextlib.asynccontextmanager
    async def locked(self) -> AsyncIterator[dict[str, FaucetRecord]]:
        """The journal's records, held exclusively; written back when the block ends without an
        error. Raises FaucetError for a journal that cannot be read."""
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            await trio.to_thread.run_sync(fcntl.flock, fd, fcntl.LOCK_EX)
            records = self._load()
            yield records
            self.save(records)
        finally:
            os.close(fd)  # closing releases the lock

    def _load(self) -> dict[str, FaucetRecord]:
        try:
            document = json.loads(self.path.read_text())
            return {entry["request_id"]: FaucetRecord(**entry) for entry in document["requests"]}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise FaucetError(
                f"{self.path}: unreadable faucet journal ({exc}); move it aside to start afresh"
            ) from None

    def save(self, records: dict[str, FaucetRecord]) -> None:
        """Write ``records`` (call only while holding :meth:`locked`)."""
        finished = [r for r in records.values() if r.committed]
        drop = {r.request_id for r in finished[: max(0, len(finished) - KEEP_FINISHED)]}
        document = {"requests": [asdict(r) for r in records.values() if r.request_id not in drop]}
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(document, indent=1) + "\n")
        temporary.replace(self.path)


async def _tx_status(client: RpcClient, tx_hash: str) -> tuple[str, int]:
    """("committed", height), ("pending", 0) or ("unknown", 0). Raises RpcError."""
    try:
        answer = await client.call("tx_get", hash=tx_hash)
    except RpcCallError as exc:
        if exc.code != UNKNOWN_TX:
            raise
        return "unknown", 0
    if answer["status"] == "committed":
        return "committed", int(answer["height"])
    return "pending", 0


async def wait_committed(client: RpcClient, tx_hash: str, *, timeout_s: float = COMMIT_TIMEOUT_S) -> int:
    """Poll ``tx_get`` until the transaction is committed; its height.

    Raises :class:`FaucetError` at the deadline, RpcError when the node fails otherwise.
    """
    with trio.move_on_after(timeout_s):
        while True:
            status, height = await _tx_status(client, tx_hash)
            if status == "committed":
                return height
            await trio.sleep(POLL_S)
    raise FaucetError(f"transaction {tx_hash} was not committed within {timeout_s:.0f} s")


async def _account(client: RpcClient, address: Address) -> tuple[int, int]:
    account = await client.call("account_get", address=str(address))
    return int(account["balance"]), int(account["nonce"])


async def send_from_key(
    client: RpcClient, key: PrivateKey, to: Address, amount: int, *, timeout_s: float = COMMIT_TIMEOUT_S
) -> FaucetReceipt:
    """Transfer ``amount`` base units from ``key``'s account to ``to`` through ``client``'s node
    (fee: the chain's min_fee; nonce: the committed one plus one), and wait for the commit.
    Not idempotent: every call signs a new transfer (see :func:`faucet_send` for that).

    Raises :class:`FaucetError` for a refused or uncommitted transfer or an account that cannot
    pay, and RpcError when the node cannot be asked.
    """
    chain_id, fee = await _chain(client)
    balance, nonce = await _account(client, key.address)
    _check_funds(key.address, balance, amount, fee)
    raw = sign_tx(key, chain_id, nonce + 1, fee, Transfer(to.raw, amount))
    tx_hash = await _submit(client, raw)
    height = await wait_committed(client, tx_hash, timeout_s=timeout_s)
    return FaucetReceipt(tx_hash, height, nonce + 1, fee)


async def _chain(client: RpcClient) -> tuple[str, int]:
    info = await client.call("node_info")
    economics = await client.call("economics_params")
    return str(info["chain_id"]), int(economics["params"]["min_fee"])


def _check_funds(address: Address, balance: int, amount: int, fee: int) -> None:
    if balance < amount + fee:
        raise FaucetError(
            f"{address} holds {balance} base units; the transfer needs {amount + fee} with the fee"
        )


async def _submit(client: RpcClient, raw: bytes, *, again: bool = False) -> str:
    """Submit signed bytes; their hash. ``again``: the node may hold them already. Raises
    FaucetError for a refusal."""
    try:
        submitted = await client.call("tx_submit", tx=raw.hex())
    except RpcCallError as exc:
        if again and exc.code == DUPLICATE_TX:
            return hashlib.sha256(raw).hexdigest()
        raise FaucetError(f"the node refused the transfer: error {exc.code}: {exc.message}") from None
    return str(submitted["hash"])


async def faucet_send(
    client: RpcClient,
    key: PrivateKey,
    journal: FaucetJournal,
    to: Address,
    amount: int,
    *,
    request_id: str | None = None,
    timeout_s: float = COMMIT_TIMEOUT_S,
) -> FaucetReceipt:
    """Send ``amount`` from ``key`` to ``to`` once per request (see the module docstring), and
    wait for the commit.

    Raises :class:`FaucetError` (refused, not committed in time, a request id reused for another
    transfer, an account that cannot pay), RpcError (the node cannot be asked).
    """
    rid = request_id if request_id is not None else default_request_id(to, amount)
    async with journal.locked() as records:
        record = records.get(rid)
        if record is not None and (record.to, record.amount) != (str(to), amount):
            raise FaucetError(
                f"request {rid} was for {record.amount} base units to {record.to}; use another request id"
            )
        if record is not None and record.committed:
            if record.explicit_id:
                return record.receipt(resumed=True)
            record = None  # a finished default request: the same transfer again is a new one
        resumed = record is not None
        if record is not None:
            record = await _resume(client, key, record)
            if record is not None and record.committed:
                records[rid] = record
                return record.receipt(resumed=True)
        if record is None:
            resumed = False
            record = await _sign_new(client, key, records, rid, to, amount, explicit=request_id is not None)
            # Journaled before it is submitted: if the answer is lost, a retry finds these bytes.
            previous = records.get(rid)
            records[rid] = record
            journal.save(records)
            try:
                await _submit(client, bytes.fromhex(record.raw))
            except FaucetError:
                if previous is None:
                    del records[rid]
                else:
                    records[rid] = previous
                journal.save(records)
                raise
    height = await _wait(client, record, timeout_s)
    async with journal.locked() as records:
        records[rid] = replace(record, height=height)
    return replace(record, height=height).receipt(resumed=resumed)


async def _resume(client: RpcClient, key: PrivateKey, record: FaucetRecord) -> FaucetRecord | None:
    """An unfinished request: committed since (its height filled in), still pending or submitted
    again (unchanged), or None when another transaction took its nonce (it never paid)."""
    status, height = await _tx_status(client, record.hash)
    if status == "committed":
        return replace(record, height=height)
    if status == "pending":
        return record
    _, nonce = await _account(client, key.address)
    if nonce >= record.nonce:
        return None
    await _submit(client, bytes.fromhex(record.raw), again=True)
    return record


async def _sign_new(
    client: RpcClient,
    key: PrivateKey,
    records: dict[str, FaucetRecord],
    rid: str,
    to: Address,
    amount: int,
    *,
    explicit: bool,
) -> FaucetRecord:
    """A new signed transfer for request ``rid`` (not submitted). Raises FaucetError when the
    faucet cannot pay it."""
    chain_id, fee = await _chain(client)
    balance, committed = await _account(client, key.address)
    _check_funds(key.address, balance, amount, fee)
    # Transfers of other unfinished requests hold the nonces right after the committed one; a
    # new one goes after them (the mempool admits a sender's nonces in order, with no gap), so
    # each is first brought back into the node's mempool, or forgotten if its nonce was taken.
    others = sorted(
        (r for r in records.values() if not r.committed and r.request_id != rid and r.nonce > committed),
        key=lambda r: r.nonce,
    )
    nonce = committed + 1
    for other in others:
        current = await _resume(client, key, other)
        if current is None:
            del records[other.request_id]
            continue
        records[other.request_id] = current
        nonce = max(nonce, current.nonce + 1)
    raw = sign_tx(key, chain_id, nonce, fee, Transfer(to.raw, amount))
    return FaucetRecord(
        rid, str(to), amount, nonce, fee, hashlib.sha256(raw).hexdigest(), raw.hex(), explicit_id=explicit
    )


async def _wait(client: RpcClient, record: FaucetRecord, timeout_s: float) -> int:
    try:
        return await wait_committed(client, record.hash, timeout_s=timeout_s)
    except FaucetError:
        raise FaucetError(
            f"transfer {record.hash} (request {record.request_id}, nonce {record.nonce}) was not committed "
            f"within {timeout_s:.0f} s; it may still commit: run the same command again (or with "
            f"--request-id {record.request_id}) to wait for it without paying twice"
        ) from None


async def faucet_transfer(
    layout: NetworkLayout,
    to: Address,
    amount: int,
    *,
    node_index: int = 0,
    timeout_s: float = COMMIT_TIMEOUT_S,
    request_id: str | None = None,
) -> FaucetReceipt:
    """Send ``amount`` from the testnet's faucet to ``to`` through node ``node_index``, once per
    request (``request_id``, or by default the recipient and amount: see the module docstring).

    Raises :class:`FaucetError`, :class:`~node.config.KeyFileError` (faucet.key unreadable),
    RpcError (the node cannot be reached).
    """
    key = layout.faucet_key()
    client = client_for(layout.node(node_index))
    journal = FaucetJournal(layout.root / JOURNAL_DIR)
    try:
        async with client:
            return await faucet_send(
                client, key, journal, to, amount, request_id=request_id, timeout_s=timeout_s
            )
    except (KeyError, TypeError, ValueError) as exc:
        raise FaucetError(f"node-{node_index} answered in an unexpected shape: {exc!r}") from None
