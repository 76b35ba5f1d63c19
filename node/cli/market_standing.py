"""Standing offers from the market's side: `dcent market standing post|withdraw|list|take`, and the
ledger's standing offers beside the gossiped ones in `dcent market offers`.

    dcent market standing post --gpus N --model M --price AMOUNT [--quote SYMBOL] --period B --collateral AMOUNT
    dcent market standing list [--gpus N] [--model PATTERN] [--max-price AMOUNT] [--all]
    dcent market standing take OFFER --gpus N --seconds S [--max-price AMOUNT | --slippage 1%]
    dcent market standing withdraw OFFER

A standing offer is on the ledger (``dcent offer ...``, the same transactions): its provider must
accept any take at the posted price within the take window or lose collateral, so its price is
**guaranteed**, unlike a gossiped offer's, which a provider may change or refuse. An offer quoted in
a registered asset (a stable unit) shows the DCT a take in the next block would fix from the pool's
time-weighted price (``-`` while the pool has none: it cannot be taken yet).

The market view lists a standing offer only for what it states: a GPU count and a model name. A
filter on what it does not state (memory, compute capability, CUDA, executor) leaves it out.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase
from typing import Any

from rich.console import Console

from node.cli import offer as offer_cli
from node.cli.economics_node import dct_text
from node.wallet.cliargs import Subparsers, add_command_group, add_common_args, add_node_args
from node.wallet.connect import NodeRpc
from node.wallet.console import table
from node.wallet.runner import EXIT_OK, guarded, output_of, run_node_command
from node.wallet.txcommand import as_tx_command
from node.wallet.values import answer_list, answer_object, parse_amount_arg
from protocol.ledger.tx import OfferWithdraw

SECONDS_PER_HOUR = 3600
#: ``market_offers`` query fields a standing offer states nothing about.
UNSTATED = ("min_memory", "min_compute_capability", "min_cuda", "executor")


def register_standing(commands: Subparsers) -> None:
    """Add ``standing`` to ``dcent market``'s commands."""
    standing = add_command_group(
        commands,
        "standing",
        help_text="standing offers on the ledger: guaranteed prices (post, list, take, withdraw)",
        description="Standing offers: GPUs a provider must sell at the posted price while the offer stands.",
    )

    post = standing.add_parser("post", help="post a standing offer served by the node at --rpc/--home")
    offer_cli.add_stand_args(post)

    listing = standing.add_parser("list", help="standing offers a job could take now, cheapest first")
    listing.add_argument("--gpus", type=int, default=1, metavar="N", help="GPUs wanted (default 1)")
    listing.add_argument("--model", default="", metavar="PATTERN", help='GPU model pattern, "*H100*"')
    listing.add_argument("--max-price", metavar="AMOUNT", help='most DCT per GPU-second, "0.002 DCT"')
    listing.add_argument("--all", action="store_true", help="every offer on the ledger, ended or taken too")
    add_node_args(listing)
    listing.set_defaults(func=run_standing_list)

    take = standing.add_parser("take", help="buy a standing offer's GPUs at its guaranteed price")
    offer_cli.add_take_args(take)

    withdraw = standing.add_parser(
        "withdraw", help="take back your collateral once the offer's period is over"
    )
    withdraw.add_argument("offer", metavar="OFFER", help="the offer's id (hex)")
    as_tx_command(withdraw, offer_cli.ref_plan("withdraw", OfferWithdraw))
    for command in (post, listing, take, withdraw):
        add_common_args(command)


# --- the view (pure: node answers in, documents out) ----------------------------------------------
def _amount(value: object) -> int | None:
    text = str(value) if value is not None else ""
    return int(text) if text.isdigit() else None


def standing_document(offer: Mapping[str, Any]) -> dict[str, object]:
    """One ``offer_all`` entry as the market view shows it, in the gossiped offers' terms where
    they mean the same (``gpus``, ``free_gpus``, ``models``, ``price_per_gpu_second``...)."""
    price = _amount(offer.get("price_per_gpu_second"))
    takeable = bool(offer.get("standing")) and offer.get("take") is None and price is not None
    return {
        "source": "standing",
        "guaranteed": True,
        "offer": offer.get("offer"),
        "provider": offer.get("provider"),
        "gpus": offer.get("gpu_count"),
        "free_gpus": offer.get("gpu_count") if takeable else 0,
        "models": [offer.get("gpu_model")],
        "quote": offer.get("quote", "DCT"),
        "quoted_price": offer.get("quoted_price"),
        "price_per_gpu_second": None if price is None else str(price),
        "price_per_gpu_second_dct": "-" if price is None else dct_text(price),
        "price_per_gpu_hour_dct": "-" if price is None else dct_text(price * SECONDS_PER_HOUR),
        "collateral": offer.get("collateral"),
        "collateral_dct": dct_text(offer.get("collateral")),
        "end": offer.get("end"),
        "standing": bool(offer.get("standing")),
        "taken": offer.get("take") is not None,
        "takeable": takeable,
    }


def select_standing(
    offers: Iterable[Mapping[str, Any]], *, gpus: int, model: str, max_price: int, everything: bool = False
) -> list[dict[str, object]]:
    """The standing offers a take of ``gpus`` GPUs of a model matching ``model`` (a case-insensitive
    glob; empty: any) at most ``max_price`` per GPU-second (0: any) could buy now, cheapest first
    (then by id); with ``everything``, every offer, ended and taken ones too, in the same order."""
    pattern = model.lower()
    chosen = []
    for offer in offers:
        doc = standing_document(offer)
        if not everything:
            price = _amount(doc["price_per_gpu_second"])
            if not doc["takeable"] or int(str(doc["gpus"])) < gpus:
                continue
            if pattern and not fnmatchcase(str(offer.get("gpu_model", "")).lower(), pattern):
                continue
            if max_price and (price is None or price > max_price):
                continue
        chosen.append(doc)

    def order(doc: dict[str, object]) -> tuple[int, int, str]:
        price = _amount(doc["price_per_gpu_second"])
        return (price is None, price or 0, str(doc["offer"]))

    return sorted(chosen, key=order)


def standing_for_query(
    offers: Iterable[Mapping[str, Any]], query: Mapping[str, object]
) -> list[dict[str, object]]:
    """The standing offers that meet a ``market_offers`` query (``dcent market offers``): none when
    it filters on something a standing offer does not state."""
    if any(str(query.get(name) or "") not in ("", "0") for name in UNSTATED):
        return []
    return select_standing(
        offers,
        gpus=int(str(query.get("gpu_count") or 1)),
        model=str(query.get("model") or ""),
        max_price=int(str(query.get("max_price") or 0)),
    )


def render_standing(console: Console, offers: list[dict[str, object]], *, title: str = "") -> None:
    if not offers:
        console.print("no standing offer meets these resources")
        return
    rows = [
        (
            str(o["offer"])[:16],
            o["provider"],
            f"{o['free_gpus']}/{o['gpus']}",
            ", ".join(str(m) for m in o["models"]),  # type: ignore[attr-defined]
            offer_cli.quoted_text(o["quoted_price"], o["quote"]),
            o["price_per_gpu_hour_dct"],
            o["collateral_dct"],
            o["end"],
        )
        for o in offers
    ]
    columns = ("OFFER", "PROVIDER", "FREE", "GPU", "PRICE/GPU-S", "DCT/GPU-H", "COLLATERAL", "UNTIL")
    if title:
        console.print(title)
    console.print(table(columns, rows))


async def fetch_standing(rpc: NodeRpc) -> list[Mapping[str, Any]]:
    return [answer_object(o, "offer_all") for o in answer_list(await rpc.call("offer_all"), "offer_all")]


def run_standing_list(args: argparse.Namespace) -> int:
    out = output_of(args)

    def action() -> int:
        max_price = 0 if args.max_price is None else parse_amount_arg(args.max_price, "--max-price")

        async def body(rpc: NodeRpc) -> int:
            offers = select_standing(
                await fetch_standing(rpc),
                gpus=args.gpus,
                model=args.model,
                max_price=max_price,
                everything=args.all,
            )
            out.result(offers, lambda console: render_standing(console, offers))
            return EXIT_OK

        return run_node_command(args, out, body)

    return guarded(out, action)
