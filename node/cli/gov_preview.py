"""`dcent gov propose PARAM VALUE --preview` and `dcent gov show ID --preview`: what a parameter
change would do, simulated from the chain's current state, before anyone signs or votes.

The command reads the chain's economic totals and parameters over RPC (``economics_params``,
``chain_head``, ``validator_list``), fits the scenario (the baseline unless ``--scenario``) to the
chain's size (:func:`protocol.econsim.preview.chain_scenario`), and runs the simulator twice from
that state with the same agents and seed: with the parameters in force and with the change. It
prints both side by side (supply, issuance, burn, inflation and bonded ratio at the end, the price
of a GPU-hour, providers, the first deflating day) and writes both series as CSV and as charts
that draw the two on the same axes (``--preview-out``).

Nothing is signed by a preview. ``propose --preview --submit`` goes on to sign and submit the
proposal once the preview is shown (text output only: JSON output carries one document, so the
preview and the submission are then two commands). The simulation runs here, in the CLI's
process, never on the node.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from node.cli.economics import load_scenario, preview_rows, write_preview
from node.wallet.connect import NodeRpc
from node.wallet.console import Output, table
from node.wallet.errors import InvalidArgument
from node.wallet.runner import EXIT_FAILED, EXIT_OK, guarded, run_node_command
from node.wallet.values import answer_amount, answer_int, answer_list, answer_object
from protocol.econsim.economy import EconomyStart
from protocol.econsim.engine import preview
from protocol.econsim.scenario import MAX_YEARS
from protocol.econview.preview import chain_scenario
from protocol.encoding import DecodeError
from protocol.ledger.params import Params

DEFAULT_YEARS = 1.0


def add_preview_args(parser: argparse.ArgumentParser, *, proposing: bool) -> None:
    group = parser.add_argument_group("preview (simulated from the chain's current state)")
    group.add_argument(
        "--preview", action="store_true", help="simulate the chain with and without the change; signs nothing"
    )
    group.add_argument(
        "--years", type=float, default=DEFAULT_YEARS, metavar="N", help="years to simulate (default 1)"
    )
    group.add_argument(
        "--scenario", type=Path, metavar="FILE", help="agent assumptions (default: the baseline)"
    )
    group.add_argument(
        "--seed", type=int, metavar="S", help="seed of the agents' randomness (default: the scenario's)"
    )
    group.add_argument(
        "--preview-out",
        type=Path,
        metavar="DIR",
        help="where the CSV and PNG files go (default: ./gov-preview-PARAM)",
    )
    if proposing:
        group.add_argument(
            "--submit", action="store_true", help="with --preview: sign and submit after showing it"
        )


@dataclass(frozen=True, slots=True)
class ChainView:
    """What the preview needs of the chain."""

    origin: EconomyStart
    validators: int


async def read_chain(rpc: NodeRpc) -> ChainView:
    """The chain's totals and parameters. Raises InvalidArgument for answers that do not fit."""
    economics = answer_object(await rpc.call("economics_params"), "economics_params")
    head = answer_object(await rpc.call("chain_head"), "chain_head")
    validators = answer_list(await rpc.call("validator_list"), "validator_list")
    raw_params = economics.get("params")
    if not isinstance(raw_params, Mapping):
        raise InvalidArgument("economics_params answered no params")
    try:
        params = Params.from_wire({str(name): int(str(value)) for name, value in raw_params.items()})
    except (DecodeError, ValueError) as exc:
        raise InvalidArgument(f"the node's parameters are not this client's: {exc}") from None
    supply = answer_amount(economics, "supply", "economics_params")
    minted = answer_amount(economics, "minted", "economics_params")
    burned = answer_amount(economics, "burned", "economics_params")
    origin = EconomyStart(
        height=answer_int(head, "height", "chain_head"),
        genesis_supply=supply - minted + burned,
        minted=minted,
        burned=burned,
        inflation=answer_amount(economics, "inflation", "economics_params"),
        bonded=answer_amount(economics, "bonded", "economics_params"),
        community_pool=answer_amount(economics, "community_pool", "economics_params"),
        provider_pool=answer_amount(economics, "provider_pool", "economics_params"),
        params=params,
    )
    return ChainView(origin, len(validators))


def _render(console: Console, document: Mapping[str, Any]) -> None:
    console.print(
        f"Preview of {document['change']} from height {document['height']}, "
        f"{document['years']:g} years simulated (seed {document['seed']}, scenario {document['scenario']}):"
    )
    rows = [(row["what"], row["as_is"], row["changed"]) for row in document["table"]]
    console.print(table(("", "AS IS", f"WITH {document['change'].upper()}"), rows))
    console.print(f"charts and series in {document['out']} (both runs on the same axes)")
    console.print("nothing was signed")


#: What a preview is of: ``(param, value, "fee_burn_share 60%")``, read from the node if need be.
Change = tuple[str, int, str]


def run_preview(
    args: argparse.Namespace, out: Output, change_of: Callable[[NodeRpc], Awaitable[Change]]
) -> int:
    """Read the chain (and the change, e.g. an open proposal), then simulate it with and
    without the change; print and write both. Exit status 0, or 1 with ``error <code>: ...``."""
    if not 0 < args.years <= MAX_YEARS:
        out.error(InvalidArgument.code, f"--years: {args.years} is outside (0, {MAX_YEARS}]")
        return EXIT_FAILED
    if args.seed is not None and not 0 <= args.seed < 2**64:
        out.error(InvalidArgument.code, "--seed: a whole number in [0, 2^64)")
        return EXIT_FAILED
    read: list[tuple[ChainView, Change]] = []

    async def body(rpc: NodeRpc) -> int:
        read.append((await read_chain(rpc), await change_of(rpc)))
        return EXIT_OK

    code = run_node_command(args, out, body)
    if code != EXIT_OK:
        return code
    view, change = read[0]
    return guarded(out, lambda: _simulate(args, out, view, change))


def _simulate(args: argparse.Namespace, out: Output, view: ChainView, change: Change) -> int:
    param, value, label = change
    try:
        base = load_scenario(args.scenario, [])
    except OSError as exc:
        raise InvalidArgument(f"--scenario: cannot read {args.scenario}: {exc.strerror}") from None
    scenario = chain_scenario(base, view.origin, view.validators)
    result = preview(view.origin, scenario, param, value, years=args.years, seed=args.seed)
    out_dir = args.preview_out or Path(f"gov-preview-{param}")
    try:
        written = write_preview(out_dir, result, changed_label=label)
    except OSError as exc:
        raise InvalidArgument(f"--preview-out: cannot write to {out_dir}: {exc.strerror or exc}") from None
    document = {
        "param": param,
        "value": str(value),
        "change": label,
        "height": view.origin.height,
        "years": args.years,
        "seed": result.base.seed,
        "scenario": scenario.name,
        "table": [
            {"what": what, "as_is": before, "changed": after} for what, before, after in preview_rows(result)
        ],
        "out": str(out_dir),
        "files": [str(path) for path in written],
        "signed": False,
    }
    out.result(document, lambda console: _render(console, document))
    return EXIT_OK
