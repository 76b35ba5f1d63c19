"""Validator sets, stake-weighted thresholds and proposer selection.

Thresholds are exact integer comparisons on voting power: "2f+1" (a quorum) is
``3 * power > 2 * total`` and "f+1" (at least one honest) is ``3 * power > total``.

Proposer selection is a weighted round robin that depends only on (height, round) and the set:
the schedule is the sequence of Sainte-Laguë (Webster) picks over the validators' powers, and
the proposer of (h, r) is ``schedule[(h + r) % len(schedule)]``. Each pick goes to the validator
with the smallest ``(2 * picks + 1) / power``, ties to the lower address. With equal powers
this is plain round robin; with powers 2:1:1 it is a, b, c, a. Powers are first divided by
their gcd, so the schedule is exact whenever the reduced powers sum to at most
:data:`MAX_SCHEDULE`; beyond that the first ``MAX_SCHEDULE`` picks are used, which gives every
validator its share to within one slot in ``MAX_SCHEDULE`` (Webster apportionment is
house-monotone), and a validator with less than 1/(2 * MAX_SCHEDULE) of the power may never
propose.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable
from dataclasses import dataclass

from protocol.consensus.errors import InvalidMessage, NotInValidatorSet
from protocol.crypto import PUBLIC_KEY_LEN, PublicKey, address_of
from protocol.encoding import Record

MAX_SCHEDULE = 4096


@dataclass(frozen=True, slots=True)
class Validator(Record):
    address: bytes
    public_key: bytes
    power: int

    def __post_init__(self) -> None:
        if type(self.public_key) is not bytes or len(self.public_key) != PUBLIC_KEY_LEN:
            raise InvalidMessage("a validator public key is 32 bytes")
        if self.address != address_of(self.public_key):
            raise InvalidMessage("validator address does not match its public key")
        if type(self.power) is not int or not 0 < self.power < 2**63:
            raise InvalidMessage(f"validator power {self.power!r} must be positive")


class _Pick:
    """A heap entry ordered by the Webster priority (2 * picks + 1) / power, then address."""

    __slots__ = ("index", "picks", "power")

    def __init__(self, index: int, power: int) -> None:
        self.index = index
        self.power = power
        self.picks = 0

    def __lt__(self, other: _Pick) -> bool:
        left = (2 * self.picks + 1) * other.power
        right = (2 * other.picks + 1) * self.power
        return left < right or (left == right and self.index < other.index)


def _webster_schedule(powers: list[int]) -> tuple[int, ...]:
    divisor = math.gcd(*powers)
    reduced = [p // divisor for p in powers]
    length = min(sum(reduced), MAX_SCHEDULE)
    heap = [_Pick(i, p) for i, p in enumerate(reduced)]
    heapq.heapify(heap)
    schedule = []
    for _ in range(length):
        best = heap[0]
        schedule.append(best.index)
        best.picks += 1
        heapq.heapreplace(heap, best)
    return tuple(schedule)


class ValidatorSet:
    """An immutable validator set in ascending address order."""

    __slots__ = ("_by_address", "_keys", "_schedule", "total_power", "validators")

    def __init__(self, validators: Iterable[Validator]) -> None:
        ordered = tuple(sorted(validators, key=lambda v: v.address))
        if not ordered:
            raise InvalidMessage("a validator set cannot be empty")
        self.validators = ordered
        self._by_address = {v.address: v for v in ordered}
        if len(self._by_address) != len(ordered):
            raise InvalidMessage("a validator set lists one address twice")
        self.total_power = sum(v.power for v in ordered)
        self._keys: dict[bytes, PublicKey] = {}
        self._schedule: tuple[int, ...] | None = None

    @classmethod
    def from_ledger(cls, validators: Iterable[object]) -> ValidatorSet:
        """Build from any objects with ``address``, ``public_key`` and ``power`` (the ledger's)."""
        return cls(
            Validator(v.address, v.public_key, v.power)  # type: ignore[attr-defined]
            for v in validators
        )

    def __len__(self) -> int:
        return len(self.validators)

    def __contains__(self, address: object) -> bool:
        return address in self._by_address

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ValidatorSet) and other.validators == self.validators

    def __hash__(self) -> int:
        return hash(self.validators)

    def __repr__(self) -> str:
        return f"ValidatorSet({len(self.validators)} validators, power={self.total_power})"

    def get(self, address: bytes) -> Validator:
        """The validator with ``address``. Raises :class:`NotInValidatorSet`."""
        validator = self._by_address.get(address)
        if validator is None:
            raise NotInValidatorSet(f"{address.hex()} is not in the validator set")
        return validator

    def power_of(self, address: bytes) -> int:
        validator = self._by_address.get(address)
        return 0 if validator is None else validator.power

    def public_key(self, address: bytes) -> PublicKey:
        """The parsed public key of a member. Raises :class:`NotInValidatorSet`."""
        key = self._keys.get(address)
        if key is None:
            key = PublicKey(self.get(address).public_key)
            self._keys[address] = key
        return key

    def has_quorum(self, power: int) -> bool:
        """More than 2/3 of the total power: the "2f+1" of the paper."""
        return 3 * power > 2 * self.total_power

    def has_one_third(self, power: int) -> bool:
        """More than 1/3 of the total power: the "f+1" of the paper (some honest validator)."""
        return 3 * power > self.total_power

    def proposer(self, height: int, round_: int) -> bytes:
        """The address that proposes at (height, round): deterministic, stake-weighted."""
        if self._schedule is None:
            self._schedule = _webster_schedule([v.power for v in self.validators])
        return self.validators[self._schedule[(height + round_) % len(self._schedule)]].address
