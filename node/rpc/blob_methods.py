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
from node.blobs.store import BlobInfo
from node.p2p.errors import HostConfigError
from node.p2p.identity import validate_peer_id
from node.rpc.methods import MethodSpec
from node.rpc.params import Bool, HexBytes, ListOf, Param, Str
from node.rpc.views import BlobOperations
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


BLOB_METHODS = (
    MethodSpec(
        "blob_put",
        """Add a local file to the blob store: it is cut into chunks and hashed into a Merkle
        root, and its content id (which binds the root, the size and the chunk size) returned.""",
        (
            Param("path", Str(max_len=4096), "absolute path of a file the node can read"),
            Param("pin", Bool(), "keep it out of garbage collection", default=True),
        ),
        errors=(BlobSourceError, StoreFull, ProtectedPath),
        returns=f"{BLOB_OBJECT}, and `new` (false: the store already had it)",
    ),
    MethodSpec(
        "blob_fetch",
        """Fetch a blob by content id from the peers that have it, in the background; resumes a
        partial fetch. Follow it with ``blob_status``. Returns at once.""",
        (
            CID,
            Param(
                "peers",
                ListOf(Str(max_len=128), max_len=MAX_PEER_HINTS),
                "peer ids to ask first (connected peers are asked too)",
                default=[],
            ),
            Param("pin", Bool(), "pin the blob once fetched", default=False),
        ),
        errors=(TooManyFetches, HostConfigError),
        returns=STATUS_OBJECT,
    ),
    MethodSpec(
        "blob_status",
        "A blob's state in the store, and its running or last fetch.",
        (CID,),
        errors=(UnknownBlob,),
        returns=STATUS_OBJECT,
    ),
    MethodSpec(
        "blob_export",
        "Write a complete blob to a new file, checking every chunk against the content id.",
        (CID, Param("path", Str(max_len=4096), "absolute path of a new file")),
        errors=(UnknownBlob, ExportError, StoredBlobCorrupt, ProtectedPath),
        returns="object: `cid`, `path`, `size`",
    ),
    MethodSpec(
        "blob_list",
        "Every blob in the store, complete and partial, by content id, and the store's usage.",
        returns=f"object: `blobs` (array of {BLOB_OBJECT}), `used_bytes`, `max_bytes`",
    ),
    MethodSpec(
        "blob_pin",
        "Pin a blob (garbage collection never evicts it) or unpin it.",
        (CID, Param("pinned", Bool(), "false unpins", default=True)),
        errors=(UnknownBlob,),
        returns=BLOB_OBJECT,
    ),
    MethodSpec(
        "blob_remove",
        "Delete a blob from the store, cancelling a fetch of it first.",
        (CID,),
        errors=(BlobStoreError,),
        returns="object: `cid`, `removed` (false: it was not there)",
    ),
    MethodSpec(
        "blob_gc",
        "Evict unpinned blobs, least recently used first, until the store is under its cap.",
        returns="object: `evicted` (content ids), `freed_bytes`, `used_bytes`, `max_bytes`",
    ),
)


class BlobMethods:
    """The handlers of :data:`BLOB_METHODS`, over what they use of the node's blob service
    (:class:`~node.rpc.views.BlobOperations`)."""

    def __init__(self, blobs: BlobOperations) -> None:
        self._blobs = blobs

    async def blob_put(self, path: str, pin: bool) -> dict[str, object]:
        info, new = await self._blobs.put(Path(path), pin=pin)
        return {**_info_json(info), "new": new}

    async def blob_fetch(self, cid: bytes, peers: list[str], pin: bool) -> dict[str, object]:
        hints = [validate_peer_id(peer) for peer in peers]
        self._blobs.start_fetch(cid, peers=hints, pin=pin)
        status = self._blobs.status(cid)
        assert status is not None
        return status

    async def blob_status(self, cid: bytes) -> dict[str, object]:
        status = self._blobs.status(cid)
        if status is None:
            raise UnknownBlob(f"no blob {format_content_id(cid)} here and no fetch of it")
        return status

    async def blob_export(self, cid: bytes, path: str) -> dict[str, object]:
        info = await self._blobs.export(cid, Path(path))
        return {"cid": format_content_id(cid), "path": path, "size": info.manifest.size}

    async def blob_list(self) -> dict[str, object]:
        infos = self._blobs.list()
        return {
            "blobs": [_info_json(info) for info in infos],
            "used_bytes": sum(info.stored_bytes for info in infos),
            "max_bytes": self._blobs.settings.max_bytes,
        }

    async def blob_pin(self, cid: bytes, pinned: bool) -> dict[str, object]:
        return _info_json(await self._blobs.pin(cid, pinned))

    async def blob_remove(self, cid: bytes) -> dict[str, object]:
        removed = await self._blobs.remove(cid)
        return {"cid": format_content_id(cid), "removed": removed}

    async def blob_gc(self) -> dict[str, object]:
        return (await self._blobs.gc()).to_json()


def _info_json(info: BlobInfo) -> dict[str, object]:
    return info.to_json()
