"""`dcent wallet grant/revoke/grants`, `dcent job submit --payer` and `dcent wallet history`, against
the fake node: what they sign, what they send, what they refuse before asking for a password."""

from __future__ import annotations

from pathlib import Path

from node.cli.job import load_spec
from protocol.contracts import ContractTerms, SignedContract
from protocol.crypto import PrivateKey
from protocol.ledger.tx import MAX_GRANT_BLOCKS, Grant, GrantRevoke, OpenEscrow
from protocol.market.jobspec import JobSpec
from protocol.units import DCT

from .conftest import ALICE, BOB, CHAIN_ID, Cli, FakeNode, job_object, submitted_tx
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
    # Both payers granted the node enough: the node escrows, nothing is signed here.
    node.grants[str(ALICE.address)] = [_grant_entry(node, node.node_key)]
    node.grants[str(OTHER_NODE.address)] = [_grant_entry(node, node.node_key)]
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


# --- without a grant: the wallet signs the escrow itself -------------------------------------------


def _agreed(
    node: FakeNode, spec: JobSpec, *, payer: PrivateKey = ALICE, price: int = 1_000
) -> SignedContract:
    """The contract the fake node agreed: its key as requester, a provider, ``payer`` paying."""
    terms = ContractTerms(
        chain_id=CHAIN_ID,
        requester=node.node_key.public_key.raw,
        provider=BOB.public_key.raw,
        job_hash=spec.job_hash(),
        gpu_uuids=("GPU-SIM-1",),
        price_per_gpu_second=price,
        max_gpu_seconds=spec.max_gpu_seconds,
        collateral=5,
        deadline_height=90,
        salt=b"salt",
        payer=payer.address.raw,
    )
    return SignedContract(terms, terms.sign(node.node_key), terms.sign(BOB))


def _awaiting(contract: SignedContract) -> dict[str, object]:
    return job_object("contracted", awaiting_payer=True, contract=contract.encode().hex())


def test_without_a_grant_the_wallet_signs_the_agreed_escrow(cli: Cli, node: FakeNode, tmp_path: Path) -> None:
    cli.import_key(ALICE, "alice")
    node.fund(ALICE, 10 * DCT)
    spec_path = tmp_path / "job.toml"
    spec_path.write_text(GOOD_SPEC)
    contract = _agreed(node, load_spec(str(spec_path)))
    node.jobs["job-1"] = [job_object("negotiating"), _awaiting(contract)]
    answer = cli.json("job", "submit", str(spec_path), "--payer", "alice", *cli.key_args(), *cli.node_args())
    submit = next(params for method, params in node.calls if method == "job_submit")
    assert (submit["payer"], submit["payer_signs"]) == (str(ALICE.address), True)
    escrow = submitted_tx(node)
    assert escrow.sender == ALICE.address.raw and escrow.msg == OpenEscrow(contract)
    assert answer["job_id"] == "job-1" and answer["escrow"]["kind"] == "escrow_open"


def test_with_a_grant_that_covers_the_job_no_password_is_asked(
    cli: Cli, node: FakeNode, tmp_path: Path
) -> None:
    cli.import_key(ALICE, "alice")
    spec_path = tmp_path / "job.toml"
    spec_path.write_text(GOOD_SPEC)
    node.grants[str(ALICE.address)] = [_grant_entry(node, node.node_key)]  # 2 DCT left
    cli.json(
        "job", "submit", str(spec_path), "--payer", "alice", "--keystore", str(cli.keystore), *cli.node_args()
    )
    submit = next(params for method, params in node.calls if method == "job_submit")
    assert submit["payer"] == str(ALICE.address) and "payer_signs" not in submit
    assert node.submitted == []


def test_the_wallet_refuses_to_sign_a_contract_it_did_not_ask_for(
    cli: Cli, node: FakeNode, tmp_path: Path
) -> None:
    cli.import_key(ALICE, "alice")
    node.fund(ALICE, 10 * DCT)
    spec_path = tmp_path / "job.toml"
    spec_path.write_text(GOOD_SPEC)
    spec = load_spec(str(spec_path))
    for contract in (
        _agreed(node, spec, payer=BOB),
        _agreed(node, spec, price=spec.max_price_per_gpu_second + 1),
    ):
        node.jobs["job-1"] = [_awaiting(contract)]
        node.job_polls.clear()
        code, _, err = cli.run(
            "job", "submit", str(spec_path), "--payer", "alice", *cli.key_args(), *cli.node_args()
        )
        assert code != 0 and "contract" in err
    assert node.submitted == []


def test_a_payer_outside_the_keystore_without_a_grant_is_refused(
    cli: Cli, node: FakeNode, tmp_path: Path
) -> None:
    spec_path = tmp_path / "job.toml"
    spec_path.write_text(GOOD_SPEC)
    code, _, err = cli.run(
        "job",
        "submit",
        str(spec_path),
        "--payer",
        str(OTHER_NODE.address),
        "--keystore",
        str(cli.keystore),
        *cli.node_args(),
    )
    assert code != 0 and "dcent wallet grant" in err
    assert "job_submit" not in node.methods_called()
