"""Issue 17 end to end on a testnet of real node processes: the faucet's stable unit (TUSD) is
minted, a liquidity provider seeds the DCT/TUSD pool and bonds its shares to liquidity mining and
is paid; a trader swaps within a limit from the node's quote; a provider posts a standing offer
quoted in TUSD and served by node 0, whose availability responder answers a challenge on its own;
`dcent market offers` shows it with its guaranteed DCT price; a take fixes that price, is accepted
and settled at it; a second take the provider lets pass is refunded with a slash."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from protocol.contracts import OUTCOME_COMPLETED, UsageReceipt
from protocol.crypto import Address, PrivateKey
from protocol.ledger.tx import (
    AssetMint,
    MiningBond,
    Msg,
    OfferAccept,
    OfferChallenge,
    OfferRefused,
    OfferStand,
    OfferTake,
    PoolAdd,
    PoolSwap,
    Settle,
)
from protocol.units import DCT, percent
from tests.e2e.framework import E2E_PARAMS, TestNetwork

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
WINDOW = 10
PARAMS = dataclasses.replace(
    E2E_PARAMS,
    liquidity_mining_share=percent(5),
    availability_share=percent(5),
    epoch_length=10,
    twap_window=WINDOW,
    challenge_window=15,
)
NETWORK = {"nodes": 2, "params": PARAMS}


def dcent_json(network: TestNetwork, *args: str) -> Any:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "node.cli.main",
            *args,
            "--home",
            str(network.node(0).home),
            "--output",
            "json",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def sent(network: TestNetwork, key: PrivateKey, msg: Msg) -> str:
    """Submit to node 0 and wait for the commit; the transaction's hash (hex)."""
    tx_hash = network.submit(0, key, msg)
    network.wait_committed(0, tx_hash)
    return tx_hash


def holding(network: TestNetwork, address: Address, denom: str) -> int:
    for entry in network.call(0, "account_holdings", address=str(address)):
        if entry["denom"] == denom:
            return int(entry["amount"])
    return 0


def test_asset_pool_swap_mining_and_a_standing_offer_quoted_in_the_stable_unit(network: TestNetwork) -> None:
    faucet = network.layout.faucet_key()
    lp, trader, provider = network.new_key("lp"), network.new_key("trader"), network.new_key("provider")
    for key in (lp, trader, provider):
        network.faucet(key.address, 200 * DCT)
    network.send(0, faucet, AssetMint("TUSD", lp.address.raw, 200 * DCT))
    network.send(0, faucet, AssetMint("TUSD", trader.address.raw, 10 * DCT))

    # The pool, a swap within the node's quote less 1%, shares bonded to mining.
    network.send(0, lp, PoolAdd("TUSD", 100 * DCT, 200 * DCT, 1))
    created = network.height(0)
    quote = network.call(0, "pool_quote", symbol="TUSD", sell_dct=True, amount=str(DCT))
    limit = int(quote["out"]) * 99 // 100
    network.send(0, trader, PoolSwap("TUSD", True, DCT, limit, network.height(0) + 20))
    assert holding(network, trader.address, "TUSD") >= 10 * DCT + limit
    shares = holding(network, lp.address, "lp:TUSD")
    network.send(0, lp, MiningBond("TUSD", shares))
    bonded = network.balance(0, lp.address)
    payout = (network.height(0) // 10 + 2) * 10
    network.wait_for_height(payout + 1, nodes=[0])
    assert network.balance(0, lp.address) > bonded  # only mining rewards reach it now

    # A standing offer quoted in TUSD: 0.002 TUSD per GPU-second, about 0.001 DCT.
    network.wait_for_height(created + WINDOW + 1, nodes=[0])
    node_key = network.validator_key(0).public_key.raw
    stand = OfferStand(node_key, "H100", 2, 2 * DCT // 1_000, 2_000, 20 * DCT, "TUSD")
    offer = sent(network, provider, stand)
    listed = [
        o for o in dcent_json(network, "market", "offers", "--source", "standing") if o["offer"] == offer
    ]
    assert len(listed) == 1 and listed[0]["guaranteed"] and listed[0]["quote"] == "TUSD"
    shown = int(listed[0]["price_per_gpu_second"])
    assert DCT // 1_000 * 9 // 10 < shown < DCT // 1_000 * 11 // 10

    # Anyone may challenge; node 0's responder answers within the window by itself.
    network.send(0, trader, OfferChallenge(bytes.fromhex(offer)))
    network.wait_until(
        lambda: network.call(0, "offer_get", offer=offer)["challenge"] is None, what="node 0 answered"
    )

    # A take fixes the DCT price; accepted and settled at it.
    take = sent(network, trader, OfferTake(bytes.fromhex(offer), 1, 100, max_price=shown * 101 // 100))
    fixed = int(network.call(0, "offer_get", offer=offer)["take"]["price_per_gpu_second"])
    assert fixed <= shown * 101 // 100
    network.send(0, provider, OfferAccept(bytes.fromhex(offer)))
    receipt = UsageReceipt(network.chain_id, bytes.fromhex(take), OUTCOME_COMPLETED, 60_000, 0, bytes(32), "")
    before = network.balance(0, trader.address)
    network.send(0, trader, Settle(receipt, receipt.sign(provider), receipt.sign(trader)))
    fee = network.min_fee(0)
    assert network.balance(0, trader.address) == before - fee + (100 - 60) * fixed  # the unused part back

    # A second take the provider lets pass: refunded with a slash of the collateral.
    network.send(0, trader, OfferTake(bytes.fromhex(offer), 1, 10))
    pending = network.call(0, "offer_get", offer=offer)
    deadline, cost = pending["take"]["deadline"], int(pending["take"]["max_cost"])
    collateral = int(pending["collateral"])
    network.wait_for_height(deadline + 1, nodes=[0])
    before = network.balance(0, trader.address)
    refused_at = int(network.send(0, trader, OfferRefused(bytes.fromhex(offer)))["height"])
    after = network.call(0, "offer_get", offer=offer)
    read_by = network.height(0)
    slashed = collateral - int(after["collateral"])
    # The forfeit zeroes the offer's weight for the epoch it happened in; the epoch's payout
    # clears it, so it is still set unless an epoch ended between the refusal and the read. The
    # payout runs at the end of a block whose height is a multiple of the epoch length, after that
    # block's transactions: the refusal's own block counts.
    epoch_ended = read_by // PARAMS.epoch_length > (refused_at - 1) // PARAMS.epoch_length
    assert slashed > 0 and (after["forfeited"] or epoch_ended)
    assert network.balance(0, trader.address) == before - fee + cost + slashed
