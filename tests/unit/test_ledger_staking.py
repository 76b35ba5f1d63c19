"""Stake, unstake with an unbonding period released automatically, the validator set, and the
slashing hook (bonded and unbonding stake cut, then tombstoned)."""

from __future__ import annotations

from protocol.economics import mul_ratio
from protocol.ledger import staking
from protocol.ledger.block import Misbehaviour
from protocol.ledger.errors import (
    InsufficientFunds,
    InsufficientStake,
    NoVotingPower,
    Tombstoned,
    UnknownValidator,
)
from protocol.ledger.state import Unbonding
from protocol.ledger.tx import GovPropose, GovVote, Stake, Unstake
from protocol.units import percent

from .ledger_helpers import (
    GENESIS_STAKE,
    TEST_PARAMS,
    Chain,
    addr,
    assert_block_rejected,
    assert_rejected,
    make_genesis,
)

PERIOD = TEST_PARAMS.unbonding_period


def test_stake_bonds_from_the_balance_and_joins_the_validator_set() -> None:
    chain = Chain()
    balance = chain.balance("alice")
    total = chain.state.vars["total_bonded"]
    chain.block([chain.tx("alice", Stake(500))])
    assert chain.balance("alice") == balance - 500 - chain.params.min_fee
    assert chain.bonded("alice") == 500
    assert chain.state.vars["total_bonded"] == total + 500
    members = {v.address: v.power for v in chain.state.validator_set()}
    assert members[addr("alice")] == 500


def test_stake_adds_to_an_existing_bond() -> None:
    chain = Chain()
    chain.block([chain.tx("val-0", Stake(7))])
    assert chain.bonded("val-0") == GENESIS_STAKE + 7


def test_stake_below_the_validator_minimum_is_bonded_but_not_active() -> None:
    chain = Chain()
    chain.block([chain.tx("alice", Stake(TEST_PARAMS.min_validator_stake - 1))])
    assert chain.bonded("alice") == TEST_PARAMS.min_validator_stake - 1
    assert addr("alice") not in {v.address for v in chain.state.validator_set()}


def test_validator_set_keeps_the_largest_max_validators_sorted_by_address() -> None:
    params = TEST_PARAMS.with_value("max_validators", 2)
    chain = Chain(make_genesis(params, stakes=[("val-0", 300), ("val-1", 100), ("val-2", 200)]))
    chosen = chain.state.validator_set()
    assert {v.address for v in chosen} == {addr("val-0"), addr("val-2")}
    assert [v.address for v in chosen] == sorted(v.address for v in chosen)


def test_stake_more_than_the_balance() -> None:
    chain = Chain()
    raw = chain.tx("alice", Stake(chain.balance("alice")))
    assert_block_rejected(chain, [raw], InsufficientFunds, 2006, tx_index=0)


def test_unstake_waits_for_the_unbonding_period_then_releases_automatically() -> None:
    chain = Chain()
    chain.block([chain.tx("alice", Stake(1_000))])
    chain.block([chain.tx("alice", Unstake(400))])
    unstaked_at = chain.height
    balance = chain.balance("alice")
    assert chain.bonded("alice") == 600
    assert chain.state.vars["total_unbonding"] == 400
    assert chain.state.unbonding.get(unstaked_at + PERIOD) == (Unbonding(addr("alice"), 400),)

    chain.advance_to(unstaked_at + PERIOD - 1)
    assert chain.balance("alice") == balance  # still unbonding
    chain.block()  # begin-block of unstaked_at + PERIOD releases it
    assert chain.balance("alice") == balance + 400
    assert chain.state.vars["total_unbonding"] == 0
    assert chain.state.unbonding.get(unstaked_at + PERIOD) is None


def test_unstake_everything_leaves_the_set() -> None:
    chain = Chain()
    chain.block([chain.tx("val-1", Unstake(GENESIS_STAKE))])
    assert chain.bonded("val-1") == 0
    assert addr("val-1") not in {v.address for v in chain.state.validator_set()}


def test_unstake_more_than_bonded() -> None:
    chain = Chain()
    raw = chain.tx("val-0", Unstake(GENESIS_STAKE + 1))
    assert_block_rejected(chain, [raw], InsufficientStake, 2010, tx_index=0)


def test_unstake_without_any_stake() -> None:
    chain = Chain()
    assert_block_rejected(chain, [chain.tx("alice", Unstake(1))], InsufficientStake, 2010)


# --- slashing ------------------------------------------------------------------------------------


def test_misbehaviour_cuts_bonded_and_unbonding_stake_burns_it_and_tombstones() -> None:
    chain = Chain()
    chain.block([chain.tx("val-0", Unstake(100_001))])
    release = chain.height + PERIOD
    bonded = chain.bonded("val-0")
    burned = chain.state.vars["burned"]

    result = chain.block(misbehaviour=[Misbehaviour(addr("val-0"))])

    fraction = TEST_PARAMS.double_sign_slash
    bonded_cut, unbonding_cut = mul_ratio(bonded, fraction), mul_ratio(100_001, fraction)
    assert (bonded_cut, unbonding_cut) == (44_999, 5_000)  # 5% of 899_999 and 100_001, truncated
    info = chain.state.validators[addr("val-0")]
    assert info.bonded == bonded - bonded_cut
    assert info.tombstoned
    assert chain.state.unbonding[release] == (Unbonding(addr("val-0"), 100_001 - unbonding_cut),)
    assert chain.state.vars["burned"] - burned == result.burned
    assert result.burned == bonded_cut + unbonding_cut  # no fees in this block
    assert addr("val-0") not in {v.address for v in chain.state.validator_set()}


def test_slashing_cuts_only_the_offenders_unbonding_entries() -> None:
    chain = Chain()
    chain.block([chain.tx("val-0", Unstake(1_000)), chain.tx("val-1", Unstake(2_000))])
    release = chain.height + PERIOD
    chain.block(misbehaviour=[Misbehaviour(addr("val-1"))])
    assert chain.state.unbonding[release] == (
        Unbonding(addr("val-0"), 1_000),
        Unbonding(addr("val-1"), 2_000 - 100),
    )


def test_a_validator_that_unbonded_everything_is_still_slashed_while_unbonding() -> None:
    # Double-sign, then try to run with the stake: the unbonding entry must still be cut.
    chain = Chain()
    chain.block([chain.tx("val-2", Unstake(GENESIS_STAKE))])
    release = chain.height + PERIOD
    chain.block(misbehaviour=[Misbehaviour(addr("val-2"))])
    cut = mul_ratio(GENESIS_STAKE, TEST_PARAMS.double_sign_slash)
    assert chain.state.unbonding[release] == (Unbonding(addr("val-2"), GENESIS_STAKE - cut),)
    assert chain.state.is_tombstoned(addr("val-2"))
    assert_block_rejected(chain, [chain.tx("val-2", Stake(1_000))], Tombstoned, 2011)


def test_slashed_unbonding_is_released_reduced() -> None:
    chain = Chain()
    chain.block([chain.tx("val-0", Unstake(20_000))])
    release = chain.height + PERIOD
    chain.block(misbehaviour=[Misbehaviour(addr("val-0"))])
    chain.advance_to(release - 1)
    balance = chain.balance("val-0")
    rewards_free = chain.state.copy()
    chain.block()
    assert chain.balance("val-0") == balance + 19_000
    assert rewards_free.balance(addr("val-0")) == balance  # tombstoned: no rewards on top


def test_a_second_offence_of_a_tombstoned_validator_is_not_slashed_again() -> None:
    chain = Chain()
    chain.block(misbehaviour=[Misbehaviour(addr("val-1"))])
    bonded = chain.bonded("val-1")
    result = chain.block(misbehaviour=[Misbehaviour(addr("val-1")), Misbehaviour(addr("val-1"))])
    assert chain.bonded("val-1") == bonded
    assert result.burned == 0


def test_the_same_offence_twice_in_one_block_is_slashed_once() -> None:
    chain = Chain()
    offence = Misbehaviour(addr("val-1"), height=0)
    chain.block(misbehaviour=[offence, offence])
    assert chain.bonded("val-1") == GENESIS_STAKE - mul_ratio(GENESIS_STAKE, percent(5))


def test_misbehaviour_of_an_unknown_address_is_ignored() -> None:
    chain = Chain()
    result = chain.block(misbehaviour=[Misbehaviour(addr("mallory"))])
    assert result.burned == 0
    assert addr("mallory") not in chain.state.validators


def test_tombstoned_validator_can_never_bond_again() -> None:
    chain = Chain()
    chain.block(misbehaviour=[Misbehaviour(addr("val-0"))])
    assert_block_rejected(chain, [chain.tx("val-0", Stake(1))], Tombstoned, 2011, tx_index=0)


def test_tombstoned_validator_may_still_unbond_what_is_left() -> None:
    chain = Chain()
    chain.block(misbehaviour=[Misbehaviour(addr("val-0"))])
    left = chain.bonded("val-0")
    chain.block([chain.tx("val-0", Unstake(left))])
    assert chain.bonded("val-0") == 0
    assert chain.state.is_tombstoned(addr("val-0"))  # the tombstone outlives the stake


def test_tombstoned_validator_has_no_voting_power() -> None:
    chain = Chain()
    chain.block([chain.tx("alice", GovPropose("min_fee", 11, TEST_PARAMS.gov_min_deposit))])
    chain.block(misbehaviour=[Misbehaviour(addr("val-0"))])
    assert_block_rejected(chain, [chain.tx("val-0", GovVote(1, "yes"))], NoVotingPower, 2035)


def test_slash_hook_refuses_an_address_that_never_bonded() -> None:
    chain = Chain()
    assert_rejected(
        chain.state,
        lambda: staking.slash(chain.state, addr("alice"), percent(5)),
        UnknownValidator,
        2012,
    )


def test_slash_hook_without_tombstone_keeps_the_validator_active() -> None:
    chain = Chain()
    burned = staking.slash(chain.state, addr("val-1"), percent(1), tombstone=False)
    assert burned == GENESIS_STAKE // 100
    assert chain.bonded("val-1") == GENESIS_STAKE - burned
    assert not chain.state.is_tombstoned(addr("val-1"))
    chain.state.check_invariants()


def test_a_rejected_block_undoes_its_slashing_and_releases_too() -> None:
    chain = Chain()
    chain.block([chain.tx("val-1", Unstake(500))])
    chain.advance_to(PERIOD)  # the next block releases val-1's unbonding
    balance = chain.balance("val-1")
    assert_block_rejected(
        chain,
        [chain.tx("alice", Unstake(1))],
        InsufficientStake,
        2010,
        tx_index=0,
        misbehaviour=[Misbehaviour(addr("val-0"))],
    )
    assert not chain.state.is_tombstoned(addr("val-0"))
    assert chain.bonded("val-0") == GENESIS_STAKE
    assert chain.balance("val-1") == balance
    assert chain.state.vars["total_unbonding"] == 500
