"""The token ledger as the consensus core's application.

Validator sets take effect with a fixed delay of :data:`VALIDATOR_SET_DELAY` blocks, as
CometBFT's "H+2" rule: the set that votes at height ``H`` is the ledger's active set after block
``H - 2`` (the genesis set for heights 1 and 2). A stake, unstake or slash in block ``k``
therefore changes who votes from height ``k + 2`` on. The delay means every node knows the set
of the next height before it decides the current one, a proposer can be computed before the
parent block has been applied by everyone, and a syncing node can verify the certificate of
block ``k + 1`` as soon as it has applied block ``k - 1``.

Blocks are executed once per replica: :meth:`LedgerApp.check_block` (before prevoting) and
:meth:`LedgerApp.build_block` (proposer) run ``apply_block`` on a copy of the state and keep the
copy, and :meth:`LedgerApp.commit` adopts it.

Bounded blocks
--------------

A block's canonical encoding is at most ``MAX_BLOCK_BYTES`` (4 MiB). ``LedgerApp.check_block`` refuses
a larger one on its size (``InvalidBlock``) before it verifies a signature or executes anything, so
honest validators prevote nil on an oversized proposal for the cost of one encoding (memoised with
the block hash). A proposer fills a block only up to the bound: ``select_txs`` takes a byte budget
(``tx_bytes_budget(draft)``: the bound minus the encoded block without transactions, minus the list
header's growth), counting each transaction as its length plus its msgpack header
(``tx_wire_cost``); a transaction that does not fit is passed over for a later, smaller one. The
proposer also stops choosing when its **assembly time** is up (``assembly_timer``, the node's
monotonic clock, a third of ``timeout_propose_ms``: 333 ms on testnets), so a full block still
reaches and is re-executed by the others inside their propose timeout. The budget halves with
each later round of the height (a round that failed, perhaps on a block too large to send and
execute in time, is followed by smaller blocks rather than ever larger ones); this is a heuristic,
not yet shown to help (see "Overload: not solved" below). The time bound is the
proposer's choice; a block's validity never depends on it (protocol stays pure: the clock is
injected). Sync responses stop before 64 MiB (32 full blocks would be 128 MiB, past what a
requester reads), always carrying at least one block.

Attacks: *an oversized proposal* (a proposer, or a relay, sending a 16 MiB block that every
validator must receive and execute before its propose timeout): refused on size, nil prevote,
round moves on. *A proposer stuffing a block* with as many transactions as the count bound allows,
each near 64 KiB (10,000 x 64 KiB = 640 MiB): the byte bound caps it at 4 MiB whatever the count.
Tests: ``tests/unit/test_consensus_block_bounds.py`` (an otherwise valid block one byte over a
validator's bound gets a nil prevote, the same block within it a prevote for it; a junk-stuffed
block over 4 MiB refused on size, not execution; proposer fills exactly to the bound; assembly
stops when the timer says so and the block stays valid), ``test_consensus_sync.py`` (byte-bounded
sync responses).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from protocol.consensus.certificate import bft_time, verify_parent_certificate
from protocol.consensus.checkpoint import Checkpoint, CheckpointError, StoredValidatorSet
from protocol.consensus.errors import (
    BlockExecutionFailed,
    InvalidBlock,
    UnknownHeight,
)
from protocol.consensus.evidence import verify_block_evidence, verify_evidence
from protocol.consensus.messages import (
    GENESIS_BLOCK_TIME_MS,
    MAX_BLOCK_BYTES,
    Block,
    CommitCertificate,
    DuplicateVoteEvidence,
    block_size,
    genesis_certificate,
    tx_bytes_budget,
    tx_wire_cost,
)
from protocol.consensus.validators import ValidatorSet
from protocol.consensus.verifier import SignatureVerifier
from protocol.ledger.block import BlockContext, BlockResult, Misbehaviour, apply_block, select_txs
from protocol.ledger.errors import LedgerError
from protocol.ledger.events import LedgerEvent
from protocol.ledger.snapshot import SnapshotError, decode_snapshot, encode_snapshot
from protocol.ledger.state import LedgerState
from protocol.ledger.tx import Tx

VALIDATOR_SET_DELAY = 2
DEFAULT_MAX_TXS = 1000
#: Speculatively executed states kept per height (one per distinct proposal seen).
MAX_EXECUTED = 8
#: Committed heights whose events wait for the node to take them; the node takes each as it
#: stores the block, so only a node that stopped storing would reach this.
EVENTS_KEPT = 64


def block_context(block: Block, parent_validators: ValidatorSet | None = None) -> BlockContext:
    """The ledger's view of a block: signers from its parent certificate, offences from its
    (verified) evidence, and the set that voted on the parent (whose members missing from the
    certificate missed that height: the ledger's downtime jailing)."""
    return BlockContext(
        height=block.height,
        proposer=block.proposer,
        signers=block.last_commit.signers,
        misbehaviour=tuple(Misbehaviour(e.validator, "double_sign", e.height) for e in block.evidence),
        voters=tuple(v.address for v in parent_validators.validators) if parent_validators else (),
    )


#: Starts a proposer's assembly timer; the predicate it returns says when time is up.
AssemblyTimer = Callable[[], Callable[[], bool]]


class LedgerApp:
    """A ledger replica driven by consensus. ``tx_source()`` returns the mempool's candidates
    for the next block; ``tx_verified(tx)`` may vouch for signatures the mempool checked;
    ``assembly_timer`` (the node's clock; none: no time bound) bounds how long a proposer spends
    choosing transactions; ``tx_decoded(raw)`` may return the mempool's decoded copy of a
    transaction, so a block's transactions are not decoded a second time.

    Bounded blocks (issue 14): a block's encoding is at most ``max_block_bytes``
    (:data:`MAX_BLOCK_BYTES`, 4 MiB), a validity rule of :meth:`check_block`, and
    :meth:`build_block` fills a block only up to it."""

    def __init__(
        self,
        state: LedgerState,
        *,
        genesis_hash: bytes,
        verifier: SignatureVerifier | None = None,
        tx_source: Callable[[], Sequence[bytes | Tx]] = tuple,
        tx_verified: Callable[[Tx], bool] | None = None,
        max_txs: int = DEFAULT_MAX_TXS,
        position: Checkpoint | None = None,
        assembly_timer: AssemblyTimer | None = None,
        max_block_bytes: int = MAX_BLOCK_BYTES,
        tx_decoded: Callable[[bytes], Tx | None] | None = None,
    ) -> None:
        """Start at genesis, or, with ``position`` (use :meth:`resume`), at a checkpoint whose
        ``state`` this is."""
        self.state = state
        self.verifier = verifier or SignatureVerifier()
        self._genesis_hash = genesis_hash
        self._tx_source = tx_source
        self._tx_verified = tx_verified
        self.max_txs = max_txs
        self.max_block_bytes = max_block_bytes
        self._assembly_timer = assembly_timer
        self._tx_decoded = tx_decoded
        #: Blocks whose assembly stopped at the time bound (more candidates were waiting).
        self.builds_out_of_time = 0
        self.last_result: BlockResult | None = None
        #: The ledger events of committed blocks not yet taken by the node (take_events).
        self._events: dict[int, tuple[LedgerEvent, ...]] = {}
        #: Blocks whose selected transactions did not execute together (see build_block).
        self.build_failures = 0
        self._last_active = state.validator_set()
        self._executed: dict[bytes, tuple[LedgerState, BlockResult]] = {}
        if position is None:
            if state.height != 0:
                raise UnknownHeight(
                    "a LedgerApp starts from genesis or a checkpoint; replay blocks to catch up"
                )
            self._last_hash = genesis_hash
            self._last_time = 0
            self._last_certificate = genesis_certificate(genesis_hash)
            genesis_set = ValidatorSet.from_ledger(self._last_active)
            self._sets: dict[int, ValidatorSet] = {h: genesis_set for h in range(1, VALIDATOR_SET_DELAY + 1)}
        else:
            self._last_hash = position.last_hash
            self._last_time = position.last_time
            self._last_certificate = position.last_certificate
            self._sets = {
                stored.height: ValidatorSet(stored.validators) for stored in position.validator_sets
            }

    # --- Application protocol ----------------------------------------------------------------
    @property
    def chain_id(self) -> str:
        return self.state.chain_id

    @property
    def genesis_hash(self) -> bytes:
        return self._genesis_hash

    @property
    def height(self) -> int:
        return self.state.height

    @property
    def last_block_hash(self) -> bytes:
        return self._last_hash

    @property
    def last_block_time(self) -> int:
        return self._last_time

    @property
    def last_certificate(self) -> CommitCertificate:
        return self._last_certificate

    def validator_set(self, height: int) -> ValidatorSet:
        """The set voting at ``height``. Raises :class:`UnknownHeight` outside the kept window
        (from ``evidence_max_age`` blocks back to ``VALIDATOR_SET_DELAY`` ahead)."""
        validators = self._sets.get(height)
        if validators is None:
            raise UnknownHeight(f"no validator set kept for height {height} (at {self.height})")
        return validators

    def check_evidence(self, evidence: DuplicateVoteEvidence, height: int) -> None:
        verify_evidence(
            evidence,
            chain_id=self.chain_id,
            current_height=height,
            max_age=self.state.params.evidence_max_age,
            validators_at=self.validator_set,
            is_punished=self.state.is_tombstoned,
            verifier=self.verifier,
        )

    def next_block_time(self) -> int:
        """The time the next block must carry: BFT time of our last certificate."""
        parent_validators = self._sets.get(self.height)
        if parent_validators is None:
            return GENESIS_BLOCK_TIME_MS  # at genesis: block 1 carries no precommits
        return bft_time(self._last_certificate, parent_validators)

    def build_block(
        self,
        *,
        height: int,
        proposer: bytes,
        evidence: Sequence[DuplicateVoteEvidence],
    ) -> Block:
        """Raises BlockExecutionFailed when even a block without transactions does not execute
        (a ledger bug or bound: the core then proposes nothing and the round times out)."""
        assert height == self.height + 1, "blocks are built on the last committed one"
        time_ms = self.next_block_time()
        draft = Block(
            self.chain_id,
            height,
            time_ms,
            self._last_hash,
            proposer,
            (),
            tuple(evidence),
            self._last_certificate,
            bytes(32),
        )
        context = block_context(draft, self._sets.get(height - 1))
        out_of_time = self._start_assembly()
        try:
            txs = tuple(
                select_txs(
                    self.state,
                    context,
                    self._tx_source(),
                    self.max_txs,
                    verified=self._tx_verified,
                    max_bytes=tx_bytes_budget(draft, self.max_block_bytes),
                    byte_cost=tx_wire_cost,
                    out_of_time=out_of_time,
                )
            )
            replica = self.state.copy()
            result = apply_block(replica, context, self._decoded(txs), verified=self._tx_verified)
        except (LedgerError, OverflowError):
            # The transactions broke a bound only the whole block reveals (end-block, or a value
            # the state hash cannot encode): propose none rather than nothing. Counted: the
            # ledger admitted transactions it then could not execute, which is its bug.
            self.build_failures += 1
            txs = ()
            replica = self.state.copy()
            try:
                result = apply_block(replica, context, txs, verified=self._tx_verified)
            except (LedgerError, OverflowError) as exc:
                raise BlockExecutionFailed(f"no block executes at {height}: {exc!r}") from None
        block = Block(
            self.chain_id,
            height,
            time_ms,
            self._last_hash,
            proposer,
            txs,
            tuple(evidence),
            self._last_certificate,
            result.state_hash,
        )
        self._remember(block, replica, result)
        return block

    def _decoded(self, txs: Sequence[bytes]) -> list[bytes | Tx]:
        """Each transaction as the mempool already decoded it, where it holds it (the hash
        covers every byte, so it is the same transaction); else the bytes, decoded when applied."""
        lookup = self._tx_decoded
        if lookup is None:
            return list(txs)
        return [lookup(raw) or raw for raw in txs]

    def _start_assembly(self) -> Callable[[], bool] | None:
        if self._assembly_timer is None:
            return None
        expired = self._assembly_timer()

        def out_of_time() -> bool:
            if expired():
                self.builds_out_of_time += 1
                return True
            return False

        return out_of_time

    def check_block(self, block: Block) -> None:
        """Raises InvalidBlock, BlockExecutionFailed, an InvalidCertificate or InvalidEvidence
        subclass. The ledger state is unchanged either way."""
        if block.hash in self._executed:
            return
        height = self.height + 1
        if block.chain_id != self.chain_id:
            raise InvalidBlock(f"block for chain {block.chain_id!r}")
        if block.height != height:
            raise InvalidBlock(f"block height {block.height}, expected {height}")
        if (size := block_size(block)) > self.max_block_bytes:
            # Before any signature or execution: an oversized proposal costs one encoding.
            raise InvalidBlock(f"block of {size} bytes is over the bound of {self.max_block_bytes}")
        if block.parent_hash != self._last_hash:
            raise InvalidBlock("block does not extend our last block")
        if height > 1 and block.time_ms <= self._last_time:
            raise InvalidBlock(f"block time {block.time_ms} is not after its parent's {self._last_time}")
        if block.proposer not in self.validator_set(height):
            raise InvalidBlock("block proposer is not a validator")
        parent_validators = self._sets.get(height - 1)
        verify_parent_certificate(
            block.last_commit,
            chain_id=self.chain_id,
            height=height,
            parent_hash=block.parent_hash,
            genesis_hash=self._genesis_hash,
            parent_validators=parent_validators,
            verifier=self.verifier,
        )
        expected_time = (
            GENESIS_BLOCK_TIME_MS
            if parent_validators is None
            else bft_time(block.last_commit, parent_validators)
        )
        if block.time_ms != expected_time:
            # Whatever the proposer's clock says: a block time is the median of the precommit
            # times in its last commit, never a proposer's choice (2**63 - 1 would end the chain).
            raise InvalidBlock(
                f"block time {block.time_ms} is not the BFT time {expected_time} of its last commit"
            )
        verify_block_evidence(
            block.evidence,
            chain_id=self.chain_id,
            current_height=height,
            max_age=self.state.params.evidence_max_age,
            validators_at=self.validator_set,
            is_punished=self.state.is_tombstoned,
            verifier=self.verifier,
        )
        replica = self.state.copy()
        try:
            context = block_context(block, self._sets.get(block.height - 1))
            result = apply_block(replica, context, self._decoded(block.txs), verified=self._tx_verified)
        except LedgerError as exc:
            raise BlockExecutionFailed(f"block does not execute: {exc.message} (code {exc.code})") from None
        except OverflowError:
            # A ledger value past what the state hash encodes: the ledger must refuse such
            # transactions itself; until then a block that reaches one is invalid, not fatal.
            raise BlockExecutionFailed("block leaves a ledger value the state hash cannot encode") from None
        if result.state_hash != block.state_hash:
            raise BlockExecutionFailed("block's state hash differs from executing it")
        self._remember(block, replica, result)

    def commit(self, block: Block, certificate: CommitCertificate) -> bytes:
        """Adopt a decided block and return the state hash executing it produced (which
        ``apply_block`` computed from the very state adopted). Raises what :meth:`check_block`
        raises if the block is not valid."""
        self.check_block(block)
        replica, result = self._executed[block.hash]
        self.state = replica
        self.last_result = result
        self._events[block.height] = result.events
        while len(self._events) > EVENTS_KEPT:
            del self._events[min(self._events)]
        self._last_hash = block.hash
        self._last_time = block.time_ms
        self._last_certificate = certificate
        self._executed.clear()
        self._record_validator_set(block.height)
        return result.state_hash

    def take_events(self, height: int) -> tuple[LedgerEvent, ...]:
        """The ledger events of the committed block at ``height``, once (the core may commit the
        next height before the node has stored this one, so they are kept by height)."""
        return self._events.pop(height, ())

    def extend_last_certificate(self, certificate: CommitCertificate) -> None:
        """Adopt ``certificate`` as the next block's ``last_commit`` if it certifies the last
        committed block in the same round with every signer of the one held, and more."""
        held = self._last_certificate
        if (certificate.height, certificate.round, certificate.block_hash) != (
            held.height,
            held.round,
            held.block_hash,
        ):
            return
        signers = {entry.validator for entry in certificate.signatures}
        held_signers = {entry.validator for entry in held.signatures}
        if held_signers < signers:
            self._last_certificate = certificate

    # --- checkpoints -------------------------------------------------------------------------
    def checkpoint(self) -> Checkpoint:
        """Everything needed to :meth:`resume` at the current height."""
        return Checkpoint(
            height=self.height,
            state_hash=self.state.state_hash(),
            snapshot=encode_snapshot(self.state),
            last_hash=self._last_hash,
            last_time=self._last_time,
            last_certificate=self._last_certificate,
            validator_sets=tuple(
                StoredValidatorSet(height, vset.validators) for height, vset in sorted(self._sets.items())
            ),
        )

    @classmethod
    def resume(
        cls,
        checkpoint: Checkpoint,
        *,
        genesis_hash: bytes,
        verifier: SignatureVerifier | None = None,
        tx_source: Callable[[], Sequence[bytes | Tx]] = tuple,
        tx_verified: Callable[[Tx], bool] | None = None,
        max_txs: int = DEFAULT_MAX_TXS,
        assembly_timer: AssemblyTimer | None = None,
        tx_decoded: Callable[[bytes], Tx | None] | None = None,
    ) -> LedgerApp:
        """An application at ``checkpoint.height``, as if it had replayed every block up to it.

        Raises :class:`CheckpointError` when the snapshot is inconsistent, does not hash to the
        checkpoint's state hash, or lacks the validator sets of the next heights.
        """
        try:
            state = decode_snapshot(checkpoint.snapshot)
        except SnapshotError as exc:
            raise CheckpointError(f"checkpoint snapshot: {exc.message}") from None
        if state.height != checkpoint.height or state.state_hash() != checkpoint.state_hash:
            raise CheckpointError("checkpoint snapshot does not match its height and state hash")
        kept = {stored.height for stored in checkpoint.validator_sets}
        needed = range(checkpoint.height + 1, checkpoint.height + VALIDATOR_SET_DELAY + 1)
        if any(height not in kept for height in needed):
            raise CheckpointError("checkpoint lacks the validator sets of the next heights")
        return cls(
            state,
            genesis_hash=genesis_hash,
            verifier=verifier,
            tx_source=tx_source,
            tx_verified=tx_verified,
            max_txs=max_txs,
            position=checkpoint,
            assembly_timer=assembly_timer,
            tx_decoded=tx_decoded,
        )

    # --- internals ---------------------------------------------------------------------------
    def _remember(self, block: Block, replica: LedgerState, result: BlockResult) -> None:
        if len(self._executed) >= MAX_EXECUTED:
            del self._executed[next(iter(self._executed))]
        self._executed[block.hash] = (replica, result)

    def _record_validator_set(self, height: int) -> None:
        active = self.state.validator_set()
        previous = self._sets[height + VALIDATOR_SET_DELAY - 1]
        if active == self._last_active:
            new = previous  # unchanged: keep the object (and its parsed keys and schedule)
        elif active:
            new = ValidatorSet.from_ledger(active)
            new = previous if new == previous else new
        else:
            # A chain cannot run without validators: if every one is tombstoned or unbonded,
            # the last non-empty set stays in office.
            new = previous
        self._last_active = active
        self._sets[height + VALIDATOR_SET_DELAY] = new
        oldest = height + 1 - self.state.params.evidence_max_age - 1
        for kept in [h for h in self._sets if h < oldest]:
            del self._sets[kept]
