"""Downtime: a validator that stops signing is jailed (out of the active set), slashed a little,
and may come back with ``unjail`` once its jail time is over. The attack this answers (issue 12,
item 3): a staker whose node never runs used to stop the chain for good."""

from __future__ import annotations

from protocol.economics import mul_ratio
from protocol.ledger.block import Misbehaviour
from protocol.ledger.errors import (
    InsufficientStake,
    JailPeriodNotOver,
    NotJailed,
    Tombstoned,
    UnknownValidator,
)
from protocol.ledger.slashing import max_missed
from protocol.ledger.tx import Delegate, Undelegate, Unjail, Unstake
from protocol.units import percent

from .ledger_helpers import GENESIS_STAKE, TEST_PARAMS, Chain, addr, assert_block_rejected, make_genesis

#: A window of 10 heights, at least half of them signed; 5 blocks in jail.
PARAMS = (
    TEST_PARAMS.with_value("signed_blocks_window", 10)
    .with_value("min_signed_per_window", percent(50))
    .with_value("downtime_jail_blocks", 5)
)
ALL = [addr("val-0"), addr("val-1"), addr("val-2")]
WITHOUT_2 = ALL[:2]


def chain_with(**genesis: object) -> Chain:
    return Chain(make_genesis(PARAMS, **genesis))  # type: ignore[arg-type]


def members(chain: Chain) -> set[bytes]:
    return {v.address for v in chain.state.validator_set()}


def test_the_limit_is_the_window_less_the_heights_that_must_be_signed() -> None:
    assert max_missed(10, percent(50)) == 5
    assert max_missed(100, percent("50.5")) == 49  # 50.5 signed heights round up to 51
    assert max_missed(10, percent(99)) == 0


def test_a_validator_that_stops_signing_is_jailed_slashed_and_leaves_the_set() -> None:
    chain = chain_with()
    chain.advance_to(10, signers=ALL, voters=ALL)  # a full window watched, all signed
    tokens = chain.bonded("val-2")
    burned = chain.state.vars["burned"]
    limit = max_missed(10, percent(50))
    chain.advance_to(10 + limit, signers=WITHOUT_2, voters=ALL)  # misses exactly the limit
    assert addr("val-2") in members(chain)
    assert len(chain.state.signing[addr("val-2")].missed) == limit
    chain.block(signers=WITHOUT_2, voters=ALL)  # one more: jailed
    info = chain.state.validators[addr("val-2")]
    assert info.jailed and not info.tombstoned and info.jailed_until == chain.height + 5
    cut = mul_ratio(tokens, PARAMS.downtime_slash)
    assert info.tokens == tokens - cut and chain.state.vars["burned"] - burned == cut
    assert addr("val-2") not in members(chain)
    assert members(chain) == set(WITHOUT_2)
    # Still in the voting set for two heights (consensus's delay): nothing more happens to it.
    chain.block(signers=WITHOUT_2, voters=ALL)
    assert chain.state.validators[addr("val-2")].tokens == tokens - cut


def test_old_misses_age_out_of_the_window() -> None:
    chain = chain_with()
    chain.advance_to(10, signers=ALL, voters=ALL)
    for _ in range(6):  # 2 misses, 3 signed: never more than 4 misses in any 10 heights
        chain.advance_to(chain.height + 2, signers=WITHOUT_2, voters=ALL)
        chain.advance_to(chain.height + 3, signers=ALL, voters=ALL)
    assert addr("val-2") in members(chain)
    assert all(h > chain.height - 10 for h in chain.state.signing[addr("val-2")].missed)


def test_nobody_is_jailed_before_a_whole_window_was_watched() -> None:
    chain = chain_with()
    chain.advance_to(9, signers=WITHOUT_2, voters=ALL)
    assert addr("val-2") in members(chain)
    chain.block(signers=WITHOUT_2, voters=ALL)
    assert addr("val-2") not in members(chain)


def test_blocks_that_do_not_say_who_voted_judge_nobody() -> None:
    chain = chain_with()
    chain.advance_to(30, signers=WITHOUT_2)  # no voters given
    chain.advance_to(40, voters=ALL)  # no signers given (a genesis parent)
    assert addr("val-2") in members(chain)
    assert chain.state.signing[addr("val-2")].missed == ()


def test_a_block_everybody_signed_writes_nothing_for_liveness() -> None:
    chain = chain_with()
    chain.advance_to(3, signers=ALL, voters=ALL)
    before = dict(chain.state.signing.sorted_items())
    chain.block(signers=ALL, voters=ALL)
    assert dict(chain.state.signing.sorted_items()) == before


def test_the_chain_loses_a_silent_third_and_keeps_its_quorum() -> None:
    # val-2 holds 40% and never signs: once jailed, val-0 and val-1 are the whole set.
    stakes = [("val-0", 300_000), ("val-1", 300_000), ("val-2", 400_000)]
    chain = chain_with(stakes=stakes)
    chain.advance_to(10, signers=WITHOUT_2, voters=ALL)
    active = chain.state.validator_set()
    assert {v.address for v in active} == set(WITHOUT_2)
    total = sum(v.power for v in active)
    assert 3 * sum(v.power for v in active if v.address in WITHOUT_2) > 2 * total


def test_unjail_after_the_jail_time_brings_the_validator_back() -> None:
    chain = chain_with()
    chain.advance_to(10, signers=WITHOUT_2, voters=ALL)
    until = chain.state.validators[addr("val-2")].jailed_until
    assert_block_rejected(chain, [chain.tx("val-2", Unjail())], JailPeriodNotOver, 2019)
    chain.advance_to(until - 1, signers=WITHOUT_2, voters=WITHOUT_2)
    chain.block([chain.tx("val-2", Unjail())], signers=WITHOUT_2, voters=WITHOUT_2)
    assert addr("val-2") in members(chain)
    info = chain.state.validators[addr("val-2")]
    assert not info.jailed and info.jailed_until == 0
    # A fresh window: it is not jailed again before it has been watched for a whole one.
    assert chain.state.signing[addr("val-2")].start_height == chain.height
    chain.advance_to(chain.height + 9, signers=WITHOUT_2, voters=ALL)
    assert addr("val-2") in members(chain)


def test_unjail_refusals() -> None:
    chain = chain_with()
    assert_block_rejected(chain, [chain.tx("val-2", Unjail())], NotJailed, 2018)
    assert_block_rejected(chain, [chain.tx("alice", Unjail())], UnknownValidator, 2012)
    chain.block(misbehaviour=[Misbehaviour(addr("val-1"), height=0)])
    assert_block_rejected(chain, [chain.tx("val-1", Unjail())], Tombstoned, 2011)
    # Jailed, then unbonded below the minimum: it could not join the set, so it may not unjail.
    chain.advance_to(10, signers=[addr("val-0")], voters=[addr("val-0"), addr("val-2")])
    assert chain.state.validators[addr("val-2")].jailed
    chain.block([chain.tx("val-2", Unstake(chain.delegated("val-2", "val-2") - 1))])
    assert chain.bonded("val-2") == 1
    chain.advance_to(chain.state.validators[addr("val-2")].jailed_until)
    assert_block_rejected(chain, [chain.tx("val-2", Unjail())], InsufficientStake, 2010)


def test_delegators_share_the_downtime_slash_and_may_leave_a_jailed_validator() -> None:
    chain = chain_with()
    chain.block([chain.tx("alice", Delegate(addr("val-2"), GENESIS_STAKE))])
    chain.advance_to(10, signers=WITHOUT_2, voters=ALL)
    assert chain.state.validators[addr("val-2")].jailed
    worth = chain.delegated("alice", "val-2")
    assert worth <= GENESIS_STAKE - mul_ratio(GENESIS_STAKE, PARAMS.downtime_slash) + chain.rewards("val-2")
    chain.block([chain.tx("alice", Undelegate(addr("val-2"), worth))])
    assert (addr("alice"), addr("val-2")) not in chain.state.delegations
