"""The blob server's send budget against clients that ask and stop reading, on in-memory hosts
and trio's virtual clock: whose memory is taken back, and when, is decided by rates over
seconds, which a real clock on a loaded machine would make a race. The clock jumps only once
nothing has run for 20 ms of real time (see the fixture)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import trio
import trio.testing

from node.blobs.server import BlobServer
from node.blobs.service import BlobService
from node.blobs.settings import BlobSettings
from node.p2p.framing import Stream
from node.p2p.memory import MemoryHost, MemoryNetwork
from protocol.blobs.merkle import MIN_CHUNK_SIZE
from protocol.blobs.wire import BLOB_PROTOCOL_ID, MAX_REPLY_BYTES, BlobReply, BlobRequest
from tests.integration.conftest import TEST_BACKOFF, seed_of
from tests.waiting import wait_until

CHUNKS = 32
SETTINGS = BlobSettings(
    chunk_size=MIN_CHUNK_SIZE,
    max_send_bytes=2 * MIN_CHUNK_SIZE,
    max_streams_per_peer=8,
    idle_timeout_s=3600.0,
)


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    # Not 0: the server reads its disk in worker threads, and a clock that jumps whenever every
    # task waits would jump while a thread reads (hours, past every timeout, before the test
    # begins). Idle for 20 ms of real time, nothing is left running.
    return trio.testing.MockClock(autojump_threshold=0.02)


async def start_host(nursery: trio.Nursery, network: MemoryNetwork, label: str) -> MemoryHost:
    host = network.create_host(seed_of(label), reconnect=TEST_BACKOFF)
    await nursery.start(host.run)
    return host


def blocked(server: BlobServer) -> bool:
    """Both non-readers' pipes are full (an in-memory pipe holds 16 writes: the reply header and
    15 chunks) and each holds a chunk it cannot send: the whole budget. Before that, the budget
    may read 0 for a moment while frames are still moving."""
    return server.chunks_sent == 2 * 15 and server.send_budget.free == 0


async def ask_for_every_chunk(stream: Stream, cid: bytes) -> None:
    for start in range(0, CHUNKS, 16):
        await stream.send_frame(BlobRequest.chunks(cid, start, 16).encode())


async def test_clients_that_stop_reading_lose_the_send_budget_to_one_that_reads(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery, tmp_path: Path
) -> None:
    """Two clients ask for 32 chunks each and read nothing: their frames fill the pipes and hold
    the node's whole send budget (2 chunks). A third client asks and reads: while it waits for
    memory, the holders' rates decay below the threshold and one is evicted for it, and it gets
    every chunk; at no time is more than the budget held."""
    network = MemoryNetwork()
    server_host = await start_host(nursery, network, "server")
    blobs = BlobService(host=server_host, root=tmp_path / "server", settings=SETTINGS)
    await nursery.start(blobs.run)
    client = await start_host(nursery, network, "client")
    await client.connect(server_host.listen_addrs[0])
    data = (bytes(range(251)) * (CHUNKS * MIN_CHUNK_SIZE // 251 + 1))[: CHUNKS * MIN_CHUNK_SIZE]
    (tmp_path / "file").write_bytes(data)
    info, _ = await blobs.put(tmp_path / "file", pin=True)
    server = blobs.server
    assert server is not None

    idle = [await client.open_stream(server_host.peer_id, BLOB_PROTOCOL_ID) for _ in range(2)]
    for stream in idle:
        await ask_for_every_chunk(stream, info.cid)
    await wait_until(lambda: blocked(server), what="the send budget held by non-readers")
    reader = await client.open_stream(server_host.peer_id, BLOB_PROTOCOL_ID)
    await ask_for_every_chunk(reader, info.cid)
    received = bytearray()
    for _ in range(CHUNKS // 16):
        assert BlobReply.decode(await reader.receive_frame(MAX_REPLY_BYTES)).ok
        for _ in range(16):
            received += await reader.receive_frame(MIN_CHUNK_SIZE)
    assert bytes(received) == data
    assert server.places.evictions >= 1
    assert server.send_budget.peak <= SETTINGS.max_send_bytes


async def test_without_a_rate_threshold_nobody_is_evicted_and_the_reader_waits(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery, tmp_path: Path
) -> None:
    """The control: with eviction off (0), the same reader is still waiting a minute later (the
    first test's reader had its memory within seconds)."""
    network = MemoryNetwork()
    server_host = await start_host(nursery, network, "server")
    settings = dataclasses.replace(SETTINGS, evict_below_bytes_per_s=0)
    blobs = BlobService(host=server_host, root=tmp_path / "server", settings=settings)
    await nursery.start(blobs.run)
    client = await start_host(nursery, network, "client")
    await client.connect(server_host.listen_addrs[0])
    (tmp_path / "file").write_bytes(bytes(CHUNKS * MIN_CHUNK_SIZE))
    info, _ = await blobs.put(tmp_path / "file", pin=True)
    server = blobs.server
    assert server is not None
    for _ in range(2):
        await ask_for_every_chunk(await client.open_stream(server_host.peer_id, BLOB_PROTOCOL_ID), info.cid)
    await wait_until(lambda: blocked(server), what="the send budget held by non-readers")
    reader = await client.open_stream(server_host.peer_id, BLOB_PROTOCOL_ID)
    await ask_for_every_chunk(reader, info.cid)
    with trio.move_on_after(60):
        assert BlobReply.decode(await reader.receive_frame(MAX_REPLY_BYTES)).ok
        await reader.receive_frame(MIN_CHUNK_SIZE)
        pytest.fail("a chunk came with the budget held by clients that read nothing")
    assert server.places.evictions == 0
