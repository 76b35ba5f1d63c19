"""`dcent offer ...`: standing offers, availability challenges and guaranteed-price takes.

    dcent offer stand --gpus N --model M --price AMOUNT [--quote SYMBOL] --period BLOCKS --collateral AMOUNT
    dcent offer list | show OFFER
    dcent offer challenge OFFER | answer OFFER | miss OFFER
    dcent offer take OFFER --gpus N --seconds S [--max-price AMOUNT | --slippage 1%] | accept OFFER | refused OFFER
    dcent offer withdraw OFFER

(``dcent market standing post|withdraw|list|take`` are the same commands, from the market's side.)

``stand`` names the node at ``--rpc``/``--home`` as the one that answers challenges (its key, from
``offer_nodeKey``); ``answer`` asks that node to sign the open challenge's seed (``offer_answer``)
and submits the answer from the wallet. The wallet signs every transaction; the node's key never
leaves the node. ``--price`` is per GPU-second, written like any amount; with ``--quote TUSD`` it
is in that registered asset ("0.00002 TUSD"), and each take fixes the DCT it pays from the DCT/TUSD
pool's time-weighted price. ``take`` then sends a limit on that DCT price: ``--max-price``, or the
node's current figure plus ``--slippage`` (default 1%).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from typing import Any

from rich.console import Console

from node.wallet.cliargs import Subparsers, add_command_group, add_common_args, add_node_args
from node.wallet.connect import NodeRpc
from node.wallet.console import dct, key_values, table
from node.wallet.errors import BadNodeAnswer, InvalidArgument
from node.wallet.runner import EXIT_OK, output_of, run_node_command
from node.wallet.txbuilder import Prepared
from node.wallet.txcommand import TxPlan, as_tx_command
from node.wallet.values import (
    AMOUNT_HELP,
    answer_amount,
    answer_list,
    answer_object,
    parse_amount_arg,
    parse_ratio,
)
from protocol.ledger.errors import MalformedTx
from protocol.ledger.tx import (
    Msg,
    OfferAccept,
    OfferAnswer,
    OfferChallenge,
    OfferMiss,
    OfferRefused,
    OfferStand,
    OfferTake,
    OfferWithdraw,
)
from protocol.units import DEC, MAX_AMOUNT


def register(subparsers: Subparsers) -> None:
    commands = add_command_group(
        subparsers, "offer", help_text="standing offers: post, challenge, take, withdraw"
    )

    stand = commands.add_parser("stand", help="post a standing offer served by the node at --rpc/--home")
    add_stand_args(stand)

    simple: list[tuple[str, str, Callable[[bytes], Msg]]] = [
        (
            "challenge",
            "ask the offer's node to prove it is there (pays the challenge deposit)",
            OfferChallenge,
        ),
        ("miss", "record an unanswered challenge after its window (a bounty for the challenger)", OfferMiss),
        ("accept", "accept the pending take of your offer (it becomes an escrow)", OfferAccept),
        ("refused", "record that the provider let your take's window pass (refund and slash)", OfferRefused),
        ("withdraw", "take back your collateral once the offer's period is over", OfferWithdraw),
    ]
    parsers = [stand]
    for name, text, make in simple:
        command = commands.add_parser(name, help=text)
        command.add_argument("offer", metavar="OFFER", help="the offer's id (hex)")
        as_tx_command(command, _ref_plan(name, make))
        parsers.append(command)

    answer = commands.add_parser("answer", help="answer a challenge: the node signs, the wallet submits")
    answer.add_argument("offer", metavar="OFFER", help="the offer's id (hex)")
    as_tx_command(answer, _answer_plan)

    take = commands.add_parser("take", help="buy a standing offer's GPUs at its price")
    add_take_args(take)

    listing = commands.add_parser("list", help="every standing offer")
    add_node_args(listing)
    listing.set_defaults(func=run_list)
    show = commands.add_parser("show", help="one standing offer")
    show.add_argument("offer", metavar="OFFER")
    add_node_args(show)
    show.set_defaults(func=run_show)
    for command in (*parsers, answer, take, listing, show):
        add_common_args(command)


def add_stand_args(stand: argparse.ArgumentParser) -> None:
    stand.add_argument("--gpus", type=int, required=True, help="how many GPUs stand")
    stand.add_argument("--model", required=True, help="the GPU model, as the market names it")
    stand.add_argument("--price", required=True, help=f"per GPU-second: {AMOUNT_HELP}, or in --quote's unit")
    stand.add_argument(
        "--quote",
        default="DCT",
        metavar="SYMBOL",
        help="the unit of --price: DCT (default) or a registered asset (a stable unit)",
    )
    stand.add_argument("--period", type=int, required=True, help="blocks the offer stands")
    stand.add_argument("--collateral", required=True, help=f"bonded for the offer: {AMOUNT_HELP}")
    as_tx_command(stand, _stand_plan)


def add_take_args(take: argparse.ArgumentParser) -> None:
    take.add_argument("offer", metavar="OFFER", help="the offer's id (hex)")
    take.add_argument("--gpus", type=int, required=True)
    take.add_argument("--seconds", type=int, required=True, help="GPU-seconds per GPU")
    limit = take.add_mutually_exclusive_group()
    limit.add_argument("--max-price", metavar="AMOUNT", help="most DCT per GPU-second the take may fix")
    limit.add_argument(
        "--slippage",
        default="1%",
        help="for an offer quoted in an asset: how far above the node's current DCT price the take "
        "may fix (default: %(default)s)",
    )
    as_tx_command(take, _take_plan)


def ref_plan(name: str, make: Callable[[bytes], Msg]) -> Callable[[argparse.Namespace], TxPlan]:
    return _ref_plan(name, make)


def _quote_of(text: str) -> str:
    symbol = text.strip().upper()
    if symbol == "DCT":
        return ""
    try:
        OfferStand(bytes(32), "x", 1, 1, 1, 1, symbol)
    except MalformedTx:
        raise InvalidArgument(
            "--quote: DCT or a registered asset's symbol (2-10 capitals and digits)"
        ) from None
    return symbol


def _quoted_price(text: str, quote: str) -> int:
    cleaned = text.strip()
    if quote and cleaned.upper().endswith(quote):
        cleaned = cleaned[: -len(quote)].strip()
    elif quote and cleaned.upper().endswith("DCT"):
        raise InvalidArgument(f"--price: the offer is quoted in {quote}; write the price in {quote}")
    return parse_amount_arg(cleaned, "--price")


def quoted_text(amount: object, quote: object) -> str:
    """A price in its quote unit for people: ``"0.00002 TUSD"``."""
    text = dct(amount)
    if quote in (None, "", "DCT"):
        return text
    return text.replace(" DCT", f" {quote}")


def _offer_id(text: str) -> bytes:
    try:
        raw = bytes.fromhex(text.removeprefix("0x"))
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise InvalidArgument("OFFER: the offer's id, 64 hex digits")
    return raw


def _stand_plan(args: argparse.Namespace) -> TxPlan:
    quote = _quote_of(args.quote)
    price = _quoted_price(args.price, quote)
    collateral = parse_amount_arg(args.collateral, "--collateral")
    placeholder = OfferStand(bytes(32), args.model, args.gpus, price, args.period, collateral, quote)
    fields: dict[str, object] = {
        "gpus": args.gpus,
        "model": args.model,
        "price": str(price),
        "quote": quote or "DCT",
    }

    async def build(rpc: NodeRpc, prepared: Prepared) -> Msg:
        answer = answer_object(await rpc.call("offer_nodeKey"), "offer_nodeKey")
        try:
            node_key = bytes.fromhex(str(answer.get("node_key")))
        except ValueError:
            node_key = b""
        if len(node_key) != 32:
            raise BadNodeAnswer("offer_nodeKey.node_key: expected 32 bytes of hex")
        fields["node_key"] = node_key.hex()
        return OfferStand(node_key, args.model, args.gpus, price, args.period, collateral, quote)

    async def after(rpc: NodeRpc, outcome: Any) -> dict[str, object]:
        return {"offer": outcome.hash}

    return TxPlan(
        placeholder,
        f"standing offer of {args.gpus} x {args.model} at {quoted_text(price, quote)} per GPU-second "
        f"for {args.period} blocks",
        spend=collateral,
        fields=fields,
        build=build,
        after=after,
    )


def _ref_plan(name: str, make: Callable[[bytes], Msg]) -> Callable[[argparse.Namespace], TxPlan]:
    def plan(args: argparse.Namespace) -> TxPlan:
        offer = _offer_id(args.offer)
        return TxPlan(make(offer), f"{name} of offer {offer.hex()[:16]}", fields={"offer": offer.hex()})

    return plan


def _answer_plan(args: argparse.Namespace) -> TxPlan:
    offer = _offer_id(args.offer)

    async def build(rpc: NodeRpc, prepared: Prepared) -> Msg:
        answer = answer_object(await rpc.call("offer_answer", offer=offer.hex()), "offer_answer")
        try:
            signature = bytes.fromhex(str(answer.get("signature")))
        except ValueError:
            signature = b""
        if len(signature) != 64:
            raise BadNodeAnswer("offer_answer.signature: expected 64 bytes of hex")
        return OfferAnswer(offer, signature)

    return TxPlan(
        OfferAnswer(offer, bytes(64)),
        f"answer to the challenge of offer {offer.hex()[:16]}",
        fields={"offer": offer.hex()},
        build=build,
    )


def _take_plan(args: argparse.Namespace) -> TxPlan:
    offer = _offer_id(args.offer)
    explicit = None if args.max_price is None else parse_amount_arg(args.max_price, "--max-price")
    slippage = parse_ratio(args.slippage, "--slippage")
    fields: dict[str, object] = {"offer": offer.hex(), "gpus": args.gpus, "gpu_seconds": args.seconds}

    async def build(rpc: NodeRpc, prepared: Prepared) -> Msg:
        answer = answer_object(await rpc.call("offer_get", offer=offer.hex()), "offer_get")
        now = answer.get("price_per_gpu_second")
        if now is None:
            raise InvalidArgument(
                f"offer {offer.hex()[:16]} is quoted in {answer.get('quote')}, whose pool has no "
                "time-weighted price yet: it cannot be taken now"
            )
        price = answer_amount(answer, "price_per_gpu_second", "offer_get")
        limit = explicit if explicit is not None else min(MAX_AMOUNT, price + price * slippage // DEC)
        fields.update(price_now=str(price), max_price=str(limit))
        return OfferTake(offer, args.gpus, args.seconds, limit)

    return TxPlan(
        OfferTake(offer, args.gpus, args.seconds),
        f"take of {args.gpus} GPUs x {args.seconds} s of offer {offer.hex()[:16]}",
        fields=fields,
        build=build,
    )


def _rows(offer: Mapping[str, Any]) -> list[tuple[str, object]]:
    challenge = offer.get("challenge")
    take = offer.get("take")
    return [
        ("provider", offer.get("provider")),
        ("GPUs", f"{offer.get('gpu_count')} x {offer.get('gpu_model')}"),
        ("price per GPU-second", quoted_text(offer.get("quoted_price"), offer.get("quote"))),
        ("DCT per GPU-second now", dct(offer.get("price_per_gpu_second"))),
        ("collateral", dct(offer.get("collateral"))),
        ("stands", f"heights {offer.get('start')} to {offer.get('end')}"),
        (
            "challenge",
            "-" if not isinstance(challenge, dict) else f"open until height {challenge.get('deadline')}",
        ),
        (
            "take",
            "-"
            if not isinstance(take, dict)
            else f"{take.get('gpus')} GPUs, accept by {take.get('deadline')}",
        ),
    ]


def run_show(args: argparse.Namespace) -> int:
    out = output_of(args)
    offer = _offer_id(args.offer)

    async def body(rpc: NodeRpc) -> int:
        answer = answer_object(await rpc.call("offer_get", offer=offer.hex()), "offer_get")
        out.result(dict(answer), lambda console: console.print(key_values(_rows(answer), title=offer.hex())))
        return EXIT_OK

    return run_node_command(args, out, body)


def run_list(args: argparse.Namespace) -> int:
    out = output_of(args)

    async def body(rpc: NodeRpc) -> int:
        offers = [
            answer_object(o, "offer_all") for o in answer_list(await rpc.call("offer_all"), "offer_all")
        ]

        def render(console: Console) -> None:
            if not offers:
                console.print("no standing offers")
                return
            rows = [
                (
                    str(o.get("offer"))[:16],
                    f"{o.get('gpu_count')} x {o.get('gpu_model')}",
                    quoted_text(o.get("quoted_price"), o.get("quote")),
                    dct(o.get("price_per_gpu_second")),
                    o.get("end"),
                    "standing" if o.get("standing") else "ended",
                )
                for o in offers
            ]
            console.print(table(("OFFER", "GPUS", "PRICE/GPU-S", "DCT/GPU-S NOW", "UNTIL", "STATE"), rows))

        out.result(offers, render)
        return EXIT_OK

    return run_node_command(args, out, body)
