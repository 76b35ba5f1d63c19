"""`dcent genesis validate FILE`: check a genesis file and report the first wrong field."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from node.cli.report import FILE_ACCESS, report_error
from node.wallet.cliargs import add_command_group
from protocol.ledger.errors import GenesisError
from protocol.ledger.genesis import Genesis, genesis_state
from protocol.units import format_amount


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    commands = add_command_group(subparsers, "genesis", help_text="inspect genesis files")
    validate = commands.add_parser("validate", help="validate a genesis file (TOML or JSON)")
    validate.add_argument("file", type=Path)
    validate.add_argument("--json", action="store_true", help="print a JSON summary")
    validate.set_defaults(func=run_validate)


def run_validate(args: argparse.Namespace) -> int:
    path: Path = args.file
    try:
        text = path.read_text()
    except OSError as exc:
        report_error(f"cannot read {path}: {exc.strerror}", FILE_ACCESS)
        return 2
    fmt = "json" if path.suffix == ".json" else "toml"
    try:
        genesis = Genesis.from_text(text, fmt=fmt)
        state = genesis_state(genesis)
    except GenesisError as exc:
        report_error(f"{path}: {exc.message}", exc.code)
        return 1
    summary = {
        "chain_id": genesis.chain_id,
        "genesis_hash": genesis.genesis_hash().hex(),
        "accounts": len(genesis.accounts),
        "validators": len(state.validator_set()),
        "total_supply": state.total_supply(),
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print(
            f"{path}: valid genesis for chain {genesis.chain_id} ({summary['accounts']} accounts, "
            f"{summary['validators']} validators, supply {format_amount(state.total_supply())})"
        )
    return 0
