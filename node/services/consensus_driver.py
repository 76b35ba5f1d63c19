"""The consensus driver: runs the sans-IO :class:`ConsensusCore` on trio, libp2p and SQLite.

One task owns the core. Everything that reaches it (gossiped votes, proposals from streams,
timer expiries, synced blocks) and the transactions peers relay wait in bounded lanes served
consensus first (:mod:`node.services.lanes`), and the effects of each step are performed in
order before the next event is taken:

- ``Persist`` is written to SQLite (``synchronous=FULL``) and awaited, so our signed step and lock
  are on disk before the ``Broadcast`` that follows it leaves the process;
- ``Broadcast`` publishes votes and evidence on GossipSub and sends proposals (whole blocks) to
  every connected peer over a direct stream;
- ``SetTimeout`` starts a timer task that feeds the expiry back into the consensus lane (stale timers are
  ignored by the core);
- ``Commit`` appends the block and its certificate to the store and prunes the mempool;
- ``RequestSync`` / ``SendBlocks`` run block sync over ``/dcent/sync/1.0.0`` in the background.

No peer can stop the driver: votes and evidence are checked by the topic's gossip validator and
proposals before they are relayed (:mod:`consensus_checks`); whatever a peer sends that fails is
refused through the host's :class:`~node.p2p.guard.PeerGuard` (logged, counted, scored when it is
misbehaviour). An error the core raises on a message or a timer is logged with its traceback and
counted in :attr:`ConsensusDriver.core_faults`, and the driver goes on with the next event. A
publish the host cannot make (every subscriber's queue full: a peer that subscribes and stops
reading) is a lost message, counted in :attr:`ConsensusDriver.lost_publishes`; retransmission
recovers it.

Useless input is counted per peer (:class:`~node.services.consensus_checks.UselessInput`) and,
past a generous allowance, scored lightly as a flood: pushed blocks below our height (dropped
before they are decoded) and transaction batches of which nothing could be used. Blocks go to a
lagging validator only through the peer whose gossip showed it lagging, at most once per peer per
``max(sync_retry_ms, gossip_interval_ms)``, never to every peer (audit h18: replayed old votes
made every node push blocks to all its peers).
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from node.p2p.errors import FrameTooLargeError, P2PError, StreamClosedError
from node.p2p.framing import Stream
from node.p2p.guard import Reason
from node.p2p.interface import GossipMessage, Host, Validation, Verdict, serve_requests
from node.p2p.refusals import describe, reason_of
from node.services.chain_feed import ChainFeed
from node.services.consensus_checks import (
    USELESS_WINDOW_MS,
    ConsensusChecks,
    UselessInput,
    committed_height_hint,
)
from node.services.consensus_wire import MAX_MESSAGE_BYTES, ConsensusMessage, decode_message, encode_message
from node.services.economics_recorder import RecordingLedgerApp  # i16view
from node.services.lanes import InboundLanes, Lane, LaneBounds, TxBatch
from node.services.mempool import DuplicateTx, Mempool, MempoolBusy, MempoolError, MempoolFull, NonceGap
from node.services.proposal_relay import RELAY_DELAY_S, ProposalHolders
from node.services.tx_relay import TX_PROTOCOL, TxRelay
from node.store import ChainStore, StoredBlock
from protocol.consensus.core import ConsensusCore
from protocol.consensus.effects import (
    Broadcast,
    Commit,
    Effect,
    Persist,
    ReportEvidence,
    RequestSync,
    SendBlocks,
    SetTimeout,
    Timeout,
)
from protocol.consensus.errors import InvalidMessage, SyncError
from protocol.consensus.ledger_app import LedgerApp
from protocol.consensus.messages import (
    Block,
    CommitCertificate,
    CommittedBlock,
    Proposal,
    SyncRequest,
    SyncResponse,
    Vote,
)
from protocol.consensus.sync import serve_sync_request
from protocol.encoding import DecodeError
from protocol.ledger.errors import BadSignature, LedgerError, MalformedTx, WrongChainId
from protocol.ledger.events import ESCROW_OPENED
from protocol.ledger.tx import decode_tx

if TYPE_CHECKING:
    from trio_typing import TaskStatus

log = logging.getLogger("dcent.consensus")

PROPOSAL_PROTOCOL = "/dcent/consensus/proposal/1.0.0"
SYNC_PROTOCOL = "/dcent/sync/1.0.0"
SYNC_PUSH_PROTOCOL = "/dcent/sync/push/1.0.0"
SYNC_BATCH = 32
MAX_SYNC_RESPONSE = 64 * 1024 * 1024
#: Room left in a sync response for its own envelope: a response of full blocks (4 MiB each)
#: holds fewer than SYNC_BATCH of them.
SYNC_RESPONSE_SLACK = 64 * 1024
SIGN_STATE_KEY = "sign_state"
#: With no new height for this long, a node asks its peers for blocks directly, over the sync
#: protocol. Otherwise it learns of new heights only from consensus gossip, so a node cut off
#: from the gossip mesh (pruned by every mesh peer, or surrounded by peers that drop its traffic)
#: stayed behind for good while connected to peers that had the blocks. CometBFT's blocksync
#: asks its peers for their status every 10 s. A chain that is really stalled costs each node
#: one sync request per peer per interval.
STALL_SYNC_MS = 10_000
#: Peers asked for one sync batch, in random order: a stalled chain costs each node this many
#: requests per attempt, not one per connected peer, and no peer id (cheap to grind) is always
#: the one asked first.
SYNC_PEERS_PER_BATCH = 4
KEEP_SNAPSHOTS = 2
#: Commit times kept (wall-clock ms by height): how services measure "final -> acted".
COMMIT_TIMES_KEPT = 1000
MAX_RELAYED = 4096
#: Relayed transactions admitted between two looks at the consensus lane: a vote waits behind at
#: most this many signature checks (~64 x 0.1 ms).
ADMIT_SLICE = 64
#: How long one outbound proposal or pushed batch may take, dial included, before its stream
#: is reset.
SEND_TIMEOUT_S = 10.0
#: Pushed blocks below our height a peer may send per minute unscored (two peers pushing the same
#: batch, or a push that crossed our own sync, waste a batch each), and per strike past that.
USELESS_PUSHED_ALLOWANCE = 4 * SYNC_BATCH
USELESS_PUSHED_PER_STRIKE = SYNC_BATCH
#: Useless relayed transactions (refused other than as a duplicate or for our load, in batches
#: that admitted nothing) a peer may send per minute unscored, and per strike past that. An
#: honest relay sends only what its mempool admitted, so only a race with a block makes them.
USELESS_TX_ALLOWANCE = 4 * 4096
USELESS_TX_PER_STRIKE = 4096
#: Refusals that say nothing about the sender: a copy another peer relayed first (every
#: triangle of nodes makes them), our own mempool's load, or a nonce gap (a batch before it was
#: dropped by a full lane, ours or the sender's relay link).
_TX_CHURN = (DuplicateTx, MempoolBusy, MempoolFull, NonceGap)
#: Peers remembered for push pacing.
MAX_PUSH_PEERS = 1024
#: Hashes of recently committed transactions: a relayed copy arriving after its block (every
#: peer relays each transaction) is refused on its hash, not after a decode.
COMMITTED_KEPT = 32768


def consensus_topic(chain_id: str) -> str:
    return f"/dcent/{chain_id}/consensus/1"


def wall_clock_ms() -> int:
    """Block times are proposers' wall clocks (CometBFT does the same); the ledger never reads
    them, and consensus only requires them to increase along the chain."""
    return time.time_ns() // 1_000_000


def assembly_timer(
    budget_ms: int, round_of: Callable[[], int] = lambda: 0
) -> Callable[[], Callable[[], bool]]:
    """The proposer's time bound for :class:`LedgerApp` (``assembly_timer``): each call starts
    a budget on the monotonic clock and returns whether it is spent. The budget is ``budget_ms``
    in round 0 and halves with each later round of the height (``round_of()``, the core's
    round): a round that failed, maybe because its block could not be sent and executed in
    time on a loaded machine, is followed by smaller blocks instead of ever larger ones (more
    transactions arrived meanwhile), while the timeouts grow to meet them."""

    def start() -> Callable[[], bool]:
        deadline = time.monotonic() + (budget_ms >> min(round_of(), 16)) / 1000
        return lambda: time.monotonic() >= deadline

    return start


@dataclass(frozen=True, slots=True)
class _Message:
    message: ConsensusMessage
    peer_id: str
    #: The topic or stream protocol it came on.
    source: str = ""
    #: Whether the core refusing it is the sender's misbehaviour: blocks a peer pushed or served
    #: claim to be committed; gossip and relayed proposals passed our checks, and what the core
    #: still refuses (a proposal's block, say) may be the originator's fault, not the relay's.
    scored: bool = False


@dataclass(frozen=True, slots=True)
class _Expired:
    timeout: Timeout


_Event = _Message | _Expired


class ConsensusDriver:
    def __init__(
        self,
        *,
        core: ConsensusCore,
        app: LedgerApp,
        store: ChainStore,
        host: Host,
        mempool: Mempool,
        clock_ms: Callable[[], int] = wall_clock_ms,
        snapshot_interval: int = 100,
        lane_bounds: LaneBounds | None = None,
        stall_sync_ms: int = STALL_SYNC_MS,
    ) -> None:
        self.core = core
        self.stall_sync_ms = stall_sync_ms
        #: Orders the peers asked for a sync batch.
        self.rng = random.Random()
        self.app = app
        self.store = store
        self.host = host
        self.mempool = mempool
        self.clock_ms = clock_ms
        self.snapshot_interval = snapshot_interval
        self.topic = consensus_topic(core.chain_id)
        self.dropped_messages = 0
        #: Errors the core raised on an event (bugs): logged with their traceback and survived.
        self.core_faults = 0
        #: Our publishes the host could not make (a full queue at every subscriber): lost, not fatal.
        self.lost_publishes = 0
        #: Copies of proposals already handled, dropped on their hash before decoding.
        self.duplicate_proposals = 0
        self.checks = ConsensusChecks(core, app, clock_ms=clock_ms)
        self.useless_pushed = UselessInput(
            allowance=USELESS_PUSHED_ALLOWANCE,
            per_strike=USELESS_PUSHED_PER_STRIKE,
            window_ms=USELESS_WINDOW_MS,
        )
        self.useless_txs = UselessInput(
            allowance=USELESS_TX_ALLOWANCE, per_strike=USELESS_TX_PER_STRIKE, window_ms=USELESS_WINDOW_MS
        )
        #: When we last pushed blocks to each peer (ms): one push per peer per interval.
        self._pushed_at: OrderedDict[str, int] = OrderedDict()
        self.push_interval_ms = max(core.config.sync_retry_ms, core.config.gossip_interval_ms)
        #: Inbound work, consensus first (see :mod:`node.services.lanes`).
        self.lanes = InboundLanes[_Event](self._step, self._admit_batch, lane_bounds)
        self._nursery: trio.Nursery | None = None
        self._syncing = False
        self._height_changed = trio.Event()
        self._stored_height = app.height
        #: Committed, stored heights and their ledger events, for the market (chain_feed.py).
        self.feed = ChainFeed(app.height)
        self.commit_wall_ms: dict[int, int] = {}
        #: Proposals already sent on: each is relayed once (after RELAY_DELAY_S, to the peers not
        #: known to hold it: :mod:`proposal_relay`), so they cross any connected topology.
        self._relayed: OrderedDict[bytes, None] = OrderedDict()
        #: Peers known to hold the proposals waiting to be relayed (:mod:`proposal_relay`).
        self._holders = ProposalHolders()
        #: Proposal streams not opened because the peer had shown it held the proposal.
        self.relays_skipped = 0
        #: Syncs started because no new height came for ``stall_sync_ms``.
        self.stalled_syncs = 0
        self._committed_recently: OrderedDict[bytes, None] = OrderedDict()
        self.tx_relay = TxRelay(host, self._queue_txs, backlog=self._waiting_raws)

    # --- public view -----------------------------------------------------------------------
    @property
    def height(self) -> int:
        """The last height committed AND stored: what the node reports and serves to peers.
        (The application's height moves first, inside the core, before the store write.)"""
        return self._stored_height

    async def wait_for_height(self, height: int) -> None:
        while self.height < height:
            await self._height_changed.wait()

    # --- service ---------------------------------------------------------------------------
    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.host.set_topic_validator(self.topic, self._validate_gossip)
        gossip = await self.host.subscribe(self.topic)
        self.host.set_stream_handler(PROPOSAL_PROTOCOL, self._receive_proposal)
        self.host.set_stream_handler(SYNC_PUSH_PROTOCOL, self._receive_pushed)
        self.host.set_stream_handler(SYNC_PROTOCOL, serve_requests(self._serve_sync, max_request=1024))
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await nursery.start(self.tx_relay.run)
            nursery.start_soon(self._pump_gossip, gossip)
            nursery.start_soon(self._sync_when_stalled)
            await self._perform(self.core.start(self.clock_ms()), push_to="")
            task_status.started()
            await self.lanes.run()

    async def _step(self, event: _Event) -> None:
        now = self.clock_ms()
        try:
            if isinstance(event, _Expired):
                effects = self.core.on_timeout(event.timeout, now)
            else:
                effects = self.core.receive(event.message, now)
        except InvalidMessage as exc:
            assert isinstance(event, _Message)
            self.dropped_messages += 1
            if event.scored:
                self.host.guard.refuse(event.peer_id, event.source, reason_of(exc), exc.message)
            else:
                log.info("dropped %s from %s: %s", type(event.message).__name__, event.peer_id, exc.message)
            return
        except Exception:  # the core's bug must not end consensus: one event lost, counted
            self.core_faults += 1
            log.exception("consensus core failed on %r at height %d; event skipped", event, self.core.height)
            return
        await self._perform(effects, push_to=self._push_target(event))

    def _push_target(self, event: _Event) -> str:
        """Blocks for a validator an event shows lagging go to the gossip's originator only: the
        validator's own node, or whoever replayed its vote (audit h18), never every peer."""
        if isinstance(event, _Message) and event.source == self.topic:
            return event.peer_id
        return ""

    async def _perform(self, effects: list[Effect], *, push_to: str) -> None:
        """``push_to``: the peer blocks go to if the core asks to help a lagging validator."""
        for effect in effects:
            if isinstance(effect, Persist):
                await trio.to_thread.run_sync(
                    self.store.put_consensus, {SIGN_STATE_KEY: effect.state.encode()}
                )
            elif isinstance(effect, Broadcast):
                await self._broadcast(effect.message)
            elif isinstance(effect, SetTimeout):
                self._spawn(self._timer, effect.timeout, effect.duration_ms)
            elif isinstance(effect, Commit):
                await self._commit(effect.block, effect.certificate, effect.state_hash)
            elif isinstance(effect, ReportEvidence):
                log.warning("validator %s double-signed; evidence pooled", effect.evidence.validator.hex())
                await self._broadcast(effect.evidence)
            elif isinstance(effect, RequestSync):
                self._start_sync(effect.from_height)
            elif isinstance(effect, SendBlocks):
                self._offer_blocks(push_to, effect.from_height)

    def _spawn(self, fn: Callable[..., object], *args: object) -> None:
        assert self._nursery is not None
        self._nursery.start_soon(fn, *args)  # type: ignore[arg-type]

    # --- effects ---------------------------------------------------------------------------
    async def _broadcast(self, message: ConsensusMessage) -> None:
        data = encode_message(message)
        if isinstance(message, Proposal):
            self._first_sight(data)
            self._send_proposal(data, exclude="")
        else:
            try:
                await self.host.publish(self.topic, data)
            except P2PError as exc:  # backpressure from a peer that stopped reading, say: lost
                self.lost_publishes += 1
                log.warning(
                    "consensus message not published on %s (%r); retransmission recovers it", self.topic, exc
                )

    async def _send_frame(self, peer_id: str, protocol_id: str, data: bytes) -> None:
        await self._send_frames(peer_id, protocol_id, [data])

    async def _send_frames(self, peer_id: str, protocol_id: str, frames: list[bytes]) -> None:
        """Send ``frames`` on a fresh stream and close it, within ``SEND_TIMEOUT_S``.

        A stream that times out or fails is reset, never left open: each open stream holds one
        of the connection's 256 yamux backlog slots and a resource-manager stream until the
        connection ends, and a peer slow for long enough would otherwise exhaust them
        (issue 14: hundreds of proposal streams were found stuck that way).
        """
        stream: Stream | None = None
        done = False
        with trio.move_on_after(SEND_TIMEOUT_S):
            try:
                stream = await self.host.open_stream(peer_id, protocol_id)
                for data in frames:
                    await stream.send_frame(data)
                await stream.close()
                done = True
            except P2PError as exc:
                log.debug("could not send %s to %s: %r", protocol_id, peer_id, exc)
            finally:
                if stream is not None and not done:
                    await stream.reset()

    async def _timer(self, timeout: Timeout, duration_ms: int) -> None:
        await trio.sleep(duration_ms / 1000)
        await self.lanes.put(Lane.CONSENSUS, _Expired(timeout))

    async def _commit(self, block: Block, certificate: CommitCertificate, state_hash: bytes) -> None:
        stored = StoredBlock(block.height, block.hash, state_hash, block.encode(), certificate.encode())
        checkpoint = None
        if block.height % self.snapshot_interval == 0 and self.app.height == block.height:
            checkpoint = self.app.checkpoint().encode()
        # i16view: the block's economics record goes into the same transaction as the block.
        economics = self.app.take_record(block.height) if isinstance(self.app, RecordingLedgerApp) else None
        events = self.app.take_events(block.height)
        escrow_prices = {event.key: event.price for event in events if event.kind == ESCROW_OPENED}
        txs = [self.mempool.decoded(raw) or decode_tx(raw) for raw in block.txs]  # it applied: all decode
        await trio.to_thread.run_sync(
            lambda: self.store.append_block(
                stored, snapshot=checkpoint, economics=economics, escrow_prices=escrow_prices, txs=txs
            )
        )
        if checkpoint is not None:
            await trio.to_thread.run_sync(self.store.prune_snapshots, KEEP_SNAPSHOTS)
        self._stored_height = block.height
        self.feed.publish(block.height, events)
        self.commit_wall_ms[block.height] = wall_clock_ms()
        self.commit_wall_ms.pop(block.height - COMMIT_TIMES_KEPT, None)
        included = {tx.hash for tx in txs}
        self.mempool.remove_committed(self.app.state, included, block.time_ms)
        self._committed_recently.update(dict.fromkeys(included))
        while len(self._committed_recently) > COMMITTED_KEPT:
            self._committed_recently.popitem(last=False)
        log.info("committed height %d (%d txs) state %s", block.height, len(block.txs), state_hash.hex()[:12])
        event, self._height_changed = self._height_changed, trio.Event()
        event.set()

    # --- transactions ----------------------------------------------------------------------
    def _waiting_raws(self) -> list[bytes]:
        """Every waiting transaction, each sender's in nonce order: what a new relay link sends first."""
        return [tx.raw for tx in self.mempool.reap(len(self.mempool))]

    async def relay_txs(self, raws: list[bytes]) -> None:
        """Send admitted transactions on to every connected peer (see :mod:`tx_relay`)."""
        self.tx_relay.relay(raws)

    async def _queue_txs(self, batch: list[bytes], peer_id: str) -> list[bytes]:
        """A peer's batch into the transaction lane, waiting while it is full (the peer's stream
        stalls; see :mod:`node.services.lanes`); the lane's turn admits and relays it
        (:meth:`_admit_batch`). Returns nothing to relay now."""
        await self.lanes.put(Lane.TXS, TxBatch(peer_id, tuple(batch)))
        return []

    async def _admit_batch(self, batch: TxBatch) -> None:
        try:
            admitted = await self._admit_txs(list(batch.txs), batch.peer_id)
        except Exception:  # admission runs in the consensus task now: its bug must not end consensus
            self.core_faults += 1
            log.exception("admitting a relayed batch from %s failed; batch skipped", batch.peer_id)
            return
        self.tx_relay.relay(admitted, source=batch.peer_id)

    async def _admit_txs(self, batch: list[bytes], peer_id: str) -> list[bytes]:
        """A peer's batch into our mempool; returns what was new and valid. Every
        ``ADMIT_SLICE`` transactions it serves the consensus and sync lanes first, so a large
        batch's signature checks do not hold up votes.

        A transaction no honest relay sends (malformed, forged, for another chain: it relays
        only what its own mempool admitted) ends the batch and is scored against the peer;
        the rest (a nonce already used, a full mempool) is the ordinary churn of relaying.

        A batch that admits nothing costs us its decoding for nothing; an honest relay sends one
        only in a race with a block. Its useless transactions (not counting copies another peer
        relayed first, nor refusals for our own load) are counted per peer, and past a generous
        allowance per minute each further batch's worth is scored lightly as a flood."""
        admitted: list[bytes] = []
        useless = 0
        for index, raw in enumerate(batch):
            if index % ADMIT_SLICE == ADMIT_SLICE - 1:
                await self.lanes.yield_to_consensus()
            if hashlib.sha256(raw).digest() in self._committed_recently:
                useless += 1  # what its nonce would say after a decode: already used
                continue
            try:
                self.mempool.add(raw, self.app.state)
            except (MalformedTx, BadSignature, WrongChainId) as exc:
                self.host.guard.refuse(peer_id, TX_PROTOCOL, reason_of(exc), exc.message)
                return admitted
            except _TX_CHURN:
                continue
            except (LedgerError, MempoolError):
                useless += 1
                continue
            admitted.append(raw)
        if not admitted and useless and self.useless_txs.add(peer_id, useless, self.clock_ms()):
            self.host.guard.refuse(
                peer_id, TX_PROTOCOL, Reason.FLOOD, f"batches of useless transactions ({useless} in the last)"
            )
        return admitted

    # --- inbound ---------------------------------------------------------------------------
    def _validate_gossip(self, message: GossipMessage) -> Validation:
        result = self.checks.gossip(message)
        if result.verdict is not Verdict.ACCEPT:
            self.dropped_messages += 1
        return result

    async def _pump_gossip(self, gossip: trio.MemoryReceiveChannel[GossipMessage]) -> None:
        async for item in gossip:
            if item.sender == self.host.peer_id:
                continue
            try:
                message = decode_message(item.data)
            except DecodeError as exc:  # the validator let it through: only a bug gets here
                self.host.guard.count(self.topic, Reason.INTERNAL)
                log.error(
                    "consensus gossip from %s passed validation but does not decode: %s",
                    item.sender,
                    exc.message,
                )
                continue
            if isinstance(message, Vote):
                self._holders.vote_from(message.block_hash, item.sender)
            if not self.lanes.offer(Lane.CONSENSUS, _Message(message, item.sender, self.topic)):
                log.debug("consensus lane full: gossip from %s dropped", item.sender)

    def _first_sight(self, data: bytes) -> bool:
        digest = hashlib.sha256(data).digest()
        if digest in self._relayed:
            return False
        self._relayed[digest] = None
        while len(self._relayed) > MAX_RELAYED:
            self._relayed.popitem(last=False)
        return True

    def _send_proposal(self, data: bytes, *, exclude: str) -> None:
        for peer_id in self.host.peer_ids():
            if peer_id != exclude:
                self._spawn(self._send_frame, peer_id, PROPOSAL_PROTOCOL, data)

    async def _relay_to_the_rest(self, data: bytes, digest: bytes) -> None:
        """Relay a proposal, after :data:`RELAY_DELAY_S`, to the peers not known to hold it."""
        await trio.sleep(RELAY_DELAY_S)
        holders = self._holders.take(digest)
        for peer_id in self.host.peer_ids():
            if peer_id in holders:
                self.relays_skipped += 1
            else:
                self._spawn(self._send_frame, peer_id, PROPOSAL_PROTOCOL, data)

    async def _receive_proposal(self, stream: Stream) -> None:
        """A proposal from a peer: checked (the signature of its round's proposer), then relayed
        once to our other peers and handled. A forgery stops here and is scored."""
        data = await stream.receive_frame(MAX_MESSAGE_BYTES)
        digest = hashlib.sha256(data).digest()
        if digest in self._relayed:
            self._holders.copy_from(digest, stream.peer_id)
            # Another peer's relay of one we accepted and handled: every peer relays each
            # proposal once, so this is most copies. Its bytes were checked; skip the decode
            # and the signature (a whole block's worth of work) instead of redoing them.
            self.duplicate_proposals += 1
            return
        proposal = decode_message(data)  # DecodeError: refused and scored by the host
        result = self.checks.judge(proposal, channel="proposal")
        if result.verdict is not Verdict.ACCEPT:
            assert result.reason is not None
            self.dropped_messages += 1
            if result.verdict is Verdict.REJECT:
                self.host.guard.refuse(stream.peer_id, PROPOSAL_PROTOCOL, result.reason, result.detail)
            else:
                self.host.guard.count(PROPOSAL_PROTOCOL, result.reason)
            return
        assert isinstance(proposal, Proposal)  # nothing else is accepted on this channel
        if self._first_sight(data):
            if self._holders.expect(digest, proposal.block.hash, stream.peer_id):
                self._spawn(self._relay_to_the_rest, data, digest)
            else:
                self._send_proposal(data, exclude=stream.peer_id)
            # Waits for room rather than being dropped: it was seen now and would not come again.
            await self.lanes.put(Lane.CONSENSUS, _Message(proposal, stream.peer_id, PROPOSAL_PROTOCOL))

    async def _receive_pushed(self, stream: Stream) -> None:
        """Committed blocks pushed by a peer that saw us lagging: at most one batch per stream,
        each frame one committed block (anything else is refused and scored by the host).

        A block below the height we are deciding is dropped on its height, read before decoding
        (:func:`committed_height_hint`), and counted as useless: an honest pusher wastes a batch
        now and then (two peers pushing at once); a peer pushing our own chain back at us
        endlessly is scored past that allowance."""
        for _ in range(SYNC_BATCH):
            try:
                data = await stream.receive_frame(MAX_MESSAGE_BYTES)
            except StreamClosedError:
                return
            claimed = committed_height_hint(data)
            if claimed is not None and claimed < self.core.height:
                if self.useless_pushed.add(stream.peer_id, 1, self.clock_ms()):
                    self.host.guard.refuse(
                        stream.peer_id,
                        SYNC_PUSH_PROTOCOL,
                        Reason.FLOOD,
                        "blocks below our height, past the allowance",
                    )
                continue
            committed = decode_message(data)
            if not isinstance(committed, CommittedBlock):
                raise SyncError(f"a {type(committed).__name__} pushed as a committed block")
            self.lanes.offer(Lane.SYNC, _Message(committed, stream.peer_id, SYNC_PUSH_PROTOCOL, scored=True))
        try:
            await stream.receive_frame(0)
        except StreamClosedError:
            return
        except FrameTooLargeError:
            pass  # a 33rd block: the flood below, not an oversize frame
        self.host.guard.refuse(
            stream.peer_id, SYNC_PUSH_PROTOCOL, Reason.FLOOD, f"more than {SYNC_BATCH} blocks pushed"
        )

    # --- block sync ------------------------------------------------------------------------
    def _load_committed(self, height: int) -> CommittedBlock | None:
        stored = self.store.block(height)
        if stored is None:
            return None
        return CommittedBlock(Block.decode(stored.block), CommitCertificate.decode(stored.certificate))

    async def _serve_sync(self, peer_id: str, payload: bytes) -> bytes:
        request = SyncRequest.decode(payload)
        response = await trio.to_thread.run_sync(
            lambda: serve_sync_request(
                request,
                last_height=self.height,
                load=self._load_committed,
                max_bytes=MAX_SYNC_RESPONSE - SYNC_RESPONSE_SLACK,
            )
        )
        return response.encode()

    async def _sync_when_stalled(self) -> None:
        """Sync from our peers whenever a whole ``stall_sync_ms`` passes without a new height
        (counted from the last new height, or the last such sync)."""
        while True:
            with trio.move_on_after(self.stall_sync_ms / 1000):
                await self.wait_for_height(self.height + 1)
                continue
            if not self._syncing:
                self.stalled_syncs += 1
                self._start_sync(self.height + 1)

    def _start_sync(self, from_height: int) -> None:
        if not self._syncing:
            self._syncing = True
            self._spawn(self._sync_from, from_height)

    async def _sync_from(self, from_height: int) -> None:
        """Fetch committed blocks from ``from_height`` on; while peers answer full batches, ask
        for the next one at once (the sync lane's bound paces us), so catching up is not held to
        one batch per sync request of the core."""
        try:
            while (fetched := await self._fetch_batch(from_height)) == SYNC_BATCH:
                from_height += fetched
        finally:
            self._syncing = False

    async def _fetch_batch(self, from_height: int) -> int:
        """One batch from the first of a few random peers that has some, queued for the core;
        how many blocks. An answer must hold consecutive heights from ``from_height``: one of
        old or repeated blocks (which the core drops unscored) would otherwise pass for a full
        batch and keep us asking, ever higher, instead of asking an honest peer."""
        request = SyncRequest(from_height, SYNC_BATCH).encode()
        peers = self.host.peer_ids()
        for peer_id in self.rng.sample(peers, min(SYNC_PEERS_PER_BATCH, len(peers))):
            try:
                raw = await self.host.request(
                    peer_id, SYNC_PROTOCOL, request, max_response=MAX_SYNC_RESPONSE, timeout=10
                )
                response = SyncResponse.decode(raw)
            except P2PError as exc:
                log.debug("sync from %s failed: %r", peer_id, exc)
                continue
            except DecodeError as exc:
                self.host.guard.refuse(peer_id, SYNC_PROTOCOL, reason_of(exc), describe(exc))
                continue
            heights = [committed.block.height for committed in response.blocks]
            if heights != list(range(from_height, from_height + min(len(heights), SYNC_BATCH))):
                self.host.guard.refuse(
                    peer_id,
                    SYNC_PROTOCOL,
                    Reason.INVALID,
                    f"asked from height {from_height}, sent {heights[:4]}",
                )
                continue
            for committed in response.blocks:
                await self.lanes.put(Lane.SYNC, _Message(committed, peer_id, SYNC_PROTOCOL, scored=True))
            if response.blocks:
                return len(response.blocks)
        return 0

    def _offer_blocks(self, peer_id: str, from_height: int) -> None:
        """Push blocks from ``from_height`` to ``peer_id`` if it is connected and was not pushed
        to within ``push_interval_ms`` (the core already paces this per lagging validator)."""
        if not peer_id or peer_id not in self.host.peer_ids():
            return  # relayed from afar: the validator's own neighbours push, and it can sync
        now = self.clock_ms()
        last = self._pushed_at.get(peer_id)
        if last is not None and 0 <= now - last < self.push_interval_ms:
            return
        self._pushed_at[peer_id] = now
        self._pushed_at.move_to_end(peer_id)
        while len(self._pushed_at) > MAX_PUSH_PEERS:
            self._pushed_at.popitem(last=False)
        self._spawn(self._push_blocks, from_height, peer_id)

    async def _push_blocks(self, from_height: int, peer_id: str) -> None:
        blocks = []
        for height in range(from_height, min(from_height + SYNC_BATCH, self.height + 1)):
            committed = await trio.to_thread.run_sync(self._load_committed, height)
            if committed is None:
                break
            blocks.append(encode_message(committed))
        if blocks:
            await self._send_frames(peer_id, SYNC_PUSH_PROTOCOL, blocks)
