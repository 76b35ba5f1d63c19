"""Signed transactions: the envelope, its body, and one message record per transaction kind.

Wire form (canonical msgpack)::

    SignedTx = {"body": bytes, "public_key": bytes[32], "signature": bytes[64]}
    body     = {"chain_id": str, "fee": int, "kind": str, "msg": {...}, "nonce": int}

The signature covers ``sign_bytes(chain_id, "tx", body)``; the sender is the address of
``public_key``. The body travels as bytes so verification needs no re-encoding, and the
transaction hash is ``sha256`` of the whole envelope.

Nonces start at 1 and must be exactly ``account.nonce + 1`` (as Ethereum), which is
both replay protection and ordering. Kinds: ``transfer``; ``validator_create``, ``validator_edit``,
``delegate``, ``undelegate``, ``redelegate``, ``unjail``, ``stake``, ``unstake``; ``escrow_open``,
``escrow_settle``, ``escrow_refund``, ``escrow_claim``, ``escrow_finalize``, ``escrow_dispute``; ``grant``,
``grant_revoke``; ``gov_propose``, ``gov_vote``; ``asset_propose``, ``asset_mint``, ``asset_send``, ``pool_add``,
``pool_remove``, ``pool_swap``, ``mining_bond``, ``mining_unbond``; ``offer_stand``, ``offer_challenge``,
``offer_answer``, ``offer_miss``, ``offer_take``, ``offer_accept``, ``offer_refused``, ``offer_withdraw``
(``tx_liquidity.py``). A new kind needs a spend rule in the mempool and a
place in the simulator's independent model (``protocol/sim/model.py``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import ClassVar

from protocol.contracts import SignedContract, UsageReceipt
from protocol.crypto import ADDRESS_LEN, PUBLIC_KEY_LEN, SIGNATURE_LEN, PrivateKey, address_of, verify
from protocol.encoding import DecodeError, decode, encode, sign_bytes
from protocol.ledger.errors import (
    InvalidCommission,
    InvalidGrant,
    InvalidVoteOption,
    MalformedTx,
    UnknownTxKind,
)
from protocol.ledger.msg import MAX_MONIKER as MAX_MONIKER
from protocol.ledger.msg import MAX_MSG_AMOUNT as _MAX_AMOUNT
from protocol.ledger.msg import Msg as Msg
from protocol.ledger.msg import check_address as _check_address
from protocol.ledger.msg import check_moniker as _check_moniker
from protocol.ledger.msg import positive_amount as _positive_amount
from protocol.ledger.tx_liquidity import MAX_DENOM as MAX_DENOM
from protocol.ledger.tx_liquidity import MAX_STANDING_GPUS as MAX_STANDING_GPUS
from protocol.ledger.tx_liquidity import MAX_STANDING_PERIOD as MAX_STANDING_PERIOD
from protocol.ledger.tx_liquidity import MAX_SYMBOL as MAX_SYMBOL
from protocol.ledger.tx_liquidity import AssetMint as AssetMint
from protocol.ledger.tx_liquidity import AssetPropose as AssetPropose
from protocol.ledger.tx_liquidity import AssetSend as AssetSend
from protocol.ledger.tx_liquidity import MiningBond as MiningBond
from protocol.ledger.tx_liquidity import MiningUnbond as MiningUnbond
from protocol.ledger.tx_liquidity import OfferAccept as OfferAccept
from protocol.ledger.tx_liquidity import OfferAnswer as OfferAnswer
from protocol.ledger.tx_liquidity import OfferChallenge as OfferChallenge
from protocol.ledger.tx_liquidity import OfferMiss as OfferMiss
from protocol.ledger.tx_liquidity import OfferRef as OfferRef
from protocol.ledger.tx_liquidity import OfferRefused as OfferRefused
from protocol.ledger.tx_liquidity import OfferStand as OfferStand
from protocol.ledger.tx_liquidity import OfferTake as OfferTake
from protocol.ledger.tx_liquidity import OfferWithdraw as OfferWithdraw
from protocol.ledger.tx_liquidity import PoolAdd as PoolAdd
from protocol.ledger.tx_liquidity import PoolRemove as PoolRemove
from protocol.ledger.tx_liquidity import PoolSwap as PoolSwap
from protocol.ledger.tx_liquidity import availability_bytes as availability_bytes
from protocol.units import DEC

TX_DOMAIN = "tx"
MAX_TX_BYTES = 64 * 1024


def key_proof_bytes(chain_id: str, operator: bytes) -> bytes:
    """What a consensus key signs to prove, in ``validator_create``, that the operator holds it."""
    return sign_bytes(chain_id, "validator_key", operator)


def prove_consensus_key(consensus_key: PrivateKey, chain_id: str, operator: bytes) -> bytes:
    """The ``key_proof`` of ``validator_create``: signed by the node's key, for the operator."""
    return consensus_key.sign(key_proof_bytes(chain_id, operator))


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


#: The message kinds a grant may authorize its grantee to send on the granter's account: only
#: opening escrows for jobs (the grantee's contracts that name the granter as payer). Data, so a
#: new kind is one line here and one check where it spends.
GRANTABLE_KINDS = ("escrow_open",)
#: How far ahead a grant may expire: about 46 days at 400 ms blocks. A spending authorization
#: should lapse by itself; an open-ended one is a key the granter forgot it gave away.
MAX_GRANT_BLOCKS = 10_000_000


@dataclass(frozen=True, slots=True)
class Grant(Msg):
    """The sender (the granter, a wallet) authorizes ``grantee`` (a node's account) to spend up to
    ``spend_limit`` base units of the granter's balance, through messages of ``kinds`` only, at
    heights up to ``expiry_height`` (Cosmos ``authz``/``feegrant``). Replaces any earlier grant to
    the same grantee (its spent amount starts again from 0)."""

    KIND: ClassVar[str] = "grant"
    grantee: bytes
    spend_limit: int
    expiry_height: int
    kinds: tuple[str, ...]

    def __post_init__(self) -> None:
        _check_address(self.grantee, "grant.grantee")
        _positive_amount(self.spend_limit, "grant.spend_limit")
        if not 1 <= self.expiry_height <= _MAX_AMOUNT:
            raise InvalidGrant("grant.expiry_height: a height between 1 and 2^63 - 1")
        if not self.kinds or any(kind not in GRANTABLE_KINDS for kind in self.kinds):
            raise InvalidGrant(f"grant.kinds: one or more of {', '.join(GRANTABLE_KINDS)}")
        if list(self.kinds) != sorted(set(self.kinds)):
            raise InvalidGrant("grant.kinds: sorted, each kind once")


@dataclass(frozen=True, slots=True)
class GrantRevoke(Msg):
    """The sender withdraws its grant to ``grantee``; escrows already opened stay open."""

    KIND: ClassVar[str] = "grant_revoke"
    grantee: bytes

    def __post_init__(self) -> None:
        _check_address(self.grantee, "grant_revoke.grantee")


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
        Grant,
        GrantRevoke,
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
