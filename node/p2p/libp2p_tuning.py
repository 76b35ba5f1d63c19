"""Process-wide overrides of py-libp2p 0.8.1 module constants and methods, applied before a host
starts.

Only what libp2p looks up at call time can be overridden this way; each override here is listed,
with its reason, in node/services/__init__.py (the health-check tolerance, "Liveness under load")
or in the workaround table of node/p2p/__init__.py (yamux credit and frame size, rows 22-23;
pubsub's signed peer records, row 24; pubsub's teardown race, row 25; stalled socket writes,
row 26; yamux writers woken by credit, row 27, in :mod:`node.p2p.yamux_send`; the gossip mesh,
rows 28-31, the places kept for trusted peers in :mod:`node.p2p.mesh_quota`; repeated control
entries, row 32, in :mod:`node.p2p.gossip_control`; connection places given back, row 34).
"""

from __future__ import annotations

import os
import time
import weakref
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

import libp2p.io.trio as libp2p_io_trio
import libp2p.network.health.monitor as libp2p_health
import libp2p.network.swarm as libp2p_swarm
import libp2p.pubsub.gossipsub as libp2p_gossipsub
import libp2p.pubsub.pubsub as libp2p_pubsub
import libp2p.stream_muxer.yamux.yamux as libp2p_yamux
import trio
from libp2p.io.exceptions import ConnectionClosedError
from libp2p.network.exceptions import SwarmException
from libp2p.network.health.ping_probe import ConnectionPingResult
from libp2p.peer.peerstore import env_to_send_in_RPC
from libp2p.pubsub.utils import maybe_consume_signed_record
from libp2p.security.noise.io import MAX_PLAINTEXT_LENGTH as NOISE_MAX_PLAINTEXT

from node.p2p import gossip_control, mesh_quota, yamux_send

#: libp2p waits this long after starting each address's dial before trying the next one, even
#: after the last address, so every connect took 250 ms longer than the handshake (workaround 2 in node/p2p/__init__.py).
#: We dial one address per peer, so there is no "next" address to give a head start to.
HAPPY_EYEBALLS_DELAY_S = 0.0

#: Consecutive failed health pings before a connection is aborted. libp2p aborts on the FIRST
#: one (with ``abort_connection_on_ping_failure``), and on a loaded machine a ping answered a
#: few seconds late is common: ~70 aborts a minute were measured on 4 in-process nodes, each
#: resetting every stream of the connection and starting a redial, gossip mesh repair and a
#: replay of recent gossip, which loaded the machine further (issue 14). A peer that is really
#: gone still fails every ping and is dropped after this many intervals.
PING_FAILURES_BEFORE_ABORT = 3


#: Whether yamux grants the sender credit for every read (libp2p's default) or, as go-yamux does,
#: once half the receive window has been read. Per read, on a bulk stream read as it arrives
#: (a ~7 KiB read at a time on loopback), that is a WINDOW_UPDATE frame per read: encrypted, sent
#: (a syscall, and on loopback the peer's receive path too) and handled by the sender, which in
#: turn gets credit in small steps and sends small frames. Measured on a 128 MiB blob transfer:
#: window updates 12.9k -> 1.5k, Python calls -17% on the receiving side and -32% on the sending
#: side (issue 15). ``PY_YAMUX_RELEASE_ON_READ`` set in the environment still decides.
YAMUX_RELEASE_ON_READ = False


#: libp2p's own credit rule, kept before :func:`apply` replaces it (for tests, and for the record).
LIBP2P_WINDOW_CREDIT = libp2p_yamux.YamuxStream._auto_tune_and_send_window_update


async def _half_window_credit(stream: Any, *, bytes_read: int = 0) -> None:
    """go-yamux's ``sendWindowUpdate``: credit the sender once at least half the receive window
    has been read (then with libp2p's own GrowTo and auto-tune), never for less.

    libp2p's method, beside that rule, also credits whatever was read whenever less than half is
    outstanding ("partial slack"), which on a stream of small messages is a WINDOW_UPDATE frame
    for every other read: a Noise encryption and a socket write here, a frame to decrypt and
    handle at the sender. On a near-idle 4-validator chain that was ~12% of a node's event-loop
    CPU (votes and proposals are small). ``bytes_read`` is what libp2p passes; the outstanding
    credit is recomputed from the window itself, so it is not needed.

    No stall: a sender waits only when its window is 0, and once our buffer is read the
    outstanding credit is then the whole window, past the half.
    """
    del bytes_read
    increment = 0
    async with stream.window_lock:
        buffered = len(stream.conn.stream_buffers.get(stream.stream_id, b""))
        outstanding = stream.target_recv_window - (stream.recv_window + buffered)
        if outstanding > 0 and outstanding >= stream._grow_threshold():
            increment = stream._grow_to_delta(buffered) + stream._apply_autotune_epoch(buffered)
            stream._pending_recv_release = 0
    if increment > 0:
        await stream.send_window_update(increment, skip_lock=True)


#: The largest yamux frame we send, header included. libp2p's is 64 KiB, 17 bytes more than one
#: Noise message carries, so every full data frame went out as two Noise messages (65,519 bytes,
#: then 17): two encryptions, two length-prefixed writes, two socket sends, and on the receiving
#: side two messages to read and decrypt. A frame that fits one Noise message halves all that for
#: bulk transfers (issue 15). The receiving side accepts any frame length up to its window.
YAMUX_MAX_FRAME_BYTES = NOISE_MAX_PLAINTEXT


#: libp2p's own readers of its ``PY_YAMUX_*`` settings, kept before :func:`apply` replaces them
#: with constants (so a later freeze, or a test, still asks the environment).
_LIBP2P_YAMUX_SETTINGS: dict[str, Any] = {
    name: getattr(libp2p_yamux, name)
    for name in (
        "_perf_yamux_debug_enabled",
        "_yamux_disable_hysteresis",
        "_yamux_batch_threshold_divisor",
        "_yamux_data_read_timeout",
        "_yamux_release_on_read",
    )
}


def _frozen_yamux_settings() -> dict[str, Any]:
    """libp2p's yamux reads its ``PY_YAMUX_*`` tuning from the environment on every frame and
    every read (an ``os.getenv`` each, several per read); read them once, at apply time."""
    release = os.environ.get("PY_YAMUX_RELEASE_ON_READ")
    frozen = {name: read() for name, read in _LIBP2P_YAMUX_SETTINGS.items()}
    if release is None:
        frozen["_yamux_release_on_read"] = YAMUX_RELEASE_ON_READ
    return frozen


class PingTolerance:
    """Counts failed pings per connection; reports a failure only at the Nth in a row.

    Below the threshold a failure is reported as *skipped*, which libp2p's monitor treats as
    "no measurement": no abort, and no mark against the connection's health score either.
    """

    def __init__(self, failures_before_abort: int = PING_FAILURES_BEFORE_ABORT) -> None:
        if failures_before_abort < 1:
            raise ValueError("failures_before_abort must be at least 1")
        self.failures_before_abort = failures_before_abort
        self._misses: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()

    def judge(self, conn: Any, result: ConnectionPingResult) -> ConnectionPingResult:
        if result.skipped:
            return result
        if result.success:
            self._misses.pop(conn, None)
            return result
        misses = self._misses.get(conn, 0) + 1
        if misses < self.failures_before_abort:
            self._misses[conn] = misses
            return ConnectionPingResult(success=False, skipped=True)
        self._misses.pop(conn, None)
        return result


_TOLERANCE = PingTolerance()
_ORIGINAL_PING = libp2p_health.ConnectionHealthMonitor._ping_connection


async def _tolerant_ping(monitor: libp2p_health.ConnectionHealthMonitor, conn: Any) -> ConnectionPingResult:
    return _TOLERANCE.judge(conn, await _ORIGINAL_PING(monitor, conn))


_ORIGINAL_TEARDOWN = libp2p_pubsub.Pubsub._teardown_if_connected


async def _teardown_without_race(pubsub: Any, peer_id: Any) -> None:
    """libp2p's teardown of a blacklisted peer, which resets the peer's stream and then deletes
    it from ``pubsub.peers``: the reset wakes the stream's reader, whose dead-peer handler may
    delete it first, and the ``KeyError`` then ended pubsub's service, and the node (one banned
    peer could stop it). The peer is gone either way; only its subscriptions are left to forget."""
    try:
        await _ORIGINAL_TEARDOWN(pubsub, peer_id)
    except KeyError:
        pubsub._forget_all_subscriptions(peer_id)


_ORIGINAL_MESH_HEARTBEAT = libp2p_gossipsub.GossipSub.mesh_heartbeat


def _mesh_heartbeat_with_prune_backoff(router: Any) -> tuple[Any, Any]:
    """libp2p's mesh maintenance, plus the backoff it forgets when it trims a mesh above
    ``degree_high`` (workaround 28).

    The PRUNE it sends carries no backoff field, so the peer keeps away for its own
    ``prune_backoff_s`` and notes the time, calling a GRAFT of ours within 10 s a flood; but we
    kept no backoff ourselves, so as soon as our own mesh fell below ``degree_low`` we grafted the
    same peer again, were penalised and pruned, and so on: on an 8-node testnet with degrees 3/2/4
    two validators ended with no mesh on the consensus topic and stopped at height 2. go-libp2p's
    heartbeat adds a backoff for every peer it prunes, as libp2p's own score-based replacement
    does here. Ours outlasts the peer's by two heartbeats (go-libp2p's slack too): the two clocks
    start a moment apart, and a GRAFT a moment early would be refused and restart the wait."""
    to_graft, to_prune = _ORIGINAL_MESH_HEARTBEAT(router)
    mesh_quota.graft_trusted_peers(router, to_graft)  # workaround 30
    gossip_control.forget_uncached(router)  # workaround 32
    for peer, topics in to_prune.items():
        for topic in topics:
            router._add_back_off(peer, topic, False, _our_backoff_s(router))
    return to_graft, to_prune


def _our_backoff_s(router: Any) -> int:
    """The backoff we keep for a peer we prune: the peer's own plus two heartbeats of slack."""
    return int(router.prune_back_off + 2 * router.heartbeat_interval)


_ORIGINAL_HANDLE_GRAFT = libp2p_gossipsub.GossipSub.handle_graft
_ORIGINAL_PRUNE_SELECTION = libp2p_gossipsub.GossipSub._select_peers_for_pruning
_ORIGINAL_DO_PX = libp2p_gossipsub.GossipSub._do_px


async def _handle_graft_with_trust_rule(router: Any, graft_msg: Any, sender_peer_id: Any) -> None:
    """libp2p's GRAFT handling, except that a full mesh takes GRAFTs only from trusted peers
    (workaround 30, :func:`node.p2p.mesh_quota.refuse_graft_when_full`): another peer is
    answered with a PRUNE and gets our backoff (``prune_backoff_s`` plus two heartbeats, as
    workaround 28's). A GRAFT that libp2p calls a flood still goes to libp2p, which penalises it."""
    topic = graft_msg.topicID
    if mesh_quota.refuse_graft_when_full(
        router, topic, sender_peer_id
    ) and router._check_graft_flood_protection(sender_peer_id, topic):
        router._add_back_off(sender_peer_id, topic, False, _our_backoff_s(router))
        await router.emit_prune(topic, sender_peer_id, False, False)
        return
    await _ORIGINAL_HANDLE_GRAFT(router, graft_msg, sender_peer_id)


_ORIGINAL_HANDLE_RPC = libp2p_gossipsub.GossipSub.handle_rpc
_ORIGINAL_HANDLE_IWANT = libp2p_gossipsub.GossipSub.handle_iwant


async def _handle_rpc_normalized(router: Any, rpc: Any, sender_peer_id: Any) -> None:
    """libp2p's control handling, once the control message holds only entries for our topics,
    one per topic, and capped lists of ids (workaround 32)."""
    if rpc.HasField("control"):
        gossip_control.normalize(rpc.control, router.mesh.keys())
    await _ORIGINAL_HANDLE_RPC(router, rpc, sender_peer_id)


async def _handle_iwant_bounded(router: Any, iwant_msg: Any, sender_peer_id: Any) -> None:
    """libp2p's IWANT answer, for the ids the peer may still be sent (workaround 32)."""
    answer = gossip_control.iwant_to_answer(router, iwant_msg, sender_peer_id)
    if answer.messageIDs:
        await _ORIGINAL_HANDLE_IWANT(router, answer, sender_peer_id)


async def _no_peer_exchange(router: Any, px_peers: Any) -> None:
    """Peers named in a PRUNE are not dialed (workaround 31).

    libp2p dials up to 16 peers named in any PRUNE's peer exchange, unsolicited ones included,
    from any connected peer, as often as PRUNEs come (its acceptance threshold is -inf with our
    default score weights): one peer could make us dial addresses of its choosing, third parties
    included, and fill our connections with identities of its own. dcent has no peer exchange: a
    node's peers are its bootstrap list, the peers that dial it, and those it dials itself.
    go-libp2p accepts PX only from peers above ``AcceptPXThreshold``."""
    del router, px_peers


_ORIGINAL_OPPORTUNISTIC_GRAFTING = libp2p_gossipsub.GossipSub._perform_opportunistic_grafting


def _no_opportunistic_grafting(router: Any, topic: str, peers_to_graft: Any) -> int:
    """No opportunistic grafting (workaround 29); libp2p's grafts 2 peers on every heartbeat.

    Opportunistic grafting exists to replace mesh peers whose score is poor, and its only signal
    is the peer score. We run libp2p's scorer with its default parameters, whose weights are all 0:
    every peer scores 0, every non-mesh peer qualifies, and libp2p (unlike the spec, which does
    it once a minute and only when the mesh's median score is below a threshold) grafts 2 of them
    each second while the mesh holds ``degree_low`` or more. The trim above ``degree_high`` then
    prunes 2, every second, until every candidate sits in backoff; a node could be left with an
    empty mesh, and no IHAVE from the peers in backoff either, for most of a minute. go-libp2p
    does no opportunistic grafting without peer scoring."""
    return 0


#: How long one socket write may wait for the peer to take bytes before its connection is closed
#: (workaround 26). A peer that keeps its TCP connection open but stops reading fills the
#: socket's buffers; libp2p's write then waited forever holding the connection's write lock, and
#: every other writer on that connection (gossip, stream opens and resets, the health monitor's
#: close) queued behind it for good. Found as a provider whose job never finished: its live-output
#: stream to a stopped requester waited on such a connection. A live peer on a loaded machine
#: takes bytes within seconds.
SOCKET_WRITE_STALL_S = 30.0

#: The unit of progress a stalled write is judged by: no piece of this size taken in
#: ``SOCKET_WRITE_STALL_S`` is a stall. (libp2p's writes are Noise messages, at most ~64 KiB.)
SOCKET_WRITE_PIECE = 64 * 1024


async def _bounded_tcp_write(stream: Any, data: bytes) -> None:
    """libp2p's socket write (``TrioTCPStream.write``: under the stream's write lock, a broken
    connection raised as ``ConnectionClosedError``, a locally closed one ignored), given up when
    the peer takes no :data:`SOCKET_WRITE_PIECE` for :data:`SOCKET_WRITE_STALL_S`: the socket is
    then closed (part of a message may be on the wire, so the connection cannot go on), which
    fails its readers and writers and frees its locks."""
    view = memoryview(data)
    async with stream.write_lock:
        for offset in range(0, len(view), SOCKET_WRITE_PIECE):
            with trio.move_on_after(SOCKET_WRITE_STALL_S) as stalled:
                try:
                    await stream.stream.send_all(view[offset : offset + SOCKET_WRITE_PIECE])
                except trio.BrokenResourceError as exc:
                    raise ConnectionClosedError(
                        f"TCP connection reset by remote peer: {exc}", transport="tcp"
                    ) from exc
                except trio.ClosedResourceError:
                    return
            if stalled.cancelled_caught:
                with trio.CancelScope(shield=True):
                    await stream.stream.aclose()
                raise ConnectionClosedError(
                    f"the peer took no bytes for {SOCKET_WRITE_STALL_S:g} s; connection closed",
                    transport="tcp",
                )


_ORIGINAL_HANDLE_INBOUND = libp2p_swarm.Swarm._handle_inbound_connection
_ORIGINAL_UPGRADE_INBOUND = libp2p_swarm.Swarm.upgrade_inbound_raw_conn
_ORIGINAL_ADD_CONN = libp2p_swarm.Swarm.add_conn

#: The socket stream libp2p's handler of one inbound connection was given, in that handler's task
#: (workaround 34).
_INBOUND_STREAM: ContextVar[object | None] = ContextVar("dcent_inbound_stream", default=None)


class InboundConnectionClosed(SwarmException):
    """An inbound connection ended: how its handler leaves libp2p's (workaround 34)."""


async def _handle_inbound_connection(swarm: Any, read_write_closer: Any, maddr: Any) -> None:
    """libp2p's handler of an accepted TCP connection, which holds one place of the swarm's
    inbound cap (``max_connections - min_connections``, ``2 * max_peers`` for us) from the
    handshake on; its stream is noted so that its upgrade returns when it closes (below)."""
    _INBOUND_STREAM.set(read_write_closer)  # this handler's task only: each task has its own context
    await _ORIGINAL_HANDLE_INBOUND(swarm, read_write_closer, maddr)


async def _upgrade_inbound_until_closed(swarm: Any, raw_conn: Any, maddr: Any) -> Any:
    """libp2p's upgrade of an inbound connection; in that connection's own handler, then a wait
    for the connection to close (workaround 34).

    After the upgrade libp2p's handler waited for the swarm to stop ("keep handler alive"), holding
    its place of the inbound cap and every object of the connection long after the connection had
    closed: a node accepted ``2 * max_peers`` inbound connections in its life, then closed every
    later one before its handshake, and peers that redialled it (after a ban, a dropped
    connection, a restart) could never get in again. Raising here, once the connection has closed,
    ends the handler as a failed upgrade does: libp2p closes the raw connection again (a no-op)
    and gives the place back. Any other upgrade (a responder dial for hole punching; we make
    none) returns as before."""
    muxed_conn = await _ORIGINAL_UPGRADE_INBOUND(swarm, raw_conn, maddr)
    stream = _INBOUND_STREAM.get()
    if stream is None or getattr(raw_conn, "stream", None) is not stream:
        return muxed_conn
    closed = getattr(muxed_conn, "event_closed", None)  # yamux's: set by every close path
    if closed is not None:
        await closed.wait()
    raise InboundConnectionClosed(f"inbound connection from {muxed_conn.peer_id} closed")


async def _add_conn_releasing_its_scope(swarm: Any, muxed_conn: Any, direction: str = "unknown") -> Any:
    """libp2p's registration of a connection; a connection it refuses gives back the place it took
    in the resource manager's count of connections (workaround 34).

    The upgrade takes that place and hangs it on the muxed connection for the swarm connection to
    give back when it closes; a refusal before the swarm connection exists (libp2p's per-peer,
    per-direction or total limits of established connections) closed the muxed connection and
    kept the place for good. Every place counts against the manager's 1,000 connections, and at
    1,000 it refuses every connection. The scope's ``close`` is idempotent, so one the swarm
    connection already gave back is not given back twice."""
    try:
        return await _ORIGINAL_ADD_CONN(swarm, muxed_conn, direction)
    except BaseException:
        scope = getattr(muxed_conn, "_resource_scope", None)
        if scope is not None:
            scope.close()
        raise


#: How long the signed peer record pubsub attaches to every RPC is reused before libp2p is asked
#: again (which rebuilds the host's address list to see whether it changed), and how long a
#: peer's record, once checked, is taken on its bytes before it is checked (and its address book
#: entry refreshed) again.
SIGNED_RECORD_REUSE_S = 10.0
#: Peers whose accepted record is remembered, per host.
SIGNED_RECORD_PEERS = 1024


class SignedRecordCache:
    """Pubsub's signed peer records, signed and checked once instead of on every RPC.

    py-libp2p's pubsub attaches the host's signed peer record to every RPC it sends, after
    rebuilding the host's address list to compare (``env_to_send_in_RPC``, ~0.5 ms), and checks
    the Ed25519 signature of the record on every RPC it receives, before looking at the message
    (``maybe_consume_signed_record``): a CPU profile of a validator found these two at 5% of its CPU at
    250 tx/s and ~8% on a near-idle chain, more than consensus (issue 14). Here the record sent is reused for
    ``SIGNED_RECORD_REUSE_S``, and a received record byte-identical to the last one accepted from
    the same peer within as long is accepted without checking it again: the signature covers
    those bytes, so it is as valid as it was. A new record (a changed address, or any other bytes)
    is checked as before, and so is the same one once that time has passed (which refreshes the
    address book's entry, kept 2 hours by libp2p).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._sent: weakref.WeakKeyDictionary[Any, tuple[float, tuple[bytes, bool]]] = (
            weakref.WeakKeyDictionary()
        )
        #: Per host, per peer: the record last accepted and when it was checked.
        self._accepted: weakref.WeakKeyDictionary[Any, dict[Any, tuple[bytes, float]]] = (
            weakref.WeakKeyDictionary()
        )
        #: Records taken on their bytes, without a signature check.
        self.reused = 0

    def to_send(self, host: Any) -> tuple[bytes, bool]:
        now = self._clock()
        held = self._sent.get(host)
        if held is not None and now - held[0] < SIGNED_RECORD_REUSE_S:
            return held[1][0], False
        envelope = env_to_send_in_RPC(host)
        self._sent[host] = (now, envelope)
        return envelope

    def consume(self, msg: Any, host: Any, peer_id: Any = None) -> bool:
        if not msg.HasField("senderRecord"):
            return True
        accepted = self._accepted.setdefault(host, {})
        record: bytes = msg.senderRecord
        now = self._clock()
        held = accepted.get(peer_id) if peer_id is not None else None
        if held is not None and held[0] == record and now - held[1] < SIGNED_RECORD_REUSE_S:
            self.reused += 1
            return True
        if not maybe_consume_signed_record(msg, host, peer_id):
            accepted.pop(peer_id, None)
            return False
        if peer_id is not None:
            accepted.pop(peer_id, None)
            accepted[peer_id] = (record, now)  # newest last: the oldest go first past the bound
            while len(accepted) > SIGNED_RECORD_PEERS:
                del accepted[next(iter(accepted))]
        return True


_SIGNED_RECORDS = SignedRecordCache()


def apply() -> None:
    """Set the overrides (idempotent)."""
    libp2p_swarm._HAPPY_EYEBALLS_DELAY = HAPPY_EYEBALLS_DELAY_S
    libp2p_health.ConnectionHealthMonitor._ping_connection = _tolerant_ping  # type: ignore[method-assign,assignment]
    libp2p_yamux.MAX_MESSAGE_SIZE = YAMUX_MAX_FRAME_BYTES
    if not YAMUX_RELEASE_ON_READ and os.environ.get("PY_YAMUX_RELEASE_ON_READ") is None:
        libp2p_yamux.YamuxStream._auto_tune_and_send_window_update = _half_window_credit  # type: ignore[method-assign,assignment]
    libp2p_pubsub.Pubsub._teardown_if_connected = _teardown_without_race  # type: ignore[method-assign,assignment]
    libp2p_gossipsub.GossipSub.mesh_heartbeat = _mesh_heartbeat_with_prune_backoff  # type: ignore[method-assign,assignment]
    libp2p_gossipsub.GossipSub._perform_opportunistic_grafting = _no_opportunistic_grafting  # type: ignore[method-assign,assignment]
    libp2p_gossipsub.GossipSub._select_peers_for_pruning = mesh_quota.select_peers_to_prune  # type: ignore[method-assign,assignment]
    libp2p_gossipsub.GossipSub.handle_graft = _handle_graft_with_trust_rule  # type: ignore[method-assign,assignment]
    libp2p_gossipsub.GossipSub._do_px = _no_peer_exchange  # type: ignore[method-assign,assignment]
    libp2p_gossipsub.GossipSub.handle_rpc = _handle_rpc_normalized  # type: ignore[method-assign,assignment]
    libp2p_gossipsub.GossipSub.handle_iwant = _handle_iwant_bounded  # type: ignore[method-assign,assignment]
    libp2p_io_trio.TrioTCPStream.write = _bounded_tcp_write  # type: ignore[method-assign,assignment]
    libp2p_swarm.Swarm._handle_inbound_connection = _handle_inbound_connection  # type: ignore[method-assign,assignment]
    libp2p_swarm.Swarm.upgrade_inbound_raw_conn = _upgrade_inbound_until_closed  # type: ignore[method-assign,assignment]
    libp2p_swarm.Swarm.add_conn = _add_conn_releasing_its_scope  # type: ignore[method-assign,assignment]
    yamux_send.install()
    for module in (libp2p_pubsub, libp2p_gossipsub):
        module.env_to_send_in_RPC = _SIGNED_RECORDS.to_send  # type: ignore[attr-defined]
        module.maybe_consume_signed_record = _SIGNED_RECORDS.consume  # type: ignore[attr-defined]
    global _YAMUX_FROZEN
    if _YAMUX_FROZEN is None:  # idempotent: freeze libp2p's own functions' answers, once
        _YAMUX_FROZEN = _frozen_yamux_settings()
        for name, value in _YAMUX_FROZEN.items():
            setattr(libp2p_yamux, name, _constant(value))


_YAMUX_FROZEN: dict[str, Any] | None = None


def _constant(value: Any) -> Any:
    def answer() -> Any:
        return value

    return answer
