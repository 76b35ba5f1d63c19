"""Governance: parameter-change proposals with a deposit, stake-weighted votes, and the tally.

Voting power is bonded stake at tally time, counted over the active validator set (Cosmos SDK
x/gov): every delegator may vote with the worth of its delegations; a validator's operator votes
for the rest of its validator's stake, so a validator's vote counts for its delegators unless
they vote themselves (then their own vote replaces it for their shares). At the end of the voting
period: no quorum -> ``no_quorum``, deposit returned; veto share of the votes above the veto
threshold -> ``vetoed``, deposit burned; yes share of the non-abstaining votes above the
threshold -> ``passed`` and the parameter changes in that block, if it still may (otherwise
``failed``, deposit returned); otherwise ``rejected``.
"""

from __future__ import annotations

import dataclasses

from protocol.ledger import pool
from protocol.ledger.errors import (
    InvalidParamValue,
    NoVotingPower,
    UnknownProposal,
    VotingClosed,
)
from protocol.ledger.params import MIN_ACTIVE_VALIDATORS, Params, check_governance_change, describe
from protocol.ledger.proposals import open_proposal
from protocol.ledger.state import GovProposal, LedgerState
from protocol.ledger.tx import VOTE_OPTIONS, GovPropose, GovVote, Tx
from protocol.units import DEC


def check_change(state: LedgerState, param: str, value: int) -> Params:
    """The parameters after setting ``param`` to ``value``, if governance may: the bounds and
    invariants of ``protocol.ledger.params``, and an active set no smaller than
    :data:`MIN_ACTIVE_VALIDATORS` (or than it is now, if smaller). Checked when a change is
    proposed and again when it would apply. Raises UnknownParam, InvalidParamValue."""
    changed = check_governance_change(state.params, param, value)
    if param in ("min_validator_stake", "max_validators"):
        now = len(state.validator_set())
        after = len(state.validator_set(changed))
        floor = min(now, MIN_ACTIVE_VALIDATORS)
        if after < floor:
            raise InvalidParamValue(
                f"{param}: {describe(param, value)} would leave {after} validator(s) active, "
                f"fewer than {floor}"
            )
    return changed


def propose(state: LedgerState, tx: Tx, msg: GovPropose, height: int) -> int:
    """Open a proposal; returns its id. Raises UnknownParam, InvalidParamValue, DepositTooLow."""
    check_change(state, msg.param, msg.value)
    return open_proposal(state, tx.sender, msg.param, msg.value, msg.deposit, height)


def vote(state: LedgerState, tx: Tx, msg: GovVote, height: int) -> None:
    """Record (or replace) the sender's vote. Validator operators and delegators vote; what their
    vote weighs is decided at the tally."""
    proposal = state.proposals.get(msg.proposal_id)
    if proposal is None:
        raise UnknownProposal(f"no proposal {msg.proposal_id}")
    if proposal.status != "voting" or height > proposal.end_height:
        raise VotingClosed(f"voting on proposal {msg.proposal_id} ended at height {proposal.end_height}")
    if tx.sender not in state.validators and not state.delegated_to.get(tx.sender):
        raise NoVotingPower("only validator operators and accounts with delegations vote")
    state.votes.set((msg.proposal_id, tx.sender), msg.option)


def tally_ending(state: LedgerState, height: int) -> list[GovProposal]:
    """Close every proposal whose voting period ends at ``height``; returns them, closed."""
    closed = []
    for _, proposal in state.proposals.sorted_items():
        if proposal.status == "voting" and proposal.end_height == height:
            closed.append(_tally(state, proposal))
    return closed


def tally_votes(state: LedgerState, proposal_id: int) -> dict[str, int]:
    """Stake behind each option of a proposal now (Cosmos x/gov's tally): each voter's own
    delegations to active validators, then each voting operator's validator for the shares of
    the delegators that did not vote themselves."""
    counts = dict.fromkeys(VOTE_OPTIONS, 0)
    active = {state.consensus_index[v.address] for v in state.validator_set()}
    undecided_shares = {operator: state.validators[operator].shares for operator in active}
    validator_votes: dict[bytes, str] = {}
    for (vote_id, voter), option in state.votes.sorted_items():
        if vote_id != proposal_id:
            continue
        if voter in active:
            validator_votes[voter] = option
        for operator in state.delegated_to.get(voter) or ():
            if operator not in active:
                continue
            shares = state.delegations.get((voter, operator)) or 0
            undecided_shares[operator] -= shares
            info = state.validators[operator]
            counts[option] += shares * info.tokens // info.shares  # bonded: pending rewards are not
    for operator, option in sorted(validator_votes.items()):
        info = state.validators[operator]
        if info.shares:
            counts[option] += undecided_shares[operator] * info.tokens // info.shares
    return counts


def _tally(state: LedgerState, proposal: GovProposal) -> GovProposal:
    params = state.params
    total_power = sum(v.power for v in state.validator_set())
    counts = tally_votes(state, proposal.id)
    for key, _ in state.votes.sorted_items():
        if key[0] == proposal.id:
            state.votes.delete(key)
    voted = sum(counts.values())
    non_abstain = voted - counts["abstain"]
    refund_deposit = True
    if total_power == 0 or voted * DEC < params.gov_quorum * total_power:
        status = "no_quorum"
    elif voted > 0 and counts["veto"] * DEC > params.gov_veto_threshold * voted:
        status = "vetoed"
        refund_deposit = False
    elif non_abstain > 0 and counts["yes"] * DEC > params.gov_threshold * non_abstain:
        status = "passed"
    else:
        status = "rejected"
    if proposal.param in pool.ACTION_PROPOSALS:
        pool.enact(state, proposal, passed=status == "passed")
    elif status == "passed":
        try:
            state.set_params(check_change(state, proposal.param, proposal.value))
        except InvalidParamValue:
            # Valid when proposed, but not any more (another change since, a smaller set).
            status = "failed"
    state.add("total_deposits", -proposal.deposit)
    if refund_deposit:
        state.credit(proposal.proposer, proposal.deposit)
    else:
        state.add("burned", proposal.deposit)
    result = dataclasses.replace(
        proposal,
        status=status,
        yes=counts["yes"],
        no=counts["no"],
        abstain=counts["abstain"],
        veto=counts["veto"],
    )
    state.proposals.set(proposal.id, result)
    return result
