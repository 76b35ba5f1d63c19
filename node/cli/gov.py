"""`dcent gov ...`: governance proposals to change a ledger parameter, and validators' votes.

    dcent gov propose PARAM VALUE --deposit AMOUNT   e.g. gov_quorum 40%, min_fee "0.0001 DCT"
    dcent gov vote ID yes|no|abstain|veto            delegators and validator operators vote
    dcent gov list | show ID
    dcent gov propose PARAM VALUE --preview [--years N]   simulate it first; --submit to go on
    dcent gov show ID --preview                           what an open proposal would do

VALUE is typed in the parameter's unit: ratios as a percentage ("75%") or the raw 1e18-scaled
integer, amounts like any amount ("10 DCT", "5000base"), periods and counts as whole numbers.
Proposals and votes are transactions signed here, like ``dcent wallet transfer``.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from rich.console import Console

from node.cli.gov_preview import Change, add_preview_args, run_preview
from node.errors import NodeError
from node.wallet.cliargs import Subparsers, add_command_group, add_common_args, add_node_args, add_tx_args
from node.wallet.connect import NodeRpc
from node.wallet.console import cell, dct, key_values, table
from node.wallet.errors import InvalidArgument
from node.wallet.runner import EXIT_FAILED, EXIT_OK, output_of, report, run_node_command
from node.wallet.txbuilder import Prepared, TxOutcome
from node.wallet.txcommand import TxPlan, as_tx_command, run_tx_command
from node.wallet.values import (
    AMOUNT_HELP,
    answer_amount,
    answer_int,
    answer_list,
    answer_object,
    answer_str,
    parse_amount_arg,
    parse_param_value,
)
from protocol.errors import ProtocolError
from protocol.ledger.errors import DepositTooLow, NoVotingPower, VotingClosed
from protocol.ledger.params import AMOUNT_PARAMS, PARAM_BOUNDS, RATIO_PARAMS
from protocol.ledger.tx import VOTE_OPTIONS, GovPropose, GovVote
from protocol.units import format_ratio

VOTING = "voting"


def register(subparsers: Subparsers) -> None:
    commands = add_command_group(
        subparsers,
        "gov",
        help_text="governance: propose parameter changes and vote",
        description="Propose changes to the ledger's parameters, vote on them, list them.",
    )

    propose = commands.add_parser("propose", help="propose a new value for a parameter")
    propose.add_argument("param", metavar="PARAM", help=f"one of: {', '.join(sorted(PARAM_BOUNDS))}")
    propose.add_argument("value", metavar="VALUE", help='ratios "75%%", amounts "10 DCT", else an integer')
    propose.add_argument(
        "--deposit", metavar="AMOUNT", help=f"the deposit, {AMOUNT_HELP} (required to submit)"
    )
    add_tx_args(propose)
    add_preview_args(propose, proposing=True)  # i16view
    propose.set_defaults(func=run_propose)

    vote = commands.add_parser(
        "vote",
        help="vote on a proposal (validators and delegators; a validator votes for its delegators unless they vote)",
    )
    vote.add_argument("proposal_id", type=int, metavar="ID")
    vote.add_argument("option", choices=VOTE_OPTIONS, metavar="OPTION", help=" | ".join(VOTE_OPTIONS))
    as_tx_command(vote, _vote_plan)

    listing = commands.add_parser("list", help="every proposal and its tally")
    add_node_args(listing)
    listing.set_defaults(func=run_list)

    show = commands.add_parser("show", help="one proposal")
    show.add_argument("proposal_id", type=int, metavar="ID")
    add_node_args(show)
    add_preview_args(show, proposing=False)  # i16view
    show.set_defaults(func=run_show)

    for command in (propose, vote, listing, show):
        add_common_args(command)


def format_param_value(param: str, value: object) -> str:
    """A parameter value (the node's decimal string) in its unit: "75%", "10 DCT", "100"."""
    if isinstance(value, str) and value.isdigit():
        if param in RATIO_PARAMS:
            return format_ratio(int(value))
        if param in AMOUNT_PARAMS:
            return dct(value)
    return cell(value)


# --------------------------------------------------------------------------------------------
# propose, vote
# --------------------------------------------------------------------------------------------


async def _find_proposal_id(rpc: NodeRpc, outcome: TxOutcome, msg: GovPropose) -> dict[str, object]:
    """The id of the proposal this transaction opened: the newest of this proposer's that match.

    Only a committed transaction opened one; a ``--no-wait`` proposal gets ``None``.
    """
    if outcome.status != "committed":
        return {"proposal_id": None}
    matches = [
        answer_int(proposal, "id", "gov_proposals")
        for proposal in answer_list(await rpc.call("gov_proposals"), "gov_proposals")
        if isinstance(proposal, Mapping)
        and proposal.get("proposer") == outcome.sender
        and proposal.get("param") == msg.param
        and proposal.get("value") == str(msg.value)
    ]
    return {"proposal_id": max(matches, default=None)}


def _propose_plan(args: argparse.Namespace) -> TxPlan:
    value = parse_param_value(args.param, args.value)
    if args.deposit is None:
        raise InvalidArgument("--deposit: required to submit a proposal (not for --preview)")
    deposit = parse_amount_arg(args.deposit, "--deposit")
    msg = GovPropose(param=args.param, value=value, deposit=deposit)

    async def check(rpc: NodeRpc, prepared: Prepared) -> None:
        minimum = prepared.chain.params.get("gov_min_deposit", 0)
        if deposit < minimum:
            raise DepositTooLow(f"deposit {dct(deposit)} is below the minimum {dct(minimum)}")

    async def after(rpc: NodeRpc, outcome: TxOutcome) -> dict[str, object]:
        return await _find_proposal_id(rpc, outcome, msg)

    return TxPlan(
        msg,
        f"proposal to set {args.param} to {format_param_value(args.param, str(value))}",
        spend=deposit,
        fields={"param": args.param, "value": str(value), "deposit": str(deposit)},
        check=check,
        after=after,
    )


def _vote_plan(args: argparse.Namespace) -> TxPlan:
    if args.proposal_id < 1:
        raise InvalidArgument("ID: proposals are numbered from 1")
    msg = GovVote(proposal_id=args.proposal_id, option=args.option)

    async def check(rpc: NodeRpc, prepared: Prepared) -> None:
        # A vote that cannot apply would wait in the mempool for good: refuse it here instead.
        proposal = answer_object(await rpc.call("gov_get", id=args.proposal_id), "gov_get")
        if answer_str(proposal, "status", "gov_get") != VOTING:
            raise VotingClosed(f"proposal {args.proposal_id} is {proposal.get('status')}, no longer voting")
        if prepared.sender.bonded == 0:
            raise NoVotingPower(
                f"{prepared.sender.address} has nothing bonded: delegators and validator operators vote"
            )

    return TxPlan(
        msg,
        f"vote {args.option} on proposal {args.proposal_id}",
        fields={"proposal_id": args.proposal_id, "option": args.option},
        check=check,
    )


def run_propose(args: argparse.Namespace) -> int:
    if args.preview:  # i16view: simulate first; sign only with --submit
        out = output_of(args)
        if args.submit and out.json_mode:
            out.error(
                InvalidArgument.code, "--submit: with --output json run the preview and the proposal apart"
            )
            return EXIT_FAILED
        try:
            value = parse_param_value(args.param, args.value)
        except (NodeError, ProtocolError) as exc:
            return report(out, exc)
        change = (args.param, value, f"{args.param} {format_param_value(args.param, str(value))}")

        async def known(rpc: NodeRpc) -> Change:
            return change

        code = run_preview(args, out, known)
        if code != EXIT_OK or not args.submit:
            return code
    elif getattr(args, "submit", False):
        output_of(args).error(InvalidArgument.code, "--submit goes with --preview")
        return EXIT_FAILED
    return run_tx_command(args, _propose_plan)


# --------------------------------------------------------------------------------------------
# list, show
# --------------------------------------------------------------------------------------------


def _tally(proposal: Mapping[str, Any]) -> str:
    tally = proposal.get("tally")
    if not isinstance(tally, Mapping):
        return "-"
    return " / ".join(f"{option} {dct(tally.get(option))}" for option in VOTE_OPTIONS)


def render_proposal(console: Console, proposal: Mapping[str, Any]) -> None:
    param = str(proposal.get("param"))
    console.print(
        key_values(
            [
                ("proposal", proposal.get("id")),
                ("param", param),
                ("value", format_param_value(param, proposal.get("value"))),
                ("status", proposal.get("status")),
                ("proposer", proposal.get("proposer")),
                ("deposit", dct(proposal.get("deposit"))),
                ("voting ends", f"height {proposal.get('end_height')}"),
                ("tally", _tally(proposal)),
            ]
        )
    )


def run_list(args: argparse.Namespace) -> int:
    out = output_of(args)

    async def body(rpc: NodeRpc) -> int:
        proposals = answer_list(await rpc.call("gov_proposals"), "gov_proposals")
        for proposal in proposals:
            answer_amount(answer_object(proposal, "gov_proposals"), "deposit", "gov_proposals")

        def render(console: Console) -> None:
            if not proposals:
                console.print("no proposals")
                return
            rows = [
                (
                    proposal.get("id"),
                    proposal.get("param"),
                    format_param_value(str(proposal.get("param")), proposal.get("value")),
                    proposal.get("status"),
                    proposal.get("end_height"),
                    dct(proposal.get("deposit")),
                    _tally(proposal),
                )
                for proposal in proposals
            ]
            console.print(table(("ID", "PARAM", "VALUE", "STATUS", "ENDS", "DEPOSIT", "TALLY"), rows))

        out.result(proposals, render)
        return EXIT_OK

    return run_node_command(args, out, body)


def run_show(args: argparse.Namespace) -> int:
    out = output_of(args)
    if args.preview:  # i16view: what the open proposal would do

        async def proposed(rpc: NodeRpc) -> Change:
            proposal = answer_object(await rpc.call("gov_get", id=args.proposal_id), "gov_get")
            param, value = (
                answer_str(proposal, "param", "gov_get"),
                answer_amount(proposal, "value", "gov_get"),
            )
            return param, value, f"{param} {format_param_value(param, str(value))}"

        return run_preview(args, out, proposed)

    async def body(rpc: NodeRpc) -> int:
        proposal = answer_object(await rpc.call("gov_get", id=args.proposal_id), "gov_get")
        out.result(dict(proposal), lambda console: render_proposal(console, proposal))
        return EXIT_OK

    return run_node_command(args, out, body)
