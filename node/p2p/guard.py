"""Peer accounting: what each peer's input has cost us, and who is refused for a while.

Every handler of network input reports a message it refused here, naming the peer, the protocol
(a stream protocol id or a gossip topic) and a :class:`Reason`. The guard counts refusals by
protocol and reason (the metrics and logs show them), adds the reason's weight to the peer's
misbehaviour score, and bans a peer whose score reaches ``ban_threshold``: the host then drops
its connections and refuses it, inbound and outbound, until the ban ends. Scores decay (halving
every ``half_life_s``), so an honest peer that sent one odd message long ago starts clean; bans
double for a peer banned again, up to ``max_ban_s``.

Rate limits are token buckets per (peer, protocol): a stream opened or a gossip message received
over the limit is refused and scored as a flood.

Attacks this is built against (below, "Hostile peers: the whole defence"): a peer that sends garbage,
forgeries or oversize frames to make us spend CPU and memory; a flood of streams or messages;
sybils cycling peer ids to grow our tables (every table here is capped: ``max_tracked`` peers,
evicting the least suspicious; rate buckets live in the same records).

Pure bookkeeping with an injected clock: no I/O, so the host decides what a ban does.

Hostile peers: the whole defence
--------------------------------

Every input from a peer ends in one of three places: served, refused (counted, logged, scored), or
a bug of ours (logged with its traceback; it costs one stream or one event, never the node).
Nothing a peer sends can stop a node: the only thing that still stops ``dcent node run`` after it
started is a fault of the node itself, which it logs at CRITICAL with the whole traceback (issue
18: one 200-byte capacity message ended a node with ``error: malformed msgpack: ExtraData``,
naming no peer).

| Mechanism | Attack it was built against | Where |
|---|---|---|
| **PeerGuard**, one per host: refusals counted by (protocol or topic, reason); a misbehaviour score per peer that halves every 60 s; a ban at 100 (disconnect, pubsub blacklist, inbound connections closed as they arrive, dials refused with ``PeerBannedError`` 5258) for 5 min, doubling per repeat ban up to 1 h | a peer sending garbage, forgeries, oversize frames or floods to burn our CPU and memory, forever, from one connection | ``node/p2p/guard.py``, ``P2PHost._on_ban``, ``PeerTable.connected`` |
| Typed reasons with weights: decode 25, signature 50, wrong chain 25, oversize 50, invalid 20, unsolicited 25, flood 5, over budget 5, slow 5, truncated 2; stale, no room, unverifiable, gone, busy, internal weigh 0 (counted, never scored) | banning honest peers for what honest peers do (relay an announcement that just expired, close a stream mid-frame on shutdown, be a height ahead) | ``WEIGHTS``; ``node/p2p/refusals.py`` (exception class -> reason, a table) |
| Token buckets per (peer, protocol): streams 50/s (burst 200), gossip 200/s per topic (burst 400); py-libp2p's spam cap only limits what it *forwards*, it still validates and delivers the excess | stream floods; gossip floods that make us verify signatures | ``PeerGuard.allow``, ``run_stream_handler``, ``P2PHost._validate`` |
| Bounded table: 4,096 peer records; when full the least suspicious (not banned, lowest score) is evicted; with every slot banned, the ban that ends first | sybils cycling peer ids to grow our memory | ``PeerGuard._evict`` |
| **Validate before forwarding**: GossipSub topic validators on the capacity and consensus topics (decode, size, signature, chain, expiry, validator set); a proposal's signature by its round's proposer checked before it is relayed | invalid gossip relayed network-wide (forged announcements and 1 MB of garbage reached other nodes; proposals of up to 16 MiB relayed before decoding) | ``CapacityService.validate``, ``node/services/consensus_checks.py``, ``ConsensusDriver._receive_proposal`` |
| The consensus driver survives any error the core raises on an event: logged with its traceback, counted (``dcent_consensus_core_faults_total``), the next event taken | one message that trips a bug in the core stopping consensus | ``ConsensusDriver._step`` |
| Sync push: at most 32 frames per stream, each at most 16 MiB (one block), committed blocks only; a block the core refuses is scored against the pusher (honest nodes push only verified blocks) | garbage or endless streams on ``/dcent/sync/push/1.0.0`` (were dropped silently) | ``ConsensusDriver._receive_pushed`` |
| A pushed block below our height is dropped on its height, read from the frame's first fields before any decoding (``committed_height_hint``), and counted per peer; past 128 a minute each 32 more score a flood (5), so the guard bans a peer that keeps at it | our own chain pushed back at us, 32 blocks of up to 16 MiB per stream, decoded for nothing (audit h18) | ``ConsensusDriver._receive_pushed``; ``test_old_blocks_pushed_back_are_dropped_undecoded_and_scored_past_an_allowance`` |
| Transaction batches: at most 4,096 per frame; a malformed, forged or other-chain transaction ends the batch and is scored (an honest relay sends only what it admitted); nonce, fee and full-mempool refusals are the ordinary churn of relaying, not scored one by one. A batch that admits nothing counts its refusals (not copies another peer relayed first, which every triangle of nodes makes, nor our mempool's load) per peer; past 4 full batches a minute each further 4,096 score a flood | CPU spent on batches of forgeries; endless batches of stale transactions (audit h18) | ``TxRelay._receive``, ``ConsensusDriver._admit_txs``; ``test_batches_of_stale_transactions_are_scored_past_an_allowance`` |
| Replayed votes: the consensus validator IGNOREs a vote below the height before ours (the core uses the previous height's: late precommits, a validator one height behind) and a copy of a vote it accepted less than half a gossip interval ago (a later copy passes: the core retransmits its votes unchanged, and relays must carry that); past 600 useless votes a minute from one forwarder, each 20 more are a REJECT as a flood. Blocks for a lagging validator go only to the originator of the vote that showed it, if connected, once per peer per ``max(sync_retry_ms, gossip_interval_ms)``; a validator further behind syncs by itself | an authentic old vote re-published under fresh seqnos was relayed network-wide and made every node push 32 blocks to every peer, unscored (audit h18) | ``ConsensusChecks.gossip``, ``ConsensusDriver._offer_blocks``; ``tests/unit/test_consensus_replays.py``, ``tests/integration/test_consensus_replay_attack.py`` |
| A publish the host refuses (every subscriber's queue full) is a lost message: logged, counted in ``ConsensusDriver.lost_publishes``, recovered by retransmission | a peer that subscribes to the consensus topic as a node's only subscriber and stops reading: ``GossipBackpressureError`` ended the node (audit h18) | ``ConsensusDriver._broadcast``; ``test_a_publish_refused_for_backpressure_is_a_lost_message_not_the_end_of_the_node`` |
| Result delivery 2.0.0, header first (market step 6) | a stranger making a node read 265 MiB | ``RequesterSide.handle_delivery_stream``, ``node/market/delivery_link.py`` |
| **Frame budget and deadlines** on every stream handed to a handler: a frame body's bytes are reserved before it is read, from the peer's budget (32 MiB; a peer holding none may start any one frame) and the node's (256 MiB, its top eighth for frames up to 1 MiB), released when the frame is handed over or fails; no room within 1 s: the stream is reset (``over_budget`` scored 5, ``busy`` only counted); a body must arrive by 10 s + size / 64 KiB/s, a stream's first frame start within 15 s (``slow``, scored 5) | a stranger opening ~200 proposal streams per peer id, announcing 16 MiB - 1 on each and trickling the bodies: ~3 GiB buffered per peer id, held forever | ``node/p2p/frame_budget.py``, ``Stream.receive_frame``; ``tests/unit/test_stream_budget.py``, ``tests/integration/test_stream_memory_attack.py`` |
| Canonical decoding nests at most 32 deep | a message that overflows the stack of the decoder (found by fuzzing) | ``protocol/encoding.py`` |

**Frames in flight** (``node/p2p/frame_budget.py``). The length prefix bounded one frame, not how
many nor how long: now frame bodies being received never hold more than the node budget
(``FrameBudget.reserved``, ``peak_reserved``; ``HostConfig.frame_budget``), and a stalled one is cut by
a deadline computed from its own size. Streams we open are not budgeted (blob chunks, answers: we
asked, and each caller bounds its reads). Limits left: seven peer ids trickling at the minimum
rate can keep large frames out of the node budget (small ones keep their eighth); py-libp2p's
yamux does not enforce our receive window, so a peer ignoring it can fill a stream's buffer below
our framing; a handler owns a frame once handed over (one at a time).

**ACCEPT / REJECT / IGNORE.** py-libp2p 0.8.1 validators return a bool: ``False`` drops the message
unforwarded and undelivered, which is what both REJECT and IGNORE do; the spec's difference is
that REJECT penalises the peer that forwarded it. Our ``TopicValidator`` returns a verdict and a
reason, and the host's wrapper scores REJECT against the *forwarder* (the spec's propagation
source: an honest forwarder validated before relaying) and only counts IGNORE. REJECT is for what
no honest peer sends: undecodable, forged, a vote by a non-validator at a height whose validator
set we know, an announcement published by a peer other than the one it names, a proposal or
committed block on the gossip topic, oversize. IGNORE is for what honest peers relay: expired,
early, replayed or duplicate announcements and evidence, announcements our capacity table has no
room for (our table may differ from the relay's), votes and proposals at heights outside
the window of validator sets we keep, votes below the height before ours and copies of a vote
accepted moments ago (scored only past an allowance, as a flood). A vote far ahead is checked
against the current set and delivered, so a node that fell behind still learns it must sync. The consensus validator checks
signatures through the core's memoised verifier, so the core's own check is a cache hit. Our own
publishes are not validated (py-libp2p would run validators on them), so tests can use a plain
``P2PHost`` as a hostile publisher.

**Message identity across restarts** (``RestartSafePubsub``). A GossipSub message id is `from +
seqno``. py-libp2p 0.8.1 starts the counter at ``int(time.time())` and adds one per message, so a
validator publishing ~6 messages a second runs ~5 s ahead of the clock per second of uptime;
restarted, it reused numbers its peers still held as seen (120 s) and they dropped its votes: a
restarted validator was muted, and with one more down the chain halted. Now `seqno = max(previous
+ 1, time.time_ns())`, go-libp2p's choice, so a restart never reuses a number unless the wall
clock steps back by more than the node was down. We kept the spec's message id rather than a
content hash: IHAVE/IWANT carry ids, so the id function must agree network-wide, and a content id
would drop the core's deliberate retransmissions of an identical vote.
``tests/e2e/test_restart_identity.py`` restarts a validator after 90 s of uptime while another is
killed: the other three commit 5 blocks within 40 s (about 2 minutes in all); with the stock
``Pubsub`` and the same seed (``DCENT_E2E_SEED=3887485139``) it times out, so the test fails without
the fix.

**Operators.** ``dcent node info`` (peer id, multiaddrs with ``/p2p/``, chain id, height, role) and
``dcent node peers`` (connected peers with direction, uptime, score, refusals and bans; banned peers;
refused messages by protocol and reason), over RPC ``node_info``, ``net_peers`` and ``net_scores``;
``testnet status`` shows each node's multiaddr; metrics ``dcent_p2p_refusals_total{protocol,reason}``,
``dcent_p2p_banned_peers``, ``dcent_consensus_core_faults_total``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from node.p2p.errors import HostConfigError

log = logging.getLogger("dcent.p2p.guard")


class Reason(StrEnum):
    """Why a message was refused; each is a stable label in logs, metrics and RPC."""

    DECODE = "decode"  # not a well-formed message (bad msgpack, missing or wrong-type fields)
    SIGNATURE = "signature"  # a signature that does not verify
    WRONG_CHAIN = "wrong_chain"  # meant for another chain
    OVERSIZE = "oversize"  # over the protocol's declared size
    TRUNCATED = "truncated"  # the stream ended inside a frame
    INVALID = "invalid"  # well formed, but breaks a rule of its protocol
    UNSOLICITED = "unsolicited"  # a delivery or answer nobody asked this peer for
    FLOOD = "flood"  # over a rate limit
    OVER_BUDGET = "over_budget"  # more frame bytes in flight than the peer's receive budget
    SLOW = "slow"  # a frame (or a stream's first one) arriving below the minimum rate
    BUSY = "busy"  # no room in the node-wide receive budget: a squeeze, not this peer's doing
    BANNED = "banned"  # from a peer serving a ban (refused unread; not scored again)
    STALE = "stale"  # expired, replayed or already known: ignored, not scored
    NO_ROOM = "no_room"  # valid, but outranked in a full table (capacity): ignored, not scored
    UNVERIFIABLE = "unverifiable"  # cannot be checked here yet (unknown height): ignored
    GONE = "gone"  # the stream was reset or closed early: not misbehaviour
    INTERNAL = "internal"  # our own fault while handling it: logged with a traceback


#: Score added per refusal. Ban at 100: four undecodable messages, two forged signatures or two
#: oversize frames, twenty floods past the bucket; an honest peer never sends any of these
#: (what honest peers can send, e.g. stale announcements, is ignored, not scored).
WEIGHTS: dict[Reason, int] = {
    Reason.DECODE: 25,
    Reason.SIGNATURE: 50,
    Reason.WRONG_CHAIN: 25,
    Reason.OVERSIZE: 50,
    # A node shutting down ends its streams mid-frame; floods of it are caught by the rate limit.
    Reason.TRUNCATED: 2,
    Reason.INVALID: 20,
    Reason.UNSOLICITED: 25,
    Reason.FLOOD: 5,
    # Light: a peer on a bad link can be slow, or have two big blocks in flight; a peer that keeps
    # at it is banned after twenty (frame_budget.py).
    Reason.OVER_BUDGET: 5,
    Reason.SLOW: 5,
    Reason.BUSY: 0,
    Reason.BANNED: 0,
    Reason.STALE: 0,
    Reason.NO_ROOM: 0,
    Reason.UNVERIFIABLE: 0,
    Reason.GONE: 0,
    Reason.INTERNAL: 0,
}


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A token bucket: ``per_second`` sustained, ``burst`` at once."""

    per_second: float
    burst: float

    def __post_init__(self) -> None:
        if not (self.per_second > 0 and self.burst >= 1):
            raise HostConfigError("a rate limit needs per_second > 0 and burst >= 1")


@dataclass(frozen=True, slots=True)
class GuardSettings:
    ban_threshold: float = 100.0
    #: Scores halve this often.
    half_life_s: float = 60.0
    #: The first ban's length; each further ban of the same peer doubles it, up to max_ban_s.
    ban_s: float = 300.0
    max_ban_s: float = 3600.0
    #: Peers with a record (score, bans, rate buckets). A sybil flood evicts the least suspicious.
    max_tracked: int = 4096
    #: Streams a peer may open per protocol: proposals, pushes and requests come a few per block.
    streams: RateLimit = field(default_factory=lambda: RateLimit(per_second=50.0, burst=200.0))
    #: Gossip messages a peer may forward per topic: it relays every validator's votes.
    gossip: RateLimit = field(default_factory=lambda: RateLimit(per_second=200.0, burst=400.0))

    def __post_init__(self) -> None:
        if not (self.ban_threshold > 0 and self.half_life_s > 0 and 0 < self.ban_s <= self.max_ban_s):
            raise HostConfigError(
                "guard: ban_threshold, half_life_s and ban_s must be positive, ban_s <= max_ban_s"
            )
        if self.max_tracked < 1:
            raise HostConfigError("guard.max_tracked: at least 1")


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


@dataclass(slots=True)
class _PeerRecord:
    score: float = 0.0
    #: When ``score`` was last brought up to date (decay is applied lazily).
    at: float = 0.0
    bans: int = 0
    banned_until: float = 0.0
    refusals: int = 0
    buckets: dict[str, _Bucket] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PeerStanding:
    """One tracked peer, as RPC and the CLI show it."""

    peer_id: str
    score: float
    refusals: int
    bans: int
    #: Seconds left of the current ban; 0 when not banned.
    banned_for_s: float


class PeerGuard:
    """Scores, rate limits and bans per peer. ``clock`` is monotonic seconds."""

    def __init__(
        self, settings: GuardSettings | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = settings or GuardSettings()
        self._clock = clock
        self._peers: dict[str, _PeerRecord] = {}
        #: Refusals by (protocol, reason), scored or not.
        self.refusals: dict[tuple[str, str], int] = {}
        #: Called with (peer id, ban seconds) when a peer is banned; the host disconnects it.
        self.on_ban: list[Callable[[str, float], None]] = []

    # --- reporting -------------------------------------------------------------------------------
    def refuse(self, peer_id: str, protocol: str, reason: Reason, detail: str = "") -> bool:
        """Count a refused message of ``peer_id`` on ``protocol`` and score it; True when this
        refusal banned the peer. Logged at INFO when scored, DEBUG otherwise."""
        self.refusals[(protocol, reason.value)] = self.refusals.get((protocol, reason.value), 0) + 1
        weight = WEIGHTS[reason]
        if weight == 0 or not peer_id:
            log.debug("ignored %s from %s: %s: %s", protocol, peer_id or "?", reason.value, detail)
            return False
        now = self._clock()
        record = self._record(peer_id, now)
        record.refusals += 1
        if record.banned_until > now:
            return False  # already serving a ban: in-flight input, nothing more to learn
        record.score += weight
        log.info(
            "refused %s from %s: %s: %s (score %.0f)", protocol, peer_id, reason.value, detail, record.score
        )
        if record.score < self.settings.ban_threshold:
            return False
        record.bans += 1
        length = min(self.settings.ban_s * 2 ** (record.bans - 1), self.settings.max_ban_s)
        record.banned_until = now + length
        record.score = 0.0
        log.warning(
            "peer %s banned for %.0f s (ban %d, last: %s on %s)",
            peer_id,
            length,
            record.bans,
            reason.value,
            protocol,
        )
        for callback in list(self.on_ban):
            callback(peer_id, length)
        return True

    def count(self, protocol: str, reason: Reason) -> None:
        """Count a refusal that is no peer's fault (ours, or a peer gone): no score, no log."""
        self.refusals[(protocol, reason.value)] = self.refusals.get((protocol, reason.value), 0) + 1

    def allow(self, peer_id: str, protocol: str, limit: RateLimit) -> bool:
        """Take one token of ``peer_id``'s bucket for ``protocol``; refuse (scored as a flood)
        when it is empty, or when the peer is banned (not scored again)."""
        now = self._clock()
        record = self._record(peer_id, now)
        if record.banned_until > now:
            self.count(protocol, Reason.BANNED)
            return False
        bucket = record.buckets.get(protocol)
        if bucket is None:
            bucket = record.buckets[protocol] = _Bucket(limit.burst, now)
        bucket.tokens = min(limit.burst, bucket.tokens + (now - bucket.at) * limit.per_second)
        bucket.at = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return True
        self.refuse(peer_id, protocol, Reason.FLOOD, f"over {limit.per_second:g}/s")
        return False

    # --- reading ---------------------------------------------------------------------------------
    def is_banned(self, peer_id: str) -> bool:
        record = self._peers.get(peer_id)
        return record is not None and record.banned_until > self._clock()

    def standing(self, peer_id: str) -> PeerStanding:
        now = self._clock()
        record = self._peers.get(peer_id)
        if record is None:
            return PeerStanding(peer_id, 0.0, 0, 0, 0.0)
        self._decay(record, now)
        return PeerStanding(
            peer_id, round(record.score, 1), record.refusals, record.bans, max(0.0, record.banned_until - now)
        )

    def standings(self) -> list[PeerStanding]:
        """Every tracked peer with a score, a refusal or a ban, sorted by peer id."""
        return [
            standing
            for standing in (self.standing(peer_id) for peer_id in sorted(self._peers))
            if standing.score or standing.refusals or standing.bans
        ]

    def banned(self) -> list[str]:
        now = self._clock()
        return sorted(peer_id for peer_id, record in self._peers.items() if record.banned_until > now)

    def __len__(self) -> int:
        return len(self._peers)

    # --- the table -------------------------------------------------------------------------------
    def _record(self, peer_id: str, now: float) -> _PeerRecord:
        record = self._peers.get(peer_id)
        if record is None:
            if len(self._peers) >= self.settings.max_tracked:
                self._evict(now)
            record = self._peers[peer_id] = _PeerRecord(at=now)
        else:
            self._decay(record, now)
        return record

    def _decay(self, record: _PeerRecord, now: float) -> None:
        if record.score and now > record.at:
            record.score *= math.pow(0.5, (now - record.at) / self.settings.half_life_s)
            if record.score < 0.5:
                record.score = 0.0
        record.at = max(record.at, now)

    def _evict(self, now: float) -> None:
        """Drop the least suspicious record: not banned, lowest score, fewest bans. With every
        record banned, the ban that ends first goes (bounded memory wins over a long ban)."""

        def suspicion(item: tuple[str, _PeerRecord]) -> tuple[bool, float, int, float]:
            _peer_id, record = item
            self._decay(record, now)
            return (record.banned_until > now, record.score, record.bans, record.banned_until)

        victim = min(self._peers.items(), key=suspicion)[0]
        del self._peers[victim]
