"""Live job output on ``/dcent/joblog/1.0.0`` between memory hosts, in virtual time: the provider
forwards lines as the job prints them, the requester keeps them for its own job only, bounded."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio
import trio.testing

from node.executor.process import OutputLine
from node.market.context import JobBook
from node.market.livelog import FIRST_FRAME_S, QUEUE_LINES, LiveLogs, OutputForwarder
from node.market.records import PROVIDER as PROVIDER_ROLE
from node.market.records import REQUESTER as REQUESTER_ROLE
from node.market.records import JobRecord, JobState
from node.p2p.errors import StreamResetError
from node.p2p.memory import MemoryHost, MemoryNetwork
from node.store import ChainStore
from protocol.contracts import SignedContract
from protocol.crypto import PrivateKey
from protocol.market.delivery import LOG_PROTOCOL_ID, MAX_LOG_BYTES, JobOutput
from protocol.market.jobspec import JobSpec
from tests.unit.ledger_helpers import key, make_terms
from tests.waiting import wait_until

TERMS = make_terms("alice", "bob")
CONTRACT = SignedContract(TERMS, TERMS.sign(key("alice")), TERMS.sign(key("bob")))
SPEC_DOC = {
    "argv": ["true"],
    "max_runtime_s": 60,
    "max_price_per_gpu_second": 10,
    "resources": {"gpu_count": 1},
}


@pytest.fixture
def clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0.05)


@dataclass
class Pair:
    network: MemoryNetwork
    provider: MemoryHost
    requester: MemoryHost
    stranger: MemoryHost
    book: JobBook
    live: LiveLogs
    record: JobRecord


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[Pair]:
    network = MemoryNetwork()
    hosts = [network.create_host(PrivateKey.from_label(f"livelog-{name}").seed()) for name in ("p", "r", "s")]
    store = ChainStore.open(tmp_path / "chain.db")
    book = JobBook(store, lambda: 1_000 + int(trio.current_time() * 1000))
    record = JobRecord(
        job_id="job-live",
        role=REQUESTER_ROLE,
        spec=JobSpec.from_document(SPEC_DOC),
        created_ms=0,
        state=JobState.RUNNING,
        peer_id=hosts[0].peer_id,
        contract=CONTRACT,
    )
    book.jobs[record.job_id] = record
    live = LiveLogs(book)
    async with trio.open_nursery() as nursery:
        for host in hosts:
            await nursery.start(host.run)
        for host in (hosts[0], hosts[2]):
            await host.connect(hosts[1].listen_addrs[0])
        hosts[1].set_stream_handler(LOG_PROTOCOL_ID, live.handle)
        yield Pair(network, hosts[0], hosts[1], hosts[2], book, live, record)
        nursery.cancel_scope.cancel()
    store.close()


def line(text: str, stream: str = "stdout", *, partial: bool = False) -> OutputLine:
    return OutputLine(stream, text.encode(), partial=partial)


async def test_lines_reach_the_requester_while_the_job_runs(
    pair: Pair, clock: trio.testing.MockClock
) -> None:
    forwarder = OutputForwarder(pair.provider, pair.requester.peer_id, TERMS.contract_hash())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(forwarder.run)
        await forwarder.sink(line("epoch 1 loss=0.5"))
        await forwarder.sink(line("warming up", "stderr"))
        live = await wait_until(
            lambda: (found := pair.live.get("job-live")) is not None and b"warming" in found.stderr and found,
            what="the first lines arrived",
            timeout=5,
        )
        # The job is still running (the forwarder is open), and its first lines are there.
        assert bytes(live.stdout) == b"epoch 1 loss=0.5\n" and bytes(live.stderr) == b"warming up\n"
        assert live.first_output_ms is not None
        await forwarder.sink(line("epoch 2 loss=0.2"))
        await forwarder.sink(line("no newline at the end", partial=True))
        forwarder.finish()
    await wait_until(lambda: b"no newline" in live.stdout, what="the partial last line arrived", timeout=5)
    assert bytes(live.stdout) == b"epoch 1 loss=0.5\nepoch 2 loss=0.2\nno newline at the end"
    assert forwarder.dropped == 0


async def test_output_from_a_peer_that_is_not_the_jobs_provider_is_refused(
    pair: Pair, clock: trio.testing.MockClock
) -> None:
    stream = await pair.stranger.open_stream(pair.requester.peer_id, LOG_PROTOCOL_ID)
    await stream.send_frame(JobOutput(TERMS.contract_hash(), b"fake\n", b"").encode())
    with pytest.raises(StreamResetError), trio.fail_after(5):
        await stream.receive_frame(16)
    assert pair.live.get("job-live") is None


@pytest.mark.parametrize("change", ["unknown contract", "provider role", "ended"])
async def test_output_for_no_running_job_of_ours_is_refused(
    pair: Pair, change: str, clock: trio.testing.MockClock
) -> None:
    contract_hash = TERMS.contract_hash()
    if change == "unknown contract":
        contract_hash = bytes(32)
    elif change == "provider role":
        pair.record.role = PROVIDER_ROLE
    else:
        pair.record.state = JobState.SETTLED
    stream = await pair.provider.open_stream(pair.requester.peer_id, LOG_PROTOCOL_ID)
    await stream.send_frame(JobOutput(contract_hash, b"x\n", b"").encode())
    with pytest.raises(StreamResetError), trio.fail_after(5):
        await stream.receive_frame(16)
    assert pair.live.get("job-live") is None


async def test_a_second_stream_for_the_same_job_is_refused(pair: Pair, clock: trio.testing.MockClock) -> None:
    first = await pair.provider.open_stream(pair.requester.peer_id, LOG_PROTOCOL_ID)
    await first.send_frame(JobOutput(TERMS.contract_hash(), b"one\n", b"").encode())
    await wait_until(lambda: pair.live.get("job-live"), what="the first stream's line arrived", timeout=5)
    second = await pair.provider.open_stream(pair.requester.peer_id, LOG_PROTOCOL_ID)
    await second.send_frame(JobOutput(TERMS.contract_hash(), b"two\n", b"").encode())
    with pytest.raises(StreamResetError), trio.fail_after(5):
        await second.receive_frame(16)
    await first.send_frame(JobOutput(TERMS.contract_hash(), b"three\n", b"").encode())
    await first.close()
    live = pair.live.get("job-live")
    await wait_until(
        lambda: live is None or b"three" in live.stdout, what="the first stream went on", timeout=5
    )
    assert live is not None and bytes(live.stdout) == b"one\nthree\n"


async def test_a_flooding_provider_is_capped(pair: Pair, clock: trio.testing.MockClock) -> None:
    stream = await pair.provider.open_stream(pair.requester.peer_id, LOG_PROTOCOL_ID)
    chunk = b"x" * 60_000
    for _ in range(MAX_LOG_BYTES // len(chunk) + 5):
        await stream.send_frame(JobOutput(TERMS.contract_hash(), chunk, b"").encode())
    await stream.close()
    live = await wait_until(
        lambda: (found := pair.live.get("job-live")) is not None and found.stdout_truncated and found,
        what="the log was truncated",
        timeout=10,
    )
    assert len(live.stdout) == MAX_LOG_BYTES


async def test_an_unreachable_requester_costs_lines_never_the_job(
    pair: Pair, clock: trio.testing.MockClock
) -> None:
    """Nobody serves the protocol: the forwarder gives up, and sink() still never waits."""
    forwarder = OutputForwarder(pair.provider, pair.stranger.peer_id, TERMS.contract_hash())
    async with trio.open_nursery() as nursery:
        nursery.start_soon(forwarder.run)
        for number in range(QUEUE_LINES + 10):
            await forwarder.sink(line(f"line {number}"))
        forwarder.finish()
    assert forwarder.dropped > 0


async def test_a_stream_that_never_sends_is_dropped(pair: Pair, clock: trio.testing.MockClock) -> None:
    stream = await pair.stranger.open_stream(pair.requester.peer_id, LOG_PROTOCOL_ID)
    started = trio.current_time()
    with pytest.raises(StreamResetError), trio.fail_after(60):
        await stream.receive_frame(16)
    assert FIRST_FRAME_S <= trio.current_time() - started < FIRST_FRAME_S + 5
