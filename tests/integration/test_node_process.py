"""`dcent node run` as a real process: a --dev chain makes blocks alone, SIGINT/SIGTERM exit 0
with no traceback and a consistent database, and a restart continues from the stored head; the
process serves its JSON-RPC where ``<home>/data/rpc.url`` says, and fails cleanly when it cannot.

Every node here takes ``--rpc-addr 127.0.0.1:0``: a fixed port would collide with any other node
on the machine (another test run, say)."""

from __future__ import annotations

import json
import re
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from node.rpc.client import RpcClient
from tests.waiting import wait_until_blocking

DCENT = [sys.executable, "-m", "node.cli.main"]
ROOT = Path(__file__).resolve().parents[2]
EPHEMERAL_RPC = ("--rpc-addr", "127.0.0.1:0")


def _dcent(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*DCENT, *args], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)


def _height(home: Path) -> int:
    result = _dcent("chain", "head", "--home", str(home), "--json")
    assert result.returncode == 0, result.stderr
    return int(json.loads(result.stdout)["height"])


def _wait_for_height(home: Path, height: int, node: subprocess.Popen[str], timeout_s: float = 60) -> int:
    def reached() -> int:
        assert node.poll() is None, f"node exited early: {node.stderr.read() if node.stderr else ''}"
        current = _height(home)
        return current if current >= height else 0

    return wait_until_blocking(reached, what=f"height {height}", timeout=timeout_s)


def _stderr_tail(node: subprocess.Popen[str]) -> str:
    """What a node that exited wrongly said last (its stderr is a pipe nobody else reads)."""
    return "".join((node.stderr.read() if node.stderr else "").splitlines(keepends=True)[-40:])


def _dev_home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    assert _dcent("init", "--home", str(home), "--dev").returncode == 0
    config = home / "config.toml"
    config.write_text(
        config.read_text()
        .replace("/tcp/26656", "/tcp/0")
        .replace("timeout_commit_ms = 500", "timeout_commit_ms = 50")
    )
    return home


def _start(home: Path, *flags: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*DCENT, "node", "run", "--home", str(home), *flags], cwd=ROOT, stderr=subprocess.PIPE, text=True
    )


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_dev_node_makes_blocks_and_stops_cleanly(tmp_path: Path, stop_signal: signal.Signals) -> None:
    home = _dev_home(tmp_path)

    node = _start(home, *EPHEMERAL_RPC)
    try:
        reached = _wait_for_height(home, 3, node)
        node.send_signal(stop_signal)
        assert node.wait(timeout=30) == 0, _stderr_tail(node)
    finally:
        if node.poll() is None:
            node.kill()
    stderr = node.stderr.read() if node.stderr else ""
    assert "Traceback" not in stderr
    assert sqlite3.connect(home / "data" / "chain.db").execute("PRAGMA integrity_check").fetchone() == ("ok",)
    stopped_at = _height(home)
    assert stopped_at >= reached

    restarted = _start(home, *EPHEMERAL_RPC)
    try:
        _wait_for_height(home, stopped_at + 2, restarted)
        restarted.send_signal(signal.SIGTERM)
        assert restarted.wait(timeout=30) == 0, _stderr_tail(restarted)
    finally:
        if restarted.poll() is None:
            restarted.kill()


def test_node_process_serves_rpc_at_the_url_it_writes(tmp_path: Path) -> None:
    home = _dev_home(tmp_path)
    url_file = home / "data" / "rpc.url"
    cookie = home / "data" / ".cookie"
    genesis = json.loads((home / "genesis.json").read_text())
    node = _start(home, *EPHEMERAL_RPC)
    try:

        def url_written() -> str:
            assert node.poll() is None, f"node exited early: {node.stderr.read() if node.stderr else ''}"
            return url_file.read_text().strip() if url_file.exists() else ""

        url = wait_until_blocking(url_written, what="the node writes rpc.url", timeout=60)
        assert url.startswith("http://127.0.0.1:") and not url.endswith(":0/")
        info = RpcClient.for_home(home, url).call_blocking("node_info")
        assert info["chain_id"] == genesis["chain_id"] and info["moniker"] == "home"
        assert info["rpc_url"] == url and info["validator"] is True
        node.send_signal(signal.SIGTERM)
        assert node.wait(timeout=30) == 0, _stderr_tail(node)
    finally:
        if node.poll() is None:
            node.kill()
    assert "Traceback" not in (node.stderr.read() if node.stderr else "")
    assert not url_file.exists() and not cookie.exists()


def test_an_rpc_port_in_use_stops_the_node_with_a_clear_error(tmp_path: Path) -> None:
    home = _dev_home(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        node = _start(home, "--rpc-addr", f"127.0.0.1:{port}")
        try:
            assert node.wait(timeout=60) == 1
        finally:
            if node.poll() is None:
                node.kill()
    stderr = node.stderr.read() if node.stderr else ""
    assert re.search(rf"^error \d+: cannot listen on 127\.0\.0\.1:{port}", stderr, re.MULTILINE), stderr
    assert "Traceback" not in stderr
    assert not (home / "data" / ".cookie").exists() and not (home / "data" / "rpc.url").exists()
