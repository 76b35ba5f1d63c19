"""Who a committed transaction concerns, and what it moved: the data behind ``account_history``
and ``dcent wallet history``.

A transaction's sender is in it; the other accounts it touches are not always. A wallet that pays
for its node's jobs through a grant never signs the escrow, the settlement or the refund, yet its
balance moves with each; a provider's collateral is locked by the requester's ``escrow_open``. So
the store indexes, besides the sender, every *party* of a transaction (:func:`parties`):

=====================================  ==========================================================
kind                                   parties besides the sender
=====================================  ==========================================================
transfer                               the recipient
escrow_open                            requester, provider, payer (a wallet paying by grant)
escrow_settle / claim / finalize /     the parties of the contract's ``escrow_open`` (looked up
dispute / refund                       in the store's table of contracts, by contract hash)
grant / grant_revoke                   the grantee
delegate / undelegate                  the validator's operator
redelegate                             both validators' operators
=====================================  ==========================================================

and remembers, per contract, what later rows need to state their amounts: its parties and price
(a settlement's pay) and the pay a pending claim asks (what finalizing pays, what a dispute burns).

:func:`amount` is what each kind moves, in base units (the CLI shows DCT): a transfer's, stake's or
delegation's amount; the maximum cost an escrow locks; the metered pay of a settlement or a claim;
the pay a finalize collects or a dispute burns; the deposit a refund returns; a proposal's
deposit; a grant's cap. None where nothing moves (a vote, an edit, an unjail, a revocation).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from protocol.crypto import Address
from protocol.ledger.escrow import SETTLEMENT_RULES, metered_pay
from protocol.ledger.tx import (
    Delegate,
    EscrowClaim,
    EscrowDispute,
    EscrowFinalize,
    GovPropose,
    Grant,
    GrantRevoke,
    OpenEscrow,
    Redelegate,
    Refund,
    Settle,
    Stake,
    Transfer,
    Tx,
    Undelegate,
    Unstake,
    ValidatorCreate,
)


@dataclass(frozen=True, slots=True)
class ContractInfo:
    """What the store keeps of an escrowed contract (from its ``escrow_open``)."""

    contract_hash: bytes
    requester: bytes
    provider: bytes
    #: The paying account (the requester's own when the contract names no payer).
    payer: bytes
    price_per_gpu_second: int
    max_gpu_seconds: int
    max_cost: int
    #: What the provider's pending claim asks, once a claim is indexed; else None.
    claimed_pay: int | None = None

    @property
    def parties(self) -> frozenset[bytes]:
        return frozenset((self.requester, self.provider, self.payer))


ContractLookup = Callable[[bytes], ContractInfo | None]


def contract_of(tx: Tx, fixed_prices: Mapping[bytes, int] | None = None) -> ContractInfo | None:
    """The contract an ``escrow_open`` escrows; None for other kinds. ``fixed_prices``: the DCT
    price per GPU-second each escrow of the block fixed (its ``escrow_opened`` ledger event), which
    differs from the terms' (the requester's cap) for a contract quoted in an asset."""
    msg = tx.msg
    if not isinstance(msg, OpenEscrow):
        return None
    terms = msg.contract.terms
    contract_hash = terms.contract_hash()
    price = (fixed_prices or {}).get(contract_hash, terms.price_per_gpu_second)
    return ContractInfo(
        contract_hash=contract_hash,
        requester=terms.requester_address,
        provider=terms.provider_address,
        payer=terms.paying_address,
        price_per_gpu_second=price,
        max_gpu_seconds=terms.max_gpu_seconds,
        max_cost=price * terms.max_gpu_seconds,
    )


def contract_hash_of(tx: Tx) -> bytes | None:
    """The contract an escrow transaction is about; None for other kinds."""
    msg = tx.msg
    if isinstance(msg, OpenEscrow):
        return msg.contract.terms.contract_hash()
    if isinstance(msg, Settle | EscrowClaim):
        return msg.receipt.contract_hash
    if isinstance(msg, Refund | EscrowFinalize | EscrowDispute):
        return msg.contract_hash
    return None


def _receipt_pay(contract: ContractInfo, msg: Settle | EscrowClaim) -> int:
    receipt = msg.receipt
    if not SETTLEMENT_RULES[receipt.outcome].pays_metered:
        return 0
    return metered_pay(
        receipt.gpu_ms,
        price_per_gpu_second=contract.price_per_gpu_second,
        max_gpu_seconds=contract.max_gpu_seconds,
        max_cost=contract.max_cost,
    )


def claimed_pay(tx: Tx, contract: ContractInfo | None) -> int | None:
    """What an ``escrow_claim`` asks of its contract; None for other kinds or unknown contracts."""
    if isinstance(tx.msg, EscrowClaim) and contract is not None:
        return _receipt_pay(contract, tx.msg)
    return None


def parties(tx: Tx, lookup: ContractLookup) -> frozenset[bytes]:
    """The accounts ``tx`` concerns besides its sender (see the module's table)."""
    msg = tx.msg
    found: set[bytes] = set()
    if isinstance(msg, Transfer):
        found.add(msg.to)
    elif isinstance(msg, Grant | GrantRevoke):
        found.add(msg.grantee)
    elif isinstance(msg, Delegate | Undelegate):
        found.add(msg.validator)
    elif isinstance(msg, Redelegate):
        found.update((msg.source, msg.destination))
    else:
        opened = contract_of(tx)
        contract_hash = contract_hash_of(tx)
        contract = opened if opened is not None else (lookup(contract_hash) if contract_hash else None)
        if contract is not None:
            found.update(contract.parties)
    found.discard(tx.sender)
    return frozenset(found)


_PLAIN_AMOUNTS = (Transfer, Stake, Unstake, Delegate, Undelegate, Redelegate, ValidatorCreate)


def amount(tx: Tx, contract: ContractInfo | None) -> int | None:
    """What ``tx`` moved, in base units (see the module docstring); ``contract``: the contract of
    an escrow transaction, when known."""
    msg = tx.msg
    if isinstance(msg, _PLAIN_AMOUNTS):
        return msg.amount
    if isinstance(msg, OpenEscrow):
        return contract.max_cost if contract is not None else msg.contract.terms.max_cost
    if isinstance(msg, GovPropose):
        return msg.deposit
    if isinstance(msg, Grant):
        return msg.spend_limit
    if contract is None:
        return None
    if isinstance(msg, Settle | EscrowClaim):
        return _receipt_pay(contract, msg)
    if isinstance(msg, EscrowFinalize | EscrowDispute):
        return contract.claimed_pay
    if isinstance(msg, Refund):
        return contract.max_cost
    return None


def details(tx: Tx, contract: ContractInfo | None) -> dict[str, object]:
    """The fields of a history row beyond the envelope: addresses as ``dct1...``, amounts as
    decimal strings of base units."""
    msg = tx.msg
    out: dict[str, object] = {}
    moved = amount(tx, contract)
    if moved is not None:
        out["amount"] = str(moved)
    contract_hash = contract_hash_of(tx)
    if contract_hash is not None:
        out["contract_hash"] = contract_hash.hex()
    if contract is not None:
        out["payer"] = str(Address(contract.payer))
        out["provider"] = str(Address(contract.provider))
    if isinstance(msg, Grant):
        out.update(grantee=str(Address(msg.grantee)), expiry_height=msg.expiry_height, kinds=list(msg.kinds))
    elif isinstance(msg, GrantRevoke):
        out["grantee"] = str(Address(msg.grantee))
    elif isinstance(msg, Settle | EscrowClaim):
        out.update(outcome=msg.receipt.outcome, gpu_ms=msg.receipt.gpu_ms)
    elif isinstance(msg, Delegate | Undelegate):
        out["validator"] = str(Address(msg.validator))
    elif isinstance(msg, Redelegate):
        out.update(source=str(Address(msg.source)), destination=str(Address(msg.destination)))
    return out
