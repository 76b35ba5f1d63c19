"""The blob server's places and send budget (``node.blobs.places``), on trio's virtual clock."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import cast

import pytest
import trio
import trio.testing

from node.blobs.places import (
    ADDRESS_SHARE,
    EVICTION_BURST,
    EVICTIONS_PER_S,
    FIRST_ANSWER_GRACE_S,
    RATE_TAU_S,
    Places,
    SendBudget,
    address_key,
)
from node.blobs.server import BlobServer
from node.blobs.settings import BlobSettings
from node.blobs.store import BlobStore
from node.p2p.framing import Stream
from tests.waiting import spend_virtual_time

KIB = 1024
THRESHOLD = 64 * KIB


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


def server(max_streams: int = 2, max_streams_per_peer: int = 8) -> Places:
    return Places(
        max_streams=max_streams, max_streams_per_peer=max_streams_per_peer, evict_below_bytes_per_s=THRESHOLD
    )


async def test_a_newcomer_to_a_full_server_takes_the_place_of_the_stream_taking_least(
    autojump_clock: trio.testing.MockClock,
) -> None:
    places = server()
    fetcher, holder = places.take("fetcher"), places.take("sybil")
    assert fetcher is not None and holder is not None
    holder.took(70)  # a manifest now and then
    for _ in range(20):
        autojump_clock.jump(0.25)
        fetcher.took(256 * KIB)  # 1 MiB/s
    newcomer = places.take("honest")
    assert newcomer is not None and holder.evicted and holder.scope.cancel_called
    assert not fetcher.evicted and len(places) == 2 and places.evictions == 1
    places.give_back(holder)  # the evicted stream's handler ends: its place is already taken
    assert len(places) == 2


async def test_a_churner_pushes_out_its_own_older_streams_first(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Review 34 F1: new streams protected for 2 s whatever they did let a churner keep every
    place young. A churner's streams that took their 70-byte answer are slow and answered, and
    among those the oldest goes first: its own."""
    places = server(max_streams=3)
    honest = places.take("honest")
    assert honest is not None
    churned = []
    for round_ in range(30):
        autojump_clock.jump(0.1)
        honest.took(32 * KIB)  # 320 KiB/s
        stream = places.take(f"sybil-{round_}")
        assert stream is not None  # the churner always gets a place: one of its own
        stream.took(70)
        churned.append(stream)
    assert not honest.evicted
    assert sum(stream.evicted for stream in churned) == len(churned) - 2


async def test_a_newcomer_still_at_zero_outlives_older_streams_that_took_an_answer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Review 35 N1: ranked by rate, a churner's streams that had taken one 70-byte answer
    outranked an honest newcomer at 0 bytes, which the churner's next stream evicted before its
    own answer. Among slow streams the oldest goes first."""
    places = server(max_streams=3)
    for index in range(3):
        stream = places.take(f"sybil-{index}")
        assert stream is not None
        stream.took(70)
        autojump_clock.jump(0.01)
    honest = places.take("honest")
    assert honest is not None
    for index in range(2):
        autojump_clock.jump(0.01)
        assert places.take(f"sybil-{index}") is not None
    assert not honest.evicted


async def test_one_address_may_push_out_a_burst_of_streams_then_one_a_second(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Review 36: identities are free, addresses are not. Past its bucket, a churner's new
    streams are told busy instead of evicting."""
    places = server(max_streams=ADDRESS_SHARE * (EVICTION_BURST + 2))
    for index in range(ADDRESS_SHARE * (EVICTION_BURST + 2)):
        assert places.take(f"honest-{index}", f"192.0.2.{index}") is not None
    autojump_clock.jump(2.0)  # every place slow, and past its grace
    evicted = 0
    for index in range(3 * EVICTION_BURST):
        if places.take(f"sybil-{index}", "198.51.100.7") is not None:
            evicted += 1
    assert evicted == EVICTION_BURST and places.evictions == EVICTION_BURST
    autojump_clock.jump(1 / EVICTIONS_PER_S)
    assert places.take("sybil-next", "198.51.100.7") is not None
    assert places.take("sybil-more", "198.51.100.7") is None
    assert places.take("honest-newcomer", "203.0.113.5") is not None  # another address evicts


async def test_one_address_holds_at_most_its_share_of_the_places_an_ipv6_64_being_one(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Review 37: an attacker took every place an honest stream freed, so every honest newcomer
    had to evict; and each address of an IPv6 /64 had a bucket of its own."""
    places = server(max_streams=4 * ADDRESS_SHARE)
    for index in range(4):
        assert places.take(f"sybil-{index}", f"2001:db8::{index + 1}") is not None
    assert places.take("sybil-4", "2001:db8::ffff:1") is None  # the same /64: its share is taken
    assert places.take("honest", "2001:db8:1::1") is not None
    # Loopback, where every local node is, is told apart by peer id: the places left all go.
    local = [places.take(f"local-{index}", "127.0.0.1") for index in range(4 * ADDRESS_SHARE - 5)]
    assert all(place is not None for place in local) and len(places) == 4 * ADDRESS_SHARE
    assert address_key("2001:db8::5") == "2001:db8::/64" and address_key("::1") is None


async def test_a_stream_not_yet_answered_is_never_evicted_within_its_grace(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Reviews 36 and 37: with honest downloads in most places, churners evicted each newcomer
    before its first answer. Within its grace an unanswered stream is not evicted: an answered
    slow one goes, and when none is left the next newcomer is told busy."""
    places = server(max_streams=3)
    downloading, holder = places.take("downloader", "192.0.2.1"), places.take("holder", "198.51.100.7")
    assert downloading is not None and holder is not None
    holder.took(70)
    autojump_clock.jump(2.0)
    downloading.took(10 << 20)
    newcomer = places.take("honest", "203.0.113.5")
    assert newcomer is not None
    autojump_clock.jump(0.01)
    assert places.take("sybil-1", "198.51.100.8") is not None
    assert holder.evicted and not newcomer.evicted  # the answered slow stream went
    assert places.take("sybil-2", "198.51.100.9") is None  # only streams in their grace are slow
    autojump_clock.jump(FIRST_ANSWER_GRACE_S)
    newcomer.took(4096)  # answered, and a 4 KiB/s stream now: slow, the oldest of the slow
    assert places.take("sybil-3", "198.51.100.10") is not None and newcomer.evicted


async def test_a_slow_reader_above_the_threshold_keeps_its_place_however_long_a_chunk_takes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Review 34 F3: a reader taking 100 KiB/s was evicted mid-chunk; each yamux frame counts."""
    places = server(max_streams=1)
    slow = places.take("slow-link")
    assert slow is not None
    for _ in range(60):
        autojump_clock.jump(2.56)
        slow.took(256 * KIB)  # 100 KiB/s, a window's worth at a time
        assert places.take("newcomer") is None
    assert not slow.evicted


async def test_a_stream_that_stops_taking_decays_below_the_threshold_and_goes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    places = server(max_streams=1)
    stream = places.take("trickler")
    assert stream is not None
    stream.took(4 << 20)  # a burst, then a byte of credit now and then (review 34 F2)
    assert places.take("newcomer") is None
    for _ in range(5):
        autojump_clock.jump(RATE_TAU_S)
        stream.took(1)
    assert places.take("newcomer") is not None and stream.evicted


async def test_a_stream_waiting_on_our_disk_keeps_its_place(autojump_clock: trio.testing.MockClock) -> None:
    places = server(max_streams=1)
    waiting_on_disk = places.take("patient")
    assert waiting_on_disk is not None
    with waiting_on_disk.reading_disk():
        autojump_clock.jump(60)
        assert places.take("newcomer") is None and not waiting_on_disk.evicted
    assert places.take("newcomer") is not None and waiting_on_disk.evicted


async def test_a_peer_at_its_own_share_is_refused_even_when_it_could_evict(
    autojump_clock: trio.testing.MockClock,
) -> None:
    places = server(max_streams=2, max_streams_per_peer=1)
    assert places.take("peer-a") is not None
    assert places.take("peer-a") is None
    assert places.take("peer-b") is not None
    autojump_clock.jump(5)
    assert places.take("peer-b") is None  # its share is full: it closes its own, nobody else's
    assert places.take("peer-c") is not None and places.evictions == 1


async def test_memory_is_taken_back_from_the_holder_taking_least(
    autojump_clock: trio.testing.MockClock,
) -> None:
    places = server(max_streams=8)
    asked_nothing, not_reading, reading = places.take("a"), places.take("b"), places.take("c")
    assert asked_nothing is not None and not_reading is not None and reading is not None
    not_reading.held_bytes = reading.held_bytes = 1 << 20
    autojump_clock.jump(FIRST_ANSWER_GRACE_S)
    reading.took(1 << 20)
    assert places.evict_for_memory()
    assert not_reading.evicted and not asked_nothing.evicted and not reading.evicted
    assert not places.evict_for_memory()  # the one left below the threshold holds no memory


async def test_the_send_budget_holds_what_is_read_until_released_first_come_first_served(
    autojump_clock: trio.testing.MockClock,
) -> None:
    budget = SendBudget(100)
    assert budget.try_acquire(60) == 60
    order: list[str] = []

    async def take(name: str, size: int) -> None:
        taken = await budget.acquire(size)
        order.append(name)
        budget.release(taken)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(take, "large", 80)
        await trio.testing.wait_all_tasks_blocked()
        assert budget.try_acquire(10) == 0  # fits now, but "large" waits ahead of it
        nursery.start_soon(take, "small", 10)
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


class TricklingStream:
    """A stream whose client takes ``step`` bytes of a frame every ``every`` s (credit granted
    in driblets), ``total`` in all."""

    def __init__(self, step: int, every: float, total: int) -> None:
        self.step, self.every, self.total = step, every, total

    async def send_frame_buffer(self, buffer: bytearray, *, on_sent: Callable[[int], None]) -> None:
        sent = 0
        while sent < self.total:
            await spend_virtual_time(self.every)  # the client's pace, in virtual time
            on_sent(self.step)
            sent += self.step


def watched_send(stream: TricklingStream) -> Callable[[], Awaitable[None]]:
    server = BlobServer(cast(BlobStore, None), BlobSettings(idle_timeout_s=30.0))
    place = Places(max_streams=1, max_streams_per_peer=1, evict_below_bytes_per_s=THRESHOLD).take("client")
    assert place is not None
    return functools.partial(server._send_watched, cast(Stream, stream), bytearray(8), place)


async def test_a_chunk_send_lives_while_its_client_takes_bytes_not_while_it_grants_driblets(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Review 36 N2: a 4 MiB chunk to a 64 KiB/s reader took longer than the 30 s deadline, so
    each frame's deadline now counts from the client's last progress; review 37 F5: a byte of
    credit every 4.9 s then kept a send alive for good, so progress is 16 KiB or more."""
    started = trio.current_time()
    await watched_send(TricklingStream(step=128 * KIB, every=2.0, total=4 << 20))()  # 64 KiB/s
    assert trio.current_time() - started == pytest.approx(64.0)
    started = trio.current_time()
    with pytest.raises(trio.TooSlowError):
        await watched_send(TricklingStream(step=1, every=4.9, total=1 << 20))()
    assert trio.current_time() - started == pytest.approx(30.0)
