"""Issue 12's "a wallet with no node halts the chain", on a 4-validator testnet of processes.

Before, staking made the staker a validator: an address that staked 38% of the power and never
ran a node stopped the testnet for good. Now a holder who runs no node delegates to a validator
that does run one, and never joins the set; a validator whose node stops signing is jailed for
downtime (slashed, out of the set) while the others keep committing, and its delegators share
the slash.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from protocol.crypto import Address
from protocol.ledger.tx import Delegate
from protocol.units import DCT, percent
from tests.e2e.framework import E2E_PARAMS, TestNetwork

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

#: A short signing window so that jailing happens within seconds: a validator that missed more
#: than half of the last 10 heights is jailed (and slashed 1%, the default).
NETWORK = {
    "params": replace(
        E2E_PARAMS, signed_blocks_window=10, min_signed_per_window=percent(50), downtime_jail_blocks=1_000
    )
}
#: The testnet's genesis stake of each validator (node.testnet.layout.VALIDATOR_STAKE).
GENESIS_STAKE = 100_000 * DCT


def _active(network: TestNetwork) -> set[str]:
    return {entry["address"] for entry in network.call(0, "validator_list")}


def test_a_holder_with_no_node_delegates_and_a_validator_that_stops_signing_is_jailed(
    network: TestNetwork,
) -> None:
    running, absent = 0, 3
    running_address, absent_address = network.address(running), network.address(absent)
    assert _active(network) == {network.address(i) for i in network.indexes}

    # A holder with 38% of the power after it bonds (the staker): it delegates to a
    # validator that runs a node, and never becomes a validator itself.
    holder = network.new_key("holder")
    big = GENESIS_STAKE * 4 * 38 // 62
    network.faucet(holder.address, big + DCT)
    network.send(0, holder, Delegate(Address.parse(running_address).raw, big))
    assert str(holder.address) not in _active(network)
    assert len(_active(network)) == 4
    delegations = network.call(0, "account_delegations", address=str(holder.address))
    assert [entry["validator"] for entry in delegations] == [running_address]
    assert int(network.account(0, holder.address)["bonded"]) >= big

    # A small holder delegates to the validator whose node is about to stop.
    small_holder = network.new_key("small-holder")
    small = 100 * DCT
    network.faucet(small_holder.address, small + DCT)
    network.send(0, small_holder, Delegate(Address.parse(absent_address).raw, small))
    bonded_before = int(network.call(0, "validator_get", address=absent_address)["bonded"])

    # Its node stops: the other three hold 85% of the power and go on.
    network.stop(absent)
    live = [i for i in network.indexes if i != absent]

    def jailed() -> bool:
        return bool(network.call(0, "validator_get", address=absent_address)["jailed"])

    network.wait_until(jailed, what=f"validator {absent_address} jailed for downtime")
    info = network.call(0, "validator_get", address=absent_address)
    assert info["tombstoned"] is False
    # Slashed the downtime share (1%) of what it had at stake; nothing was compounded in since
    # (rewards settle into its stake only when its shares change).
    bonded_after = int(info["bonded"])
    assert bonded_before * 98 // 100 <= bonded_after < bonded_before
    # Its delegator shares the slash: the delegation is now worth less than was put in.
    worth = network.call(0, "account_delegations", address=str(small_holder.address))
    assert int(worth[0]["value"]) < small

    # Out of the set (two heights after the jailing), and the chain keeps committing.
    network.wait_until(
        lambda: absent_address not in _active(network), what="the jailed validator leaves the set"
    )
    assert _active(network) == {network.address(i) for i in live}
    head = network.height(0)
    network.wait_for_height(head + 5, live)
    network.sync_all(live)
