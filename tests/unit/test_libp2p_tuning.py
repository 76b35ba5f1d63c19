"""The health-ping tolerance (issue 14): one late ping must not abort a connection. Yamux's
window credit in batches (issue 15): not a WINDOW_UPDATE frame for every read. Pubsub's signed
peer records built and checked once per interval, not on every RPC (issue 14). A socket write the
peer never takes closes its connection instead of holding the connection's write lock for good."""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

import libp2p.io.trio as libp2p_io_trio
import libp2p.pubsub.gossipsub as libp2p_gossipsub
import libp2p.pubsub.pubsub as libp2p_pubsub
import libp2p.stream_muxer.yamux.yamux as libp2p_yamux
import pytest
import trio
import trio.testing
from libp2p.io.exceptions import ConnectionClosedError
from libp2p.network.health.ping_probe import ConnectionPingResult
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11, GossipSub
from libp2p.security.noise.io import MAX_PLAINTEXT_LENGTH as NOISE_MAX_PLAINTEXT

from node.p2p import libp2p_tuning
from node.p2p.libp2p_tuning import PingTolerance
from tests.waiting import spend_virtual_time

FAILED = ConnectionPingResult(success=False)
OK = ConnectionPingResult(success=True, rtt_ms=1.0, protocol_supported=True)


class Conn:
    """Stands in for a libp2p connection: only its identity matters."""


def test_failures_below_the_threshold_are_reported_as_no_measurement() -> None:
    tolerance = PingTolerance(3)
    conn = Conn()
    assert tolerance.judge(conn, FAILED).skipped
    assert tolerance.judge(conn, FAILED).skipped
    third = tolerance.judge(conn, FAILED)
    assert not third.skipped and not third.success  # now libp2p may abort it


def test_a_successful_ping_starts_the_count_over() -> None:
    tolerance = PingTolerance(2)
    conn = Conn()
    assert tolerance.judge(conn, FAILED).skipped
    assert tolerance.judge(conn, OK) is OK
    assert tolerance.judge(conn, FAILED).skipped
    assert not tolerance.judge(conn, FAILED).skipped


def test_connections_are_counted_apart() -> None:
    tolerance = PingTolerance(2)
    a, b = Conn(), Conn()
    assert tolerance.judge(a, FAILED).skipped
    assert tolerance.judge(b, FAILED).skipped
    assert not tolerance.judge(a, FAILED).skipped


def test_skipped_pings_pass_through_and_one_means_libp2ps_behaviour() -> None:
    skipped = ConnectionPingResult(success=False, skipped=True)
    assert PingTolerance(3).judge(Conn(), skipped) is skipped
    assert PingTolerance(1).judge(Conn(), FAILED) is FAILED
    with pytest.raises(ValueError):
        PingTolerance(0)


class _Connection:
    """What a yamux stream's window bookkeeping reads of its connection."""

    def __init__(self) -> None:
        self.stream_buffers: dict[int, bytearray] = {}

    def rtt(self) -> float:
        return 0.001


async def _window_updates_over_reads(reads: int, size: int) -> int:
    """Window updates a yamux stream sends while ``reads`` frames of ``size`` bytes arrive and
    are read at once (a bulk stream read as fast as it arrives)."""
    stream = libp2p_yamux.YamuxStream(1, _Connection(), True)  # type: ignore[arg-type]
    updates: list[int] = []

    async def record(increment: int, skip_lock: bool = False) -> None:
        updates.append(increment)

    stream.send_window_update = record  # type: ignore[method-assign]
    for _ in range(reads):
        stream.recv_window -= size  # the frame arrived ...
        await stream._auto_tune_and_send_window_update(bytes_read=size)  # ... and was read
    return len(updates)


async def test_yamux_grants_credit_in_batches_not_on_every_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PY_YAMUX_RELEASE_ON_READ", raising=False)
    # libp2p's own behaviour first, whatever an earlier test (a started host) applied.
    for name, read in libp2p_tuning._LIBP2P_YAMUX_SETTINGS.items():
        monkeypatch.setattr(libp2p_yamux, name, read)
    monkeypatch.setattr(
        libp2p_yamux.YamuxStream, "_auto_tune_and_send_window_update", libp2p_tuning.LIBP2P_WINDOW_CREDIT
    )
    per_read = await _window_updates_over_reads(200, 7000)
    assert per_read == 200  # libp2p's default: one WINDOW_UPDATE frame per read
    monkeypatch.setattr(libp2p_yamux, "_yamux_release_on_read", lambda: False)
    # Without release-on-read libp2p's "partial slack" rule still credits about every other read.
    assert await _window_updates_over_reads(200, 7000) > 90
    monkeypatch.setattr(libp2p_tuning, "_YAMUX_FROZEN", None)
    for name in libp2p_tuning._frozen_yamux_settings():  # undone after the test
        monkeypatch.setattr(libp2p_yamux, name, getattr(libp2p_yamux, name))
    libp2p_tuning.apply()
    assert not libp2p_yamux._yamux_release_on_read()
    # go-yamux's rule: credit once half the 256 KiB window is read, every 19 reads of 7,000 bytes
    # at most (fewer once libp2p's auto-tune has grown the window of a stream read this fast).
    assert 0 < await _window_updates_over_reads(200, 7000) <= 200 // 19


async def test_a_sender_never_waits_on_credit_for_what_was_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """The batched credit cannot stall a stream: whenever the reader has read everything that
    arrived, the sender has window left (here 4 MiB crosses in lock step, frame sizes varied)."""
    monkeypatch.delenv("PY_YAMUX_RELEASE_ON_READ", raising=False)
    monkeypatch.setattr(libp2p_tuning, "_YAMUX_FROZEN", None)
    for name in libp2p_tuning._frozen_yamux_settings():
        monkeypatch.setattr(libp2p_yamux, name, getattr(libp2p_yamux, name))
    monkeypatch.setattr(
        libp2p_yamux.YamuxStream,
        "_auto_tune_and_send_window_update",
        libp2p_yamux.YamuxStream._auto_tune_and_send_window_update,
    )
    libp2p_tuning.apply()
    stream = libp2p_yamux.YamuxStream(1, _Connection(), True)  # type: ignore[arg-type]
    send_window = stream.recv_window
    credits: list[int] = []

    async def credit(increment: int, skip_lock: bool = False) -> None:
        credits.append(increment)

    stream.send_window_update = credit  # type: ignore[method-assign]
    moved = 0
    for step in range(4000):
        size = min(send_window, 200 + (step * 7919) % 5000)
        assert size > 0, f"sender out of credit after {moved} bytes, all of them read"
        send_window -= size
        stream.recv_window -= size
        await stream._auto_tune_and_send_window_update(bytes_read=size)
        send_window += sum(credits)
        credits.clear()
        moved += size
    assert moved > 4 << 20
    assert send_window <= stream.target_recv_window  # never credited beyond the window


def test_the_environment_still_decides_yamux_credit_release(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PY_YAMUX_RELEASE_ON_READ", "1")
    assert libp2p_tuning._frozen_yamux_settings()["_yamux_release_on_read"] is True
    monkeypatch.delenv("PY_YAMUX_RELEASE_ON_READ")
    frozen = libp2p_tuning._frozen_yamux_settings()
    assert frozen["_yamux_release_on_read"] is libp2p_tuning.YAMUX_RELEASE_ON_READ is False
    assert frozen["_yamux_data_read_timeout"] == 60.0  # libp2p's own answer, read once


class _Sink:
    """A yamux connection that records the frames its streams write."""

    def __init__(self) -> None:
        self.stream_buffers: dict[int, bytearray] = {}
        self.frames: list[int] = []

    def rtt(self) -> float:
        return 0.001

    async def _write_frame(self, data: bytes) -> None:
        self.frames.append(len(data))


async def test_every_yamux_frame_fits_one_noise_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(libp2p_yamux, "MAX_MESSAGE_SIZE", libp2p_yamux.MAX_MESSAGE_SIZE)  # undone after
    libp2p_tuning.apply()
    sink = _Sink()
    stream = libp2p_yamux.YamuxStream(1, sink, True)  # type: ignore[arg-type]
    stream.send_window = 1 << 20
    await stream.write(bytes(1 << 20))
    assert sum(sink.frames) == (1 << 20) + libp2p_yamux.HEADER_SIZE * len(sink.frames)
    # libp2p's own frames are 65,536 bytes: 17 more than a Noise message holds.
    assert max(sink.frames) == NOISE_MAX_PLAINTEXT


class _Rpc:
    """What pubsub hands ``maybe_consume_signed_record``: an RPC that may carry a sender record."""

    def __init__(self, record: bytes | None) -> None:
        self.senderRecord = record or b""

    def HasField(self, name: str) -> bool:  # protobuf's name
        return name == "senderRecord" and bool(self.senderRecord)


class _Checks:
    """Stands in for libp2p's signature check of a record: counts them, refuses b"forged"."""

    def __init__(self) -> None:
        self.checked: list[tuple[bytes, str]] = []

    def __call__(self, msg: _Rpc, host: object, peer_id: str | None = None) -> bool:
        self.checked.append((msg.senderRecord, str(peer_id)))
        return msg.senderRecord != b"forged"


class _Host:
    pass


def signed_records(
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[libp2p_tuning.SignedRecordCache, _Checks, list[float]]:
    checks = _Checks()
    monkeypatch.setattr(libp2p_tuning, "maybe_consume_signed_record", checks)
    now = [0.0]
    return libp2p_tuning.SignedRecordCache(clock=lambda: now[0]), checks, now


def test_a_peers_unchanged_signed_record_is_checked_once_per_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cache, checks, now = signed_records(monkeypatch)
    host = _Host()
    assert all(cache.consume(_Rpc(b"record-a"), host, "peer-a") for _ in range(50))
    assert checks.checked == [(b"record-a", "peer-a")]
    assert cache.reused == 49

    now[0] = libp2p_tuning.SIGNED_RECORD_REUSE_S  # the interval has passed: checked (and refreshed) again
    assert cache.consume(_Rpc(b"record-a"), host, "peer-a")
    assert len(checks.checked) == 2


def test_a_new_record_another_peers_copy_and_a_forgery_are_each_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cache, checks, _ = signed_records(monkeypatch)
    host = _Host()
    assert cache.consume(_Rpc(b"record-a"), host, "peer-a")
    assert cache.consume(_Rpc(b"record-a2"), host, "peer-a")  # the peer's address changed
    assert cache.consume(_Rpc(b"record-a2"), host, "peer-b")  # the same bytes from someone else
    assert not cache.consume(_Rpc(b"forged"), host, "peer-a")
    assert not cache.consume(_Rpc(b"forged"), host, "peer-a"), "a refused record is never taken on its bytes"
    assert cache.consume(_Rpc(None), host, "peer-a")  # no record: nothing to check
    assert [record for record, _ in checks.checked] == [
        b"record-a",
        b"record-a2",
        b"record-a2",
        b"forged",
        b"forged",
    ]
    assert cache.consume(_Rpc(b"record-a2"), host, "peer-a")  # after a forgery: checked again
    assert len(checks.checked) == 6


def test_the_record_sent_is_built_once_per_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[object] = []
    monkeypatch.setattr(
        libp2p_tuning, "env_to_send_in_RPC", lambda host: built.append(host) or (b"ours", True)
    )
    now = [0.0]
    cache = libp2p_tuning.SignedRecordCache(clock=lambda: now[0])
    host = _Host()
    assert [cache.to_send(host) for _ in range(3)] == [(b"ours", True), (b"ours", False), (b"ours", False)]
    now[0] = libp2p_tuning.SIGNED_RECORD_REUSE_S
    cache.to_send(host)
    assert len(built) == 2


def test_pubsub_uses_the_cached_records_once_applied() -> None:
    libp2p_tuning.apply()
    for module in (libp2p_pubsub, libp2p_gossipsub):
        assert module.env_to_send_in_RPC == libp2p_tuning._SIGNED_RECORDS.to_send
        assert module.maybe_consume_signed_record == libp2p_tuning._SIGNED_RECORDS.consume


def test_the_peers_remembered_are_bounded_oldest_first(monkeypatch: pytest.MonkeyPatch) -> None:
    cache, checks, _ = signed_records(monkeypatch)
    monkeypatch.setattr(libp2p_tuning, "SIGNED_RECORD_PEERS", 2)
    host = _Host()
    for peer in ("peer-a", "peer-b", "peer-c"):
        cache.consume(_Rpc(b"record-" + peer.encode()), host, peer)
    cache.consume(_Rpc(b"record-peer-c"), host, "peer-c")  # remembered: not checked again
    cache.consume(_Rpc(b"record-peer-a"), host, "peer-a")  # forgotten, the oldest: checked again
    assert [peer for _, peer in checks.checked] == ["peer-a", "peer-b", "peer-c", "peer-a"]


class _RacingStream:
    """A pubsub stream whose reset wakes its reader, which removes the peer first (as libp2p's
    dead-peer handler does)."""

    def __init__(self, pubsub: _TeardownPubsub, peer_id: str) -> None:
        self.pubsub, self.peer_id = pubsub, peer_id

    async def reset(self) -> None:
        del self.pubsub.peers[self.peer_id]


class _TeardownPubsub:
    """What libp2p's ``Pubsub._teardown_if_connected`` touches."""

    def __init__(self, peer_id: str) -> None:
        self.peers: dict[str, _RacingStream] = {peer_id: _RacingStream(self, peer_id)}
        self.forgotten: list[str] = []

    def _forget_all_subscriptions(self, peer_id: str) -> None:
        self.forgotten.append(peer_id)


async def test_a_banned_peer_removed_during_its_teardown_no_longer_ends_pubsub() -> None:
    libp2p_tuning.apply()
    assert libp2p_pubsub.Pubsub._teardown_if_connected is libp2p_tuning._teardown_without_race
    with pytest.raises(KeyError):  # libp2p's own: the KeyError that ended pubsub's service
        await libp2p_tuning._ORIGINAL_TEARDOWN(_TeardownPubsub("peer"), "peer")  # type: ignore[arg-type]
    pubsub = _TeardownPubsub("peer")
    await libp2p_tuning._teardown_without_race(pubsub, "peer")
    assert pubsub.peers == {} and pubsub.forgotten == ["peer"]


async def _socket_pair() -> tuple[Any, trio.SocketStream]:
    """A libp2p TCP stream and the raw trio stream at the other end of a connected pair."""
    near, far = trio.socket.socketpair()
    return libp2p_io_trio.TrioTCPStream(trio.SocketStream(near)), trio.SocketStream(far)


async def test_a_write_the_peer_never_takes_closes_the_connection_after_the_stall_bound(
    autojump_clock: trio.testing.MockClock,
) -> None:
    libp2p_tuning.apply()
    ours, theirs = await _socket_pair()
    started = trio.current_time()
    with pytest.raises(ConnectionClosedError, match="took no bytes"):
        await ours.write(b"x" * (64 * 1024 * 1024))  # far more than the socket buffers hold
    assert trio.current_time() - started == pytest.approx(libp2p_tuning.SOCKET_WRITE_STALL_S)
    assert ours.stream.socket.fileno() == -1  # closed: its readers fail, its locks are free
    await theirs.aclose()


async def test_a_write_the_peer_takes_is_not_bounded(autojump_clock: trio.testing.MockClock) -> None:
    libp2p_tuning.apply()
    ours, theirs = await _socket_pair()
    data = b"y" * (8 * 1024 * 1024)
    received = bytearray()

    async def read_slowly() -> None:
        while len(received) < len(data):
            received.extend(await theirs.receive_some(1 << 16))
            await spend_virtual_time(1)  # slower than the bound in all, never stalled for it

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read_slowly)
        await ours.write(data)
    assert bytes(received) == data
    assert trio.current_time() > libp2p_tuning.SOCKET_WRITE_STALL_S
    await theirs.aclose()
    await ours.close()


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


class _MeshPubsub:
    """What ``GossipSub.mesh_heartbeat`` reads of its pubsub: who subscribes to what."""

    def __init__(self, topic: str, peers: set[Any]) -> None:
        self.peer_topics: dict[str, set[Any]] = {topic: set(peers)}


def _trimmed_then_short_router(heartbeat: Any) -> tuple[set[Any], set[Any]]:
    """A router whose mesh of 5 is trimmed to 3 (degrees 3/2/4), after which two of the three
    kept leave, so the next heartbeat must find 2 more: (the peers trimmed, the peers grafted)."""
    topic = "consensus"
    router = _router_with_mesh(peers=5, in_mesh=5)
    _, pruned = heartbeat(router)
    trimmed = set(pruned)
    kept = router.mesh[topic]
    assert len(trimmed) == 2 and len(kept) == 3
    leaving = set(list(kept)[:2])
    router.mesh[topic] -= leaving
    router.pubsub.peer_topics[topic] -= leaving
    grafted, _ = heartbeat(router)
    return trimmed, set(grafted)


def test_a_peer_trimmed_from_the_mesh_is_not_grafted_again_within_its_backoff() -> None:
    libp2p_tuning.apply()
    heartbeat = libp2p_gossipsub.GossipSub.mesh_heartbeat
    assert heartbeat is libp2p_tuning._mesh_heartbeat_with_prune_backoff
    # libp2p's own: the peers it just pruned are the first it grafts again (the peer, which noted
    # our PRUNE, calls that a GRAFT flood and penalises us)
    trimmed, grafted = _trimmed_then_short_router(libp2p_tuning._ORIGINAL_MESH_HEARTBEAT)
    assert grafted == trimmed
    trimmed, grafted = _trimmed_then_short_router(heartbeat)
    assert grafted == set() and len(trimmed) == 2


def test_the_backoff_kept_for_a_trimmed_peer_outlasts_the_one_it_keeps_by_two_heartbeats() -> None:
    libp2p_tuning.apply()
    router = _router_with_mesh(peers=5, in_mesh=5)
    before = int(time.time())
    _, pruned = router.mesh_heartbeat()
    assert len(pruned) == 2
    slack = 2 * router.heartbeat_interval
    for peer in pruned:
        assert router.back_off["consensus"][peer] >= before + router.prune_back_off + slack


def _router_with_mesh(*, peers: int, in_mesh: int) -> GossipSub:
    """A router (degrees 3/2/4) on topic ``consensus`` with ``peers`` subscribers, the first
    ``in_mesh`` of them in its mesh."""
    ids = [ID(bytes([i]) * 8) for i in range(peers)]
    router = GossipSub(
        protocols=[PROTOCOL_ID_V11], degree=3, degree_low=2, degree_high=4, heartbeat_interval=1
    )
    router.pubsub = _MeshPubsub("consensus", set(ids))  # type: ignore[assignment]
    router.peer_protocol = dict.fromkeys(ids, PROTOCOL_ID_V11)
    router.mesh["consensus"] = set(ids[:in_mesh])
    return router


def test_a_full_enough_mesh_grafts_no_more_peers_at_each_heartbeat() -> None:
    """Every peer scores 0 with libp2p's default score weights: its opportunistic grafting took
    2 more of them every heartbeat (and the trim pruned 2), ours takes none."""
    libp2p_tuning.apply()
    assert (
        libp2p_gossipsub.GossipSub._perform_opportunistic_grafting is libp2p_tuning._no_opportunistic_grafting
    )
    router = _router_with_mesh(peers=8, in_mesh=3)
    wanted: defaultdict[Any, list[str]] = defaultdict(list)
    assert libp2p_tuning._ORIGINAL_OPPORTUNISTIC_GRAFTING(router, "consensus", wanted) == 2
    assert len(wanted) == 2
    router = _router_with_mesh(peers=8, in_mesh=3)
    grafted, pruned = router.mesh_heartbeat()
    assert grafted == {} and pruned == {} and len(router.mesh["consensus"]) == 3
