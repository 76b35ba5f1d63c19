"""The grant commands of ``dcent wallet``: let a node pay for jobs from this wallet, within bounds.

    dcent wallet grant [NODE_ADDRESS] --amount DCT --expires-in BLOCKS
                                          let the node open job escrows on this wallet's account,
                                          locking at most AMOUNT in all, for BLOCKS blocks
                                          (NODE_ADDRESS: default the node this command talks to)
    dcent wallet revoke [NODE_ADDRESS]    end that grant (escrows already open stay open)
    dcent wallet grants [WALLET|ADDR]     the grants an account gave, what is spent and left

The grant is a transaction signed here with the keystore key (``protocol.ledger.authz``); the node
never holds the wallet's key. With a grant, ``dcent job submit --payer WALLET`` has the node name
the wallet as the contract's payer and open the escrow from the wallet's account; everything the
escrow returns goes back to the wallet.
"""

from __future__ import annotations

import argparse

from node.wallet.cliargs import Subparsers, add_account_command, add_common_args
from node.wallet.connect import NodeRpc
from node.wallet.console import dct
from node.wallet.errors import InvalidArgument
from node.wallet.runner import run_account_table
from node.wallet.txbuilder import Prepared
from node.wallet.txcommand import TxPlan, as_tx_command
from node.wallet.values import (
    AMOUNT_HELP,
    answer_int,
    answer_list,
    answer_object,
    answer_str,
    parse_address,
    parse_amount_arg,
)
from protocol.crypto import Address
from protocol.ledger.errors import NoGrant
from protocol.ledger.tx import GRANTABLE_KINDS, MAX_GRANT_BLOCKS, Grant, GrantRevoke, Msg

#: The least --expires-in: the grant must still be live at the block after the one it lands in.
MIN_EXPIRES_IN = 2


def register(commands: Subparsers) -> list[argparse.ArgumentParser]:
    """Add the grant commands to ``dcent wallet``; returns their parsers."""
    grant = commands.add_parser(
        "grant", help="let a node open job escrows on this wallet's account, within a cap and a time"
    )
    grant.add_argument(
        "grantee", nargs="?", metavar="NODE_ADDRESS", help="the node's account (default: the node used)"
    )
    grant.add_argument("--amount", required=True, metavar="AMOUNT", help=f"the cap, {AMOUNT_HELP}")
    grant.add_argument(
        "--expires-in",
        dest="expires_in",
        required=True,
        type=int,
        metavar="BLOCKS",
        help=f"blocks from now until the grant lapses ({MIN_EXPIRES_IN} to {MAX_GRANT_BLOCKS})",
    )
    as_tx_command(grant, _grant_plan)

    revoke = commands.add_parser("revoke", help="end this wallet's grant to a node")
    revoke.add_argument(
        "grantee", nargs="?", metavar="NODE_ADDRESS", help="the node's account (default: the node used)"
    )
    as_tx_command(revoke, _revoke_plan)

    grants = add_account_command(
        commands, "grants", "the grants an account gave: cap, spent, left, expiry", run_grants
    )

    parsers = [grant, revoke, grants]
    for parser in parsers:
        add_common_args(parser)
    return parsers


async def node_account(rpc: NodeRpc) -> Address:
    """The account of the node this command talks to (``node_info.address``)."""
    info = answer_object(await rpc.call("node_info"), "node_info")
    return parse_address(answer_str(info, "address", "node_info"), "node_info.address")


async def _grantee(rpc: NodeRpc, typed: Address | None) -> Address:
    return typed if typed is not None else await node_account(rpc)


def _typed_grantee(args: argparse.Namespace) -> Address | None:
    return None if args.grantee is None else parse_address(args.grantee, "NODE_ADDRESS")


def _grant_plan(args: argparse.Namespace) -> TxPlan:
    typed = _typed_grantee(args)
    amount = parse_amount_arg(args.amount, "--amount")
    if not MIN_EXPIRES_IN <= args.expires_in <= MAX_GRANT_BLOCKS:
        raise InvalidArgument(f"--expires-in: between {MIN_EXPIRES_IN} and {MAX_GRANT_BLOCKS} blocks")
    fields: dict[str, object] = {"spend_limit": str(amount), "kinds": list(GRANTABLE_KINDS)}

    async def build(rpc: NodeRpc, prepared: Prepared) -> Msg:
        grantee = await _grantee(rpc, typed)
        if grantee.raw == Address.parse(prepared.sender.address).raw:
            raise InvalidArgument("NODE_ADDRESS: a wallet cannot grant itself")
        head = answer_object(await rpc.call("chain_head"), "chain_head")
        expiry = answer_int(head, "height", "chain_head") + args.expires_in
        fields.update(grantee=str(grantee), expiry_height=expiry)
        return Grant(grantee.raw, amount, expiry, GRANTABLE_KINDS)

    return TxPlan(
        Grant(bytes(20), amount, 1, GRANTABLE_KINDS),  # placeholder until build knows the node
        f"grant of up to {dct(amount)} for job escrows, for {args.expires_in} blocks",
        fields=fields,
        build=build,
    )


def _revoke_plan(args: argparse.Namespace) -> TxPlan:
    typed = _typed_grantee(args)
    fields: dict[str, object] = {}

    async def build(rpc: NodeRpc, prepared: Prepared) -> Msg:
        grantee = await _grantee(rpc, typed)
        grants = answer_list(
            await rpc.call("account_grants", address=prepared.sender.address), "account_grants"
        )
        if not any(answer_object(g, "account_grants").get("grantee") == str(grantee) for g in grants):
            raise NoGrant(f"{prepared.sender.address} has no grant to {grantee} to revoke")
        fields["grantee"] = str(grantee)
        return GrantRevoke(grantee.raw)

    return TxPlan(GrantRevoke(bytes(20)), "revocation of a grant", fields=fields, build=build)


def run_grants(args: argparse.Namespace) -> int:
    return run_account_table(
        args,
        "account_grants",
        ("GRANTEE", "CAP", "SPENT", "LEFT", "EXPIRES AT", "KINDS"),
        lambda entry: (
            entry.get("grantee"),
            dct(entry.get("spend_limit")),
            dct(entry.get("spent")),
            dct(entry.get("remaining")),
            f"{entry.get('expiry_height')}{' (expired)' if entry.get('expired') else ''}",
            ", ".join(str(kind) for kind in entry.get("kinds") or ()),
        ),
        empty="has granted nothing",
    )
