"""Staking: registered validators (consensus key proven, commission terms), delegations with
shares, unbonding released after the period, redelegation, and the slashing hook (everything at
stake at the infraction height is cut: bonded tokens, and unbonding and redelegated stake that left
since)."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from protocol.crypto import address_of
from protocol.economics import mul_ratio
from protocol.ledger import staking
from protocol.ledger.block import Misbehaviour
from protocol.ledger.errors import (
    BadKeyProof,
    CommissionChangeTooSoon,
    ConsensusKeyTaken,
    InsufficientFunds,
    InsufficientStake,
    InvalidCommission,
    LedgerError,
    MalformedTx,
    NotAValidator,
    RedelegationInProgress,
    Tombstoned,
    TooManyDelegations,
    UnknownValidator,
    ValidatorExists,
)
from protocol.ledger.state import Unbonding
from protocol.ledger.tx import (
    Delegate,
    Redelegate,
    Stake,
    Undelegate,
    Unstake,
    ValidatorCreate,
    ValidatorEdit,
    prove_consensus_key,
)
from protocol.units import percent

from .ledger_helpers import (
    CHAIN_ID,
    GENESIS_STAKE,
    OTHER_CHAIN_ID,
    TEST_PARAMS,
    Chain,
    addr,
    assert_block_rejected,
    assert_rejected,
    key,
    make_genesis,
    sign_raw_body,
    tx_body,
)

PERIOD = TEST_PARAMS.unbonding_period
NODE = key("node-of-alice")  # the key alice's node votes with
#: No validator rewards (issuance share 0, every fee burned): share values move only by what a
#: test does, so amounts can be checked exactly.
QUIET = TEST_PARAMS.with_value("validator_reward_share", 0).with_value("fee_burn_share", percent(100))


def quiet(**genesis: object) -> Chain:
    return Chain(make_genesis(QUIET, **genesis))  # type: ignore[arg-type]


def create(
    operator: str = "alice", node_label: str = "node-of-alice", amount: int = 1_000, **terms: object
) -> ValidatorCreate:
    node = key(node_label)
    fields: dict[str, object] = {
        "consensus_key": node.public_key.raw,
        "key_proof": prove_consensus_key(node, CHAIN_ID, addr(operator)),
        "moniker": f"{operator}'s node",
        "commission": percent(10),
        "max_commission": percent(20),
        "max_commission_change": percent(1),
        "amount": amount,
    }
    fields.update(terms)
    return ValidatorCreate(**fields)  # type: ignore[arg-type]


def members(chain: Chain) -> dict[bytes, int]:
    return {v.address: v.power for v in chain.state.validator_set()}


# --- registering validators -----------------------------------------------------------------------


def test_a_created_validator_votes_with_its_consensus_key_and_is_paid_to_its_operator() -> None:
    chain = Chain()
    balance = chain.balance("alice")
    chain.block([chain.tx("alice", create(amount=1_000))])
    info = chain.state.validators[addr("alice")]
    assert (info.consensus_key, info.tokens, info.shares, info.commission) == (
        NODE.public_key.raw,
        1_000,
        1_000,
        percent(10),
    )
    assert chain.balance("alice") == balance - 1_000 - chain.params.min_fee
    assert chain.delegated("alice", "alice") == 1_000
    # Consensus knows it by the node key's address, not the operator's.
    assert members(chain)[NODE.address.raw] == 1_000
    assert addr("alice") not in members(chain)
    assert chain.state.operator_of(NODE.address.raw) == addr("alice")
    # Its block rewards accrue to the operator's validator.
    result = chain.block(signers=[NODE.address.raw])
    assert result.validator_rewards == ((addr("alice"), chain.rewards("alice")),)


def test_a_consensus_key_the_operator_does_not_hold_is_refused() -> None:
    chain = quiet()
    stranger = key("someone-elses-node")
    forged = [
        create(
            key_proof=prove_consensus_key(key("alice"), CHAIN_ID, addr("alice")),
            consensus_key=stranger.public_key.raw,
        ),
        create(key_proof=prove_consensus_key(NODE, CHAIN_ID, addr("bob"))),  # proof for another operator
        create(key_proof=prove_consensus_key(NODE, OTHER_CHAIN_ID, addr("alice"))),  # another chain
    ]
    for msg in forged:
        assert_block_rejected(chain, [chain.tx("alice", msg)], BadKeyProof, 2015)


def test_one_validator_per_operator_and_per_consensus_key() -> None:
    chain = quiet()
    chain.block([chain.tx("alice", create())])
    assert_block_rejected(chain, [chain.tx("alice", create(node_label="second-node"))], ValidatorExists, 2013)
    taken = create("bob", key_proof=prove_consensus_key(NODE, CHAIN_ID, addr("bob")))
    assert_block_rejected(chain, [chain.tx("bob", taken)], ConsensusKeyTaken, 2014)
    # A genesis validator's key is its consensus key: taken too.
    genesis_key = create("bob", "val-1")
    assert_block_rejected(chain, [chain.tx("bob", genesis_key)], ConsensusKeyTaken, 2014)


def test_a_validator_starts_with_at_least_the_minimum_of_its_own() -> None:
    chain = quiet()
    small = create(amount=TEST_PARAMS.min_validator_stake - 1)
    assert_block_rejected(chain, [chain.tx("alice", small)], InsufficientStake, 2010)
    broke = create(amount=chain.balance("alice"))
    assert_block_rejected(chain, [chain.tx("alice", broke)], InsufficientFunds, 2006)


def test_commission_terms_are_checked_in_the_message() -> None:
    for terms in (
        {"commission": percent(30)},  # above max_commission
        {"max_commission_change": percent(30)},  # above max_commission
        {"max_commission": percent(101)},
        {"moniker": "x" * 65},
        {"moniker": "line\nbreak"},
    ):
        body = create().to_wire() | {k: v for k, v in terms.items()}
        raw = sign_raw_body("alice", tx_body("validator_create", body))
        chain = quiet()
        assert_block_rejected(chain, [raw], MalformedTx, 2001)


def test_commission_moves_within_its_declared_limits_and_not_twice_within_the_unbonding_period() -> None:
    chain = quiet()
    chain.block([chain.tx("alice", create())])  # height 1: the commission is set
    early = chain.tx("alice", ValidatorEdit("x", percent(11)))
    assert_block_rejected(chain, [early], CommissionChangeTooSoon, 2017)
    chain.block([chain.tx("alice", ValidatorEdit("only the name", percent(10)))])  # no change: fine
    assert chain.state.validators[addr("alice")].moniker == "only the name"
    chain.advance_to(1 + PERIOD - 1)
    chain.block([chain.tx("alice", ValidatorEdit("renamed", percent(11)))])
    info = chain.state.validators[addr("alice")]
    assert (info.moniker, info.commission, info.commission_height) == ("renamed", percent(11), 1 + PERIOD)
    chain.advance_to(1 + 2 * PERIOD - 1)
    too_far = chain.tx("alice", ValidatorEdit("x", percent(13)))  # more than 1% at once
    assert_block_rejected(chain, [too_far], InvalidCommission, 2016)
    above_max = chain.tx("alice", ValidatorEdit("x", percent(21)))
    assert_block_rejected(chain, [above_max], InvalidCommission, 2016)
    chain.block([chain.tx("alice", ValidatorEdit("x", percent(12)))])
    assert chain.state.validators[addr("alice")].commission == percent(12)
    assert_block_rejected(chain, [chain.tx("bob", ValidatorEdit("x", 0))], UnknownValidator, 2012)


def test_stake_and_unstake_are_an_operators_own_delegation() -> None:
    chain = quiet()
    assert_block_rejected(chain, [chain.tx("alice", Stake(500))], NotAValidator, 2063)
    assert_block_rejected(chain, [chain.tx("alice", Unstake(1))], NotAValidator, 2063)
    chain.block([chain.tx("val-0", Stake(7))])
    assert chain.bonded("val-0") == GENESIS_STAKE + 7
    assert chain.delegated("val-0", "val-0") == GENESIS_STAKE + 7


# --- delegations --------------------------------------------------------------------------------


def test_a_holder_without_a_node_delegates_and_never_becomes_a_validator() -> None:
    chain = quiet()
    total = chain.state.vars["total_bonded"]
    chain.block([chain.tx("alice", Delegate(addr("val-1"), 400_000))])
    assert chain.delegated("alice", "val-1") == 400_000
    assert chain.state.vars["total_bonded"] == total + 400_000
    assert members(chain)[addr("val-1")] == GENESIS_STAKE + 400_000
    assert addr("alice") not in members(chain) and addr("alice") not in chain.state.validators
    assert staking.bonded_by(chain.state, addr("alice")) == 400_000


def test_delegating_to_what_is_not_a_validator_is_refused() -> None:
    chain = quiet()
    assert_block_rejected(chain, [chain.tx("alice", Delegate(addr("bob"), 1))], UnknownValidator, 2012)
    chain.block(misbehaviour=[Misbehaviour(addr("val-0"))])
    assert_block_rejected(chain, [chain.tx("alice", Delegate(addr("val-0"), 1))], Tombstoned, 2011)


def test_undelegated_stake_waits_for_the_unbonding_period_then_is_released_to_the_delegator() -> None:
    chain = quiet()
    chain.block([chain.tx("alice", Delegate(addr("val-1"), 1_000))])
    chain.block([chain.tx("alice", Undelegate(addr("val-1"), 400))])
    at = chain.height
    assert chain.delegated("alice", "val-1") == 600
    assert chain.state.unbonding[at + PERIOD] == (Unbonding(addr("alice"), addr("val-1"), at, 400),)
    balance = chain.balance("alice")
    chain.advance_to(at + PERIOD - 1)
    assert chain.balance("alice") == balance
    chain.block()
    assert chain.balance("alice") == balance + 400
    assert chain.state.vars["total_unbonding"] == 0


def test_undelegating_more_than_the_delegation_is_worth_is_refused() -> None:
    chain = quiet()
    chain.block([chain.tx("alice", Delegate(addr("val-1"), 1_000))])
    assert_block_rejected(
        chain, [chain.tx("alice", Undelegate(addr("val-1"), 1_001))], InsufficientStake, 2010
    )
    assert_block_rejected(chain, [chain.tx("bob", Undelegate(addr("val-1"), 1))], InsufficientStake, 2010)
    assert_block_rejected(chain, [chain.tx("bob", Undelegate(addr("carol"), 1))], UnknownValidator, 2012)


def test_delegators_share_the_rewards_pro_rata_and_the_operator_takes_its_commission() -> None:
    chain = Chain(make_genesis(stakes=[("val-0", 1_000_000)]))
    chain.block([chain.tx("alice", Delegate(addr("val-0"), 3_000_000))])
    chain.advance_to(10, signers=[addr("val-0")])
    pending = chain.rewards("val-0")
    assert pending > 0
    commission = mul_ratio(pending, percent(10))
    worth = chain.delegated("alice", "val-0")
    assert worth == 3_000_000 + (pending - commission) * 3 // 4  # her three quarters of the rest
    operator_balance = chain.balance("val-0")
    # Alice leaves with everything: the pending rewards are split first.
    chain.block([chain.tx("alice", Undelegate(addr("val-0"), worth))], signers=[addr("val-0")])
    assert chain.balance("val-0") == operator_balance + commission
    assert chain.state.unbonding[chain.height + PERIOD] == (
        Unbonding(addr("alice"), addr("val-0"), chain.height, worth),
    )
    assert (addr("alice"), addr("val-0")) not in chain.state.delegations
    # The operator's own share kept its quarter (and the validator its new rewards, pending).
    assert chain.bonded("val-0") == 1_000_000 + pending - commission - (worth - 3_000_000)


def test_a_newcomer_does_not_share_the_rewards_earned_before_it_delegated() -> None:
    chain = Chain(make_genesis(stakes=[("val-0", 1_000_000)]))
    chain.advance_to(10, signers=[addr("val-0")])
    assert chain.rewards("val-0") > 0
    chain.block([chain.tx("alice", Delegate(addr("val-0"), 1_000_000))], signers=[addr("alice")])
    # The rewards were settled into val-0's own shares before she bought hers: she holds exactly
    # what she paid for (rounded down), and the new block's rewards are pending again.
    info = chain.state.validators[addr("val-0")]
    assert chain.state.delegations[(addr("alice"), addr("val-0"))] * info.tokens // info.shares in (
        999_999,
        1_000_000,
    )


def test_an_account_delegates_to_a_bounded_number_of_validators() -> None:
    stakes = [(f"v{i}", 1_000) for i in range(staking.MAX_DELEGATIONS + 1)]
    chain = quiet(stakes=stakes)
    txs = [chain.tx("alice", Delegate(addr(label), 10)) for label, _ in stakes[:-1]]
    chain.block(txs)
    assert len(chain.state.delegated_to[addr("alice")]) == staking.MAX_DELEGATIONS
    last = chain.tx("alice", Delegate(addr(stakes[-1][0]), 10))
    assert_block_rejected(chain, [last], TooManyDelegations, 2060)
    chain.block([chain.tx("alice", Undelegate(addr("v0"), 10))])  # leaving one frees a place
    chain.block([chain.tx("alice", Delegate(addr(stakes[-1][0]), 10))])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(("alice", "bob")), st.integers(1, 10**6), st.booleans()), max_size=12)
)
# Bob's small deposits, each truncated to fewer shares than it paid for, raise the share value Alice
# holds by a base unit: dust moves between shareholders; nothing is paid out of nothing.
@example(
    [("alice", 534006, False), ("bob", 1, False), ("bob", 1, False)]
    + [("bob", 2, False), ("bob", 2, False), ("bob", 2, False)]
)
def test_share_arithmetic_never_rounds_value_out_of_the_validator(moves: list[tuple[str, int, bool]]) -> None:
    # Slashed first, so a share is worth an awkward fraction of a token.
    chain = quiet(stakes=[("val-0", 1_000_003)])
    staking.slash(chain.state, addr("val-0"), percent("33.3"), 0, tombstone=False)
    put_in = {"alice": 0, "bob": 0}
    applied = {"alice": 0, "bob": 0}
    for label, amount, leave in moves:
        chain.forget_reserved_nonces()
        value = chain.delegated(label, "val-0")
        msg = (
            Undelegate(addr("val-0"), min(amount, value))
            if leave and value
            else Delegate(addr("val-0"), amount)
        )
        try:
            chain.block([chain.tx(label, msg)])
        except LedgerError:
            continue
        put_in[label] += amount if isinstance(msg, Delegate) else -msg.amount
        applied[label] += 1
    info = chain.state.validators[addr("val-0")]
    values = sum(chain.delegated(label, "val-0") for label in ("val-0", "alice", "bob"))
    assert values <= info.tokens
    # No rewards: nobody ends up with more than it put in, except the dust the others' rounding
    # left in the pool (shares are truncated, so each of their moves leaves under one base unit
    # to the shareholders: as Cosmos x/staking). Rounding never pays anyone out of nothing.
    assert chain.delegated("alice", "val-0") <= put_in["alice"] + applied["bob"]
    assert chain.delegated("bob", "val-0") <= put_in["bob"] + applied["alice"]


# --- redelegation -------------------------------------------------------------------------------


def test_redelegation_moves_stake_at_once_and_cannot_hop_on_before_it_completes() -> None:
    chain = quiet()
    chain.block([chain.tx("alice", Delegate(addr("val-0"), 10_000))])
    chain.block([chain.tx("alice", Redelegate(addr("val-0"), addr("val-1"), 4_000))])
    at = chain.height
    assert (chain.delegated("alice", "val-0"), chain.delegated("alice", "val-1")) == (6_000, 4_000)
    assert chain.state.vars["total_unbonding"] == 0  # nothing leaves the bonded stake
    hop = chain.tx("alice", Redelegate(addr("val-1"), addr("val-2"), 1))
    assert_block_rejected(chain, [hop], RedelegationInProgress, 2061)
    # Other stake of the same delegator may still move from where it was.
    chain.block([chain.tx("alice", Redelegate(addr("val-0"), addr("val-2"), 1_000))])
    chain.advance_to(at + PERIOD)
    chain.block([chain.tx("alice", Redelegate(addr("val-1"), addr("val-2"), 1))])
    assert_block_rejected(
        chain, [chain.tx("alice", Redelegate(addr("val-0"), addr("bob"), 1))], UnknownValidator, 2012
    )


# --- slashing ------------------------------------------------------------------------------------


def test_double_signing_cuts_the_stake_and_what_unbonded_since_and_tombstones() -> None:
    chain = quiet()
    chain.block([chain.tx("alice", Delegate(addr("val-0"), 100_000))])  # height 1: before
    chain.advance_to(5)
    chain.block([chain.tx("alice", Undelegate(addr("val-0"), 40_000))])  # height 6: after
    chain.block([chain.tx("bob", Delegate(addr("val-0"), 1)), chain.tx("val-0", Unstake(20_000))])  # 7
    tokens = chain.bonded("val-0")
    burned = chain.state.vars["burned"]
    # The offence happened at height 6: stake that left in blocks 5 and later still voted then.
    result = chain.block(misbehaviour=[Misbehaviour(addr("val-0"), height=6)])
    fraction = TEST_PARAMS.double_sign_slash
    expected = mul_ratio(tokens, fraction) + mul_ratio(40_000, fraction) + mul_ratio(20_000, fraction)
    assert result.burned == expected == chain.state.vars["burned"] - burned
    info = chain.state.validators[addr("val-0")]
    assert info.tombstoned and info.jailed and info.tokens == tokens - mul_ratio(tokens, fraction)
    assert addr("val-0") not in members(chain)
    assert chain.state.unbonding[6 + PERIOD] == (Unbonding(addr("alice"), addr("val-0"), 6, 38_000),)


def test_stake_that_left_before_the_infraction_is_not_cut() -> None:
    chain = quiet()
    chain.block([chain.tx("val-0", Unstake(10_000))])  # height 1
    chain.block()
    chain.block(misbehaviour=[Misbehaviour(addr("val-0"), height=3)])  # voted without it from 3 on
    assert chain.state.unbonding[1 + PERIOD] == (Unbonding(addr("val-0"), addr("val-0"), 1, 10_000),)


def test_unbonding_then_double_signing_still_burns_the_unbonding_stake() -> None:
    # Issue 12, item 6: unstake, double-sign while the old set still counts the stake, evidence
    # arrives in the very block the stake would be released: it is cut before the release.
    chain = quiet()
    chain.block([chain.tx("val-2", Unstake(GENESIS_STAKE))])
    release = chain.height + PERIOD
    chain.advance_to(release - 1)
    balance = chain.balance("val-2")
    chain.block(misbehaviour=[Misbehaviour(addr("val-2"), height=2)])
    cut = mul_ratio(GENESIS_STAKE, TEST_PARAMS.double_sign_slash)
    assert chain.balance("val-2") == balance + GENESIS_STAKE - cut
    assert chain.state.is_tombstoned(addr("val-2"))


def test_slashing_the_source_of_a_redelegation_cuts_the_stake_at_its_destination() -> None:
    chain = quiet()
    chain.block([chain.tx("alice", Delegate(addr("val-0"), 100_000))])
    chain.block([chain.tx("alice", Redelegate(addr("val-0"), addr("val-1"), 60_000))])
    chain.block(misbehaviour=[Misbehaviour(addr("val-0"), height=2)])
    cut = mul_ratio(60_000, TEST_PARAMS.double_sign_slash)
    assert chain.delegated("alice", "val-1") == 60_000 - cut
    assert chain.bonded("val-1") == GENESIS_STAKE + 60_000 - cut
    assert not chain.state.is_tombstoned(addr("val-1"))


def test_evidence_names_the_consensus_key_and_punishes_its_operator() -> None:
    chain = quiet()
    chain.block([chain.tx("alice", create(amount=10_000))])
    chain.block(misbehaviour=[Misbehaviour(addr("alice"), height=1)])  # the operator's address: unknown
    assert not chain.state.validators[addr("alice")].tombstoned
    chain.block(misbehaviour=[Misbehaviour(NODE.address.raw, height=2)])
    assert chain.state.validators[addr("alice")].tombstoned
    assert chain.state.is_tombstoned(NODE.address.raw)


def test_a_tombstoned_validator_is_slashed_once_and_may_still_be_left() -> None:
    chain = quiet()
    chain.block([chain.tx("alice", Delegate(addr("val-1"), 1_000))])
    offence = Misbehaviour(addr("val-1"), height=1)
    chain.block(misbehaviour=[offence, offence])
    assert chain.bonded("val-1") == (GENESIS_STAKE + 1_000) - mul_ratio(GENESIS_STAKE + 1_000, percent(5))
    tokens = chain.bonded("val-1")
    result = chain.block(misbehaviour=[Misbehaviour(addr("val-1"), height=2)])
    assert result.burned == 0 and chain.bonded("val-1") == tokens
    chain.block([chain.tx("alice", Undelegate(addr("val-1"), chain.delegated("alice", "val-1")))])
    assert chain.state.is_tombstoned(addr("val-1"))


def test_misbehaviour_of_an_unknown_address_is_ignored() -> None:
    chain = quiet()
    result = chain.block(misbehaviour=[Misbehaviour(addr("mallory"))])
    assert result.burned == 0


def test_slash_hook_refuses_an_operator_that_never_registered() -> None:
    chain = quiet()
    assert_rejected(
        chain.state,
        lambda: staking.slash(chain.state, addr("alice"), percent(5), 0, tombstone=True),
        UnknownValidator,
        2012,
    )


def test_a_rejected_block_undoes_its_slashing_and_releases_too() -> None:
    chain = quiet()
    chain.block([chain.tx("val-1", Unstake(500))])
    chain.advance_to(PERIOD)  # the next block releases val-1's unbonding
    balance = chain.balance("val-1")
    assert_block_rejected(
        chain,
        [chain.tx("alice", Undelegate(addr("val-0"), 1))],
        InsufficientStake,
        2010,
        tx_index=0,
        misbehaviour=[Misbehaviour(addr("val-0"), height=1)],
    )
    assert not chain.state.is_tombstoned(addr("val-0"))
    assert chain.bonded("val-0") == GENESIS_STAKE
    assert chain.balance("val-1") == balance
    assert chain.state.vars["total_unbonding"] == 500


def test_validator_set_keeps_the_largest_max_validators_sorted_by_consensus_address() -> None:
    params = TEST_PARAMS.with_value("max_validators", 2)
    chain = Chain(make_genesis(params, stakes=[("val-0", 300), ("val-1", 100), ("val-2", 200)]))
    chosen = chain.state.validator_set()
    assert {v.address for v in chosen} == {addr("val-0"), addr("val-2")}
    assert [v.address for v in chosen] == sorted(v.address for v in chosen)
    assert all(v.address == address_of(v.public_key) for v in chosen)
