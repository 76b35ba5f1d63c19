"""A provider's side of job data: inputs by reference fetched and mounted, the image archive
loaded, outputs stored as blobs, and what it pinned released when the contract closes.

Inputs (after the escrow is final, before the job starts):

* a **content id** is fetched through the node's blob service, the requester's node asked first
  and every chunk verified against the content id; a blob whose content id binds another size
  than the spec declares is refused before a chunk moves (:class:`UnexpectedBlobSize`);
* a **URL** (``https://`` only) is downloaded at most ``size`` bytes, hashed on the way, and
  refused when the SHA-256 differs (:class:`InputHashMismatch`); then it becomes a blob too.
  Hosts that resolve to loopback, private or link-local addresses are refused unless the
  operator allows them: a requester must not make a provider probe its own network;
* the **image archive** is a blob loaded with ``podman load``: no registry. The job then runs
  the image by the ID the archive's config gives (:mod:`node.executor.images`), never by its
  tag, which any other job's archive could move (:meth:`JobData.image_for`).

Each input is mounted read-only from the blob store's own file (no copy, none of the job's disk)
and *held* for the job while it runs (a hold in the store's index, owner the job id, purpose
``input``), so garbage collection cannot take it from under the job. Every failure to get an
input is the requester's (:class:`~node.executor.errors.JobInputError`): the job does not run and
nothing is metered. Our own disk failing (the store full) is ours.

Outputs (``output_mode = "blobs"``): each file under ``out/`` is put into the store as the
sandbox ends (streamed from the workspace, never held in memory), held (purpose ``output``) until
the contract closes so the requester can fetch it, then released for garbage collection.

Holds are rows in the store, not memory: a job interrupted by the node stopping keeps its holds
across the restart, and :meth:`JobData.release_stale` (called once the market has resumed its
jobs) drops those of jobs that are no longer live, so nothing stays held forever. Holds never
touch the operator's own pins (``dcent blob pin``).

Inputs and outputs by reference, and the attacks considered
-----------------------------------------------------------

**Job data by reference** (``node/market/jobdata.py``). A spec's ``[data]`` table mounts inputs
read-only at given paths, each ``{ cid, size }`` (a blob), ``{ url, sha256, size }`` (https) or
``{ file }`` (``dcent job submit`` puts it into the node's blob store, pinned, and sends its content
id); ``image`` with ``image_archive`` (a cid or a file) runs a container image that exists only as a
``podman save`` archive; ``output_mode = "blobs"`` returns outputs by content id (up to 1 TiB).

1. Quote: over ``market.max_input_bytes`` (64 GiB) is ``InputsTooLarge`` 4047;
   ``market.input_price_per_gib`` adds ``ceil(GiB x price / max_gpu_seconds)`` to the price per
   GPU-second (one price per contract: the transfer is paid pro rata of the metered time); both
   sides add ``bytes / 4 MiB/s`` to the deadline.
2. After the escrow the provider fetches blobs through its ``BlobService``, the requester's node
   asked first, every chunk verified, and holds them (a job's hold, not the operator's pin: see
   the blob store) while the job may run. URLs: https only, no
   redirects, at most ``size`` bytes, SHA-256 checked (5320), loopback/private/link-local hosts
   refused unless ``market.allow_private_urls`` (``market.url_ca_file`` for a private CA). An archive's
   image is identified by the ID its own content gives, then loaded and run by that ID (5321;
   "Container images by ID"). An input that cannot be had is the requester's
   fault (``InputUnavailable`` 5319: ``job_failed``, exit -1, 0 ms metered); our store full is ours
   (``provider_error``).
3. The sandbox binds the blob store's own file read-only over an empty mount point (no copy; inputs
   do not count against ``[limits] disk``); each file of ``out/`` is stored as a blob from an fd opened
   ``O_NOFOLLOW``, never read into memory.
4. Delivery carries a listing ``[path, size, content_id]``; the receipt's ``output_hash`` is the
   sha256 of ``msgpack(["dcent/outputs/blobs/v1", listing])``, and a content id binds a blob's
   Merkle root and size, so the receipt signs every output's root. The requester checks listing
   hash (4063), sizes (4064) and mode (4065), fetches every blob from the provider and only then
   countersigns; a fetch or verification failure refuses with 4066 and bans the peer as a blob
   source. The provider holds outputs until the contract closes (the hold is a row of the blob
   index, so it survives a restart; ``output_cids`` in the job record). The requester lists them
   in ``data/jobs/<job>/outputs.json``;
   ``dcent job output ID --out DIR`` exports them (fetching what the node lacks, verified again).

| attack | mechanism |
|---|---|
| a requester declaring a small size for a huge blob | the manifest's size (inside the content id) checked before a chunk moves (``UnexpectedBlobSize`` 6053) |
| a provider serving other bytes than it signed; signing one listing and delivering another | chunk verification, 4066 and no countersignature (its claim can then be disputed); listing hash 4063 |
| a job writing to its inputs | read-only mounts |
| symlinks or FIFOs in ``out/`` | ``O_NOFOLLOW`` and regular files only |
| SSRF through URL inputs | public addresses only, no redirects, bounded size, hash checked |
| garbage collection evicting an input mid-job | inputs held while the job may run |

Outputs are served on ``/dcent/blob/1.0.0`` to any peer that knows the content id (a hash of the
content, known only to those who saw the delivery or hold the content): secret outputs should be
encrypted by the job. A job's image runs by ID, never by a tag another requester's archive could
have moved ("Container images by ID"). Tests: ``tests/unit/test_market_data_refs.py``,
``tests/integration/test_market_data.py`` (200 MiB input by cid, 500 MiB output blob; a lying
provider refused and banned; a URL input through the market), ``test_market_container.py`` (podman,
image only as an archive, ``job output`` after the provider deleted its copy),
``test_job_data_url.py`` (real TLS server: every refusal).
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import os
import socket
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import trio

from node.blobs.errors import BlobStoreError, LocalDiskError, StoreFull, TooManyHolds, UnknownBlob
from node.blobs.service import BlobService
from node.blobs.store import HOLD_INPUT, HOLD_OUTPUT
from node.executor.base import Executor
from node.executor.container import ContainerExecutor
from node.executor.errors import (
    ImageArchiveInvalid,
    InputHashMismatch,
    InputUnavailable,
    WorkspaceError,
)
from node.executor.images import id_reference
from node.executor.model import OutputStore
from node.market.records import PROVIDER, JobRecord, JobState
from node.p2p.errors import HostStateError
from protocol.blobs.merkle import format_content_id
from protocol.market.jobspec import SOURCE_BLOB, DataInput, JobSpec

log = logging.getLogger("dcent.market.data")

URL_TIMEOUT_S = 30.0
_READ_BYTES = 1 << 20


@dataclass
class JobData:
    """One per provider. ``blobs`` None: the node has no blob service, and a job with inputs by
    reference or an image archive is refused when it would start."""

    blobs: BlobService | None
    downloads: Path
    #: CA bundle for URL inputs (None: the system's).
    ca_file: str | None = None
    #: Let URL inputs reach loopback and private addresses (tests, a provider's own mirror).
    allow_private_urls: bool = False
    #: job id -> the image ID (``sha256:<hex>``) its archive resolved to, while it runs.
    _images: dict[str, str] = field(default_factory=dict)

    def _service(self) -> BlobService:
        if self.blobs is None:
            raise InputUnavailable("this provider has no blob store: it takes inline inputs only")
        return self.blobs

    async def prepare(
        self, job_id: str, spec: JobSpec, requester_peer: str, executor: Executor
    ) -> dict[str, Path]:
        """Fetch every input by reference and load the image archive; returns the read-only
        mounts (path in the work directory -> file in the store). Raises
        :class:`~node.executor.errors.JobInputError` subclasses (the requester's) and
        :class:`~node.executor.errors.WorkspaceError` (our disk)."""
        if not spec.data and not spec.image_archive_id:
            return {}
        mounts: dict[str, Path] = {}
        for item in spec.data:
            if item.source == SOURCE_BLOB:
                cid = await self._fetch_blob(job_id, item.content_id, item.size, requester_peer, item.path)
            else:
                cid = await self._fetch_url(job_id, item)
            mounts[item.path] = self._service().store.data_path(cid)
        if spec.image_archive_id:
            if not isinstance(executor, ContainerExecutor):
                raise ImageArchiveInvalid(f"the {executor.name} executor does not load image archives")
            cid = await self._fetch_blob(
                job_id, spec.image_archive_id, spec.image_archive_size, requester_peer, "image_archive"
            )
            image_id = await executor.load_archive(self._service().store.data_path(cid), spec.image)
            self._images[job_id] = id_reference(image_id)
        return mounts

    def image_for(self, job_id: str, image: str) -> str:
        """The image reference the job runs: the ID its archive resolved to in :meth:`prepare`,
        else the spec's own ``image`` (an ID, or a tag the executor trusts only if allowed)."""
        return self._images.get(job_id, image)

    async def _fetch_blob(self, job_id: str, cid: bytes, size: int, peer: str, what: str) -> bytes:
        service = self._service()
        try:
            # Held as soon as it is complete: a second try covers an eviction in between.
            for _attempt in range(2):
                await service.fetch(cid, peers=(peer,), expected_size=size)
                try:
                    await service.hold(cid, job_id, HOLD_INPUT)
                    return cid
                except UnknownBlob:
                    continue
            raise WorkspaceError(f"{what}: our blob store evicted it as soon as it was fetched")
        except (StoreFull, LocalDiskError, TooManyHolds) as exc:
            raise WorkspaceError(f"{what}: our blob store cannot take it: {exc.message}") from None
        except BlobStoreError as exc:
            raise InputUnavailable(f"{what}: blob {format_content_id(cid)}: {exc.message}") from None

    async def _fetch_url(self, job_id: str, item: DataInput) -> bytes:
        service = self._service()
        await trio.to_thread.run_sync(partial(os.makedirs, self.downloads, mode=0o700, exist_ok=True))
        target = self.downloads / f"{job_id}-{hashlib.sha256(item.path.encode()).hexdigest()[:16]}"
        try:
            await trio.to_thread.run_sync(
                partial(
                    download,
                    item.url,
                    target,
                    size=item.size,
                    sha256=item.sha256,
                    ca_file=self.ca_file,
                    allow_private=self.allow_private_urls,
                )
            )  # not abandoned on cancel: the socket timeout bounds the wait, and the file is ours
            info, _new = await service.put(target, pin=False)
            await service.hold(info.cid, job_id, HOLD_INPUT)
        except (StoreFull, LocalDiskError, TooManyHolds, UnknownBlob) as exc:
            raise WorkspaceError(
                f"data[{item.path!r}]: our blob store cannot take it: {exc.message}"
            ) from None
        finally:
            target.unlink(missing_ok=True)
        return info.cid

    def output_store(self, job_id: str) -> OutputStore:
        """Stores outputs as blobs held for ``job_id`` (called from the executor's worker thread)."""
        store = self._service().store
        chunk_size = self._service().settings.chunk_size

        def put(fd: int, path: str) -> bytes:
            try:
                info, _new = store.put_open_file(
                    fd, Path("out", path), pin=False, chunk_size=chunk_size, hold=(job_id, HOLD_OUTPUT)
                )
            except BlobStoreError as exc:
                raise WorkspaceError(
                    f"output {path!r}: our blob store cannot take it: {exc.message}"
                ) from None
            return info.cid

        return put

    async def release_inputs(self, job_id: str) -> None:
        """The job ended: release the holds on its inputs (garbage collection may then take them)."""
        self._images.pop(job_id, None)
        await self._release(job_id, HOLD_INPUT)

    async def release_outputs(self, job_id: str) -> None:
        """The contract closed: the requester has its outputs (or will never pay for them)."""
        await self._release(job_id, HOLD_OUTPUT)

    async def _release(self, job_id: str, purpose: str | None) -> int:
        if self.blobs is None:
            return 0
        try:
            return await self.blobs.release(job_id, purpose)
        except (BlobStoreError, HostStateError) as exc:  # the node is stopping: the next start will
            log.debug("releasing the %s holds of %s: %s", purpose or "all", job_id, exc.message)
            return 0

    async def release_stale(self, records: Iterable[JobRecord]) -> int:
        """Release the holds of jobs that are no longer live (after a restart: the market has
        resumed its jobs, and ``records`` are all it knows). Inputs are kept only for provider
        jobs that may still run, outputs for provider jobs whose contract is still open; holds
        of jobs the book does not know are dropped. Returns how many holds were released."""
        if self.blobs is None:
            return 0
        may_run = (JobState.CONTRACTED, JobState.ESCROWED, JobState.RUNNING)
        provider = [record for record in records if record.role == PROVIDER and not record.terminal]
        keep = {
            HOLD_INPUT: {record.job_id for record in provider if record.state in may_run},
            HOLD_OUTPUT: {record.job_id for record in provider},
        }
        try:
            holds = await trio.to_thread.run_sync(self.blobs.store.holds)
        except HostStateError as exc:
            log.warning("stale job holds not released: %s", exc.message)
            return 0
        released = 0
        for owner in sorted(holds):
            for purpose in sorted(holds[owner]):
                if owner not in keep.get(purpose, set()):
                    released += await self._release(owner, purpose)
        if released:
            log.info("released %d blob holds of jobs that are no longer live", released)
        return released


def check_public_host(host: str) -> None:
    """Raises :class:`InputUnavailable` when ``host`` resolves to an address a provider must not
    be made to fetch from: loopback, private, link-local, multicast, reserved. (A name could be
    re-pointed between this check and the connection; the hash check still guards the content.)"""
    try:
        infos = socket.getaddrinfo(host, 443, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        raise InputUnavailable(f"{host}: does not resolve ({exc})") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise InputUnavailable(f"{host} resolves to {address}, not a public address")


def download(
    url: str, target: Path, *, size: int, sha256: bytes, ca_file: str | None, allow_private: bool
) -> None:
    """Download ``url`` into ``target``: at most ``size`` bytes, exactly that many, hashing to
    ``sha256``. Raises :class:`InputUnavailable`, :class:`InputHashMismatch`."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise InputUnavailable(f"{url[:80]}: only https URLs are fetched")
    if not allow_private:
        check_public_host(parts.hostname)
    context = ssl.create_default_context(cafile=ca_file)
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context), _NoRedirects)
    hasher = hashlib.sha256()
    received = 0
    try:
        with (
            opener.open(
                urllib.request.Request(url, headers={"User-Agent": "dcent"}), timeout=URL_TIMEOUT_S
            ) as answer,
            open(target, "wb") as out,
        ):
            while True:
                block = answer.read(min(_READ_BYTES, size + 1 - received))
                if not block:
                    break
                received += len(block)
                if received > size:
                    raise InputHashMismatch(f"{url[:80]}: more than the {size} bytes the spec declares")
                hasher.update(block)
                out.write(block)
    except (urllib.error.URLError, OSError, ssl.SSLError) as exc:
        raise InputUnavailable(f"{url[:80]}: {exc}") from None
    if received != size:
        raise InputHashMismatch(f"{url[:80]}: {received} bytes, the spec declares {size}")
    if hasher.digest() != sha256:
        raise InputHashMismatch(f"{url[:80]}: content has sha256 {hasher.hexdigest()}, not {sha256.hex()}")


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect could lead to plain http or to a private address: not followed."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None
