"""The options every ``dcent wallet`` / ``job`` / ``gov`` command shares, and reading them back.

Each leaf command carries its own copy (``dcent wallet balance --output json``, options after the
command as people type them). ``--fast-kdf`` is a test-only flag and hidden from ``--help``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TypeAlias

import trio

from node.wallet.errors import InvalidArgument
from node.wallet.keystore import KeystoreInfo
from node.wallet.txbuilder import DEFAULT_TX_TIMEOUT_S
from node.wallet.values import AMOUNT_HELP, looks_like_address, parse_address, parse_amount_arg
from node.wallet.wallets import Wallet, find_wallet, get_password, keystore_dir, unlock
from protocol.crypto import PrivateKey

Parser = argparse.ArgumentParser
# A string: argparse's class is generic only to type checkers.
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def add_command_group(
    subparsers: Subparsers, name: str, *, help_text: str, description: str | None = None
) -> Subparsers:
    """``dcent NAME COMMAND ...``: a group whose subcommands (one of them required) the caller adds."""
    parser = subparsers.add_parser(name, help=help_text, description=description)
    commands = parser.add_subparsers(dest=f"{name}_command", metavar="COMMAND")
    commands.required = True
    return commands


def add_common_args(parser: Parser) -> None:
    """``--output`` and ``--home``: every command has them."""
    parser.add_argument(
        "--output",
        choices=("text", "json"),
        default="text",
        help="text for people (default) or one JSON document for scripts",
    )
    parser.add_argument("--home", help="home directory (default: $DCENT_HOME or ~/.dcent)")


def add_node_args(parser: Parser) -> None:
    """Which node: ``--home`` (its rpc.url and cookie) or ``--rpc URL`` with ``--rpc-cookie``."""
    parser.add_argument(
        "--rpc", metavar="URL", help="the node's RPC URL (default: $DCENT_RPC, else the home's)"
    )
    parser.add_argument(
        "--rpc-cookie",
        metavar="FILE",
        help="the node's cookie file (default: $DCENT_RPC_COOKIE, else <home>/data/.cookie)",
    )


def add_keystore_args(parser: Parser, *, creates: bool = False) -> None:
    parser.add_argument("--keystore", metavar="DIR", help="keystore directory (default: <home>/keystore)")
    parser.add_argument(
        "--password-file",
        metavar="FILE",
        help="read the password from the first line of FILE instead of prompting",
    )
    if creates:
        # Test-only: scrypt n=2**12 instead of 2**18. Hidden so nobody stores real funds with it.
        parser.add_argument("--fast-kdf", action="store_true", help=argparse.SUPPRESS)


def add_tx_args(parser: Parser) -> None:
    """Options of every command that signs a transaction."""
    add_node_args(parser)
    add_keystore_args(parser)
    parser.add_argument(
        "--from", dest="sender", metavar="WALLET", help="the signing wallet (name or address)"
    )
    parser.add_argument(
        "--fee", metavar="AMOUNT", help=f"the fee, {AMOUNT_HELP} (default: the chain's min_fee)"
    )
    parser.add_argument("--nonce", type=int, metavar="N", help="the nonce (default: the committed nonce + 1)")
    parser.add_argument(
        "--no-wait",
        dest="wait",
        action="store_false",
        help="return once the node accepts the transaction, without waiting for a block",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TX_TIMEOUT_S,
        metavar="SECONDS",
        help="how long to wait for the transaction to be committed (default: %(default)g)",
    )


def add_account_command(
    commands: Subparsers, name: str, help_text: str, run: Callable[[argparse.Namespace], int]
) -> Parser:
    """A command that reads one account from the node: ``[WALLET|ADDR]`` (default: the
    keystore's only wallet), the node's options and the keystore's; the caller adds the rest."""
    parser = commands.add_parser(name, help=help_text)
    parser.add_argument("account", nargs="?", metavar="WALLET|ADDR", help="default: the only wallet")
    add_node_args(parser)
    add_keystore_args(parser)
    parser.set_defaults(func=run)
    return parser


def account_address(args: argparse.Namespace, ref: str | None) -> str:
    """An address typed as is, or the address of a wallet (by name; default the only one)."""
    if ref is not None and looks_like_address(ref):
        return str(parse_address(ref, "account"))
    return find_wallet(keystore_dir(args.keystore, args.home), ref).address


def keystore_of(args: argparse.Namespace) -> str:
    return str(keystore_dir(args.keystore, args.home))


def signing_wallet(args: argparse.Namespace) -> Wallet:
    return find_wallet(keystore_dir(args.keystore, args.home), args.sender)


def fee_of(args: argparse.Namespace) -> int | None:
    return None if args.fee is None else parse_amount_arg(args.fee, "--fee", allow_zero=True)


def nonce_of(args: argparse.Namespace) -> int | None:
    if args.nonce is not None and args.nonce < 1:
        raise InvalidArgument("--nonce: nonces start at 1")
    return None if args.nonce is None else int(args.nonce)


def timeout_of(args: argparse.Namespace) -> float:
    if not args.timeout > 0:
        raise InvalidArgument("--timeout: must be more than zero seconds")
    return float(args.timeout)


def prompt_label(info: KeystoreInfo, name: str) -> str:
    return (
        f"Password for {name} ({info.address}): " if name != str(info.address) else f"Password for {name}: "
    )


async def unlock_wallet(args: argparse.Namespace, wallet: Wallet) -> PrivateKey:
    """Ask for the wallet's password (``--password-file`` or a prompt), then decrypt its key.

    The key derivation takes about a second of CPU: it runs in a thread. Raises
    PasswordUnavailable, WrongPassword (the file is left as it was), CorruptKeystore.
    """
    password = get_password(
        args.password_file,
        prompt_text=prompt_label(wallet.info, wallet.name),
        confirm=False,
    )
    return await trio.to_thread.run_sync(unlock, wallet, password)
