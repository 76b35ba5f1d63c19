"""Four nodes as four hosts: each `dcent node run` in its own network namespace, joined by veth
links to one bridge; a partition is a link taken down, the heal is the link brought back.

Needs root and `ip netns` (iproute2); elsewhere this test alone is skipped, with the reason.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from node.rpc.client import RpcClient
from node.rpc.errors import CookieError, RpcTransportError
from node.testnet.layout import NetworkLayout, NetworkPlan, build_network
from tests.waiting import wait_until_blocking

ROOT = Path(__file__).resolve().parents[2]
NODES = 4
BASE_PORT = 26000


def _netns_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed"
    probe = f"dcent-probe-{secrets.token_hex(3)}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        return f"`ip netns add` fails here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], check=False)
    return None


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@dataclass
class Fabric:
    """A bridge in the root namespace and one namespace per node, each on a veth link."""

    tag: str
    subnet: str  # "10.X.Y"
    namespaces: list[str]

    @property
    def bridge(self) -> str:
        return f"dcb{self.tag}"

    def link(self, index: int) -> str:
        return f"dcv{self.tag}{index}"

    def address(self, index: int) -> str:
        return f"{self.subnet}.{index + 1}"

    @classmethod
    def create(cls, nodes: int) -> Fabric:
        tag = secrets.token_hex(2)
        fabric = cls(tag, f"10.{77 + secrets.randbelow(100)}.{secrets.randbelow(250)}", [])
        ip("link", "add", fabric.bridge, "type", "bridge")
        ip("addr", "add", f"{fabric.subnet}.254/24", "dev", fabric.bridge)
        ip("link", "set", fabric.bridge, "up")
        for index in range(nodes):
            namespace = f"dcent-{tag}-{index}"
            ip("netns", "add", namespace)
            fabric.namespaces.append(namespace)
            ip("link", "add", fabric.link(index), "type", "veth", "peer", "name", "eth0", "netns", namespace)
            ip("link", "set", fabric.link(index), "master", fabric.bridge, "up")
            ip("-n", namespace, "addr", "add", f"{fabric.address(index)}/24", "dev", "eth0")
            ip("-n", namespace, "link", "set", "eth0", "up")
            ip("-n", namespace, "link", "set", "lo", "up")
        return fabric

    def set_link(self, index: int, up: bool) -> None:
        ip("link", "set", self.link(index), "up" if up else "down")

    def destroy(self) -> None:
        for namespace in self.namespaces:
            subprocess.run(["ip", "netns", "del", namespace], check=False, capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], check=False, capture_output=True)


def _rehome(layout: NetworkLayout, fabric: Fabric) -> None:
    """Point each node's config at its namespace's address instead of 127.0.0.1."""
    by_port = {node.p2p_port: node.index for node in layout.nodes}
    for node in layout.nodes:
        config = node.paths.config.read_text()
        config = re.sub(
            r"/ip4/127\.0\.0\.1/tcp/(\d+)",
            lambda match: f"/ip4/{fabric.address(by_port[int(match.group(1))])}/tcp/{match.group(1)}",
            config,
        )
        config = config.replace(
            f'addr = "127.0.0.1:{node.rpc_port}"', f'addr = "{fabric.address(node.index)}:{node.rpc_port}"'
        )
        config = config.replace("allow_remote = false", "allow_remote = true")
        node.paths.config.write_text(config)


@pytest.fixture
def fabric() -> Iterator[Fabric]:
    reason = _netns_unavailable()
    if reason is not None:
        pytest.skip(f"no network namespaces: {reason}")
    made = Fabric.create(NODES)
    try:
        yield made
    finally:
        made.destroy()


class NamespacedNet:
    def __init__(self, layout: NetworkLayout, fabric: Fabric) -> None:
        self.layout = layout
        self.fabric = fabric
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        for node in self.layout.nodes:
            log = node.log_path.open("ab")
            command = [
                "ip",
                "netns",
                "exec",
                self.fabric.namespaces[node.index],
                sys.executable,
                "-m",
                "node.cli.main",
            ]
            self.processes.append(
                subprocess.Popen(
                    [*command, "node", "run", "--home", str(node.paths.root)],
                    cwd=ROOT,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )

    def client(self, index: int) -> RpcClient:
        node = self.layout.node(index)
        url = f"http://{self.fabric.address(index)}:{node.rpc_port}/"
        return RpcClient.for_home(node.paths.root, url, timeout_s=5)

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
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        codes = []
        for process in self.processes:
            try:
                codes.append(process.wait(timeout=30))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                codes.append(process.wait())
        return codes


def test_four_hosts_in_namespaces_survive_a_link_down_and_heal(tmp_path: Path, fabric: Fabric) -> None:
    layout = build_network(tmp_path / "testnet", NetworkPlan(nodes=NODES, base_port=BASE_PORT))
    _rehome(layout, fabric)
    net = NamespacedNet(layout, fabric)
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
