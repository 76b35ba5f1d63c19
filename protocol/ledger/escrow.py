"""Escrow for job contracts: open, settle against a usage receipt, the provider's unilateral
claim (finalized after a dispute window, or disputed), and refund after the deadline.

Who pays for what is decided by the receipt's ``outcome`` (:data:`SETTLEMENT_RULES`):

=================  ================================================  =====================
outcome            requester pays                                    provider's collateral
=================  ================================================  =====================
completed          the metered time: ``ceil(gpu_ms x price / 1000)``  returned
job_failed         the metered time (its own failure)                 returned
limit_exceeded     the metered time (its own limit)                   returned
timed_out          the metered time, capped at the maximum cost:      returned
                   a timeout meters at least the whole runtime
provider_error     nothing: the whole deposit comes back              slashed, as a refund
=================  ================================================  =====================

Every payment is capped at the contract's maximum cost; the protocol fee share of it is burned;
the requester gets the rest of its deposit back. Metering is in GPU-milliseconds and the price is
per GPU-second, so the pay is rounded up: a job that held a GPU for a millisecond costs at least
one base unit at any non-zero price. A ``provider_error`` (the sandbox or the node failed, or the
job never started) closes the contract as ``"refunded"``, exactly as a refund after the deadline:
the provider cannot be paid for its own failure, and reporting it early only spares the requester
the wait. A refund after the deadline returns the requester's deposit and burns
``collateral_slash_share`` of the provider's collateral. A settlement's burned protocol fee is
the provider's weight in the epoch's provider rewards.

A contract quoted in an asset locks and pays the DCT price its escrow fixed from the pool's
time-weighted price when it opened, at most the requester's cap (``protocol.ledger.quoted``).

A contract priced at 0 is refused at ``escrow_open`` (:class:`FreeContract`): it would lock
nothing, burn no protocol fee, and only give its parties a way to claim provider rewards for
work nobody paid for. Free jobs need no escrow; two parties may run them off the ledger.

The normal path is a receipt signed by the provider and countersigned by the requester
(``escrow_settle``). A requester that never countersigns cannot hold the provider's pay hostage:

- ``escrow_claim``: the provider records its own signed receipt on the escrow. Nothing is paid.
- ``escrow_finalize``: once ``height > claimed_height + dispute_window_blocks``, the provider
  collects exactly what a two-signature settle of the claimed receipt pays (same code path),
  and the contract closes as ``"settled"``.
- ``escrow_dispute``: within the window the requester may contest the claim. The ledger cannot
  tell who is lying, and there is no arbiter, so a dispute costs both sides: the claimed pay is
  **burned** (the requester gets back only ``max_cost - pay``) and ``collateral_slash_share`` of
  the provider's collateral is burned too, as a refund would; the contract closes as
  ``"disputed"``. Neither side can gain by lying: a provider that inflates its receipt, or claims
  for work it never delivered (to dodge the refund's slash), earns nothing and still loses the
  slash; a requester that disputes an honest claim gets none of the pay back. The best a provider
  can do is deliver and claim what it metered; the best a requester can do is countersign it.
- ``escrow_settle`` still works while a claim is pending (the requester answered late): the
  receipt both parties signed supersedes the claim.
- ``escrow_refund`` is refused while a claim is pending: otherwise a requester could wait out the
  deadline to slash the collateral of a provider that delivered and claimed; it must dispute.

**Payer.** A contract may name a ``payer`` (an account address) other than its requester: a
person's wallet pays for the jobs its node negotiates. The payer funds the maximum cost, and
every return of it (the unused part at settlement, a refund, a dispute's remainder) goes back to
the payer, never to the requester; the payer may ask for the refund too, so a wallet is not
stuck if its node vanishes. The requester opens such an escrow only under the payer's grant.

The window is read from the current parameters when finalize or dispute is applied, so a
governance change of ``dispute_window_blocks`` also moves the window of claims already pending.

Metering, and the attacks considered
------------------------------------

The metered time costs ``ceil(min(gpu_ms, max_gpu_seconds x 1000) x price / 1000)`` base units,
capped at the maximum cost: every run that held a GPU meters at least 1 ms, so no job that ran is
free. A receipt must agree with itself or it does not decode (``completed`` has exit status 0,
``job_failed`` a non-zero one, ``provider_error`` meters 0 ms, ``limit`` is set exactly for
``limit_exceeded``). Attacks considered: a provider reporting ``provider_error`` gains nothing (it is
slashed exactly as if it never delivered; reporting early only spares the requester the wait); a
requester cannot get a failed job for free (the provider signs the outcome). A provider passing
off its own sandbox failure as the job's is not detectable beyond the contract's cap, as with
metering: the requester refuses to countersign and disputes the claim.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from protocol.contracts import (
    OUTCOME_COMPLETED,
    OUTCOME_JOB_FAILED,
    OUTCOME_LIMIT_EXCEEDED,
    OUTCOME_PROVIDER_ERROR,
    OUTCOME_TIMED_OUT,
    UsageReceipt,
)
from protocol.economics import mul_ratio
from protocol.ledger import authz
from protocol.ledger.bank import debit
from protocol.ledger.errors import (
    BadContractSignature,
    ClaimPending,
    ContractClosed,
    ContractExists,
    ContractExpired,
    DisputeWindowClosed,
    DisputeWindowOpen,
    FreeContract,
    NoClaim,
    NotAParty,
    RefundBlockedByClaim,
    RefundTooEarly,
    UnknownContract,
    WrongChainId,
)
from protocol.ledger.quoted import escrow_price
from protocol.ledger.state import Escrow, LedgerState
from protocol.ledger.tx import EscrowClaim, EscrowDispute, EscrowFinalize, OpenEscrow, Refund, Settle, Tx


@dataclass(frozen=True, slots=True)
class SettlementRule:
    """How a receipt of one outcome closes its escrow: pay the metered time (capped at the
    maximum cost) and return the collateral, or refund the requester in full and slash."""

    pays_metered: bool
    slashes_collateral: bool


PAY_METERED = SettlementRule(pays_metered=True, slashes_collateral=False)
REFUND_AND_SLASH = SettlementRule(pays_metered=False, slashes_collateral=True)
#: The module docstring's table, as data: the one place settlement looks an outcome up.
SETTLEMENT_RULES: Mapping[str, SettlementRule] = MappingProxyType(
    {
        OUTCOME_COMPLETED: PAY_METERED,
        OUTCOME_JOB_FAILED: PAY_METERED,
        OUTCOME_LIMIT_EXCEEDED: PAY_METERED,
        OUTCOME_TIMED_OUT: PAY_METERED,
        OUTCOME_PROVIDER_ERROR: REFUND_AND_SLASH,
    }
)


@dataclass(frozen=True, slots=True)
class ClaimStatus:
    """A provider's pending claim, as a block at ``height`` would see it (see :func:`claim_status`)."""

    contract_hash: bytes
    receipt: UsageReceipt
    provider_sig: bytes
    claimed_height: int
    #: The last height at which a dispute applies: ``claimed_height + dispute_window_blocks``.
    dispute_until: int
    #: What finalizing pays for the work before the protocol fee; what a dispute burns.
    pay: int
    #: True when a block at ``height`` accepts ``escrow_finalize`` (and refuses ``escrow_dispute``).
    window_over: bool

    @property
    def finalizable_from(self) -> int:
        """The first height at which ``escrow_finalize`` applies."""
        return self.dispute_until + 1


def claim_status(state: LedgerState, contract_hash: bytes, height: int) -> ClaimStatus | None:
    """The pending claim on ``contract_hash`` judged for a block at ``height``, or None when the
    contract has no open escrow or its escrow carries no claim. Pure; raises nothing.

    For "would a finalize / dispute sent now apply?", pass ``state.height + 1``. The window uses the
    current ``dispute_window_blocks``, which governance may change before the window ends.
    """
    escrow = state.escrows.get(contract_hash)
    if escrow is None or not escrow.has_claim:
        return None
    dispute_until = escrow.claimed_height + state.params.dispute_window_blocks
    receipt = _pending_claim(escrow)
    return ClaimStatus(
        contract_hash=contract_hash,
        receipt=receipt,
        provider_sig=escrow.claim_provider_sig,
        claimed_height=escrow.claimed_height,
        dispute_until=dispute_until,
        pay=receipt_pay(escrow, receipt),
        window_over=height > dispute_until,
    )


def _open_escrow(state: LedgerState, contract_hash: bytes) -> Escrow:
    escrow = state.escrows.get(contract_hash)
    if escrow is None:
        closed = state.closed_contracts.get(contract_hash)
        if closed is not None:
            raise ContractClosed(f"contract already {closed}")
        raise UnknownContract("no escrow for this contract")
    return escrow


def _pending_claim(escrow: Escrow) -> UsageReceipt:
    """The claimed receipt. Raises NoClaim. Decoding cannot fail: only verified receipts are stored
    (and snapshots are checked when restored)."""
    if not escrow.has_claim:
        raise NoClaim("no claim is pending on this escrow")
    return UsageReceipt.decode(escrow.claim)


def metered_pay(gpu_ms: int, *, price_per_gpu_second: int, max_gpu_seconds: int, max_cost: int) -> int:
    """What ``gpu_ms`` GPU-milliseconds cost at a price per GPU-second: rounded up to a whole base
    unit, capped at ``max_cost``. Pure integers."""
    metered_ms = min(gpu_ms, max_gpu_seconds * 1000)
    return min(-(-(metered_ms * price_per_gpu_second) // 1000), max_cost)


def receipt_pay(escrow: Escrow, receipt: UsageReceipt) -> int:
    """What settling ``receipt`` pays for the work, before the protocol fee (0 for a refund)."""
    if not SETTLEMENT_RULES[receipt.outcome].pays_metered:
        return 0
    return metered_pay(
        receipt.gpu_ms,
        price_per_gpu_second=escrow.price_per_gpu_second,
        max_gpu_seconds=escrow.max_gpu_seconds,
        max_cost=escrow.max_cost,
    )


def _close(state: LedgerState, contract_hash: bytes, escrow: Escrow, outcome: str) -> None:
    state.escrows.delete(contract_hash)
    state.closed_contracts.set(contract_hash, outcome)
    state.add("total_escrowed", -(escrow.max_cost + escrow.collateral))


def _refund_slashing(state: LedgerState, contract_hash: bytes, escrow: Escrow) -> None:
    """Close the escrow with nothing delivered: the requester's whole deposit back, the
    ``collateral_slash_share`` of the collateral burned, the rest of it returned."""
    slashed = mul_ratio(escrow.collateral, state.params.collateral_slash_share)
    state.credit(escrow.funder, escrow.max_cost)
    state.credit(escrow.provider, escrow.collateral - slashed)
    state.add("burned", slashed)
    _close(state, contract_hash, escrow, "refunded")


def _pay_out(state: LedgerState, contract_hash: bytes, escrow: Escrow, receipt: UsageReceipt) -> None:
    """Close the escrow by ``receipt`` as :data:`SETTLEMENT_RULES` says: the one payout of both a
    two-signature settle and a finalized claim."""
    if SETTLEMENT_RULES[receipt.outcome].slashes_collateral:
        _refund_slashing(state, contract_hash, escrow)
        return
    pay = receipt_pay(escrow, receipt)
    protocol_fee = mul_ratio(pay, state.params.protocol_fee_share)
    state.credit(escrow.provider, pay - protocol_fee + escrow.collateral)
    state.credit(escrow.funder, escrow.max_cost - pay)
    state.add("burned", protocol_fee)
    # Provider rewards weigh what the contract burned, not its GPU-seconds: self-dealing at any
    # price earns back less than it burns (economics.provider_payouts); the weights of an epoch
    # sum to at most what was burned, so they stay in range by construction.
    if protocol_fee:
        state.epoch_work.set(escrow.provider, (state.epoch_work.get(escrow.provider) or 0) + protocol_fee)
    _close(state, contract_hash, escrow, "settled")


def open_escrow(state: LedgerState, tx: Tx, msg: OpenEscrow, height: int) -> bytes:
    """Lock the maximum cost (from the contract's payer) and the provider's collateral. Returns
    the contract hash.

    Who may open it: the payer itself (the requester, or a wallet that signs the escrow of a
    contract naming it as payer), or the requester spending under the payer's grant
    (``protocol.ledger.authz``). Whatever the escrow returns of the maximum cost goes to the payer.
    """
    signed = msg.contract
    terms = signed.terms
    if terms.chain_id != state.chain_id:
        raise WrongChainId(f"contract is for chain {terms.chain_id!r}")
    payer = terms.paying_address
    if tx.sender not in (payer, terms.requester_address):
        raise NotAParty("only the requester or the contract's payer opens the escrow of a contract")
    if terms.deadline_height <= height:
        raise ContractExpired(f"deadline {terms.deadline_height} is not after height {height}")
    if terms.price_per_gpu_second < 1:
        raise FreeContract("a contract's price must be at least 1 base unit per GPU-second")
    contract_hash = terms.contract_hash()
    if contract_hash in state.escrows or contract_hash in state.closed_contracts:
        raise ContractExists("this contract was already escrowed")
    if not signed.is_fully_signed():
        raise BadContractSignature("the contract needs valid signatures of requester and provider")
    provider = terms.provider_address
    # A contract quoted in an asset locks and pays the DCT price fixed now, never its cap.
    priced = escrow_price(state, terms, height)
    if tx.sender != payer:
        # The requester spends the payer's money (the deposit, and the fee the ante already took
        # from the payer): only within the payer's grant to it. A refusal undoes the whole
        # transaction, fee included, so a refused escrow never counts against the grant.
        authz.spend(
            state,
            granter=payer,
            grantee=tx.sender,
            kind=OpenEscrow.KIND,
            amount=priced.max_cost + tx.fee,
            height=height,
        )
    debit(state, payer, priced.max_cost, "escrow (the payer's maximum cost)")
    debit(state, provider, terms.collateral, "escrow (provider's collateral)")
    state.escrows.set(
        contract_hash,
        Escrow(
            requester_key=terms.requester,
            provider_key=terms.provider,
            requester=terms.requester_address,
            provider=provider,
            price_per_gpu_second=priced.price_per_gpu_second,
            max_gpu_seconds=terms.max_gpu_seconds,
            max_cost=priced.max_cost,
            collateral=terms.collateral,
            deadline_height=terms.deadline_height,
            opened_height=height,
            payer=payer,
        ),
    )
    state.add("total_escrowed", priced.max_cost + terms.collateral)
    return contract_hash


def settle(state: LedgerState, tx: Tx, msg: Settle) -> None:
    """Pay out a receipt both parties signed; supersedes a pending claim.

    Raises WrongChainId, UnknownContract, ContractClosed, NotAParty, BadContractSignature."""
    receipt = msg.receipt
    if receipt.chain_id != state.chain_id:
        raise WrongChainId(f"receipt is for chain {receipt.chain_id!r}")
    escrow = _open_escrow(state, receipt.contract_hash)
    if tx.sender not in (escrow.requester, escrow.provider):
        raise NotAParty("only the requester or the provider settles a contract")
    if not receipt.verify(escrow.provider_key, msg.provider_sig):
        raise BadContractSignature("the receipt needs the provider's valid signature")
    if not receipt.verify(escrow.requester_key, msg.requester_sig):
        raise BadContractSignature("the receipt needs the requester's valid countersignature")
    _pay_out(state, receipt.contract_hash, escrow, receipt)


def claim(state: LedgerState, tx: Tx, msg: EscrowClaim, height: int) -> None:
    """Record the provider's own signed receipt on its escrow; pays nothing yet.

    Raises WrongChainId, UnknownContract, ContractClosed, NotAParty, ClaimPending,
    BadContractSignature."""
    receipt = msg.receipt
    if receipt.chain_id != state.chain_id:
        raise WrongChainId(f"receipt is for chain {receipt.chain_id!r}")
    escrow = _open_escrow(state, receipt.contract_hash)
    if tx.sender != escrow.provider:
        raise NotAParty("only the provider claims payment on its own receipt")
    if escrow.has_claim:
        raise ClaimPending(f"a claim is already pending since height {escrow.claimed_height}")
    if not receipt.verify(escrow.provider_key, msg.provider_sig):
        raise BadContractSignature("the claimed receipt needs the provider's valid signature")
    state.escrows.set(
        receipt.contract_hash,
        dataclasses.replace(
            escrow, claim=receipt.encode(), claim_provider_sig=msg.provider_sig, claimed_height=height
        ),
    )


def finalize(state: LedgerState, tx: Tx, msg: EscrowFinalize, height: int) -> None:
    """Pay out the provider's pending claim once its dispute window has passed, as settle would.

    Raises UnknownContract, ContractClosed, NotAParty, NoClaim, DisputeWindowOpen."""
    escrow = _open_escrow(state, msg.contract_hash)
    if tx.sender != escrow.provider:
        raise NotAParty("only the provider finalizes its claim")
    receipt = _pending_claim(escrow)
    dispute_until = escrow.claimed_height + state.params.dispute_window_blocks
    if height <= dispute_until:
        raise DisputeWindowOpen(f"the claim can be disputed until height {dispute_until}, now {height}")
    _pay_out(state, msg.contract_hash, escrow, receipt)


def dispute(state: LedgerState, tx: Tx, msg: EscrowDispute, height: int) -> None:
    """Contest the provider's pending claim within its window: the claimed pay and the slash
    share of the collateral are burned; the requester gets the rest of its deposit back and the
    provider the rest of its collateral.

    Raises UnknownContract, ContractClosed, NotAParty, NoClaim, DisputeWindowClosed."""
    escrow = _open_escrow(state, msg.contract_hash)
    if tx.sender != escrow.requester:
        raise NotAParty("only the requester disputes a claim")
    receipt = _pending_claim(escrow)
    dispute_until = escrow.claimed_height + state.params.dispute_window_blocks
    if height > dispute_until:
        raise DisputeWindowClosed(f"the dispute window ended at height {dispute_until}, now {height}")
    pay = receipt_pay(escrow, receipt)
    slashed = mul_ratio(escrow.collateral, state.params.collateral_slash_share)
    state.credit(escrow.funder, escrow.max_cost - pay)
    state.credit(escrow.provider, escrow.collateral - slashed)
    state.add("burned", pay + slashed)
    _close(state, msg.contract_hash, escrow, "disputed")


def refund(state: LedgerState, tx: Tx, msg: Refund, height: int) -> None:
    """Return the requester's deposit after the deadline, slashing part of the collateral.

    Raises UnknownContract, ContractClosed, NotAParty, RefundBlockedByClaim, RefundTooEarly."""
    escrow = _open_escrow(state, msg.contract_hash)
    if tx.sender not in (escrow.requester, escrow.funder):
        raise NotAParty("only the requester or the payer can ask for a refund")
    if escrow.has_claim:
        raise RefundBlockedByClaim("the provider claimed payment: dispute the claim instead of a refund")
    if height <= escrow.deadline_height:
        raise RefundTooEarly(f"refund possible after height {escrow.deadline_height}, now {height}")
    _refund_slashing(state, msg.contract_hash, escrow)
