"""What the consensus core needs from the replicated state machine: an in-process ABCI.

The core decides *which* block is next; the application says what a valid block is, builds
one for a proposer, and applies decided blocks. :class:`protocol.consensus.ledger_app.LedgerApp`
implements it over the token ledger. Everything here is pure: the application is state in
memory, and persisting decided blocks is the node's job (the core's ``Commit`` effect).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from protocol.consensus.messages import Block, CommitCertificate, DuplicateVoteEvidence
from protocol.consensus.validators import ValidatorSet


class Application(Protocol):
    @property
    def chain_id(self) -> str: ...

    @property
    def genesis_hash(self) -> bytes: ...

    @property
    def height(self) -> int:
        """The last committed height (0 at genesis)."""
        ...

    @property
    def last_block_hash(self) -> bytes:
        """The hash of the last committed block (the genesis hash at height 0)."""
        ...

    @property
    def last_block_time(self) -> int: ...

    @property
    def last_certificate(self) -> CommitCertificate:
        """The commit certificate of the last committed block (genesis pseudo-certificate at 0)."""
        ...

    def extend_last_certificate(self, certificate: CommitCertificate) -> None:
        """Adopt a certificate of the last committed block with more signers than the one held
        (precommits that arrived after the decision): the next block's ``last_commit``."""
        ...

    def validator_set(self, height: int) -> ValidatorSet:
        """The validators of ``height``. Raises UnknownHeight outside the kept window."""
        ...

    def check_evidence(self, evidence: DuplicateVoteEvidence, height: int) -> None:
        """Whether ``evidence`` may go into a block at ``height``. Raises InvalidEvidence."""
        ...

    def build_block(
        self,
        *,
        height: int,
        proposer: bytes,
        evidence: Sequence[DuplicateVoteEvidence],
    ) -> Block:
        """A valid next block from the mempool, executed so its ``state_hash`` is filled in; its
        time is the BFT time of the last certificate. Raises an InvalidMessage subclass when no
        block can be built (the core then proposes nothing)."""
        ...

    def check_block(self, block: Block) -> None:
        """Accept ``block`` as the next block or raise InvalidBlock / InvalidCertificate /
        InvalidEvidence. Executes it (on a copy) and may cache the result for :meth:`commit`."""
        ...

    def commit(self, block: Block, certificate: CommitCertificate) -> bytes:
        """Apply a decided block (already checked), remember its certificate, and return the
        hash of the state it produced."""
        ...
