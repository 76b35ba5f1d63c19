"""`dcent validator ...`: register and run a validator, or look at them.

    dcent validator create --amount AMOUNT [--moniker M] [--commission 10%] [--max-commission 20%]
                           [--max-change 1%] [--from WALLET] [--rpc-url URL | --home NODEHOME]
    dcent validator edit [--moniker M] [--commission P] [--from WALLET]
    dcent validator unjail [--from WALLET]      back in the set after a downtime jail
    dcent validator list [--all] | show ADDRESS

``create`` is signed by the operator's keystore wallet; the node it talks to (``--rpc-url`` or
``--home``) is the one that will vote: it answers ``validator_keyProof`` with its public key and
its signature binding the operator, which the transaction carries. The node's key never leaves
the node and nobody imports it anywhere. A holder who runs no node delegates instead
(``dcent wallet delegate``).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from rich.console import Console

from node.cli.delegation import unjail_plan
from node.rpc.errors import RpcCallError
from node.wallet.cliargs import Subparsers, add_command_group, add_common_args, add_node_args
from node.wallet.connect import NodeRpc
from node.wallet.console import dct, key_values, table
from node.wallet.errors import BadNodeAnswer
from node.wallet.runner import EXIT_OK, guarded, output_of, run_node_command
from node.wallet.txbuilder import Prepared
from node.wallet.txcommand import TxPlan, as_tx_command
from node.wallet.values import (
    AMOUNT_HELP,
    answer_list,
    answer_object,
    parse_address,
    parse_amount_arg,
    parse_ratio,
)
from protocol.ledger.errors import UnknownValidator, ValidatorExists
from protocol.ledger.tx import Msg, ValidatorCreate, ValidatorEdit
from protocol.units import format_ratio, percent


def register(subparsers: Subparsers) -> None:
    commands = add_command_group(
        subparsers,
        "validator",
        help_text="register a validator (its node votes) or edit it; list validators",
        description="Validators are registered with the key their node votes with; others delegate.",
    )

    create = commands.add_parser("create", help="register the node at --rpc-url/--home as your validator")
    create.add_argument(
        "--amount", required=True, metavar="AMOUNT", help=f"first self-delegation: {AMOUNT_HELP}"
    )
    create.add_argument("--moniker", default="", help="a name people see (at most 64 characters)")
    create.add_argument(
        "--commission", default="10%", help="share of the rewards kept (default: %(default)s)"
    )
    create.add_argument(
        "--max-commission", default="20%", help="the most the commission may ever be (default: %(default)s)"
    )
    create.add_argument(
        "--max-change", default="1%", help="the most one edit may move it (default: %(default)s)"
    )
    as_tx_command(create, _create_plan)

    edit = commands.add_parser("edit", help="change your validator's moniker or commission")
    edit.add_argument("--moniker", help="new moniker (default: unchanged)")
    edit.add_argument("--commission", help="new commission (default: unchanged)")
    as_tx_command(edit, _edit_plan)

    unjail = commands.add_parser(
        "unjail", help="bring your validator, jailed for downtime, back (same as `dcent wallet unjail`)"
    )
    as_tx_command(unjail, unjail_plan)

    listing = commands.add_parser("list", help="the active set (--all: every registered validator)")
    listing.add_argument("--all", action="store_true", help="jailed and tombstoned ones too")
    add_node_args(listing)
    listing.set_defaults(func=run_list)

    show = commands.add_parser("show", help="one validator, by its operator address")
    show.add_argument("address", metavar="ADDRESS")
    add_node_args(show)
    show.set_defaults(func=run_show)

    for command in (create, edit, unjail, listing, show):
        add_common_args(command)


def _hex(answer: Mapping[str, Any], field: str, length: int) -> bytes:
    value = answer.get(field)
    try:
        raw = bytes.fromhex(value) if isinstance(value, str) else b""
    except ValueError:
        raw = b""
    if len(raw) != length:
        raise BadNodeAnswer(f"validator_keyProof.{field}: expected {length} bytes of hex")
    return raw


def _create_plan(args: argparse.Namespace) -> TxPlan:
    amount = parse_amount_arg(args.amount, "--amount")
    commission = parse_ratio(args.commission, "--commission")
    max_commission = parse_ratio(args.max_commission, "--max-commission")
    max_change = parse_ratio(args.max_change, "--max-change")
    moniker = args.moniker
    # Built once now, so a bad moniker or commission is refused before anything else.
    placeholder = ValidatorCreate(
        bytes(32), bytes(64), moniker, commission, max_commission, max_change, amount
    )
    fields: dict[str, object] = {"amount": str(amount), "moniker": moniker, "commission": str(commission)}

    async def check(rpc: NodeRpc, prepared: Prepared) -> None:
        try:
            await rpc.call("validator_get", address=prepared.sender.address)
        except RpcCallError as exc:
            if exc.code != UnknownValidator.code:
                raise
            return  # not registered yet: as it should be
        raise ValidatorExists(f"{prepared.sender.address} already operates a validator")

    async def build(rpc: NodeRpc, prepared: Prepared) -> Msg:
        answer = answer_object(
            await rpc.call("validator_keyProof", operator=prepared.sender.address), "validator_keyProof"
        )
        consensus_key = _hex(answer, "consensus_key", 32)
        fields["consensus_key"] = consensus_key.hex()
        return ValidatorCreate(
            consensus_key,
            _hex(answer, "key_proof", 64),
            moniker,
            commission,
            max_commission,
            max_change,
            amount,
        )

    return TxPlan(
        placeholder,
        f"validator {moniker or '(no moniker)'} with {dct(amount)} of its own, commission {format_ratio(commission)}",
        spend=amount,
        fields=fields,
        check=check,
        build=build,
    )


def _edit_plan(args: argparse.Namespace) -> TxPlan:
    commission = None if args.commission is None else parse_ratio(args.commission, "--commission")
    fields: dict[str, object] = {}

    async def build(rpc: NodeRpc, prepared: Prepared) -> Msg:
        current = answer_object(
            await rpc.call("validator_get", address=prepared.sender.address), "validator_get"
        )
        moniker = args.moniker if args.moniker is not None else str(current.get("moniker", ""))
        rate = commission if commission is not None else int(str(current.get("commission", "0")))
        fields.update({"moniker": moniker, "commission": str(rate)})
        return ValidatorEdit(moniker, rate)

    return TxPlan(ValidatorEdit("", percent(0)), "validator edit", fields=fields, build=build)


def _row(entry: Mapping[str, Any]) -> tuple[object, ...]:
    state = "tombstoned" if entry.get("tombstoned") else "jailed" if entry.get("jailed") else "active"
    return (
        entry.get("address"),
        entry.get("moniker") or "-",
        dct(entry.get("bonded")),
        format_ratio(int(str(entry.get("commission", "0")))),
        f"{entry.get('missed')}/{entry.get('missed_limit')}",
        state,
    )


def run_list(args: argparse.Namespace) -> int:
    out = output_of(args)

    async def body(rpc: NodeRpc) -> int:
        method = "validator_all" if args.all else "validator_list"
        entries = [answer_object(e, method) for e in answer_list(await rpc.call(method), method)]

        def render(console: Console) -> None:
            if not entries:
                console.print("no validators")
                return
            columns = ("OPERATOR", "MONIKER", "BONDED", "COMMISSION", "MISSED", "STATE")
            console.print(table(columns, [_row(entry) for entry in entries]))

        out.result(entries, render)
        return EXIT_OK

    return run_node_command(args, out, body)


_RATIOS = ("commission", "max_commission", "max_commission_change")
_AMOUNTS = ("bonded", "self_bonded", "pending_rewards")


def _shown(name: str, value: object) -> object:
    if name in _RATIOS:
        return format_ratio(int(str(value)))
    return dct(value) if name in _AMOUNTS else value


def run_show(args: argparse.Namespace) -> int:
    out = output_of(args)

    def action() -> int:
        address = parse_address(args.address, "ADDRESS")

        async def body(rpc: NodeRpc) -> int:
            entry = answer_object(await rpc.call("validator_get", address=str(address)), "validator_get")
            pairs = [(name, _shown(name, value)) for name, value in entry.items()]
            out.result(dict(entry), lambda console: console.print(key_values(pairs)))
            return EXIT_OK

        return run_node_command(args, out, body)

    return guarded(out, action)
