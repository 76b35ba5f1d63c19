"""A running job's output, live: the provider forwards each line its sandbox prints to the
requester on ``/dcent/joblog/1.0.0``, and the requester keeps it for ``job_logs`` until the
complete logs arrive with the result.

Provider (:class:`OutputForwarder`): the executor hands every line to :meth:`OutputForwarder.sink`
as the job prints it; a task batches what has queued and sends it as one
:class:`~protocol.market.delivery.JobOutput` frame on one stream per job, opened at the first
line. Best effort: a requester that cannot be reached, or is slower than the job, costs lines
of the live view (counted), never the job or its delivery, which carries the complete capped
logs.

Requester (:class:`LiveLogs`): one stream per job, accepted only from the peer the contract was
made with and only for a job of ours not yet finished; each stream's text is capped at
:data:`~protocol.market.delivery.MAX_LOG_BYTES` and dropped once the result is delivered.

Attacks considered: a stranger streaming output for our job (refused: not the contract's peer),
a provider flooding us (frames bounded, text capped, a second stream for the same job refused),
a requester that never reads (our queue is bounded and drops; the job never waits on it).

Live output
-----------

**Live output** (``/dcent/joblog/1.0.0``, ``node/market/livelog.py``). The executor hands each line to
the provider's ``OutputForwarder``, which batches what queued into one ``JobOutput`` frame (at most
64 KiB of stdout and of stderr) on one stream per job. The requester's ``LiveLogs`` accepts one
stream per job, only from the contract's provider and only while the job has no result, keeps at
most 4 MiB of each stream, and drops the live copy when the result (with the complete, capped
logs) arrives; ``job_logs`` answers ``live: true`` meanwhile and ``job logs --follow`` polls it every
0.5 s. Best effort by design (nothing is paid on it): a slow or unreachable requester loses lines
(counted in the provider's log), never the job or its delivery; a slow requester gets 10 s to
take the rest after the job ends, and a stream that sends nothing is dropped after 10 s.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import trio

from node.executor.process import OutputLine
from node.market.context import JobBook
from node.market.records import REQUESTER
from node.p2p.errors import P2PError, StreamClosedError
from node.p2p.framing import Stream
from node.p2p.interface import Host
from protocol.market.delivery import (
    LOG_PROTOCOL_ID,
    MAX_LIVE_CHUNK_BYTES,
    MAX_LIVE_FRAME_BYTES,
    MAX_LOG_BYTES,
    JobOutput,
    decode_output,
)
from protocol.market.errors import InvalidMarketMessage

log = logging.getLogger("dcent.market.livelog")

#: Lines waiting for the stream to the requester; more are dropped (and counted).
QUEUE_LINES = 4096
OPEN_TIMEOUT_S = 10.0
#: Once the job has ended, how long its queued lines may take to reach the requester: a slow
#: requester must not hold up the delivery of the result.
FLUSH_GRACE_S = 10.0
#: A stream that opens must carry its first frame within this long (a stranger holding streams
#: open costs a task each otherwise).
FIRST_FRAME_S = 10.0
#: First-output times kept (for benchmarks and logs), the newest jobs'.
FIRST_OUTPUT_KEPT = 1024
SEND_TIMEOUT_S = 30.0


class OutputForwarder:
    """Forwards one job's lines to its requester as the job prints them. Start :meth:`run` in a
    nursery, hand :meth:`sink` to the executor, and call :meth:`finish` when the job has ended."""

    def __init__(self, host: Host, peer_id: str, contract_hash: bytes) -> None:
        self.host = host
        self.peer_id = peer_id
        self.contract_hash = contract_hash
        self._send, self._receive = trio.open_memory_channel[tuple[str, bytes]](QUEUE_LINES)
        #: Lines the live view lost (the queue was full, or the requester unreachable).
        self.dropped = 0

    async def sink(self, line: OutputLine) -> None:
        """The executor's ``on_output``: queue the line, never wait."""
        data = line.data if line.partial else line.data + b"\n"
        try:
            self._send.send_nowait((line.stream, data))
        except trio.WouldBlock:
            self.dropped += 1
        except trio.ClosedResourceError:
            pass

    def finish(self) -> None:
        """The job ended: send what is queued, then close the stream."""
        self._send.close()

    async def run(self) -> None:
        stream: Stream | None = None
        try:
            async for first in self._receive:
                pending = {"stdout": bytearray(), "stderr": bytearray()}
                pending[first[0]] += first[1]
                while True:  # take whatever queued meanwhile: one frame per burst
                    try:
                        name, data = self._receive.receive_nowait()
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                    pending[name] += data
                if stream is None:
                    with trio.fail_after(OPEN_TIMEOUT_S):
                        stream = await self.host.open_stream(self.peer_id, LOG_PROTOCOL_ID)
                await self._send_frames(stream, pending["stdout"], pending["stderr"])
        except (P2PError, trio.TooSlowError) as exc:
            log.info("live output to %s stopped: %r", self.peer_id, exc)
            async for _ in self._receive:  # keep taking lines so the executor never waits
                self.dropped += 1
        finally:
            if stream is not None:
                with trio.CancelScope(shield=True), trio.move_on_after(OPEN_TIMEOUT_S):
                    try:
                        await stream.close()
                    except P2PError:
                        await stream.reset()

    async def _send_frames(self, stream: Stream, stdout: bytearray, stderr: bytearray) -> None:
        while stdout or stderr:
            out, err = bytes(stdout[:MAX_LIVE_CHUNK_BYTES]), bytes(stderr[:MAX_LIVE_CHUNK_BYTES])
            del stdout[:MAX_LIVE_CHUNK_BYTES], stderr[:MAX_LIVE_CHUNK_BYTES]
            with trio.fail_after(SEND_TIMEOUT_S):
                await stream.send_frame(JobOutput(self.contract_hash, out, err).encode())


@dataclass
class LiveLog:
    """What a job of ours printed so far, as its provider streamed it."""

    stdout: bytearray = field(default_factory=bytearray)
    stderr: bytearray = field(default_factory=bytearray)
    stdout_truncated: bool = False
    stderr_truncated: bool = False
    #: When the first bytes arrived (the node's wall clock, ms); None before.
    first_output_ms: int | None = None

    def add(self, frame: JobOutput, now_ms: int) -> None:
        if self.first_output_ms is None:
            self.first_output_ms = now_ms
        self.stdout_truncated |= _append_capped(self.stdout, frame.stdout)
        self.stderr_truncated |= _append_capped(self.stderr, frame.stderr)


def _append_capped(buffer: bytearray, data: bytes) -> bool:
    """Append what fits under MAX_LOG_BYTES; True when something did not."""
    room = MAX_LOG_BYTES - len(buffer)
    buffer += data[: max(room, 0)]
    return len(data) > room


class LiveLogs:
    """The requester's side: live output of its running jobs, by job id."""

    def __init__(self, book: JobBook) -> None:
        self.book = book
        self._logs: dict[str, LiveLog] = {}
        self._streaming: set[str] = set()
        #: When each job's first output arrived (wall ms), kept after its live copy is dropped.
        self.first_output_ms: dict[str, int] = {}

    def get(self, job_id: str) -> LiveLog | None:
        return self._logs.get(job_id)

    def discard(self, job_id: str) -> None:
        """The complete logs arrived with the result: forget the live copy."""
        self._logs.pop(job_id, None)

    async def handle(self, stream: Stream) -> None:
        """``/dcent/joblog/1.0.0``: take a provider's live output for one of our jobs. Raises
        :class:`InvalidMarketMessage` (the stream is reset) for output we did not ask for."""
        try:
            with trio.fail_after(FIRST_FRAME_S):
                frame = decode_output(await stream.receive_frame(MAX_LIVE_FRAME_BYTES))
        except trio.TooSlowError:
            raise InvalidMarketMessage(f"no live output frame within {FIRST_FRAME_S:g} s") from None
        record = self.book.by_contract(frame.contract_hash)
        if record is None or record.role != REQUESTER or record.peer_id != stream.peer_id:
            raise InvalidMarketMessage("live output for no contract of ours with this peer")
        if record.terminal or record.receipt is not None:
            raise InvalidMarketMessage(f"live output for job {record.job_id}, which has ended")
        if record.job_id in self._streaming:
            raise InvalidMarketMessage(f"a second live output stream for job {record.job_id}")
        self._streaming.add(record.job_id)
        live = self._logs.setdefault(record.job_id, LiveLog())
        try:
            while True:
                if frame.contract_hash != record.contract_hash:
                    raise InvalidMarketMessage("live output for another contract on this stream")
                if record.receipt is None:  # after the result, the delivered logs are the logs
                    live.add(frame, self.book.clock_ms())
                    if record.job_id not in self.first_output_ms:
                        self.first_output_ms[record.job_id] = self.book.clock_ms()
                        while len(self.first_output_ms) > FIRST_OUTPUT_KEPT:  # the oldest go first
                            del self.first_output_ms[next(iter(self.first_output_ms))]
                try:
                    frame = decode_output(await stream.receive_frame(MAX_LIVE_FRAME_BYTES))
                except StreamClosedError:
                    return
        finally:
            self._streaming.discard(record.job_id)
