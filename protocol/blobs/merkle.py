"""Content ids for blobs: fixed-size chunks, an RFC 6962 Merkle tree over them, and a manifest.

A blob of ``size`` bytes is cut into chunks of ``chunk_size`` bytes (the last one shorter, none for
an empty blob). Each chunk is a leaf of a Merkle tree built exactly as Certificate Transparency's
(RFC 6962 section 2.1, RFC 9162 section 2.1.1)::

    leaf  = sha256(0x00 || chunk)
    node  = sha256(0x01 || left || right)      split at the largest power of two below n
    empty = sha256("")

The **content id** is the hash of the blob's canonical manifest, ``sha256(msgpack(["dcent/blob/v1",
{chunk_size, root, size}]))``: the Merkle root with the blob's size and chunk size bound in, so
that anyone handed only a content id (a job spec, a usage receipt) knows how large the blob is,
and how many chunks and leaves to expect, before a byte of it arrives, and can refuse or price it.

Why each piece, against whom:

- *A peer serving a chunk that is not part of the blob* (to poison a dataset, or a model): the
  fetcher checks every chunk's hash against its leaf before it writes a byte of it, and the leaf
  list itself against the root, and the root (with the size) against the content id. Changing
  any one byte changes the content id, short of a SHA-256 second preimage.
- *Leaf/node confusion* (passing an inner node off as a leaf, which would let a shorter "blob" of
  hashes share a root): the 0x00 / 0x01 prefixes separate the two hash domains; the manifest's
  msgpack starts with 0x92, a third one.
- *A peer lying about the size* (to make us allocate 1 TiB, or to truncate): the size is inside
  the content id; a manifest that does not hash to it is refused.
- *Resource exhaustion by a manifest*: sizes, chunk sizes and chunk counts are bounded
  (:data:`MAX_BLOB_BYTES`, :data:`MAX_CHUNKS`, chunk sizes powers of two in
  [:data:`MIN_CHUNK_SIZE`, :data:`MAX_CHUNK_SIZE`]), so the leaf list is at most 32 MiB and a
  verifier's state is O(log n) hashes.

Inclusion proofs (RFC 9162 2.1.3) let a single chunk be checked against a root without the whole
leaf list: what a usage receipt that signs an output's root can later be challenged with.

Pure: no I/O, no clock. The node streams chunks through :func:`leaf_hash` and
:class:`MerkleAccumulator` in O(log n) memory.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from protocol.blobs.errors import (
    ChunkMismatch,
    InvalidContentId,
    InvalidProof,
    LeavesMismatch,
    MalformedManifest,
    ManifestMismatch,
)
from protocol.encoding import Record, encode

HASH_LEN = 32
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
CONTENT_ID_DOMAIN = "dcent/blob/v1"

#: The chunk size `put` uses: large enough that per-chunk costs vanish next to the bytes,
#: small enough that a window of chunks in flight stays a few MiB.
DEFAULT_CHUNK_SIZE = 1 << 20
MIN_CHUNK_SIZE = 1 << 16
MAX_CHUNK_SIZE = 1 << 22
#: The most chunks a blob may have: the leaf list is then at most 32 MiB.
MAX_CHUNKS = 1 << 20
#: The largest blob: 1 TiB.
MAX_BLOB_BYTES = 1 << 40

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(chunk: bytes | bytearray | memoryview) -> bytes:
    """The leaf of one chunk: ``sha256(0x00 || chunk)``."""
    hasher = hashlib.sha256(LEAF_PREFIX)
    hasher.update(chunk)
    return hasher.digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """An inner node: ``sha256(0x01 || left || right)``."""
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def _split(count: int) -> int:
    """The largest power of two strictly below ``count`` (``count`` >= 2)."""
    return 1 << ((count - 1).bit_length() - 1)


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """RFC 6962's Merkle tree hash of a list of leaf hashes (not of chunks: hash those first)."""
    if not leaves:
        return EMPTY_ROOT
    if len(leaves) == 1:
        return leaves[0]
    k = _split(len(leaves))
    return node_hash(merkle_root(leaves[:k]), merkle_root(leaves[k:]))


class MerkleAccumulator:
    """The same root as :func:`merkle_root`, computed leaf by leaf in O(log n) memory.

    Appending builds the left-full tree RFC 6962 describes: a stack of perfect subtrees of
    decreasing height, merged when two of equal height meet; the root folds the stack right to left.
    """

    def __init__(self) -> None:
        self._stack: list[tuple[int, bytes]] = []  # (height, hash), heights strictly decreasing
        self.count = 0

    def add(self, leaf: bytes) -> None:
        """Append one leaf hash. Raises :class:`ValueError` for a value that is not 32 bytes."""
        if len(leaf) != HASH_LEN:
            raise ValueError("a leaf hash is 32 bytes")
        height, digest = 0, leaf
        while self._stack and self._stack[-1][0] == height:
            _, left = self._stack.pop()
            digest = node_hash(left, digest)
            height += 1
        self._stack.append((height, digest))
        self.count += 1

    def add_many(self, leaves: bytes) -> None:
        """Append leaves given as concatenated 32-byte hashes."""
        if len(leaves) % HASH_LEN:
            raise ValueError("concatenated leaf hashes are a multiple of 32 bytes")
        for offset in range(0, len(leaves), HASH_LEN):
            self.add(leaves[offset : offset + HASH_LEN])

    def root(self) -> bytes:
        if not self._stack:
            return EMPTY_ROOT
        digest = self._stack[-1][1]
        for _, left in reversed(self._stack[:-1]):
            digest = node_hash(left, digest)
        return digest


def chunk_count(size: int, chunk_size: int) -> int:
    """How many chunks a blob of ``size`` bytes has (0 for an empty blob)."""
    return -(-size // chunk_size)


def _is_power_of_two(value: int) -> bool:
    return value > 0 and value & (value - 1) == 0


@dataclass(frozen=True, slots=True)
class BlobManifest(Record):
    """What a content id commits to: the blob's size, its chunk size and its Merkle root.

    Raises :class:`MalformedManifest` for values out of range.
    """

    size: int
    chunk_size: int
    root: bytes

    def __post_init__(self) -> None:
        if not (
            type(self.chunk_size) is int
            and _is_power_of_two(self.chunk_size)
            and MIN_CHUNK_SIZE <= self.chunk_size <= MAX_CHUNK_SIZE
        ):
            raise MalformedManifest(
                f"chunk_size: a power of two in [{MIN_CHUNK_SIZE}, {MAX_CHUNK_SIZE}], not {self.chunk_size}"
            )
        if not (type(self.size) is int and 0 <= self.size <= MAX_BLOB_BYTES):
            raise MalformedManifest(f"size: between 0 and {MAX_BLOB_BYTES} bytes, not {self.size}")
        if chunk_count(self.size, self.chunk_size) > MAX_CHUNKS:
            raise MalformedManifest(f"a blob has at most {MAX_CHUNKS} chunks; use a larger chunk_size")
        if type(self.root) is not bytes or len(self.root) != HASH_LEN:
            raise MalformedManifest("root: a 32-byte hash")
        if self.size == 0 and self.root != EMPTY_ROOT:
            raise MalformedManifest("an empty blob's root is sha256 of nothing")

    @property
    def chunks(self) -> int:
        return chunk_count(self.size, self.chunk_size)

    @property
    def leaves_bytes(self) -> int:
        """The length of the concatenated leaf list."""
        return self.chunks * HASH_LEN

    def content_id(self) -> bytes:
        """``sha256(msgpack(["dcent/blob/v1", manifest]))``: what peers fetch by."""
        return hashlib.sha256(encode([CONTENT_ID_DOMAIN, self.to_wire()])).digest()

    def chunk_offset(self, index: int) -> int:
        self._check_index(index)
        return index * self.chunk_size

    def chunk_length(self, index: int) -> int:
        """The length of chunk ``index``: ``chunk_size``, except a shorter last one."""
        self._check_index(index)
        return min(self.chunk_size, self.size - index * self.chunk_size)

    def _check_index(self, index: int) -> None:
        if not 0 <= index < self.chunks:
            raise IndexError(f"chunk {index} is outside a blob of {self.chunks} chunks")

    def check_content_id(self, content_id: bytes) -> None:
        """Raises :class:`ManifestMismatch` unless this manifest hashes to ``content_id``."""
        if self.content_id() != content_id:
            raise ManifestMismatch(f"the manifest does not hash to content id {content_id.hex()}")

    def check_leaves(self, leaves: bytes) -> None:
        """Raises :class:`LeavesMismatch` unless ``leaves`` (concatenated) are this blob's leaves."""
        if len(leaves) != self.leaves_bytes:
            raise LeavesMismatch(f"expected {self.chunks} leaves, got {len(leaves) / HASH_LEN:g}")
        accumulator = MerkleAccumulator()
        accumulator.add_many(leaves)
        if accumulator.root() != self.root:
            raise LeavesMismatch("the leaf list does not hash to the manifest's root")

    def check_chunk(self, index: int, chunk: bytes | bytearray | memoryview, leaf: bytes) -> None:
        """Raises :class:`ChunkMismatch` unless ``chunk`` has chunk ``index``'s length and ``leaf``
        as its hash. ``leaf`` comes from a leaf list already checked against the root."""
        expected = self.chunk_length(index)
        if len(chunk) != expected:
            raise ChunkMismatch(f"chunk {index} is {expected} bytes, not {len(chunk)}")
        if leaf_hash(chunk) != leaf:
            raise ChunkMismatch(f"chunk {index} does not match its leaf hash")


def parse_content_id(text: str) -> bytes:
    """A content id from its text form (64 hex digits). Raises :class:`InvalidContentId`."""
    if type(text) is not str or len(text) != 2 * HASH_LEN:
        raise InvalidContentId(f"a content id is {2 * HASH_LEN} hex digits")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise InvalidContentId(f"a content id is {2 * HASH_LEN} hex digits, not {text[:16]!r}...") from None


def format_content_id(content_id: bytes) -> str:
    """The text form of a content id: 64 lowercase hex digits."""
    if len(content_id) != HASH_LEN:
        raise InvalidContentId("a content id is 32 bytes")
    return content_id.hex()


# --------------------------------------------------------------------------------------------
# Inclusion proofs (RFC 9162 2.1.3)
# --------------------------------------------------------------------------------------------


def inclusion_proof(leaves: Sequence[bytes], index: int) -> tuple[bytes, ...]:
    """The audit path of leaf ``index`` in the tree over ``leaves``, leaf side first.

    Raises :class:`IndexError` for an index outside the tree. O(n) hashing: for a prover that
    holds the leaf list.
    """
    if not 0 <= index < len(leaves):
        raise IndexError(f"leaf {index} is outside a tree of {len(leaves)} leaves")
    low, high = 0, len(leaves)
    # Walk down from the root, remembering the sibling subtree at each level.
    siblings: list[bytes] = []
    while high - low > 1:
        k = _split(high - low)
        if index < low + k:
            siblings.append(merkle_root(leaves[low + k : high]))
            high = low + k
        else:
            siblings.append(merkle_root(leaves[low : low + k]))
            low = low + k
    return tuple(reversed(siblings))


def verify_inclusion(root: bytes, count: int, index: int, leaf: bytes, proof: Sequence[bytes]) -> None:
    """Check that ``leaf`` is leaf ``index`` of the ``count``-leaf tree with root ``root``.

    Raises :class:`InvalidProof`.
    """
    if not 0 <= index < count or any(len(step) != HASH_LEN for step in proof):
        raise InvalidProof(f"leaf {index} cannot be in a tree of {count} leaves")
    fn, sn, digest = index, count - 1, leaf
    for step in proof:
        if sn == 0:
            raise InvalidProof("the proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            digest = node_hash(step, digest)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            digest = node_hash(digest, step)
        fn >>= 1
        sn >>= 1
    if sn != 0 or digest != root:
        raise InvalidProof(f"leaf {index} does not lead to the root")
