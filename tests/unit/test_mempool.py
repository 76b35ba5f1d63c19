"""Mempool admission, dedupe, bounds, ordering and cleanup after a commit."""

from __future__ import annotations

import pytest

from node.services.mempool import DuplicateTx, Mempool, MempoolFull, NonceTaken
from protocol.crypto import PrivateKey
from protocol.encoding import decode, encode
from protocol.ledger.block import BlockContext, apply_block
from protocol.ledger.errors import BadNonce, BadSignature, FeeTooLow, MalformedTx, WrongChainId
from protocol.ledger.genesis import dev_genesis, genesis_state
from protocol.ledger.state import LedgerState
from protocol.ledger.tx import Transfer, Tx, sign_tx
from protocol.units import DCT

CHAIN = "dcent-mempool"
VALIDATOR = PrivateKey.from_label("mp-validator")
ALICE = PrivateKey.from_label("mp-alice")
BOB = PrivateKey.from_label("mp-bob")
FEE = 10_000


def _state() -> LedgerState:
    return genesis_state(
        dev_genesis(
            CHAIN,
            [(VALIDATOR.public_key.raw, 10 * DCT)],
            [(ALICE.address.raw, 100 * DCT), (BOB.address.raw, 100 * DCT)],
        )
    )


def _pay(key: PrivateKey, nonce: int, amount: int = 1, *, chain: str = CHAIN, fee: int = FEE) -> bytes:
    return sign_tx(key, chain, nonce, fee, Transfer(VALIDATOR.address.raw, amount))


def test_admits_valid_and_refuses_duplicates_and_taken_nonces() -> None:
    pool, state = Mempool(), _state()
    pool.add(_pay(ALICE, 1), state)
    with pytest.raises(DuplicateTx) as dup:
        pool.add(_pay(ALICE, 1), state)
    assert dup.value.code == 5601
    with pytest.raises(NonceTaken):
        pool.add(_pay(ALICE, 1, amount=2), state)
    assert len(pool) == 1


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (_pay(ALICE, 1, chain="other-chain"), WrongChainId),
        (_pay(ALICE, 1, fee=1), FeeTooLow),
        (_pay(ALICE, 1000), BadNonce),
        (b"\x93garbage", MalformedTx),
    ],
)
def test_refuses_bad_transactions(raw: bytes, error: type[Exception]) -> None:
    pool = Mempool()
    with pytest.raises(error):
        pool.add(raw, _state())
    assert len(pool) == 0


def test_forged_signature_is_refused() -> None:
    envelope = decode(_pay(ALICE, 1))
    assert isinstance(envelope, dict)
    envelope["signature"] = bytes(64)
    pool = Mempool()
    with pytest.raises(BadSignature):
        pool.add(encode(envelope), _state())
    assert len(pool) == 0


def test_bounded_by_count() -> None:
    pool, state = Mempool(max_txs=2), _state()
    pool.add(_pay(ALICE, 1), state)
    pool.add(_pay(ALICE, 2), state)
    with pytest.raises(MempoolFull):
        pool.add(_pay(BOB, 1), state)


def test_reap_orders_nonces_per_sender_and_interleaves_senders() -> None:
    pool, state = Mempool(), _state()
    for raw in (_pay(ALICE, 2), _pay(BOB, 1), _pay(ALICE, 1), _pay(BOB, 2), _pay(ALICE, 3)):
        pool.add(raw, state)
    order = [(tx.sender, tx.nonce) for tx in pool.reap(10)]
    a, b = ALICE.address.raw, BOB.address.raw
    assert order == [(a, 1), (b, 1), (a, 2), (b, 2), (a, 3)]
    assert len(pool.reap(2)) == 2


def test_commit_removes_included_and_stale_and_signatures_are_not_reverified() -> None:
    pool, state = Mempool(), _state()
    for nonce in (1, 2, 3):
        pool.add(_pay(ALICE, nonce), state)
    block = [tx.raw for tx in pool.reap(2)]
    answers: list[bool] = []

    def verified(tx: Tx) -> bool:
        answers.append(pool.was_verified(tx))
        return answers[-1]

    apply_block(state, BlockContext(1, VALIDATOR.address.raw), block, verified=verified)
    assert answers == [True, True]  # both signatures were checked once, at admission
    assert pool.remove_committed(state) == 2
    assert [tx.nonce for tx in pool.reap(10)] == [3]


def test_a_waiting_tx_that_can_no_longer_apply_makes_way_for_its_nonce() -> None:
    pool, state = Mempool(), _state()
    # Alice's nonce-1 transfer spends more than she has: it can never be in a block, so without
    # making way it would hold her next nonce forever.
    dead = pool.add(_pay(ALICE, 1, amount=1_000 * DCT), state)
    live = _pay(ALICE, 1, amount=5)
    pool.add(live, state)
    assert dead.hash not in pool
    assert len(pool) == 1 and pool.reap(10)[0].raw == live


def test_a_valid_waiting_tx_keeps_its_nonce() -> None:
    pool, state = Mempool(), _state()
    pool.add(_pay(ALICE, 1, amount=5), state)
    with pytest.raises(NonceTaken):
        pool.add(_pay(ALICE, 1, amount=6), state)
    assert len(pool) == 1


def test_discard_drops_one_tx_and_frees_its_nonce() -> None:
    pool, state = Mempool(), _state()
    tx = pool.add(_pay(ALICE, 1), state)
    assert pool.discard(tx.hash) and not pool.discard(tx.hash)
    assert len(pool) == 0 and pool.stats().bytes == 0
    pool.add(_pay(ALICE, 1, amount=2), state)
