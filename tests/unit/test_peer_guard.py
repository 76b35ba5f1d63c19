"""PeerGuard: scores by reason, decay, bans that escalate, rate limits, a capped table."""

from __future__ import annotations

import pytest

from node.p2p.errors import FrameTooLargeError, HostConfigError, StreamResetError, TruncatedFrameError
from node.p2p.guard import WEIGHTS, GuardSettings, PeerGuard, RateLimit, Reason
from node.p2p.refusals import reason_of
from protocol.consensus.errors import InvalidSignature, UnknownHeight
from protocol.encoding import DecodeError
from protocol.ledger.errors import BadNonce, WrongChainId
from protocol.market.errors import ForgedAnnouncement, MalformedMessage, ReceiptForOtherContract


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(**settings: object) -> tuple[PeerGuard, Clock]:
    clock = Clock()
    return PeerGuard(GuardSettings(**settings), clock=clock), clock  # type: ignore[arg-type]


def test_refusals_are_counted_by_protocol_and_reason_and_scored_by_weight() -> None:
    guard, _ = make()
    assert not guard.refuse("peer-a", "/t", Reason.DECODE, "junk")
    guard.refuse("peer-a", "/t", Reason.STALE, "old")
    guard.count("/s", Reason.INTERNAL)
    assert guard.refusals == {("/t", "decode"): 1, ("/t", "stale"): 1, ("/s", "internal"): 1}
    standing = guard.standing("peer-a")
    assert standing.score == WEIGHTS[Reason.DECODE]
    assert standing.refusals == 1  # only scored refusals are the peer's record


def test_a_peer_reaching_the_threshold_is_banned_and_the_ban_ends() -> None:
    guard, clock = make(ban_s=60.0)
    banned: list[tuple[str, float]] = []
    guard.on_ban.append(lambda peer, seconds: banned.append((peer, seconds)))
    results = [guard.refuse("peer-a", "/t", Reason.SIGNATURE, "forged") for _ in range(2)]
    assert results == [False, True]
    assert banned == [("peer-a", 60.0)]
    assert guard.is_banned("peer-a") and guard.banned() == ["peer-a"]
    assert not guard.is_banned("peer-b")
    clock.now += 59
    assert guard.is_banned("peer-a")
    clock.now += 2
    assert not guard.is_banned("peer-a")
    assert guard.standing("peer-a").score == 0  # a ban wipes the score: it starts clean after


def test_repeated_bans_double_up_to_the_maximum() -> None:
    guard, clock = make(ban_s=10.0, max_ban_s=25.0)
    lengths = []
    guard.on_ban.append(lambda _peer, seconds: lengths.append(seconds))
    for _ in range(3):
        guard.refuse("peer-a", "/t", Reason.OVERSIZE, "huge")
        guard.refuse("peer-a", "/t", Reason.OVERSIZE, "huge")
        clock.now += 30
    assert lengths == [10.0, 20.0, 25.0]
    assert guard.standing("peer-a").bans == 3


def test_input_arriving_during_a_ban_does_not_extend_it() -> None:
    guard, clock = make(ban_s=10.0)
    for _ in range(2):
        guard.refuse("peer-a", "/t", Reason.OVERSIZE, "huge")
    for _ in range(10):
        assert not guard.refuse("peer-a", "/t", Reason.OVERSIZE, "in flight")
    assert guard.standing("peer-a").bans == 1
    clock.now += 11
    assert not guard.is_banned("peer-a")


def test_scores_decay_by_half_life() -> None:
    guard, clock = make(half_life_s=10.0)
    guard.refuse("peer-a", "/t", Reason.SIGNATURE, "forged")
    clock.now += 10
    assert guard.standing("peer-a").score == 25.0
    clock.now += 10
    guard.refuse("peer-a", "/t", Reason.SIGNATURE, "forged")
    assert guard.standing("peer-a").score == pytest.approx(62.5)
    assert not guard.is_banned("peer-a")  # 12.5 + 50: old misbehaviour counts for less


def test_rate_limit_refuses_past_the_burst_and_refills() -> None:
    guard, clock = make()
    limit = RateLimit(per_second=2.0, burst=3.0)
    assert [guard.allow("peer-a", "/t", limit) for _ in range(4)] == [True, True, True, False]
    assert guard.refusals[("/t", "flood")] == 1
    assert guard.standing("peer-a").score == WEIGHTS[Reason.FLOOD]
    assert guard.allow("peer-b", "/t", limit)  # buckets are per peer
    clock.now += 0.5
    assert guard.allow("peer-a", "/t", limit)
    assert not guard.allow("peer-a", "/t", limit)


def test_a_banned_peer_is_refused_by_every_bucket_without_more_score() -> None:
    guard, _ = make()
    for _ in range(2):
        guard.refuse("peer-a", "/t", Reason.SIGNATURE, "forged")
    assert not guard.allow("peer-a", "/other", RateLimit(per_second=100.0, burst=100.0))
    assert guard.refusals[("/other", "banned")] == 1


def test_the_table_is_capped_and_evicts_the_least_suspicious() -> None:
    guard, _ = make(max_tracked=3)
    guard.refuse("bad", "/t", Reason.INVALID, "x")
    guard.refuse("worse", "/t", Reason.SIGNATURE, "x")
    guard.allow("quiet", "/t", RateLimit(per_second=1.0, burst=5.0))
    for index in range(100):  # a sybil flood of fresh peer ids
        guard.allow(f"sybil-{index}", "/t", RateLimit(per_second=1.0, burst=5.0))
    assert len(guard) == 3
    assert guard.standing("worse").score == WEIGHTS[Reason.SIGNATURE]
    assert guard.standing("bad").score == WEIGHTS[Reason.INVALID]


def test_with_every_slot_banned_the_earliest_ending_ban_is_evicted() -> None:
    guard, clock = make(max_tracked=2, ban_s=100.0)
    for peer in ("first", "second"):
        guard.refuse(peer, "/t", Reason.OVERSIZE, "x")
        guard.refuse(peer, "/t", Reason.OVERSIZE, "x")
        clock.now += 1
    guard.refuse("third", "/t", Reason.DECODE, "x")
    assert guard.banned() == ["second"]
    assert len(guard) == 2


def test_standings_list_only_peers_with_a_record() -> None:
    guard, _ = make()
    guard.allow("quiet", "/t", RateLimit(per_second=1.0, burst=5.0))
    guard.refuse("noisy", "/t", Reason.INVALID, "x")
    assert [s.peer_id for s in guard.standings()] == ["noisy"]


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (DecodeError("x"), Reason.DECODE),
        (MalformedMessage("x"), Reason.DECODE),
        (ForgedAnnouncement("x"), Reason.SIGNATURE),
        (InvalidSignature("x"), Reason.SIGNATURE),
        (WrongChainId("x"), Reason.WRONG_CHAIN),
        (FrameTooLargeError("x"), Reason.OVERSIZE),
        (TruncatedFrameError("x"), Reason.TRUNCATED),
        (StreamResetError("x"), Reason.GONE),
        (ReceiptForOtherContract("x"), Reason.UNSOLICITED),
        (BadNonce("x"), Reason.INVALID),
        (UnknownHeight("x"), Reason.INTERNAL),
        (RuntimeError("bug"), Reason.INTERNAL),
    ],
)
def test_errors_map_to_reasons(error: BaseException, reason: Reason) -> None:
    assert reason_of(error) is reason


def test_settings_are_validated() -> None:
    with pytest.raises(HostConfigError):
        GuardSettings(ban_threshold=0)
    with pytest.raises(HostConfigError):
        GuardSettings(ban_s=100.0, max_ban_s=10.0)
    with pytest.raises(HostConfigError):
        RateLimit(per_second=0, burst=1)
