"""Adapters between libp2p's objects and ours: a libp2p stream as our ``RawStream``, the swarm
notifee that keeps the peer table (when each peer connected, and an event for its disconnect) and
closes connections from banned peers, and the pubsub whose message numbers survive restarts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import multiaddr
import trio
from libp2p.abc import INetConn, INetStream, INetwork, INotifee
from libp2p.network.stream.exceptions import StreamEOF, StreamError
from libp2p.network.stream.net_stream import NetStream
from libp2p.peer.id import ID
from libp2p.pubsub.pubsub import Pubsub
from libp2p.rcmgr import Direction as ConnectionDirection

from node.p2p.errors import StreamResetError
from node.p2p.interface import Direction
from node.p2p.yamux_send import observing_writes


class Libp2pRawStream:
    """A libp2p stream as our ``RawStream``: its exceptions translated into ours."""

    def __init__(self, stream: INetStream) -> None:
        # Every stream BasicHost hands out is a NetStream; close_write is only on the class.
        assert isinstance(stream, NetStream)
        self._stream = stream

    async def read(self, max_bytes: int) -> bytes:
        try:
            return await self._stream.read(max_bytes)
        except StreamEOF:
            # yamux drops a stream's bookkeeping when a RST arrives, so the reader sees EOF, not
            # a reset; the muxed stream object still remembers (node/p2p/__init__.py).
            if getattr(self._stream.muxed_stream, "reset_received", False):
                raise StreamResetError("stream reset by the peer") from None
            return b""
        except StreamError as exc:  # reset, or the connection is gone
            raise StreamResetError(f"stream reset: {exc!r}") from None

    async def write(
        self, data: bytes | bytearray | memoryview, on_sent: Callable[[int], None] | None = None
    ) -> None:
        try:
            # libp2p types it bytes; yamux only slices it and prepends each slice's header (a new
            # bytes), which a bytearray or a memoryview (a frame assembled in place,
            # Stream.send_frame_buffer) does as well, and keeps no reference once it returns.
            if on_sent is None:
                await self._stream.write(data)  # type: ignore[arg-type]
            else:
                with observing_writes(self._stream.muxed_stream, on_sent):
                    await self._stream.write(data)  # type: ignore[arg-type]
        except StreamError as exc:
            raise StreamResetError(f"stream reset: {exc!r}") from None

    async def close_write(self) -> None:
        try:
            await self._stream.close_write()
        except StreamError as exc:
            raise StreamResetError(f"stream reset: {exc!r}") from None

    async def close(self) -> None:
        try:
            await self._stream.close()
        except StreamError:
            await self._stream.reset()  # closing a broken stream: release it all the same

    async def reset(self) -> None:
        await self._stream.reset()


@dataclass(slots=True)
class PeerRecord:
    since: float
    direction: Direction
    disconnected: trio.Event


class PeerTable(INotifee):
    """Connection events from the swarm -> when each peer connected, and a disconnect event."""

    def __init__(self, refuse: Callable[[ID], bool] = lambda _peer_id: False) -> None:
        self._records: dict[ID, PeerRecord] = {}
        self._refuse = refuse

    def record(self, peer_id: ID, live: Sequence[INetConn]) -> PeerRecord:
        """The record of a peer with live connections ``live`` (made now if the swarm's
        ``connected`` notification for it has not run yet)."""
        record = self._records.get(peer_id)
        if record is None:
            inbound = getattr(live[0], "direction", None) == ConnectionDirection.INBOUND
            direction: Direction = "inbound" if inbound else "outbound"
            record = self._records[peer_id] = PeerRecord(trio.current_time(), direction, trio.Event())
        return record

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        peer_id = conn.muxed_conn.peer_id
        if self._refuse(peer_id):
            # A banned peer dialled us: libp2p has no peer-id gate, so close it as it arrives.
            await conn.close()
            return
        self.record(peer_id, [conn])

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        peer_id = conn.muxed_conn.peer_id
        remaining = [c for c in network.connections.get(peer_id, []) if c is not conn and not c.is_closed]
        record = self._records.get(peer_id)
        if not remaining and record is not None:
            del self._records[peer_id]
            record.disconnected.set()

    async def opened_stream(self, network: INetwork, stream: INetStream) -> None:
        pass

    async def closed_stream(self, network: INetwork, stream: INetStream) -> None:
        pass

    async def listen(self, network: INetwork, multiaddr: multiaddr.Multiaddr) -> None:
        pass

    async def listen_close(self, network: INetwork, multiaddr: multiaddr.Multiaddr) -> None:
        pass


class RestartSafePubsub(Pubsub):
    """Pubsub whose sequence numbers never repeat for our key, across restarts too.

    A GossipSub message id is the originator's peer id and its 8-byte sequence number. py-libp2p
    0.8.1 starts the counter at ``int(time.time())`` (seconds) and adds one per message, so a
    validator publishing ~6 messages/s runs ~5 s ahead of the clock per second of uptime; after
    a restart it reuses numbers its previous run sent, which peers still hold as seen and drop:
    a restarted validator was muted (issue 18). Here the number is ``max(previous + 1,
    time.time_ns())``: go-libp2p's choice (a counter seeded with UnixNano), kept tied to the
    clock, so it stays ahead of anything sent before unless the wall clock is stepped back by
    more than the node was down. The message id stays the spec's default ``from + seqno``,
    which every libp2p implementation computes the same way; a content-addressed id would have
    to be configured on every peer alike and would also drop the core's deliberate
    retransmissions of an identical vote as already seen.
    """

    def _next_seqno(self) -> bytes:
        self.counter = max(self.counter + 1, time.time_ns())
        return self.counter.to_bytes(8, "big")
