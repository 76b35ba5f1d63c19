"""Hostile peers against ``/dcent/blob/1.0.0``, on real libp2p hosts over loopback.

As a client: garbage, oversized frames, unknown content ids, ranges out of the blob, more
streams than allowed, a stream left idle. As a server: a manifest that does not hash to the
content id, a leaf list that does not give the root, a chunk frame longer than the chunk.
Every refusal is typed, changes nothing in the store, and the liar ends up banned.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from node.blobs.errors import FetchFailed
from node.blobs.reader import BlobReader
from node.blobs.service import BlobService
from node.blobs.settings import BlobSettings
from node.host import HostConfig, P2PHost
from node.p2p.errors import HostStateError, StreamClosedError, StreamResetError
from node.p2p.framing import FRAME_HEADER, Stream
from protocol.blobs.errors import BadBlobRequest, BlobBusy, BlobNotHere, RangeOutOfBlob
from protocol.blobs.merkle import HASH_LEN, MIN_CHUNK_SIZE, BlobManifest
from protocol.blobs.wire import (
    BLOB_PROTOCOL_ID,
    MAX_MANIFEST_BYTES,
    MAX_REPLY_BYTES,
    MAX_REQUEST_BYTES,
    OP_CHUNKS,
    OP_HAVE,
    OP_LEAVES,
    REPLY_OK_BYTES,
    BlobReply,
    BlobRequest,
)
from tests.integration.conftest import TEST_BACKOFF, seed_of
from tests.waiting import act_every, wait_until

SETTINGS = BlobSettings(chunk_size=MIN_CHUNK_SIZE, max_streams_per_peer=2, idle_timeout_s=1.0)
TRICKLE_S = 1.2
DEADLINE_S = 60


async def start_host(nursery: trio.Nursery, label: str) -> P2PHost:
    host = P2PHost(HostConfig(node_key_seed=seed_of(label), reconnect=TEST_BACKOFF))
    await nursery.start(host.run)
    return host


async def start_service(
    nursery: trio.Nursery, host: P2PHost, root: Path, settings: BlobSettings = SETTINGS
) -> BlobService:
    blobs = BlobService(host=host, root=root, settings=settings)
    await nursery.start(blobs.run)
    return blobs


async def reply_of(stream: Stream) -> BlobReply:
    return BlobReply.decode(await stream.receive_frame(MAX_REPLY_BYTES))


@dataclass
class Served:
    server_host: P2PHost
    blobs: BlobService
    client: P2PHost
    cid: bytes


@pytest.fixture
async def served(nursery: trio.Nursery, tmp_path: Path) -> Served:
    """A serving node with one blob of 5 chunks, and a bare client host connected to it."""
    server_host = await start_host(nursery, "server")
    blobs = await start_service(nursery, server_host, tmp_path / "server")
    client = await start_host(nursery, "client")
    await client.connect(server_host.listen_addrs[0])
    (tmp_path / "file").write_bytes(bytes(range(256)) * (5 * MIN_CHUNK_SIZE // 256))
    info, _ = await blobs.put(tmp_path / "file", pin=True)
    return Served(server_host, blobs, client, info.cid)


async def test_garbage_gets_a_typed_refusal_and_the_end_of_the_stream(served: Served) -> None:
    server_host, blobs, client = served.server_host, served.blobs, served.client
    before = blobs.list()
    with trio.fail_after(DEADLINE_S):
        stream = await client.open_stream(server_host.peer_id, BLOB_PROTOCOL_ID)
        await stream.send_frame(b"\x93not a request")
        reply = await reply_of(stream)
        assert reply.code == BadBlobRequest.code and "malformed" in reply.message
        with pytest.raises(StreamClosedError):
            await stream.receive_frame(MAX_REPLY_BYTES)
    assert blobs.list() == before


async def test_an_oversized_request_frame_resets_the_stream_before_its_body_is_read(served: Served) -> None:
    server_host, client = served.server_host, served.client
    with trio.fail_after(DEADLINE_S):
        stream = await client.open_stream(server_host.peer_id, BLOB_PROTOCOL_ID)
        await stream.send_frame(b"x" * (MAX_REQUEST_BYTES + 1))
        with pytest.raises((StreamResetError, StreamClosedError)):
            await stream.receive_frame(MAX_REPLY_BYTES)
        # The connection and the server are fine: a new stream is served.
        again = await client.open_stream(server_host.peer_id, BLOB_PROTOCOL_ID)
        await again.send_frame(BlobRequest.have(bytes(32)).encode())
        assert (await reply_of(again)).code == BlobNotHere.code


async def test_unknown_blobs_and_out_of_range_requests_are_answered_and_the_stream_goes_on(
    served: Served,
) -> None:
    server_host, client, cid = served.server_host, served.client, served.cid
    with trio.fail_after(DEADLINE_S):
        stream = await client.open_stream(server_host.peer_id, BLOB_PROTOCOL_ID)
        await stream.send_frame(BlobRequest.have(bytes(32)).encode())
        assert (await reply_of(stream)).code == BlobNotHere.code
        await stream.send_frame(BlobRequest.chunks(cid, 4, 2).encode())  # chunks 4 and 5 of 0..4
        assert (await reply_of(stream)).code == RangeOutOfBlob.code
        await stream.send_frame(BlobRequest.leaves(cid, 5, 1).encode())
        assert (await reply_of(stream)).code == RangeOutOfBlob.code
        await stream.send_frame(BlobRequest.have(cid).encode())
        assert (await reply_of(stream)).ok
        manifest = BlobManifest.decode(await stream.receive_frame(MAX_MANIFEST_BYTES))
        assert manifest.content_id() == cid
        await stream.send_frame(BlobRequest.chunks(cid, 4, 1).encode())
        assert (await reply_of(stream)).ok
        assert len(await stream.receive_frame(MIN_CHUNK_SIZE)) == manifest.chunk_length(4)


async def test_streams_beyond_the_per_peer_limit_are_refused_busy(served: Served) -> None:
    server_host, blobs, client, cid = served.server_host, served.blobs, served.client, served.cid
    with trio.fail_after(DEADLINE_S):
        held = []
        for _ in range(SETTINGS.max_streams_per_peer):
            stream = await client.open_stream(server_host.peer_id, BLOB_PROTOCOL_ID)
            await stream.send_frame(BlobRequest.have(cid).encode())
            assert (await reply_of(stream)).ok
            await stream.receive_frame(MAX_MANIFEST_BYTES)
            held.append(stream)
        assert blobs.server is not None and blobs.server.open_streams == SETTINGS.max_streams_per_peer
        extra = await client.open_stream(server_host.peer_id, BLOB_PROTOCOL_ID)
        assert (await reply_of(extra)).code == BlobBusy.code
        await held[0].close()
        await wait_for_streams(blobs, SETTINGS.max_streams_per_peer - 1)
        freed = await client.open_stream(server_host.peer_id, BLOB_PROTOCOL_ID)
        await freed.send_frame(BlobRequest.have(cid).encode())
        assert (await reply_of(freed)).ok


async def wait_for_streams(blobs: BlobService, count: int) -> None:
    server = blobs.server
    assert server is not None
    await wait_until(lambda: server.open_streams == count, what=f"{count} open blob streams")


async def test_an_idle_stream_is_closed_and_its_slot_freed(served: Served) -> None:
    server_host, blobs, client = served.server_host, served.blobs, served.client
    with trio.fail_after(DEADLINE_S):
        stream = await client.open_stream(server_host.peer_id, BLOB_PROTOCOL_ID)
        await wait_for_streams(blobs, 1)
        with pytest.raises(StreamClosedError):
            await stream.receive_frame(MAX_REPLY_BYTES)  # the server gives up after idle_timeout_s
        await wait_for_streams(blobs, 0)


async def test_a_stream_asking_only_for_blobs_we_lack_is_closed_however_often_it_asks(
    served: Served,
) -> None:
    """Made-up identities held every slot with a "have" for a random content id every 29 s; a
    "not here" no longer keeps a stream alive, so the slot frees after idle_timeout_s (1 s)."""
    server_host, blobs, client = served.server_host, served.blobs, served.client
    stream = await client.open_stream(server_host.peer_id, BLOB_PROTOCOL_ID)
    answers: list[int] = []

    async def ask_for_nothing() -> bool:
        try:
            await stream.send_frame(BlobRequest.have(bytes(32)).encode())
            answers.append((await reply_of(stream)).code)
        except (StreamClosedError, StreamResetError, HostStateError):
            return False
        return True

    with trio.fail_after(DEADLINE_S):
        await act_every(SETTINGS.idle_timeout_s / 4, ask_for_nothing)  # the attacker's pace
    assert answers and set(answers) == {BlobNotHere.code}
    await wait_for_streams(blobs, 0)


async def test_a_fetcher_told_busy_asks_again_and_gets_the_blob(served: Served, tmp_path: Path) -> None:
    """Busy is not "not here": a fetcher refused for a full server retries within the have
    deadline, and fetches once a slot frees."""
    server_host, blobs, client, cid = served.server_host, served.blobs, served.client, served.cid
    fetching = BlobService(host=client, root=tmp_path / "fetching", settings=SETTINGS)
    async with trio.open_nursery() as nursery:
        await nursery.start(fetching.run)
        with trio.fail_after(DEADLINE_S):
            held = []
            for _ in range(SETTINGS.max_streams_per_peer):  # every slot this peer may have
                stream = await client.open_stream(server_host.peer_id, BLOB_PROTOCOL_ID)
                await stream.send_frame(BlobRequest.leaves(cid, 0, 1).encode())  # served: kept
                assert (await reply_of(stream)).ok
                await stream.receive_frame(HASH_LEN)
                held.append(stream)
            refusals = blobs.server.refusals if blobs.server is not None else {}
            progress = fetching.start_fetch(cid, peers=[server_host.peer_id])
            await wait_until(lambda: refusals.get(BlobBusy.code, 0) >= 1, what="the fetcher told busy")
            for stream in held:
                await stream.close()
            await progress.done.wait()
        assert progress.state == "complete" and progress.error is None
        nursery.cancel_scope.cancel()


async def test_a_client_that_asks_and_does_not_read_loses_its_stream(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    server_host = await start_host(nursery, "server")
    blobs = await start_service(nursery, server_host, tmp_path / "server")
    client = await start_host(nursery, "client")
    await client.connect(server_host.listen_addrs[0])
    (tmp_path / "file").write_bytes(bytes(range(256)) * (32 * MIN_CHUNK_SIZE // 256))  # 2 MiB
    info, _ = await blobs.put(tmp_path / "file", pin=True)
    with trio.fail_after(DEADLINE_S):
        stream = await client.open_stream(server_host.peer_id, BLOB_PROTOCOL_ID)
        # 2 MiB asked for, nothing read: yamux's window (256 KiB) fills and the server's sends stall.
        for start in (0, 16):
            await stream.send_frame(BlobRequest.chunks(info.cid, start, 16).encode())
        await wait_for_streams(blobs, 1)
        await wait_for_streams(blobs, 0)  # dropped after idle_timeout_s without progress
        again = await client.open_stream(server_host.peer_id, BLOB_PROTOCOL_ID)
        await again.send_frame(BlobRequest.have(info.cid).encode())
        assert (await reply_of(again)).ok


async def test_a_newcomer_to_a_full_server_takes_the_place_of_a_stream_fetching_nothing(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """Places are kept by use: a holder that asked "have" for a blob we hold (served, so its
    stream lives for idle_timeout_s) has taken ~70 bytes, and loses its place to a newcomer, its
    oldest stream first."""
    settings = dataclasses.replace(SETTINGS, max_streams=2, idle_timeout_s=30.0)
    server_host = await start_host(nursery, "server")
    blobs = await start_service(nursery, server_host, tmp_path / "server", settings)
    holder, newcomer = await start_host(nursery, "holder"), await start_host(nursery, "newcomer")
    for client in (holder, newcomer):
        await client.connect(server_host.listen_addrs[0])
    (tmp_path / "file").write_bytes(bytes(range(256)) * (5 * MIN_CHUNK_SIZE // 256))
    info, _ = await blobs.put(tmp_path / "file", pin=True)
    with trio.fail_after(DEADLINE_S):
        held = []
        for _ in range(settings.max_streams):
            stream = await holder.open_stream(server_host.peer_id, BLOB_PROTOCOL_ID)
            await stream.send_frame(BlobRequest.have(info.cid).encode())
            assert (await reply_of(stream)).ok
            await stream.receive_frame(MAX_MANIFEST_BYTES)
            held.append(stream)
        answers: list[int] = []

        async def ask_until_served() -> bool:  # the newcomer's retries while told busy
            stream = await newcomer.open_stream(server_host.peer_id, BLOB_PROTOCOL_ID)
            await stream.send_frame(BlobRequest.chunks(info.cid, 0, 1).encode())
            answers.append((await reply_of(stream)).code)
            if answers[-1] == 0:
                assert len(await stream.receive_frame(MIN_CHUNK_SIZE)) == MIN_CHUNK_SIZE
            return answers[-1] != 0

        await act_every(0.05, ask_until_served)
        assert answers[-1] == 0 and set(answers[:-1]) <= {BlobBusy.code}
        assert blobs.server is not None and blobs.server.places.evictions == 1
        with pytest.raises((StreamClosedError, StreamResetError)):
            await held[0].receive_frame(MAX_REPLY_BYTES)  # the oldest holder's stream is closed
        await held[1].send_frame(BlobRequest.have(info.cid).encode())  # the other is still served
        assert (await reply_of(held[1])).ok


async def test_a_leaf_list_stream_reset_by_a_full_server_is_asked_again(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """A full server may give the leaf-list stream's place to another (review 34 F4): the
    fetcher asks the same provider again rather than failing the fetch with its only provider."""
    server_host = await start_host(nursery, "server")
    blobs = await start_service(nursery, server_host, tmp_path / "server")
    (tmp_path / "file").write_bytes(bytes(range(256)) * (5 * MIN_CHUNK_SIZE // 256))
    info, _ = await blobs.put(tmp_path / "file", pin=True)
    assert blobs.server is not None
    serve = blobs.server.handle
    opened: list[str] = []

    async def evicting_the_second_stream(stream: Stream) -> None:  # have, then leaves: reset
        opened.append(stream.peer_id)
        if len(opened) == 2:
            await stream.reset()
            return
        await serve(stream)

    server_host.set_stream_handler(BLOB_PROTOCOL_ID, evicting_the_second_stream)
    fetcher = await fetcher_of(nursery, tmp_path, SETTINGS, [server_host])
    with trio.fail_after(DEADLINE_S):
        progress = await fetcher.fetch(info.cid, peers=[server_host.peer_id])
    assert progress.state == "complete" and len(opened) >= 3
    await fetcher.export(info.cid, tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == (tmp_path / "file").read_bytes()


async def test_a_client_reading_a_chunk_slowly_is_not_dropped_while_it_keeps_taking_bytes(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """The server's send deadline counts from the client's last progress, not from the chunk's
    start (review 36 N2): a 1 MiB chunk read 128 KiB at a time over ~3 s, with a 1 s deadline."""
    settings = dataclasses.replace(SETTINGS, chunk_size=1 << 20)
    server_host = await start_host(nursery, "server")
    blobs = await start_service(nursery, server_host, tmp_path / "server", settings)
    client = await start_host(nursery, "client")
    await client.connect(server_host.listen_addrs[0])
    data = bytes(range(256)) * (4096 * 2)  # 2 MiB: two chunks
    (tmp_path / "file").write_bytes(data)
    info, _ = await blobs.put(tmp_path / "file", pin=True)
    with trio.fail_after(DEADLINE_S):
        stream = await client.open_stream(server_host.peer_id, BLOB_PROTOCOL_ID)
        await stream.send_frame(BlobRequest.chunks(info.cid, 0, 1).encode())
        assert (await reply_of(stream)).ok
        raw = stream._raw  # below the framing: the test reads the chunk's bytes at its own pace
        received = bytearray(stream._pending)
        stream._pending.clear()

        async def read_a_little() -> bool:  # the slow client's pace: 128 KiB every 0.4 s
            while len(received) < FRAME_HEADER.size + (1 << 20):
                piece = await raw.read(128 * 1024)
                received.extend(piece)
                if len(received) % (128 * 1024) < len(piece):
                    return True
            return False

        await act_every(0.4, read_a_little)
    assert bytes(received[FRAME_HEADER.size :]) == data[: 1 << 20]
    assert blobs.server is not None and blobs.server.chunks_sent == 1


# --- hostile servers ---------------------------------------------------------------------------


def hostile_handler(honest: BlobService, lie: str):  # type: ignore[no-untyped-def]
    """A server that answers like ``honest`` except for the one thing it lies about."""

    async def handle(stream: Stream) -> None:
        while True:
            try:
                request = BlobRequest.decode(await stream.receive_frame(MAX_REQUEST_BYTES))
            except StreamClosedError:
                return
            with honest.store.reader(request.cid) as reader:
                manifest = reader.manifest
                await stream.send_frame(REPLY_OK_BYTES)
                if request.op == OP_HAVE:
                    if lie == "manifest":
                        manifest = dataclasses.replace(manifest, size=manifest.size - 1)
                    await stream.send_frame(manifest.encode())
                elif request.op == OP_LEAVES:
                    leaves = reader.read_leaves(request.start, request.count)
                    if lie == "leaves":
                        leaves = bytes(HASH_LEN) + leaves[HASH_LEN:]
                    await stream.send_frame(leaves)
                elif request.op == OP_CHUNKS:
                    if lie == "withhold chunks":  # "yes, coming": a provider that never delivers
                        await trio.sleep_forever()
                    indices = iter(range(request.start, request.start + request.count))

                    async def send_next(
                        reader: BlobReader = reader, indices: Iterator[int] = indices
                    ) -> bool:
                        index = next(indices, None)
                        if index is None:
                            return False
                        chunk = bytes(reader.read_chunk(index))
                        await stream.send_frame(chunk + b"!" if lie == "long chunk" else chunk)
                        return True

                    if lie == "trickle chunks":  # each chunk well inside the stall deadline
                        await act_every(TRICKLE_S, send_next)
                    if lie.startswith("chunk bytes every"):  # "chunk bytes every S s, N at a time"
                        words = lie.split()
                        await send_slowly(stream, reader, indices, float(words[3]), int(words[5]))
                    while await send_next():
                        pass

    return handle


async def send_slowly(
    stream: Stream, reader: BlobReader, indices: Iterator[int], every_s: float, piece: int
) -> None:
    """Send each chunk's frame ``piece`` bytes at a time, one piece every ``every_s``: a slow
    link, below the framing layer (which would send a frame in one write)."""
    for index in indices:
        frame = FRAME_HEADER.pack(len(reader.read_chunk(index))) + bytes(reader.read_chunk(index))
        offsets = iter(range(0, len(frame), piece))

        async def send_piece(offsets: Iterator[int] = offsets, frame: bytes = frame) -> bool:
            offset = next(offsets, None)
            if offset is None:
                return False
            await stream._raw.write(frame[offset : offset + piece])
            return True

        await act_every(every_s, send_piece)


async def slow_provider(
    nursery: trio.Nursery, tmp_path: Path, *, every_s: float, piece: int, chunks: int
) -> tuple[P2PHost, bytes, BlobService, bytes]:
    """A provider of a ``chunks``-chunk blob sending each chunk ``piece`` bytes every
    ``every_s``, and a fetcher whose stall deadline is 0.8 s: (provider, cid, fetcher, data)."""
    data = bytes(range(251)) * (chunks * MIN_CHUNK_SIZE // 251)
    (tmp_path / "file").write_bytes(data)
    host = await start_host(nursery, "slow")
    store = await start_service(nursery, host, tmp_path / "slow")
    info, _ = await store.put(tmp_path / "file", pin=True)
    host.set_stream_handler(
        BLOB_PROTOCOL_ID, hostile_handler(store, f"chunk bytes every {every_s} s, {piece} at a time")
    )
    fetcher = await fetcher_of(nursery, tmp_path, dataclasses.replace(SETTINGS, stall_timeout_s=0.8), [host])
    return host, info.cid, fetcher, data


async def test_a_chunk_slower_in_all_than_the_stall_deadline_arrives_while_its_bytes_keep_coming(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """The fetcher's stall deadline counts from the last 16 KiB of a chunk, not from its start:
    a provider sending 8 KiB every 0.15 s takes 1.2 s for each 64 KiB chunk against a 0.8 s
    deadline, and is the only one there is (before: each chunk timed out, the fetch failed)."""
    host, cid, fetcher, data = await slow_provider(nursery, tmp_path, every_s=0.15, piece=8192, chunks=3)

    with trio.fail_after(DEADLINE_S):
        progress = await fetcher.fetch(cid, peers=[host.peer_id])
    assert progress.state == "complete"
    assert progress.peers[host.peer_id].failures == 0
    await fetcher.export(cid, tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == data


async def test_a_provider_sending_less_than_16_kib_per_stall_period_fails(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """A byte now and then does not keep a chunk alive: 4 KiB every 0.3 s is 16 KiB in 1.2 s,
    past the 0.8 s deadline, so each chunk times out and the fetch fails (were any progress to
    push the deadline, the 64 KiB chunks would arrive in 4.8 s each and it would complete)."""
    host, cid, fetcher, _ = await slow_provider(nursery, tmp_path, every_s=0.3, piece=4096, chunks=2)

    progress = fetcher.start_fetch(cid, peers=[host.peer_id])
    with trio.fail_after(DEADLINE_S), pytest.raises(FetchFailed):
        await fetcher.fetch(cid, peers=[host.peer_id])  # joins the fetch started
    assert progress.state == "failed"
    trickler = progress.peers[host.peer_id]
    assert trickler.chunks == 0 and not trickler.banned and "TooSlowError" in trickler.error


@pytest.mark.parametrize("lie", ["manifest", "leaves", "long chunk"])
async def test_a_lying_server_is_banned_and_the_blob_fetched_from_an_honest_one(
    nursery: trio.Nursery, tmp_path: Path, lie: str
) -> None:
    honest_host = await start_host(nursery, "honest")
    honest = await start_service(nursery, honest_host, tmp_path / "honest")
    liar_host = await start_host(nursery, "liar")
    liar_store = await start_service(nursery, liar_host, tmp_path / "liar")
    fetcher_host = await start_host(nursery, "fetcher")
    fetcher = await start_service(nursery, fetcher_host, tmp_path / "fetcher")
    data = bytes(range(251)) * (40 * MIN_CHUNK_SIZE // 251)  # 40 chunks: more than one peer window
    (tmp_path / "file").write_bytes(data)
    info, _ = await honest.put(tmp_path / "file", pin=True)
    await liar_store.put(tmp_path / "file", pin=True)
    liar_host.set_stream_handler(BLOB_PROTOCOL_ID, hostile_handler(liar_store, lie))
    for host in (honest_host, liar_host):
        await fetcher_host.connect(host.listen_addrs[0])

    with trio.fail_after(DEADLINE_S):
        progress = await fetcher.fetch(info.cid, peers=[liar_host.peer_id, honest_host.peer_id])
    assert progress.state == "complete"
    assert fetcher.scores.banned(liar_host.peer_id)
    assert progress.peers[liar_host.peer_id].banned
    assert progress.peers[liar_host.peer_id].chunks == 0
    await fetcher.export(info.cid, tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == data


async def fetcher_of(
    nursery: trio.Nursery, tmp_path: Path, settings: BlobSettings, providers: list[P2PHost]
) -> BlobService:
    """A fetching node with its own ``settings``, connected to ``providers``."""
    host = await start_host(nursery, "fetcher")
    fetcher = BlobService(host=host, root=tmp_path / "fetcher", settings=settings)
    await nursery.start(fetcher.run)
    for provider in providers:
        await host.connect(provider.listen_addrs[0])
    return fetcher


async def test_chunks_held_by_providers_that_never_deliver_are_fetched_from_a_fast_one(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """Endgame: providers that answer "have" and then sit on the chunks they were asked for are
    no failure while their stall deadline runs (an hour here), yet the fetch ends as soon as the
    honest provider has delivered every chunk, theirs too, without waiting for them."""
    honest_host = await start_host(nursery, "honest")
    honest = await start_service(nursery, honest_host, tmp_path / "honest")
    data = bytes(range(251)) * (48 * MIN_CHUNK_SIZE // 251)
    (tmp_path / "file").write_bytes(data)
    info, _ = await honest.put(tmp_path / "file", pin=True)
    withholders = []
    for label in ("withholder-1", "withholder-2"):
        host = await start_host(nursery, label)
        store = await start_service(nursery, host, tmp_path / label)
        await store.put(tmp_path / "file", pin=True)
        host.set_stream_handler(BLOB_PROTOCOL_ID, hostile_handler(store, "withhold chunks"))
        withholders.append(host)
    patient = dataclasses.replace(SETTINGS, stall_timeout_s=3600.0, max_fetch_peers=3)
    fetcher = await fetcher_of(nursery, tmp_path, patient, [honest_host, *withholders])

    with trio.fail_after(DEADLINE_S):
        progress = await fetcher.fetch(
            info.cid, peers=[honest_host.peer_id, *(host.peer_id for host in withholders)]
        )
    assert progress.state == "complete"
    assert [progress.peers[host.peer_id].chunks for host in withholders] == [0, 0]
    assert progress.peers[honest_host.peer_id].chunks == 48
    await fetcher.export(info.cid, tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == data


async def test_a_provider_trickling_chunks_inside_the_stall_deadline_yields_its_place(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """Two providers, first in line, send a chunk every 1.2 s, inside the 2 s stall deadline:
    never a failure, and they held both places while the honest provider waited for good. Each
    stall period the slowest one, below a peer window, yields its place to the next in line."""
    data = bytes(range(251)) * (48 * MIN_CHUNK_SIZE // 251)
    (tmp_path / "file").write_bytes(data)
    providers = []
    for label in ("trickler-1", "trickler-2", "honest"):
        host = await start_host(nursery, label)
        store = await start_service(nursery, host, tmp_path / label)
        info, _ = await store.put(tmp_path / "file", pin=True)
        if label != "honest":
            host.set_stream_handler(BLOB_PROTOCOL_ID, hostile_handler(store, "trickle chunks"))
        providers.append(host)
    two_places = dataclasses.replace(SETTINGS, stall_timeout_s=2.0, max_fetch_peers=2)
    fetcher = await fetcher_of(nursery, tmp_path, two_places, providers)

    with trio.fail_after(DEADLINE_S):
        progress = await fetcher.fetch(info.cid, peers=[host.peer_id for host in providers])
    assert progress.state == "complete"
    chunks = [progress.peers[host.peer_id].chunks for host in providers]
    assert sum(chunks) == 48 and chunks[2] > 24, chunks  # without the rotation: [24, 24, 0]
    assert not any(progress.peers[host.peer_id].banned for host in providers)


async def test_a_store_opened_around_the_service_outlives_the_service(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    """How the node runs it: the store stays open while every service that uses it unwinds, so a
    job finishing a store call as the node stops does not meet "not running" (which once crashed
    a stopping provider)."""
    host = await start_host(nursery, "server")
    blobs = BlobService(host=host, root=tmp_path / "server", settings=SETTINGS)
    (tmp_path / "file").write_bytes(b"x" * MIN_CHUNK_SIZE)
    async with blobs.opened():
        with pytest.raises(HostStateError):
            async with blobs.opened():
                pass  # a second opening would leave two handles on one index
        async with trio.open_nursery() as services:
            await services.start(blobs.run)
            services.cancel_scope.cancel()
        info, new = await blobs.put(tmp_path / "file")
        assert new and blobs.store.get(info.cid) is not None
        with pytest.raises(HostStateError):
            blobs.start_fetch(info.cid)  # fetching needs the running service
        with trio.CancelScope() as cancelled:
            cancelled.cancel()
            await blobs.fetch(info.cid)  # a cancelled caller is told Cancelled, not "not running"
        assert cancelled.cancelled_caught
    with pytest.raises(HostStateError):
        _ = blobs.store
