"""Job contracts and usage receipts: the two-party-signed documents the ledger escrows and settles.

A contract's hash is ``sha256`` of its canonical terms; both parties sign
``sign_bytes(chain_id, "contract", terms)``, so a contract is valid only with both signatures over
the same canonical bytes. A receipt names the contract by hash and is signed under the
``"receipt"`` domain by the provider and, normally, countersigned by the requester.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import ClassVar

from protocol.crypto import ADDRESS_LEN, PUBLIC_KEY_LEN, PrivateKey, address_of, verify
from protocol.encoding import Record, sign_bytes
from protocol.errors import ProtocolError

HASH_LEN = 32
#: The longest asset symbol (``protocol.ledger.tx_liquidity.MAX_SYMBOL``).
MAX_QUOTE_SYMBOL = 10
CONTRACT_DOMAIN = "contract"
RECEIPT_DOMAIN = "receipt"


class ContractFormatError(ProtocolError):
    """A contract or receipt whose fields are out of range."""

    code = 4001


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ContractFormatError(message)


def _is_uint(value: int) -> bool:
    return type(value) is int and 0 <= value < 2**63


def is_asset_symbol(value: str) -> bool:
    """An asset symbol as the ledger registers them (``protocol.ledger.tx_liquidity``)."""
    return (
        2 <= len(value) <= MAX_QUOTE_SYMBOL
        and value.isascii()
        and value.isalnum()
        and value.isupper()
        and value[0].isalpha()
        and value != "DCT"
    )


@dataclass(frozen=True, slots=True)
class ContractTerms(Record):
    """What both parties agree to. ``max_cost`` is the most the requester locks in escrow.

    **Quoted in an asset.** With ``quote`` set (a registered asset's symbol, "TUSD"), the
    provider's price is ``quote_price_per_gpu_second`` base units of that asset, and
    ``price_per_gpu_second`` is the requester's cap: the most DCT base units per GPU-second it
    pays. The escrow fixes the DCT price from the DCT/asset pool's time-weighted price when it
    opens, and refuses to open above the cap (``protocol.ledger.quoted``); ``max_cost`` is then
    the most the escrow can lock, and it locks the fixed price x ``max_gpu_seconds``. Both quote
    fields are left off the wire when unset, so a contract priced in DCT keeps its bytes and hash.
    """

    OMITTED_AT_DEFAULT: ClassVar[tuple[str, ...]] = ("quote", "quote_price_per_gpu_second")

    chain_id: str
    requester: bytes  # Ed25519 public key
    provider: bytes  # Ed25519 public key
    job_hash: bytes  # sha256 of the canonical job spec
    gpu_uuids: tuple[str, ...]
    price_per_gpu_second: int
    max_gpu_seconds: int
    collateral: int
    deadline_height: int
    salt: bytes  # makes every contract unique, even for identical jobs
    #: The account that funds the escrow and gets back what is not paid: empty when the
    #: requester pays itself; a wallet's address when the wallet pays for its node's job
    #: (through a grant, or by signing the escrow itself; see ``protocol.ledger.escrow``).
    payer: bytes = b""
    #: The asset the provider quoted in: "" for DCT, else a registered asset's symbol.
    quote: str = ""
    #: The provider's price in ``quote`` base units per GPU-second; 0 when priced in DCT.
    quote_price_per_gpu_second: int = 0

    def __post_init__(self) -> None:
        _check(len(self.requester) == PUBLIC_KEY_LEN, "contract.requester: a 32-byte public key")
        _check(len(self.provider) == PUBLIC_KEY_LEN, "contract.provider: a 32-byte public key")
        _check(self.requester != self.provider, "contract.provider: must differ from the requester")
        _check(len(self.job_hash) == HASH_LEN, "contract.job_hash: a 32-byte hash")
        _check(0 < len(self.gpu_uuids) <= 64, "contract.gpu_uuids: between 1 and 64 GPUs")
        _check(len(set(self.gpu_uuids)) == len(self.gpu_uuids), "contract.gpu_uuids: duplicates")
        _check(_is_uint(self.price_per_gpu_second), "contract.price_per_gpu_second: out of range")
        _check(
            _is_uint(self.max_gpu_seconds) and self.max_gpu_seconds > 0,
            "contract.max_gpu_seconds: positive",
        )
        _check(_is_uint(self.max_cost), "contract.max_cost: price x GPU-seconds overflows")
        _check(_is_uint(self.collateral), "contract.collateral: out of range")
        _check(_is_uint(self.deadline_height), "contract.deadline_height: out of range")
        _check(0 < len(self.salt) <= 32, "contract.salt: 1 to 32 bytes")
        _check(
            self.payer == b"" or (len(self.payer) == ADDRESS_LEN and self.payer != self.requester_address),
            "contract.payer: empty (the requester pays) or another account's 20-byte address",
        )
        if self.quote or self.quote_price_per_gpu_second:
            _check(
                is_asset_symbol(self.quote),
                "contract.quote: a registered asset's symbol (2 to 10 capitals and digits)",
            )
            _check(
                _is_uint(self.quote_price_per_gpu_second) and self.quote_price_per_gpu_second > 0,
                "contract.quote_price_per_gpu_second: positive, in the asset's base units",
            )
            _check(
                self.price_per_gpu_second > 0,
                "contract.price_per_gpu_second: a quoted contract's DCT cap is positive",
            )

    @property
    def quoted(self) -> bool:
        """Priced in an asset: the escrow fixes the DCT price (at most ``price_per_gpu_second``)."""
        return bool(self.quote)

    @property
    def max_cost(self) -> int:
        return self.price_per_gpu_second * self.max_gpu_seconds

    @property
    def requester_address(self) -> bytes:
        return address_of(self.requester)

    @property
    def provider_address(self) -> bytes:
        return address_of(self.provider)

    @property
    def paying_address(self) -> bytes:
        """The account whose balance funds the escrow: the payer, else the requester."""
        return self.payer or self.requester_address

    def contract_hash(self) -> bytes:
        return hashlib.sha256(self.encode()).digest()

    def sign(self, key: PrivateKey) -> bytes:
        return key.sign(sign_bytes(self.chain_id, CONTRACT_DOMAIN, self.encode()))

    def verify(self, public_key: bytes, signature: bytes) -> bool:
        return verify(public_key, signature, sign_bytes(self.chain_id, CONTRACT_DOMAIN, self.encode()))


@dataclass(frozen=True, slots=True)
class SignedContract(Record):
    terms: ContractTerms
    requester_sig: bytes
    provider_sig: bytes

    def is_fully_signed(self) -> bool:
        return self.terms.verify(self.terms.requester, self.requester_sig) and self.terms.verify(
            self.terms.provider, self.provider_sig
        )


#: How a job's run ended, as the provider's executor classified it and the receipt signs it.
#: ``completed``: exited by itself with status 0. ``job_failed``: a non-zero exit or a signal.
#: ``timed_out``: still running at ``max_runtime_s``. ``limit_exceeded``: stopped at (or failed
#: on) a resource limit, named in ``limit``. ``provider_error``: the sandbox or the node failed,
#: or the job never started: not the job's fault. Settlement pays by this (see
#: :data:`protocol.ledger.escrow.SETTLEMENT_RULES`).
OUTCOME_COMPLETED = "completed"
OUTCOME_JOB_FAILED = "job_failed"
OUTCOME_TIMED_OUT = "timed_out"
OUTCOME_LIMIT_EXCEEDED = "limit_exceeded"
OUTCOME_PROVIDER_ERROR = "provider_error"
OUTCOMES = (
    OUTCOME_COMPLETED,
    OUTCOME_JOB_FAILED,
    OUTCOME_TIMED_OUT,
    OUTCOME_LIMIT_EXCEEDED,
    OUTCOME_PROVIDER_ERROR,
)
#: The resource limits a ``limit_exceeded`` receipt may name.
LIMIT_NAMES = ("cpu", "disk", "memory", "processes")


@dataclass(frozen=True, slots=True)
class UsageReceipt(Record):
    """What the provider metered and how the run ended, signed by the provider (and normally
    countersigned by the requester).

    ``gpu_ms``: GPU-milliseconds held (wall milliseconds, rounded up, times the GPUs sold), so any
    run that held a GPU meters at least 1. Settlement pays by ``outcome``: the metered time at the
    contract's price for the job's own ending (capped at the maximum cost), nothing and a slashed
    collateral for a ``provider_error``. The fields must agree with each other: ``completed``
    means exit status 0 and ``job_failed`` a non-zero one; a ``provider_error`` meters nothing;
    ``limit`` names the limit of a ``limit_exceeded`` run and is empty otherwise.
    """

    chain_id: str
    contract_hash: bytes
    outcome: str
    gpu_ms: int
    exit_status: int
    output_hash: bytes
    limit: str = ""

    def __post_init__(self) -> None:
        _check(len(self.contract_hash) == HASH_LEN, "receipt.contract_hash: a 32-byte hash")
        _check(self.outcome in OUTCOMES, f"receipt.outcome: one of {', '.join(OUTCOMES)}")
        _check(_is_uint(self.gpu_ms), "receipt.gpu_ms: out of range")
        _check(-(2**31) <= self.exit_status < 2**31, "receipt.exit_status: out of range")
        _check(len(self.output_hash) == HASH_LEN, "receipt.output_hash: a 32-byte hash")
        if self.outcome == OUTCOME_COMPLETED:
            _check(self.exit_status == 0, "receipt.exit_status: a completed job exited with status 0")
        if self.outcome == OUTCOME_JOB_FAILED:
            _check(self.exit_status != 0, "receipt.exit_status: a failed job has a non-zero status")
        if self.outcome == OUTCOME_PROVIDER_ERROR:
            _check(self.gpu_ms == 0, "receipt.gpu_ms: a provider error meters nothing")
        if self.outcome == OUTCOME_LIMIT_EXCEEDED:
            _check(self.limit in LIMIT_NAMES, f"receipt.limit: one of {', '.join(LIMIT_NAMES)}")
        else:
            _check(self.limit == "", "receipt.limit: only a limit_exceeded receipt names a limit")

    @property
    def gpu_seconds(self) -> int:
        """GPU-seconds, rounded up from :attr:`gpu_ms` (for people and the epoch's work tally)."""
        return -(-self.gpu_ms // 1000)

    def sign(self, key: PrivateKey) -> bytes:
        return key.sign(sign_bytes(self.chain_id, RECEIPT_DOMAIN, self.encode()))

    def verify(self, public_key: bytes, signature: bytes) -> bool:
        return verify(public_key, signature, sign_bytes(self.chain_id, RECEIPT_DOMAIN, self.encode()))
