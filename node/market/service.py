"""The job service: the market's node side, one trio service per node.

Every node is a requester (its account pays for the jobs submitted through its RPC) and, when it
has GPUs to sell, a provider. Jobs are records in the store's ``jobs`` table; a restarted node
picks up what it must finish: a requester keeps watching its open escrows (and refunds at the
deadline), a provider still gets paid for what it delivered. A provider job that was running
when the node stopped is lost (its process died with the node): the requester refunds it at
the deadline and the collateral is slashed, which is what the collateral is for.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from gpu.allocator import GpuAllocator
from node.blobs.service import BlobService
from node.executor.base import Executor
from node.executor.container import ContainerExecutor
from node.market.context import (
    DEFAULT_ESCROW_WAIT_BLOCKS,
    DEFAULT_SETTLE_MARGIN_BLOCKS,
    JobBook,
    MarketContext,
)
from node.market.errors import InterruptedByRestart, JobNotCancellable, JobNotFinished, OutputsAreBlobs
from node.market.jobdata import JobData
from node.market.provider import ProviderSide
from node.market.readiness import ProviderReadiness
from node.market.records import PROVIDER, REQUESTER, JobRecord, JobState
from node.market.requester import OUTPUT_LISTING_FILE, PENDING_LISTING_FILE, RequesterSide
from node.market.txlane import TxLane
from node.p2p.interface import Host
from node.services.chain_feed import ChainFeed
from node.store import ChainStore
from protocol.consensus.ledger_app import LedgerApp
from protocol.crypto import PrivateKey
from protocol.encoding import DecodeError
from protocol.hardware import ProbeReport
from protocol.ledger import authz
from protocol.ledger.tx import OpenEscrow
from protocol.market.capacity import CapacityAnnouncement
from protocol.market.delivery import LOG_PROTOCOL_ID, RESULT_PROTOCOL_ID, STATUS_PROTOCOL_ID
from protocol.market.jobspec import OUTPUT_BLOBS, JobSpec
from protocol.market.messages import MARKET_PROTOCOL_ID
from protocol.market.negotiation import (
    DEFAULT_MAX_TRANSFER_BYTES,
    DEFAULT_RESPONSE_TIMEOUT_MS,
    ProviderPolicy,
)

if TYPE_CHECKING:
    from trio_typing import TaskStatus

log = logging.getLogger("dcent.market")


class MarketService:
    def __init__(
        self,
        *,
        key: PrivateKey,
        chain_id: str,
        host: Host,
        app: LedgerApp,
        lane: TxLane,
        store: ChainStore,
        executor: Executor,
        capacity: Callable[[], list[CapacityAnnouncement]],
        probe_report: Callable[[], ProbeReport | None],
        clock_ms: Callable[[], int],
        feed: ChainFeed,
        jobs_dir: Path,
        block_ms_floor: int,
        price_per_gpu_second: int,
        collateral: int,
        response_timeout_ms: int = DEFAULT_RESPONSE_TIMEOUT_MS,
        escrow_wait_blocks: int = DEFAULT_ESCROW_WAIT_BLOCKS,
        settle_margin_blocks: int = DEFAULT_SETTLE_MARGIN_BLOCKS,
        readiness: ProviderReadiness | None = None,
        blobs: BlobService | None = None,
        max_input_bytes: int = DEFAULT_MAX_TRANSFER_BYTES,
        input_price_per_gib: int = 0,
        url_ca_file: str = "",
        allow_private_urls: bool = False,
        quote: str = "",
        quote_price_per_gpu_second: int = 0,
    ) -> None:
        self.executor = executor
        #: The node's blob store: inputs and outputs by reference travel through it.
        self.blobs = blobs
        self.data = JobData(
            blobs,
            jobs_dir / "downloads",
            ca_file=url_ca_file or None,
            allow_private_urls=allow_private_urls,
        )
        #: Whether the node may sell now and what (the executor's self-test); None: it never sells.
        self.readiness = readiness
        self.allocator = GpuAllocator()
        self.probe_report = probe_report
        self.capacity = capacity
        self.response_timeout_ms = response_timeout_ms
        self.policy = ProviderPolicy(
            key=key,
            chain_id=chain_id,
            price_per_gpu_second=price_per_gpu_second,
            collateral=collateral,
            executors=frozenset({executor.name}),
            max_transfer_bytes=max_input_bytes,
            transfer_price_per_gib=input_price_per_gib,
            quote=quote,
            quote_price_per_gpu_second=quote_price_per_gpu_second,
            # The executor's own image rule, so the quote refuses what the start would.
            allow_local_image_names=isinstance(executor, ContainerExecutor)
            and executor.settings.allow_local_image_names,
        )
        self.book = JobBook(store, clock_ms)
        self.ctx = MarketContext(
            key=key,
            chain_id=chain_id,
            host=host,
            app=app,
            lane=lane,
            book=self.book,
            clock_ms=clock_ms,
            feed=feed,
            jobs_dir=jobs_dir,
            block_ms_floor=max(block_ms_floor, 100),
            escrow_wait_blocks=escrow_wait_blocks,
            settle_margin_blocks=settle_margin_blocks,
        )
        self.provider: ProviderSide | None = None
        self.requester: RequesterSide | None = None

    def set_price(self, price_per_gpu_second: int) -> None:
        """The ask of negotiations that start from now on (``node/market/pricing.py`` reprices)."""
        self.policy = dataclasses.replace(self.policy, price_per_gpu_second=price_per_gpu_second)
        if self.provider is not None:
            self.provider.policy = self.policy

    def busy_gpu_uuids(self) -> tuple[str, ...]:
        return tuple(sorted(uuid for held in self.allocator.allocations().values() for uuid in held))

    def refresh_units(self) -> None:
        """Take the GPUs the last probe found (the capacity service probes on its schedule)."""
        report = self.probe_report()
        if report is not None:
            self.allocator.update_units(report.schedulable_units())

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self.provider = ProviderSide(
                self.ctx,
                policy=self.policy,
                allocator=self.allocator,
                executor=self.executor,
                nursery=nursery,
                data=self.data,
            )
            self.requester = RequesterSide(
                self.ctx,
                capacity=self.capacity,
                response_timeout_ms=self.response_timeout_ms,
                nursery=nursery,
                blobs=self.blobs,
            )
            self.refresh_units()
            self._refresh_policy()
            await self._resume(nursery)
            # Inputs and outputs held for jobs the restart ended (or forgot) are released.
            await self.data.release_stale(list(self.book.jobs.values()))
            self.ctx.host.set_stream_handler(MARKET_PROTOCOL_ID, self._negotiation_handler)
            self.ctx.host.set_stream_handler(RESULT_PROTOCOL_ID, self.requester.handle_delivery_stream)
            self.ctx.host.set_stream_handler(STATUS_PROTOCOL_ID, self.requester.handle_started)
            self.ctx.host.set_stream_handler(LOG_PROTOCOL_ID, self.requester.live.handle)
            task_status.started()
            while True:
                await self.ctx.next_block()
                self.refresh_units()
                self._refresh_policy()

    async def _negotiation_handler(self, stream: object) -> None:
        assert self.provider is not None
        self.refresh_units()
        self._refresh_policy()
        await self.provider.handle_negotiation(stream)  # type: ignore[arg-type]

    def _refresh_policy(self) -> None:
        """Quote and run under what the node sells now: nothing (a refusal) while its self-test
        fails."""
        if self.provider is not None:
            limits = self.readiness.offered_limits() if self.readiness is not None else None
            self.provider.policy = dataclasses.replace(self.policy, limits=limits)

    async def _resume(self, nursery: trio.Nursery) -> None:
        assert self.provider is not None and self.requester is not None
        rows = await trio.to_thread.run_sync(self.book.store.jobs)
        for job_id, _state, data, _updated in rows:
            try:
                record = JobRecord.from_stored(data)
            except (DecodeError, KeyError, ValueError, TypeError) as exc:
                log.warning("job %s: unreadable record skipped (%r)", job_id, exc)
                continue
            self.book.jobs[record.job_id] = record
            if record.terminal:
                continue
            now = self.ctx.clock_ms()
            if record.role == REQUESTER and record.contract is not None:
                nursery.start_soon(self.requester.see_closed, record)
            elif record.role == PROVIDER and record.state in (JobState.DELIVERED, JobState.CLAIMED):
                nursery.start_soon(self.provider.fulfil, record)
            elif record.role == PROVIDER and record.state is JobState.CONTRACTED:
                sold = set(record.contract.terms.gpu_uuids) if record.contract else set()
                self.allocator.allocate(record.job_id, len(sold), lambda unit, sold=sold: unit.uuid in sold)  # type: ignore[misc]
                nursery.start_soon(self.provider.fulfil, record)
            else:
                record.fail(
                    JobState.FAILED,
                    InterruptedByRestart.code,
                    "the node stopped while the job was in progress",
                    now,
                )
                await self.book.save(record)

    # --- what RPC asks ---------------------------------------------------------------------------
    async def submit(
        self, spec: JobSpec, *, max_attempts: int = 5, payer: bytes = b"", payer_signs: bool = False
    ) -> JobRecord:
        """Start a job. ``payer``: a wallet paying through its grant to this node; refused at once
        (NoGrant, GrantExpired, GrantKindNotAllowed, GrantExhausted) unless the committed grant
        covers the most the job could lock, its maximum price for its maximum GPU-seconds, and
        the escrow's fee (the ledger checks the grant again when the escrow applies). With
        ``payer_signs`` the payer gave no grant: the node negotiates, then waits for the payer to
        sign and submit the escrow of the contract (``job_get`` shows it) itself."""
        assert self.requester is not None, "the job service is not running"
        if payer == self.ctx.key.address.raw:
            payer = b""  # the node's own account: no grant needed, and a contract names no payer
        if not payer:
            payer_signs = False  # the node's own account: it escrows itself
        elif not payer_signs:
            state = self.ctx.app.state
            authz.check_spend(
                state,
                granter=payer,
                grantee=self.ctx.key.address.raw,
                kind=OpenEscrow.KIND,
                amount=spec.max_price_per_gpu_second * spec.max_gpu_seconds + state.params.min_fee,
                height=state.height + 1,
            )
        return await self.requester.submit(
            spec, max_attempts=max_attempts, payer=payer, payer_signs=payer_signs
        )

    def get(self, job_id: str) -> JobRecord:
        return self.book.get(job_id)

    def list(self, state: str | None = None) -> list[JobRecord]:
        records = [r for r in self.book.jobs.values() if state is None or r.state.value == state]
        return sorted(records, key=lambda r: (r.created_ms, r.job_id), reverse=True)

    def cancel(self, job_id: str) -> JobRecord:
        record = self.book.get(job_id)
        assert self.requester is not None
        if record.role != REQUESTER or not self.requester.cancel(record):
            raise JobNotCancellable(f"job {job_id} is {record.state.value}: past cancelling")
        return record

    def _finished_dir(self, job_id: str) -> Path:
        record = self.book.get(job_id)
        if record.receipt is None:
            raise JobNotFinished(f"job {job_id} is {record.state.value}: no result yet")
        return self.ctx.job_dir(job_id)

    async def logs(self, job_id: str) -> tuple[bytes, bytes, bool]:
        """The job's stdout and stderr, and whether they are the live view of a job still
        running (what its provider streamed so far) rather than the delivered, complete logs."""
        record = self.book.get(job_id)
        live = self.requester.live.get(job_id) if self.requester is not None else None
        if record.receipt is None and not record.terminal:
            if live is not None:
                return bytes(live.stdout), bytes(live.stderr), True
            if record.state in (JobState.ESCROWED, JobState.RUNNING):
                return b"", b"", True
        directory = self._finished_dir(job_id)

        def read() -> tuple[bytes, bytes]:
            return ((directory / "stdout").read_bytes(), (directory / "stderr").read_bytes())

        stdout, stderr = await trio.to_thread.run_sync(read)
        return stdout, stderr, False

    async def result_files(self, job_id: str) -> dict[str, bytes]:
        record = self.book.get(job_id)
        if record.role != REQUESTER:
            raise JobNotFinished(f"job {job_id}: a provider keeps no copy of the outputs it delivered")
        if record.spec.output_mode == OUTPUT_BLOBS:
            raise OutputsAreBlobs(
                f"job {job_id} returns its outputs as blobs: `dcent job output {job_id} --out DIR` writes them"
            )
        out = self._finished_dir(job_id) / "out"

        def read() -> dict[str, bytes]:
            if not out.is_dir():
                return {}
            return {
                path.relative_to(out).as_posix(): path.read_bytes()
                for path in sorted(out.rglob("*"))
                if path.is_file() and not path.is_symlink()
            }

        return await trio.to_thread.run_sync(read)

    async def output_listing(self, job_id: str) -> tuple[tuple[tuple[str, int, bytes], ...], bool]:
        """The outputs a job returns as blobs (path, size, content id) and whether they are
        verified: fetched, checked against the receipt and countersigned (else the listing of a
        delivery still being fetched, or nothing yet). Empty for a job whose outputs come inline.
        Raises UnknownJob, JobNotFinished (a provider's job)."""
        record = self.book.get(job_id)
        if record.role != REQUESTER:
            raise JobNotFinished(f"job {job_id}: a provider keeps no copy of the outputs it delivered")
        directory = self.ctx.job_dir(job_id)
        verified = record.receipt is not None

        def read() -> tuple[tuple[str, int, bytes], ...]:
            path = directory / (OUTPUT_LISTING_FILE if verified else PENDING_LISTING_FILE)
            if not path.is_file():
                return ()
            rows = json.loads(path.read_text())
            return tuple((str(name), int(size), bytes.fromhex(cid)) for name, size, cid in rows)

        return await trio.to_thread.run_sync(read), verified
