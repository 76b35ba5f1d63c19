"""A tiny seeded PRNG (SplitMix64): the simulator's only source of randomness.

Written out rather than taken from :mod:`random` so a seed gives the same run on every Python
version and platform, and so nothing under ``protocol/`` imports :mod:`random` (the lint hook
forbids it: the protocol core must be deterministic, and the simulator's choices come from
here, from an explicit seed, only).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")

_MASK = (1 << 64) - 1


class SplitMix64:
    __slots__ = ("_state",)

    def __init__(self, seed: int) -> None:
        self._state = seed & _MASK

    def next_u64(self) -> int:
        self._state = (self._state + 0x9E3779B97F4A7C15) & _MASK
        z = self._state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
        return z ^ (z >> 31)

    def below(self, bound: int) -> int:
        """Uniform in ``[0, bound)`` (rejection sampling: no modulo bias)."""
        if bound <= 0:
            raise ValueError("bound must be positive")
        limit = _MASK + 1 - ((_MASK + 1) % bound)
        while True:
            value = self.next_u64()
            if value < limit:
                return value % bound

    def between(self, low: int, high: int) -> int:
        """Uniform in ``[low, high]``."""
        return low + self.below(high - low + 1)

    def chance(self, per_mille: int) -> bool:
        """True with probability ``per_mille / 1000``."""
        return per_mille > 0 and self.below(1000) < per_mille

    def choice(self, items: Sequence[T]) -> T:
        return items[self.below(len(items))]

    def shuffled(self, items: Sequence[T]) -> list[T]:
        out = list(items)
        for i in range(len(out) - 1, 0, -1):
            j = self.below(i + 1)
            out[i], out[j] = out[j], out[i]
        return out

    def fork(self) -> SplitMix64:
        """An independent stream (for one subsystem), derived deterministically."""
        return SplitMix64(self.next_u64())
