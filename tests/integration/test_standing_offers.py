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


async def test_a_provider_earns_for_standing_then_refuses_a_take_and_is_penalised(tmp_path: Path) -> None:
    from protocol.economics import mul_ratio
    from protocol.ledger.tx import OfferRefused, OfferTake
    from protocol.units import percent

    async with trio.open_nursery() as nursery:
        params = {"challenge_window": 5, "availability_share": percent(5), "epoch_length": 5}
        net = LocalNet(nursery, tmp_path / "net", validators=1, params=params)
        with trio.fail_after(120):
            node = await net.start(0)
            assert node.app is not None
            app = node.app
            await _send(node, FAUCET, Transfer(CHALLENGER.address.raw, DCT))
            offer = await _send(
                node, FAUCET, OfferStand(validator_key(0).public_key.raw, "H100", 2, 1_000, 500, 20 * DCT)
            )
            balance = app.state.balance(FAUCET.address.raw)
            first_payout = (app.state.height // 5 + 2) * 5
            await wait_until(lambda: app.state.height >= first_payout, what=f"height {first_payout}")
            earned = app.state.balance(FAUCET.address.raw) - balance
            assert earned > 0  # standing capacity was paid
            # A taker buys the capacity at its price; the provider never accepts it.
            await _send(node, CHALLENGER, OfferTake(offer, 1, 60))
            deadline = app.state.takes[offer].deadline
            await wait_until(lambda: app.state.height > deadline, what="the take's window passed")
            taker = app.state.balance(CHALLENGER.address.raw)
            collateral = app.state.offers[offer].collateral
            await _send(node, CHALLENGER, OfferRefused(offer))
            slashed = mul_ratio(collateral, app.state.params.availability_slash_share)
            assert app.state.balance(CHALLENGER.address.raw) == taker - FEE + 60 * 1_000 + slashed
            assert app.state.offers[offer].collateral == collateral - slashed
            app.state.check_invariants()
            nursery.cancel_scope.cancel()


async def test_a_take_of_an_offer_quoted_in_a_stable_unit_settles_at_its_take_time_dct_amount(
    tmp_path: Path,
) -> None:
    import dataclasses

    from protocol.contracts import OUTCOME_COMPLETED, UsageReceipt
    from protocol.economics import mul_ratio
    from protocol.ledger.availability import dct_price, quote_price
    from protocol.ledger.genesis import GenesisAsset
    from protocol.ledger.tx import AssetMint, OfferAccept, OfferTake, PoolAdd, PoolSwap, Settle

    window = 10
    async with trio.open_nursery() as nursery:
        # No epoch ends during the test: the provider's balance moves only by what the test does.
        params = {"twap_window": window, "challenge_window": 4 * window, "epoch_length": 1_000}
        net = LocalNet(nursery, tmp_path / "net", validators=1, params=params)
        net.genesis = dataclasses.replace(net.genesis, assets=(GenesisAsset("TUSD", FAUCET.address.raw),))
        with trio.fail_after(180):
            node = await net.start(0)
            assert node.app is not None
            app = node.app
            taker = CHALLENGER
            await _send(node, FAUCET, Transfer(taker.address.raw, 10 * DCT))
            await _send(node, FAUCET, AssetMint("TUSD", FAUCET.address.raw, 1_000 * DCT))
            # 2 TUSD per DCT; the pool must price a whole window before a quoted offer can stand.
            await _send(node, FAUCET, PoolAdd("TUSD", 100 * DCT, 200 * DCT, 1))
            priced = app.state.height + window
            await wait_until(lambda: app.state.height >= priced, what=f"height {priced}")
            # 0.002 TUSD per GPU-second: 0.001 DCT.
            quoted = OfferStand(
                validator_key(0).public_key.raw, "H100", 2, 2 * DCT // 1_000, 500, 20 * DCT, "TUSD"
            )
            offer = await _send(node, FAUCET, quoted)
            expected = dct_price(quoted.price, quote_price(app.state, "TUSD", app.state.height + 1))
            take_hash = await _send(node, taker, OfferTake(offer, 1, 100, max_price=expected))
            fixed = app.state.takes[offer].price
            assert fixed == expected == DCT // 1_000
            # DCT's price in TUSD halves (someone sells DCT into the pool) and the average follows.
            await _send(node, FAUCET, PoolSwap("TUSD", True, 40 * DCT, 1, app.state.height + 20))
            later = app.state.height + window
            await wait_until(lambda: app.state.height >= later, what=f"height {later}")
            now = dct_price(quoted.price, quote_price(app.state, "TUSD", app.state.height + 1))
            assert now > fixed  # a take now would fix more DCT; this one does not move
            await _send(node, FAUCET, OfferAccept(offer))
            escrow = app.state.escrows[take_hash]
            assert (escrow.price_per_gpu_second, escrow.max_cost) == (fixed, 100 * fixed)
            receipt = UsageReceipt(CHAIN_ID, take_hash, OUTCOME_COMPLETED, 60_000, 0, bytes(32), "")
            provider = app.state.balance(FAUCET.address.raw)
            await _send(node, taker, Settle(receipt, receipt.sign(FAUCET), receipt.sign(taker)))
            pay = 60 * fixed
            fee_share = mul_ratio(pay, app.state.params.protocol_fee_share)
            assert app.state.balance(FAUCET.address.raw) == provider + pay - fee_share + escrow.collateral
            app.state.check_invariants()
            nursery.cancel_scope.cancel()
