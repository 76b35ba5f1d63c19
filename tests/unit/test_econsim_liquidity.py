"""The economics simulator stays exact with the liquidity shares of issuance switched on: with
nothing bonded to liquidity mining and no standing offer, both shares stay with the community
pool, which is what the kernel's end-block assumes (protocol.ledger.mining, .availability)."""

from __future__ import annotations

import dataclasses

from protocol.units import percent

from .test_econsim_exactness import BLOCKS, _case_min_pinned, _run_side_by_side


def test_the_simulator_reproduces_a_ledger_with_the_liquidity_shares_on() -> None:
    genesis = _case_min_pinned()
    params = dataclasses.replace(
        genesis.params, liquidity_mining_share=percent(5), availability_share=percent(5)
    )
    sim = _run_side_by_side(dataclasses.replace(genesis, params=params), max_span=None)
    assert sim.height == BLOCKS
    assert sim.state.vars["mining_pool"] == sim.state.vars["availability_pool"] == 0
    assert sim.state.params.liquidity_mining_share == percent(5)
