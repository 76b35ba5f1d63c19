"""Transfers, staking and a governance parameter change on a 4-validator testnet of processes."""

from __future__ import annotations

import pytest

from protocol.ledger.tx import GovPropose, GovVote, Stake, Transfer, Unstake
from protocol.units import DCT, percent
from tests.e2e.framework import TestNetwork

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_transfers_move_balances_and_advance_nonces_on_every_node(network: TestNetwork) -> None:
    alice, bob = network.new_key("alice"), network.new_key("bob")
    funded = network.rng.randrange(500, 1_000) * DCT
    network.faucet(alice.address, funded)
    fee = network.min_fee()

    # Two transfers, pipelined (nonces 1 and 2), submitted through two different nodes.
    first, second = network.rng.randrange(1, 100) * DCT, network.rng.randrange(1, 100) * DCT
    hashes = [
        (1, network.submit(1, alice, Transfer(bob.address.raw, first))),
        (2, network.submit(2, alice, Transfer(bob.address.raw, second))),
    ]
    for index, tx_hash in hashes:
        network.wait_committed(index, tx_hash)
    network.sync_all()

    for index in network.live():
        sender = network.account(index, alice.address)
        assert int(sender["balance"]) == funded - first - second - 2 * fee
        assert sender["nonce"] == 2
        assert network.balance(index, bob.address) == first + second
    history = network.call(3, "account_history", address=str(bob.address))
    assert {entry["hash"] for entry in history} == {tx_hash for _, tx_hash in hashes}


def test_stake_and_unstake_show_in_validator_list_and_account(network: TestNetwork) -> None:
    """A validator operator bonds more of its own and unbonds half of it. Its pending rewards are
    compounded into its stake whenever its shares change, so what is bonded grows by the amount
    staked plus rewards, which are bounded by everything minted so far plus the fees."""
    index = network.rng.randrange(len(network.indexes))
    key = network.validator_key(index)
    address = str(key.address)

    def bonded() -> int:
        entry = next(v for v in network.call(0, "validator_list") if v["address"] == address)
        return int(entry["bonded"])

    def reward_bound() -> int:
        # Read after bonded(): the head only moves forward. Fees on this short chain are far
        # below the 1 DCT allowed for them (the minimum fee is 0.00001 DCT).
        return int(network.call(0, "economics_status")["minted"]) + DCT

    before = bonded()
    added = network.rng.randrange(100, 1_000) * DCT
    network.send(index, key, Stake(added))
    network.sync_all()
    staked = bonded()
    assert before + added <= staked <= before + added + reward_bound()
    assert int(network.account(0, address)["bonded"]) >= before + added

    withdrawn = added // 2
    network.send(index, key, Unstake(withdrawn))
    network.sync_all()
    assert staked - withdrawn <= bonded() <= staked - withdrawn + reward_bound()
    assert int(network.account(0, address)["unbonding"]) == withdrawn


def test_governance_parameter_change_takes_effect_after_three_of_four_vote(network: TestNetwork) -> None:
    new_share = percent(network.rng.choice((60, 70, 75, 80)))
    params_before = network.call(0, "economics_params")["params"]
    assert int(params_before["fee_burn_share"]) != new_share
    deposit = 10 * DCT

    proposer = network.validator_key(0)
    proposed = network.send(0, proposer, GovPropose("fee_burn_share", new_share, deposit))
    # The votes go through the other nodes: each admits a vote only once it knows the proposal.
    network.wait_for_height(proposed["height"])
    proposal = next(
        p
        for p in network.call(0, "gov_proposals")
        if p["param"] == "fee_burn_share"
        and p["proposer"] == str(proposer.address)
        and p["status"] == "voting"
    )
    assert int(proposal["value"]) == new_share

    # Validators 0, 1 and 2 vote yes, each through its own node; validator 3 stays silent.
    votes = [
        (i, network.submit(i, network.validator_key(i), GovVote(proposal["id"], "yes"))) for i in range(3)
    ]
    for index, tx_hash in votes:
        committed = network.wait_committed(index, tx_hash)
        assert committed["height"] <= proposal["end_height"], "a vote landed after the voting period"

    network.wait_for_height(proposal["end_height"] + 1)
    for index in network.live():
        assert network.call(index, "gov_get", id=proposal["id"])["status"] == "passed"
        assert int(network.call(index, "economics_params")["params"]["fee_burn_share"]) == new_share
