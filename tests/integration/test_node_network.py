"""Four nodes in one process, over real libp2p hosts on 127.0.0.1 and real SQLite files."""

from __future__ import annotations

from pathlib import Path

import trio

from node.daemon import Node
from protocol.ledger.tx import Transfer, sign_tx
from tests.integration.node_helpers import FAUCET, make_genesis, make_home, node_config

HEIGHTS = 20


async def _start_network(nursery: trio.Nursery, root: Path, count: int) -> list[Node]:
    genesis = make_genesis(count)
    nodes: list[Node] = []
    for index in range(count):
        bootstrap = tuple(addr for node in nodes for addr in node.host.listen_addrs)
        node = Node(make_home(root, index, genesis), node_config(index, bootstrap))
        await nursery.start(node.run)
        nodes.append(node)
    return nodes


async def test_four_nodes_agree_for_twenty_heights_and_finalize_a_transfer(tmp_path: Path) -> None:
    with trio.fail_after(180):
        async with trio.open_nursery() as nursery:
            nodes = await _start_network(nursery, tmp_path, 4)
            recipient = bytes(20)
            raw = sign_tx(FAUCET, "dcent-itest", 1, 10_000, Transfer(recipient, 12_345))
            await nodes[3].submit_tx(raw)
            for node in nodes:
                await node.wait_for_height(HEIGHTS)
            # Every replica has the same state at every height: compare the stored state hashes.
            for height in range(1, HEIGHTS + 1):
                hashes = {node.store.block(height).state_hash for node in nodes}  # type: ignore[union-attr]
                assert len(hashes) == 1, f"replicas disagree at height {height}"
            for node in nodes:
                assert node.app is not None
                assert node.app.state.balance(recipient) == 12_345
            nursery.cancel_scope.cancel()
