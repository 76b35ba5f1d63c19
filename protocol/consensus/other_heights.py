"""Messages for heights other than the one being decided: authenticated before any action.

A vote or proposal for another height can make the core act: send blocks to a validator that
lags (past heights), keep the message for when we get there (the next height), or ask peers for
blocks (later heights). Each of those costs us something, so none happens for a message that is
not signed by a validator of its height: the set of a past height while it is kept, the next
height's set (always known two blocks ahead, see ``ledger_app.VALIDATOR_SET_DELAY``), and for
heights beyond it the newest set we know, the best evidence of membership we have.

The next height's messages wait in a :class:`FutureBuffer` with a quota per validator. The attack
this answers: a stranger sending 1024 unsigned next-height votes filled the old shared buffer,
so the real proposal that arrived after them was dropped and the height began without it. Now a
stranger's messages never get in, and a validator's messages evict only its own older ones.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from protocol.consensus.errors import InvalidSignature, LocalConsensusError, NotInValidatorSet
from protocol.consensus.messages import CommitCertificate, Proposal, Vote
from protocol.consensus.validators import ValidatorSet
from protocol.consensus.verifier import SignatureVerifier


def signer_of(
    message: Proposal | Vote, validators: ValidatorSet, *, chain_id: str, verifier: SignatureVerifier
) -> bytes:
    """The validator that signed ``message``, checked against ``validators`` (the set of the
    message's height, or the best we know of it).

    Raises :class:`NotInValidatorSet` for a vote from outside the set and
    :class:`InvalidSignature` for a signature that does not verify (for a proposal: not by the
    proposer of its round in that set)."""
    if isinstance(message, Vote):
        signer = message.validator
        if signer not in validators:
            raise NotInValidatorSet(f"{message!r}: not a validator at that height")
    else:
        signer = validators.proposer(message.height, message.round)
    if not verifier.verify(chain_id, validators.public_key(signer), message):
        raise InvalidSignature(f"{message!r} is not signed by {signer.hex()}")
    return signer


def set_of(validator_set: Callable[[int], ValidatorSet], height: int) -> ValidatorSet | None:
    """The validator set of ``height`` if this node still keeps it, else None."""
    try:
        return validator_set(height)
    except LocalConsensusError:
        return None


def vouched_by_one_third(
    certificate: CommitCertificate, validators: ValidatorSet, *, chain_id: str, verifier: SignatureVerifier
) -> bool:
    """Whether members of ``validators`` holding more than 1/3 of its power signed ``certificate``
    (then at least one honest validator decided that block: worth asking peers for it). Each
    member counts once; entries from outside the set are skipped without a signature check, and
    a member's bad signature refuses the whole certificate."""
    seen: set[bytes] = set()
    power = 0
    for vote in certificate.precommits():
        if vote.validator in seen or vote.validator not in validators:
            continue
        seen.add(vote.validator)
        if not verifier.verify(chain_id, validators.public_key(vote.validator), vote):
            return False
        power += validators.power_of(vote.validator)
        if validators.has_one_third(power):
            return True
    return False


class FutureBuffer:
    """Authenticated messages of the next height, at most ``per_validator`` per signer (oldest
    evicted first), replayed in arrival order."""

    __slots__ = ("_by_signer", "_per_validator", "_seq")

    def __init__(self, per_validator: int) -> None:
        self._per_validator = per_validator
        self._by_signer: dict[bytes, list[tuple[int, Proposal | Vote]]] = {}
        self._seq = 0

    def __len__(self) -> int:
        return sum(len(queue) for queue in self._by_signer.values())

    def add(self, signer: bytes, message: Proposal | Vote) -> None:
        if self._per_validator == 0:
            return
        queue = self._by_signer.setdefault(signer, [])
        if any(held == message for _, held in queue):
            return
        if len(queue) >= self._per_validator:
            del queue[0]
        self._seq += 1
        queue.append((self._seq, message))

    def held_from(self, signer: bytes) -> list[Proposal | Vote]:
        return [message for _, message in self._by_signer.get(signer, ())]

    def drain(self) -> list[Proposal | Vote]:
        """Every held message in arrival order; the buffer is empty afterwards."""
        entries = sorted(
            (entry for queue in self._by_signer.values() for entry in queue), key=lambda entry: entry[0]
        )
        self._by_signer = {}
        return [message for _, message in entries]


K = TypeVar("K", bound=Hashable)

#: Rounds beyond ``round + 1`` a single validator may make us track (bounds memory against a
#: Byzantine validator voting in arbitrary future rounds; honest ones are at most a few ahead).
MAX_FUTURE_ROUNDS_PER_VALIDATOR = 2


class FutureRounds:
    """The rounds beyond ``round + 1`` of this height each validator made us track: at most
    ``per_validator`` each (bounded memory against a Byzantine validator voting in arbitrary
    future rounds; honest ones are at most a few ahead)."""

    def __init__(self, per_validator: int) -> None:
        self._per_validator = per_validator
        self._by_sender: dict[bytes, list[int]] = {}

    def admit(self, sender: bytes, round_: int, current_round: int) -> bool:
        """Whether a message of ``sender`` in ``round_`` may be tracked."""
        if round_ <= current_round + 1:
            return True
        rounds = self._by_sender.setdefault(sender, [])
        if round_ in rounds:
            return True
        if len(rounds) >= self._per_validator:
            return False
        rounds.append(round_)
        return True

    def entered(self, round_: int) -> None:
        """We are in ``round_`` now: forget the rounds it is no longer far ahead of."""
        for sender in list(self._by_sender):
            kept = [r for r in self._by_sender[sender] if r > round_ + 1]
            if kept:
                self._by_sender[sender] = kept
            else:
                del self._by_sender[sender]


class Pacer(Generic[K]):
    """At most once per ``interval_ms`` for each key: how often a node asks for blocks, offers
    them to a validator that is behind, or re-sends a round's messages."""

    def __init__(self, interval_ms: int) -> None:
        self._interval_ms = interval_ms
        self._last_ms: dict[K, int] = {}

    def ready(self, key: K, now_ms: int) -> bool:
        """Whether to act for ``key`` now (then it counts as done at ``now_ms``)."""
        last = self._last_ms.get(key)
        if last is not None and now_ms - last < self._interval_ms:
            return False
        self._last_ms[key] = now_ms
        return True
