"""Build node homes for in-process multi-node tests: real keys, genesis, SQLite and libp2p."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from node.config import ConsensusConfig, HomePaths, NodeConfig, P2PConfig, write_secret
from protocol.crypto import PrivateKey
from protocol.ledger.genesis import Genesis, dev_genesis
from protocol.ledger.params import Params
from protocol.units import DCT

CHAIN_ID = "dcent-itest"
FAUCET = PrivateKey.from_label("itest-faucet")
#: Short timeouts: loopback is fast, and tests should not idle.
FAST = ConsensusConfig(
    timeout_propose_ms=800,
    timeout_prevote_ms=400,
    timeout_precommit_ms=400,
    timeout_delta_ms=200,
    gossip_interval_ms=400,
    timeout_commit_ms=50,
    max_block_txs=1000,
)


def validator_key(index: int) -> PrivateKey:
    return PrivateKey.from_label(f"itest-validator-{index}")


def make_genesis(validators: int) -> Genesis:
    return dev_genesis(
        CHAIN_ID,
        [(validator_key(i).public_key.raw, 100 * DCT) for i in range(validators)],
        [(FAUCET.address.raw, 1_000_000 * DCT)],
        Params(unbonding_period=5, gov_voting_period=5),
    )


def make_home(root: Path, index: int, genesis: Genesis) -> HomePaths:
    paths = HomePaths(root / f"node{index}")
    write_secret(paths.validator_key, validator_key(index).seed().hex() + "\n")
    write_secret(paths.node_key, PrivateKey.from_label(f"itest-node-{index}").seed().hex() + "\n")
    paths.data.mkdir(parents=True, exist_ok=True)
    paths.genesis.write_text(genesis.to_json())
    return paths


def node_config(index: int, bootstrap: tuple[str, ...] = ()) -> NodeConfig:
    return NodeConfig(
        moniker=f"node{index}",
        p2p=P2PConfig(listen="/ip4/127.0.0.1/tcp/0", bootstrap=bootstrap),
        consensus=dataclasses.replace(FAST),
    )
