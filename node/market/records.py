"""A job as this node tracks it: one record per job, persisted in the store's ``jobs`` table.

The record is the node's bookkeeping, not protocol: it holds the signed documents (contract,
receipt, signatures) in their canonical encodings so a restarted node can finish what it started
(a requester still refunds at the deadline; a provider still claims what it delivered).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from node.market.errors import IllegalJobTransition
from protocol.contracts import SignedContract, UsageReceipt
from protocol.crypto import Address, address_of
from protocol.encoding import DecodeError, decode, encode
from protocol.ledger.escrow import SETTLEMENT_RULES, metered_pay
from protocol.market.jobspec import JobSpec


class JobState(enum.Enum):
    MATCHING = "matching"
    NEGOTIATING = "negotiating"
    CONTRACTED = "contracted"
    ESCROWED = "escrowed"
    RUNNING = "running"
    DELIVERED = "delivered"
    CLAIMED = "claimed"
    SETTLED = "settled"
    # Terminal failures.
    FAILED = "failed"
    REFUNDED = "refunded"
    DISPUTED = "disputed"
    CANCELLED = "cancelled"


TERMINAL = frozenset(
    {JobState.SETTLED, JobState.FAILED, JobState.REFUNDED, JobState.DISPUTED, JobState.CANCELLED}
)
#: The happy path, in order. A job only moves forward along it, and may skip ahead: messages
#: from the other side and blocks arrive in either order (a delivery can overtake the start
#: notice, an escrow can close while we still wait for our lane to see it open).
PROGRESS = (
    JobState.MATCHING,
    JobState.NEGOTIATING,
    JobState.CONTRACTED,
    JobState.ESCROWED,
    JobState.RUNNING,
    JobState.DELIVERED,
    JobState.CLAIMED,
    JobState.SETTLED,
)
#: Every legal move, as data: forward along PROGRESS, or to any terminal state from a live one;
#: nothing leaves a terminal state. MATCHING -> MATCHING is the stamp a new job gets.
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    state: frozenset(PROGRESS[index + 1 :]) | TERMINAL | ({state} if state is JobState.MATCHING else set())
    for index, state in enumerate(PROGRESS)
    if state not in TERMINAL
} | {state: frozenset() for state in TERMINAL}
REQUESTER = "requester"
PROVIDER = "provider"


def _payer_json(payer: bytes | None, requester: bytes | None) -> str | None:
    """Who pays for the job: the contract's payer, else the requester's own account."""
    if payer:
        return str(Address(payer))
    return str(Address(address_of(requester))) if requester else None


@dataclass
class JobRecord:
    job_id: str
    role: str
    spec: JobSpec
    created_ms: int
    state: JobState = JobState.MATCHING
    #: The counterpart's libp2p peer id (the provider's for a requester, and the reverse).
    peer_id: str = ""
    contract: SignedContract | None = None
    escrow_height: int = 0
    receipt: UsageReceipt | None = None
    provider_sig: bytes = b""
    requester_sig: bytes = b""
    claimed_height: int = 0
    settled_height: int = 0
    exit_status: int | None = None
    error_code: int = 0
    error_message: str = ""
    history: list[tuple[str, int]] = field(default_factory=list)
    #: A provider's outputs stored as blobs for this job, pinned until its contract closes.
    output_cids: list[bytes] = field(default_factory=list)
    #: The wallet asked to pay (empty: this node's account), until the contract names it; not
    #: stored (a job interrupted before its contract fails on restart).
    payer: bytes = b""
    #: The payer signs the escrow itself (it gave this node no grant): the node waits for it.
    payer_signs: bool = False
    #: DCT base units per GPU-second the open escrow pays (0 until seen): a contract quoted in
    #: an asset pays the price its escrow fixed, not its cap (``protocol.ledger.quoted``).
    escrow_price: int = 0

    @property
    def awaiting_payer(self) -> bool:
        """The contract is agreed and waits for its payer to sign and submit the escrow."""
        return self.payer_signs and self.state is JobState.CONTRACTED and self.contract is not None

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    @property
    def contract_hash(self) -> bytes | None:
        return self.contract.terms.contract_hash() if self.contract is not None else None

    def move(self, state: JobState, now_ms: int) -> None:
        if state not in TRANSITIONS[self.state]:
            raise IllegalJobTransition(f"job {self.job_id}: {self.state.value} -> {state.value}")
        self.state = state
        self.history.append((state.value, now_ms))

    def fail(self, state: JobState, code: int, message: str, now_ms: int) -> None:
        self.error_code, self.error_message = code, message
        self.move(state, now_ms)

    # --- persistence -------------------------------------------------------------------------
    def to_stored(self) -> bytes:
        return encode(
            {
                "job_id": self.job_id,
                "role": self.role,
                "spec": self.spec.encode(),
                "created_ms": self.created_ms,
                "state": self.state.value,
                "peer_id": self.peer_id,
                "contract": self.contract.encode() if self.contract else b"",
                "escrow_height": self.escrow_height,
                "receipt": self.receipt.encode() if self.receipt else b"",
                "provider_sig": self.provider_sig,
                "requester_sig": self.requester_sig,
                "claimed_height": self.claimed_height,
                "settled_height": self.settled_height,
                "exit_status": [] if self.exit_status is None else [self.exit_status],
                "error_code": self.error_code,
                "error_message": self.error_message,
                "history": [list(item) for item in self.history],
                "output_cids": list(self.output_cids),
                "escrow_price": self.escrow_price,
            }
        )

    @classmethod
    def from_stored(cls, data: bytes) -> JobRecord:
        """Raises :class:`~protocol.encoding.DecodeError` for a record this node did not write."""
        doc: Any = decode(data)
        if not isinstance(doc, dict):
            raise DecodeError("a job record is a map")
        return cls(
            job_id=doc["job_id"],
            role=doc["role"],
            spec=_stored_spec(doc["spec"]),
            created_ms=doc["created_ms"],
            state=JobState(doc["state"]),
            peer_id=doc["peer_id"],
            contract=SignedContract.decode(doc["contract"]) if doc["contract"] else None,
            escrow_height=doc["escrow_height"],
            receipt=UsageReceipt.decode(doc["receipt"]) if doc["receipt"] else None,
            provider_sig=doc["provider_sig"],
            requester_sig=doc["requester_sig"],
            claimed_height=doc["claimed_height"],
            settled_height=doc["settled_height"],
            exit_status=doc["exit_status"][0] if doc["exit_status"] else None,
            error_code=doc["error_code"],
            error_message=doc["error_message"],
            history=[(state, at) for state, at in doc["history"]],
            output_cids=list(doc.get("output_cids", [])),
            escrow_price=doc.get("escrow_price", 0),
        )

    def cost(self) -> int | None:
        """What the receipt makes the requester pay, protocol fee included (None without one)."""
        if self.receipt is None or self.contract is None:
            return None
        terms = self.contract.terms
        if not SETTLEMENT_RULES[self.receipt.outcome].pays_metered:
            return 0
        price = self.price_paid()
        return metered_pay(
            self.receipt.gpu_ms,
            price_per_gpu_second=price,
            max_gpu_seconds=terms.max_gpu_seconds,
            max_cost=price * terms.max_gpu_seconds,
        )

    def price_paid(self) -> int:
        """DCT base units per GPU-second the escrow pays: the one it fixed once seen, else the
        contract's (for a quote in an asset, its cap: what the escrow pays at most)."""
        assert self.contract is not None
        return self.escrow_price or self.contract.terms.price_per_gpu_second

    # --- what RPC shows ----------------------------------------------------------------------
    def to_json(self, requester_key: bytes | None = None) -> dict[str, object]:
        terms = self.contract.terms if self.contract else None
        receipt = self.receipt
        requester = terms.requester if terms else requester_key
        return {
            "job_id": self.job_id,
            "state": self.state.value,
            "name": self.spec.name,
            "role": self.role,
            "output_mode": self.spec.output_mode,
            "provider": str(Address(address_of(terms.provider))) if terms else None,
            "requester": str(Address(address_of(requester))) if requester else None,
            "payer": _payer_json(terms.paying_address if terms else self.payer or None, requester),
            "awaiting_payer": self.awaiting_payer,
            # The signed contract, hex, for the payer to escrow (only while it waits for it).
            "contract": self.contract.encode().hex() if self.awaiting_payer and self.contract else None,
            "contract_hash": self.contract_hash.hex() if self.contract_hash else None,
            "gpu_uuids": list(terms.gpu_uuids) if terms else [],
            "price_per_gpu_second": str(self.price_paid()) if terms else None,
            "max_cost": str(self.price_paid() * terms.max_gpu_seconds) if terms else None,
            # A quote in an asset: its price per GPU-second there, and the DCT cap it was signed
            # under; price_per_gpu_second is what the escrow fixed once it opened.
            "quote": {
                "asset": terms.quote,
                "price_per_gpu_second": str(terms.quote_price_per_gpu_second),
                "max_dct_price_per_gpu_second": str(terms.price_per_gpu_second),
            }
            if terms and terms.quoted
            else None,
            "collateral": str(terms.collateral) if terms else None,
            "deadline_height": terms.deadline_height if terms else None,
            "escrow_height": self.escrow_height or None,
            "exit_status": [] if self.exit_status is None else [self.exit_status],
            "outcome": receipt.outcome if receipt else None,
            "limit": (receipt.limit or None) if receipt else None,
            "gpu_ms": receipt.gpu_ms if receipt else None,
            "gpu_seconds": receipt.gpu_seconds if receipt else None,
            "cost": str(self.cost()) if self.cost() is not None else None,
            "output_hash": receipt.output_hash.hex() if receipt else None,
            "claimed_height": self.claimed_height or None,
            "settled_height": self.settled_height or None,
            "error": {"code": self.error_code, "message": self.error_message} if self.error_code else None,
            "history": [{"state": state, "at_ms": at} for state, at in self.history],
        }


#: Job spec fields added after records were first stored (issue 15), with the value a spec
#: written before them means.
_SPEC_FIELDS_SINCE_V1: dict[str, Any] = {
    "data": [],
    "image_archive_id": b"",
    "image_archive_size": 0,
    "output_mode": "inline",
}


def _stored_spec(data: bytes) -> JobSpec:
    """A stored spec, also one written before the fields of inputs and outputs by reference:
    a node upgraded with jobs in flight keeps them. Raises DecodeError."""
    value = decode(data)
    if isinstance(value, dict):
        for name, default in _SPEC_FIELDS_SINCE_V1.items():
            value.setdefault(name, default)
    return JobSpec.from_wire(value)
