"""The simulator's stale-evidence attack reaches the evidence window's own rule.

A Byzantine key with ``invalid_blocks`` gossips, once, its private equivocation from
``evidence_max_age`` blocks before the height it votes at: honest nodes admit evidence for the
next block, where this one is exactly one block past the window. Without it no run reached the
window's rule, so ``bench/mutants.py``'s ``evidence_age_unchecked`` survived every seed.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from protocol.consensus.errors import StaleEvidence
from protocol.consensus.evidence import verify_evidence
from protocol.consensus.messages import PREVOTE, DuplicateVoteEvidence, sign_vote
from protocol.consensus.validators import Validator, ValidatorSet
from protocol.consensus.verifier import SignatureVerifier
from protocol.sim.adversary import Adversary
from protocol.sim.rng import SplitMix64
from protocol.sim.setup import CHAIN_ID, SIM_PARAMS, validator_key

MAX_AGE = SIM_PARAMS.evidence_max_age


class RecordingNetwork:
    def __init__(self, peers: list[Any]) -> None:
        self.peers = peers
        self.sent: list[tuple[Any, object]] = []

    def peers_of(self, node: Any) -> list[Any]:
        return self.peers

    def send(self, src: Any, dst: Any, message: object) -> None:
        self.sent.append((dst, message))


def _vote_through_heights(last: int) -> tuple[Adversary, RecordingNetwork]:
    key = validator_key(3)
    adversary = Adversary(key, frozenset({"invalid_blocks"}), SplitMix64(7), colluders=(key,))
    net = RecordingNetwork(peers=["peer-a", "peer-b"])
    node = SimpleNamespace(core=None, app=None)
    for height in range(1, last + 1):
        adversary.broadcast(net, node, sign_vote(key, CHAIN_ID, height, 0, PREVOTE, bytes(32)))  # type: ignore[arg-type]
    return adversary, net


def _evidence_sent(net: RecordingNetwork) -> list[DuplicateVoteEvidence]:
    return [m for _, m in net.sent if isinstance(m, DuplicateVoteEvidence)]


def test_no_evidence_is_gossiped_before_any_is_past_the_window() -> None:
    _, net = _vote_through_heights(MAX_AGE)
    assert _evidence_sent(net) == []


def test_each_private_equivocation_is_gossiped_once_to_every_peer_when_one_block_too_old() -> None:
    adversary, net = _vote_through_heights(MAX_AGE + 3)
    sent = _evidence_sent(net)
    # At heights MAX_AGE+1 .. MAX_AGE+3: the evidence of heights 1 .. 3, to both peers.
    assert [e.height for e in sent] == [1, 1, 2, 2, 3, 3]
    assert [dst for dst, m in net.sent if isinstance(m, DuplicateVoteEvidence)] == ["peer-a", "peer-b"] * 3
    assert all(e.validator == adversary.address for e in sent)
    # Voting at a height again (a later round) does not resend it.
    key = validator_key(3)
    adversary.broadcast(
        net,
        SimpleNamespace(core=None, app=None),
        sign_vote(key, CHAIN_ID, MAX_AGE + 3, 1, PREVOTE, bytes(32)),
    )  # type: ignore[arg-type]
    assert len(_evidence_sent(net)) == 6


def test_only_the_window_rule_refuses_the_gossiped_evidence() -> None:
    """Admitted at height h (checked for block h + 1), the evidence of h - max_age is one block
    past the window; every other check passes, so only the window's rule can refuse it."""
    _, net = _vote_through_heights(MAX_AGE + 1)
    (evidence, _) = _evidence_sent(net)
    key = validator_key(3)
    validators = ValidatorSet([Validator(key.address.raw, key.public_key.raw, 10)])
    check = dict(
        chain_id=CHAIN_ID,
        current_height=MAX_AGE + 2,
        validators_at=lambda height: validators,
        is_punished=lambda address: False,
        verifier=SignatureVerifier(),
    )
    with pytest.raises(StaleEvidence, match="older than"):
        verify_evidence(evidence, max_age=MAX_AGE, **check)  # type: ignore[arg-type]
    verify_evidence(evidence, max_age=MAX_AGE + 1, **check)  # type: ignore[arg-type]
