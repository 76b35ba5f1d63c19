"""`dcent wallet`: parsing, node selection, keystores, balances, signing and submitting."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from node.rpc.cookie import cookie_path_for
from node.rpc.errors import RpcCallError
from node.wallet.connect import NodeTarget, resolve_target, rpc_url_path_for
from node.wallet.errors import InvalidArgument, NodeNotRunning
from node.wallet.values import parse_amount_arg, parse_param_value, parse_ratio
from protocol.ledger.errors import InvalidParamValue, UnknownParam
from protocol.ledger.tx import Stake, Transfer
from protocol.units import DCT, DEC
from tests.unit.wallet.conftest import (
    ALICE,
    BOB,
    CHAIN_ID,
    MIN_FEE,
    Cli,
    FakeNode,
    submitted_tx,
    validator_entry,
)

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
    assert set(made) == {"name", "address", "path", "fast_kdf", "mnemonic"}
    assert len(made["mnemonic"].split()) == 24
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
    node.validators[str(ALICE.address)] = validator_entry(ALICE)  # stake is an operator's own bond
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
    assert (code, out) == (1, "")
    assert json.loads(err) == {"error": {"code": 2004, "message": "nonce 5 is outside (4, 68]"}}
