"""Double-sign evidence: detection happens in the vote sets, verification here.

Evidence is two votes with the same (height, round, type, validator) for different blocks,
both validly signed by that validator's key at that height. An honest validator signs at most
one vote per (height, round, type) -- its sign guard refuses anything else, across restarts --
so no valid evidence against it can exist: it cannot be framed. Evidence is accepted while it
is younger than the ledger's ``evidence_max_age`` blocks and the validator is not yet punished
(tombstoned), so each double-sign is slashed once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from protocol.consensus.errors import (
    DuplicateEvidence,
    ForgedEvidence,
    InvalidEvidence,
    LocalConsensusError,
    NotEquivocation,
    StaleEvidence,
)
from protocol.consensus.messages import DuplicateVoteEvidence
from protocol.consensus.validators import ValidatorSet
from protocol.consensus.verifier import SignatureVerifier


def verify_evidence(
    evidence: DuplicateVoteEvidence,
    *,
    chain_id: str,
    current_height: int,
    max_age: int,
    validators_at: Callable[[int], ValidatorSet],
    is_punished: Callable[[bytes], bool],
    verifier: SignatureVerifier,
) -> None:
    """Check ``evidence`` for inclusion in (or detection at) a block at ``current_height``.

    Raises :class:`NotEquivocation`, :class:`StaleEvidence`, :class:`DuplicateEvidence`,
    :class:`ForgedEvidence` or :class:`InvalidEvidence`.
    """
    a, b = evidence.vote_a, evidence.vote_b
    if (a.height, a.round, a.type, a.validator) != (b.height, b.round, b.type, b.validator):
        raise NotEquivocation("the votes differ in height, round, type or validator")
    if a.block_hash == b.block_hash:
        raise NotEquivocation("two votes for the same block are not evidence")
    if a.block_hash > b.block_hash:
        raise InvalidEvidence("evidence votes must be in block-hash order")
    if a.height >= current_height:
        raise StaleEvidence(f"evidence from height {a.height} is not below {current_height}")
    if current_height - a.height > max_age:
        raise StaleEvidence(f"evidence from height {a.height} is older than {max_age} blocks")
    try:
        validators = validators_at(a.height)
    except LocalConsensusError:
        raise StaleEvidence(f"the validator set of height {a.height} is no longer kept") from None
    if a.validator not in validators:
        raise ForgedEvidence(f"{a.validator.hex()} was not a validator at height {a.height}")
    if is_punished(a.validator):
        raise DuplicateEvidence(f"{a.validator.hex()} is already punished")
    key = validators.public_key(a.validator)
    if not (verifier.verify(chain_id, key, a) and verifier.verify(chain_id, key, b)):
        raise ForgedEvidence(f"the votes are not both signed by {a.validator.hex()}")


def verify_block_evidence(
    evidence: Sequence[DuplicateVoteEvidence],
    *,
    chain_id: str,
    current_height: int,
    max_age: int,
    validators_at: Callable[[int], ValidatorSet],
    is_punished: Callable[[bytes], bool],
    verifier: SignatureVerifier,
) -> None:
    """Check a block's evidence list: each item valid, and no validator accused twice.

    Raises what :func:`verify_evidence` raises, or :class:`DuplicateEvidence`.
    """
    accused: set[bytes] = set()
    for item in evidence:
        if item.validator in accused:
            raise DuplicateEvidence(f"{item.validator.hex()} is accused twice in one block")
        accused.add(item.validator)
        verify_evidence(
            item,
            chain_id=chain_id,
            current_height=current_height,
            max_age=max_age,
            validators_at=validators_at,
            is_punished=is_punished,
            verifier=verifier,
        )


def evidence_to_propose(
    pool: dict[bytes, DuplicateVoteEvidence],
    height: int,
    check: Callable[[DuplicateVoteEvidence, int], None],
) -> list[DuplicateVoteEvidence]:
    """The pending evidence our block at ``height`` carries: from earlier heights (evidence from
    this height goes into the next block at the earliest), each still valid there. ``check``
    raises :class:`InvalidEvidence` for one that is not (expired, already punished): it is
    dropped from ``pool``, since it never becomes valid again."""
    chosen = []
    for validator, item in list(pool.items()):
        if item.height >= height:
            continue
        try:
            check(item, height)
        except InvalidEvidence:
            del pool[validator]
            continue
        chosen.append(item)
    return chosen
