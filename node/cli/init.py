"""`dcent init --home DIR [--genesis FILE | --dev]`: lay out a node's home directory."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from node.cli.report import FILE_ACCESS, WRONG_STATE, report_error
from node.config import (
    TEMPLATE_HEADER,
    ConfigError,
    HomePaths,
    NodeConfig,
    create_key,
    render_config,
    resolve_home,
    write_secret,
)
from protocol.ledger.errors import GenesisError
from protocol.ledger.genesis import Genesis, dev_genesis, genesis_state
from protocol.ledger.params import Params
from protocol.units import DCT

DEV_STAKE = 1_000 * DCT
DEV_BALANCE = 1_000_000 * DCT
#: The dev chain makes one block a second; issuance per block follows.
DEV_BLOCKS_PER_YEAR = 31_557_600


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("init", help="create a node home: config, keys and genesis")
    parser.add_argument("--home", help="home directory (default: $DCENT_HOME or ~/.dcent)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--genesis", type=Path, help="genesis file of the chain to join (TOML or JSON)")
    source.add_argument("--dev", action="store_true", help="a single-validator chain for this node alone")
    parser.add_argument("--moniker", help="this node's name (default: the home directory's name)")
    parser.set_defaults(func=run_init)


def load_genesis_file(path: Path) -> Genesis:
    """Read and validate a genesis file. Raises GenesisError (naming the field) or OSError."""
    return Genesis.from_text(path.read_text(), fmt="json" if path.suffix == ".json" else "toml")


def run_init(args: argparse.Namespace) -> int:
    paths = HomePaths(resolve_home(args.home))
    if paths.config.exists():
        report_error(f"{paths.root} is already initialized ({paths.config} exists)", WRONG_STATE)
        return 1
    try:
        genesis = None if args.dev else load_genesis_file(args.genesis)
    except OSError as exc:
        report_error(f"cannot read {args.genesis}: {exc.strerror}", FILE_ACCESS)
        return 2
    except GenesisError as exc:
        report_error(f"{args.genesis}: {exc.message}", exc.code)
        return 1
    try:
        paths.root.mkdir(parents=True, exist_ok=True)
        node_key = create_key(paths.node_key)
        validator_key = create_key(paths.validator_key)
    except (OSError, ConfigError) as exc:
        report_error(f"cannot create keys in {paths.root}: {exc}", FILE_ACCESS)
        return 1
    if genesis is None:
        genesis = dev_genesis(
            f"dcent-dev-{validator_key.address.raw.hex()[:8]}",
            [(validator_key.public_key.raw, DEV_STAKE)],
            [(validator_key.address.raw, DEV_BALANCE)],
            Params(blocks_per_year=DEV_BLOCKS_PER_YEAR),
        )
    genesis_state(genesis)  # one more check: the genesis yields a consistent state
    moniker = args.moniker or paths.root.name
    config = render_config(dataclasses.replace(NodeConfig(), moniker=moniker), header=TEMPLATE_HEADER)
    paths.data.mkdir(parents=True, exist_ok=True, mode=0o700)
    paths.genesis.write_text(genesis.to_json())
    write_secret(paths.config, config)
    print(f"initialized {paths.root}")
    print(f"  chain        {genesis.chain_id} (genesis {genesis.genesis_hash().hex()[:16]}...)")
    print(f"  validator    {validator_key.address}")
    print(f"  node key     {paths.node_key} (public {node_key.public_key.raw.hex()[:16]}...)")
    return 0
