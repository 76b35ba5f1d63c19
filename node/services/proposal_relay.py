"""Which peers already hold a proposal we are about to relay (issue 14: the per-block cost).

Every node relays each proposal once, on a fresh stream to every peer but the one it came from,
so proposals cross any connected topology. In a full mesh, where the proposer reaches everyone
itself, all of that is waste: on 4 nodes, 6 of the 9 streams per proposal, each a stream open,
a multistream negotiation and a close on both sides (~20% of an idle validator's CPU together
with the proposer's own 3).

So a node relays a proposal :data:`RELAY_DELAY_S` after it first saw it, and only to peers it has
no evidence of holding it by then. Evidence: the peer sent us a copy of it, or a vote naming its
block (a validator votes for a block only once it holds it; the vote's origin is the peer that
signed the GossipSub message, so another peer cannot claim it). A peer that is no validator, or
one slower to vote than the delay, gets the relay as before, only later by the delay. A hostile
validator voting for a block it lacks only deprives itself of a copy it could still sync.

Bounded: at most :data:`MAX_PENDING` proposals wait at once; past that a proposal is relayed at
once, to everyone but its sender, as before.
"""

from __future__ import annotations

from collections import OrderedDict

#: How long a node waits, after it first saw a proposal, before relaying it to the peers that
#: have not shown they hold it. On loopback every validator has voted by then; across a slow link
#: the relay simply goes out this much later.
RELAY_DELAY_S = 0.05

#: Proposals waiting to be relayed at once (heights times rounds in flight; a few in practice).
MAX_PENDING = 64


class ProposalHolders:
    """Peers known to hold each proposal waiting to be relayed, by its block hash and by the hash
    of its bytes (copies of it arrive as bytes, dropped before decoding)."""

    def __init__(self, limit: int = MAX_PENDING) -> None:
        self._limit = limit
        self._holders: OrderedDict[bytes, set[str]] = OrderedDict()  # by block hash
        self._blocks: dict[bytes, bytes] = {}  # proposal digest -> block hash

    def expect(self, digest: bytes, block_hash: bytes, sender: str) -> bool:
        """Start collecting holders of a proposal first seen from ``sender``. False when too many
        wait already (the caller relays it at once) or it already waits."""
        if len(self._holders) >= self._limit or block_hash in self._holders:
            return False
        self._holders[block_hash] = {sender}
        self._blocks[digest] = block_hash
        return True

    def copy_from(self, digest: bytes, peer: str) -> None:
        """``peer`` sent us a copy of the proposal with these bytes."""
        block_hash = self._blocks.get(digest)
        if block_hash is not None:
            self._holders[block_hash].add(peer)

    def vote_from(self, block_hash: bytes, peer: str) -> None:
        """``peer`` signed a vote for ``block_hash``."""
        holders = self._holders.get(block_hash)
        if holders is not None:
            holders.add(peer)

    def take(self, digest: bytes) -> set[str]:
        """The holders of the proposal with these bytes, forgetting it."""
        block_hash = self._blocks.pop(digest, None)
        if block_hash is None:
            return set()
        return self._holders.pop(block_hash, set())

    def __len__(self) -> int:
        return len(self._holders)
