"""The requester's side of a job: match against the capacity table, negotiate with the ranked
providers in turn, escrow the countersigned contract, take the delivered result (checked, then
countersigned), and see the contract closed: settled, or refunded past its deadline when the
provider never delivered (the refund slashes the provider's collateral), or disputed when the
provider claims for a result this node never received or refused.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import trio

from node.blobs.errors import BlobStoreError
from node.blobs.service import BlobService
from node.market.context import MarketContext, data_bytes
from node.market.errors import (
    ClaimDisputed,
    EscrowNeverOpened,
    JobCancelled,
    NothingDelivered,
    ProviderFailed,
    TxRefused,
)
from node.market.livelog import LiveLogs
from node.market.records import REQUESTER, JobRecord, JobState
from node.p2p.errors import P2PError
from node.p2p.framing import MAX_FRAME_BYTES, Stream
from protocol.blobs.merkle import format_content_id
from protocol.contracts import OUTCOME_PROVIDER_ERROR, SignedContract
from protocol.crypto import address_of
from protocol.encoding import DecodeError
from protocol.errors import ProtocolError
from protocol.ledger.quoted import current_quote_twap
from protocol.ledger.staking import bonded_by  # i12ledger: an account's stake is what it delegated
from protocol.ledger.tx import EscrowDispute, OpenEscrow, Refund, Settle
from protocol.market.capacity import CapacityAnnouncement
from protocol.market.delivery import (
    MAX_DELIVERY_HEADER_BYTES,
    DeliveryAck,
    DeliveryReady,
    JobStarted,
    OutputBlob,
    blob_delivery_limit,
    check_delivery,
    decode_delivery,
    decode_header,
    delivery_limit,
    encode_answer,
)
from protocol.market.errors import (
    DeliveryRejected,
    MalformedMessage,
    MarketError,
    NoOffersLeft,
    OutputsUnavailable,
    ReceiptForOtherContract,
    ReceiptOverLimit,
)
from protocol.market.jobspec import OUTPUT_BLOBS, JobSpec
from protocol.market.matching import Offer, match
from protocol.market.messages import (
    MARKET_PROTOCOL_ID,
    MAX_MESSAGE_BYTES,
    Refusal,
    decode_message,
    encode_message,
)
from protocol.market.negotiation import NegotiationPlan, RequesterNegotiation, RequesterState
from protocol.market.settlement import (
    PAYER_ESCROW_RULES,
    REQUESTER_CLOSE_RULES,
    Action,
    JobTerms,
    decide,
    read_contract,
)

log = logging.getLogger("dcent.market.requester")

#: How long a job waits for some provider's capacity to show up before it fails.
MATCH_WAIT_S = 20
DIAL_TIMEOUT_S = 10
#: Blocks the requester leaves the provider to settle a countersigned receipt before doing it.
SETTLE_GRACE_BLOCKS = 5
STATUS_FRAME_BYTES = 1024
#: How long a refused delivery stream waits for the peer to read the refusal and close.
REFUSAL_LINGER_S = 5


class RequesterSide:
    def __init__(
        self,
        ctx: MarketContext,
        *,
        capacity: Callable[[], list[CapacityAnnouncement]],
        response_timeout_ms: int,
        nursery: trio.Nursery,
        blobs: BlobService | None = None,
    ) -> None:
        self.ctx = ctx
        #: Where outputs that come as blobs are fetched to (and kept, pinned).
        self.blobs = blobs
        self.capacity = capacity
        self.response_timeout_ms = response_timeout_ms
        self.nursery = nursery
        self._scopes: dict[str, trio.CancelScope] = {}
        self._delivered: dict[str, trio.Event] = {}
        #: What our running jobs printed so far, as their providers stream it.
        self.live = LiveLogs(ctx.book)

    # --- submitting --------------------------------------------------------------------------
    async def submit(
        self, spec: JobSpec, *, max_attempts: int, payer: bytes = b"", payer_signs: bool = False
    ) -> JobRecord:
        """Start a job; ``payer``: the wallet that pays for it (empty: this node's own account),
        through its grant to this node, or with ``payer_signs`` by signing the escrow itself."""
        ctx = self.ctx
        record = JobRecord(
            job_id="job-" + secrets.token_hex(8),
            role=REQUESTER,
            spec=spec,
            created_ms=ctx.clock_ms(),
            payer=payer,
            payer_signs=payer_signs,
        )
        record.move(JobState.MATCHING, ctx.clock_ms())
        await ctx.book.save(record)
        self.nursery.start_soon(self.pursue, record, max_attempts)
        return record

    def cancel(self, record: JobRecord) -> bool:
        """Stop a job still matching or negotiating; False when it is past that."""
        scope = self._scopes.get(record.job_id)
        if scope is None or record.state not in (JobState.MATCHING, JobState.NEGOTIATING):
            return False
        scope.cancel()
        return True

    async def pursue(self, record: JobRecord, max_attempts: int) -> None:
        ctx = self.ctx
        with trio.CancelScope() as scope:
            self._scopes[record.job_id] = scope
            contract = await self._negotiate(record, max_attempts)
        self._scopes.pop(record.job_id, None)
        if scope.cancelled_caught:
            record.fail(
                JobState.CANCELLED,
                JobCancelled.code,
                "cancelled before a contract was made",
                ctx.clock_ms(),
            )
            await ctx.book.save(record)
            return
        if contract is None:
            return
        if record.payer_signs:
            await self._await_payer_escrow(record)
            await self.see_closed(record)
            return
        try:
            record.escrow_height = await ctx.lane.submit(OpenEscrow(contract))
        except TxRefused as exc:
            record.fail(JobState.FAILED, exc.code, exc.message, ctx.clock_ms())
            await ctx.book.save(record)
            return
        escrow = ctx.app.state.escrows.get(contract.terms.contract_hash())
        if escrow is not None:
            record.escrow_price = escrow.price_per_gpu_second
        if record.state is JobState.CONTRACTED:
            record.move(JobState.ESCROWED, ctx.clock_ms())
        await ctx.book.save(record)
        await self.see_closed(record)

    async def _await_payer_escrow(self, record: JobRecord) -> None:
        """The payer (a wallet that gave no grant) signs and submits the escrow itself, from the
        contract ``job_get`` shows it: wait for it to open. Past the deadline without it,
        :meth:`see_closed` fails the job (the escrow never opened)."""
        ctx = self.ctx
        assert record.contract is not None
        terms = record.contract.terms
        contract_hash = terms.contract_hash()
        while record.state is JobState.CONTRACTED:
            chain = read_contract(ctx.app.state, contract_hash)
            step = decide(PAYER_ESCROW_RULES, chain, JobTerms(deadline_height=terms.deadline_height))
            if step.action is Action.ESCROWED:
                escrow = ctx.app.state.escrows[contract_hash]
                record.escrow_height = escrow.opened_height
                record.escrow_price = escrow.price_per_gpu_second
                record.move(JobState.ESCROWED, ctx.clock_ms())
                await ctx.book.save(record)
                return
            if step.action is Action.NEVER_OPENED:
                return
            await ctx.feed.wait(
                seen_height=chain.height, contract=contract_hash, wake_height=step.wake_height
            )

    async def _offers(self, spec: JobSpec) -> list[Offer]:
        ctx = self.ctx
        own = ctx.key.public_key.raw

        def stake_of(provider: bytes) -> int:
            return bonded_by(ctx.app.state, address_of(provider))

        with trio.move_on_after(MATCH_WAIT_S):
            while True:
                offers = match(
                    spec,
                    self.capacity(),
                    now_ms=ctx.clock_ms(),
                    min_provider_stake=0,
                    stake_of=stake_of,
                    exclude=(own,),
                    twap_of=lambda symbol: current_quote_twap(ctx.app.state, symbol),
                )
                if offers:
                    return offers
                await ctx.next_block()
        return []

    async def _negotiate(self, record: JobRecord, max_attempts: int) -> SignedContract | None:
        ctx = self.ctx
        spec = record.spec
        offers = (await self._offers(spec))[:max_attempts]
        if not offers:
            record.fail(
                JobState.FAILED,
                NoOffersLeft.code,
                "no provider offers capacity that fits this job",
                ctx.clock_ms(),
            )
            await ctx.book.save(record)
            return None
        record.move(JobState.NEGOTIATING, ctx.clock_ms())
        await ctx.book.save(record)
        plan = NegotiationPlan(
            key=ctx.key,
            chain_id=ctx.chain_id,
            spec=spec,
            offers=offers,
            deadline_height=ctx.requested_deadline(spec.max_runtime_s, data_bytes(spec)),
            seed=os.urandom(32),
            response_timeout_ms=self.response_timeout_ms,
            payer=record.payer,
        )
        while (negotiation := plan.next_negotiation()) is not None:
            await self.negotiate(negotiation)
            if negotiation.state is RequesterState.AGREED:
                break
        contract = plan.contract
        if contract is None:
            tried = "; ".join(f"{f.code} {f.message}" for _, f in plan.failures)
            record.fail(JobState.FAILED, NoOffersLeft.code, f"no provider agreed: {tried}", ctx.clock_ms())
            await ctx.book.save(record)
            return None
        assert plan.current is not None
        record.contract, record.peer_id = contract, plan.current.offer.peer_id
        self._delivered[record.job_id] = trio.Event()
        record.move(JobState.CONTRACTED, ctx.clock_ms())
        await ctx.book.save(record)  # before the escrow: a restart still knows the contract
        return contract

    async def negotiate(self, negotiation: RequesterNegotiation) -> None:
        """One negotiation over one stream, to its end (agreed or failed)."""
        ctx = self.ctx
        stream: Stream | None = None
        try:
            with trio.fail_after(DIAL_TIMEOUT_S):
                stream = await ctx.host.open_stream(negotiation.offer.peer_id, MARKET_PROTOCOL_ID)
            await stream.send_frame(encode_message(negotiation.start(ctx.clock_ms())))
            while not negotiation.finished:
                data = None
                assert negotiation.timer_at_ms is not None
                with trio.move_on_at(ctx.trio_deadline(negotiation.timer_at_ms)):
                    data = await stream.receive_frame(MAX_MESSAGE_BYTES)
                if data is None:
                    negotiation.on_timer(ctx.clock_ms())
                    continue
                try:
                    proposal = negotiation.receive(decode_message(data), ctx.clock_ms())
                except MarketError as exc:
                    negotiation.abandon(exc)
                    break
                if proposal is not None:
                    await stream.send_frame(encode_message(proposal))
        except (P2PError, trio.TooSlowError) as exc:
            if not negotiation.finished:
                negotiation.abandon(f"provider {negotiation.offer.peer_id} unreachable: {exc!r}")
        finally:
            if stream is not None:
                with trio.CancelScope(shield=True):
                    await _close(stream)

    # --- the result ----------------------------------------------------------------------------
    async def handle_delivery_stream(self, stream: Stream) -> None:
        """``/dcent/result/2.0.0``: read the header; refuse (after reading nothing more) a
        delivery for no open contract of ours, from another peer than its provider, or larger
        than the job's outputs, logs and encoding can make; else take the body, then check,
        keep and countersign it. Refusals of the header are raised after the answer is sent:
        the host counts and scores them, and resets the stream so no body is read."""
        header = decode_header(await stream.receive_frame(MAX_DELIVERY_HEADER_BYTES))
        record = self.ctx.book.by_contract(header.contract_hash)
        if (
            record is None
            or record.role != REQUESTER
            or record.contract is None
            or record.terminal
            or record.peer_id != stream.peer_id
        ):
            await _refuse(
                stream, ReceiptForOtherContract("no open contract of ours with this peer has this hash")
            )
        # Outputs as blobs travel on their own streams: the delivery carries only their listing.
        by_reference = record.spec.output_mode == OUTPUT_BLOBS
        most = blob_delivery_limit() if by_reference else delivery_limit(record.spec.output_limit_bytes)
        limit = min(most, MAX_FRAME_BYTES)
        if header.size > limit:
            await _refuse(
                stream, ReceiptOverLimit(f"a {header.size}-byte delivery; this contract's is at most {limit}")
            )
        await stream.send_frame(encode_answer(DeliveryReady(header.contract_hash, header.size)))
        payload = await stream.receive_frame(header.size)
        if len(payload) != header.size:
            await _refuse(
                stream,
                MalformedMessage(f"the delivery is {len(payload)} bytes, its header said {header.size}"),
            )
        await stream.send_frame(await self.handle_delivery(stream.peer_id, payload, record))

    async def handle_delivery(self, peer_id: str, payload: bytes, record: JobRecord) -> bytes:
        """Check, keep and countersign a provider's result for ``record``'s contract; the answer."""
        ctx = self.ctx
        assert record.contract is not None
        by_reference = record.spec.output_mode == OUTPUT_BLOBS
        try:
            delivery = decode_delivery(payload)
            check_delivery(
                record.contract.terms,
                delivery,
                output_limit_bytes=record.spec.output_limit_bytes,
                blobs=by_reference,
            )
        except (DecodeError, DeliveryRejected) as exc:
            error = exc if isinstance(exc, ProtocolError) else ReceiptForOtherContract(str(exc))
            log.warning("refused a result from %s: %s", peer_id, error.message)
            return encode_answer(Refusal.from_error(error))
        if record.receipt is not None and record.receipt != delivery.receipt:
            # One receipt per contract: a second, different one is not countersigned.
            return encode_answer(
                Refusal.from_error(ReceiptForOtherContract("a different receipt was countersigned"))
            )
        if record.receipt is None:
            if by_reference:
                # Every output fetched from the provider and each chunk verified against its
                # content id (which the signed listing binds) before we countersign anything.
                # The listing is kept as pending meanwhile, so `job output` can show progress.
                await _write_listing(ctx.job_dir(record.job_id), delivery.blobs, PENDING_LISTING_FILE)
                try:
                    await self._fetch_outputs(record, peer_id, delivery.blobs)
                except OutputsUnavailable as exc:
                    log.warning("refused a result from %s: %s", peer_id, exc.message)
                    return encode_answer(Refusal.from_error(exc))
            await _write_result(
                ctx.job_dir(record.job_id), delivery.file_map(), delivery.stdout, delivery.stderr
            )
            if by_reference:
                await _write_listing(ctx.job_dir(record.job_id), delivery.blobs, OUTPUT_LISTING_FILE)
            self.live.discard(record.job_id)
            record.receipt = delivery.receipt
            record.provider_sig = delivery.provider_sig
            record.requester_sig = delivery.receipt.sign(ctx.key)
            record.exit_status = delivery.receipt.exit_status
            record.move(JobState.DELIVERED, ctx.clock_ms())
            await ctx.book.save(record)
            ctx.feed.nudge(delivery.receipt.contract_hash)  # our grace to settle starts now
        return encode_answer(DeliveryAck(delivery.receipt.contract_hash, record.requester_sig))

    async def _fetch_outputs(self, record: JobRecord, peer_id: str, blobs: tuple[OutputBlob, ...]) -> None:
        """Fetch each output blob (the provider first), pinned. Raises :class:`OutputsUnavailable`."""
        if self.blobs is None:
            raise OutputsUnavailable("this node has no blob store to take outputs by reference")
        for item in blobs:
            try:
                await self.blobs.fetch(item.content_id, peers=(peer_id,), pin=True, expected_size=item.size)
            except BlobStoreError as exc:
                raise OutputsUnavailable(
                    f"output {item.path!r} ({format_content_id(item.content_id)}): {exc.message}"
                ) from None
        log.info("job %s: %d output blob(s) fetched and verified", record.job_id, len(blobs))

    async def handle_started(self, stream: Stream) -> None:
        """``/dcent/jobstatus/1.0.0``: the provider started our job (signed by that provider)."""
        notice = JobStarted.decode(await stream.receive_frame(STATUS_FRAME_BYTES))
        record = self.ctx.book.by_contract(notice.contract_hash)
        if record is None or record.contract is None or not notice.verify(record.contract.terms):
            raise ReceiptForOtherContract("a start notice for no contract of ours, or not from its provider")
        if record.state in (JobState.CONTRACTED, JobState.ESCROWED):
            # A provider starts only on a final escrow, so it may tell us before our own lane
            # has seen the block: the escrow is open either way.
            if record.state is JobState.CONTRACTED:
                record.move(JobState.ESCROWED, self.ctx.clock_ms())
            record.move(JobState.RUNNING, self.ctx.clock_ms())
            await self.ctx.book.save(record)

    async def see_closed(self, record: JobRecord) -> None:
        """Follow the escrow until it closes, acting when this side must
        (:data:`~protocol.market.settlement.REQUESTER_CLOSE_RULES`); woken by the contract's
        events, by the heights the rules wait for, and by our own countersignature."""
        ctx = self.ctx
        assert record.contract is not None
        terms = record.contract.terms
        contract_hash = terms.contract_hash()
        countersigned_height = 0
        while True:
            chain = read_contract(ctx.app.state, contract_hash)
            countersigned = bool(record.requester_sig) and record.receipt is not None
            if countersigned and not countersigned_height:
                countersigned_height = chain.height
            job = JobTerms(
                deadline_height=terms.deadline_height,
                countersigned=countersigned,
                countersigned_height=countersigned_height,
                settle_grace_blocks=SETTLE_GRACE_BLOCKS,
            )
            step = decide(REQUESTER_CLOSE_RULES, chain, job)
            if step.action is Action.CLOSED:
                record.settled_height = chain.height
                final = {"settled": JobState.SETTLED, "refunded": JobState.REFUNDED}.get(
                    chain.closed_as, JobState.DISPUTED
                )
                _explain_close(record, final, terms.deadline_height)
                record.move(final, ctx.clock_ms())
                await ctx.book.save(record)
                return
            if step.action is Action.NEVER_OPENED:
                record.fail(
                    JobState.FAILED, EscrowNeverOpened.code, "the escrow never opened", ctx.clock_ms()
                )
                await ctx.book.save(record)
                return
            if step.action is Action.WAIT:
                await ctx.feed.wait(
                    seen_height=chain.height, contract=contract_hash, wake_height=step.wake_height
                )
                continue
            try:
                await ctx.lane.submit(self._close_tx(step.action, record, contract_hash))
            except TxRefused as exc:
                log.info("job %s: %s", record.job_id, exc.message)
                await ctx.feed.next_block(chain.height)

    @staticmethod
    def _close_tx(action: Action, record: JobRecord, contract_hash: bytes) -> Settle | EscrowDispute | Refund:
        if action is Action.SETTLE:
            assert record.receipt is not None
            return Settle(record.receipt, record.provider_sig, record.requester_sig)
        if action is Action.DISPUTE:
            return EscrowDispute(contract_hash)
        assert action is Action.REFUND, action
        return Refund(contract_hash)


def _explain_close(record: JobRecord, final: JobState, deadline_height: int) -> None:
    """Say why a contract closed without payment for work (a refund never reads "error 0")."""
    receipt = record.receipt
    if final is JobState.REFUNDED and receipt is not None and receipt.outcome == OUTCOME_PROVIDER_ERROR:
        record.error_code = ProviderFailed.code
        record.error_message = (
            "the provider's sandbox failed, so the job did not run to its end; refunded in full, "
            "the provider's collateral slashed"
        )
    elif final is JobState.REFUNDED:
        record.error_code = NothingDelivered.code
        record.error_message = (
            f"the provider delivered no result by the deadline (height {deadline_height}); refunded in "
            "full, the provider's collateral slashed"
        )
    elif final is JobState.DISPUTED:
        record.error_code = ClaimDisputed.code
        record.error_message = (
            "the provider claimed payment for a result this node never accepted; the claim was "
            "disputed: the claimed pay and part of the collateral were burned"
        )


async def _close(stream: Stream) -> None:
    try:
        await stream.close()
    except P2PError:
        await stream.reset()


async def _write_result(root: Path, files: dict[str, bytes], stdout: bytes, stderr: bytes) -> None:
    def write() -> None:
        (root / "out").mkdir(parents=True, exist_ok=True)
        (root / "stdout").write_bytes(stdout)
        (root / "stderr").write_bytes(stderr)
        for path, content in files.items():  # paths were checked relative and dot-free
            target = root / "out" / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)

    await trio.to_thread.run_sync(write)


#: Where a requester lists the outputs it holds as blobs: ``[[path, size, content id hex], ...]``.
OUTPUT_LISTING_FILE = "outputs.json"
#: The listing of a delivery whose outputs are still being fetched (not yet checked or signed).
PENDING_LISTING_FILE = "outputs.pending.json"


async def _write_listing(root: Path, blobs: tuple[OutputBlob, ...], name: str) -> None:
    listing = [[item.path, item.size, item.content_id.hex()] for item in blobs]
    await trio.Path(root).mkdir(parents=True, exist_ok=True)
    await trio.Path(root / name).write_text(json.dumps(listing))


async def _refuse(stream: Stream, error: ProtocolError) -> NoReturn:
    """Tell the peer why, then raise: the host scores it and resets the stream.

    Resetting at once could discard the refusal before the peer reads it, so we close our side
    and wait (briefly) for the peer's close; a peer that sends its body anyway has only a length
    prefix read, which is too large for the zero-byte frame we accept: the stream is reset then.
    """
    with trio.move_on_after(REFUSAL_LINGER_S), contextlib.suppress(P2PError):
        await stream.send_frame(encode_answer(Refusal.from_error(error)))
        await stream.close_write()
        await stream.receive_frame(0)
    raise error
