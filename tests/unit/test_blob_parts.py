"""The fetcher's pure parts: the chunk scheduler, peer bans on a virtual clock, the settings'
bounds, and the task group that surfaces a helper task's failure as itself."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from node.blobs.errors import BlobSettingsError
from node.blobs.fetcher import PeerScores
from node.blobs.scheduling import ChunkScheduler, have_candidates
from node.blobs.settings import BlobSettings
from node.blobs.tasks import open_task_group
from node.p2p.errors import StreamResetError


def test_scheduler_hands_out_contiguous_runs_and_takes_failures_back_first() -> None:
    scheduler = ChunkScheduler([0, 1, 2, 3, 5, 6, 9])
    assert scheduler.take(3) == [0, 1, 2]
    assert scheduler.take(3) == [3]  # 4 is not missing: a run ends at a gap
    assert scheduler.take(8) == [5, 6]
    scheduler.give_back([1, 2])
    assert scheduler.take(8) == [1, 2]
    assert scheduler.take(8) == [9]
    assert scheduler.take(8, holding=[0, 1, 2, 3, 5, 6, 9]) == []  # all of it with the asker
    assert not scheduler.complete
    for index in (0, 1, 2, 3, 5, 6, 9):
        scheduler.done(index)
    assert scheduler.complete


def test_have_is_asked_of_the_hints_first_then_of_connected_peers_drawn_at_random() -> None:
    connected = [f"peer-{letter}" for letter in "abcdefghij"]  # sorted, as libp2p lists them
    hints = ["peer-j", "hint-x"]
    asked_first: set[str] = set()
    for _ in range(200):
        candidates = have_candidates(hints, connected, exclude=lambda peer: peer == "peer-a", limit=4)
        assert candidates[:2] == hints and len(candidates) == 4 and len(set(candidates)) == 4
        assert "peer-a" not in candidates
        asked_first.add(candidates[2])
    # Every connected peer but the excluded one and the hint gets its turn: none is kept out by
    # where its id sorts.
    assert asked_first == set(connected) - {"peer-a", "peer-j"}


def test_in_the_endgame_a_peer_with_room_is_handed_chunks_another_holds_once_each() -> None:
    scheduler = ChunkScheduler([0, 1, 2, 3])
    slow = scheduler.take(4)
    assert slow == [0, 1, 2, 3]
    fast = scheduler.take(2, holding=[])  # nothing left to hand out: copies of the slow peer's
    assert fast == [0, 1]
    assert scheduler.take(8, holding=fast) == [2, 3]
    assert scheduler.take(8, holding=[]) == []  # each chunk is asked of a second peer once
    for index in (0, 1, 2, 3):
        scheduler.done(index)  # the first copy of each that verifies counts
    assert scheduler.complete
    scheduler.give_back(slow)  # the slow peer's failure later hands out nothing done
    assert scheduler.take(8) == []


async def test_scheduler_wakes_waiters_on_give_back_and_on_completion() -> None:
    scheduler = ChunkScheduler([0])
    taken = scheduler.take(1)
    woke = []

    async def waiter() -> None:
        await scheduler.changed()
        woke.append(scheduler.take(1))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        scheduler.give_back(taken)
    assert woke == [[0]]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(scheduler.changed)
        await trio.testing.wait_all_tasks_blocked()
        scheduler.done(0)
    assert scheduler.complete


async def test_a_ban_lasts_ban_s_of_trio_time(autojump_clock: trio.testing.MockClock) -> None:
    scores = PeerScores(ban_s=60)
    scores.ban("peer-a", "sent a chunk that does not verify")
    assert scores.banned("peer-a") and not scores.banned("peer-b")
    autojump_clock.jump(59)
    assert scores.banned("peer-a")
    autojump_clock.jump(1)
    assert not scores.banned("peer-a")


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


@pytest.mark.parametrize(
    "changes",
    [
        {"chunk_size": 3 << 16},
        {"chunk_size": 1 << 15},
        {"max_bytes": -1},
        {"request_chunks": 0},
        {"request_chunks": 17},
        {"request_chunks": 8, "peer_window_chunks": 4},
        {"peer_window_chunks": 32, "window_chunks": 16},
        {"max_streams_per_peer": 0},
        {"peer_retries": -1},
        {"idle_timeout_s": 0},
        {"stall_timeout_s": 8 * 24 * 3600},
        {"evict_below_bytes_per_s": -1},
        {"max_send_bytes": 1024},
    ],
)
def test_settings_out_of_range_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(BlobSettingsError):
        BlobSettings(**changes)  # type: ignore[arg-type]


def test_default_settings_are_valid() -> None:
    settings = BlobSettings()
    assert settings.window_chunks * settings.chunk_size == 16 << 20


async def test_task_group_raises_a_helper_tasks_typed_failure_as_itself() -> None:
    async def fails() -> None:
        raise StreamResetError("gone")

    with pytest.raises(StreamResetError):
        async with open_task_group() as nursery:
            nursery.start_soon(fails)
            await trio.sleep_forever()

    async def also_fails() -> None:
        raise ValueError("two at once")

    with pytest.raises(BaseExceptionGroup):
        async with open_task_group() as nursery:
            nursery.start_soon(fails)
            nursery.start_soon(also_fails)
