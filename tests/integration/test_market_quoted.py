"""A provider quoting in a stable unit on the normal market path, over real nodes (libp2p,
consensus, SQLite, the daemon's services): its announcement carries the TUSD price, the
requester's ``job submit`` matches and negotiates it, the escrow fixes the DCT amount from the
DCT/TUSD pool's time-weighted price, a swap moves the pool while the job runs, and the job settles
at the escrow-time DCT amount, to the base unit.

The chain issues nothing and charges no fees, so the contract is the only thing that moves the
requester's and the provider's money.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import trio

from node.daemon import Node
from node.market.records import JobState
from protocol.economics import mul_ratio
from protocol.ledger.availability import dct_price
from protocol.ledger.genesis import GenesisAsset
from protocol.ledger.quoted import current_quote_twap
from protocol.ledger.tx import AssetMint, Msg, PoolAdd, PoolSwap, sign_tx
from protocol.market.jobspec import JobSpec
from protocol.units import DCT
from tests.integration.market_helpers import job, until_state
from tests.integration.node_helpers import CHAIN_ID, FAUCET, LocalNet
from tests.waiting import wait_until

PROVIDER, REQUESTER = 0, 1
WINDOW = 10
#: 2,000,000 TUSD base units per GPU-second: 0.001 DCT while a DCT is worth 2 TUSD.
QUOTED = 2 * DCT // 1_000
FIXED = DCT // 1_000
MARKET: dict[int, dict[str, object]] = {
    PROVIDER: {"simulated_gpus": "1xH100-80GB", "quote": "TUSD", "quote_price_per_gpu_second": QUOTED},
    REQUESTER: {"sell_gpus": False},
}
PARAMS = {"min_fee": 0, "inflation_min": 0, "inflation_max": 0, "twap_window": WINDOW}
ENDED = (JobState.SETTLED, JobState.REFUNDED, JobState.FAILED, JobState.DISPUTED)


async def _send(node: Node, msg: Msg) -> None:
    assert node.app is not None and node.store is not None
    nonce = node.app.state.account(FAUCET.address.raw).nonce + 1
    tx = await node.submit_tx(sign_tx(FAUCET, CHAIN_ID, nonce, 10_000, msg))
    store = node.store
    await wait_until(lambda: store.tx(tx.hash), what=f"{msg.KIND} committed")


def _job_spec() -> JobSpec:
    return JobSpec.from_document(
        {
            "name": "quoted",
            "argv": ["sh", "-c", "sleep 3; echo paid in TUSD"],
            "max_runtime_s": "20s",
            "max_price_per_gpu_second": "0.01 DCT",
            "output_limit_bytes": "1 MiB",
            "resources": {"gpu_count": 1},
        }
    )


async def test_a_job_quoted_in_tusd_settles_at_the_escrow_time_dct_amount(tmp_path: Path) -> None:
    async with trio.open_nursery() as nursery:
        net = LocalNet(nursery, tmp_path / "net", validators=2, market=MARKET, params=PARAMS)
        net.genesis = dataclasses.replace(net.genesis, assets=(GenesisAsset("TUSD", FAUCET.address.raw),))
        with trio.fail_after(240):
            provider, requester = await net.start(PROVIDER), await net.start(REQUESTER)
            assert requester.app is not None and requester.market is not None
            app = requester.app
            await _send(requester, AssetMint("TUSD", FAUCET.address.raw, 1_000 * DCT))
            # 2 TUSD per DCT; quotes have a DCT price once the pool has priced a whole window.
            await _send(requester, PoolAdd("TUSD", 100 * DCT, 200 * DCT, 1))
            await wait_until(
                lambda: current_quote_twap(app.state, "TUSD") == 2 * DCT, what="the pool priced a window"
            )
            provider_key = provider.validator_key.public_key.raw
            assert requester.capacity is not None
            capacity = requester.capacity
            announced = await wait_until(
                lambda: next((a for a in capacity.entries() if a.provider == provider_key), None),
                what="the provider's quoted capacity reached the requester",
            )
            assert (announced.quote, announced.quote_price_per_gpu_second) == ("TUSD", QUOTED)

            requester_address = requester.validator_key.address.raw
            provider_address = provider.validator_key.address.raw
            requester_before = app.state.balance(requester_address)
            provider_before = app.state.balance(provider_address)
            submitted = await requester.market.submit(_job_spec(), max_attempts=1)
            running = await until_state(
                requester, submitted.job_id, JobState.ESCROWED, JobState.RUNNING, *ENDED
            )
            assert running.contract is not None, running.error_message
            terms = running.contract.terms
            assert (terms.quote, terms.quote_price_per_gpu_second) == ("TUSD", QUOTED)
            assert terms.price_per_gpu_second == DCT // 100  # the job's maximum: the signed cap
            contract_hash = terms.contract_hash()
            escrow = await wait_until(lambda: app.state.escrows.get(contract_hash), what="the escrow opened")
            assert (escrow.price_per_gpu_second, escrow.max_cost) == (FIXED, FIXED * terms.max_gpu_seconds)
            assert app.state.balance(requester_address) == requester_before - FIXED * terms.max_gpu_seconds

            # While the job runs, DCT loses value in TUSD (someone sells 100 DCT into the pool):
            # the same quote is now worth more DCT, but this escrow's amount does not move.
            await _send(requester, PoolSwap("TUSD", True, 100 * DCT, 1, app.state.height + 50))
            await wait_until(
                lambda: dct_price(QUOTED, current_quote_twap(app.state, "TUSD") or 1) > FIXED,
                what="the pool's average moved",
            )

            done = await until_state(requester, submitted.job_id, *ENDED, timeout=120)
            assert done.state is JobState.SETTLED, (done.error_code, done.error_message)
            sold = await until_state(provider, "p-" + contract_hash.hex()[:24], *ENDED)
            await requester.wait_for_height(max(done.settled_height, sold.settled_height))
            assert done.receipt is not None
            pay = -(-done.receipt.gpu_ms * FIXED // 1000)
            fee_share = mul_ratio(pay, app.state.params.protocol_fee_share)
            assert app.state.balance(requester_address) == requester_before - pay
            assert app.state.balance(provider_address) == provider_before + pay - fee_share
            assert done.escrow_price == FIXED and done.cost() == pay
            assert job(requester, submitted.job_id).to_json()["quote"] == {
                "asset": "TUSD",
                "price_per_gpu_second": str(QUOTED),
                "max_dct_price_per_gpu_second": str(DCT // 100),
            }
            # The requester's transaction history shows the escrow at the fixed amount, not the cap.
            assert requester.store is not None
            indexed = await trio.to_thread.run_sync(requester.store.contract, contract_hash)
            assert indexed is not None
            assert (indexed.price_per_gpu_second, indexed.max_cost) == (FIXED, FIXED * terms.max_gpu_seconds)
            app.state.check_invariants()
            nursery.cancel_scope.cancel()
