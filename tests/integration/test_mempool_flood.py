"""The mempool floods of issues 12 and 14 against real nodes: four in-process validators over
libp2p and SQLite, the floods submitted over JSON-RPC in batches.

- 20,000 transfers from 313 unfunded keys: every one refused at submit with a typed code, none
  relayed to another node, while a funded transfer at a higher fee commits within a few blocks;
- a funded flood at the minimum fee beyond admission control: the excess is refused as busy
  (5605), a funded transfer paying more per byte still gets in and commits within a few blocks,
  and every admitted transaction that was not evicted commits (nothing stalls).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import trio

from node.daemon import Node
from node.rpc.client import RpcClient
from node.rpc.errors import RpcCallError
from node.services.mempool import Mempool, MempoolSettings
from protocol.crypto import PrivateKey
from protocol.ledger.genesis import dev_genesis
from protocol.ledger.params import Params
from protocol.ledger.tx import Transfer, Tx, sign_tx
from protocol.units import DCT
from tests.integration.node_helpers import CHAIN_ID, FAUCET, LocalNet, validator_key, wait_until

FEE = 10_000
BATCH = 500
#: "Within a few blocks" of being submitted.
FEW_BLOCKS = 6


def _client(node: Node) -> RpcClient:
    assert node.rpc_url is not None
    return RpcClient.for_home(node.paths.root, node.rpc_url, timeout_s=120)


def _count_admissions(node: Node, senders: set[bytes]) -> Counter[str]:
    """Count, on ``node``, every admission of a transaction from ``senders`` (RPC and relay both
    go through ``mempool.add``)."""
    attempts: Counter[str] = Counter()
    pool = node.mempool
    admit = pool.add

    def counting(raw: bytes, state, *, local: bool = False) -> Tx:  # type: ignore[no-untyped-def]
        tx = admit(raw, state, local=local)
        if tx.sender in senders:
            attempts["admitted"] += 1
        return tx

    pool.add = counting  # type: ignore[method-assign]
    return attempts


async def _submit_all(client: RpcClient, raws: list[bytes]) -> Counter[int]:
    """Submit in JSON-RPC batches; the codes of the refusals (0 for an admission)."""
    codes: Counter[int] = Counter()
    for start in range(0, len(raws), BATCH):
        answers = await client.batch(
            [("tx_submit", {"tx": raw.hex()}) for raw in raws[start : start + BATCH]]
        )
        for answer in answers:
            codes[answer.code if isinstance(answer, RpcCallError) else 0] += 1
    return codes


async def _committed_within(nodes: list[Node], recipient: bytes, amount: int, submitted_at: int) -> int:
    """Watch, while the flood is still being submitted (the chain goes on meanwhile: a batch no
    longer holds the event loop), for the height at which every node has the transfer."""

    def landed() -> int:
        heights = [
            n.app.height for n in nodes if n.app is not None and n.app.state.balance(recipient) == amount
        ]
        return min(heights) if len(heights) == len(nodes) else 0

    height = await wait_until(landed, what="the funded transfer is committed on every node", timeout=90)
    assert height <= submitted_at + FEW_BLOCKS, f"committed at {height}, submitted at {submitted_at}"
    return height


async def test_unfunded_flood_is_refused_at_submit_never_relayed_and_a_funded_transfer_commits(
    tmp_path: Path,
) -> None:
    flood_keys = [PrivateKey.from_label(f"itest-flood-{i}") for i in range(313)]
    flood = [
        sign_tx(flood_keys[i % 313], CHAIN_ID, i // 313 + 1, FEE, Transfer(bytes(20), 1))
        for i in range(20_000)
    ]
    senders = {key.address.raw for key in flood_keys}
    recipient = PrivateKey.from_label("itest-flood-recipient").address.raw
    with trio.fail_after(300):
        async with trio.open_nursery() as nursery:
            net = LocalNet(nursery, tmp_path, validators=4)
            nodes = [await net.start(i) for i in range(4)]
            admissions = [_count_admissions(node, senders) for node in nodes]
            await nodes[0].wait_for_height(1)
            codes: Counter[int] = Counter()
            async with _client(nodes[0]) as client:
                codes += await _submit_all(client, flood[:BATCH])
                # The funded transfer arrives with the flood under way, at 100x the fee.
                funded = sign_tx(FAUCET, CHAIN_ID, 1, 100 * FEE, Transfer(recipient, 5 * DCT))
                await client.call("tx_submit", tx=funded.hex())
                submitted_at = nodes[0].app.height  # type: ignore[union-attr]
                async with trio.open_nursery() as flooding:
                    flooding.start_soon(_committed_within, nodes, recipient, 5 * DCT, submitted_at)
                    codes += await _submit_all(client, flood[BATCH:])
            # Every flood transaction was refused with the ledger's or the mempool's code: nonce 1
            # cannot pay, later nonces skip it. Nothing was admitted, so nothing was relayed.
            assert codes == Counter({2006: 313, 5607: 20_000 - 313}), codes
            assert all(counter["admitted"] == 0 for counter in admissions)
            assert all(not node.mempool.waiting(sender) for node in nodes for sender in senders)
            nursery.cancel_scope.cancel()


async def test_funded_flood_beyond_admission_control_is_refused_busy_and_a_richer_transfer_commits(
    tmp_path: Path,
) -> None:
    cheap_keys = [PrivateKey.from_label(f"itest-cheap-{i}") for i in range(40)]
    recipient = PrivateKey.from_label("itest-busy-recipient").address.raw
    rich_recipient = PrivateKey.from_label("itest-busy-rich-recipient").address.raw
    with trio.fail_after(300):
        async with trio.open_nursery() as nursery:
            net = LocalNet(nursery, tmp_path, validators=4)
            net.genesis = dev_genesis(
                CHAIN_ID,
                [(validator_key(i).public_key.raw, 100 * DCT) for i in range(4)],
                [(FAUCET.address.raw, 1_000_000 * DCT)] + [(key.address.raw, 10 * DCT) for key in cheap_keys],
                Params(unbonding_period=5, gov_voting_period=5),
            )
            nodes = [await net.start(i) for i in range(4)]
            for node in nodes:  # what the lead wires from [consensus] max_block_txs, made small here
                node.mempool.settings = MempoolSettings(max_block_txs=100, busy_blocks=2)
            assert isinstance(nodes[0].mempool, Mempool) and nodes[0].mempool.busy_limit == 200
            await nodes[0].wait_for_height(1)
            # 40 senders x 40 nonces at the minimum fee, each sender's nonces in order.
            cheap = [
                sign_tx(key, CHAIN_ID, nonce, FEE, Transfer(recipient, 1))
                for nonce in range(1, 41)
                for key in cheap_keys
            ]
            async with _client(nodes[0]) as client:
                codes = await _submit_all(client, cheap[:BATCH])
                rich = sign_tx(FAUCET, CHAIN_ID, 1, 100 * FEE, Transfer(rich_recipient, 7 * DCT))
                await client.call("tx_submit", tx=rich.hex())
                submitted_at = nodes[0].app.height  # type: ignore[union-attr]
                async with trio.open_nursery() as flooding:
                    flooding.start_soon(_committed_within, nodes, rich_recipient, 7 * DCT, submitted_at)
                    codes += await _submit_all(client, cheap[BATCH:])
            assert codes[5605] > 0, f"admission control never refused: {codes}"
            assert codes[0] >= nodes[0].mempool.busy_limit, codes  # it did fill up first
            assert set(codes) <= {0, 5605, 5607}, codes  # busy, or a nonce after a busy one
            # Nothing stalls: every node's pool drains, and all agree on the result.
            await wait_until(
                lambda: all(len(node.mempool) == 0 for node in nodes),
                what="every mempool drained",
                timeout=90,
            )
            # Eviction is local: the cheap transaction the rich one pushed out of node 0 may still
            # commit from another node's pool. Every other admitted one commits.
            admitted, evicted = codes[0], nodes[0].mempool.stats().evicted
            target = max(node.app.height for node in nodes) + 1  # type: ignore[union-attr]
            for node in nodes:
                await node.wait_for_height(target)
            balances = {node.app.state.balance(recipient) for node in nodes}  # type: ignore[union-attr]
            assert len(balances) == 1
            received = balances.pop()
            assert admitted - evicted <= received <= admitted, (admitted, evicted, received, codes)
            nursery.cancel_scope.cancel()
