"""Standing offers on a real node (libp2p, consensus, SQLite, the daemon's services): a provider
posts an offer served by the node, a stranger challenges it, and the node's availability
responder answers on its own within the window; the challenger's deposit pays the provider."""

from __future__ import annotations

from pathlib import Path

import trio

from node.daemon import Node
from protocol.crypto import PrivateKey
from protocol.ledger.tx import Msg, OfferChallenge, OfferStand, Transfer, sign_tx
from protocol.units import DCT
from tests.integration.node_helpers import CHAIN_ID, FAUCET, LocalNet, validator_key
from tests.waiting import wait_until

FEE = 10_000
CHALLENGER = PrivateKey.from_label("itest-challenger")


async def _send(node: Node, key: PrivateKey, msg: Msg) -> bytes:
    assert node.app is not None and node.store is not None
    nonce = node.app.state.account(key.address.raw).nonce + 1
    tx = await node.submit_tx(sign_tx(key, CHAIN_ID, nonce, FEE, msg))
    store = node.store
    await wait_until(lambda: store.tx(tx.hash), what=f"{msg.KIND} committed")
    return tx.hash


async def test_the_node_answers_a_challenge_of_the_offer_it_serves(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        net = LocalNet(nursery, tmp_path / "net", validators=1, params={"challenge_window": 20})
        with trio.fail_after(120):
            node = await net.start(0)
            assert node.app is not None and node.availability is not None
            served_by = validator_key(0).public_key.raw
            await _send(node, FAUCET, Transfer(CHALLENGER.address.raw, DCT))
            offer = await _send(node, FAUCET, OfferStand(served_by, "H100", 1, 1_000, 500, 20 * DCT))
            provider_before = node.app.state.balance(FAUCET.address.raw)
            await _send(node, CHALLENGER, OfferChallenge(offer))
            state = node.app
            await wait_until(
                lambda: not state.state.offers[offer].seed, what="the node answered the challenge"
            )
            responder = node.availability
            # The lane reports the answer once it saw the block that included it.
            await wait_until(
                lambda: responder.answers_sent == 1, what="the responder saw its answer included"
            )
            deposit = node.app.state.params.challenge_deposit
            assert node.app.state.balance(FAUCET.address.raw) == provider_before + deposit
            node.app.state.check_invariants()
            nursery.cancel_scope.cancel()
