"""`dcent economics status | history | plot`, `dcent gov propose ... --preview` and
`dcent market offers | stats` as real `dcent` processes against a testnet of real node processes
(`dcent node run` under the testnet supervisor): the commands a person types, end to end."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from protocol.ledger.tx import Transfer
from protocol.units import DCT
from tests.e2e.framework import TestNetwork

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
NETWORK = {"nodes": 2, "providers": 2}
ROOT = Path(__file__).resolve().parents[2]


def dcent(network: TestNetwork, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    home = str(network.node(0).home)
    return subprocess.run(
        [sys.executable, "-m", "node.cli.main", *args, "--home", home],
        cwd=cwd or ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def dcent_json(network: TestNetwork, *args: str) -> Any:
    result = dcent(network, *args, "--output", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_economics_gov_preview_and_market_commands_on_a_testnet(network: TestNetwork, tmp_path: Path) -> None:
    alice = network.new_key("alice")
    network.faucet(alice.address, 100 * DCT)
    network.send(0, alice, Transfer(network.validator_key(1).address.raw, 3 * DCT))
    height = network.sync_all()

    status = dcent_json(network, "economics", "status")
    assert status["height"] >= height and status["supply_dct"] and status["inflation_pct"]
    assert "window_fees_dct" in status and float(status["staking_apr_pct"]) > 0

    history = dcent(network, "economics", "history", "--to", str(height))
    assert history.returncode == 0, history.stderr
    rows = list(csv.DictReader(io.StringIO(history.stdout)))
    assert [int(row["height"]) for row in rows] == list(range(1, height + 1))
    assert sum(int(row["txs"]) for row in rows) >= 2  # the faucet's transfer and alice's
    assert any(row["fees_dct"] != "0" for row in rows)

    plot = dcent_json(network, "economics", "plot", "--out", str(tmp_path / "charts"))
    assert plot["blocks"] >= height and all(Path(path).exists() for path in plot["files"])

    for param, value in (("fee_burn_share", "100%"), ("inflation_max", "10%")):
        out = tmp_path / f"preview-{param}"
        preview = dcent_json(
            network, "gov", "propose", param, value, "--preview", "--years", "0.02", "--preview-out", str(out)
        )
        table = {row["what"]: (row["as_is"], row["changed"]) for row in preview["table"]}
        assert preview["signed"] is False and table["supply after"][0] != table["supply after"][1]
        assert "bonded ratio at the end" in table and (out / "supply.png").exists()
    assert network.call(0, "gov_proposals") == []  # a preview signs nothing

    offers = dcent_json(network, "market", "offers")
    assert len(offers) == 2 and all(offer["simulated"] for offer in offers)
    stats = dcent_json(network, "market", "stats")
    assert stats["providers"] == 2 and stats["gpus"] == 2
