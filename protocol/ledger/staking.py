"""Staking (Cosmos x/staking): registered validators, delegations with shares, unbonding,
redelegation, and the slashing hook.

A validator is registered by ``validator_create``: its operator (the sender) declares the
consensus key its node votes with, proven by that key's signature over the operator's address,
and bonds a first self-delegation. Anyone else bonds by delegating to a validator: a holder who
runs no node never becomes a validator, so it cannot stop the chain by being absent. Delegations
are shares: a share of a validator is worth ``tokens / shares``, so its rewards (compounded into
``tokens``, see ``distribution``) and its slashes reach every delegator pro rata, in O(1).

Share arithmetic rounds against the actor: delegating buys ``floor(amount * shares / tokens)``
shares; undelegating ``amount`` gives up ``ceil(amount * shares / tokens)`` of them (all of them,
and all the tokens, when the delegator leaves entirely). Nobody can round value out of the pool.

Unbonding tokens wait ``unbonding_period`` blocks and stay slashable meanwhile; a redelegation
moves shares at once but stays slashable for the source's infractions just as long, and the
redelegated stake cannot hop on before that (no escape by hopping from validator to validator).

Bounds: every amount is checked by the message (1 to 2^63 - 1); tokens and shares are checked
against 2^63 - 1 when they grow (:class:`AmountOverflow`), and an account holds shares of at most
:data:`MAX_DELEGATIONS` validators (a bound on what one vote costs the tally).

Commission, rewards, jailing, double-signing, governance
--------------------------------------------------------

- **Commission**: at most ``max_commission_change`` per change, within ``max_commission``, at most one
  change per ``unbonding_period``, so a delegator who dislikes a change can leave before the next.
- **Rewards** (x/distribution, simplified): each block adds each rewarded validator's share to its
  ``rewards`` accumulator (one write per validator). Before anything changes a validator's shares
  the accumulator is settled: the commission to the operator, the rest compounded into the
  validator's tokens. Delegators thus share rewards pro rata to the shares they held while they
  were earned, with no per-delegator work. Pending rewards count in the supply equation
  (``total_rewards``), are not voting power and are not slashed.
- **Downtime jailing** (x/slashing): each block tells the ledger which set voted on its parent and
  who signed the parent's certificate (``BlockContext.voters``); only misses are stored. A validator
  that missed more than ``1 - min_signed_per_window`` of the last ``signed_blocks_window`` heights is
  jailed for ``downtime_jail_blocks``, loses ``downtime_slash`` (defaults as Cosmos: window 100, 50%,
  1%) and leaves the set; its operator sends ``unjail`` after the jail time if it still has
  ``min_validator_stake`` bonded. Drivers of ``apply_block`` that pass no voters (unit tests, the
  econsim) judge nobody's liveness.
- **Double-signing** (the Cosmos rule): an infraction at height h is slashable until the unbonding
  that followed it completes. Evidence slashes ``double_sign_slash`` of the validator's tokens, of
  every unbonding entry from it created at or after ``h - 1`` (stake removed in block u still voted
  at u + 1: the set delay is 2) and of every redelegation out of it since (cut at the
  destination), burns the cut and tombstones the validator (never slashed twice, never bonded
  again). Evidence applies in begin-block before that block's releases, and governance keeps
  ``evidence_max_age >= unbonding_period``, so stake cannot leave before its last infraction can be
  proven. ``VALIDATOR_SET_DELAY = 2`` is declared in both ``protocol/consensus/ledger_app.py`` and
  ``staking.py``; they must agree.
- **Governance**: ``gov_propose`` (parameter, new value within its bounds, deposit >=
  ``gov_min_deposit``), ``gov_vote`` by validators and delegators (weight = bonded stake at tally; a
  delegator's vote overrides its validator's for its own shares; a later vote replaces an earlier
  one), tallied at the end of the voting period with Cosmos rules: quorum of total bonded stake,
  veto share above the threshold burns the deposit, yes share of non-abstaining votes above the
  threshold passes and the parameter changes in that block; otherwise the deposit is returned.
  Every parameter has governance bounds (``InvalidParamValue`` 2031), so no vote can set a rate
  that overflows issuance, nor a voting period shorter than ``MIN_VOTING_SECONDS`` at the chain's
  declared block rate (so people have time to vote).

| attack (issue 12) | mechanism | test against real nodes |
|---|---|---|
| a staker with no node holds > 1/3 of the power and halts the chain | only registered validators (consensus key proven) vote; holders delegate to one that runs a node; jailing removes a validator whose node stops | ``tests/e2e/test_jailing.py``: a holder delegates 38% of the power and never joins the set; validator 3 stops, is jailed and slashed 1% (its delegator shares it), leaves the set, the others keep committing |
| honest validators jailed for being slow (found by that test) | after deciding, the core adds later precommits for the decided block to the certificate the next block's ``last_commit`` carries (``late_precommits.py``, ``Application.extend_last_certificate``), so only a Byzantine proposer can leave honest signatures out, and it proposes under 1/3 of the blocks, below the 50% a validator must miss | ``tests/unit/test_consensus_late_precommits.py``, the jailing e2e test |
| escaping a slash by redelegating or unbonding | redelegations and unbonding entries since the infraction are slashed; redelegated stake cannot hop again | ``tests/unit/test_ledger_slashing.py``, ``test_ledger_staking.py`` (unit) |
| price-0 contracts, overflow by governance | bounded arithmetic (above) | ``tests/integration/test_ledger_attacks.py`` |
"""

from __future__ import annotations

import dataclasses

from protocol.crypto import address_of, verify
from protocol.economics import mul_ratio
from protocol.ledger import distribution
from protocol.ledger.bank import debit
from protocol.ledger.errors import (
    AmountOverflow,
    BadKeyProof,
    CommissionChangeTooSoon,
    ConsensusKeyTaken,
    InsufficientStake,
    InvalidCommission,
    NotAValidator,
    RedelegationInProgress,
    Tombstoned,
    TooManyDelegations,
    UnknownValidator,
    ValidatorExists,
    ValidatorHasNoTokens,
)
from protocol.ledger.state import LedgerState, Redelegation, SigningInfo, Unbonding, ValidatorInfo
from protocol.ledger.tx import (
    Delegate,
    Redelegate,
    Stake,
    Tx,
    Undelegate,
    Unstake,
    ValidatorCreate,
    ValidatorEdit,
    key_proof_bytes,
)
from protocol.units import MAX_AMOUNT, format_amount, format_ratio

#: Consensus uses the ledger's active set after block ``H - 2`` at height ``H`` (see
#: ``protocol.consensus.ledger_app``): stake removed in block ``u`` still votes up to ``u + 1``.
VALIDATOR_SET_DELAY = 2
#: Validators one account may hold shares of at once.
MAX_DELEGATIONS = 32


def validator(state: LedgerState, operator: bytes) -> ValidatorInfo:
    """The validator operated by ``operator``. Raises UnknownValidator."""
    info = state.validators.get(operator)
    if info is None:
        raise UnknownValidator(f"no validator is operated by {operator.hex()}")
    return info


def delegation_value(state: LedgerState, delegator: bytes, operator: bytes) -> int:
    """What ``delegator``'s shares of ``operator``'s validator are worth now, in base units,
    counting the validator's pending rewards as they will be settled (less its commission):
    what undelegating everything would take out."""
    shares = state.delegations.get((delegator, operator)) or 0
    info = state.validators.get(operator)
    if not shares or info is None or info.shares == 0:
        return 0
    tokens = info.tokens + info.rewards - mul_ratio(info.rewards, info.commission)
    return shares * tokens // info.shares


def bonded_by(state: LedgerState, delegator: bytes) -> int:
    """Everything ``delegator`` has bonded, over all its delegations."""
    return sum(
        delegation_value(state, delegator, operator) for operator in state.delegated_to.get(delegator) or ()
    )


# --- handlers ---------------------------------------------------------------------------------
def create_validator(state: LedgerState, tx: Tx, msg: ValidatorCreate, height: int) -> None:
    """Register the sender as a validator and bond its first self-delegation.

    Raises ValidatorExists, ConsensusKeyTaken, InsufficientStake, BadKeyProof, InsufficientFunds.
    """
    operator = tx.sender
    if operator in state.validators:
        raise ValidatorExists("this account already operates a validator")
    consensus_address = address_of(msg.consensus_key)
    if consensus_address in state.consensus_index:
        raise ConsensusKeyTaken("another validator already votes with this consensus key")
    minimum = state.params.min_validator_stake
    if msg.amount < minimum:
        raise InsufficientStake(
            f"a validator starts with at least {format_amount(minimum)} of its own; "
            f"{format_amount(msg.amount)} offered"
        )
    if not verify(msg.consensus_key, msg.key_proof, key_proof_bytes(state.chain_id, operator)):
        raise BadKeyProof("key_proof is not the consensus key's signature over the operator's address")
    state.validators.set(
        operator,
        ValidatorInfo(
            consensus_key=msg.consensus_key,
            tokens=0,
            shares=0,
            commission=msg.commission,
            max_commission=msg.max_commission,
            max_commission_change=msg.max_commission_change,
            commission_height=height,
            moniker=msg.moniker,
        ),
    )
    state.consensus_index.set(consensus_address, operator)
    state.signing.set(operator, SigningInfo(height))
    bond(state, operator, operator, msg.amount, from_balance=True)


def edit_validator(state: LedgerState, tx: Tx, msg: ValidatorEdit, height: int) -> None:
    """New moniker and commission. A commission change moves at most the validator's
    ``max_commission_change``, stays within its ``max_commission``, and comes at most once per
    ``unbonding_period`` blocks: a delegator who dislikes a change can be gone before the next.

    Raises UnknownValidator, InvalidCommission, CommissionChangeTooSoon."""
    info = validator(state, tx.sender)
    distribution.settle(state, tx.sender)  # rewards earned so far are split at the old rate
    info = validator(state, tx.sender)
    commission_height = info.commission_height
    if msg.commission != info.commission:
        if msg.commission > info.max_commission:
            raise InvalidCommission(
                f"commission {format_ratio(msg.commission)} is above this validator's maximum "
                f"{format_ratio(info.max_commission)}"
            )
        if abs(msg.commission - info.commission) > info.max_commission_change:
            raise InvalidCommission(
                f"commission may move by at most {format_ratio(info.max_commission_change)} at once"
            )
        next_change = info.commission_height + state.params.unbonding_period
        if info.commission_height and height < next_change:
            raise CommissionChangeTooSoon(f"the next commission change is possible at height {next_change}")
        commission_height = height
    state.validators.set(
        tx.sender,
        dataclasses.replace(
            info, moniker=msg.moniker, commission=msg.commission, commission_height=commission_height
        ),
    )


def delegate(state: LedgerState, tx: Tx, msg: Delegate) -> None:
    """Bond ``amount`` of the sender's balance to a validator. Raises UnknownValidator,
    Tombstoned, ValidatorHasNoTokens, TooManyDelegations, InsufficientFunds, AmountOverflow."""
    bond(state, tx.sender, msg.validator, msg.amount, from_balance=True)


def stake(state: LedgerState, tx: Tx, msg: Stake) -> None:
    """A self-delegation to the sender's own validator. Raises NotAValidator, and what
    :func:`delegate` raises."""
    if tx.sender not in state.validators:
        raise NotAValidator(
            "stake bonds to the sender's own validator, and it has none: create one or delegate"
        )
    bond(state, tx.sender, tx.sender, msg.amount, from_balance=True)


def undelegate(state: LedgerState, tx: Tx, msg: Undelegate, height: int) -> None:
    """Unbond ``amount`` of the sender's delegation; released ``unbonding_period`` blocks later.
    Raises UnknownValidator, InsufficientStake."""
    _queue_unbonding(
        state, tx.sender, msg.validator, unbond(state, tx.sender, msg.validator, msg.amount), height
    )


def unstake(state: LedgerState, tx: Tx, msg: Unstake, height: int) -> None:
    """Unbond some of the sender's self-delegation. Raises NotAValidator, InsufficientStake."""
    if tx.sender not in state.validators:
        raise NotAValidator("unstake unbonds from the sender's own validator, and it has none")
    _queue_unbonding(state, tx.sender, tx.sender, unbond(state, tx.sender, tx.sender, msg.amount), height)


def redelegate(state: LedgerState, tx: Tx, msg: Redelegate, height: int) -> None:
    """Move ``amount`` of a delegation to another validator at once.

    Raises RedelegationInProgress (the stake itself arrived by a redelegation still slashable),
    UnknownValidator, Tombstoned, InsufficientStake, and what :func:`delegate` raises."""
    delegator = tx.sender
    pending_until = state.redelegating_into.get((delegator, msg.source)) or 0
    if pending_until > height:
        raise RedelegationInProgress(
            f"stake redelegated to this validator stays there until height {pending_until}"
        )
    validator(state, msg.destination)
    moved = unbond(state, delegator, msg.source, msg.amount)
    bond(state, delegator, msg.destination, moved, from_balance=False)
    completion = height + state.params.unbonding_period
    queued = state.redelegations.get(completion) or ()
    entry = Redelegation(delegator, msg.source, msg.destination, height, moved)
    state.redelegations.set(completion, (*queued, entry))
    state.redelegating_into.set((delegator, msg.destination), completion)


# --- bonding and unbonding ----------------------------------------------------------------------
def bond(state: LedgerState, delegator: bytes, operator: bytes, amount: int, *, from_balance: bool) -> None:
    """Give ``delegator`` shares of ``operator``'s validator for ``amount`` tokens, taken from its
    balance (or already out of another validator, for a redelegation)."""
    info = validator(state, operator)
    if info.tombstoned:
        raise Tombstoned("this validator is tombstoned: it can never be bonded to again")
    distribution.settle(state, operator)  # rewards so far belong to the shares held so far
    info = validator(state, operator)
    if info.shares and not info.tokens:
        raise ValidatorHasNoTokens("this validator was slashed to nothing: its shares have no price")
    new_shares = amount if not info.shares else amount * info.shares // info.tokens
    if new_shares == 0:
        raise InsufficientStake(f"{format_amount(amount)} buys less than one share of this validator")
    if info.shares + new_shares > MAX_AMOUNT or info.tokens + amount > MAX_AMOUNT:
        raise AmountOverflow("this validator's shares would pass 2^63 - 1")
    if from_balance:
        debit(state, delegator, amount, "delegation")
    held = state.delegations.get((delegator, operator)) or 0
    if not held:
        _index_add(state, delegator, operator)
    state.delegations.set((delegator, operator), held + new_shares)
    state.validators.set(
        operator, dataclasses.replace(info, tokens=info.tokens + amount, shares=info.shares + new_shares)
    )
    state.add("total_bonded", amount)


def unbond(state: LedgerState, delegator: bytes, operator: bytes, amount: int) -> int:
    """Take ``amount`` tokens' worth of shares from the delegation; returns the tokens removed
    from the validator: ``amount``, or the whole delegation's worth when it leaves entirely (the
    validator's every token with its last shares). Raises UnknownValidator, InsufficientStake."""
    validator(state, operator)
    distribution.settle(state, operator)
    info = validator(state, operator)
    held = state.delegations.get((delegator, operator)) or 0
    value = held * info.tokens // info.shares if held else 0
    if amount > value:
        raise InsufficientStake(
            f"unbonding {format_amount(amount)} but the delegation is worth {format_amount(value)}"
        )
    removed = -(-amount * info.shares // info.tokens) if amount else 0  # ceil: against the leaver
    if removed >= held:
        # Leaving entirely (or as good as: less than one share would stay): every share goes,
        # and with the last shares of the validator, every token.
        removed = held
        tokens = info.tokens if held == info.shares else value
    else:
        tokens = amount
    if removed == held:
        state.delegations.delete((delegator, operator))
        _index_remove(state, delegator, operator)
    else:
        state.delegations.set((delegator, operator), held - removed)
    state.validators.set(
        operator, dataclasses.replace(info, tokens=info.tokens - tokens, shares=info.shares - removed)
    )
    state.add("total_bonded", -tokens)
    return tokens


def _queue_unbonding(state: LedgerState, delegator: bytes, operator: bytes, tokens: int, height: int) -> None:
    release = height + state.params.unbonding_period
    queued = state.unbonding.get(release) or ()
    state.unbonding.set(release, (*queued, Unbonding(delegator, operator, height, tokens)))
    state.add("total_unbonding", tokens)


def _index_add(state: LedgerState, delegator: bytes, operator: bytes) -> None:
    operators = state.delegated_to.get(delegator) or ()
    if len(operators) >= MAX_DELEGATIONS:
        raise TooManyDelegations(f"an account may delegate to at most {MAX_DELEGATIONS} validators")
    state.delegated_to.set(delegator, tuple(sorted((*operators, operator))))


def _index_remove(state: LedgerState, delegator: bytes, operator: bytes) -> None:
    remaining = tuple(o for o in state.delegated_to.get(delegator) or () if o != operator)
    if remaining:
        state.delegated_to.set(delegator, remaining)
    else:
        state.delegated_to.delete(delegator)


def release_matured(state: LedgerState, height: int) -> None:
    """Pay out the unbonding entries maturing at ``height``, and end the redelegations that stop
    being slashable then."""
    for entry in state.unbonding.get(height) or ():
        state.credit(entry.delegator, entry.amount)
        state.add("total_unbonding", -entry.amount)
    state.unbonding.delete(height)
    for redelegation in state.redelegations.get(height) or ():
        key = (redelegation.delegator, redelegation.destination)
        if state.redelegating_into.get(key) == height:
            state.redelegating_into.delete(key)
    state.redelegations.delete(height)


# --- slashing -----------------------------------------------------------------------------------
def slash(
    state: LedgerState, operator: bytes, fraction: int, infraction_height: int, *, tombstone: bool
) -> int:
    """Burn ``fraction`` (DEC-scaled) of what ``operator``'s validator had at stake at
    ``infraction_height``: its tokens, the unbonding entries and redelegations that left it since
    (Cosmos's rule: an infraction is slashable until the unbonding that followed it completes).

    With ``tombstone`` it is jailed for good. A tombstoned validator is not slashed again (one
    punishment per offence). Returns the amount burned. Raises UnknownValidator.
    """
    info = validator(state, operator)
    if info.tombstoned:
        return 0
    # Stake that left in block u still voted at heights up to u + DELAY - 1.
    since = infraction_height - VALIDATOR_SET_DELAY + 1
    cut = mul_ratio(info.tokens, fraction)
    state.validators.set(
        operator,
        dataclasses.replace(
            info, tokens=info.tokens - cut, tombstoned=tombstone, jailed=info.jailed or tombstone
        ),
    )
    state.add("total_bonded", -cut)
    burned = cut + _slash_unbonding(state, operator, fraction, since)
    burned += _slash_redelegations(state, operator, fraction, since)
    state.add("burned", burned)
    return burned


def _slash_unbonding(state: LedgerState, operator: bytes, fraction: int, since: int) -> int:
    burned = 0
    for release, entries in state.unbonding.sorted_items():
        if not any(e.validator == operator and e.creation_height >= since for e in entries):
            continue
        updated = []
        for entry in entries:
            if entry.validator == operator and entry.creation_height >= since:
                entry_cut = mul_ratio(entry.amount, fraction)
                burned += entry_cut
                entry = dataclasses.replace(entry, amount=entry.amount - entry_cut)
            updated.append(entry)
        state.unbonding.set(release, tuple(updated))
    state.add("total_unbonding", -burned)
    return burned


def _slash_redelegations(state: LedgerState, operator: bytes, fraction: int, since: int) -> int:
    """Cut the redelegated stake at its destination (what is still delegated there)."""
    burned = 0
    for _, entries in state.redelegations.sorted_items():
        for entry in entries:
            if entry.source != operator or entry.creation_height < since:
                continue
            want = mul_ratio(entry.amount, fraction)
            worth = delegation_value(state, entry.delegator, entry.destination)
            if want and worth:
                burned += unbond(state, entry.delegator, entry.destination, min(want, worth))
    return burned


def jail(state: LedgerState, operator: bytes, until: int) -> None:
    """Take the validator out of the active set until ``until`` (then ``unjail`` may bring it back)."""
    info = validator(state, operator)
    state.validators.set(operator, dataclasses.replace(info, jailed=True, jailed_until=until))
