"""Registered assets and the DCT/asset constant-product pool: registration by governance, minting,
deposits, withdrawals and swaps with their limits, and the time-weighted price."""

from __future__ import annotations

from math import isqrt

import pytest

from protocol.ledger.block import apply_block, select_txs
from protocol.ledger.errors import DepositTooLow, InsufficientFunds
from protocol.ledger.liquidity_errors import (
    AmountTooSmall,
    AssetExists,
    DeadlinePassed,
    InsufficientAsset,
    NotIssuer,
    PoolEmpty,
    SlippageExceeded,
    UnknownAsset,
)
from protocol.ledger.liquidity_state import LOCKED_SHARES, share_denom
from protocol.ledger.pool import pool_twap, spot_price, swap_out, withdrawal_for
from protocol.ledger.snapshot import decode_snapshot, encode_snapshot
from protocol.ledger.tx import AssetMint, AssetPropose, AssetSend, GovVote, PoolAdd, PoolRemove, PoolSwap
from protocol.units import DCT

from .ledger_helpers import FEE, TEST_PARAMS, Chain, addr, assert_block_rejected
from .liquidity_helpers import (
    ASSET_BALANCE,
    ISSUER,
    SYMBOL,
    asset_chain,
    asset_of,
    pool_chain,
    register,
    shares_of,
)

FAR = 1_000_000  # a deadline no test reaches


# --- registration and minting ----------------------------------------------------------------------
def test_an_asset_exists_once_its_proposal_passes_and_only_its_issuer_mints_it() -> None:
    chain = Chain()
    chain.block([chain.tx(ISSUER, AssetPropose(SYMBOL, TEST_PARAMS.gov_min_deposit))])
    assert not chain.state.assets[SYMBOL].active
    assert_block_rejected(chain, [chain.tx(ISSUER, AssetMint(SYMBOL, addr("alice"), 5))], UnknownAsset, 2300)
    chain.forget_reserved_nonces()
    chain.block([chain.tx(v, GovVote(1, "yes")) for v in ("val-0", "val-1", "val-2")])
    chain.advance_to(chain.state.proposals[1].end_height)
    assert chain.state.proposals[1].status == "passed"
    assert chain.state.assets[SYMBOL].active and chain.state.assets[SYMBOL].issuer == addr(ISSUER)
    assert_block_rejected(chain, [chain.tx("alice", AssetMint(SYMBOL, addr("alice"), 5))], NotIssuer, 2303)
    chain.forget_reserved_nonces()
    chain.block([chain.tx(ISSUER, AssetMint(SYMBOL, addr("alice"), 5))])
    assert asset_of(chain, "alice") == 5 and chain.state.assets[SYMBOL].supply == 5


def test_a_rejected_registration_frees_the_symbol_and_returns_the_deposit() -> None:
    chain = Chain()
    balance = chain.balance(ISSUER)
    register(chain, votes="no")
    assert SYMBOL not in chain.state.assets
    assert chain.balance(ISSUER) == balance - FEE  # the deposit came back, the fee did not
    register(chain, issuer="dave")
    assert chain.state.assets[SYMBOL].issuer == addr("dave")


def test_a_symbol_cannot_be_proposed_twice_nor_with_a_small_deposit() -> None:
    chain = asset_chain()
    assert_block_rejected(chain, [chain.tx("bob", AssetPropose(SYMBOL, 10**6))], AssetExists, 2301)
    chain.forget_reserved_nonces()
    low = TEST_PARAMS.gov_min_deposit - 1
    assert_block_rejected(chain, [chain.tx("bob", AssetPropose("EUR", low))], DepositTooLow, 2032)


def test_gov_propose_cannot_open_an_asset_registration() -> None:
    from protocol.ledger.errors import UnknownParam
    from protocol.ledger.tx import GovPropose

    chain = Chain()
    assert_block_rejected(
        chain, [chain.tx("bob", GovPropose("asset_register", 1, 10**6))], UnknownParam, 2030
    )


def test_assets_and_shares_move_between_holders() -> None:
    chain = pool_chain()
    shares = shares_of(chain, "alice")
    chain.block(
        [
            chain.tx("alice", AssetSend(SYMBOL, addr("erin"), 7)),
            chain.tx("alice", AssetSend(share_denom(SYMBOL), addr("bob"), 11)),
        ]
    )
    assert asset_of(chain, "erin") == 7 and shares_of(chain, "bob") == 11
    assert shares_of(chain, "alice") == shares - 11
    assert_block_rejected(
        chain, [chain.tx("alice", AssetSend(SYMBOL, addr("bob"), 10**12))], InsufficientAsset, 2304
    )


# --- deposits and withdrawals ---------------------------------------------------------------------
def test_the_first_deposit_sets_the_price_and_locks_the_minimum_shares() -> None:
    chain = pool_chain(1_000_000, 2_000_000)
    pool = chain.state.pools[SYMBOL]
    assert (pool.dct, pool.asset) == (1_000_000, 2_000_000)
    assert pool.shares == isqrt(2 * 10**12)
    assert shares_of(chain, "alice") == pool.shares - LOCKED_SHARES
    assert spot_price(pool.dct, pool.asset) == 2 * DCT


def test_a_deposit_takes_the_pool_ratio_rounded_up_and_mints_shares_rounded_down() -> None:
    chain = pool_chain(1_000_000, 2_000_000)
    before_dct, before_asset = chain.balance("bob"), asset_of(chain, "bob")
    shares_total = chain.state.pools[SYMBOL].shares
    chain.block([chain.tx("bob", PoolAdd(SYMBOL, 1_000, 5_000, 1))])  # DCT is the scarce side
    minted = shares_of(chain, "bob")
    assert minted == 1_000 * shares_total // 1_000_000
    assert before_dct - chain.balance("bob") - FEE == -(-minted * 1_000_000 // shares_total)
    assert before_asset - asset_of(chain, "bob") == -(-minted * 2_000_000 // shares_total)
    assert before_asset - asset_of(chain, "bob") <= 2_000 + 2  # the surplus asset stayed with bob


def test_a_deposit_below_its_minimum_shares_is_refused() -> None:
    chain = pool_chain()
    assert_block_rejected(
        chain, [chain.tx("bob", PoolAdd(SYMBOL, 1_000, 2_000, 10**9))], SlippageExceeded, 2305
    )


def test_a_deposit_worth_less_than_a_share_is_refused() -> None:
    chain = pool_chain(1_000_000, 1_000_000)  # a share is worth 1 of each
    chain.block([chain.tx("bob", PoolSwap(SYMBOL, True, 100_000, 1, FAR))])  # now more than 1 DCT unit
    assert_block_rejected(chain, [chain.tx("bob", PoolAdd(SYMBOL, 1, 1, 0))], AmountTooSmall, 2307)


def test_a_first_deposit_too_small_to_lock_the_minimum_is_refused() -> None:
    chain = asset_chain()
    assert_block_rejected(chain, [chain.tx("bob", PoolAdd(SYMBOL, 1_000, 1_000, 0))], AmountTooSmall, 2307)


def test_a_withdrawal_pays_pro_rata_rounded_down_and_respects_its_limits() -> None:
    chain = pool_chain(1_000_000, 2_000_000)
    shares = shares_of(chain, "alice")
    dct, asset = withdrawal_for(chain.state.pools[SYMBOL], shares // 2)
    assert_block_rejected(
        chain, [chain.tx("alice", PoolRemove(SYMBOL, shares // 2, dct + 1, 0))], SlippageExceeded, 2305
    )
    chain.forget_reserved_nonces()
    before = chain.balance("alice"), asset_of(chain, "alice")
    chain.block([chain.tx("alice", PoolRemove(SYMBOL, shares // 2, dct, asset))])
    assert (chain.balance("alice") - before[0] + FEE, asset_of(chain, "alice") - before[1]) == (dct, asset)


def test_the_locked_shares_can_never_be_withdrawn() -> None:
    chain = pool_chain()
    chain.block([chain.tx("alice", PoolRemove(SYMBOL, shares_of(chain, "alice"), 0, 0))])
    pool = chain.state.pools[SYMBOL]
    assert pool.shares == LOCKED_SHARES and pool.dct > 0 and pool.asset > 0
    assert_block_rejected(chain, [chain.tx("alice", PoolRemove(SYMBOL, 1, 0, 0))], InsufficientAsset, 2304)


def test_no_pool_no_swap() -> None:
    chain = asset_chain()
    assert_block_rejected(chain, [chain.tx("bob", PoolSwap(SYMBOL, True, 100, 1, FAR))], PoolEmpty, 2308)
    chain.forget_reserved_nonces()
    assert_block_rejected(chain, [chain.tx("bob", PoolSwap("EUR", True, 100, 1, FAR))], UnknownAsset, 2300)


# --- swaps --------------------------------------------------------------------------------------------
def test_a_swap_pays_the_constant_product_quote_after_the_fee_which_stays_in_the_pool() -> None:
    chain = pool_chain(1_000_000, 2_000_000)
    out = swap_out(1_000_000, 2_000_000, 10_000, TEST_PARAMS.pool_swap_fee)
    assert out == 2_000_000 * 9_970 // 1_009_970
    before = asset_of(chain, "bob")
    chain.block([chain.tx("bob", PoolSwap(SYMBOL, True, 10_000, out, FAR))])
    assert asset_of(chain, "bob") - before == out
    pool = chain.state.pools[SYMBOL]
    assert (pool.dct, pool.asset) == (1_010_000, 2_000_000 - out)
    assert pool.dct * pool.asset > 1_000_000 * 2_000_000


def test_a_swap_below_its_limit_or_after_its_deadline_is_refused() -> None:
    chain = pool_chain()
    out = swap_out(1_000_000, 2_000_000, 10_000, TEST_PARAMS.pool_swap_fee)
    assert_block_rejected(
        chain, [chain.tx("bob", PoolSwap(SYMBOL, True, 10_000, out + 1, FAR))], SlippageExceeded, 2305
    )
    chain.forget_reserved_nonces()
    assert_block_rejected(
        chain, [chain.tx("bob", PoolSwap(SYMBOL, True, 10_000, 1, chain.height))], DeadlinePassed, 2306
    )
    chain.forget_reserved_nonces()
    chain.block(
        [chain.tx("bob", PoolSwap(SYMBOL, True, 10_000, out, chain.height + 1))]
    )  # the deadline itself


def test_a_swap_that_buys_nothing_is_refused_not_kept() -> None:
    chain = pool_chain(1_000_000, 1_000_000)
    assert_block_rejected(chain, [chain.tx("bob", PoolSwap(SYMBOL, True, 1, 1, FAR))], AmountTooSmall, 2307)


def test_selling_more_than_one_holds_is_refused() -> None:
    chain = pool_chain()
    assert_block_rejected(
        chain, [chain.tx("erin", PoolSwap(SYMBOL, False, 100, 1, FAR))], InsufficientFunds, 2006
    )  # erin holds no DCT for the fee
    chain.forget_reserved_nonces()
    assert_block_rejected(
        chain, [chain.tx("bob", PoolSwap(SYMBOL, False, ASSET_BALANCE + 1, 1, FAR))], InsufficientAsset, 2304
    )


# --- attacks -------------------------------------------------------------------------------------------
def test_a_victim_with_a_tight_limit_cannot_be_sandwiched_within_a_block() -> None:
    # Mallory (dave) front-runs bob's purchase and sells back after it, in one block. Bob's limit is
    # his quote: the front-run makes his swap fail, a proposer leaves it out, and dave's round trip
    # alone loses the fee twice.
    chain = pool_chain(1_000_000, 2_000_000)
    quote = swap_out(1_000_000, 2_000_000, 50_000, TEST_PARAMS.pool_swap_fee)
    front_out = swap_out(1_000_000, 2_000_000, 100_000, TEST_PARAMS.pool_swap_fee)
    txs = [
        chain.tx("dave", PoolSwap(SYMBOL, True, 100_000, 1, FAR)),
        chain.tx("bob", PoolSwap(SYMBOL, True, 50_000, quote, FAR)),
        chain.tx("dave", PoolSwap(SYMBOL, False, front_out, 1, FAR)),
    ]
    assert_block_rejected(chain, txs, SlippageExceeded, 2305, tx_index=1)
    chosen = select_txs(chain.state, chain.context(), txs, 10)
    assert txs[1] not in chosen and len(chosen) == 2
    dave = chain.balance("dave"), asset_of(chain, "dave")
    chain.block(chosen)
    assert asset_of(chain, "dave") == dave[1]
    assert chain.balance("dave") - dave[0] + 2 * FEE < 0  # the round trip lost DCT


def test_a_round_trip_within_one_block_does_not_move_the_time_weighted_price() -> None:
    chain = pool_chain(1_000_000, 2_000_000)
    chain.advance_to(chain.height + TEST_PARAMS.twap_window)
    height = chain.height + 1
    price = pool_twap(chain.state, SYMBOL, height)
    assert price == 2 * DCT
    big = 5_000_000
    bought = swap_out(1_000_000, 2_000_000, big, TEST_PARAMS.pool_swap_fee)
    chain.block(
        [
            chain.tx("dave", PoolSwap(SYMBOL, True, big, 1, FAR)),
            chain.tx("dave", PoolSwap(SYMBOL, False, bought, 1, FAR)),
        ]
    )
    # The block's own trades moved nothing its transactions saw, and its end state is near the
    # start again: the next block sees the average move only by what the block left behind.
    assert pool_twap(chain.state, SYMBOL, height) == price
    pool = chain.state.pools[SYMBOL]
    left = spot_price(pool.dct, pool.asset)
    assert (
        pool_twap(chain.state, SYMBOL, height + 1)
        == (price * (TEST_PARAMS.twap_window - 1) + left) // TEST_PARAMS.twap_window
    )


def test_a_price_pushed_in_one_block_moves_the_average_by_one_window_share() -> None:
    chain = pool_chain(1_000_000, 2_000_000)
    window = TEST_PARAMS.twap_window
    chain.advance_to(chain.height + window)
    height = chain.height + 1
    chain.block([chain.tx("dave", PoolSwap(SYMBOL, True, 1_000_000, 1, FAR))])  # the spot price quarters
    assert pool_twap(chain.state, SYMBOL, height) == 2 * DCT
    pool = chain.state.pools[SYMBOL]
    pushed = spot_price(pool.dct, pool.asset)
    assert pushed < DCT
    moved = pool_twap(chain.state, SYMBOL, height + 1)
    assert moved == (2 * DCT * (window - 1) + pushed) // window
    assert moved > 2 * DCT * (window - 1) // window  # at most 1/window of the way


def test_the_time_weighted_price_follows_a_price_held_for_a_whole_window() -> None:
    chain = pool_chain(1_000_000, 2_000_000)
    chain.block([chain.tx("dave", PoolSwap(SYMBOL, True, 1_000_000, 1, FAR))])
    pool = chain.state.pools[SYMBOL]
    chain.advance_to(chain.height + TEST_PARAMS.twap_window + 3)
    assert pool_twap(chain.state, SYMBOL, chain.height + 1) == spot_price(pool.dct, pool.asset)


def test_no_time_weighted_price_before_a_block_has_started_with_one() -> None:
    chain = pool_chain()
    assert pool_twap(chain.state, SYMBOL, chain.height) is None
    assert pool_twap(chain.state, SYMBOL, chain.height + 1) == 2 * DCT
    assert pool_twap(chain.state, "EUR", chain.height + 1) is None


# --- replicas -----------------------------------------------------------------------------------------
def test_assets_holdings_and_pools_round_trip_through_a_snapshot() -> None:
    chain = pool_chain()
    chain.block([chain.tx("bob", PoolSwap(SYMBOL, True, 10_000, 1, FAR))])
    chain.block([chain.tx("bob", PoolSwap(SYMBOL, False, 10_000, 1, FAR))])
    restored = decode_snapshot(encode_snapshot(chain.state))
    assert restored.state_hash() == chain.state.state_hash()
    assert restored.pools[SYMBOL] == chain.state.pools[SYMBOL]


def test_a_snapshot_whose_holdings_do_not_match_the_supply_is_refused() -> None:
    from protocol.encoding import decode, encode
    from protocol.ledger.snapshot import SnapshotError

    chain = pool_chain()
    doc = decode(encode_snapshot(chain.state))
    doc["holdings"][0][2] += 1
    with pytest.raises(SnapshotError):
        decode_snapshot(encode(doc))


def test_blocks_with_pool_trades_replay_to_the_same_state() -> None:
    chain = pool_chain()
    blocks = []
    for amount in (10_000, 20_000, 5_000):
        ctx = chain.context()
        txs = [
            chain.tx("bob", PoolSwap(SYMBOL, True, amount, 1, FAR)),
            chain.tx("dave", PoolSwap(SYMBOL, False, amount, 1, FAR)),
        ]
        chain.block(txs)
        blocks.append((ctx, txs))
    replica = pool_chain()
    for ctx, txs in blocks:
        apply_block(replica.state, ctx, txs)
    assert replica.state.state_hash() == chain.state.state_hash()
