"""Messages of the liquidity mechanisms: registered assets and the DCT/asset pool
(protocol.ledger.pool), liquidity mining (protocol.ledger.mining) and standing offers
(protocol.ledger.availability). Registered with the others in protocol.ledger.tx.MSG_TYPES."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from protocol.crypto import PUBLIC_KEY_LEN, SIGNATURE_LEN
from protocol.encoding import sign_bytes
from protocol.ledger.errors import InvalidAmount, MalformedTx
from protocol.ledger.msg import MAX_MSG_AMOUNT as _MAX_AMOUNT
from protocol.ledger.msg import Msg
from protocol.ledger.msg import check_address as _check_address
from protocol.ledger.msg import check_moniker as _check_moniker
from protocol.ledger.msg import positive_amount as _positive_amount

# --- liquidity: assets and the pool (protocol.ledger.pool) --------------------------------------
#: An asset symbol: 2 to 10 capitals and digits, starting with a capital ("TUSD").
MAX_SYMBOL = 10
MAX_DENOM = MAX_SYMBOL + 3  # "lp:" + symbol


def _check_symbol(value: str, field: str) -> None:
    if not (2 <= len(value) <= MAX_SYMBOL and value.isascii() and value.isalnum() and value.isupper()):
        raise MalformedTx(f"{field}: 2 to {MAX_SYMBOL} capital letters and digits")
    if not value[0].isalpha() or value == "DCT":
        raise MalformedTx(f"{field}: starts with a letter and is not DCT")


def _check_denom(value: str, field: str) -> None:
    _check_symbol(value.removeprefix("lp:"), field)


def _non_negative(value: int, field: str) -> None:
    if not 0 <= value <= _MAX_AMOUNT:
        raise InvalidAmount(f"{field}: between 0 and {_MAX_AMOUNT} base units")


@dataclass(frozen=True, slots=True)
class AssetPropose(Msg):
    """Propose to register an asset issued by the sender (a governance proposal with a deposit;
    the asset exists once it passes)."""

    KIND: ClassVar[str] = "asset_propose"
    symbol: str
    deposit: int

    def __post_init__(self) -> None:
        _check_symbol(self.symbol, "asset_propose.symbol")
        _positive_amount(self.deposit, "asset_propose.deposit")


@dataclass(frozen=True, slots=True)
class AssetMint(Msg):
    """The issuer of a registered asset creates ``amount`` of it for ``to``."""

    KIND: ClassVar[str] = "asset_mint"
    symbol: str
    to: bytes
    amount: int

    def __post_init__(self) -> None:
        _check_symbol(self.symbol, "asset_mint.symbol")
        _check_address(self.to, "asset_mint.to")
        _positive_amount(self.amount, "asset_mint.amount")


@dataclass(frozen=True, slots=True)
class AssetSend(Msg):
    """Transfer a registered asset or pool shares (``lp:SYMBOL``)."""

    KIND: ClassVar[str] = "asset_send"
    denom: str
    to: bytes
    amount: int

    def __post_init__(self) -> None:
        _check_denom(self.denom, "asset_send.denom")
        _check_address(self.to, "asset_send.to")
        _positive_amount(self.amount, "asset_send.amount")


@dataclass(frozen=True, slots=True)
class PoolAdd(Msg):
    """Deposit at most ``dct`` and ``asset`` into the DCT/``symbol`` pool for at least
    ``min_shares`` shares (the first deposit sets the price)."""

    KIND: ClassVar[str] = "pool_add"
    symbol: str
    dct: int
    asset: int
    min_shares: int

    def __post_init__(self) -> None:
        _check_symbol(self.symbol, "pool_add.symbol")
        _positive_amount(self.dct, "pool_add.dct")
        _positive_amount(self.asset, "pool_add.asset")
        _non_negative(self.min_shares, "pool_add.min_shares")


@dataclass(frozen=True, slots=True)
class PoolRemove(Msg):
    """Redeem ``shares`` for at least ``min_dct`` and ``min_asset``."""

    KIND: ClassVar[str] = "pool_remove"
    symbol: str
    shares: int
    min_dct: int
    min_asset: int

    def __post_init__(self) -> None:
        _check_symbol(self.symbol, "pool_remove.symbol")
        _positive_amount(self.shares, "pool_remove.shares")
        _non_negative(self.min_dct, "pool_remove.min_dct")
        _non_negative(self.min_asset, "pool_remove.min_asset")


@dataclass(frozen=True, slots=True)
class PoolSwap(Msg):
    """Sell ``amount`` of DCT (``sell_dct``) or of the asset for at least ``min_out`` of the
    other, in a block no later than ``deadline``."""

    KIND: ClassVar[str] = "pool_swap"
    symbol: str
    sell_dct: bool
    amount: int
    min_out: int
    deadline: int

    def __post_init__(self) -> None:
        _check_symbol(self.symbol, "pool_swap.symbol")
        _positive_amount(self.amount, "pool_swap.amount")
        _positive_amount(self.min_out, "pool_swap.min_out")
        _positive_amount(self.deadline, "pool_swap.deadline")


@dataclass(frozen=True, slots=True)
class MiningBond(Msg):
    """Bond pool shares (of the DCT/``symbol`` pool) to the liquidity mining programme."""

    KIND: ClassVar[str] = "mining_bond"
    symbol: str
    shares: int

    def __post_init__(self) -> None:
        _check_symbol(self.symbol, "mining_bond.symbol")
        _positive_amount(self.shares, "mining_bond.shares")


@dataclass(frozen=True, slots=True)
class MiningUnbond(Msg):
    """Unbond pool shares from the programme; they return after ``mining_unbonding_period``."""

    KIND: ClassVar[str] = "mining_unbond"
    symbol: str
    shares: int

    def __post_init__(self) -> None:
        _check_symbol(self.symbol, "mining_unbond.symbol")
        _positive_amount(self.shares, "mining_unbond.shares")


# --- standing offers (protocol.ledger.availability) -----------------------------------------------
MAX_STANDING_GPUS = 1_024
MAX_STANDING_PERIOD = 1_000_000


def availability_bytes(chain_id: str, offer: bytes, seed: bytes) -> bytes:
    """What an offer's node key signs to answer the challenge ``seed``."""
    return sign_bytes(chain_id, "availability", offer + seed)


def _check_offer_id(value: bytes, field: str) -> None:
    if len(value) != 32:
        raise MalformedTx(f"{field}: an offer id is the 32-byte hash of its offer_stand")


@dataclass(frozen=True, slots=True)
class OfferStand(Msg):
    """Post a standing offer: ``gpu_count`` GPUs of ``gpu_model`` at ``price`` per GPU-second for
    ``period`` blocks, backed by ``collateral``; ``node_key`` answers availability challenges.

    ``quote`` is the unit of ``price``: empty for DCT base units, or a registered asset's symbol
    (a stable unit): the price is then in that asset's base units, and each take fixes the DCT it
    locks from the DCT/asset pool's time-weighted price (``protocol.ledger.availability``)."""

    KIND: ClassVar[str] = "offer_stand"
    node_key: bytes
    gpu_model: str
    gpu_count: int
    price: int
    period: int
    collateral: int
    quote: str = ""

    def __post_init__(self) -> None:
        if self.quote:
            _check_symbol(self.quote, "offer_stand.quote")
        if len(self.node_key) != PUBLIC_KEY_LEN:
            raise MalformedTx("offer_stand.node_key: a 32-byte public key")
        _check_moniker(self.gpu_model, "offer_stand.gpu_model")
        if not self.gpu_model:
            raise MalformedTx("offer_stand.gpu_model: a model name")
        if not 1 <= self.gpu_count <= MAX_STANDING_GPUS:
            raise MalformedTx(f"offer_stand.gpu_count: 1 to {MAX_STANDING_GPUS}")
        if not 1 <= self.period <= MAX_STANDING_PERIOD:
            raise MalformedTx(f"offer_stand.period: 1 to {MAX_STANDING_PERIOD} blocks")
        _positive_amount(self.price, "offer_stand.price")
        _positive_amount(self.collateral, "offer_stand.collateral")


@dataclass(frozen=True, slots=True)
class OfferRef(Msg):
    """Base of the messages that name one standing offer."""

    offer: bytes

    def __post_init__(self) -> None:
        _check_offer_id(self.offer, f"{self.KIND}.offer")


@dataclass(frozen=True, slots=True)
class OfferChallenge(OfferRef):
    """Ask the offer's node to prove it is there (with ``challenge_deposit``)."""

    KIND: ClassVar[str] = "offer_challenge"


@dataclass(frozen=True, slots=True)
class OfferAnswer(Msg):
    """The node's signature over the open challenge's seed (anyone may submit it)."""

    KIND: ClassVar[str] = "offer_answer"
    offer: bytes
    signature: bytes

    def __post_init__(self) -> None:
        _check_offer_id(self.offer, "offer_answer.offer")
        if len(self.signature) != SIGNATURE_LEN:
            raise MalformedTx("offer_answer.signature: 64 bytes")


@dataclass(frozen=True, slots=True)
class OfferMiss(OfferRef):
    """Record that the open challenge went unanswered past its window."""

    KIND: ClassVar[str] = "offer_miss"


@dataclass(frozen=True, slots=True)
class OfferWithdraw(OfferRef):
    """The provider takes back its collateral once the offer's period is over."""

    KIND: ClassVar[str] = "offer_withdraw"


@dataclass(frozen=True, slots=True)
class OfferTake(Msg):
    """Buy ``gpus`` GPUs of the offer for ``gpu_seconds`` each at its price (funds locked).

    ``max_price`` (DCT base units per GPU-second; 0: no limit) bounds what a take of an offer
    quoted in an asset may fix from the pool's time-weighted price: the slippage limit of a
    requester whose view of the average is a block old."""

    KIND: ClassVar[str] = "offer_take"
    offer: bytes
    gpus: int
    gpu_seconds: int
    max_price: int = 0

    def __post_init__(self) -> None:
        _check_offer_id(self.offer, "offer_take.offer")
        if not 1 <= self.gpus <= MAX_STANDING_GPUS:
            raise MalformedTx(f"offer_take.gpus: 1 to {MAX_STANDING_GPUS}")
        _positive_amount(self.gpu_seconds, "offer_take.gpu_seconds")
        _non_negative(self.max_price, "offer_take.max_price")


@dataclass(frozen=True, slots=True)
class OfferAccept(OfferRef):
    """The provider accepts the pending take: it becomes an escrow (settled like a contract's)."""

    KIND: ClassVar[str] = "offer_accept"


@dataclass(frozen=True, slots=True)
class OfferRefused(OfferRef):
    """The taker records that the provider let the take's window pass: refund and slash."""

    KIND: ClassVar[str] = "offer_refused"
