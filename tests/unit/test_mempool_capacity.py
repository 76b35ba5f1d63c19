"""Mempool bounds and order: admission control ("busy") and the hard bounds ("full"), eviction of
the cheapest senders' last transactions, replace-by-fee, expiry by height, and the proposer's
fee-per-byte reaping."""

from __future__ import annotations

import pytest

from node.services.mempool import (
    Mempool,
    MempoolBusy,
    MempoolFull,
    MempoolSettings,
    NonceTaken,
)
from node.services.mempool.pool import fee_rate
from protocol.ledger.tx import MAX_TX_BYTES, OpenEscrow, Transfer, Tx
from tests.unit.ledger_helpers import FEE, Chain, addr, make_terms, sign_contract

BOB = addr("bob")
USERS = ("alice", "bob", "carol", "dave")


def _pay(chain: Chain, label: str, *, fee: int = FEE, amount: int = 1, nonce: int | None = None) -> bytes:
    return chain.tx(label, Transfer(BOB, amount), fee=fee, nonce=nonce)


def _pool(**settings: int) -> Mempool:
    return Mempool(MempoolSettings(**settings))


def test_busy_refuses_beyond_the_next_blocks_worth_with_its_own_code() -> None:
    chain, pool = Chain(), _pool(max_block_txs=2, busy_blocks=2)
    assert pool.busy_limit == 4
    for label in USERS:
        pool.add(_pay(chain, label), chain.state)
    with pytest.raises(MempoolBusy) as busy:
        pool.add(_pay(chain, "val-0"), chain.state)
    assert busy.value.code == 5605 and "retry" in busy.value.message
    assert len(pool) == 4 and pool.stats().refused_busy == 1


def test_a_higher_fee_per_byte_gets_in_when_busy_by_evicting_the_newest_cheapest() -> None:
    chain, pool = Chain(), _pool(max_block_txs=2, busy_blocks=2)
    admitted = [pool.add(_pay(chain, label), chain.state) for label in USERS]
    rich = pool.add(_pay(chain, "val-0", fee=100 * FEE), chain.state)
    assert len(pool) == 4
    assert admitted[-1].hash not in pool  # the newest of the equally cheap went
    assert all(tx.hash in pool for tx in admitted[:-1])
    assert pool.reap(2)[0] == rich  # and the rich one leads the next block
    assert pool.was_verified(admitted[-1])  # a peer's block may still carry the evicted one
    assert pool.stats().evicted == 1


def test_local_transactions_are_exempt_from_admission_control_not_from_the_hard_bound() -> None:
    chain, pool = Chain(), _pool(max_block_txs=1, busy_blocks=2, max_txs=3)
    pool.add(_pay(chain, "alice"), chain.state)
    pool.add(_pay(chain, "bob"), chain.state)
    with pytest.raises(MempoolBusy):
        pool.add(_pay(chain, "val-0"), chain.state)
    pool.add(_pay(chain, "val-0", nonce=1), chain.state, local=True)
    with pytest.raises(MempoolFull) as full:
        pool.add(_pay(chain, "val-1"), chain.state, local=True)
    assert full.value.code == 5602 and len(pool) == 3


def test_full_by_count_refuses_an_equal_fee_and_evicts_for_a_higher_one() -> None:
    chain, pool = Chain(), _pool(max_txs=2)
    cheap = pool.add(_pay(chain, "alice"), chain.state)
    pool.add(_pay(chain, "bob", fee=3 * FEE), chain.state)
    with pytest.raises(MempoolFull):
        pool.add(_pay(chain, "carol"), chain.state)
    pool.add(_pay(chain, "carol", fee=2 * FEE, nonce=1), chain.state)
    assert cheap.hash not in pool and len(pool) == 2


def test_full_by_bytes_refuses_then_evicts_cheaper_ones_to_make_room() -> None:
    chain, pool = Chain(), _pool(max_bytes=MAX_TX_BYTES)
    labels = ("alice", "bob", "carol", "dave", "val-0", "val-1", "val-2")
    with pytest.raises(MempoolFull) as full:
        for count in range(MAX_TX_BYTES):
            label = labels[count % len(labels)]
            pool.add(_pay(chain, label, nonce=pool.next_nonce(addr(label), chain.state)), chain.state)
    assert "bytes" in full.value.message and pool.stats().bytes <= MAX_TX_BYTES
    count = len(pool)
    rich = pool.add(
        _pay(chain, "alice", fee=2 * FEE, nonce=pool.next_nonce(addr("alice"), chain.state)), chain.state
    )
    assert rich.hash in pool and len(pool) == count  # one cheaper transaction made room
    assert pool.stats().bytes <= MAX_TX_BYTES and pool.stats().evicted == 1


def test_eviction_takes_a_senders_last_transaction_never_a_lower_nonce() -> None:
    chain, pool = Chain(), _pool(max_txs=3)
    low = pool.add(_pay(chain, "alice", fee=FEE), chain.state)  # the cheapest, but not a last one
    high = pool.add(_pay(chain, "alice", fee=5 * FEE), chain.state)
    bob = pool.add(_pay(chain, "bob", fee=2 * FEE), chain.state)
    pool.add(_pay(chain, "carol", fee=3 * FEE), chain.state)
    assert low.hash in pool and high.hash in pool and bob.hash not in pool


def test_eviction_never_takes_the_new_transactions_own_sender() -> None:
    chain, pool = Chain(), _pool(max_txs=2)
    pool.add(_pay(chain, "alice"), chain.state)
    pool.add(_pay(chain, "alice"), chain.state)
    with pytest.raises(MempoolFull):
        pool.add(_pay(chain, "alice", fee=10 * FEE), chain.state)
    assert [tx.nonce for tx in pool.waiting(addr("alice"))] == [1, 2]


def test_replace_by_fee_needs_the_bump_and_keeps_the_old_one_vouched_for() -> None:
    chain, pool = Chain(), _pool(replace_bump_percent=10)
    old = pool.add(_pay(chain, "alice", fee=1_000, nonce=1), chain.state)
    with pytest.raises(NonceTaken) as taken:
        pool.add(_pay(chain, "alice", fee=1_099, nonce=1), chain.state)
    assert taken.value.code == 5603 and "at least" in taken.value.message
    new = pool.add(_pay(chain, "alice", fee=1_100, nonce=1), chain.state)
    assert old.hash not in pool and pool.waiting(addr("alice")) == [new]
    assert pool.was_verified(old) and pool.stats().replaced == 1
    assert pool.committed_spend(addr("alice")) == 1_100 + 1


def test_replace_by_fee_of_a_middle_transaction_keeps_the_later_ones() -> None:
    chain, pool = Chain(), Mempool()
    first = pool.add(_pay(chain, "alice", nonce=1), chain.state)
    pool.add(_pay(chain, "alice", nonce=2), chain.state)
    third = pool.add(_pay(chain, "alice", nonce=3), chain.state)
    faster = pool.add(_pay(chain, "alice", fee=2 * FEE, nonce=2), chain.state)
    assert pool.waiting(addr("alice")) == [first, faster, third]


def test_a_replacement_may_not_pay_less_per_byte() -> None:
    chain, pool = Chain(), Mempool()
    transfer = pool.add(_pay(chain, "alice", fee=1_000, nonce=1), chain.state)
    terms = make_terms("alice", "bob", deadline=50)
    escrow = chain.tx("alice", OpenEscrow(sign_contract(terms)), fee=1_100, nonce=1)
    assert fee_rate(1_100, len(escrow)) < fee_rate(1_000, len(transfer.raw))  # more fee, more bytes
    with pytest.raises(NonceTaken):
        pool.add(escrow, chain.state)
    pool.add(chain.tx("alice", OpenEscrow(sign_contract(terms)), fee=10_000, nonce=1), chain.state)
    assert transfer.hash not in pool and pool.committed_spend(addr("bob")) == terms.collateral


def test_expiry_drops_old_transactions_with_their_senders_later_ones() -> None:
    chain, pool = Chain(), _pool(expiry_blocks=3)
    old = pool.add(_pay(chain, "alice"), chain.state)  # admitted at height 0
    chain.advance_to(2)
    chain.forget_reserved_nonces()
    later = pool.add(_pay(chain, "alice", nonce=2), chain.state)  # admitted at height 2
    other = pool.add(_pay(chain, "bob"), chain.state)
    chain.advance_to(3)
    assert pool.remove_committed(chain.state) == 0  # 0 + 3 is not yet past height 3
    chain.advance_to(4)
    assert pool.remove_committed(chain.state) == 2
    assert old.hash not in pool and later.hash not in pool and other.hash in pool
    assert pool.stats().expired == 2
    chain.advance_to(6)
    assert pool.remove_committed(chain.state) == 1 and len(pool) == 0


def test_reap_orders_by_fee_per_byte_then_arrival_and_keeps_each_senders_nonce_order() -> None:
    chain, pool = Chain(), Mempool()
    a1 = pool.add(_pay(chain, "alice", fee=FEE), chain.state)
    a2 = pool.add(_pay(chain, "alice", fee=9 * FEE), chain.state)  # rich, but behind a1
    b1 = pool.add(_pay(chain, "bob", fee=5 * FEE), chain.state)
    c1 = pool.add(_pay(chain, "carol", fee=FEE), chain.state)
    d1 = pool.add(_pay(chain, "dave", fee=5 * FEE), chain.state)
    order = pool.reap(10)
    assert order == [b1, d1, a1, a2, c1]
    assert pool.reap(2) == [b1, d1]
    assert pool.reap(10) == order  # deterministic, and reaping takes nothing out


def test_reap_returns_a_block_that_applies_in_full() -> None:
    chain, pool = Chain(), Mempool()
    for label in USERS:
        for fee in (FEE, 3 * FEE, 2 * FEE):
            pool.add(_pay(chain, label, fee=fee, amount=1_000), chain.state)
    reaped: list[Tx] = pool.reap(100)
    assert len(reaped) == 12
    chain.block([tx.raw for tx in reaped])
    assert pool.remove_committed(chain.state, {tx.hash for tx in reaped}) == 12 and len(pool) == 0
