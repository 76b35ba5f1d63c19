"""Ledger events (protocol/ledger/events.py): apply_block reports what the block did that services
react to, in order, and nothing for a block that did none of it."""

from __future__ import annotations

import pytest

from protocol.ledger.block import Misbehaviour
from protocol.ledger.events import (
    PARAMS_CHANGED,
    VALIDATOR_JAILED,
    VALIDATOR_SLASHED,
    LedgerEvent,
)
from protocol.ledger.tx import GovPropose, GovVote, Transfer
from protocol.units import percent

from .ledger_helpers import TEST_PARAMS, Chain, addr, make_genesis

ALL = [addr("val-0"), addr("val-1"), addr("val-2")]


def test_a_block_of_transfers_has_no_events() -> None:
    chain = Chain()
    result = chain.block(
        [chain.tx("alice", Transfer(addr("bob"), 5)), chain.tx("bob", Transfer(addr("alice"), 3))]
    )
    assert result.events == ()


def test_double_sign_evidence_is_one_slash_event_and_repeated_evidence_none() -> None:
    chain = Chain()
    result = chain.block(misbehaviour=[Misbehaviour(addr("val-1"), height=0)])
    assert result.events == (LedgerEvent(VALIDATOR_SLASHED, addr("val-1")),)
    assert chain.state.validators[addr("val-1")].tombstoned
    again = chain.block(misbehaviour=[Misbehaviour(addr("val-1"), height=0)])
    assert again.events == ()  # tombstoned: evidence counts once


def test_a_validator_jailed_for_downtime_is_an_event_in_the_block_that_jails_it() -> None:
    params = (
        TEST_PARAMS.with_value("signed_blocks_window", 10)
        .with_value("min_signed_per_window", percent(50))
        .with_value("downtime_jail_blocks", 5)
    )
    chain = Chain(make_genesis(params))
    chain.advance_to(10, signers=ALL, voters=ALL)
    events = []
    while not chain.state.validators[addr("val-2")].jailed:
        events.extend(chain.block(signers=ALL[:2], voters=ALL).events)
    assert events == [LedgerEvent(VALIDATOR_JAILED, addr("val-2"))]


@pytest.mark.parametrize(("votes", "changed"), [({"val-0": "yes"}, True), ({"val-0": "no"}, False)])
def test_a_passed_proposal_is_a_parameter_event_and_a_rejected_one_is_not(
    votes: dict[str, str], changed: bool
) -> None:
    chain = Chain(make_genesis(stakes=[("val-0", 600), ("val-1", 250), ("val-2", 150)]))
    chain.block([chain.tx("alice", GovPropose("dispute_window_blocks", 7, TEST_PARAMS.gov_min_deposit))])
    chain.block([chain.tx(label, GovVote(1, option)) for label, option in votes.items()])
    end = chain.state.proposals[1].end_height
    chain.advance_to(end - 1)
    result = chain.block()
    assert result.closed_proposals == (1,)
    assert result.events == ((LedgerEvent(PARAMS_CHANGED, b"dispute_window_blocks"),) if changed else ())


def test_an_event_kind_outside_the_list_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown ledger event kind"):
        LedgerEvent("escrow_stolen", b"")
