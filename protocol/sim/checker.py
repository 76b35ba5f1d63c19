"""Safety and liveness properties, checked as the simulation runs, by code of its own.

The checker shares no verification with the code under test: it checks signatures with the bare
Ed25519 primitive, weighs quorums with its own arithmetic over the validator sets of its own
ledger model (:mod:`protocol.sim.model`), recomputes block times and re-validates evidence. A
core whose quorum rule, signature check or lock handling is broken therefore cannot vouch for
itself.

Safety (checked at every event that could break it):

* agreement: no two honest replicas commit different blocks at one height; no replica commits a
  height twice; each block extends the previous one;
* certificates: every commit certificate (and every block's ``last_commit``) holds distinct
  members of that height's set with more than 2/3 of its power, each signature valid;
* the honest signer: no honest validator signs two different messages at one (height, round,
  step); it precommits a block only after prevotes of more than 2/3 of the power for it in that
  round, and once it has precommitted a block it prevotes another only on such prevotes for the
  other from its lock's round or later (Algorithm 1's lock, from everything sent on the wire);
* time: a block's time is the stake-weighted median of its ``last_commit``'s precommit times,
  after its parent's, and no later than the honest validators' clocks (plus a millisecond a
  height);
* evidence: every committed piece is two validly signed conflicting votes of a validator of that
  height, no older than the evidence window, against a validator not yet punished: each
  infraction is slashed exactly once, and no honest validator ever;
* money: every committed transaction is one the rules accept, and afterwards the replica holds
  what the checker's model holds, supply included (see ``model``); the ledger's own invariants
  and identical state hashes on every honest replica.

Liveness: after the network heals, every honest replica commits a new height within
``liveness_bound_ms`` of the heal or of its previous commit, until it reaches the target.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from protocol.consensus.messages import (
    PRECOMMIT,
    PREVOTE,
    Block,
    CommitCertificate,
    DuplicateVoteEvidence,
    Proposal,
    Vote,
)
from protocol.consensus.validators import Validator
from protocol.crypto import verify
from protocol.ledger.errors import InvariantError
from protocol.ledger.genesis import Genesis, genesis_state
from protocol.ledger.state import ActiveValidator, LedgerState
from protocol.sim.model import LedgerModel, Reported


def _two_thirds(power: int, total: int) -> bool:
    return 3 * power > 2 * total


def median_time(certificate: CommitCertificate, powers: dict[bytes, int]) -> int:
    """The stake-weighted median of the precommit times (the first time, in (time, address)
    order, at which more than half of the signers' power is reached)."""
    entries = sorted((entry.time_ms, entry.validator) for entry in certificate.signatures)
    total = sum(powers.get(address, 0) for _, address in entries)
    reached = 0
    for time_ms, address in entries:
        reached += powers.get(address, 0)
        if 2 * reached > total:
            return time_ms
    return 0


@dataclass
class Checker:
    chain_id: str
    genesis: Genesis
    #: Addresses whose keys a Byzantine node holds (exempt from the honest-signer checks).
    byzantine: frozenset[bytes]
    violations: list[str] = field(default_factory=list)
    model: LedgerModel = field(init=False)
    _decided: dict[int, tuple[Block, int]] = field(default_factory=dict)
    _state_hashes: dict[int, tuple[bytes, int]] = field(default_factory=dict)
    _node_heights: dict[int, set[int]] = field(default_factory=dict)
    _signed: dict[tuple[bytes, int, int, int], bytes] = field(default_factory=dict)
    #: (height, round) -> value -> validators whose validly signed prevote for it was sent.
    _prevotes: dict[tuple[int, int], dict[bytes, set[bytes]]] = field(default_factory=dict)
    #: (validator, height) -> the last (round, block) it precommitted (non-nil).
    _locks: dict[tuple[bytes, int], tuple[int, bytes]] = field(default_factory=dict)
    _signature_ok: dict[tuple[bytes, bytes, bytes], bool] = field(default_factory=dict)
    #: (height, block hash) -> the block, from every proposal sent.
    _proposed: dict[tuple[int, bytes], Block] = field(default_factory=dict)
    #: Height -> validator address -> power, and every validator's consensus key.
    _sets: dict[int, dict[bytes, int]] = field(default_factory=dict)
    _keys: dict[bytes, bytes] = field(default_factory=dict)
    #: Two honest replicas decided differently at some height.
    agreement_broken: bool = False

    def __post_init__(self) -> None:
        self.model = LedgerModel(self.genesis)
        genesis_set = genesis_state(self.genesis).validator_set()
        for height in (1, 2):
            self._record_set(height, genesis_set)

    def _record_set(self, height: int, validators: Iterable[ActiveValidator | Validator]) -> None:
        """The set voting at ``height`` (as the replicas' ledger determines it: who is a
        validator is the ledger's rule; weighing them is the checker's)."""
        powers = {}
        for validator in validators:
            powers[validator.address] = validator.power
            self._keys[validator.address] = validator.public_key
        if powers:
            self._sets[height] = powers
        elif height - 1 in self._sets:
            self._sets[height] = self._sets[height - 1]  # an empty set leaves the last in office

    def _fail(self, now_ms: int, message: str) -> None:
        self.violations.append(f"t={now_ms}ms {message}")

    # --- signatures and quorums, the checker's own ------------------------------------------------
    def _signed_by(self, vote: Vote) -> bool:
        public_key = self._keys.get(vote.validator)
        if public_key is None:
            return False
        payload = vote.sign_bytes(self.chain_id)
        key = (public_key, payload, vote.signature)
        known = self._signature_ok.get(key)
        if known is None:
            known = verify(public_key, vote.signature, payload)
            self._signature_ok[key] = known
        return known

    def _powers(self, height: int) -> dict[bytes, int] | None:
        return self._sets.get(height)

    def _polka(self, height: int, round_: int, value: bytes) -> bool:
        powers = self._powers(height)
        if powers is None:
            return False
        voters = self._prevotes.get((height, round_), {}).get(value, set())
        return _two_thirds(sum(powers.get(v, 0) for v in voters), sum(powers.values()))

    def _certificate_problem(
        self, certificate: CommitCertificate, height: int, block_hash: bytes
    ) -> str | None:
        powers = self._powers(height)
        if powers is None:
            return f"no validator set known for height {height}"
        if certificate.height != height or certificate.block_hash != block_hash:
            return "certificate for another height or block"
        seen: set[bytes] = set()
        for vote in certificate.precommits():
            if vote.validator in seen or vote.validator not in powers:
                return f"signer {vote.validator.hex()[:8]} repeated or not a validator at {height}"
            if not self._signed_by(vote):
                return f"signature of {vote.validator.hex()[:8]} does not verify"
            seen.add(vote.validator)
        power, total = sum(powers[v] for v in seen), sum(powers.values())
        if not _two_thirds(power, total):
            return f"signers hold {power} of {total}: not more than 2/3"
        return None

    # --- what is sent ----------------------------------------------------------------------------
    def observe(self, message: object) -> None:
        """Anything sent on the network, by anyone: validly signed prevotes are remembered."""
        if isinstance(message, Vote) and message.type == PREVOTE and self._signed_by(message):
            key = (message.height, message.round)
            self._prevotes.setdefault(key, {}).setdefault(message.block_hash, set()).add(message.validator)
        elif isinstance(message, Proposal) and message.height > self.model.height:
            block = message.block
            self._proposed.setdefault((block.height, block.hash), block)
            if len(self._proposed) > 4096:
                self._proposed = {k: v for k, v in self._proposed.items() if k[0] > self.model.height}

    def on_signed(self, now_ms: int, message: Vote | Proposal, signer: bytes) -> None:
        """A message an honest-looking node signed (persisted or sent)."""
        self.observe(message)
        if signer in self.byzantine:
            return
        if isinstance(message, Vote):
            key = (signer, message.height, message.round, message.type + 1)
        else:
            key = (signer, message.height, message.round, 0)
        encoded = message.encode()
        first = self._signed.setdefault(key, encoded)
        if first != encoded:
            self._fail(now_ms, f"honest validator {signer[:4].hex()} signed twice at {key[1:]}: {message!r}")
            return
        if first is encoded and isinstance(message, Vote):
            self._check_lock(now_ms, message)

    def _check_lock(self, now_ms: int, vote: Vote) -> None:
        if vote.is_nil:
            return
        height, round_, value = vote.height, vote.round, vote.block_hash
        who = vote.validator[:4].hex()
        if vote.type == PRECOMMIT:
            if not self._polka(height, round_, value):
                self._fail(
                    now_ms,
                    f"honest {who} precommitted {value[:4].hex()} at {height}/{round_} without a polka",
                )
            self._locks[(vote.validator, height)] = (round_, value)
            return
        block = self._proposed.get((height, value))
        if block is not None and height > 1 and height - 1 <= self.model.height:
            expected = median_time(block.last_commit, self._powers(height - 1) or {})
            if block.time_ms != expected:
                self._fail(
                    now_ms,
                    f"honest {who} prevoted block {value[:4].hex()} at height {height} timed "
                    f"{block.time_ms}, not its BFT time {expected}",
                )
        lock = self._locks.get((vote.validator, height))
        if lock is None or lock[1] == value or lock[0] >= round_:
            return
        if not any(self._polka(height, q, value) for q in range(lock[0], round_)):
            self._fail(
                now_ms,
                f"honest {who} locked on {lock[1][:4].hex()} in round {lock[0]} prevoted "
                f"{value[:4].hex()} in round {round_} of height {height} without a newer polka for it",
            )

    # --- commits ---------------------------------------------------------------------------------
    def on_commit(
        self,
        *,
        now_ms: int,
        node: int,
        honest: bool,
        block: Block,
        certificate: CommitCertificate,
        reported: Reported | None,
        state: LedgerState,
        state_hash: bytes,
        clock_bound_ms: int,
        upcoming: Iterable[Validator] = (),
    ) -> None:
        """``state_hash`` is what executing the block gave on this replica, ``state`` the
        replica's ledger now (past this height when one event committed several),
        ``reported`` what executing it reported, ``clock_bound_ms`` the latest honest clock,
        ``upcoming`` the set the replica says votes two heights on (H+2)."""
        height = block.height
        heights = self._node_heights.setdefault(node, set())
        if height in heights:
            self._fail(now_ms, f"node {node} committed height {height} twice")
        heights.add(height)
        if not honest:
            return
        first = self._decided.get(height)
        if first is None:
            if reported is None:
                self._fail(now_ms, f"node {node} committed height {height} with no execution result")
                return
            active: frozenset[bytes] = frozenset()
            if state.height == height:
                active = frozenset(
                    operator
                    for v in state.validator_set()
                    if (operator := state.operator_of(v.address)) is not None
                )
            self._first_commit(now_ms, block, reported, clock_bound_ms, active)
            self._decided[height] = (block, node)
            self._record_set(height + 2, upcoming)
        elif first[0].hash != block.hash:
            self.agreement_broken = True
            self._fail(
                now_ms,
                f"agreement: node {node} committed {block.hash[:6].hex()} at height {height}, "
                f"node {first[1]} committed {first[0].hash[:6].hex()}",
            )
        problem = self._certificate_problem(certificate, height, block.hash)
        if problem is not None:
            self._fail(now_ms, f"node {node} committed height {height} with a bad certificate: {problem}")
        if state_hash != block.state_hash:
            self._fail(now_ms, f"node {node} state at height {height} differs from its block's state hash")
        first_state = self._state_hashes.setdefault(height, (state_hash, node))
        if first_state[0] != state_hash:
            self._fail(
                now_ms, f"state hash of node {node} differs from node {first_state[1]} at height {height}"
            )
        if state.height != height:
            return  # one event committed several heights: the last one's state is checked
        try:
            state.check_invariants()
        except InvariantError as exc:
            self._fail(now_ms, f"node {node} ledger invariant broken at height {height}: {exc.message}")
        if self.model.height == height:
            for difference in self.model.differences(state)[:3]:
                self._fail(now_ms, f"node {node} at height {height}: {difference}")

    def _first_commit(
        self,
        now_ms: int,
        block: Block,
        reported: Reported,
        clock_bound_ms: int,
        active: frozenset[bytes] = frozenset(),
    ) -> None:
        """Checks made once per height, on the block every honest replica must then agree on."""
        height = block.height
        parent = self._decided.get(height - 1)
        if height > 1:
            if parent is None or block.parent_hash != parent[0].hash:
                self._fail(now_ms, f"block {height} does not extend the decided block {height - 1}")
            problem = self._certificate_problem(block.last_commit, height - 1, block.parent_hash)
            if problem is not None:
                self._fail(now_ms, f"block {height} carries a bad last commit: {problem}")
        powers = self._powers(height)
        if powers is None or block.proposer not in powers:
            self._fail(now_ms, f"block {height} proposed by {block.proposer.hex()[:8]}, not a validator")
        self._check_time(now_ms, block, None if parent is None else parent[0], clock_bound_ms)
        self._check_evidence(now_ms, block)
        for problem in self.model.apply(block, reported, active):
            self._fail(now_ms, problem)

    def _check_time(self, now_ms: int, block: Block, parent: Block | None, clock_bound_ms: int) -> None:
        height = block.height
        expected = 0
        if height > 1:
            powers = self._powers(height - 1) or {}
            expected = median_time(block.last_commit, powers)
            if parent is not None and block.time_ms <= parent.time_ms:
                self._fail(
                    now_ms, f"block {height} time {block.time_ms} is not after its parent's {parent.time_ms}"
                )
        if block.time_ms != expected:
            self._fail(
                now_ms, f"block {height} time {block.time_ms} is not the median precommit time {expected}"
            )
        if block.time_ms > clock_bound_ms + height:
            self._fail(
                now_ms,
                f"block {height} time {block.time_ms} is ahead of every honest clock ({clock_bound_ms})",
            )

    def _check_evidence(self, now_ms: int, block: Block) -> None:
        accused: set[bytes] = set()
        for evidence in block.evidence:
            problem = self._evidence_problem(evidence, block.height, accused)
            if problem is not None:
                self._fail(now_ms, f"block {block.height} slashes {evidence.validator.hex()[:8]}: {problem}")
            elif evidence.validator not in self.byzantine:
                self._fail(
                    now_ms, f"block {block.height} slashes honest validator {evidence.validator.hex()[:8]}"
                )
            accused.add(evidence.validator)

    def _evidence_problem(
        self, evidence: DuplicateVoteEvidence, height: int, accused: set[bytes]
    ) -> str | None:
        a, b = evidence.vote_a, evidence.vote_b
        if (a.height, a.round, a.type, a.validator) != (b.height, b.round, b.type, b.validator):
            return "the two votes are not for one step of one validator"
        if not a.block_hash < b.block_hash:
            return "the votes do not conflict (or are out of order)"
        if not 0 < height - a.height <= self.model.params.evidence_max_age:
            return f"evidence from height {a.height} at height {height}: outside the evidence window"
        if a.validator not in (self._powers(a.height) or {}):
            return f"not a validator at height {a.height}"
        if a.validator in accused or a.validator in self.model.slashed_at:
            return "already punished: an infraction is slashed once"
        if not (self._signed_by(a) and self._signed_by(b)):
            return "the votes are not both signed by the accused"
        return None

    def heights_voted_by(self, address: bytes) -> int:
        """How many heights ``address`` was in the voting set of."""
        return sum(address in powers for powers in self._sets.values())

    def on_build_failures(self, now_ms: int, node: int, count: int) -> None:
        """A proposer whose selected transactions, each accepted on its own, did not execute
        together: the ledger admitted what it cannot apply (a bound that only breaks in the
        block, such as a value the state hash cannot encode)."""
        if count:
            self._fail(now_ms, f"node {node} could not execute the transactions it selected, {count} times")

    def on_final_state(self, now_ms: int, node: int, state: LedgerState) -> None:
        """Recompute a replica's final state hash from scratch and compare it with the height's."""
        expected = self._state_hashes.get(state.height)
        if expected is not None and state.state_hash() != expected[0]:
            self._fail(now_ms, f"node {node} final ledger state does not hash to height {state.height}'s")
