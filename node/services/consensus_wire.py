"""Wire forms of consensus messages between nodes: a tagged canonical envelope.

Votes and evidence travel on GossipSub; proposals (which carry whole blocks) and block sync go
over direct streams: large payloads through GossipSub's per-message overhead and spam caps were
measured to cost several times more than a stream.
"""

from __future__ import annotations

from protocol.consensus.messages import CommittedBlock, DuplicateVoteEvidence, Proposal, Vote
from protocol.encoding import DecodeError, Record, decode, encode

_TAGS: dict[str, type[Record]] = {
    "vote": Vote,
    "proposal": Proposal,
    "evidence": DuplicateVoteEvidence,
    "committed": CommittedBlock,
}
_TAG_OF: dict[type[Record], str] = {cls: tag for tag, cls in _TAGS.items()}

ConsensusMessage = Vote | Proposal | DuplicateVoteEvidence | CommittedBlock

#: Upper bound of one envelope: a full block of transactions plus its certificate.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024


def encode_message(message: ConsensusMessage) -> bytes:
    return encode({"m": message.to_wire(), "t": _TAG_OF[type(message)]})


def decode_message(data: bytes) -> ConsensusMessage:
    """Raises :class:`DecodeError` for anything that is not one well-formed message."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise DecodeError("consensus message too large")
    envelope = decode(data)
    if type(envelope) is not dict or set(envelope) != {"m", "t"}:
        raise DecodeError("a consensus message is a map of t and m")
    cls = _TAGS.get(envelope["t"]) if type(envelope["t"]) is str else None
    if cls is None:
        raise DecodeError(f"unknown consensus message type {envelope['t']!r}")
    message = cls.from_wire(envelope["m"])
    assert isinstance(message, Vote | Proposal | DuplicateVoteEvidence | CommittedBlock)
    return message
