"""The node's libp2p host: identity, TCP + Noise + yamux, bootstrap and reconnection, GossipSub,
framed streams. With ``node/p2p/{host_config,libp2p_adapters,libp2p_tuning}.py``, the only code
in ``node/`` that imports libp2p.

Use::

    host = P2PHost(HostConfig(node_key_seed=load_or_create_node_key(paths.node_key),
                              listen_addr="/ip4/0.0.0.0/tcp/26656", bootstrap=(...)))
    await nursery.start(host.run)        # returns once listening
    ...
    await host.close()                   # or cancel the nursery: listeners are closed either way

Everything libp2p-specific that we had to work around is done here and recorded, with the reason
and the test that fails without it, in the docstring of node/p2p/__init__.py ("The workarounds"). The interface,
its shared semantics and the memory fake live in ``node/p2p/``.
"""

from __future__ import annotations

import logging
import random
from typing import TYPE_CHECKING

import libp2p.pubsub.pubsub as libp2p_pubsub
import trio
from libp2p import new_swarm
from libp2p.abc import INetConn, INetStream, ISubscriptionAPI
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.x25519 import create_new_key_pair as create_noise_key_pair
from libp2p.custom_types import TProtocol
from libp2p.host.basic_host import BasicHost
from libp2p.host.exceptions import StreamFailure
from libp2p.network.config import ConnectionConfig, RetryConfig
from libp2p.network.exceptions import SwarmException
from libp2p.network.swarm import Swarm
from libp2p.peer.id import ID
from libp2p.peer.peerstore import PeerStoreError
from libp2p.protocol_muxer.exceptions import MultiselectClientError
from libp2p.protocol_muxer.exceptions import ProtocolNotSupportedError as Libp2pProtocolNotSupported
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11, GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub
from libp2p.pubsub.rpc_queue import OutBoundQueueSize
from libp2p.rcmgr import new_resource_manager
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux
from libp2p.tools.anyio_service import background_trio_service

from node.p2p import libp2p_tuning, mesh_quota
from node.p2p.errors import (
    DialError,
    GossipBackpressureError,
    HostConfigError,
    HostStateError,
    ListenError,
    MessageTooLargeError,
    P2PError,
    PeerBannedError,
    ProtocolNotSupportedError,
    StreamResetError,
)
from node.p2p.frame_budget import FrameBudget
from node.p2p.framing import Stream
from node.p2p.gossip_params import GossipParams, PublishPacer
from node.p2p.guard import PeerGuard, Reason
from node.p2p.host_config import (
    HostConfig,
    ensure_port_free,
    ip_of,
    parse_multiaddr,
    parse_peer_address,
    parse_peer_id,
)
from node.p2p.identity import load_or_create_node_key
from node.p2p.interface import (
    GossipMessage,
    Host,
    PeerInfo,
    StreamHandler,
    TopicValidator,
    Verdict,
    request_over_stream,
    run_stream_handler,
    serve_requests,
)
from node.p2p.libp2p_adapters import Libp2pRawStream, PeerTable, RestartSafePubsub
from node.p2p.logbridge import install_libp2p_log_bridge
from node.p2p.reconnect import Backoff, keep_connected

if TYPE_CHECKING:
    # libp2p pulls in trio-typing, whose trio-stubs shadow trio's own annotations for mypy.
    from trio_typing import TaskStatus

__all__ = [
    "GossipMessage",
    "GossipParams",
    "Host",
    "HostConfig",
    "P2PHost",
    "PeerInfo",
    "Stream",
    "load_or_create_node_key",
    "serve_requests",
]

log = logging.getLogger("dcent.p2p")

#: How long shutdown may take before we stop waiting for libp2p's own teardown.
CLOSE_TIMEOUT_S = 5.0
# Addresses we dial ourselves stay in the peerstore; libp2p's default TTL is two minutes.
_DIALLED_ADDR_TTL_S = 24 * 3600
# How often publish looks again at full outbound gossip queues (libp2p offers no event for it).
_QUEUE_POLL_S = 0.01


class P2PHost:
    """The libp2p implementation of :class:`~node.p2p.interface.Host`. Runs once."""

    def __init__(self, config: HostConfig) -> None:
        self._config = config
        self._key_pair: KeyPair = create_new_key_pair(config.node_key_seed)
        self._id = ID.from_pubkey(self._key_pair.public_key)
        self._peer_id = str(self._id)
        self._listen = parse_multiaddr(config.listen_addr)
        self._pacer = PublishPacer(config.gossip.own_publish_rate)
        self._handlers: dict[str, StreamHandler] = {}
        self._subscribers: dict[str, list[trio.MemorySendChannel[GossipMessage]]] = {}
        self._validators: dict[str, TopicValidator] = {}
        self.guard = PeerGuard(config.guard, clock=trio.current_time)
        self.guard.on_ban.append(self._on_ban)
        #: Bytes of frames being received on the streams handed to handlers, and their deadlines.
        self.frame_budget = FrameBudget(self.guard, config.frame_budget)
        self._peer_table = PeerTable(refuse=lambda peer_id: self.guard.is_banned(str(peer_id)))
        self._libp2p: BasicHost | None = None
        self._pubsub: Pubsub | None = None
        self._nursery: trio.Nursery | None = None
        self._started = False
        self._closed = False
        self._stop = trio.Event()
        self._stopped = trio.Event()
        #: Gossip messages dropped because a local subscriber's buffer was full.
        self.gossip_inbound_dropped = 0
        #: Peers that missed one of our publishes because their outbound queue stayed full.
        self.gossip_outbound_dropped = 0

    # --- identity and lifecycle ----------------------------------------------------------------
    @property
    def peer_id(self) -> str:
        return self._peer_id

    @property
    def listen_addrs(self) -> list[str]:
        """Where peers can dial us, with ``/p2p/<peer id>`` (the real port when configured 0)."""
        host = self._require_running()
        return [f"{addr}/p2p/{self._peer_id}" for addr in host.get_transport_addrs()]

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen, start gossip, dial the bootstrap peers; report started once listening.

        Raises :class:`PortInUseError` or :class:`ListenError` before reporting started.
        Returns after :meth:`close`; on cancellation, closes the listener all the same.
        """
        if self._started:
            raise HostStateError("a host runs once; create a new one to restart")
        self._started = True
        install_libp2p_log_bridge()
        libp2p_tuning.apply()
        try:
            port = int(self._listen.value_for_protocol("tcp"))
            if port != 0:
                ensure_port_free(ip_of(self._listen), port)
        except P2PError:
            self._closed = True
            self._stopped.set()
            raise
        host = self._build_libp2p_host()
        for protocol_id in self._handlers:
            self._register_handler(host, protocol_id)
        gossipsub = self._build_gossipsub()
        mesh_quota.trust(gossipsub, self._config.trusted_peer_ids(), mutual=bool(self._config.trusted_peers))
        pubsub = RestartSafePubsub(host, gossipsub, strict_signing=True)
        for topic in self._validators:
            self._register_validator(pubsub, topic)
        try:
            async with host.run([self._listen]):
                try:
                    if not host.get_transport_addrs():
                        raise ListenError(f"could not listen on {self._config.listen_addr}")
                    async with background_trio_service(pubsub), background_trio_service(gossipsub):
                        await pubsub.wait_until_ready()
                        async with trio.open_nursery() as nursery:
                            self._libp2p, self._pubsub, self._nursery = host, pubsub, nursery
                            self._start_bootstrap(nursery)
                            log.info(
                                "p2p host %s listening on %s", self._peer_id, ", ".join(self.listen_addrs)
                            )
                            task_status.started()
                            await self._stop.wait()
                            nursery.cancel_scope.cancel()
                        # Close connections while pubsub still runs: a message read during
                        # teardown otherwise asks pubsub's closed task nursery for a task, and the
                        # RuntimeError ends the swarm (seen in CI on a restarting publisher).
                        await self._close_libp2p(host)
                finally:
                    # Before leaving host.run(): stopping the swarm's service first cancels its own
                    # cleanup half-way, which marks connections closed without closing their sockets
                    # and leaves the listener open (see node/p2p/__init__.py).
                    await self._close_libp2p(host)
        finally:
            await self._close_libp2p(host)  # a no-op unless host.run() itself failed
            self._stopped.set()

    def _start_bootstrap(self, nursery: trio.Nursery) -> None:
        rng = random.Random()
        for address in self._config.bootstrap:
            nursery.start_soon(self._keep_connected, address, Backoff(self._config.reconnect, rng))

    async def _close_libp2p(self, host: BasicHost) -> None:
        self._closed = True
        self._nursery = None
        for channels in self._subscribers.values():
            for channel in channels:
                channel.close()
        self._subscribers.clear()
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = trio.current_time() + CLOSE_TIMEOUT_S
            await host.close()  # idempotent
        if scope.cancelled_caught:
            log.warning("libp2p host %s did not close within %s s", self._peer_id, CLOSE_TIMEOUT_S)

    async def close(self) -> None:
        """Stop: close the listener and every connection, end subscriptions. Idempotent."""
        if not self._started:
            self._started = self._closed = True
            return
        self._stop.set()
        await self._stopped.wait()

    def _require_running(self) -> BasicHost:
        if self._libp2p is None or self._closed:
            raise HostStateError("the host is not running")
        return self._libp2p

    def _require_pubsub(self) -> Pubsub:
        self._require_running()
        assert self._pubsub is not None
        return self._pubsub

    def _build_libp2p_host(self) -> BasicHost:
        config = self._config
        # Noise only (workaround 1 (node/p2p/__init__.py): new_host's default also accepts plaintext and secio), yamux
        # only (bug 6: mplex leaks per stream and is 5x slower).
        noise = NoiseTransport(self._key_pair, noise_privkey=create_noise_key_pair().private_key)
        connection_config = ConnectionConfig(
            max_connections=2 * config.max_peers,
            high_watermark=2 * config.max_peers,
            low_watermark=0,
            min_connections=0,
            dial_timeout=config.dial_timeout_s,
            # Bug 9: without health monitoring a hung peer is never noticed.
            enable_health_monitoring=True,
            health_initial_delay=config.health_check_interval_s,
            health_warmup_window=0.0,
            health_check_interval=config.health_check_interval_s,
            ping_timeout=config.ping_timeout_s,
            abort_connection_on_ping_failure=True,
        )
        resource_manager = new_resource_manager()
        swarm = new_swarm(
            key_pair=self._key_pair,
            sec_opt={TProtocol(NOISE_PROTOCOL_ID): noise},
            muxer_opt={TProtocol(YAMUX_PROTOCOL_ID): Yamux},
            listen_addrs=[self._listen],
            # Our reconnect loop retries with backoff; libp2p's own retries would add 0.7 s to
            # every failed dial and hold the dial slot meanwhile.
            retry_config=RetryConfig(max_retries=0),
            connection_config=connection_config,
            resource_manager=resource_manager,
        )
        host = BasicHost(network=swarm, resource_manager=resource_manager)
        swarm.register_notifee(self._peer_table)
        return host

    def _build_gossipsub(self) -> GossipSub:
        params = self._config.gossip
        return GossipSub(
            protocols=[PROTOCOL_ID_V11],
            degree=params.degree,
            degree_low=params.degree_low,
            degree_high=params.degree_high,
            time_to_live=params.fanout_ttl_s,
            gossip_window=params.gossip_window,
            gossip_history=params.gossip_history,
            heartbeat_initial_delay=params.heartbeat_initial_delay_s,
            heartbeat_interval=params.heartbeat_interval_s,
            prune_back_off=params.prune_backoff_s,
            unsubscribe_back_off=params.unsubscribe_backoff_s,
            adaptive_gossip_enabled=params.adaptive_gossip,
            spam_protection_enabled=True,
            max_messages_per_topic_per_second=float(params.max_messages_per_topic_per_second),
            eclipse_protection_enabled=params.eclipse_protection,
        )

    # --- peers ---------------------------------------------------------------------------------
    async def connect(self, multiaddr: str) -> str:
        """Connect to ``/ip4/.../tcp/N/p2p/<id>``; return the peer id. No-op when connected.

        Raises :class:`HostConfigError` (bad address, our own id), :class:`DialError`.
        """
        peer_id, addrs = parse_peer_address(multiaddr)
        host = self._require_running()
        if peer_id == self._id:
            raise HostConfigError("a host cannot connect to itself")
        self._refuse_if_banned(str(peer_id))
        if self._is_connected(peer_id):
            return str(peer_id)
        # workaround 3 (node/p2p/__init__.py): only the first TCP address of a peer is dialled, and a failed dial puts
        # the peer in a 60 s negative cache, so a peer that came back (on a new port, or after
        # our failed redials) could not be reached. Forget its old addresses and the cache first.
        host.get_peerstore().clear_addrs(peer_id)
        _swarm_of(host).unblock_peer(peer_id)
        host.get_peerstore().add_addrs(peer_id, addrs, _DIALLED_ADDR_TTL_S)
        await self._dial(host, peer_id)
        return str(peer_id)

    async def _dial(self, host: BasicHost, peer_id: ID) -> None:
        with trio.move_on_after(self._config.dial_timeout_s) as scope:
            try:
                await host.get_network().dial_peer(peer_id)
            except (SwarmException, OSError) as exc:
                raise DialError(f"cannot connect to {peer_id}: {_describe(exc)}") from None
        if scope.cancelled_caught:
            raise DialError(f"cannot connect to {peer_id}: timed out after {self._config.dial_timeout_s} s")

    async def disconnect(self, peer_id: str) -> None:
        host = self._require_running()
        await host.disconnect(parse_peer_id(peer_id))

    def _refuse_if_banned(self, peer_id: str) -> None:
        if self.guard.is_banned(peer_id):
            raise PeerBannedError(f"{peer_id} is banned for misbehaviour; not dialled")

    def _on_ban(self, peer_id: str, seconds: float) -> None:
        """The guard banned a peer: drop it now, and keep pubsub from taking its messages (even
        relayed by others) until the ban ends. Inbound connections are closed by the peer table."""
        nursery = self._nursery
        if nursery is not None:
            nursery.start_soon(self._enforce_ban, peer_id, seconds)

    async def _enforce_ban(self, peer_id: str, seconds: float) -> None:
        libp2p_id = parse_peer_id(peer_id)
        pubsub = self._pubsub
        if pubsub is not None:
            pubsub.add_to_blacklist(libp2p_id)
        host = self._libp2p
        if host is not None and not self._closed:
            await host.disconnect(libp2p_id)
        await trio.sleep(seconds)
        if pubsub is not None and not self.guard.is_banned(peer_id):
            pubsub.remove_from_blacklist(libp2p_id)

    def _live_connections(self, peer_id: ID) -> list[INetConn]:
        host = self._require_running()
        return [conn for conn in host.get_network().connections.get(peer_id, []) if not conn.is_closed]

    def _is_connected(self, peer_id: ID) -> bool:
        return bool(self._live_connections(peer_id))

    def peers(self) -> list[PeerInfo]:
        """Connected peers, sorted by peer id."""
        host = self._require_running()
        infos = []
        for peer_id in list(host.get_network().connections):
            live = self._live_connections(peer_id)
            if live:
                record = self._peer_table.record(peer_id, live)
                addrs = self._known_addrs(host, peer_id)
                infos.append(PeerInfo(str(peer_id), addrs, record.since, record.direction))
        return sorted(infos, key=lambda info: info.peer_id)

    def peer_ids(self) -> list[str]:
        """Connected peers; none once the host has closed (services still stepping through their
        cancellation then send to nobody instead of failing)."""
        # On the hot path (every relayed transaction batch): no peerstore or multiaddr work.
        if self._closed:
            return []
        host = self._require_running()
        return sorted(
            str(peer_id) for peer_id in list(host.get_network().connections) if self._is_connected(peer_id)
        )

    @staticmethod
    def _known_addrs(host: BasicHost, peer_id: ID) -> tuple[str, ...]:
        try:
            addrs = host.get_peerstore().addrs(peer_id)
        except PeerStoreError:
            return ()
        suffix = f"/p2p/{peer_id}"
        return tuple(sorted({str(a) if str(a).endswith(suffix) else f"{a}{suffix}" for a in addrs}))

    async def _keep_connected(self, address: str, backoff: Backoff) -> None:
        await keep_connected(
            address, dial=self.connect, wait_disconnected=self._wait_disconnected, backoff=backoff, log=log
        )

    async def _wait_disconnected(self, peer_id: str) -> None:
        libp2p_id = parse_peer_id(peer_id)
        live = self._live_connections(libp2p_id)
        if live:
            await self._peer_table.record(libp2p_id, live).disconnected.wait()

    # --- gossip --------------------------------------------------------------------------------
    async def subscribe(self, topic: str) -> trio.MemoryReceiveChannel[GossipMessage]:
        """A new channel of the topic's messages (ours included). Each call gets its own channel."""
        pubsub = self._require_pubsub()
        if not topic:
            raise HostConfigError("a gossip topic is a non-empty string")
        send, receive = trio.open_memory_channel[GossipMessage](self._config.gossip.subscriber_buffer)
        channels = self._subscribers.get(topic)
        if channels is None:
            # Registered before the await, so a concurrent subscribe does not start a second pump.
            channels = self._subscribers[topic] = []
            # libp2p sizes the queue it delivers into (and drops from, silently, when full) from
            # a module constant read as subscribe() starts: 32 was lost whenever more messages
            # were handled before our pump ran (workaround 33).
            libp2p_pubsub.SUBSCRIPTION_CHANNEL_SIZE = self._config.gossip.subscriber_buffer
            try:
                subscription = await pubsub.subscribe(topic)
            except BaseException:
                del self._subscribers[topic]
                raise
            assert self._nursery is not None
            self._nursery.start_soon(self._pump, topic, subscription)
        channels.append(send)
        return receive

    async def unsubscribe(self, topic: str) -> None:
        """Leave the topic; every channel ``subscribe`` returned for it ends."""
        pubsub = self._require_pubsub()
        for channel in self._subscribers.pop(topic, []):
            channel.close()
        await pubsub.unsubscribe(topic)

    async def _pump(self, topic: str, subscription: ISubscriptionAPI) -> None:
        # libp2p's subscription queue holds 32 messages and drops silently when full (bug 5):
        # drain it at once into our channels, which are larger and count what they drop.
        while True:
            try:
                raw = await subscription.get()
            except (trio.EndOfChannel, trio.ClosedResourceError):
                return  # unsubscribed, or the host is closing
            message = GossipMessage(topic=topic, data=bytes(raw.data), sender=str(ID(raw.from_id)))
            for channel in list(self._subscribers.get(topic, [])):
                try:
                    channel.send_nowait(message)
                except trio.WouldBlock:
                    self.gossip_inbound_dropped += 1
                    log.warning("gossip subscriber on %s is too slow; message dropped", topic)
                except trio.BrokenResourceError:
                    self._subscribers[topic].remove(channel)  # the consumer closed it

    async def publish(self, topic: str, data: bytes) -> None:
        """Publish to the topic's subscribers (ours included), paced so nothing drops silently.

        Waits while we exceed our publish rate (the receivers' spam cap would drop the excess)
        and while peers' outbound queues are full (libp2p would drop for them), up to
        ``gossip.publish_wait_s``. After that, peers still full miss the message, which is
        logged and counted in :attr:`gossip_outbound_dropped`; if that is every subscribed
        peer, raises :class:`GossipBackpressureError`. Also raises
        :class:`MessageTooLargeError`, and :class:`HostStateError` before the host started.
        Once it has closed, a message goes to nobody: a service still stepping through its
        cancellation (the consensus driver mid-step) must not end the node on its way out.
        """
        if self._closed:
            log.debug("host closed: a message on %s goes to nobody", topic)
            return
        pubsub = self._require_pubsub()
        if len(data) > self._config.gossip.max_message_bytes:
            raise MessageTooLargeError(
                f"a gossip message is at most {self._config.gossip.max_message_bytes} bytes, not {len(data)}"
            )
        await self._pacer.wait_turn(topic)
        await self._wait_for_queue_room(pubsub, topic)
        await pubsub.publish(topic, bytes(data))

    def set_topic_validator(self, topic: str, validator: TopicValidator) -> None:
        """Validate every peer's message on ``topic`` before it is delivered or forwarded."""
        self._validators[topic] = validator
        if self._pubsub is not None:
            self._register_validator(self._pubsub, topic)

    def _register_validator(self, pubsub: Pubsub, topic: str) -> None:
        # py-libp2p 0.8.1 validators answer a bool: False drops the message unforwarded and
        # undelivered (REJECT and IGNORE alike); the difference, scoring the forwarder, is ours.
        # A synchronous validator runs inline in the router's task for the message; one that
        # raised would end that task with an unhandled error, so ours never raises.
        def validate(forwarder: ID, raw: rpc_pb2.Message) -> bool:
            return self._validate(topic, str(forwarder), raw)

        pubsub.set_topic_validator(topic, validate, is_async_validator=False)

    def _validate(self, topic: str, forwarder: str, raw: rpc_pb2.Message) -> bool:
        if forwarder == self._peer_id:
            return True  # our own publish
        guard = self.guard
        if not guard.allow(forwarder, topic, guard.settings.gossip):
            return False
        if len(raw.data) > self._config.gossip.max_message_bytes:
            guard.refuse(forwarder, topic, Reason.OVERSIZE, f"{len(raw.data)}-byte message")
            return False
        validator = self._validators.get(topic)
        if validator is None:
            return True
        message = GossipMessage(
            topic=topic, data=bytes(raw.data), sender=str(ID(raw.from_id)), forwarder=forwarder
        )
        try:
            result = validator(message)
        except Exception:  # a bug of ours must not take down the router (see above)
            log.exception("gossip validator for %s crashed on a message from %s", topic, forwarder)
            guard.count(topic, Reason.INTERNAL)
            return False
        if result.verdict is Verdict.ACCEPT:
            return True
        assert result.reason is not None
        if result.verdict is Verdict.REJECT:
            guard.refuse(forwarder, topic, result.reason, result.detail)
        else:
            guard.count(topic, result.reason)
        return False

    def topic_peers(self, topic: str) -> list[str]:
        """The peers in our GossipSub mesh for ``topic``: those our messages go to directly."""
        router = self._require_pubsub().router
        assert isinstance(router, GossipSub)
        return sorted(str(peer_id) for peer_id in router.mesh.get(topic, ()))

    async def _wait_for_queue_room(self, pubsub: Pubsub, topic: str) -> None:
        deadline = trio.current_time() + self._config.gossip.publish_wait_s
        while True:
            peers = [peer for peer in pubsub.peer_topics.get(topic, ()) if peer in pubsub.peer_queues]
            full = [peer for peer in peers if len(pubsub.peer_queues[peer]) >= OutBoundQueueSize]
            if not full:
                return
            if trio.current_time() >= deadline:
                if len(full) == len(peers):
                    raise GossipBackpressureError(
                        f"every subscriber of {topic} has a full outbound queue; message not sent"
                    )
                self.gossip_outbound_dropped += len(full)
                log.warning("gossip on %s: %d slow peer(s) miss a message: %s", topic, len(full), full)
                return
            await trio.sleep(_QUEUE_POLL_S)

    # --- streams -------------------------------------------------------------------------------
    def set_stream_handler(self, protocol_id: str, handler: StreamHandler) -> None:
        """Serve ``protocol_id`` with ``handler(stream)``; it may be set before :meth:`run`."""
        self._handlers[protocol_id] = handler
        if self._libp2p is not None:
            self._register_handler(self._libp2p, protocol_id)

    def remove_stream_handler(self, protocol_id: str) -> None:
        self._handlers.pop(protocol_id, None)
        if self._libp2p is not None:
            self._libp2p.remove_stream_handler(TProtocol(protocol_id))

    def _register_handler(self, host: BasicHost, protocol_id: str) -> None:
        async def on_stream(net_stream: INetStream) -> None:
            handler = self._handlers.get(protocol_id)
            remote = net_stream.get_remote_address()
            stream = Stream(
                Libp2pRawStream(net_stream),
                peer_id=str(net_stream.muxed_conn.peer_id),
                protocol_id=protocol_id,
                budget=self.frame_budget,
                remote_host=remote[0] if remote else None,
            )
            if handler is None:
                await stream.reset()
                return
            await run_stream_handler(handler, stream, log, self.guard)

        host.set_stream_handler(TProtocol(protocol_id), on_stream)

    async def open_stream(self, peer_id: str, protocol_id: str) -> Stream:
        """A new stream to ``peer_id`` on ``protocol_id``, dialling the peer if needed.

        Raises :class:`DialError`, :class:`ProtocolNotSupportedError`, :class:`StreamResetError`,
        :class:`HostConfigError` (malformed peer id).
        """
        host = self._require_running()
        libp2p_id = parse_peer_id(peer_id)
        self._refuse_if_banned(peer_id)
        if not self._is_connected(libp2p_id):
            _swarm_of(host).unblock_peer(libp2p_id)  # an explicit dial must not wait out the cache
            await self._dial(host, libp2p_id)
        try:
            net_stream = await host.new_stream(libp2p_id, [TProtocol(protocol_id)])
        except StreamFailure as exc:
            if _is_protocol_refusal(exc):
                raise ProtocolNotSupportedError(f"{peer_id} does not handle {protocol_id}") from None
            raise StreamResetError(f"cannot open {protocol_id} to {peer_id}: {_describe(exc)}") from None
        except SwarmException as exc:
            raise DialError(f"cannot connect to {peer_id}: {_describe(exc)}") from None
        return Stream(Libp2pRawStream(net_stream), peer_id=peer_id, protocol_id=protocol_id)

    async def request(
        self, peer_id: str, protocol_id: str, payload: bytes, *, max_response: int, timeout: float
    ) -> bytes:
        """Send one frame and return the one-frame answer. See :func:`request_over_stream`."""
        return await request_over_stream(
            self, peer_id, protocol_id, payload, max_response=max_response, timeout=timeout
        )


def _swarm_of(host: BasicHost) -> Swarm:
    network = host.get_network()
    assert isinstance(network, Swarm)  # what new_swarm() builds
    return network


def _is_protocol_refusal(exc: StreamFailure) -> bool:
    """Whether new_stream failed because the peer answered "na" to every protocol we offered.

    libp2p 0.8.1 reports that as a plain MultiselectClientError whose message starts with
    "protocols not supported" (the ProtocolNotSupportedError per protocol is swallowed).
    """
    cause = exc.__cause__
    return isinstance(cause, Libp2pProtocolNotSupported) or (
        isinstance(cause, MultiselectClientError) and str(cause).startswith("protocols not supported")
    )


def _describe(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    return f"{exc}" + (f" ({cause})" if cause is not None else "")


if TYPE_CHECKING:

    def _implements_host(host: P2PHost) -> Host:  # mypy checks that P2PHost satisfies Host
        return host
