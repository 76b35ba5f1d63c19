"""Mempool refusals (codes 5600-5649), each with a stable code the RPC returns as ``error.code``.

A refusal is either the submitter's fault (the transaction itself, or its sender's other waiting
transactions) or the node's load (retry later). A transaction that can never apply as it stands
is refused with the ledger's own error instead (``InsufficientFunds`` 2006, ``InsufficientStake``
2010, ``BadNonce`` 2004, ...), since the ledger would refuse it in a block for that reason.

    5600  MempoolError                 root
    -- the submitter's fault: fix the transaction, or wait for its sender's waiting ones --
    5601  DuplicateTx                  this exact transaction is already waiting
    5603  NonceTaken                   another transaction of the sender has this nonce and the new one
                                       does not pay the replacement bump (the message names the fee)
    5604  PendingSpendExceedsBalance   the balance (or bonded stake) pays this transaction alone, but
                                       not together with what the sender's waiting ones already commit
    5606  SenderLimit                  the sender has as many transactions / bytes waiting as allowed
    5607  NonceGap                     the nonce skips one: the node admits a sender's nonces in order
    5608  BlockedByPendingTx           a waiting transaction of the sender before this one no longer
                                       applies; replace it (same nonce) first
    -- the node's load: retry later, or pay a higher fee per byte --
    5602  MempoolFull                  the pool's memory bounds are reached and nothing cheaper can go
    5605  MempoolBusy                  more is waiting than the next blocks can carry ("busy, retry")
    -- the operator's fault --
    5620  MempoolSettingsError         an impossible mempool setting
"""

from __future__ import annotations

from typing import ClassVar

from node.errors import NodeError


class MempoolError(NodeError):
    """Root of mempool refusals that are not ledger errors (codes 5600-5649)."""

    code: ClassVar[int] = 5600


class DuplicateTx(MempoolError):
    """This exact transaction is already waiting."""

    code = 5601


class MempoolFull(MempoolError):
    """The pool's count or byte bound is reached and nothing waiting pays less per byte.

    Retry later, or pay more per byte than the cheapest waiting transaction."""

    code = 5602


class NonceTaken(MempoolError):
    """Another transaction of this sender with this nonce waits; replacing it takes a fee bump.

    The message names the fee that would replace it."""

    code = 5603


class PendingSpendExceedsBalance(MempoolError):
    """The balance pays this transaction alone, not with the sender's waiting ones as well.

    The account's waiting transactions already commit part of its balance (or bonded stake).
    Retry once they are committed."""

    code = 5604


class MempoolBusy(MempoolError):
    """Busy: more transactions are waiting than the next blocks can carry; retry.

    Retry after a block or two, or pay more per byte than the cheapest waiting transaction."""

    code = 5605


class SenderLimit(MempoolError):
    """The sender already has the most transactions (or bytes) allowed waiting."""

    code = 5606


class NonceGap(MempoolError):
    """The nonce skips the sender's next one; nonces are admitted in order.

    With no gaps, every waiting transaction could be in the next blocks."""

    code = 5607


class BlockedByPendingTx(MempoolError):
    """An earlier waiting transaction of the sender no longer applies; replace it first."""

    code = 5608


class MempoolSettingsError(MempoolError):
    """An impossible mempool setting (the operator's configuration)."""

    code = 5620
