"""Assets and pools over RPC: ``asset_get``, ``asset_all``, ``account_holdings``, ``pool_get``,
``pool_all`` and ``pool_quote`` (what ``dcent pool`` asks before it signs).

Every answer reads the committed state; amounts are decimal strings of base units (of DCT or of
the asset), prices asset base units per DCT, ratios decimal strings scaled by 10^18. The asset
registry holds at most ``MAX_ASSETS`` entries, so the listings are bounded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from node.rpc.methods import MethodTable
from node.rpc.params import AddressParam, Bool, Int, Param, Str
from protocol.crypto import Address
from protocol.ledger import mining, pool
from protocol.ledger.liquidity_errors import PoolEmpty, UnknownAsset
from protocol.ledger.liquidity_state import LOCKED_SHARES
from protocol.ledger.state import LedgerState
from protocol.units import MAX_AMOUNT

if TYPE_CHECKING:
    from node.daemon import Node

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


def register_liquidity_methods(table: MethodTable, node: Node | None) -> None:
    """Register the liquidity methods on ``table`` (``node=None``: for describing the table only)."""
    methods = LiquidityMethods(node)
    asset_shape = (
        "`symbol`, `issuer`, `supply` (base units), `proposal` (the registering proposal's id), "
        "`registered` (false while its proposal is voted), `pool` (whether a DCT pool of it exists)"
    )
    pool_shape = (
        "`symbol`, `dct` and `asset` (reserves), `shares` (all of them, the locked ones included), "
        "`locked_shares`, `spot_price` and `twap` (asset base units per DCT; `twap` is the mean "
        "price the last `twap_window` blocks started with, as the next block's transactions see "
        "it, null before one block started with a price), `twap_window`, `swap_fee` (ratio), "
        "`last_height`"
    )
    table.register(
        "asset_get", methods.asset_get, [_SYMBOL], errors=[UnknownAsset], returns=f"object: {asset_shape}"
    )
    table.register("asset_all", methods.asset_all, returns=f"array of every asset, by symbol: {asset_shape}")
    table.register(
        "account_holdings",
        methods.account_holdings,
        [Param("address", AddressParam(), "bech32m account address")],
        returns="array of `{denom, amount}`: registered assets by symbol, pool shares as `lp:SYMBOL`",
    )
    table.register(
        "pool_get", methods.pool_get, [_SYMBOL], errors=[PoolEmpty], returns=f"object: {pool_shape}"
    )
    _register_mining(table, methods)
    table.register("pool_all", methods.pool_all, returns=f"array of every pool, by symbol: {pool_shape}")
    table.register(
        "pool_quote",
        methods.pool_quote,
        [
            _SYMBOL,
            Param("sell_dct", Bool(), "true: sell DCT for the asset; false: sell the asset for DCT"),
            Param("amount", Int(1, MAX_AMOUNT), "what is sold, in base units"),
        ],
        errors=[PoolEmpty],
        returns="object: `out` (what the swap would buy now, base units), `spot_price` (before), "
        "`price_after` (after), both asset base units per DCT",
    )


def _register_mining(table: MethodTable, methods: LiquidityMethods) -> None:
    table.register(
        "mining_status",
        methods.mining_status,
        returns="object: `share` (ratio of each block's issuance), `pot` (DCT earned this epoch so far), "
        "`bonds` (count), `epoch_length`, `next_payout_height`, `unbonding_period`",
    )
    table.register(
        "account_mining",
        methods.account_mining,
        [Param("address", AddressParam(), "bech32m account address")],
        returns="object: `bonds`: array of `{symbol, shares, estimated_reward}` (its part of the pot if "
        "the epoch ended now), `unbonding`: array of `{symbol, shares, release_height}`",
    )


class LiquidityMethods:
    def __init__(self, node: Node | None) -> None:
        self._node = node

    def _state(self) -> LedgerState:
        app = self._node.app if self._node is not None else None
        if app is None:
            raise RuntimeError("the node's ledger is not loaded")
        return app.state

    async def asset_get(self, symbol: str) -> dict[str, object]:
        """One asset, registered or proposed."""
        return asset_json(self._state(), symbol)

    async def asset_all(self) -> list[dict[str, object]]:
        """Every asset, registered or proposed."""
        state = self._state()
        return [asset_json(state, symbol) for symbol, _ in state.assets.sorted_items()]

    async def account_holdings(self, address: Address) -> list[dict[str, object]]:
        """What an account holds besides DCT: assets and pool shares."""
        state = self._state()
        held: list[dict[str, object]] = []
        for symbol, _ in state.assets.sorted_items():
            for denom in (symbol, "lp:" + symbol):
                amount = pool.holding(state, address.raw, denom)
                if amount:
                    held.append({"denom": denom, "amount": str(amount)})
        return held

    async def pool_get(self, symbol: str) -> dict[str, object]:
        """The DCT/``symbol`` pool: reserves, shares, prices."""
        return pool_json(self._state(), symbol)

    async def pool_all(self) -> list[dict[str, object]]:
        """Every pool."""
        state = self._state()
        return [pool_json(state, symbol) for symbol, _ in state.pools.sorted_items()]

    async def pool_quote(self, symbol: str, sell_dct: bool, amount: int) -> dict[str, object]:
        """What a swap would buy on the committed state (a later block may give less: swaps carry
        a limit)."""
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
        """The liquidity mining programme now."""
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
        """An account's bonds in the mining programme and its shares on their way back."""
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
