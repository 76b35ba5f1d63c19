"""The ledger as the consensus application: block validity, execution, validator-set delay."""

from __future__ import annotations

import dataclasses

import pytest

from protocol.consensus.errors import (
    BlockExecutionFailed,
    CertificateSignatureError,
    InvalidBlock,
    InvalidMessage,
    UnknownHeight,
)
from protocol.consensus.ledger_app import VALIDATOR_SET_DELAY, LedgerApp
from protocol.consensus.messages import Block, CommitCertificate
from protocol.ledger.params import Params
from protocol.ledger.tx import Transfer, ValidatorCreate, prove_consensus_key, sign_tx
from protocol.units import DCT, percent

from .consensus_support import CHAIN_ID, Chain, certificate, client_key, vkey


def _next(app: LedgerApp, *, proposer: int = 0) -> Block:
    return app.build_block(
        height=app.height + 1,
        proposer=vkey(proposer).address.raw,
        evidence=(),
    )


def _commit(app: LedgerApp, block: Block, signers: range = range(4)) -> bytes:
    return app.commit(block, certificate(block.height, 0, block.hash, signers))


def _transfer(nonce: int, amount: int = 5 * DCT) -> bytes:
    return sign_tx(
        client_key(0), CHAIN_ID, nonce, Params().min_fee, Transfer(client_key(1).address.raw, amount)
    )


def test_proposer_includes_valid_mempool_transactions_and_executes_them() -> None:
    chain = Chain()
    pending = [_transfer(1), _transfer(3), _transfer(2)]  # nonce 3 waits for 2
    app = chain.app(tx_source=lambda: pending)
    block = _next(app)
    assert block.txs == (pending[0], pending[2])  # 3 cannot follow 1; select_txs keeps order
    replica = chain.app()
    replica.check_block(block)
    state_hash = _commit(replica, block)
    assert state_hash == block.state_hash == replica.state.state_hash()
    assert replica.state.account(client_key(0).address.raw).nonce == 2


def test_a_block_with_a_wrong_state_hash_is_invalid() -> None:
    chain = Chain()
    block = _next(chain.app(tx_source=lambda: [_transfer(1)]))
    app = chain.app()
    with pytest.raises(BlockExecutionFailed) as caught:
        app.check_block(dataclasses.replace(block, state_hash=bytes(32)))
    assert caught.value.code == 3011
    assert app.height == 0


def test_a_block_with_an_invalid_transaction_is_invalid() -> None:
    chain = Chain()
    good = _next(chain.app(tx_source=lambda: [_transfer(1)]))
    bad = dataclasses.replace(good, txs=(_transfer(7),))  # a nonce gap: apply_block refuses
    app = chain.app()
    with pytest.raises(BlockExecutionFailed):
        app.check_block(bad)
    before = app.state.state_hash()
    with pytest.raises(InvalidMessage):
        app.commit(bad, certificate(1, 0, bad.hash, range(4)))
    assert app.state.state_hash() == before


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"chain_id": "another-chain"}, InvalidBlock),
        ({"height": 2}, InvalidBlock),
        ({"parent_hash": bytes(32)}, InvalidBlock),
        ({"time_ms": 5}, InvalidBlock),  # block 1's time is the genesis time, 0
        ({"proposer": client_key(0).address.raw}, InvalidBlock),
    ],
)
def test_a_block_that_does_not_extend_our_chain_is_invalid(change: dict[str, object], error: type) -> None:
    chain = Chain()
    block = _next(chain.app())
    fields = {name: getattr(block, name) for name in Block.__dataclass_fields__}
    fields.update(change)
    if "height" in change:
        fields["last_commit"] = CommitCertificate(1, 0, block.parent_hash, ())
    if "parent_hash" in change:
        fields["last_commit"] = dataclasses.replace(block.last_commit, block_hash=bytes(32))
    with pytest.raises(error):
        chain.app().check_block(Block(**fields))


def test_the_parent_certificate_is_verified() -> None:
    chain = Chain()
    app = chain.app()
    builder = chain.app()
    first = _next(builder)
    _commit(app, first)
    _commit(builder, first)
    second = _next(builder)
    cert = second.last_commit
    forged = dataclasses.replace(
        cert,
        signatures=(dataclasses.replace(cert.signatures[0], signature=bytes(64)), *cert.signatures[1:]),
    )
    with pytest.raises(CertificateSignatureError):
        app.check_block(dataclasses.replace(second, last_commit=forged))
    app.check_block(second)


def test_validator_set_changes_take_effect_two_blocks_later() -> None:
    chain = Chain()
    newcomer = client_key(0)
    # A validator is registered, its node's key proven; here the node key is its own account key.
    proof = prove_consensus_key(newcomer, CHAIN_ID, newcomer.address.raw)
    create = ValidatorCreate(newcomer.public_key.raw, proof, "newcomer", 0, percent(10), percent(1), 10 * DCT)
    stake = sign_tx(newcomer, CHAIN_ID, 1, Params().min_fee, create)
    app = chain.app(tx_source=lambda: [stake])
    block = _next(app)
    assert block.txs == (stake,)
    _commit(app, block)  # block 1 bonds the newcomer
    assert newcomer.address.raw in [v.address for v in app.state.validator_set()]
    assert newcomer.address.raw not in app.validator_set(1)
    assert newcomer.address.raw not in app.validator_set(2)
    assert newcomer.address.raw in app.validator_set(1 + VALIDATOR_SET_DELAY)
    with pytest.raises(UnknownHeight):
        app.validator_set(2 + VALIDATOR_SET_DELAY)  # not decided yet


def test_an_unchanged_validator_set_is_the_same_object() -> None:
    chain = Chain()
    app = chain.app()
    for _ in range(3):
        _commit(app, _next(app))
    assert app.validator_set(5) is app.validator_set(1)


def test_old_validator_sets_are_dropped_after_the_evidence_window() -> None:
    chain = Chain(params=Params(evidence_max_age=2, unbonding_period=2))
    app = chain.app()
    for _ in range(6):
        _commit(app, _next(app))
    with pytest.raises(UnknownHeight) as caught:
        app.validator_set(1)
    assert caught.value.code == 3902
    app.validator_set(app.height - 1)
