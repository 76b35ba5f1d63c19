"""The validator key behind a double-sign guard (CometBFT's "privval", in memory).

The guard signs only at a (height, round, step) above the last one it signed, or returns the
very message it already signed there; anything else is refused and counted. Its state is a
:class:`SignState` which the core persists (a ``Persist`` effect) before it broadcasts what was
signed, so the guard holds across crashes: a restarted validator is rebuilt from that state.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.consensus.messages import (
    STEP_NONE,
    STEP_OF_VOTE,
    STEP_PROPOSE,
    Block,
    Proposal,
    SignState,
    Vote,
    proposal_sign_bytes,
    vote_sign_bytes,
)
from protocol.crypto import PrivateKey


@dataclass(frozen=True, slots=True)
class Locks:
    """The core's lock and valid value at the moment it signs: persisted with the signature."""

    locked_round: int = -1
    locked_block: Block | None = None
    valid_round: int = -1
    valid_block: Block | None = None
    valid_pol: tuple[Vote, ...] = ()

    def state(
        self,
        position: tuple[int, int, int],
        last_votes: tuple[Vote, ...],
        last_proposal: tuple[Proposal, ...],
    ) -> SignState:
        """The signer state at ``position`` with these last messages and these locks."""
        height, round_, step = position
        return SignState(
            height,
            round_,
            step,
            last_votes=last_votes,
            last_proposal=last_proposal,
            locked_round=self.locked_round,
            locked_block=() if self.locked_block is None else (self.locked_block,),
            valid_round=self.valid_round,
            valid_block=() if self.valid_block is None else (self.valid_block,),
            valid_pol=self.valid_pol,
        )


class Signer:
    """Signs votes and proposals for one chain, never twice at one step, never backwards."""

    __slots__ = ("_key", "address", "chain_id", "refused", "state")

    def __init__(self, chain_id: str, key: PrivateKey, state: SignState | None = None) -> None:
        self.chain_id = chain_id
        self._key = key
        self.address = key.address.raw
        self.state = state or SignState(0, 0, STEP_NONE)
        #: Signatures refused (below the last signed step, or different at the same step).
        self.refused = 0

    def _allowed(self, position: tuple[int, int, int]) -> bool:
        if position < self.state.position:
            self.refused += 1
            return False
        return True

    def sign_vote(
        self, height: int, round_: int, vote_type: int, block_hash: bytes, locks: Locks, time_ms: int = 0
    ) -> tuple[Vote | None, bool]:
        """The vote, and whether it is newly signed (then ``state`` changed and must be
        persisted before the vote is sent). ``(None, False)`` when the guard refuses. A vote
        already signed at this step goes out again with its original time."""
        position = (height, round_, STEP_OF_VOTE[vote_type])
        if not self._allowed(position):
            return None, False
        state = self.state
        if position == state.position:
            # Only the very vote signed there may go out again.
            for vote in state.last_votes:
                if vote.type == vote_type and vote.block_hash == block_hash:
                    return vote, False
            self.refused += 1
            return None, False
        payload = vote_sign_bytes(self.chain_id, height, round_, vote_type, block_hash, self.address, time_ms)
        vote = Vote(height, round_, vote_type, block_hash, self.address, self._key.sign(payload), time_ms)
        same_round = (state.height, state.round) == (height, round_)
        earlier = tuple(v for v in state.last_votes if v.type != vote_type) if same_round else ()
        self.state = locks.state(position, (*earlier, vote), state.last_proposal if same_round else ())
        return vote, True

    def sign_proposal(
        self, height: int, round_: int, block: Block, pol_round: int, locks: Locks
    ) -> tuple[Proposal | None, bool]:
        """Like :meth:`sign_vote`, for the proposal of (height, round)."""
        position = (height, round_, STEP_PROPOSE)
        if not self._allowed(position):
            return None, False
        if position == self.state.position:
            for proposal in self.state.last_proposal:
                if proposal.block.hash == block.hash and proposal.pol_round == pol_round:
                    return proposal, False
            self.refused += 1
            return None, False
        payload = proposal_sign_bytes(self.chain_id, height, round_, pol_round, block.hash)
        proposal = Proposal(height, round_, pol_round, block, self._key.sign(payload))
        self.state = locks.state(position, (), (proposal,))
        return proposal, True

    def record_locks(self, height: int, locks: Locks) -> bool:
        """Store a changed lock or valid value (line 42) with the signer state; True when the
        state changed and must be persisted. Nothing is stored for a height not yet signed at:
        there the valid value only matters for liveness."""
        if self.state.height != height:
            return False
        state = self.state
        updated = locks.state(state.position, state.last_votes, state.last_proposal)
        if updated == self.state:
            return False
        self.state = updated
        return True
