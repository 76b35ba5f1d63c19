"""Live output: lines reach the caller while the job runs, within the stream caps, and never stall it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from node.executor.base import Executor
from node.executor.model import ExecutionResult, Outcome, SandboxJob
from node.executor.process import LIVE_BUFFER_LINES, MAX_LINE_BYTES, LineSplitter, OutputLine
from node.executor.unsandboxed import SubprocessExecutor
from tests.integration.executor_helpers import (
    bubblewrap_executor_or_skip,
    pids_with_argument,
    wait_until,
    workspaces_of,
)

RUN_DEADLINE_S = 60


@pytest.fixture(params=["bubblewrap", "subprocess"])
def executor(request: pytest.FixtureRequest) -> Executor:
    if request.param == "bubblewrap":
        return bubblewrap_executor_or_skip()
    return SubprocessExecutor(allow_unsandboxed=True)


@pytest.fixture
def work_root(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "jobs"
    yield root
    assert not root.exists() or list(root.iterdir()) == []


def _job(work_root: Path, script: str, **overrides: object) -> SandboxJob:
    fields: dict[str, object] = {
        "job_id": "live",
        "argv": ("/bin/sh", "-c", script),
        "work_root": work_root,
        "timeout_s": 30.0,
    }
    fields.update(overrides)
    return SandboxJob(**fields)  # type: ignore[arg-type]


async def test_lines_arrive_while_the_job_is_still_running(executor: Executor, work_root: Path) -> None:
    # The job cannot finish until the test, having received its first line, lets it go on.
    script = "echo first; echo warming >&2; while [ ! -e go ]; do sleep 0.02; done; echo second"
    received: list[OutputLine] = []

    async def on_output(line: OutputLine) -> None:
        received.append(line)
        if line.data == b"first":
            (workspaces_of(work_root)[0] / "work" / "go").touch()

    with trio.fail_after(RUN_DEADLINE_S):
        result = await executor.run(_job(work_root, script), on_output=on_output)
    assert result.outcome is Outcome.COMPLETED
    stdout = [line.data for line in received if line.stream == "stdout"]
    assert stdout == [b"first", b"second"]
    assert [line.data for line in received if line.stream == "stderr"] == [b"warming"]
    assert not any(line.partial or line.dropped_before for line in received)
    assert result.stdout == b"first\nsecond\n" and result.first_output_ms is not None


async def test_live_lines_stop_at_the_stream_cap(executor: Executor, work_root: Path) -> None:
    line = "x" * 99
    script = f"for i in 1 2 3 4 5 6 7 8 9 10; do echo {line}; done; printf tail"
    received: list[OutputLine] = []

    async def on_output(item: OutputLine) -> None:
        received.append(item)

    with trio.fail_after(RUN_DEADLINE_S):
        result = await executor.run(_job(work_root, script, stdout_cap_bytes=350), on_output=on_output)
    assert result.stdout_truncated and len(result.stdout) == 350
    # Three whole lines (300 bytes with their newlines), then the 50 bytes the cap left.
    assert [(item.data, item.partial) for item in received] == [
        (line.encode(), False),
        (line.encode(), False),
        (line.encode(), False),
        (b"x" * 50, True),
    ]


async def test_a_slow_consumer_loses_counted_lines_but_never_stalls_the_job(work_root: Path) -> None:
    executor = SubprocessExecutor(allow_unsandboxed=True)
    count = LIVE_BUFFER_LINES * 3
    marker = f"dcent-chatty-{uuid.uuid4().hex}"
    script = f"i=0; while [ $i -lt {count} ]; do echo $i; i=$((i+1)); done"
    received: list[OutputLine] = []
    release = trio.Event()
    results: list[ExecutionResult] = []

    async def stuck_consumer(line: OutputLine) -> None:
        received.append(line)
        if len(received) == 1:
            await release.wait()

    async def run() -> None:
        job = _job(work_root, script, argv=("/bin/sh", "-c", script, marker))
        results.append(await executor.run(job, on_output=stuck_consumer))

    with trio.fail_after(RUN_DEADLINE_S):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run)
            await wait_until(lambda: received, timeout=30, what="the first line")
            # The job prints all its lines and exits while the consumer still holds the first.
            await wait_until(lambda: not pids_with_argument(marker), timeout=30, what="the job to exit")
            assert len(received) == 1
            release.set()
    (result,) = results
    assert result.outcome is Outcome.COMPLETED
    assert result.stdout.count(b"\n") == count  # the captured output is complete
    # Every line is either delivered or counted as dropped; the drops at the end come in one
    # final empty line.
    delivered = [line for line in received if line.data]
    assert len(delivered) + sum(line.dropped_before for line in received) == count
    assert received[-1].data == b"" and received[-1].partial and received[-1].dropped_before > 0
    assert [int(line.data) for line in delivered] == sorted(int(line.data) for line in delivered)


def test_line_splitter_cuts_long_lines_and_counts_drops() -> None:
    send, receive = trio.open_memory_channel[OutputLine](2)
    splitter = LineSplitter("stdout", send)
    splitter.feed(b"a\nb")
    splitter.feed(b"c\n")
    assert receive.receive_nowait() == OutputLine("stdout", b"a")
    assert receive.receive_nowait() == OutputLine("stdout", b"bc")
    splitter.feed(b"x" * (MAX_LINE_BYTES + 5))
    assert receive.receive_nowait() == OutputLine("stdout", b"x" * MAX_LINE_BYTES, partial=True)
    splitter.feed(b"\n1\n2\n3\n")  # the channel holds two: "xxxxx" and "1"; "2" and "3" are dropped
    assert receive.receive_nowait() == OutputLine("stdout", b"xxxxx")
    assert receive.receive_nowait() == OutputLine("stdout", b"1")
    splitter.feed(b"4")
    splitter.finish()
    assert receive.receive_nowait() == OutputLine("stdout", b"4", partial=True, dropped_before=2)
