"""The chain feed (node/services/chain_feed.py): a waiter wakes for its contract's events, the
height it names, a parameter change or a nudge, and for nothing else; no waiter outlives its
wait. Trio's MockClock: nothing here sleeps."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from node.services.chain_feed import ChainFeed
from protocol.ledger.events import (
    ESCROW_CLAIMED,
    ESCROW_SETTLED,
    PARAMS_CHANGED,
    VALIDATOR_SLASHED,
    LedgerEvent,
)

MINE, OTHER = b"\x01" * 32, b"\x02" * 32


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


async def _woken_at(
    feed: ChainFeed, publish: list[tuple[int, tuple[LedgerEvent, ...]]], **wait: object
) -> int | None:
    """Publish ``publish`` one by one; the height at which the waiter returned (None: never)."""
    woken: list[int] = []

    async def waiter() -> None:
        woken.append(await feed.wait(seen_height=feed.height, **wait))  # type: ignore[arg-type]

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        for height, events in publish:
            feed.publish(height, events)
            await trio.testing.wait_all_tasks_blocked()
            if woken:
                break
        nursery.cancel_scope.cancel()
    assert feed.waiting == 0, "a waiter outlived its wait"
    return woken[0] if woken else None


async def test_a_waiter_sleeps_through_blocks_that_do_not_name_its_contract(
    autojump_clock: trio.testing.MockClock,
) -> None:
    feed = ChainFeed(5)
    blocks = [
        (6, ()),
        (7, (LedgerEvent(ESCROW_SETTLED, OTHER), LedgerEvent(VALIDATOR_SLASHED, MINE))),
        (8, (LedgerEvent(ESCROW_CLAIMED, MINE),)),
    ]
    assert await _woken_at(feed, blocks, contract=MINE) == 8


async def test_a_waiter_wakes_at_the_height_it_names(autojump_clock: trio.testing.MockClock) -> None:
    feed = ChainFeed(5)
    blocks = [(h, ()) for h in range(6, 20)]
    assert await _woken_at(feed, blocks, contract=MINE, wake_height=12) == 12


async def test_a_parameter_change_wakes_every_contract_waiter(autojump_clock: trio.testing.MockClock) -> None:
    feed = ChainFeed(5)
    blocks = [(6, ()), (7, (LedgerEvent(PARAMS_CHANGED, b"dispute_window_blocks"),))]
    assert await _woken_at(feed, blocks, contract=MINE) == 7


async def test_a_stale_decision_returns_at_once(autojump_clock: trio.testing.MockClock) -> None:
    feed = ChainFeed(5)
    feed.publish(6, ())
    assert await feed.wait(seen_height=5, contract=MINE, wake_height=100) == 6
    assert feed.waiting == 0


async def test_a_nudge_wakes_the_contracts_waiters_at_the_same_height(
    autojump_clock: trio.testing.MockClock,
) -> None:
    feed = ChainFeed(5)
    woken: list[int] = []

    async def waiter() -> None:
        woken.append(await feed.wait(seen_height=5, contract=MINE, wake_height=50))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.testing.wait_all_tasks_blocked()
        feed.nudge(OTHER)
        await trio.testing.wait_all_tasks_blocked()
        assert woken == []
        feed.nudge(MINE)
    assert woken == [5]
    assert feed.waiting == 0  # its height entry (50) went with it


async def test_heights_only_move_forward(autojump_clock: trio.testing.MockClock) -> None:
    feed = ChainFeed(5)
    feed.publish(4, (LedgerEvent(ESCROW_CLAIMED, MINE),))
    feed.publish(5, ())
    assert feed.height == 5
    blocks = [(6, ())]
    assert await _woken_at(feed, blocks) == 6  # no contract: any block
