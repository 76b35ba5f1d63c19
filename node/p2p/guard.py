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

Attacks this is built against (ARCHITECTURE.md, "Hostile peers"): a peer that sends garbage,
forgeries or oversize frames to make us spend CPU and memory; a flood of streams or messages;
sybils cycling peer ids to grow our tables (every table here is capped: ``max_tracked`` peers,
evicting the least suspicious; rate buckets live in the same records).

Pure bookkeeping with an injected clock: no I/O, so the host decides what a ban does.
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
