"""The fake node and the CLI runner the wallet client's unit tests share (fixtures).

The node behind the commands is :class:`FakeNode`, a stand-in for ``RpcClient`` answering the RPC
contract's shapes (node/rpc's own tests and tests/integration/test_wallet_e2e.py cover the real
node). Commands run on ``MockClock(autojump_threshold=0)``, so polling loops take no real time.
Everything else is real: argparse, keystore files with the fast KDF, signing, the result writer.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio.testing

from node.cli import gov as gov_cli
from node.cli import job as job_cli
from node.cli import validator as validator_cli
from node.cli import wallet as wallet_cli
from node.rpc.errors import RpcCallError
from node.wallet import runner
from node.wallet.connect import NodeTarget
from protocol.crypto import Address, PrivateKey
from protocol.ledger.tx import decode_tx, prove_consensus_key
from protocol.units import DCT

CHAIN_ID = "dcent-test-1"
MIN_FEE = 10_000
PASSWORD = "correct horse battery staple"
ALICE = PrivateKey.from_label("alice")
BOB = PrivateKey.from_label("bob")

# --------------------------------------------------------------------------------------------
# The fake node
# --------------------------------------------------------------------------------------------


class FakeNode:
    """Answers the RPC contract's methods from in-memory state, and records every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.accounts: dict[str, dict[str, Any]] = {}
        self.submitted: list[bytes] = []
        #: How many tx_get answers say "pending" before one says "committed".
        self.pending_polls = 0
        self.refusals: dict[str, RpcCallError] = {}
        self.proposals: list[dict[str, Any]] = []
        self.jobs: dict[str, list[dict[str, Any]]] = {}
        self.job_polls: dict[str, int] = {}
        self.logs: dict[str, list[dict[str, Any]]] = {}
        self.results: dict[str, dict[str, Any]] = {}
        #: Registered validators by operator address, as validator_get answers them.
        self.validators: dict[str, dict[str, Any]] = {}
        #: (delegator, validator) -> worth, as account_delegations answers them.
        self.delegations: dict[tuple[str, str], int] = {}
        #: The key this fake node votes with (validator_keyProof signs with it).
        self.node_key = PrivateKey.from_label("fake-node")
        #: Grants by granter address, as account_grants answers them.
        self.grants: dict[str, list[dict[str, Any]]] = {}
        #: The history account_history answers, by address (default: one transfer).
        self.history: dict[str, list[dict[str, Any]]] = {}

    async def __aenter__(self) -> FakeNode:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None

    def fund(self, key: PrivateKey, balance: int, *, nonce: int = 0, bonded: int = 0) -> None:
        address = str(key.address)
        self.accounts[address] = {
            "address": address,
            "balance": str(balance),
            "nonce": nonce,
            "bonded": str(bonded),
            "unbonding": "0",
        }

    def methods_called(self) -> list[str]:
        return [method for method, _ in self.calls]

    async def call(self, method: str, *args: object, **params: Any) -> Any:
        assert not args, "the wallet sends named params"
        self.calls.append((method, params))
        if method in self.refusals:
            raise self.refusals[method]
        handler: Callable[..., Any] = getattr(self, f"rpc_{method}")
        return handler(**params)

    def rpc_node_info(self) -> dict[str, Any]:
        return {"chain_id": CHAIN_ID, "moniker": "fake", "height": 7, "address": str(self.node_key.address)}

    def rpc_chain_head(self) -> dict[str, Any]:
        return {"chain_id": CHAIN_ID, "height": 7}

    def rpc_account_grants(self, address: str) -> list[dict[str, Any]]:
        return self.grants.get(address, [])

    def rpc_economics_params(self) -> dict[str, Any]:
        return {"params": {"min_fee": str(MIN_FEE), "gov_min_deposit": str(10 * DCT)}, "supply": "0"}

    def rpc_account_get(self, address: str) -> dict[str, Any]:
        return self.accounts.get(
            address, {"address": address, "balance": "0", "nonce": 0, "bonded": "0", "unbonding": "0"}
        )

    def rpc_account_history(self, address: str, limit: int) -> list[dict[str, Any]]:
        if address in self.history:
            return self.history[address][:limit]
        return [
            {"hash": "ab" * 32, "height": 5, "kind": "transfer", "sender": address, "to": "x", "amount": "1"}
        ][:limit]

    def rpc_tx_submit(self, tx: str) -> dict[str, Any]:
        raw = bytes.fromhex(tx)
        self.submitted.append(raw)
        return {"hash": decode_tx(raw).hash.hex()}

    def rpc_tx_get(self, hash: str) -> dict[str, Any]:
        tx = next(decode_tx(raw) for raw in self.submitted if decode_tx(raw).hash.hex() == hash)
        committed = self.pending_polls <= 0
        self.pending_polls -= 1
        return {
            "hash": hash,
            "status": "committed" if committed else "pending",
            "height": 9 if committed else None,
            "kind": tx.msg.KIND,
            "sender": str(Address(tx.sender)),
            "nonce": tx.nonce,
            "fee": str(tx.fee),
        }

    def rpc_gov_proposals(self) -> list[dict[str, Any]]:
        return self.proposals

    def rpc_gov_get(self, id: int) -> dict[str, Any]:
        for proposal in self.proposals:
            if proposal["id"] == id:
                return proposal
        raise RpcCallError(2033, f"no proposal {id}")

    def rpc_validator_get(self, address: str) -> dict[str, Any]:
        if address not in self.validators:
            raise RpcCallError(2012, f"no validator is operated by {address}")
        return self.validators[address]

    def rpc_validator_list(self) -> list[dict[str, Any]]:
        return [v for v in self.validators.values() if not v["jailed"]]

    def rpc_validator_all(self) -> list[dict[str, Any]]:
        return list(self.validators.values())

    def rpc_account_delegations(self, address: str) -> list[dict[str, Any]]:
        return [
            {"validator": validator, "shares": str(worth), "value": str(worth)}
            for (delegator, validator), worth in sorted(self.delegations.items())
            if delegator == address
        ]

    def rpc_validator_keyProof(self, operator: str) -> dict[str, Any]:
        proof = prove_consensus_key(self.node_key, CHAIN_ID, Address.parse(operator).raw)
        return {"consensus_key": self.node_key.public_key.raw.hex(), "key_proof": proof.hex()}

    def rpc_job_submit(
        self, spec: dict[str, Any], max_attempts: int = 5, payer: str | None = None, payer_signs: bool = False
    ) -> dict[str, Any]:
        return {"job_id": "job-1"}

    def rpc_job_get(self, job_id: str) -> dict[str, Any]:
        if job_id not in self.jobs:
            raise RpcCallError(5951, f"no job {job_id}")
        script = self.jobs[job_id]
        poll = self.job_polls.get(job_id, 0)
        self.job_polls[job_id] = poll + 1
        return script[min(poll, len(script) - 1)]

    def rpc_job_logs(self, job_id: str) -> dict[str, Any]:
        snapshots = self.logs[job_id]
        return snapshots.pop(0) if len(snapshots) > 1 else snapshots[0]

    def rpc_job_result(self, job_id: str) -> dict[str, Any]:
        return self.results[job_id]

    def rpc_job_list(self, state: str | None = None) -> list[dict[str, Any]]:
        jobs = [script[-1] for script in self.jobs.values()]
        return [job for job in jobs if state is None or job["state"] == state]


def validator_entry(
    operator: PrivateKey, *, jailed: bool = False, tombstoned: bool = False
) -> dict[str, Any]:
    """A validator as ``validator_get`` answers it."""
    return {
        "address": str(operator.address),
        "consensus_address": str(operator.address),
        "public_key": operator.public_key.raw.hex(),
        "moniker": "val",
        "bonded": str(1_000 * DCT),
        "shares": str(1_000 * DCT),
        "self_bonded": str(1_000 * DCT),
        "commission": str(10**17),
        "max_commission": str(2 * 10**17),
        "max_commission_change": str(10**16),
        "pending_rewards": "0",
        "jailed": jailed,
        "jailed_until": 40 if jailed else None,
        "tombstoned": tombstoned,
        "missed": 3,
        "missed_limit": 50,
    }


def job_object(state: str, *, error: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    stages = ["matching", "negotiating", "contracted", "escrowed", "running", "delivered", "settled"]
    reached = stages[: stages.index(state) + 1] if state in stages else ["matching", state]
    return {
        "job_id": "job-1",
        "state": state,
        "name": "hello",
        "role": "requester",
        "provider": str(BOB.address) if state not in ("matching", "negotiating") else None,
        "requester": str(ALICE.address),
        "contract_hash": None,
        "gpu_uuids": [],
        "price_per_gpu_second": None,
        "max_cost": None,
        "collateral": None,
        "escrow_height": None,
        "exit_status": [0] if state == "settled" else [],
        "outcome": "completed" if state == "settled" else None,
        "limit": None,
        "gpu_ms": 2_500 if state == "settled" else None,
        "gpu_seconds": 3 if state == "settled" else None,
        "cost": "5000000" if state == "settled" else None,
        "output_hash": None,
        "settled_height": None,
        "error": error,
        "history": [{"state": name, "at_ms": 1000 * index} for index, name in enumerate(reached)],
        **fields,
    }


# --------------------------------------------------------------------------------------------
# Running commands
# --------------------------------------------------------------------------------------------


@pytest.fixture
def node(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeNode]:
    fake = FakeNode()

    def open_fake(target: NodeTarget) -> FakeNode:
        return fake

    monkeypatch.setattr(
        runner,
        "BACKEND",
        runner.Backend(open_client=open_fake, clock=trio.testing.MockClock(autojump_threshold=0)),
    )
    for name in ("DCENT_HOME", "DCENT_RPC", "DCENT_RPC_COOKIE"):
        monkeypatch.delenv(name, raising=False)
    yield fake


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "password"
    path.write_text(PASSWORD + "\n")
    return path


@pytest.fixture
def keystore(tmp_path: Path) -> Path:
    return tmp_path / "keystore"


class Cli:
    """Builds the command tree as `dcent` does and runs one command line."""

    def __init__(self, capsys: pytest.CaptureFixture[str], keystore: Path, password_file: Path) -> None:
        self.capsys = capsys
        self.keystore = keystore
        self.password_file = password_file
        parser = argparse.ArgumentParser(prog="dcent")
        commands = parser.add_subparsers()
        for module in (wallet_cli, job_cli, gov_cli, validator_cli):
            module.register(commands)
        self.parser = parser

    def run(self, *argv: str) -> tuple[int, str, str]:
        args = self.parser.parse_args(list(argv))
        code = args.func(args)
        captured = self.capsys.readouterr()
        return code, captured.out, captured.err

    def json(self, *argv: str) -> Any:
        code, out, err = self.run(*argv, "--output", "json")
        assert code == 0, err
        return json.loads(out)

    def node_args(self) -> list[str]:
        return ["--rpc", "http://127.0.0.1:1/", "--rpc-cookie", str(self.keystore.parent / "cookie")]

    def key_args(self) -> list[str]:
        return ["--keystore", str(self.keystore), "--password-file", str(self.password_file)]

    def import_key(self, key: PrivateKey, name: str | None = None) -> dict[str, Any]:
        seed_file = self.keystore.parent / f"seed-{key.address}"
        seed_file.write_text(key.seed().hex() + "\n")
        naming = ["--name", name] if name else []
        result: dict[str, Any] = self.json(
            "wallet", "import", "--seed-file", str(seed_file), "--fast-kdf", *naming, *self.key_args()
        )
        return result


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], keystore: Path, password_file: Path) -> Cli:
    return Cli(capsys, keystore, password_file)


def submitted_tx(node: FakeNode) -> Any:
    assert len(node.submitted) == 1
    return decode_tx(node.submitted[0])
