"""`dcent testnet up --netns [--latency MS]` end to end: the CLI itself (a subprocess, the operator's
code path) lays the nodes out in network namespaces, the chain commits, the round trip between two
namespaces takes at least the configured latency, and `dcent testnet down` removes the namespaces.

Needs root and `ip netns`; elsewhere skipped with the reason (under CI=true, a root host with `ip`
that cannot make namespaces fails instead). The links are shaped by netem where the kernel has
``sch_netem``, else by the userspace TUN switch (``node/testnet/tunshaper.py``): the latency test
runs either way, and says which it measured.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from node.cli.testnet_netns import SHAPER_PID
from node.rpc.client import RpcClient
from node.rpc.errors import CookieError, RpcTransportError
from node.testnet.layout import NetworkLayout
from node.testnet.netns import existing_namespaces, netem_unavailable
from node.testnet.tunshaper import tun_unavailable
from tests.e2e.test_netns import skip_or_fail_without_netns
from tests.waiting import wait_until_blocking

ROOT = Path(__file__).resolve().parents[2]
NODES = 3
RTT_MS = 50
#: A connect() is one round trip (SYN out, SYN-ACK back); the best of a few is the link's floor.
CONNECT_PROBES = 5

PROBE = """
import socket, sys, time
best = None
for _ in range(int(sys.argv[3])):
    start = time.perf_counter()
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10):
        elapsed = (time.perf_counter() - start) * 1000
    best = elapsed if best is None else min(best, elapsed)
print(best)
"""


def dcent(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "node.cli.main", "testnet", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def height(layout: NetworkLayout, index: int) -> int:
    node = layout.node(index)
    try:
        head = RpcClient.for_home(node.home, node.rpc_url, timeout_s=5).call_blocking("chain_head")
    except (RpcTransportError, CookieError, OSError):
        return -1
    return int(head["height"])


def connect_rtt_ms(layout: NetworkLayout, source: int, target: int) -> float:
    """The best TCP connect time from node ``source``'s namespace to node ``target``'s p2p port."""
    node = layout.node(target)
    namespace = layout.node(source).namespace
    assert namespace is not None
    done = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            namespace,
            sys.executable,
            "-c",
            PROBE,
            node.host,
            str(node.p2p_port),
            str(CONNECT_PROBES),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return float(done.stdout.strip())


def run_namespaced_testnet(tmp_path: Path, base_port: int, *shape: str) -> float:
    """Up (through the CLI) with ``shape``, check it commits, measure node 0 -> node 1's connect
    time, down; returns that time."""
    root = tmp_path / "testnet"
    up = dcent(
        "up",
        "--netns",
        *shape,
        "-n",
        str(NODES),
        "--providers",
        "0",
        "--dir",
        str(root),
        "--base-port",
        str(base_port),
    )
    layout = NetworkLayout.load(root) if (root / "testnet.json").exists() else None
    try:
        assert up.returncode == 0, f"testnet up failed:\n{up.stdout}\n{up.stderr}"
        assert layout is not None and layout.placement is not None
        assert all(node.namespace in existing_namespaces() for node in layout.nodes)
        assert all(node.host != "127.0.0.1" for node in layout.nodes)
        start = max(height(layout, i) for i in range(NODES))
        wait_until_blocking(
            lambda: min(height(layout, i) for i in range(NODES)) >= start + 3,
            what="every namespaced node commits three more blocks",
            timeout=120,
        )
        rtt = connect_rtt_ms(layout, 0, 1)
    finally:
        down = dcent("down", "--dir", str(root))
    assert down.returncode == 0, f"testnet down failed:\n{down.stdout}\n{down.stderr}"
    assert not (root / SHAPER_PID).exists(), "down left the TUN switch running"
    assert layout is not None and layout.placement is not None
    assert not {node.namespace for node in layout.nodes} & existing_namespaces(), "down left namespaces"
    return rtt


def test_up_netns_commits_in_namespaces_and_down_removes_them(tmp_path: Path) -> None:
    skip_or_fail_without_netns()
    rtt = run_namespaced_testnet(tmp_path, 26100)
    assert rtt < RTT_MS, f"an unshaped veth link took {rtt:.1f} ms per round trip"


def test_round_trip_between_namespaces_takes_the_configured_latency(tmp_path: Path) -> None:
    skip_or_fail_without_netns()
    no_netem = netem_unavailable()
    if no_netem is not None and (no_tun := tun_unavailable()) is not None:
        # Like bubblewrap without user namespaces: the host, not dcent, lacks the mechanism
        # (a chroot with a minimal /dev has no TUN device); `up` refuses it with error 5910.
        pytest.skip(f"links cannot be shaped here: {no_netem}; the TUN switch: {no_tun}")
    shaper = "netem" if no_netem is None else "the TUN switch (no sch_netem here)"
    rtt = run_namespaced_testnet(tmp_path, 26200, "--latency", str(RTT_MS))
    print(f"connect round trip {rtt:.1f} ms at {RTT_MS} ms configured, shaped by {shaper}")
    assert rtt >= RTT_MS, f"round trip {rtt:.1f} ms < the configured {RTT_MS} ms ({shaper})"
