"""The core's outputs (effects), its timer events, and its configuration.

The node layer performs effects in list order. The order is part of the contract: a
``Persist`` always precedes the ``Broadcast`` of what it records, and a ``Commit`` precedes
anything the core does at the next height.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TypeAlias

from protocol.consensus.errors import InvalidConfig
from protocol.consensus.messages import (
    Block,
    CommitCertificate,
    CommittedBlock,
    DuplicateVoteEvidence,
    Proposal,
    SignState,
    Vote,
)


class TimeoutKind(enum.IntEnum):
    PROPOSE = 1
    PREVOTE = 2
    PRECOMMIT = 3
    #: Re-send our own messages of the current round: the paper assumes gossip that eventually
    #: delivers every message; over a lossy network that means retransmitting until progress.
    GOSSIP = 4
    #: After a decision the core stops and resumes the new height when this fires
    #: (CometBFT's timeout_commit): one event never runs more than one height, and with a
    #: single validator, which needs nobody's votes, blocks come one per timer, not unboundedly.
    COMMIT = 5


@dataclass(frozen=True, slots=True)
class Timeout:
    kind: TimeoutKind
    height: int
    round: int


@dataclass(frozen=True, slots=True)
class ConsensusConfig:
    """Timeouts in milliseconds. Each round adds ``timeout_delta_ms`` to the three step timeouts,
    so after a partition heals the rounds grow long enough for a quorum to meet."""

    timeout_propose_ms: int = 3000
    timeout_prevote_ms: int = 1000
    timeout_precommit_ms: int = 1000
    timeout_delta_ms: int = 500
    gossip_interval_ms: int = 2000
    timeout_commit_ms: int = 0
    #: How long a node behind its peers waits for the blocks it asked for before asking again.
    sync_retry_ms: int = 2000
    #: Messages of the next height kept per validator of that height (authenticated first, so
    #: no one else can fill a validator's share or evict its messages).
    max_buffered_per_validator: int = 64

    def __post_init__(self) -> None:
        for name in (
            "timeout_propose_ms",
            "timeout_prevote_ms",
            "timeout_precommit_ms",
            "gossip_interval_ms",
        ):
            if getattr(self, name) <= 0:
                raise InvalidConfig(f"{name} must be positive")
        non_negative = (
            self.timeout_delta_ms,
            self.sync_retry_ms,
            self.max_buffered_per_validator,
            self.timeout_commit_ms,
        )
        if min(non_negative) < 0:
            raise InvalidConfig(
                "timeout_delta_ms, sync_retry_ms, max_buffered_per_validator and timeout_commit_ms must be >= 0"
            )

    def timeout_ms(self, kind: TimeoutKind, round_: int) -> int:
        if kind is TimeoutKind.GOSSIP:
            return self.gossip_interval_ms
        if kind is TimeoutKind.COMMIT:
            return self.timeout_commit_ms
        base = {
            TimeoutKind.PROPOSE: self.timeout_propose_ms,
            TimeoutKind.PREVOTE: self.timeout_prevote_ms,
            TimeoutKind.PRECOMMIT: self.timeout_precommit_ms,
        }[kind]
        return base + round_ * self.timeout_delta_ms


@dataclass(frozen=True, slots=True)
class Persist:
    """Durably store the signer state before performing any later effect."""

    state: SignState


@dataclass(frozen=True, slots=True)
class Broadcast:
    """Send to every validator (gossip)."""

    message: Proposal | Vote | DuplicateVoteEvidence


@dataclass(frozen=True, slots=True)
class SetTimeout:
    """Call ``on_timeout(timeout)`` after ``duration_ms`` of local time."""

    timeout: Timeout
    duration_ms: int


@dataclass(frozen=True, slots=True)
class Commit:
    """A block was decided and applied to the application: store it with its certificate.
    ``state_hash`` is the application's state hash after it (equal to ``block.state_hash``)."""

    block: Block
    certificate: CommitCertificate
    state_hash: bytes


@dataclass(frozen=True, slots=True)
class ReportEvidence:
    """We saw a validator double-sign; the evidence is pooled for our next proposal."""

    evidence: DuplicateVoteEvidence


@dataclass(frozen=True, slots=True)
class RequestSync:
    """We are behind: ask a peer (``peer`` is a validator address hint, or b"" for any) for
    committed blocks from ``from_height`` on, and feed each back as a ``CommittedBlock``."""

    from_height: int
    peer: bytes


@dataclass(frozen=True, slots=True)
class SendBlocks:
    """A peer (validator address ``peer``) is still voting at ``from_height``, which we have
    decided: send it our committed blocks from there (it cannot finish that height without the
    precommits we saw, and we no longer re-send them)."""

    peer: bytes
    from_height: int


Effect: TypeAlias = Persist | Broadcast | SetTimeout | Commit | ReportEvidence | RequestSync | SendBlocks
Message: TypeAlias = Proposal | Vote | CommittedBlock | DuplicateVoteEvidence
