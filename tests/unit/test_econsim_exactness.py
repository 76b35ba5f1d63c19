"""The simulator against the real ledger, side by side, over 1,000 scripted blocks.

The ledger side applies every block with ``apply_block``. The simulator side is a
:class:`SimChain` on a copy of the same genesis state: it applies the scripted transactions with
``apply_block`` too, and steps every empty block in between with the kernel. After every block
(kernel stepping one block at a time) and at every scripted height (kernel jumping whole spans)
the two must agree on every total and on the state hash.

The script exercises each rule that moves money: fees and the fee burn, staking (a new,
unequal validator), unbonding and its release, an escrow settled (protocol-fee burn, epoch work,
the provider payout at the epoch boundary), an escrow refunded (collateral slash), a governance
proposal that changes ``fee_burn_share`` mid-run, and inflation both moving and pinned at each
bound (the kernel's constant-inflation spans).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from protocol.econsim.chain import SimChain
from protocol.econsim.errors import KernelMismatch
from protocol.ledger import block as block_module
from protocol.ledger.block import BlockContext, apply_block
from protocol.ledger.genesis import Genesis, genesis_state
from protocol.ledger.params import Params
from protocol.ledger.state import LedgerState
from protocol.ledger.tx import (
    Delegate,
    GovPropose,
    GovVote,
    Msg,
    OpenEscrow,
    Redelegate,
    Refund,
    Stake,
    Transfer,
    Unstake,
)
from protocol.units import DCT, percent
from tests.unit.ledger_helpers import (
    VALIDATOR_LABELS,
    Chain,
    addr,
    make_genesis,
    make_terms,
    settle_msg,
    sign_contract,
)

BLOCKS = 1_000
TOTALS = (
    "height",
    "minted",
    "burned",
    "inflation",
    "community_pool",
    "provider_pool",
    "fee_pool",
    "total_bonded",
    "total_rewards",
    "total_unbonding",
    "total_escrowed",
    "total_deposits",
    "mining_pool",
    "availability_pool",
)
ACCOUNTS = (*VALIDATOR_LABELS, "alice", "bob", "carol", "dave")

SMALL = Params(
    min_fee=10,
    unbonding_period=37,
    min_validator_stake=100,
    gov_min_deposit=1_000,
    gov_voting_period=50,
    epoch_length=25,
    blocks_per_year=10_000,
    dispute_window_blocks=5,
    inflation_max=percent(14),
)


def _case_max_then_moving() -> Genesis:
    """Bonded far below the goal: inflation climbs to its maximum and stays pinned there, until
    dave's large stake moves the bonded ratio above the goal and inflation falls again."""
    genesis = make_genesis(
        SMALL, stakes=[(label, 1_000_000 + 1_234 * i) for i, label in enumerate(VALIDATOR_LABELS)]
    )
    return dataclasses.replace(genesis, inflation=percent("13.95"))


def _case_min_pinned() -> Genesis:
    """Bonded above the goal: inflation pinned at its minimum (the bisected threshold), then an
    unstake drops the bonded ratio and it rises."""
    # Validators hold a little for their fees: their rewards are bonded, not paid out.
    balances = [(label, 1_000_000) for label in ("alice", "bob", "carol", "dave")]
    balances += [(label, 10_000) for label in VALIDATOR_LABELS]
    genesis = make_genesis(
        SMALL, stakes=[(label, 9_000_000) for label in VALIDATOR_LABELS], balances=balances
    )
    return dataclasses.replace(genesis, inflation=SMALL.inflation_min)


def _case_real_scale() -> Genesis:
    """DCT-sized amounts and one-second blocks, equal validator powers (the kernel's equal path)."""
    params = dataclasses.replace(SMALL, blocks_per_year=31_557_600, min_fee=10_000, min_validator_stake=DCT)
    return dataclasses.replace(
        make_genesis(
            params,
            stakes=[(label, 10_000_000 * DCT) for label in VALIDATOR_LABELS],
            balances=[
                (label, 20_000_000 * DCT) for label in (*VALIDATOR_LABELS, "alice", "bob", "carol", "dave")
            ],
        ),
        inflation=percent(13),
    )


def _script(chain: Chain) -> dict[int, Callable[[], list[bytes]]]:
    """Transactions by height, built against the ledger side's state when that height comes."""
    scale = 1 if chain.params.min_fee < 1_000 else DCT // 1_000
    fee = chain.params.min_fee
    first = make_terms(
        "alice", "bob", price=7 * scale, max_gpu_seconds=1_000, collateral=500 * scale, deadline=260
    )
    second = make_terms(
        "carol", "bob", price=3 * scale, max_gpu_seconds=400, collateral=900 * scale, deadline=320, salt=b"s2"
    )
    validators_and_dave = [*VALIDATOR_LABELS, "dave"]
    return {
        5: lambda: [chain.tx("alice", Transfer(addr("bob"), 12_345 * scale), fee=fee * 500)],
        40: lambda: [chain.tx("dave", Delegate(addr(VALIDATOR_LABELS[0]), chain.balance("dave") // 3))],
        120: lambda: [chain.tx(VALIDATOR_LABELS[1], Unstake(chain.bonded(VALIDATOR_LABELS[1]) // 4))],
        150: lambda: [
            chain.tx("dave", Redelegate(addr(VALIDATOR_LABELS[0]), addr(VALIDATOR_LABELS[2]), 1_000 * scale))
        ],
        200: lambda: [chain.tx("alice", OpenEscrow(sign_contract(first)))],
        230: lambda: [chain.tx("bob", settle_msg(first, 800))],
        300: lambda: [chain.tx("carol", OpenEscrow(sign_contract(second)))],
        330: lambda: [chain.tx("carol", Refund(second.contract_hash()))],
        400: lambda: [
            chain.tx(VALIDATOR_LABELS[0], GovPropose("fee_burn_share", percent(90), 1_000 * scale))
        ],
        402: lambda: [chain.tx(label, GovVote(1, "yes")) for label in validators_and_dave],
        500: lambda: [chain.tx("bob", Transfer(addr("carol"), 1), fee=fee * 7_777)],
        # Most liquid supply bonds: the bonded ratio jumps above the goal.
        610: lambda: [
            chain.tx(label, _bond(label, chain.balance(label) * 9 // 10))
            for label in ACCOUNTS
            if chain.balance(label) > 100 * fee
        ],
        # Two validators leave most of their stake: the bonded ratio falls below the goal.
        777: lambda: [
            chain.tx(label, Unstake(chain.delegated(label, label) * 3 // 4)) for label in VALIDATOR_LABELS[1:]
        ],
        901: lambda: [chain.tx("alice", Transfer(addr("dave"), 5), fee=fee * 3)],
    }


def _bond(label: str, amount: int) -> Msg:
    """A validator's operator stakes with its own validator; anyone else delegates to val-1."""
    return Stake(amount) if label in VALIDATOR_LABELS else Delegate(addr(VALIDATOR_LABELS[1]), amount)


def _totals(state: LedgerState) -> dict[str, int]:
    totals = {name: state.vars[name] for name in TOTALS}
    totals["supply"] = state.total_supply()
    for label in ACCOUNTS:
        totals[f"balance:{label}"] = state.balance(addr(label))
        info = state.validators.get(addr(label))
        totals[f"bonded:{label}"] = info.bonded if info else 0
        totals[f"rewards:{label}"] = info.rewards if info else 0
    return totals


Script = dict[int, Callable[[], list[bytes]]]


def _run_side_by_side(
    genesis: Genesis, *, max_span: int | None, extra: Callable[[Chain], Script] | None = None
) -> SimChain:
    """``extra`` adds transactions to the script (at a height both name, after the script's)."""
    ledger = Chain(genesis)
    sim = SimChain(genesis_state(genesis), max_span=max_span)
    script = _script(ledger)
    for height, build in (extra(ledger) if extra is not None else {}).items():
        first = script.get(height)
        script[height] = build if first is None else (lambda first=first, build=build: first() + build())
    saw_constant = False
    for height in range(1, BLOCKS + 1):
        build = script.get(height)
        txs = build() if build is not None else []
        ledger.forget_reserved_nonces()
        ctx = sim.context(height)
        apply_block(ledger.state, ctx, txs)
        if txs:
            sim.advance_to(height - 1)
            sim.apply(txs)
        elif max_span == 1 or height == BLOCKS or height + 1 in script:
            sim.advance_to(height)
        else:
            continue
        assert _totals(sim.state) == _totals(ledger.state), f"totals differ at height {height}"
        assert sim.state.state_hash() == ledger.state.state_hash(), f"state differs at height {height}"
        sim.state.check_invariants()
        saw_constant = saw_constant or ledger.state.vars["inflation"] in (
            genesis.params.inflation_min,
            genesis.params.inflation_max,
        )
    assert saw_constant or genesis.params.blocks_per_year > 10_000
    assert sim.functions_spans == 0, "the kernel's fast path disagreed with the economics functions"
    return sim


@pytest.mark.parametrize("make", [_case_max_then_moving, _case_min_pinned, _case_real_scale])
@pytest.mark.parametrize("max_span", [1, None], ids=["block-by-block", "spans"])
def test_simulator_reproduces_the_ledger_over_1000_blocks(
    make: Callable[[], Genesis], max_span: int | None
) -> None:
    sim = _run_side_by_side(make(), max_span=max_span)
    assert sim.height == BLOCKS
    assert sim.kernel_blocks >= 900, "most blocks must have been stepped by the kernel"
    # The governance change applied: the simulator reads the new parameter like the ledger.
    assert sim.state.params.fee_burn_share == percent(90)
    assert sim.state.proposals[1].status == "passed"


def test_the_script_moves_every_total() -> None:
    """Guards the exactness test itself: each total it compares actually changes."""
    genesis = _case_max_then_moving()
    ledger = Chain(genesis)
    script = _script(ledger)
    before = _totals(ledger.state)
    seen_payout = seen_release = seen_slash = False
    for height in range(1, BLOCKS + 1):
        build = script.get(height)
        txs = build() if build is not None else []
        ledger.forget_reserved_nonces()
        burned = ledger.state.vars["burned"]
        result = ledger.block(txs)
        seen_payout = seen_payout or bool(result.provider_rewards)
        seen_release = seen_release or (height == 157 and ledger.state.vars["total_unbonding"] == 0)
        seen_slash = seen_slash or (height == 330 and ledger.state.vars["burned"] - burned > result.fees)
    after = _totals(ledger.state)
    for name in ("minted", "burned", "community_pool", "total_bonded", "supply", "balance:bob"):
        assert after[name] != before[name], name
    assert seen_payout and seen_release and seen_slash


def test_a_changed_end_block_stops_the_simulator(monkeypatch: pytest.MonkeyPatch) -> None:
    """If end-block starts doing something the kernel does not (here: one more base unit to the
    community pool per block), the chain's self-check refuses to step rather than diverge."""
    original = block_module._end_block

    def changed(
        state: LedgerState, ctx: BlockContext
    ) -> tuple[int, int, list[Any], list[Any], list[int], list[Any]]:
        result = original(state, ctx)
        state.add("community_pool", 1)
        state.add("minted", 1)
        return result

    monkeypatch.setattr(block_module, "_end_block", changed)
    sim = SimChain(genesis_state(_case_real_scale()))
    before = sim.state.state_hash()
    with pytest.raises(KernelMismatch) as caught:
        sim.advance_to(50)
    assert caught.value.code == 1510
    assert "community_pool" in caught.value.message
    assert sim.state.state_hash() == before
