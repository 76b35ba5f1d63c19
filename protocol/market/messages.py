"""The messages of the market's negotiation protocol, ``/dcent/market/1.0.0``, and their framing.

One negotiation is one stream, requester to provider::

    requester                                   provider
    QuoteRequest(spec, requester, nonce, deadline) ->
                                                <- Quote(request hash, ContractTerms, expiry; signed)
                                                   or Refusal(code, message)
    ContractProposal(the quote's terms, requester's signature) ->
                                                <- ContractAccepted(contract hash, provider's signature)
                                                   or Refusal(code, message)

A quote carries the complete :class:`~protocol.contracts.ContractTerms` the provider will sign,
so "the contract is exactly the quote" is an equality of canonical bytes. The request's nonce is
the contract's salt: every negotiation yields a contract with its own hash. The provider signs
``sign_bytes(chain_id, "quote", body)``; both parties sign the terms under the ``"contract"``
domain, as the ledger checks them. A refusal's code is the stable code of the market error the
provider refused with (:mod:`protocol.market.errors`), so both sides name failures alike.

Each message travels as the canonical encoding of ``{"body": <record>, "type": <tag>}``; the
host frames it on the stream (one length-prefixed frame per message).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TypeAlias

from protocol.contracts import ContractTerms
from protocol.crypto import ADDRESS_LEN, PUBLIC_KEY_LEN, SIGNATURE_LEN, PrivateKey, verify
from protocol.encoding import DecodeError, Record, decode, encode, sign_bytes
from protocol.errors import ProtocolError
from protocol.market.errors import InvalidMarketMessage, MalformedMessage
from protocol.market.jobspec import JobSpec

MARKET_PROTOCOL_ID = "/dcent/market/1.0.0"
QUOTE_DOMAIN = "quote"
MIN_NONCE_LEN = 16
MAX_NONCE_LEN = 32
MAX_CHAIN_ID_LEN = 64
MAX_REFUSAL_MESSAGE_LEN = 512
#: A request carries the spec with its inputs (up to 1 MiB, base64-free on the wire).
MAX_MESSAGE_BYTES = 2 * 1024 * 1024
HASH_LEN = 32
_INT63_MAX = 2**63 - 1


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise InvalidMarketMessage(message)


@dataclass(frozen=True, slots=True)
class QuoteRequest(Record):
    """A requester asks one provider for a quote to run ``spec``."""

    chain_id: str
    spec: JobSpec
    #: The requester's Ed25519 public key: it signs the contract and pays the escrow.
    requester: bytes
    #: Random per negotiation (the host draws it); becomes the contract's salt.
    nonce: bytes
    #: The contract's deadline height: after it, an unsettled escrow can be refunded.
    deadline_height: int
    #: Who pays: empty for the requester itself, else a wallet's address (the contract's payer).
    payer: bytes = b""

    def __post_init__(self) -> None:
        _check(0 < len(self.chain_id) <= MAX_CHAIN_ID_LEN, "quote_request.chain_id: 1 to 64 characters")
        _check(len(self.requester) == PUBLIC_KEY_LEN, "quote_request.requester: a 32-byte public key")
        _check(
            MIN_NONCE_LEN <= len(self.nonce) <= MAX_NONCE_LEN,
            f"quote_request.nonce: {MIN_NONCE_LEN} to {MAX_NONCE_LEN} bytes",
        )
        _check(0 < self.deadline_height <= _INT63_MAX, "quote_request.deadline_height: positive")
        _check(len(self.payer) in (0, ADDRESS_LEN), "quote_request.payer: empty or a 20-byte address")

    def request_hash(self) -> bytes:
        return hashlib.sha256(self.encode()).digest()


@dataclass(frozen=True, slots=True)
class QuoteBody(Record):
    """What a provider signs: the contract terms it offers for one request, until an expiry."""

    request_hash: bytes
    terms: ContractTerms
    expires_at_ms: int

    def __post_init__(self) -> None:
        _check(len(self.request_hash) == HASH_LEN, "quote.request_hash: a 32-byte hash")
        _check(0 < self.expires_at_ms <= _INT63_MAX, "quote.expires_at_ms: positive")


@dataclass(frozen=True, slots=True)
class Quote(Record):
    body: QuoteBody
    provider_sig: bytes

    def __post_init__(self) -> None:
        _check(len(self.provider_sig) == SIGNATURE_LEN, f"quote.provider_sig: {SIGNATURE_LEN} bytes")

    @property
    def terms(self) -> ContractTerms:
        return self.body.terms

    @property
    def expires_at_ms(self) -> int:
        return self.body.expires_at_ms

    @property
    def request_hash(self) -> bytes:
        return self.body.request_hash

    def verify(self, chain_id: str) -> bool:
        """The signature is the terms' provider's over this body on ``chain_id``."""
        return verify(
            self.body.terms.provider,
            self.provider_sig,
            sign_bytes(chain_id, QUOTE_DOMAIN, self.body.encode()),
        )


def sign_quote(key: PrivateKey, body: QuoteBody) -> Quote:
    """The provider's signed quote, on the chain its terms name."""
    return Quote(body, key.sign(sign_bytes(body.terms.chain_id, QUOTE_DOMAIN, body.encode())))


@dataclass(frozen=True, slots=True)
class ContractProposal(Record):
    """The requester's signature on the quoted terms: a contract waiting for its countersignature."""

    terms: ContractTerms
    requester_sig: bytes

    def __post_init__(self) -> None:
        _check(len(self.requester_sig) == SIGNATURE_LEN, f"contract.requester_sig: {SIGNATURE_LEN} bytes")


@dataclass(frozen=True, slots=True)
class ContractAccepted(Record):
    """The provider's countersignature; with the proposal it makes a fully signed contract."""

    contract_hash: bytes
    provider_sig: bytes

    def __post_init__(self) -> None:
        _check(len(self.contract_hash) == HASH_LEN, "accepted.contract_hash: a 32-byte hash")
        _check(len(self.provider_sig) == SIGNATURE_LEN, f"accepted.provider_sig: {SIGNATURE_LEN} bytes")


@dataclass(frozen=True, slots=True)
class Refusal(Record):
    """No deal: ``code`` is the stable code of the error the sender refused with."""

    code: int
    message: str

    def __post_init__(self) -> None:
        _check(1000 <= self.code <= 9999, "refusal.code: a protocol error code, 1000 to 9999")
        _check(
            len(self.message) <= MAX_REFUSAL_MESSAGE_LEN and self.message.isprintable(),
            f"refusal.message: at most {MAX_REFUSAL_MESSAGE_LEN} printable characters",
        )

    @classmethod
    def from_error(cls, error: ProtocolError) -> Refusal:
        """The refusal that reports ``error`` to the peer (message shortened to fit)."""
        text = "".join(ch if ch.isprintable() else "?" for ch in error.message)
        return cls(error.code, text[:MAX_REFUSAL_MESSAGE_LEN])


MarketMessage: TypeAlias = QuoteRequest | Quote | ContractProposal | ContractAccepted | Refusal

MESSAGE_TYPES: dict[str, type[MarketMessage]] = {
    "quote_request": QuoteRequest,
    "quote": Quote,
    "contract_proposal": ContractProposal,
    "contract_accepted": ContractAccepted,
    "refusal": Refusal,
}
_TAGS: dict[type[MarketMessage], str] = {cls: tag for tag, cls in MESSAGE_TYPES.items()}


def encode_message(message: MarketMessage) -> bytes:
    """The canonical bytes of one market message, with its type tag."""
    return encode({"body": message.to_wire(), "type": _TAGS[type(message)]})


def decode_message(data: bytes) -> MarketMessage:
    """Decode one market message. Raises :class:`MalformedMessage` (a
    :class:`~protocol.encoding.DecodeError`), and nothing else, for any bad input."""
    if len(data) > MAX_MESSAGE_BYTES:
        raise MalformedMessage(f"message of {len(data)} bytes, at most {MAX_MESSAGE_BYTES}")
    try:
        value = decode(data)
        if type(value) is not dict or set(value) != {"body", "type"}:
            raise MalformedMessage("a market message is a map of body and type")
        tag = value["type"]
        message_type = MESSAGE_TYPES.get(tag) if type(tag) is str else None
        if message_type is None:
            raise MalformedMessage(f"unknown market message type {str(tag)[:40]!r}")
        return message_type.from_wire(value["body"])
    except MalformedMessage:
        raise
    except DecodeError as exc:
        raise MalformedMessage(f"malformed market message: {exc.message}") from None
