"""Admission control sized by what blocks actually carry: the busy bound is ``busy_blocks`` times
the most any of the last ``CARRIED_WINDOW`` committed blocks carried, clamped between
``busy_floor_txs`` and ``max_block_txs``; before any block, ``max_block_txs`` (issue 14)."""

from __future__ import annotations

import pytest

from node.services.mempool import Mempool, MempoolBusy, MempoolSettings, MempoolSettingsError
from node.services.mempool.pool import CARRIED_WINDOW
from protocol.ledger.tx import Transfer
from tests.unit.ledger_helpers import FEE, Chain, addr

BOB = addr("bob")
#: Funded accounts; each sends several transactions in nonce order.
SENDERS = ("alice", "bob", "carol", "dave")


def _commit_carrying(pool: Mempool, chain: Chain, count: int, at_ms: int | None = None) -> None:
    """What the driver does after a block of ``count`` transactions none of which are waiting
    here, made at ``at_ms``."""
    pool.remove_committed(chain.state, {i.to_bytes(32, "big") for i in range(count)}, at_ms)


def _pay(chain: Chain, index: int) -> bytes:
    return chain.tx(SENDERS[index % len(SENDERS)], Transfer(BOB, 1), fee=FEE)


def _fill(pool: Mempool, chain: Chain, count: int) -> None:
    for index in range(count):
        pool.add(_pay(chain, index), chain.state)


@pytest.mark.parametrize(
    ("carried", "expected"),
    [(0, 2 * 2), (1, 2 * 2), (3, 2 * 3), (10, 2 * 10), (11, 2 * 10), (10**6, 2 * 10)],
)
def test_the_bound_is_busy_blocks_of_what_blocks_carried_between_the_floor_and_the_block_cap(
    carried: int, expected: int
) -> None:
    settings = MempoolSettings(max_block_txs=10, busy_blocks=2, busy_floor_txs=2)
    assert settings.busy_limit_for(carried) == expected


@pytest.mark.parametrize(
    ("rate", "expected"),
    [
        ((1_000, 1_000), 1_500),  # 1,000 tx/s for 1.5 s: under the 2 blocks' worth of 1,000
        ((100, 1_000), 300),  # slow blocks: the floor
        ((10_000, 1_000), 2_000),  # fast: 2 blocks' worth
        ((1_000, 0), 2_000),  # no time passed: blocks alone
    ],
)
def test_with_block_times_the_bound_is_also_what_was_finalized_in_busy_wait_ms(
    rate: tuple[int, int], expected: int
) -> None:
    settings = MempoolSettings(max_block_txs=5_000, busy_blocks=2, busy_floor_txs=150, busy_wait_ms=1_500)
    assert settings.busy_limit_for(1_000, rate) == expected


def test_a_floor_above_the_block_cap_is_the_block_cap() -> None:
    settings = MempoolSettings(max_block_txs=3, busy_blocks=2, busy_floor_txs=100)
    assert settings.busy_limit_for(0) == 6 == settings.busy_limit


def test_the_floor_is_a_positive_integer() -> None:
    with pytest.raises(MempoolSettingsError):
        MempoolSettings(busy_floor_txs=0)


def test_before_any_block_the_bound_is_the_block_cap_and_after_one_it_is_what_blocks_carried() -> None:
    chain = Chain()
    pool = Mempool(MempoolSettings(max_block_txs=100, busy_blocks=2, busy_floor_txs=1))
    assert pool.busy_limit == 200
    _commit_carrying(pool, chain, 3)
    assert pool.busy_limit == 6 == pool.stats().busy_limit
    _fill(pool, chain, 6)
    with pytest.raises(MempoolBusy) as busy:
        pool.add(_pay(chain, 6), chain.state)
    assert busy.value.code == 5605 and "retry" in busy.value.message and "at most 6" in busy.value.message
    assert len(pool) == 6 and pool.stats().refused_busy == 1  # refused, nothing admitted or lost


def test_the_bound_follows_the_most_any_recent_block_carried_then_forgets_it() -> None:
    chain = Chain()
    pool = Mempool(MempoolSettings(max_block_txs=100, busy_blocks=2, busy_floor_txs=1))
    _commit_carrying(pool, chain, 5)
    for _ in range(CARRIED_WINDOW - 1):
        _commit_carrying(pool, chain, 1)
        assert pool.busy_limit == 10  # one slow block does not shrink what the next may carry
    _commit_carrying(pool, chain, 1)
    assert pool.busy_limit == 2  # the big block left the window


def test_a_block_that_takes_everything_waiting_raises_the_bound_for_the_next() -> None:
    """Under sustained load the bound climbs to what proposers manage: each block that empties
    the pool (it held the whole bound) doubles it, until blocks stop taking everything."""
    chain = Chain()
    pool = Mempool(MempoolSettings(max_block_txs=100, busy_blocks=2, busy_floor_txs=1))
    _commit_carrying(pool, chain, 1)
    bounds = [pool.busy_limit]
    for _ in range(3):
        _commit_carrying(pool, chain, pool.busy_limit)
        bounds.append(pool.busy_limit)
    assert bounds == [2, 4, 8, 16]


def test_a_quiet_chain_still_takes_a_burst_of_the_floors_worth() -> None:
    chain = Chain()
    pool = Mempool(MempoolSettings(max_block_txs=100, busy_blocks=2, busy_floor_txs=3))
    for _ in range(CARRIED_WINDOW):
        _commit_carrying(pool, chain, 0)  # empty blocks
    assert pool.busy_limit == 6
    _fill(pool, chain, 6)
    assert len(pool) == 6
    with pytest.raises(MempoolBusy):
        pool.add(_pay(chain, 6), chain.state)


def test_the_nodes_own_transactions_are_exempt_from_the_carried_bound_too() -> None:
    chain = Chain()
    pool = Mempool(MempoolSettings(max_block_txs=100, busy_blocks=1, busy_floor_txs=1))
    _commit_carrying(pool, chain, 1)
    _fill(pool, chain, 1)
    with pytest.raises(MempoolBusy):
        pool.add(_pay(chain, 1), chain.state)
    pool.add(_pay(chain, 2), chain.state, local=True)
    assert len(pool) == 2


def test_slow_big_blocks_bound_the_wait_in_time_not_in_blocks() -> None:
    """Blocks of 1,000 every 4 s (a loaded chain: bigger blocks are slower ones) finalize 250 tx/s;
    so 1.5 s of waiting is 375 transactions, not the 2,000 two such blocks hold."""
    chain = Chain()
    pool = Mempool(MempoolSettings(max_block_txs=5_000, busy_blocks=2, busy_floor_txs=10, busy_wait_ms=1_500))
    for block in range(CARRIED_WINDOW):
        _commit_carrying(pool, chain, 1_000, at_ms=4_000 * block)
    assert pool.busy_limit == 375
    _commit_carrying(pool, chain, 1_000)  # a block without a time: blocks alone again
    assert pool.busy_limit == 2_000
