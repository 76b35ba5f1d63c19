"""The messages of ``/dcent/blob/1.0.0``, the blob exchange protocol, and the limits on each frame.

One stream carries any number of request/reply exchanges, in order; the client may send several
requests before reading the replies (pipelining), the server answers them one at a time::

    client                                        server
    BlobRequest(op="have",   cid)            ->
                                             <-   BlobReply(code=0) , manifest frame
    BlobRequest(op="leaves", cid, start, n)  ->
                                             <-   BlobReply(code=0) , one frame of n x 32 bytes
    BlobRequest(op="chunks", cid, start, n)  ->
                                             <-   BlobReply(code=0) , n frames, one per chunk
    any request it will not serve            <-   BlobReply(code=13xx, message)

Frames are length-prefixed (``node.p2p.framing``). Every frame has a declared maximum that the
receiver names before reading it, and the lengths of body frames are known exactly in advance
(from the manifest), so neither side ever buffers more than one chunk per stream:

- a request: at most :data:`MAX_REQUEST_BYTES`; a reply header: at most :data:`MAX_REPLY_BYTES`;
- a manifest: at most :data:`MAX_MANIFEST_BYTES`;
- a leaves page: exactly ``n x 32`` bytes, ``n`` at most :data:`MAX_LEAVES_PER_REQUEST`;
- a chunk: exactly its length, at most the manifest's chunk size (itself at most 4 MiB);
  ``n`` at most :data:`MAX_CHUNKS_PER_REQUEST` per request.

A refusal carries the code of the :mod:`protocol.blobs.errors` refusal class, so the client
raises the same typed error the server meant. "Not here" is an answer, not a fault: the stream
stays open. A request that does not decode ends the stream after its refusal.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.blobs.errors import MalformedBlobMessage
from protocol.blobs.merkle import HASH_LEN
from protocol.encoding import Record

BLOB_PROTOCOL_ID = "/dcent/blob/1.0.0"

OP_HAVE = "have"
OP_LEAVES = "leaves"
OP_CHUNKS = "chunks"
OPS = (OP_HAVE, OP_LEAVES, OP_CHUNKS)

#: The largest request frame: a request is an op, a 32-byte id and two integers (~70 bytes).
MAX_REQUEST_BYTES = 256
#: The largest reply header: a code and a message.
MAX_REPLY_BYTES = 1024
MAX_MESSAGE_CHARS = 512
#: The largest manifest frame (a manifest encodes in ~60 bytes).
MAX_MANIFEST_BYTES = 256
#: Leaves per ``leaves`` request: a 256 KiB page.
MAX_LEAVES_PER_REQUEST = 8192
#: Chunks per ``chunks`` request: 16 MiB at the default chunk size.
MAX_CHUNKS_PER_REQUEST = 16

OK = 0


@dataclass(frozen=True, slots=True)
class BlobRequest(Record):
    """One request. ``start``/``count`` are 0 for ``have``.

    Raises :class:`MalformedBlobMessage` for an unknown op, a content id that is not 32 bytes,
    or a range out of bounds for the op.
    """

    op: str
    cid: bytes
    start: int
    count: int

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise MalformedBlobMessage(f"op: one of {', '.join(OPS)}, not {self.op[:32]!r}")
        if len(self.cid) != HASH_LEN:
            raise MalformedBlobMessage("cid: a 32-byte content id")
        if self.op == OP_HAVE:
            if self.start != 0 or self.count != 0:
                raise MalformedBlobMessage("a have request has start and count 0")
            return
        limit = MAX_LEAVES_PER_REQUEST if self.op == OP_LEAVES else MAX_CHUNKS_PER_REQUEST
        if not 0 <= self.start < 1 << 40 or not 1 <= self.count <= limit:
            raise MalformedBlobMessage(f"{self.op}: start >= 0 and count between 1 and {limit}")

    @classmethod
    def have(cls, cid: bytes) -> BlobRequest:
        return cls(OP_HAVE, cid, 0, 0)

    @classmethod
    def leaves(cls, cid: bytes, start: int, count: int) -> BlobRequest:
        return cls(OP_LEAVES, cid, start, count)

    @classmethod
    def chunks(cls, cid: bytes, start: int, count: int) -> BlobRequest:
        return cls(OP_CHUNKS, cid, start, count)


@dataclass(frozen=True, slots=True)
class BlobReply(Record):
    """The header of every answer: ``code`` 0 and the body frames follow, else a refusal."""

    code: int
    message: str

    def __post_init__(self) -> None:
        if not 0 <= self.code < 1 << 16:
            raise MalformedBlobMessage("code: between 0 and 65535")
        if len(self.message) > MAX_MESSAGE_CHARS:
            raise MalformedBlobMessage(f"message: at most {MAX_MESSAGE_CHARS} characters")

    @property
    def ok(self) -> bool:
        return self.code == OK


REPLY_OK = BlobReply(OK, "")
REPLY_OK_BYTES = REPLY_OK.encode()
