"""The simulator's checker: each property it checks is shown to fail when violated, with its own
arithmetic (stake, not validator count; its own signature checks) rather than the core's."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable

from protocol.consensus.ledger_app import LedgerApp
from protocol.consensus.messages import (
    PRECOMMIT,
    PREVOTE,
    Block,
    CommitCertificate,
    CommitSignature,
    DuplicateVoteEvidence,
    sign_vote,
)
from protocol.sim.checker import Checker, median_time
from protocol.sim.model import Reported

from .consensus_support import CHAIN_ID, Chain, certificate, vkey, vote

A = hashlib.sha256(b"a").digest()
B = hashlib.sha256(b"b").digest()
FAR_CLOCK = 10**9


def _checker(chain: Chain, byzantine: Iterable[int] = ()) -> Checker:
    return Checker(CHAIN_ID, chain.genesis, frozenset(vkey(i).address.raw for i in byzantine))


def _reported(app: LedgerApp) -> Reported:
    result = app.last_result
    assert result is not None
    return Reported(result.minted, result.validator_rewards, result.provider_rewards, result.burned)


def _commit(
    checker: Checker,
    app: LedgerApp,
    node: int,
    block: Block,
    cert: CommitCertificate,
    *,
    honest: bool = True,
    state_hash: bytes | None = None,
    clock: int = FAR_CLOCK,
) -> None:
    app.commit(block, certificate(block.height, 0, block.hash, range(len(app.validator_set(block.height)))))
    checker.on_commit(
        now_ms=1,
        node=node,
        honest=honest,
        block=block,
        certificate=cert,
        reported=_reported(app),
        state=app.state,
        state_hash=state_hash or block.state_hash,
        clock_bound_ms=clock,
    )


def _two_blocks(chain: Chain) -> tuple[Block, Block]:
    one = chain.app().build_block(height=1, proposer=vkey(0).address.raw, evidence=())
    other = chain.app().build_block(height=1, proposer=vkey(1).address.raw, evidence=())
    return one, other


def test_two_honest_nodes_committing_different_blocks_is_a_violation() -> None:
    chain = Chain()
    one, other = _two_blocks(chain)
    checker = _checker(chain)
    _commit(checker, chain.app(), 0, one, certificate(1, 0, one.hash, range(4)))
    _commit(checker, chain.app(), 1, one, certificate(1, 0, one.hash, range(4)))
    assert checker.violations == []
    _commit(checker, chain.app(), 2, other, certificate(1, 0, other.hash, range(4)))
    assert any("agreement" in v for v in checker.violations)


def test_a_byzantine_node_committing_another_block_is_not_an_agreement_violation() -> None:
    chain = Chain()
    one, other = _two_blocks(chain)
    checker = _checker(chain, byzantine=[3])
    _commit(checker, chain.app(), 0, one, certificate(1, 0, one.hash, range(4)))
    _commit(checker, chain.app(), 4, other, certificate(1, 0, other.hash, range(4)), honest=False)
    assert checker.violations == []


def test_committing_a_height_twice_is_a_violation() -> None:
    chain = Chain()
    one, _ = _two_blocks(chain)
    checker = _checker(chain)
    _commit(checker, chain.app(), 0, one, certificate(1, 0, one.hash, range(4)))
    _commit(checker, chain.app(), 0, one, certificate(1, 0, one.hash, range(4)))
    assert any("twice" in v for v in checker.violations)


def test_three_of_four_signers_without_two_thirds_of_the_stake_is_no_quorum() -> None:
    """Validator 0 holds 5 of 8: the three others are a quorum by count, not by stake."""
    chain = Chain(powers=(5, 1, 1, 1))
    one, _ = _two_blocks(chain)
    checker = _checker(chain)
    _commit(checker, chain.app(), 0, one, certificate(1, 0, one.hash, [1, 2, 3]))
    assert any("not more than 2/3" in v for v in checker.violations), checker.violations


def test_a_certificate_with_a_forged_signature_is_a_violation() -> None:
    chain = Chain()
    one, _ = _two_blocks(chain)
    cert = certificate(1, 0, one.hash, range(4))
    first = cert.signatures[0]
    forged = dataclasses.replace(
        cert, signatures=(CommitSignature(first.validator, bytes(64)), *cert.signatures[1:])
    )
    checker = _checker(chain)
    _commit(checker, chain.app(), 0, one, forged)
    assert any("does not verify" in v for v in checker.violations), checker.violations


def test_a_diverging_state_hash_is_a_violation() -> None:
    chain = Chain()
    one, _ = _two_blocks(chain)
    checker = _checker(chain)
    _commit(checker, chain.app(), 0, one, certificate(1, 0, one.hash, range(4)), state_hash=bytes(32))
    assert any("state" in v for v in checker.violations)


def test_an_honest_double_sign_is_a_violation_and_a_twin_one_is_not() -> None:
    checker = _checker(Chain(), byzantine=[3])
    for signer in (1, 3):
        for block in (A, B):
            signed = sign_vote(vkey(signer), CHAIN_ID, 1, 0, PREVOTE, block)
            checker.on_signed(1, signed, signed.validator)
    assert len(checker.violations) == 1 and vkey(1).address.raw[:4].hex() in checker.violations[0]
    again = sign_vote(vkey(2), CHAIN_ID, 1, 0, PRECOMMIT, b"")
    checker.on_signed(2, again, again.validator)
    checker.on_signed(3, again, again.validator)  # the same vote twice is fine
    assert len(checker.violations) == 1


def test_the_same_step_signed_at_another_time_is_a_double_sign() -> None:
    """BFT time makes a re-signed vote differ: a validator that forgot it signed is caught."""
    checker = _checker(Chain())
    for time_ms in (5, 6):
        signed = sign_vote(vkey(1), CHAIN_ID, 1, 0, PREVOTE, A, time_ms)
        checker.on_signed(1, signed, signed.validator)
    assert any("signed twice" in v for v in checker.violations)


def test_a_precommit_without_a_polka_breaks_the_honest_signer_rule() -> None:
    checker = _checker(Chain())
    for index in (0, 1):
        checker.observe(vote(index, 1, 0, PREVOTE, A))
    precommit = vote(2, 1, 0, PRECOMMIT, A)
    checker.on_signed(1, precommit, precommit.validator)
    assert any("without a polka" in v for v in checker.violations)


def test_a_prevote_against_the_lock_needs_a_newer_polka() -> None:
    checker = _checker(Chain())
    for index in (0, 1, 2):
        checker.observe(vote(index, 1, 0, PREVOTE, A))
    for signed in (vote(2, 1, 0, PRECOMMIT, A), vote(2, 1, 1, PREVOTE, B)):
        checker.on_signed(1, signed, signed.validator)
    assert any("locked on" in v for v in checker.violations)

    released = _checker(Chain())
    for index in (0, 1, 2):
        released.observe(vote(index, 1, 0, PREVOTE, A))
        released.observe(vote(index, 1, 1, PREVOTE, B))  # a polka for B after the lock
    for signed in (vote(2, 1, 0, PRECOMMIT, A), vote(2, 1, 2, PREVOTE, B)):
        released.on_signed(1, signed, signed.validator)
    assert released.violations == []


def test_forged_prevotes_make_no_polka() -> None:
    checker = _checker(Chain())
    for index in (0, 1, 3):
        checker.observe(dataclasses.replace(vote(index, 1, 0, PREVOTE, A), signature=bytes(64)))
    precommit = vote(2, 1, 0, PRECOMMIT, A)
    checker.on_signed(1, precommit, precommit.validator)
    assert any("without a polka" in v for v in checker.violations)


def test_the_median_precommit_time_is_weighted_by_stake() -> None:
    powers = {vkey(0).address.raw: 5, vkey(1).address.raw: 1, vkey(2).address.raw: 1}
    signatures = tuple(
        sorted(
            (CommitSignature(vkey(i).address.raw, bytes(64), t) for i, t in ((0, 300), (1, 100), (2, 200))),
            key=lambda entry: entry.validator,
        )
    )
    assert median_time(CommitCertificate(1, 0, A, signatures), powers) == 300


def _second_block(chain: Chain, time_ms: int) -> tuple[Checker, Block, LedgerApp]:
    """A checker that saw block 1 (precommits signed at ``time_ms``), and block 2 built on it."""
    first, _ = _two_blocks(chain)
    cert = CommitCertificate(
        1,
        0,
        first.hash,
        tuple(
            sorted(
                (
                    CommitSignature(v.validator, v.signature, v.time_ms)
                    for v in (vote(i, 1, 0, PRECOMMIT, first.hash, time_ms=time_ms) for i in range(4))
                ),
                key=lambda entry: entry.validator,
            )
        ),
    )
    checker = _checker(chain)
    app = chain.app()
    app.commit(first, cert)
    checker.on_commit(
        now_ms=1,
        node=0,
        honest=True,
        block=first,
        certificate=cert,
        reported=_reported(app),
        state=app.state,
        state_hash=first.state_hash,
        clock_bound_ms=FAR_CLOCK,
    )
    return checker, app.build_block(height=2, proposer=vkey(1).address.raw, evidence=()), app


def test_a_block_time_other_than_the_median_is_a_violation() -> None:
    chain = Chain()
    checker, second, _ = _second_block(chain, 7_000)
    assert second.time_ms == 7_000
    wrong = dataclasses.replace(second, time_ms=8_000)
    checker._first_commit(1, wrong, Reported(0, (), ()), FAR_CLOCK)
    assert any("not the median precommit time" in v for v in checker.violations)


def test_a_block_time_ahead_of_every_honest_clock_is_a_violation() -> None:
    chain = Chain()
    checker, second, app = _second_block(chain, 2**62)
    app.commit(second, certificate(2, 0, second.hash, range(4)))
    checker.on_commit(
        now_ms=1,
        node=0,
        honest=True,
        block=second,
        certificate=certificate(2, 0, second.hash, range(4)),
        reported=_reported(app),
        state=app.state,
        state_hash=second.state_hash,
        clock_bound_ms=50_000,
    )
    assert any("ahead of every honest clock" in v for v in checker.violations)


def _evidence(index: int, height: int, *, forged: bool = False) -> DuplicateVoteEvidence:
    a, b = vote(index, height, 0, PREVOTE, A), vote(index, height, 0, PREVOTE, B)
    if forged:
        a, b = dataclasses.replace(a, signature=bytes(64)), dataclasses.replace(b, signature=bytes(64))
    return DuplicateVoteEvidence.from_votes(a, b)


def test_evidence_against_an_honest_validator_or_forged_is_a_violation() -> None:
    chain = Chain()
    checker, _, app = _second_block(chain, 7_000)
    for evidence, expected in (
        (_evidence(3, 1), "slashes honest validator"),
        (_evidence(3, 1, forged=True), "not both signed"),
        (_evidence(3, 2), "outside the evidence window"),
    ):
        block = app.build_block(height=2, proposer=vkey(1).address.raw, evidence=(evidence,))
        checker.violations.clear()
        checker._check_evidence(1, block)
        assert any(expected in v for v in checker.violations), (expected, checker.violations)


def test_a_second_slash_for_one_validator_is_a_violation() -> None:
    chain = Chain()
    checker, _, app = _second_block(chain, 7_000)
    checker.byzantine = frozenset({vkey(3).address.raw})
    block = app.build_block(height=2, proposer=vkey(1).address.raw, evidence=(_evidence(3, 1),))
    checker._check_evidence(1, block)
    assert checker.violations == []
    checker.model.slashed_at[vkey(3).address.raw] = 2
    checker._check_evidence(1, block)
    assert any("slashed once" in v for v in checker.violations)
