"""The simulator's liquidity agents: a DCT/TUSD pool, liquidity mining and a standing offer, as
real signed transactions in each step's agent block (issue 17 in the economics simulator).

- **The stable unit.** A TUSD asset issued by the simulator's ``issuer`` key is registered as a
  genesis asset would be (``protocol.ledger.genesis``), when the scenario has a pool.
- **Liquidity providers** (``liquidity``) buy ``pool_dct`` DCT from the holders (a transfer from
  the first validator's holder account) in the first step, have the issuer mint TUSD at
  ``pool_asset_per_dct``, and deposit both (``pool_add``). From the next step on they keep
  ``mining_bonded_share`` of their pool shares bonded to liquidity mining (``mining_bond``).
- **A trader** swaps ``swap_dct_per_day`` DCT a day through the pool (``pool_swap``), selling DCT
  on even steps and buying as much back on odd ones: the pool earns the swap fee, which is what a
  share's worth (and so liquidity mining's weight) grows with.
- **The provider** keeps ``standing_gpus`` in a standing offer (``offer_stand``) at the step's
  price (capped at ``standing_max_price``) for a month of blocks, withdrawn (``offer_withdraw``)
  and posted again when it ends; nobody challenges or takes it (the simulated provider is always
  there), so it earns the availability share for every block it stands.

Payouts are the ledger's (``mining.pay_epoch``, ``availability.pay_epoch`` at each epoch's end,
applied by ``apply_block``); the engine reads them from :attr:`SimChain.liquidity_paid`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from protocol.crypto import PrivateKey
from protocol.econsim.agents import floor_amount
from protocol.econsim.economy import actor_key
from protocol.econsim.errors import ScenarioError
from protocol.econsim.scenario import Agents
from protocol.ledger.liquidity_state import Asset, share_denom
from protocol.ledger.pool import holding, spot_price
from protocol.ledger.state import LedgerState
from protocol.ledger.tx import (
    MAX_STANDING_PERIOD,
    AssetMint,
    MiningBond,
    Msg,
    OfferStand,
    OfferWithdraw,
    PoolAdd,
    PoolSwap,
    Transfer,
    decode_tx,
)
from protocol.units import DCT

SYMBOL = "TUSD"
GPU_MODEL = "econsim-gpu"
#: A standing offer stands this many steps' blocks before it is posted again.
OFFER_STEPS = 30

Sign = Callable[[PrivateKey, Msg], bytes]


@dataclass(slots=True)
class ProviderMoves:
    """The provider's standing-offer transactions of one step, and what they move out of its
    balance (collateral posted, less collateral returned), which is not income or loss."""

    txs: list[bytes] = field(default_factory=list)
    locked: int = 0


class LiquidityAgents:
    """The liquidity providers, the trader and the provider's standing offer."""

    def __init__(self, agents: Agents, state: LedgerState, step_blocks: int) -> None:
        self.agents = agents
        self.issuer = actor_key("issuer")
        self.lp = actor_key("liquidity")
        self.trader = actor_key("trader")
        self.provider = actor_key("provider")
        self.step_blocks = step_blocks
        self.swap_amount = floor_amount(agents.swap_dct_per_day * agents.step_days * DCT)
        self.offer: bytes | None = None
        if agents.pool_dct > 0 and SYMBOL not in state.assets:
            state.assets.set(SYMBOL, Asset(issuer=self.issuer.address.raw, supply=0, proposal=0, active=True))

    @property
    def pooled(self) -> bool:
        return self.agents.pool_dct > 0

    def _asset_for(self, dct: int) -> int:
        return floor_amount(dct * self.agents.pool_asset_per_dct)

    def market_txs(
        self, state: LedgerState, step: int, height: int, holder: PrivateKey, sign: Sign
    ) -> list[bytes]:
        """The pool's transactions of one step: funding and the first deposit in step 0, then the
        mining bond top-up and the trader's swap. Raises ScenarioError when the holders cannot
        fund the pool."""
        if not self.pooled:
            return []
        fee = state.params.min_fee
        if step == 0:
            lp_dct = self.agents.pool_dct + 100 * fee
            trader_dct = 2 * self.swap_amount + 100 * fee if self.swap_amount else 0
            if state.balance(holder.address.raw) < lp_dct + trader_dct + 20 * fee:
                raise ScenarioError("agents.pool_dct: more DCT than the holders hold")
            txs = [sign(holder, Transfer(self.lp.address.raw, lp_dct))]
            txs.append(sign(holder, Transfer(self.issuer.address.raw, 10 * fee)))  # its mints' fees
            txs.append(
                sign(
                    self.issuer, AssetMint(SYMBOL, self.lp.address.raw, self._asset_for(self.agents.pool_dct))
                )
            )
            if trader_dct:
                txs.append(sign(holder, Transfer(self.trader.address.raw, trader_dct)))
                minted = self._asset_for(4 * self.swap_amount)
                txs.append(sign(self.issuer, AssetMint(SYMBOL, self.trader.address.raw, max(1, minted))))
            txs.append(
                sign(self.lp, PoolAdd(SYMBOL, self.agents.pool_dct, self._asset_for(self.agents.pool_dct), 1))
            )
            return txs
        txs = []
        held = holding(state, self.lp.address.raw, share_denom(SYMBOL))
        bond = state.mining.get((self.lp.address.raw, SYMBOL))
        bonded = bond.shares if bond is not None else 0
        wanted = floor_amount((held + bonded) * self.agents.mining_bonded_share) - bonded
        if min(held, wanted) > 0:
            txs.append(sign(self.lp, MiningBond(SYMBOL, min(held, wanted))))
        pool = state.pools.get(SYMBOL)
        if self.swap_amount and pool is not None:
            trader = self.trader.address.raw
            if step % 2 == 1 and state.balance(trader) >= self.swap_amount + 2 * fee:
                txs.append(sign(self.trader, PoolSwap(SYMBOL, True, self.swap_amount, 1, height)))
            elif step % 2 == 0:
                asset = min(self.swap_amount * pool.asset // pool.dct, holding(state, trader, SYMBOL))
                if asset > 0 and state.balance(trader) >= 2 * fee:
                    txs.append(sign(self.trader, PoolSwap(SYMBOL, False, asset, 1, height)))
        return txs

    def provider_moves(
        self, state: LedgerState, height: int, price: int, funds: int, sign: Sign
    ) -> ProviderMoves:
        """Withdraw an offer whose period ended; post one when none stands and ``funds`` (the
        provider's balance) cover its collateral."""
        moves = ProviderMoves()
        gpus = self.agents.standing_gpus
        if gpus <= 0:
            return moves
        params = state.params
        fee = params.min_fee
        if self.offer is not None:
            offer = state.offers.get(self.offer)
            if offer is None or offer.end >= height:
                return moves
            moves.txs.append(sign(self.provider, OfferWithdraw(self.offer)))
            moves.locked -= offer.collateral
            funds += offer.collateral - fee
            self.offer = None
        collateral = max(1, gpus * params.standing_collateral_per_gpu)
        if funds < collateral + 20 * fee:
            return moves
        period = min(MAX_STANDING_PERIOD, OFFER_STEPS * self.step_blocks)
        quoted = max(1, min(price, params.standing_max_price))
        stand = OfferStand(self.provider.public_key.raw, GPU_MODEL, gpus, quoted, period, collateral)
        raw = sign(self.provider, stand)
        self.offer = decode_tx(raw).hash
        moves.txs.append(raw)
        moves.locked += collateral
        return moves

    def standing_gpus(self, state: LedgerState) -> int:
        offer = state.offers.get(self.offer) if self.offer is not None else None
        return offer.gpu_count if offer is not None and offer.end >= state.height else 0

    def pool_figures(self, state: LedgerState) -> tuple[int, int]:
        """(DCT in the pool, its spot price in TUSD base units per DCT), zeros without a pool."""
        pool = state.pools.get(SYMBOL)
        return (0, 0) if pool is None else (pool.dct, spot_price(pool.dct, pool.asset))
