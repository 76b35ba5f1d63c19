"""The pure blob core: RFC 6962 roots (against Certificate Transparency's published vectors), the
streaming accumulator, inclusion proofs, manifests, content ids and the wire records."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.blobs.errors import (
    BadBlobRequest,
    BlobBusy,
    BlobNotHere,
    BlobRefused,
    ChunkMismatch,
    InvalidContentId,
    InvalidProof,
    LeavesMismatch,
    MalformedManifest,
    ManifestMismatch,
    RangeOutOfBlob,
    refusal_for,
)
from protocol.blobs.merkle import (
    DEFAULT_CHUNK_SIZE,
    EMPTY_ROOT,
    MAX_CHUNKS,
    MIN_CHUNK_SIZE,
    BlobManifest,
    MerkleAccumulator,
    chunk_count,
    format_content_id,
    inclusion_proof,
    leaf_hash,
    merkle_root,
    parse_content_id,
    verify_inclusion,
)
from protocol.blobs.wire import (
    MAX_CHUNKS_PER_REQUEST,
    MAX_LEAVES_PER_REQUEST,
    MAX_REQUEST_BYTES,
    BlobReply,
    BlobRequest,
)
from protocol.encoding import DecodeError, encode

# RFC 6962's test inputs, as in certificate-transparency-go's merkle tests.
CT_INPUTS = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    bytes(range(0x50, 0x58)),
    bytes(range(0x60, 0x70)),
]
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
CT_LEAVES = [leaf_hash(data) for data in CT_INPUTS]


def leaves_of(count: int) -> list[bytes]:
    return [leaf_hash(index.to_bytes(4, "big")) for index in range(count)]


@pytest.mark.parametrize("size", range(1, 9))
def test_roots_match_the_certificate_transparency_vectors(size: int) -> None:
    assert merkle_root(CT_LEAVES[:size]).hex() == CT_ROOTS[size - 1]
    accumulator = MerkleAccumulator()
    for leaf in CT_LEAVES[:size]:
        accumulator.add(leaf)
    assert accumulator.root().hex() == CT_ROOTS[size - 1]


def test_empty_tree_root_is_sha256_of_nothing() -> None:
    assert merkle_root([]) == EMPTY_ROOT == hashlib.sha256(b"").digest()
    assert MerkleAccumulator().root() == EMPTY_ROOT


def test_inclusion_proof_matches_the_certificate_transparency_vector() -> None:
    proof = inclusion_proof(CT_LEAVES, 0)
    assert [step.hex() for step in proof] == [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ]


@given(st.integers(min_value=0, max_value=300))
def test_accumulator_equals_the_recursive_definition(count: int) -> None:
    leaves = leaves_of(count)
    accumulator = MerkleAccumulator()
    accumulator.add_many(b"".join(leaves))
    assert accumulator.count == count
    assert accumulator.root() == merkle_root(leaves)


@given(st.integers(min_value=1, max_value=70).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n - 1))))
def test_every_leaf_has_a_proof_and_no_other_leaf_or_index_passes(case: tuple[int, int]) -> None:
    count, index = case
    leaves = leaves_of(count)
    root = merkle_root(leaves)
    proof = inclusion_proof(leaves, index)
    verify_inclusion(root, count, index, leaves[index], proof)
    with pytest.raises(InvalidProof):
        verify_inclusion(root, count, index, leaf_hash(b"forged"), proof)
    if count > 1:
        other = (index + 1) % count
        with pytest.raises(InvalidProof):
            verify_inclusion(root, count, other, leaves[index], proof)


def test_a_proof_with_a_flipped_step_or_an_extra_step_fails() -> None:
    leaves = leaves_of(13)
    root = merkle_root(leaves)
    proof = inclusion_proof(leaves, 5)
    bad = (bytes([proof[0][0] ^ 1]) + proof[0][1:], *proof[1:])
    with pytest.raises(InvalidProof):
        verify_inclusion(root, 13, 5, leaves[5], bad)
    with pytest.raises(InvalidProof):
        verify_inclusion(root, 13, 5, leaves[5], (*proof, proof[0]))
    with pytest.raises(InvalidProof):
        verify_inclusion(root, 13, 13, leaves[5], proof)
    with pytest.raises(IndexError):
        inclusion_proof(leaves, 13)


def test_leaf_and_node_domains_are_separated() -> None:
    # A two-leaf tree's root is not the leaf hash of the two leaves' concatenation.
    a, b = leaf_hash(b"a"), leaf_hash(b"b")
    assert merkle_root([a, b]) != leaf_hash(a + b)


def manifest_for(data: bytes, chunk_size: int = MIN_CHUNK_SIZE) -> tuple[BlobManifest, bytes]:
    chunks = [data[offset : offset + chunk_size] for offset in range(0, len(data), chunk_size)]
    leaves = [leaf_hash(chunk) for chunk in chunks]
    return BlobManifest(len(data), chunk_size, merkle_root(leaves)), b"".join(leaves)


def test_manifest_layout_and_checks() -> None:
    data = bytes(range(256)) * 1000  # 256,000 bytes: 3 full 64 KiB chunks and a short one
    manifest, leaves = manifest_for(data)
    assert manifest.chunks == chunk_count(len(data), MIN_CHUNK_SIZE) == 4
    assert [manifest.chunk_length(i) for i in range(4)] == [65536, 65536, 65536, 256000 - 3 * 65536]
    assert manifest.chunk_offset(3) == 3 * 65536
    with pytest.raises(IndexError):
        manifest.chunk_length(4)
    manifest.check_leaves(leaves)
    with pytest.raises(LeavesMismatch):
        manifest.check_leaves(leaves[:-32] + bytes(32))
    with pytest.raises(LeavesMismatch):
        manifest.check_leaves(leaves[:-32])
    last = data[3 * 65536 :]
    manifest.check_chunk(3, last, leaves[96:128])
    with pytest.raises(ChunkMismatch):
        manifest.check_chunk(3, last[:-1] + bytes([last[-1] ^ 1]), leaves[96:128])
    with pytest.raises(ChunkMismatch):
        manifest.check_chunk(3, last + b"\x00", leaves[96:128])


def test_content_id_binds_size_chunk_size_and_root() -> None:
    manifest, _ = manifest_for(b"x" * 100_000)
    cid = manifest.content_id()
    assert cid == hashlib.sha256(encode(["dcent/blob/v1", manifest.to_wire()])).digest()
    manifest.check_content_id(cid)
    # The same root with another size or chunk size is another content (or none at all).
    for other in (
        BlobManifest(manifest.size - 1, manifest.chunk_size, manifest.root),
        BlobManifest(manifest.size, 2 * manifest.chunk_size, manifest.root),
    ):
        with pytest.raises(ManifestMismatch):
            other.check_content_id(cid)
    assert BlobManifest.decode(manifest.encode()) == manifest


@pytest.mark.parametrize(
    ("size", "chunk_size", "root"),
    [
        (10, MIN_CHUNK_SIZE + 1, bytes(32)),  # not a power of two
        (10, MIN_CHUNK_SIZE // 2, bytes(32)),  # too small
        (10, 1 << 23, bytes(32)),  # too large
        (-1, DEFAULT_CHUNK_SIZE, bytes(32)),
        ((1 << 40) + 1, DEFAULT_CHUNK_SIZE, bytes(32)),
        (MAX_CHUNKS * MIN_CHUNK_SIZE + 1, MIN_CHUNK_SIZE, bytes(32)),  # too many chunks
        (10, DEFAULT_CHUNK_SIZE, bytes(31)),
        (0, DEFAULT_CHUNK_SIZE, bytes(32)),  # empty blob with a non-empty root
    ],
)
def test_manifests_out_of_range_are_refused(size: int, chunk_size: int, root: bytes) -> None:
    with pytest.raises(MalformedManifest):
        BlobManifest(size, chunk_size, root)
    with pytest.raises(DecodeError):
        BlobManifest.decode(encode({"chunk_size": chunk_size, "root": root, "size": size}))


def test_empty_blob_has_a_content_id_and_no_chunks() -> None:
    manifest = BlobManifest(0, DEFAULT_CHUNK_SIZE, EMPTY_ROOT)
    assert manifest.chunks == 0
    manifest.check_leaves(b"")
    assert len(manifest.content_id()) == 32


def test_content_id_text_form() -> None:
    cid = bytes(range(32))
    assert parse_content_id(format_content_id(cid)) == cid
    assert parse_content_id(cid.hex().upper()) == cid
    for bad in ("", "00" * 31, "zz" * 32, "00" * 33):
        with pytest.raises(InvalidContentId):
            parse_content_id(bad)


def test_requests_are_bounded_and_typed() -> None:
    cid = bytes(32)
    for request in (
        BlobRequest.have(cid),
        BlobRequest.leaves(cid, 0, MAX_LEAVES_PER_REQUEST),
        BlobRequest.chunks(cid, 5, MAX_CHUNKS_PER_REQUEST),
    ):
        encoded = request.encode()
        assert len(encoded) <= MAX_REQUEST_BYTES
        assert BlobRequest.decode(encoded) == request
    for op, start, count in (
        ("have", 1, 0),
        ("leaves", 0, 0),
        ("leaves", 0, MAX_LEAVES_PER_REQUEST + 1),
        ("chunks", 0, MAX_CHUNKS_PER_REQUEST + 1),
        ("chunks", -1, 1),
        ("delete", 0, 1),
    ):
        with pytest.raises(DecodeError):
            BlobRequest.decode(encode({"cid": cid, "count": count, "op": op, "start": start}))
    with pytest.raises(DecodeError):
        BlobRequest.decode(encode({"cid": bytes(31), "count": 0, "op": "have", "start": 0}))
    with pytest.raises(DecodeError):
        BlobRequest.decode(b"\xc1garbage")


def test_refusal_codes_map_back_to_their_classes() -> None:
    for cls in (BlobNotHere, BlobBusy, BadBlobRequest, RangeOutOfBlob):
        error = refusal_for(cls.code, "why")
        assert type(error) is cls and error.message == "why"
    assert type(refusal_for(4242, "odd")) is BlobRefused
    reply = BlobReply(BlobBusy.code, "busy")
    assert BlobReply.decode(reply.encode()) == reply and not reply.ok
    with pytest.raises(DecodeError):
        BlobReply.decode(encode({"code": 0, "message": "x" * 600}))
