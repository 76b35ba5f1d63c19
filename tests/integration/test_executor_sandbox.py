"""Jobs run for real: in the bubblewrap sandbox, and (to show each test could fail) unsandboxed.

The behaviour every executor shares (exit status, output capture and caps, timeouts, metering,
cancellation) is checked under both bubblewrap and the dev-only subprocess executor. The
isolation (no network, no writes outside the work directory, a clean environment) is checked
under bubblewrap, each time next to the same job succeeding unsandboxed.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest
import trio

from node.executor.base import Executor, run_to_outcome
from node.executor.bubblewrap import BubblewrapExecutor
from node.executor.errors import InvalidGpuBinding, SandboxStartFailed
from node.executor.model import ExecutionResult, Outcome, SandboxJob, output_listing_hash
from node.executor.unsandboxed import SubprocessExecutor
from tests.integration.executor_helpers import (
    bubblewrap_executor_or_skip,
    job_python,
    pids_with_argument,
    process_is_running,
    wait_until,
)

PYTHON, _PYTHON_BINDS = job_python()
GPU_DEVICE_NODES = sorted(
    path for path in glob.glob("/dev/nvidia[0-9]*") if path[len("/dev/nvidia") :].isdigit()
)
SIGTERM = 15
# Any single job here finishes in well under this; it only stops a broken executor from hanging.
RUN_DEADLINE_S = 60


@pytest.fixture(params=["bubblewrap", "subprocess"])
def executor(request: pytest.FixtureRequest) -> Executor:
    if request.param == "bubblewrap":
        return bubblewrap_executor_or_skip()
    return SubprocessExecutor(allow_unsandboxed=True)


@pytest.fixture
def bwrap() -> BubblewrapExecutor:
    return bubblewrap_executor_or_skip()


@pytest.fixture
def work_root(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "jobs"
    yield root
    # Every run removes its workspace, whatever happened to the job.
    assert not root.exists() or list(root.iterdir()) == []


def _job(work_root: Path, argv: tuple[str, ...], **overrides: object) -> SandboxJob:
    fields: dict[str, object] = {"job_id": "job-1", "argv": argv, "work_root": work_root, "timeout_s": 30.0}
    fields.update(overrides)
    return SandboxJob(**fields)  # type: ignore[arg-type]


async def _run(executor: Executor, job: SandboxJob) -> ExecutionResult:
    with trio.fail_after(RUN_DEADLINE_S):
        return await executor.run(job)


def _sh(script: str) -> tuple[str, ...]:
    return ("/bin/sh", "-c", script)


# --- what every executor does --------------------------------------------------------------------
async def test_stdout_exit_status_and_output_files_are_recorded(executor: Executor, work_root: Path) -> None:
    script = (
        "cat data/in.txt; printf result > out/result.txt; mkdir out/sub; "
        "printf nested > out/sub/n.txt; echo oops >&2; exit 7"
    )
    job = _job(work_root, _sh(script), input_files={"data/in.txt": b"input-data\n"})
    result = await _run(executor, job)
    assert (result.exit_code, result.signal, result.timed_out, result.killed) == (7, None, False, False)
    assert (result.outcome, result.limit) == (Outcome.JOB_FAILED, None)
    assert result.stdout == b"input-data\n" and result.stderr == b"oops\n"
    assert not result.stdout_truncated and not result.stderr_truncated
    assert result.output_files == {"result.txt": b"result", "sub/n.txt": b"nested"}
    listing = [
        ["result.txt", 6, hashlib.sha256(b"result").digest()],
        ["sub/n.txt", 6, hashlib.sha256(b"nested").digest()],
    ]
    assert result.output_hash == hashlib.sha256(msgpack.packb(["dcent/outputs/v1", listing])).digest()
    assert result.executor == executor.name and result.job_id == "job-1"


async def test_timeout_kills_a_sleeping_job(executor: Executor, work_root: Path) -> None:
    result = await _run(executor, _job(work_root, ("sleep", "1000"), timeout_s=1.0, grace_s=1.0))
    assert result.timed_out and not result.succeeded and result.outcome is Outcome.TIMED_OUT
    # sleep dies of the SIGTERM: bwrap relays that as 128 + 15, a plain subprocess as the signal.
    assert result.exit_code == 128 + SIGTERM or result.signal == SIGTERM
    assert not result.killed


async def test_timeout_kills_a_job_that_traps_sigterm_and_its_grandchild(
    executor: Executor, work_root: Path
) -> None:
    marker = f"dcent-grandchild-{uuid.uuid4().hex}"
    grandchild = "import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN); signal.pause()"
    script = f"trap '' TERM; {PYTHON} -c '{grandchild}' {marker} & wait; echo survived"
    job = _job(work_root, _sh(script), timeout_s=3.0, grace_s=1.0)
    results: list[ExecutionResult] = []

    async def run_job() -> None:
        results.append(await _run(executor, job))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_job)
        grandchild_pids = await wait_until(
            lambda: pids_with_argument(marker), timeout=RUN_DEADLINE_S, what="the grandchild to start"
        )
    (result,) = results
    assert result.timed_out and result.killed and not result.succeeded
    assert b"survived" not in result.stdout
    await wait_until(
        lambda: not any(process_is_running(pid) for pid in grandchild_pids),
        timeout=10,
        what=f"grandchild pids {grandchild_pids} to be gone",
    )


async def test_output_is_capped_and_a_chatty_job_does_not_block(executor: Executor, work_root: Path) -> None:
    script = "head -c 10000000 /dev/zero; head -c 5000 /dev/zero >&2; echo finished > out/done"
    job = _job(work_root, _sh(script), stdout_cap_bytes=65536, stderr_cap_bytes=1000)
    result = await _run(executor, job)
    assert result.exit_code == 0 and not result.timed_out
    assert result.stdout == b"\0" * 65536 and result.stdout_truncated
    assert result.stderr == b"\0" * 1000 and result.stderr_truncated
    assert result.output_files == {"done": b"finished\n"}


async def test_output_files_over_the_cap_come_back_as_a_whole_file_prefix(
    executor: Executor, work_root: Path
) -> None:
    script = "head -c 100 /dev/zero > out/a.bin; head -c 10000 /dev/zero > out/b.bin"
    result = await _run(executor, _job(work_root, _sh(script), output_cap_bytes=1000))
    assert result.output_files == {"a.bin": b"\0" * 100}
    assert result.outputs_truncated and result.outputs_omitted == ("b.bin",)
    assert result.output_hash == output_listing_hash({"a.bin": b"\0" * 100})


async def test_gpu_seconds_are_metered_for_two_gpus(executor: Executor, work_root: Path) -> None:
    job = _job(
        work_root,
        _sh('printf "%s" "$CUDA_VISIBLE_DEVICES"'),
        gpu_uuids=("GPU-aaaaaaaa-0001", "GPU-bbbbbbbb-0002"),
    )
    result = await _run(executor, job)
    assert result.stdout == b"GPU-aaaaaaaa-0001,GPU-bbbbbbbb-0002"
    assert result.wall_ms >= 1
    assert result.gpu_ms == result.wall_ms * 2 and result.outcome is Outcome.COMPLETED
    assert result.gpu_seconds == (result.wall_ms * 2 + 999) // 1000 and result.gpu_seconds >= 1

    no_gpus = await _run(executor, _job(work_root, _sh('printf "[%s]" "$CUDA_VISIBLE_DEVICES"')))
    assert no_gpus.stdout == b"[]" and no_gpus.gpu_seconds == 0


async def test_host_environment_does_not_leak_into_the_job(
    executor: Executor, work_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DCENT_HOST_SECRET", "must-not-leak")
    dump = "import json, os; print(json.dumps(dict(os.environ)))"
    job = _job(work_root, (PYTHON, "-c", dump), env={"JOB_SETTING": "42"}, gpu_uuids=("GPU-cccccccc-0003",))
    result = await _run(executor, job)
    assert result.exit_code == 0, result.stderr
    env = json.loads(result.stdout)
    assert set(env) == {
        "CUDA_VISIBLE_DEVICES",
        "HOME",
        "JOB_SETTING",
        "LANG",
        "LOGNAME",
        "PATH",
        "PWD",
        "TMPDIR",
        "USER",
    }
    assert env["JOB_SETTING"] == "42" and env["CUDA_VISIBLE_DEVICES"] == "GPU-cccccccc-0003"
    if executor.name == "bubblewrap":
        assert (env["HOME"], env["PWD"], env["TMPDIR"]) == ("/work", "/work", "/tmp")


async def test_a_missing_command_is_the_jobs_failure(executor: Executor, work_root: Path) -> None:
    result = await _run(executor, _job(work_root, ("no-such-command-dcent",)))
    assert result.exit_code == 127 and not result.succeeded and result.outcome is Outcome.JOB_FAILED


async def test_cancelling_a_run_stops_the_job_and_removes_its_workspace(
    executor: Executor, work_root: Path
) -> None:
    marker = f"dcent-cancelled-{uuid.uuid4().hex}"
    job = _job(work_root, (PYTHON, "-c", "import signal; signal.pause()", marker), grace_s=1.0)
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_run, executor, job)
            pids = await wait_until(
                lambda: pids_with_argument(marker), timeout=RUN_DEADLINE_S, what="the job to start"
            )
            scope.cancel()
    assert scope.cancelled_caught
    await wait_until(
        lambda: not any(process_is_running(pid) for pid in pids),
        timeout=10,
        what=f"job pids {pids} to be gone after the cancellation",
    )


# --- what only the sandbox does ------------------------------------------------------------------
async def test_network_is_blocked_in_the_sandbox_and_open_without_it(
    bwrap: BubblewrapExecutor, work_root: Path
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setblocking(False)
        port = listener.getsockname()[1]
        connect = "import socket, sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=5); print('connected')"
        job = _job(work_root, (PYTHON, "-c", connect, str(port)))

        sandboxed = await _run(bwrap, job)
        assert sandboxed.exit_code != 0 and b"connected" not in sandboxed.stdout
        assert b"Error" in sandboxed.stderr
        with pytest.raises(BlockingIOError):
            listener.accept()

        unsandboxed = await _run(SubprocessExecutor(allow_unsandboxed=True), job)
        assert unsandboxed.exit_code == 0 and unsandboxed.stdout == b"connected\n", unsandboxed.stderr
        connection, _address = listener.accept()
        connection.close()


_TRY_WRITES = """
import errno, json, sys
outcome = {}
for path in sys.argv[1:]:
    try:
        with open(path, "w") as handle:
            handle.write("written by the job")
        outcome[path] = "ok"
    except OSError as exc:
        outcome[path] = errno.errorcode.get(exc.errno, str(exc.errno))
print(json.dumps(outcome))
"""


async def test_writes_outside_the_work_directory_fail(
    bwrap: BubblewrapExecutor, work_root: Path, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex
    host_tmp_file = tmp_path / f"host-tmp-{tag}"
    outside = [
        f"/etc/dcent-{tag}",
        f"/usr/dcent-{tag}",
        f"/dcent-{tag}",
        f"/dev/dcent-{tag}",
        str(host_tmp_file),
    ]
    inside = ["/work/inside.txt", "out/result.txt", f"/tmp/private-{tag}"]
    result = await _run(bwrap, _job(work_root, (PYTHON, "-c", _TRY_WRITES, *outside, *inside)))
    assert result.exit_code == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert {path: outcome[path] != "ok" for path in outside} == dict.fromkeys(outside, True), outcome
    assert {path: outcome[path] for path in inside} == dict.fromkeys(inside, "ok")
    assert result.output_files == {"result.txt": b"written by the job"}
    for path in [*outside, f"/tmp/private-{tag}"]:
        assert not os.path.exists(path), f"{path} appeared on the host"

    # The same write to the host's tmp directory succeeds without the sandbox.
    unsandboxed = await _run(
        SubprocessExecutor(allow_unsandboxed=True),
        _job(work_root, (PYTHON, "-c", _TRY_WRITES, str(host_tmp_file))),
    )
    assert json.loads(unsandboxed.stdout) == {str(host_tmp_file): "ok"}
    assert host_tmp_file.read_text() == "written by the job"


async def test_output_symlinks_and_fifos_are_not_followed(bwrap: BubblewrapExecutor, work_root: Path) -> None:
    # /etc/hostname exists on the host, where outputs are collected: a followed link would leak it.
    script = "ln -s /etc/hostname out/leak; mkfifo out/fifo; printf ok > out/real.txt"
    result = await _run(bwrap, _job(work_root, _sh(script)))
    assert result.exit_code == 0, result.stderr
    assert result.output_files == {"real.txt": b"ok"}
    assert result.outputs_omitted == ("fifo", "leak")


@pytest.mark.skipif(
    not GPU_DEVICE_NODES,
    reason="no /dev/nvidiaN on this machine: the GPU bind list is covered by test_executor_argv",
)
async def test_sold_gpu_device_nodes_are_the_only_ones_bound(
    bwrap: BubblewrapExecutor, work_root: Path
) -> None:
    sold = GPU_DEVICE_NODES[0]
    job = _job(work_root, _sh("ls /dev"), gpu_uuids=("GPU-00000000-0000",), gpu_device_paths=(sold,))
    result = await _run(bwrap, job)
    assert result.exit_code == 0, result.stderr
    nvidia_nodes = {name for name in result.stdout.decode().split() if name.startswith("nvidia")}
    assert Path(sold).name in nvidia_nodes
    assert not nvidia_nodes & {Path(other).name for other in GPU_DEVICE_NODES[1:]}


async def test_a_missing_gpu_device_node_is_refused_before_anything_runs(
    bwrap: BubblewrapExecutor, work_root: Path
) -> None:
    absent = next(f"/dev/nvidia{n}" for n in range(999, 0, -1) if not os.path.exists(f"/dev/nvidia{n}"))
    job = _job(work_root, ("true",), gpu_uuids=("GPU-00000000-0000",), gpu_device_paths=(absent,))
    with pytest.raises(InvalidGpuBinding) as caught:
        await _run(bwrap, job)
    assert caught.value.code == 5356
    assert not work_root.exists()


@pytest.mark.usefixtures("bwrap")
async def test_a_sandbox_that_cannot_be_built_is_our_typed_error(tmp_path: Path, work_root: Path) -> None:
    vanishing = tmp_path / "toolkit"
    vanishing.mkdir()
    _python, python_binds = job_python()
    executor = BubblewrapExecutor(extra_ro_binds=(*python_binds, str(vanishing)))
    assert executor.available()
    vanishing.rmdir()
    with pytest.raises(SandboxStartFailed) as caught:
        await _run(executor, _job(work_root, ("true",)))
    assert caught.value.code == 5354
    assert "toolkit" in caught.value.message
    # What the market calls: our failure as a result, the job never having started.
    result = await run_to_outcome(executor, _job(work_root, ("true",)))
    assert (result.outcome, result.error_code, result.started) == (Outcome.PROVIDER_ERROR, 5354, False)
