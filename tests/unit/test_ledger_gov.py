"""Governance: proposals with a deposit, stake-weighted votes, quorum / threshold / veto at the end
of the voting period, and the parameter change it applies (and that the next block obeys)."""

from __future__ import annotations

import pytest

from protocol.economics import mul_ratio
from protocol.ledger.block import Misbehaviour
from protocol.ledger.errors import (
    DepositTooLow,
    InsufficientFunds,
    InvalidParamValue,
    InvalidVoteOption,
    NoVotingPower,
    UnknownParam,
    UnknownProposal,
    VotingClosed,
)
from protocol.ledger.tx import Delegate, GovPropose, GovVote, Stake, Transfer
from protocol.units import DEC, percent

from .ledger_helpers import TEST_PARAMS, Chain, addr, assert_block_rejected, make_genesis

DEPOSIT = TEST_PARAMS.gov_min_deposit
PERIOD = TEST_PARAMS.gov_voting_period
# Voting power 600 / 250 / 150 out of 1000.
WEIGHTED = [("val-0", 600), ("val-1", 250), ("val-2", 150)]


def proposed(
    param: str = "min_fee", value: int = 42, stakes: list[tuple[str, int]] = WEIGHTED
) -> tuple[Chain, int]:
    """A chain with one proposal by Alice, submitted at height 1; returns it and the end height."""
    chain = Chain(make_genesis(stakes=stakes))
    chain.block([chain.tx("alice", GovPropose(param, value, DEPOSIT))])
    return chain, 1 + PERIOD


def vote_and_close(chain: Chain, end: int, votes: dict[str, str]) -> str:
    chain.block([chain.tx(label, GovVote(1, option)) for label, option in votes.items()])
    chain.advance_to(end)
    return chain.state.proposals[1].status


def test_propose_locks_the_deposit_and_opens_the_voting_period() -> None:
    chain = Chain()
    balance = chain.balance("alice")
    chain.block([chain.tx("alice", GovPropose("fee_burn_share", percent(80), DEPOSIT + 5))])
    proposal = chain.state.proposals[1]
    assert (proposal.param, proposal.value, proposal.deposit) == ("fee_burn_share", percent(80), DEPOSIT + 5)
    assert (proposal.submit_height, proposal.end_height, proposal.status) == (1, 1 + PERIOD, "voting")
    assert chain.balance("alice") == balance - DEPOSIT - 5 - chain.params.min_fee
    assert chain.state.vars["total_deposits"] == DEPOSIT + 5
    assert chain.state.vars["next_proposal_id"] == 2


def test_passed_proposal_changes_the_parameter_at_the_end_and_returns_the_deposit() -> None:
    chain, end = proposed("min_fee", 42)
    balance = chain.balance("alice")
    chain.block([chain.tx("val-0", GovVote(1, "yes")), chain.tx("val-1", GovVote(1, "no"))])
    chain.advance_to(end - 1)
    assert chain.params.min_fee == TEST_PARAMS.min_fee  # not before the period ends
    result = chain.block()
    assert result.closed_proposals == (1,)
    proposal = chain.state.proposals[1]
    assert (proposal.status, proposal.yes, proposal.no) == ("passed", 600, 250)
    assert chain.params.min_fee == 42
    assert chain.balance("alice") == balance + DEPOSIT
    assert chain.state.vars["total_deposits"] == 0
    assert not any(True for _ in chain.state.votes.sorted_items())  # votes are cleared


def test_votes_are_weighted_by_stake() -> None:
    chain, end = proposed()
    # One validator against two: the side with more stake decides, not the head count.
    assert vote_and_close(chain, end, {"val-0": "yes", "val-1": "no", "val-2": "no"}) == "passed"
    chain, end = proposed()
    assert vote_and_close(chain, end, {"val-0": "no", "val-1": "yes", "val-2": "yes"}) == "rejected"


def test_voting_power_is_the_stake_at_tally_time() -> None:
    chain, end = proposed()
    chain.block([chain.tx("val-2", GovVote(1, "yes")), chain.tx("val-1", GovVote(1, "no"))])
    chain.block([chain.tx("val-2", Stake(200))])  # 350 yes (and its rewards) against 250 no
    chain.advance_to(end)
    assert chain.state.proposals[1].status == "passed"
    assert chain.state.proposals[1].yes == chain.bonded("val-2") >= 350


def test_threshold_is_strictly_more_than_half_of_non_abstaining_votes() -> None:
    chain, end = proposed(stakes=[("val-0", 501), ("val-1", 499)])
    assert vote_and_close(chain, end, {"val-0": "yes", "val-1": "no"}) == "passed"
    chain, end = proposed(stakes=[("val-0", 500), ("val-1", 500)])
    assert vote_and_close(chain, end, {"val-0": "no", "val-1": "yes"}) == "rejected"  # exactly 50%


def test_abstain_counts_for_quorum_but_not_for_the_threshold() -> None:
    chain, end = proposed()
    assert vote_and_close(chain, end, {"val-0": "abstain", "val-2": "yes"}) == "passed"
    chain, end = proposed()
    assert vote_and_close(chain, end, {"val-0": "abstain", "val-1": "abstain"}) == "rejected"


def test_no_quorum_returns_the_deposit_and_changes_nothing() -> None:
    chain, end = proposed()
    balance = chain.balance("alice")
    assert vote_and_close(chain, end, {"val-2": "yes"}) == "no_quorum"  # 15% < 33.4%
    assert chain.params.min_fee == TEST_PARAMS.min_fee
    assert chain.balance("alice") == balance + DEPOSIT


def test_quorum_boundary_is_inclusive() -> None:
    chain, end = proposed(stakes=[("val-0", 334), ("val-1", 666)])
    assert vote_and_close(chain, end, {"val-0": "yes"}) == "passed"  # exactly 33.4%
    chain, end = proposed(stakes=[("val-0", 333), ("val-1", 667)])
    assert vote_and_close(chain, end, {"val-0": "yes"}) == "no_quorum"


def test_veto_burns_the_deposit() -> None:
    chain, end = proposed()
    balance = chain.balance("alice")
    burned = chain.state.vars["burned"]
    # Veto 400 of 1000 votes = 40% > 33.4%, although yes has a majority.
    assert vote_and_close(chain, end, {"val-0": "yes", "val-1": "veto", "val-2": "veto"}) == "vetoed"
    assert chain.balance("alice") == balance
    vote_fees_burned = mul_ratio(3 * TEST_PARAMS.min_fee, TEST_PARAMS.fee_burn_share)
    assert chain.state.vars["burned"] - burned == DEPOSIT + vote_fees_burned
    assert chain.params.min_fee == TEST_PARAMS.min_fee


def test_veto_below_its_threshold_is_a_no_vote() -> None:
    chain, end = proposed()
    # Veto 150 of 750 = 20%: it only counts against, and yes has 600 of 750.
    assert vote_and_close(chain, end, {"val-0": "yes", "val-2": "veto"}) == "passed"


def test_a_later_vote_replaces_an_earlier_one() -> None:
    chain, end = proposed()
    chain.block([chain.tx("val-0", GovVote(1, "no"))])
    assert vote_and_close(chain, end, {"val-0": "yes"}) == "passed"
    assert chain.state.proposals[1].no == 0


def test_a_vote_in_the_last_block_of_the_period_counts() -> None:
    chain, end = proposed()
    chain.advance_to(end - 1)
    chain.block([chain.tx("val-0", GovVote(1, "yes"))])
    assert chain.state.proposals[1].status == "passed"


def test_vote_after_the_voting_period() -> None:
    chain, end = proposed()
    chain.advance_to(end)
    assert_block_rejected(chain, [chain.tx("val-0", GovVote(1, "yes"))], VotingClosed, 2034, tx_index=0)


def test_vote_on_an_unknown_proposal() -> None:
    chain, _ = proposed()
    assert_block_rejected(chain, [chain.tx("val-0", GovVote(2, "yes"))], UnknownProposal, 2033)


def test_vote_without_bonded_stake_or_a_validator() -> None:
    chain, _ = proposed()
    assert_block_rejected(chain, [chain.tx("bob", GovVote(1, "yes"))], NoVotingPower, 2035)


# --- delegators vote (Cosmos x/gov): a validator's vote counts for them unless they vote ----------


def delegated_proposal(amount: int = 400) -> tuple[Chain, int]:
    """val-0 (600 of its own) also holds ``amount`` of alice's: 1,000 + ``amount`` bonded."""
    chain = Chain(make_genesis(stakes=WEIGHTED))
    chain.block([chain.tx("alice", Delegate(addr("val-0"), amount))])
    chain.block([chain.tx("bob", GovPropose("min_fee", 42, DEPOSIT))])
    return chain, 2 + PERIOD


def close(chain: Chain, end: int, votes: dict[str, str]) -> tuple[str, int, int]:
    chain.block([chain.tx(label, GovVote(1, option)) for label, option in votes.items()])
    chain.advance_to(end)
    proposal = chain.state.proposals[1]
    return proposal.status, proposal.yes, proposal.no


def test_a_validators_vote_counts_for_its_delegators_that_do_not_vote() -> None:
    chain, end = delegated_proposal()
    assert close(chain, end, {"val-0": "yes", "val-1": "no"}) == ("passed", 1_000, 250)


def test_a_delegators_own_vote_replaces_its_validators_for_its_shares() -> None:
    chain, end = delegated_proposal()
    assert close(chain, end, {"val-0": "yes", "alice": "no"}) == ("passed", 600, 400)
    chain, end = delegated_proposal(700)  # alice now outweighs her own validator
    assert close(chain, end, {"val-0": "yes", "alice": "no"}) == ("rejected", 600, 700)


def test_a_delegator_may_vote_when_its_validator_does_not() -> None:
    chain, end = delegated_proposal()
    assert close(chain, end, {"alice": "no", "val-1": "yes"}) == ("rejected", 250, 400)


def test_delegations_to_a_validator_out_of_the_active_set_do_not_vote() -> None:
    chain, end = delegated_proposal()
    chain.block(misbehaviour=[Misbehaviour(addr("val-0"), height=1)])  # tombstoned: out of the set
    assert close(chain, end, {"alice": "yes", "val-1": "no", "val-2": "yes"}) == ("rejected", 150, 250)


def test_vote_with_an_unknown_option_is_refused_when_built() -> None:
    with pytest.raises(InvalidVoteOption) as caught:
        GovVote(1, "maybe")
    assert caught.value.code == 2036


def test_propose_an_unknown_parameter() -> None:
    chain = Chain()
    raw = chain.tx("alice", GovPropose("block_reward", 1, DEPOSIT))
    assert_block_rejected(chain, [raw], UnknownParam, 2030, tx_index=0)


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("fee_burn_share", DEC + 1),
        ("gov_quorum", -1),
        ("unbonding_period", 0),
        ("inflation_min", percent(25)),  # above inflation_max
        ("validator_reward_share", percent(80)),  # with providers' 30%, more than 100%
    ],
)
def test_propose_an_invalid_value(param: str, value: int) -> None:
    chain = Chain()
    raw = chain.tx("alice", GovPropose(param, value, DEPOSIT))
    exc = assert_block_rejected(chain, [raw], InvalidParamValue, 2031)
    assert exc.message.startswith("params.")


def test_propose_with_a_deposit_below_the_minimum() -> None:
    chain = Chain()
    raw = chain.tx("alice", GovPropose("min_fee", 1, DEPOSIT - 1))
    assert_block_rejected(chain, [raw], DepositTooLow, 2032)


def test_propose_without_the_funds_for_the_deposit() -> None:
    chain = Chain(make_genesis(balances=[("alice", DEPOSIT)]))
    raw = chain.tx("alice", GovPropose("min_fee", 1, DEPOSIT))
    assert_block_rejected(chain, [raw], InsufficientFunds, 2006)


def test_a_passed_change_that_became_inconsistent_fails_at_tally() -> None:
    chain = Chain(make_genesis(stakes=WEIGHTED))
    chain.block(
        [
            chain.tx("alice", GovPropose("inflation_max", percent(8), DEPOSIT)),
            chain.tx("alice", GovPropose("inflation_min", percent(9), DEPOSIT)),
        ]
    )
    chain.block([chain.tx("val-0", GovVote(1, "yes")), chain.tx("val-0", GovVote(2, "yes"))])
    chain.advance_to(1 + PERIOD)
    assert chain.state.proposals[1].status == "passed"
    assert chain.state.proposals[2].status == "failed"
    assert (chain.params.inflation_min, chain.params.inflation_max) == (percent(7), percent(8))


def test_fee_burn_share_changes_only_through_governance_and_the_next_block_burns_the_new_share() -> None:
    chain, end = proposed("fee_burn_share", DEC)  # burn every fee from now on
    chain.block([chain.tx("val-0", GovVote(1, "yes"))])
    chain.advance_to(end - 2)

    before = chain.block([chain.tx("bob", Transfer(addr("carol"), 1), fee=1_000)])
    assert before.burned == mul_ratio(1_000, TEST_PARAMS.fee_burn_share) == 500

    closing = chain.block()
    assert closing.closed_proposals == (1,)
    assert chain.params.fee_burn_share == DEC

    after = chain.block([chain.tx("bob", Transfer(addr("carol"), 1), fee=1_000)])
    assert after.burned == 1_000
