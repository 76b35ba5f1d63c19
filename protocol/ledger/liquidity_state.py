"""Ledger state of the liquidity modules: registered assets, holdings, pools.

Kept apart from ``protocol.ledger.state`` so the core state only names these maps: the records,
their rows for the state hash and snapshots, and their invariants live here.

- ``assets``: symbol -> :class:`Asset`. An asset is proposed by its issuer (a governance
  proposal) and usable once the proposal passes; only its issuer mints it.
- ``holdings``: (address, denom) -> amount, for every denomination but DCT (whose balances are
  the accounts'): a registered asset's symbol, or ``lp:SYMBOL`` for shares of the DCT/SYMBOL
  pool. Zero holdings are deleted, so the map holds only what someone owns.
- ``pools``: symbol -> :class:`Pool`, the constant-product pool of DCT and that asset.
- ``mining``: (address, symbol) -> :class:`MiningStake`, pool shares bonded to liquidity mining
  (``protocol.ledger.mining``); ``mining_unbonding``: release height -> the shares leaving then.
  The scalar ``mining_pool`` holds the DCT the programme earned this epoch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from protocol.ledger.errors import InvariantError
from protocol.units import MAX_AMOUNT

if TYPE_CHECKING:
    from protocol.ledger.state import LedgerState

#: Denomination prefix of pool shares: ``lp:TUSD`` are shares of the DCT/TUSD pool.
SHARE_PREFIX = "lp:"
#: Shares minted with a pool's first deposit and held by nobody, ever: they keep every pool's
#: reserves above zero, and make inflating the value of one share (to round later depositors'
#: shares down to nothing) cost the attacker this many times the inflated value (Uniswap v2).
LOCKED_SHARES = 1_000


def share_denom(symbol: str) -> str:
    return SHARE_PREFIX + symbol


@dataclass(frozen=True, slots=True)
class Asset:
    """A registered (or proposed) asset."""

    issuer: bytes
    #: Everything minted and not burned: what holdings and the pool's reserve add up to.
    supply: int
    #: The governance proposal that registers it.
    proposal: int
    active: bool


@dataclass(frozen=True, slots=True)
class Pool:
    """A constant-product pool of DCT and one asset.

    ``marks`` records the price each block started with, as (first height, price) steps: block
    ``b`` started with the price of the last mark at or below ``b`` (see ``protocol.ledger.pool``).
    """

    dct: int
    asset: int
    #: Every share: the holders', the mining programme's and :data:`LOCKED_SHARES`.
    shares: int
    #: The last block that traded with or changed the pool.
    last_height: int
    marks: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True, slots=True)
class MiningStake:
    """Pool shares bonded to the mining programme, and the reward weight they earned this epoch
    before ``since`` (from ``since`` on they earn ``shares`` x blocks x their worth)."""

    shares: int
    since: int
    #: Weight earned this epoch up to ``since`` (unbounded integer; stored as 32 bytes).
    points: int = 0


@dataclass(frozen=True, slots=True)
class MiningRelease:
    """Shares unbonded from the programme, returned to ``address`` at the queue's height."""

    address: bytes
    symbol: str
    shares: int


POINTS_BYTES = 32


@dataclass(frozen=True, slots=True)
class StandingOffer:
    """A provider's standing offer (``protocol.ledger.availability``), keyed by the hash of the
    ``offer_stand`` that posted it."""

    provider: bytes
    #: The provider's account key (an accepted take's escrow verifies receipts with it).
    provider_key: bytes
    #: The key of the provider's node, which answers challenges.
    node_key: bytes
    gpu_model: str
    gpu_count: int
    price: int
    collateral: int
    start: int
    end: int
    #: Standing blocks up to this height were counted in an earlier epoch's payout.
    credited_until: int
    #: A missed challenge or a refused take this epoch: no availability reward for it.
    forfeited: bool = False
    #: The open challenge: its seed (the challenge transaction's hash), deadline, challenger and
    #: deposit; ``seed == b""`` when none is open.
    seed: bytes = b""
    deadline: int = 0
    challenger: bytes = b""
    deposit: int = 0
    #: The unit of ``price``: "" for DCT, else a registered asset's symbol (a stable unit).
    quote: str = ""


@dataclass(frozen=True, slots=True)
class Take:
    """A requester's purchase of a standing offer, waiting for the provider to accept it."""

    take_id: bytes
    requester: bytes
    requester_key: bytes
    gpus: int
    gpu_seconds: int
    max_cost: int
    deadline: int
    #: DCT base units per GPU-second, fixed when the take was made (for an offer quoted in an
    #: asset: from the pool's time-weighted price then); the escrow it becomes pays this.
    price: int


@dataclass(frozen=True, slots=True)
class LiquidityTotals:
    """What the liquidity maps hold, for the supply equation."""

    dct: int


def sections(state: LedgerState) -> list[tuple[str, list[list[Any]]]]:
    return [
        (
            "assets",
            [[s, a.issuer, a.supply, a.proposal, a.active] for s, a in state.assets.sorted_items()],
        ),
        ("holdings", [[a, d, amount] for (a, d), amount in state.holdings.sorted_items()]),
        (
            "pools",
            [
                [s, p.dct, p.asset, p.shares, p.last_height, [list(m) for m in p.marks]]
                for s, p in state.pools.sorted_items()
            ],
        ),
        (
            "mining",
            [
                [a, s, m.shares, m.since, m.points.to_bytes(POINTS_BYTES, "big")]
                for (a, s), m in state.mining.sorted_items()
            ],
        ),
        (
            "offers",
            [
                [o, x.provider, x.provider_key, x.node_key, x.gpu_model, x.gpu_count, x.price]
                + [x.collateral, x.start, x.end, x.credited_until, x.forfeited]
                + [x.seed, x.deadline, x.challenger, x.deposit, x.quote]
                for o, x in state.offers.sorted_items()
            ],
        ),
        (
            "takes",
            [
                [o, t.take_id, t.requester, t.requester_key, t.gpus, t.gpu_seconds, t.max_cost, t.deadline]
                + [t.price]
                for o, t in state.takes.sorted_items()
            ],
        ),
        (
            "mining_unbonding",
            [
                [h, [[r.address, r.symbol, r.shares] for r in rs]]
                for h, rs in state.mining_unbonding.sorted_items()
            ],
        ),
    ]


def check_invariants(state: LedgerState) -> LiquidityTotals:
    """Every asset's supply is what holdings and its pool hold; every pool's shares are what
    holders hold, the mining programme holds (bonded and unbonding) and the locked shares; pools
    are never empty. Returns the DCT in pools and in the mining programme's pot."""
    held: dict[str, int] = {}
    for (_, denom), amount in state.holdings.sorted_items():
        if not 0 < amount <= MAX_AMOUNT:
            raise InvariantError(f"a holding of {denom} is out of range: {amount}")
        held[denom] = held.get(denom, 0) + amount
    for (_, symbol), stake in state.mining.sorted_items():
        if stake.shares < 0 or stake.points < 0 or (stake.shares == 0 and stake.points == 0):
            raise InvariantError("a mining bond without shares or weight")
        if not 0 <= stake.points < 2 ** (8 * POINTS_BYTES) or stake.since > state.height:
            raise InvariantError("a mining bond's weight or start is out of range")
        denom = share_denom(symbol)
        held[denom] = held.get(denom, 0) + stake.shares
    for height, releases in state.mining_unbonding.sorted_items():
        if height <= state.height or not releases:
            raise InvariantError("a mining release that is overdue or empty")
        for release in releases:
            if release.shares <= 0:
                raise InvariantError("a mining release of no shares")
            denom = share_denom(release.symbol)
            held[denom] = held.get(denom, 0) + release.shares
    dct = state.vars["mining_pool"] + state.vars["availability_pool"]
    for _, offer in state.offers.sorted_items():
        if (
            offer.collateral < 0
            or offer.deposit < 0
            or offer.credited_until > state.height
            or bool(offer.seed) != bool(offer.challenger)
        ):
            raise InvariantError("a standing offer out of range or with half a challenge")
        dct += offer.collateral + offer.deposit
    for offer_id, take in state.takes.sorted_items():
        if offer_id not in state.offers or take.max_cost <= 0:
            raise InvariantError("a take of no offer, or of nothing")
        dct += take.max_cost
    for symbol, pool in state.pools.sorted_items():
        asset = state.assets.get(symbol)
        if asset is None or not asset.active:
            raise InvariantError(f"a pool of {symbol}, which is not a registered asset")
        if pool.dct <= 0 or pool.asset <= 0 or pool.shares < LOCKED_SHARES:
            raise InvariantError(f"the {symbol} pool is empty")
        shares = share_denom(symbol)
        if held.pop(shares, 0) + LOCKED_SHARES != pool.shares:
            raise InvariantError(f"{shares} holdings do not add up to the pool's shares")
        held[symbol] = held.get(symbol, 0) + pool.asset
        dct += pool.dct
        if list(pool.marks) != sorted(set(pool.marks)) or any(
            h > pool.last_height + 1 for h, _ in pool.marks
        ):
            raise InvariantError(f"the {symbol} pool's price marks are out of order")
    for symbol, asset in state.assets.sorted_items():
        if held.pop(symbol, 0) != asset.supply:
            raise InvariantError(f"{symbol} holdings do not add up to its supply")
        if not asset.active and asset.supply:
            raise InvariantError(f"{symbol} is not registered yet but was minted")
    if held:
        raise InvariantError(f"holdings of unknown denominations: {sorted(held)}")
    return LiquidityTotals(dct=dct)


Rows = Callable[[dict[str, Any], str, tuple[Callable[[Any], bool], ...]], list[list[Any]]]


def restore(state: LedgerState, doc: dict[str, Any], rows: Rows) -> None:
    """Fill the liquidity maps from a snapshot's rows (``rows`` checks each row's cells)."""

    def uint(value: Any) -> bool:
        return type(value) is int and 0 <= value <= MAX_AMOUNT

    def symbol(value: Any) -> bool:
        return type(value) is str and 0 < len(value) <= 16

    def address(value: Any) -> bool:
        return type(value) is bytes and len(value) == 20

    def flag(value: Any) -> bool:
        return type(value) is bool

    def marks(value: Any) -> bool:
        return type(value) is list and all(
            type(m) is list and len(m) == 2 and uint(m[0]) and uint(m[1]) for m in value
        )

    for name, issuer, supply, proposal, active in rows(doc, "assets", (symbol, address, uint, uint, flag)):
        state.assets.set(name, Asset(issuer, supply, proposal, active))
    for owner, denom, amount in rows(doc, "holdings", (address, symbol, uint)):
        state.holdings.set((owner, denom), amount)
    for name, dct, asset, shares, last, steps in rows(doc, "pools", (symbol, uint, uint, uint, uint, marks)):
        state.pools.set(name, Pool(dct, asset, shares, last, tuple((h, p) for h, p in steps)))

    def points(value: Any) -> bool:
        return type(value) is bytes and len(value) == POINTS_BYTES

    def releases(value: Any) -> bool:
        return type(value) is list and all(
            type(r) is list and len(r) == 3 and address(r[0]) and symbol(r[1]) and uint(r[2]) for r in value
        )

    for owner, name, shares, since, weight in rows(doc, "mining", (address, symbol, uint, uint, points)):
        state.mining.set((owner, name), MiningStake(shares, since, int.from_bytes(weight, "big")))

    def blob(length: int | None) -> Callable[[Any], bool]:
        return lambda value: type(value) is bytes and (length is None or len(value) == length)

    def model(value: Any) -> bool:
        return type(value) is str and 0 < len(value) <= 64 and value.isprintable()

    offer_columns: tuple[Callable[[Any], bool], ...] = (blob(32), address, blob(32), blob(32), model)

    def quote(value: Any) -> bool:
        return value == "" or symbol(value)

    offer_columns += (*(uint,) * 6, flag, blob(None), uint, blob(None), uint, quote)
    for row in rows(doc, "offers", offer_columns):
        state.offers.set(row[0], StandingOffer(*row[1:]))
    take_columns = (blob(32), blob(32), address, blob(32), uint, uint, uint, uint, uint)
    for row in rows(doc, "takes", take_columns):
        state.takes.set(row[0], Take(*row[1:]))
    for height, entries in rows(doc, "mining_unbonding", (uint, releases)):
        state.mining_unbonding.set(height, tuple(MiningRelease(*entry) for entry in entries))
