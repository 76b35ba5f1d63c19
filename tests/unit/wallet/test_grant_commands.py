"""`dcent wallet grant/revoke/grants`, `dcent job submit --payer` and `dcent wallet history`, against
the fake node: what they sign, what they send, what they refuse before asking for a password."""

from __future__ import annotations

from pathlib import Path

from protocol.crypto import PrivateKey
from protocol.ledger.tx import MAX_GRANT_BLOCKS, Grant, GrantRevoke
from protocol.units import DCT

from .conftest import ALICE, Cli, FakeNode, submitted_tx
from .test_job_gov_commands import GOOD_SPEC

OTHER_NODE = PrivateKey.from_label("another node")


def _grant_entry(node: FakeNode, grantee: PrivateKey) -> dict[str, object]:
    return {
        "granter": str(ALICE.address),
        "grantee": str(grantee.address),
        "spend_limit": str(3 * DCT),
        "spent": str(DCT),
        "remaining": str(2 * DCT),
        "expiry_height": 107,
        "expired": False,
        "kinds": ["escrow_open"],
    }


def test_grant_defaults_to_the_node_it_talks_to_and_counts_expiry_from_the_head(
    cli: Cli, node: FakeNode
) -> None:
    cli.import_key(ALICE, "alice")
    node.fund(ALICE, 10 * DCT)
    answer = cli.json(
        "wallet", "grant", "--amount", "2.5", "--expires-in", "100", *cli.key_args(), *cli.node_args()
    )
    assert submitted_tx(node).msg == Grant(node.node_key.address.raw, 2_500_000_000, 107, ("escrow_open",))
    assert (answer["grantee"], answer["spend_limit"], answer["expiry_height"]) == (
        str(node.node_key.address),
        "2500000000",
        107,
    )


def test_grant_to_a_named_node(cli: Cli, node: FakeNode) -> None:
    cli.import_key(ALICE, "alice")
    node.fund(ALICE, 10 * DCT)
    cli.json(
        "wallet",
        "grant",
        str(OTHER_NODE.address),
        "--amount",
        "1",
        "--expires-in",
        "2",
        *cli.key_args(),
        *cli.node_args(),
    )
    assert submitted_tx(node).msg == Grant(OTHER_NODE.address.raw, DCT, 9, ("escrow_open",))


def test_grant_refuses_bad_arguments_before_the_node_or_a_password(cli: Cli, node: FakeNode) -> None:
    cli.import_key(ALICE, "alice")
    for expires in ("1", str(MAX_GRANT_BLOCKS + 1)):
        code, _, err = cli.run(
            "wallet", "grant", "--amount", "1", "--expires-in", expires, *cli.key_args(), *cli.node_args()
        )
        assert code != 0 and "--expires-in" in err
    code, _, err = cli.run(
        "wallet", "grant", "--amount", "0", "--expires-in", "9", *cli.key_args(), *cli.node_args()
    )
    assert code != 0
    assert node.submitted == [] and node.calls == []


def test_a_wallet_cannot_grant_itself(cli: Cli, node: FakeNode) -> None:
    cli.import_key(ALICE, "alice")
    node.fund(ALICE, 10 * DCT)
    code, _, err = cli.run(
        "wallet",
        "grant",
        str(ALICE.address),
        "--amount",
        "1",
        "--expires-in",
        "9",
        *cli.key_args(),
        *cli.node_args(),
    )
    assert code != 0 and "itself" in err
    assert node.submitted == []


def test_revoke_signs_only_an_existing_grant(cli: Cli, node: FakeNode) -> None:
    cli.import_key(ALICE, "alice")
    node.fund(ALICE, 10 * DCT)
    code, _, err = cli.run("wallet", "revoke", *cli.key_args(), *cli.node_args())
    assert code == 1 and "error 2071" in err
    assert node.submitted == []
    node.grants[str(ALICE.address)] = [_grant_entry(node, node.node_key)]
    answer = cli.json("wallet", "revoke", *cli.key_args(), *cli.node_args())
    assert submitted_tx(node).msg == GrantRevoke(node.node_key.address.raw)
    assert answer["grantee"] == str(node.node_key.address)


def test_grants_lists_cap_spent_left_in_dct(cli: Cli, node: FakeNode) -> None:
    cli.import_key(ALICE, "alice")
    node.grants[str(ALICE.address)] = [_grant_entry(node, node.node_key)]
    listed = cli.json("wallet", "grants", "--keystore", str(cli.keystore), *cli.node_args())
    assert listed == [_grant_entry(node, node.node_key)]
    code, out, _ = cli.run("wallet", "grants", "--keystore", str(cli.keystore), *cli.node_args())
    assert code == 0
    assert "3 DCT" in out and "2 DCT" in out and "107" in out


def test_job_submit_names_the_wallet_as_payer(cli: Cli, node: FakeNode, tmp_path: Path) -> None:
    cli.import_key(ALICE, "alice")
    spec = tmp_path / "job.toml"
    spec.write_text(GOOD_SPEC)
    cli.json(
        "job", "submit", str(spec), "--payer", "alice", "--keystore", str(cli.keystore), *cli.node_args()
    )
    cli.json("job", "submit", str(spec), "--payer", "--keystore", str(cli.keystore), *cli.node_args())
    cli.json("job", "submit", str(spec), "--payer", str(OTHER_NODE.address), *cli.node_args())
    cli.json("job", "submit", str(spec), *cli.node_args())
    payers = [params.get("payer") for method, params in node.calls if method == "job_submit"]
    assert payers == [str(ALICE.address), str(ALICE.address), str(OTHER_NODE.address), None]


def test_history_shows_every_kind_with_its_amount_in_dct(cli: Cli, node: FakeNode) -> None:
    wallet = str(ALICE.address)
    rows = [
        ("escrow_refund", "700000000", {"contract_hash": "cd" * 32, "payer": wallet}),
        ("escrow_open", "700000000", {"contract_hash": "cd" * 32, "payer": wallet}),
        ("grant", "3000000000", {"grantee": str(node.node_key.address), "expiry_height": 107}),
    ]
    node.history[wallet] = [
        {
            "hash": "ab" * 32,
            "height": 9 - i,
            "kind": kind,
            "sender": str(node.node_key.address) if kind == "escrow_open" else wallet,
            "recipient": None,
            "nonce": 1,
            "fee": "10000",
            "amount": amount,
            "details": details,
        }
        for i, (kind, amount, details) in enumerate(rows)
    ]
    code, out, _ = cli.run("wallet", "history", wallet, *cli.node_args())
    assert code == 0
    for text in ("escrow_refund", "escrow_open", "grant", "0.7 DCT", "3 DCT", "0.00001 DCT", "this account"):
        assert text in out
