"""An in-process network of hosts on trio memory channels: a fake of :class:`Host` for unit tests.

It exists so the layers above the host (consensus driver, market, block sync) can be tested
with many nodes in one process, under ``trio.testing.MockClock``, deterministically. It keeps
the interface's semantics (see ``node.p2p.interface``) and nothing of the transport: no
encryption, no sockets, no GossipSub mesh. Never use it in a node.

Addresses look like ``/memory/7/p2p/12D3KooW...``; every ``run()`` takes a fresh number, as a
restarted TCP host takes a fresh port. Gossip reaches the subscribers connected to the publisher
through a chain of subscribed hosts (a mesh is made of subscribers), each once. Tests can cut the
network with :meth:`MemoryNetwork.partition` and :meth:`MemoryNetwork.heal`.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

from node.p2p.errors import (
    DialError,
    HostConfigError,
    HostStateError,
    MessageTooLargeError,
    PeerBannedError,
    ProtocolNotSupportedError,
    StreamResetError,
)
from node.p2p.frame_budget import FrameBudget, FrameBudgetSettings
from node.p2p.framing import Stream
from node.p2p.gossip_params import GossipParams, PublishPacer
from node.p2p.guard import GuardSettings, PeerGuard
from node.p2p.identity import peer_id_from_seed, validate_peer_id
from node.p2p.interface import (
    Direction,
    GossipMessage,
    Host,
    PeerInfo,
    StreamHandler,
    TopicValidator,
    Verdict,
    request_over_stream,
    run_stream_handler,
)
from node.p2p.reconnect import Backoff, BackoffPolicy, keep_connected

if TYPE_CHECKING:
    # libp2p pulls in trio-typing, whose trio-stubs shadow trio's own annotations for mypy.
    from trio_typing import TaskStatus

log = logging.getLogger("dcent.p2p.memory")

_PIPE_CHUNKS = 16  # chunks in flight per stream direction before a writer waits (a yamux window)


class _StreamState:
    def __init__(self) -> None:
        self.reset = False


class _MemoryRawStream:
    """One end of an in-memory byte pipe pair: the ``RawStream`` under a memory ``Stream``."""

    def __init__(
        self,
        outgoing: trio.MemorySendChannel[bytes],
        incoming: trio.MemoryReceiveChannel[bytes],
        state: _StreamState,
    ) -> None:
        self._outgoing = outgoing
        self._incoming = incoming
        self._state = state
        self._leftover = b""
        self._done_sending = False
        self._done_receiving = False
        self.peer_end: _MemoryRawStream | None = None

    @property
    def finished(self) -> bool:
        """Closed in both directions, or reset: nothing can flow any more."""
        return self._state.reset or (self._done_sending and self._done_receiving)

    async def read(self, max_bytes: int) -> bytes:
        if self._state.reset:
            raise StreamResetError("stream was reset")
        if not self._leftover:
            try:
                self._leftover = await self._incoming.receive()
            except (trio.EndOfChannel, trio.ClosedResourceError):
                if self._state.reset:
                    raise StreamResetError("stream was reset") from None
                return b""
        data, self._leftover = self._leftover[:max_bytes], self._leftover[max_bytes:]
        return data

    async def write(
        self, data: bytes | bytearray | memoryview, on_sent: Callable[[int], None] | None = None
    ) -> None:
        if self._state.reset:
            raise StreamResetError("stream was reset")
        try:
            await self._outgoing.send(bytes(data))
            if on_sent is not None:
                on_sent(len(data))
        except trio.BrokenResourceError:
            # The peer closed its end fully: like yamux, the bytes are accepted and discarded.
            if self._state.reset:
                raise StreamResetError("stream was reset") from None
        except trio.ClosedResourceError:
            raise StreamResetError("stream was reset") from None

    async def close_write(self) -> None:
        self._outgoing.close()
        self._done_sending = True
        await trio.lowlevel.checkpoint()

    async def close(self) -> None:
        self._outgoing.close()
        self._incoming.close()
        self._done_sending = self._done_receiving = True
        await trio.lowlevel.checkpoint()

    async def reset(self) -> None:
        self.abort()
        await trio.lowlevel.checkpoint()

    def abort(self) -> None:
        """Reset both ends now (synchronously): blocked readers and writers on both sides wake."""
        self._state.reset = True
        for end in (self, self.peer_end):
            if end is not None:
                end._outgoing.close()
                end._incoming.close()


def pipe_pair() -> tuple[_MemoryRawStream, _MemoryRawStream]:
    """Two connected in-memory byte streams (``RawStream``), what a memory host's streams run on."""
    state = _StreamState()
    a_to_b_send, a_to_b_receive = trio.open_memory_channel[bytes](_PIPE_CHUNKS)
    b_to_a_send, b_to_a_receive = trio.open_memory_channel[bytes](_PIPE_CHUNKS)
    a = _MemoryRawStream(a_to_b_send, b_to_a_receive, state)
    b = _MemoryRawStream(b_to_a_send, a_to_b_receive, state)
    a.peer_end, b.peer_end = b, a
    return a, b


@dataclass(eq=False)
class _Link:
    """A connection between two memory hosts (one object, shared by both ends)."""

    dialer: MemoryHost
    listener: MemoryHost
    since: float
    streams: list[_MemoryRawStream] = field(default_factory=list)
    closed: trio.Event = field(default_factory=trio.Event)

    def other(self, host: MemoryHost) -> MemoryHost:
        return self.listener if host is self.dialer else self.dialer

    def direction_for(self, host: MemoryHost) -> Direction:
        return "outbound" if host is self.dialer else "inbound"


class MemoryNetwork:
    """The switchboard the memory hosts of one test share."""

    def __init__(self) -> None:
        self._listening: dict[str, MemoryHost] = {}
        self._next_port = 1
        self._partition: list[frozenset[str]] | None = None

    def create_host(
        self,
        seed: bytes,
        *,
        bootstrap: Iterable[str] = (),
        gossip: GossipParams | None = None,
        reconnect: BackoffPolicy | None = None,
        guard: GuardSettings | None = None,
        frame_budget: FrameBudgetSettings | None = None,
    ) -> MemoryHost:
        """A host with the peer id ``seed`` gives (the same as a ``P2PHost`` with that seed)."""
        return MemoryHost(
            self,
            seed,
            tuple(bootstrap),
            gossip or GossipParams(),
            reconnect or BackoffPolicy(),
            guard,
            frame_budget,
        )

    def partition(self, *groups: Iterable[str]) -> None:
        """Cut every connection between hosts of different groups (peer ids) and refuse such dials.

        Hosts in no group are cut off from everyone. :meth:`heal` ends the partition.
        """
        self._partition = [frozenset(group) for group in groups]
        for host in list(self._listening.values()):
            for link in list(host._links.values()):
                if not self.can_reach(link.dialer.peer_id, link.listener.peer_id):
                    link.dialer._drop_link(link)

    def heal(self) -> None:
        self._partition = None

    def can_reach(self, a: str, b: str) -> bool:
        if self._partition is None:
            return True
        return any(a in group and b in group for group in self._partition)

    def _listen(self, host: MemoryHost) -> str:
        address = f"/memory/{self._next_port}"
        self._next_port += 1
        self._listening[address] = host
        return address

    def _unlisten(self, address: str) -> None:
        self._listening.pop(address, None)

    def _lookup(self, address: str) -> MemoryHost | None:
        return self._listening.get(address)


def _split_address(multiaddr: str) -> tuple[str, str]:
    parts = multiaddr.split("/")
    # "", "memory", "<n>", "p2p", "<peer id>"
    if len(parts) != 5 or parts[0] or parts[1] != "memory" or not parts[2].isdigit() or parts[3] != "p2p":
        raise HostConfigError(f"{multiaddr!r} is not a memory multiaddr /memory/<n>/p2p/<peer id>")
    return f"/memory/{parts[2]}", validate_peer_id(parts[4])


class MemoryHost:
    """A :class:`~node.p2p.interface.Host` on a :class:`MemoryNetwork`. Runs once, like P2PHost."""

    def __init__(
        self,
        network: MemoryNetwork,
        seed: bytes,
        bootstrap: tuple[str, ...],
        gossip: GossipParams,
        reconnect: BackoffPolicy,
        guard: GuardSettings | None = None,
        frame_budget: FrameBudgetSettings | None = None,
    ) -> None:
        self._network = network
        self._peer_id = peer_id_from_seed(seed)
        for address in bootstrap:
            _split_address(address)
        self._bootstrap = bootstrap
        self._gossip = gossip
        self._pacer = PublishPacer(gossip.own_publish_rate)
        self._reconnect = reconnect
        self._address: str | None = None
        self._nursery: trio.Nursery | None = None
        self._started = False
        self._closed = False
        self._stop = trio.Event()
        self._stopped = trio.Event()
        self._links: dict[str, _Link] = {}
        self._known_addrs: dict[str, str] = {}
        self._handlers: dict[str, StreamHandler] = {}
        self._subscribers: dict[str, list[trio.MemorySendChannel[GossipMessage]]] = {}
        self._validators: dict[str, TopicValidator] = {}
        #: Gossip messages dropped because a local subscriber's buffer was full.
        self.gossip_inbound_dropped = 0
        self.guard = PeerGuard(guard, clock=trio.current_time)
        self.guard.on_ban.append(self._on_ban)
        self.frame_budget = FrameBudget(self.guard, frame_budget)

    # --- identity and lifecycle ----------------------------------------------------------------
    @property
    def peer_id(self) -> str:
        return self._peer_id

    @property
    def listen_addrs(self) -> list[str]:
        self._require_running()
        assert self._address is not None
        return [f"{self._address}/p2p/{self._peer_id}"]

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        if self._started:
            raise HostStateError("a host runs once; create a new one to restart")
        self._started = True
        self._address = self._network._listen(self)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                rng = random.Random(self._peer_id)
                for address in self._bootstrap:
                    nursery.start_soon(self._keep_connected, address, Backoff(self._reconnect, rng))
                task_status.started()
                await self._stop.wait()
                nursery.cancel_scope.cancel()
        finally:
            self._shut_down()

    async def close(self) -> None:
        """Stop listening, drop every connection (resetting its streams), end subscriptions."""
        if not self._started or self._closed:
            self._closed = True
            self._shut_down()
            return
        self._stop.set()
        await self._stopped.wait()

    def _shut_down(self) -> None:
        self._closed = True
        if self._address is not None:
            self._network._unlisten(self._address)
        for link in list(self._links.values()):
            self._drop_link(link)
        for channels in self._subscribers.values():
            for channel in channels:
                channel.close()
        self._subscribers.clear()
        self._nursery = None
        self._stopped.set()

    def _require_running(self) -> None:
        if not self._started or self._nursery is None:
            raise HostStateError("the host is not running")

    # --- peers ---------------------------------------------------------------------------------
    async def connect(self, multiaddr: str) -> str:
        address, peer_id = _split_address(multiaddr)
        self._require_running()
        await trio.lowlevel.checkpoint()
        if peer_id == self._peer_id:
            raise HostConfigError("a host cannot connect to itself")
        if self.guard.is_banned(peer_id):
            raise PeerBannedError(f"{peer_id} is banned for misbehaviour; not dialled")
        if peer_id in self._links:
            return peer_id
        remote = self._network._lookup(address)
        if remote is None or remote._nursery is None:
            raise DialError(f"nothing listens on {address}")
        if remote.peer_id != peer_id:
            raise DialError(f"{address} is {remote.peer_id}, not {peer_id}")
        if not self._network.can_reach(self._peer_id, peer_id):
            raise DialError(f"{peer_id} is unreachable (network partition)")
        if remote.guard.is_banned(self._peer_id):
            raise DialError(f"{peer_id} closed the connection")
        self._known_addrs[peer_id] = multiaddr
        link = _Link(dialer=self, listener=remote, since=trio.current_time())
        self._links[peer_id] = link
        remote._links[self._peer_id] = link
        remote._known_addrs[self._peer_id] = self.listen_addrs[0]
        return peer_id

    async def disconnect(self, peer_id: str) -> None:
        link = self._links.get(peer_id)
        if link is not None:
            self._drop_link(link)
        await trio.lowlevel.checkpoint()

    def _on_ban(self, peer_id: str, _seconds: float) -> None:
        link = self._links.get(peer_id)
        if link is not None:
            self._drop_link(link)

    def _drop_link(self, link: _Link) -> None:
        for host in (link.dialer, link.listener):
            other = link.other(host)
            if host._links.get(other.peer_id) is link:
                del host._links[other.peer_id]
        for raw in link.streams:
            raw.abort()
        link.streams.clear()
        link.closed.set()

    def peers(self) -> list[PeerInfo]:
        infos = []
        for peer_id in sorted(self._links):
            link = self._links[peer_id]
            remote = link.other(self)
            addrs = tuple(remote.listen_addrs) if remote._nursery is not None else ()
            infos.append(PeerInfo(peer_id, addrs, link.since, link.direction_for(self)))
        return infos

    def peer_ids(self) -> list[str]:
        return sorted(self._links)

    async def _keep_connected(self, address: str, backoff: Backoff) -> None:
        await keep_connected(
            address, dial=self.connect, wait_disconnected=self._wait_disconnected, backoff=backoff, log=log
        )

    async def _wait_disconnected(self, peer_id: str) -> None:
        link = self._links.get(peer_id)
        if link is not None:
            await link.closed.wait()

    # --- gossip --------------------------------------------------------------------------------
    async def subscribe(self, topic: str) -> trio.MemoryReceiveChannel[GossipMessage]:
        self._require_running()
        if not topic:
            raise HostConfigError("a gossip topic is a non-empty string")
        send, receive = trio.open_memory_channel[GossipMessage](self._gossip.subscriber_buffer)
        self._subscribers.setdefault(topic, []).append(send)
        await trio.lowlevel.checkpoint()
        return receive

    async def unsubscribe(self, topic: str) -> None:
        self._require_running()
        for channel in self._subscribers.pop(topic, []):
            channel.close()
        await trio.lowlevel.checkpoint()

    async def publish(self, topic: str, data: bytes) -> None:
        if self._closed:  # to nobody: see Host.publish
            await trio.lowlevel.checkpoint()
            return
        self._require_running()
        if len(data) > self._gossip.max_message_bytes:
            raise MessageTooLargeError(
                f"a gossip message is at most {self._gossip.max_message_bytes} bytes, not {len(data)}"
            )
        await self._pacer.wait_turn(topic)
        self._flood(
            GossipMessage(topic=topic, data=bytes(data), sender=self._peer_id, forwarder=self._peer_id)
        )
        await trio.lowlevel.checkpoint()

    def topic_peers(self, topic: str) -> list[str]:
        return sorted(
            peer_id for peer_id, link in self._links.items() if link.other(self)._subscribers.get(topic)
        )

    def set_topic_validator(self, topic: str, validator: TopicValidator) -> None:
        self._validators[topic] = validator

    def _flood(self, message: GossipMessage) -> None:
        """Deliver to every subscriber reachable through subscribed hosts, breadth first in peer
        id order, each once; a host that does not accept the message neither takes nor forwards it."""
        topic = message.topic
        seen = {self._peer_id}
        frontier = [self]
        if self._subscribers.get(topic):
            self._deliver(message)
        while frontier:
            next_frontier = []
            for host in frontier:
                for peer_id in sorted(host._links):
                    remote = host._links[peer_id].other(host)
                    if peer_id in seen or not remote._subscribers.get(topic):
                        continue
                    seen.add(peer_id)
                    relayed = GossipMessage(topic, message.data, message.sender, forwarder=host.peer_id)
                    if remote._accepts(relayed):
                        remote._deliver(relayed)
                        next_frontier.append(remote)
            frontier = next_frontier

    def _accepts(self, message: GossipMessage) -> bool:
        """What ``P2PHost._validate`` does, without the size check (publish already made it)."""
        guard, topic = self.guard, message.topic
        if not guard.allow(message.forwarder, topic, guard.settings.gossip):
            return False
        validator = self._validators.get(topic)
        if validator is None:
            return True
        result = validator(message)
        if result.verdict is Verdict.ACCEPT:
            return True
        assert result.reason is not None
        if result.verdict is Verdict.REJECT:
            guard.refuse(message.forwarder, topic, result.reason, result.detail)
        else:
            guard.count(topic, result.reason)
        return False

    def _deliver(self, message: GossipMessage) -> None:
        for channel in list(self._subscribers.get(message.topic, [])):
            try:
                channel.send_nowait(message)
            except trio.WouldBlock:
                self.gossip_inbound_dropped += 1
                log.warning("gossip subscriber on %s is too slow; message dropped", message.topic)
            except trio.BrokenResourceError:
                self._subscribers[message.topic].remove(channel)  # the consumer closed it

    # --- streams -------------------------------------------------------------------------------
    def set_stream_handler(self, protocol_id: str, handler: StreamHandler) -> None:
        self._handlers[protocol_id] = handler

    def remove_stream_handler(self, protocol_id: str) -> None:
        self._handlers.pop(protocol_id, None)

    async def open_stream(self, peer_id: str, protocol_id: str) -> Stream:
        self._require_running()
        validate_peer_id(peer_id)
        link = self._links.get(peer_id)
        if link is None:
            known = self._known_addrs.get(peer_id)
            if known is None:
                raise DialError(f"no known address for {peer_id}")
            await self.connect(known)
            link = self._links[peer_id]
        else:
            await trio.lowlevel.checkpoint()
        remote = link.other(self)
        if self.guard.is_banned(peer_id):
            raise PeerBannedError(f"{peer_id} is banned for misbehaviour")
        handler = remote._handlers.get(protocol_id)
        if handler is None or remote._nursery is None:
            raise ProtocolNotSupportedError(f"{peer_id} does not handle {protocol_id}")
        local_raw, remote_raw = pipe_pair()
        link.streams = [raw for raw in link.streams if not raw.finished] + [local_raw, remote_raw]
        remote_stream = Stream(
            remote_raw, peer_id=self._peer_id, protocol_id=protocol_id, budget=remote.frame_budget
        )
        remote._nursery.start_soon(run_stream_handler, handler, remote_stream, log, remote.guard)
        return Stream(local_raw, peer_id=peer_id, protocol_id=protocol_id)

    async def request(
        self, peer_id: str, protocol_id: str, payload: bytes, *, max_response: int, timeout: float
    ) -> bytes:
        return await request_over_stream(
            self, peer_id, protocol_id, payload, max_response=max_response, timeout=timeout
        )


if TYPE_CHECKING:

    def _implements_host(host: MemoryHost) -> Host:  # mypy checks that MemoryHost satisfies Host
        return host
