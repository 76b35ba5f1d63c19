"""Memoised signature verification.

Ed25519 verification costs ~58 us here; in one process the same vote is verified again and
again: once per replica in the simulator, then inside every certificate that carries it. A
signature check is a pure function of (chain id, public key, signed message), so remembering
its answer is exact, not an approximation. The cache is keyed by the message record itself
(which holds the signature and determines the sign-bytes), bounded, and evicts oldest first.
"""

from __future__ import annotations

from protocol.consensus.messages import Proposal, Vote
from protocol.crypto import PublicKey

DEFAULT_CAPACITY = 200_000


class SignatureVerifier:
    """Verifies votes and proposals, remembering every answer (bounded)."""

    __slots__ = ("_cache", "_capacity", "hits", "misses")

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self._cache: dict[tuple[str, bytes, Vote | Proposal], bool] = {}
        self._capacity = capacity
        self.hits = 0
        self.misses = 0

    def verify(self, chain_id: str, public_key: PublicKey, message: Vote | Proposal) -> bool:
        """True when ``message.signature`` is ``public_key``'s signature of its sign-bytes."""
        key = (chain_id, public_key.raw, message)
        known = self._cache.get(key)
        if known is not None:
            self.hits += 1
            return known
        self.misses += 1
        valid = public_key.verify(message.signature, message.sign_bytes(chain_id))
        if len(self._cache) >= self._capacity:
            # dicts keep insertion order: drop the oldest entry.
            del self._cache[next(iter(self._cache))]
        self._cache[key] = valid
        return valid
