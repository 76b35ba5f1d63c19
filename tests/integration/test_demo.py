"""`make demo`'s program: a real 4-node testnet, a wallet, one job from submission to settlement."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.integration.executor_helpers import bubblewrap_executor_or_skip

ROOT = Path(__file__).resolve().parents[2]


def test_demo_runs_a_job_from_a_wallet_to_settlement_and_stops_the_testnet(tmp_path: Path) -> None:
    """On a host where bubblewrap works; the unsandboxed path is run in the Debian 12 cleanroom
    (../shared/tools/cleanroom, a chroot where no user namespace can be made)."""
    bubblewrap_executor_or_skip()
    directory = tmp_path / "testnet"
    result = subprocess.run(
        [sys.executable, "-m", "node.demo", "--dir", str(directory), "--base-port", "27700"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "$ dcent testnet up -n 4 --providers 2" in out
    assert "model.json" in out and '"slope"' in out  # the outputs came back from the provider
    assert "The trained model (out/model.json): y = 1.98" in out and "the job really ran" in out
    assert "outcome: completed, exit status 0" in out  # what `job submit --wait` printed
    assert "The job ran in node-" in out and "sandbox ok" in out and "UNSANDBOXED" not in out
    assert "The job's money" in out and "protocol fee burned" in out
    assert "demo complete: the job completed with exit status 0 and settled" in out
    assert out.count("stopped, exit code 0") == 4  # every node process stopped cleanly
    assert len(list(directory.glob("node-*/node.exit"))) == 4
    assert not list(directory.glob("node-*/node.pid"))
