"""Each transaction is decoded once per node (issue 14's profile: a relayed duplicate cost a full
decode before it was refused, and every block's transactions were decoded again to execute)."""

from __future__ import annotations

import pytest

from node.services.mempool import DuplicateTx, Mempool
from node.services.mempool import pool as pool_module
from protocol.consensus.ledger_app import LedgerApp
from protocol.ledger import block as block_module
from protocol.ledger.params import Params
from protocol.ledger.tx import Transfer, decode_tx, sign_tx

from .consensus_support import CHAIN_ID, Chain, certificate, client_key, vkey


class CountingDecode:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, raw: bytes) -> object:
        self.calls += 1
        return decode_tx(raw)


def _transfers(count: int) -> list[bytes]:
    to = client_key(1).address.raw
    return [
        sign_tx(client_key(0), CHAIN_ID, n, Params().min_fee, Transfer(to, 1)) for n in range(1, count + 1)
    ]


def test_a_duplicate_is_refused_on_its_hash_before_it_is_decoded(monkeypatch: pytest.MonkeyPatch) -> None:
    counting = CountingDecode()
    monkeypatch.setattr(pool_module, "decode_tx", counting)
    chain, pool = Chain(), Mempool()
    [raw] = _transfers(1)
    pool.add(raw, chain.state)
    assert counting.calls == 1
    with pytest.raises(DuplicateTx):
        pool.add(raw, chain.state)
    assert counting.calls == 1


def test_the_mempool_hands_out_its_decoded_copy_only_for_the_exact_bytes() -> None:
    chain, pool = Chain(), Mempool()
    [raw] = _transfers(1)
    admitted = pool.add(raw, chain.state)
    assert pool.decoded(raw) is admitted
    assert pool.decoded(raw + b"\x00") is None
    assert Mempool().decoded(raw) is None


def _apps(pool: Mempool, chain: Chain) -> tuple[LedgerApp, LedgerApp]:
    proposer = chain.app(
        tx_source=lambda: pool.reap(100), tx_verified=pool.was_verified, tx_decoded=pool.decoded
    )
    validator = chain.app(tx_verified=pool.was_verified, tx_decoded=pool.decoded)
    return proposer, validator


def test_blocks_of_admitted_transactions_are_built_and_checked_without_decoding_them_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    chain, pool = Chain(), Mempool()
    raws = _transfers(5)
    for raw in raws:
        pool.add(raw, chain.state)
    counting = CountingDecode()
    monkeypatch.setattr(block_module, "decode_tx", counting)
    proposer, validator = _apps(pool, chain)
    block = proposer.build_block(height=1, proposer=vkey(0).address.raw, evidence=())
    assert block.txs == tuple(raws)
    validator.check_block(block)
    assert counting.calls == 0
    # The same block on a node whose mempool never saw them: decoded (and executed) all the same.
    stranger = chain.app()
    stranger.check_block(block)
    assert counting.calls == len(raws)
    state_hash = validator.commit(block, certificate(1, 0, block.hash, range(4)))
    assert state_hash == stranger.commit(block, certificate(1, 0, block.hash, range(4))) == block.state_hash
