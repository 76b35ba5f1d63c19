"""Validator rewards (Cosmos x/distribution, simplified): earned per block, split lazily.

Each block credits each rewarded validator's share of the issuance and fees to its ``rewards``
accumulator (an O(1) write per validator, and the only one: the econsim kernel sums it over a
span exactly). Whenever anything about a validator's delegations is about to change (a
delegation, an undelegation, a redelegation, a commission edit, an unjail), :func:`settle`
first splits what accumulated: the commission to the operator's balance, the rest compounded into
the validator's tokens, where it raises the worth of every share. Delegators therefore share the
rewards pro rata to the shares they held while the rewards were earned, without any per-delegator
work, and a newcomer buys in only after the rewards before it were settled.

Pending rewards are not voting power and are not slashed (as in Cosmos, where outstanding rewards
are not part of the bonded stake); they are counted in ``total_rewards`` for the supply equation.
"""

from __future__ import annotations

import dataclasses

from protocol.economics import mul_ratio
from protocol.ledger.state import LedgerState


def accrue(state: LedgerState, operator: bytes, amount: int) -> None:
    """Add one block's reward to the validator's accumulator (nothing for 0)."""
    if amount <= 0:
        return
    info = state.validators[operator]
    state.validators.set(operator, dataclasses.replace(info, rewards=info.rewards + amount))
    state.add("total_rewards", amount)


def settle(state: LedgerState, operator: bytes) -> int:
    """Split the validator's pending rewards: its commission to the operator's balance, the rest
    into its tokens (all of it to the operator when nobody holds shares). Returns the commission."""
    info = state.validators.get(operator)
    if info is None or info.rewards == 0:
        return 0
    pending = info.rewards
    commission = mul_ratio(pending, info.commission) if info.shares else pending
    to_delegators = pending - commission
    state.validators.set(operator, dataclasses.replace(info, rewards=0, tokens=info.tokens + to_delegators))
    state.add("total_rewards", -pending)
    state.add("total_bonded", to_delegators)
    state.credit(operator, commission)
    return commission
