"""Balances, nonces and fees: the ante checks every transaction passes, and transfers."""

from __future__ import annotations

from protocol.ledger import authz
from protocol.ledger.errors import BadNonce, BadSignature, FeeTooLow, InsufficientFunds, WrongChainId
from protocol.ledger.state import Account, LedgerState
from protocol.ledger.tx import Transfer, Tx


def ante(state: LedgerState, tx: Tx, *, verify_signature: bool = True) -> None:
    """Check chain id, nonce, fee and signature; then charge the fee (to the sender, or to the
    payer whose grant covers it: ``authz.fee_payer``) and bump the sender's nonce.

    Cheap checks run first so a flood of stale transactions costs no signature verification.
    Raises WrongChainId, BadNonce, FeeTooLow, InsufficientFunds or BadSignature.
    """
    if tx.chain_id != state.chain_id:
        raise WrongChainId(f"transaction is for chain {tx.chain_id!r}, this is {state.chain_id!r}")
    account = state.account(tx.sender)
    if tx.nonce != account.nonce + 1:
        raise BadNonce(f"nonce {tx.nonce} but the next nonce of this account is {account.nonce + 1}")
    if tx.fee < state.params.min_fee:
        raise FeeTooLow(f"fee {tx.fee} is below the minimum {state.params.min_fee}")
    payer = authz.fee_payer(tx)
    paying = account if payer == tx.sender else state.account(payer)
    if paying.balance < tx.fee:
        raise InsufficientFunds(f"balance {paying.balance} cannot pay the fee {tx.fee}")
    if verify_signature and not tx.verify_signature():
        raise BadSignature("transaction signature does not verify")
    state.accounts.set(tx.sender, Account(account.balance, tx.nonce))
    # A fee another account pays (a grant's payer) is counted against that grant when the
    # message applies (``protocol.ledger.escrow.open_escrow``), or the whole transaction fails.
    debit(state, payer, tx.fee, "fee")
    state.add("fee_pool", tx.fee)


def debit(state: LedgerState, address: bytes, amount: int, what: str) -> None:
    """Take ``amount`` from an account. Raises InsufficientFunds."""
    account = state.account(address)
    if account.balance < amount:
        raise InsufficientFunds(f"{what}: balance {account.balance} is less than {amount}")
    state.accounts.set(address, Account(account.balance - amount, account.nonce))


def transfer(state: LedgerState, tx: Tx, msg: Transfer) -> None:
    debit(state, tx.sender, msg.amount, "transfer")
    state.credit(msg.to, msg.amount)
