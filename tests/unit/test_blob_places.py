"""The blob server's places and send budget (``node.blobs.places``), on trio's virtual clock."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from node.blobs.places import Places, SendBudget


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


def full_server(evict_idle_s: float = 2.0) -> Places:
    return Places(max_streams=2, max_streams_per_peer=2, evict_idle_s=evict_idle_s)


async def test_a_full_server_gives_a_newcomer_the_place_idle_longest_once_past_evict_idle_s(
    autojump_clock: trio.testing.MockClock,
) -> None:
    places = full_server()
    first = places.take("sybil-1")
    autojump_clock.jump(0.5)
    second = places.take("sybil-2")
    assert first is not None and second is not None
    autojump_clock.jump(1.6)  # first idle 2.1 s, second 1.6 s
    newcomer = places.take("honest")
    assert newcomer is not None and first.evicted and first.scope.cancel_called
    assert not second.evicted and len(places) == 2 and places.evictions == 1
    assert places.take("another") is None  # second idle 1.6 s, the newcomer 0 s: nobody yields
    places.give_back(first)  # the evicted stream's handler ends: its place is already taken
    assert len(places) == 2


async def test_a_stream_taking_chunks_or_waiting_on_us_keeps_its_place(
    autojump_clock: trio.testing.MockClock,
) -> None:
    places = full_server()
    fetching, waiting_on_disk = places.take("fetcher"), places.take("patient")
    assert fetching is not None and waiting_on_disk is not None
    waiting_on_disk.busy_here = True
    for _ in range(10):
        autojump_clock.jump(1.0)
        fetching.last_chunk_at = trio.current_time()
        assert places.take("sybil") is None
    assert not fetching.evicted and not waiting_on_disk.evicted and places.evictions == 0


async def test_memory_is_taken_back_from_the_idle_stream_holding_some(
    autojump_clock: trio.testing.MockClock,
) -> None:
    places = Places(max_streams=8, max_streams_per_peer=8, evict_idle_s=2.0)
    asked_nothing, not_reading, reading = places.take("a"), places.take("b"), places.take("c")
    assert asked_nothing is not None and not_reading is not None and reading is not None
    not_reading.held_bytes = reading.held_bytes = 1 << 20
    autojump_clock.jump(1.0)
    assert not places.evict_for_memory()  # nobody idle for 2 s yet
    autojump_clock.jump(1.5)
    reading.last_chunk_at = trio.current_time()
    assert places.evict_for_memory()
    assert not_reading.evicted and not asked_nothing.evicted and not reading.evicted
    assert not places.evict_for_memory()  # the one left idle holds no memory


async def test_a_peer_at_its_own_share_is_refused_even_when_it_could_evict(
    autojump_clock: trio.testing.MockClock,
) -> None:
    places = Places(max_streams=2, max_streams_per_peer=1, evict_idle_s=1.0)
    assert places.take("peer-a") is not None
    assert places.take("peer-a") is None
    assert places.take("peer-b") is not None
    autojump_clock.jump(5)
    assert places.take("peer-b") is None  # its share is full: it closes its own, nobody else's
    assert places.take("peer-c") is not None and places.evictions == 1


async def test_the_send_budget_holds_what_is_read_until_released_first_come_first_served(
    autojump_clock: trio.testing.MockClock,
) -> None:
    budget = SendBudget(100)
    assert await budget.acquire(60) == 60
    order: list[str] = []

    async def take(name: str, size: int) -> None:
        taken = await budget.acquire(size)
        order.append(name)
        budget.release(taken)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(take, "large", 80)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(take, "small", 10)  # fits now, but waits its turn behind "large"
        await trio.testing.wait_all_tasks_blocked()
        assert order == [] and budget.held == 60
        budget.release(60)
    assert order == ["large", "small"] and budget.held == 0 and budget.peak == 80


async def test_a_chunk_larger_than_the_whole_budget_takes_all_of_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    budget = SendBudget(100)
    taken = await budget.acquire(4096)
    assert taken == 100 and budget.free == 0
    with trio.move_on_after(60) as waited:
        await budget.acquire(1)
    assert waited.cancelled_caught and budget.free == 0  # a cancelled waiter takes nothing
    budget.release(taken)
    assert budget.free == 100


def test_a_send_budget_is_at_least_a_byte() -> None:
    with pytest.raises(ValueError, match="at least one byte"):
        SendBudget(0)
