"""BFT time: a block's time is the stake-weighted median of the precommit times in its last
commit, so no proposer chooses it and Byzantine validators below 1/3 cannot move it outside the
honest validators' clocks. The attack it answers: one proposer proposing ``time_ms = 2**63 - 1``
used to be committed, after which no later block could be built."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.consensus.certificate import bft_time
from protocol.consensus.effects import Commit, Effect, Timeout, TimeoutKind
from protocol.consensus.errors import InvalidBlock
from protocol.consensus.ledger_app import LedgerApp
from protocol.consensus.messages import (
    GENESIS_BLOCK_TIME_MS,
    MAX_TIME_MS,
    NIL,
    PRECOMMIT,
    PREVOTE,
    CommitCertificate,
    CommitSignature,
    CommittedBlock,
    Proposal,
    proposal_sign_bytes,
)
from protocol.consensus.validators import Validator, ValidatorSet
from protocol.crypto import PrivateKey

from .consensus_support import (
    CHAIN_ID,
    Chain,
    Cluster,
    build_block,
    certificate,
    own_votes,
    propose,
    vkey,
    vote,
    vote_time,
)

H = 1
_KEYS = [PrivateKey.from_label(f"bft-time/{i}") for i in range(10)]


def _set(powers: list[int]) -> ValidatorSet:
    return ValidatorSet(
        Validator(k.address.raw, k.public_key.raw, p) for k, p in zip(_KEYS, powers, strict=False)
    )


def _cert(entries: list[tuple[int, int]]) -> CommitCertificate:
    """A certificate at height 1 whose signer ``i`` signed at time ``t`` (signatures are not
    checked by ``bft_time``: it runs on verified certificates)."""
    signatures = tuple(
        sorted(
            (CommitSignature(_KEYS[i].address.raw, bytes(64), t) for i, t in entries),
            key=lambda entry: entry.validator,
        )
    )
    return CommitCertificate(1, 0, bytes(32), signatures)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_the_median_stays_within_the_honest_signers_times(data: st.DataObject) -> None:
    """Any stakes, any Byzantine minority (< 1/3 of the power) signing any times, any signer
    subset holding > 2/3 of the power (the proposer picks it): the block time is between the
    earliest and the latest honest signer's time."""
    n = data.draw(st.integers(1, 10))
    powers = data.draw(st.lists(st.integers(1, 1_000), min_size=n, max_size=n))
    validators = _set(powers)
    total = sum(powers)
    order = data.draw(st.permutations(range(n)))
    byzantine: list[int] = []
    for index in order:  # a random Byzantine set below 1/3
        if 3 * (sum(powers[i] for i in byzantine) + powers[index]) < total:
            byzantine.append(index)
    signers = [i for i in range(n) if data.draw(st.booleans(), label=f"signs {i}")]
    signers += [i for i in byzantine if i not in signers]  # Byzantine validators always sign
    if 3 * sum(powers[i] for i in signers) <= 2 * total:
        signers = list(range(n))
    honest_times = {i: data.draw(st.integers(10**6, 10**6 + 10**4)) for i in signers if i not in byzantine}
    extreme = st.sampled_from([0, 1, MAX_TIME_MS, MAX_TIME_MS - 1])
    times = {**honest_times, **{i: data.draw(extreme) for i in byzantine}}
    median = bft_time(_cert([(i, times[i]) for i in signers]), validators)
    assert min(honest_times.values()) <= median <= max(honest_times.values())


def test_the_median_is_weighted_by_stake() -> None:
    validators = _set([5, 1, 1])  # the first holds 5/7
    assert bft_time(_cert([(0, 300), (1, 100), (2, 200)]), validators) == 300
    assert bft_time(_cert([(0, 100), (1, 200), (2, 300)]), _set([1, 1, 1])) == 200
    assert bft_time(CommitCertificate(0, 0, bytes(32), ()), validators) == GENESIS_BLOCK_TIME_MS


class HeightTwo:
    """Block 1 committed (its precommits signed at 1000 ms); validator ``me`` at height 2,
    proposing in neither round 0 nor round 1."""

    def __init__(self) -> None:
        self.chain = Chain()
        self.first = build_block(self.chain, self.chain.app(), 0)
        self.first_cert = certificate(1, 0, self.first.hash, range(4))
        self.app = self.next_app()
        self.me = self.chain.non_proposer(self.app, 2, rounds=(0, 1))
        self.others = [i for i in range(4) if i != self.me]
        self.core = self.chain.core(self.me, app=self.app)
        self.core.start(5_000)

    def next_app(self) -> LedgerApp:
        app = self.chain.app()
        app.commit(self.first, self.first_cert)
        return app

    def proposal(self, round_: int, *, time_ms: int | None = None) -> Proposal:
        """The proposer of ``round_`` proposes a block that executes and hashes right, with
        ``time_ms`` in place of its BFT time when given."""
        builder = self.next_app()
        block = build_block(self.chain, builder, self.chain.proposer(builder, 2, round_))
        if time_ms is None:
            return propose(self.chain, self.app, round_, block)
        block = dataclasses.replace(block, time_ms=time_ms)
        signer = vkey(self.chain.proposer(builder, 2, round_))
        return Proposal(
            2, round_, -1, block, signer.sign(proposal_sign_bytes(CHAIN_ID, 2, round_, -1, block.hash))
        )

    def my_votes(self, effects: list[Effect]) -> list[tuple[int, bytes]]:
        return [(v.type, v.block_hash) for v in own_votes(effects, vkey(self.me).address.raw)]


def test_a_block_from_the_far_future_gets_a_nil_prevote_and_the_next_round_decides() -> None:
    """One proposer, any stake: its block at 2**63 - 1 is refused by every honest validator,
    and the next round's proposer gets its block, at its BFT time, committed."""
    s = HeightTwo()
    attack = s.proposal(0, time_ms=MAX_TIME_MS)
    assert s.my_votes(s.core.receive(attack, 5_010)) == [(PREVOTE, NIL)]
    with pytest.raises(InvalidBlock, match="BFT time"):
        s.app.check_block(attack.block)
    for vote_type in (PREVOTE, PRECOMMIT):
        for index in s.others:
            s.core.receive(vote(index, 2, 0, vote_type, NIL), 5_020)
    s.core.on_timeout(Timeout(TimeoutKind.PRECOMMIT, 2, 0), 6_000)
    assert s.core.round == 1
    honest = s.proposal(1)
    assert honest.block.time_ms == bft_time(s.first_cert, s.app.validator_set(1)) == vote_time(1)
    assert s.my_votes(s.core.receive(honest, 6_010)) == [(PREVOTE, honest.block.hash)]
    for index in s.others:
        s.core.receive(vote(index, 2, 1, PREVOTE, honest.block.hash), 6_020)
    decided: list[Commit] = []
    for index in s.others:
        effects = s.core.receive(vote(index, 2, 1, PRECOMMIT, honest.block.hash), 6_030)
        decided += [e for e in effects if isinstance(e, Commit)]
    assert [c.block for c in decided] == [honest.block]


@pytest.mark.parametrize("time_ms", [0, vote_time(1) - 1, vote_time(1) + 1, MAX_TIME_MS])
def test_any_time_but_the_bft_time_gets_a_nil_prevote(time_ms: int) -> None:
    s = HeightTwo()
    assert s.my_votes(s.core.receive(s.proposal(0, time_ms=time_ms), 5_010)) == [(PREVOTE, NIL)]


def test_a_synced_block_with_a_wrong_time_is_refused_even_with_a_valid_certificate() -> None:
    """Sync re-checks the rule: a quorum certificate over a block with a chosen time (which only
    more than 1/3 of Byzantine power could produce) is not applied."""
    chain = Chain()
    block = dataclasses.replace(build_block(chain, chain.app(), 0), time_ms=123)
    late = chain.core(3)
    late.start(0)
    try:
        late.receive(CommittedBlock(block, certificate(1, 0, block.hash, range(4))), 10)
    except InvalidBlock:
        pass
    else:
        raise AssertionError("a block whose time is not its BFT time was synced")
    assert late.app.height == 0


def test_honest_precommits_are_timed_after_the_block_and_block_times_increase() -> None:
    """Four cores whose clocks all read 10 ms: precommit times are pushed past each block's
    time, so every height's time exceeds its parent's and never runs ahead of the clocks by
    more than a millisecond per height."""
    cluster = Cluster(Chain())
    cluster.run(6)
    blocks = [c.block for c in cluster.blocks[0][:6]]
    times = [b.time_ms for b in blocks]
    assert times[0] == GENESIS_BLOCK_TIME_MS
    assert all(a < b for a, b in itertools.pairwise(times)), times
    assert times[-1] <= 10 + len(times)
    for committed in cluster.blocks[0][:6]:
        assert all(entry.time_ms > committed.block.time_ms for entry in committed.certificate.signatures)
