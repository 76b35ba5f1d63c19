"""`dcent wallet grant/grants/revoke/history` end to end: real `dcent` subprocesses signing with the
keystore key and talking JSON-RPC to a real `dcent node run` (the fixtures of test_wallet_e2e)."""

from __future__ import annotations

from pathlib import Path

from protocol.crypto import PrivateKey
from protocol.units import DCT
from tests.integration.test_wallet_e2e import WalletCli, cli, node_home  # noqa: F401 (fixtures)


def test_a_wallet_grants_its_node_lists_it_sees_it_in_history_and_revokes_it(
    cli: WalletCli,  # noqa: F811
    node_home: Path,  # noqa: F811
) -> None:
    node_account = str(
        PrivateKey.from_seed(
            bytes.fromhex((node_home / "keys" / "validator_key").read_text().strip())
        ).address
    )
    cli.signed(
        "wallet",
        "import",
        "--name",
        "val",
        "--seed-file",
        str(node_home / "keys" / "validator_key"),
        "--fast-kdf",
    )
    alice = cli.signed("wallet", "new", "--name", "alice", "--fast-kdf")["address"]
    cli.signed("wallet", "transfer", "alice", "5", "--from", "val")

    # The grantee defaults to the node the command talks to.
    granted = cli.signed("wallet", "grant", "--amount", "1.5", "--expires-in", "1000", "--from", "alice")
    assert granted["status"] == "committed" and granted["kind"] == "grant"
    assert (granted["grantee"], granted["spend_limit"]) == (node_account, str(1_500_000_000))
    assert granted["expiry_height"] >= 1000

    listed = cli.json("wallet", "grants", "alice")
    assert [(g["grantee"], g["spend_limit"], g["spent"], g["expired"]) for g in listed] == [
        (node_account, str(1_500_000_000), "0", False)
    ]

    # Both sides see the grant in their history, with its cap.
    for account in (alice, node_account):
        rows = cli.json("wallet", "history", account)
        grant_rows = [row for row in rows if row["kind"] == "grant"]
        assert [row["amount"] for row in grant_rows] == [str(1_500_000_000)]
        assert grant_rows[0]["details"]["grantee"] == node_account

    revoked = cli.signed("wallet", "revoke", "--from", "alice")
    assert revoked["status"] == "committed" and revoked["grantee"] == node_account
    assert cli.json("wallet", "grants", "alice") == []
    again = cli.run("wallet", "revoke", "--from", "alice", "--password-file", str(cli.password_file))
    assert again.returncode == 1 and "2071" in again.stderr + again.stdout
    assert int(cli.json("wallet", "balance", "alice")["balance"]) == 5 * DCT - 2 * int(granted["fee"])
