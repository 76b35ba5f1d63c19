"""`dcent node run` as a real process: a --dev chain makes blocks alone, SIGINT/SIGTERM exit 0
with no traceback and a consistent database, and a restart continues from the stored head."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.waiting import wait_until_blocking

DCENT = [sys.executable, "-m", "node.cli.main"]
ROOT = Path(__file__).resolve().parents[2]


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


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_dev_node_makes_blocks_and_stops_cleanly(tmp_path: Path, stop_signal: signal.Signals) -> None:
    home = tmp_path / "home"
    assert _dcent("init", "--home", str(home), "--dev").returncode == 0
    config = home / "config.toml"
    config.write_text(
        config.read_text()
        .replace("/tcp/26656", "/tcp/0")
        .replace("timeout_commit_ms = 500", "timeout_commit_ms = 50")
    )

    node = subprocess.Popen(
        [*DCENT, "node", "run", "--home", str(home)], cwd=ROOT, stderr=subprocess.PIPE, text=True
    )
    try:
        reached = _wait_for_height(home, 3, node)
        node.send_signal(stop_signal)
        assert node.wait(timeout=30) == 0
    finally:
        if node.poll() is None:
            node.kill()
    stderr = node.stderr.read() if node.stderr else ""
    assert "Traceback" not in stderr
    assert sqlite3.connect(home / "data" / "chain.db").execute("PRAGMA integrity_check").fetchone() == ("ok",)
    stopped_at = _height(home)
    assert stopped_at >= reached

    restarted = subprocess.Popen(
        [*DCENT, "node", "run", "--home", str(home)], cwd=ROOT, stderr=subprocess.PIPE, text=True
    )
    try:
        _wait_for_height(home, stopped_at + 2, restarted)
        restarted.send_signal(signal.SIGTERM)
        assert restarted.wait(timeout=30) == 0
    finally:
        if restarted.poll() is None:
            restarted.kill()
