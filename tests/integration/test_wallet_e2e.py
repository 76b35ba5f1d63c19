"""The wallet CLI end to end: a real `dcent node run` process, and `dcent wallet` / `dcent gov` as
real subprocesses talking to it over JSON-RPC with its cookie.

The dev chain's funded account is its validator key (`dcent init --dev` writes its seed to
`keys/validator_key`): the wallet imports it, funds a fresh wallet, and every balance that does not
earn block rewards (the fresh wallets never sign blocks) is checked to the base unit.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from node.rpc.client import RpcClient
from node.rpc.errors import RpcError
from node.wallet.connect import rpc_url_path_for
from protocol.crypto import PrivateKey
from protocol.units import DCT
from tests.waiting import wait_until_blocking

ROOT = Path(__file__).resolve().parents[2]
DCENT = [sys.executable, "-m", "node.cli.main"]
DCENT_WALLET = DCENT
PASSWORD = "e2e password"
#: Generous: the machine is shared and loaded.
CLI_TIMEOUT_S = 120
START_TIMEOUT_S = 90


def _run(command: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*command, *args], cwd=ROOT, capture_output=True, text=True, timeout=CLI_TIMEOUT_S, check=False
    )


class WalletCli:
    def __init__(self, home: Path, password_file: Path) -> None:
        self.home = home
        self.password_file = password_file

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return _run(DCENT_WALLET, *args, "--home", str(self.home), "--output", "json")

    def json(self, *args: str) -> Any:
        result = self.run(*args)
        assert result.returncode == 0, f"dcent {' '.join(args)} failed: {result.stderr}"
        return json.loads(result.stdout)

    def signed(self, *args: str) -> Any:
        """A command that unlocks a wallet: with the password file."""
        return self.json(*args, "--password-file", str(self.password_file))


@pytest.fixture
def node_home(tmp_path: Path) -> Iterator[Path]:
    home = tmp_path / "home"
    init = _run(DCENT, "init", "--home", str(home), "--dev")
    assert init.returncode == 0, init.stderr
    config = home / "config.toml"
    config.write_text(
        config.read_text()
        .replace("/tcp/26656", "/tcp/0")
        .replace("timeout_commit_ms = 500", "timeout_commit_ms = 50")
    )
    # The node logs a line per block: into a file, as a pipe nobody reads fills up and blocks it.
    log_path = tmp_path / "node.log"
    log = log_path.open("w")
    node = subprocess.Popen(
        [*DCENT, "node", "run", "--home", str(home), "--rpc-addr", "127.0.0.1:0"],
        cwd=ROOT,
        stderr=log,
        text=True,
    )
    try:

        def answers() -> bool:
            assert node.poll() is None, f"node exited early: {log_path.read_text()}"
            url_file = rpc_url_path_for(home)
            if not url_file.exists():
                return False
            try:
                RpcClient.for_home(home, url_file.read_text().strip()).call_blocking("node_health")
            except RpcError:
                return False
            return True

        wait_until_blocking(answers, what="the node answers node_health", timeout=START_TIMEOUT_S)
        yield home
    finally:
        if node.poll() is None:
            node.send_signal(signal.SIGTERM)
            try:
                node.wait(timeout=30)
            except subprocess.TimeoutExpired:
                node.kill()
                node.wait()
        log.close()


@pytest.fixture
def cli(node_home: Path, tmp_path: Path) -> WalletCli:
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD + "\n")
    return WalletCli(node_home, password_file)


def test_wallet_commands_against_a_running_node(cli: WalletCli, node_home: Path) -> None:
    # The dev chain's funded account: import its seed into the keystore under <home>/keystore.
    validator = PrivateKey.from_seed(
        bytes.fromhex((node_home / "keys" / "validator_key").read_text().strip())
    )
    imported = cli.signed(
        "wallet",
        "import",
        "--name",
        "val",
        "--seed-file",
        str(node_home / "keys" / "validator_key"),
        "--fast-kdf",
    )
    assert imported["address"] == str(validator.address)
    assert imported["path"] == str(node_home / "keystore" / "val.json")
    alice = cli.signed("wallet", "new", "--name", "alice", "--fast-kdf")["address"]
    bob = cli.signed("wallet", "new", "--name", "bob", "--fast-kdf")["address"]
    assert {entry["name"] for entry in cli.json("wallet", "list")} == {"val", "alice", "bob"}

    start = cli.json("wallet", "balance", "val")
    assert start["address"] == str(validator.address)
    assert int(start["balance"]) > 100 * DCT
    assert int(start["bonded"]) > 0  # the dev validator's genesis stake

    # Fund alice from the validator account; the transfer waits for its block.
    funding = cli.signed("wallet", "transfer", "alice", "12.5", "--from", "val")
    assert funding["status"] == "committed"
    assert isinstance(funding["height"], int) and funding["height"] >= 1
    assert (funding["sender"], funding["to"], funding["amount"]) == (
        str(validator.address),
        alice,
        "12500000000",
    )
    assert funding["nonce"] == start["nonce"] + 1
    assert cli.json("wallet", "balance", "val")["nonce"] == start["nonce"] + 1
    assert cli.json("wallet", "balance", "alice") == {
        "address": alice,
        "balance": "12500000000",
        "nonce": 0,
        "bonded": "0",
        "unbonding": "0",
    }

    # alice pays bob, then delegates to the validator (she runs no node: she never becomes a
    # validator, and her rewards compound in her shares) and undelegates part of it.
    paid = cli.signed("wallet", "transfer", bob, "2 DCT", "--from", "alice")
    fee = int(paid["fee"])
    assert fee > 0
    staked = cli.signed("wallet", "delegate", str(validator.address), "0.5", "--from", "alice")
    unstaked = cli.signed("wallet", "undelegate", str(validator.address), "0.2", "--from", "alice")
    assert [paid["nonce"], staked["nonce"], unstaked["nonce"]] == [1, 2, 3]
    assert all(tx["status"] == "committed" for tx in (paid, staked, unstaked))
    assert cli.json("wallet", "balance", "bob")["balance"] == str(2 * DCT)
    after = cli.json("wallet", "balance", "alice")
    # The dev chain's unbonding period is 100 blocks, a few seconds at this block rate: the
    # 0.2 DCT is either still unbonding or already back in her balance, never both or neither.
    assert after["nonce"] == 3
    assert after["unbonding"] in ("200000000", "0")
    assert int(after["balance"]) + int(after["unbonding"]) == (
        12_500_000_000 - 2 * DCT - 500_000_000 - 3 * fee + 200_000_000
    )
    assert int(after["bonded"]) >= 300_000_000  # her share of the validator's rewards on top
    delegations = cli.json("wallet", "delegations", "alice")
    assert [entry["validator"] for entry in delegations] == [str(validator.address)]
    assert str(validator.address) in {entry["address"] for entry in cli.json("validator", "list")}

    # A transaction submitted without waiting commits all the same.
    quick = cli.signed("wallet", "transfer", alice, "1base", "--from", "bob", "--no-wait")
    assert (quick["status"], quick["height"]) == ("pending", None)
    committed = wait_until_blocking(
        lambda: cli.json("wallet", "tx", quick["hash"])["status"] == "committed",
        what="the --no-wait transfer is committed",
        timeout=CLI_TIMEOUT_S,
    )
    assert committed

    # History: newest first, what alice sent and received.
    history = cli.json("wallet", "history", "alice")
    hashes = [entry["hash"] for entry in history]
    for tx in (funding, paid, staked, unstaked, quick):
        assert tx["hash"] in hashes
    assert [entry["height"] for entry in history] == sorted(
        (entry["height"] for entry in history), reverse=True
    )
    assert {entry["kind"] for entry in history} == {"transfer", "delegate", "undelegate"}

    # Governance: the validator proposes and votes; the proposal is listed with its deposit.
    proposed = cli.signed(
        "gov", "propose", "gov_voting_period", "900", "--deposit", "10 DCT", "--from", "val"
    )
    assert proposed["status"] == "committed"
    proposal_id = proposed["proposal_id"]
    assert isinstance(proposal_id, int)
    listed = {entry["id"]: entry for entry in cli.json("gov", "list")}
    assert listed[proposal_id]["param"] == "gov_voting_period"
    assert listed[proposal_id]["value"] == "900"
    assert listed[proposal_id]["deposit"] == str(10 * DCT)
    assert listed[proposal_id]["proposer"] == str(validator.address)
    assert listed[proposal_id]["status"] == "voting"
    voted = cli.signed("gov", "vote", str(proposal_id), "yes", "--from", "val")
    assert voted["status"] == "committed"
    assert cli.json("gov", "show", str(proposal_id))["id"] == proposal_id


def test_refusals_print_one_line_and_change_nothing(cli: WalletCli, node_home: Path) -> None:
    cli.signed("wallet", "new", "--name", "empty", "--fast-kdf")
    keystore_file = node_home / "keystore" / "empty.json"
    before = keystore_file.read_bytes()

    broke = cli.run(
        "wallet", "transfer", "empty", "1", "--from", "empty", "--password-file", str(cli.password_file)
    )
    assert broke.returncode == 1
    assert broke.stdout == ""
    assert json.loads(broke.stderr)["error"]["code"] == 2006  # --output json: a JSON error object

    wrong = node_home / "wrong-password"
    wrong.write_text("nope\n")
    # A balance to spend, so the only thing wrong is the password.
    val_seed = node_home / "keys" / "validator_key"
    cli.signed("wallet", "import", "--name", "val", "--seed-file", str(val_seed), "--fast-kdf")
    refused = cli.run("wallet", "transfer", "empty", "1", "--from", "val", "--password-file", str(wrong))
    assert refused.returncode == 1
    failure = json.loads(refused.stderr.strip().splitlines()[-1])["error"]
    assert failure["code"] == 5701 and failure["message"].startswith("wrong password")
    assert keystore_file.read_bytes() == before
    assert cli.json("wallet", "balance", "empty")["balance"] == "0"

    gone = _run(DCENT_WALLET, "wallet", "balance", "empty", "--home", str(node_home / "elsewhere"), "--keystore",
                str(node_home / "keystore"))  # fmt: skip
    assert gone.returncode == 1
    assert gone.stderr.strip().startswith("error 5710: no node is running with home")
