"""Which :class:`~node.p2p.guard.Reason` a typed error of a peer's input counts as.

A table, most specific class first: the first entry the error is an instance of decides. Errors
that are nobody's misbehaviour (a stream reset, a timeout, our own host error) map to reasons
with no weight, so they are counted but never scored.
"""

from __future__ import annotations

from node.p2p.errors import (
    FrameBudgetError,
    FrameTooLargeError,
    HostError,
    MessageTooLargeError,
    P2PError,
    PeerError,
    SlowFrameError,
    TruncatedFrameError,
)
from node.p2p.guard import Reason
from protocol.consensus.errors import (
    CertificateSignatureError,
    ForgedEvidence,
    InvalidSignature,
    LocalConsensusError,
)
from protocol.crypto import BadSignatureError
from protocol.encoding import DecodeError
from protocol.errors import ProtocolError
from protocol.ledger.errors import BadContractSignature, BadSignature, WrongChainId
from protocol.market.errors import (
    ForgedAnnouncement,
    ForgedContractSignature,
    ForgedQuote,
    ForgedReceipt,
    ReceiptForOtherContract,
    ReceiptOverLimit,
    WrongMarketChain,
)

_TABLE: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], Reason], ...] = (
    ((FrameTooLargeError, MessageTooLargeError, ReceiptOverLimit), Reason.OVERSIZE),
    (TruncatedFrameError, Reason.TRUNCATED),
    (SlowFrameError, Reason.SLOW),
    (HostError, Reason.INTERNAL),
    (PeerError, Reason.GONE),
    (P2PError, Reason.INTERNAL),
    (DecodeError, Reason.DECODE),
    (
        (
            BadSignature,
            BadSignatureError,
            BadContractSignature,
            InvalidSignature,
            CertificateSignatureError,
            ForgedEvidence,
            ForgedAnnouncement,
            ForgedQuote,
            ForgedContractSignature,
            ForgedReceipt,
        ),
        Reason.SIGNATURE,
    ),
    ((WrongChainId, WrongMarketChain), Reason.WRONG_CHAIN),
    (ReceiptForOtherContract, Reason.UNSOLICITED),
    (LocalConsensusError, Reason.INTERNAL),
    (ProtocolError, Reason.INVALID),
)


def reason_of(error: BaseException) -> Reason:
    """The reason a refused input counts as; :attr:`Reason.INTERNAL` for anything untyped."""
    if isinstance(error, FrameBudgetError):  # whose budget ran out decides, not the class
        return Reason.OVER_BUDGET if error.peer_exhausted else Reason.BUSY
    for kinds, reason in _TABLE:
        if isinstance(error, kinds):
            return reason
    return Reason.INTERNAL


def describe(error: BaseException) -> str:
    """The error's message, for a log line (typed errors carry one; others their repr)."""
    message = getattr(error, "message", None)
    return message if isinstance(message, str) else repr(error)
