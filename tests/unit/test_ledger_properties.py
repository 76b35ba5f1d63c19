"""Property tests over random blocks mixing every transaction kind, valid and invalid.

After every block: the supply equation holds, no balance or stake is negative, nonces go up by
exactly the sender's transactions; an invalid block (or one at the wrong height) leaves the state
hash unchanged, and the proposer's ``select_txs`` of it is a valid block. The same blocks give the
same state hash when replayed from genesis, here and in child interpreters with other hash seeds.
"""

from __future__ import annotations

import os
import subprocess
import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.encoding import encode
from protocol.ledger.block import BlockContext, apply_block, select_txs
from protocol.ledger.errors import LedgerError
from protocol.ledger.genesis import genesis_state
from protocol.ledger.tx import (
    MSG_TYPES,
    decode_tx,
)

from .ledger_helpers import (
    encode_scenario,
    replay,
)
from .ledger_scenarios import (
    REPO_ROOT,
    DataChooser,
    RandomChooser,
    ScenarioBuilder,
    play_block,
    scenario_chain,
)


@settings(max_examples=settings().max_examples * 3)
@given(st.data())
def test_random_blocks_keep_every_invariant(data: st.DataObject) -> None:
    chain = scenario_chain()
    builder = ScenarioBuilder(chain, DataChooser(data))
    committed = [play_block(chain, builder) for _ in range(data.draw(st.integers(1, 24), label="blocks"))]

    replica = genesis_state(chain.genesis)
    for ctx, txs in committed:
        apply_block(replica, ctx, txs)
    assert replica.state_hash() == chain.state.state_hash()


def test_random_scenarios_exercise_every_kind_and_outcome() -> None:
    # A guard on the generator: over a few seeded scenarios, every kind gets committed and blocks
    # are both accepted and rejected, so the property above is not vacuous.
    kinds: set[str] = set()
    committed_kinds: set[str] = set()
    rejected = accepted = 0
    outcomes = {
        "spent under a grant",
        "settled",
        "refunded",
        "disputed",
        "passed",
        "slashed",
        "jailed",
        "locked",
    }
    # Seeds until every kind and outcome was seen (a few dozen blocks per kind are enough).
    for seed in range(80):
        if committed_kinds == set(MSG_TYPES) and outcomes <= kinds and seed >= 12:
            break
        chain = scenario_chain()
        builder = ScenarioBuilder(chain, RandomChooser(seed))
        for _ in range(30):
            ctx, txs = builder.next_block()
            try:
                apply_block(chain.state, ctx, txs)
                accepted += 1
            except LedgerError:
                rejected += 1
                txs = select_txs(chain.state, ctx, txs, len(txs))
                apply_block(chain.state, ctx, txs)
            committed_kinds.update(decode_tx(raw).msg.KIND for raw in txs)
        kinds.update(p.status for _, p in chain.state.proposals.sorted_items())
        kinds.update(
            chain.state.closed_contracts.get(c.terms.contract_hash()) or "" for c in builder.contracts
        )
        if any(info.tombstoned for _, info in chain.state.validators.sorted_items()):
            kinds.add("slashed")
        if any(info.jailed and not info.tombstoned for _, info in chain.state.validators.sorted_items()):
            kinds.add("jailed")
        if chain.state.vars["total_unbonding"] or chain.state.vars["total_escrowed"]:
            kinds.add("locked")
        if any(g.spent for _, grants in chain.state.grants.sorted_items() for g in grants):
            kinds.add("spent under a grant")
    assert accepted > 10 and rejected > 10
    assert committed_kinds == set(MSG_TYPES)
    assert outcomes <= kinds


# --- determinism across processes ----------------------------------------------------------------


def _seeded_scenario(seed: int, blocks: int) -> tuple[bytes, list[str]]:
    """Play ``blocks`` attempts (an invalid block is followed by its valid selection); return the
    encoded scenario and the transcript observed while playing it."""
    chain = scenario_chain()
    builder = ScenarioBuilder(chain, RandomChooser(seed))
    attempts: list[tuple[BlockContext, list[bytes]]] = []
    transcript = []
    for _ in range(blocks):
        ctx, txs = builder.next_block()
        attempts.append((ctx, txs))
        try:
            apply_block(chain.state, ctx, txs)
        except LedgerError as exc:
            transcript.append(f"err {exc.code} {exc.tx_index} {chain.state.state_hash().hex()}")
            chosen = select_txs(chain.state, ctx, txs, len(txs))
            apply_block(chain.state, ctx, chosen)
            attempts.append((ctx, chosen))
        transcript.append(f"ok {chain.state.state_hash().hex()}")
    return encode_scenario(chain.genesis, attempts), transcript


def _replay_in_child(payloads: list[bytes], hash_seed: str) -> list[str]:
    completed = subprocess.run(
        [sys.executable, "-c", "from tests.unit.ledger_helpers import replay_main; replay_main()"],
        input=encode(payloads),
        capture_output=True,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONHASHSEED": hash_seed},
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr.decode(errors="replace")
    return completed.stdout.decode().splitlines()


def test_same_blocks_give_the_same_state_hash_in_other_processes() -> None:
    scenarios = [_seeded_scenario(seed, blocks=25) for seed in (11, 12, 13)]
    payloads = [payload for payload, _ in scenarios]
    expected = [line for _, transcript in scenarios for line in transcript]
    assert [line for payload in payloads for line in replay(payload)] == expected
    assert any(line.startswith("err ") for line in expected)

    parent_seed = os.environ.get("PYTHONHASHSEED")
    child_seeds = [seed for seed in ("1", "2", "3") if seed != parent_seed][:2]
    outputs = [_replay_in_child(payloads, seed) for seed in child_seeds]
    for output in outputs:
        assert output[:-1] == expected
    # The children really ran with different string hashing than each other.
    assert outputs[0][-1] != outputs[1][-1]
