"""Errors of content-addressed blobs: one class per failure, each with a stable code (1300-1399).

    1300        BlobError (root)
    1301-1319   malformed values: a manifest, a content id, a wire message
    1320-1339   data that does not match what it claims: a chunk, a leaf list, a manifest, a proof
    1340-1359   refusals a blob server answers with (their codes travel on the wire)

Every blob error means the input was refused and nothing was changed. A chunk or leaf list that
does not match the content id is proof that the peer who sent it lied (or serves rotten data):
the fetcher never writes it and stops asking that peer.
"""

from __future__ import annotations

from protocol.errors import ProtocolError


class BlobError(ProtocolError):
    code = 1300


# --- malformed values ------------------------------------------------------------------------
class MalformedManifest(BlobError):
    """A manifest whose size, chunk size or root is out of range."""

    code = 1301


class InvalidContentId(BlobError):
    """Not a content id: 64 lowercase or uppercase hex digits (32 bytes)."""

    code = 1302


class MalformedBlobMessage(BlobError):
    """A request or reply on ``/dcent/blob/1.0.0`` that does not decode or is out of range."""

    code = 1303


# --- data that does not match ----------------------------------------------------------------
class ChunkMismatch(BlobError):
    """A chunk whose hash is not its leaf in the content id's tree (or whose length is wrong)."""

    code = 1320


class LeavesMismatch(BlobError):
    """A leaf list that does not hash to the manifest's Merkle root."""

    code = 1321


class ManifestMismatch(BlobError):
    """A manifest that does not hash to the content id it was sent for."""

    code = 1322


class InvalidProof(BlobError):
    """An inclusion proof that does not lead from the leaf to the root."""

    code = 1323


# --- refusals a server answers with -----------------------------------------------------------
class BlobRefused(BlobError):
    """A blob server refused a request; the subclass (and the code on the wire) says why."""

    code = 1340


class BlobNotHere(BlobRefused):
    """The server holds no complete copy of this content id."""

    code = 1341


class BlobBusy(BlobRefused):
    """The server is at its limit of concurrent requests (for this peer, or in all)."""

    code = 1342


class BadBlobRequest(BlobRefused):
    """The request did not decode, or named an unknown operation; the server closes the stream."""

    code = 1343


class RangeOutOfBlob(BlobRefused):
    """The requested chunks or leaves lie outside the blob, or exceed the per-request maximum."""

    code = 1344


REFUSALS: dict[int, type[BlobRefused]] = {
    cls.code: cls for cls in (BlobRefused, BlobNotHere, BlobBusy, BadBlobRequest, RangeOutOfBlob)
}


def refusal_for(code: int, message: str) -> BlobRefused:
    """The typed refusal a reply's ``code`` names (unknown codes: the generic :class:`BlobRefused`)."""
    return REFUSALS.get(code, BlobRefused)(message)
