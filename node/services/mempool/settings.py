"""The mempool's bounds, with defaults; validated when built."""

from __future__ import annotations

from dataclasses import dataclass, fields

from node.services.mempool.errors import MempoolSettingsError
from protocol.ledger.tx import MAX_TX_BYTES

#: Largest value any count or size setting may take: far above any machine's memory, and it keeps
#: every product in admission small integers.
_MAX_SETTING = 2**40


@dataclass(frozen=True, slots=True)
class MempoolSettings:
    """Bounds of one node's mempool. ``max_block_txs`` should be the consensus setting of the same
    name: admission control counts in blocks' worth of it."""

    #: Hard bound on waiting transactions (memory).
    max_txs: int = 20_000
    #: Hard bound on their encoded bytes (memory).
    max_bytes: int = 64 * 1024 * 1024
    #: Transactions a proposer puts in one block (``consensus.max_block_txs``).
    max_block_txs: int = 5_000
    #: Admission control: beyond this many blocks' worth of waiting transactions, a new one is
    #: refused as busy unless it pays more per byte than the cheapest waiting one.
    busy_blocks: int = 2
    #: Admission control counts a block's worth as the most any of the last few committed blocks
    #: carried (what proposers actually manage), never less than this (so a quiet chain still
    #: takes a burst) nor more than ``max_block_txs``.
    busy_floor_txs: int = 256
    #: Admission control also keeps no more waiting than the last few blocks finalized in this
    #: many milliseconds (by their block times): bigger blocks are slower to build and execute, so
    #: a bound counted in blocks alone lets the wait grow with them.
    busy_wait_ms: int = 1000
    #: Waiting transactions per sender (also how far ahead of its committed nonce it may go).
    max_per_sender: int = 64
    #: Their bytes per sender.
    max_sender_bytes: int = 64 * MAX_TX_BYTES
    #: A transaction still waiting this many blocks after it was admitted is dropped, with the
    #: sender's later ones.
    expiry_blocks: int = 600
    #: A transaction replacing a waiting one of the same sender and nonce pays this many percent
    #: more fee (and at least 1 base unit more), and no less per byte.
    replace_bump_percent: int = 10
    #: Hashes of verified transactions kept after they leave the pool other than by a commit
    #: (evicted, expired, replaced): a peer's block may still carry them.
    verified_keep: int = 20_000

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            low = 0 if field.name == "replace_bump_percent" else 1
            if type(value) is not int or not low <= value <= _MAX_SETTING:
                raise MempoolSettingsError(f"mempool.{field.name}: an integer from {low} to {_MAX_SETTING}")
        if self.max_bytes < MAX_TX_BYTES or self.max_sender_bytes < MAX_TX_BYTES:
            raise MempoolSettingsError(
                f"mempool.max_bytes and max_sender_bytes: at least one transaction ({MAX_TX_BYTES} bytes)"
            )

    @property
    def busy_limit(self) -> int:
        """Waiting transactions beyond which admission control refuses before any block was seen
        (see ``busy_blocks``); :attr:`Mempool.busy_limit` then follows what blocks carry."""
        return self.busy_blocks * self.max_block_txs

    def busy_limit_for(self, carried: int, rate: tuple[int, int] | None = None) -> int:
        """The admission bound when recent blocks carried at most ``carried`` transactions and,
        given ``rate`` = (transactions, milliseconds), finalized that many in that long."""
        floor = self.busy_blocks * min(self.busy_floor_txs, self.max_block_txs)
        bound = self.busy_blocks * min(carried, self.max_block_txs)
        if rate is not None and rate[1] > 0:
            bound = min(bound, rate[0] * self.busy_wait_ms // rate[1])
        return max(floor, bound)
