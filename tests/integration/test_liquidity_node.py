"""The liquidity pool and liquidity mining on a real node (libp2p, consensus, SQLite): a stable
unit registered at genesis and minted by its issuer, liquidity added, a swap within its limit,
pool shares bonded to mining, and the epoch's mining reward paid to the bonder."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import trio

from node.daemon import Node
from protocol.crypto import PrivateKey
from protocol.ledger.genesis import GenesisAsset
from protocol.ledger.liquidity_state import share_denom
from protocol.ledger.pool import holding, swap_out
from protocol.ledger.tx import AssetMint, MiningBond, Msg, PoolAdd, PoolSwap, Transfer, sign_tx
from protocol.units import DCT, percent
from tests.integration.node_helpers import CHAIN_ID, FAUCET, LocalNet
from tests.waiting import wait_until

FEE = 10_000
TRADER = PrivateKey.from_label("itest-trader")


async def _send(node: Node, key: PrivateKey, msg: Msg) -> int:
    assert node.app is not None and node.store is not None
    nonce = node.app.state.account(key.address.raw).nonce + 1
    tx = await node.submit_tx(sign_tx(key, CHAIN_ID, nonce, FEE, msg))
    store = node.store
    indexed = await wait_until(lambda: store.tx(tx.hash), what=f"{msg.KIND} committed")
    return int(indexed.height)


async def test_add_swap_bond_and_collect_mining_rewards_on_a_node(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        net = LocalNet(
            nursery,
            tmp_path / "net",
            validators=1,
            params={"liquidity_mining_share": percent(5), "epoch_length": 5},
        )
        net.genesis = dataclasses.replace(net.genesis, assets=(GenesisAsset("TUSD", FAUCET.address.raw),))
        with trio.fail_after(120):
            node = await net.start(0)
            assert node.app is not None
            app = node.app
            faucet, trader = FAUCET.address.raw, TRADER.address.raw
            await _send(node, FAUCET, Transfer(trader, 10 * DCT))
            await _send(node, FAUCET, AssetMint("TUSD", faucet, 1_000 * DCT))
            await _send(node, FAUCET, AssetMint("TUSD", trader, 10 * DCT))
            await _send(node, FAUCET, PoolAdd("TUSD", 100 * DCT, 200 * DCT, 1))
            pool = app.state.pools["TUSD"]
            quote = swap_out(pool.dct, pool.asset, DCT, app.state.params.pool_swap_fee)
            await _send(node, TRADER, PoolSwap("TUSD", True, DCT, quote, app.state.height + 20))
            assert holding(app.state, trader, "TUSD") == 10 * DCT + quote
            shares = holding(app.state, faucet, share_denom("TUSD"))
            bonded_at = await _send(node, FAUCET, MiningBond("TUSD", shares))
            balance = app.state.balance(faucet)
            payout = (bonded_at // 5 + 2) * 5  # the first epoch end with bonded blocks behind it
            await wait_until(lambda: app.state.height >= payout, what=f"height {payout}")
            assert app.state.balance(faucet) > balance  # only mining rewards reach it now
            assert app.state.vars["mining_pool"] < app.state.vars["minted"]
            app.state.check_invariants()
            nursery.cancel_scope.cancel()
