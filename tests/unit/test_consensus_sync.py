"""Block sync: a node that is behind fetches blocks with certificates and verifies them first."""

from __future__ import annotations

import dataclasses

import pytest

from protocol.consensus.effects import Commit, RequestSync, SendBlocks
from protocol.consensus.errors import (
    BlockExecutionFailed,
    CertificateSignatureError,
    InsufficientPower,
    InvalidMessage,
    SyncError,
)
from protocol.consensus.messages import (
    PREVOTE,
    CommitSignature,
    CommittedBlock,
    SyncRequest,
    SyncResponse,
)
from protocol.consensus.sync import serve_sync_request, verify_committed_block
from protocol.consensus.verifier import SignatureVerifier

from .consensus_support import CHAIN_ID, Chain, Cluster, certificate, vkey, vote


@pytest.fixture(scope="module")
def history() -> tuple[Chain, list[CommittedBlock]]:
    """Five heights decided by four real cores on a perfect network."""
    chain = Chain()
    cluster = Cluster(chain)
    cluster.run(5)
    blocks = cluster.blocks[0][:5]
    assert [b.block.height for b in blocks] == [1, 2, 3, 4, 5]
    # agreement, block for block (each node's certificate may hold a different quorum)
    assert all([b.block for b in other[:5]] == [b.block for b in blocks] for other in cluster.blocks)
    return chain, blocks


def test_a_late_node_catches_up_from_verified_blocks(history: tuple[Chain, list[CommittedBlock]]) -> None:
    chain, blocks = history
    late = chain.core(3)
    late.start(0)
    committed = []
    for block in blocks:
        committed += [e for e in late.receive(block, 100) if isinstance(e, Commit)]
    assert [c.block for c in committed] == [b.block for b in blocks]
    assert late.height == 6 and late.app.height == 5
    assert late.app.last_block_hash == blocks[-1].block.hash
    assert [c.state_hash for c in committed] == [b.block.state_hash for b in blocks]


def test_a_block_without_a_quorum_certificate_is_refused(history: tuple[Chain, list[CommittedBlock]]) -> None:
    chain, blocks = history
    late = chain.core(3)
    late.start(0)
    weak = dataclasses.replace(blocks[0], certificate=certificate(1, 0, blocks[0].block.hash, [0, 1]))
    with pytest.raises(InsufficientPower) as caught:
        late.receive(weak, 100)
    assert caught.value.code == 3023
    assert late.height == 1 and late.app.height == 0


def test_a_certificate_with_a_forged_signature_is_refused(
    history: tuple[Chain, list[CommittedBlock]],
) -> None:
    chain, blocks = history
    late = chain.core(3)
    late.start(0)
    cert = blocks[0].certificate
    bad = CommitSignature(cert.signatures[0].validator, bytes(64))
    forged = dataclasses.replace(
        blocks[0], certificate=dataclasses.replace(cert, signatures=(bad, *cert.signatures[1:]))
    )
    with pytest.raises(CertificateSignatureError):
        late.receive(forged, 100)
    assert late.app.height == 0


def test_a_certified_block_that_does_not_execute_is_refused() -> None:
    """Even with a genuine quorum of signatures (more than 1/3 Byzantine), a block whose state
    hash is wrong is not applied."""
    chain = Chain()
    builder = chain.app()
    block = builder.build_block(height=1, proposer=vkey(0).address.raw, evidence=())
    wrong = dataclasses.replace(block, state_hash=bytes(32))
    late = chain.core(3)
    late.start(0)
    with pytest.raises(BlockExecutionFailed):
        late.receive(CommittedBlock(wrong, certificate(1, 0, wrong.hash, range(4))), 100)
    assert late.app.height == 0


def test_a_tampered_block_does_not_match_its_certificate(history: tuple[Chain, list[CommittedBlock]]) -> None:
    _, blocks = history
    with pytest.raises(InvalidMessage):
        CommittedBlock(dataclasses.replace(blocks[0].block, time_ms=999), blocks[0].certificate)


def test_verify_committed_block_checks_height_and_chain(history: tuple[Chain, list[CommittedBlock]]) -> None:
    chain, blocks = history
    validators = chain.app().validator_set(1)
    verify_committed_block(
        blocks[0], chain_id=CHAIN_ID, height=1, validators=validators, verifier=SignatureVerifier()
    )
    with pytest.raises(SyncError) as caught:
        verify_committed_block(
            blocks[0], chain_id=CHAIN_ID, height=2, validators=validators, verifier=SignatureVerifier()
        )
    assert caught.value.code == 3040
    with pytest.raises(SyncError):
        verify_committed_block(
            blocks[0], chain_id="another-chain", height=1, validators=validators, verifier=SignatureVerifier()
        )


def test_blocks_from_the_past_are_ignored_and_from_the_future_trigger_sync(
    history: tuple[Chain, list[CommittedBlock]],
) -> None:
    chain, blocks = history
    node = chain.core(3)
    node.start(0)
    node.receive(blocks[0], 100)
    assert node.receive(blocks[0], 101) == []  # already have it
    effects = node.receive(blocks[3], 102)  # height 4 while we need 2
    assert [e for e in effects if isinstance(e, RequestSync)] == [RequestSync(2, b"")]
    assert node.app.height == 1


def test_f_plus_one_at_the_next_height_makes_a_node_ask_for_blocks() -> None:
    chain = Chain()
    node = chain.core(0)
    node.start(0)
    first = node.receive(vote(1, 2, 0, PREVOTE, b""), 10)
    assert [e for e in first if isinstance(e, RequestSync)] == []  # 1 of 4: maybe a faulty one
    second = node.receive(vote(2, 2, 0, PREVOTE, b""), 20)
    assert [e for e in second if isinstance(e, RequestSync)] == [RequestSync(1, vkey(2).address.raw)]


def test_a_validator_voting_at_a_decided_height_is_offered_our_blocks(
    history: tuple[Chain, list[CommittedBlock]],
) -> None:
    chain, blocks = history
    node = chain.core(0)
    node.start(0)
    for block in blocks[:3]:
        node.receive(block, 10)
    effects = node.receive(vote(2, 2, 5, PREVOTE, b""), 20)  # validator 2 is still at height 2
    assert effects == [SendBlocks(vkey(2).address.raw, 2)]
    assert node.receive(vote(2, 2, 6, PREVOTE, b""), 21) == []  # rate-limited


def test_serving_a_sync_request_returns_consecutive_blocks(
    history: tuple[Chain, list[CommittedBlock]],
) -> None:
    _, blocks = history

    def load(height: int) -> CommittedBlock | None:
        return blocks[height - 1] if 1 <= height <= len(blocks) else None

    response = serve_sync_request(SyncRequest(2, 3), last_height=5, load=load)
    assert [b.block.height for b in response.blocks] == [2, 3, 4]
    assert serve_sync_request(SyncRequest(9, 3), last_height=5, load=load).blocks == ()
    assert len(serve_sync_request(SyncRequest(1, 100), last_height=5, load=load, max_blocks=2).blocks) == 2
    assert SyncResponse.decode(response.encode()) == response


def test_a_sync_response_stops_before_its_byte_bound_but_always_carries_one_block(
    history: tuple[Chain, list[CommittedBlock]],
) -> None:
    """Full blocks (4 MiB) would make a 32-block response 128 MiB, past what a requester reads."""
    _, blocks = history

    def load(height: int) -> CommittedBlock | None:
        return blocks[height - 1] if 1 <= height <= len(blocks) else None

    def serve(max_bytes: int | None) -> SyncResponse:
        return serve_sync_request(SyncRequest(1, 5), last_height=5, load=load, max_bytes=max_bytes)

    whole = serve(None)
    assert len(whole.blocks) == 5
    two = sum(len(CommittedBlock(b.block, b.certificate).encode()) for b in blocks[:2])
    bounded = serve(two + 2 * 64)
    assert [b.block.height for b in bounded.blocks] == [1, 2]
    assert len(bounded.encode()) <= two + 2 * 64
    assert [b.block.height for b in serve(1).blocks] == [1]  # one block, however large
