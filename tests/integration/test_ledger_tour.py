"""The ledger tour runs the real ledger end to end and reports a settled contract."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_demo_settles_a_contract_and_keeps_the_supply_invariant() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "node.ledger_tour"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "provider delegates 500 DCT to validator-0" in out
    assert "contract settled: 5,400 GPU-seconds metered" in out
    assert "proposal 1 passed; fee_burn_share 50% -> 75%" in out
    assert "Supply invariant holds at height" in out
    assert out.rstrip().endswith("demo complete: contract settled on the ledger")
