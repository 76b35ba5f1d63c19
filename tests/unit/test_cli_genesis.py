"""`dcent genesis validate` accepts the shipped genesis and names the wrong field of a bad one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from node.cli.main import main

GENESIS = Path(__file__).resolve().parents[2] / "configs" / "genesis.toml"


def test_shipped_genesis_is_valid(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["genesis", "validate", str(GENESIS), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["chain_id"] == "dcent-local-1"
    assert summary["validators"] == 4


def test_bad_genesis_names_the_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "genesis.toml"
    bad.write_text(GENESIS.read_text().replace('gov_quorum = "33.4%"', 'gov_quorum = "140%"'))
    assert main(["genesis", "validate", str(bad)]) == 1
    assert "params.gov_quorum" in capsys.readouterr().err
