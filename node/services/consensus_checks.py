"""What a node checks on consensus messages from peers before it relays them.

Votes and evidence arrive on GossipSub and proposals on a stream that every node relays; either
way a message is forwarded only after these checks, so a forgery stops at the first honest node
(the gossip validator for the topic, and ``ConsensusDriver._receive_proposal``). The checks are
the cheap, stateless half of what the core does: the right kind of message for the channel, a
signer who votes (or proposes) at the message's height, and a signature that verifies, through
the core's memoised verifier so the core's own check of the same message costs nothing more.

Judged as the GossipSub spec asks: REJECT what no honest peer sends (a forgery, a non-validator's
vote at a height whose validator set we know, a proposal on the gossip topic), IGNORE what an
honest peer may relay but we cannot use (heights beyond the window we keep validator sets for,
evidence we already hold). A vote for a height far ahead is checked against the current set and
delivered, so a node that fell behind still learns it must sync.
"""

from __future__ import annotations

from node.p2p.guard import Reason
from node.p2p.interface import ACCEPT, GossipMessage, Validation
from node.services.consensus_wire import ConsensusMessage, decode_message
from protocol.consensus.core import ConsensusCore
from protocol.consensus.errors import (
    DuplicateEvidence,
    InvalidEvidence,
    LocalConsensusError,
    StaleEvidence,
)
from protocol.consensus.ledger_app import LedgerApp
from protocol.consensus.messages import DuplicateVoteEvidence, Proposal, Vote
from protocol.consensus.validators import ValidatorSet
from protocol.encoding import DecodeError


class ConsensusChecks:
    def __init__(self, core: ConsensusCore, app: LedgerApp) -> None:
        self.core = core
        self.app = app

    def gossip(self, message: GossipMessage) -> Validation:
        """The validator of the consensus topic: votes and evidence only."""
        try:
            decoded = decode_message(message.data)
        except DecodeError as exc:
            return Validation.reject(Reason.DECODE, exc.message)
        return self.judge(decoded, channel="gossip")

    def judge(self, message: ConsensusMessage, *, channel: str) -> Validation:
        """``channel``: "gossip" (votes, evidence) or "proposal" (proposals)."""
        if channel == "gossip" and isinstance(message, Vote):
            return self._vote(message)
        if channel == "gossip" and isinstance(message, DuplicateVoteEvidence):
            return self._evidence(message)
        if channel == "proposal" and isinstance(message, Proposal):
            return self._proposal(message)
        return Validation.reject(Reason.INVALID, f"a {type(message).__name__} does not travel on {channel}")

    def _validators_at(self, height: int) -> ValidatorSet | None:
        try:
            return self.app.validator_set(height)
        except LocalConsensusError:  # UnknownHeight: outside the window the ledger keeps
            return None

    def _vote(self, vote: Vote) -> Validation:
        core = self.core
        validators = self._validators_at(vote.height)
        if validators is None:
            if vote.height < core.height:
                return Validation.ignore(Reason.STALE, f"vote for height {vote.height}, long decided")
            validators = core.validators  # far ahead: a validator's key does not change
            if vote.validator not in validators:
                return Validation.ignore(
                    Reason.UNVERIFIABLE, f"vote for height {vote.height} by an unknown key"
                )
        elif vote.validator not in validators:
            return Validation.reject(
                Reason.INVALID, f"{vote.validator.hex()} is no validator at {vote.height}"
            )
        if not core.verifier.verify(core.chain_id, validators.public_key(vote.validator), vote):
            return Validation.reject(Reason.SIGNATURE, f"bad signature on {vote!r}")
        return ACCEPT

    def _evidence(self, evidence: DuplicateVoteEvidence) -> Validation:
        if evidence.validator in self.core.evidence_pool:
            return Validation.ignore(Reason.STALE, "evidence against this validator is already pooled")
        try:
            self.app.check_evidence(evidence, self.core.height + 1)
        except (StaleEvidence, DuplicateEvidence) as exc:
            return Validation.ignore(Reason.STALE, exc.message)
        except InvalidEvidence as exc:
            return Validation.of_error(exc)
        except LocalConsensusError as exc:
            return Validation.ignore(Reason.UNVERIFIABLE, exc.message)
        return ACCEPT

    def _proposal(self, proposal: Proposal) -> Validation:
        core = self.core
        if proposal.height < core.height:
            return Validation.ignore(Reason.STALE, f"proposal for height {proposal.height}, already decided")
        validators = self._validators_at(proposal.height)
        if validators is None:
            # Far ahead: the core would only ask for a sync, which votes also trigger.
            return Validation.ignore(Reason.UNVERIFIABLE, f"proposal for height {proposal.height}")
        proposer = validators.proposer(proposal.height, proposal.round)
        if not core.verifier.verify(core.chain_id, validators.public_key(proposer), proposal):
            return Validation.reject(Reason.SIGNATURE, f"{proposal!r} is not signed by its round's proposer")
        return ACCEPT
