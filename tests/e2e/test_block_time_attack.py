"""Issue 12's "one proposer of any stake halts the chain forever", on a 4-validator testnet of
processes: one validator's node proposes every block it builds timed ``2**63 - 1``.

Block time is BFT time (the stake-weighted median of the precommit times in the block's last
commit), so such a block is invalid: the honest validators prevote nil on it, the round moves on
to an honest proposer, and the chain keeps committing. No committed block is the attacker's, the
committed times increase and none is ahead of the honest validators' clocks.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.testnet import processes
from node.testnet.layout import NodeLayout
from tests.e2e.conftest import SEED
from tests.e2e.end_of_time_node import FORGED_LINE
from tests.e2e.framework import TestNetwork, derived_seed

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ATTACKER = 3
#: Heights at which the attacker must have proposed before the test judges the chain.
FORGED_HEIGHTS = 3


@pytest.fixture
def attacked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestNetwork]:
    """Four validators; validator 3's process runs :mod:`tests.e2e.end_of_time_node`."""
    network = TestNetwork(tmp_path / "testnet", seed=derived_seed(SEED, __name__))
    network.build()
    honest_command = processes.node_command

    def command(node: NodeLayout, extra_args: tuple[str, ...] = ()) -> list[str]:
        if node.index != ATTACKER:
            return honest_command(node, extra_args)
        return [sys.executable, "-m", "tests.e2e.end_of_time_node", *honest_command(node, extra_args)[3:]]

    monkeypatch.setattr(processes, "node_command", command)
    try:
        network.start_all()
        yield network
    finally:
        results = network.shutdown()
    assert all(r.exit_code == 0 and not r.killed for r in results), results


def _forged_heights(network: TestNetwork) -> set[int]:
    log = network.node(ATTACKER).log_path.read_text(errors="replace")
    return {int(height) for height in re.findall(re.escape(FORGED_LINE) + r" (\d+)", log)}


def test_a_proposer_timing_its_blocks_at_the_end_of_time_does_not_halt_the_chain(
    attacked: TestNetwork,
) -> None:
    network = attacked
    network.wait_until(
        lambda: len(_forged_heights(network)) >= FORGED_HEIGHTS,
        what=f"validator {ATTACKER} proposed end-of-time blocks at {FORGED_HEIGHTS} heights",
        timeout=240,
    )
    forged = _forged_heights(network)
    target = max(forged) + 3
    network.wait_for_height(target)
    now_ms = int(time.time() * 1000)
    network.sync_all()

    attacker = network.address(ATTACKER)
    blocks = network.blocks(0, range(min(forged), target + 1))
    assert all(block["proposer"] != attacker for block in blocks.values()), "an end-of-time block committed"
    times = [blocks[height]["time_ms"] for height in sorted(blocks)]
    assert times == sorted(times) and len(set(times)) == len(times)
    assert times[-1] <= now_ms, "a committed block is timed ahead of every validator's clock"
    # The attacker is not cast out (it votes honestly); it keeps following the chain.
    assert network.height(ATTACKER) >= target
