"""Issue 14 at process level: four validator processes must keep committing.

The in-process twin (tests/integration/test_chain_liveness.py) puts four nodes on one event loop;
here each node is its own process, as in a testnet, and the loaded machine shares its CPU among
them and everyone else's tests.
"""

from __future__ import annotations

import pytest

from tests.e2e.framework import TestNetwork

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

NETWORK = {"nodes": 4}
HEIGHTS = 100
#: A live chain commits many times in this span even slowed down by a loaded machine.
STALL_S = 30.0


def test_four_validator_processes_keep_committing_for_a_hundred_heights(network: TestNetwork) -> None:
    lowest = 0
    while lowest < HEIGHTS:
        reached = lowest + 1
        network.wait_until(
            lambda height=reached: min(network.height_or_zero(i) for i in network.indexes) >= height,
            what=f"every node commits height {reached} "
            f"(heights when the wait began: {[network.height_or_zero(i) for i in network.indexes]})",
            timeout=STALL_S,
        )
        lowest = min(network.height_or_zero(i) for i in network.indexes)
