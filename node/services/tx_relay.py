"""Relaying admitted transactions to peers: one long-lived stream per peer, batches by backlog.

Validators build blocks from their own mempools, so every transaction a node admits (from RPC or
from a peer) is sent on to its connected peers; receivers relay what they newly admit, and the
mempool's dedupe ends the flood. Nothing is sent back to the peer it came from.

A stream per transaction (what the first driver did) costs a yamux open and a multistream-select
negotiation each time, and at a few thousand transactions a second that, not signature checks,
was where the nodes' CPU went. Here each peer has a link task that owns one
``/dcent/tx/1.0.0`` stream and sends whatever queued up while its previous frame was on the
wire, as one frame (a msgpack list of raw transactions). Under load the batches grow by
themselves; when idle a lone transaction leaves at once, with no timer to wait out.

A link's queue is bounded: a peer that cannot keep up loses the excess (counted in
:attr:`TxRelay.dropped`), which costs it nothing it cannot recover: the transactions stay in our
mempool and reach the chain through our proposals, or through a peer that did get them.

A new link starts with the mempool's backlog (``backlog()``: every waiting transaction, each
sender's in nonce order), and every ``RESEED_INTERVAL_S`` a connected peer without a link gets
one. Without it, a link that failed (a connection reset) lost its queue for good, and the
transactions it held lived only in the origin's mempool: when that node was the slow one
(issue 14: a profiled node, lagging and syncing) none of them was ever committed. The receiver
refuses what it already holds on its hash, before decoding.

Frames, not transactions, are what relaying costs (issue 14's profile): each frame is a yamux
data frame, a noise encryption, a window update back and several trio wakeups on both sides,
~10x the CPU of admitting a transfer. So a link that wakes up lingers ``RELAY_LINGER_S`` (20 ms)
before sending, so that what arrives meanwhile (the next RPC batch, the re-relays of three peers'
batches) leaves in the same frame; a full frame's worth leaves at once. And a link leaves out of
its frame what that peer itself sent us (``KNOWN_KEPT`` recent transactions per peer): in a full
mesh every receiver re-relays each transaction to the others, and whichever copy crosses first
spares the one going back.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import trio

from node.p2p.errors import P2PError, StreamClosedError
from node.p2p.framing import Stream
from node.p2p.interface import Host
from protocol.encoding import DecodeError, decode, encode
from protocol.ledger.tx import MAX_TX_BYTES

if TYPE_CHECKING:
    from trio_typing import TaskStatus

log = logging.getLogger("dcent.txrelay")

TX_PROTOCOL = "/dcent/tx/1.0.0"
MAX_TX_BATCH_BYTES = 8 * 1024 * 1024
#: Transactions per frame; a larger backlog leaves in several frames.
MAX_BATCH_TXS = 4096
#: Transactions a link may hold for a slow peer before it drops the excess.
MAX_QUEUED_TXS = 32768
SEND_TIMEOUT_S = 10.0
#: How often connected peers without a link get one, seeded with the backlog.
RESEED_INTERVAL_S = 2.0
#: How long a link that woke up waits for more before sending: fewer, larger frames.
RELAY_LINGER_S = 0.02
#: Transactions remembered per peer as sent to us by it, so they are not sent back to it. Kept as
#: 16-byte digests, whatever the peer sent: ~1.5 MB per peer at most (raw, a peer's junk batches
#: would have pinned 8,192 x 64 KiB). A collision only spares a send the peer then misses.
KNOWN_KEPT = 8192

#: Called with each received batch and the sending peer; returns the transactions it admitted.
AdmitBatch = Callable[[list[bytes], str], Awaitable[list[bytes]]]


class _Link:
    """The queue and stream for one peer; its task sends until a send fails or the peer is no
    longer connected when transactions are next relayed."""

    def __init__(self, peer_id: str) -> None:
        self.peer_id = peer_id
        self.queue: list[bytes] = []
        self.wakeup = trio.Event()
        self.stream: Stream | None = None
        self.closing = False


class TxRelay:
    def __init__(self, host: Host, admit: AdmitBatch, backlog: Callable[[], list[bytes]] = list) -> None:
        self.host = host
        self.admit = admit
        self.backlog = backlog
        self.dropped = 0
        #: Links started with the backlog (a new or reconnected peer, or a failed link replaced).
        self.reseeded = 0
        self.sent_frames = 0
        #: Transactions left out of a frame because that peer had sent them to us.
        self.spared = 0
        #: Per peer, the transactions it sent us lately (insertion order: the oldest go first).
        self._known: dict[str, OrderedDict[bytes, None]] = {}
        self._links: dict[str, _Link] = {}
        self._nursery: trio.Nursery | None = None

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.host.set_stream_handler(TX_PROTOCOL, self._receive)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            while True:
                await trio.sleep(RESEED_INTERVAL_S)
                self._reseed()

    def _reseed(self) -> None:
        """A link, seeded with the backlog, for every connected peer that has none."""
        missing = [peer_id for peer_id in self.host.peer_ids() if peer_id not in self._links]
        if missing and (backlog := self.backlog()):
            for peer_id in missing:
                self._start_link(peer_id, backlog)

    @property
    def linked_peers(self) -> list[str]:
        """Peers with a live link (a task and, once used, a stream)."""
        return sorted(self._links)

    def relay(self, raws: list[bytes], *, source: str = "") -> None:
        """Queue ``raws`` for every connected peer except ``source``; never blocks."""
        if not raws or self._nursery is None:
            return
        peer_ids = self.host.peer_ids()
        for gone in self._links.keys() - set(peer_ids):
            closing = self._links.pop(gone)
            closing.closing = True
            closing.wakeup.set()
        for gone in self._known.keys() - set(peer_ids):
            del self._known[gone]
        backlog: list[bytes] | None = None  # reaped once per call, only if a link is new
        for peer_id in peer_ids:
            if peer_id == source:
                continue
            link = self._links.get(peer_id)
            if link is None:
                # ``raws`` are in the mempool already: the backlog holds them, in order.
                if backlog is None:
                    backlog = self.backlog()
                    held = set(backlog)
                    missing = [raw for raw in raws if raw not in held]
                link = self._start_link(peer_id, backlog)
                self._enqueue(link, missing)
            else:
                self._enqueue(link, raws)

    def _start_link(self, peer_id: str, backlog: list[bytes]) -> _Link:
        assert self._nursery is not None
        link = self._links[peer_id] = _Link(peer_id)
        if backlog:
            self.reseeded += 1
            self._enqueue(link, backlog)
        self._nursery.start_soon(self._run_link, link)
        return link

    def _enqueue(self, link: _Link, raws: list[bytes]) -> None:
        if not raws:
            return
        room = MAX_QUEUED_TXS - len(link.queue)
        if room < len(raws):
            self.dropped += len(raws) - max(room, 0)
            log.warning(
                "tx relay to %s is backed up; %d transactions not sent", link.peer_id, len(raws) - room
            )
        link.queue.extend(raws[: max(room, 0)])
        link.wakeup.set()

    async def _run_link(self, link: _Link) -> None:
        try:
            while True:
                await link.wakeup.wait()
                if len(link.queue) < MAX_BATCH_TXS:
                    await trio.sleep(RELAY_LINGER_S)  # what comes meanwhile joins this frame
                link.wakeup = trio.Event()
                if link.closing:
                    return
                while link.queue:
                    batch, link.queue = link.queue[:MAX_BATCH_TXS], link.queue[MAX_BATCH_TXS:]
                    batch = self._unknown_to(link.peer_id, batch)
                    if batch and not await self._send(link, encode(batch)):
                        link.queue.clear()
                        return  # the peer is gone; a later relay() starts a new link
        finally:
            if self._links.get(link.peer_id) is link:
                del self._links[link.peer_id]
                # The peer may come back restarted, with an empty mempool: what it sent us
                # before says nothing then, and the next link's backlog goes in full.
                self._known.pop(link.peer_id, None)
            if link.stream is not None:
                with trio.CancelScope(shield=True):
                    await link.stream.reset()

    def _unknown_to(self, peer_id: str, batch: list[bytes]) -> list[bytes]:
        """``batch`` less what ``peer_id`` sent us itself: it holds those already."""
        known = self._known.get(peer_id)
        if not known:
            return batch
        unknown = [raw for raw in batch if _digest(raw) not in known]
        self.spared += len(batch) - len(unknown)
        return unknown

    def _note_known(self, peer_id: str, batch: list[bytes]) -> None:
        known = self._known.get(peer_id)
        if known is None:
            if peer_id not in self.host.peer_ids():
                return  # a peer already gone keeps no memory here
            known = self._known[peer_id] = OrderedDict()
        # Oversize ones are refused at admission, and could never be one we relay.
        known.update(dict.fromkeys(_digest(raw) for raw in batch if len(raw) <= MAX_TX_BYTES))
        while len(known) > KNOWN_KEPT:
            known.popitem(last=False)

    async def _send(self, link: _Link, data: bytes) -> bool:
        """One frame to the peer, opening the stream on first use; False if the peer is unreachable."""
        with trio.move_on_after(SEND_TIMEOUT_S):
            try:
                if link.stream is None:
                    link.stream = await self.host.open_stream(link.peer_id, TX_PROTOCOL)
                await link.stream.send_frame(data)
                self.sent_frames += 1
                return True
            except P2PError as exc:
                log.debug("tx relay to %s failed: %r", link.peer_id, exc)
        return False

    async def _receive(self, stream: Stream) -> None:
        """A peer's link: frames of transaction batches until it closes the stream. A frame that
        is not a batch ends the link and is refused and scored by the host (``run_stream_handler``)."""
        while True:
            try:
                frame = await stream.receive_frame(MAX_TX_BATCH_BYTES)
            except StreamClosedError:
                return  # the peer closed its link cleanly
            batch = decode(frame)
            if type(batch) is not list or not all(type(raw) is bytes for raw in batch):
                raise DecodeError("a transaction batch is a list of byte strings")
            if len(batch) > MAX_BATCH_TXS:
                raise DecodeError(f"a transaction batch holds at most {MAX_BATCH_TXS} transactions")
            self._note_known(stream.peer_id, batch)  # type: ignore[arg-type]
            admitted = await self.admit(batch, stream.peer_id)  # type: ignore[arg-type]
            self.relay(admitted, source=stream.peer_id)


def _digest(raw: bytes) -> bytes:
    return hashlib.sha256(raw).digest()[:16]
