"""Issue 14's stall: four in-process nodes over real libp2p hosts must keep committing.

The chain used to halt for good after 0-40 heights, at once on a loaded machine: old-round
votes re-sent to "help" validators were taken for lag and echoed back without end, and one late
health ping aborted a connection (node/services/__init__.py, "Liveness under load"). The test fails as
soon as any node goes ``STALL_S`` seconds without a new height, naming the heights at that moment.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from tests.integration.node_helpers import LocalNet
from tests.waiting import wait_until

#: Long enough to outlast the libp2p failures that come and go (a dropped ping, a redial).
HEIGHTS = 100
#: With 800 ms proposal timeouts, a live chain commits many times in this span even slowed down.
STALL_S = 30.0

pytestmark = pytest.mark.slow


async def test_four_nodes_keep_committing_for_a_hundred_heights(tmp_path: Path) -> None:
    with trio.fail_after(HEIGHTS * STALL_S):
        async with trio.open_nursery() as nursery:
            net = LocalNet(nursery, tmp_path, validators=4)
            nodes = [await net.start(i) for i in range(4)]

            def heights() -> list[int]:
                return [n.driver.height if n.driver else 0 for n in nodes]

            lowest = 0
            while lowest < HEIGHTS:
                reached = lowest + 1

                def all_reached(height: int = reached) -> bool:
                    return min(heights()) >= height

                await wait_until(
                    all_reached,
                    what=f"every node commits height {reached} (heights then: {heights()})",
                    timeout=STALL_S,
                )
                lowest = min(heights())
            nursery.cancel_scope.cancel()
