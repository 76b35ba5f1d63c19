"""Governance: parameter-change proposals with a deposit, stake-weighted votes, and the tally.

Voting power is a validator's bonded stake at tally time. At the end of the voting period
(Cosmos SDK x/gov rules): no quorum -> ``no_quorum``, deposit returned; veto share of the votes
above the veto threshold -> ``vetoed``, deposit burned; yes share of the non-abstaining votes above
the threshold -> ``passed`` and the parameter changes in that block; otherwise ``rejected``.
"""

from __future__ import annotations

import dataclasses

from protocol.ledger.bank import debit
from protocol.ledger.errors import (
    DepositTooLow,
    InvalidParamValue,
    NoVotingPower,
    UnknownProposal,
    VotingClosed,
)
from protocol.ledger.state import LedgerState, Proposal
from protocol.ledger.tx import GovPropose, GovVote, Tx
from protocol.units import DEC


def propose(state: LedgerState, tx: Tx, msg: GovPropose, height: int) -> int:
    """Open a proposal; returns its id. Raises UnknownParam, InvalidParamValue, DepositTooLow."""
    state.params.with_value(msg.param, msg.value)  # validates the name and the value now
    if msg.deposit < state.params.gov_min_deposit:
        raise DepositTooLow(f"deposit {msg.deposit} is below the minimum {state.params.gov_min_deposit}")
    debit(state, tx.sender, msg.deposit, "proposal deposit")
    proposal_id = state.vars["next_proposal_id"]
    state.add("next_proposal_id", 1)
    state.add("total_deposits", msg.deposit)
    state.proposals.set(
        proposal_id,
        Proposal(
            id=proposal_id,
            proposer=tx.sender,
            param=msg.param,
            value=msg.value,
            deposit=msg.deposit,
            submit_height=height,
            end_height=height + state.params.gov_voting_period,
        ),
    )
    return proposal_id


def vote(state: LedgerState, tx: Tx, msg: GovVote, height: int) -> None:
    """Record (or replace) the sender's vote. Only bonded, non-tombstoned validators vote."""
    proposal = state.proposals.get(msg.proposal_id)
    if proposal is None:
        raise UnknownProposal(f"no proposal {msg.proposal_id}")
    if proposal.status != "voting" or height > proposal.end_height:
        raise VotingClosed(f"voting on proposal {msg.proposal_id} ended at height {proposal.end_height}")
    info = state.validators.get(tx.sender)
    if info is None or info.tombstoned or info.bonded == 0:
        raise NoVotingPower("only accounts with bonded stake vote")
    state.votes.set((msg.proposal_id, tx.sender), msg.option)


def tally_ending(state: LedgerState, height: int) -> list[Proposal]:
    """Close every proposal whose voting period ends at ``height``; returns them, closed."""
    closed = []
    for _, proposal in state.proposals.sorted_items():
        if proposal.status == "voting" and proposal.end_height == height:
            closed.append(_tally(state, proposal))
    return closed


def _tally(state: LedgerState, proposal: Proposal) -> Proposal:
    params = state.params
    power = {addr: info.bonded for addr, info in state.validators.sorted_items() if not info.tombstoned}
    total_power = sum(power.values())
    counts = dict.fromkeys(("yes", "no", "abstain", "veto"), 0)
    for (proposal_id, voter), option in state.votes.sorted_items():
        if proposal_id != proposal.id:
            continue
        counts[option] += power.get(voter, 0)
        state.votes.delete((proposal_id, voter))
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
    if status == "passed":
        try:
            state.set_params(params.with_value(proposal.param, proposal.value))
        except InvalidParamValue:
            # Valid when proposed, but another change since makes it inconsistent now.
            status = "rejected"
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
