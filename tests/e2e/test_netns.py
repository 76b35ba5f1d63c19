"""Four nodes as four hosts: each `dcent node run` in its own network namespace, joined by veth
links to one bridge (:mod:`node.testnet.netns`, the fabric of `dcent testnet up --netns`); a
partition is a link taken down, the heal is the link brought back.

Needs root and `ip netns` (iproute2); elsewhere this test alone is skipped, with the reason. Under
CI=true a root host with `ip` that cannot make namespaces fails it instead of skipping it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.rpc.client import RpcClient
from node.rpc.errors import CookieError, RpcTransportError
from node.testnet.layout import NetworkLayout, NetworkPlan, build_network
from node.testnet.netns import Fabric, Placement, netns_unavailable
from node.testnet.processes import start_node, stop_nodes
from tests.waiting import wait_until_blocking

NODES = 4
BASE_PORT = 26000


def skip_or_fail_without_netns() -> None:
    """Skip (with the reason) where namespaces cannot be made; under CI=true, on a root host that
    has `ip`, that is a broken runner and fails instead."""
    reason = netns_unavailable()
    if reason is None:
        return
    if os.environ.get("CI") == "true" and os.geteuid() == 0 and shutil.which("ip") is not None:
        pytest.fail(f"CI=true, root and iproute2, yet no network namespaces: {reason}")
    pytest.skip(f"no network namespaces: {reason}")


@pytest.fixture
def placement() -> Iterator[Placement]:
    skip_or_fail_without_netns()
    made = Placement.fresh()
    try:
        yield made
    finally:
        Fabric(made, NODES).destroy()


class NamespacedNet:
    """The testnet's own start/stop (node.testnet.processes), each node in its namespace."""

    def __init__(self, layout: NetworkLayout) -> None:
        self.layout = layout

    def start(self) -> None:
        for node in self.layout.nodes:
            start_node(node)

    def client(self, index: int) -> RpcClient:
        node = self.layout.node(index)
        return RpcClient.for_home(node.paths.root, node.rpc_url, timeout_s=5)

    def head(self, index: int) -> dict[str, object] | None:
        try:
            return self.client(index).call_blocking("chain_head")  # type: ignore[no-any-return]
        except (RpcTransportError, CookieError, OSError):
            return None

    def height(self, index: int) -> int:
        head = self.head(index)
        return int(head["height"]) if head else -1  # type: ignore[call-overload]

    def state_hash(self, index: int, height: int) -> str:
        return str(self.client(index).call_blocking("chain_getBlock", height)["state_hash"])

    def stop(self) -> list[int | None]:
        return [result.exit_code for result in stop_nodes(self.layout.nodes, grace_s=30)]


def test_four_hosts_in_namespaces_survive_a_link_down_and_heal(tmp_path: Path, placement: Placement) -> None:
    fabric = Fabric.create(placement, NODES)
    layout = build_network(
        tmp_path / "testnet", NetworkPlan(nodes=NODES, base_port=BASE_PORT, placement=placement)
    )
    assert [node.host for node in layout.nodes] == [placement.address(i) for i in range(NODES)]
    net = NamespacedNet(layout)
    net.start()
    try:
        wait_until_blocking(
            lambda: all(net.height(i) >= 3 for i in range(NODES)),
            what="all four hosts make blocks",
            timeout=90,
        )
        # Node 3's link goes down: the other three (3/4 of the stake > 2/3) keep finalizing.
        fabric.set_link(3, up=False)
        cut_at = max(net.height(i) for i in range(3))
        wait_until_blocking(
            lambda: min(net.height(i) for i in range(3)) >= cut_at + 5,
            what="the majority finalizes past the partition",
            timeout=90,
        )
        # Node 3 is unreachable now (its RPC is across the downed link too).
        assert net.head(3) is None
        # Heal: node 3 catches up and agrees block for block.
        fabric.set_link(3, up=True)
        target = min(net.height(i) for i in range(3))
        wait_until_blocking(lambda: net.height(3) >= target, what="the healed host caught up", timeout=120)
        for height in (cut_at, target):
            assert len({net.state_hash(i, height) for i in range(NODES)}) == 1, f"disagreement at {height}"
    finally:
        codes = net.stop()
    assert codes == [0, 0, 0, 0], f"node exit codes {codes}; logs in {layout.root}"
