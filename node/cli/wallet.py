"""`dcent wallet ...`: keystore wallets, balances, and transactions signed on this machine.

    dcent wallet new [--name N] [--words 24]    make a key from a new recovery phrase, encrypt it
    dcent wallet restore [--name N] [--mnemonic-file F]   the same key again from its phrase
    dcent wallet import [--name N] [--seed-file F] | export [WALLET]   a raw key seed in or out
    dcent wallet list | address [WALLET]
    dcent wallet balance [WALLET|ADDR] | history [WALLET|ADDR] | tx HASH
    dcent wallet transfer TO AMOUNT | stake AMOUNT | unstake AMOUNT   [--from WALLET] [--fee A]
    dcent wallet delegate VALIDATOR AMOUNT | undelegate VALIDATOR AMOUNT|all
    dcent wallet redelegate FROM TO AMOUNT|all | delegations [WALLET|ADDR] | unjail
    dcent wallet grant [NODE] --amount A --expires-in BLOCKS | revoke [NODE] | grants [WALLET|ADDR]

``stake``/``unstake`` are a validator operator's own bond; everyone else delegates to a validator
(see ``node/cli/delegation.py``) and never needs to run a node.

Keys never reach the node: transactions are built and signed here and only the signed bytes are
submitted. Transactions wait for their block unless ``--no-wait``. Amounts are "1.5" or
"1.5 DCT" (DCT), or "1500base" (base units). ``--output json`` prints one JSON document.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from rich.console import Console

from node.cli import delegation, grants
from node.rpc.errors import RpcCallError
from node.wallet.cliargs import (
    Subparsers,
    account_address,
    add_account_command,
    add_command_group,
    add_common_args,
    add_keystore_args,
    add_node_args,
)
from node.wallet.connect import NodeRpc
from node.wallet.console import Output, dct, extra_fields, key_values, short_hash, table
from node.wallet.errors import InvalidArgument
from node.wallet.mnemonic import DEFAULT_WORDS, ENTROPY_BITS, generate_mnemonic, mnemonic_to_key_seed
from node.wallet.runner import EXIT_OK, guarded, output_of, run_account_command, run_node_command
from node.wallet.txbuilder import Prepared, account
from node.wallet.txcommand import TxPlan, as_tx_command
from node.wallet.values import (
    AMOUNT_HELP,
    answer_list,
    answer_object,
    looks_like_address,
    parse_address,
    parse_amount_arg,
)
from node.wallet.wallets import (
    Wallet,
    check_name,
    create_wallet,
    find_wallet,
    get_mnemonic,
    get_password,
    get_seed,
    keystore_dir,
    list_wallets,
    unlock,
)
from protocol.crypto import Address
from protocol.ledger.errors import NotAValidator, UnknownValidator
from protocol.ledger.tx import Stake, Transfer, Unstake

DEFAULT_HISTORY_LIMIT = 100
MAX_HISTORY_LIMIT = 1000


def register(subparsers: Subparsers) -> None:
    commands = add_command_group(
        subparsers,
        "wallet",
        help_text="keys, balances and transactions (signed locally)",
        description="Encrypted keystore wallets; transactions are signed here and only the bytes are sent.",
    )

    new = _add_key_store_command(
        commands,
        "new",
        "make a new key from a new recovery phrase (printed once) and store it encrypted",
        run_new,
        lambda parser: parser.add_argument(
            "--words",
            type=int,
            choices=sorted(ENTROPY_BITS),
            default=DEFAULT_WORDS,
            help="length of the recovery phrase (default: %(default)s)",
        ),
    )
    restore = _add_key_store_command(
        commands,
        "restore",
        "store the key of a recovery phrase encrypted",
        run_restore,
        lambda parser: parser.add_argument(
            "--mnemonic-file", metavar="FILE", help="file holding the recovery phrase (default: prompt)"
        ),
    )
    export = _add_wallet_command(
        commands, "export", "print a wallet's raw key seed (hex), after its password", run_export
    )
    imported = _add_key_store_command(
        commands,
        "import",
        "store an existing key (a hex seed) encrypted",
        run_import,
        lambda parser: parser.add_argument(
            "--seed-file", metavar="FILE", help="file holding the 64-hex-digit seed (default: prompt)"
        ),
    )

    listing = commands.add_parser("list", help="the wallets in the keystore")
    add_keystore_args(listing)
    listing.set_defaults(func=run_list)

    address = _add_wallet_command(commands, "address", "a wallet's address", run_address)

    balance = add_account_command(commands, "balance", "an account's balance, stake and nonce", run_balance)

    history = add_account_command(
        commands, "history", "committed transactions an account sent or received", run_history
    )
    history.add_argument(
        "--limit", type=int, default=DEFAULT_HISTORY_LIMIT, help="at most this many (default: %(default)s)"
    )

    tx = commands.add_parser("tx", help="one transaction's status")
    tx.add_argument("hash", metavar="HASH")
    add_node_args(tx)
    tx.set_defaults(func=run_tx)

    transfer = commands.add_parser("transfer", help="send DCT to an address or wallet")
    transfer.add_argument("to", metavar="TO", help="recipient address (or a wallet name)")
    transfer.add_argument("amount", metavar="AMOUNT", help=AMOUNT_HELP)
    as_tx_command(transfer, _transfer_plan)

    stake = commands.add_parser(
        "stake", help="bond more of your own DCT to the validator you operate (others: delegate)"
    )
    stake.add_argument("amount", metavar="AMOUNT", help=AMOUNT_HELP)
    as_tx_command(stake, _stake_plan)

    unstake = commands.add_parser(
        "unstake",
        help="unbond some of your validator's self-delegation (released after the unbonding period)",
    )
    unstake.add_argument("amount", metavar="AMOUNT", help=AMOUNT_HELP)
    as_tx_command(unstake, _unstake_plan)

    delegation.register(commands)  # delegate, undelegate, redelegate, unjail, delegations
    grants.register(commands)  # grant, revoke, grants (i15grants)

    for command in (
        new,
        restore,
        imported,
        export,
        listing,
        address,
        balance,
        history,
        tx,
        transfer,
        stake,
        unstake,
    ):
        add_common_args(command)


def _add_key_store_command(
    commands: Subparsers,
    name: str,
    help_text: str,
    run: Callable[[argparse.Namespace], int],
    add_source: Callable[[argparse.ArgumentParser], object],
) -> argparse.ArgumentParser:
    """``new``, ``restore``, ``import``: store a key encrypted under ``--name``; ``add_source``
    adds the option saying where the key comes from."""
    parser = commands.add_parser(name, help=help_text)
    parser.add_argument("--name", help="wallet name (default: its address)")
    add_source(parser)
    add_keystore_args(parser, creates=True)
    parser.set_defaults(func=run)
    return parser


def _add_wallet_command(
    commands: Subparsers, name: str, help_text: str, run: Callable[[argparse.Namespace], int]
) -> argparse.ArgumentParser:
    """``export``, ``address``: one wallet of the keystore, ``[WALLET]``."""
    parser = commands.add_parser(name, help=help_text)
    parser.add_argument(
        "wallet", nargs="?", metavar="WALLET", help="name or address (default: the only wallet)"
    )
    add_keystore_args(parser)
    parser.set_defaults(func=run)
    return parser


# --------------------------------------------------------------------------------------------
# Local commands: the keystore only
# --------------------------------------------------------------------------------------------


def _print_wallet(console: Console, wallet: Wallet, verb: str) -> None:
    console.print(f"{verb} wallet {wallet.name}")
    console.print(key_values([("address", wallet.address), ("keystore", str(wallet.info.path))]))
    console.print("Keep the password safe: without it the key cannot be recovered.")


def _store_new(
    args: argparse.Namespace, out: Output, seed: bytes, verb: str, mnemonic: str | None = None
) -> int:
    directory = keystore_dir(args.keystore, args.home)
    if args.name is not None:
        check_name(args.name)
    password = get_password(args.password_file, prompt_text="Password for the new wallet: ", confirm=True)
    wallet = create_wallet(directory, args.name, seed, password, fast_kdf=args.fast_kdf)
    fields = wallet.describe()
    if mnemonic is not None:
        fields["mnemonic"] = mnemonic

    def render(console: Console) -> None:
        _print_wallet(console, wallet, verb)
        if mnemonic is not None:
            console.print(
                "Recovery phrase: write these words down and keep them offline. Anyone who has them "
                "holds this key; `dcent wallet restore` makes it again on any machine. They are not "
                "stored and will not be shown again."
            )
            console.print(mnemonic, markup=False, highlight=False)

    out.result(fields, render)
    return EXIT_OK


def run_new(args: argparse.Namespace) -> int:
    out = output_of(args)

    def action() -> int:
        phrase = generate_mnemonic(args.words)
        return _store_new(args, out, mnemonic_to_key_seed(phrase), "created", mnemonic=phrase)

    return guarded(out, action)


def run_restore(args: argparse.Namespace) -> int:
    out = output_of(args)

    def action() -> int:
        seed = mnemonic_to_key_seed(get_mnemonic(args.mnemonic_file))
        return _store_new(args, out, seed, "restored")

    return guarded(out, action)


def run_export(args: argparse.Namespace) -> int:
    out = output_of(args)

    def action() -> int:
        wallet = find_wallet(keystore_dir(args.keystore, args.home), args.wallet)
        password = get_password(
            args.password_file, prompt_text=f"Password for {wallet.name}: ", confirm=False
        )
        seed = unlock(wallet, password).seed().hex()

        def render(console: Console) -> None:
            console.print(
                f"Key seed of wallet {wallet.name} ({wallet.address}). Anyone who has it holds the key:"
            )
            console.print(seed, markup=False, highlight=False)

        out.result({"name": wallet.name, "address": wallet.address, "seed": seed}, render)
        return EXIT_OK

    return guarded(out, action)


def run_import(args: argparse.Namespace) -> int:
    out = output_of(args)
    return guarded(out, lambda: _store_new(args, out, get_seed(args.seed_file), "imported"))


def run_list(args: argparse.Namespace) -> int:
    out = output_of(args)

    def action() -> int:
        directory = keystore_dir(args.keystore, args.home)
        wallets = list_wallets(directory)

        def render(console: Console) -> None:
            if not wallets:
                console.print(f"no wallets in {directory}")
                return
            rows = [(w.name, w.address, "fast (test only)" if w.info.fast_kdf else "scrypt") for w in wallets]
            console.print(table(("NAME", "ADDRESS", "KDF"), rows))

        out.result([wallet.describe() for wallet in wallets], render)
        return EXIT_OK

    return guarded(out, action)


def run_address(args: argparse.Namespace) -> int:
    out = output_of(args)

    def action() -> int:
        wallet = find_wallet(keystore_dir(args.keystore, args.home), args.wallet)
        out.result(wallet.describe(), lambda console: console.print(wallet.address))
        return EXIT_OK

    return guarded(out, action)


# --------------------------------------------------------------------------------------------
# Reading from the node
# --------------------------------------------------------------------------------------------


def run_balance(args: argparse.Namespace) -> int:
    out = output_of(args)

    async def body(rpc: NodeRpc, address: str) -> int:
        state = await account(rpc, address)
        document = {
            "address": state.address,
            "balance": str(state.balance),
            "nonce": state.nonce,
            "bonded": str(state.bonded),
            "unbonding": str(state.unbonding),
        }

        def render(console: Console) -> None:
            console.print(
                key_values(
                    [
                        ("address", document.get("address")),
                        ("balance", dct(document.get("balance"))),
                        ("bonded", dct(document.get("bonded"))),
                        ("unbonding", dct(document.get("unbonding"))),
                        ("nonce", document.get("nonce")),
                    ]
                )
            )

        out.result(document, render)
        return EXIT_OK

    return run_account_command(args, out, body)


def run_history(args: argparse.Namespace) -> int:
    out = output_of(args)

    def action() -> int:
        if not 1 <= args.limit <= MAX_HISTORY_LIMIT:
            raise InvalidArgument(f"--limit: between 1 and {MAX_HISTORY_LIMIT}")
        address = account_address(args, args.account)

        async def body(rpc: NodeRpc) -> int:
            entries = answer_list(
                await rpc.call("account_history", address=address, limit=args.limit), "account_history"
            )

            def render(console: Console) -> None:
                if not entries:
                    console.print(f"no committed transactions for {address}")
                    return
                rows = [
                    (
                        entry.get("height"),
                        entry.get("kind"),
                        dct(entry.get("amount")),
                        dct(entry.get("fee")),
                        short_hash(entry.get("hash"), keep=10),
                        "this account" if entry.get("sender") == address else short_hash(entry.get("sender")),
                        _history_details(entry, address),
                    )
                    for entry in entries
                    if isinstance(entry, dict)
                ]
                console.print(
                    table(
                        ("HEIGHT", "KIND", "AMOUNT", "FEE", "HASH", "SENDER", "DETAILS"), rows, title=address
                    )
                )

            out.result(entries, render)
            return EXIT_OK

        return run_node_command(args, out, body)

    return guarded(out, action)


def _history_details(entry: dict[str, object], address: str) -> str:
    """A history row's per-kind details, the account itself named as such."""
    details = entry.get("details")
    fields = {k: v for k, v in details.items() if k != "amount"} if isinstance(details, dict) else {}
    if entry.get("recipient"):
        fields["to"] = entry["recipient"]
    # Whole addresses and hashes are in ``--output json``; the table keeps a recognisable prefix.
    named = {
        k: "this account" if v == address else short_hash(v) if isinstance(v, str) else v
        for k, v in fields.items()
    }
    return extra_fields(named, ())


def run_tx(args: argparse.Namespace) -> int:
    out = output_of(args)

    async def body(rpc: NodeRpc) -> int:
        answer = answer_object(await rpc.call("tx_get", hash=args.hash), "tx_get")
        out.result(dict(answer), lambda console: console.print(key_values(sorted(answer.items()))))
        return EXIT_OK

    return run_node_command(args, out, body)


# --------------------------------------------------------------------------------------------
# Transactions
# --------------------------------------------------------------------------------------------


def recipient(args: argparse.Namespace, text: str) -> Address:
    """An address typed as is, or the address of a wallet in the keystore."""
    if looks_like_address(text):
        return parse_address(text, "TO")
    return find_wallet(keystore_dir(args.keystore, args.home), text).info.address


def _transfer_plan(args: argparse.Namespace) -> TxPlan:
    to = recipient(args, args.to)
    amount = parse_amount_arg(args.amount, "AMOUNT")
    return TxPlan(
        Transfer(to=to.raw, amount=amount),
        f"transfer of {dct(amount)} to {to}",
        spend=amount,
        fields={"to": str(to), "amount": str(amount)},
    )


async def _operates_a_validator(rpc: NodeRpc, prepared: Prepared) -> None:
    """``stake``/``unstake`` bond to the sender's own validator: refuse, before the password, a
    sender that operates none (the ledger would: NotAValidator) and say what to do instead."""
    try:
        await rpc.call("validator_get", address=prepared.sender.address)
    except RpcCallError as exc:
        if exc.code != UnknownValidator.code:
            raise
        raise NotAValidator(
            f"{prepared.sender.address} operates no validator: stake bonds to one's own. Delegate "
            "to a validator with `dcent wallet delegate VALIDATOR AMOUNT`, or register your node "
            "with `dcent validator create`"
        ) from None


def _stake_plan(args: argparse.Namespace) -> TxPlan:
    amount = parse_amount_arg(args.amount, "AMOUNT")
    return TxPlan(
        Stake(amount=amount),
        f"stake of {dct(amount)}",
        spend=amount,
        fields={"amount": str(amount)},
        check=_operates_a_validator,
    )


def _unstake_plan(args: argparse.Namespace) -> TxPlan:
    amount = parse_amount_arg(args.amount, "AMOUNT")
    return TxPlan(
        Unstake(amount=amount),
        f"unstake of {dct(amount)}",
        unbond=amount,
        fields={"amount": str(amount)},
        check=_operates_a_validator,
    )
