"""The `dcent` command tree.

Each command group lives in its own module exposing ``register(subparsers)``; the module sets
``func`` on its parsers, and that function returns the process exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

from node.cli.report import USAGE, error_format, error_text, report_error, set_error_format, wants_json
from node.errors import NodeError
from protocol.errors import ProtocolError

# Command-group modules under node.cli, in the order `dcent --help` lists them.
COMMAND_GROUPS: tuple[str, ...] = (
    "init",
    "node_cmd",
    "chain",
    "gpu",
    "sim",
    "genesis",
    "wallet",
    "validator",  # i12ledger: validator create/edit/list/show
    "job",
    "gov",
    "blob",  # i15blob
    "testnet",
    "economics",  # i16sim: `dcent economics simulate` (node/cli/economics.py)
    "market",  # i16view: `dcent market offers|stats` (node/cli/market.py)
    "liquidity",  # i17: `dcent asset ...`, `dcent pool ...`, `dcent mining ...` (node/cli/liquidity.py)
    "offer",  # i17: `dcent offer ...` standing offers (node/cli/offer.py)
)


class CommandParser(argparse.ArgumentParser):
    """argparse, reporting a bad command line in the one error form (``error 5090: ...``, or its
    JSON line when the command line asks for JSON) after the usage; exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, error_text(USAGE, f"{self.prog}: {message}", error_format()) + "\n")


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog="dcent",
        description="dcent: a peer-to-peer GPU compute marketplace node.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in COMMAND_GROUPS:
        importlib.import_module(f"node.cli.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    words = list(sys.argv[1:] if argv is None else argv)
    # Before parsing, so that a bad command line is reported in the form it asks for.
    set_error_format("json" if wants_json(words) else "text")
    try:
        args = parser.parse_args(words)
        asks_json = getattr(args, "output", None) == "json" or getattr(args, "json", False) is True
        set_error_format("json" if asks_json else "text")
        code: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # Output piped into e.g. `head`, which closed early: not an error worth a traceback.
        sys.stderr.close()
        return 141
    except (NodeError, ProtocolError) as exc:
        # A typed error no command caught: still the one error form, not a traceback.
        return report_error(exc.message, exc.code)
    finally:
        set_error_format("text")
    return code


if __name__ == "__main__":
    sys.exit(main())
