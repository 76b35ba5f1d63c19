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

Replays (audit h18). A vote stays authentic forever, so anyone who saw one can publish it again
under a fresh seqno, and every node used to accept, relay and act on it: a vote for a height we
decided made the core push blocks to every peer. Now the gossip validator IGNOREs (does not
relay, does not deliver) a vote for a height below the one before ours (the core still uses
those: late precommits for the certificate, and a validator one height behind, which it helps),
and a vote identical to one it accepted less than half a gossip interval ago; a later identical
copy passes, because the core retransmits its own votes unchanged and a relay that dropped every
copy would cut nodes behind it off those retransmissions. An old vote whose signer was no
validator at its height is still REJECTed (as at any height we keep a set for): staleness must not
turn a forgery of membership into a mere IGNORE, nor depend on how far the chain has moved on
since it was sent. A forwarder's useless messages (old or
duplicate) are counted per minute (:class:`UselessInput`); past a generous allowance, each further
batch of them is one REJECT as a flood (weight 5).
"""

from __future__ import annotations

import hashlib
import io
from collections import OrderedDict
from collections.abc import Callable

import msgpack

from node.p2p.guard import Reason
from node.p2p.interface import ACCEPT, GossipMessage, Validation, Verdict
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

#: Useless consensus gossip (old or duplicate votes) a forwarder may send per minute unscored.
#: Honest forwarders send some: a lagging peer relays its own votes, which are old for us, and a
#: vote several nodes re-publish (the prevotes behind a re-proposal) reaches us from each.
USELESS_GOSSIP_ALLOWANCE = 600
#: Past the allowance, each this many more useless messages are one strike (a flood, weight 5).
USELESS_GOSSIP_PER_STRIKE = 20
#: The window useless input is counted over, per peer.
USELESS_WINDOW_MS = 60_000
#: Votes remembered for dedupe: the digest of each accepted one and when it was accepted.
MAX_SEEN_VOTES = 8192
#: Peers tracked by a :class:`UselessInput` (the least recently active is forgotten first).
MAX_TRACKED_PEERS = 4096


class UselessInput:
    """Per peer, how many useless items (old votes, duplicates, stale blocks or transactions) it
    sent in the current window. The first ``allowance`` are free (honest peers send some); past
    it, every ``per_strike`` more are one strike, which the caller scores lightly. Bounded: at
    most ``max_peers`` are tracked."""

    def __init__(
        self, *, allowance: int, per_strike: int, window_ms: int, max_peers: int = MAX_TRACKED_PEERS
    ) -> None:
        self.allowance = allowance
        self.per_strike = max(1, per_strike)
        self.window_ms = window_ms
        self.max_peers = max_peers
        #: peer id -> [window start ms, useless items in the window]
        self._peers: OrderedDict[str, list[int]] = OrderedDict()
        self.total = 0
        self.strikes = 0

    def add(self, peer_id: str, count: int, now_ms: int) -> bool:
        """Count ``count`` useless items from ``peer_id``; True when they complete a strike."""
        self.total += count
        entry = self._peers.get(peer_id)
        if entry is None or now_ms - entry[0] >= self.window_ms or now_ms < entry[0]:
            entry = [now_ms, 0]
        self._peers[peer_id] = entry
        self._peers.move_to_end(peer_id)
        while len(self._peers) > self.max_peers:
            self._peers.popitem(last=False)
        before = self._strikes_at(entry[1])
        entry[1] += count
        struck = self._strikes_at(entry[1]) > before
        self.strikes += struck
        return struck

    def _strikes_at(self, count: int) -> int:
        return max(0, count - self.allowance) // self.per_strike


def committed_height_hint(data: bytes) -> int | None:
    """The height a committed-block envelope claims, read from its first fields without decoding
    the block (``{"m": {"block": {"chain_id", "evidence", "height", ...}, ...}, "t": ...}`` in
    canonical key order), so a pushed block we already have costs no decode of its transactions.
    None when the bytes are not laid out that way: the full decode then judges them. Only ever used
    to drop a block, never to accept one."""
    # Read through a file object: only the first few KiB are ever buffered, not the whole frame.
    unpacker = msgpack.Unpacker(
        io.BytesIO(data), raw=False, read_size=4096, max_buffer_size=max(len(data), 4096)
    )
    try:
        if unpacker.read_map_header() != 2 or unpacker.unpack() != "m":
            return None
        if unpacker.read_map_header() != 2 or unpacker.unpack() != "block":
            return None
        unpacker.read_map_header()
        for key in ("chain_id", "evidence"):
            if unpacker.unpack() != key:
                return None
            unpacker.skip()
        if unpacker.unpack() != "height":
            return None
        height = unpacker.unpack()
    except (msgpack.OutOfData, msgpack.FormatError, msgpack.StackError, ValueError, TypeError):
        return None
    return height if type(height) is int else None


class ConsensusChecks:
    def __init__(self, core: ConsensusCore, app: LedgerApp, *, clock_ms: Callable[[], int]) -> None:
        self.core = core
        self.app = app
        self.clock_ms = clock_ms
        #: An identical vote within this long of accepting it is a replay; later, a retransmission.
        self.replay_window_ms = max(1, core.config.gossip_interval_ms // 2)
        self._seen: OrderedDict[bytes, int] = OrderedDict()
        self.useless = UselessInput(
            allowance=USELESS_GOSSIP_ALLOWANCE,
            per_strike=USELESS_GOSSIP_PER_STRIKE,
            window_ms=USELESS_WINDOW_MS,
        )
        #: Votes IGNOREd for a height the core no longer uses, and as recent duplicates.
        self.stale_votes = 0
        self.duplicate_votes = 0

    def gossip(self, message: GossipMessage) -> Validation:
        """The validator of the consensus topic: votes and evidence only."""
        digest = hashlib.sha256(message.data).digest()
        now = self.clock_ms()
        accepted_at = self._seen.get(digest)
        if accepted_at is not None and 0 <= now - accepted_at < self.replay_window_ms:
            self.duplicate_votes += 1
            return self._useless(message.forwarder, now, "a copy of a vote accepted just before")
        try:
            decoded = decode_message(message.data)
        except DecodeError as exc:
            return Validation.reject(Reason.DECODE, exc.message)
        if isinstance(decoded, Vote) and decoded.height < self.core.height - 1:
            if self._signed_by_outsider(decoded):
                # No honest peer relays a non-validator's vote, old or new: REJECT, do not count.
                return Validation.reject(
                    Reason.INVALID, f"{decoded.validator.hex()} is no validator at {decoded.height}"
                )
            self.stale_votes += 1
            return self._useless(message.forwarder, now, f"vote for height {decoded.height}, long decided")
        result = self.judge(decoded, channel="gossip")
        if result.verdict is Verdict.ACCEPT and isinstance(decoded, Vote):
            self._seen[digest] = now
            self._seen.move_to_end(digest)
            while len(self._seen) > MAX_SEEN_VOTES:
                self._seen.popitem(last=False)
        return result

    def _useless(self, forwarder: str, now_ms: int, detail: str) -> Validation:
        """IGNORE a useless message; REJECT it as a flood when it completes a strike against its
        forwarder (the host then scores the forwarder)."""
        if forwarder and self.useless.add(forwarder, 1, now_ms):
            return Validation.reject(Reason.FLOOD, f"useless consensus gossip past the allowance: {detail}")
        return Validation.ignore(Reason.STALE, detail)

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

    def _signed_by_outsider(self, vote: Vote) -> bool:
        """Whether ``vote``'s signer is outside its height's validator set, where we keep that set
        (a dict lookup: cheap enough for the stale path, which must stay cheap for replays)."""
        validators = self._validators_at(vote.height)
        return validators is not None and vote.validator not in validators

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
