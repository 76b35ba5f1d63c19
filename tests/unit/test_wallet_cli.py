"""The wallet client's CLI layer: `dcent wallet`, `dcent job`, `dcent gov` over a fake node.

The node behind the commands is :class:`FakeNode`, a stand-in for ``RpcClient`` answering the RPC
contract's shapes (node/rpc's own tests and tests/integration/test_wallet_e2e.py cover the real
node). Commands run on ``MockClock(autojump_threshold=0)``, so polling loops take no real time.
Everything else is real: argparse, keystore files with the fast KDF, signing, the result writer.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio.testing

from node.cli import gov as gov_cli
from node.cli import job as job_cli
from node.cli import wallet as wallet_cli
from node.rpc.cookie import cookie_path_for
from node.rpc.errors import RpcCallError
from node.wallet import runner
from node.wallet.connect import NodeTarget, resolve_target, rpc_url_path_for
from node.wallet.errors import InvalidArgument, NodeNotRunning, OutputHashMismatch, UnsafeOutputPath
from node.wallet.results import decode_result, write_files
from node.wallet.values import parse_amount_arg, parse_param_value, parse_ratio
from protocol.crypto import Address, PrivateKey
from protocol.ledger.errors import InvalidParamValue, UnknownParam
from protocol.ledger.tx import GovPropose, GovVote, Stake, Transfer, decode_tx
from protocol.market.delivery import output_listing_hash
from protocol.units import DCT, DEC

CHAIN_ID = "dcent-test-1"
MIN_FEE = 10_000
PASSWORD = "correct horse battery staple"
ALICE = PrivateKey.from_label("alice")
BOB = PrivateKey.from_label("bob")


# --------------------------------------------------------------------------------------------
# The fake node
# --------------------------------------------------------------------------------------------


class FakeNode:
    """Answers the RPC contract's methods from in-memory state, and records every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.accounts: dict[str, dict[str, Any]] = {}
        self.submitted: list[bytes] = []
        #: How many tx_get answers say "pending" before one says "committed".
        self.pending_polls = 0
        self.refusals: dict[str, RpcCallError] = {}
        self.proposals: list[dict[str, Any]] = []
        self.jobs: dict[str, list[dict[str, Any]]] = {}
        self.job_polls: dict[str, int] = {}
        self.logs: dict[str, list[dict[str, Any]]] = {}
        self.results: dict[str, dict[str, Any]] = {}

    async def __aenter__(self) -> FakeNode:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None

    def fund(self, key: PrivateKey, balance: int, *, nonce: int = 0, bonded: int = 0) -> None:
        address = str(key.address)
        self.accounts[address] = {
            "address": address,
            "balance": str(balance),
            "nonce": nonce,
            "bonded": str(bonded),
            "unbonding": "0",
        }

    def methods_called(self) -> list[str]:
        return [method for method, _ in self.calls]

    async def call(self, method: str, *args: object, **params: Any) -> Any:
        assert not args, "the wallet sends named params"
        self.calls.append((method, params))
        if method in self.refusals:
            raise self.refusals[method]
        handler: Callable[..., Any] = getattr(self, f"rpc_{method}")
        return handler(**params)

    def rpc_node_info(self) -> dict[str, Any]:
        return {"chain_id": CHAIN_ID, "moniker": "fake", "height": 7}

    def rpc_economics_params(self) -> dict[str, Any]:
        return {"params": {"min_fee": str(MIN_FEE), "gov_min_deposit": str(10 * DCT)}, "supply": "0"}

    def rpc_account_get(self, address: str) -> dict[str, Any]:
        return self.accounts.get(
            address, {"address": address, "balance": "0", "nonce": 0, "bonded": "0", "unbonding": "0"}
        )

    def rpc_account_history(self, address: str, limit: int) -> list[dict[str, Any]]:
        return [
            {"hash": "ab" * 32, "height": 5, "kind": "transfer", "sender": address, "to": "x", "amount": "1"}
        ][:limit]

    def rpc_tx_submit(self, tx: str) -> dict[str, Any]:
        raw = bytes.fromhex(tx)
        self.submitted.append(raw)
        return {"hash": decode_tx(raw).hash.hex()}

    def rpc_tx_get(self, hash: str) -> dict[str, Any]:
        tx = next(decode_tx(raw) for raw in self.submitted if decode_tx(raw).hash.hex() == hash)
        committed = self.pending_polls <= 0
        self.pending_polls -= 1
        return {
            "hash": hash,
            "status": "committed" if committed else "pending",
            "height": 9 if committed else None,
            "kind": tx.msg.KIND,
            "sender": str(Address(tx.sender)),
            "nonce": tx.nonce,
            "fee": str(tx.fee),
        }

    def rpc_gov_proposals(self) -> list[dict[str, Any]]:
        return self.proposals

    def rpc_gov_get(self, id: int) -> dict[str, Any]:
        for proposal in self.proposals:
            if proposal["id"] == id:
                return proposal
        raise RpcCallError(2033, f"no proposal {id}")

    def rpc_job_submit(self, spec: dict[str, Any], max_attempts: int = 5) -> dict[str, Any]:
        return {"job_id": "job-1"}

    def rpc_job_get(self, job_id: str) -> dict[str, Any]:
        if job_id not in self.jobs:
            raise RpcCallError(5951, f"no job {job_id}")
        script = self.jobs[job_id]
        poll = self.job_polls.get(job_id, 0)
        self.job_polls[job_id] = poll + 1
        return script[min(poll, len(script) - 1)]

    def rpc_job_logs(self, job_id: str) -> dict[str, Any]:
        snapshots = self.logs[job_id]
        return snapshots.pop(0) if len(snapshots) > 1 else snapshots[0]

    def rpc_job_result(self, job_id: str) -> dict[str, Any]:
        return self.results[job_id]

    def rpc_job_list(self, state: str | None = None) -> list[dict[str, Any]]:
        jobs = [script[-1] for script in self.jobs.values()]
        return [job for job in jobs if state is None or job["state"] == state]


def job_object(state: str, *, error: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    stages = ["matching", "negotiating", "contracted", "escrowed", "running", "delivered", "settled"]
    reached = stages[: stages.index(state) + 1] if state in stages else ["matching", state]
    return {
        "job_id": "job-1",
        "state": state,
        "name": "hello",
        "role": "requester",
        "provider": str(BOB.address) if state not in ("matching", "negotiating") else None,
        "requester": str(ALICE.address),
        "contract_hash": None,
        "gpu_uuids": [],
        "price_per_gpu_second": None,
        "max_cost": None,
        "collateral": None,
        "escrow_height": None,
        "exit_status": None,
        "gpu_seconds": 3 if state == "settled" else None,
        "output_hash": None,
        "settled_height": None,
        "error": error,
        "history": [{"state": name, "at_ms": 1000 * index} for index, name in enumerate(reached)],
        **fields,
    }


# --------------------------------------------------------------------------------------------
# Running commands
# --------------------------------------------------------------------------------------------


@pytest.fixture
def node(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeNode]:
    fake = FakeNode()

    def open_fake(target: NodeTarget) -> FakeNode:
        return fake

    monkeypatch.setattr(
        runner,
        "BACKEND",
        runner.Backend(open_client=open_fake, clock=trio.testing.MockClock(autojump_threshold=0)),
    )
    for name in ("DCENT_HOME", "DCENT_RPC", "DCENT_RPC_COOKIE"):
        monkeypatch.delenv(name, raising=False)
    yield fake


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "password"
    path.write_text(PASSWORD + "\n")
    return path


@pytest.fixture
def keystore(tmp_path: Path) -> Path:
    return tmp_path / "keystore"


class Cli:
    """Builds the command tree as `dcent` does and runs one command line."""

    def __init__(self, capsys: pytest.CaptureFixture[str], keystore: Path, password_file: Path) -> None:
        self.capsys = capsys
        self.keystore = keystore
        self.password_file = password_file
        parser = argparse.ArgumentParser(prog="dcent")
        commands = parser.add_subparsers()
        for module in (wallet_cli, job_cli, gov_cli):
            module.register(commands)
        self.parser = parser

    def run(self, *argv: str) -> tuple[int, str, str]:
        args = self.parser.parse_args(list(argv))
        code = args.func(args)
        captured = self.capsys.readouterr()
        return code, captured.out, captured.err

    def json(self, *argv: str) -> Any:
        code, out, err = self.run(*argv, "--output", "json")
        assert code == 0, err
        return json.loads(out)

    def node_args(self) -> list[str]:
        return ["--rpc", "http://127.0.0.1:1/", "--rpc-cookie", str(self.keystore.parent / "cookie")]

    def key_args(self) -> list[str]:
        return ["--keystore", str(self.keystore), "--password-file", str(self.password_file)]

    def import_key(self, key: PrivateKey, name: str | None = None) -> dict[str, Any]:
        seed_file = self.keystore.parent / f"seed-{key.address}"
        seed_file.write_text(key.seed().hex() + "\n")
        naming = ["--name", name] if name else []
        result: dict[str, Any] = self.json(
            "wallet", "import", "--seed-file", str(seed_file), "--fast-kdf", *naming, *self.key_args()
        )
        return result


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], keystore: Path, password_file: Path) -> Cli:
    return Cli(capsys, keystore, password_file)


def submitted_tx(node: FakeNode) -> Any:
    assert len(node.submitted) == 1
    return decode_tx(node.submitted[0])


# --------------------------------------------------------------------------------------------
# Argument parsing and values
# --------------------------------------------------------------------------------------------


def test_transaction_options_parse_with_waiting_on_by_default(cli: Cli) -> None:
    args = cli.parser.parse_args(["wallet", "transfer", "dct1x", "1.5", "--fee", "0.001"])
    assert (args.to, args.amount, args.fee, args.wait, args.output) == ("dct1x", "1.5", "0.001", True, "text")
    assert cli.parser.parse_args(["wallet", "stake", "1", "--no-wait"]).wait is False
    assert cli.parser.parse_args(["gov", "vote", "3", "veto"]).option == "veto"
    with pytest.raises(SystemExit):
        cli.parser.parse_args(["gov", "vote", "3", "maybe"])
    with pytest.raises(SystemExit):
        cli.parser.parse_args(["wallet", "transfer", "dct1x"])


def test_fast_kdf_is_accepted_but_hidden_from_help(cli: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.parser.parse_args(["wallet", "new", "--fast-kdf"]).fast_kdf is True
    with pytest.raises(SystemExit):
        cli.parser.parse_args(["wallet", "new", "--help"])
    help_text = capsys.readouterr().out
    assert "--password-file" in help_text
    assert "fast" not in help_text.lower()


def test_amounts_are_dct_or_base_units() -> None:
    assert parse_amount_arg("1.5", "x") == 1_500_000_000
    assert parse_amount_arg("1.5 DCT", "x") == 1_500_000_000
    assert parse_amount_arg("1500base", "x") == 1500
    for bad in ("", "abc", "-1", "1.0000000001", "0"):
        with pytest.raises(InvalidArgument):
            parse_amount_arg(bad, "AMOUNT")
    assert parse_amount_arg("0", "fee", allow_zero=True) == 0


def test_ratios_are_percentages_or_scaled_integers() -> None:
    assert parse_ratio("75%", "x") == 3 * DEC // 4
    assert parse_ratio("33.4%", "x") == 334 * DEC // 1000
    assert parse_ratio(str(DEC // 2), "x") == DEC // 2
    for bad in ("0.75", "abc%", "-5%", "1e-30%", "nan%", "75 percent"):
        with pytest.raises(InvalidArgument):
            parse_ratio(bad, "x")


def test_governance_values_take_the_parameters_unit() -> None:
    assert parse_param_value("gov_quorum", "40%") == 4 * DEC // 10
    assert parse_param_value("min_fee", "0.0001 DCT") == 100_000
    assert parse_param_value("gov_voting_period", "20") == 20
    with pytest.raises(UnknownParam) as unknown:
        parse_param_value("no_such_param", "1")
    assert unknown.value.code == 2030
    with pytest.raises(InvalidParamValue):
        parse_param_value("gov_quorum", "150%")
    with pytest.raises(InvalidArgument):
        parse_param_value("gov_voting_period", "1.5")


# --------------------------------------------------------------------------------------------
# Which node
# --------------------------------------------------------------------------------------------


def test_a_home_gives_its_url_and_cookie(tmp_path: Path) -> None:
    home = tmp_path / "home"
    rpc_url_path_for(home).parent.mkdir(parents=True)
    rpc_url_path_for(home).write_text("http://127.0.0.1:4567/\n")
    target = resolve_target(home=str(home), rpc=None, rpc_cookie=None, environ={})
    assert target == NodeTarget("http://127.0.0.1:4567/", cookie_path_for(home.resolve()))
    from_env = resolve_target(home=None, rpc=None, rpc_cookie=None, environ={"DCENT_HOME": str(home)})
    assert from_env == target


def test_flags_beat_the_environment(tmp_path: Path) -> None:
    home = tmp_path / "home"
    rpc_url_path_for(home).parent.mkdir(parents=True)
    rpc_url_path_for(home).write_text("http://127.0.0.1:4567/")
    environ = {"DCENT_RPC": "http://127.0.0.1:9999/", "DCENT_RPC_COOKIE": str(tmp_path / "env-cookie")}
    assert resolve_target(home=None, rpc=None, rpc_cookie=None, environ=environ) == NodeTarget(
        "http://127.0.0.1:9999/", tmp_path / "env-cookie"
    )
    assert (
        resolve_target(home=str(home), rpc=None, rpc_cookie=None, environ=environ).url
        == "http://127.0.0.1:4567/"
    )
    explicit = resolve_target(
        home=None, rpc="http://10.0.0.1:1/", rpc_cookie=str(tmp_path / "mine"), environ=environ
    )
    assert explicit == NodeTarget("http://10.0.0.1:1/", tmp_path / "mine")


def test_a_home_without_a_running_node_is_one_clear_line(cli: Cli, tmp_path: Path) -> None:
    with pytest.raises(NodeNotRunning, match="no node is running with home"):
        resolve_target(home=str(tmp_path / "idle"), rpc=None, rpc_cookie=None, environ={})
    code, out, err = cli.run("wallet", "balance", str(ALICE.address), "--home", str(tmp_path / "idle"))
    assert code == 1
    assert out == ""
    assert err.startswith("error 5710: no node is running with home")
    assert err.count("\n") == 1


def test_a_node_that_does_not_listen_is_one_clear_line(cli: Cli, tmp_path: Path) -> None:
    # The real client against a closed port: nothing listens on port 1 of loopback.
    cookie = tmp_path / "cookie"
    cookie.write_text("__cookie__:" + "00" * 32)
    code, out, err = cli.run(
        "wallet", "balance", str(ALICE.address), "--rpc", "http://127.0.0.1:1/", "--rpc-cookie", str(cookie)
    )
    assert (code, out) == (1, "")
    assert err == "error 5710: no node answers at http://127.0.0.1:1/ (connection refused): is it running?\n"


# --------------------------------------------------------------------------------------------
# Keystore flows
# --------------------------------------------------------------------------------------------


def test_new_list_and_address(cli: Cli, keystore: Path) -> None:
    made = cli.json("wallet", "new", "--name", "alice", "--fast-kdf", *cli.key_args())
    assert set(made) == {"name", "address", "path", "fast_kdf"}
    assert made["name"] == "alice"
    assert made["fast_kdf"] is True
    assert Path(made["path"]) == keystore / "alice.json"
    assert os.stat(made["path"]).st_mode & 0o777 == 0o600
    unnamed = cli.json("wallet", "new", "--fast-kdf", *cli.key_args())
    assert unnamed["name"] == unnamed["address"]
    assert Path(unnamed["path"]).name == f"{unnamed['address']}.json"

    listed = cli.json("wallet", "list", "--keystore", str(keystore))
    assert sorted(entry["address"] for entry in listed) == sorted([made["address"], unnamed["address"]])
    assert cli.json("wallet", "address", "alice", "--keystore", str(keystore))["address"] == made["address"]
    by_address = cli.json("wallet", "address", unnamed["address"], "--keystore", str(keystore))
    assert by_address["path"] == unnamed["path"]

    code, out, _ = cli.run("wallet", "list", "--keystore", str(keystore))
    assert code == 0
    assert "alice" in out and made["address"] in out


def test_import_stores_the_given_key_once(cli: Cli, keystore: Path) -> None:
    made = cli.import_key(ALICE, "alice")
    assert made["address"] == str(ALICE.address)
    seed_file = keystore.parent / f"seed-{ALICE.address}"
    code, _, err = cli.run("wallet", "import", "--seed-file", str(seed_file), "--fast-kdf", *cli.key_args())
    assert code == 1
    assert err.startswith("error 5702:") and "already has a wallet" in err
    assert [path.name for path in keystore.iterdir()] == ["alice.json"]


def test_a_bad_seed_or_name_is_refused_before_anything_is_written(cli: Cli, keystore: Path) -> None:
    seed_file = keystore.parent / "short-seed"
    seed_file.write_text("abcd\n")
    code, _, err = cli.run("wallet", "import", "--seed-file", str(seed_file), "--fast-kdf", *cli.key_args())
    assert (code, err.split(":")[0]) == (1, "error 5714")
    code, _, err = cli.run("wallet", "new", "--name", "../evil", "--fast-kdf", *cli.key_args())
    assert (code, err.split(":")[0]) == (1, "error 5719")
    code, _, err = cli.run("wallet", "new", "--name", "dct1lookalike", "--fast-kdf", *cli.key_args())
    assert (code, err.split(":")[0]) == (1, "error 5719")
    assert not keystore.exists()


def test_a_new_wallet_asks_twice_and_refuses_differing_passwords(
    cli: Cli, keystore: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = iter(["first", "second"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    code, _, err = cli.run("wallet", "new", "--fast-kdf", "--keystore", str(keystore))
    assert code == 1
    assert err.startswith("error 5713: the two passwords differ")
    assert not keystore.exists()

    answers = iter(["same", "same"])
    code, out, _ = cli.run("wallet", "new", "--name", "prompted", "--fast-kdf", "--keystore", str(keystore))
    assert code == 0
    assert "created wallet prompted" in out
    assert (keystore / "prompted.json").exists()


def test_the_only_wallet_is_the_default_and_several_need_a_choice(
    cli: Cli, keystore: Path, node: FakeNode
) -> None:
    cli.import_key(ALICE, "alice")
    node.fund(ALICE, 5 * DCT, nonce=3)
    assert cli.json("wallet", "balance", "--keystore", str(keystore), *cli.node_args())["address"] == str(
        ALICE.address
    )
    cli.import_key(BOB, "bob")
    code, _, err = cli.run("wallet", "balance", "--keystore", str(keystore), *cli.node_args())
    assert code == 1
    assert err.startswith("error 5712: 2 wallets") and "alice" in err and "bob" in err


# --------------------------------------------------------------------------------------------
# Reading accounts
# --------------------------------------------------------------------------------------------


def test_balance_prints_the_account_in_both_formats(cli: Cli, node: FakeNode) -> None:
    node.fund(ALICE, 1_500_000_000, nonce=4, bonded=2 * DCT)
    document = cli.json("wallet", "balance", str(ALICE.address), *cli.node_args())
    assert document == {
        "address": str(ALICE.address),
        "balance": "1500000000",
        "nonce": 4,
        "bonded": "2000000000",
        "unbonding": "0",
    }
    code, out, _ = cli.run("wallet", "balance", str(ALICE.address), *cli.node_args())
    assert code == 0
    assert "1.5 DCT" in out and "2 DCT" in out


def test_a_mistyped_address_is_refused_locally(cli: Cli, node: FakeNode) -> None:
    typo = str(ALICE.address)[:-1] + ("q" if str(ALICE.address)[-1] != "q" else "p")
    code, _, err = cli.run("wallet", "balance", typo, *cli.node_args())
    assert code == 1
    assert err.startswith("error 5714: account:")
    assert node.calls == []


def test_history_lists_what_the_node_returns(cli: Cli, node: FakeNode) -> None:
    entries = cli.json("wallet", "history", str(ALICE.address), "--limit", "5", *cli.node_args())
    assert entries[0]["kind"] == "transfer"
    assert node.calls[-1] == ("account_history", {"address": str(ALICE.address), "limit": 5})


# --------------------------------------------------------------------------------------------
# Transactions
# --------------------------------------------------------------------------------------------


def test_transfer_signs_locally_and_submits_only_the_signed_bytes(cli: Cli, node: FakeNode) -> None:
    cli.import_key(ALICE, "alice")
    node.fund(ALICE, 10 * DCT, nonce=4)
    node.pending_polls = 3
    document = cli.json("wallet", "transfer", str(BOB.address), "1.5 DCT", *cli.key_args(), *cli.node_args())

    tx = submitted_tx(node)
    assert tx.verify_signature()
    assert (tx.chain_id, tx.nonce, tx.fee) == (CHAIN_ID, 5, MIN_FEE)
    assert tx.sender == ALICE.address.raw
    assert tx.msg == Transfer(to=BOB.address.raw, amount=1_500_000_000)
    assert document == {
        "hash": tx.hash.hex(),
        "kind": "transfer",
        "sender": str(ALICE.address),
        "nonce": 5,
        "fee": str(MIN_FEE),
        "status": "committed",
        "height": 9,
        "to": str(BOB.address),
        "amount": "1500000000",
    }
    # The key never travels: tx_submit's params are the signed bytes and nothing else.
    submits = [params for method, params in node.calls if method == "tx_submit"]
    assert submits == [{"tx": node.submitted[0].hex()}]
    assert all(ALICE.seed().hex() not in json.dumps(params) for _, params in node.calls)
    assert node.methods_called().count("tx_get") == 4


def test_a_recipient_can_be_a_wallet_name_and_the_fee_is_explicit(cli: Cli, node: FakeNode) -> None:
    cli.import_key(ALICE, "alice")
    cli.import_key(BOB, "bob")
    node.fund(ALICE, 10 * DCT)
    code, out, err = cli.run(
        "wallet",
        "transfer",
        "bob",
        "2",
        "--from",
        "alice",
        "--fee",
        "20000base",
        *cli.key_args(),
        *cli.node_args(),
    )
    assert code == 0, err
    tx = submitted_tx(node)
    assert tx.msg == Transfer(to=BOB.address.raw, amount=2 * DCT)
    assert tx.fee == 20_000
    assert "transfer of 2 DCT to" in out and "committed at height 9" in out


def test_no_wait_returns_once_submitted(cli: Cli, node: FakeNode) -> None:
    cli.import_key(ALICE)
    node.fund(ALICE, 10 * DCT)
    document = cli.json("wallet", "stake", "3", "--no-wait", *cli.key_args(), *cli.node_args())
    assert (document["status"], document["height"]) == ("pending", None)
    assert submitted_tx(node).msg == Stake(amount=3 * DCT)
    assert "tx_get" not in node.methods_called()


def test_a_transaction_not_committed_in_time_fails_clearly(cli: Cli, node: FakeNode) -> None:
    cli.import_key(ALICE)
    node.fund(ALICE, 10 * DCT)
    node.pending_polls = 10**9
    code, out, err = cli.run(
        "wallet", "transfer", str(BOB.address), "1", "--timeout", "30", *cli.key_args(), *cli.node_args()
    )
    assert (code, out) == (1, "")
    assert err.startswith("error 5711: transaction ") and "not committed within 30 s" in err
    assert len(node.submitted) == 1


def test_a_wrong_password_fails_clearly_and_leaves_the_keystore_intact(
    cli: Cli, node: FakeNode, keystore: Path, tmp_path: Path
) -> None:
    cli.import_key(ALICE, "alice")
    node.fund(ALICE, 10 * DCT)
    path = keystore / "alice.json"
    before = path.read_bytes()
    wrong = tmp_path / "wrong"
    wrong.write_text("not the password\n")
    code, out, err = cli.run(
        "wallet", "transfer", str(BOB.address), "1", "--keystore", str(keystore), "--password-file", str(wrong),
        *cli.node_args(),
    )  # fmt: skip
    assert (code, out) == (1, "")
    assert err.startswith("error 5701: wrong password for keystore")
    assert path.read_bytes() == before
    assert node.submitted == []


def test_spending_more_than_the_balance_is_refused_before_the_password(
    cli: Cli, node: FakeNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli.import_key(ALICE)
    node.fund(ALICE, 1 * DCT)

    def no_prompt(prompt: str = "") -> str:
        raise AssertionError("asked for a password")

    monkeypatch.setattr("getpass.getpass", no_prompt)
    code, _, err = cli.run(
        "wallet", "transfer", str(BOB.address), "1", "--keystore", str(cli.keystore), *cli.node_args()
    )
    assert code == 1
    assert err.startswith("error 2006:")
    code, _, err = cli.run("wallet", "unstake", "1", "--keystore", str(cli.keystore), *cli.node_args())
    assert code == 1
    assert err.startswith("error 2010:")
    assert node.submitted == []


def test_a_refusal_by_the_node_prints_its_code_and_message(cli: Cli, node: FakeNode) -> None:
    cli.import_key(ALICE)
    node.fund(ALICE, 10 * DCT)
    node.refusals["tx_submit"] = RpcCallError(2004, "nonce 5 is outside (4, 68]", {"error": "BadNonce"})
    code, out, err = cli.run(
        "wallet", "transfer", str(BOB.address), "1", *cli.key_args(), *cli.node_args(), "--output", "json"
    )
    assert (code, out, err) == (1, "", "error 2004: nonce 5 is outside (4, 68]\n")


# --------------------------------------------------------------------------------------------
# Governance
# --------------------------------------------------------------------------------------------


def proposal(**fields: Any) -> dict[str, Any]:
    base = {
        "id": 1,
        "param": "gov_quorum",
        "value": str(4 * DEC // 10),
        "proposer": str(ALICE.address),
        "deposit": str(10 * DCT),
        "status": "voting",
        "end_height": 110,
        "tally": {"yes": "0", "no": "0", "abstain": "0", "veto": "0"},
    }
    return {**base, **fields}


def test_propose_sends_the_scaled_value_and_reports_the_proposal_id(cli: Cli, node: FakeNode) -> None:
    cli.import_key(ALICE)
    node.fund(ALICE, 100 * DCT)
    node.proposals = [proposal(id=1, value="1"), proposal(id=2)]
    document = cli.json(
        "gov", "propose", "gov_quorum", "40%", "--deposit", "10 DCT", *cli.key_args(), *cli.node_args()
    )
    assert submitted_tx(node).msg == GovPropose(param="gov_quorum", value=4 * DEC // 10, deposit=10 * DCT)
    assert document["proposal_id"] == 2
    assert (document["param"], document["value"], document["deposit"]) == (
        "gov_quorum",
        str(4 * DEC // 10),
        str(10 * DCT),
    )


def test_a_proposal_below_the_minimum_deposit_or_for_no_parameter_is_refused(
    cli: Cli, node: FakeNode
) -> None:
    cli.import_key(ALICE)
    node.fund(ALICE, 100 * DCT)
    code, _, err = cli.run(
        "gov", "propose", "gov_quorum", "40%", "--deposit", "1", *cli.key_args(), *cli.node_args()
    )
    assert (code, err.split(":")[0]) == (1, "error 2032")
    code, _, err = cli.run(
        "gov", "propose", "warp_speed", "9", "--deposit", "10", *cli.key_args(), *cli.node_args()
    )
    assert (code, err.split(":")[0]) == (1, "error 2030")
    assert node.submitted == []


def test_vote_checks_the_proposal_and_the_voters_stake(cli: Cli, node: FakeNode) -> None:
    cli.import_key(ALICE)
    node.proposals = [proposal(id=1), proposal(id=2, status="passed")]
    node.fund(ALICE, 1 * DCT)
    code, _, err = cli.run("gov", "vote", "1", "yes", *cli.key_args(), *cli.node_args())
    assert (code, err.split(":")[0]) == (1, "error 2035")
    node.fund(ALICE, 1 * DCT, bonded=5 * DCT)
    code, _, err = cli.run("gov", "vote", "2", "yes", *cli.key_args(), *cli.node_args())
    assert (code, err.split(":")[0]) == (1, "error 2034")
    assert node.submitted == []
    document = cli.json("gov", "vote", "1", "veto", *cli.key_args(), *cli.node_args())
    assert submitted_tx(node).msg == GovVote(proposal_id=1, option="veto")
    assert (document["proposal_id"], document["option"], document["status"]) == (1, "veto", "committed")


def test_gov_list_and_show(cli: Cli, node: FakeNode) -> None:
    node.proposals = [proposal(id=1)]
    assert cli.json("gov", "list", *cli.node_args()) == node.proposals
    assert cli.json("gov", "show", "1", *cli.node_args()) == node.proposals[0]
    code, out, _ = cli.run("gov", "list", *cli.node_args())
    assert code == 0 and "gov_quorum" in out and "40%" in out
    code, _, err = cli.run("gov", "show", "9", *cli.node_args())
    assert (code, err) == (1, "error 2033: no proposal 9\n")


# --------------------------------------------------------------------------------------------
# Jobs
# --------------------------------------------------------------------------------------------

GOOD_SPEC = """
name = "hello"
argv = ["echo", "hi"]
max_runtime_s = "1m"
max_price_per_gpu_second = "0.001 DCT"
[resources]
gpu_count = 1
"""


def test_a_bad_spec_is_refused_locally_with_the_field_path(cli: Cli, node: FakeNode, tmp_path: Path) -> None:
    spec = tmp_path / "bad.toml"
    spec.write_text(GOOD_SPEC.replace("gpu_count = 1", "gpu_count = 0"))
    code, out, err = cli.run("job", "submit", str(spec), "--home", str(tmp_path / "no-node"))
    assert (code, out) == (1, "")
    assert err.startswith("error 4010: resources.gpu_count:")
    assert node.calls == []
    wrong_kind = tmp_path / "spec.yaml"
    wrong_kind.write_text(GOOD_SPEC)
    code, _, err = cli.run("job", "submit", str(wrong_kind), *cli.node_args())
    assert (code, err.split(":")[0]) == (1, "error 4010")
    assert node.calls == []


def test_submit_sends_the_specs_json_form(cli: Cli, node: FakeNode, tmp_path: Path) -> None:
    spec = tmp_path / "job.toml"
    spec.write_text(GOOD_SPEC)
    assert cli.json("job", "submit", str(spec), "--max-attempts", "3", *cli.node_args()) == {
        "job_id": "job-1"
    }
    method, params = node.calls[0]
    assert method == "job_submit"
    assert params["max_attempts"] == 3
    assert params["spec"]["argv"] == ["echo", "hi"]
    assert params["spec"]["max_price_per_gpu_second"] == 1_000_000


def test_submit_wait_follows_the_stages_to_settled(cli: Cli, node: FakeNode, tmp_path: Path) -> None:
    spec = tmp_path / "job.toml"
    spec.write_text(GOOD_SPEC)
    stages = ["matching", "negotiating", "contracted", "escrowed", "running", "delivered", "settled"]
    node.jobs["job-1"] = [job_object(state) for state in stages]
    code, out, err = cli.run("job", "submit", str(spec), "--wait", *cli.node_args())
    assert code == 0, err
    for label in ("matching", "negotiating", "contract", "escrow", "running", "delivered", "settled"):
        assert label in out
    assert "job job-1: settled" in out
    assert node.job_polls["job-1"] == len(stages)

    node.job_polls.clear()
    final = cli.json("job", "submit", str(spec), "--wait", *cli.node_args())
    assert final["state"] == "settled"


@pytest.mark.parametrize("state", ["failed", "refunded", "cancelled"])
def test_submit_wait_exits_1_with_the_jobs_error(
    cli: Cli, node: FakeNode, tmp_path: Path, state: str
) -> None:
    spec = tmp_path / "job.toml"
    spec.write_text(GOOD_SPEC)
    error = {"code": 4051, "message": "no provider agreed after 3 attempts"}
    node.jobs["job-1"] = [job_object("matching"), job_object(state, error=error)]
    code, out, err = cli.run("job", "submit", str(spec), "--wait", "--output", "json", *cli.node_args())
    assert code == 1
    assert json.loads(out)["state"] == state
    assert err == "error 4051: no provider agreed after 3 attempts\n"


def test_submit_wait_gives_up_at_its_deadline(cli: Cli, node: FakeNode, tmp_path: Path) -> None:
    spec = tmp_path / "job.toml"
    spec.write_text(GOOD_SPEC)
    node.jobs["job-1"] = [job_object("running")]
    code, _, err = cli.run("job", "submit", str(spec), "--wait", "--timeout", "120", *cli.node_args())
    assert code == 1
    assert err.startswith("error 5718: job job-1 is still running after 120 s")


def test_status_list_and_cancel(cli: Cli, node: FakeNode) -> None:
    node.jobs["job-1"] = [job_object("running")]
    assert cli.json("job", "status", "job-1", *cli.node_args())["state"] == "running"
    assert [job["job_id"] for job in cli.json("job", "list", "--state", "running", *cli.node_args())] == [
        "job-1"
    ]
    assert cli.json("job", "list", "--state", "settled", *cli.node_args()) == []
    code, _, err = cli.run("job", "status", "job-9", *cli.node_args())
    assert (code, err) == (1, "error 5951: no job job-9\n")
    node.refusals["job_cancel"] = RpcCallError(5953, "job job-1 is past escrowed")
    code, _, err = cli.run("job", "cancel", "job-1", *cli.node_args())
    assert (code, err) == (1, "error 5953: job job-1 is past escrowed\n")


def test_logs_follow_prints_each_new_piece_once(cli: Cli, node: FakeNode) -> None:
    node.jobs["job-1"] = [job_object("running"), job_object("running"), job_object("settled")]
    node.logs["job-1"] = [
        {"stdout": "step 1\n", "stderr": ""},
        {"stdout": "step 1\nstep 2\n", "stderr": "warn\n"},
        {"stdout": "step 1\nstep 2\ndone\n", "stderr": "warn\n", "stdout_truncated": False},
    ]
    code, out, err = cli.run("job", "logs", "job-1", "--follow", *cli.node_args())
    assert code == 0
    assert out == "step 1\nstep 2\ndone\n"
    assert err == "warn\n"


def result_answer(files: dict[str, bytes], *, output_hash: str | None = None) -> dict[str, Any]:
    return {
        "output_hash": output_hash or output_listing_hash(files).hex(),
        "files": {path: base64.b64encode(content).decode() for path, content in files.items()},
        "exit_status": 0,
        "gpu_seconds": 4,
    }


def test_result_writes_verified_files_under_the_directory(cli: Cli, node: FakeNode, tmp_path: Path) -> None:
    files = {"model.bin": b"\x00\x01weights", "logs/loss.csv": b"1,0.5\n"}
    node.results["job-1"] = result_answer(files)
    out_dir = tmp_path / "results"
    document = cli.json("job", "result", "job-1", "--out", str(out_dir), *cli.node_args())
    assert (out_dir / "model.bin").read_bytes() == files["model.bin"]
    assert (out_dir / "logs" / "loss.csv").read_bytes() == files["logs/loss.csv"]
    assert document["output_hash"] == output_listing_hash(files).hex()
    assert [entry["path"] for entry in document["files"]] == ["logs/loss.csv", "model.bin"]
    assert document["written_to"] == str(out_dir)


@pytest.mark.parametrize("bad_path", ["../escape.txt", "/etc/passwd", "a/../../b", "a//b", "./x"])
def test_result_refuses_paths_that_leave_the_directory(
    cli: Cli, node: FakeNode, tmp_path: Path, bad_path: str
) -> None:
    node.results["job-1"] = result_answer({"ok.txt": b"fine", bad_path: b"evil"})
    out_dir = tmp_path / "results"
    code, _, err = cli.run("job", "result", "job-1", "--out", str(out_dir), *cli.node_args())
    assert code == 1
    assert err.startswith("error 5715:")
    assert not out_dir.exists()
    assert not (tmp_path / "escape.txt").exists()


def test_result_refuses_files_that_do_not_match_the_reported_hash(
    cli: Cli, node: FakeNode, tmp_path: Path
) -> None:
    reported = output_listing_hash({"out.txt": b"what the provider promised"}).hex()
    node.results["job-1"] = result_answer({"out.txt": b"something else"}, output_hash=reported)
    out_dir = tmp_path / "results"
    code, _, err = cli.run("job", "result", "job-1", "--out", str(out_dir), *cli.node_args())
    assert code == 1
    assert err.startswith(f"error 5716: job job-1: the node reports output hash {reported}")
    assert not out_dir.exists()


def test_result_writer_does_not_follow_a_symlink_out_of_the_directory(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    out_dir = tmp_path / "results"
    out_dir.mkdir()
    (out_dir / "sub").symlink_to(outside)
    files = {"sub/planted.txt": b"x"}
    result = decode_result("job-1", result_answer(files))
    with pytest.raises(UnsafeOutputPath):
        write_files(result, out_dir)
    assert list(outside.iterdir()) == []


def test_decode_result_checks_the_hash_without_writing(tmp_path: Path) -> None:
    files = {"a.txt": b"a"}
    assert decode_result("j", result_answer(files)).files == files
    with pytest.raises(OutputHashMismatch):
        decode_result("j", result_answer(files, output_hash="00" * 32))


def test_logs_and_tx_print_the_nodes_documents(cli: Cli, node: FakeNode) -> None:
    node.logs["job-1"] = [
        {"stdout": "hi\n", "stderr": "", "stdout_truncated": True, "stderr_truncated": False}
    ]
    assert cli.json("job", "logs", "job-1", *cli.node_args())["stdout"] == "hi\n"
    code, out, err = cli.run("job", "logs", "job-1", *cli.node_args())
    assert (code, out) == (0, "hi\n")
    assert err == "(stdout was truncated by the provider)\n"
    node.refusals["tx_get"] = RpcCallError(5202, "unknown transaction")
    code, _, err = cli.run("wallet", "tx", "ab" * 32, *cli.node_args())
    assert (code, err) == (1, "error 5202: unknown transaction\n")
