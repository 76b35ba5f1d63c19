"""`dcent economics status | history | plot`: the token economy as a running node recorded it.

    dcent economics status [--window N]                   supply, inflation, staking yield, ...
    dcent economics history [--from H] [--to H] [--format csv|json] [--out FILE]
    dcent economics plot --out DIR [--from H] [--to H]    PNG charts of the history

Everything is read over the node's JSON-RPC (``economics_status``, ``economics_history``), which
answers exact base units and 10^18-scaled ratios; these commands print DCT and percentages:
amounts as exact decimal DCT (``"1000.5"``, never rounded), ratios as percentages to four places.
In JSON (``--output json`` for status, ``--format json`` for history) the keys say the unit:
``*_dct`` and ``*_pct``.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from rich.console import Console

from node.cli.report import FILE_ACCESS, report_error
from node.wallet.cliargs import Subparsers, add_common_args, add_node_args
from node.wallet.connect import NodeRpc
from node.wallet.console import key_values
from node.wallet.errors import InvalidArgument
from node.wallet.runner import EXIT_FAILED, EXIT_OK, output_of, run_node_command
from node.wallet.values import answer_list, answer_object
from protocol.units import DCT, DEC

#: Heights per ``economics_history`` call (the node's own cap is larger).
PAGE = 2_000
#: Blocks ``plot`` draws when no range is given: the most recent ones.
DEFAULT_PLOT_BLOCKS = 10_000


def dct_text(base_units: object) -> str:
    """A node's base-unit amount (decimal string or int) as exact decimal DCT: ``"1000.5"``.
    Raises InvalidArgument for anything but a whole number (a node answering nonsense)."""
    value = _whole(base_units)
    sign = "-" if value < 0 else ""
    whole, frac = divmod(abs(value), DCT)
    frac_text = f"{frac:09d}".rstrip("0")
    return f"{sign}{whole}{'.' + frac_text if frac_text else ''}"


def pct_text(ratio: object) -> str:
    """A 10^18-scaled ratio as a percentage with four places, truncated: ``"13.0000"``."""
    value = _whole(ratio)
    scaled = value * 100 * 10_000 // DEC  # ten-thousandths of a percent
    sign = "-" if scaled < 0 else ""
    whole, frac = divmod(abs(scaled), 10_000)
    return f"{sign}{whole}.{frac:04d}"


def _whole(value: object) -> int:
    if type(value) is int:
        return value
    if isinstance(value, str) and value.lstrip("-").isdigit() and value.isascii():
        return int(value)
    raise InvalidArgument(f"the node answered {value!r} where a whole number belongs")


def _optional(value: object, convert: Callable[[object], str]) -> str | None:
    return None if value is None else convert(value)


# --------------------------------------------------------------------------------------------
# status
# --------------------------------------------------------------------------------------------

_STATUS_AMOUNTS = (
    "genesis_supply",
    "supply",
    "minted",
    "burned",
    "annual_issuance",
    "bonded",
    "unbonding",
    "escrowed",
    "deposits",
    "community_pool",
    "provider_pool",
    "window_issued",
    "window_burned",
    "window_fees",
    "window_paid",
)
_STATUS_RATIOS = (
    "inflation",
    "inflation_min",
    "inflation_max",
    "bonded_ratio",
    "goal_bonded",
    "fee_burn_share",
    "protocol_fee_share",
    "staking_apr",
)


def status_document(answer: Mapping[str, Any]) -> dict[str, object]:
    """The node's ``economics_status`` answer in DCT and percent (``--output json``)."""
    doc: dict[str, object] = {
        "height": answer.get("height"),
        "window_blocks": answer.get("window_blocks"),
        "window_gpu_seconds": answer.get("window_gpu_seconds"),
    }
    for name in _STATUS_AMOUNTS:
        doc[f"{name}_dct"] = dct_text(answer.get(name))
    for name in _STATUS_RATIOS:
        doc[f"{name}_pct"] = pct_text(answer.get(name))
    supply, genesis = _whole(answer.get("supply")), _whole(answer.get("genesis_supply"))
    doc["net_issued_dct"] = dct_text(supply - genesis)
    doc["price_per_gpu_hour_dct"] = _optional(answer.get("price_per_gpu_hour"), dct_text)
    doc["provider_earnings_per_gpu_hour_dct"] = _optional(
        answer.get("provider_earnings_per_gpu_hour"), dct_text
    )
    return doc


def render_status(console: Console, doc: Mapping[str, Any]) -> None:
    window = doc["window_blocks"]
    deflating = doc["net_issued_dct"].startswith("-")
    pairs: list[tuple[str, object]] = [
        ("height", doc["height"]),
        ("supply", f"{doc['supply_dct']} DCT (genesis {doc['genesis_supply_dct']} DCT)"),
        ("minted", f"{doc['minted_dct']} DCT"),
        ("burned", f"{doc['burned_dct']} DCT"),
        ("net since genesis", f"{doc['net_issued_dct']} DCT{' (deflation)' if deflating else ''}"),
        (
            "inflation",
            f"{doc['inflation_pct']}% a year (bounds {doc['inflation_min_pct']}% to {doc['inflation_max_pct']}%),"
            f" {doc['annual_issuance_dct']} DCT a year at this rate",
        ),
        (
            "bonded",
            f"{doc['bonded_dct']} DCT = {doc['bonded_ratio_pct']}% of supply (goal {doc['goal_bonded_pct']}%)",
        ),
        ("staking APR", f"{doc['staking_apr_pct']}% (issuance and fees to validators, per bonded DCT)"),
        ("unbonding", f"{doc['unbonding_dct']} DCT"),
        ("escrowed", f"{doc['escrowed_dct']} DCT"),
        ("gov deposits", f"{doc['deposits_dct']} DCT"),
        ("community pool", f"{doc['community_pool_dct']} DCT"),
        (
            "provider pool",
            f"{doc['provider_pool_dct']} DCT (paid each epoch by the protocol fees providers burned)",
        ),
        (
            f"last {window} blocks",
            f"issued {doc['window_issued_dct']} DCT, burned {doc['window_burned_dct']} DCT",
        ),
        ("fees", f"{doc['window_fees_dct']} DCT, {doc['fee_burn_share_pct']}% burned"),
        ("GPU-seconds settled", f"{doc['window_gpu_seconds']} for {doc['window_paid_dct']} DCT"),
    ]
    price, earnings = doc["price_per_gpu_hour_dct"], doc["provider_earnings_per_gpu_hour_dct"]
    if price is None:
        pairs.append(("price per GPU-hour", f"no work settled in the last {window} blocks"))
    else:
        pairs.append(("price per GPU-hour", f"{price} DCT paid by requesters"))
        pairs.append(
            (
                "provider earnings",
                f"{earnings} DCT per GPU-hour (pay less the {doc['protocol_fee_share_pct']}% protocol fee,"
                " plus the provider-pool rewards paid)",
            )
        )
    console.print(key_values(pairs))


def run_status(args: argparse.Namespace) -> int:
    out = output_of(args)

    async def body(rpc: NodeRpc) -> int:
        answer = answer_object(await rpc.call("economics_status", window=args.window), "economics_status")
        doc = status_document(answer)
        out.result(doc, lambda console: render_status(console, doc))
        return EXIT_OK

    return run_node_command(args, out, body)


# --------------------------------------------------------------------------------------------
# history
# --------------------------------------------------------------------------------------------

#: Columns of the history, in order: (column, the record's field, converter).
HISTORY_COLUMNS: tuple[tuple[str, str, Callable[[object], object]], ...] = (
    ("height", "height", _whole),
    ("time_ms", "time_ms", _whole),
    ("txs", "txs", _whole),
    ("supply_dct", "supply", dct_text),
    ("minted_dct", "minted", dct_text),
    ("burned_dct", "burned", dct_text),
    ("inflation_pct", "inflation", pct_text),
    ("bonded_dct", "bonded", dct_text),
    ("bonded_ratio_pct", "bonded_ratio", pct_text),
    ("unbonding_dct", "unbonding", dct_text),
    ("escrowed_dct", "escrowed", dct_text),
    ("deposits_dct", "deposits", dct_text),
    ("community_pool_dct", "community_pool", dct_text),
    ("provider_pool_dct", "provider_pool", dct_text),
    ("issued_dct", "issued", dct_text),
    ("burned_in_block_dct", "burned_in_block", dct_text),
    ("fees_dct", "fees", dct_text),
    ("validator_rewards_dct", "validator_rewards", dct_text),
    ("provider_rewards_dct", "provider_rewards", dct_text),
    ("gpu_seconds", "gpu_seconds", _whole),
    ("paid_dct", "paid", dct_text),
    ("settlements", "settlements", _whole),
    ("price_per_gpu_second_dct", "price_per_gpu_second", lambda value: _optional(value, dct_text)),
)


def history_row(record: Mapping[str, Any]) -> dict[str, object]:
    """One block's record (as the node answers it) in DCT and percent."""
    return {column: convert(record.get(field)) for column, field, convert in HISTORY_COLUMNS}


async def fetch_history(rpc: NodeRpc, start: int, end: int | None) -> tuple[list[Mapping[str, Any]], int]:
    """Every record from ``start`` to ``end`` (None: the head), paging; and the head then."""
    records: list[Mapping[str, Any]] = []
    head = 0
    next_height: int | None = start
    while next_height is not None:
        page = answer_object(
            await rpc.call("economics_history", from_height=next_height, to_height=end or 0, limit=PAGE),
            "economics_history",
        )
        head = int(page.get("head") or 0)
        records.extend(
            answer_object(record, "economics_history")
            for record in answer_list(page.get("records"), "records")
        )
        following = page.get("next")
        next_height = following if type(following) is int and following > next_height else None
    return records, head


def history_text(rows: list[dict[str, object]], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(rows, indent=1) + "\n"
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([column for column, _, _ in HISTORY_COLUMNS])
    for row in rows:
        writer.writerow(["" if row[column] is None else row[column] for column, _, _ in HISTORY_COLUMNS])
    return buffer.getvalue()


def _range(args: argparse.Namespace) -> tuple[int, int | None]:
    start = 1 if args.start is None else args.start
    if start < 1:
        raise InvalidArgument("--from: heights start at 1")
    if args.end is not None and args.end < start:
        raise InvalidArgument(f"--to {args.end} is below --from {start}")
    return start, args.end


def run_history(args: argparse.Namespace) -> int:
    out = output_of(args)

    async def body(rpc: NodeRpc) -> int:
        start, end = _range(args)
        records, _ = await fetch_history(rpc, start, end)
        text = history_text([history_row(record) for record in records], args.format)
        if args.out is None:
            sys.stdout.write(text)
            return EXIT_OK
        try:
            Path(args.out).write_text(text, encoding="utf-8", newline="")
        except OSError as exc:
            report_error(f"cannot write {args.out}: {exc.strerror or exc}", FILE_ACCESS)
            return EXIT_FAILED
        out.note(f"wrote {len(records)} blocks to {args.out}")
        return EXIT_OK

    return run_node_command(args, out, body)


# --------------------------------------------------------------------------------------------
# plot
# --------------------------------------------------------------------------------------------


def run_plot(args: argparse.Namespace) -> int:
    out = output_of(args)

    async def body(rpc: NodeRpc) -> int:
        start, end = _range(args) if args.start is not None else (0, args.end)
        if args.start is None:
            head = int(answer_object(await rpc.call("chain_head"), "chain_head").get("height") or 0)
            last = head if end is None else min(end, head)
            start = max(1, last - DEFAULT_PLOT_BLOCKS + 1)
        records, _ = await fetch_history(rpc, start, end)
        rows = [history_row(record) for record in records]
        from node.cli.economics_history_plots import write_history_charts  # matplotlib when needed

        try:
            Path(args.out).mkdir(parents=True, exist_ok=True)
            written = write_history_charts(Path(args.out), rows)
        except OSError as exc:
            report_error(f"cannot write to {args.out}: {exc.strerror or exc}", FILE_ACCESS)
            return EXIT_FAILED
        doc = {"blocks": len(rows), "files": [str(path) for path in written]}
        out.result(
            doc,
            lambda console: console.print(f"{len(rows)} blocks; wrote {len(written)} charts to {args.out}"),
        )
        return EXIT_OK

    return run_node_command(args, out, body)


# --------------------------------------------------------------------------------------------
# registration
# --------------------------------------------------------------------------------------------


def _add_range(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="start", type=int, metavar="H", help="first block (default: 1)")
    parser.add_argument("--to", dest="end", type=int, metavar="H", help="last block (default: the head)")


def add_status(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "status",
        help="supply, inflation, bonded ratio, pools, staking APR, provider earnings (a running node)",
        description="The token economy now, as the node's ledger holds it, with rates over recent blocks.",
    )
    parser.add_argument(
        "--window",
        type=int,
        default=1_000,
        metavar="N",
        help="recent blocks for fees and work (default 1000)",
    )
    add_node_args(parser)
    add_common_args(parser)
    parser.set_defaults(func=run_status)


def add_history(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "history",
        help="per-block series from the node's store (CSV or JSON)",
        description="Supply, minted, burned, bonded, pools, fees, GPU-seconds settled and the price "
        "paid per GPU-second, block by block, as the node recorded them at commit.",
    )
    _add_range(parser)
    parser.add_argument("--format", choices=("csv", "json"), default="csv", help="csv (default) or json")
    parser.add_argument("--out", metavar="FILE", help="write to FILE instead of stdout")
    add_node_args(parser)
    add_common_args(parser)
    parser.set_defaults(func=run_history)


def add_plot(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "plot",
        help="PNG charts of the node's recorded history",
        description=f"Charts of the per-block history (default: the last {DEFAULT_PLOT_BLOCKS} blocks).",
    )
    _add_range(parser)
    parser.add_argument("--out", required=True, metavar="DIR", help="directory for the PNG files")
    add_node_args(parser)
    add_common_args(parser)
    parser.set_defaults(func=run_plot)
