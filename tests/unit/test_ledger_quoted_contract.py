"""Negotiated contracts quoted in a stable unit (issue 17, item 4): the provider's price is in a
registered asset, the requester signs a cap in DCT, and ``escrow_open`` fixes the DCT price from
the DCT/asset pool's time-weighted price (``protocol.ledger.quoted``). The escrow locks and pays
that fixed amount whatever the pool does afterwards; every refusal changes nothing."""

from __future__ import annotations

import dataclasses

import pytest

from protocol.contracts import ContractFormatError, ContractTerms
from protocol.economics import mul_ratio
from protocol.encoding import DecodeError
from protocol.ledger.availability import QUOTE_DEPTH, dct_price, quote_price
from protocol.ledger.liquidity_errors import NoQuotePrice, PoolTooShallow, QuoteAboveCap, UnknownAsset
from protocol.ledger.tx import EscrowFinalize, Grant, OpenEscrow, PoolSwap

from .ledger_helpers import (
    TEST_PARAMS,
    Chain,
    addr,
    assert_block_rejected,
    claim_msg,
    make_terms,
    settle_msg,
    sign_contract,
)
from .liquidity_helpers import SYMBOL, asset_chain, pool_chain

WINDOW = 10
PARAMS = dataclasses.replace(TEST_PARAMS, twap_window=WINDOW)
#: 20 TUSD base units per GPU-second: 10 DCT base units at the test pool's 2 TUSD per DCT.
QUOTED = 20
FIXED = 10
FEE = PARAMS.min_fee


def quoted_terms(
    chain: Chain,
    *,
    cap: int = 15,
    quoted: int = QUOTED,
    symbol: str = SYMBOL,
    max_gpu_seconds: int = 100,
    payer: str | None = None,
    salt: bytes = b"quoted-1",
) -> ContractTerms:
    """Alice buys from bob at ``quoted`` ``symbol`` base units per GPU-second, paying at most
    ``cap`` DCT base units per GPU-second."""
    terms = make_terms(
        "alice",
        "bob",
        price=cap,
        max_gpu_seconds=max_gpu_seconds,
        deadline=chain.height + 100,
        salt=salt,
        payer=payer,
    )
    return dataclasses.replace(terms, quote=symbol, quote_price_per_gpu_second=quoted)


def priced_chain() -> Chain:
    """A pool at 2 TUSD base units per DCT base unit whose average covers a whole window."""
    chain = pool_chain(params=PARAMS)
    chain.advance_to(chain.height + WINDOW)
    return chain


def open_tx(chain: Chain, terms: ContractTerms, sender: str = "alice") -> bytes:
    return chain.tx(sender, OpenEscrow(sign_contract(terms)))


# --- the contract ---------------------------------------------------------------------------------
def test_a_contract_priced_in_dct_keeps_its_encoding_and_hash() -> None:
    terms = make_terms()
    wire = terms.to_wire()
    assert "quote" not in wire and "quote_price_per_gpu_second" not in wire
    assert ContractTerms.decode(terms.encode()) == terms
    quoted = dataclasses.replace(terms, quote=SYMBOL, quote_price_per_gpu_second=QUOTED)
    assert ContractTerms.decode(quoted.encode()) == quoted
    assert quoted.contract_hash() != terms.contract_hash()  # the quote is signed


def test_a_quote_field_sent_at_its_default_is_not_canonical() -> None:
    wire = make_terms().to_wire()
    wire["quote"] = ""
    with pytest.raises(DecodeError, match="quote"):
        ContractTerms.from_wire(wire)


@pytest.mark.parametrize(
    ("quote", "quoted", "cap", "field"),
    [
        (SYMBOL, 0, 5, "quote_price_per_gpu_second"),
        ("", 5, 5, "contract.quote"),
        ("tusd", 5, 5, "contract.quote"),
        ("DCT", 5, 5, "contract.quote"),
        ("1USD", 5, 5, "contract.quote"),
        (SYMBOL, 5, 0, "price_per_gpu_second"),
        (SYMBOL, -1, 5, "quote_price_per_gpu_second"),
    ],
)
def test_a_malformed_quote_is_refused_when_built(quote: str, quoted: int, cap: int, field: str) -> None:
    with pytest.raises(ContractFormatError, match=field) as caught:
        dataclasses.replace(make_terms(price=cap), quote=quote, quote_price_per_gpu_second=quoted)
    assert caught.value.code == 4001


# --- escrow at the time-weighted price ------------------------------------------------------------
def test_the_escrow_fixes_the_dct_price_from_the_pools_average_and_locks_it() -> None:
    chain = priced_chain()
    terms = quoted_terms(chain)
    alice = chain.balance("alice")
    expected = dct_price(QUOTED, quote_price(chain.state, SYMBOL, chain.height + 1))
    chain.block([open_tx(chain, terms)])
    escrow = chain.state.escrows[terms.contract_hash()]
    assert expected == FIXED
    assert (escrow.price_per_gpu_second, escrow.max_cost) == (FIXED, FIXED * 100)
    assert terms.max_cost == 15 * 100  # the cap's figure is only an upper bound
    assert chain.balance("alice") == alice - FIXED * 100 - FEE
    assert chain.state.vars["total_escrowed"] == FIXED * 100 + terms.collateral
    chain.state.check_invariants()


def test_a_swap_after_the_escrow_does_not_change_what_settles() -> None:
    chain = priced_chain()
    terms = quoted_terms(chain)
    chain.block([open_tx(chain, terms)])
    # DCT halves in TUSD (dave sells DCT), and the average follows over a whole window.
    chain.block([chain.tx("dave", PoolSwap(SYMBOL, True, 400_000, 1, chain.height + 5))])
    chain.advance_to(chain.height + WINDOW)
    assert dct_price(QUOTED, quote_price(chain.state, SYMBOL, chain.height + 1)) > FIXED
    alice, bob = chain.balance("alice"), chain.balance("bob")
    chain.block([chain.tx("alice", settle_msg(terms, 60))])
    pay = 60 * FIXED
    fee_share = mul_ratio(pay, PARAMS.protocol_fee_share)
    assert chain.balance("bob") == bob + pay - fee_share + terms.collateral
    assert chain.balance("alice") == alice - FEE + FIXED * 100 - pay
    chain.state.check_invariants()


def test_a_price_pushed_in_the_escrows_own_block_does_not_move_it() -> None:
    chain = priced_chain()
    terms = quoted_terms(chain, cap=FIXED)
    height = chain.height + 1
    # dave sells DCT first in the same block: the spot DCT price in TUSD drops by more than half.
    chain.block(
        [
            chain.tx("dave", PoolSwap(SYMBOL, True, 1_000_000, 1, height)),
            open_tx(chain, terms),
        ]
    )
    assert chain.state.escrows[terms.contract_hash()].price_per_gpu_second == FIXED


def test_an_escrow_above_the_requesters_cap_is_refused() -> None:
    chain = priced_chain()
    terms = quoted_terms(chain, cap=FIXED - 1)
    assert_block_rejected(chain, [open_tx(chain, terms)], QuoteAboveCap, 2338)
    chain.block([open_tx(chain, quoted_terms(chain, cap=FIXED, salt=b"at-cap"))])


def test_the_cap_holds_after_the_pool_moved_against_the_requester() -> None:
    chain = priced_chain()
    terms = quoted_terms(chain, cap=FIXED)
    chain.block([chain.tx("dave", PoolSwap(SYMBOL, True, 400_000, 1, chain.height + 5))])
    chain.advance_to(chain.height + WINDOW)
    assert_block_rejected(chain, [open_tx(chain, terms)], QuoteAboveCap, 2338)


def test_an_escrow_quoted_in_an_asset_without_a_pool_is_refused() -> None:
    chain = asset_chain(params=PARAMS)
    chain.advance_to(chain.height + WINDOW)
    assert_block_rejected(chain, [open_tx(chain, quoted_terms(chain))], NoQuotePrice, 2336)


def test_an_escrow_quoted_in_an_unregistered_asset_is_refused() -> None:
    chain = priced_chain()
    assert_block_rejected(chain, [open_tx(chain, quoted_terms(chain, symbol="EUR"))], UnknownAsset, 2300)


def test_an_escrow_is_refused_while_the_pools_average_is_younger_than_a_window() -> None:
    chain = pool_chain(params=PARAMS)
    assert_block_rejected(chain, [open_tx(chain, quoted_terms(chain))], NoQuotePrice, 2336)


def test_an_escrow_is_refused_when_the_pool_is_too_shallow_for_it() -> None:
    chain = priced_chain()
    pool_dct = chain.state.pools[SYMBOL].dct
    most = pool_dct // (QUOTE_DEPTH * FIXED)
    deep = quoted_terms(chain, max_gpu_seconds=most + 1)
    assert_block_rejected(chain, [open_tx(chain, deep)], PoolTooShallow, 2337)
    chain.block([open_tx(chain, quoted_terms(chain, max_gpu_seconds=most, salt=b"just-deep"))])


def test_a_payers_grant_is_charged_the_fixed_amount_not_the_cap() -> None:
    chain = priced_chain()
    chain.block([chain.tx("dave", Grant(addr("alice"), 2_000, chain.height + 50, ("escrow_open",)))])
    terms = quoted_terms(chain, cap=19, payer="dave")  # the cap's 1900 + fee would fit too
    dave = chain.balance("dave")
    chain.block([open_tx(chain, terms)])
    grant = chain.state.grants[addr("dave")]
    assert grant[0].spent == FIXED * 100 + FEE
    assert chain.balance("dave") == dave - FIXED * 100 - FEE


def test_a_contract_priced_in_dct_escrows_its_own_price_with_pools_around() -> None:
    chain = priced_chain()
    terms = make_terms(price=7, deadline=chain.height + 100)
    chain.block([chain.tx("alice", OpenEscrow(sign_contract(terms)))])
    escrow = chain.state.escrows[terms.contract_hash()]
    assert (escrow.price_per_gpu_second, escrow.max_cost) == (7, 700)


def test_a_finalized_claim_after_the_pool_moved_pays_the_fixed_price() -> None:
    chain = priced_chain()
    terms = quoted_terms(chain)
    chain.block([open_tx(chain, terms)])
    chain.block([chain.tx("dave", PoolSwap(SYMBOL, False, 2_000_000, 1, chain.height + 5))])
    chain.advance_to(chain.height + WINDOW)
    assert dct_price(QUOTED, quote_price(chain.state, SYMBOL, chain.height + 1)) < FIXED
    chain.block([chain.tx("bob", claim_msg(terms, 40))])
    chain.advance_to(chain.height + PARAMS.dispute_window_blocks)
    alice, bob = chain.balance("alice"), chain.balance("bob")
    chain.block([chain.tx("bob", EscrowFinalize(terms.contract_hash()))])
    pay = 40 * FIXED
    assert (
        chain.balance("bob") == bob - FEE + pay - mul_ratio(pay, PARAMS.protocol_fee_share) + terms.collateral
    )
    assert chain.balance("alice") == alice + FIXED * 100 - pay
