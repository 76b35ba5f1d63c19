"""`dcent chain head --home DIR [--json]`: the local store's head, read offline."""

from __future__ import annotations

import argparse
import json

from node.cli.report import FILE_ACCESS, report_error
from node.config import HomePaths, resolve_home
from node.store import ChainStore, StoreError
from node.wallet.cliargs import add_command_group
from protocol.ledger.errors import GenesisError
from protocol.ledger.genesis import Genesis, genesis_state


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    commands = add_command_group(subparsers, "chain", help_text="inspect the local chain store")
    head = commands.add_parser("head", help="height and state hash of the newest stored block")
    head.add_argument("--home", help="home directory (default: $DCENT_HOME or ~/.dcent)")
    head.add_argument("--json", action="store_true")
    head.set_defaults(func=run_head)


def run_head(args: argparse.Namespace) -> int:
    paths = HomePaths(resolve_home(args.home))
    try:
        genesis = Genesis.from_text(paths.genesis.read_text(), fmt="json")
    except OSError as exc:
        return report_error(f"{paths.genesis}: {exc.strerror}; is {paths.root} a node home?", FILE_ACCESS)
    except GenesisError as exc:
        return report_error(f"{paths.genesis}: {exc.message}", exc.code)
    report = {
        "chain_id": genesis.chain_id,
        "height": 0,
        "hash": "",
        "state_hash": genesis_state(genesis).state_hash().hex(),
    }
    if paths.chain_db.exists():
        try:
            store = ChainStore.open(paths.chain_db)
            head = store.head()
            store.close()
        except StoreError as exc:
            return report_error(exc.message, exc.code)
        if head is not None:
            report.update(height=head.height, hash=head.hash.hex(), state_hash=head.state_hash.hex())
    if args.json:
        print(json.dumps(report))
    else:
        print(f"chain {report['chain_id']}  height {report['height']}  state {report['state_hash']}")
    return 0
