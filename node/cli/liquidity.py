"""`dcent asset ...` and `dcent pool ...`: registered assets and the DCT/asset pools.

    dcent asset propose SYMBOL [--deposit AMOUNT]       propose an asset you issue (a governance vote)
    dcent asset mint SYMBOL TO AMOUNT                   the issuer creates some for TO
    dcent asset send DENOM TO AMOUNT                    move an asset or pool shares (lp:SYMBOL)
    dcent asset list | holdings [WALLET|ADDR]
    dcent pool add SYMBOL DCT_AMOUNT ASSET_AMOUNT [--slippage 1%]
    dcent pool remove SYMBOL SHARES|all [--slippage 1%]
    dcent pool swap SYMBOL --sell DCT|SYMBOL AMOUNT [--slippage 1%] [--deadline-blocks 20]
    dcent pool show SYMBOL | list
    dcent mining bond SYMBOL SHARES|all | unbond SYMBOL SHARES|all
    dcent mining rewards [WALLET|ADDR] | status

Amounts of assets are written like DCT amounts ("1.5" is 1.5 x 10^9 base units, "1500base" base
units); shares are whole numbers. Every trade carries a limit computed from the node's quote and
``--slippage``, and a swap a deadline height, so a price moved by someone else's trade (a
front-runner) makes the transaction fail instead of filling at a worse price.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from rich.console import Console

from node.wallet.cliargs import (
    Subparsers,
    add_account_command,
    add_command_group,
    add_common_args,
    add_node_args,
)
from node.wallet.connect import NodeRpc
from node.wallet.console import dct, key_values, table
from node.wallet.errors import InvalidArgument
from node.wallet.runner import (
    EXIT_OK,
    output_of,
    run_account_command,
    run_account_table,
    run_node_command,
)
from node.wallet.txbuilder import Prepared
from node.wallet.txcommand import TxPlan, as_tx_command
from node.wallet.values import (
    AMOUNT_HELP,
    answer_amount,
    answer_int,
    answer_list,
    answer_object,
    parse_address,
    parse_amount_arg,
    parse_ratio,
)
from protocol.ledger.errors import LedgerError
from protocol.ledger.liquidity_errors import AmountTooSmall, InsufficientAsset, NotBonded
from protocol.ledger.tx import (
    AssetMint,
    AssetPropose,
    AssetSend,
    MiningBond,
    MiningUnbond,
    Msg,
    PoolAdd,
    PoolRemove,
    PoolSwap,
)
from protocol.units import DEC, MAX_AMOUNT, format_amount, format_ratio

ALL = "all"


def register(subparsers: Subparsers) -> None:
    _register_assets(subparsers)
    _register_pools(subparsers)
    _register_mining(subparsers)


def _register_mining(subparsers: Subparsers) -> None:
    commands = add_command_group(
        subparsers, "mining", help_text="liquidity mining: bond pool shares, see rewards"
    )
    bond = commands.add_parser("bond", help="bond pool shares to the mining programme")
    unbond = commands.add_parser("unbond", help="unbond them (returned after the unbonding period)")
    for command, plan in ((bond, _bond_plan), (unbond, _unbond_plan)):
        command.add_argument("symbol", metavar="SYMBOL", help="the pool's asset")
        command.add_argument("shares", metavar="SHARES", help=f"a whole number of shares, or {ALL!r}")
        as_tx_command(command, plan)
    rewards = add_account_command(
        commands, "rewards", "an account's bonds and what they would earn now", run_mining_rewards
    )
    status = commands.add_parser("status", help="the programme: share of issuance, pot, next payout")
    add_node_args(status)
    status.set_defaults(func=run_mining_status)
    for command in (bond, unbond, rewards, status):
        add_common_args(command)


def _register_assets(subparsers: Subparsers) -> None:
    commands = add_command_group(
        subparsers, "asset", help_text="assets beyond DCT: propose, mint, send, list"
    )

    propose = commands.add_parser("propose", help="propose an asset you issue (governance votes it)")
    propose.add_argument("symbol", metavar="SYMBOL", help="2 to 10 capitals and digits, e.g. TUSD")
    propose.add_argument("--deposit", help="governance deposit (default: the minimum)")
    as_tx_command(propose, _propose_plan)

    mint = commands.add_parser("mint", help="create some of an asset you issue")
    mint.add_argument("symbol", metavar="SYMBOL")
    mint.add_argument("to", metavar="TO", help="the receiving address")
    mint.add_argument("amount", metavar="AMOUNT", help=AMOUNT_HELP)
    as_tx_command(mint, _mint_plan)

    send = commands.add_parser("send", help="send an asset or pool shares (lp:SYMBOL)")
    send.add_argument("denom", metavar="DENOM", help="SYMBOL, or lp:SYMBOL for pool shares")
    send.add_argument("to", metavar="TO", help="the receiving address")
    send.add_argument("amount", metavar="AMOUNT", help=f"{AMOUNT_HELP}; shares: a whole number")
    as_tx_command(send, _send_plan)

    listing = commands.add_parser("list", help="every asset, registered or proposed")
    add_node_args(listing)
    listing.set_defaults(func=run_asset_list)

    holdings = add_account_command(commands, "holdings", "an account's assets and pool shares", run_holdings)

    for command in (propose, mint, send, listing, holdings):
        add_common_args(command)


def _register_pools(subparsers: Subparsers) -> None:
    commands = add_command_group(subparsers, "pool", help_text="the DCT/asset pools: add, remove, swap, show")
    slippage_help = "the worst price move accepted (default: %(default)s)"

    add = commands.add_parser("add", help="deposit DCT and an asset for pool shares")
    add.add_argument("symbol", metavar="SYMBOL")
    add.add_argument("dct", metavar="DCT_AMOUNT", help=f"at most this much DCT: {AMOUNT_HELP}")
    add.add_argument("asset", metavar="ASSET_AMOUNT", help="at most this much of the asset")
    add.add_argument("--slippage", default="1%", help=slippage_help)
    as_tx_command(add, _add_plan)

    remove = commands.add_parser("remove", help="redeem pool shares for DCT and the asset")
    remove.add_argument("symbol", metavar="SYMBOL")
    remove.add_argument("shares", metavar="SHARES", help=f"a whole number of shares, or {ALL!r}")
    remove.add_argument("--slippage", default="1%", help=slippage_help)
    as_tx_command(remove, _remove_plan)

    swap = commands.add_parser("swap", help="sell DCT for the asset or the asset for DCT")
    swap.add_argument("symbol", metavar="SYMBOL")
    swap.add_argument("--sell", required=True, metavar="DCT|SYMBOL", help="what you sell")
    swap.add_argument("amount", metavar="AMOUNT", help=AMOUNT_HELP)
    swap.add_argument("--slippage", default="1%", help=slippage_help)
    swap.add_argument(
        "--deadline-blocks", type=int, default=20, help="fail unless included within this many blocks"
    )
    as_tx_command(swap, _swap_plan)

    show = commands.add_parser("show", help="one pool: reserves, shares, prices")
    show.add_argument("symbol", metavar="SYMBOL")
    add_node_args(show)
    show.set_defaults(func=run_pool_show)

    listing = commands.add_parser("list", help="every pool")
    add_node_args(listing)
    listing.set_defaults(func=run_pool_list)

    for command in (add, remove, swap, show, listing):
        add_common_args(command)


# --- plans ---------------------------------------------------------------------------------------
def _slippage(args: argparse.Namespace) -> int:
    ratio = parse_ratio(args.slippage, "--slippage")
    if ratio >= DEC:
        raise InvalidArgument("--slippage: below 100%")
    return ratio


def _at_least(amount: int, slippage: int) -> int:
    """The limit for an expected ``amount``: ``slippage`` below it, rounded down."""
    return amount * (DEC - slippage) // DEC


def _shares_arg(text: str) -> int | None:
    if text.strip().lower() == ALL:
        return None
    if not text.isdigit() or not 0 < int(text) <= MAX_AMOUNT:
        raise InvalidArgument(f"SHARES: a whole number of shares between 1 and {MAX_AMOUNT}, or {ALL!r}")
    return int(text)


def _amount_of(denom: str, text: str) -> int:
    if denom.startswith("lp:"):
        shares = _shares_arg(text)
        if shares is None:
            raise InvalidArgument("AMOUNT: a whole number of shares")
        return shares
    return parse_amount_arg(text, "AMOUNT")


def _propose_plan(args: argparse.Namespace) -> TxPlan:
    deposit = parse_amount_arg(args.deposit, "--deposit") if args.deposit else None
    fields: dict[str, object] = {"symbol": args.symbol}
    AssetPropose(args.symbol, deposit or 1)  # a bad symbol is refused before anything else

    async def build(rpc: NodeRpc, prepared: Prepared) -> Msg:
        amount = deposit or prepared.chain.params.get("gov_min_deposit", 1)
        fields["deposit"] = str(amount)
        return AssetPropose(args.symbol, amount)

    async def after(rpc: NodeRpc, outcome: object) -> dict[str, object]:
        answer = answer_object(await rpc.call("asset_get", symbol=args.symbol), "asset_get")
        return {"proposal": answer.get("proposal")}

    return TxPlan(
        AssetPropose(args.symbol, deposit or 1),
        f"proposal to register {args.symbol}",
        spend=deposit or 0,
        fields=fields,
        build=build,
        after=after,
    )


def _mint_plan(args: argparse.Namespace) -> TxPlan:
    to = parse_address(args.to, "TO")
    amount = parse_amount_arg(args.amount, "AMOUNT")
    msg = AssetMint(args.symbol, to.raw, amount)
    return TxPlan(
        msg,
        f"mint of {_units(amount, args.symbol)} for {to}",
        fields={"symbol": args.symbol, "to": str(to), "amount": str(amount)},
    )


def _send_plan(args: argparse.Namespace) -> TxPlan:
    to = parse_address(args.to, "TO")
    amount = _amount_of(args.denom, args.amount)
    msg = AssetSend(args.denom, to.raw, amount)

    async def check(rpc: NodeRpc, prepared: Prepared) -> None:
        held = await _holding(rpc, prepared.sender.address, args.denom)
        if held < amount:
            raise InsufficientAsset(f"{args.denom}: the account holds {held}, less than {amount}")

    return TxPlan(
        msg,
        f"send of {_units(amount, args.denom)} to {to}",
        fields={"denom": args.denom, "to": str(to), "amount": str(amount)},
        check=check,
    )


def _add_plan(args: argparse.Namespace) -> TxPlan:
    dct_amount = parse_amount_arg(args.dct, "DCT_AMOUNT")
    asset_amount = parse_amount_arg(args.asset, "ASSET_AMOUNT")
    slippage = _slippage(args)
    fields: dict[str, object] = {"symbol": args.symbol, "dct": str(dct_amount), "asset": str(asset_amount)}

    async def build(rpc: NodeRpc, prepared: Prepared) -> Msg:
        pools = answer_list(await rpc.call("pool_all"), "pool_all")
        pool = next(
            (
                answer_object(p, "pool_all")
                for p in pools
                if isinstance(p, dict) and p.get("symbol") == args.symbol
            ),
            None,
        )
        if pool is None:
            expected = 0  # the first deposit sets the price: nothing to slip against
        else:
            total = answer_amount(pool, "shares", "pool_all")
            expected = min(
                dct_amount * total // answer_amount(pool, "dct", "pool_all"),
                asset_amount * total // answer_amount(pool, "asset", "pool_all"),
            )
            if expected == 0:
                raise AmountTooSmall("the deposit is worth less than one share")
        fields["min_shares"] = str(_at_least(expected, slippage))
        return PoolAdd(args.symbol, dct_amount, asset_amount, _at_least(expected, slippage))

    return TxPlan(
        PoolAdd(args.symbol, dct_amount, asset_amount, 0),
        f"deposit of up to {dct(dct_amount)} and {_units(asset_amount, args.symbol)} into the {args.symbol} pool",
        spend=dct_amount,
        fields=fields,
        build=build,
    )


def _remove_plan(args: argparse.Namespace) -> TxPlan:
    shares = _shares_arg(args.shares)
    slippage = _slippage(args)
    fields: dict[str, object] = {"symbol": args.symbol}

    async def build(rpc: NodeRpc, prepared: Prepared) -> Msg:
        held = await _holding(rpc, prepared.sender.address, "lp:" + args.symbol)
        wanted = _shares_wanted(shares, held, _not_held)
        pool = answer_object(await rpc.call("pool_get", symbol=args.symbol), "pool_get")
        total = answer_amount(pool, "shares", "pool_get")
        min_dct = _at_least(wanted * answer_amount(pool, "dct", "pool_get") // total, slippage)
        min_asset = _at_least(wanted * answer_amount(pool, "asset", "pool_get") // total, slippage)
        fields.update(shares=str(wanted), min_dct=str(min_dct), min_asset=str(min_asset))
        return PoolRemove(args.symbol, wanted, min_dct, min_asset)

    return TxPlan(
        PoolRemove(args.symbol, shares or 1, 0, 0),
        f"withdrawal of {shares or 'all'} shares from the {args.symbol} pool",
        fields=fields,
        build=build,
    )


def _swap_plan(args: argparse.Namespace) -> TxPlan:
    sold = args.sell.strip().upper()
    if sold not in ("DCT", args.symbol):
        raise InvalidArgument(f"--sell: DCT or {args.symbol}")
    sell_dct = sold == "DCT"
    amount = parse_amount_arg(args.amount, "AMOUNT")
    slippage = _slippage(args)
    if not 1 <= args.deadline_blocks <= 10_000:
        raise InvalidArgument("--deadline-blocks: between 1 and 10000")
    bought = args.symbol if sell_dct else "DCT"
    fields: dict[str, object] = {"symbol": args.symbol, "sold": sold, "amount": str(amount)}

    async def build(rpc: NodeRpc, prepared: Prepared) -> Msg:
        quote = answer_object(
            await rpc.call("pool_quote", symbol=args.symbol, sell_dct=sell_dct, amount=str(amount)),
            "pool_quote",
        )
        min_out = _at_least(answer_amount(quote, "out", "pool_quote"), slippage)
        if min_out == 0:
            raise AmountTooSmall(f"selling {_units(amount, sold)} buys nothing worth a limit")
        head = answer_object(await rpc.call("chain_head"), "chain_head")
        deadline = answer_int(head, "height", "chain_head") + args.deadline_blocks
        fields.update(min_out=str(min_out), deadline=deadline, quote=quote.get("out"))
        return PoolSwap(args.symbol, sell_dct, amount, min_out, deadline)

    return TxPlan(
        PoolSwap(args.symbol, sell_dct, amount, 1, 1),
        f"swap of {_units(amount, sold)} for {bought}",
        spend=amount if sell_dct else 0,
        fields=fields,
        build=build,
    )


def _shares_wanted(asked: int | None, available: int, refusal: Callable[[int, int], LedgerError]) -> int:
    """The shares a command moves: ``asked``, or all ``available`` for "all"; ``refusal(wanted,
    available)`` is raised for none, or more than are available."""
    wanted = available if asked is None else asked
    if wanted == 0 or wanted > available:
        raise refusal(wanted, available)
    return wanted


def _not_held(wanted: int, held: int) -> LedgerError:
    return InsufficientAsset(f"{wanted} shares asked, the account holds {held}")


def _not_bonded(wanted: int, bonded: int) -> LedgerError:
    return NotBonded(f"{wanted} shares asked, {bonded} bonded")


async def _bonded(rpc: NodeRpc, address: str, symbol: str) -> int:
    answer = answer_object(await rpc.call("account_mining", address=address), "account_mining")
    bonded = 0
    for entry in answer_list(answer.get("bonds"), "account_mining"):
        doc = answer_object(entry, "account_mining")
        if doc.get("symbol") == symbol:
            bonded = answer_amount(doc, "shares", "account_mining")
    return bonded


def _mining_plan(
    args: argparse.Namespace,
    make: Callable[[str, int], Msg],
    summary: str,
    available: Callable[[NodeRpc, str], Awaitable[int]],
    refusal: Callable[[int, int], LedgerError],
) -> TxPlan:
    """``mining bond`` and ``unbond``: SHARES (or all ``available``) of the pool's shares;
    ``summary`` names them as ``{shares}``."""
    shares = _shares_arg(args.shares)
    fields: dict[str, object] = {"symbol": args.symbol}

    async def build(rpc: NodeRpc, prepared: Prepared) -> Msg:
        wanted = _shares_wanted(shares, await available(rpc, prepared.sender.address), refusal)
        fields["shares"] = str(wanted)
        return make(args.symbol, wanted)

    return TxPlan(
        make(args.symbol, shares or 1),
        summary.format(shares=shares or ALL),
        fields=fields,
        build=build,
    )


def _bond_plan(args: argparse.Namespace) -> TxPlan:
    return _mining_plan(
        args,
        MiningBond,
        f"bond of {{shares}} lp:{args.symbol} shares to liquidity mining",
        lambda rpc, address: _holding(rpc, address, "lp:" + args.symbol),
        _not_held,
    )


def _unbond_plan(args: argparse.Namespace) -> TxPlan:
    return _mining_plan(
        args,
        MiningUnbond,
        f"unbond of {{shares}} lp:{args.symbol} shares from liquidity mining",
        lambda rpc, address: _bonded(rpc, address, args.symbol),
        _not_bonded,
    )


def run_mining_status(args: argparse.Namespace) -> int:
    out = output_of(args)

    async def body(rpc: NodeRpc) -> int:
        status = answer_object(await rpc.call("mining_status"), "mining_status")
        rows = [
            ("share of issuance", format_ratio(int(str(status.get("share"))))),
            ("pot this epoch", dct(status.get("pot"))),
            ("bonds", status.get("bonds")),
            ("next payout at height", status.get("next_payout_height")),
            ("unbonding period (blocks)", status.get("unbonding_period")),
        ]
        out.result(dict(status), lambda console: console.print(key_values(rows, title="liquidity mining")))
        return EXIT_OK

    return run_node_command(args, out, body)


def run_mining_rewards(args: argparse.Namespace) -> int:
    out = output_of(args)

    async def body(rpc: NodeRpc, address: str) -> int:
        answer = answer_object(await rpc.call("account_mining", address=address), "account_mining")
        bonds = [
            answer_object(b, "account_mining") for b in answer_list(answer.get("bonds"), "account_mining")
        ]
        leaving = [
            answer_object(u, "account_mining") for u in answer_list(answer.get("unbonding"), "account_mining")
        ]

        def render(console: Console) -> None:
            if not bonds and not leaving:
                console.print(f"{address} has nothing bonded to liquidity mining")
                return
            rows = [
                (b.get("symbol"), b.get("shares"), dct(b.get("estimated_reward")), "bonded") for b in bonds
            ]
            rows += [
                (u.get("symbol"), u.get("shares"), "-", f"back at height {u.get('release_height')}")
                for u in leaving
            ]
            console.print(table(("POOL", "SHARES", "IF THE EPOCH ENDED NOW", "STATE"), rows, title=address))

        out.result(dict(answer), render)
        return EXIT_OK

    return run_account_command(args, out, body)


# --- reading -------------------------------------------------------------------------------------
def _units(amount: int, denom: str) -> str:
    if denom.startswith("lp:"):
        return f"{amount} {denom} shares"
    return format_amount(amount).replace(" DCT", f" {denom}")


async def _holding(rpc: NodeRpc, address: str, denom: str) -> int:
    for entry in answer_list(await rpc.call("account_holdings", address=address), "account_holdings"):
        doc = answer_object(entry, "account_holdings")
        if doc.get("denom") == denom:
            return answer_amount(doc, "amount", "account_holdings")
    return 0


def _price(value: object, symbol: str) -> str:
    if value is None:
        return "-"
    return _units(int(str(value)), symbol) + " per DCT"


def _pool_rows(pool: Mapping[str, Any]) -> list[tuple[str, object]]:
    symbol = str(pool.get("symbol"))
    return [
        ("DCT reserve", dct(pool.get("dct"))),
        (f"{symbol} reserve", _units(int(str(pool.get("asset"))), symbol)),
        ("shares", pool.get("shares")),
        ("spot price", _price(pool.get("spot_price"), symbol)),
        (f"time-weighted price ({pool.get('twap_window')} blocks)", _price(pool.get("twap"), symbol)),
        ("swap fee", format_ratio(int(str(pool.get("swap_fee"))))),
    ]


def run_pool_show(args: argparse.Namespace) -> int:
    out = output_of(args)

    async def body(rpc: NodeRpc) -> int:
        pool = answer_object(await rpc.call("pool_get", symbol=args.symbol), "pool_get")
        out.result(
            dict(pool),
            lambda console: console.print(key_values(_pool_rows(pool), title=f"DCT/{args.symbol}")),
        )
        return EXIT_OK

    return run_node_command(args, out, body)


def run_pool_list(args: argparse.Namespace) -> int:
    out = output_of(args)

    async def body(rpc: NodeRpc) -> int:
        pools = [answer_object(p, "pool_all") for p in answer_list(await rpc.call("pool_all"), "pool_all")]

        def render(console: Console) -> None:
            if not pools:
                console.print("no pools")
                return
            rows = [
                (
                    p.get("symbol"),
                    dct(p.get("dct")),
                    p.get("asset"),
                    _price(p.get("twap"), str(p.get("symbol"))),
                )
                for p in pools
            ]
            console.print(table(("POOL", "DCT", "ASSET (base units)", "TIME-WEIGHTED PRICE"), rows))

        out.result(pools, render)
        return EXIT_OK

    return run_node_command(args, out, body)


def run_asset_list(args: argparse.Namespace) -> int:
    out = output_of(args)

    async def body(rpc: NodeRpc) -> int:
        assets = [
            answer_object(a, "asset_all") for a in answer_list(await rpc.call("asset_all"), "asset_all")
        ]

        def render(console: Console) -> None:
            if not assets:
                console.print("no assets")
                return
            rows = [
                (
                    a.get("symbol"),
                    a.get("issuer"),
                    _units(int(str(a.get("supply"))), str(a.get("symbol"))),
                    "registered" if a.get("registered") else f"proposal {a.get('proposal')}",
                )
                for a in assets
            ]
            console.print(table(("SYMBOL", "ISSUER", "SUPPLY", "STATE"), rows))

        out.result(assets, render)
        return EXIT_OK

    return run_node_command(args, out, body)


def run_holdings(args: argparse.Namespace) -> int:
    return run_account_table(
        args,
        "account_holdings",
        ("DENOM", "AMOUNT"),
        lambda entry: (entry.get("denom"), _units(int(str(entry.get("amount"))), str(entry.get("denom")))),
        empty="holds no assets or pool shares",
    )
