"""The sign guard across crashes: persist before broadcast, never sign lower, never differently."""

from __future__ import annotations

import pytest

from protocol.consensus.effects import Broadcast, Effect, Persist, Timeout, TimeoutKind
from protocol.consensus.errors import LocalConsensusError
from protocol.consensus.messages import NIL, PRECOMMIT, PREVOTE, STEP_PRECOMMIT, STEP_PREVOTE, Vote

from .consensus_support import Chain, build_block, own_votes, persists, propose, vkey, vote

H = 1


def _signed_positions(effects: list[Effect], address: bytes) -> list[tuple[int, int, int]]:
    return [(v.height, v.round, v.type) for v in own_votes(effects, address)]


def test_restart_resumes_the_persisted_round_and_resends_the_same_vote() -> None:
    chain = Chain()
    app = chain.app()
    me = chain.non_proposer(app, H, rounds=(0,))
    core = chain.core(me, app=app)
    core.start(0)
    block = build_block(chain, chain.app(), chain.proposer(app, H, 0))
    effects = core.receive(propose(chain, app, 0, block), 10)
    [prevote] = own_votes(effects, vkey(me).address.raw)
    disk = persists(effects)[-1].state

    # Crash; restart on a fresh replica of the ledger from what was persisted.
    restarted = chain.core(me, sign_state=disk)
    effects = restarted.start(50)
    assert (restarted.round, restarted.step) == (0, STEP_PREVOTE)
    assert own_votes(effects, vkey(me).address.raw) == [prevote]  # byte-identical, not re-signed
    assert persists(effects) == []  # nothing new was signed


def test_crash_between_persist_and_broadcast_sends_the_persisted_vote_after_restart() -> None:
    chain = Chain()
    app = chain.app()
    me = chain.non_proposer(app, H, rounds=(0,))
    core = chain.core(me, app=app)
    core.start(0)
    effects = core.on_timeout(Timeout(TimeoutKind.PROPOSE, H, 0), 100)
    persist_index = next(i for i, e in enumerate(effects) if isinstance(e, Persist))
    broadcast_index = next(i for i, e in enumerate(effects) if isinstance(e, Broadcast))
    assert persist_index < broadcast_index
    disk = effects[persist_index].state  # type: ignore[union-attr]
    [never_sent] = disk.last_votes  # the crash happens here: the broadcast never leaves

    restarted = chain.core(me, sign_state=disk)
    effects = restarted.start(200)
    assert own_votes(effects, vkey(me).address.raw) == [never_sent]
    # A proposal arriving late cannot make it prevote again in that round.
    block = build_block(chain, chain.app(), chain.proposer(app, H, 0))
    effects = restarted.receive(propose(chain, restarted.app, 0, block), 210)  # type: ignore[arg-type]
    assert own_votes(effects, vkey(me).address.raw) == []
    assert restarted.sign_state == disk


def test_restarted_validator_never_signs_at_a_lower_round() -> None:
    chain = Chain()
    app = chain.app()
    me = chain.non_proposer(app, H, rounds=(0, 1, 2))
    others = [i for i in range(4) if i != me]
    core = chain.core(me, app=app)
    core.start(0)
    for round_ in range(3):  # sign through rounds 0, 1 and 2 by timeouts
        core.on_timeout(Timeout(TimeoutKind.PROPOSE, H, round_), 100)
        core.on_timeout(Timeout(TimeoutKind.PREVOTE, H, round_), 100)
        if round_ < 2:
            core.on_timeout(Timeout(TimeoutKind.PRECOMMIT, H, round_), 100)
    disk = core.sign_state
    assert disk.position == (H, 2, STEP_PRECOMMIT)

    restarted = chain.core(me, sign_state=disk)
    effects = restarted.start(500)
    builder = chain.app()
    for round_ in (0, 1):
        block = build_block(chain, builder, chain.proposer(app, H, round_))
        effects += restarted.receive(propose(chain, restarted.app, round_, block), 510)  # type: ignore[arg-type]
        for index in others:
            effects += restarted.receive(vote(index, H, round_, PREVOTE, block.hash), 510)
            effects += restarted.receive(vote(index, H, round_, PRECOMMIT, NIL), 510)
    positions = _signed_positions(effects, vkey(me).address.raw)
    assert positions and all(p >= (H, 2, PREVOTE) for p in positions), positions
    assert all((s.state.height, s.state.round) >= (H, 2) for s in persists(effects))


def test_guard_refuses_a_different_vote_at_the_same_step() -> None:
    """Even if the core's own state were rewound (a bug, a copied key), the guard holds."""
    chain = Chain()
    app = chain.app()
    me = chain.non_proposer(app, H, rounds=(0,))
    core = chain.core(me, app=app)
    core.start(0)
    core.on_timeout(Timeout(TimeoutKind.PROPOSE, H, 0), 100)  # prevote nil at (1, 0)
    [signed] = core.sign_state.last_votes
    refused_before = core.refused_signatures
    core.step = 1  # rewind the step: the core would now prevote again
    block = build_block(chain, chain.app(), chain.proposer(app, H, 0))
    effects = core.receive(propose(chain, app, 0, block), 110)
    assert own_votes(effects, vkey(me).address.raw) == []
    assert core.refused_signatures == refused_before + 1
    assert core.sign_state.last_votes == (signed,)


def test_the_lock_survives_a_restart() -> None:
    chain = Chain()
    app = chain.app()
    me = chain.non_proposer(app, H, rounds=(0, 1))
    others = [i for i in range(4) if i != me]
    core = chain.core(me, app=app)
    core.start(0)
    builder = chain.app()
    block_a = build_block(chain, builder, chain.proposer(app, H, 0))
    core.receive(propose(chain, app, 0, block_a), 10)
    for index in others[:2]:
        core.receive(vote(index, H, 0, PREVOTE, block_a.hash), 10)
    assert core.locked_round == 0

    restarted = chain.core(me, sign_state=core.sign_state)
    restarted.start(100)
    assert (restarted.locked_round, restarted.locked_block) == (0, block_a)
    restarted.on_timeout(Timeout(TimeoutKind.PRECOMMIT, H, 0), 200)
    block_b = build_block(chain, builder, chain.proposer(app, H, 1))
    effects = restarted.receive(propose(chain, restarted.app, 1, block_b), 210)  # type: ignore[arg-type]
    assert [(v.type, v.block_hash) for v in own_votes(effects, vkey(me).address.raw)] == [(PREVOTE, NIL)]


def test_started_twice_or_used_before_start_is_our_error() -> None:
    chain = Chain()
    core = chain.core(0)
    with pytest.raises(LocalConsensusError) as caught:
        core.receive(vote(1, H, 0, PREVOTE, NIL), 0)
    assert caught.value.code == 3900
    core.start(0)
    with pytest.raises(LocalConsensusError):
        core.start(0)


def test_votes_from_restarted_validators_are_identical_bytes() -> None:
    """Ed25519 is deterministic, so a re-sent vote is the same message, never evidence."""
    first = vote(1, H, 0, PREVOTE, NIL)
    again = vote(1, H, 0, PREVOTE, NIL)
    assert first == again and isinstance(first, Vote)
