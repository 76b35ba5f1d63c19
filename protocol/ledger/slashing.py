"""Slashing (Cosmos x/slashing): double-sign evidence, downtime jailing, and unjail.

**Downtime.** Each block tells the ledger which validators voted on its parent
(``BlockContext.voters``, consensus addresses) and whose precommits made it into the parent's
certificate (``signers``). A voter absent from the certificate misses that height. A validator
that missed more than ``1 - min_signed_per_window`` of the last ``signed_blocks_window`` heights,
once it has been watched for a whole window, is jailed for ``downtime_jail_blocks`` and loses
``downtime_slash`` of its stake (and of what unbonded from it since). Jailed, it leaves the active
set, so a validator that stops signing (a staker whose node never ran, a crashed machine) stops
counting toward the quorum within a window instead of halting the chain for good. Its operator
brings it back with ``unjail`` once the jail time is over.

Only misses are stored (at most one window's worth per validator), so a block that everybody
signed writes nothing here, and an empty block of the econsim kernel needs no liveness step.

**Double-signing.** Verified evidence from consensus (``BlockContext.misbehaviour``) slashes
``double_sign_slash`` of everything at stake at the infraction height and tombstones the validator.
"""

from __future__ import annotations

import dataclasses

from protocol.ledger import distribution, staking
from protocol.ledger.errors import InsufficientStake, JailPeriodNotOver, NotJailed, Tombstoned
from protocol.ledger.state import LedgerState, SigningInfo
from protocol.ledger.tx import Tx, Unjail
from protocol.units import DEC, format_amount


def max_missed(window: int, min_signed: int) -> int:
    """The most heights a validator may miss in a window and stay out of jail."""
    must_sign = -(-window * min_signed // DEC)  # ceil
    return window - must_sign


def punish_double_signs(state: LedgerState, offenders: list[tuple[bytes, int]]) -> list[bytes]:
    """Slash and tombstone each ``(consensus address, infraction height)``; unknown addresses
    and validators already tombstoned are skipped (evidence counts once). Returns the operators
    slashed, in order."""
    slashed = []
    for consensus_address, height in offenders:
        operator = state.operator_of(consensus_address)
        if operator is None:
            continue
        info = state.validators.get(operator)
        if info is not None and not info.tombstoned:
            slashed.append(operator)
        staking.slash(state, operator, state.params.double_sign_slash, height, tombstone=True)
    return slashed


def track_liveness(
    state: LedgerState, height: int, voters: tuple[bytes, ...], signers: tuple[bytes, ...]
) -> list[bytes]:
    """Record the misses of the parent's voters and jail those past the window's limit; returns
    the operators jailed, in order. Nothing is judged without both lists (a genesis parent, a
    caller that does not know)."""
    jailed: list[bytes] = []
    if not voters or not signers:
        return jailed
    params = state.params
    window = params.signed_blocks_window
    limit = max_missed(window, params.min_signed_per_window)
    signed = set(signers)
    for consensus_address in sorted(set(voters) - signed):
        operator = state.operator_of(consensus_address)
        info = state.validators.get(operator) if operator is not None else None
        if operator is None or info is None or info.jailed or info.tombstoned:
            continue
        record = state.signing.get(operator) or SigningInfo(height)
        missed = tuple(h for h in record.missed if h > height - window) + (height,)
        if len(missed) > limit and height >= record.start_height + window:
            staking.slash(
                state, operator, params.downtime_slash, height - staking.VALIDATOR_SET_DELAY, tombstone=False
            )
            staking.jail(state, operator, height + params.downtime_jail_blocks)
            jailed.append(operator)
            # A fresh window after the jail: it must miss a window's worth again to be jailed again.
            state.signing.set(operator, SigningInfo(height + params.downtime_jail_blocks))
        else:
            state.signing.set(operator, dataclasses.replace(record, missed=missed))
    return jailed


def unjail(state: LedgerState, tx: Tx, msg: Unjail, height: int) -> None:
    """Bring the sender's validator back into the candidates for the active set.

    Raises UnknownValidator, Tombstoned, NotJailed, JailPeriodNotOver, InsufficientStake (with
    less than ``min_validator_stake`` bonded it could not join the set anyway)."""
    info = staking.validator(state, tx.sender)
    if info.tombstoned:
        raise Tombstoned("a tombstoned validator stays jailed for good")
    if not info.jailed:
        raise NotJailed("this validator is not jailed")
    if height < info.jailed_until:
        raise JailPeriodNotOver(f"jailed until height {info.jailed_until}, now {height}")
    distribution.settle(state, tx.sender)
    info = staking.validator(state, tx.sender)
    if info.tokens < state.params.min_validator_stake:
        raise InsufficientStake(
            f"{format_amount(info.tokens)} bonded, below the {format_amount(state.params.min_validator_stake)} "
            "a validator needs: bond more first"
        )
    state.validators.set(tx.sender, dataclasses.replace(info, jailed=False, jailed_until=0))
    state.signing.set(tx.sender, SigningInfo(height))
