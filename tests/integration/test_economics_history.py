"""`dcent economics status / history / plot` on a real two-validator network (libp2p, SQLite,
consensus, JSON-RPC), and the history checked block by block against the ledger itself.

The network carries transfers, a stake and an unstake, a governance deposit, a contract settled
with both signatures and one claimed and finalized after its window. Then the test replays the
stored blocks from genesis with ``apply_block`` and compares every block's recorded figures with
the replayed ledger's totals and block results, and the recorded pay with the protocol fee the
ledger credited to the provider's epoch work; both nodes recorded the same history. Finally a node restarted
on a database that lost part of its records (one written before they existed) fills them in again.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import trio

from node.cli.economics_node import dct_text, pct_text
from node.cli.main import main
from node.daemon import Node
from node.rpc.client import RpcClient
from node.rpc.errors import RpcCallError
from protocol.consensus.ledger_app import block_context
from protocol.consensus.messages import Block
from protocol.contracts import OUTCOME_COMPLETED, ContractTerms, SignedContract, UsageReceipt
from protocol.crypto import PrivateKey
from protocol.economics import mul_ratio
from protocol.ledger.block import apply_block
from protocol.ledger.genesis import genesis_state
from protocol.ledger.state import LedgerState
from protocol.ledger.tx import (
    EscrowClaim,
    EscrowFinalize,
    GovPropose,
    Msg,
    OpenEscrow,
    Settle,
    Stake,
    Transfer,
    Unstake,
    sign_tx,
)
from protocol.units import DCT
from tests.integration.node_helpers import CHAIN_ID, FAUCET, LocalNet, validator_key
from tests.waiting import wait_until

DEADLINE_S = 180
FEE = 10_000
PROVIDER = validator_key(1)
SETTLED = (7_000, 30)  # price per GPU-second, GPU-seconds
CLAIMED = (3_000, 12)


async def rpc(node: Node, method: str, **params: object) -> Any:
    assert node.rpc_url is not None
    async with RpcClient.for_home(node.paths.root, node.rpc_url) as client:
        return await client.call(method, **params)


class Sender:
    """Signs with consecutive nonces and waits for each transaction's block."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.nonces: dict[bytes, int] = {}

    async def send(self, key: PrivateKey, msg: Msg, fee: int = FEE) -> int:
        address = key.address.raw
        assert self.node.app is not None
        nonce = self.nonces.get(address, self.node.app.state.account(address).nonce) + 1
        self.nonces[address] = nonce
        tx = await self.node.submit_tx(sign_tx(key, CHAIN_ID, nonce, fee, msg))
        store = self.node.store
        assert store is not None
        indexed = await wait_until(lambda: store.tx(tx.hash), what=f"{msg.KIND} committed")
        return indexed.height

    def height(self) -> int:
        assert self.node.driver is not None
        return self.node.driver.height


def contract(price: int, seconds: int, deadline: int, salt: bytes) -> ContractTerms:
    return ContractTerms(
        chain_id=CHAIN_ID,
        requester=FAUCET.public_key.raw,
        provider=PROVIDER.public_key.raw,
        job_hash=bytes(32),
        gpu_uuids=("GPU-SIM-econ",),
        price_per_gpu_second=price,
        max_gpu_seconds=seconds,
        collateral=DCT,
        deadline_height=deadline,
        salt=salt,
    )


def signed(terms: ContractTerms) -> SignedContract:
    return SignedContract(terms, terms.sign(FAUCET), terms.sign(PROVIDER))


def receipt(terms: ContractTerms) -> UsageReceipt:
    return UsageReceipt(
        CHAIN_ID, terms.contract_hash(), OUTCOME_COMPLETED, terms.max_gpu_seconds * 1000, 0, bytes(32)
    )


async def drive_the_economy(sender: Sender) -> int:
    """Every kind of economic event the history records; returns the last block with one."""
    await sender.send(FAUCET, Transfer(PROVIDER.address.raw, 50 * DCT))
    await sender.send(validator_key(0), Stake(20 * DCT))
    await sender.send(FAUCET, GovPropose(param="fee_burn_share", value=60 * 10**16, deposit=10 * DCT))
    settled = contract(*SETTLED, deadline=sender.height() + 200, salt=b"settled")
    await sender.send(FAUCET, OpenEscrow(signed(settled)))
    paid = receipt(settled)
    await sender.send(PROVIDER, Settle(paid, paid.sign(PROVIDER), paid.sign(FAUCET)))
    claimed = contract(*CLAIMED, deadline=sender.height() + 200, salt=b"claimed")
    await sender.send(FAUCET, OpenEscrow(signed(claimed)))
    claim = receipt(claimed)
    claimed_at = await sender.send(PROVIDER, EscrowClaim(claim, claim.sign(PROVIDER)))
    node = sender.node
    await wait_until(lambda: sender.height() > claimed_at + 2, what="the dispute window passed")
    await sender.send(PROVIDER, EscrowFinalize(claimed.contract_hash()))
    return await sender.send(validator_key(0), Unstake(5 * DCT), fee=3 * FEE) if node else 0


def epoch_work(state: LedgerState) -> int:
    return sum(seconds for _, seconds in state.epoch_work.sorted_items())


def replay_and_compare(net: LocalNet, node: Node, records: list[dict[str, Any]]) -> None:
    """Replay the node's stored blocks from genesis; each record must match the ledger."""
    store = node.store
    assert store is not None
    state = genesis_state(net.genesis)
    for record in records:
        stored = store.block(record["height"])
        assert stored is not None
        block = Block.decode(stored.block)
        work_before = epoch_work(state)
        result = apply_block(state, block_context(block), block.txs)
        assert result.state_hash == stored.state_hash
        v = state.vars
        expected = {
            "height": state.height,
            "time_ms": block.time_ms,
            "txs": len(block.txs),
            "supply": str(state.total_supply()),
            "minted": str(v["minted"]),
            "burned": str(v["burned"]),
            "bonded": str(v["total_bonded"]),
            "unbonding": str(v["total_unbonding"]),
            "escrowed": str(v["total_escrowed"]),
            "deposits": str(v["total_deposits"]),
            "community_pool": str(v["community_pool"]),
            "provider_pool": str(v["provider_pool"]),
            "inflation": str(v["inflation"]),
            "issued": str(result.minted),
            "burned_in_block": str(result.burned),
            "fees": str(result.fees),
            "validator_rewards": str(sum(reward for _, reward in result.validator_rewards)),
            "provider_rewards": str(sum(reward for _, reward in result.provider_rewards)),
        }
        assert {key: record[key] for key in expected} == expected, f"block {state.height}"
        assert int(record["supply"]) == v["genesis_supply"] + v["minted"] - v["burned"]
        if not result.provider_rewards and record["settlements"] <= 1:
            # The ledger credits each settlement's burned protocol fee to its provider's epoch
            # work (an epoch payout clears it): the record's pay must burn exactly that.
            burned_fee = mul_ratio(int(record["paid"]), state.params.protocol_fee_share)
            assert epoch_work(state) - work_before == burned_fee, f"block {state.height}"


async def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = await trio.to_thread.run_sync(main, ["economics", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


async def test_history_agrees_with_the_ledger_block_by_block_and_the_cli_shows_it(
    nursery: trio.Nursery, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    net = LocalNet(
        nursery, tmp_path / "net", validators=2, params={"epoch_length": 5, "dispute_window_blocks": 2}
    )
    with trio.fail_after(DEADLINE_S):
        first = await net.start(0)
        second = await net.start(1)
        await wait_until(lambda: first.host.peer_id in second.host.peer_ids(), what="the nodes connected")
        last = await drive_the_economy(Sender(first))
        # Past the next epoch's end, so the provider pool pays out the settled work.
        end = (last // 5 + 2) * 5
        await wait_until(lambda: min(first.driver.height, second.driver.height) >= end, what="past an epoch")  # type: ignore[union-attr]
        history = await rpc(first, "economics_history", from_height=1, to_height=end, limit=5_000)
        other = await rpc(second, "economics_history", from_height=1, to_height=end, limit=5_000)
    records = history["records"]
    assert [record["height"] for record in records] == list(range(1, end + 1))
    assert history["next"] is None
    assert other["records"] == records  # every replica records the same economy
    replay_and_compare(net, first, records)
    settled = [(record["gpu_seconds"], int(record["paid"])) for record in records if record["gpu_seconds"]]
    assert settled == [(SETTLED[1], SETTLED[0] * SETTLED[1]), (CLAIMED[1], CLAIMED[0] * CLAIMED[1])]
    assert [r["price_per_gpu_second"] for r in records if r["gpu_seconds"]] == [
        str(SETTLED[0]),
        str(CLAIMED[0]),
    ]
    assert any(int(record["provider_rewards"]) > 0 for record in records)
    assert any(int(record["deposits"]) > 0 for record in records)
    assert any(int(record["unbonding"]) > 0 for record in records)

    home = str(first.paths.root)
    with trio.fail_after(DEADLINE_S):
        # Paging: a small page size on the node's side still returns every block once.
        paged = await rpc(first, "economics_history", from_height=2, to_height=9, limit=3)
        assert [r["height"] for r in paged["records"]] == [2, 3, 4] and paged["next"] == 5
        code, out, err = await cli(capsys, "history", "--home", home, "--to", str(end), "--format", "json")
        assert code == 0, err
        rows = json.loads(out)
        assert [row["height"] for row in rows] == list(range(1, end + 1))
        for row, record in zip(rows, records, strict=True):
            assert row["supply_dct"] == dct_text(record["supply"])
            assert row["inflation_pct"] == pct_text(record["inflation"])
            assert row["gpu_seconds"] == record["gpu_seconds"]
        code, out, err = await cli(capsys, "history", "--home", home, "--from", "3", "--to", "5")
        assert code == 0, err
        lines = out.splitlines()
        assert lines[0].startswith("height,time_ms,txs,supply_dct,") and len(lines) == 4
        assert lines[1].startswith("3,")

        code, out, err = await cli(capsys, "status", "--home", home, "--output", "json", "--window", "100000")
        assert code == 0, err
        status = json.loads(out)
        assert first.app is not None
        state = first.app.state
        assert status["height"] >= end
        assert status["goal_bonded_pct"] == "67.0000" and status["fee_burn_share_pct"] == "50.0000"
        assert status["window_gpu_seconds"] == SETTLED[1] + CLAIMED[1]
        assert status["price_per_gpu_hour_dct"] is not None and status["provider_earnings_per_gpu_hour_dct"]
        assert float(status["staking_apr_pct"]) > 0 and "supply_dct" in status
        assert state.vars["genesis_supply"] <= int(status["supply_dct"].split(".")[0]) * DCT + DCT
        code, out, err = await cli(capsys, "status", "--home", home)
        assert code == 0, err
        assert "staking APR" in out and "% of supply (goal 67.0000%)" in out and "DCT" in out

        charts = tmp_path / "charts"
        code, out, err = await cli(capsys, "plot", "--home", home, "--out", str(charts), "--output", "json")
        assert code == 0, err
        written = json.loads(out)["files"]
        assert {Path(path).name for path in written} >= {"supply.png", "gpu_price.png", "overview.png"}
        assert all(Path(path).read_bytes().startswith(b"\x89PNG") for path in written)

        code, out, err = await cli(capsys, "history", "--home", home, "--from", "9", "--to", "3")
        assert code == 1 and "error" in err
        # Heights beyond 64 bits are the caller's mistake (-32602), not a crash in SQLite.
        with pytest.raises(RpcCallError) as refused:
            await rpc(first, "economics_history", from_height=2**70)
        assert refused.value.code == -32602
        beyond = await rpc(first, "economics_history", from_height=2**63 - 1)
        assert beyond["records"] == [] and beyond["next"] is None

    # A database whose records stop part-way (written before they existed) is filled in at start.
    with trio.fail_after(DEADLINE_S):
        # Node 1 first: without it node 0 commits nothing more, so its store holds still.
        net.stop(1)
        stopped = net.stop(0)
        with sqlite3.connect(stopped.paths.chain_db) as db:
            db.execute("DELETE FROM economics WHERE height >= 2")
        restarted = await net.start(0)
        again = await rpc(restarted, "economics_history", from_height=1, to_height=end, limit=5_000)
    assert again["records"] == records
