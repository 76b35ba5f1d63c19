"""Opening a governance proposal: the one place a deposit is taken and a proposal starts voting,
for parameter changes (``gov``) and action proposals such as an asset registration (``pool``)."""

from __future__ import annotations

from protocol.ledger.bank import debit
from protocol.ledger.errors import DepositTooLow
from protocol.ledger.state import GovProposal, LedgerState
from protocol.units import format_amount


def open_proposal(
    state: LedgerState, proposer: bytes, param: str, value: int | None, deposit: int, height: int
) -> int:
    """Take ``deposit`` from ``proposer`` and open a proposal voting until ``height`` plus the
    voting period; returns its id. ``value`` None: the proposal's own id (an action proposal
    names itself). Raises DepositTooLow, InsufficientFunds; changes nothing when it raises."""
    if deposit < state.params.gov_min_deposit:
        raise DepositTooLow(
            f"deposit {format_amount(deposit)} is below the minimum "
            f"{format_amount(state.params.gov_min_deposit)}"
        )
    debit(state, proposer, deposit, "proposal deposit")
    proposal_id = state.vars["next_proposal_id"]
    state.add("next_proposal_id", 1)
    state.add("total_deposits", deposit)
    state.proposals.set(
        proposal_id,
        GovProposal(
            id=proposal_id,
            proposer=proposer,
            param=param,
            value=proposal_id if value is None else value,
            deposit=deposit,
            submit_height=height,
            end_height=height + state.params.gov_voting_period,
        ),
    )
    return proposal_id
