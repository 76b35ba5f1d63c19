"""Overload (issue 14) on a 4-validator testnet of processes: far more funded transfers than the
chain can take, submitted at once. The chain keeps committing, the excess is refused at admission
with ``MempoolBusy`` (5605, "busy, retry") or, for a sender's later nonces, ``NonceGap`` (5607),
and every admitted transaction commits: nothing is admitted and then lost."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import trio

from node.rpc.errors import RpcCallError
from protocol.crypto import PrivateKey
from protocol.ledger.tx import Transfer, sign_tx
from protocol.units import DCT
from tests.e2e.framework import TestNetwork

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SENDERS = 32
#: Each sender's transfers: the mempool's per-sender bound, so only admission control refuses.
PER_SENDER = 64
#: The RPC server takes at most 1,000 calls per batch.
BATCH = 1000


def _submit_all(network: TestNetwork, raws: list[bytes]) -> Counter[int]:
    """Submit to node 0 in JSON-RPC batches; count the outcomes (0: admitted, else the code)."""

    async def submit() -> Counter[int]:
        codes: Counter[int] = Counter()
        async with network.client(0) as client:
            for start in range(0, len(raws), BATCH):
                calls: list[tuple[str, dict[str, Any]]] = [
                    ("tx_submit", {"tx": raw.hex()}) for raw in raws[start : start + BATCH]
                ]
                for result in await client.batch(calls):
                    codes[result.code if isinstance(result, RpcCallError) else 0] += 1
        return codes

    return trio.run(submit)


def _nonce(network: TestNetwork, index: int, key: PrivateKey) -> int:
    return int(network.account(index, key.address)["nonce"])


def test_overload_keeps_committing_refuses_the_excess_busy_and_loses_nothing_admitted(
    network: TestNetwork,
) -> None:
    senders = [network.new_key(f"overload-{i}") for i in range(SENDERS)]
    faucet, fee = network.layout.faucet_key(), network.min_fee()
    faucet_nonce = _nonce(network, 0, faucet)
    funding = [
        sign_tx(faucet, network.chain_id, faucet_nonce + 1 + i, fee, Transfer(key.address.raw, 10 * DCT))
        for i, key in enumerate(senders)
    ]
    assert _submit_all(network, funding) == Counter({0: SENDERS})
    network.wait_until(
        lambda: all(_nonce(network, i, faucet) == faucet_nonce + SENDERS for i in network.live()),
        what="every node applied the funding",
    )
    recipient = network.new_key("overload-recipient")
    flood = [
        sign_tx(key, network.chain_id, nonce, fee, Transfer(recipient.address.raw, 1))
        for nonce in range(1, PER_SENDER + 1)
        for key in senders
    ]
    before = network.height(0)
    codes = _submit_all(network, flood)
    assert set(codes) <= {0, 5605, 5607}, codes  # admitted, busy, or a nonce after a busy one
    assert codes[5605] > 0, f"admission control never refused: {codes}"
    admitted = codes[0]
    assert 0 < admitted < len(flood), codes
    # Every admitted transfer commits on every node (each sender's admitted ones are a prefix of
    # its nonces, so its committed nonce counts them), and the chain moved on to do it.
    network.wait_until(
        lambda: all(sum(_nonce(network, i, key) for key in senders) == admitted for i in network.live()),
        what=f"all {admitted} admitted transfers committed on every node",
    )
    for index in network.live():
        assert network.balance(index, recipient.address) == admitted
    assert network.height(0) > before
    # And it still takes new work: a transfer submitted now commits.
    network.send(1, senders[0], Transfer(recipient.address.raw, 1))
