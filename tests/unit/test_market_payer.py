"""The payer in the market: a requester that names a wallet as payer gets a contract naming it,
which the ledger escrows from the wallet's account under its grant; a quote that drops or
changes the payer is refused."""

from __future__ import annotations

import dataclasses

import pytest

from protocol.ledger.block import BlockContext, apply_block
from protocol.ledger.tx import GRANTABLE_KINDS, Grant, OpenEscrow, sign_tx
from protocol.market.capacity import CapacityTable
from protocol.market.errors import QuoteMismatch
from protocol.market.matching import match
from protocol.market.messages import ContractAccepted, ContractProposal, Quote, QuoteBody, sign_quote
from protocol.market.negotiation import NegotiationPlan, ProviderNegotiation, RequesterState
from tests.unit.market_builders import (
    BALANCE,
    CHAIN_ID,
    DEADLINE_HEIGHT,
    MIN_FEE,
    NOW_MS,
    PROVIDER,
    PROVIDER_COLLATERAL,
    PROVIDER_GPUS,
    PROVIDER_PRICE,
    REQUESTER,
    VALIDATOR,
    announce,
    deal_spec,
    funded_state,
    key,
    provider_answer,
    provider_policy,
)

WALLET = key("carol")  # funded; runs no node here


def _plan(payer: bytes) -> NegotiationPlan:
    spec = deal_spec()
    table = CapacityTable(CHAIN_ID)
    table.offer(
        announce(PROVIDER, PROVIDER_GPUS, price=PROVIDER_PRICE, collateral=PROVIDER_COLLATERAL), NOW_MS
    )
    return NegotiationPlan(
        key=key(REQUESTER),
        chain_id=CHAIN_ID,
        spec=spec,
        offers=match(spec, table.entries(), now_ms=NOW_MS, min_provider_stake=1),
        deadline_height=DEADLINE_HEIGHT,
        seed=b"fresh randomness",
        payer=payer,
    )


def test_the_contract_names_the_wallet_and_the_ledger_takes_the_wallet_money() -> None:
    requester = _plan(WALLET.address.raw).next_negotiation()
    assert requester is not None
    provider = ProviderNegotiation(provider_policy())
    request = requester.start(NOW_MS)
    assert request.payer == WALLET.address.raw
    quote = provider_answer(provider, request, NOW_MS + 5)
    assert isinstance(quote, Quote) and quote.terms.payer == WALLET.address.raw
    proposal = requester.receive(quote, NOW_MS + 10)
    assert isinstance(proposal, ContractProposal)
    accepted = provider.receive(proposal, NOW_MS + 15)
    assert isinstance(accepted, ContractAccepted)
    assert requester.receive(accepted, NOW_MS + 20) is None and requester.contract is not None
    terms = requester.contract.terms

    state = funded_state()
    requester_address, wallet = key(REQUESTER).address.raw, WALLET.address.raw
    grant = sign_tx(
        WALLET, CHAIN_ID, 1, MIN_FEE, Grant(requester_address, terms.max_cost + MIN_FEE, 50, GRANTABLE_KINDS)
    )
    apply_block(state, BlockContext(height=1, proposer=key(VALIDATOR).address.raw), [grant])
    open_escrow = sign_tx(key(REQUESTER), CHAIN_ID, 1, MIN_FEE, OpenEscrow(requester.contract))
    apply_block(state, BlockContext(height=2, proposer=key(VALIDATOR).address.raw), [open_escrow])
    assert state.escrows[terms.contract_hash()].payer == wallet
    assert state.balance(requester_address) == BALANCE  # the node pays nothing, not even the fee
    assert state.balance(wallet) == BALANCE - MIN_FEE - terms.max_cost - MIN_FEE  # grant, escrow


def test_a_quote_that_drops_or_changes_the_payer_is_refused() -> None:
    for wrong in (b"", key("someone else").address.raw):
        requester = _plan(WALLET.address.raw).next_negotiation()
        assert requester is not None
        request = requester.start(NOW_MS)
        honest = provider_answer(ProviderNegotiation(provider_policy()), request, NOW_MS + 5)
        assert isinstance(honest, Quote)
        body = QuoteBody(
            honest.request_hash, dataclasses.replace(honest.terms, payer=wrong), honest.expires_at_ms
        )
        with pytest.raises(QuoteMismatch, match=r"quote\.terms\.payer"):
            requester.receive(sign_quote(key(PROVIDER), body), NOW_MS + 10)
        assert requester.state is RequesterState.QUOTE_REQUESTED  # nothing signed
