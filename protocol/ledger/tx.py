"""Signed transactions: the envelope, its body, and one message record per transaction kind.

Wire form (canonical msgpack)::

    SignedTx = {"body": bytes, "public_key": bytes[32], "signature": bytes[64]}
    body     = {"chain_id": str, "fee": int, "kind": str, "msg": {...}, "nonce": int}

The signature covers ``sign_bytes(chain_id, "tx", body)``; the sender is the address of
``public_key``. The body travels as bytes so verification needs no re-encoding, and the
transaction hash is ``sha256`` of the whole envelope.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import ClassVar

from protocol.contracts import SignedContract, UsageReceipt
from protocol.crypto import ADDRESS_LEN, PUBLIC_KEY_LEN, SIGNATURE_LEN, PrivateKey, address_of, verify
from protocol.encoding import DecodeError, Record, decode, encode, sign_bytes
from protocol.ledger.errors import (
    InvalidAmount,
    InvalidCommission,
    InvalidVoteOption,
    MalformedTx,
    UnknownTxKind,
)
from protocol.units import DEC

TX_DOMAIN = "tx"
MAX_TX_BYTES = 64 * 1024
_MAX_AMOUNT = 2**63 - 1


def _positive_amount(value: int, field: str) -> None:
    if not 0 < value <= _MAX_AMOUNT:
        raise InvalidAmount(f"{field}: must be between 1 and {_MAX_AMOUNT} base units")


def key_proof_bytes(chain_id: str, operator: bytes) -> bytes:
    """What a consensus key signs to prove, in ``validator_create``, that the operator holds it."""
    return sign_bytes(chain_id, "validator_key", operator)


def prove_consensus_key(consensus_key: PrivateKey, chain_id: str, operator: bytes) -> bytes:
    """The ``key_proof`` of ``validator_create``: signed by the node's key, for the operator."""
    return consensus_key.sign(key_proof_bytes(chain_id, operator))


class Msg(Record):
    """A transaction's payload; ``KIND`` is its tag on the wire."""

    __slots__ = ()
    KIND: ClassVar[str]


@dataclass(frozen=True, slots=True)
class Transfer(Msg):
    KIND: ClassVar[str] = "transfer"
    to: bytes
    amount: int

    def __post_init__(self) -> None:
        if len(self.to) != ADDRESS_LEN:
            raise MalformedTx("transfer.to: an address is 20 bytes")
        _positive_amount(self.amount, "transfer.amount")


@dataclass(frozen=True, slots=True)
class Stake(Msg):
    """The operator of a validator bonds more of its own balance to it (a self-delegation)."""

    KIND: ClassVar[str] = "stake"
    amount: int

    def __post_init__(self) -> None:
        _positive_amount(self.amount, "stake.amount")


@dataclass(frozen=True, slots=True)
class Unstake(Msg):
    """The operator of a validator unbonds some of its self-delegation."""

    KIND: ClassVar[str] = "unstake"
    amount: int

    def __post_init__(self) -> None:
        _positive_amount(self.amount, "unstake.amount")


MAX_MONIKER = 64


def _check_moniker(moniker: str, field: str) -> None:
    if len(moniker) > MAX_MONIKER or not moniker.isprintable():
        raise MalformedTx(f"{field}: at most {MAX_MONIKER} printable characters")


def _check_address(value: bytes, field: str) -> None:
    if len(value) != ADDRESS_LEN:
        raise MalformedTx(f"{field}: an address is 20 bytes")


def _check_ratio(value: int, field: str) -> None:
    if not 0 <= value <= DEC:
        raise InvalidCommission(f"{field}: a ratio between 0 and 100%")


@dataclass(frozen=True, slots=True)
class ValidatorCreate(Msg):
    """Register the sender as a validator operator: the key its node votes with, proven by that
    key's signature over the operator's address (``key_proof``), its commission terms, and a
    first self-delegation of at least ``min_validator_stake``."""

    KIND: ClassVar[str] = "validator_create"
    consensus_key: bytes
    key_proof: bytes
    moniker: str
    commission: int
    max_commission: int
    max_commission_change: int
    amount: int

    def __post_init__(self) -> None:
        if len(self.consensus_key) != PUBLIC_KEY_LEN or len(self.key_proof) != SIGNATURE_LEN:
            raise MalformedTx("validator_create: a 32-byte consensus key and a 64-byte proof")
        _check_moniker(self.moniker, "validator_create.moniker")
        for name in ("commission", "max_commission", "max_commission_change"):
            _check_ratio(getattr(self, name), f"validator_create.{name}")
        if self.commission > self.max_commission:
            raise InvalidCommission("validator_create.commission: above max_commission")
        if self.max_commission_change > self.max_commission:
            raise InvalidCommission("validator_create.max_commission_change: above max_commission")
        _positive_amount(self.amount, "validator_create.amount")


@dataclass(frozen=True, slots=True)
class ValidatorEdit(Msg):
    """Change the sender's validator's moniker and commission (pass the current value to keep it)."""

    KIND: ClassVar[str] = "validator_edit"
    moniker: str
    commission: int

    def __post_init__(self) -> None:
        _check_moniker(self.moniker, "validator_edit.moniker")
        _check_ratio(self.commission, "validator_edit.commission")


@dataclass(frozen=True, slots=True)
class Delegate(Msg):
    KIND: ClassVar[str] = "delegate"
    validator: bytes  # the operator address
    amount: int

    def __post_init__(self) -> None:
        _check_address(self.validator, "delegate.validator")
        _positive_amount(self.amount, "delegate.amount")


@dataclass(frozen=True, slots=True)
class Undelegate(Msg):
    """Unbond ``amount`` of the sender's delegation; released ``unbonding_period`` blocks later."""

    KIND: ClassVar[str] = "undelegate"
    validator: bytes
    amount: int

    def __post_init__(self) -> None:
        _check_address(self.validator, "undelegate.validator")
        _positive_amount(self.amount, "undelegate.amount")


@dataclass(frozen=True, slots=True)
class Redelegate(Msg):
    """Move ``amount`` of a delegation to another validator at once (slashable for the source's
    infractions until ``unbonding_period`` has passed)."""

    KIND: ClassVar[str] = "redelegate"
    source: bytes
    destination: bytes
    amount: int

    def __post_init__(self) -> None:
        _check_address(self.source, "redelegate.source")
        _check_address(self.destination, "redelegate.destination")
        if self.source == self.destination:
            raise MalformedTx("redelegate: source and destination are the same validator")
        _positive_amount(self.amount, "redelegate.amount")


@dataclass(frozen=True, slots=True)
class Unjail(Msg):
    """The operator brings its validator, jailed for downtime, back once the jail time is over."""

    KIND: ClassVar[str] = "unjail"


@dataclass(frozen=True, slots=True)
class OpenEscrow(Msg):
    """Locks the requester's maximum cost and the provider's collateral for a signed contract."""

    KIND: ClassVar[str] = "escrow_open"
    contract: SignedContract


@dataclass(frozen=True, slots=True)
class Settle(Msg):
    """Settles an escrow against a usage receipt signed by both parties."""

    KIND: ClassVar[str] = "escrow_settle"
    receipt: UsageReceipt
    provider_sig: bytes
    requester_sig: bytes


@dataclass(frozen=True, slots=True)
class Refund(Msg):
    """The requester's refund after the deadline; slashes part of the provider's collateral."""

    KIND: ClassVar[str] = "escrow_refund"
    contract_hash: bytes

    def __post_init__(self) -> None:
        if len(self.contract_hash) != 32:
            raise MalformedTx("escrow_refund.contract_hash: a 32-byte hash")


@dataclass(frozen=True, slots=True)
class EscrowClaim(Msg):
    """The provider's unilateral claim: its own signed receipt, payable after the dispute window
    unless the requester disputes it (see ``protocol.ledger.escrow``)."""

    KIND: ClassVar[str] = "escrow_claim"
    receipt: UsageReceipt
    provider_sig: bytes


@dataclass(frozen=True, slots=True)
class EscrowFinalize(Msg):
    """The provider collects its pending claim once the dispute window has passed."""

    KIND: ClassVar[str] = "escrow_finalize"
    contract_hash: bytes

    def __post_init__(self) -> None:
        if len(self.contract_hash) != 32:
            raise MalformedTx("escrow_finalize.contract_hash: a 32-byte hash")


@dataclass(frozen=True, slots=True)
class EscrowDispute(Msg):
    """The requester contests the provider's pending claim within the dispute window."""

    KIND: ClassVar[str] = "escrow_dispute"
    contract_hash: bytes

    def __post_init__(self) -> None:
        if len(self.contract_hash) != 32:
            raise MalformedTx("escrow_dispute.contract_hash: a 32-byte hash")


@dataclass(frozen=True, slots=True)
class GovPropose(Msg):
    KIND: ClassVar[str] = "gov_propose"
    param: str
    value: int
    deposit: int

    def __post_init__(self) -> None:
        if not 0 < len(self.param) <= 64:
            raise MalformedTx("gov_propose.param: a parameter name")
        _positive_amount(self.deposit, "gov_propose.deposit")


VOTE_OPTIONS = ("yes", "no", "abstain", "veto")


@dataclass(frozen=True, slots=True)
class GovVote(Msg):
    KIND: ClassVar[str] = "gov_vote"
    proposal_id: int
    option: str

    def __post_init__(self) -> None:
        if self.option not in VOTE_OPTIONS:
            raise InvalidVoteOption(f"gov_vote.option: one of {', '.join(VOTE_OPTIONS)}")
        if not 1 <= self.proposal_id <= _MAX_AMOUNT:
            raise MalformedTx("gov_vote.proposal_id: proposals are numbered from 1")


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
    ``period`` blocks, backed by ``collateral``; ``node_key`` answers availability challenges."""

    KIND: ClassVar[str] = "offer_stand"
    node_key: bytes
    gpu_model: str
    gpu_count: int
    price: int
    period: int
    collateral: int

    def __post_init__(self) -> None:
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
    """Buy ``gpus`` GPUs of the offer for ``gpu_seconds`` each at its price (funds locked)."""

    KIND: ClassVar[str] = "offer_take"
    offer: bytes
    gpus: int
    gpu_seconds: int

    def __post_init__(self) -> None:
        _check_offer_id(self.offer, "offer_take.offer")
        if not 1 <= self.gpus <= MAX_STANDING_GPUS:
            raise MalformedTx(f"offer_take.gpus: 1 to {MAX_STANDING_GPUS}")
        _positive_amount(self.gpu_seconds, "offer_take.gpu_seconds")


@dataclass(frozen=True, slots=True)
class OfferAccept(OfferRef):
    """The provider accepts the pending take: it becomes an escrow (settled like a contract's)."""

    KIND: ClassVar[str] = "offer_accept"


@dataclass(frozen=True, slots=True)
class OfferRefused(OfferRef):
    """The taker records that the provider let the take's window pass: refund and slash."""

    KIND: ClassVar[str] = "offer_refused"


MSG_TYPES: dict[str, type[Msg]] = {
    cls.KIND: cls
    for cls in (
        Transfer,
        Stake,
        Unstake,
        ValidatorCreate,
        ValidatorEdit,
        Delegate,
        Undelegate,
        Redelegate,
        Unjail,
        OpenEscrow,
        Settle,
        Refund,
        EscrowClaim,
        EscrowFinalize,
        EscrowDispute,
        GovPropose,
        GovVote,
        AssetPropose,
        AssetMint,
        AssetSend,
        PoolAdd,
        PoolRemove,
        PoolSwap,
        MiningBond,
        MiningUnbond,
        OfferStand,
        OfferChallenge,
        OfferAnswer,
        OfferMiss,
        OfferWithdraw,
        OfferTake,
        OfferAccept,
        OfferRefused,
    )
}
_BODY_KEYS = ("chain_id", "fee", "kind", "msg", "nonce")
_ENVELOPE_KEYS = ("body", "public_key", "signature")


@dataclass(frozen=True, slots=True)
class Tx:
    """A decoded transaction. Its signature is not checked until :meth:`verify_signature`."""

    raw: bytes
    hash: bytes
    sender: bytes
    public_key: bytes
    signature: bytes
    body: bytes
    chain_id: str
    nonce: int
    fee: int
    msg: Msg

    def verify_signature(self) -> bool:
        return verify(self.public_key, self.signature, sign_bytes(self.chain_id, TX_DOMAIN, self.body))


def decode_tx(raw: bytes) -> Tx:
    """Decode a signed transaction's envelope and body. Raises :class:`MalformedTx` only."""
    if len(raw) > MAX_TX_BYTES:
        raise MalformedTx(f"transaction larger than {MAX_TX_BYTES} bytes")
    try:
        envelope = decode(raw)
        if type(envelope) is not dict or tuple(envelope) != _ENVELOPE_KEYS:
            raise DecodeError("a transaction is a map of body, public_key, signature")
        body, public_key, signature = envelope["body"], envelope["public_key"], envelope["signature"]
        if type(body) is not bytes or type(public_key) is not bytes or type(signature) is not bytes:
            raise DecodeError("body, public_key and signature are bytes")
        if len(public_key) != PUBLIC_KEY_LEN or len(signature) != SIGNATURE_LEN:
            raise DecodeError("public_key is 32 bytes and signature 64")
        fields = decode(body)
        if type(fields) is not dict or tuple(fields) != _BODY_KEYS:
            raise DecodeError(f"a transaction body has exactly the fields {', '.join(_BODY_KEYS)}")
        chain_id, fee, kind, msg, nonce = (fields[k] for k in _BODY_KEYS)
        if type(chain_id) is not str or type(kind) is not str:
            raise DecodeError("chain_id and kind are strings")
        if type(fee) is not int or type(nonce) is not int or not 0 <= fee <= _MAX_AMOUNT:
            raise DecodeError(f"fee is an int between 0 and {_MAX_AMOUNT}")
        if not 1 <= nonce <= _MAX_AMOUNT:
            raise DecodeError(f"nonce is an int between 1 and {_MAX_AMOUNT}")
        msg_type = MSG_TYPES.get(kind)
        if msg_type is None:
            raise UnknownTxKind(f"unknown transaction kind {kind!r}")
        message = msg_type.from_wire(msg)
    except DecodeError as exc:
        raise MalformedTx(f"malformed transaction: {exc.message}") from None
    return Tx(
        raw=raw,
        hash=hashlib.sha256(raw).digest(),
        sender=address_of(public_key),
        public_key=public_key,
        signature=signature,
        body=body,
        chain_id=chain_id,
        nonce=nonce,
        fee=fee,
        msg=message,
    )


def sign_tx(key: PrivateKey, chain_id: str, nonce: int, fee: int, msg: Msg) -> bytes:
    """Build and sign a transaction; returns the bytes to submit."""
    body = encode({"chain_id": chain_id, "fee": fee, "kind": msg.KIND, "msg": msg.to_wire(), "nonce": nonce})
    signature = key.sign(sign_bytes(chain_id, TX_DOMAIN, body))
    return encode({"body": body, "public_key": key.public_key.raw, "signature": signature})
