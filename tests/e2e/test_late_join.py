"""A node that joins a running testnet late syncs the whole chain and follows it."""

from __future__ import annotations

import pytest

from tests.e2e.framework import TestNetwork

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

JOIN_AFTER_HEIGHT = 10


def test_node_started_after_height_ten_syncs_and_follows_the_chain(network: TestNetwork) -> None:
    network.wait_for_height(JOIN_AFTER_HEIGHT)
    late = network.add_node()
    network.start(late, wait=False)

    network.wait_for_height(max(network.height(i) for i in network.indexes if i != late), [late])
    synced_at = network.sync_all()
    assert synced_at > JOIN_AFTER_HEIGHT

    info = network.call(late, "node_info")
    assert info["validator"] is False
    assert info["chain_id"] == network.chain_id
    # It keeps following: new blocks reach it too, identical to everyone else's.
    network.wait_for_height(synced_at + 3)
    network.sync_all()
