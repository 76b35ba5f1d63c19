"""`dcent market offers | stats`: the compute market as the node sees it, from the capacity
announcements it holds (RPC ``market_offers``, ``market_stats``).

    dcent market offers [--gpus N] [--min-memory "40 GiB"] [--model "*H100*"] [--min-cc 8.0]
                        [--min-cuda 12.1] [--executor NAME] [--max-price AMOUNT] [--spec FILE]
                        [--sort price|stake|free|memory|age] [--limit N] [--source all|gossip|standing]
    dcent market stats [--window N]
    dcent market standing post|list|take|withdraw ...   (node/cli/market_standing.py)

``offers`` lists the providers whose current offer could take a job asking for those resources
(the matcher's own rules: enough free units meeting them, the executor, the price); ``--spec``
takes them from a job spec file instead, its maximum price included. Prices are shown per GPU-hour
and per GPU-second in DCT, stakes in DCT (the ledger's figure), ages in seconds. ``stats`` sums
the offers up (units, free units, offered prices by GPU model) and the work settled on chain over
the last ``--window`` blocks.

Beside the gossiped offers, ``offers`` lists the ledger's **standing offers** (``"source":
"standing"``, ``"guaranteed": true`` in JSON, after the gossiped ones): GPUs whose provider must
sell at the posted price (``dcent market standing take``), filtered by GPU count, model and price.
``--source`` picks one kind.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.console import Console

from node.cli.economics_node import dct_text
from node.cli.market_standing import fetch_standing, register_standing, render_standing, standing_for_query
from node.wallet.cliargs import Subparsers, add_command_group, add_common_args, add_node_args
from node.wallet.connect import NodeRpc
from node.wallet.console import key_values, table
from node.wallet.errors import InvalidArgument
from node.wallet.runner import EXIT_OK, guarded, output_of, run_node_command
from node.wallet.values import answer_list, answer_object, parse_amount_arg
from protocol.econview.market import SORT_KEYS
from protocol.hardware import format_cuda_version
from protocol.market.jobspec import JobSpec, format_of

SECONDS_PER_HOUR = 3600


def register(subparsers: Subparsers) -> None:
    commands = add_command_group(
        subparsers,
        "market",
        help_text="browse the compute market: offers and capacity",
        description="The providers' offers this node holds, and the network's capacity and prices.",
    )

    offers = commands.add_parser("offers", help="current offers, filtered like a job's resources, sorted")
    offers.add_argument("--gpus", type=int, default=1, metavar="N", help="free units wanted (default 1)")
    offers.add_argument("--min-memory", default="", metavar="SIZE", help='memory per unit, "40 GiB"')
    offers.add_argument("--model", default="", metavar="PATTERN", help='GPU name pattern, "*H100*"')
    offers.add_argument("--min-cc", default="", metavar="X.Y", help='compute capability, "8.0"')
    offers.add_argument("--min-cuda", default="", metavar="X.Y", help='CUDA version, "12.1"')
    offers.add_argument("--executor", default="", metavar="NAME", help="bubblewrap, docker, podman, ...")
    offers.add_argument("--max-price", metavar="AMOUNT", help='most per GPU-second, "0.002 DCT"')
    offers.add_argument("--spec", type=Path, metavar="FILE", help="take resources and price from a job spec")
    offers.add_argument("--sort", choices=SORT_KEYS, default="price", help="order (default: price)")
    offers.add_argument("--limit", type=int, default=100, metavar="N", help="most offers shown (default 100)")
    offers.add_argument(
        "--source",
        choices=("all", "gossip", "standing"),
        default="all",
        help="gossiped offers, the ledger's standing offers (guaranteed prices), or both (default)",
    )
    add_node_args(offers)
    add_common_args(offers)
    offers.set_defaults(func=run_offers)

    stats = commands.add_parser("stats", help="capacity, free units and prices; work settled recently")
    stats.add_argument("--window", type=int, default=1_000, metavar="N", help="recent blocks (default 1000)")
    add_node_args(stats)
    add_common_args(stats)
    stats.set_defaults(func=run_stats)
    register_standing(commands)


def offer_query(args: argparse.Namespace) -> dict[str, object]:
    """The ``market_offers`` params from the flags or a job spec. Raises InvalidArgument and the
    spec's JobSpecError."""
    query: dict[str, object] = {"sort": args.sort, "limit": args.limit}
    if args.spec is not None:
        try:
            text = args.spec.read_text(encoding="utf-8")
        except OSError as exc:
            raise InvalidArgument(f"--spec: cannot read {args.spec}: {exc.strerror}") from None
        spec = JobSpec.from_text(text, format_of(args.spec.name))
        resources = spec.resources
        major, minor = resources.min_compute_capability
        cuda = resources.min_cuda_version
        return query | {
            "gpu_count": resources.gpu_count,
            "min_memory": str(resources.min_memory_bytes),
            "model": resources.model_pattern,
            "min_compute_capability": f"{major}.{minor}" if (major, minor) != (0, 0) else "",
            "min_cuda": format_cuda_version(cuda),
            "max_price": spec.max_price_per_gpu_second,
        }
    max_price = 0 if args.max_price is None else parse_amount_arg(args.max_price, "--max-price")
    return query | {
        "gpu_count": args.gpus,
        "min_memory": args.min_memory,
        "model": args.model,
        "min_compute_capability": args.min_cc,
        "min_cuda": args.min_cuda,
        "executor": args.executor,
        "max_price": max_price,
    }


def _per_hour(per_second: object) -> str:
    return dct_text(int(str(per_second)) * SECONDS_PER_HOUR)


def _memory(value: object) -> str:
    size = int(str(value))
    return "?" if size < 0 else f"{size / 2**30:.0f} GiB"


def offer_document(offer: Mapping[str, Any]) -> dict[str, object]:
    """One offer for people and scripts: the node's fields plus DCT and per-hour figures."""
    return {
        **offer,
        "source": "gossip",
        "guaranteed": False,
        "price_per_gpu_second_dct": dct_text(offer.get("price_per_gpu_second")),
        "price_per_gpu_hour_dct": _per_hour(offer.get("price_per_gpu_second")),
        "collateral_dct": dct_text(offer.get("collateral")),
        "stake_dct": dct_text(offer.get("stake")),
        "age_s": int(str(offer.get("age_ms"))) // 1000,
    }


def _render_offers(console: Console, offers: list[dict[str, Any]]) -> None:
    if not offers:
        console.print("no current offer meets these resources")
        return
    rows = [
        (
            offer["provider"],
            f"{offer['free_gpus']}/{offer['gpus']}",
            ", ".join(offer["models"]) + (" (simulated)" if offer["simulated"] else ""),
            _memory(offer["memory_bytes"]),
            offer["compute_capability"] or "?",
            format_cuda_version(int(offer["cuda_version"])) or "?",
            offer["price_per_gpu_hour_dct"]
            + (f" ({offer['quoted_price']} {offer['quote']}/GPU-s)" if offer.get("quoted_price") else ""),
            offer["collateral_dct"],
            offer["stake_dct"],
            ",".join(offer["executors"]),
            f"{offer['age_s']}s",
        )
        for offer in offers
    ]
    columns = (
        "PROVIDER",
        "FREE",
        "GPU",
        "MEMORY",
        "CC",
        "CUDA",
        "DCT/GPU-H",
        "COLLATERAL",
        "STAKE",
        "EXEC",
        "AGE",
    )
    console.print(table(columns, rows))


def run_offers(args: argparse.Namespace) -> int:
    out = output_of(args)

    def action() -> int:
        query = offer_query(args)

        async def body(rpc: NodeRpc) -> int:
            offers: list[dict[str, Any]] = []
            standing: list[dict[str, Any]] = []
            if args.source != "standing":
                answer = answer_list(await rpc.call("market_offers", **query), "market_offers")
                offers = [offer_document(answer_object(offer, "market_offers")) for offer in answer]
            if args.source != "gossip":
                standing = standing_for_query(await fetch_standing(rpc), query)[: args.limit]

            def render(console: Console) -> None:
                if args.source != "standing":
                    _render_offers(console, offers)
                if args.source != "gossip":
                    render_standing(console, standing, title="standing offers (guaranteed prices):")

            out.result(offers + standing, render)
            return EXIT_OK

        return run_node_command(args, out, body)

    return guarded(out, action)


def _prices(stats: object) -> str:
    if not isinstance(stats, Mapping):
        return "-"
    return (
        f"{_per_hour(stats['min'])} / {_per_hour(stats['median'])} / {_per_hour(stats['max'])} DCT per GPU-hour"
        f" over {stats['units']} units"
    )


def _render_stats(console: Console, doc: Mapping[str, Any]) -> None:
    recent = doc["recent"]
    price = recent["price_per_gpu_second"]
    console.print(
        key_values(
            [
                ("providers", doc["providers"]),
                ("GPUs", f"{doc['gpus']} ({doc['free_gpus']} free, {doc['simulated_gpus']} simulated)"),
                ("offered (min/median/max)", _prices(doc["offered_prices"])),
                ("free units (min/median/max)", _prices(doc["free_prices"])),
                (
                    f"settled, last {recent['blocks']} blocks",
                    f"{recent['settlements']} contracts, {recent['gpu_seconds']} GPU-seconds, "
                    f"{dct_text(recent['paid'])} DCT"
                    + ("" if price is None else f", {_per_hour(price)} DCT per GPU-hour on average"),
                ),
            ]
        )
    )
    if doc["by_model"]:
        rows = [
            (model["model"], model["providers"], model["gpus"], model["free_gpus"], _prices(model["prices"]))
            for model in doc["by_model"]
        ]
        console.print(table(("MODEL", "PROVIDERS", "GPUS", "FREE", "PRICE (MIN/MEDIAN/MAX)"), rows))


def run_stats(args: argparse.Namespace) -> int:
    out = output_of(args)

    async def body(rpc: NodeRpc) -> int:
        doc = dict(answer_object(await rpc.call("market_stats", window=args.window), "market_stats"))
        out.result(doc, lambda console: _render_stats(console, doc))
        return EXIT_OK

    return run_node_command(args, out, body)
