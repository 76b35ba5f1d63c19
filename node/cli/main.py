"""The `dcent` command tree.

Each command group lives in its own module exposing ``register(subparsers)``; the module sets
``func`` on its parsers, and that function returns the process exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # Output piped into e.g. `head`, which closed early: not an error worth a traceback.
        sys.stderr.close()
        return 141
    return code


if __name__ == "__main__":
    sys.exit(main())
