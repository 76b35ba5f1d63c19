"""Faults on a 4-validator testnet of processes: a validator killed with SIGKILL and restarted,
and a validator partitioned away (SIGSTOP) and healed. Three of four validators hold more than
2/3 of the stake, so the chain keeps finalizing through both."""

from __future__ import annotations

import pytest

from tests.e2e.framework import TestNetwork

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

#: Blocks the others must finalize while the victim is away: progress without it, not a fluke.
BLOCKS_WITHOUT_VICTIM = 5


def test_killed_validator_restarts_with_every_finalized_block_and_catches_up(network: TestNetwork) -> None:
    victim = network.rng.randrange(len(network.indexes))
    others = [i for i in network.indexes if i != victim]
    network.wait_for_height(5)
    before_kill = network.height(victim)
    finalized = network.blocks(victim, range(1, before_kill + 1))

    result = network.kill(victim)
    assert result.exit_code == -9
    network.wait_for_height(before_kill + BLOCKS_WITHOUT_VICTIM, others)

    network.start(victim)
    caught_up_to = max(network.height(i) for i in others)
    network.wait_for_height(caught_up_to, [victim])
    after = network.blocks(victim, range(1, before_kill + 1))
    for height in range(1, before_kill + 1):
        assert after[height] == finalized[height], f"block {height} changed across the crash"
    network.sync_all()


def test_partitioned_validator_misses_blocks_then_heals_and_catches_up(network: TestNetwork) -> None:
    victim = network.rng.randrange(len(network.indexes))
    others = [i for i in network.indexes if i != victim]
    network.sync_all()
    frozen_at = network.height(victim)

    network.partition(victim)
    try:
        network.wait_for_height(frozen_at + BLOCKS_WITHOUT_VICTIM, others)
        progressed_to = network.sync_all(others)
    finally:
        network.heal(victim)

    network.wait_for_height(progressed_to, [victim])
    network.sync_all()
    # The healed node is connected again, not only synced.
    network.wait_until(
        lambda: len(network.call(victim, "net_peers")) >= len(others),
        what=f"node-{victim} reconnected to every peer",
    )
