"""The checker's own ledger model: it refuses what the rules refuse, and notices a replica whose
money differs from what the rules say, wherever the difference hides."""

from __future__ import annotations

import dataclasses

from protocol.consensus.messages import Block
from protocol.ledger.state import Account
from protocol.ledger.tx import Transfer, sign_tx
from protocol.sim.model import LedgerModel, Reported

from .consensus_support import CHAIN_ID, CLIENT_BALANCE, Chain, certificate, client_key, vkey

FEE = 10_000


def _block(chain: Chain, txs: tuple[bytes, ...]) -> Block:
    block = chain.app().build_block(height=1, proposer=vkey(0).address.raw, evidence=())
    return dataclasses.replace(block, txs=txs)


def _transfer(nonce: int, amount: int, *, fee: int = FEE, chain_id: str = CHAIN_ID) -> bytes:
    return sign_tx(client_key(0), chain_id, nonce, fee, Transfer(client_key(1).address.raw, amount))


def test_the_model_refuses_what_the_rules_refuse() -> None:
    chain = Chain()
    for raw, reason in (
        (_transfer(1, CLIENT_BALANCE), "from a balance"),  # amount + fee > balance
        (_transfer(2, 5), "nonce 2"),
        (_transfer(1, 5, fee=FEE - 1), "below the minimum"),
        (_transfer(1, 5, chain_id="another-chain"), "for chain"),
        (_transfer(1, 5)[:-1] + b"\x00", "bad signature"),
        (b"\x00" + _transfer(1, 5), "undecodable"),
    ):
        problems = LedgerModel(chain.genesis).apply(_block(chain, (raw,)), Reported(0, (), ()))
        assert len(problems) == 1 and reason in problems[0], (reason, problems)


def test_a_replica_that_holds_other_money_than_the_rules_say_is_reported() -> None:
    chain = Chain()
    app = chain.app(tx_source=lambda: [_transfer(1, 5)])
    block = app.build_block(height=1, proposer=vkey(0).address.raw, evidence=())
    assert len(block.txs) == 1
    app.commit(block, certificate(1, 0, block.hash, range(4)))
    model = LedgerModel(chain.genesis)
    result = app.last_result
    assert result is not None
    assert (
        model.apply(
            block, Reported(result.minted, result.validator_rewards, result.provider_rewards, result.burned)
        )
        == []
    )
    assert model.differences(app.state) == []

    sender = client_key(0).address.raw
    account = app.state.account(sender)
    app.state.accounts.set(sender, Account(account.balance + FEE, account.nonce))  # a fee refunded
    found = model.differences(app.state)
    assert any(sender.hex()[:8] in line for line in found) and any("supply" in line for line in found)
