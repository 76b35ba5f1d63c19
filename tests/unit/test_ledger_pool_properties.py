"""Property tests of the pool's arithmetic and of the ledger around it: the constant product never
decreases across swaps, rounding cannot drain a pool or farm dust, a share never loses worth, a
sandwich around a victim with a tight limit never pays, and every asset's supply is conserved."""

from __future__ import annotations

from math import isqrt

from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.ledger.errors import LedgerError
from protocol.ledger.liquidity_state import LOCKED_SHARES, Pool, share_denom
from protocol.ledger.params import PARAM_BOUNDS
from protocol.ledger.pool import deposit_for, swap_out, withdrawal_for
from protocol.ledger.tx import AssetSend, PoolAdd, PoolRemove, PoolSwap
from protocol.units import MAX_AMOUNT

from .ledger_helpers import addr
from .liquidity_helpers import SYMBOL, asset_of, pool_chain, shares_of

RESERVE = st.integers(1, 2**62)
AMOUNT = st.integers(1, 2**62)
FEE = st.integers(0, PARAM_BOUNDS["pool_swap_fee"][1])


@st.composite
def pools(draw: st.DrawFn) -> Pool:
    dct, asset = draw(RESERVE), draw(RESERVE)
    # Any share count a pool can reach: from the first deposit's sqrt(k), diluted or concentrated.
    shares = draw(st.integers(LOCKED_SHARES, max(LOCKED_SHARES, isqrt(dct * asset) * 4)))
    return Pool(dct=dct, asset=asset, shares=shares, last_height=1)


@given(reserve_in=RESERVE, reserve_out=RESERVE, amount=AMOUNT, fee=FEE)
def test_a_swap_never_decreases_the_constant_product_nor_empties_a_side(
    reserve_in: int, reserve_out: int, amount: int, fee: int
) -> None:
    out = swap_out(reserve_in, reserve_out, amount, fee)
    assert 0 <= out < reserve_out
    assert (reserve_in + amount) * (reserve_out - out) >= reserve_in * reserve_out


@given(reserve_in=RESERVE, reserve_out=RESERVE, amount=AMOUNT, fee=FEE)
def test_selling_and_buying_back_never_returns_more_than_was_sold(
    reserve_in: int, reserve_out: int, amount: int, fee: int
) -> None:
    out = swap_out(reserve_in, reserve_out, amount, fee)
    back = swap_out(reserve_out - out, reserve_in + amount, out, fee) if out else 0
    assert back <= amount


@given(
    reserve_in=RESERVE,
    reserve_out=RESERVE,
    pieces=st.lists(st.integers(1, 2**40), min_size=1, max_size=20),
    fee=FEE,
)
def test_splitting_a_trade_into_dust_never_buys_more(
    reserve_in: int, reserve_out: int, pieces: list[int], fee: int
) -> None:
    # Dust farming: many small trades that each round in the trader's favour would beat one
    # trade of their sum. Rounding down every output makes the pieces worth at most the whole.
    x, y, bought = reserve_in, reserve_out, 0
    for piece in pieces:
        out = swap_out(x, y, piece, fee)
        x, y, bought = x + piece, y - out, bought + out
    assert bought <= swap_out(reserve_in, reserve_out, sum(pieces), fee)


@given(pool=pools(), dct=AMOUNT, asset=AMOUNT)
def test_a_deposit_withdrawn_at_once_returns_at_most_what_was_paid(pool: Pool, dct: int, asset: int) -> None:
    shares, paid_dct, paid_asset = deposit_for(pool, dct, asset)
    assert paid_dct <= dct and paid_asset <= asset
    after = Pool(pool.dct + paid_dct, pool.asset + paid_asset, pool.shares + shares, 1)
    got_dct, got_asset = withdrawal_for(after, shares)
    assert got_dct <= paid_dct and got_asset <= paid_asset


@given(pool=pools(), dct=AMOUNT, asset=AMOUNT, redeem=st.integers(1, 2**62))
def test_no_deposit_or_withdrawal_lowers_what_a_share_is_worth(
    pool: Pool, dct: int, asset: int, redeem: int
) -> None:
    # Worth of a share in sqrt(k) terms: k / shares^2, compared without division.
    def worth_not_lower(before: Pool, after: Pool) -> bool:
        return after.dct * after.asset * before.shares**2 >= before.dct * before.asset * after.shares**2

    shares, paid_dct, paid_asset = deposit_for(pool, dct, asset)
    deposited = Pool(pool.dct + paid_dct, pool.asset + paid_asset, pool.shares + shares, 1)
    assert worth_not_lower(pool, deposited)
    redeem = min(redeem, pool.shares - LOCKED_SHARES)
    if redeem > 0:
        out_dct, out_asset = withdrawal_for(pool, redeem)
        withdrawn = Pool(pool.dct - out_dct, pool.asset - out_asset, pool.shares - redeem, 1)
        assert withdrawn.dct > 0 and withdrawn.asset > 0
        assert worth_not_lower(pool, withdrawn)


@given(
    reserve_dct=st.integers(10**3, 10**15),
    reserve_asset=st.integers(10**3, 10**15),
    victim=AMOUNT,
    front=AMOUNT,
    fee=FEE,
)
def test_a_sandwich_around_a_victim_with_a_tight_limit_never_pays(
    reserve_dct: int, reserve_asset: int, victim: int, front: int, fee: int
) -> None:
    victim, front = victim % reserve_dct + 1, front % (4 * reserve_dct) + 1
    quote = swap_out(reserve_dct, reserve_asset, victim, fee)
    # The attacker buys first, the victim's trade runs only if it still gets its quote, then the
    # attacker sells everything it bought.
    x, y = reserve_dct, reserve_asset
    bought = swap_out(x, y, front, fee)
    x, y = x + front, y - bought
    victim_out = swap_out(x, y, victim, fee)
    if quote > 0 and victim_out >= quote:
        x, y = x + victim, y - victim_out
    back = swap_out(y, x, bought, fee) if bought else 0
    assert back <= front


# --- through the ledger ---------------------------------------------------------------------------
ACTORS = ("alice", "bob", "dave")


@st.composite
def operations(draw: st.DrawFn) -> list[tuple[str, object]]:
    kinds = st.sampled_from(("add", "remove", "buy", "sell", "send"))
    amount = st.one_of(st.integers(1, 3_000), st.integers(1, 3_000_000))
    return [
        (draw(st.sampled_from(ACTORS)), (draw(kinds), draw(amount), draw(amount)))
        for _ in range(draw(st.integers(1, 12)))
    ]


@settings(max_examples=60, deadline=None)
@given(ops=operations())
def test_random_pool_traffic_conserves_every_asset_and_never_lowers_a_shares_worth(
    ops: list[tuple[str, object]],
) -> None:
    chain = pool_chain()
    supply = chain.state.assets[SYMBOL].supply
    for actor, (kind, a, b) in ops:  # type: ignore[misc]
        msg = {
            "add": PoolAdd(SYMBOL, a, b, 0),
            "remove": PoolRemove(SYMBOL, max(1, shares_of(chain, actor) * a // 3_000_000), 0, 0),
            "buy": PoolSwap(SYMBOL, True, a, 1, 10**6),
            "sell": PoolSwap(SYMBOL, False, a, 1, 10**6),
            "send": AssetSend(share_denom(SYMBOL), addr(ACTORS[b % 3]), a),
        }[kind]
        before = chain.state.pools[SYMBOL]
        try:
            chain.block([chain.tx(actor, msg)])  # checks every invariant, supplies included
        except LedgerError:
            chain.forget_reserved_nonces()
            continue
        after = chain.state.pools[SYMBOL]
        assert after.dct * after.asset * before.shares**2 >= before.dct * before.asset * after.shares**2
        if kind in ("buy", "sell"):
            assert after.dct * after.asset >= before.dct * before.asset
    held = sum(asset_of(chain, actor) for actor in ("alice", "bob", "dave"))
    assert held + chain.state.pools[SYMBOL].asset == supply
    assert all(
        0 <= v <= MAX_AMOUNT for v in (chain.state.pools[SYMBOL].dct, chain.state.pools[SYMBOL].shares)
    )
