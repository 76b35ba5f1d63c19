"""Messages for other heights act only once authenticated, and the next height's messages are
buffered per validator: a stranger's flood can neither make us send or ask for blocks nor evict
a real proposal. The core raises nothing but InvalidMessage for bad input, and on_timeout
never raises."""

from __future__ import annotations

import contextlib
import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.consensus.core import ConsensusCore
from protocol.consensus.effects import Commit, Effect, RequestSync, SendBlocks, Timeout, TimeoutKind
from protocol.consensus.errors import InvalidMessage, InvalidSignature, NotInValidatorSet
from protocol.consensus.messages import (
    NIL,
    PRECOMMIT,
    PREVOTE,
    CommitSignature,
    CommittedBlock,
    DuplicateVoteEvidence,
    Proposal,
    Vote,
    proposal_sign_bytes,
    sign_vote,
)
from protocol.crypto import PrivateKey

from .consensus_support import (
    CHAIN_ID,
    Chain,
    Cluster,
    build_block,
    certificate,
    client_key,
    own_votes,
    propose,
    vkey,
    vote,
)

STRANGER = PrivateKey.from_label("other-heights/stranger")


def _kinds(effects: list[Effect], kind: type) -> list[Effect]:
    return [e for e in effects if isinstance(e, kind)]


def _forged(index: int, height: int, round_: int, vote_type: int = PREVOTE) -> Vote:
    """A vote claiming validator ``index`` with a signature that is not its."""
    genuine = vote(index, height, round_, vote_type, NIL)
    return dataclasses.replace(genuine, signature=bytes(64))


class AtHeightOne:
    """A validator at height 1 that proposes in no round we use; block 1 and the real proposal
    of height 2, round 0, prepared by the test."""

    def __init__(self, *, per_validator: int = 64) -> None:
        self.chain = Chain()
        self.app = self.chain.app()
        self.me = self.chain.non_proposer(self.app, 1, rounds=(0,))
        config = dataclasses.replace(self.chain.core(0).config, max_buffered_per_validator=per_validator)
        self.core = self.chain.core(self.me, app=self.app, config=config)
        self.core.start(0)
        self.others = [i for i in range(4) if i != self.me]
        builder = self.chain.app()
        self.first = build_block(self.chain, builder, self.chain.proposer(builder, 1, 0))
        builder.commit(self.first, certificate(1, 0, self.first.hash, range(4)))
        self.second = build_block(self.chain, builder, self.chain.proposer(builder, 2, 0))
        self.next_proposal = propose(self.chain, builder, 0, self.second)

    def decide_first(self) -> list[Effect]:
        effects = self.core.receive(propose(self.chain, self.app, 0, self.first), 10)
        for index in self.others:
            effects += self.core.receive(vote(index, 1, 0, PREVOTE, self.first.hash), 20)
        for index in self.others:
            effects += self.core.receive(vote(index, 1, 0, PRECOMMIT, self.first.hash), 30)
        assert _kinds(effects, Commit), "height 1 was not decided"
        effects += self.core.on_timeout(Timeout(TimeoutKind.COMMIT, 2, 0), 40)
        return effects

    def my_votes(self, effects: list[Effect]) -> list[tuple[int, int, int, bytes]]:
        return [
            (v.height, v.round, v.type, v.block_hash) for v in own_votes(effects, vkey(self.me).address.raw)
        ]


def test_a_strangers_flood_of_next_height_votes_does_not_evict_the_real_proposal() -> None:
    """The attack of issue 12: 1024 next-height votes from a non-validator, then the real
    proposal. Every vote is refused with a typed error and buffers nothing; the proposal is
    kept and gets our prevote as soon as we reach height 2."""
    s = AtHeightOne()
    for round_ in range(1024):
        stranger_vote = sign_vote(STRANGER, CHAIN_ID, 2, round_, PREVOTE, NIL)
        with pytest.raises(NotInValidatorSet):
            s.core.receive(stranger_vote, 5)
        with pytest.raises(InvalidSignature):
            s.core.receive(_forged(s.others[round_ % 3], 2, round_), 5)
    assert s.core.receive(s.next_proposal, 6) == []
    effects = s.decide_first()
    assert (2, 0, PREVOTE, s.second.hash) in s.my_votes(effects)


def test_a_validator_fills_only_its_own_share_of_the_buffer() -> None:
    s = AtHeightOne(per_validator=8)
    chatty = next(i for i in s.others if vkey(i).address.raw != s.second.proposer)
    s.core.receive(s.next_proposal, 5)
    for round_ in range(100):
        s.core.receive(vote(chatty, 2, round_, PREVOTE, NIL), 6)
    buffered = s.core._future  # the buffer itself: what it holds is the point of this test
    assert len(buffered.held_from(vkey(chatty).address.raw)) == 8  # its newest 8, no more
    assert buffered.held_from(s.second.proposer) == [s.next_proposal]
    effects = s.decide_first()
    assert (2, 0, PREVOTE, s.second.hash) in s.my_votes(effects)


def test_a_forged_or_strangers_vote_for_a_past_height_sends_no_blocks() -> None:
    s = AtHeightOne()
    s.decide_first()
    lagging = s.others[0]
    with pytest.raises(InvalidSignature):
        s.core.receive(_forged(lagging, 1, 3), 50)
    with pytest.raises(NotInValidatorSet):
        s.core.receive(sign_vote(STRANGER, CHAIN_ID, 1, 3, PREVOTE, NIL), 50)
    effects = s.core.receive(vote(lagging, 1, 3, PREVOTE, NIL), 50)
    assert effects == [SendBlocks(vkey(lagging).address.raw, 1)]


def test_only_a_validators_signed_vote_from_far_ahead_makes_us_ask_for_blocks() -> None:
    s = AtHeightOne()
    with pytest.raises(NotInValidatorSet):
        s.core.receive(sign_vote(STRANGER, CHAIN_ID, 9, 0, PREVOTE, NIL), 5)
    with pytest.raises(InvalidSignature):
        s.core.receive(_forged(s.others[0], 9, 0), 5)
    effects = s.core.receive(vote(s.others[0], 9, 0, PREVOTE, NIL), 5)
    assert _kinds(effects, RequestSync) == [RequestSync(1, vkey(s.others[0]).address.raw)]


def test_a_next_height_proposal_not_signed_by_its_proposer_is_refused() -> None:
    s = AtHeightOne()
    impostor = next(i for i in range(4) if vkey(i).address.raw != s.second.proposer)
    payload = proposal_sign_bytes(CHAIN_ID, 2, 0, -1, s.second.hash)
    forged = Proposal(2, 0, -1, s.second, vkey(impostor).sign(payload))
    with pytest.raises(InvalidSignature):
        s.core.receive(forged, 5)
    effects = s.decide_first()
    assert [v for v in s.my_votes(effects) if v[0] == 2] == []  # nothing to prevote yet


def test_a_block_from_the_future_triggers_sync_only_when_validators_signed_it() -> None:
    cluster = Cluster(Chain())
    cluster.run(4)
    fourth = cluster.blocks[0][3]
    node = cluster.chain.core(3)
    node.start(0)
    cert = fourth.certificate
    forged = dataclasses.replace(
        cert, signatures=tuple(CommitSignature(e.validator, bytes(64), e.time_ms) for e in cert.signatures)
    )
    assert _kinds(node.receive(CommittedBlock(fourth.block, forged), 10), RequestSync) == []
    strangers = dataclasses.replace(cert, signatures=())
    assert _kinds(node.receive(CommittedBlock(fourth.block, strangers), 11), RequestSync) == []
    assert _kinds(node.receive(fourth, 12), RequestSync) == [RequestSync(1, b"")]


# --- the core under arbitrary input ------------------------------------------------------------

_KEYS = [vkey(i) for i in range(4)] + [client_key(0), STRANGER]


@st.composite
def _votes(draw: st.DrawFn) -> Vote:
    key = draw(st.sampled_from(_KEYS))
    height = draw(st.sampled_from([1, 2, 3, 9, 2**63 - 1]))
    round_ = draw(st.sampled_from([0, 1, 2, 7, 2**31 - 1]))
    vote_type = draw(st.sampled_from([PREVOTE, PRECOMMIT]))
    block_hash = draw(st.sampled_from([NIL, bytes(32), b"\x01" * 32]))
    time_ms = draw(st.sampled_from([0, 5, 2**63 - 1]))
    signed = sign_vote(key, CHAIN_ID, height, round_, vote_type, block_hash, time_ms)
    if draw(st.booleans()):
        return signed
    return dataclasses.replace(signed, signature=draw(st.binary(min_size=64, max_size=64)))


@st.composite
def _inputs(draw: st.DrawFn, blocks: tuple[CommittedBlock, ...]) -> object:
    choice = draw(st.integers(0, 5))
    if choice == 0:
        return Timeout(
            draw(st.sampled_from(list(TimeoutKind))), draw(st.integers(0, 4)), draw(st.integers(0, 4))
        )
    if choice == 1:
        committed = draw(st.sampled_from(blocks))
        key = draw(st.sampled_from(_KEYS))
        round_ = draw(st.integers(0, 3))
        pol = draw(st.integers(-1, round_ - 1))
        block = committed.block
        if draw(st.booleans()):
            block = dataclasses.replace(block, time_ms=draw(st.sampled_from([0, 2**63 - 1])))
        payload = proposal_sign_bytes(CHAIN_ID, block.height, round_, pol, block.hash)
        return Proposal(block.height, round_, pol, block, key.sign(payload))
    if choice == 2:
        committed = draw(st.sampled_from(blocks))
        if draw(st.booleans()):
            cert = committed.certificate
            committed = dataclasses.replace(
                committed, certificate=dataclasses.replace(cert, signatures=cert.signatures[:1])
            )
        return committed
    if choice == 3:
        first, second = draw(_votes()), draw(_votes())
        return DuplicateVoteEvidence(first, second)
    return draw(_votes())


@pytest.fixture(scope="module")
def decided() -> tuple[Chain, tuple[CommittedBlock, ...]]:
    cluster = Cluster(Chain())
    cluster.run(3)
    return cluster.chain, tuple(cluster.blocks[0][:3])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_arbitrary_input_raises_only_invalid_message_and_timeouts_never_raise(
    decided: tuple[Chain, tuple[CommittedBlock, ...]], data: st.DataObject
) -> None:
    chain, blocks = decided
    core: ConsensusCore = chain.core(data.draw(st.integers(0, 3)))
    core.start(0)
    now = 0
    for event in data.draw(st.lists(_inputs(blocks), min_size=1, max_size=40)):
        now += data.draw(st.integers(0, 2_000))
        if isinstance(event, Timeout):
            core.on_timeout(event, now)
            continue
        assert isinstance(event, Vote | Proposal | CommittedBlock | DuplicateVoteEvidence)
        with contextlib.suppress(InvalidMessage):
            core.receive(event, now)
    assert core.height >= 1
