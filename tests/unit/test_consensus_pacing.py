"""The consensus core's bounded trackers: future rounds per validator, paced re-sends, and the
evidence it puts in its own block."""

from __future__ import annotations

from typing import cast

import pytest

from protocol.consensus.errors import InvalidEvidence
from protocol.consensus.evidence import evidence_to_propose
from protocol.consensus.messages import DuplicateVoteEvidence
from protocol.consensus.other_heights import MAX_FUTURE_ROUNDS_PER_VALIDATOR, FutureRounds, Pacer


def test_a_validator_makes_us_track_only_a_few_far_rounds() -> None:
    rounds = FutureRounds(MAX_FUTURE_ROUNDS_PER_VALIDATOR)
    assert all(rounds.admit(b"v", r, current_round=0) for r in (0, 1))  # near rounds: always
    assert rounds.admit(b"v", 5, 0) and rounds.admit(b"v", 9, 0)
    assert rounds.admit(b"v", 5, 0)  # one already tracked
    assert not rounds.admit(b"v", 7, 0)  # a third far round: refused
    assert rounds.admit(b"w", 7, 0)  # per validator
    rounds.entered(5)  # round 5 is no longer far ahead: its slot is free again
    assert rounds.admit(b"v", 8, 5) and not rounds.admit(b"v", 12, 5)


def test_a_pacer_acts_once_per_interval_and_key() -> None:
    pacer: Pacer[int] = Pacer(250)
    assert pacer.ready(1, 1000)
    assert not pacer.ready(1, 1249)
    assert pacer.ready(2, 1249)
    assert pacer.ready(1, 1250)


class _Evidence:
    """Stands for a :class:`DuplicateVoteEvidence` (only its height is read here)."""

    def __init__(self, height: int) -> None:
        self.height = height


def test_our_block_carries_older_valid_evidence_and_drops_the_invalid_for_good() -> None:
    older, invalid, current = (cast(DuplicateVoteEvidence, _Evidence(h)) for h in (3, 2, 5))
    pool = {b"a": older, b"b": invalid, b"c": current}

    def check(evidence: DuplicateVoteEvidence, height: int) -> None:
        assert height == 5
        if evidence is invalid:
            raise InvalidEvidence("expired")

    assert evidence_to_propose(pool, 5, check) == [older]
    assert set(pool) == {b"a", b"c"}  # the invalid one is gone; this height's waits for the next


@pytest.mark.parametrize("per_validator", [0, 1])
def test_no_far_round_beyond_the_bound(per_validator: int) -> None:
    rounds = FutureRounds(per_validator)
    admitted = [rounds.admit(b"v", r, 0) for r in range(2, 6)]
    assert admitted.count(True) == per_validator
