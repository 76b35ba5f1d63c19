"""The ``blob_*`` methods: the node's content-addressed blob store over JSON-RPC.

Paths are the node's, not the caller's: ``blob_put`` reads and ``blob_export`` writes files as
the node process, at absolute paths (the RPC is loopback and cookie-authenticated, so the caller
is the node's operator, as with bitcoind's ``importwallet``). An export never overwrites, and
the node's keys, cookie and config are never put (a blob can be fetched by anyone who learns its
content id) nor exported over (:class:`ProtectedPath`). Fetches run in the background:
``blob_fetch`` returns at once, ``blob_status`` follows it; at most ``max_concurrent_fetches``
run at once (:class:`TooManyFetches`), and peer hints are validated peer ids, at most 16.
"""

from __future__ import annotations

from pathlib import Path

from node.blobs.errors import (
    BlobSourceError,
    BlobStoreError,
    ExportError,
    ProtectedPath,
    StoredBlobCorrupt,
    StoreFull,
    TooManyFetches,
    UnknownBlob,
)
from node.blobs.service import BlobService
from node.blobs.store import BlobInfo
from node.p2p.errors import HostConfigError, HostStateError
from node.p2p.identity import validate_peer_id
from node.rpc.methods import MethodTable
from node.rpc.params import Bool, HexBytes, ListOf, Param, Str
from protocol.blobs.merkle import format_content_id

BLOB_OBJECT = (
    "object: `cid`, `size`, `chunk_size`, `chunks`, `root`, `state` (complete/partial), `pinned`, "
    "`have_chunks`, `added_ms`, `used_ms`"
)
STATUS_OBJECT = (
    "object: `cid`, `state` (complete/fetching/partial/absent), `pinned`, `size`, `chunks`, "
    "`have_chunks`, `fetch` (the last fetch: `state`, `resumed_chunks`, `fetched_chunks`, "
    "`fetched_bytes`, `peers`, `error`) or null"
)
CID = Param("cid", HexBytes(length=32), "the content id (64 hex digits)")
#: Peer hints per fetch: enough for a requester and a few replicas.
MAX_PEER_HINTS = 16


def register_blob_methods(table: MethodTable, blobs: BlobService | None) -> None:
    """Register the blob methods. With ``blobs`` None (documentation builds, a node without a
    blob store) they answer :class:`HostStateError`."""

    def service() -> BlobService:
        if blobs is None:
            raise HostStateError("this node runs no blob store")
        return blobs

    def info_json(info: BlobInfo) -> dict[str, object]:
        return info.to_json()

    @table.method(
        "blob_put",
        params=[
            Param("path", Str(max_len=4096), "absolute path of a file the node can read"),
            Param("pin", Bool(), "keep it out of garbage collection", default=True),
        ],
        errors=[BlobSourceError, StoreFull, ProtectedPath],
        returns=f"{BLOB_OBJECT}, and `new` (false: the store already had it)",
    )
    async def blob_put(path: str, pin: bool) -> dict[str, object]:
        """Add a local file to the blob store: it is cut into chunks and hashed into a Merkle
        root, and its content id (which binds the root, the size and the chunk size) returned."""
        info, new = await service().put(Path(path), pin=pin)
        return {**info_json(info), "new": new}

    @table.method(
        "blob_fetch",
        params=[
            CID,
            Param(
                "peers",
                ListOf(Str(max_len=128), max_len=MAX_PEER_HINTS),
                "peer ids to ask first (connected peers are asked too)",
                default=[],
            ),
            Param("pin", Bool(), "pin the blob once fetched", default=False),
        ],
        errors=[TooManyFetches, HostConfigError],
        returns=STATUS_OBJECT,
    )
    async def blob_fetch(cid: bytes, peers: list[str], pin: bool) -> dict[str, object]:
        """Fetch a blob by content id from the peers that have it, in the background; resumes a
        partial fetch. Follow it with ``blob_status``. Returns at once."""
        hints = [validate_peer_id(peer) for peer in peers]
        blobs = service()
        blobs.start_fetch(cid, peers=hints, pin=pin)
        status = blobs.status(cid)
        assert status is not None
        return status

    @table.method("blob_status", params=[CID], errors=[UnknownBlob], returns=STATUS_OBJECT)
    async def blob_status(cid: bytes) -> dict[str, object]:
        """A blob's state in the store, and its running or last fetch."""
        status = service().status(cid)
        if status is None:
            raise UnknownBlob(f"no blob {format_content_id(cid)} here and no fetch of it")
        return status

    @table.method(
        "blob_export",
        params=[CID, Param("path", Str(max_len=4096), "absolute path of a new file")],
        errors=[UnknownBlob, ExportError, StoredBlobCorrupt, ProtectedPath],
        returns="object: `cid`, `path`, `size`",
    )
    async def blob_export(cid: bytes, path: str) -> dict[str, object]:
        """Write a complete blob to a new file, checking every chunk against the content id."""
        info = await service().export(cid, Path(path))
        return {"cid": format_content_id(cid), "path": path, "size": info.manifest.size}

    @table.method(
        "blob_list",
        returns=f"object: `blobs` (array of {BLOB_OBJECT}), `used_bytes`, `max_bytes`",
    )
    async def blob_list() -> dict[str, object]:
        """Every blob in the store, complete and partial, by content id, and the store's usage."""
        blobs = service()
        infos = blobs.list()
        return {
            "blobs": [info_json(info) for info in infos],
            "used_bytes": sum(info.stored_bytes for info in infos),
            "max_bytes": blobs.settings.max_bytes,
        }

    @table.method(
        "blob_pin",
        params=[CID, Param("pinned", Bool(), "false unpins", default=True)],
        errors=[UnknownBlob],
        returns=BLOB_OBJECT,
    )
    async def blob_pin(cid: bytes, pinned: bool) -> dict[str, object]:
        """Pin a blob (garbage collection never evicts it) or unpin it."""
        return info_json(await service().pin(cid, pinned))

    @table.method(
        "blob_remove",
        params=[CID],
        errors=[BlobStoreError],
        returns="object: `cid`, `removed` (false: it was not there)",
    )
    async def blob_remove(cid: bytes) -> dict[str, object]:
        """Delete a blob from the store, cancelling a fetch of it first."""
        removed = await service().remove(cid)
        return {"cid": format_content_id(cid), "removed": removed}

    @table.method(
        "blob_gc",
        returns="object: `evicted` (content ids), `freed_bytes`, `used_bytes`, `max_bytes`",
    )
    async def blob_gc() -> dict[str, object]:
        """Evict unpinned blobs, least recently used first, until the store is under its cap."""
        return (await service().gc()).to_json()
