"""The node's JSON-RPC for real: a single-validator node in-process (libp2p, SQLite, consensus),
its RPC on an ephemeral loopback port, called over HTTP with the cookie the node wrote.

Each method's answer is checked against the RPC contract's shape; a transfer is followed from the
mempool into a block; refusals carry their stable codes; the cookie, ``rpc.url`` and the metrics
endpoint exist while the node runs, and the files are gone once it stops.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import trio

from gpu.simulated import simulated_report
from node.cli.gpu import report_json
from node.config import HomePaths, MetricsConfig, RpcConfig
from node.daemon import Node, NodeNotStarted
from node.rpc.client import RpcClient
from node.rpc.errors import RpcCallError
from node.rpc.node_table import NODE_SCHEMA
from protocol.crypto import PrivateKey
from protocol.ledger.tx import GovPropose, GovVote, Transfer, sign_tx
from protocol.units import DCT
from tests.integration.executor_helpers import host_sandbox_verdict
from tests.integration.node_helpers import CHAIN_ID, FAUCET, make_genesis, make_home, node_config
from tests.rpc_contract import CONTRACT_METHODS

if TYPE_CHECKING:
    from trio_typing import TaskStatus

DEADLINE_S = 120
FEE = 10_000


@dataclass
class RunningNode:
    node: Node
    paths: HomePaths
    scope: trio.CancelScope
    stopped: trio.Event

    @property
    def url(self) -> str:
        assert self.node.rpc_url is not None
        return self.node.rpc_url

    def client(self) -> RpcClient:
        return RpcClient.for_home(self.paths.root, self.url)

    async def call(self, method: str, *args: object, **params: object) -> Any:
        async with self.client() as client:
            return await client.call(method, *args, **params)

    async def refusal(self, method: str, *args: object, **params: object) -> RpcCallError:
        with pytest.raises(RpcCallError) as refused:
            await self.call(method, *args, **params)
        return refused.value

    async def stop(self) -> None:
        self.scope.cancel()
        await self.stopped.wait()


async def _run_node(
    node: Node,
    stopped: trio.Event,
    *,
    task_status: TaskStatus[trio.CancelScope] = trio.TASK_STATUS_IGNORED,
) -> None:
    try:
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                await nursery.start(node.run)
                task_status.started(scope)
    finally:
        stopped.set()


@pytest.fixture
async def running(tmp_path: Path, nursery: trio.Nursery) -> AsyncIterator[RunningNode]:
    paths = make_home(tmp_path, 0, make_genesis(1))
    # bubblewrap whatever this host allows: the node's own verdict on it is part of what is tested.
    config = dataclasses.replace(
        node_config(0, executor="bubblewrap", allow_unsandboxed=False),
        rpc=RpcConfig(addr="127.0.0.1:0"),
        metrics=MetricsConfig(addr="127.0.0.1:0"),
    )
    node = Node(paths, config)
    stopped = trio.Event()
    with trio.fail_after(DEADLINE_S):
        scope = await nursery.start(_run_node, node, stopped)
        await node.wait_for_height(1)
    running = RunningNode(node, paths, scope, stopped)
    yield running
    await running.stop()


def _is_hex(value: object, size: int | None = None) -> bool:
    if not isinstance(value, str) or value != value.lower():
        return False
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        return False
    return size is None or len(raw) == size


def _is_amount(value: object) -> bool:
    return isinstance(value, str) and value.isdigit()


# --- the methods' shapes -----------------------------------------------------------------------


async def test_the_table_serves_every_contract_method(running: RunningNode) -> None:
    with trio.fail_after(DEADLINE_S):
        described = await running.call("rpc_methods")
    assert {method["name"] for method in described} >= CONTRACT_METHODS


async def test_node_info_net_peers_and_gpus(running: RunningNode) -> None:
    node = running.node
    with trio.fail_after(DEADLINE_S):
        info = await running.call("node_info")
        peers = await running.call("net_peers")
        gpus = await running.call("gpu_list")
    assert set(info) == {
        "moniker",
        "chain_id",
        "version",
        "peer_id",
        "listen_addrs",
        "address",
        "public_key",
        "height",
        "validator",
        "gpus",
        "simulated_gpus",
        "executor",
        "rpc_url",
        "provider",
    }
    assert info["moniker"] == "node0" and info["chain_id"] == CHAIN_ID
    assert info["peer_id"] == node.host.peer_id and info["listen_addrs"] == node.host.listen_addrs
    assert info["address"] == str(node.validator_key.address)
    assert info["public_key"] == node.validator_key.public_key.raw.hex()
    assert isinstance(info["height"], int) and info["height"] >= 1
    assert info["validator"] is True
    assert (info["gpus"], info["simulated_gpus"], info["executor"]) == (1, True, "bubblewrap")
    assert info["rpc_url"] == running.url
    assert peers == []  # alone on its chain
    # It sells exactly when its sandbox passes its self-test here, and then under every limit;
    # where it cannot (a chroot, AppArmor), it says why and the fix.
    provider = info["provider"]
    here = host_sandbox_verdict()
    if here.ok:
        assert provider["selling"] is True and provider["sandboxed"] is True, provider
        assert provider["limits_enforced"] == ["cpu", "disk", "memory", "processes"]
        assert provider["summary"].startswith("bubblewrap sandbox ok")
    else:
        assert provider["selling"] is False and provider["fix"] == here.fix, provider
        assert provider["summary"].startswith("bubblewrap cannot run jobs here")
    with trio.fail_after(DEADLINE_S):
        status = await running.call("node_status")
    assert status["provider"] == provider and status["executor"] == "bubblewrap"

    # Exactly what `dcent gpu list --simulate 1xH100-80GB --json` prints for this node's GPUs.
    label = node.validator_key.address.raw.hex()[:12]
    expected = json.loads(report_json(simulated_report("1xH100-80GB", label)))["gpus"]
    assert gpus == {"simulated": True, "devices": expected}


async def test_market_capacity_lists_this_nodes_own_announcement(running: RunningNode) -> None:
    with trio.fail_after(DEADLINE_S):
        capacity = await running.call("market_capacity")
        gpus = await running.call("gpu_list")
    if not host_sandbox_verdict().ok:
        assert capacity == []  # a node that cannot sandbox jobs here announces nothing
        return
    [entry] = capacity
    assert entry["provider"] == str(running.node.validator_key.address)
    assert entry["public_key"] == running.node.validator_key.public_key.raw.hex()
    assert entry["peer_id"] == running.node.host.peer_id
    assert [gpu["uuid"] for gpu in entry["gpus"]] == [gpu["uuid"] for gpu in gpus["devices"]]
    assert entry["free_gpus"] == 1 and entry["simulated"] is True
    assert entry["price_per_gpu_second"] == str(running.node.config.market.price_per_gpu_second)
    # Its stake: the genesis 100 DCT and the rewards it has compounded since (delegation shares).
    assert _is_amount(entry["collateral"]) and int(entry["stake"]) >= 100 * DCT
    assert entry["executors"] == ["bubblewrap"]
    assert isinstance(entry["expires_at_ms"], int)
    limits = entry["limits"]
    assert limits["enforced"] == ["cpu", "disk", "memory", "processes"] and limits["sandboxed"] is True
    assert limits["memory_bytes"] > 0 and limits["disk_bytes"] > 0


async def test_chain_head_and_blocks(running: RunningNode) -> None:
    node = running.node
    with trio.fail_after(DEADLINE_S):
        await node.wait_for_height(2)
        head = await running.call("chain_head")
        first = await running.call("chain_getBlock", 1)
        second = await running.call("chain_getBlock", height=2)
    assert set(head) == {"chain_id", "height", "hash", "state_hash", "time_ms", "validators"}
    assert head["chain_id"] == CHAIN_ID and head["height"] >= 2 and head["validators"] == 1
    assert _is_hex(head["hash"], 32) and _is_hex(head["state_hash"], 32) and head["time_ms"] > 0
    assert node.store is not None
    stored = node.store.block(1)
    assert stored is not None
    assert set(first) == {
        "height",
        "hash",
        "parent_hash",
        "time_ms",
        "proposer",
        "state_hash",
        "txs",
        "evidence",
        "signers",
    }
    assert first["height"] == 1 and first["hash"] == stored.hash.hex()
    assert first["state_hash"] == stored.state_hash.hex()
    assert first["parent_hash"] == node.genesis.genesis_hash().hex()
    assert first["proposer"] == str(node.validator_key.address)
    assert first["txs"] == [] and first["evidence"] == 0
    # The one validator signed the commit: who signed is what `testnet status` names when stalled.
    assert first["signers"] == [str(node.validator_key.address)]
    assert second["parent_hash"] == first["hash"] and second["time_ms"] > first["time_ms"]


async def test_validators_governance_and_economics(running: RunningNode) -> None:
    node = running.node
    with trio.fail_after(DEADLINE_S):
        validators = await running.call("validator_list")
        proposals = await running.call("gov_proposals")
        economics = await running.call("economics_params")
    [validator] = validators
    assert (validator["address"], validator["public_key"]) == (
        str(node.validator_key.address),
        node.validator_key.public_key.raw.hex(),
    )
    assert int(validator["bonded"]) >= 100 * DCT and int(validator["power"]) >= 100 * DCT
    assert (validator["jailed"], validator["tombstoned"], validator["missed"]) == (False, False, 0)
    assert proposals == []
    assert set(economics) == {
        "params",
        "supply",
        "minted",
        "burned",
        "bonded",
        "inflation",
        "community_pool",
        "provider_pool",
    }
    assert economics["params"]["min_fee"] == "10000" and economics["params"]["gov_voting_period"] == "5"
    assert all(_is_amount(value) for value in economics["params"].values())
    assert int(economics["bonded"]) >= 100 * DCT
    assert int(economics["supply"]) >= 1_000_000 * DCT + 100 * DCT
    assert all(_is_amount(economics[key]) for key in economics if key != "params")


async def test_a_proposal_is_listed_with_its_tally(running: RunningNode) -> None:
    validator = PrivateKey.from_label("itest-validator-0")  # the only validator: all the power
    fund = sign_tx(FAUCET, CHAIN_ID, 1, FEE, Transfer(validator.address.raw, DCT))
    propose = sign_tx(FAUCET, CHAIN_ID, 2, FEE, GovPropose("min_fee", 20_000, 10 * DCT))
    vote = sign_tx(validator, CHAIN_ID, 1, FEE, GovVote(1, "yes"))
    with trio.fail_after(DEADLINE_S):
        # One batch, no block in between: a vote on a proposal still waiting in the mempool (as
        # another sender's transaction) cannot apply yet, and is refused.
        async with running.client() as client:
            answers = await client.batch([("tx_submit", {"tx": raw.hex()}) for raw in (fund, propose, vote)])
        refused = answers[2]
        assert isinstance(refused, RpcCallError) and refused.code == 2033
        await _wait_committed(running, hashlib.sha256(propose).hexdigest())
        await running.call("tx_submit", vote.hex())
        voted = await _wait_committed(running, hashlib.sha256(vote).hexdigest())
        proposal = await running.call("gov_get", 1)
        listed = await running.call("gov_proposals")
    assert listed == [proposal]
    assert proposal["id"] == 1 and proposal["param"] == "min_fee" and proposal["value"] == "20000"
    assert proposal["proposer"] == str(FAUCET.address) and proposal["deposit"] == str(10 * DCT)
    assert proposal["end_height"] >= voted["height"]
    # Still voting: the live tally; or the 5-block period already ended: the final tally.
    assert proposal["status"] in ("voting", "passed")
    assert proposal["tally"] == {"yes": str(100 * DCT), "no": "0", "abstain": "0", "veto": "0"}


# --- transactions ---------------------------------------------------------------------------------


async def _wait_committed(running: RunningNode, tx_hash: str) -> dict[str, Any]:
    """tx_get until the transaction is committed; woken by each new block, never by a timer."""
    while True:
        answer: dict[str, Any] = await running.call("tx_get", tx_hash)
        if answer["status"] == "committed":
            return answer
        await running.node.wait_for_height(running.node.status().height + 1)


async def test_a_transfer_goes_from_pending_to_committed(running: RunningNode) -> None:
    recipient = PrivateKey.from_label("rpc-recipient").address
    second = sign_tx(FAUCET, CHAIN_ID, 2, FEE, Transfer(recipient.raw, 700))
    first = sign_tx(FAUCET, CHAIN_ID, 1, FEE, Transfer(recipient.raw, 300))
    second_hash = hashlib.sha256(second).hexdigest()
    with trio.fail_after(DEADLINE_S):
        # Nonce 2 first is refused: the mempool admits a sender's nonces in order.
        assert (await running.refusal("tx_submit", tx=second.hex())).code == 5607
        # One batch runs in order with no block in between: both admitted, nonce 2 seen pending.
        async with running.client() as client:
            answers = await client.batch(
                [
                    ("tx_submit", {"tx": first.hex()}),
                    ("tx_submit", {"tx": second.hex()}),
                    ("tx_get", {"hash": second_hash}),
                    ("account_get", {"address": str(recipient)}),
                ]
            )
        assert answers[1] == {"hash": second_hash}
        pending = answers[2]
        assert answers[3] == {
            "address": str(recipient),
            "balance": "0",
            "nonce": 0,
            "bonded": "0",
            "unbonding": "0",
        }
        committed = await _wait_committed(running, second_hash)
        first_answer = await _wait_committed(running, hashlib.sha256(first).hexdigest())
        account = await running.call("account_get", address=str(recipient))
        faucet = await running.call("account_get", str(FAUCET.address))
        history = await running.call("account_history", str(recipient))
        faucet_history = await running.call("account_history", str(FAUCET.address), 1)
        block = await running.call("chain_getBlock", committed["height"])

    assert pending == {
        "hash": second_hash,
        "status": "pending",
        "height": None,
        "index": None,
        "kind": "transfer",
        "sender": str(FAUCET.address),
        "recipient": str(recipient),
        "nonce": 2,
        "fee": str(FEE),
        "amount": "700",
        "details": {"amount": "700"},
    }
    assert committed == {
        **pending,
        "status": "committed",
        "height": committed["height"],
        "index": committed["index"],
    }
    assert isinstance(committed["height"], int) and committed["height"] >= 1
    assert second_hash in block["txs"] and block["txs"].index(second_hash) == committed["index"]
    assert (first_answer["nonce"], first_answer["amount"]) == (1, "300")
    assert account["balance"] == "1000" and account["nonce"] == 0
    assert faucet["nonce"] == 2 and faucet["balance"] == str(1_000_000 * DCT - 1000 - 2 * FEE)
    # Newest first: nonce 2 is after nonce 1 (a later block, or later in the same block).
    assert [(entry["hash"], entry["nonce"]) for entry in history] == [
        (second_hash, 2),
        (hashlib.sha256(first).hexdigest(), 1),
    ]
    assert history[0] == {key: committed[key] for key in history[0]}
    assert set(history[0]) == set(committed) - {"status"}
    assert [entry["hash"] for entry in faucet_history] == [second_hash]


async def test_refusals_carry_their_codes(running: RunningNode) -> None:
    transfer = sign_tx(FAUCET, CHAIN_ID, 1, FEE, Transfer(bytes(20), 1))
    with trio.fail_after(DEADLINE_S):
        unknown_block = await running.refusal("chain_getBlock", 10**9)
        unknown_tx = await running.refusal("tx_get", "00" * 32)
        unknown_proposal = await running.refusal("gov_get", 99)
        malformed = await running.refusal("tx_submit", "deadbeef")
        wrong_chain = await running.refusal(
            "tx_submit", sign_tx(FAUCET, "another-chain", 1, FEE, Transfer(bytes(20), 1)).hex()
        )
        low_fee = await running.refusal(
            "tx_submit", sign_tx(FAUCET, CHAIN_ID, 1, 1, Transfer(bytes(20), 1)).hex()
        )
        tx_hash = (await running.call("tx_submit", transfer.hex()))["hash"]
        duplicate = await running.refusal("tx_submit", transfer.hex())
        first_copy = await running.call("tx_get", tx_hash)
        head = await running.call("chain_head")
    assert (unknown_block.code, unknown_block.data) == (5201, {"error": "UnknownBlock"})
    assert (unknown_tx.code, unknown_tx.data) == (5202, {"error": "UnknownTx"})
    assert (unknown_proposal.code, unknown_proposal.data) == (2033, {"error": "UnknownProposal"})
    assert malformed.code == 2001 and wrong_chain.code == 2002 and low_fee.code == 2005
    # The copy still pending: already in the mempool (5601). Committed in a block in between
    # (a loaded machine): its nonce is used (2004). Either way refused, with the code that says why.
    if duplicate.code == 2004:
        assert first_copy["status"] == "committed"
    else:
        assert duplicate.code == 5601
    assert head["height"] >= 1  # the node still serves after every refusal


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("chain_getBlock", {"height": "one"}),
        ("chain_getBlock", {"height": -1}),
        ("chain_getBlock", {}),
        # Past what a height can be (2^63 - 1): refused before the store is asked (issue 12).
        ("chain_getBlock", {"height": 2**63}),
        ("chain_getBlock", {"height": str(2**64)}),
        ("chain_getBlock", {"height": 10**40}),
        ("chain_getBlock", {"height": 1.5}),
        ("chain_getBlock", {"height": True}),
        ("chain_getBlock", {"height": None}),
        ("account_get", {"address": "dct1notanaddress"}),
        ("account_history", {"address": str(FAUCET.address), "limit": 0}),
        ("tx_get", {"hash": "00"}),
        ("tx_submit", {"tx": "not hex"}),
        ("gov_get", {"id": 1, "extra": True}),
    ],
)
async def test_wrong_params_are_invalid_params(
    running: RunningNode, method: str, params: dict[str, object]
) -> None:
    with trio.fail_after(DEADLINE_S):
        refused = await running.refusal(method, **params)
    assert refused.code == -32602


# --- what an operator sees ------------------------------------------------------------------------


async def test_a_request_without_the_cookie_is_refused(running: RunningNode) -> None:
    request = {"jsonrpc": "2.0", "method": "node_info", "id": 1}
    with trio.fail_after(DEADLINE_S):
        async with httpx.AsyncClient(timeout=30) as http:
            response = await http.post(running.url, json=request)
    assert response.status_code == 401


async def test_cookie_and_url_files_exist_while_running_and_go_at_exit(running: RunningNode) -> None:
    cookie = running.paths.cookie
    url_file = running.paths.rpc_url
    assert stat.S_IMODE(cookie.stat().st_mode) == 0o600
    assert url_file.read_text().strip() == running.url
    assert running.url.startswith("http://127.0.0.1:") and not running.url.endswith(":0/")
    await running.stop()
    assert not cookie.exists() and not url_file.exists()


async def test_metrics_endpoint_serves_prometheus_text(running: RunningNode) -> None:
    node = running.node
    assert node.metrics_url is not None and node.metrics_url.startswith("http://127.0.0.1:")
    with trio.fail_after(DEADLINE_S):
        height = node.status().height
        async with httpx.AsyncClient(timeout=30) as http:
            response = await http.get(node.metrics_url)
            missing = await http.get(node.metrics_url.replace("/metrics", "/nothing"))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = dict(
        line.rsplit(" ", 1) for line in response.text.splitlines() if line and not line.startswith("#")
    )
    assert int(samples["dcent_height"]) >= height >= 1
    assert samples["dcent_peers"] == "0" and samples["dcent_mempool_txs"] == "0"
    assert samples["dcent_gpu_units"] == "1" and samples["dcent_gpu_units_allocated"] == "0"
    assert "# TYPE dcent_jobs gauge" in response.text
    assert "# TYPE dcent_gpu_utilization gauge" in response.text
    assert missing.status_code == 404


# --- the wiring ---------------------------------------------------------------------------------


async def test_the_served_table_is_the_documented_schema(running: RunningNode) -> None:
    """What ``rpc_methods`` answers over HTTP is the schema ``docs/rpc.md`` is rendered from."""
    with trio.fail_after(DEADLINE_S):
        described = await running.call("rpc_methods")
    documented = [spec.describe() for spec in sorted(NODE_SCHEMA, key=lambda spec: spec.name)]
    assert described == json.loads(json.dumps(documented))


async def test_a_node_not_started_has_no_services(tmp_path: Path) -> None:
    node = Node(make_home(tmp_path, 0, make_genesis(1)), node_config(0))
    for shorthand in ("services", "endpoints", "app", "market", "rpc_url"):
        with pytest.raises(NodeNotStarted):
            getattr(node, shorthand)
    assert not node.started
