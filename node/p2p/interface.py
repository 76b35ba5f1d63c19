"""The host interface the rest of the node programs against, and the helpers both hosts share.

Two implementations satisfy :class:`Host`: ``node.host.P2PHost`` (py-libp2p: TCP, Noise, yamux,
GossipSub) and ``node.p2p.memory.MemoryHost`` (trio memory channels, for unit tests of the layers
above). Upper layers take a ``Host`` and never learn which one they got.

Semantics both implementations keep:

- ``connect`` returns the remote peer id; connecting twice is a no-op.
- ``topic_peers(topic)`` lists the connected peers our messages on ``topic`` go to directly
  (the GossipSub mesh; for the memory host, the connected subscribers), sorted.
- ``publish`` delivers to every subscriber of the topic reachable through connected peers,
  including our own subscription, each message at most once per subscriber. ``sender`` is the
  originator's peer id. Gossip is best effort: a peer that subscribed a moment ago, or whose
  subscriber channel is full (counted in ``gossip_inbound_dropped``), can miss a message, so
  upper layers re-announce and sync by height rather than count on every message arriving.
  ``publish`` paces itself rather than dropping (see ``P2PHost.publish``).
- ``open_stream`` dials a known but disconnected peer. Frames keep their boundaries; a stream
  handler's stream is closed when the handler returns and reset if it raises.
- Bootstrap peers are dialled at ``run()`` and redialled with backoff whenever they drop,
  ``disconnect`` included. ``close()`` (or cancelling ``run()``) stops listening, drops every
  connection and ends every subscription channel. A host runs once.
- Failures are typed (``node.p2p.errors``): ``HostError`` for ours, ``PeerError`` for the peer's.
- Every host owns a :class:`~node.p2p.guard.PeerGuard`: inbound streams and gossip are refused
  from banned peers and rate limited per peer; a banned peer is disconnected and not dialled.
- Every host owns a :class:`~node.p2p.frame_budget.FrameBudget`, given to each stream it hands
  to a handler: the bytes of frames being received there are budgeted per peer and node-wide,
  and each frame has a deadline (``node/p2p/frame_budget.py``).
- ``set_topic_validator(topic, validator)``: every message on ``topic`` from a peer is validated
  before it is delivered to our subscribers or forwarded (GossipSub's ACCEPT / REJECT / IGNORE:
  a rejected message is scored against the peer that forwarded it, an ignored one is not); our
  own publishes are not validated.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

import trio

from node.p2p.errors import FrameRefusedError, P2PError, RequestTimeoutError
from node.p2p.frame_budget import FrameBudget
from node.p2p.framing import Stream
from node.p2p.guard import WEIGHTS, PeerGuard, Reason
from node.p2p.refusals import describe, reason_of
from protocol.errors import ProtocolError

if TYPE_CHECKING:
    # libp2p pulls in trio-typing, whose trio-stubs shadow trio's own annotations for mypy.
    from trio_typing import TaskStatus

StreamHandler = Callable[[Stream], Awaitable[None]]
RequestHandler = Callable[[str, bytes], Awaitable[bytes]]
Direction = Literal["inbound", "outbound"]


@dataclass(frozen=True, slots=True)
class GossipMessage:
    """One message received on a subscribed topic."""

    topic: str
    data: bytes
    #: The originator's peer id (its signature was checked by the transport), not the forwarder's.
    sender: str
    #: The peer that passed it to us (the originator, or a peer relaying it), as validators see
    #: it; subscribers may get "" (libp2p does not tell them), so it is not part of equality.
    forwarder: str = field(default="", compare=False)


class Verdict(enum.Enum):
    """GossipSub's validation results (libp2p pubsub spec)."""

    #: Deliver to our subscribers and forward to the mesh.
    ACCEPT = "accept"
    #: Invalid: drop, do not forward, and score the forwarder (an honest one never sends it).
    REJECT = "reject"
    #: Not for us now (stale, a duplicate, not checkable yet): drop, do not forward, no score.
    IGNORE = "ignore"


@dataclass(frozen=True, slots=True)
class Validation:
    verdict: Verdict
    reason: Reason | None = None
    detail: str = ""

    @classmethod
    def reject(cls, reason: Reason, detail: str) -> Validation:
        return cls(Verdict.REJECT, reason, detail)

    @classmethod
    def ignore(cls, reason: Reason, detail: str) -> Validation:
        return cls(Verdict.IGNORE, reason, detail)

    @classmethod
    def of_error(cls, error: BaseException) -> Validation:
        """REJECT for misbehaviour, IGNORE when the error's reason carries no score."""
        reason = reason_of(error)
        verdict = Verdict.REJECT if WEIGHTS[reason] else Verdict.IGNORE
        return cls(verdict, reason, describe(error))


ACCEPT = Validation(Verdict.ACCEPT)

#: Judges one message from a peer; must not block (it runs inside the gossip router).
TopicValidator = Callable[[GossipMessage], Validation]


@dataclass(frozen=True, slots=True)
class PeerInfo:
    """A connected peer, as ``Host.peers()`` reports it."""

    peer_id: str
    #: Addresses known for the peer (its listen addresses once identified), full with ``/p2p/``.
    addrs: tuple[str, ...]
    #: ``trio.current_time()`` when the first live connection to the peer was seen.
    connected_since: float
    #: Who dialled the (first live) connection.
    direction: Direction


class Host(Protocol):
    """What the node needs from the network. See the module docstring for shared semantics."""

    #: Gossip messages dropped because one of our subscribers' channels was full.
    gossip_inbound_dropped: int
    #: Scores, rate limits and bans of peers (see :mod:`node.p2p.guard`).
    guard: PeerGuard
    #: Bytes of frames being received on inbound streams (see :mod:`node.p2p.frame_budget`).
    frame_budget: FrameBudget

    @property
    def peer_id(self) -> str: ...

    @property
    def listen_addrs(self) -> list[str]: ...

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None: ...

    async def close(self) -> None: ...

    async def connect(self, multiaddr: str) -> str: ...

    async def disconnect(self, peer_id: str) -> None: ...

    def peers(self) -> list[PeerInfo]: ...

    def peer_ids(self) -> list[str]:
        """Connected peers' ids, sorted: what ``peers()`` lists, without building addresses."""
        ...

    async def subscribe(self, topic: str) -> trio.MemoryReceiveChannel[GossipMessage]: ...

    async def unsubscribe(self, topic: str) -> None: ...

    async def publish(self, topic: str, data: bytes) -> None:
        """Gossip ``data`` on ``topic``. Raises ``HostStateError`` before the host has started;
        once it has closed, the message goes to nobody, so a service stepping through its
        cancellation (the consensus driver mid-step) does not end the node on its way out."""
        ...

    def topic_peers(self, topic: str) -> list[str]: ...

    def set_topic_validator(self, topic: str, validator: TopicValidator) -> None: ...

    def set_stream_handler(self, protocol_id: str, handler: StreamHandler) -> None: ...

    def remove_stream_handler(self, protocol_id: str) -> None: ...

    async def open_stream(self, peer_id: str, protocol_id: str) -> Stream: ...

    async def request(
        self, peer_id: str, protocol_id: str, payload: bytes, *, max_response: int, timeout: float
    ) -> bytes: ...


async def run_stream_handler(
    handler: StreamHandler, stream: Stream, log: logging.Logger, guard: PeerGuard
) -> None:
    """Run an upper layer's handler on an inbound stream: close it after, reset it on failure.

    A handler's failure must cost that one stream, never the connection (libp2p runs handlers in
    the connection's nursery, so an escaping exception would tear down every stream and the
    gossip session to that peer). Streams from banned peers, and over the peer's rate for the
    protocol, are reset unread. Refusals (our typed errors, bad protocol input) are counted and
    scored by the guard; anything else is a bug in the handler and logged with its traceback.
    The stream's frames answer to the host's frame budget and deadlines (the host built it so).
    """
    if not guard.allow(stream.peer_id, stream.protocol_id, guard.settings.streams):
        await stream.reset()
        return
    try:
        await handler(stream)
    except FrameRefusedError:
        await stream.reset()  # the stream refused the frame itself, and reported it
    except (P2PError, ProtocolError) as exc:
        guard.refuse(stream.peer_id, stream.protocol_id, reason_of(exc), describe(exc))
        await stream.reset()
    except Exception:
        log.exception(
            "stream handler for %s crashed; stream from %s reset", stream.protocol_id, stream.peer_id
        )
        guard.count(stream.protocol_id, Reason.INTERNAL)
        await stream.reset()
    else:
        await _close_quietly(stream)


async def _close_quietly(stream: Stream) -> None:
    try:
        await stream.close()
    except P2PError:
        await stream.reset()


async def request_over_stream(
    host: Host, peer_id: str, protocol_id: str, payload: bytes, *, max_response: int, timeout: float
) -> bytes:
    """One request frame, one response frame, on a fresh stream, within ``timeout`` seconds.

    Raises :class:`RequestTimeoutError` past the deadline (dial included), and whatever
    ``open_stream``, ``send_frame`` and ``receive_frame`` raise.
    """
    response: bytes | None = None
    with trio.move_on_after(timeout):
        stream = await host.open_stream(peer_id, protocol_id)
        try:
            await stream.send_frame(payload)
            await stream.close_write()
            response = await stream.receive_frame(max_response)
        finally:
            if response is None:
                await stream.reset()
    if response is None:
        raise RequestTimeoutError(f"no answer from {peer_id} on {protocol_id} within {timeout} s")
    await _close_quietly(stream)
    return response


def serve_requests(handler: RequestHandler, *, max_request: int) -> StreamHandler:
    """A stream handler answering :func:`request_over_stream`: one frame in, one frame out.

    ``handler(peer_id, payload)`` returns the response; raising a typed error resets the stream,
    which the requester sees as :class:`~node.p2p.errors.StreamResetError`.
    """

    async def handle(stream: Stream) -> None:
        payload = await stream.receive_frame(max_request)
        response = await handler(stream.peer_id, payload)
        await stream.send_frame(response)

    return handle
