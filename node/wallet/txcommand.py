"""The one path every transaction command takes, from arguments to a committed transaction.

1. Locally, before anything else: parse the arguments into a :class:`TxPlan` (the message, what it
   spends) and find the signing wallet; a typo costs no password prompt and no round trip.
2. From the node: chain id, fee floor, the sender's nonce and balance; refuse what cannot apply.
3. Unlock the key (password), sign, submit the bytes, wait for the block unless ``--no-wait``.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from rich.console import Console

from node.wallet.cliargs import (
    Parser,
    add_tx_args,
    fee_of,
    nonce_of,
    signing_wallet,
    timeout_of,
    unlock_wallet,
)
from node.wallet.connect import NodeRpc
from node.wallet.console import dct, key_values
from node.wallet.runner import EXIT_OK, guarded, output_of, run_node_command
from node.wallet.txbuilder import Prepared, TxOutcome, prepare, require_balance, require_bonded, send
from protocol.ledger.tx import Msg

PlanOf = Callable[[argparse.Namespace], "TxPlan"]


@dataclass(frozen=True, slots=True)
class TxPlan:
    msg: Msg
    #: For people: "transfer of 1.5 DCT to dct1...".
    summary: str
    #: Balance spent besides the fee (checked against the sender's balance first).
    spend: int = 0
    #: Stake unbonded (checked against the sender's bonded stake first).
    unbond: int = 0
    #: Extra fields of the JSON document (amounts as base-unit strings).
    fields: dict[str, object] = field(default_factory=dict)
    #: Further checks against the node before the password is asked for.
    check: Callable[[NodeRpc, Prepared], Awaitable[None]] | None = None
    #: After the transaction: more fields for the JSON document (a proposal's id, ...), which the
    #: text output prints too.
    after: Callable[[NodeRpc, TxOutcome], Awaitable[dict[str, object]]] | None = None
    #: The message as the node's answers decide it (an "all" amount), built after ``check``.
    build: Callable[[NodeRpc, Prepared], Awaitable[Msg]] | None = None


def render_outcome(
    console: Console, outcome: TxOutcome, summary: str, extra: dict[str, object] | None = None
) -> None:
    if outcome.status == "committed":
        console.print(f"{summary}: committed at height {outcome.height}")
    else:
        console.print(f"{summary}: submitted, not waiting for a block")
    rows: list[tuple[str, object]] = [
        ("tx", outcome.hash),
        ("from", outcome.sender),
        ("nonce", outcome.nonce),
        ("fee", dct(outcome.fee)),
    ]
    rows += [(name.replace("_", " "), value) for name, value in sorted((extra or {}).items())]
    console.print(key_values(rows))


def run_tx_command(args: argparse.Namespace, plan_of: PlanOf) -> int:
    """Run one transaction command; its exit status."""
    out = output_of(args)

    def action() -> int:
        timeout_s = timeout_of(args)
        fee = fee_of(args)
        nonce = nonce_of(args)
        wallet = signing_wallet(args)
        plan = plan_of(args)

        async def body(rpc: NodeRpc) -> int:
            prepared = await prepare(rpc, wallet.address, fee=fee, nonce=nonce)
            require_balance(prepared, plan.spend, plan.msg.KIND)
            if plan.unbond:
                require_bonded(prepared, plan.unbond)
            if plan.check is not None:
                await plan.check(rpc, prepared)
            msg = await plan.build(rpc, prepared) if plan.build is not None else plan.msg
            key = await unlock_wallet(args, wallet)
            outcome = await send(rpc, key, prepared, msg, wait=args.wait, timeout_s=timeout_s)
            extra = await plan.after(rpc, outcome) if plan.after is not None else {}
            document = {**outcome.describe(), **plan.fields, **extra}
            out.result(document, lambda console: render_outcome(console, outcome, plan.summary, extra))
            return EXIT_OK

        return run_node_command(args, out, body)

    return guarded(out, action)


def as_tx_command(parser: Parser, plan_of: PlanOf) -> None:
    """Make ``parser`` a transaction command: after its own arguments, the options of every
    signing command (:func:`~node.wallet.cliargs.add_tx_args`); it runs :func:`run_tx_command`
    with ``plan_of``."""
    add_tx_args(parser)
    parser.set_defaults(func=lambda args: run_tx_command(args, plan_of))
