"""Standing offers quoted in a stable unit (issue 17, item 4): the price is in a registered asset,
each take fixes its DCT amount from the DCT/asset pool's time-weighted price, and that amount is
what the escrow locks and pays, whatever DCT's price does afterwards."""

from __future__ import annotations

import dataclasses

from hypothesis import given
from hypothesis import strategies as st

from protocol.contracts import OUTCOME_COMPLETED, UsageReceipt
from protocol.economics import mul_ratio
from protocol.ledger.availability import QUOTE_DEPTH, dct_price, offer_dct_price, quote_price
from protocol.ledger.liquidity_errors import (
    NoQuotePrice,
    PoolTooShallow,
    PriceTooHigh,
    SlippageExceeded,
    UnknownAsset,
)
from protocol.ledger.pool import pool_twap
from protocol.ledger.snapshot import decode_snapshot, encode_snapshot
from protocol.ledger.tx import OfferAccept, OfferStand, OfferTake, PoolSwap, Settle, decode_tx
from protocol.units import DCT, MAX_AMOUNT

from .ledger_helpers import CHAIN_ID, TEST_PARAMS, Chain, assert_block_rejected, key
from .liquidity_helpers import SYMBOL, pool_chain

WINDOW = 10
#: A take window long enough to move DCT's price for a whole averaging window before accepting.
PARAMS = dataclasses.replace(TEST_PARAMS, twap_window=WINDOW, challenge_window=3 * WINDOW)
NODE = key("bob-node")
#: The test pool starts at 2 TUSD base units per DCT base unit: 2 * 10^9 per DCT.
START_PRICE = 2 * DCT
#: 20 TUSD base units per GPU-second: 10 DCT base units at the starting price.
QUOTED = 20


def stand(quote: str = SYMBOL, price: int = QUOTED, gpus: int = 4) -> OfferStand:
    return OfferStand(NODE.public_key.raw, "H100", gpus, price, 200, gpus * 1_000, quote)


def priced_chain() -> Chain:
    """A pool whose time-weighted price covers a whole window."""
    chain = pool_chain(params=PARAMS)
    chain.advance_to(chain.height + WINDOW)
    return chain


def quoted_offer(chain: Chain, price: int = QUOTED) -> bytes:
    raw = chain.tx("bob", stand(price=price))
    chain.block([raw])
    return decode_tx(raw).hash


# --- the conversion -----------------------------------------------------------------------------
@given(st.integers(1, MAX_AMOUNT), st.integers(1, MAX_AMOUNT))
def test_the_dct_price_is_the_quoted_value_rounded_up_by_less_than_one_base_unit(
    quoted: int, twap: int
) -> None:
    price = dct_price(quoted, twap)
    assert price >= 1
    assert price * twap >= quoted * DCT  # the provider gets at least what it quoted
    assert price == 1 or (price - 1) * twap < quoted * DCT  # and the requester pays < 1 unit more


def test_dct_price_at_the_starting_pool_price() -> None:
    assert dct_price(QUOTED, START_PRICE) == 10
    assert dct_price(21, START_PRICE) == 11  # 10.5 rounds up


# --- posting --------------------------------------------------------------------------------------
def test_a_quoted_offer_is_refused_until_the_pool_has_a_price_over_a_whole_window() -> None:
    chain = pool_chain(params=PARAMS)
    created = chain.height
    assert_block_rejected(chain, [chain.tx("bob", stand())], NoQuotePrice, 2336)
    chain.advance_to(created + WINDOW - 2)
    # Block created + WINDOW - 1: the pool has priced only WINDOW - 1 blocks' starts.
    assert_block_rejected(chain, [chain.tx("bob", stand())], NoQuotePrice, 2336)
    chain.advance_to(created + WINDOW - 1)
    chain.block([chain.tx("bob", stand())])  # block created + WINDOW: a whole window priced
    assert len(chain.state.offers) == 1


def test_a_quote_in_an_unregistered_asset_is_refused() -> None:
    chain = priced_chain()
    assert_block_rejected(chain, [chain.tx("bob", stand(quote="EUR"))], UnknownAsset, 2300)


def test_the_price_cap_applies_to_the_dct_price_at_posting() -> None:
    chain = priced_chain()
    cap = PARAMS.standing_max_price  # 50 DCT base units = 100 TUSD base units now
    assert_block_rejected(chain, [chain.tx("bob", stand(price=2 * cap + 1))], PriceTooHigh, 2333)
    chain.block([chain.tx("bob", stand(price=2 * cap))])


# --- taking ---------------------------------------------------------------------------------------
def test_a_take_locks_the_dct_amount_of_the_time_weighted_price_and_the_escrow_pays_it() -> None:
    chain = priced_chain()
    offer = quoted_offer(chain)
    alice = chain.balance("alice")
    raw = chain.tx("alice", OfferTake(offer, 2, 100))
    chain.block([raw])
    take_id = decode_tx(raw).hash
    fixed = chain.state.takes[offer].price
    assert fixed == 10
    assert chain.balance("alice") == alice - 2 * 100 * 10 - PARAMS.min_fee
    # DCT's price doubles (the pool's TUSD per DCT): the take's amount does not move.
    chain.block([chain.tx("dave", PoolSwap(SYMBOL, False, 1_000_000, 1, chain.height + 5))])
    chain.advance_to(chain.height + WINDOW)
    assert offer_dct_price(chain.state, chain.state.offers[offer], chain.height + 1) < fixed
    chain.block([chain.tx("bob", OfferAccept(offer))])
    escrow = chain.state.escrows[take_id]
    assert (escrow.price_per_gpu_second, escrow.max_cost) == (fixed, 2_000)
    receipt = UsageReceipt(CHAIN_ID, take_id, OUTCOME_COMPLETED, 150_000, 0, bytes(32), "")
    bob = chain.balance("bob")
    chain.block([chain.tx("alice", Settle(receipt, receipt.sign(key("bob")), receipt.sign(key("alice"))))])
    pay = 150 * fixed
    assert chain.balance("bob") - bob == pay - mul_ratio(pay, PARAMS.protocol_fee_share) + escrow.collateral


def test_a_price_pushed_in_the_takes_own_block_does_not_change_what_it_locks() -> None:
    chain = priced_chain()
    offer = quoted_offer(chain)
    height = chain.height + 1
    expected = dct_price(QUOTED, quote_price(chain.state, SYMBOL, height))
    # dave sells a lot of TUSD first in the same block (DCT gets dearer, the spot DCT price falls).
    chain.block(
        [
            chain.tx("dave", PoolSwap(SYMBOL, False, 3_000_000, 1, height)),
            chain.tx("alice", OfferTake(offer, 1, 10)),
        ]
    )
    assert chain.state.takes[offer].price == expected == 10


def test_a_take_is_refused_when_the_pool_is_too_shallow_for_it() -> None:
    chain = priced_chain()
    offer = quoted_offer(chain)
    pool_dct = chain.state.pools[SYMBOL].dct
    # 4 GPUs x seconds x 10 base units: just over a tenth of the pool's DCT.
    seconds = pool_dct // (QUOTE_DEPTH * 4 * 10) + 1
    assert_block_rejected(chain, [chain.tx("alice", OfferTake(offer, 4, seconds))], PoolTooShallow, 2337)
    chain.block([chain.tx("alice", OfferTake(offer, 4, seconds - 1))])
    assert chain.state.takes[offer].max_cost == 4 * (seconds - 1) * 10


def test_a_take_is_refused_while_governance_widened_the_window_past_the_pools_history() -> None:
    chain = priced_chain()
    offer = quoted_offer(chain)
    chain.state.set_params(dataclasses.replace(chain.state.params, twap_window=10 * WINDOW))
    assert_block_rejected(chain, [chain.tx("alice", OfferTake(offer, 1, 10))], NoQuotePrice, 2336)


def test_a_take_with_a_price_limit_below_the_fixed_price_is_refused() -> None:
    chain = priced_chain()
    offer = quoted_offer(chain)
    assert_block_rejected(
        chain, [chain.tx("alice", OfferTake(offer, 1, 10, max_price=9))], SlippageExceeded, 2305
    )
    chain.block([chain.tx("alice", OfferTake(offer, 1, 10, max_price=10))])
    assert chain.state.takes[offer].price == 10


def test_a_dct_offer_is_unchanged_by_pools() -> None:
    chain = priced_chain()
    raw = chain.tx("bob", stand(quote="", price=7))
    chain.block([raw])
    offer = decode_tx(raw).hash
    chain.block([chain.tx("alice", OfferTake(offer, 1, 10))])
    assert chain.state.takes[offer].price == 7
    assert chain.state.offers[offer].quote == ""


def test_quoted_offers_and_fixed_take_prices_round_trip_through_a_snapshot() -> None:
    chain = priced_chain()
    offer = quoted_offer(chain)
    chain.block([chain.tx("alice", OfferTake(offer, 1, 10))])
    restored = decode_snapshot(encode_snapshot(chain.state))
    assert restored.state_hash() == chain.state.state_hash()
    assert restored.offers[offer].quote == SYMBOL
    assert restored.takes[offer] == chain.state.takes[offer]


def test_the_quote_twap_matches_the_pools_own() -> None:
    chain = priced_chain()
    assert quote_price(chain.state, SYMBOL, chain.height + 1) == pool_twap(
        chain.state, SYMBOL, chain.height + 1
    )
