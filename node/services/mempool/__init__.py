"""The mempool package: :mod:`.pool` (admission, ordering, eviction), :mod:`.spend` (what each
transaction kind commits), :mod:`.settings`, :mod:`.errors` (codes 5600-5649)."""

from node.services.mempool.errors import (
    BlockedByPendingTx,
    DuplicateTx,
    MempoolBusy,
    MempoolError,
    MempoolFull,
    MempoolSettingsError,
    NonceGap,
    NonceTaken,
    PendingSpendExceedsBalance,
    SenderLimit,
)
from node.services.mempool.pool import Mempool, MempoolStats
from node.services.mempool.settings import MempoolSettings

__all__ = [
    "BlockedByPendingTx",
    "DuplicateTx",
    "Mempool",
    "MempoolBusy",
    "MempoolError",
    "MempoolFull",
    "MempoolSettings",
    "MempoolSettingsError",
    "MempoolStats",
    "NonceGap",
    "NonceTaken",
    "PendingSpendExceedsBalance",
    "SenderLimit",
]
