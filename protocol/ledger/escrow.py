"""Escrow for job contracts: open, settle against a usage receipt, refund after the deadline.

Settlement pays the provider ``min(gpu_seconds * price, max_cost)`` less the protocol fee, which
is burned; the requester gets the rest of its deposit back and the provider its collateral. A
refund after the deadline returns the requester's deposit and burns ``collateral_slash_share`` of
the provider's collateral.
"""

from __future__ import annotations

from protocol.economics import mul_ratio
from protocol.ledger.bank import debit
from protocol.ledger.errors import (
    BadContractSignature,
    ContractClosed,
    ContractExists,
    ContractExpired,
    NotAParty,
    RefundTooEarly,
    UnknownContract,
    WrongChainId,
)
from protocol.ledger.state import Escrow, LedgerState
from protocol.ledger.tx import OpenEscrow, Refund, Settle, Tx


def _open_escrow(state: LedgerState, contract_hash: bytes) -> Escrow:
    escrow = state.escrows.get(contract_hash)
    if escrow is None:
        closed = state.closed_contracts.get(contract_hash)
        if closed is not None:
            raise ContractClosed(f"contract already {closed}")
        raise UnknownContract("no escrow for this contract")
    return escrow


def _close(state: LedgerState, contract_hash: bytes, escrow: Escrow, outcome: str) -> None:
    state.escrows.delete(contract_hash)
    state.closed_contracts.set(contract_hash, outcome)
    state.add("total_escrowed", -(escrow.max_cost + escrow.collateral))


def open_escrow(state: LedgerState, tx: Tx, msg: OpenEscrow, height: int) -> bytes:
    """Lock the requester's maximum cost and the provider's collateral. Returns the contract hash."""
    signed = msg.contract
    terms = signed.terms
    if terms.chain_id != state.chain_id:
        raise WrongChainId(f"contract is for chain {terms.chain_id!r}")
    if tx.sender != terms.requester_address:
        raise NotAParty("only the requester opens the escrow of its contract")
    if terms.deadline_height <= height:
        raise ContractExpired(f"deadline {terms.deadline_height} is not after height {height}")
    contract_hash = terms.contract_hash()
    if contract_hash in state.escrows or contract_hash in state.closed_contracts:
        raise ContractExists("this contract was already escrowed")
    if not signed.is_fully_signed():
        raise BadContractSignature("the contract needs valid signatures of requester and provider")
    provider = terms.provider_address
    debit(state, tx.sender, terms.max_cost, "escrow (requester's maximum cost)")
    debit(state, provider, terms.collateral, "escrow (provider's collateral)")
    state.escrows.set(
        contract_hash,
        Escrow(
            requester_key=terms.requester,
            provider_key=terms.provider,
            requester=tx.sender,
            provider=provider,
            price_per_gpu_second=terms.price_per_gpu_second,
            max_gpu_seconds=terms.max_gpu_seconds,
            max_cost=terms.max_cost,
            collateral=terms.collateral,
            deadline_height=terms.deadline_height,
            opened_height=height,
        ),
    )
    state.add("total_escrowed", terms.max_cost + terms.collateral)
    return contract_hash


def settle(state: LedgerState, tx: Tx, msg: Settle) -> None:
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
    metered = min(receipt.gpu_seconds, escrow.max_gpu_seconds)
    pay = min(metered * escrow.price_per_gpu_second, escrow.max_cost)
    protocol_fee = mul_ratio(pay, state.params.protocol_fee_share)
    state.credit(escrow.provider, pay - protocol_fee + escrow.collateral)
    state.credit(escrow.requester, escrow.max_cost - pay)
    state.add("burned", protocol_fee)
    state.epoch_work.set(escrow.provider, (state.epoch_work.get(escrow.provider) or 0) + metered)
    _close(state, receipt.contract_hash, escrow, "settled")


def refund(state: LedgerState, tx: Tx, msg: Refund, height: int) -> None:
    escrow = _open_escrow(state, msg.contract_hash)
    if tx.sender != escrow.requester:
        raise NotAParty("only the requester can ask for a refund")
    if height <= escrow.deadline_height:
        raise RefundTooEarly(f"refund possible after height {escrow.deadline_height}, now {height}")
    slashed = mul_ratio(escrow.collateral, state.params.collateral_slash_share)
    state.credit(escrow.requester, escrow.max_cost)
    state.credit(escrow.provider, escrow.collateral - slashed)
    state.add("burned", slashed)
    _close(state, msg.contract_hash, escrow, "refunded")
