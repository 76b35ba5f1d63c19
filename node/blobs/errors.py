"""Errors of the node's blob store, server and fetcher: codes 6000-6099, split by whose fault.

    6000        BlobStoreError (root)
    6010-6049   ours or the operator's: unknown content id, store full, a bad path, our limits
    6050-6099   the network's: nobody has the blob, every peer that had it failed or lied

What a peer sends that does not verify is a :mod:`protocol.blobs.errors` error (1300s); what a
server refuses travels as one of those codes and is raised as its class on the client.
Every error leaves the store as it was: a failed put leaves no file, a failed fetch keeps the
chunks it verified for the next attempt.
"""

from __future__ import annotations

from node.errors import NodeError


class BlobStoreError(NodeError):
    code = 6000


# --- ours / the operator's -------------------------------------------------------------------
class UnknownBlob(BlobStoreError):
    """No complete blob with this content id is in the store."""

    code = 6011


class StoreFull(BlobStoreError):
    """The blob does not fit under the store's size cap, even after evicting every unpinned blob."""

    code = 6012


class BlobSourceError(BlobStoreError):
    """The file to put cannot be used: not an absolute path, missing, not a regular file,
    unreadable, too large, or changed while it was read."""

    code = 6013


class ExportError(BlobStoreError):
    """The export destination cannot be written: not absolute, already exists, no such directory."""

    code = 6014


class TooManyFetches(BlobStoreError):
    """The node already runs its maximum of concurrent fetches."""

    code = 6015


class StoredBlobCorrupt(BlobStoreError):
    """A stored blob no longer matches its content id (the disk changed under us); it was removed."""

    code = 6016


class BlobSettingsError(BlobStoreError):
    """A blob store setting is out of range."""

    code = 6017


class FetchCancelled(BlobStoreError):
    """The fetch was cancelled (``blob rm`` of a blob being fetched, or the node stopping)."""

    code = 6018


class FetchWaitTimeout(BlobStoreError):
    """``dcent blob get`` gave up waiting; the fetch itself goes on in the node."""

    code = 6019


class LocalDiskError(BlobStoreError):
    """Our own disk failed (full, read-only, an I/O error) while a blob was written or read."""

    code = 6020


class ProtectedPath(BlobStoreError):
    """The path is inside the node's key directory or is its RPC cookie: never put or exported."""

    code = 6021


class TooManyHolds(BlobStoreError):
    """The store already records as many holds (blobs kept for a job) as it may: ours to fix
    (jobs that never released theirs), never a reason to drop another job's."""

    code = 6022


# --- the network's ---------------------------------------------------------------------------
class NoProviders(BlobStoreError):
    """No peer asked has a complete copy of the blob."""

    code = 6051


class FetchFailed(BlobStoreError):
    """Every peer that had the blob failed, lied or was banned before the blob was complete.
    The verified chunks are kept: fetching again resumes."""

    code = 6052


class UnexpectedBlobSize(BlobStoreError):
    """The blob's content id binds another size than the one it was asked for under (a job spec
    declaring 1 KiB for a 1 TiB blob): refused before a chunk is fetched."""

    code = 6053
