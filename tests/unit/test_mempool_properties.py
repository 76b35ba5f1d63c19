"""Mempool properties under floods and arbitrary submission schedules.

- The issue 12 flood: 20,000 transactions from 313 unfunded keys (and a funded low-fee flood
  filling admission control) while a funded transfer at a higher fee arrives: it is admitted and
  in the next block's worth; nothing unfunded is kept; the bounds hold after every submission.
- Random schedules of submissions (fresh, replacing, skipping nonces; transfers and unstakes of
  random sizes and fees, from funded, poor and unfunded keys) and blocks built from ``reap``:
  after every step the pool is within its bounds, every sender's waiting transactions are
  consecutive from its committed nonce, what each account's waiting transactions commit never
  exceeds its balance (or bond) and equals the sum recomputed here from the transactions, every
  reaped block applies in full, and every reaped signature is vouched for.
"""

from __future__ import annotations

import contextlib
import functools

from hypothesis import given
from hypothesis import strategies as st

from node.services.mempool import Mempool, MempoolError, MempoolSettings, NonceGap
from node.services.mempool.spend import available
from protocol.crypto import PrivateKey
from protocol.ledger.block import BlockContext, apply_block, select_txs
from protocol.ledger.errors import InsufficientFunds, LedgerError
from protocol.ledger.genesis import dev_genesis, genesis_state
from protocol.ledger.params import Params
from protocol.ledger.state import LedgerState
from protocol.ledger.tx import Transfer, Tx, Unstake, sign_tx

CHAIN = "dcent-mempool-props"
MIN_FEE = 10
PARAMS = Params(min_fee=MIN_FEE, min_validator_stake=100, unbonding_period=3)


@functools.cache
def _key(label: str) -> PrivateKey:
    return PrivateKey.from_label(f"mempool-props-{label}")


def _state(funded: dict[str, int], stakes: dict[str, int]) -> LedgerState:
    return genesis_state(
        dev_genesis(
            CHAIN,
            [(_key(label).public_key.raw, stake) for label, stake in sorted(stakes.items())],
            [(_key(label).address.raw, balance) for label, balance in sorted(funded.items())],
            PARAMS,
        )
    )


def _check_invariants(pool: Mempool, state: LedgerState, *, local_admitted: int = 0) -> None:
    settings, stats = pool.settings, pool.stats()
    assert stats.count <= settings.max_txs and stats.bytes <= settings.max_bytes
    assert stats.count <= settings.busy_limit + local_admitted
    recomputed: dict[tuple[bytes, str], int] = {}
    for sender in {tx.sender for tx in pool.reap(stats.count)}:
        waiting = pool.waiting(sender)
        assert len(waiting) <= settings.max_per_sender
        assert sum(len(tx.raw) for tx in waiting) <= settings.max_sender_bytes
        first = state.account(sender).nonce + 1
        assert [tx.nonce for tx in waiting] == list(range(first, first + len(waiting)))
        for tx in waiting:
            balance_key = (sender, "balance")
            recomputed[balance_key] = recomputed.get(balance_key, 0) + tx.fee
            if isinstance(tx.msg, Transfer):
                recomputed[balance_key] += tx.msg.amount
            elif isinstance(tx.msg, Unstake):
                recomputed[(sender, "bonded")] = recomputed.get((sender, "bonded"), 0) + tx.msg.amount
    committed = {(account, resource.name): total for account, resource, total in pool.all_commitments()}
    assert committed == {key: total for key, total in recomputed.items() if total}
    for account, resource, total in pool.all_commitments():
        assert total <= available(state, account, resource), "waiting transactions promise more than held"


def _contents(pool: Mempool) -> tuple[object, ...]:
    stats = pool.stats()
    return (
        stats.count,
        stats.bytes,
        stats.senders,
        tuple(pool.all_commitments()),
        tuple(pool.reap(stats.count)),
    )


def _commit_block(pool: Mempool, state: LedgerState, max_txs: int) -> list[Tx]:
    """Build a block as a proposer would, apply it as a validator would, prune the pool."""
    reaped = pool.reap(max_txs)
    ctx = BlockContext(state.height + 1, _key("v0").address.raw)
    chosen = select_txs(state, ctx, reaped, max_txs, verified=pool.was_verified)
    # Nothing the pool offers fails: the block is exactly what was reaped.
    assert chosen == [tx.raw for tx in reaped]
    vouched: list[bool] = []

    def verified(tx: Tx) -> bool:
        vouched.append(pool.was_verified(tx))
        return vouched[-1]

    apply_block(state, ctx, chosen, verified=verified)
    assert all(vouched) and len(vouched) == len(chosen)
    pool.remove_committed(state, {tx.hash for tx in reaped})
    return reaped


# --- the flood of issue 12 ------------------------------------------------------------------------

FLOOD_KEYS = 313
SINK = bytes(range(20))
FLOOD_TXS = 20_000


def test_a_funded_transfer_gets_through_an_unfunded_flood_and_a_cheap_funded_one() -> None:
    max_block_txs = 100
    settings = MempoolSettings(max_txs=400, max_block_txs=max_block_txs, busy_blocks=2)
    cheap_senders = [f"cheap-{i}" for i in range(60)]
    state = _state({"rich": 10**12, **dict.fromkeys(cheap_senders, 10 * MIN_FEE + 10)}, {"v0": 10**9})
    pool = Mempool(settings)
    unfunded = [_key(f"flood-{i}") for i in range(FLOOD_KEYS)]
    refused_unfunded = 0
    rich_tx = None
    for index in range(FLOOD_TXS):
        key = unfunded[index % FLOOD_KEYS]
        nonce = index // FLOOD_KEYS + 1
        raw = sign_tx(key, CHAIN, nonce, MIN_FEE, Transfer(_key("rich").address.raw, 1))
        try:
            pool.add(raw, state)
        except (InsufficientFunds, NonceGap):  # nonce 1 cannot pay; later ones skip nonce 1
            refused_unfunded += 1
        if index % 40 == 0:
            # The funded flood: each cheap sender queues what it can pay at the minimum fee.
            label = cheap_senders[(index // 40) % len(cheap_senders)]
            address = _key(label).address.raw
            cheap = sign_tx(
                _key(label), CHAIN, pool.next_nonce(address, state), MIN_FEE, Transfer(address, 1)
            )
            with contextlib.suppress(LedgerError, MempoolError):
                pool.add(cheap, state)
        if index == FLOOD_TXS // 2:
            assert len(pool) >= settings.busy_limit, "the cheap flood filled admission control"
            raw = sign_tx(_key("rich"), CHAIN, 1, 100 * MIN_FEE, Transfer(SINK, 10**9))
            rich_tx = pool.add(raw, state)
        if index % 1000 == 0:
            _check_invariants(pool, state)
    assert refused_unfunded == FLOOD_TXS
    assert all(pool.next_nonce(key.address.raw, state) == 1 for key in unfunded)  # none kept
    assert rich_tx is not None and rich_tx.hash in pool
    assert pool.reap(max_block_txs)[0] == rich_tx
    reaped = _commit_block(pool, state, max_block_txs)
    assert rich_tx in reaped and state.balance(SINK) == 10**9
    _check_invariants(pool, state)


# --- arbitrary schedules ------------------------------------------------------------------------

FUNDED = {"a": 10_000, "b": 500, "c": 60, "d": 10**9, "e": 10**6}
STAKED = {"v0": 10**9, "v1": 1_000}
UNFUNDED = ("x", "y")
SENDERS = (*FUNDED, "v1", *UNFUNDED)

submission = st.tuples(
    st.just("submit"),
    st.sampled_from(SENDERS),
    st.sampled_from(["transfer", "transfer", "transfer", "unstake"]),
    st.integers(min_value=1, max_value=3_000),  # amount
    st.integers(min_value=MIN_FEE, max_value=8 * MIN_FEE),  # fee
    st.sampled_from([0, 0, 0, 0, -1, -2, 1]),  # nonce offset from the next one
)
block = st.tuples(st.just("block"), st.integers(min_value=1, max_value=12))


@given(st.lists(st.one_of(submission, submission, submission, block), max_size=60))
def test_any_schedule_keeps_the_pool_bounded_payable_and_its_blocks_valid(schedule: list[tuple]) -> None:  # type: ignore[type-arg]
    settings = MempoolSettings(
        max_txs=24, max_block_txs=4, busy_blocks=4, max_per_sender=5, expiry_blocks=4, replace_bump_percent=10
    )
    state = _state({**FUNDED, "v1": 1_000, "whale": 10**12}, STAKED)
    pool = Mempool(settings)
    for step in schedule:
        if step[0] == "block":
            _commit_block(pool, state, step[1])
        else:
            _, label, kind, amount, fee, offset = step
            address = _key(label).address.raw
            nonce = max(1, pool.next_nonce(address, state) + offset)
            msg = Transfer(_key("d").address.raw, amount) if kind == "transfer" else Unstake(amount)
            raw = sign_tx(_key(label), CHAIN, nonce, fee, msg)
            before = _contents(pool)
            try:
                pool.add(raw, state)
            except (LedgerError, MempoolError):
                assert _contents(pool) == before, "a refusal changed the pool"
        _check_invariants(pool, state)
    # Whatever happened, a funded transfer paying more per byte than anything waiting gets in and
    # leads the next block.
    whale = _key("whale")
    tx = pool.add(sign_tx(whale, CHAIN, 1, 1_000 * MIN_FEE, Transfer(bytes(20), 1)), state)
    assert pool.reap(settings.max_block_txs)[0] == tx
    _check_invariants(pool, state)
