"""Staking: bond, unbond with a delay, release at maturity, and the slashing hook."""

from __future__ import annotations

from protocol.economics import mul_ratio
from protocol.ledger.bank import debit
from protocol.ledger.errors import InsufficientStake, Tombstoned, UnknownValidator
from protocol.ledger.state import LedgerState, Unbonding, ValidatorInfo
from protocol.ledger.tx import Stake, Tx, Unstake


def stake(state: LedgerState, tx: Tx, msg: Stake) -> None:
    """Bond ``amount`` from the sender's balance; the sender's key becomes its validator key."""
    info = state.validators.get(tx.sender)
    if info is not None and info.tombstoned:
        raise Tombstoned("a tombstoned validator can never bond again")
    debit(state, tx.sender, msg.amount, "stake")
    bonded = msg.amount + (info.bonded if info else 0)
    state.validators.set(tx.sender, ValidatorInfo(tx.public_key, bonded, False))
    state.add("total_bonded", msg.amount)


def unstake(state: LedgerState, tx: Tx, msg: Unstake, height: int) -> None:
    """Move bonded stake into the unbonding queue; it is released ``unbonding_period`` blocks on."""
    info = state.validators.get(tx.sender)
    if info is None or info.bonded < msg.amount:
        raise InsufficientStake(f"unstake {msg.amount} but bonded {info.bonded if info else 0}")
    remaining = info.bonded - msg.amount
    # The record stays even at zero bond: evidence arriving while the stake unbonds must still
    # find the validator, cut its unbonding entries and tombstone it.
    state.validators.set(tx.sender, ValidatorInfo(info.public_key, remaining, info.tombstoned))
    release = height + state.params.unbonding_period
    queued = state.unbonding.get(release) or ()
    state.unbonding.set(release, (*queued, Unbonding(tx.sender, msg.amount)))
    state.add("total_bonded", -msg.amount)
    state.add("total_unbonding", msg.amount)


def release_matured(state: LedgerState, height: int) -> None:
    """Pay out every unbonding entry that matures at ``height``."""
    entries = state.unbonding.get(height)
    if not entries:
        return
    for entry in entries:
        state.credit(entry.address, entry.amount)
        state.add("total_unbonding", -entry.amount)
    state.unbonding.delete(height)


def slash(state: LedgerState, address: bytes, fraction: int, *, tombstone: bool = True) -> int:
    """Cut a validator's bonded and unbonding stake by ``fraction`` (DEC-scaled) and burn it.

    With ``tombstone`` the validator leaves the set for good. Slashing an already tombstoned
    validator again is a no-op (evidence for one offence is counted once). Returns the amount
    burned. Raises UnknownValidator if ``address`` never bonded.
    """
    info = state.validators.get(address)
    if info is None:
        raise UnknownValidator("no validator with this address")
    if info.tombstoned:
        return 0
    cut = mul_ratio(info.bonded, fraction)
    state.validators.set(address, ValidatorInfo(info.public_key, info.bonded - cut, tombstone))
    state.add("total_bonded", -cut)
    burned = cut
    for release, entries in state.unbonding.sorted_items():
        if not any(e.address == address for e in entries):
            continue
        updated = []
        for entry in entries:
            if entry.address == address:
                entry_cut = mul_ratio(entry.amount, fraction)
                burned += entry_cut
                state.add("total_unbonding", -entry_cut)
                entry = Unbonding(entry.address, entry.amount - entry_cut)
            updated.append(entry)
        state.unbonding.set(release, tuple(updated))
    state.add("burned", burned)
    return burned
