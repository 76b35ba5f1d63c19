"""A node's network handlers, built for real but called directly, without a network (no tests here).

``tests/integration/test_fuzz_handlers.py`` feeds them hostile input. Every part is the node's
own: the consensus driver over a real ledger and SQLite store, its transaction relay and mempool,
the capacity service, the job service (provider and requester sides) and the blob server. Only
the network is missing: streams are in-memory pipes (``node.p2p.memory.pipe_pair``), written by
the test as a peer would write them, and gossip arrives as the host would hand it over.

The chain is ``tests.wire_samples``' (its validator is ``PROVIDER``), so the valid sample
messages are valid here too and the fuzzer's mutations of them reach past the signature checks.
The node itself follows the chain without a validator key; its job service holds
``PROVIDER``'s key (so the sample quote request is one it would quote) and a requester record
for the sample contract (so the sample delivery is one it would countersign).
"""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import trio
import trio.testing

from node.blobs.server import BlobServer
from node.blobs.settings import BlobSettings
from node.blobs.store import BlobStore
from node.executor.select import select_executor
from node.market.records import REQUESTER, JobRecord, JobState
from node.market.requester import STATUS_FRAME_BYTES
from node.market.service import MarketService
from node.market.txlane import TxLane
from node.p2p.errors import P2PError, StreamResetError
from node.p2p.framing import Stream
from node.p2p.guard import GuardSettings, RateLimit
from node.p2p.interface import GossipMessage
from node.p2p.memory import MemoryHost, MemoryNetwork, pipe_pair
from node.services.capacity import CapacityService
from node.services.consensus_driver import (
    PROPOSAL_PROTOCOL,
    SYNC_PROTOCOL,
    SYNC_PUSH_PROTOCOL,
    ConsensusDriver,
)
from node.services.consensus_wire import MAX_MESSAGE_BYTES as CONSENSUS_MAX_BYTES
from node.services.lanes import Lane
from node.services.mempool import Mempool
from node.services.tx_relay import MAX_TX_BATCH_BYTES, TX_PROTOCOL
from node.store import ChainStore
from protocol.blobs.wire import BLOB_PROTOCOL_ID, MAX_REQUEST_BYTES
from protocol.consensus.core import ConsensusCore
from protocol.consensus.effects import ConsensusConfig
from protocol.consensus.ledger_app import LedgerApp
from protocol.errors import ProtocolError
from protocol.hardware import ProbeReport
from protocol.ledger.genesis import genesis_state
from protocol.market.delivery import (
    LOG_PROTOCOL_ID,
    MAX_DELIVERY_HEADER_BYTES,
    MAX_LIVE_FRAME_BYTES,
    RESULT_PROTOCOL_ID,
    STATUS_PROTOCOL_ID,
)
from protocol.market.messages import MARKET_PROTOCOL_ID
from protocol.market.messages import MAX_MESSAGE_BYTES as MARKET_MAX_BYTES
from tests import wire_samples as samples
from tests.fuzz_targets import TARGETS_BY_NAME, Tape, Target, generate, seeds_of

PEER = "12D3KooWPjceQrSwdWXPyLLeABRXmuqt69Rg3sBYbU1Nft9HyQ6X"
#: Blocks are long enough that the sample job (60 s) fits the sample deadline (height 200).
BLOCK_MS_FLOOR = 60_000

StreamHandler = Callable[[Stream], Awaitable[None]]


#: The largest delivery frame a node read before issue 18 (256 MiB of outputs, 8 MiB of logs,
#: 1 MiB more); bounded reads only lower it.
MAX_DELIVERY_BYTES = 265 * 2**20
#: The largest frame each protocol's handler reads (what "over the limit" means for the fuzzer).
FRAME_LIMITS = {
    PROPOSAL_PROTOCOL: CONSENSUS_MAX_BYTES,
    SYNC_PUSH_PROTOCOL: CONSENSUS_MAX_BYTES,
    SYNC_PROTOCOL: 1024,
    TX_PROTOCOL: MAX_TX_BATCH_BYTES,
    MARKET_PROTOCOL_ID: MARKET_MAX_BYTES,
    RESULT_PROTOCOL_ID: MAX_DELIVERY_HEADER_BYTES,  # the header; the body's limit is the contract's
    STATUS_PROTOCOL_ID: STATUS_FRAME_BYTES,
    LOG_PROTOCOL_ID: MAX_LIVE_FRAME_BYTES,
    BLOB_PROTOCOL_ID: MAX_REQUEST_BYTES,
}


@dataclass
class Rig:
    host: MemoryHost
    driver: ConsensusDriver
    capacity: CapacityService
    market: MarketService
    blobs: BlobServer
    store: ChainStore

    # --- the handlers, by protocol ------------------------------------------------------------
    def stream_handlers(self) -> dict[str, tuple[StreamHandler, int]]:
        """Each stream protocol's handler as the services registered it on their host, and the
        largest frame that handler accepts."""
        registered = dict(self.host._handlers)
        registered[BLOB_PROTOCOL_ID] = self.blobs.handle
        assert set(registered) == set(FRAME_LIMITS), f"handlers changed: {sorted(registered)}"
        return {protocol: (handler, FRAME_LIMITS[protocol]) for protocol, handler in registered.items()}

    async def gossip(self, topic: str, data: bytes) -> None:
        """A gossip message from ``PEER`` on ``topic``, handled as the host would deliver it:
        the topic's validator first, then, if it accepts, the subscribers."""
        name = self.capacity.topic if topic == "capacity" else self.driver.topic
        message = GossipMessage(name, data, PEER, forwarder=PEER)
        if self.host._accepts(message):
            self.host._deliver(message)
        await self.settle()

    async def settle(self) -> None:
        """Wait until the consensus driver's task has stepped through everything queued for it
        (a failure there ends the rig's nursery, and with it the test)."""
        with trio.fail_after(30):  # a stuck driver fails the test instead of hanging it
            await trio.testing.wait_all_tasks_blocked()
        assert not any(self.driver.lanes.waiting(lane) for lane in Lane), "the driver stopped reading"


#: Each gossip topic, and the decoder target whose inputs are gossiped on it.
GOSSIP_TOPICS = {
    "consensus": "consensus message",
    "capacity": "capacity announcement",
}
#: Each stream protocol, and the decoder target whose inputs make its frames.
STREAM_PROTOCOLS = {
    "/dcent/consensus/proposal/1.0.0": "consensus message",
    "/dcent/sync/push/1.0.0": "consensus message",
    "/dcent/sync/1.0.0": "sync request",
    "/dcent/tx/1.0.0": "transaction batch",
    "/dcent/market/1.0.0": "market message",
    "/dcent/result/2.0.0": "delivery header",
    "/dcent/jobstatus/1.0.0": "job started",
    "/dcent/joblog/1.0.0": "job output",
    "/dcent/blob/1.0.0": "blob request",
}


def target(prefix: str) -> Target:
    (target,) = [t for name, t in TARGETS_BY_NAME.items() if name.startswith(prefix)]
    return target


def frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def stream_input(tape: Tape, target_prefix: str, limit: int) -> bytes:
    """What a hostile peer writes on a stream before closing it."""
    fuzz_target = target(target_prefix)
    body = generate(fuzz_target, tape)
    how = tape.integer(0, 7)
    if how == 0:
        return frame(body)
    if how == 1:  # several messages
        return b"".join(frame(generate(fuzz_target, tape)) for _ in range(tape.integer(2, 4)))
    if how == 2:  # a valid message first, then another input: reaches second steps
        seeds = seeds_of(fuzz_target.name)
        return frame(tape.choice(seeds)) + frame(body)
    if how == 3:  # ends inside the body
        return frame(body)[: 4 + tape.integer(0, max(0, len(body) - 1))]
    if how == 4:  # ends inside the length prefix
        return frame(body)[: tape.integer(0, 3)]
    if how == 5:  # announces more than the protocol allows
        length = tape.choice([limit + 1, 2 * limit, 2**31, 2**32 - 1])
        return struct.pack(">I", length) + body
    if how == 6:  # a zero-length frame, then the rest
        return frame(b"") + frame(body)
    return tape.binary(300)


async def feed_stream(handler: StreamHandler, wire: bytes, protocol_id: str) -> str:
    """Run ``handler`` on an inbound stream from ``PEER`` that carries ``wire`` and then ends,
    reading whatever it answers. Returns ``"refused"`` when the handler raised what the host
    contains (``run_stream_handler``: P2PError and ProtocolError reset that one stream) or reset
    the stream itself, else ``"served"``; anything else the handler raises propagates (a crash,
    in a node).
    """
    peer_end, node_end = pipe_pair()
    stream = Stream(node_end, peer_id=PEER, protocol_id=protocol_id)

    async def write() -> None:
        try:
            for start in range(0, len(wire), 65536):
                await peer_end.write(wire[start : start + 65536])
            await peer_end.close_write()
        except StreamResetError:
            return  # the node reset the stream: it refused what we sent

    async def read() -> None:
        try:
            while await peer_end.read(65536):
                pass
        except StreamResetError:
            return

    async with trio.open_nursery() as nursery:
        nursery.start_soon(write)
        nursery.start_soon(read)
        try:
            await handler(stream)
        except (P2PError, ProtocolError):
            await stream.reset()
            outcome = "refused"
        else:
            outcome = "refused" if node_end.finished and peer_end._state.reset else "served"
            await stream.close()
        peer_end.abort()
    return outcome


def _probe_report() -> ProbeReport:
    return ProbeReport((samples.gpu(),), "550.54.15", 12040, False, "the sample GPU")


@asynccontextmanager
async def open_rig(root: Path) -> AsyncIterator[Rig]:
    """Every handler of a node following the sample chain, its services running meanwhile."""
    async with trio.open_nursery() as nursery:
        async with _services(root, nursery) as rig:
            yield rig
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def _services(root: Path, nursery: trio.Nursery) -> AsyncIterator[Rig]:
    doc = samples.genesis()
    store = await trio.to_thread.run_sync(ChainStore.open, root / "chain.db")
    await trio.to_thread.run_sync(store.bind_chain, doc.chain_id, doc.genesis_hash())
    mempool = Mempool()
    app = LedgerApp(genesis_state(doc), genesis_hash=doc.genesis_hash(), tx_source=lambda: mempool.reap(100))
    # The fuzzing peer is never banned nor rate limited, so every input reaches the handlers.
    unlimited = RateLimit(per_second=1e9, burst=1e9)
    host = MemoryNetwork().create_host(
        samples.NODE_SEED, guard=GuardSettings(ban_threshold=1e18, streams=unlimited, gossip=unlimited)
    )
    await nursery.start(host.run)
    now = lambda: samples.NOW_MS  # noqa: E731 - the sample messages' "now"
    driver = ConsensusDriver(
        core=ConsensusCore(app, key=None, config=ConsensusConfig()),
        app=app,
        store=store,
        host=host,
        mempool=mempool,
        clock_ms=now,
    )
    await nursery.start(driver.run)
    capacity = CapacityService(
        chain_id=doc.chain_id,
        key=samples.PROVIDER,
        host=host,
        probe=_probe,
        price_per_gpu_second=1_000,
        collateral=10 * 10**9,
        stake=lambda: 0,
        executors=("subprocess",),
        clock_ms=now,
    )
    never = trio.Event()

    async def wait_for_height(height: int) -> None:
        await never.wait()

    market = MarketService(
        key=samples.PROVIDER,
        chain_id=doc.chain_id,
        host=host,
        app=app,
        lane=TxLane(
            key=samples.PROVIDER,
            app=app,
            mempool=mempool,
            relay=driver.relay_txs,
            height=lambda: 0,
            wait_for_height=wait_for_height,
        ),
        store=store,
        executor=select_executor("subprocess", allow_unsandboxed=True),
        capacity=list,
        probe_report=_probe_report,
        clock_ms=now,
        feed=driver.feed,
        jobs_dir=root / "jobs",
        block_ms_floor=BLOCK_MS_FLOOR,
        price_per_gpu_second=1_000,
        collateral=10 * 10**9,
    )
    await nursery.start(market.run)
    contract = samples.signed_contract()
    record = JobRecord(
        job_id="r-sample",
        role=REQUESTER,
        spec=samples.job_spec(),
        created_ms=samples.NOW_MS,
        state=JobState.ESCROWED,
        peer_id=PEER,
        contract=contract,
    )
    await market.book.save(record)
    blob_store = await trio.to_thread.run_sync(lambda: BlobStore.open(root / "blobs", max_bytes=2**30))
    sample_blob = root / "sample.blob"
    sample_blob.write_bytes(samples.BLOB)
    info, _ = await trio.to_thread.run_sync(
        lambda: blob_store.put_file(sample_blob, pin=True, chunk_size=samples.blob_manifest().chunk_size)
    )
    assert info.cid == samples.blob_manifest().content_id()
    blobs = BlobServer(blob_store, BlobSettings())
    try:
        yield Rig(host, driver, capacity, market, blobs, store)
    finally:
        nursery.cancel_scope.cancel()
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(blob_store.close)
            await trio.to_thread.run_sync(store.close)


async def _probe() -> ProbeReport:
    return _probe_report()
