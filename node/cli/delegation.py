"""The staking commands of ``dcent wallet``: bonding to a validator without running a node.

    dcent wallet delegate VALIDATOR AMOUNT            bond to a validator (its operator address)
    dcent wallet undelegate VALIDATOR AMOUNT|all      start unbonding (released after the period)
    dcent wallet redelegate FROM TO AMOUNT|all        move a delegation at once
    dcent wallet delegations [WALLET|ADDR]            what an account has delegated, and its worth
    dcent wallet unjail                               bring one's own jailed validator back

Each is checked against the node before the password is asked for (the validator exists and is
not tombstoned; the delegation is worth the amount), so a transaction that could never apply is
refused here with the ledger's own error instead of waiting in a mempool.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable

from node.wallet.cliargs import Subparsers, add_account_command, add_common_args
from node.wallet.connect import NodeRpc
from node.wallet.console import dct
from node.wallet.errors import InvalidArgument
from node.wallet.runner import run_account_table
from node.wallet.txbuilder import Prepared
from node.wallet.txcommand import TxPlan, as_tx_command
from node.wallet.values import (
    AMOUNT_HELP,
    answer_amount,
    answer_list,
    answer_object,
    parse_address,
    parse_amount_arg,
)
from protocol.crypto import Address
from protocol.ledger.errors import InsufficientStake, NotJailed, Tombstoned
from protocol.ledger.tx import Delegate, Msg, Redelegate, Undelegate, Unjail

ALL = "all"


def register(commands: Subparsers) -> list[argparse.ArgumentParser]:
    """Add the staking commands to ``dcent wallet``; returns their parsers."""
    delegate = commands.add_parser("delegate", help="bond DCT to a validator (no node needed)")
    delegate.add_argument("validator", metavar="VALIDATOR", help="the validator's operator address")
    delegate.add_argument("amount", metavar="AMOUNT", help=AMOUNT_HELP)
    as_tx_command(delegate, _delegate_plan)

    undelegate = commands.add_parser(
        "undelegate", help="unbond from a validator (released after the unbonding period)"
    )
    undelegate.add_argument("validator", metavar="VALIDATOR", help="the validator's operator address")
    undelegate.add_argument("amount", metavar="AMOUNT", help=f"{AMOUNT_HELP}, or {ALL!r}")
    as_tx_command(undelegate, _undelegate_plan)

    redelegate = commands.add_parser("redelegate", help="move a delegation to another validator at once")
    redelegate.add_argument("source", metavar="FROM", help="the validator it leaves")
    redelegate.add_argument("destination", metavar="TO", help="the validator it joins")
    redelegate.add_argument("amount", metavar="AMOUNT", help=f"{AMOUNT_HELP}, or {ALL!r}")
    as_tx_command(redelegate, _redelegate_plan)

    unjail = commands.add_parser("unjail", help="bring your validator, jailed for downtime, back")
    as_tx_command(unjail, unjail_plan)

    delegations = add_account_command(
        commands, "delegations", "an account's delegations and their worth", run_delegations
    )

    parsers = [delegate, undelegate, redelegate, unjail, delegations]
    for parser in parsers:
        add_common_args(parser)
    return parsers


async def _usable_validator(rpc: NodeRpc, address: Address) -> None:
    """Refuse a validator the ledger would: unknown (its UnknownValidator) or tombstoned."""
    answer = answer_object(await rpc.call("validator_get", address=str(address)), "validator_get")
    if answer.get("tombstoned") is True:
        raise Tombstoned(f"validator {address} is tombstoned: it can never be bonded to again")


async def _worth(rpc: NodeRpc, delegator: str, validator: Address) -> int:
    entries = answer_list(await rpc.call("account_delegations", address=delegator), "account_delegations")
    for entry in entries:
        doc = answer_object(entry, "account_delegations")
        if doc.get("validator") == str(validator):
            return answer_amount(doc, "value", "account_delegations")
    return 0


def _amount_or_all(text: str) -> int | None:
    return None if text.strip().lower() == ALL else parse_amount_arg(text, "AMOUNT")


def _delegate_plan(args: argparse.Namespace) -> TxPlan:
    validator = parse_address(args.validator, "VALIDATOR")
    amount = parse_amount_arg(args.amount, "AMOUNT")

    async def check(rpc: NodeRpc, prepared: Prepared) -> None:
        await _usable_validator(rpc, validator)

    return TxPlan(
        Delegate(validator.raw, amount),
        f"delegation of {dct(amount)} to {validator}",
        spend=amount,
        fields={"validator": str(validator), "amount": str(amount)},
        check=check,
    )


def _unbonding_build(
    source: Address, amount: int | None, fields: dict[str, object], make: Callable[[int], Msg]
) -> Callable[[NodeRpc, Prepared], Awaitable[Msg]]:
    """The message once the delegation's worth is known: ``amount`` (or all of it) from ``source``."""

    async def build(rpc: NodeRpc, prepared: Prepared) -> Msg:
        worth = await _worth(rpc, prepared.sender.address, source)
        wanted = worth if amount is None else amount
        if wanted == 0 or wanted > worth:
            raise InsufficientStake(
                f"{dct(wanted)} asked of the delegation to {source}, which is worth {dct(worth)}"
            )
        fields["amount"] = str(wanted)
        return make(wanted)

    return build


def _undelegate_plan(args: argparse.Namespace) -> TxPlan:
    validator = parse_address(args.validator, "VALIDATOR")
    amount = _amount_or_all(args.amount)
    fields: dict[str, object] = {"validator": str(validator)}
    return TxPlan(
        Undelegate(validator.raw, amount or 1),
        f"undelegation of {dct(amount) if amount else 'everything'} from {validator}",
        fields=fields,
        build=_unbonding_build(validator, amount, fields, lambda n: Undelegate(validator.raw, n)),
    )


def _redelegate_plan(args: argparse.Namespace) -> TxPlan:
    source = parse_address(args.source, "FROM")
    destination = parse_address(args.destination, "TO")
    if source == destination:
        raise InvalidArgument("FROM and TO are the same validator")
    amount = _amount_or_all(args.amount)
    fields: dict[str, object] = {"source": str(source), "destination": str(destination)}

    async def check(rpc: NodeRpc, prepared: Prepared) -> None:
        await _usable_validator(rpc, destination)

    return TxPlan(
        Redelegate(source.raw, destination.raw, amount or 1),
        f"redelegation of {dct(amount) if amount else 'everything'} from {source} to {destination}",
        fields=fields,
        check=check,
        build=_unbonding_build(source, amount, fields, lambda n: Redelegate(source.raw, destination.raw, n)),
    )


def unjail_plan(args: argparse.Namespace) -> TxPlan:
    """``Unjail`` for the sender's own validator, refused here unless the node says it is jailed
    (an unknown operator gets the ledger's UnknownValidator, a free one NotJailed)."""

    async def check(rpc: NodeRpc, prepared: Prepared) -> None:
        answer = answer_object(
            await rpc.call("validator_get", address=prepared.sender.address), "validator_get"
        )
        if answer.get("jailed") is not True:
            raise NotJailed(f"the validator of {prepared.sender.address} is not jailed")

    return TxPlan(Unjail(), "unjail", check=check)


def run_delegations(args: argparse.Namespace) -> int:
    return run_account_table(
        args,
        "account_delegations",
        ("VALIDATOR", "WORTH"),
        lambda entry: (entry.get("validator"), dct(entry.get("value"))),
        empty="has no delegations",
    )
