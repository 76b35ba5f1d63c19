"""Liquidity mining: pool shares bonded to the programme earn a governance-set share of issuance.

**The rule.** Each block, ``liquidity_mining_share`` of the block's provision is taken out of the
community pool's part of the issuance split (validators and providers keep theirs, so the shares
still sum to 100%) and added to the programme's pot (``mining_pool``), or left to the community
pool when nothing is bonded. At the end of each epoch (``epoch_length``) the pot is split pro
rata each bond's **weight**: its shares x the blocks they were bonded x what one share of its pool
is worth in DCT, and the integer dust goes to the community pool, so what is paid plus the dust
is exactly what was set aside. Rewards are paid in DCT to the bonder's balance.

**Why each piece.**
- *Shares x blocks*, from the end of the block that bonded them: shares bonded in an epoch's last
  block earn nothing for it, so just-in-time liquidity (bond before the payout, unbond after)
  earns only for the blocks it really stayed, and it cannot leave at once either:
  ``mining_unbond`` returns the shares ``mining_unbonding_period`` blocks later, earning nothing
  meanwhile.
- *Worth of a share in DCT at the pool's time-weighted price*: shares of different pools are
  incomparable counts (a pool of a cheap asset mints many); a share's worth is its part of
  ``2 x sqrt(k x DCT / twap)``, the DCT side of the pool at the time-weighted price (the spot one
  before a pool has one), which a trade in the payout block cannot move.
- *Wash trading* does not pay here: weights do not count trades at all.
- The programme holds at most :data:`MAX_MINING_BONDS` bonds: the epoch's payout walks them all.
"""

from __future__ import annotations

import dataclasses
from math import isqrt

from protocol import economics
from protocol.ledger.liquidity_errors import MiningFull, NotBonded
from protocol.ledger.liquidity_state import MiningRelease, MiningStake, share_denom
from protocol.ledger.pool import _give, _take, active_asset, pool_twap
from protocol.ledger.state import LedgerState
from protocol.ledger.tx import MiningBond, MiningUnbond, Tx
from protocol.units import DCT

MAX_MINING_BONDS = 10_000
#: Fixed-point scale of a share's worth (DCT base units per share are often below 1).
WORTH_SCALE = 10**18


def share_worth(state: LedgerState, symbol: str, height: int) -> int:
    """What one share of the ``symbol`` pool is worth in DCT base units x WORTH_SCALE: its part
    of both sides at the time-weighted price seen by block ``height``."""
    pool = state.pools.get(symbol)
    if pool is None:
        return 0
    price = pool_twap(state, symbol, height) or 0
    dct_side = isqrt(pool.dct * pool.asset * DCT // price) if price > 0 else pool.dct
    return 2 * dct_side * WORTH_SCALE // pool.shares


def _settled(stake: MiningStake, height: int, worth: int) -> MiningStake:
    """``stake`` with the weight of its shares up to ``height`` added to its points."""
    earned = stake.shares * (height - stake.since) * worth
    return MiningStake(stake.shares, height, stake.points + earned)


def bond(state: LedgerState, tx: Tx, msg: MiningBond, height: int) -> None:
    active_asset(state, msg.symbol)
    key = (tx.sender, msg.symbol)
    stake = state.mining.get(key)
    if stake is None and len(state.mining) >= MAX_MINING_BONDS:
        raise MiningFull(f"the mining programme holds at most {MAX_MINING_BONDS} bonds")
    _take(state, tx.sender, share_denom(msg.symbol), msg.shares)
    if stake is None:
        stake = MiningStake(0, height)
    stake = _settled(stake, height, share_worth(state, msg.symbol, height))
    state.mining.set(key, dataclasses.replace(stake, shares=stake.shares + msg.shares))


def unbond(state: LedgerState, tx: Tx, msg: MiningUnbond, height: int) -> None:
    key = (tx.sender, msg.symbol)
    stake = state.mining.get(key)
    if stake is None or stake.shares < msg.shares:
        bonded = 0 if stake is None else stake.shares
        raise NotBonded(f"{msg.shares} {share_denom(msg.symbol)} asked, {bonded} bonded")
    stake = _settled(stake, height, share_worth(state, msg.symbol, height))
    stake = dataclasses.replace(stake, shares=stake.shares - msg.shares)
    if stake.shares == 0 and stake.points == 0:
        state.mining.delete(key)
    else:
        state.mining.set(key, stake)
    release = height + state.params.mining_unbonding_period
    queued = state.mining_unbonding.get(release) or ()
    state.mining_unbonding.set(release, (*queued, MiningRelease(tx.sender, msg.symbol, msg.shares)))


def release_matured(state: LedgerState, height: int) -> None:
    """Begin-block: return the shares whose unbonding ends at ``height``."""
    releases = state.mining_unbonding.get(height)
    if releases is None:
        return
    state.mining_unbonding.delete(height)
    for release in releases:
        _give(state, release.address, share_denom(release.symbol), release.shares)


def accrue(state: LedgerState, amount: int) -> None:
    """End-block: the programme's part of this block's issuance, into its pot (or the community
    pool's when nothing is bonded)."""
    state.add("mining_pool" if len(state.mining) else "community_pool", amount)


def pay_epoch(state: LedgerState, height: int) -> list[tuple[bytes, int]]:
    """End of an epoch: split the pot pro rata the bonds' weights; returns the payouts (by
    address, merged over pools). The dust, and the whole pot when no weight was earned, goes to
    the community pool; every bond starts the next epoch with no weight."""
    worth: dict[str, int] = {}
    weights: list[tuple[tuple[bytes, str], int]] = []
    for key, stake in state.mining.sorted_items():
        symbol = key[1]
        if symbol not in worth:
            worth[symbol] = share_worth(state, symbol, height)
        weights.append((key, _settled(stake, height, worth[symbol]).points))
    shares, dust = economics.pro_rata(state.vars["mining_pool"], weights)
    state.vars.set("mining_pool", 0)
    state.add("community_pool", dust)
    paid: dict[bytes, int] = {}
    for (address, _), reward in shares:
        paid[address] = paid.get(address, 0) + reward
    for address, reward in sorted(paid.items()):
        state.credit(address, reward)
    for key, stake in state.mining.sorted_items():
        if stake.shares == 0:
            state.mining.delete(key)
        else:
            state.mining.set(key, MiningStake(stake.shares, height, 0))
    return sorted(paid.items())


def pending_weight(state: LedgerState, address: bytes, symbol: str, height: int) -> tuple[int, int]:
    """(this bond's weight, every bond's weight) if the epoch ended at ``height``: what share of
    the pot it would get (for ``dcent mining rewards``)."""
    mine = total = 0
    worth: dict[str, int] = {}
    for key, stake in state.mining.sorted_items():
        if key[1] not in worth:
            worth[key[1]] = share_worth(state, key[1], height)
        weight = _settled(stake, height, worth[key[1]]).points
        total += weight
        if key == (address, symbol):
            mine = weight
    return mine, total
