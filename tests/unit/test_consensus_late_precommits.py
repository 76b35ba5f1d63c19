"""Precommits that reach a node after it decided still go into the next block's last commit: the
ledger jails a validator absent from the certificates (downtime), so leaving out whoever was
slowest to precommit jailed honest validators (seen on a testnet of processes)."""

from __future__ import annotations

import pytest

from protocol.consensus.effects import Timeout, TimeoutKind
from protocol.consensus.errors import InvalidSignature, NotInValidatorSet
from protocol.consensus.messages import NIL, PRECOMMIT, PREVOTE, CommitCertificate, Vote
from protocol.crypto import PrivateKey

from .consensus_support import Chain, build_block, proposals_sent, propose, vkey, vote


def _signers(certificate: CommitCertificate) -> set[bytes]:
    return {entry.validator for entry in certificate.signatures}


class DecidedWithoutOne:
    """Validator ``me``, the proposer of height 2, decided height 1 on its own precommit and two
    others'; the fourth validator's precommit has not arrived yet."""

    def __init__(self) -> None:
        self.chain = Chain()
        self.app = self.chain.app()
        self.me = self.chain.proposer(self.app, 2, 0)
        self.core = self.chain.core(self.me, app=self.app)
        self.core.start(0)
        self.block = build_block(self.chain, self.chain.app(), self.chain.proposer(self.app, 1, 0))
        self.core.receive(propose(self.chain, self.app, 0, self.block), 10)
        others = [i for i in range(self.chain.size) if i != self.me]
        self.on_time, self.late = others[:2], others[2]
        for index in others:
            self.core.receive(vote(index, 1, 0, PREVOTE, self.block.hash), 20)
        for index in self.on_time:
            self.core.receive(vote(index, 1, 0, PRECOMMIT, self.block.hash), 30)
        assert self.app.height == 1
        self.decided = {vkey(i).address.raw for i in (self.me, *self.on_time)}

    def late_precommit(self) -> Vote:
        return vote(self.late, 1, 0, PRECOMMIT, self.block.hash)


def test_a_precommit_after_the_decision_is_in_the_next_blocks_last_commit() -> None:
    s = DecidedWithoutOne()
    assert _signers(s.app.last_certificate) == s.decided
    s.core.receive(s.late_precommit(), 40)
    everyone = {vkey(i).address.raw for i in range(s.chain.size)}
    assert _signers(s.app.last_certificate) == everyone
    effects = s.core.on_timeout(Timeout(TimeoutKind.COMMIT, 2, 0), 1_000)
    [proposal] = proposals_sent(effects)
    assert _signers(proposal.block.last_commit) == everyone
    s.app.check_block(proposal.block)  # the other validators accept it


def test_only_a_signed_precommit_for_the_decided_block_and_round_extends_it() -> None:
    s = DecidedWithoutOne()
    s.core.receive(vote(s.late, 1, 0, PRECOMMIT, NIL), 40)
    s.core.receive(vote(s.late, 1, 1, PRECOMMIT, s.block.hash), 40)
    s.core.receive(vote(s.late, 1, 0, PREVOTE, s.block.hash), 40)
    assert _signers(s.app.last_certificate) == s.decided
    forged = Vote(1, 0, PRECOMMIT, s.block.hash, vkey(s.late).address.raw, bytes(64), 1_000)
    with pytest.raises(InvalidSignature):
        s.core.receive(forged, 40)
    stranger = PrivateKey.from_label("not-a-validator")
    with pytest.raises(NotInValidatorSet):
        s.core.receive(Vote(1, 0, PRECOMMIT, s.block.hash, stranger.address.raw, bytes(64), 1_000), 40)
    assert _signers(s.app.last_certificate) == s.decided
