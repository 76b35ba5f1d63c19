"""Precommits for the last decided block that arrive after the decision.

A node decides on the first 2f+1 of the power's precommits it sees; the others arrive a few
milliseconds later, during the commit timeout (CometBFT's NewHeight step, which exists for
exactly this). They belong in the next block's ``last_commit``: the ledger's downtime jailing
counts a validator of the parent's set that is absent from it as having missed the height
(``protocol.ledger.slashing``), and BFT time is the median of its precommit times.

Without this, whichever validators were slowest to precommit missed every height: with four
equal validators the slowest one was left out of nearly every certificate, and with one large
validator the two smaller ones alternated in and out of the 2/3 and were both jailed within a
signing window (seen in ``tests/e2e/test_jailing.py``). An honest proposer now includes every
precommit for the decided block that reached it; only a Byzantine proposer leaves some out, and it
proposes less than a third of the blocks, below the share a validator must miss to be jailed.
"""

from __future__ import annotations

from protocol.consensus.messages import PRECOMMIT, CommitCertificate, Vote, certificate_from_votes


class LatePrecommits:
    """The precommits behind the last decision, by validator; grows as late ones arrive."""

    def __init__(self, height: int, round_: int, block_hash: bytes, precommits: list[Vote]) -> None:
        self.height = height
        self.round = round_
        self.block_hash = block_hash
        self._votes = {vote.validator: vote for vote in precommits if vote.block_hash == block_hash}

    def wants(self, vote: Vote) -> bool:
        """A precommit for the decided block in the deciding round that is not held yet."""
        return (
            vote.type == PRECOMMIT
            and vote.height == self.height
            and vote.round == self.round
            and vote.block_hash == self.block_hash
            and vote.validator not in self._votes
        )

    def add(self, vote: Vote) -> CommitCertificate:
        """The certificate with ``vote`` added (its signature already checked by the caller)."""
        assert self.wants(vote), "only a wanted precommit is added"
        self._votes[vote.validator] = vote
        return certificate_from_votes(self.height, self.round, self.block_hash, list(self._votes.values()))
