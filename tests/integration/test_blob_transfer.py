"""Blobs between real libp2p hosts on 127.0.0.1 (TCP, Noise, yamux), each with its own store:
a 2 GiB transfer in bounded memory, a transfer killed halfway and resumed, a connection broken
mid-transfer, a lying peer, several providers at once, and hostile answers.

Every node is a ``P2PHost`` plus a ``BlobService`` over its own directory, in a cancel scope of
its own so it can be killed and restarted. Waits have deadlines; nothing sleeps.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import trio

from node.blobs.errors import FetchFailed, NoProviders, UnexpectedBlobSize
from node.blobs.files import Bitmap
from node.blobs.partial import PartialBlob
from node.blobs.places import Place
from node.blobs.reader import BlobReader
from node.blobs.server import BlobServer, ChunkObserver
from node.blobs.service import BlobService
from node.blobs.settings import BlobSettings
from node.host import HostConfig, P2PHost
from node.p2p.framing import Stream
from protocol.blobs.merkle import MIN_CHUNK_SIZE
from protocol.blobs.wire import BlobRequest
from tests.blob_helpers import MIB, file_sha256, flip_byte, write_sparse_input
from tests.integration.conftest import TEST_BACKOFF, seed_of
from tests.waiting import wait_until

if TYPE_CHECKING:
    from trio_typing import TaskStatus

#: Small chunks: hundreds of them from a few MiB, so "halfway" and "in flight" mean something.
SMALL = BlobSettings(chunk_size=MIN_CHUNK_SIZE)
DEADLINE_S = 120
#: What the 2 GiB transfer may add to this process's resident memory (both nodes live in it):
#: the fetch window (16 chunks), a chunk per stream on each side, yamux's buffers.
RSS_GROWTH_BOUND_MIB = 160


@dataclass
class BlobNode:
    label: str
    root: Path
    host: P2PHost
    blobs: BlobService
    scope: trio.CancelScope
    stopped: trio.Event
    #: The index of every chunk this node's server sent, in order.
    sent: list[int] = field(default_factory=list)
    #: The same, per receiving peer.
    sent_to: dict[str, list[int]] = field(default_factory=dict)
    #: Called with every chunk this node's server sends.
    hooks: list[ChunkObserver] = field(default_factory=list)

    @property
    def peer_id(self) -> str:
        return self.host.peer_id

    async def kill(self) -> None:
        self.scope.cancel()
        await self.stopped.wait()


class Nodes:
    def __init__(self, nursery: trio.Nursery, root: Path) -> None:
        self._nursery = nursery
        self._root = root

    async def start(
        self, label: str, settings: BlobSettings = SMALL, *, root: Path | None = None
    ) -> BlobNode:
        """A node whose key derives from ``label``, its store in ``root`` (default: by label)."""
        root = root if root is not None else self._root / label
        sent: list[int] = []
        sent_to: dict[str, list[int]] = {}
        hooks: list[ChunkObserver] = []

        def observe(peer: str, cid: bytes, index: int) -> None:
            sent.append(index)
            sent_to.setdefault(peer, []).append(index)
            for hook in hooks:
                hook(peer, cid, index)

        host = P2PHost(HostConfig(node_key_seed=seed_of(label), reconnect=TEST_BACKOFF))
        blobs = BlobService(host=host, root=root, settings=settings, on_chunk_sent=observe)
        stopped = trio.Event()
        scope = await self._nursery.start(_run_node, host, blobs, stopped)
        return BlobNode(label, root, host, blobs, scope, stopped, sent, sent_to, hooks)


async def _run_node(
    host: P2PHost,
    blobs: BlobService,
    stopped: trio.Event,
    *,
    task_status: TaskStatus[trio.CancelScope] = trio.TASK_STATUS_IGNORED,
) -> None:
    try:
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                await nursery.start(host.run)
                await nursery.start(blobs.run)
                task_status.started(scope)
    finally:
        stopped.set()


@pytest.fixture
def nodes(nursery: trio.Nursery, tmp_path: Path) -> Nodes:
    return Nodes(nursery, tmp_path)


async def connect(a: BlobNode, *others: BlobNode) -> None:
    for other in others:
        await a.host.connect(other.host.listen_addrs[0])


async def put(node: BlobNode, source: Path) -> bytes:
    info, _ = await node.blobs.put(source, pin=True)
    return info.cid


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def stored_file(node: BlobNode, cid: bytes) -> Path:
    return node.root / "objects" / cid.hex()[:2] / cid.hex()


@pytest.mark.slow
async def test_two_gib_move_from_one_store_to_another_verified_in_bounded_memory(
    nodes: Nodes, tmp_path: Path
) -> None:
    source = tmp_path / "input-2g"
    expected = write_sparse_input(source, 2048 * MIB, seed=2)
    settings = BlobSettings()  # the defaults: 1 MiB chunks, a 16-chunk window
    a = await nodes.start("big-a", settings)
    b = await nodes.start("big-b", settings)
    await connect(b, a)
    cid = await put(a, source)
    base = rss_mib()
    peak = base

    def sample(_peer: str, _cid: bytes, _index: int) -> None:
        nonlocal peak
        peak = max(peak, rss_mib())  # at every chunk the serving side sends

    a.hooks.append(sample)
    with trio.fail_after(600):
        progress = await b.blobs.fetch(cid)
    assert progress.fetched_chunks == 2048 and progress.fetched_bytes == 2048 * MIB
    assert progress.peers[a.peer_id].chunks == 2048
    assert len(a.sent) == 2048  # each chunk crossed the wire once
    assert await trio.to_thread.run_sync(file_sha256, stored_file(b, cid)) == expected
    growth = peak - base
    assert growth <= RSS_GROWTH_BOUND_MIB, (
        f"RSS grew {growth:.0f} MiB moving 2 GiB (bound {RSS_GROWTH_BOUND_MIB})"
    )


async def test_a_transfer_killed_halfway_resumes_without_resending_verified_chunks(
    nodes: Nodes, tmp_path: Path
) -> None:
    source = tmp_path / "input"
    expected = write_sparse_input(source, 48 * MIB, seed=3, block_every=MIN_CHUNK_SIZE)
    a = await nodes.start("resume-a")
    b = await nodes.start("resume-b")
    await connect(b, a)
    cid = await put(a, source)
    total = 48 * MIB // MIN_CHUNK_SIZE

    fetch = b.blobs.start_fetch(cid)
    with trio.fail_after(DEADLINE_S):
        await wait_until(lambda: len(a.sent) >= total // 2, what="half the chunks sent")
    await b.kill()  # the node dies mid-transfer: its fetch is cancelled with it
    assert fetch.state == "cancelled"
    verified = Bitmap(total, (b.root / "partial" / cid.hex() / "have").read_bytes())
    before = {index for index in range(total) if index in verified}
    assert 0 < len(before) < total

    # It comes back over the same store directory. (With a new peer id, so that what A sends it
    # is told apart from what A's side of the dead connection may still push out.)
    b = await nodes.start("resume-b-again", root=b.root)
    await connect(b, a)
    with trio.fail_after(DEADLINE_S):
        progress = await b.blobs.fetch(cid)
    resent = a.sent_to[b.peer_id]
    assert progress.resumed_chunks == len(before)
    assert progress.fetched_chunks == total - len(before)
    # No chunk verified before the kill crossed the wire again; every missing one did. (A chunk in
    # flight when a loaded machine's health ping drops the connection may cross twice.)
    assert not set(resent) & before
    assert set(resent) == set(range(total)) - before
    assert await trio.to_thread.run_sync(file_sha256, stored_file(b, cid)) == expected


async def test_a_connection_broken_mid_transfer_is_redialled_and_the_fetch_goes_on(
    nodes: Nodes, tmp_path: Path
) -> None:
    source = tmp_path / "input"
    expected = write_sparse_input(source, 32 * MIB, seed=4, block_every=MIN_CHUNK_SIZE)
    a = await nodes.start("break-a")
    b = await nodes.start("break-b")
    await connect(b, a)
    cid = await put(a, source)
    total = 32 * MIB // MIN_CHUNK_SIZE

    fetch = b.blobs.start_fetch(cid)
    with trio.fail_after(DEADLINE_S):
        await wait_until(lambda: len(a.sent) >= total // 2, what="half the chunks sent")
        await a.host.disconnect(b.peer_id)
        cut = len(a.sent)
        await fetch.done.wait()
    assert fetch.error is None and fetch.state == "complete"
    assert fetch.peers[a.peer_id].failures >= 1
    assert fetch.fetched_chunks == total
    before, after = a.sent[:cut], a.sent[cut:]
    # Only chunks in flight at the break (the last window's worth) are sent again.
    again = set(before) & set(after)
    assert again <= set(before[-SMALL.window_chunks :]), f"verified chunks sent again: {sorted(again)}"
    assert set(before) | set(after) == set(range(total))
    assert await trio.to_thread.run_sync(file_sha256, stored_file(b, cid)) == expected


async def test_a_corrupted_chunk_from_a_lying_peer_is_detected_and_fetched_elsewhere(
    nodes: Nodes, tmp_path: Path
) -> None:
    source = tmp_path / "input"
    expected = write_sparse_input(source, 16 * MIB, seed=5, block_every=MIN_CHUNK_SIZE)
    honest = await nodes.start("honest")
    liar = await nodes.start("liar")
    b = await nodes.start("fetcher")
    await connect(b, honest, liar)
    cid = await put(honest, source)
    assert await put(liar, source) == cid
    total = 16 * MIB // MIN_CHUNK_SIZE
    # The liar's disk now holds a wrong byte in every fourth chunk: any run it serves has one.
    corrupted = set(range(0, total, 4))
    for index in corrupted:
        flip_byte(stored_file(liar, cid), index * MIN_CHUNK_SIZE + 100)

    with trio.fail_after(DEADLINE_S):
        progress = await b.blobs.fetch(cid, peers=[liar.peer_id, honest.peer_id])
    assert set(liar.sent) & corrupted, "the liar never served a corrupted chunk"
    assert progress.peers[liar.peer_id].banned
    assert "ChunkMismatch" in progress.peers[liar.peer_id].error
    assert b.blobs.scores.banned(liar.peer_id)
    assert progress.peers[liar.peer_id].chunks + progress.peers[honest.peer_id].chunks == total
    assert await trio.to_thread.run_sync(file_sha256, stored_file(b, cid)) == expected

    # Banned: the next fetch does not even ask it.
    other = tmp_path / "other"
    other.write_bytes(b"another blob" * 1000)
    second = await put(liar, other)
    with trio.fail_after(DEADLINE_S), pytest.raises(NoProviders):
        await b.blobs.fetch(second)


async def test_several_providers_serve_one_fetch_at_once(nodes: Nodes, tmp_path: Path) -> None:
    source = tmp_path / "input"
    expected = write_sparse_input(source, 24 * MIB, seed=6, block_every=MIN_CHUNK_SIZE)
    providers = [await nodes.start(f"provider-{i}") for i in range(3)]
    b = await nodes.start("many-b")
    await connect(b, *providers)
    cids = {await put(provider, source) for provider in providers}
    assert len(cids) == 1
    cid = cids.pop()
    with trio.fail_after(DEADLINE_S):
        progress = await b.blobs.fetch(cid)
    served = {provider.label: progress.peers[provider.peer_id].chunks for provider in providers}
    assert all(count > 0 for count in served.values()), served
    assert sum(served.values()) == 24 * MIB // MIN_CHUNK_SIZE
    # The endgame asks a second provider for chunks still in flight, once each: at most a window
    # of chunks is sent twice.
    sent = sum(len(provider.sent) for provider in providers)
    assert sum(served.values()) <= sent <= sum(served.values()) + SMALL.window_chunks
    assert await trio.to_thread.run_sync(file_sha256, stored_file(b, cid)) == expected


async def test_a_caller_joining_a_running_fetch_keeps_its_pin_and_its_size_check(
    nodes: Nodes, tmp_path: Path
) -> None:
    """A job's output is fetched pinned and with its declared size; an unpinned fetch of the same
    content id already running (an operator's ``blob get``) used to take both away."""
    a = await nodes.start("join-a")
    b = await nodes.start("join-b")
    await connect(b, a)
    cids = []
    for seed in (9, 10):
        source = tmp_path / f"input-{seed}"
        write_sparse_input(source, 2 * MIB, seed=seed, block_every=MIN_CHUNK_SIZE)
        cids.append(await put(a, source))
    outcomes: dict[int, object] = {}

    async def join(which: int, **asks: Any) -> None:
        try:
            outcomes[which] = (await b.blobs.fetch(cids[which], peers=[a.peer_id], **asks)).state
        except UnexpectedBlobSize as exc:
            outcomes[which] = exc

    with trio.fail_after(DEADLINE_S):
        running = [b.blobs.start_fetch(cid, peers=[a.peer_id]) for cid in cids]  # unpinned, no size
        async with trio.open_nursery() as nursery:
            nursery.start_soon(functools.partial(join, 0, pin=True, expected_size=2 * MIB))
            nursery.start_soon(functools.partial(join, 1, expected_size=123))
    assert [progress.state for progress in running] == ["complete", "complete"]  # joined, not redone
    assert outcomes[0] == "complete" and isinstance(outcomes[1], UnexpectedBlobSize)
    first = b.blobs.store.get(cids[0])
    assert first is not None and first.pinned


async def test_fetches_in_a_row_from_one_provider_leave_no_stream_open_there(
    nodes: Nodes, tmp_path: Path
) -> None:
    """A fetch ends its chunk streams gracefully however it ends: a reset left the provider
    blocked reading each one until its idle timeout, and the fifth fetch in a row found every
    one of the four places the provider gives a peer taken ("none of 1 peer(s) asked has")."""
    a = await nodes.start("row-a")
    b = await nodes.start("row-b")
    await connect(b, a)
    for seed in range(SMALL.max_streams_per_peer + 2):
        source = tmp_path / f"input-{seed}"
        write_sparse_input(source, 2 * MIB, seed=20 + seed, block_every=MIN_CHUNK_SIZE)
        cid = await put(a, source)
        with trio.fail_after(DEADLINE_S):
            progress = await b.blobs.fetch(cid)
        assert progress.state == "complete"
    server = a.blobs.server
    assert server is not None
    await wait_until(lambda: server.open_streams == 0, what="no blob stream left open at the provider")


async def test_nobody_has_it_and_every_provider_failing_are_typed_errors(
    nodes: Nodes, tmp_path: Path
) -> None:
    a = await nodes.start("lonely-a")
    b = await nodes.start("lonely-b")
    await connect(b, a)
    with trio.fail_after(DEADLINE_S), pytest.raises(NoProviders):
        await b.blobs.fetch(bytes(32))
    source = tmp_path / "input"
    write_sparse_input(source, 2 * MIB, seed=7, block_every=MIN_CHUNK_SIZE)
    cid = await put(a, source)
    for index in range(2 * MIB // MIN_CHUNK_SIZE):
        flip_byte(stored_file(a, cid), index * MIN_CHUNK_SIZE + 7)  # the only provider lies
    with trio.fail_after(DEADLINE_S), pytest.raises(FetchFailed):
        await b.blobs.fetch(cid)
    info = b.blobs.store.get(cid)
    assert info is not None and not info.complete and info.have_chunks == 0  # nothing bad written


async def test_when_the_only_peer_in_use_is_banned_the_next_provider_takes_over(
    nodes: Nodes, tmp_path: Path
) -> None:
    one_at_a_time = dataclasses.replace(SMALL, max_fetch_peers=1)
    source = tmp_path / "input"
    expected = write_sparse_input(source, 4 * MIB, seed=8, block_every=MIN_CHUNK_SIZE)
    liar = await nodes.start("only-liar")
    honest = await nodes.start("next-honest")
    b = await nodes.start("one-peer-fetcher", one_at_a_time)
    await connect(b, liar, honest)
    cid = await put(liar, source)
    await put(honest, source)
    for index in range(4 * MIB // MIN_CHUNK_SIZE):
        flip_byte(stored_file(liar, cid), index * MIN_CHUNK_SIZE + 1)
    with trio.fail_after(DEADLINE_S):
        progress = await b.blobs.fetch(cid, peers=[liar.peer_id, honest.peer_id])
    assert progress.peers[liar.peer_id].banned and progress.peers[liar.peer_id].chunks == 0
    assert progress.peers[honest.peer_id].chunks == 4 * MIB // MIN_CHUNK_SIZE
    assert await trio.to_thread.run_sync(file_sha256, stored_file(b, cid)) == expected


async def test_chunks_requested_and_not_yet_written_never_exceed_the_window(
    nodes: Nodes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every chunk a provider sends was requested; the fetcher writes chunks in batches (issue
    15): at every send, the chunks sent and not yet written stay within ``window_chunks``."""
    settings = dataclasses.replace(SMALL, window_chunks=6, peer_window_chunks=4, request_chunks=2)
    source = tmp_path / "input"
    expected = write_sparse_input(source, 8 * MIB, seed=9, block_every=MIN_CHUNK_SIZE)
    providers = [await nodes.start(f"window-{i}", settings) for i in range(2)]
    b = await nodes.start("window-b", settings)
    await connect(b, *providers)
    cid = {await put(provider, source) for provider in providers}.pop()
    written: list[int] = []
    batches: list[int] = []
    outstanding: list[int] = []
    real = PartialBlob.verify_and_write_many

    def counting(partial: PartialBlob, batch: Iterable[tuple[int, bytes | bytearray]]) -> tuple[int, object]:
        chunks = list(batch)  # the fetcher passes a generator: each chunk is joined as its turn comes
        done, failure = real(partial, chunks)
        batches.append(len(chunks))
        written.extend(index for index, _ in chunks[:done])
        return done, failure

    monkeypatch.setattr(PartialBlob, "verify_and_write_many", counting)
    sent: list[int] = []

    def on_send(peer: str, cid: bytes, index: int) -> None:
        sent.append(index)
        outstanding.append(len(sent) - len(written))

    for provider in providers:
        provider.hooks.append(on_send)
    with trio.fail_after(DEADLINE_S):
        await b.blobs.fetch(cid)
    assert sorted(set(written)) == list(range(8 * MIB // MIN_CHUNK_SIZE))
    # The endgame may fetch a chunk still in flight from the other provider too: a copy each at
    # most, of no more than a window of chunks.
    assert len(written) - len(set(written)) <= settings.window_chunks
    assert max(outstanding) <= settings.window_chunks, max(outstanding)
    assert max(batches) <= settings.window_chunks
    assert await trio.to_thread.run_sync(file_sha256, stored_file(b, cid)) == expected


async def test_requests_carry_runs_of_chunks_not_one_each(
    nodes: Nodes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each request costs a request and a reply frame and a task group on the server: freeing
    the peer window a chunk at a time must not turn every request into a one-chunk request."""
    settings = SMALL  # 4 chunks a request, 8 a peer, 16 a fetch
    source = tmp_path / "input"
    write_sparse_input(source, 4 * MIB, seed=10, block_every=MIN_CHUNK_SIZE)
    provider = await nodes.start("runs-a", settings)
    b = await nodes.start("runs-b", settings)
    await connect(b, provider)
    cid = await put(provider, source)
    counts: list[int] = []
    real = BlobServer._send_chunks

    async def recording(
        server: BlobServer, stream: Stream, request: BlobRequest, reader: BlobReader, place: Place
    ) -> None:
        counts.append(request.count)
        await real(server, stream, request, reader, place)

    monkeypatch.setattr(BlobServer, "_send_chunks", recording)
    with trio.fail_after(DEADLINE_S):
        await b.blobs.fetch(cid)
    chunks = 4 * MIB // MIN_CHUNK_SIZE
    assert sum(counts) == chunks
    # Runs of request_chunks, save where the fetch window is short of room for a whole one
    # (a writer behind) and the last: one chunk a request averaged about 1.0.
    assert len(counts) <= chunks // 2, counts
    assert max(counts) == settings.request_chunks
