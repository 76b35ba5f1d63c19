"""The simulator's PRNG: SplitMix64, bit for bit, and unbiased helpers."""

from __future__ import annotations

from collections import Counter

import pytest

from protocol.sim.rng import SplitMix64


def test_matches_the_reference_splitmix64_outputs() -> None:
    # Sebastiano Vigna's splitmix64.c, seed 1234567.
    rng = SplitMix64(1234567)
    assert [rng.next_u64() for _ in range(5)] == [
        6457827717110365317,
        3203168211198807973,
        9817491932198370423,
        4593380528125082431,
        16408922859458223821,
    ]


def test_same_seed_same_stream_and_forks_are_deterministic() -> None:
    a, b = SplitMix64(7), SplitMix64(7)
    assert [a.below(1000) for _ in range(50)] == [b.below(1000) for _ in range(50)]
    assert [a.fork().next_u64() for _ in range(3)] == [b.fork().next_u64() for _ in range(3)]


def test_helpers_stay_in_range_and_cover_it() -> None:
    rng = SplitMix64(99)
    values = Counter(rng.between(3, 6) for _ in range(4000))
    assert set(values) == {3, 4, 5, 6}
    assert all(800 < count < 1200 for count in values.values())
    assert sorted(rng.shuffled(range(10))) == list(range(10))
    assert not any(rng.chance(0) for _ in range(100))
    assert all(rng.chance(1000) for _ in range(100))
    with pytest.raises(ValueError):
        rng.below(0)
