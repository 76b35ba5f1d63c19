"""Vote bookkeeping for one height: per round, per type, stake-weighted tallies.

A vote set holds the first vote of each validator; "2f+1 votes of any kind" counts each
validator once. A second vote for a different value is an equivocation, and the pair becomes
evidence. The paper counts messages *per value* ("2f+1 PREVOTE for id(v)"), so the core may
also count an equivocator's second vote towards that value (:meth:`VoteSet.count_conflicting`)
when the value matters: nil, or a block proposed at this height. Without that, two honest
replicas that saw a twin's two votes in different orders could disagree forever on whether a
proof-of-lock exists, and a locked replica would never be released. It is safe: a quorum for
each of two values needs more than 1/3 of the power to vote twice.
"""

from __future__ import annotations

import enum

from protocol.consensus.messages import PREVOTE, Vote
from protocol.consensus.validators import ValidatorSet


class AddResult(enum.Enum):
    ADDED = "added"
    DUPLICATE = "duplicate"  # the same vote again: nothing new
    CONFLICT = "conflict"  # a different vote from a validator that already voted: evidence


class VoteSet:
    """The votes of one type in one round of one height."""

    __slots__ = ("_extra", "_power_by_block", "_validators", "power", "votes")

    def __init__(self, validators: ValidatorSet) -> None:
        self._validators = validators
        self.votes: dict[bytes, Vote] = {}
        self._extra: dict[tuple[bytes, bytes], Vote] = {}
        self._power_by_block: dict[bytes, int] = {}
        self.power = 0

    def add(self, vote: Vote) -> tuple[AddResult, Vote | None]:
        """Add a verified vote. Returns the result and, on CONFLICT, the vote already held."""
        held = self.votes.get(vote.validator)
        if held is not None:
            if held.block_hash == vote.block_hash:
                return AddResult.DUPLICATE, None
            return AddResult.CONFLICT, held
        weight = self._validators.power_of(vote.validator)
        self.votes[vote.validator] = vote
        self._power_by_block[vote.block_hash] = self._power_by_block.get(vote.block_hash, 0) + weight
        self.power += weight
        return AddResult.ADDED, None

    def count_conflicting(self, vote: Vote) -> bool:
        """Count an equivocator's vote for its value too; False if already counted there."""
        key = (vote.validator, vote.block_hash)
        held = self.votes.get(vote.validator)
        if held is None or held.block_hash == vote.block_hash or key in self._extra:
            return False
        self._extra[key] = vote
        weight = self._validators.power_of(vote.validator)
        self._power_by_block[vote.block_hash] = self._power_by_block.get(vote.block_hash, 0) + weight
        return True

    def power_for(self, block_hash: bytes) -> int:
        return self._power_by_block.get(block_hash, 0)

    def has_quorum_for(self, block_hash: bytes) -> bool:
        return self._validators.has_quorum(self._power_by_block.get(block_hash, 0))

    def has_quorum_any(self) -> bool:
        """2f+1 votes of this type, whatever they are for (lines 34 and 47)."""
        return self._validators.has_quorum(self.power)

    def quorum_block(self) -> bytes | None:
        """The value (a block hash, or NIL) with 2f+1 of the power, if any."""
        for block_hash, power in self._power_by_block.items():
            if self._validators.has_quorum(power):
                return block_hash
        return None

    def votes_for(self, block_hash: bytes) -> list[Vote]:
        """One vote per validator for ``block_hash`` (equivocators' counted second votes too)."""
        found = [vote for vote in self.votes.values() if vote.block_hash == block_hash]
        if self._extra:
            found += [vote for (_, value), vote in self._extra.items() if value == block_hash]
        return found


class RoundVotes:
    """Prevotes and precommits of one round, and who has been heard from in it."""

    __slots__ = ("_participants", "_validators", "participant_power", "precommits", "prevotes")

    def __init__(self, validators: ValidatorSet) -> None:
        self._validators = validators
        self.prevotes = VoteSet(validators)
        self.precommits = VoteSet(validators)
        self._participants: dict[bytes, None] = {}
        self.participant_power = 0

    def of_type(self, vote_type: int) -> VoteSet:
        return self.prevotes if vote_type == PREVOTE else self.precommits

    def heard_from(self, address: bytes) -> None:
        """Note a message from ``address`` in this round (for the f+1 round skip, line 55)."""
        if address not in self._participants:
            self._participants[address] = None
            self.participant_power += self._validators.power_of(address)


class HeightVotes:
    """All rounds' votes of one height."""

    __slots__ = ("_validators", "rounds")

    def __init__(self, validators: ValidatorSet) -> None:
        self._validators = validators
        self.rounds: dict[int, RoundVotes] = {}

    def round(self, round_: int) -> RoundVotes:
        votes = self.rounds.get(round_)
        if votes is None:
            votes = self.rounds[round_] = RoundVotes(self._validators)
        return votes

    def add(self, vote: Vote) -> tuple[AddResult, Vote | None]:
        round_votes = self.round(vote.round)
        result = round_votes.of_type(vote.type).add(vote)
        if result[0] is AddResult.ADDED:
            round_votes.heard_from(vote.validator)
        return result

    def precommit_quorum(self, round_: int) -> bytes | None:
        votes = self.rounds.get(round_)
        return None if votes is None else votes.precommits.quorum_block()
