"""Validator sets: integer thresholds and the stake-weighted, deterministic proposer rotation."""

from __future__ import annotations

from collections import Counter

import pytest

from protocol.consensus.errors import InvalidMessage, NotInValidatorSet
from protocol.consensus.validators import MAX_SCHEDULE, Validator, ValidatorSet

from .consensus_support import vkey


def _set(*powers: int) -> ValidatorSet:
    return ValidatorSet(
        Validator(vkey(i).address.raw, vkey(i).public_key.raw, p) for i, p in enumerate(powers)
    )


def test_quorum_is_strictly_more_than_two_thirds_in_integers() -> None:
    validators = _set(1, 1, 1)  # total 3
    assert not validators.has_quorum(2) and validators.has_quorum(3)
    big = _set(10**18, 10**18, 10**18 + 1)  # no float could tell these apart
    assert big.total_power == 3 * 10**18 + 1
    assert not big.has_quorum(2 * 10**18)
    assert big.has_quorum(2 * 10**18 + 1)


def test_one_third_is_strictly_more_than_a_third() -> None:
    validators = _set(1, 1, 1, 1, 1, 1)  # total 6
    assert not validators.has_one_third(2) and validators.has_one_third(3)


def test_equal_powers_rotate_round_robin() -> None:
    validators = _set(5, 5, 5, 5)
    order = [validators.proposer(1, r) for r in range(8)]
    assert len(set(order[:4])) == 4
    assert order[4:] == order[:4]
    # (height, round) shifts the same sequence: h+1 at round 0 is h at round 1
    assert validators.proposer(2, 0) == validators.proposer(1, 1)


def test_proposer_turns_are_weighted_by_stake() -> None:
    validators = _set(3, 1, 2, 2)
    counts = Counter(validators.proposer(h, 0) for h in range(800))
    powers = {v.address: v.power for v in validators.validators}
    for address, count in counts.items():
        assert count == 100 * powers[address]  # exact over whole periods of 8
    # and interleaved, not in blocks: the heaviest never proposes more than twice in a row
    sequence = [validators.proposer(h, 0) for h in range(8)]
    heaviest = max(powers, key=powers.__getitem__)
    assert all(sequence[i : i + 3] != [heaviest] * 3 for i in range(6))


def test_proposer_depends_only_on_height_round_and_set() -> None:
    first = _set(7, 3, 5)
    second = ValidatorSet(reversed(first.validators))
    assert [first.proposer(h, r) for h in range(5) for r in range(5)] == [
        second.proposer(h, r) for h in range(5) for r in range(5)
    ]


def test_huge_stakes_use_a_bounded_schedule_that_keeps_the_shares() -> None:
    validators = _set(10**15 + 7, 3 * 10**15 + 1, 2 * 10**15)
    counts = Counter(validators.proposer(h, 0) for h in range(MAX_SCHEDULE))
    shares = sorted(counts.values())
    assert sum(shares) == MAX_SCHEDULE
    expected = sorted(MAX_SCHEDULE * v.power // validators.total_power for v in validators.validators)
    assert all(abs(a - b) <= 1 for a, b in zip(shares, expected, strict=True))


def test_bad_sets_and_members_are_rejected() -> None:
    with pytest.raises(InvalidMessage):
        ValidatorSet([])
    with pytest.raises(InvalidMessage):
        Validator(vkey(0).address.raw, vkey(1).public_key.raw, 1)  # address of another key
    with pytest.raises(InvalidMessage):
        Validator(vkey(0).address.raw, vkey(0).public_key.raw, 0)
    one = Validator(vkey(0).address.raw, vkey(0).public_key.raw, 1)
    with pytest.raises(InvalidMessage):
        ValidatorSet([one, one])
    with pytest.raises(NotInValidatorSet) as caught:
        _set(1).get(vkey(3).address.raw)
    assert caught.value.code == 3002
