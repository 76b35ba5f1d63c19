"""Each transaction's signature is verified once per node (issue 14): the mempool's verified-hash
cache vouches for it at block execution on every validator that admitted it, whether it came by
RPC or by relay. Four in-process validators over libp2p and SQLite.

Two validators start first (half the stake: no quorum, so no block yet); transactions submitted
to node 0 reach node 1 by relay; then the other two start and the chain commits them. On nodes 0
(RPC) and 1 (relay), every ``was_verified`` question the ledger asks about those transactions,
building or checking a block, is answered yes: the ledger re-verifies none of them.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest
import trio

from node.services.mempool import Mempool
from protocol.crypto import PrivateKey
from protocol.ledger.tx import Transfer, Tx, sign_tx
from tests.integration.node_helpers import CHAIN_ID, FAUCET, LocalNet, wait_until

TXS = 60
FEE = 10_000


async def test_signatures_admitted_by_rpc_or_relay_are_not_verified_again_in_blocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers: dict[int, list[tuple[bytes, bool]]] = defaultdict(list)
    vouch = Mempool.was_verified

    def recording(self: Mempool, tx: Tx) -> bool:
        answer = vouch(self, tx)
        answers[id(self)].append((tx.hash, answer))
        return answer

    monkeypatch.setattr(Mempool, "was_verified", recording)
    recipient = PrivateKey.from_label("itest-once").address.raw
    raws = [sign_tx(FAUCET, CHAIN_ID, nonce, FEE, Transfer(recipient, nonce)) for nonce in range(1, TXS + 1)]
    with trio.fail_after(180):
        async with trio.open_nursery() as nursery:
            net = LocalNet(nursery, tmp_path, validators=4)
            first = [await net.start(0), await net.start(1)]
            await wait_until(lambda: first[0].host.peer_ids(), what="nodes 0 and 1 connected")
            hashes = {(await first[0].submit_tx(raw)).hash for raw in raws}
            await wait_until(
                lambda: len(first[1].mempool) == TXS, what="node 1 holds every transaction by relay"
            )
            assert all(node.app is not None and node.app.height == 0 for node in first)  # no quorum yet
            nodes = [*first, await net.start(2), await net.start(3)]
            total = sum(range(1, TXS + 1))
            await wait_until(
                lambda: all(
                    node.app is not None and node.app.state.balance(recipient) == total for node in nodes
                ),
                what="every transaction committed on every node",
                timeout=120,
            )
            for index in (0, 1):
                asked = [(h, ok) for h, ok in answers[id(nodes[index].mempool)] if h in hashes]
                assert {h for h, _ in asked} == hashes, f"node {index} executed every one"
                assert all(ok for _, ok in asked), f"node {index} re-verified a signature it had checked"
            nursery.cancel_scope.cancel()
