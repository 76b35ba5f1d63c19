"""Assets and pools over RPC: ``asset_get``, ``asset_all``, ``account_holdings``, ``pool_get``,
``pool_all`` and ``pool_quote`` (what ``dcent pool`` asks before it signs).

Every answer reads the committed state; amounts are decimal strings of base units (of DCT or of
the asset), prices asset base units per DCT, ratios decimal strings scaled by 10^18. The asset
registry holds at most ``MAX_ASSETS`` entries, so the listings are bounded.
"""

from __future__ import annotations

from node.rpc.methods import MethodSpec
from node.rpc.params import AddressParam, Bool, Int, Param, Str
from node.rpc.views import LedgerReads
from protocol.crypto import Address
from protocol.ledger import mining, pool
from protocol.ledger.liquidity_errors import PoolEmpty, UnknownAsset
from protocol.ledger.liquidity_state import LOCKED_SHARES
from protocol.ledger.state import LedgerState
from protocol.units import MAX_AMOUNT

_SYMBOL = Param("symbol", Str(max_len=16), "the asset's symbol, e.g. TUSD")


def asset_json(state: LedgerState, symbol: str) -> dict[str, object]:
    asset = state.assets.get(symbol)
    if asset is None:
        raise UnknownAsset(f"no asset {symbol} (registered or proposed)")
    return {
        "symbol": symbol,
        "issuer": str(Address(asset.issuer)),
        "supply": str(asset.supply),
        "proposal": asset.proposal,
        "registered": asset.active,
        "pool": symbol in state.pools,
    }


def pool_json(state: LedgerState, symbol: str) -> dict[str, object]:
    record = state.pools.get(symbol)
    if record is None:
        raise PoolEmpty(f"there is no {symbol} pool")
    price = pool.pool_twap(state, symbol, state.height + 1)
    return {
        "symbol": symbol,
        "dct": str(record.dct),
        "asset": str(record.asset),
        "shares": str(record.shares),
        "locked_shares": str(LOCKED_SHARES),
        "spot_price": str(pool.spot_price(record.dct, record.asset)),
        "twap": None if price is None else str(price),
        "twap_window": state.params.twap_window,
        "swap_fee": str(state.params.pool_swap_fee),
        "last_height": record.last_height,
    }


_ASSET_SHAPE = (
    "`symbol`, `issuer`, `supply` (base units), `proposal` (the registering proposal's id), "
    "`registered` (false while its proposal is voted), `pool` (whether a DCT pool of it exists)"
)
_POOL_SHAPE = (
    "`symbol`, `dct` and `asset` (reserves), `shares` (all of them, the locked ones included), "
    "`locked_shares`, `spot_price` and `twap` (asset base units per DCT; `twap` is the mean "
    "price the last `twap_window` blocks started with, as the next block's transactions see "
    "it, null before one block started with a price), `twap_window`, `swap_fee` (ratio), "
    "`last_height`"
)
_ACCOUNT = Param("address", AddressParam(), "bech32m account address")

LIQUIDITY_METHODS = (
    MethodSpec(
        "asset_get",
        "One asset, registered or proposed.",
        (_SYMBOL,),
        errors=(UnknownAsset,),
        returns=f"object: {_ASSET_SHAPE}",
    ),
    MethodSpec(
        "asset_all",
        "Every asset, registered or proposed.",
        returns=f"array of every asset, by symbol: {_ASSET_SHAPE}",
    ),
    MethodSpec(
        "account_holdings",
        "What an account holds besides DCT: assets and pool shares.",
        (_ACCOUNT,),
        returns="array of `{denom, amount}`: registered assets by symbol, pool shares as `lp:SYMBOL`",
    ),
    MethodSpec(
        "pool_get",
        "The DCT/``symbol`` pool: reserves, shares, prices.",
        (_SYMBOL,),
        errors=(PoolEmpty,),
        returns=f"object: {_POOL_SHAPE}",
    ),
    MethodSpec(
        "mining_status",
        "The liquidity mining programme now.",
        returns="object: `share` (ratio of each block's issuance), `pot` (DCT earned this epoch so far), "
        "`bonds` (count), `epoch_length`, `next_payout_height`, `unbonding_period`",
    ),
    MethodSpec(
        "account_mining",
        "An account's bonds in the mining programme and its shares on their way back.",
        (_ACCOUNT,),
        returns="object: `bonds`: array of `{symbol, shares, estimated_reward}` (its part of the pot if "
        "the epoch ended now), `unbonding`: array of `{symbol, shares, release_height}`",
    ),
    MethodSpec(
        "pool_all",
        "Every pool.",
        returns=f"array of every pool, by symbol: {_POOL_SHAPE}",
    ),
    MethodSpec(
        "pool_quote",
        """What a swap would buy on the committed state (a later block may give less: swaps carry
        a limit).""",
        (
            _SYMBOL,
            Param("sell_dct", Bool(), "true: sell DCT for the asset; false: sell the asset for DCT"),
            Param("amount", Int(1, MAX_AMOUNT), "what is sold, in base units"),
        ),
        errors=(PoolEmpty,),
        returns="object: `out` (what the swap would buy now, base units), `spot_price` (before), "
        "`price_after` (after), both asset base units per DCT",
    ),
)


class LiquidityMethods:
    """The handlers of :data:`LIQUIDITY_METHODS`."""

    def __init__(self, reads: LedgerReads) -> None:
        self._reads = reads

    def _state(self) -> LedgerState:
        return self._reads.app.state

    async def asset_get(self, symbol: str) -> dict[str, object]:
        return asset_json(self._state(), symbol)

    async def asset_all(self) -> list[dict[str, object]]:
        state = self._state()
        return [asset_json(state, symbol) for symbol, _ in state.assets.sorted_items()]

    async def account_holdings(self, address: Address) -> list[dict[str, object]]:
        state = self._state()
        held: list[dict[str, object]] = []
        for symbol, _ in state.assets.sorted_items():
            for denom in (symbol, "lp:" + symbol):
                amount = pool.holding(state, address.raw, denom)
                if amount:
                    held.append({"denom": denom, "amount": str(amount)})
        return held

    async def pool_get(self, symbol: str) -> dict[str, object]:
        return pool_json(self._state(), symbol)

    async def pool_all(self) -> list[dict[str, object]]:
        state = self._state()
        return [pool_json(state, symbol) for symbol, _ in state.pools.sorted_items()]

    async def pool_quote(self, symbol: str, sell_dct: bool, amount: int) -> dict[str, object]:
        state = self._state()
        record = state.pools.get(symbol)
        if record is None:
            raise PoolEmpty(f"there is no {symbol} pool")
        fee = state.params.pool_swap_fee
        if sell_dct:
            out = pool.swap_out(record.dct, record.asset, amount, fee)
            after = (record.dct + amount, record.asset - out)
        else:
            out = pool.swap_out(record.asset, record.dct, amount, fee)
            after = (record.dct - out, record.asset + amount)
        return {
            "out": str(out),
            "spot_price": str(pool.spot_price(record.dct, record.asset)),
            "price_after": str(pool.spot_price(*after)) if after[0] > 0 else None,
        }

    async def mining_status(self) -> dict[str, object]:
        state = self._state()
        params = state.params
        return {
            "share": str(params.liquidity_mining_share),
            "pot": str(state.vars["mining_pool"]),
            "bonds": len(state.mining),
            "epoch_length": params.epoch_length,
            "next_payout_height": (state.height // params.epoch_length + 1) * params.epoch_length,
            "unbonding_period": params.mining_unbonding_period,
        }

    async def account_mining(self, address: Address) -> dict[str, object]:
        state = self._state()
        pot = state.vars["mining_pool"]
        bonds = []
        for (owner, symbol), stake in state.mining.sorted_items():
            if owner != address.raw:
                continue
            mine, total = mining.pending_weight(state, owner, symbol, state.height)
            bonds.append(
                {
                    "symbol": symbol,
                    "shares": str(stake.shares),
                    "estimated_reward": str(pot * mine // total if total else 0),
                }
            )
        unbonding = [
            {"symbol": r.symbol, "shares": str(r.shares), "release_height": height}
            for height, releases in state.mining_unbonding.sorted_items()
            for r in releases
            if r.address == address.raw
        ]
        return {"bonds": bonds, "unbonding": unbonding}
