"""Double-sign evidence: what counts, what is rejected, and slashing through the ledger."""

from __future__ import annotations

import hashlib

import pytest

from protocol.consensus.effects import Broadcast, Commit, TimeoutKind
from protocol.consensus.errors import (
    DuplicateEvidence,
    ForgedEvidence,
    InvalidEvidence,
    InvalidMessage,
    NotEquivocation,
    StaleEvidence,
)
from protocol.consensus.evidence import verify_block_evidence, verify_evidence
from protocol.consensus.ledger_app import LedgerApp
from protocol.consensus.messages import (
    NIL,
    PRECOMMIT,
    PREVOTE,
    DuplicateVoteEvidence,
    Proposal,
    Vote,
    sign_vote,
)
from protocol.consensus.validators import ValidatorSet
from protocol.consensus.verifier import SignatureVerifier
from protocol.ledger.params import Params

from .consensus_support import CHAIN_ID, Chain, build_block, certificate, propose, timeouts, vkey, vote

A = hashlib.sha256(b"block a").digest()
B = hashlib.sha256(b"block b").digest()


def _double_vote(index: int = 1, height: int = 1) -> DuplicateVoteEvidence:
    return DuplicateVoteEvidence.from_votes(
        vote(index, height, 0, PREVOTE, A), vote(index, height, 0, PREVOTE, B)
    )


def _check(
    evidence: DuplicateVoteEvidence,
    validators: ValidatorSet,
    *,
    current_height: int = 2,
    max_age: int = 100,
    punished: frozenset[bytes] = frozenset(),
) -> None:
    verify_evidence(
        evidence,
        chain_id=CHAIN_ID,
        current_height=current_height,
        max_age=max_age,
        validators_at=lambda height: validators,
        is_punished=punished.__contains__,
        verifier=SignatureVerifier(),
    )


def _expect(error: type[InvalidEvidence], code: int, action: object) -> None:
    with pytest.raises(InvalidEvidence) as caught:
        action()  # type: ignore[operator]
    assert type(caught.value) is error, repr(caught.value)
    assert caught.value.code == code


@pytest.fixture
def validators() -> ValidatorSet:
    return Chain().app().validator_set(1)


def test_two_signed_votes_for_different_blocks_are_evidence(validators: ValidatorSet) -> None:
    _check(_double_vote(), validators)
    nil_and_block = DuplicateVoteEvidence.from_votes(
        vote(2, 1, 3, PRECOMMIT, NIL), vote(2, 1, 3, PRECOMMIT, A)
    )
    _check(nil_and_block, validators)


def test_the_same_block_twice_is_not_evidence(validators: ValidatorSet) -> None:
    same = DuplicateVoteEvidence(vote(1, 1, 0, PREVOTE, A), vote(1, 1, 0, PREVOTE, A))
    _expect(NotEquivocation, 3031, lambda: _check(same, validators))


def test_votes_at_different_positions_are_not_evidence(validators: ValidatorSet) -> None:
    rounds = DuplicateVoteEvidence(vote(1, 1, 0, PREVOTE, A), vote(1, 1, 1, PREVOTE, B))
    types = DuplicateVoteEvidence(vote(1, 1, 0, PREVOTE, A), vote(1, 1, 0, PRECOMMIT, B))
    signers = DuplicateVoteEvidence(vote(1, 1, 0, PREVOTE, A), vote(2, 1, 0, PREVOTE, B))
    for evidence in (rounds, types, signers):
        _expect(NotEquivocation, 3031, lambda evidence=evidence: _check(evidence, validators))


def test_non_canonical_order_is_rejected(validators: ValidatorSet) -> None:
    ordered = _double_vote()
    swapped = DuplicateVoteEvidence(ordered.vote_b, ordered.vote_a)
    _expect(InvalidEvidence, 3030, lambda: _check(swapped, validators))


def test_forged_evidence_cannot_frame_an_honest_validator(validators: ValidatorSet) -> None:
    honest_vote = vote(1, 1, 0, PREVOTE, A)  # the one vote validator 1 really signed
    forged_signature = sign_vote(vkey(3), CHAIN_ID, 1, 0, PREVOTE, B).signature
    forged = Vote(1, 0, PREVOTE, B, vkey(1).address.raw, forged_signature)
    evidence = DuplicateVoteEvidence.from_votes(honest_vote, forged)
    _expect(ForgedEvidence, 3032, lambda: _check(evidence, validators))
    other_chain = sign_vote(vkey(1), "another-chain", 1, 0, PREVOTE, B)
    replayed = DuplicateVoteEvidence.from_votes(honest_vote, other_chain)
    _expect(ForgedEvidence, 3032, lambda: _check(replayed, validators))


def test_evidence_against_a_non_validator_is_rejected(validators: ValidatorSet) -> None:
    stranger = DuplicateVoteEvidence.from_votes(
        sign_vote(vkey(7), CHAIN_ID, 1, 0, PREVOTE, A), sign_vote(vkey(7), CHAIN_ID, 1, 0, PREVOTE, B)
    )
    _expect(ForgedEvidence, 3032, lambda: _check(stranger, validators))


def test_stale_and_future_evidence_is_rejected(validators: ValidatorSet) -> None:
    evidence = _double_vote(height=5)
    _check(evidence, validators, current_height=105, max_age=100)
    _expect(StaleEvidence, 3033, lambda: _check(evidence, validators, current_height=106, max_age=100))
    _expect(StaleEvidence, 3033, lambda: _check(evidence, validators, current_height=5))


def test_evidence_against_a_punished_validator_is_a_duplicate(validators: ValidatorSet) -> None:
    evidence = _double_vote(index=2)
    punished = frozenset({vkey(2).address.raw})
    _expect(DuplicateEvidence, 3034, lambda: _check(evidence, validators, punished=punished))


def test_one_validator_accused_twice_in_a_block_is_a_duplicate(validators: ValidatorSet) -> None:
    first = _double_vote(index=1)
    second = DuplicateVoteEvidence.from_votes(vote(1, 1, 2, PRECOMMIT, A), vote(1, 1, 2, PRECOMMIT, B))
    with pytest.raises(DuplicateEvidence):
        verify_block_evidence(
            [first, second],
            chain_id=CHAIN_ID,
            current_height=2,
            max_age=100,
            validators_at=lambda height: validators,
            is_punished=lambda address: False,
            verifier=SignatureVerifier(),
        )


def _commit_next(chain: Chain, app: LedgerApp, *, evidence: tuple[DuplicateVoteEvidence, ...] = ()) -> None:
    block = app.build_block(
        height=app.height + 1,
        proposer=vkey(0).address.raw,
        evidence=evidence,
    )
    app.commit(block, certificate(block.height, 0, block.hash, range(chain.size)))


def test_evidence_in_a_block_slashes_and_removes_the_validator_after_the_delay() -> None:
    chain = Chain()
    app = chain.app()
    culprit = vkey(2).address.raw
    bonded = app.state.validators.get(culprit).bonded  # type: ignore[union-attr]
    _commit_next(chain, app)  # height 1
    evidence = _double_vote(index=2, height=1)
    app.check_evidence(evidence, 2)
    _commit_next(chain, app, evidence=(evidence,))  # height 2 carries the evidence
    info = app.state.validators.get(culprit)
    assert info is not None and info.tombstoned
    assert info.bonded == bonded - bonded * Params().double_sign_slash // 10**18
    assert app.state.is_tombstoned(culprit)
    # The validator set changes two heights after the block that slashed: 2 + 2 = 4.
    assert culprit in app.validator_set(3)
    assert culprit not in app.validator_set(4)
    # The same offence cannot be punished twice.
    _expect(DuplicateEvidence, 3034, lambda: app.check_evidence(evidence, 3))


def test_a_block_with_forged_evidence_is_invalid() -> None:
    chain = Chain()
    app = chain.app()
    builder = chain.app()
    _commit_next(chain, app)
    _commit_next(chain, builder)
    forged = Vote(
        1, 0, PREVOTE, B, vkey(1).address.raw, sign_vote(vkey(3), CHAIN_ID, 1, 0, PREVOTE, B).signature
    )
    evidence = DuplicateVoteEvidence.from_votes(vote(1, 1, 0, PREVOTE, A), forged)
    # A Byzantine proposer could build such a block; the ledger would slash if it were applied.
    draft = builder.build_block(height=2, proposer=vkey(0).address.raw, evidence=(evidence,))
    with pytest.raises(ForgedEvidence):
        app.check_block(draft)
    with pytest.raises(InvalidMessage):
        app.commit(draft, certificate(2, 0, draft.hash, range(4)))
    assert app.height == 1 and not app.state.is_tombstoned(vkey(1).address.raw)


def test_core_rejects_forged_evidence_from_a_peer_and_keeps_its_pool() -> None:
    chain = Chain()
    core = chain.core(0)
    core.start(0)
    forged = Vote(
        1, 0, PREVOTE, B, vkey(1).address.raw, sign_vote(vkey(3), CHAIN_ID, 1, 0, PREVOTE, B).signature
    )
    evidence = DuplicateVoteEvidence.from_votes(vote(1, 1, 0, PREVOTE, A), forged)
    with pytest.raises(ForgedEvidence) as caught:
        core.receive(evidence, 10)
    assert caught.value.code == 3032
    assert core.evidence_pool == {}


def test_detected_equivocation_goes_into_our_next_proposal() -> None:
    chain = Chain()
    app = chain.app()
    me = chain.proposer(app, 2, 0)
    culprit = next(i for i in range(4) if i != me)
    core = chain.core(me, app=app)
    core.start(0)
    builder = chain.app()
    block = build_block(chain, builder, chain.proposer(app, 1, 0))
    core.receive(vote(culprit, 1, 0, PREVOTE, A), 10)
    core.receive(vote(culprit, 1, 0, PREVOTE, B), 10)
    assert culprit in [chain.index_of(v) for v in core.evidence_pool]
    effects = core.receive(propose(chain, app, 0, block), 10)
    for index in range(4):
        if index != me:
            effects += core.receive(vote(index, 1, 0, PRECOMMIT, block.hash), 20)
    assert [e.block for e in effects if isinstance(e, Commit)] == [block]
    [commit_timer] = timeouts(effects, TimeoutKind.COMMIT)
    effects = core.on_timeout(commit_timer.timeout, 25)
    [proposal] = [e.message for e in effects if isinstance(e, Broadcast) and isinstance(e.message, Proposal)]
    assert proposal.height == 2
    assert [ev.validator for ev in proposal.block.evidence] == [vkey(culprit).address.raw]
    effects = []
    for index in range(4):
        if index != me:
            effects += core.receive(vote(index, 2, 0, PRECOMMIT, proposal.block.hash), 30)
    assert [e.block for e in effects if isinstance(e, Commit)] == [proposal.block]
    assert core.evidence_pool == {}  # committed: no longer pending
    assert app.state.is_tombstoned(vkey(culprit).address.raw)
