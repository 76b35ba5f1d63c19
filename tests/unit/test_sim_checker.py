"""The safety checker itself: each property it checks is shown to fail when violated."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from protocol.consensus.messages import PRECOMMIT, PREVOTE, Block, sign_vote
from protocol.consensus.verifier import SignatureVerifier
from protocol.sim.checker import Checker

from .consensus_support import CHAIN_ID, Chain, certificate, vkey

A = hashlib.sha256(b"a").digest()
B = hashlib.sha256(b"b").digest()


def _checker(byzantine: frozenset[bytes] = frozenset()) -> Checker:
    return Checker(CHAIN_ID, SignatureVerifier(), byzantine)


def _blocks() -> tuple[Chain, Block, Block]:
    chain = Chain()
    one = chain.app().build_block(height=1, proposer=vkey(0).address.raw, evidence=())
    other = chain.app().build_block(height=1, proposer=vkey(1).address.raw, evidence=())
    return chain, one, other


def _commit(
    checker: Checker,
    chain: Chain,
    node: int,
    block: Block,
    *,
    signers: Iterable[int] = range(4),
    honest: bool = True,
    state_hash: bytes | None = None,
) -> None:
    app = chain.app()
    app.commit(block, certificate(1, 0, block.hash, range(4)))
    checker.on_commit(
        now_ms=1,
        node=node,
        honest=honest,
        block=block,
        certificate=certificate(1, 0, block.hash, signers),
        validators=app.validator_set(1),
        state=app.state,
        state_hash=state_hash or block.state_hash,
    )


def test_two_honest_nodes_committing_different_blocks_is_a_violation() -> None:
    chain, one, other = _blocks()
    checker = _checker()
    _commit(checker, chain, 0, one)
    _commit(checker, chain, 1, one)
    assert checker.violations == []
    _commit(checker, chain, 2, other)
    assert any("agreement" in v for v in checker.violations)


def test_a_byzantine_node_committing_another_block_is_not_an_agreement_violation() -> None:
    chain, one, other = _blocks()
    checker = _checker()
    _commit(checker, chain, 0, one)
    _commit(checker, chain, 4, other, honest=False)
    assert checker.violations == []


def test_committing_a_height_twice_is_a_violation() -> None:
    chain, one, _ = _blocks()
    checker = _checker()
    _commit(checker, chain, 0, one)
    _commit(checker, chain, 0, one)
    assert any("twice" in v for v in checker.violations)


def test_a_commit_without_a_quorum_certificate_is_a_violation() -> None:
    chain, one, _ = _blocks()
    checker = _checker()
    _commit(checker, chain, 0, one, signers=range(2))
    assert any("bad certificate" in v for v in checker.violations)


def test_a_diverging_state_hash_is_a_violation() -> None:
    chain, one, _ = _blocks()
    checker = _checker()
    _commit(checker, chain, 0, one, state_hash=bytes(32))
    assert any("state" in v for v in checker.violations)


def test_an_honest_double_sign_is_a_violation_and_a_twin_one_is_not() -> None:
    checker = _checker(byzantine=frozenset({vkey(3).address.raw}))
    for signer in (1, 3):
        for block in (A, B):
            vote = sign_vote(vkey(signer), CHAIN_ID, 1, 0, PREVOTE, block)
            checker.on_signed(1, vote, vote.validator)
    assert len(checker.violations) == 1 and vkey(1).address.raw[:4].hex() in checker.violations[0]
    again = sign_vote(vkey(2), CHAIN_ID, 1, 0, PRECOMMIT, A)
    checker.on_signed(2, again, again.validator)
    checker.on_signed(3, again, again.validator)  # the same vote twice is fine
    assert len(checker.violations) == 1
