"""A minimal mempool for simulated nodes: admitted transfers waiting for a block.

The node's real mempool lives in ``node/services`` (it does I/O-facing admission policy); the
simulator needs only the consensus-relevant part: admit a transaction once (decoded, signature
checked, nonce not yet used), offer candidates to the proposer in (sender, nonce) order, and drop
what the committed state has used up.
"""

from __future__ import annotations

from protocol.ledger.errors import LedgerError
from protocol.ledger.state import LedgerState
from protocol.ledger.tx import Tx, decode_tx

_VERIFIED_CAPACITY = 100_000
#: Transaction hash -> signature valid. Verification is pure, so one answer serves every
#: replica (and every run) in the process.
_verified: dict[bytes, bool] = {}


def tx_signature_known_valid(tx: Tx) -> bool:
    """True when this process already verified ``tx``'s signature (lets apply_block skip it)."""
    return _verified.get(tx.hash, False)


def _signature_valid(tx: Tx) -> bool:
    known = _verified.get(tx.hash)
    if known is None:
        if len(_verified) >= _VERIFIED_CAPACITY:
            del _verified[next(iter(_verified))]
        known = _verified[tx.hash] = tx.verify_signature()
    return known


class SimMempool:
    __slots__ = ("_txs",)

    def __init__(self) -> None:
        self._txs: dict[bytes, Tx] = {}

    def __len__(self) -> int:
        return len(self._txs)

    def add(self, raw: bytes, state: LedgerState) -> bool:
        """Admit ``raw``; False if malformed, badly signed, already here or already used."""
        try:
            tx = decode_tx(raw)
        except LedgerError:
            return False
        if tx.hash in self._txs or tx.chain_id != state.chain_id:
            return False
        if tx.nonce <= state.account(tx.sender).nonce or not _signature_valid(tx):
            return False
        self._txs[tx.hash] = tx
        return True

    def candidates(self) -> list[bytes]:
        return [tx.raw for tx in sorted(self._txs.values(), key=lambda tx: (tx.sender, tx.nonce))]

    def prune(self, state: LedgerState) -> None:
        for tx_hash, tx in list(self._txs.items()):
            if tx.nonce <= state.account(tx.sender).nonce:
                del self._txs[tx_hash]
