"""Frames received on inbound streams are budgeted and timed (node/p2p/frame_budget.py).

The attack: a stranger opened ~200 proposal streams, announced 16 MiB - 1 on each and sent the
bodies slowly, never finishing; the node buffered ~3 GiB and waited forever. Here the raw byte
streams are in-memory pipes and the clock is trio's MockClock: no real time passes.
"""

from __future__ import annotations

import contextlib
import math

import pytest
import trio
import trio.testing

from node.p2p.errors import (
    FrameBudgetError,
    HostConfigError,
    P2PError,
    SlowFrameError,
    StreamResetError,
)
from node.p2p.frame_budget import KIB, MIB, FrameBudget, FrameBudgetSettings
from node.p2p.framing import FRAME_HEADER, RawStream, Stream
from node.p2p.guard import WEIGHTS, PeerGuard, Reason
from node.p2p.memory import MemoryNetwork, pipe_pair
from protocol.crypto import PrivateKey
from tests.waiting import act_every, wait_until

PROTOCOL = "/test/budget/1.0.0"
BIG = 16 * MIB - 1  # what a proposal stream accepts
#: Deadlines: 10 s grace + size / 64 KiB/s; a first frame within 15 s; room awaited for 1 s.
SETTINGS = FrameBudgetSettings(per_peer_bytes=32 * MIB, total_bytes=64 * MIB)
HOUR = 3600.0  # of MockClock time


def budget_of(settings: FrameBudgetSettings = SETTINGS) -> FrameBudget:
    return FrameBudget(PeerGuard(clock=trio.current_time), settings)


def inbound(budget: FrameBudget, peer_id: str) -> tuple[RawStream, Stream]:
    """(the peer's raw end, our budgeted stream) of a new stream from ``peer_id``."""
    ours, theirs = pipe_pair()
    return theirs, Stream(ours, peer_id=peer_id, protocol_id=PROTOCOL, budget=budget)


def scored(budget: FrameBudget, peer_id: str) -> int:
    """The peer's score, rounded up: it halves every minute, and seconds pass after a refusal."""
    return math.ceil(budget.guard.standing(peer_id).score)


def refusals(budget: FrameBudget, reason: Reason) -> int:
    return budget.guard.refusals.get((PROTOCOL, reason.value), 0)


async def trickle(raw: RawStream, size: int, *, chunk: int, every_s: float) -> None:
    """Announce a ``size``-byte frame and send ``chunk`` bytes every ``every_s`` s until done or
    reset (what a slow-loris does)."""
    sent = 0

    async def send_part() -> bool:
        nonlocal sent
        if sent >= size:
            return False
        part = min(chunk, size - sent)
        await raw.write(b"x" * part)
        sent += part
        return True

    with contextlib.suppress(StreamResetError):
        await raw.write(FRAME_HEADER.pack(size))
        await act_every(every_s, send_part)


async def stall(raw: RawStream, size: int) -> None:
    """Announce a ``size``-byte frame, send one byte of it, and wait to be reset."""
    await trickle(raw, size, chunk=1, every_s=1e9)


async def expect_refusal(stream: Stream, error: type[P2PError], max_size: int = BIG) -> float:
    """Receive, expecting ``error``; returns how long it took."""
    start = trio.current_time()
    with pytest.raises(error), trio.fail_after(HOUR):  # without the rules: waits forever
        await stream.receive_frame(max_size)
    return trio.current_time() - start


# --- deadlines -----------------------------------------------------------------------------------
async def test_a_body_trickled_below_the_rate_is_cut_at_its_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    budget = budget_of()
    raw, stream = inbound(budget, "loris")
    async with trio.open_nursery() as nursery:  # exits only once the sender saw the reset
        nursery.start_soon(lambda: trickle(raw, MIB, chunk=KIB, every_s=1.0))  # 1 KiB/s
        took = await expect_refusal(stream, SlowFrameError)
    assert took == pytest.approx(10.0 + MIB / (64 * KIB))  # grace + size / min rate: 26 s
    assert refusals(budget, Reason.SLOW) == 1
    assert scored(budget, "loris") == WEIGHTS[Reason.SLOW] > 0
    assert budget.reserved == 0 and budget.peers_holding() == 0


async def test_a_body_at_the_rate_arrives_and_its_bytes_are_released(
    autojump_clock: trio.testing.MockClock,
) -> None:
    budget = budget_of()
    raw, stream = inbound(budget, "honest")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: trickle(raw, MIB, chunk=64 * KIB, every_s=0.5))  # 128 KiB/s
        assert await stream.receive_frame(MIB) == b"x" * MIB
    assert budget.reserved == 0 and budget.peak_reserved == MIB
    assert budget.guard.refusals == {}


async def test_a_body_received_in_pieces_is_budgeted_alike(autojump_clock: trio.testing.MockClock) -> None:
    budget = budget_of()
    raw, stream = inbound(budget, "honest")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: trickle(raw, MIB, chunk=64 * KIB, every_s=0.5))  # 128 KiB/s
        pieces = await stream.receive_frame_pieces(MIB)
    assert b"".join(pieces) == b"x" * MIB and len(pieces) == MIB // (64 * KIB)
    assert budget.reserved == 0 and budget.peak_reserved == MIB
    assert budget.guard.refusals == {}


async def test_a_stream_whose_first_frame_does_not_start_in_time_is_reset(
    autojump_clock: trio.testing.MockClock,
) -> None:
    budget = budget_of()
    raw, stream = inbound(budget, "silent")
    took = await expect_refusal(stream, SlowFrameError)
    assert took == pytest.approx(SETTINGS.first_frame_s)
    assert refusals(budget, Reason.SLOW) == 1
    with pytest.raises(StreamResetError):
        await raw.write(b"late")


async def test_a_stream_may_idle_between_frames(autojump_clock: trio.testing.MockClock) -> None:
    """Only the first frame is due by a deadline: a transaction link waits for transactions."""
    budget = budget_of()
    raw, stream = inbound(budget, "idle")

    frames = [b"one", b"two"]

    async def next_frame() -> bool:
        if not frames:
            return False
        await raw.write(FRAME_HEADER.pack(3) + frames.pop(0))
        return True

    async def two_frames_far_apart() -> None:
        await act_every(1000, next_frame)  # 1,000 virtual seconds between the two

    async with trio.open_nursery() as nursery:
        nursery.start_soon(two_frames_far_apart)
        assert await stream.receive_frame(10) == b"one"
        assert await stream.receive_frame(10) == b"two"
    assert budget.guard.refusals == {}


async def test_small_frames_are_not_held_up_by_a_large_one(autojump_clock: trio.testing.MockClock) -> None:
    """A large frame's long deadline is its own: a small frame on another stream is received at
    once, and a small frame trickled too slowly is cut at its own short deadline."""
    budget = budget_of()
    big_raw, big = inbound(budget, "peer")
    small_raw, small = inbound(budget, "peer")
    slow_raw, slow = inbound(budget, "peer")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: trickle(big_raw, BIG, chunk=64 * KIB, every_s=0.9))  # above rate
        nursery.start_soon(big.receive_frame, BIG)
        await wait_until(lambda: budget.held_by("peer") == BIG, what="the large frame is reserved")
        await small_raw.write(FRAME_HEADER.pack(5) + b"small")
        assert await small.receive_frame(10) == b"small"
        nursery.start_soon(lambda: trickle(slow_raw, 4 * KIB, chunk=100, every_s=1.0))
        took = await expect_refusal(slow, SlowFrameError, 4 * KIB)
        assert took == pytest.approx(10.0 + 4 * KIB / (64 * KIB))
        assert budget.held_by("peer") == BIG  # the large frame still arriving, untouched
    assert budget.reserved == 0 and refusals(budget, Reason.SLOW) == 1


# --- the per-peer budget -------------------------------------------------------------------------
async def test_frames_beyond_a_peers_budget_are_refused_while_another_peer_gets_through(
    autojump_clock: trio.testing.MockClock,
) -> None:
    budget = budget_of()
    async with trio.open_nursery() as nursery:
        for _ in range(2):  # 2 x 16 MiB: the hog's whole budget
            raw, stream = inbound(budget, "hog")
            nursery.start_soon(stall, raw, BIG)
            nursery.start_soon(_receive_quietly, stream)
        await wait_until(lambda: budget.held_by("hog") == 2 * BIG, what="the hog holds 32 MiB")
        raw, third = inbound(budget, "hog")
        nursery.start_soon(stall, raw, BIG)
        took = await expect_refusal(third, FrameBudgetError)
        assert took == pytest.approx(SETTINGS.reserve_wait_s)  # waited briefly for room
        with pytest.raises(StreamResetError):
            await raw.write(b"more")
        other_raw, other = inbound(budget, "other")
        await other_raw.write(FRAME_HEADER.pack(BIG) + b"y" * BIG)
        assert await other.receive_frame(BIG) == b"y" * BIG
        nursery.cancel_scope.cancel()
    assert refusals(budget, Reason.OVER_BUDGET) == 1
    assert scored(budget, "hog") == WEIGHTS[Reason.OVER_BUDGET] > 0
    assert budget.guard.standing("other").score == 0
    assert budget.reserved == 0


async def test_a_frame_waiting_for_room_gets_it_when_the_peer_finishes_one(
    autojump_clock: trio.testing.MockClock,
) -> None:
    budget = budget_of()
    raws: list[RawStream] = []
    async with trio.open_nursery() as nursery:
        for _ in range(2):
            raw, stream = inbound(budget, "busy")
            raws.append(raw)
            await raw.write(FRAME_HEADER.pack(BIG) + b"z")
            nursery.start_soon(stream.receive_frame, BIG)
        await wait_until(lambda: budget.held_by("busy") == 2 * BIG, what="32 MiB held")
        raw, third = inbound(budget, "busy")
        await raw.write(FRAME_HEADER.pack(10) + b"0123456789")
        async with trio.open_nursery() as inner:
            inner.start_soon(third.receive_frame, 10)
            await raws[0].write(b"z" * (BIG - 1))  # the first frame completes within the wait
        nursery.cancel_scope.cancel()
    assert budget.guard.refusals == {} and budget.reserved == 0


# --- the node-wide budget ------------------------------------------------------------------------
async def test_the_node_budget_caps_the_total_across_peers_and_a_squeeze_is_not_scored(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Ten peers, two stalled 16 MiB frames each: at most 56 MiB (the 64 MiB budget less the
    eighth kept for small frames) is ever reserved; the rest is refused as busy, scoring nobody;
    a small frame still gets through the squeeze."""
    budget = budget_of()
    peers = [f"peer-{index}" for index in range(10)]
    async with trio.open_nursery() as nursery:
        for peer in peers:
            for _ in range(2):
                raw, stream = inbound(budget, peer)
                nursery.start_soon(stall, raw, BIG)
                nursery.start_soon(_receive_quietly, stream)
        await wait_until(
            lambda: refusals(budget, Reason.BUSY) == 2 * len(peers) - 3, what="all but three refused"
        )
        assert budget.reserved == 3 * BIG
        # From a peer holding nothing: which peers got the three reservations is up to trio's
        # scheduling, and one holding two 16 MiB frames is at its own cap.
        idle_peer = next(peer for peer in peers if budget.held_by(peer) == 0)
        small_raw, small = inbound(budget, idle_peer)
        await small_raw.write(FRAME_HEADER.pack(MIB) + b"s" * MIB)
        assert await small.receive_frame(MIB) == b"s" * MIB
        nursery.cancel_scope.cancel()
    assert budget.peak_reserved == 3 * BIG + MIB <= SETTINGS.total_bytes
    assert all(budget.guard.standing(peer).score == 0 for peer in peers)
    assert budget.reserved == 0


async def test_a_frame_the_node_budget_can_never_hold_is_refused_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    budget = budget_of(FrameBudgetSettings(per_peer_bytes=MIB, total_bytes=2 * MIB))
    raw, stream = inbound(budget, "peer")
    await raw.write(FRAME_HEADER.pack(2 * MIB))
    assert await expect_refusal(stream, FrameBudgetError, 4 * MIB) == 0
    assert refusals(budget, Reason.BUSY) == 1


# --- no leak -------------------------------------------------------------------------------------
async def test_a_thousand_failing_frames_leave_the_budget_whole(
    autojump_clock: trio.testing.MockClock,
) -> None:
    budget = budget_of()
    for index in range(1000):
        raw, stream = inbound(budget, f"peer-{index % 7}")
        await raw.write(FRAME_HEADER.pack(1000) + b"x" * 10)
        kind = index % 3
        if kind == 0:
            await raw.close_write()  # the stream ends inside the body
        elif kind == 1:
            await raw.reset()
        with pytest.raises(P2PError), trio.fail_after(HOUR):  # truncated, reset, slow in turn
            await stream.receive_frame(1000)
        assert budget.reserved == 0
    assert budget.peers_holding() == 0 and budget.peak_reserved == 1000
    assert refusals(budget, Reason.SLOW) == 333
    raw, stream = inbound(budget, "after")
    await raw.write(FRAME_HEADER.pack(SETTINGS.per_peer_bytes) + b"w" * SETTINGS.per_peer_bytes)
    assert len(await stream.receive_frame(SETTINGS.per_peer_bytes)) == SETTINGS.per_peer_bytes


async def test_a_receive_cancelled_mid_body_releases_its_bytes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    budget = budget_of()
    raw, stream = inbound(budget, "peer")
    await raw.write(FRAME_HEADER.pack(MIB) + b"x")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(stream.receive_frame, MIB)
        await wait_until(lambda: budget.reserved == MIB, what="the body's bytes are reserved")
        nursery.cancel_scope.cancel()  # as a handler's own timeout would
    assert budget.reserved == 0 and budget.peers_holding() == 0


# --- on a host -----------------------------------------------------------------------------------
async def test_a_memory_hosts_handlers_get_budgeted_streams_and_refusals_are_counted_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    network = MemoryNetwork()
    node, stranger = (network.create_host(PrivateKey.from_label(f"budget-{name}").seed()) for name in "ns")
    ended: list[str] = []

    async def handler(stream: Stream) -> None:
        try:
            await stream.receive_frame(BIG)
        finally:
            ended.append(stream.peer_id)

    node.set_stream_handler(PROTOCOL, handler)
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        await nursery.start(stranger.run)
        await stranger.connect(node.listen_addrs[0])
        prompt = await stranger.open_stream(node.peer_id, PROTOCOL)
        await prompt.send_frame(b"hello")
        await stranger.open_stream(node.peer_id, PROTOCOL)  # and then silence
        await wait_until(lambda: len(ended) == 2, what="both handlers ended")
        nursery.cancel_scope.cancel()
    # The silent stream, cut at its first-frame deadline, counted once (by the stream itself).
    assert node.guard.refusals == {(PROTOCOL, Reason.SLOW.value): 1}
    assert node.frame_budget.reserved == 0 and node.frame_budget.peak_reserved == 5


def test_settings_are_bounded() -> None:
    for bad in (
        {"per_peer_bytes": KIB},
        {"per_peer_bytes": 64 * MIB, "total_bytes": 32 * MIB},
        {"min_rate_bytes_per_s": 10},
        {"grace_s": -1.0},
        {"first_frame_s": 0.0},
        {"reserve_wait_s": 1e6},
    ):
        with pytest.raises(HostConfigError):
            FrameBudgetSettings(**bad)


async def _receive_quietly(stream: Stream) -> None:
    with contextlib.suppress(P2PError):
        await stream.receive_frame(BIG)
