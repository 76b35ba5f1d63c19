"""A job lives exactly until it exits, its timeout passes, or its node stops; and it keeps secrets.

* A job sleeping 20 s completes with exit 0 while the event loop keeps serving requests. Before the
  fix, bwrap's ``--die-with-parent`` (``PR_SET_PDEATHSIG``) tied the job to the worker thread that
  spawned it, and trio retires idle worker threads after 10 s: the test makes several worker
  threads at the job's start and then gives them nothing to do, so a job tied to one of them dies
  at ~10 s.
* A job past its runtime is recorded as timed out.
* A job dies with its node (``kill -9`` of the node's process), and the next node with the same
  work root removes what the dead one left (the job's volume mount and cgroup).
* A secret in the job's environment is in no ``/proc/*/cmdline`` on the host, and the job sees
  its own pid namespace, not the node's processes or paths.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from node.executor.base import Executor
from node.executor.limits import LimitKind, ResourceLimits
from node.executor.model import ExecutionResult, Outcome, SandboxJob
from node.executor.process import OutputLine
from node.executor.unsandboxed import SubprocessExecutor
from tests.integration.executor_helpers import (
    bubblewrap_executor_or_skip,
    job_python,
    pids_with_argument,
    process_is_running,
    require_limits,
    wait_until,
)

PYTHON, PYTHON_BINDS = job_python()
MiB = 2**20
LIMITS = ResourceLimits(memory_bytes=256 * MiB, cpu_millicores=1000, processes=64, disk_bytes=32 * MiB)
REPO = Path(__file__).resolve().parents[2]


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


def _job(work_root: Path, argv: tuple[str, ...], **overrides: object) -> SandboxJob:
    fields: dict[str, object] = {"job_id": "life", "argv": argv, "work_root": work_root, "timeout_s": 120.0}
    fields.update(overrides)
    return SandboxJob(**fields)  # type: ignore[arg-type]


async def _echo_server(nursery: trio.Nursery) -> int:
    async def answer(stream: trio.SocketStream) -> None:
        async with stream:
            data = await stream.receive_some(64)
            await stream.send_all(b"pong:" + data)

    listeners = await nursery.start(functools.partial(trio.serve_tcp, answer, 0, host="127.0.0.1"))
    port: int = listeners[0].socket.getsockname()[1]
    return port


async def _occupy_worker_threads(count: int) -> None:
    """Make ``count`` trio worker threads exist at once, then leave them idle."""
    barrier = threading.Barrier(count)
    async with trio.open_nursery() as nursery:
        for _ in range(count):
            nursery.start_soon(trio.to_thread.run_sync, barrier.wait)


async def test_a_job_sleeping_20_s_completes_while_the_loop_keeps_serving(tmp_path: Path) -> None:
    executor = bubblewrap_executor_or_skip()
    require_limits(executor, *LIMITS.requested())
    work_root = tmp_path / "jobs"
    script = "for i in $(seq 20); do echo tick $i; sleep 1; done; echo done"
    answers: list[bytes] = []
    result: list[ExecutionResult] = []
    async with trio.open_nursery() as nursery:
        port = await _echo_server(nursery)

        async def serve_a_request(line: OutputLine) -> None:
            # Each second of the job, the loop answers a real request over a socket.
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                await stream.send_all(line.data)
                answers.append(await stream.receive_some(64))

        async def run_job() -> None:
            job = _job(work_root, ("/bin/sh", "-c", script), limits=LIMITS, timeout_s=120.0)
            result.append(await executor.run(job, on_output=serve_a_request))

        nursery.start_soon(run_job)
        await _occupy_worker_threads(4)
        await wait_until(lambda: result, timeout=120, what="the 20 s job to end")
        nursery.cancel_scope.cancel()
    (done,) = result
    assert (done.outcome, done.exit_code, done.signal) == (Outcome.COMPLETED, 0, None), done.stderr
    assert done.stdout.endswith(b"tick 20\ndone\n") and done.wall_ms >= 20_000
    assert answers[:2] == [b"pong:tick 1", b"pong:tick 2"] and len(answers) == 21


async def test_a_job_past_its_runtime_is_recorded_as_timed_out(executor: Executor, work_root: Path) -> None:
    job = _job(work_root, ("sleep", "600"), timeout_s=1.0, grace_s=1.0, gpu_uuids=("GPU-aaaaaaaa-0001",))
    with trio.fail_after(60):
        result = await executor.run(job)
    assert (result.outcome, result.limit, result.timed_out) == (Outcome.TIMED_OUT, None, True)
    # Metered to the stop, grace included, in GPU-milliseconds; GPU-seconds derive from it.
    assert result.gpu_ms == result.wall_ms >= 1000 and result.gpu_seconds == -(-result.gpu_ms // 1000)


_NODE = """
import sys, trio
from pathlib import Path
from node.executor.bubblewrap import BubblewrapExecutor
from node.executor.unsandboxed import SubprocessExecutor
from node.executor.limits import ResourceLimits
from node.executor.model import SandboxJob

kind, work_root, python, marker, binds = sys.argv[1:6]
if kind == "bubblewrap":
    executor = BubblewrapExecutor(extra_ro_binds=tuple(b for b in binds.split(":") if b))
else:
    executor = SubprocessExecutor(allow_unsandboxed=True)
limits = ResourceLimits(memory_bytes=256 * 2**20, processes=64, disk_bytes=32 * 2**20)
# The job's marker differs from ours, so the test finds the job and not this process.
job = SandboxJob(job_id="orphan", argv=(python, "-c", "import signal; signal.pause()", marker + "-job"),
                 work_root=Path(work_root), limits=limits, timeout_s=600)
trio.run(executor.run, job)
"""


def _mounts_under(root: Path) -> list[str]:
    prefix = str(root) + "/"
    points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    return [point for point in points if point.startswith(prefix)]


async def test_a_job_dies_with_its_node_and_the_next_node_cleans_up(
    executor: Executor, tmp_path: Path
) -> None:
    require_limits(executor, *LIMITS.requested())
    work_root = tmp_path / "jobs"
    marker = f"dcent-orphan-{uuid.uuid4().hex}"
    node = subprocess.Popen(
        [sys.executable, "-c", _NODE, executor.name, str(work_root), PYTHON, marker, ":".join(PYTHON_BINDS)],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
    )
    try:
        job_pids = await wait_until(
            lambda: pids_with_argument(marker + "-job"), timeout=60, what="the job to start"
        )
        os.kill(node.pid, signal.SIGKILL)
        node.wait(timeout=30)
    finally:
        if node.poll() is None:
            node.kill()
            node.wait(timeout=30)
    await wait_until(
        lambda: not any(process_is_running(pid) for pid in job_pids),
        timeout=30,
        what=f"the job {job_pids} to die with its node",
    )
    # The dead node could not unmount its job's volume; the next one with this work root does.
    assert _mounts_under(work_root) != []
    with trio.fail_after(60):
        result = await executor.run(_job(work_root, ("true",), limits=LIMITS))
    assert result.outcome is Outcome.COMPLETED
    assert _mounts_under(work_root) == []


_SECRET_JOB = """
import os, sys
print("secret-length", len(os.environ["HF_TOKEN"]), flush=True)
init = open("/proc/1/cmdline", "rb").read().replace(b"\\0", b" ").decode(errors="replace")
visible = [p for p in os.listdir("/proc") if p.isdigit()]
others = []
for pid in visible:
    try:
        others.append(open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\\0", b" ").decode(errors="replace"))
    except OSError:
        pass
print("init", init, flush=True)
print("pids", len(visible), flush=True)
print("cmdlines", " | ".join(others), flush=True)
print("ready", flush=True)
sys.stdin.read() if False else __import__("signal").pause()
"""


def _cmdlines_holding(needle: bytes) -> list[int]:
    holders = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if needle in Path(f"/proc/{entry}/cmdline").read_bytes():
                    holders.append(int(entry))
            except OSError:
                continue
    return holders


async def test_a_secret_in_the_job_environment_is_in_no_command_line(
    executor: Executor, work_root: Path
) -> None:
    require_limits(executor, LimitKind.DISK)
    secret = f"hf_{uuid.uuid4().hex}"
    lines: list[bytes] = []
    holders: list[list[int]] = []
    ready = trio.Event()

    async def on_output(line: OutputLine) -> None:
        lines.append(line.data)
        if line.data == b"ready":
            # The job is running with the secret in its environment: look at every process.
            holders.append(_cmdlines_holding(secret.encode()))
            ready.set()

    disk_only = ResourceLimits(disk_bytes=LIMITS.disk_bytes)  # confined: through the wrapper too
    job = _job(
        work_root, (PYTHON, "-c", _SECRET_JOB), env={"HF_TOKEN": secret}, limits=disk_only, grace_s=1.0
    )
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(functools.partial(executor.run, job, on_output=on_output))
            await ready.wait()
            nursery.cancel_scope.cancel()
    assert holders == [[]]
    assert f"secret-length {len(secret)}".encode() in lines
    if executor.name == "bubblewrap":
        # Its own pid namespace: bwrap's init and the job, none of the host's processes, and no
        # host path (the node's home, the workspace) on pid 1's command line.
        init = next(line for line in lines if line.startswith(b"init "))
        assert init.split()[1:3] == [b"/usr/bin/bwrap", b"--args"] or init.split()[2] == b"--args", init
        assert str(work_root).encode() not in init and str(REPO).encode() not in init
        pid_count = int(next(line for line in lines if line.startswith(b"pids ")).split()[1])
        assert pid_count <= 3
        cmdlines = next(line for line in lines if line.startswith(b"cmdlines "))
        assert b"pytest" not in cmdlines and str(work_root).encode() not in cmdlines
