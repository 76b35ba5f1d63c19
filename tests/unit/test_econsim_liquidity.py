"""The economics simulator with the pool and both mining programmes, against the real ledger.

With the liquidity shares of issuance on and nothing bonded or standing, both shares stay with the
community pool. With a DCT/TUSD pool, shares bonded to liquidity mining (then partly unbonded)
and a standing offer challenged, answered and taken, they go to their pots every block and are
paid at each epoch's end: the kernel moves the same shares out of the community pool's part
(``SpanResult.mining/availability``, ``mining.accrue``/``availability.accrue``), and every epoch's
end and mining release is an event that ``apply_block`` itself applies. Side by side over 1,000
blocks, block by block and in spans, the two agree on every total and the state hash."""

from __future__ import annotations

import dataclasses

import pytest

from protocol.ledger.genesis import Genesis, GenesisAsset
from protocol.ledger.liquidity_state import share_denom
from protocol.ledger.pool import holding
from protocol.ledger.tx import (
    AssetMint,
    MiningBond,
    MiningUnbond,
    OfferAccept,
    OfferAnswer,
    OfferChallenge,
    OfferStand,
    OfferTake,
    PoolAdd,
    PoolSwap,
    availability_bytes,
    decode_tx,
)
from protocol.units import percent

from .ledger_helpers import CHAIN_ID, Chain, addr, key
from .test_econsim_exactness import BLOCKS, Script, _case_min_pinned, _run_side_by_side

NODE = key("bob-node")


def _liquid_genesis() -> Genesis:
    genesis = _case_min_pinned()
    params = dataclasses.replace(
        genesis.params,
        liquidity_mining_share=percent(5),
        availability_share=percent(4),
        standing_collateral_per_gpu=1_000,
        challenge_deposit=100,
        twap_window=10,
        mining_unbonding_period=100,
    )
    return dataclasses.replace(genesis, params=params, assets=(GenesisAsset("TUSD", addr("carol")),))


def _liquidity_script(chain: Chain) -> Script:
    offer: list[bytes] = []

    def stand() -> list[bytes]:
        raw = chain.tx("bob", OfferStand(NODE.public_key.raw, "H100", 4, 5, 900, 8_000))
        offer.append(decode_tx(raw).hash)
        return [raw]

    def answer() -> list[bytes]:
        seed = chain.state.offers[offer[0]].seed
        return [
            chain.tx("bob", OfferAnswer(offer[0], NODE.sign(availability_bytes(CHAIN_ID, offer[0], seed))))
        ]

    def shares(label: str) -> int:
        return holding(chain.state, addr(label), share_denom("TUSD"))

    return {
        10: lambda: [chain.tx("carol", AssetMint("TUSD", addr(who), 500_000)) for who in ("alice", "dave")],
        12: lambda: [chain.tx("alice", PoolAdd("TUSD", 200_000, 400_000, 1))],
        14: lambda: [chain.tx("alice", MiningBond("TUSD", shares("alice") // 2))],
        16: stand,
        60: lambda: [chain.tx("dave", PoolSwap("TUSD", False, 50_000, 1, 70))],
        90: lambda: [chain.tx("dave", OfferChallenge(offer[0]))],
        93: answer,
        260: lambda: [
            chain.tx("alice", MiningUnbond("TUSD", chain.state.mining[(addr("alice"), "TUSD")].shares // 3))
        ],
        450: lambda: [chain.tx("dave", PoolSwap("TUSD", True, 30_000, 1, 460))],
        700: lambda: [
            chain.tx("dave", PoolAdd("TUSD", 10_000, 100_000, 1)),
            chain.tx("alice", MiningBond("TUSD", shares("alice"))),
        ],
        703: lambda: [chain.tx("dave", MiningBond("TUSD", shares("dave")))],
        850: lambda: [chain.tx("alice", OfferTake(offer[0], 2, 50))],
        852: lambda: [chain.tx("bob", OfferAccept(offer[0]))],
    }


def test_the_simulator_reproduces_a_ledger_with_the_liquidity_shares_on() -> None:
    genesis = _case_min_pinned()
    params = dataclasses.replace(
        genesis.params, liquidity_mining_share=percent(5), availability_share=percent(5)
    )
    sim = _run_side_by_side(dataclasses.replace(genesis, params=params), max_span=None)
    assert sim.height == BLOCKS
    assert sim.state.vars["mining_pool"] == sim.state.vars["availability_pool"] == 0
    assert sim.state.params.liquidity_mining_share == percent(5)


@pytest.mark.parametrize("max_span", [1, None], ids=["block-by-block", "spans"])
def test_the_simulator_reproduces_the_pool_and_both_mining_programmes(max_span: int | None) -> None:
    sim = _run_side_by_side(_liquid_genesis(), max_span=max_span, extra=_liquidity_script)
    state = sim.state
    assert sim.height == BLOCKS
    assert sim.kernel_blocks >= 800, "most blocks must have been stepped by the kernel"
    # The programmes really ran: the pool traded, bonds and the offer were paid, a release came.
    pool = state.pools["TUSD"]
    assert pool.dct != 210_000 and len(state.mining) == 2 and not len(state.mining_unbonding)
    assert state.escrows  # the take was accepted
    assert holding(state, addr("alice"), share_denom("TUSD")) == 0  # all bonded again
    assert state.vars["community_pool"] > 0


def test_the_liquidity_script_pays_both_programmes() -> None:
    """Guards the side-by-side test: the liquidity rewards it compares are not all zero."""
    ledger = Chain(_liquid_genesis())
    script = _liquidity_script(ledger)
    paid: dict[bytes, int] = {}
    for height in range(1, 400):
        build = script.get(height)
        ledger.forget_reserved_nonces()
        result = ledger.block(build() if build is not None else [])
        for address, reward in result.mining_rewards:
            paid[address] = paid.get(address, 0) + reward
    assert paid.get(addr("alice"), 0) > 0  # liquidity mining
    assert paid.get(addr("bob"), 0) > 0  # availability
