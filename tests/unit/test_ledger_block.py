"""Blocks: height checks, atomicity, proposer selection, end-block issuance and its split between
validators (signers of the parent commit), providers (GPU-seconds per epoch) and the community."""

from __future__ import annotations

import functools

from protocol import economics
from protocol.economics import mul_ratio
from protocol.ledger.block import apply_block, select_txs
from protocol.ledger.errors import BadBlockHeight, BadSignature
from protocol.ledger.tx import OpenEscrow, Transfer, Unstake
from protocol.units import DEC

from .ledger_helpers import (
    TEST_PARAMS,
    Chain,
    addr,
    assert_rejected,
    flip_signature_bit,
    make_genesis,
    make_terms,
    settle_msg,
    sign_contract,
)

STAKES = [("val-0", 600_000), ("val-1", 250_000), ("val-2", 150_000)]


def test_block_height_must_follow_the_state() -> None:
    chain = Chain()
    chain.block()
    for height in (0, 1, 3, 100):
        ctx = chain.context(height=height)
        assert_rejected(
            chain.state, functools.partial(apply_block, chain.state, ctx, []), BadBlockHeight, 2040
        )
    assert chain.height == 1


def test_select_txs_keeps_the_applicable_candidates_in_order_and_changes_nothing() -> None:
    chain = Chain()
    good_1 = chain.tx("alice", Transfer(addr("bob"), 1))
    gap = chain.tx("bob", Transfer(addr("alice"), 1), nonce=5)
    broke = chain.tx("carol", Transfer(addr("bob"), chain.balance("carol")))
    good_2 = chain.tx("dave", Transfer(addr("bob"), 1))
    good_3 = chain.tx("alice", Transfer(addr("bob"), 1))
    before = chain.state.state_hash()

    chosen = select_txs(chain.state, chain.context(), [good_1, gap, broke, good_2, good_3], max_txs=10)
    assert chosen == [good_1, good_2, good_3]
    assert select_txs(chain.state, chain.context(), [good_1, gap, good_2, good_3], max_txs=2) == [
        good_1,
        good_2,
    ]
    assert chain.state.state_hash() == before
    chain.block(chosen)


def test_select_txs_sees_this_blocks_unbonding_releases() -> None:
    # val-2 holds exactly one fee; its unbonding stake becomes spendable at begin-block of the
    # release height, so a proposer may include a transfer that spends it in that very block.
    genesis = make_genesis(stakes=STAKES, balances=[("val-2", TEST_PARAMS.min_fee)])
    chain = Chain(genesis)
    only_val_0 = [addr("val-0")]  # keep val-2 out of the rewards
    chain.block([chain.tx("val-2", Unstake(40_000))], signers=only_val_0)
    chain.advance_to(TEST_PARAMS.unbonding_period, signers=only_val_0)
    assert chain.balance("val-2") == 0
    spend = chain.tx("val-2", Transfer(addr("bob"), 39_990))
    assert select_txs(chain.state, chain.context(signers=only_val_0), [spend], 10) == [spend]
    chain.block([spend], signers=only_val_0)
    assert chain.balance("val-2") == 0


def test_verified_callback_skips_signature_checks_only_for_what_it_vouches_for() -> None:
    chain = Chain()
    forged = flip_signature_bit(chain.tx("alice", Transfer(addr("bob"), 1)))
    ctx = chain.context()
    assert_rejected(
        chain.state,
        lambda: apply_block(chain.state, ctx, [forged], verified=lambda tx: False),
        BadSignature,
        2003,
    )
    # The mempool already verified it (so says the callback): the ledger does not check again.
    apply_block(chain.state, ctx, [forged], verified=lambda tx: True)
    assert chain.nonce("alice") == 1


# --- issuance and rewards ------------------------------------------------------------------------


def test_issuance_is_minted_by_the_schedule_and_split_three_ways() -> None:
    chain = Chain(make_genesis(stakes=STAKES))
    state = chain.state
    supply, bonded = state.total_supply(), state.vars["total_bonded"]
    inflation = economics.next_inflation(state.vars["inflation"], bonded, supply, state.params)
    provision = economics.block_provision(supply, inflation, state.params)
    split = economics.split_issuance(provision, state.params)
    community, providers = state.vars["community_pool"], state.vars["provider_pool"]

    result = chain.block()

    assert state.vars["inflation"] == inflation
    assert result.minted == provision > 0
    assert state.vars["minted"] == provision
    # Nobody signed a parent commit (first block): every active validator, pro rata stake.
    shares, dust = economics.pro_rata(split.validators, [(addr(label), stake) for label, stake in STAKES])
    assert dict(result.validator_rewards) == dict(shares)
    for label, stake in STAKES:  # accrued to each validator, split at its next settlement
        assert chain.rewards(label) == split.validators * stake // 1_000_000
    assert state.vars["provider_pool"] == providers + split.providers
    assert state.vars["community_pool"] == community + split.community + dust


def test_only_the_signers_of_the_parent_commit_are_rewarded() -> None:
    chain = Chain(make_genesis(stakes=STAKES))
    result = chain.block(signers=[addr("val-1"), addr("val-2"), addr("alice")])
    split = economics.split_issuance(result.minted, TEST_PARAMS)
    shares, _ = economics.pro_rata(split.validators, [(addr("val-1"), 250_000), (addr("val-2"), 150_000)])
    assert dict(result.validator_rewards) == dict(shares)  # alice is no validator: ignored
    assert chain.rewards("val-0") == 0
    assert chain.rewards("val-1") == dict(shares)[addr("val-1")]
    assert chain.rewards("val-2") == dict(shares)[addr("val-2")]


def test_fees_not_burned_join_the_validators_reward() -> None:
    chain = Chain(make_genesis(stakes=[("val-0", 1_000_000)]))
    result = chain.block([chain.tx("alice", Transfer(addr("bob"), 1), fee=1_001)])
    burned, to_validators = economics.split_fees(1_001, TEST_PARAMS)
    assert (burned, to_validators) == (500, 501)
    issued = economics.split_issuance(result.minted, TEST_PARAMS).validators
    assert result.validator_rewards == ((addr("val-0"), issued + to_validators),)


def test_without_active_validators_the_validators_share_goes_to_the_community_pool() -> None:
    chain = Chain(make_genesis(stakes=[("val-0", 1_000)]))
    chain.block([chain.tx("val-0", Unstake(1_000))])
    community = chain.state.vars["community_pool"]
    result = chain.block()
    split = economics.split_issuance(result.minted, TEST_PARAMS)
    assert result.validator_rewards == ()
    assert chain.state.vars["community_pool"] == community + split.community + split.validators


def test_providers_are_paid_pro_rata_the_protocol_fee_they_burned_at_the_end_of_the_epoch() -> None:
    assert TEST_PARAMS.epoch_length == 4
    chain = Chain()
    bob_terms = make_terms("alice", "bob", price=3_000, max_gpu_seconds=1_000, salt=b"bob")
    dave_terms = make_terms("carol", "dave", price=3_000, max_gpu_seconds=1_000, salt=b"dave")
    chain.block(
        [
            chain.tx("alice", OpenEscrow(sign_contract(bob_terms))),
            chain.tx("carol", OpenEscrow(sign_contract(dave_terms))),
        ]
    )
    chain.block(
        [chain.tx("alice", settle_msg(bob_terms, 100)), chain.tx("dave", settle_msg(dave_terms, 300))]
    )
    bob_burned = mul_ratio(100 * 3_000, TEST_PARAMS.protocol_fee_share)
    dave_burned = mul_ratio(300 * 3_000, TEST_PARAMS.protocol_fee_share)
    result = chain.block()  # height 3: not an epoch end
    assert result.provider_rewards == ()
    assert chain.state.epoch_work[addr("dave")] == dave_burned == 3 * bob_burned

    bob, dave = chain.balance("bob"), chain.balance("dave")
    pool_before = chain.state.vars["provider_pool"]
    result = chain.block()  # height 4 ends the epoch
    pool = pool_before + economics.split_issuance(result.minted, TEST_PARAMS).providers
    cap = TEST_PARAMS.provider_reward_cap
    expected = {
        addr("bob"): min(pool // 4, mul_ratio(bob_burned, cap)),
        addr("dave"): min(pool * 3 // 4, mul_ratio(dave_burned, cap)),
    }
    assert dict(result.provider_rewards) == expected
    assert chain.balance("bob") == bob + expected[addr("bob")]
    assert chain.balance("dave") == dave + expected[addr("dave")]
    assert chain.state.vars["provider_pool"] == pool - sum(expected.values())  # the rest stays
    assert len(chain.state.epoch_work) == 0


def test_an_epoch_without_settled_work_carries_the_provider_pool_over() -> None:
    chain = Chain()
    chain.advance_to(TEST_PARAMS.epoch_length - 1)
    pool_before = chain.state.vars["provider_pool"]
    result = chain.block()
    assert result.provider_rewards == ()
    provided = economics.split_issuance(result.minted, TEST_PARAMS).providers
    assert chain.state.vars["provider_pool"] == pool_before + provided > 0


def test_inflation_steers_up_while_the_bonded_ratio_is_below_the_goal() -> None:
    chain = Chain()
    assert chain.state.vars["total_bonded"] * DEC // chain.state.total_supply() < TEST_PARAMS.goal_bonded
    rates = []
    for _ in range(3):
        chain.block()
        rates.append(chain.state.vars["inflation"])
    assert rates == sorted(rates) and rates[0] < rates[-1]
