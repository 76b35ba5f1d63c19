"""Each rule of Algorithm 1 ("The latest gossip on BFT consensus"), one test per rule.

The core under test is validator ``me`` of a real 4-validator chain (equal power: a quorum is
3 of 4, "f+1" is 2 of 4); the test plays the other validators by signing their messages.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from protocol.consensus.core import ConsensusCore
from protocol.consensus.effects import (
    Broadcast,
    Commit,
    Effect,
    Persist,
    ReportEvidence,
    Timeout,
    TimeoutKind,
)
from protocol.consensus.ledger_app import LedgerApp
from protocol.consensus.messages import (
    NIL,
    PRECOMMIT,
    PREVOTE,
    STEP_PRECOMMIT,
    STEP_PREVOTE,
    STEP_PROPOSE,
    Block,
    Proposal,
    Vote,
)

from .consensus_support import (
    CONFIG,
    Chain,
    broadcasts,
    build_block,
    own_votes,
    proposals_sent,
    propose,
    timeouts,
    vkey,
    vote,
)

H = 1  # every test runs at the first height


class Setup:
    """Validator ``me`` (never the proposer of rounds 0-2) started at height 1."""

    def __init__(self) -> None:
        self.chain = Chain()
        self.app: LedgerApp = self.chain.app()
        self.builder = self.chain.app()
        self.me = self.chain.non_proposer(self.app, H, rounds=(0, 1, 2))
        self.address = vkey(self.me).address.raw
        self.others = [i for i in range(4) if i != self.me]
        self.core: ConsensusCore = self.chain.core(self.me, app=self.app)
        self.start_effects = self.core.start(0)
        self.block_a = build_block(self.chain, self.builder, self.chain.proposer(self.app, H, 0))
        self.block_b = build_block(self.chain, self.builder, self.chain.proposer(self.app, H, 1))

    def proposal(self, round_: int, block: Block, pol_round: int = -1) -> Proposal:
        return propose(self.chain, self.app, round_, block, pol_round=pol_round)

    def prevotes(self, round_: int, block_hash: bytes, voters: list[int], now: int = 10) -> list[Effect]:
        effects: list[Effect] = []
        for index in voters:
            effects += self.core.receive(vote(index, H, round_, PREVOTE, block_hash), now)
        return effects

    def precommits(self, round_: int, block_hash: bytes, voters: list[int], now: int = 10) -> list[Effect]:
        effects: list[Effect] = []
        for index in voters:
            effects += self.core.receive(vote(index, H, round_, PRECOMMIT, block_hash), now)
        return effects

    def my_votes(self, effects: list[Effect]) -> list[tuple[int, int, bytes]]:
        return [(v.type, v.round, v.block_hash) for v in own_votes(effects, self.address)]

    def to_round(self, round_: int) -> None:
        """Leave the current round through its timeouts (lines 57, 61, 65)."""
        while self.core.round < round_:
            r = self.core.round
            self.core.on_timeout(Timeout(TimeoutKind.PROPOSE, H, r), 100)
            self.core.on_timeout(Timeout(TimeoutKind.PREVOTE, H, r), 100)
            self.core.on_timeout(Timeout(TimeoutKind.PRECOMMIT, H, r), 100)

    def lock_on(self, round_: int, block: Block) -> None:
        """Lock on ``block`` in ``round_`` (proposal, then a polka from two others plus us)."""
        self.to_round(round_)
        self.core.receive(self.proposal(round_, block), 10)
        self.prevotes(round_, block.hash, self.others[:2])
        assert self.core.locked_round == round_


def test_start_arms_timeout_propose_for_a_non_proposer() -> None:
    s = Setup()
    assert s.core.step == STEP_PROPOSE
    [armed] = timeouts(s.start_effects, TimeoutKind.PROPOSE)
    assert armed.timeout == Timeout(TimeoutKind.PROPOSE, H, 0)
    assert armed.duration_ms == CONFIG.timeout_propose_ms
    assert s.my_votes(s.start_effects) == []


def test_line22_valid_fresh_proposal_gets_a_prevote_for_it() -> None:
    s = Setup()
    effects = s.core.receive(s.proposal(0, s.block_a), 10)
    assert s.my_votes(effects) == [(PREVOTE, 0, s.block_a.hash)]
    assert s.core.step == STEP_PREVOTE


def test_line22_invalid_block_gets_a_nil_prevote() -> None:
    s = Setup()
    wrong_state = dataclasses.replace(s.block_a, state_hash=b"\x01" * 32)
    effects = s.core.receive(s.proposal(0, wrong_state), 10)
    assert s.my_votes(effects) == [(PREVOTE, 0, NIL)]


def test_line22_locked_validator_prevotes_nil_for_another_fresh_block() -> None:
    s = Setup()
    s.lock_on(0, s.block_a)
    s.to_round(1)
    effects = s.core.receive(s.proposal(1, s.block_b), 10)
    assert s.my_votes(effects) == [(PREVOTE, 1, NIL)]


def test_line22_locked_validator_prevotes_its_locked_block_again() -> None:
    s = Setup()
    s.lock_on(0, s.block_a)
    s.to_round(1)
    effects = s.core.receive(s.proposal(1, s.block_a), 10)
    assert s.my_votes(effects) == [(PREVOTE, 1, s.block_a.hash)]


def test_line28_proof_of_lock_change_unlocks_and_line36_relocks() -> None:
    s = Setup()
    s.lock_on(0, s.block_a)
    s.to_round(1)
    # Round 1: the three others prevote B (a polka for B we did not join).
    s.prevotes(1, s.block_b.hash, s.others)
    assert s.core.locked_round == 0 and s.core.locked_block == s.block_a
    s.to_round(2)
    # Round 2: B re-proposed with its POL from round 1, newer than our lock: we prevote B.
    effects = s.core.receive(s.proposal(2, s.block_b, pol_round=1), 10)
    assert s.my_votes(effects) == [(PREVOTE, 2, s.block_b.hash)]
    # A polka for B in round 2: we re-lock on B and precommit it.
    effects = s.prevotes(2, s.block_b.hash, s.others[:2])
    assert s.my_votes(effects) == [(PRECOMMIT, 2, s.block_b.hash)]
    assert (s.core.locked_round, s.core.locked_block) == (2, s.block_b)


def test_line28_pol_older_than_our_lock_gets_a_nil_prevote() -> None:
    s = Setup()
    s.prevotes(0, s.block_b.hash, s.others)  # a POL for B in round 0
    s.lock_on(1, s.block_a)  # then we lock on A in round 1
    s.to_round(2)
    effects = s.core.receive(s.proposal(2, s.block_b, pol_round=0), 10)
    assert s.my_votes(effects) == [(PREVOTE, 2, NIL)]


def test_line28_reproposal_without_its_pol_waits_for_the_prevotes() -> None:
    s = Setup()
    s.to_round(1)
    effects = s.core.receive(s.proposal(1, s.block_b, pol_round=0), 10)
    assert s.my_votes(effects) == []  # no POL seen yet: neither line 22 nor 28 applies
    effects = s.prevotes(0, s.block_b.hash, s.others)  # the POL arrives
    assert [v for v in s.my_votes(effects) if v[1] == 1] == [(PREVOTE, 1, s.block_b.hash)]


def test_line34_any_prevote_quorum_arms_the_prevote_timeout_once() -> None:
    s = Setup()
    s.core.receive(s.proposal(0, s.block_a), 10)  # we prevote A
    first = s.prevotes(0, s.block_b.hash, s.others[:1])
    assert timeouts(first, TimeoutKind.PREVOTE) == []
    second = s.prevotes(0, NIL, s.others[1:2])  # A, B, nil: 3 of 4, no value has a quorum
    [armed] = timeouts(second, TimeoutKind.PREVOTE)
    assert armed.timeout == Timeout(TimeoutKind.PREVOTE, H, 0)
    assert armed.duration_ms == CONFIG.timeout_prevote_ms
    third = s.prevotes(0, NIL, s.others[2:])
    assert timeouts(third, TimeoutKind.PREVOTE) == []
    assert s.core.step == STEP_PREVOTE


def test_line36_polka_for_a_valid_proposal_locks_and_precommits() -> None:
    s = Setup()
    s.core.receive(s.proposal(0, s.block_a), 10)
    effects = s.prevotes(0, s.block_a.hash, s.others[:2])
    assert s.my_votes(effects) == [(PRECOMMIT, 0, s.block_a.hash)]
    assert s.core.step == STEP_PRECOMMIT
    assert (s.core.locked_round, s.core.locked_block) == (0, s.block_a)
    assert (s.core.valid_round, s.core.valid_block) == (0, s.block_a)


def test_line36_polka_after_precommitting_only_updates_the_valid_value() -> None:
    s = Setup()
    s.core.receive(s.proposal(0, s.block_a), 10)
    s.core.on_timeout(Timeout(TimeoutKind.PREVOTE, H, 0), 100)  # we precommit nil first
    assert s.core.step == STEP_PRECOMMIT
    effects = s.prevotes(0, s.block_a.hash, s.others[:2])
    assert s.my_votes(effects) == []
    assert s.core.locked_round == -1
    assert (s.core.valid_round, s.core.valid_block) == (0, s.block_a)


def test_line44_nil_polka_precommits_nil_at_once() -> None:
    s = Setup()
    s.core.on_timeout(Timeout(TimeoutKind.PROPOSE, H, 0), 100)  # we prevote nil
    effects = s.prevotes(0, NIL, s.others[:2])
    assert s.my_votes(effects) == [(PRECOMMIT, 0, NIL)]


def test_line47_any_precommit_quorum_arms_the_precommit_timeout_once() -> None:
    s = Setup()
    effects = s.precommits(0, NIL, s.others[:2])
    assert timeouts(effects, TimeoutKind.PRECOMMIT) == []
    effects = s.precommits(0, s.block_a.hash, s.others[2:])
    [armed] = timeouts(effects, TimeoutKind.PRECOMMIT)
    assert armed.timeout == Timeout(TimeoutKind.PRECOMMIT, H, 0)


def test_line49_decides_on_a_precommit_quorum_from_an_earlier_round() -> None:
    s = Setup()
    s.core.receive(s.proposal(0, s.block_a), 10)
    s.to_round(2)
    effects = s.precommits(0, s.block_a.hash, s.others)
    commits = [e for e in effects if isinstance(e, Commit)]
    assert [(c.block, c.certificate.round) for c in commits] == [(s.block_a, 0)]
    assert s.core.height == H + 1 and s.core.round == 0
    assert s.app.height == H and s.app.last_block_hash == s.block_a.hash


def test_line49_without_the_block_asks_for_it_instead_of_deciding() -> None:
    s = Setup()
    effects = s.precommits(0, s.block_a.hash, s.others)
    assert not [e for e in effects if isinstance(e, Commit)]
    assert s.core.height == H
    assert any(type(e).__name__ == "RequestSync" for e in effects)


def test_line55_f_plus_one_in_a_later_round_skips_to_it() -> None:
    s = Setup()
    s.prevotes(3, NIL, s.others[:1])
    assert s.core.round == 0  # 1 of 4 is not more than 1/3
    s.prevotes(3, NIL, s.others[1:2])
    assert s.core.round == 3  # 2 of 4 is


def test_line57_timeout_propose_prevotes_nil() -> None:
    s = Setup()
    effects = s.core.on_timeout(Timeout(TimeoutKind.PROPOSE, H, 0), 100)
    assert s.my_votes(effects) == [(PREVOTE, 0, NIL)]


def test_line61_timeout_prevote_precommits_nil() -> None:
    s = Setup()
    s.core.on_timeout(Timeout(TimeoutKind.PROPOSE, H, 0), 100)
    effects = s.core.on_timeout(Timeout(TimeoutKind.PREVOTE, H, 0), 100)
    assert s.my_votes(effects) == [(PRECOMMIT, 0, NIL)]


def test_line65_timeout_precommit_starts_the_next_round() -> None:
    s = Setup()
    effects = s.core.on_timeout(Timeout(TimeoutKind.PRECOMMIT, H, 0), 100)
    assert (s.core.round, s.core.step) == (1, STEP_PROPOSE)
    assert [t.timeout for t in timeouts(effects, TimeoutKind.PROPOSE)] == [Timeout(TimeoutKind.PROPOSE, H, 1)]


def test_stale_timeouts_do_nothing() -> None:
    s = Setup()
    s.to_round(2)
    for kind in (TimeoutKind.PROPOSE, TimeoutKind.PREVOTE, TimeoutKind.PRECOMMIT):
        assert s.core.on_timeout(Timeout(kind, H, 1), 100) == []
    assert s.core.on_timeout(Timeout(TimeoutKind.PROPOSE, H + 5, 2), 100) == []
    assert s.core.round == 2


def test_timeouts_grow_with_the_round() -> None:
    s = Setup()
    durations = []
    for round_ in range(4):
        effects = s.core.on_timeout(Timeout(TimeoutKind.PRECOMMIT, H, round_), 100)
        [armed] = timeouts(effects, TimeoutKind.PROPOSE)
        durations.append(armed.duration_ms)
    assert durations == [CONFIG.timeout_propose_ms + r * CONFIG.timeout_delta_ms for r in range(1, 5)]
    for kind in (TimeoutKind.PROPOSE, TimeoutKind.PREVOTE, TimeoutKind.PRECOMMIT):
        assert CONFIG.timeout_ms(kind, 7) > CONFIG.timeout_ms(kind, 6) > CONFIG.timeout_ms(kind, 0)


def test_proposer_proposes_then_prevotes_its_own_block() -> None:
    chain = Chain()
    app = chain.app()
    me = chain.proposer(app, H, 0)
    core = chain.core(me, app=app)
    effects = core.start(5_000)
    kinds = [type(e).__name__ for e in effects if isinstance(e, Persist | Broadcast)]
    assert kinds == ["Persist", "Broadcast", "Persist", "Broadcast"]
    [proposal] = proposals_sent(effects)
    assert isinstance(proposal, Proposal) and proposal.pol_round == -1
    assert proposal.block.proposer == vkey(me).address.raw
    assert proposal.block.time_ms == 0  # BFT time of the genesis certificate, whatever our clock
    assert [(v.type, v.block_hash) for v in own_votes(effects, vkey(me).address.raw)] == [
        (PREVOTE, proposal.block.hash)
    ]


def test_line15_proposer_reproposes_its_valid_value_with_the_pol() -> None:
    chain = Chain()
    app = chain.app()
    builder = chain.app()
    me = chain.proposer(app, H, 1)
    others = [i for i in range(4) if i != me]
    core = chain.core(me, app=app)
    core.start(0)
    block = build_block(chain, builder, chain.proposer(app, H, 0))
    core.receive(propose(chain, app, 0, block), 10)
    for index in others[:2]:
        core.receive(vote(index, H, 0, PREVOTE, block.hash), 10)
    assert core.valid_round == 0
    effects = core.on_timeout(Timeout(TimeoutKind.PRECOMMIT, H, 0), 100)
    [proposal] = proposals_sent(effects)
    assert (proposal.round, proposal.pol_round, proposal.block) == (1, 0, block)
    pol = {
        (v.validator, v.round, v.block_hash)
        for v in broadcasts(effects)
        if isinstance(v, Vote) and v.round == 0
    }
    assert len(pol) == 3  # the polka that justifies the re-proposal travels with it


def test_conflicting_votes_from_one_validator_become_evidence() -> None:
    s = Setup()
    culprit = s.others[0]
    s.core.receive(vote(culprit, H, 0, PREVOTE, s.block_a.hash), 10)
    effects = s.core.receive(vote(culprit, H, 0, PREVOTE, s.block_b.hash), 10)
    [report] = [e for e in effects if isinstance(e, ReportEvidence)]
    evidence = report.evidence
    assert evidence.validator == vkey(culprit).address.raw
    assert {evidence.vote_a.block_hash, evidence.vote_b.block_hash} == {s.block_a.hash, s.block_b.hash}
    assert s.core.evidence_pool[evidence.validator] == evidence


def test_every_own_vote_is_persisted_before_it_is_broadcast() -> None:
    s = Setup()
    steps: list[Callable[[], list[Effect]]] = [
        lambda: s.core.receive(s.proposal(0, s.block_a), 10),
        lambda: s.prevotes(0, s.block_a.hash, s.others[:2]),
        lambda: s.core.on_timeout(Timeout(TimeoutKind.PRECOMMIT, H, 0), 100),
        lambda: s.core.on_timeout(Timeout(TimeoutKind.PROPOSE, H, 1), 100),
        lambda: s.core.on_timeout(Timeout(TimeoutKind.GOSSIP, H, 1), 100),
    ]
    seen = 0
    for step in steps:
        on_disk = s.core.sign_state
        for effect in step():
            if isinstance(effect, Persist):
                on_disk = effect.state
            elif isinstance(effect, Broadcast):
                message = effect.message
                if getattr(message, "validator", None) == s.address:
                    seen += 1
                    assert message in on_disk.last_votes, f"{message!r} broadcast before it was persisted"
        # the lock is persisted with the vote that depends on it
        assert on_disk.locked_round == s.core.locked_round
        assert on_disk.locked_block == ((s.core.locked_block,) if s.core.locked_block else ())
    assert seen >= 4


def test_a_validator_still_in_an_earlier_round_gets_our_votes_of_that_round_again() -> None:
    s = Setup()
    s.core.on_timeout(Timeout(TimeoutKind.PROPOSE, H, 0), 100)
    s.core.on_timeout(Timeout(TimeoutKind.PREVOTE, H, 0), 100)
    round0 = [(v.type, v.round) for v in s.core.sign_state.last_votes]
    assert round0 == [(PREVOTE, 0), (PRECOMMIT, 0)]
    s.to_round(2)
    effects = s.core.receive(vote(s.others[0], H, 0, PRECOMMIT, NIL), 500)  # it is still in round 0
    assert s.my_votes(effects) == [(PREVOTE, 0, NIL), (PRECOMMIT, 0, NIL)]
    # the re-send went to every node: another validator still in round 0 got it too
    assert s.core.receive(vote(s.others[1], H, 0, PRECOMMIT, NIL), 510) == []
    assert s.core.receive(vote(s.others[0], H, 0, PREVOTE, NIL), 520) == []  # rate-limited
    later = s.core.receive(vote(s.others[1], H, 0, PREVOTE, NIL), 500 + s.core.config.gossip_interval_ms)
    assert s.my_votes(later) == [(PREVOTE, 0, NIL), (PRECOMMIT, 0, NIL)]


def test_an_old_vote_from_a_validator_already_in_our_round_is_not_answered() -> None:
    """Issue 14: the votes we re-send to a lagging validator are old votes too. A receiver that
    took any old vote as a sign of lag re-sent its own old votes back, and the re-sends fed
    each other without end, crowding out the current round. Lag is judged by a validator's
    NEWEST vote at this height."""
    s = Setup()
    s.core.on_timeout(Timeout(TimeoutKind.PROPOSE, H, 0), 100)
    s.core.on_timeout(Timeout(TimeoutKind.PREVOTE, H, 0), 100)
    s.to_round(2)
    helper = s.others[0]
    assert s.my_votes(s.core.receive(vote(helper, H, 2, PREVOTE, NIL), 500)) == []  # it is in round 2
    # ...and now re-sends its round-0 votes to someone else; we are not that someone
    assert s.my_votes(s.core.receive(vote(helper, H, 0, PRECOMMIT, NIL), 3_000)) == []
    assert s.my_votes(s.core.receive(vote(helper, H, 0, PREVOTE, NIL), 6_000)) == []
    # a validator whose newest vote is older than our round still gets help
    lagging = s.others[1]
    effects = s.core.receive(vote(lagging, H, 0, PRECOMMIT, NIL), 6_000)
    assert s.my_votes(effects) == [(PREVOTE, 0, NIL), (PRECOMMIT, 0, NIL)]


def test_a_lone_validator_decides_one_height_per_commit_timer() -> None:
    """A single validator needs nobody's votes: without the commit timer one event would run
    heights forever. Each COMMIT timeout must yield exactly one more height."""
    from protocol.consensus.core import ConsensusCore
    from protocol.consensus.effects import SetTimeout, TimeoutKind
    from protocol.consensus.ledger_app import LedgerApp
    from protocol.crypto import PrivateKey
    from protocol.ledger.genesis import dev_genesis, genesis_state

    key = PrivateKey.from_label("lone-validator")
    genesis = dev_genesis("dcent-lone", [(key.public_key.raw, 10**12)], [])
    app = LedgerApp(genesis_state(genesis), genesis_hash=b"\x01" * 32)
    core = ConsensusCore(app, key=key)
    effects = core.start(1_000)
    assert app.height == 1
    for expected in (2, 3, 4):
        timers = [e for e in effects if isinstance(e, SetTimeout) and e.timeout.kind is TimeoutKind.COMMIT]
        assert len(timers) == 1
        effects = core.on_timeout(timers[0].timeout, 1_000 + expected)
        assert app.height == expected


def test_after_deciding_the_next_height_waits_for_the_commit_timer() -> None:
    """CometBFT's NewHeight step: the block-time floor. Messages of the new height that arrive
    meanwhile are kept, and acted on once round 0 starts."""
    s = Setup()
    s.core.receive(s.proposal(0, s.block_a), 10)
    effects = s.precommits(0, s.block_a.hash, s.others)
    [timer] = timeouts(effects, TimeoutKind.COMMIT)
    assert timer.timeout == Timeout(TimeoutKind.COMMIT, H + 1, 0)
    assert not timeouts(effects, TimeoutKind.PROPOSE), "round 0 of the next height has not started"

    early = s.core.receive(vote(s.others[0], H + 1, 0, PREVOTE, NIL), 20)
    early += s.core.receive(vote(s.others[1], H + 1, 0, PREVOTE, NIL), 20)
    early += s.core.receive(vote(s.others[2], H + 1, 0, PREVOTE, NIL), 20)
    assert not [e for e in early if isinstance(e, Broadcast)], "no vote of ours before the timer"
    assert s.core.step == STEP_PROPOSE

    started = s.core.on_timeout(timer.timeout, 30)
    [propose] = timeouts(started, TimeoutKind.PROPOSE)
    assert propose.timeout == Timeout(TimeoutKind.PROPOSE, H + 1, 0)

    s.core.on_timeout(propose.timeout, 40)  # line 57: prevote nil ...
    assert s.core.step == STEP_PRECOMMIT  # ... and the kept nil polka makes line 44 precommit nil


def test_retransmission_slows_down_while_a_round_drags_on_and_restarts_with_the_next() -> None:
    """Issue 14: re-sending every gossip interval for as long as a late round lasts piled
    copies onto the backlog that made it late. Each re-send doubles the interval, up to a cap."""
    from protocol.consensus.core import MAX_GOSSIP_BACKOFF
    from protocol.consensus.effects import SetTimeout

    s = Setup()
    interval = s.core.config.gossip_interval_ms

    def next_gossip(effects: list[Effect]) -> int:
        (timer,) = [e for e in effects if isinstance(e, SetTimeout) and e.timeout.kind is TimeoutKind.GOSSIP]
        return timer.duration_ms

    durations = [next_gossip(s.core.on_timeout(Timeout(TimeoutKind.GOSSIP, H, 0), 100)) for _ in range(5)]
    assert durations == [interval * min(2**k, MAX_GOSSIP_BACKOFF) for k in range(1, 6)]
    s.core.on_timeout(Timeout(TimeoutKind.PROPOSE, H, 0), 100)
    s.core.on_timeout(Timeout(TimeoutKind.PREVOTE, H, 0), 100)
    assert next_gossip(s.core.on_timeout(Timeout(TimeoutKind.PRECOMMIT, H, 0), 100)) == interval
