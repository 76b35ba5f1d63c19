"""Consensus messages: validated when built, canonical on the wire, signatures domain-separated."""

from __future__ import annotations

import contextlib
import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.consensus.effects import ConsensusConfig
from protocol.consensus.errors import InvalidConfig, InvalidMessage
from protocol.consensus.messages import (
    NIL,
    PRECOMMIT,
    PREVOTE,
    STEP_PREVOTE,
    DuplicateVoteEvidence,
    Proposal,
    SignState,
    Vote,
    proposal_sign_bytes,
    sign_vote,
    vote_sign_bytes,
)
from protocol.encoding import DecodeError, sign_bytes

from .consensus_support import CHAIN_ID, Chain, build_block, propose, vkey


def test_vote_round_trips_and_rejects_junk() -> None:
    vote = sign_vote(vkey(0), CHAIN_ID, 3, 1, PREVOTE, NIL)
    assert Vote.decode(vote.encode()) == vote
    wire = vote.to_wire()
    for field, value in (
        ("type", 7),
        ("height", 0),
        ("round", -1),
        ("block_hash", b"short"),
        ("signature", b""),
    ):
        with pytest.raises(DecodeError) as caught:
            Vote.from_wire({**wire, field: value})
        assert caught.value.code == 1001
    with pytest.raises(DecodeError):
        Vote.from_wire({**wire, "extra": 1})


def test_a_proposal_and_its_block_round_trip() -> None:
    chain = Chain()
    app = chain.app()
    proposal = propose(chain, app, 0, build_block(chain, chain.app(), 0))
    decoded = Proposal.decode(proposal.encode())
    assert decoded == proposal and decoded.block.hash == proposal.block.hash
    with pytest.raises(InvalidMessage):
        dataclasses.replace(proposal, pol_round=0)  # pol_round must be below the round


def test_vote_signatures_are_bound_to_chain_and_kind() -> None:
    vote = sign_vote(vkey(0), CHAIN_ID, 3, 1, PRECOMMIT, b"\x01" * 32)
    message = vote_sign_bytes(CHAIN_ID, 3, 1, PRECOMMIT, b"\x01" * 32, vote.validator)
    assert vkey(0).public_key.verify(vote.signature, message)
    assert not vkey(0).public_key.verify(vote.signature, vote.sign_bytes("another-chain"))
    payload = message  # the same fields under the proposal domain are different bytes
    assert proposal_sign_bytes(CHAIN_ID, 3, 1, -1, b"\x01" * 32) != payload
    assert sign_bytes(CHAIN_ID, "tx", b"") != sign_bytes(CHAIN_ID, "vote", b"")


def test_evidence_is_ordered_canonically() -> None:
    low = sign_vote(vkey(1), CHAIN_ID, 2, 0, PREVOTE, NIL)
    high = sign_vote(vkey(1), CHAIN_ID, 2, 0, PREVOTE, b"\x09" * 32)
    assert DuplicateVoteEvidence.from_votes(high, low) == DuplicateVoteEvidence.from_votes(low, high)
    evidence = DuplicateVoteEvidence.from_votes(high, low)
    assert evidence.vote_a == low and DuplicateVoteEvidence.decode(evidence.encode()) == evidence


def test_sign_state_is_validated() -> None:
    vote = sign_vote(vkey(0), CHAIN_ID, 2, 0, PREVOTE, NIL)
    state = SignState(2, 0, STEP_PREVOTE, last_votes=(vote,))
    assert SignState.decode(state.encode()) == state
    with pytest.raises(InvalidMessage):
        SignState(2, 0, 9)
    with pytest.raises(InvalidMessage):
        SignState(2, 0, STEP_PREVOTE, locked_round=0)  # a locked round without its block


@given(st.binary(max_size=200))
def test_decoding_arbitrary_bytes_raises_only_decode_error(data: bytes) -> None:
    for cls in (Vote, Proposal, DuplicateVoteEvidence, SignState):
        with contextlib.suppress(DecodeError):
            cls.decode(data)


def test_a_config_out_of_range_is_our_error() -> None:
    with pytest.raises(InvalidConfig) as caught:
        ConsensusConfig(timeout_propose_ms=0)
    assert caught.value.code == 3903
    with pytest.raises(InvalidConfig):
        ConsensusConfig(timeout_delta_ms=-1)
