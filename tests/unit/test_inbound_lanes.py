"""Inbound lanes (issue 14): consensus first, each lane bounded, drops counted.

The admit function below costs virtual time per transaction (as signature checks cost CPU) and,
like the driver's, yields to the consensus lane between slices.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing

from node.services.lanes import InboundLanes, Lane, LaneBounds, TxBatch
from tests.waiting import spend_virtual_time

SLICE = 64
#: Virtual seconds one transaction's admission costs (a signature check).
TX_COST_S = 0.0001


class Recorder:
    def __init__(self, bounds: LaneBounds | None = None) -> None:
        self.stepped: list[tuple[str, float]] = []
        self.admitted = 0
        self.lanes = InboundLanes[str](self.step, self.admit, bounds)

    async def step(self, event: str) -> None:
        self.stepped.append((event, trio.current_time()))

    async def admit(self, batch: TxBatch) -> None:
        for start in range(0, len(batch.txs), SLICE):
            await spend_virtual_time(len(batch.txs[start : start + SLICE]) * TX_COST_S)
            self.admitted += len(batch.txs[start : start + SLICE])
            await self.lanes.yield_to_consensus()


def flood(count: int, size: int = 4096) -> list[TxBatch]:
    return [TxBatch(f"peer-{i % 3}", (b"tx",) * size) for i in range(count)]


async def test_a_vote_behind_a_transaction_flood_is_stepped_within_one_slice(
    autojump_clock: trio.testing.MockClock,
) -> None:
    recorder = Recorder(LaneBounds(txs=4096 * 8))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(recorder.lanes.run)
        for batch in flood(8):
            assert recorder.lanes.offer(Lane.TXS, batch)
        flood_s = 8 * 4096 * TX_COST_S  # ~3.3 s of signature checks queued ahead of the vote
        await spend_virtual_time(1.0)
        offered_at = trio.current_time()
        assert recorder.lanes.offer(Lane.CONSENSUS, "vote")
        await spend_virtual_time(flood_s)
        nursery.cancel_scope.cancel()
    [(event, stepped_at)] = recorder.stepped
    assert event == "vote"
    assert stepped_at - offered_at <= SLICE * TX_COST_S + 1e-9
    assert recorder.admitted == 8 * 4096  # and the flood was still admitted, after the vote


async def test_consensus_is_served_before_sync_and_sync_before_transactions(
    autojump_clock: trio.testing.MockClock,
) -> None:
    recorder = Recorder()
    recorder.lanes.offer(Lane.TXS, TxBatch("peer", (b"tx",)))
    recorder.lanes.offer(Lane.SYNC, "block-1")
    recorder.lanes.offer(Lane.CONSENSUS, "vote-1")
    recorder.lanes.offer(Lane.SYNC, "block-2")
    recorder.lanes.offer(Lane.CONSENSUS, "proposal")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(recorder.lanes.run)
        await spend_virtual_time(1)
        nursery.cancel_scope.cancel()
    assert [event for event, _ in recorder.stepped] == ["vote-1", "proposal", "block-1", "block-2"]
    assert recorder.admitted == 1


@pytest.mark.parametrize("lane", [Lane.CONSENSUS, Lane.SYNC])
def test_each_event_lane_is_bounded_and_counts_what_it_drops(lane: Lane) -> None:
    lanes = InboundLanes[str](Recorder().step, Recorder().admit, LaneBounds(consensus=5, sync=3))
    bound = lanes.bounds.of(lane)
    offered = [lanes.offer(lane, f"event-{i}") for i in range(bound + 7)]
    assert offered == [True] * bound + [False] * 7
    [stats] = [s for s in lanes.stats() if s.lane is lane]
    assert (stats.depth, stats.bound, stats.accepted, stats.dropped, stats.waited) == (
        bound,
        bound,
        bound,
        7,
        0,
    )
    assert all(s.depth == 0 for s in lanes.stats() if s.lane is not lane)  # the other lanes untouched


async def test_the_transaction_lane_is_bounded_in_transactions_and_a_relay_waits_for_room(
    autojump_clock: trio.testing.MockClock,
) -> None:
    recorder = Recorder(LaneBounds(txs=10_000))
    lanes = recorder.lanes
    async with trio.open_nursery() as nursery:
        await lanes.put(Lane.TXS, TxBatch("a", (b"tx",) * 4096))
        await lanes.put(Lane.TXS, TxBatch("a", (b"tx",) * 4096))
        nursery.start_soon(lanes.put, Lane.TXS, TxBatch("b", (b"tx",) * 4096))  # 12,288 > 10,000
        await trio.testing.wait_all_tasks_blocked()
        assert lanes.waiting(Lane.TXS) == 8192 and lanes.waited(Lane.TXS) == 1
        assert lanes.offer(Lane.CONSENSUS, "vote")  # a full transaction lane leaves consensus its room
        nursery.start_soon(lanes.run)
        await spend_virtual_time(10)
        nursery.cancel_scope.cancel()
    assert recorder.admitted == 3 * 4096  # nothing relayed was lost
    assert lanes.dropped(Lane.TXS) == 0
    assert recorder.stepped[0][0] == "vote"


async def test_our_own_work_waits_for_room_instead_of_being_dropped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    recorder = Recorder(LaneBounds(consensus=2))
    lanes = recorder.lanes
    assert lanes.offer(Lane.CONSENSUS, "vote-1") and lanes.offer(Lane.CONSENSUS, "vote-2")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lanes.put, Lane.CONSENSUS, "timer")
        await trio.testing.wait_all_tasks_blocked()
        assert lanes.waiting(Lane.CONSENSUS) == 2  # the timer waits: the lane is full
        nursery.start_soon(lanes.run)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert [event for event, _ in recorder.stepped] == ["vote-1", "vote-2", "timer"]
    assert lanes.dropped(Lane.CONSENSUS) == 0


def test_lane_bounds_must_leave_room() -> None:
    with pytest.raises(ValueError, match="sync"):
        LaneBounds(sync=0)
