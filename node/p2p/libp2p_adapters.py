"""Adapters between libp2p's objects and ours: a libp2p stream as our ``RawStream``, and the swarm
notifee that keeps the peer table (when each peer connected, and an event for its disconnect).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import multiaddr
import trio
from libp2p.abc import INetConn, INetStream, INetwork, INotifee
from libp2p.network.stream.exceptions import StreamEOF, StreamError
from libp2p.network.stream.net_stream import NetStream
from libp2p.peer.id import ID
from libp2p.rcmgr import Direction as ConnectionDirection

from node.p2p.errors import StreamResetError
from node.p2p.interface import Direction


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
            # a reset; the muxed stream object still remembers (ARCHITECTURE.md).
            if getattr(self._stream.muxed_stream, "reset_received", False):
                raise StreamResetError("stream reset by the peer") from None
            return b""
        except StreamError as exc:  # reset, or the connection is gone
            raise StreamResetError(f"stream reset: {exc!r}") from None

    async def write(self, data: bytes) -> None:
        try:
            await self._stream.write(data)
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

    def __init__(self) -> None:
        self._records: dict[ID, PeerRecord] = {}

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
        self.record(conn.muxed_conn.peer_id, [conn])

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
