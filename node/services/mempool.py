"""The mempool: admitted transactions waiting for a block.

Admission decodes, checks the chain id, the fee floor and the nonce window against the committed
state, and verifies the signature once; the hash of every verified transaction is remembered so
``apply_block`` can skip re-verifying it (``verified=mempool.was_verified``). Duplicates are
refused, and the pool is bounded in count and bytes. Reaping returns each sender's transactions in
nonce order, senders interleaved by first arrival: deterministic for a given arrival order.

A waiting transaction that can no longer apply (its escrow was settled by the other party, say)
would hold its sender's next nonce forever, since blocks include only transactions that apply. So
a new transaction with the same, next nonce replaces it once a dry run shows it fails.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import ClassVar

from node.errors import NodeError
from protocol.ledger.block import check_tx
from protocol.ledger.errors import BadNonce, BadSignature, FeeTooLow, LedgerError, WrongChainId
from protocol.ledger.state import LedgerState
from protocol.ledger.tx import Tx, decode_tx

#: How far ahead of the committed nonce a sender may queue transactions.
MAX_NONCE_GAP = 64


class MempoolError(NodeError):
    """Root of mempool refusals that are not ledger errors (codes 5600-5649)."""

    code: ClassVar[int] = 5600


class DuplicateTx(MempoolError):
    code = 5601


class MempoolFull(MempoolError):
    code = 5602


class NonceTaken(MempoolError):
    """Another transaction of this sender with this nonce is already waiting."""

    code = 5603


@dataclass(frozen=True, slots=True)
class MempoolStats:
    count: int
    bytes: int
    verified_cache: int


class Mempool:
    def __init__(self, *, max_txs: int = 20_000, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_txs = max_txs
        self.max_bytes = max_bytes
        self._txs: OrderedDict[bytes, Tx] = OrderedDict()
        self._by_sender_nonce: dict[tuple[bytes, int], bytes] = {}
        self._bytes = 0
        # Hashes of transactions whose signatures were verified here (bounded with the pool,
        # plus the last block's worth so a block built from the pool skips re-verification).
        self._verified: OrderedDict[bytes, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._txs)

    def __contains__(self, tx_hash: object) -> bool:
        return tx_hash in self._txs

    def get(self, tx_hash: bytes) -> Tx | None:
        return self._txs.get(tx_hash)

    def stats(self) -> MempoolStats:
        return MempoolStats(len(self._txs), self._bytes, len(self._verified))

    def add(self, raw: bytes, state: LedgerState) -> Tx:
        """Admit one transaction against the committed ``state``.

        Raises MalformedTx, WrongChainId, FeeTooLow, BadNonce, BadSignature (ledger errors) or
        DuplicateTx, NonceTaken, MempoolFull. Nothing changes when it raises.
        """
        tx = decode_tx(raw)
        if tx.hash in self._txs:
            raise DuplicateTx("transaction already in the mempool")
        if tx.chain_id != state.chain_id:
            raise WrongChainId(f"transaction is for chain {tx.chain_id!r}, this is {state.chain_id!r}")
        if tx.fee < state.params.min_fee:
            raise FeeTooLow(f"fee {tx.fee} is below the minimum {state.params.min_fee}")
        committed = state.account(tx.sender).nonce
        if not committed < tx.nonce <= committed + MAX_NONCE_GAP:
            raise BadNonce(f"nonce {tx.nonce} is outside ({committed}, {committed + MAX_NONCE_GAP}]")
        taken = self._by_sender_nonce.get((tx.sender, tx.nonce))
        if taken is not None:
            if tx.nonce != committed + 1 or self._still_applies(self._txs[taken], state):
                raise NonceTaken(f"a transaction with nonce {tx.nonce} from this sender is already waiting")
            # The waiting one can never apply (its escrow closed, say): without making way, the
            # sender's nonce would be stuck behind it for good.
            self.discard(taken)
        if len(self._txs) >= self.max_txs or self._bytes + len(raw) > self.max_bytes:
            raise MempoolFull(f"mempool holds {len(self._txs)} transactions / {self._bytes} bytes")
        if tx.hash not in self._verified:
            if not tx.verify_signature():
                raise BadSignature("transaction signature does not verify")
            self._remember_verified(tx.hash)
        self._txs[tx.hash] = tx
        self._by_sender_nonce[(tx.sender, tx.nonce)] = tx.hash
        self._bytes += len(raw)
        return tx

    @staticmethod
    def _still_applies(tx: Tx, state: LedgerState) -> bool:
        try:
            check_tx(state, tx.raw)
        except LedgerError:
            return False
        return True

    def discard(self, tx_hash: bytes) -> bool:
        """Drop one waiting transaction (its sender found it can no longer apply)."""
        tx = self._txs.pop(tx_hash, None)
        if tx is None:
            return False
        del self._by_sender_nonce[(tx.sender, tx.nonce)]
        self._bytes -= len(tx.raw)
        return True

    def _remember_verified(self, tx_hash: bytes) -> None:
        self._verified[tx_hash] = None
        limit = 2 * self.max_txs
        while len(self._verified) > limit:
            self._verified.popitem(last=False)

    def was_verified(self, tx: Tx) -> bool:
        """For ``apply_block(verified=...)``: this exact transaction's signature was checked."""
        return tx.hash in self._verified

    def reap(self, max_txs: int) -> list[Tx]:
        """Up to ``max_txs`` transactions: per sender in nonce order, senders by first arrival."""
        queues: dict[bytes, list[Tx]] = {}
        for tx in self._txs.values():
            queues.setdefault(tx.sender, []).append(tx)
        for queue in queues.values():
            queue.sort(key=lambda t: t.nonce)
        out: list[Tx] = []
        depth = 0
        while len(out) < max_txs:
            progressed = False
            for queue in queues.values():
                if depth < len(queue):
                    out.append(queue[depth])
                    progressed = True
                    if len(out) >= max_txs:
                        break
            if not progressed:
                break
            depth += 1
        return out

    def remove_committed(self, state: LedgerState, included: set[bytes] | None = None) -> int:
        """Drop transactions included in a block or made stale by the new committed nonces.

        Returns how many were dropped.
        """
        dropped = 0
        for tx_hash, tx in list(self._txs.items()):
            if (included and tx_hash in included) or tx.nonce <= state.account(tx.sender).nonce:
                del self._txs[tx_hash]
                del self._by_sender_nonce[(tx.sender, tx.nonce)]
                self._bytes -= len(tx.raw)
                dropped += 1
        return dropped
