"""The checker's model knows grants and payers: a wallet's grant lets a requester escrow from the
wallet's account and the refund returns to the wallet, exactly as the ledger does it; an escrow
beyond what the grant has left, or without one, is reported if a replica ever commits it."""

from __future__ import annotations

import copy
import dataclasses

from protocol.consensus.ledger_app import LedgerApp
from protocol.consensus.messages import Block
from protocol.contracts import ContractTerms, SignedContract
from protocol.crypto import PrivateKey
from protocol.ledger.tx import GRANTABLE_KINDS, Grant, Msg, OpenEscrow, Refund, Transfer, sign_tx
from protocol.sim.model import LedgerModel, Reported
from protocol.units import DCT

from .consensus_support import CHAIN_ID, Chain, certificate, client_key, vkey

FEE = 10_000
REQUESTER, PROVIDER = client_key(0), client_key(1)
WALLET = PrivateKey.from_label("sim-model/wallet")


def _contract(deadline: int, salt: bytes = b"s") -> SignedContract:
    terms = ContractTerms(
        chain_id=CHAIN_ID,
        requester=REQUESTER.public_key.raw,
        provider=PROVIDER.public_key.raw,
        job_hash=bytes(32),
        gpu_uuids=("GPU-SIM-model",),
        price_per_gpu_second=1_000,
        max_gpu_seconds=100,
        collateral=500,
        deadline_height=deadline,
        salt=salt,
        payer=WALLET.address.raw,
    )
    return SignedContract(terms, terms.sign(REQUESTER), terms.sign(PROVIDER))


def _tx(key: PrivateKey, nonce: int, msg: Msg) -> bytes:
    return sign_tx(key, CHAIN_ID, nonce, FEE, msg)


def _commit(app: LedgerApp, model: LedgerModel, pending: list[bytes], txs: list[bytes]) -> Block:
    pending[:] = txs
    block = app.build_block(height=app.height + 1, proposer=vkey(0).address.raw, evidence=())
    assert len(block.txs) == len(txs), "every transaction applies"
    app.commit(block, certificate(block.height, 0, block.hash, range(4)))
    result = app.last_result
    assert result is not None
    reported = Reported(result.minted, result.validator_rewards, result.provider_rewards, result.burned)
    assert model.apply(block, reported) == []
    assert model.differences(app.state) == []
    return block


def test_the_model_follows_a_grant_paid_escrow_and_its_refund_to_the_wallet() -> None:
    chain = Chain()
    pending: list[bytes] = []
    app = chain.app(tx_source=lambda: list(pending))
    model = LedgerModel(chain.genesis)
    contract = _contract(deadline=5)
    _commit(app, model, pending, [_tx(PROVIDER, 1, Transfer(WALLET.address.raw, 10 * DCT))])
    _commit(app, model, pending, [_tx(WALLET, 1, Grant(REQUESTER.address.raw, DCT, 50, GRANTABLE_KINDS))])
    requester_before = app.state.balance(REQUESTER.address.raw)
    _commit(app, model, pending, [_tx(REQUESTER, 1, OpenEscrow(contract))])
    assert app.state.balance(REQUESTER.address.raw) == requester_before  # the wallet paid the fee
    while app.height <= 5:
        _commit(app, model, pending, [])
    _commit(app, model, pending, [_tx(WALLET, 2, Refund(contract.terms.contract_hash()))])
    assert app.state.balance(WALLET.address.raw) == 10 * DCT - 3 * FEE  # grant, escrow, refund fees


def test_the_model_reports_an_escrow_beyond_or_without_the_grant() -> None:
    chain = Chain()
    pending: list[bytes] = []
    app = chain.app(tx_source=lambda: list(pending))
    model = LedgerModel(chain.genesis)
    _commit(app, model, pending, [_tx(PROVIDER, 1, Transfer(WALLET.address.raw, 10 * DCT))])
    small = _tx(WALLET, 1, Grant(REQUESTER.address.raw, 1_000, 50, GRANTABLE_KINDS))
    for txs, reason in (
        ((small, _tx(REQUESTER, 1, OpenEscrow(_contract(9)))), "beyond what the payer's grant has left"),
        ((_tx(REQUESTER, 1, OpenEscrow(_contract(9))),), "without its live grant"),
    ):
        forged = dataclasses.replace(
            app.build_block(height=2, proposer=vkey(0).address.raw, evidence=()), txs=txs
        )
        problems = copy.deepcopy(model).apply(forged, Reported(0, (), ()))
        assert any(reason in problem for problem in problems), problems
