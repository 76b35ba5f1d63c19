"""Registered assets and the constant-product pool of DCT and each of them.

**Assets.** An issuer proposes an asset (``asset_propose``: symbol and a governance deposit); the
proposal is voted like any other (``gov_vote``) and, once it passes, the asset exists and its
issuer alone mints it (``asset_mint``; a testnet faucet mints a stable unit this way). Holdings
move with ``asset_send``. A rejected proposal frees the symbol.

**The pool** (Uniswap v2's rules, in integers). ``pool_add`` deposits DCT and the asset for
shares (ledger holdings of ``lp:SYMBOL``); the first deposit sets the price and locks
``LOCKED_SHARES`` forever. ``pool_remove`` redeems shares pro rata. ``pool_swap`` sells one side
for the other at ``x * y = k`` after the governance-set ``pool_swap_fee``, which stays in the pool
(it pays the share holders). Every swap names a slippage limit (``min_out`` >= 1) and a deadline
height. All rounding favours the pool: deposits are taken rounded up, shares minted, withdrawals
and swap outputs paid rounded down. So ``k`` never decreases across a swap and a share's worth in
``sqrt(k)`` never decreases across anything the pool does, which is what defeats dust-rounding
farming (many tiny trades that each round in the trader's favour).

**The time-weighted price** is the mean over the last ``twap_window`` blocks of the price each
block *started* with. A pool records the price it had at the end of the last block that touched
it the first time a later block touches it (before that block's trade), as a step
(first height, price). A block's own trades therefore never move the average that block (or any
reader at that height) sees; a price pushed away and held costs the manipulator the arbitrage
for every block it is held, and moves the average by 1/window per block. ``twap`` is what
other modules (a job priced in the asset) read; a price is asset base units per DCT (10^9 base
units), rounded down and saturated at 2^63 - 1.

Assets, mining, and the attacks considered
------------------------------------------

Issue 17. Records, state-hash and snapshot rows are in ``liquidity_state.py``, errors 2300-2337 in
``liquidity_errors.py``, messages in ``tx_liquidity.py``.

- **Assets**: ``asset_propose`` opens a governance proposal (``asset_register``, through the
  ``open_proposal`` that ``gov_propose`` uses, which cannot open one) naming the sender as
  **issuer**; once voted in, only the issuer mints (``asset_mint``); any other outcome frees the
  symbol. ``asset_send`` moves an asset or pool shares (``lp:SYMBOL``). A genesis may register assets
  (``[[assets]]``; without any, its hash is unchanged); ``dcent testnet up`` registers **TUSD issued
  by the faucet**. At most 64 assets, since every invariant walks them. Per asset, after every
  block: holdings + the pool's reserve = what the issuer minted, and every share is held, bonded,
  unbonding or locked; DCT in pools, pots, offers' collateral, deposits and takes is in DCT's
  supply equation.
- **The pool** (Uniswap v2 in integers): the first ``pool_add`` mints ``isqrt(dct x asset)`` shares and
  locks 1,000 forever; deposits are taken rounded up, shares, withdrawals and outputs paid rounded
  down; ``pool_swap`` keeps ``pool_swap_fee`` (0.3%) in the pool, needs ``min_out >= 1`` and fails after
  its ``deadline``; a trade that rounds to nothing is refused (2307).
- **Time-weighted price** (``twap_window``, 30 blocks): the mean of the price each block *started*
  with; the first transaction of a block to touch a pool records the price it ended the previous
  block with, before trading.
- **Liquidity mining**: ``liquidity_mining_share`` (default 0, at most 20%) of each block's
  provision, taken from the community pool's part, fills ``mining_pool`` while anything is bonded.
  Each epoch's end pays it in DCT pro rata shares x blocks bonded (from the end of the bonding
  block) x a share's worth in DCT at the time-weighted price (shares of different pools are
  incomparable counts); dust to the community pool, so paid + dust is exactly what was set aside.
  Unbonded shares return after ``mining_unbonding_period`` (100 blocks), earning nothing. At most
  10,000 bonds (2311).

| attack | mechanism | test (``tests/unit/``) |
|---|---|---|
| sandwich within a block | every trade carries a limit (the CLI's ``--slippage``, 1%) and a swap a deadline (``--deadline-blocks``, 20): a front-run that moves the price further fails the victim's swap and costs the attacker two fees; with a tolerance, the take is bounded by it, as in any constant-product pool | ``test_ledger_pool.py``, ``test_ledger_pool_properties.py`` |
| moving the time-weighted price | a block's own trades never change what it sees; a price held away moves the average 1/window per block while arbitrage takes the gap | ``test_a_price_pushed_in_one_block_moves_the_average_by_one_window_share`` |
| dust-rounding farming | rounding favours the pool: k never falls across a swap, a split trade never buys more than the whole, nothing lowers a share's worth (hypothesis, 62-bit range) | ``test_ledger_pool_properties.py`` |
| first-depositor inflation, draining by rounding | the 1,000 locked shares keep reserves above zero and make inflating a share cost 1,000 times the gain; outputs stay below the reserve | ``test_the_locked_shares_can_never_be_withdrawn`` |
| just-in-time liquidity | bonding in an epoch's last block earns nothing for it; leaving takes the unbonding period | ``test_bonding_in_the_last_block_of_an_epoch_earns_nothing_for_it`` |
| wash trading | fees stay in the pool; mining weights do not count trades | |
"""

from __future__ import annotations

import dataclasses
from math import isqrt

from protocol.ledger.bank import debit
from protocol.ledger.errors import AmountOverflow
from protocol.ledger.liquidity_errors import (
    AmountTooSmall,
    AssetExists,
    DeadlinePassed,
    InsufficientAsset,
    NotIssuer,
    PoolEmpty,
    SlippageExceeded,
    TooManyAssets,
    UnknownAsset,
)
from protocol.ledger.liquidity_state import LOCKED_SHARES, SHARE_PREFIX, Asset, Pool, share_denom
from protocol.ledger.proposals import open_proposal
from protocol.ledger.state import GovProposal, LedgerState
from protocol.ledger.tx import AssetMint, AssetPropose, AssetSend, PoolAdd, PoolRemove, PoolSwap, Tx
from protocol.units import DCT, DEC, MAX_AMOUNT

#: The proposal "param" of an asset registration; its value is the proposal's own id.
ASSET_REGISTER = "asset_register"
#: Proposals that do something other than change a parameter (``protocol.ledger.gov`` enacts them).
ACTION_PROPOSALS = (ASSET_REGISTER,)
#: Assets the ledger holds, proposed or registered: bounds what every invariant check walks.
MAX_ASSETS = 64


# --- holdings ------------------------------------------------------------------------------------
def holding(state: LedgerState, address: bytes, denom: str) -> int:
    return state.holdings.get((address, denom)) or 0


def _give(state: LedgerState, address: bytes, denom: str, amount: int) -> None:
    value = holding(state, address, denom) + amount
    if value > MAX_AMOUNT:
        raise AmountOverflow(f"a holding of {denom} would exceed {MAX_AMOUNT} base units")
    if value:
        state.holdings.set((address, denom), value)


def _take(state: LedgerState, address: bytes, denom: str, amount: int) -> None:
    have = holding(state, address, denom)
    if have < amount:
        raise InsufficientAsset(f"{denom}: holding {have} is less than {amount}")
    if have == amount:
        state.holdings.delete((address, denom))
    else:
        state.holdings.set((address, denom), have - amount)


def active_asset(state: LedgerState, symbol: str) -> Asset:
    asset = state.assets.get(symbol)
    if asset is None or not asset.active:
        raise UnknownAsset(f"no registered asset {symbol}")
    return asset


# --- assets --------------------------------------------------------------------------------------
def propose_asset(state: LedgerState, tx: Tx, msg: AssetPropose, height: int) -> int:
    """Open the governance proposal that registers ``msg.symbol`` with the sender as issuer;
    returns its id. Raises AssetExists, TooManyAssets, DepositTooLow, InsufficientFunds."""
    if msg.symbol in state.assets:
        raise AssetExists(f"{msg.symbol} is registered or proposed already")
    if len(state.assets) >= MAX_ASSETS:
        raise TooManyAssets(f"the ledger holds at most {MAX_ASSETS} assets")
    proposal_id = open_proposal(state, tx.sender, ASSET_REGISTER, None, msg.deposit, height)
    state.assets.set(msg.symbol, Asset(issuer=tx.sender, supply=0, proposal=proposal_id, active=False))
    return proposal_id


def _proposed(state: LedgerState, proposal_id: int) -> str | None:
    for symbol, asset in state.assets.sorted_items():
        if asset.proposal == proposal_id and not asset.active:
            return symbol
    return None


def enact(state: LedgerState, proposal: GovProposal, passed: bool) -> None:
    """Close an action proposal: a passed registration activates its asset, any other outcome
    frees the symbol."""
    symbol = _proposed(state, proposal.id)
    if symbol is None:  # pragma: no cover - a proposed asset leaves only through here
        return
    if passed:
        state.assets.set(symbol, dataclasses.replace(state.assets[symbol], active=True))
    else:
        state.assets.delete(symbol)


def mint(state: LedgerState, tx: Tx, msg: AssetMint) -> None:
    asset = active_asset(state, msg.symbol)
    if tx.sender != asset.issuer:
        raise NotIssuer(f"only the issuer of {msg.symbol} mints it")
    if asset.supply + msg.amount > MAX_AMOUNT:
        raise AmountOverflow(f"the supply of {msg.symbol} would exceed {MAX_AMOUNT} base units")
    state.assets.set(msg.symbol, dataclasses.replace(asset, supply=asset.supply + msg.amount))
    _give(state, msg.to, msg.symbol, msg.amount)


def send(state: LedgerState, tx: Tx, msg: AssetSend) -> None:
    symbol = msg.denom.removeprefix(SHARE_PREFIX)
    active_asset(state, symbol)
    _take(state, tx.sender, msg.denom, msg.amount)
    _give(state, msg.to, msg.denom, msg.amount)


# --- prices --------------------------------------------------------------------------------------
def spot_price(dct: int, asset: int) -> int:
    """Asset base units per DCT, rounded down, at most 2^63 - 1."""
    return min(asset * DCT // dct, MAX_AMOUNT)


def _touch(pool: Pool, height: int, window: int) -> Pool:
    """The pool as the first transaction of block ``height`` that uses it sees it: the price it
    ended its last block with is recorded as the price every block since then started with."""
    if pool.last_height >= height:
        return pool
    price = spot_price(pool.dct, pool.asset)
    marks = pool.marks
    if not marks or marks[-1][1] != price:
        marks = (*marks, (pool.last_height + 1, price))
    return dataclasses.replace(pool, last_height=height, marks=_prune(marks, height - window + 1))


def _prune(marks: tuple[tuple[int, int], ...], first: int) -> tuple[tuple[int, int], ...]:
    """Drop the steps that end before block ``first`` (the last one starting at or before it
    still gives that block's price)."""
    keep = 0
    for index, (start, _) in enumerate(marks):
        if start <= first:
            keep = index
    return marks[keep:]


def twap(pool: Pool, height: int, window: int) -> int | None:
    """The mean price blocks ``height - window + 1 .. height`` started with (those since the
    pool's first block if fewer), rounded down; ``None`` before any block has started with one.
    Trades in block ``height`` do not change it."""
    marks = pool.marks
    if pool.last_height < height:
        price = spot_price(pool.dct, pool.asset)
        if not marks or marks[-1][1] != price:
            marks = (*marks, (pool.last_height + 1, price))
    if not marks or marks[0][0] > height:
        return None
    first = max(height - window + 1, marks[0][0])
    total = 0
    for index, (start, price) in enumerate(marks):
        end = marks[index + 1][0] if index + 1 < len(marks) else height + 1
        lo, hi = max(start, first), min(end, height + 1)
        if hi > lo:
            total += price * (hi - lo)
    return total // (height + 1 - first)


def pool_twap(state: LedgerState, symbol: str, height: int) -> int | None:
    """The time-weighted price of ``symbol`` as transactions of block ``height`` see it."""
    pool = state.pools.get(symbol)
    return None if pool is None else twap(pool, height, state.params.twap_window)


# --- pool arithmetic (pure) -----------------------------------------------------------------------
def swap_out(reserve_in: int, reserve_out: int, amount_in: int, fee: int) -> int:
    """What selling ``amount_in`` gives: the fee is taken from the input (rounded up), the rest
    trades at ``x * y = k``, the output rounded down."""
    net = amount_in * (DEC - fee) // DEC
    return reserve_out * net // (reserve_in + net)


def deposit_for(pool: Pool, dct: int, asset: int) -> tuple[int, int, int]:
    """(shares, DCT taken, asset taken) for a deposit of at most ``dct`` and ``asset``: the
    shares the scarcer side buys (rounded down), paid for at the pool's ratio (rounded up)."""
    shares = min(dct * pool.shares // pool.dct, asset * pool.shares // pool.asset)
    return shares, -(-shares * pool.dct // pool.shares), -(-shares * pool.asset // pool.shares)


def withdrawal_for(pool: Pool, shares: int) -> tuple[int, int]:
    """(DCT, asset) that ``shares`` redeem, each rounded down."""
    return shares * pool.dct // pool.shares, shares * pool.asset // pool.shares


def _bounded(*values: int) -> None:
    if any(value > MAX_AMOUNT for value in values):
        raise AmountOverflow(f"a pool reserve or share count would exceed {MAX_AMOUNT}")


# --- pool transactions ----------------------------------------------------------------------------
def add_liquidity(state: LedgerState, tx: Tx, msg: PoolAdd, height: int) -> int:
    """Deposit into the pool (creating it with the first deposit); returns the shares minted."""
    active_asset(state, msg.symbol)
    existing = state.pools.get(msg.symbol)
    if existing is None:
        minted = isqrt(msg.dct * msg.asset)
        if minted <= LOCKED_SHARES:
            raise AmountTooSmall(f"a first deposit must be worth more than {LOCKED_SHARES} shares")
        minted -= LOCKED_SHARES
        dct, asset = msg.dct, msg.asset
        after = Pool(dct=dct, asset=asset, shares=minted + LOCKED_SHARES, last_height=height)
    else:
        pool = _touch(existing, height, state.params.twap_window)
        minted, dct, asset = deposit_for(pool, msg.dct, msg.asset)
        if minted == 0:
            raise AmountTooSmall("the deposit is worth less than one share")
        after = dataclasses.replace(
            pool, dct=pool.dct + dct, asset=pool.asset + asset, shares=pool.shares + minted
        )
    if minted < msg.min_shares:
        raise SlippageExceeded(f"the deposit buys {minted} shares, fewer than {msg.min_shares}")
    _bounded(after.dct, after.asset, after.shares)
    debit(state, tx.sender, dct, "pool deposit")
    _take(state, tx.sender, msg.symbol, asset)
    _give(state, tx.sender, share_denom(msg.symbol), minted)
    state.pools.set(msg.symbol, after)
    return minted


def _pool(state: LedgerState, symbol: str, height: int) -> Pool:
    active_asset(state, symbol)
    pool = state.pools.get(symbol)
    if pool is None:
        raise PoolEmpty(f"there is no {symbol} pool yet")
    return _touch(pool, height, state.params.twap_window)


def remove_liquidity(state: LedgerState, tx: Tx, msg: PoolRemove, height: int) -> tuple[int, int]:
    """Redeem shares; returns (DCT, asset) paid."""
    pool = _pool(state, msg.symbol, height)
    _take(state, tx.sender, share_denom(msg.symbol), msg.shares)
    dct, asset = withdrawal_for(pool, msg.shares)
    if dct == 0 or asset == 0:
        raise AmountTooSmall("so few shares redeem nothing of one side")
    if dct < msg.min_dct or asset < msg.min_asset:
        raise SlippageExceeded(
            f"{msg.shares} shares redeem {dct} DCT base units and {asset} {msg.symbol}, below the limits"
        )
    state.pools.set(
        msg.symbol,
        dataclasses.replace(
            pool, dct=pool.dct - dct, asset=pool.asset - asset, shares=pool.shares - msg.shares
        ),
    )
    state.credit(tx.sender, dct)
    _give(state, tx.sender, msg.symbol, asset)
    return dct, asset


def swap(state: LedgerState, tx: Tx, msg: PoolSwap, height: int) -> int:
    """Sell one side for the other; returns what was bought."""
    if height > msg.deadline:
        raise DeadlinePassed(f"the swap's deadline was height {msg.deadline}; this is {height}")
    pool = _pool(state, msg.symbol, height)
    fee = state.params.pool_swap_fee
    if msg.sell_dct:
        out = swap_out(pool.dct, pool.asset, msg.amount, fee)
        after = dataclasses.replace(pool, dct=pool.dct + msg.amount, asset=pool.asset - out)
    else:
        out = swap_out(pool.asset, pool.dct, msg.amount, fee)
        after = dataclasses.replace(pool, dct=pool.dct - out, asset=pool.asset + msg.amount)
    if out == 0:
        raise AmountTooSmall("the swap buys nothing")
    if out < msg.min_out:
        raise SlippageExceeded(f"the swap buys {out}, less than the limit {msg.min_out}")
    _bounded(after.dct, after.asset)
    if msg.sell_dct:
        debit(state, tx.sender, msg.amount, "swap")
        _give(state, tx.sender, msg.symbol, out)
    else:
        _take(state, tx.sender, msg.symbol, msg.amount)
        state.credit(tx.sender, out)
    state.pools.set(msg.symbol, after)
    return out
