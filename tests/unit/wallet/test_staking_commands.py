"""`dcent wallet delegate/undelegate/redelegate/unjail/delegations` and `dcent validator ...`,
against the fake node: what they sign, and what they refuse before asking for a password."""

from __future__ import annotations

from protocol.crypto import PrivateKey, verify
from protocol.ledger.tx import (
    Delegate,
    Redelegate,
    Stake,
    Undelegate,
    Unjail,
    ValidatorCreate,
    ValidatorEdit,
    key_proof_bytes,
)
from protocol.units import DCT, percent

from .conftest import ALICE, BOB, CHAIN_ID, Cli, FakeNode, submitted_tx, validator_entry

VAL = PrivateKey.from_label("val")
OTHER = PrivateKey.from_label("other-val")


def _setup(cli: Cli, node: FakeNode) -> None:
    cli.import_key(ALICE, "alice")
    node.fund(ALICE, 100 * DCT)
    node.validators[str(VAL.address)] = validator_entry(VAL)
    node.validators[str(OTHER.address)] = validator_entry(OTHER)


def test_delegate_signs_a_delegation_to_the_operator_address(cli: Cli, node: FakeNode) -> None:
    _setup(cli, node)
    answer = cli.json("wallet", "delegate", str(VAL.address), "12.5", *cli.key_args(), *cli.node_args())
    assert submitted_tx(node).msg == Delegate(VAL.address.raw, 12_500_000_000)
    assert (answer["validator"], answer["amount"], answer["status"]) == (
        str(VAL.address),
        "12500000000",
        "committed",
    )


def test_delegate_refuses_a_tombstoned_or_unknown_validator_before_the_password(
    cli: Cli, node: FakeNode
) -> None:
    _setup(cli, node)
    node.validators[str(VAL.address)] = validator_entry(VAL, tombstoned=True)
    code, _, err = cli.run("wallet", "delegate", str(VAL.address), "1", *cli.key_args(), *cli.node_args())
    assert code == 1 and "error 2011" in err
    code, _, err = cli.run("wallet", "delegate", str(BOB.address), "1", *cli.key_args(), *cli.node_args())
    assert code == 1 and "error 2012" in err
    assert node.submitted == []


def test_undelegate_all_takes_the_delegations_worth(cli: Cli, node: FakeNode) -> None:
    _setup(cli, node)
    node.delegations[(str(ALICE.address), str(VAL.address))] = 7 * DCT + 3
    answer = cli.json("wallet", "undelegate", str(VAL.address), "all", *cli.key_args(), *cli.node_args())
    assert submitted_tx(node).msg == Undelegate(VAL.address.raw, 7 * DCT + 3)
    assert answer["amount"] == str(7 * DCT + 3)


def test_undelegating_more_than_the_delegation_is_refused_with_the_ledgers_error(
    cli: Cli, node: FakeNode
) -> None:
    _setup(cli, node)
    node.delegations[(str(ALICE.address), str(VAL.address))] = DCT
    code, _, err = cli.run("wallet", "undelegate", str(VAL.address), "2", *cli.key_args(), *cli.node_args())
    assert code == 1 and "error 2010" in err and "1 DCT" in err
    assert node.submitted == []


def test_redelegate_moves_a_delegation_to_a_usable_validator(cli: Cli, node: FakeNode) -> None:
    _setup(cli, node)
    node.delegations[(str(ALICE.address), str(VAL.address))] = 5 * DCT
    cli.json(
        "wallet", "redelegate", str(VAL.address), str(OTHER.address), "2", *cli.key_args(), *cli.node_args()
    )
    assert submitted_tx(node).msg == Redelegate(VAL.address.raw, OTHER.address.raw, 2 * DCT)
    code, _, err = cli.run(
        "wallet", "redelegate", str(VAL.address), str(VAL.address), "1", *cli.key_args(), *cli.node_args()
    )
    assert (code, err) == (1, "error 5714: FROM and TO are the same validator\n")


def test_unjail_only_a_jailed_validator(cli: Cli, node: FakeNode) -> None:
    _setup(cli, node)
    code, _, err = cli.run("wallet", "unjail", *cli.key_args(), *cli.node_args())
    assert code == 1 and "error 2012" in err  # alice operates no validator
    node.validators[str(ALICE.address)] = validator_entry(ALICE)
    code, _, err = cli.run("wallet", "unjail", *cli.key_args(), *cli.node_args())
    assert code == 1 and "error 2018" in err
    node.validators[str(ALICE.address)] = validator_entry(ALICE, jailed=True)
    cli.json("wallet", "unjail", *cli.key_args(), *cli.node_args())
    assert submitted_tx(node).msg == Unjail()


def test_delegations_lists_each_validator_and_its_worth(cli: Cli, node: FakeNode) -> None:
    _setup(cli, node)
    node.delegations[(str(ALICE.address), str(VAL.address))] = 3 * DCT
    entries = cli.json("wallet", "delegations", str(ALICE.address), *cli.node_args())
    assert entries == [{"validator": str(VAL.address), "shares": str(3 * DCT), "value": str(3 * DCT)}]
    code, out, _ = cli.run("wallet", "delegations", str(ALICE.address), *cli.node_args())
    assert code == 0 and "3 DCT" in out


def test_validator_create_carries_the_nodes_key_and_its_proof_for_the_operator(
    cli: Cli, node: FakeNode
) -> None:
    _setup(cli, node)
    answer = cli.json(
        "validator",
        "create",
        "--amount",
        "50",
        "--moniker",
        "alice's node",
        "--commission",
        "7%",
        *cli.key_args(),
        *cli.node_args(),
    )
    msg = submitted_tx(node).msg
    assert isinstance(msg, ValidatorCreate)
    assert (msg.amount, msg.moniker, msg.commission, msg.max_commission, msg.max_commission_change) == (
        50 * DCT,
        "alice's node",
        percent(7),
        percent(20),
        percent(1),
    )
    assert msg.consensus_key == node.node_key.public_key.raw
    assert verify(msg.consensus_key, msg.key_proof, key_proof_bytes(CHAIN_ID, ALICE.address.raw))
    assert answer["consensus_key"] == msg.consensus_key.hex()


def test_validator_create_is_refused_for_an_operator_that_has_one(cli: Cli, node: FakeNode) -> None:
    _setup(cli, node)
    node.validators[str(ALICE.address)] = validator_entry(ALICE)
    code, _, err = cli.run("validator", "create", "--amount", "50", *cli.key_args(), *cli.node_args())
    assert code == 1 and "error 2013" in err
    code, _, err = cli.run(
        "validator", "create", "--amount", "50", "--commission", "30%", *cli.key_args(), *cli.node_args()
    )
    assert code != 0 and node.submitted == []  # above --max-commission: refused locally


def test_validator_edit_keeps_what_is_not_given(cli: Cli, node: FakeNode) -> None:
    _setup(cli, node)
    node.validators[str(ALICE.address)] = validator_entry(ALICE)
    cli.json("validator", "edit", "--commission", "11%", *cli.key_args(), *cli.node_args())
    assert submitted_tx(node).msg == ValidatorEdit("val", percent(11))


def test_validator_list_and_show(cli: Cli, node: FakeNode) -> None:
    _setup(cli, node)
    node.validators[str(ALICE.address)] = validator_entry(ALICE, jailed=True)
    assert len(cli.json("validator", "list", *cli.node_args())) == 2
    assert len(cli.json("validator", "list", "--all", *cli.node_args())) == 3
    code, out, _ = cli.run("validator", "list", "--all", *cli.node_args())
    assert code == 0 and "jailed" in out and "10%" in out
    code, out, _ = cli.run("validator", "show", str(VAL.address), *cli.node_args())
    assert code == 0 and "1000 DCT" in out and "20%" in out
    code, _, err = cli.run("validator", "show", "dct1nonsense", *cli.node_args())
    assert code == 1 and err.startswith("error 5714: ADDRESS:")


def test_validator_unjail_is_the_wallets_unjail(cli: Cli, node: FakeNode) -> None:
    _setup(cli, node)
    node.validators[str(ALICE.address)] = validator_entry(ALICE)
    code, _, err = cli.run("validator", "unjail", *cli.key_args(), *cli.node_args())
    assert code == 1 and "error 2018" in err  # not jailed: refused before the password
    assert node.submitted == []
    node.validators[str(ALICE.address)] = validator_entry(ALICE, jailed=True)
    cli.json("validator", "unjail", *cli.key_args(), *cli.node_args())
    assert submitted_tx(node).msg == Unjail()


def test_validator_terms_out_of_bounds_are_refused_with_typed_codes_before_anything_is_sent(
    cli: Cli, node: FakeNode
) -> None:
    _setup(cli, node)
    refusals = {
        ("--moniker", "m" * 65): "error 2001",  # at most 64 printable characters
        ("--moniker", "bell\a"): "error 2001",
        ("--commission", "101%"): "error 2016",  # a ratio is at most 100%
        ("--commission", "30%"): "error 2016",  # above --max-commission (20%)
    }
    for (option, value), expected in refusals.items():
        code, out, err = cli.run(
            "validator", "create", "--amount", "50", option, value, *cli.key_args(), *cli.node_args()
        )
        assert code != 0 and out == "" and err.startswith(expected), (option, value, err)
    node.validators[str(ALICE.address)] = validator_entry(ALICE)
    code, _, err = cli.run("validator", "edit", "--moniker", "x" * 65, *cli.key_args(), *cli.node_args())
    assert code == 1 and err.startswith("error 2001")
    assert node.submitted == []


def test_stake_and_unstake_are_refused_to_a_sender_that_operates_no_validator(
    cli: Cli, node: FakeNode
) -> None:
    """The ledger refuses them (NotAValidator): the wallet says so before the password, and
    points at delegation."""
    _setup(cli, node)
    node.fund(ALICE, 100 * DCT, bonded=5 * DCT)  # a delegator: bonded, but to another's validator
    for command in ("stake", "unstake"):
        code, out, err = cli.run("wallet", command, "1", *cli.key_args(), *cli.node_args())
        assert (code, out) == (1, "")
        assert err.startswith("error 2063:") and "dcent wallet delegate" in err
    assert node.submitted == []
    node.validators[str(ALICE.address)] = validator_entry(ALICE)
    cli.json("wallet", "stake", "1", *cli.key_args(), *cli.node_args())
    assert submitted_tx(node).msg == Stake(amount=DCT)
