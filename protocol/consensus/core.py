"""The consensus core: Algorithm 1 of "The latest gossip on BFT consensus" (arXiv 1807.04938).

Sans-IO: :meth:`ConsensusCore.start`, :meth:`~ConsensusCore.receive` and
:meth:`~ConsensusCore.on_timeout` take an event and the local time and return effects; the core
never reads a clock, never sleeps and never touches the network or a disk. Line numbers in
comments refer to Algorithm 1 of the paper.

Every threshold is stake-weighted: "2f+1" is more than 2/3 of the height's power, "f+1" more
than 1/3. Three additions make the paper's algorithm a node:

* a sign guard: the core persists its last signed (height, round, step), the messages signed
  there and its lock *before* broadcasting, and never signs a lower step, nor the same step
  differently, even after a restart (a ``Persist`` effect always precedes the ``Broadcast``);
* retransmission: the paper assumes gossip that eventually delivers every message; a GOSSIP
  timer re-sends our own messages of the current round (and the POL prevotes behind a
  re-proposed block) until the round ends, and a validator heard voting in an earlier round
  gets what we signed in that round again, so progress resumes after losses stop;
* block sync: a node that sees f+1 of the power at a later height, or a commit quorum for a
  block it never received, asks peers for committed blocks with certificates; a node that
  hears a validator still voting at a height it has decided offers it those blocks.
"""

from __future__ import annotations

from protocol.consensus.app import Application
from protocol.consensus.effects import (
    Broadcast,
    Commit,
    ConsensusConfig,
    Effect,
    Message,
    Persist,
    ReportEvidence,
    RequestSync,
    SendBlocks,
    SetTimeout,
    Timeout,
    TimeoutKind,
)
from protocol.consensus.errors import (
    InvalidMessage,
    InvalidSignature,
    LocalConsensusError,
    NotInValidatorSet,
)
from protocol.consensus.evidence import evidence_to_propose
from protocol.consensus.late_precommits import LatePrecommits
from protocol.consensus.messages import (
    MAX_TIME_MS,
    NIL,
    PRECOMMIT,
    PREVOTE,
    STEP_NONE,
    STEP_PRECOMMIT,
    STEP_PREVOTE,
    STEP_PROPOSE,
    Block,
    CommitCertificate,
    CommittedBlock,
    DuplicateVoteEvidence,
    Proposal,
    SignState,
    Vote,
    certificate_from_votes,
)
from protocol.consensus.other_heights import (
    MAX_FUTURE_ROUNDS_PER_VALIDATOR,
    FutureBuffer,
    FutureRounds,
    Pacer,
    set_of,
    signer_of,
    vouched_by_one_third,
)
from protocol.consensus.signer import Locks, Signer
from protocol.consensus.sync import verify_committed_block
from protocol.consensus.validators import ValidatorSet
from protocol.consensus.verifier import SignatureVerifier
from protocol.consensus.votes import AddResult, HeightVotes
from protocol.crypto import PrivateKey

#: Proposals kept per round: an honest proposer sends one; an equivocating one gets two.
MAX_PROPOSALS_PER_ROUND = 2
#: The longest retransmission interval, in multiples of ``gossip_interval_ms`` (issue 14).
MAX_GOSSIP_BACKOFF = 8

# Rules that fire "for the first time" in a round.
_LINE_34 = 34
_LINE_36 = 36
_LINE_47 = 47


class ConsensusCore:
    """One validator's (or observer's) consensus state machine for one chain.

    ``key`` is the validator's signing key, or None for a node that follows without voting.
    ``sign_state`` is the last persisted :class:`SignState` (None on first start).
    """

    def __init__(
        self,
        app: Application,
        *,
        key: PrivateKey | None = None,
        config: ConsensusConfig | None = None,
        sign_state: SignState | None = None,
        verifier: SignatureVerifier | None = None,
    ) -> None:
        self.app = app
        self.chain_id = app.chain_id
        self.config = config or ConsensusConfig()
        self.verifier = verifier or SignatureVerifier()
        self._signer = Signer(app.chain_id, key, sign_state) if key is not None else None
        self.address = key.address.raw if key is not None else b""
        self._effects: list[Effect] = []
        self._now = 0
        self._started = False
        #: Evidence waiting for one of our proposals, by accused validator.
        self.evidence_pool: dict[bytes, DuplicateVoteEvidence] = {}
        self._sync_requests: Pacer[bytes] = Pacer(self.config.sync_retry_ms)
        self._blocks_offered: Pacer[bytes] = Pacer(self.config.sync_retry_ms)
        self._future = FutureBuffer(self.config.max_buffered_per_validator)
        self._future_power: dict[bytes, int] = {}
        # Per-height state; set by _enter_height.
        self.height = 0
        self.round = 0
        self.step = STEP_NONE
        self.validators: ValidatorSet
        self.locked_round = -1
        self.locked_block: Block | None = None
        self.valid_round = -1
        self.valid_block: Block | None = None
        self._valid_pol: tuple[Vote, ...] = ()
        self._votes: HeightVotes
        self._proposals: dict[int, dict[bytes, Proposal]] = {}
        self._blocks: dict[bytes, Block] = {}
        self._validity: dict[bytes, bool] = {}
        self._fired: set[tuple[int, int]] = set()
        self._commit_quorums: dict[int, bytes] = {}
        self._skip_to = -1
        self._future_rounds = FutureRounds(MAX_FUTURE_ROUNDS_PER_VALIDATOR)
        #: What we signed at this height, by round (re-sent to validators still in that round).
        self._own: dict[int, list[Proposal | Vote]] = {}
        #: Re-sends of our messages of an earlier round, by round: one re-send reaches every
        #: node, so it serves every validator still in that round.
        self._helped: Pacer[int] = Pacer(self.config.gossip_interval_ms)
        #: GOSSIP timers fired in this round: each doubles the next interval (see _arm_gossip).
        self._retransmits = 0
        #: The newest round of this height each validator was heard voting in: who is lagging.
        self._newest_round: dict[bytes, int] = {}
        #: Decided, and the new height's round 0 waits for the commit timer (CometBFT's
        #: NewHeight step): the block-time floor, and time for late precommits and transactions.
        self._waiting_commit = False
        #: The last decision's precommits, completed by late ones for the next last_commit.
        self._late_precommits: LatePrecommits | None = None

    # ----------------------------------------------------------------------------------------
    # Entry points
    # ----------------------------------------------------------------------------------------

    def start(self, now_ms: int) -> list[Effect]:
        """Begin at the application's next height, resuming the persisted round if any."""
        if self._started:
            raise LocalConsensusError("the consensus core was already started")
        self._started = True
        self._now = now_ms
        self._effects = []
        self._enter_height(self.app.height + 1)
        if self.sign_state.height == self.height and self.sign_state.step != STEP_NONE:
            self._resume()
        else:
            self._start_round(0)
        self._advance()
        return self._flush()

    def receive(self, message: Message, now_ms: int) -> list[Effect]:
        """Handle a message from a peer.

        Raises an :class:`~protocol.consensus.errors.InvalidMessage` subclass for a message that
        is invalid at its height (bad signature, unknown validator, a proposal not signed by its
        round's proposer, invalid evidence, a sync block without a valid certificate or that
        does not execute); the core is then unchanged.
        Messages for past heights are ignored.
        """
        self._require_started()
        self._now = now_ms
        self._effects = []
        if isinstance(message, Vote):
            self._on_vote(message)
        elif isinstance(message, Proposal):
            self._on_proposal(message)
        elif isinstance(message, CommittedBlock):
            self._on_committed_block(message)
        elif isinstance(message, DuplicateVoteEvidence):
            self._on_evidence(message)
        else:
            raise InvalidMessage(f"consensus cannot handle {type(message).__name__}")
        self._advance()
        return self._flush()

    def on_timeout(self, timeout: Timeout, now_ms: int) -> list[Effect]:
        """Handle a timer set by a ``SetTimeout`` effect; stale timers do nothing."""
        self._require_started()
        self._now = now_ms
        self._effects = []
        if timeout.height == self.height:
            if timeout.kind is TimeoutKind.PROPOSE:
                # Line 57: no acceptable proposal in time.
                if timeout.round == self.round and self.step == STEP_PROPOSE:
                    self._prevote(NIL)
            elif timeout.kind is TimeoutKind.PREVOTE:
                # Line 61: prevotes split, no quorum for one value in time.
                if timeout.round == self.round and self.step == STEP_PREVOTE:
                    self._precommit(NIL)
            elif timeout.kind is TimeoutKind.PRECOMMIT:
                # Line 65: no decision in this round.
                if timeout.round == self.round:
                    self._start_round(self.round + 1)
            elif timeout.kind is TimeoutKind.GOSSIP and timeout.round == self.round:
                self._retransmit()
                self._retransmits += 1
                self._arm_gossip()
            elif timeout.kind is TimeoutKind.COMMIT and self._waiting_commit:
                self._waiting_commit = False
                self._start_round(0)
            self._advance()
        return self._flush()

    # ----------------------------------------------------------------------------------------
    # Read-only views
    # ----------------------------------------------------------------------------------------

    @property
    def sign_state(self) -> SignState:
        return self._signer.state if self._signer is not None else SignState(0, 0, STEP_NONE)

    @property
    def refused_signatures(self) -> int:
        """Signatures the guard refused (e.g. a restarted node asked to sign below its last step)."""
        return self._signer.refused if self._signer is not None else 0

    @property
    def is_validator(self) -> bool:
        return self._signer is not None and self.address in self.validators

    def proposals(self, round_: int) -> list[Proposal]:
        return list(self._proposals.get(round_, {}).values())

    def votes(self, round_: int, vote_type: int) -> list[Vote]:
        round_votes = self._votes.rounds.get(round_)
        return [] if round_votes is None else list(round_votes.of_type(vote_type).votes.values())

    # ----------------------------------------------------------------------------------------
    # Heights and rounds
    # ----------------------------------------------------------------------------------------

    def _enter_height(self, height: int) -> None:
        self.height = height
        self.validators = self.app.validator_set(height)
        self.round = 0
        self.step = STEP_PROPOSE
        self.locked_round, self.locked_block = -1, None
        self.valid_round, self.valid_block, self._valid_pol = -1, None, ()
        self._votes = HeightVotes(self.validators)
        self._proposals = {}
        self._blocks = {}
        self._validity = {}
        self._fired = set()
        self._commit_quorums = {}
        self._skip_to = -1
        self._future_rounds = FutureRounds(MAX_FUTURE_ROUNDS_PER_VALIDATOR)
        self._own = {}
        self._newest_round = {}
        self._helped = Pacer(self.config.gossip_interval_ms)

    def _start_round(self, round_: int) -> None:
        """StartRound (line 11)."""
        self.round = round_
        self.step = STEP_PROPOSE
        self._future_rounds.entered(round_)
        # Every node, the proposer too, arms timeoutPropose: a proposer whose signature the
        # guard refuses (after a restart) must still move on.
        self._set_timeout(TimeoutKind.PROPOSE, round_)
        self._retransmits = 0
        self._arm_gossip()
        if self.is_validator and self.validators.proposer(self.height, round_) == self.address:
            if self.valid_block is not None:
                block, pol_round = self.valid_block, self.valid_round  # line 15
            else:
                built, pol_round = self._build_block(), -1  # line 17
                if built is None:
                    return  # nothing executes: stay silent, the others time out to a new round
                block = built
            proposal = self._sign_proposal(block, pol_round)
            if proposal is not None:
                self._send(proposal)
                for vote in self._pol_prevotes(proposal):
                    self._effects.append(Broadcast(vote))
                self._add_proposal(proposal)

    def _resume(self) -> None:
        """Continue the persisted round after a restart, re-sending what we signed there."""
        signed = self.sign_state
        self.round = signed.round
        self.step = signed.step
        if signed.locked_block:
            self.locked_round, self.locked_block = signed.locked_round, signed.locked_block[0]
        if signed.valid_block:
            self.valid_round, self.valid_block = signed.valid_round, signed.valid_block[0]
            self._valid_pol = signed.valid_pol
            for vote in signed.valid_pol:
                self._add_vote(vote)
        self._set_timeout(TimeoutKind.PROPOSE, self.round)
        self._retransmits = 0
        self._arm_gossip()
        for proposal in signed.last_proposal:
            if (proposal.height, proposal.round) == (self.height, self.round):
                self._send(proposal)
                self._add_proposal(proposal)
        for vote in signed.last_votes:
            if (vote.height, vote.round) == (self.height, self.round):
                self._send(vote)
                self._add_vote(vote)

    def _arm_gossip(self) -> None:
        """The next retransmission of this round: ``gossip_interval_ms`` doubled per re-send
        already made in the round, up to ``MAX_GOSSIP_BACKOFF`` times. A round that ends in time
        re-sends as before; one that drags on (messages late because the machine or the network
        is overloaded) stops adding ever more copies to the backlog that is making it late."""
        factor = min(2**self._retransmits, MAX_GOSSIP_BACKOFF)
        duration = self.config.timeout_ms(TimeoutKind.GOSSIP, self.round) * factor
        self._effects.append(SetTimeout(Timeout(TimeoutKind.GOSSIP, self.height, self.round), duration))

    def _set_timeout(self, kind: TimeoutKind, round_: int) -> None:
        self._effects.append(
            SetTimeout(Timeout(kind, self.height, round_), self.config.timeout_ms(kind, round_))
        )

    # ----------------------------------------------------------------------------------------
    # Incoming messages
    # ----------------------------------------------------------------------------------------

    def _on_vote(self, vote: Vote) -> None:
        if vote.height != self.height:
            self._not_this_height(vote)
            return
        if vote.validator not in self.validators:
            raise NotInValidatorSet(f"vote from {vote.validator.hex()}, not a validator at {self.height}")
        if not self._future_rounds.admit(vote.validator, vote.round, self.round):
            return
        if not self.verifier.verify(self.chain_id, self.validators.public_key(vote.validator), vote):
            raise InvalidSignature(f"bad signature on {vote!r}")
        self._add_vote(vote)
        newest = max(vote.round, self._newest_round.get(vote.validator, -1))
        self._newest_round[vote.validator] = newest
        if newest < self.round:
            self._help_lagging(vote.validator, newest)

    def _help_lagging(self, validator: bytes, round_: int) -> None:
        """A validator still votes in an earlier round of this height: re-send what we signed
        there (it may be waiting for exactly that to leave the round; we no longer repeat it).

        Lagging means its NEWEST vote is in an earlier round, not that an old vote of it
        arrived: the votes we re-send here are old votes too, and when every receiver took
        them as a sign that we lag and re-sent its own old votes back, the re-sends fed each
        other without end. That echo (issue 14) grew with every failed round until it crowded
        out the current round's votes and the chain stopped for good."""
        if self._helped.ready(round_, self._now):
            for message in self._own.get(round_, ()):
                self._effects.append(Broadcast(message))

    def _add_vote(self, vote: Vote) -> None:
        result, held = self._votes.add(vote)
        round_votes = self._votes.round(vote.round)
        if result is AddResult.CONFLICT:
            assert held is not None
            if vote.validator not in self.evidence_pool:
                evidence = DuplicateVoteEvidence.from_votes(held, vote)
                self.evidence_pool[vote.validator] = evidence
                self._effects.append(ReportEvidence(evidence))
            # Count it for its value when that value can matter (see votes.py).
            if not (vote.is_nil or vote.block_hash in self._blocks):
                return
            if not round_votes.of_type(vote.type).count_conflicting(vote):
                return
        elif result is AddResult.DUPLICATE:
            return
        if vote.type == PRECOMMIT and vote.round not in self._commit_quorums:
            winner = round_votes.precommits.quorum_block()
            if winner is not None and winner != NIL:
                self._commit_quorums[vote.round] = winner
        self._note_round_activity(vote.round)

    def _on_proposal(self, proposal: Proposal) -> None:
        if proposal.height != self.height:
            self._not_this_height(proposal)
            return
        proposer = self.validators.proposer(self.height, proposal.round)
        if not self._future_rounds.admit(proposer, proposal.round, self.round):
            return
        known = self._proposals.get(proposal.round, {})
        if proposal.block.hash in known or len(known) >= MAX_PROPOSALS_PER_ROUND:
            return
        if not self.verifier.verify(self.chain_id, self.validators.public_key(proposer), proposal):
            raise InvalidSignature(f"{proposal!r} is not signed by the proposer of its round")
        self._add_proposal(proposal)

    def _add_proposal(self, proposal: Proposal) -> None:
        block = proposal.block
        self._proposals.setdefault(proposal.round, {})[block.hash] = proposal
        self._blocks.setdefault(block.hash, block)
        proposer = self.validators.proposer(self.height, proposal.round)
        self._votes.round(proposal.round).heard_from(proposer)
        self._note_round_activity(proposal.round)

    def _note_round_activity(self, round_: int) -> None:
        if round_ > self.round and round_ > self._skip_to:
            power = self._votes.round(round_).participant_power
            if self.validators.has_one_third(power):
                self._skip_to = round_

    def _not_this_height(self, message: Proposal | Vote) -> None:
        """Help a validator that is behind; buffer the next height; notice when we are behind.

        Only a message signed by a validator of its height acts (see ``other_heights``):
        raises NotInValidatorSet / InvalidSignature when that set is known and the message
        fails it; a message whose height's set we no longer keep is ignored.
        """
        height = message.height
        if height < self.height:
            validators = set_of(self.app.validator_set, height)
            if validators is None:
                return
            sender = signer_of(message, validators, chain_id=self.chain_id, verifier=self.verifier)
            late = self._late_precommits
            if isinstance(message, Vote) and late is not None and late.wants(message):
                self.app.extend_last_certificate(late.add(message))
            if self._blocks_offered.ready(sender, self._now):
                self._effects.append(SendBlocks(sender, height))
            return
        # The next height's set is always known; beyond it, the newest set is the best guess.
        newest = self.app.validator_set(self.height + 1)
        sender = signer_of(message, newest, chain_id=self.chain_id, verifier=self.verifier)
        if height > self.height + 1:
            self._request_sync(sender)
            return
        self._future.add(sender, message)
        if sender not in self._future_power:
            self._future_power[sender] = self.validators.power_of(sender)
        # f+1 of the power is already at the next height: some honest node has decided this
        # one, so the block and its certificate exist (asked again while it keeps being true).
        if self.validators.has_one_third(sum(self._future_power.values())):
            self._request_sync(sender)

    def _on_committed_block(self, committed: CommittedBlock) -> None:
        block = committed.block
        if block.height < self.height:
            return
        if block.height > self.height:
            # A gap in what a peer sent. Ask for the blocks only if validators we know, with
            # more than 1/3 of the power, really signed it (a stranger's block triggers nothing).
            newest = self.app.validator_set(self.height + 1)
            if vouched_by_one_third(
                committed.certificate, newest, chain_id=self.chain_id, verifier=self.verifier
            ):
                self._request_sync(b"")
            return
        verify_committed_block(
            committed,
            chain_id=self.chain_id,
            height=self.height,
            validators=self.validators,
            verifier=self.verifier,
        )
        self.app.check_block(block)
        self._validity[block.hash] = True
        self._decide(block, committed.certificate)

    def _on_evidence(self, evidence: DuplicateVoteEvidence) -> None:
        if evidence.validator in self.evidence_pool:
            return
        # Admitted if it could go into the next block (evidence from this very height too).
        self.app.check_evidence(evidence, self.height + 1)
        self.evidence_pool[evidence.validator] = evidence

    def _request_sync(self, peer: bytes) -> None:
        if self._sync_requests.ready(b"", self._now):  # one request at a time, to any peer
            self._effects.append(RequestSync(self.height, peer))

    # ----------------------------------------------------------------------------------------
    # The rules of Algorithm 1
    # ----------------------------------------------------------------------------------------

    def _advance(self) -> None:
        """Fire every rule whose condition holds, until none does."""
        while True:
            if self._try_decide():
                return  # the new height's first round starts when the commit timer fires
            if self._waiting_commit:
                return  # messages of the new height are kept; its rules run once it starts
            if self._skip_to > self.round:
                self._start_round(self._skip_to)  # line 55: f+1 of the power is in a later round
                continue
            if not self._round_rules():
                return

    def _try_decide(self) -> bool:
        """Line 49: a proposal and 2f+1 precommits for it, in any round."""
        for round_, block_hash in self._commit_quorums.items():
            block = self._blocks.get(block_hash)
            if block is None:
                # Decided without us seeing the block: fetch it with its certificate.
                signers = self._votes.round(round_).precommits.votes_for(block_hash)
                self._request_sync(signers[0].validator if signers else b"")
                continue
            if not self._is_valid(block):
                continue
            precommits = self._votes.round(round_).precommits.votes_for(block_hash)
            decided = LatePrecommits(self.height, round_, block_hash, precommits)
            self._decide(block, certificate_from_votes(self.height, round_, block_hash, precommits))
            self._late_precommits = decided
            return True
        return False

    def _round_rules(self) -> bool:
        """The rules of the current round; True when one changed the state."""
        round_, step = self.round, self.step
        round_votes = self._votes.round(round_)
        prevotes = round_votes.prevotes
        proposals = self._proposals.get(round_, {})
        if step == STEP_PROPOSE:
            for block_hash, proposal in proposals.items():
                pol_round = proposal.pol_round
                if pol_round == -1:
                    # Line 22: a fresh proposal; accept unless locked on something else.
                    ok = self.locked_round == -1 or self._locked_on(block_hash)
                elif self._votes.round(pol_round).prevotes.has_quorum_for(block_hash):
                    # Line 28: a re-proposal backed by 2f+1 prevotes in pol_round (a POL).
                    ok = self.locked_round <= pol_round or self._locked_on(block_hash)
                else:
                    continue
                self._prevote(block_hash if ok and self._is_valid(proposal.block) else NIL)
                return True
        if step == STEP_PREVOTE and prevotes.has_quorum_any() and self._first(_LINE_34, round_):
            self._set_timeout(TimeoutKind.PREVOTE, round_)  # line 34
        if step >= STEP_PREVOTE and (_LINE_36, round_) not in self._fired:
            for block_hash, proposal in proposals.items():
                if prevotes.has_quorum_for(block_hash) and self._is_valid(proposal.block):
                    # Line 36: a polka for a valid proposal: lock (if still prevoting), and
                    # remember it as the valid value to re-propose.
                    self._fired.add((_LINE_36, round_))
                    self.valid_round, self.valid_block = round_, proposal.block
                    self._valid_pol = tuple(prevotes.votes_for(block_hash))
                    if step == STEP_PREVOTE:
                        self.locked_round, self.locked_block = round_, proposal.block
                        self._precommit(block_hash)
                    else:
                        self._persist_locks()
                    return True
        if step == STEP_PREVOTE and prevotes.has_quorum_for(NIL):
            self._precommit(NIL)  # line 44
            return True
        if round_votes.precommits.has_quorum_any() and self._first(_LINE_47, round_):
            self._set_timeout(TimeoutKind.PRECOMMIT, round_)  # line 47
        return False

    def _first(self, line: int, round_: int) -> bool:
        if (line, round_) in self._fired:
            return False
        self._fired.add((line, round_))
        return True

    def _locked_on(self, block_hash: bytes) -> bool:
        return self.locked_block is not None and self.locked_block.hash == block_hash

    def _is_valid(self, block: Block) -> bool:
        """valid(v): the application accepts the block as our next one (cached per height)."""
        known = self._validity.get(block.hash)
        if known is None:
            try:
                self.app.check_block(block)
                known = True
            except InvalidMessage:
                known = False
            self._validity[block.hash] = known
        return known

    def _decide(self, block: Block, certificate: CommitCertificate) -> None:
        """Apply the decided block and move to the next height (end of line 49)."""
        state_hash = self.app.commit(block, certificate)
        self._late_precommits = None  # set again by _try_decide when it has the votes
        self._effects.append(Commit(block, certificate, state_hash))
        for evidence in block.evidence:
            self.evidence_pool.pop(evidence.validator, None)
        buffered, self._future_power = self._future.drain(), {}
        self._enter_height(self.height + 1)
        self._waiting_commit = True
        self._set_timeout(TimeoutKind.COMMIT, 0)
        for message in buffered:
            try:
                if isinstance(message, Vote):
                    self._on_vote(message)
                else:
                    self._on_proposal(message)
            except InvalidMessage:
                continue  # buffered before we knew this height's validator set; now rejected

    def _retransmit(self) -> None:
        """Re-send our messages of this round, and relay the POL behind a re-proposal in it:
        whoever has those prevotes shares them, as the paper's gossip would."""
        for message in self._own.get(self.round, ()):
            self._effects.append(Broadcast(message))
        for proposal in self._proposals.get(self.round, {}).values():
            for vote in self._pol_prevotes(proposal):
                self._effects.append(Broadcast(vote))

    def _pol_prevotes(self, proposal: Proposal) -> list[Vote]:
        """The 2f+1 prevotes that justify re-proposing a block (line 28 needs them)."""
        if proposal.pol_round < 0:
            return []
        return self._votes.round(proposal.pol_round).prevotes.votes_for(proposal.block.hash)

    # ----------------------------------------------------------------------------------------
    # Our own votes and proposals, through the sign guard
    # ----------------------------------------------------------------------------------------

    def _prevote(self, block_hash: bytes) -> None:
        self.step = STEP_PREVOTE
        self._cast(PREVOTE, block_hash)

    def _precommit(self, block_hash: bytes) -> None:
        self.step = STEP_PRECOMMIT
        self._cast(PRECOMMIT, block_hash)

    def _vote_time(self, block_hash: bytes) -> int:
        """Our clock, but after the block voted for: precommit times become the next block's
        BFT time, which must exceed this block's."""
        block = self._blocks.get(block_hash)
        return self._now if block is None else min(MAX_TIME_MS, max(self._now, block.time_ms + 1))

    def _cast(self, vote_type: int, block_hash: bytes) -> None:
        if not self.is_validator:
            return
        vote = self._sign_vote(vote_type, block_hash)
        if vote is not None:
            self._send(vote)
            self._add_vote(vote)

    def _send(self, message: Proposal | Vote) -> None:
        self._own.setdefault(message.round, []).append(message)
        self._effects.append(Broadcast(message))

    def _locks(self) -> Locks:
        return Locks(
            self.locked_round, self.locked_block, self.valid_round, self.valid_block, self._valid_pol
        )

    def _sign_vote(self, vote_type: int, block_hash: bytes) -> Vote | None:
        assert self._signer is not None
        vote, fresh = self._signer.sign_vote(
            self.height, self.round, vote_type, block_hash, self._locks(), self._vote_time(block_hash)
        )
        if fresh:
            self._effects.append(Persist(self._signer.state))
        return vote

    def _sign_proposal(self, block: Block, pol_round: int) -> Proposal | None:
        assert self._signer is not None
        proposal, fresh = self._signer.sign_proposal(self.height, self.round, block, pol_round, self._locks())
        if fresh:
            self._effects.append(Persist(self._signer.state))
        return proposal

    def _persist_locks(self) -> None:
        """Record a changed valid value (line 42) without signing anything."""
        if self._signer is not None and self._signer.record_locks(self.height, self._locks()):
            self._effects.append(Persist(self._signer.state))

    # ----------------------------------------------------------------------------------------
    # Helpers
    # ----------------------------------------------------------------------------------------

    def _build_block(self) -> Block | None:
        evidence = evidence_to_propose(self.evidence_pool, self.height, self.app.check_evidence)
        try:
            return self.app.build_block(height=self.height, proposer=self.address, evidence=evidence)
        except InvalidMessage:
            return None

    def _require_started(self) -> None:
        if not self._started:
            raise LocalConsensusError("call start() before feeding the consensus core events")

    def _flush(self) -> list[Effect]:
        effects, self._effects = self._effects, []
        return effects
