"""`dcent init` lays out a home; `dcent chain head` reads it offline."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from node.cli.main import main
from node.config import HomePaths, KeyFileError, load_config, load_key
from node.store import ChainStore, StoredBlock
from protocol.ledger.genesis import Genesis, genesis_state
from tests.integration.test_store import _block

GENESIS = Path(__file__).resolve().parents[2] / "configs" / "genesis.toml"


def test_init_dev_writes_config_keys_and_a_single_validator_genesis(tmp_path: Path) -> None:
    home = tmp_path / "node0"
    assert main(["init", "--home", str(home), "--dev"]) == 0
    paths = HomePaths(home)
    for key_path in (paths.node_key, paths.validator_key):
        assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(paths.config.stat().st_mode) == 0o600
    assert load_config(paths).moniker == "node0"
    genesis = Genesis.from_text(paths.genesis.read_text(), fmt="json")
    validator = load_key(paths.validator_key)
    assert [v.public_key for v in genesis.validators] == [validator.public_key.raw]
    assert [v.address for v in genesis_state(genesis).validator_set()] == [validator.address.raw]


def test_init_refuses_an_initialized_home(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", "--home", str(tmp_path), "--dev"]) == 0
    before = (tmp_path / "keys" / "validator_key").read_text()
    assert main(["init", "--home", str(tmp_path), "--dev"]) == 1
    assert "already initialized" in capsys.readouterr().err
    assert (tmp_path / "keys" / "validator_key").read_text() == before


def test_init_with_a_bad_genesis_names_the_field_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(GENESIS.read_text().replace('chain_id = "dcent-local-1"', "chain_id = 7"))
    home = tmp_path / "home"
    assert main(["init", "--home", str(home), "--genesis", str(bad)]) == 1
    assert "chain_id" in capsys.readouterr().err
    assert not home.exists()


def test_chain_head_reports_genesis_then_the_stored_head(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["init", "--home", str(tmp_path), "--genesis", str(GENESIS)]) == 0
    capsys.readouterr()
    assert main(["chain", "head", "--home", str(tmp_path), "--json"]) == 0
    at_genesis = json.loads(capsys.readouterr().out)
    genesis = Genesis.from_text(GENESIS.read_text(), fmt="toml")
    assert at_genesis["height"] == 0
    assert at_genesis["state_hash"] == genesis_state(genesis).state_hash().hex()

    store = ChainStore.open(HomePaths(tmp_path).chain_db)
    stored = _block(1)
    store.append_block(StoredBlock(1, stored.hash, b"s" * 32, stored.block, stored.certificate))
    store.close()
    assert main(["chain", "head", "--home", str(tmp_path), "--json"]) == 0
    head = json.loads(capsys.readouterr().out)
    assert head["height"] == 1 and head["state_hash"] == (b"s" * 32).hex()


def test_a_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    assert main(["init", "--home", str(tmp_path), "--dev"]) == 0
    key = HomePaths(tmp_path).validator_key
    key.chmod(0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_key(key)
