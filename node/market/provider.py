"""The provider's side of a job: quote and countersign on ``/dcent/market/1.0.0``, wait for the
escrow to be final, run the job in the sandbox on the GPUs sold, deliver the result on
``/dcent/result/2.0.0``, and get paid: by the receipt both signed, or by a claim on its own
signature once the dispute window has passed.

GPUs are reserved in the allocator from the moment they are quoted (under the quote's id) and
move to the contract's job id when it is countersigned, so two quotes or two jobs never share a
unit. The contract is recorded before the countersignature leaves the node: a restart never
forgets a contract the requester holds.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import trio

from gpu.allocator import GpuAllocator
from node.executor.base import Executor, run_to_outcome
from node.executor.errors import JobInputError, SandboxBug, SandboxUnavailable
from node.executor.limits import ResourceLimits
from node.executor.model import ExecutionResult, Outcome, SandboxJob
from node.market.context import MarketContext, data_bytes
from node.market.delivery_link import send_delivery
from node.market.errors import EscrowNeverOpened, ProviderFailed, TxRefused
from node.market.jobdata import JobData
from node.market.livelog import FLUSH_GRACE_S, OutputForwarder
from node.market.records import PROVIDER, JobRecord, JobState
from node.p2p.errors import P2PError
from node.p2p.framing import Stream
from protocol.contracts import OUTCOME_JOB_FAILED, ContractTerms, UsageReceipt
from protocol.encoding import DecodeError
from protocol.hardware import GpuDevice
from protocol.ledger.escrow import SETTLEMENT_RULES
from protocol.ledger.quoted import current_quote_twap
from protocol.ledger.tx import EscrowClaim, EscrowFinalize, Settle
from protocol.market.delivery import (
    STATUS_PROTOCOL_ID,
    DeliveryAck,
    JobStarted,
    OutputFile,
    ResultDelivery,
    blob_listing_hash,
    output_listing_hash,
)
from protocol.market.errors import InvalidMarketMessage
from protocol.market.jobspec import OUTPUT_BLOBS
from protocol.market.messages import (
    MAX_MESSAGE_BYTES,
    ContractProposal,
    QuoteRequest,
    Refusal,
    decode_message,
    encode_message,
)
from protocol.market.negotiation import ProviderNegotiation, ProviderPolicy, ProviderState
from protocol.market.settlement import (
    PROVIDER_CLAIM_RULES,
    PROVIDER_ESCROW_RULES,
    Action,
    JobTerms,
    decide,
    read_contract,
)

log = logging.getLogger("dcent.market.provider")

#: How long a requester may take to send its request once the stream is open.
REQUEST_WAIT_S = 10
DELIVERY_TIMEOUT_S = 60
#: Outputs as blobs: the requester fetches them before it answers; this much more time per byte
#: (4 MiB/s, far below loopback or a LAN) before the delivery counts as unanswered.
DELIVERY_S_PER_BYTE = 1 / (4 * 2**20)
DELIVERY_ATTEMPTS = 5
STATUS_TIMEOUT_S = 10
#: The exit status reported when the job's process never ran (a provider error, or a spec the
#: sandbox refused before starting it).
NOT_RUN_EXIT_STATUS = -1


class ProviderSide:
    def __init__(
        self,
        ctx: MarketContext,
        *,
        policy: ProviderPolicy,
        allocator: GpuAllocator,
        executor: Executor,
        nursery: trio.Nursery,
        data: JobData | None = None,
    ) -> None:
        self.ctx = ctx
        #: Inputs by reference, image archives, outputs as blobs (none: inline data only).
        self.data = data if data is not None else JobData(None, ctx.jobs_dir / "downloads")
        self.policy = policy
        self.allocator = allocator
        self.executor = executor
        self.nursery = nursery
        #: Set when a job process starts: benchmarks read escrow-final -> start from it.
        self.started_at: dict[str, float] = {}

    def free_units(self) -> list[GpuDevice]:
        units = {unit.uuid: unit for unit in self.allocator.units()}
        return [units[uuid] for uuid in self.allocator.free()]

    def min_deadline_height(self, request: QuoteRequest) -> int:
        return self.ctx.min_deadline(request.spec.max_runtime_s, data_bytes(request.spec))

    # --- negotiation -------------------------------------------------------------------------
    async def handle_negotiation(self, stream: Stream) -> None:
        ctx = self.ctx
        negotiation = ProviderNegotiation(self.policy)
        hold: str | None = None
        try:
            with trio.fail_after(REQUEST_WAIT_S):
                request = decode_message(await stream.receive_frame(MAX_MESSAGE_BYTES))
            if not isinstance(request, QuoteRequest):
                await stream.send_frame(
                    encode_message(Refusal.from_error(InvalidMarketMessage("expected a quote request")))
                )
                return
            answer = negotiation.receive_request(
                request,
                now_ms=ctx.clock_ms(),
                free_gpus=self.free_units(),
                min_deadline_height=self.min_deadline_height(request),
                quote_twap=current_quote_twap(ctx.app.state, self.policy.quote)
                if self.policy.quote
                else None,
            )
            if negotiation.quote is not None:
                hold = "quote-" + request.request_hash().hex()[:24]
                quoted = set(negotiation.quote.terms.gpu_uuids)
                self.allocator.allocate(hold, len(quoted), lambda unit: unit.uuid in quoted)
            await stream.send_frame(encode_message(answer))
            if negotiation.quote is None:
                return
            proposal = None
            with trio.move_on_at(ctx.trio_deadline(negotiation.quote.expires_at_ms)):
                proposal = decode_message(await stream.receive_frame(MAX_MESSAGE_BYTES))
            if proposal is None:
                negotiation.on_timer(ctx.clock_ms())
                return
            if not isinstance(proposal, ContractProposal):
                await stream.send_frame(
                    encode_message(Refusal.from_error(InvalidMarketMessage("expected a contract")))
                )
                return
            reply = negotiation.receive_contract(proposal, ctx.clock_ms())
            if negotiation.state is ProviderState.AGREED:
                assert negotiation.contract is not None
                record = JobRecord(
                    job_id="p-" + negotiation.contract.terms.contract_hash().hex()[:24],
                    role=PROVIDER,
                    spec=request.spec,
                    created_ms=ctx.clock_ms(),
                    peer_id=stream.peer_id,
                    contract=negotiation.contract,
                )
                # The quote's hold becomes the job's: no await in between, so nothing else can
                # take the units.
                assert hold is not None  # AGREED is reached only through a quote
                self.allocator.release(hold)
                hold = None
                sold = set(record.contract.terms.gpu_uuids)  # type: ignore[union-attr]
                self.allocator.allocate(record.job_id, len(sold), lambda unit: unit.uuid in sold)
                record.move(JobState.CONTRACTED, ctx.clock_ms())
                await ctx.book.save(record)
                self.nursery.start_soon(self.fulfil, record)
            await stream.send_frame(encode_message(reply))
        finally:
            if hold is not None:
                self.allocator.release(hold)

    # --- the contract's life -----------------------------------------------------------------
    async def fulfil(self, record: JobRecord) -> None:
        """Escrow -> run -> deliver -> settle, for one countersigned contract."""
        try:
            if record.state is JobState.CONTRACTED and not await self._await_escrow(record):
                return
            if record.state in (JobState.ESCROWED, JobState.RUNNING):
                result = await self._run(record)
                await self._deliver(record, result)
            await self._get_paid(record)
        finally:
            if record.job_id in self.allocator.allocations():
                self.allocator.release(record.job_id)
            if record.terminal and record.output_cids:
                # Closed (settled, refunded, disputed): the requester has its outputs or never
                # will pay for them. Still open (the node is stopping): kept for the restart.
                with trio.CancelScope(shield=True):
                    await self.data.release_outputs(record.job_id)
                    record.output_cids = []
                    await self.ctx.book.save(record)

    async def _await_escrow(self, record: JobRecord) -> bool:
        ctx = self.ctx
        assert record.contract is not None
        contract_hash = record.contract.terms.contract_hash()
        give_up = min(record.contract.terms.deadline_height, ctx.height() + ctx.escrow_wait_blocks)
        job = JobTerms(deadline_height=record.contract.terms.deadline_height, give_up_height=give_up)
        while True:
            chain = read_contract(ctx.app.state, contract_hash)
            step = decide(PROVIDER_ESCROW_RULES, chain, job)
            if step.action is Action.ESCROWED:
                record.escrow_height = chain.height
                record.escrow_price = ctx.app.state.escrows[contract_hash].price_per_gpu_second
                record.move(JobState.ESCROWED, ctx.clock_ms())
                self.nursery.start_soon(ctx.book.save, record)  # not awaited: the job starts now
                return True
            if step.action is Action.GIVE_UP:
                record.fail(
                    JobState.FAILED,
                    EscrowNeverOpened.code,
                    f"the escrow was not opened by height {give_up}",
                    ctx.clock_ms(),
                )
                await ctx.book.save(record)
                return False
            await ctx.feed.wait(
                seen_height=chain.height, contract=contract_hash, wake_height=step.wake_height
            )

    def _sandbox_job(self, record: JobRecord, mounts: dict[str, Path] | None = None) -> SandboxJob:
        """The job as the sandbox runs it: the spec's command, environment, inputs and limits
        (every kind the spec sets), pinned to the GPUs sold. Raises
        :class:`~node.executor.errors.JobInputError` for a spec the sandbox refuses."""
        spec = record.spec
        assert record.contract is not None
        uuids = record.contract.terms.gpu_uuids
        units = {unit.uuid: unit for unit in self.allocator.units()}
        devices = tuple(
            sorted({f"/dev/nvidia{units[u].index}" for u in uuids if u in units and not units[u].simulated})
        )
        return SandboxJob(
            job_id=record.job_id,
            argv=spec.argv,
            work_root=self.ctx.jobs_dir / "work",
            env=spec.env_map(),
            input_files=spec.input_map(),
            gpu_uuids=uuids,
            gpu_device_paths=devices,
            timeout_s=float(spec.max_runtime_s),
            output_cap_bytes=spec.output_limit_bytes,
            # By the ID its archive resolved to (a tag is anyone's: node.executor.images).
            image=self.data.image_for(record.job_id, spec.image)
            if self.executor.name in ("docker", "podman")
            else "",
            limits=self.enforced_limits(ResourceLimits.from_spec(spec.limits)),
            input_mounts=mounts or {},
            output_store=self.data.output_store(record.job_id) if spec.output_mode == OUTPUT_BLOBS else None,
        )

    def enforced_limits(self, limits: ResourceLimits) -> ResourceLimits:
        """The limits the job runs under: all of them. Only the unsandboxed development provider
        runs a job without the kinds its host cannot enforce (its offer says which)."""
        offered = self.policy.limits
        if offered is None or offered.sandboxed:
            return limits
        dropped = offered.unenforced()
        if dropped:
            log.warning("job runs UNSANDBOXED and without its %s limit(s)", ", ".join(dropped))
        return ResourceLimits(
            memory_bytes=None if "memory" in dropped else limits.memory_bytes,
            cpu_millicores=None if "cpu" in dropped else limits.cpu_millicores,
            processes=None if "processes" in dropped else limits.processes,
            disk_bytes=None if "disk" in dropped else limits.disk_bytes,
        )

    async def _run(self, record: JobRecord) -> ExecutionResult | None:
        """Run the job to its outcome; None when the sandbox refused the spec before starting it
        (the requester's input: ``record.error_*`` say why)."""
        ctx = self.ctx
        record.move(JobState.RUNNING, ctx.clock_ms())
        self.started_at[record.job_id] = trio.current_time()
        self.nursery.start_soon(self._tell_started, record)
        self.nursery.start_soon(ctx.book.save, record)
        assert record.contract is not None
        # The job's lines go to the requester as it prints them, on a stream of their own.
        forwarder = OutputForwarder(ctx.host, record.peer_id, record.contract.terms.contract_hash())
        result: ExecutionResult | None = None
        async with trio.open_nursery() as live:
            live.start_soon(forwarder.run)
            try:
                # Inputs by reference and the image archive first: the job runs only with all.
                mounts = await self.data.prepare(record.job_id, record.spec, record.peer_id, self.executor)
                job = self._sandbox_job(record, mounts)
                result = await run_to_outcome(self.executor, job, on_output=forwarder.sink)
            except JobInputError as exc:
                log.warning("job %s refused by the sandbox: %s", record.job_id, exc.message)
                record.error_code, record.error_message = exc.code, exc.message
            except SandboxUnavailable as exc:  # our disk or engine failed while preparing
                result = ExecutionResult.provider_error(
                    record.job_id, self.executor.name, exc.code, exc.message
                )
            except Exception as exc:  # one job's unforeseen failure must not end the node
                # Review 39 F3: a parser error no one had typed escaped here and would have stopped
                # the node and every tenant's job. It is our bug: the job is our error, said so.
                log.exception("job %s: unexpected failure of our sandbox", record.job_id)
                result = ExecutionResult.provider_error(
                    record.job_id,
                    self.executor.name,
                    SandboxBug.code,
                    f"internal error: {type(exc).__name__}",
                )
            finally:
                forwarder.finish()
                live.cancel_scope.deadline = trio.current_time() + FLUSH_GRACE_S
                with trio.CancelScope(shield=True):
                    await self.data.release_inputs(record.job_id)
        if forwarder.dropped:
            log.info("job %s: %d lines did not reach the live view", record.job_id, forwarder.dropped)
        self.allocator.release(record.job_id)
        if result is not None and result.outcome is Outcome.PROVIDER_ERROR:
            record.error_code, record.error_message = result.error_code, result.error_message
            log.error(
                "job %s: our sandbox failed (%d): %s; the requester is refunded and our collateral slashed",
                record.job_id,
                result.error_code,
                result.error_message,
            )
        return result

    async def _tell_started(self, record: JobRecord) -> None:
        """Let the requester show "running" (best effort: nothing depends on it)."""
        assert record.contract is not None
        notice = JobStarted.sign(self.ctx.key, record.contract.terms).encode()
        with trio.move_on_after(STATUS_TIMEOUT_S):
            try:
                stream = await self.ctx.host.open_stream(record.peer_id, STATUS_PROTOCOL_ID)
                await stream.send_frame(notice)
                await stream.close()
            except P2PError as exc:
                log.debug("could not tell %s that %s started: %r", record.peer_id, record.job_id, exc)

    async def _deliver(self, record: JobRecord, result: ExecutionResult | None) -> None:
        ctx = self.ctx
        assert record.contract is not None
        terms = record.contract.terms
        files = dict(result.output_files) if result else {}
        blobs = record.spec.output_mode == OUTPUT_BLOBS
        output_blobs = result.output_blobs if result else ()
        receipt = receipt_for(terms, result, blobs=blobs)
        record.output_cids = [item.content_id for item in output_blobs]
        exit_status = receipt.exit_status
        record.receipt, record.provider_sig, record.exit_status = receipt, receipt.sign(ctx.key), exit_status
        await _write_logs(ctx.job_dir(record.job_id), result)
        await ctx.book.save(record)
        delivery = ResultDelivery(
            receipt=receipt,
            provider_sig=record.provider_sig,
            files=tuple(OutputFile(path, files[path]) for path in sorted(files)),
            stdout=result.stdout if result else b"",
            stderr=_stderr_of(record, result),
            stdout_truncated=result.stdout_truncated if result else False,
            stderr_truncated=result.stderr_truncated if result else False,
            outputs_truncated=result.outputs_truncated if result else False,
            timed_out=result.timed_out if result else False,
            blobs=output_blobs,
        )
        payload = delivery.encode()
        timeout = DELIVERY_TIMEOUT_S + delivery.output_bytes() * DELIVERY_S_PER_BYTE
        for attempt in range(DELIVERY_ATTEMPTS):
            try:
                answer = await send_delivery(
                    ctx.host, record.peer_id, receipt.contract_hash, payload, timeout=timeout
                )
            except (P2PError, DecodeError) as exc:
                log.info("delivery of %s, attempt %d: %r", record.job_id, attempt + 1, exc)
                await ctx.next_block()
                continue
            if isinstance(answer, DeliveryAck) and receipt.verify(terms.requester, answer.requester_sig):
                record.requester_sig = answer.requester_sig
                record.move(JobState.DELIVERED, ctx.clock_ms())
            elif isinstance(answer, Refusal):
                log.warning(
                    "requester refused the result of %s: %d %s", record.job_id, answer.code, answer.message
                )
            break
        await ctx.book.save(record)

    async def _get_paid(self, record: JobRecord) -> None:
        """Settle with both signatures when we have them, else claim and finalize after the window."""
        ctx = self.ctx
        assert record.contract is not None and record.receipt is not None
        contract_hash = record.contract.terms.contract_hash()
        try:
            if record.requester_sig:
                record.settled_height = await ctx.lane.submit(
                    Settle(record.receipt, record.provider_sig, record.requester_sig)
                )
                self._closed(record, contract_hash)
                return
            if record.state is not JobState.CLAIMED:
                record.claimed_height = await ctx.lane.submit(
                    EscrowClaim(record.receipt, record.provider_sig)
                )
                record.move(JobState.CLAIMED, ctx.clock_ms())
                await ctx.book.save(record)
            while True:
                chain = read_contract(ctx.app.state, contract_hash)
                step = decide(
                    PROVIDER_CLAIM_RULES,
                    chain,
                    JobTerms(deadline_height=record.contract.terms.deadline_height),
                )
                if step.action in (Action.CLOSED, Action.CLAIM_GONE):  # settled late, or disputed
                    raise TxRefused("escrow_finalize: the claim is no longer pending")
                if step.action is Action.FINALIZE:
                    break
                # A parameter change (the window) wakes the wait too: the feed sees to it.
                await ctx.feed.wait(
                    seen_height=chain.height, contract=contract_hash, wake_height=step.wake_height
                )
            record.settled_height = await ctx.lane.submit(EscrowFinalize(contract_hash))
            self._closed(record, contract_hash)
        except TxRefused as exc:
            outcome = ctx.app.state.closed_contracts.get(contract_hash)
            if outcome == "settled" or (outcome == "refunded" and _refunds_by_receipt(record)):
                record.settled_height = ctx.height()
                self._closed(record, contract_hash)
            else:
                record.fail(
                    JobState.DISPUTED if outcome == "disputed" else JobState.FAILED,
                    exc.code,
                    exc.message,
                    ctx.clock_ms(),
                )
        finally:
            await ctx.book.save(record)

    def _closed(self, record: JobRecord, contract_hash: bytes) -> None:
        """The escrow closed by our receipt: paid (settled), or refunded for our own failure."""
        if self.ctx.app.state.closed_contracts.get(contract_hash) == "refunded":
            record.fail(
                JobState.REFUNDED,
                ProviderFailed.code,
                "our sandbox failed: the requester was refunded and our collateral slashed",
                self.ctx.clock_ms(),
            )
        else:
            record.move(JobState.SETTLED, self.ctx.clock_ms())


def _refunds_by_receipt(record: JobRecord) -> bool:
    receipt = record.receipt
    return receipt is not None and not SETTLEMENT_RULES[receipt.outcome].pays_metered


def receipt_for(terms: ContractTerms, result: ExecutionResult | None, *, blobs: bool = False) -> UsageReceipt:
    """The usage receipt of a run: its outcome, exit status, GPU-milliseconds (capped at the
    contract's) and output hash. ``None`` (the sandbox refused the spec before running it) is the
    job's failure, with nothing metered. ``blobs``: the spec's outputs come as blobs, so the
    output hash is the blob listing's (empty for a run that produced none)."""
    if blobs and (result is None or result.outcome is Outcome.PROVIDER_ERROR):
        empty = blob_listing_hash(())
        plain = receipt_for(terms, result)
        return dataclasses.replace(plain, output_hash=empty)
    if result is None:
        return UsageReceipt(
            chain_id=terms.chain_id,
            contract_hash=terms.contract_hash(),
            outcome=OUTCOME_JOB_FAILED,
            gpu_ms=0,
            exit_status=NOT_RUN_EXIT_STATUS,
            output_hash=output_listing_hash({}),
        )
    if result.exit_code is not None:
        exit_status = result.exit_code
    elif result.signal is not None:
        exit_status = 128 + result.signal  # as a shell reports a signal
    else:
        exit_status = NOT_RUN_EXIT_STATUS
    return UsageReceipt(
        chain_id=terms.chain_id,
        contract_hash=terms.contract_hash(),
        outcome=result.outcome.value,
        gpu_ms=0
        if result.outcome is Outcome.PROVIDER_ERROR
        else min(result.gpu_ms, terms.max_gpu_seconds * 1000),
        exit_status=exit_status,
        output_hash=result.output_hash,
        limit=result.limit.value if result.outcome is Outcome.LIMIT_EXCEEDED and result.limit else "",
    )


def _stderr_of(record: JobRecord, result: ExecutionResult | None) -> bytes:
    """The job's stderr; for a run that never got that far, why (the requester reads it)."""
    if result is not None and result.outcome is not Outcome.PROVIDER_ERROR:
        return result.stderr
    whose = "provider error" if result is not None else "the sandbox refused the job"
    return f"dcent: {whose} {record.error_code}: {record.error_message}\n".encode()


async def _write_logs(directory: Path, result: ExecutionResult | None) -> None:
    path = trio.Path(directory)
    await path.mkdir(parents=True, exist_ok=True)
    await (path / "stdout").write_bytes(result.stdout if result else b"")
    await (path / "stderr").write_bytes(result.stderr if result else b"")
