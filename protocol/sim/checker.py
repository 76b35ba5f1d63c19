"""Safety and liveness properties, checked as the simulation runs.

Safety (checked at every event that could break it, i.e. after every effect):

* agreement: no two honest replicas commit different blocks at one height;
* no replica commits a height twice (across crashes and restarts);
* every commit certificate verifies against the committing replica's validator set;
* no honest validator signs two different votes (or proposals) at one (height, round, step);
* all honest replicas have the same ledger state hash after each height;
* the ledger's supply invariant holds after every block.

Liveness: after the network heals, every honest replica commits a new height within
``liveness_bound_ms`` of the heal or of its previous commit, until it reaches the target.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from protocol.consensus.certificate import verify_certificate
from protocol.consensus.errors import InvalidCertificate
from protocol.consensus.messages import Block, CommitCertificate, Proposal, Vote
from protocol.consensus.validators import ValidatorSet
from protocol.consensus.verifier import SignatureVerifier
from protocol.ledger.errors import InvariantError
from protocol.ledger.state import LedgerState


@dataclass
class Checker:
    chain_id: str
    verifier: SignatureVerifier
    #: Validator addresses whose keys are shared by twins (exempt from honest-node checks).
    byzantine: frozenset[bytes]
    violations: list[str] = field(default_factory=list)
    _decided: dict[int, tuple[bytes, int]] = field(default_factory=dict)
    _state_hashes: dict[int, tuple[bytes, int]] = field(default_factory=dict)
    _node_heights: dict[int, set[int]] = field(default_factory=dict)
    _signed: dict[tuple[bytes, int, int, int], bytes] = field(default_factory=dict)

    def _fail(self, now_ms: int, message: str) -> None:
        self.violations.append(f"t={now_ms}ms {message}")

    def on_commit(
        self,
        *,
        now_ms: int,
        node: int,
        honest: bool,
        block: Block,
        certificate: CommitCertificate,
        validators: ValidatorSet,
        state: LedgerState,
        state_hash: bytes,
    ) -> None:
        """``state_hash`` is what executing the block gave on this replica (``apply_block``
        hashes the very state the replica adopts), ``state`` the replica's ledger now."""
        height = block.height
        heights = self._node_heights.setdefault(node, set())
        if height in heights:
            self._fail(now_ms, f"node {node} committed height {height} twice")
        heights.add(height)
        try:
            verify_certificate(
                certificate,
                chain_id=self.chain_id,
                height=height,
                block_hash=block.hash,
                validators=validators,
                verifier=self.verifier,
            )
        except InvalidCertificate as exc:
            self._fail(now_ms, f"node {node} committed height {height} with a bad certificate: {exc!r}")
        # One event can commit several heights (block sync): the replica's state is then past
        # this height, and its hash and invariants are checked at the last one.
        current = state.height == height
        if current:
            try:
                state.check_invariants()
            except InvariantError as exc:
                self._fail(now_ms, f"node {node} ledger invariant broken at height {height}: {exc.message}")
        if not honest:
            return
        first = self._decided.setdefault(height, (block.hash, node))
        if first[0] != block.hash:
            self._fail(
                now_ms,
                f"agreement: node {node} committed {block.hash[:6].hex()} at height {height}, "
                f"node {first[1]} committed {first[0][:6].hex()}",
            )
        if state_hash != block.state_hash:
            self._fail(now_ms, f"node {node} state at height {height} differs from its block's state hash")
        first_state = self._state_hashes.setdefault(height, (state_hash, node))
        if first_state[0] != state_hash:
            self._fail(
                now_ms, f"state hash of node {node} differs from node {first_state[1]} at height {height}"
            )

    def on_final_state(self, now_ms: int, node: int, state: LedgerState) -> None:
        """Recompute a replica's final state hash from scratch and compare it with the height's."""
        expected = self._state_hashes.get(state.height)
        if expected is not None and state.state_hash() != expected[0]:
            self._fail(now_ms, f"node {node} final ledger state does not hash to height {state.height}'s")

    def on_signed(self, now_ms: int, message: Vote | Proposal, signer: bytes) -> None:
        """Record a signed message seen leaving a node (or persisted by it)."""
        if signer in self.byzantine:
            return
        if isinstance(message, Vote):
            key = (signer, message.height, message.round, message.type + 1)
            value = message.block_hash
        else:
            key = (signer, message.height, message.round, 0)
            value = message.block.hash + message.pol_round.to_bytes(8, "big", signed=True)
        first = self._signed.setdefault(key, value)
        if first != value:
            self._fail(now_ms, f"honest validator {signer[:4].hex()} double-signed at {key[1:]}: {message!r}")
