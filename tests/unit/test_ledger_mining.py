"""Liquidity mining: pool shares bonded to the programme earn a governance-set share of issuance,
pro rata shares x blocks, paid at each epoch's end with the dust to the community pool; unbonding
takes a delay; just-in-time bonding earns nothing."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.economics import mul_ratio, pro_rata
from protocol.ledger.errors import InvalidParamValue, LedgerError
from protocol.ledger.liquidity_errors import InsufficientAsset, NotBonded
from protocol.ledger.liquidity_state import share_denom
from protocol.ledger.params import Params, check_governance_change
from protocol.ledger.snapshot import decode_snapshot, encode_snapshot
from protocol.ledger.tx import AssetSend, MiningBond, MiningUnbond
from protocol.units import percent

from .ledger_helpers import FEE, TEST_PARAMS, Chain, addr, assert_block_rejected
from .liquidity_helpers import SYMBOL, pool_chain, shares_of

MINING = dataclasses.replace(
    TEST_PARAMS, liquidity_mining_share=percent(5), mining_unbonding_period=3, epoch_length=6
)


def mining_chain() -> Chain:
    """A pool chain whose programme gets 5% of issuance; alice gave bob and dave shares."""
    chain = pool_chain(params=MINING)
    chain.block(
        [
            chain.tx("alice", AssetSend(share_denom(SYMBOL), addr("bob"), 100_000)),
            chain.tx("alice", AssetSend(share_denom(SYMBOL), addr("dave"), 100_000)),
        ]
    )
    return chain


def to_epoch_start(chain: Chain) -> None:
    """Advance so the next block is the first of an epoch."""
    length = chain.params.epoch_length
    chain.advance_to((chain.height // length + 1) * length)


def test_without_bonds_the_programmes_share_stays_with_the_community_pool() -> None:
    plain = pool_chain(params=dataclasses.replace(MINING, liquidity_mining_share=0))
    mined = pool_chain(params=MINING)
    community = plain.state.vars["community_pool"], mined.state.vars["community_pool"]
    a, b = plain.block(), mined.block()
    assert a.minted == b.minted
    assert (
        plain.state.vars["community_pool"] - community[0] == mined.state.vars["community_pool"] - community[1]
    )
    assert mined.state.vars["mining_pool"] == 0


def test_bonded_shares_leave_the_holding_and_return_after_the_unbonding_period() -> None:
    chain = mining_chain()
    chain.block([chain.tx("bob", MiningBond(SYMBOL, 60_000))])
    assert shares_of(chain, "bob") == 40_000
    assert chain.state.mining[(addr("bob"), SYMBOL)].shares == 60_000
    chain.block([chain.tx("bob", MiningUnbond(SYMBOL, 60_000))])
    release = chain.height + MINING.mining_unbonding_period
    chain.advance_to(release - 1)
    assert shares_of(chain, "bob") == 40_000
    chain.block()
    assert shares_of(chain, "bob") == 100_000 and chain.state.height == release


def test_unbonding_more_than_bonded_or_bonding_more_than_held_is_refused() -> None:
    chain = mining_chain()
    chain.block([chain.tx("bob", MiningBond(SYMBOL, 10))])
    assert_block_rejected(chain, [chain.tx("bob", MiningUnbond(SYMBOL, 11))], NotBonded, 2310)
    chain.forget_reserved_nonces()
    assert_block_rejected(chain, [chain.tx("dave", MiningUnbond(SYMBOL, 1))], NotBonded, 2310)
    chain.forget_reserved_nonces()
    assert_block_rejected(chain, [chain.tx("bob", MiningBond(SYMBOL, 10**9))], InsufficientAsset, 2304)


def test_an_epoch_pays_the_pot_pro_rata_shares_times_blocks_with_the_dust_to_the_community() -> None:
    chain = mining_chain()
    to_epoch_start(chain)
    first = chain.height + 1
    chain.block([chain.tx("bob", MiningBond(SYMBOL, 90_000))])  # earns from the end of `first`
    end = first + MINING.epoch_length - 1
    chain.advance_to(end - 3)
    chain.block([chain.tx("dave", MiningBond(SYMBOL, 90_000))])  # earns for the last 2 blocks
    before = chain.balance("bob"), chain.balance("dave"), chain.state.vars["community_pool"]
    pot = chain.state.vars["mining_pool"]
    chain.block()
    assert chain.height == end - 1
    pot = chain.state.vars["mining_pool"]
    result = chain.block()
    pot += mul_ratio(result.minted, MINING.liquidity_mining_share)
    # Same pool, same worth per share: the weights are 90k x blocks each.
    expected, dust = pro_rata(pot, [(addr("bob"), 90_000 * (end - first)), (addr("dave"), 90_000 * 2)])
    assert sorted(result.mining_rewards) == sorted(expected)
    assert chain.balance("bob") - before[0] == dict(expected)[addr("bob")]
    assert chain.balance("dave") - before[1] == dict(expected)[addr("dave")]
    assert sum(amount for _, amount in expected) + dust == pot
    assert chain.state.vars["mining_pool"] == 0
    assert chain.state.vars["community_pool"] - before[2] >= dust


def test_bonding_in_the_last_block_of_an_epoch_earns_nothing_for_it() -> None:
    chain = mining_chain()
    to_epoch_start(chain)
    chain.block([chain.tx("bob", MiningBond(SYMBOL, 50_000))])
    chain.advance_to(chain.height + MINING.epoch_length - 2)
    before = chain.balance("dave")
    result = chain.block([chain.tx("dave", MiningBond(SYMBOL, 100_000))])  # the epoch's last block
    assert chain.height % MINING.epoch_length == 0
    assert addr("dave") not in dict(result.mining_rewards)
    assert chain.balance("dave") == before - FEE
    assert dict(result.mining_rewards)[addr("bob")] > 0


def test_shares_unbonding_earn_nothing_and_an_emptied_bond_is_paid_once_then_removed() -> None:
    chain = mining_chain()
    to_epoch_start(chain)
    chain.block([chain.tx("bob", MiningBond(SYMBOL, 50_000))])
    chain.block()
    chain.block([chain.tx("bob", MiningUnbond(SYMBOL, 50_000))])
    assert chain.state.mining[(addr("bob"), SYMBOL)].shares == 0  # its weight waits for the payout
    chain.advance_to((chain.height // MINING.epoch_length + 1) * MINING.epoch_length)
    assert (addr("bob"), SYMBOL) not in chain.state.mining
    to_epoch_start(chain)
    chain.advance_to(chain.height + MINING.epoch_length)
    assert chain.state.vars["mining_pool"] == 0


@settings(max_examples=25, deadline=None)
@given(
    schedule=st.lists(
        st.tuples(st.sampled_from(("bob", "dave")), st.booleans(), st.integers(1, 60_000)),
        min_size=1,
        max_size=14,
    )
)
def test_mining_rewards_sum_to_the_configured_share_exactly(schedule: list[tuple[str, bool, int]]) -> None:
    # Every block with bonds sets aside exactly its share of issuance; each epoch pays all of it
    # but the pro-rata dust (less than one base unit per bond), which the community pool gets.
    chain = mining_chain()
    pot = 0
    steps: list[MiningBond | MiningUnbond | None] = [
        MiningBond(SYMBOL, n) if bonding else MiningUnbond(SYMBOL, n) for _, bonding, n in schedule
    ]
    labels = [label for label, _, _ in schedule]
    while steps or chain.height % MINING.epoch_length:
        msg, label = (steps.pop(0), labels.pop(0)) if steps else (None, "bob")
        bonds = len(chain.state.mining)
        try:
            result = chain.block([chain.tx(label, msg)] if msg else [])
        except LedgerError:
            chain.forget_reserved_nonces()
            result = chain.block()
        if len(chain.state.mining) or bonds or result.mining_rewards:
            pot += mul_ratio(result.minted, MINING.liquidity_mining_share)
        if chain.height % MINING.epoch_length == 0:
            paid = sum(amount for _, amount in result.mining_rewards)
            assert paid <= pot and (pot - paid < max(1, bonds) or paid == 0)
            assert chain.state.vars["mining_pool"] == 0
            pot = 0
        else:
            assert chain.state.vars["mining_pool"] == (
                pot if len(chain.state.mining) else chain.state.vars["mining_pool"]
            )


def test_governance_keeps_the_mining_share_within_its_bounds_and_the_split_within_100_percent() -> None:
    params = Params()
    assert check_governance_change(
        params, "liquidity_mining_share", percent(10)
    ).liquidity_mining_share == percent(10)
    with pytest.raises(InvalidParamValue):
        check_governance_change(params, "liquidity_mining_share", percent(21))
    with pytest.raises(InvalidParamValue):
        dataclasses.replace(params, liquidity_mining_share=percent(11))  # 60 + 30 + 11 > 100
    with pytest.raises(InvalidParamValue):
        check_governance_change(params, "mining_unbonding_period", 5)
    with pytest.raises(InvalidParamValue):
        check_governance_change(params, "twap_window", 5)


def test_bonds_and_releases_round_trip_through_a_snapshot() -> None:
    chain = mining_chain()
    chain.block([chain.tx("bob", MiningBond(SYMBOL, 50_000))])
    chain.block([chain.tx("bob", MiningUnbond(SYMBOL, 20_000))])
    restored = decode_snapshot(encode_snapshot(chain.state))
    assert restored.state_hash() == chain.state.state_hash()
    assert restored.mining[(addr("bob"), SYMBOL)] == chain.state.mining[(addr("bob"), SYMBOL)]
