"""Resource limits, enforced by the kernel, under bubblewrap and the subprocess executor.

A memory hog, a fork bomb, a disk filler and a sparse file past the disk limit are each stopped at
their limit and the run is classified ``limit_exceeded`` with the resource named; a CPU spinner is
slowed to its quota. Each limit test also runs the same job with room to spare, to show that the
limit (not the job) is what stopped it. A limit the host cannot enforce is refused before anything
is created. Needs root (cgroups, loop mounts): elsewhere these tests skip, and fail under CI=true.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from node.executor.base import Executor, run_to_outcome
from node.executor.bubblewrap import BubblewrapExecutor
from node.executor.cgroups import CgroupManager, discover_here
from node.executor.errors import LimitNotEnforceable
from node.executor.limits import LimitKind, ResourceLimits
from node.executor.model import ExecutionResult, Outcome, SandboxJob
from node.executor.process import OutputLine
from node.executor.settings import ExecutorSettings
from node.executor.unsandboxed import SubprocessExecutor
from tests.integration.executor_helpers import (
    FORK_BOMB,
    bubblewrap_executor_or_skip,
    job_python,
    require_limits,
)

PYTHON, _PYTHON_BINDS = job_python()
MiB = 2**20
RUN_DEADLINE_S = 120
LIMITS = ResourceLimits(memory_bytes=96 * MiB, cpu_millicores=1000, processes=48, disk_bytes=32 * MiB)
# Each test asks only for the limit it is about, so a host that enforces some kinds (a chroot with
# no cgroupfs but a tmpfs for the disk) still runs the tests it can.
MEMORY_ONLY = ResourceLimits(memory_bytes=LIMITS.memory_bytes)
PROCESSES_ONLY = ResourceLimits(processes=LIMITS.processes)
DISK_ONLY = ResourceLimits(disk_bytes=LIMITS.disk_bytes)
ROOMY = ResourceLimits(memory_bytes=1024 * MiB, cpu_millicores=2000, processes=4096, disk_bytes=256 * MiB)


@pytest.fixture(params=["bubblewrap", "subprocess"])
def executor(request: pytest.FixtureRequest) -> Executor:
    if request.param == "bubblewrap":
        return bubblewrap_executor_or_skip()
    return SubprocessExecutor(allow_unsandboxed=True)


def _mounts_under(root: Path) -> list[str]:
    prefix = str(root) + "/"
    points = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    return [point for point in points if point.startswith(prefix)]


@pytest.fixture
def work_root(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "jobs"
    yield root
    # Whatever happened to the job: no mount, no workspace, no volume image is left behind.
    assert _mounts_under(tmp_path) == []
    assert not root.exists() or list(root.iterdir()) == []


def _job(work_root: Path, argv: tuple[str, ...], limits: ResourceLimits, **overrides: object) -> SandboxJob:
    fields: dict[str, object] = {
        "job_id": "limited",
        "argv": argv,
        "work_root": work_root,
        "timeout_s": 60.0,
        "grace_s": 1.0,
        "limits": limits,
    }
    fields.update(overrides)
    return SandboxJob(**fields)  # type: ignore[arg-type]


async def _run(executor: Executor, job: SandboxJob, **kwargs: object) -> ExecutionResult:
    with trio.fail_after(RUN_DEADLINE_S):
        return await executor.run(job, **kwargs)  # type: ignore[arg-type]


def _py(code: str) -> tuple[str, ...]:
    return (PYTHON, "-c", code)


async def test_a_memory_hog_is_killed_at_its_memory_limit(executor: Executor, work_root: Path) -> None:
    require_limits(executor, LimitKind.MEMORY)
    hog = _py("block = bytearray(256 * 2**20); print('allocated', len(block))")
    result = await _run(executor, _job(work_root, hog, MEMORY_ONLY))
    assert (result.outcome, result.limit) == (Outcome.LIMIT_EXCEEDED, LimitKind.MEMORY), result
    assert b"allocated" not in result.stdout and not result.timed_out
    assert result.peak_memory_bytes is not None and result.peak_memory_bytes <= LIMITS.memory_bytes

    roomy = await _run(executor, _job(work_root, hog, ResourceLimits(memory_bytes=ROOMY.memory_bytes)))
    assert roomy.outcome is Outcome.COMPLETED and roomy.stdout == b"allocated 268435456\n"


async def test_a_fork_bomb_is_stopped_at_its_process_limit(executor: Executor, work_root: Path) -> None:
    require_limits(executor, LimitKind.PROCESSES)
    bomb = ("/bin/sh", "-c", FORK_BOMB)
    result = await _run(executor, _job(work_root, bomb, PROCESSES_ONLY))
    assert (result.outcome, result.limit) == (Outcome.LIMIT_EXCEEDED, LimitKind.PROCESSES), result
    # Stopped by the limit watcher, long before its 60 s timeout.
    assert not result.timed_out and result.wall_ms < 30_000
    assert b"fork" in result.stderr.lower()

    spawner = ("/bin/sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10; do sleep 0.01 & done; wait; echo all")
    fits = await _run(executor, _job(work_root, spawner, PROCESSES_ONLY))
    assert fits.outcome is Outcome.COMPLETED and fits.stdout == b"all\n"


_FILL_DISK = """
import os, sys
written = 0
chunk = b"x" * 2**20
try:
    with open("out/big", "wb") as handle:
        while True:
            handle.write(chunk)
            handle.flush()
            written += len(chunk)
            print("wrote", written, flush=True)
except OSError as exc:
    print("stopped:", exc.strerror, flush=True)
    sys.exit(3)
"""


async def test_a_job_writing_past_its_disk_limit_is_stopped_and_the_host_disk_is_untouched(
    executor: Executor, work_root: Path
) -> None:
    require_limits(executor, LimitKind.DISK)
    image_peaks: list[int] = []

    async def measure_the_volume(line: OutputLine) -> None:
        # While the job writes: what its volume really takes on the provider's disk.
        for image in work_root.glob("*.img"):
            info = image.stat()
            image_peaks.append(info.st_blocks * 512)
            assert info.st_size == LIMITS.disk_bytes

    job = _job(work_root, _py(_FILL_DISK), DISK_ONLY, output_cap_bytes=MiB)
    result = await _run(executor, job, on_output=measure_the_volume)
    assert (result.outcome, result.limit) == (Outcome.LIMIT_EXCEEDED, LimitKind.DISK), result
    reported = [int(line.split()[1]) for line in result.stdout.splitlines() if line.startswith(b"wrote")]
    assert reported and max(reported) <= LIMITS.disk_bytes
    assert result.output_files == {} and result.outputs_omitted == ("big",)  # over the output cap
    if image_peaks:  # the loop backend: the image file never grew past the limit
        assert max(image_peaks) <= LIMITS.disk_bytes

    small = _job(work_root, _py("open('out/small', 'wb').write(b'y' * 2**20)"), DISK_ONLY)
    fits = await _run(executor, small)
    assert fits.outcome is Outcome.COMPLETED and fits.output_files == {"small": b"y" * 2**20}


async def test_a_file_past_the_disk_limit_is_refused_even_when_sparse(
    executor: Executor, work_root: Path
) -> None:
    require_limits(executor, LimitKind.DISK)

    def sparse_write(offset: int) -> tuple[str, ...]:
        # One byte at ``offset``: a hole before it, so the filesystem itself would accept it.
        return (
            "/bin/sh",
            "-c",
            f"printf x | dd of=out/sparse bs=1 seek={offset} status=none && echo written",
        )

    result = await _run(executor, _job(work_root, sparse_write(LIMITS.disk_bytes), DISK_ONLY))
    # RLIMIT_FSIZE: the write past the limit gets SIGXFSZ.
    assert (result.outcome, result.limit) == (Outcome.LIMIT_EXCEEDED, LimitKind.DISK), result
    assert b"written" not in result.stdout

    fits = await _run(
        executor, _job(work_root, sparse_write(LIMITS.disk_bytes - 2), DISK_ONLY, output_cap_bytes=0)
    )
    assert fits.outcome is Outcome.COMPLETED and fits.stdout == b"written\n"


_SPIN = """
import time
start = time.monotonic()
while time.monotonic() - start < 2.0:
    pass
print(time.process_time())
"""


async def test_a_cpu_spinner_gets_no_more_than_its_cpu_quota(executor: Executor, work_root: Path) -> None:
    require_limits(executor, LimitKind.CPU)
    tenth_of_a_core = ResourceLimits(cpu_millicores=100)
    result = await _run(executor, _job(work_root, _py(_SPIN), tenth_of_a_core))
    assert result.outcome is Outcome.COMPLETED, result
    # 2 s of wall time at 0.1 core is about 0.2 s of CPU; throttling is not a failure.
    assert float(result.stdout) < 1.0


async def test_a_limit_the_host_cannot_enforce_is_refused_before_anything_runs(tmp_path: Path) -> None:
    work_root = tmp_path / "jobs"
    no_disk = SubprocessExecutor(allow_unsandboxed=True, settings=ExecutorSettings(disk_backend="none"))
    capabilities = no_disk.capabilities()
    assert LimitKind.DISK not in capabilities.limits
    assert "disk_backend = none" in capabilities.missing[LimitKind.DISK]
    job = _job(work_root, ("true",), ResourceLimits(disk_bytes=32 * MiB))
    with pytest.raises(LimitNotEnforceable) as caught:
        await _run(no_disk, job)
    assert caught.value.code == 5359 and "disk" in caught.value.message
    assert not work_root.exists()

    # What the market calls: the refusal comes back as a provider error that never started.
    result = await run_to_outcome(no_disk, job)
    assert (result.outcome, result.error_code, result.started) == (Outcome.PROVIDER_ERROR, 5359, False)
    assert result.gpu_ms == 0 and result.exit_code is None

    no_cgroups = BubblewrapExecutor(
        extra_ro_binds=_PYTHON_BINDS, settings=ExecutorSettings(cgroups=False, disk_backend="none")
    )
    assert no_cgroups.capabilities().unenforceable(LIMITS) == (
        LimitKind.CPU,
        LimitKind.DISK,
        LimitKind.MEMORY,
        LimitKind.PROCESSES,
    )


async def test_capabilities_report_what_this_host_enforces(executor: Executor) -> None:
    capabilities = executor.capabilities()
    assert capabilities.executor == executor.name
    assert capabilities.sandboxed is (executor.name == "bubblewrap")
    assert set(capabilities.limits) | set(capabilities.missing) == set(LimitKind)
    host = discover_here()
    if os.getuid() == 0 and set(host.hierarchies) == {"memory", "pids", "cpu"}:
        # Root with every controller mounted (this project's machines and CI): all enforceable.
        assert capabilities.limits == frozenset(LimitKind), capabilities.missing
        assert capabilities.details["cgroup"] in ("v1", "v2", "v1+v2")
        assert capabilities.details["disk"] in ("loop", "tmpfs")
    for controller, kind in (
        ("memory", LimitKind.MEMORY),
        ("pids", LimitKind.PROCESSES),
        ("cpu", LimitKind.CPU),
    ):
        if controller not in host.hierarchies:
            # No hierarchy carries it (a chroot without cgroupfs): said, with the reason.
            assert kind not in capabilities.limits and "controller" in capabilities.missing[kind]


async def test_a_confined_job_starts_with_default_signal_dispositions(
    executor: Executor, work_root: Path
) -> None:
    # The confinement's wrapper is Python, which ignores SIGPIPE and SIGXFSZ; ignored signals
    # survive exec, and a job that inherited them would never die of a closed pipe or RLIMIT_FSIZE.
    require_limits(executor, LimitKind.DISK)
    result = await _run(executor, _job(work_root, ("grep", "SigIgn", "/proc/self/status"), DISK_ONLY))
    assert result.outcome is Outcome.COMPLETED, result
    ignored = int(result.stdout.split()[1], 16)
    for signal_number in (13, 25):  # SIGPIPE, SIGXFSZ
        assert not ignored & (1 << (signal_number - 1)), hex(ignored)


def test_an_oom_kill_in_a_child_cgroup_removed_before_anyone_looked_is_still_a_memory_limit(
    tmp_path: Path,
) -> None:
    """What a container engine does under cgroup v1: the job runs in a child cgroup of ours,
    which it removes (and with it the only OOM-kill count v1 keeps) as the container exits. The
    job's main process survives the kill of its child. The limit must still be on record."""
    require_limits(SubprocessExecutor(allow_unsandboxed=True), LimitKind.MEMORY)
    manager = CgroupManager(discover_here(), owner=f"test-oom-{os.getpid()}")
    cgroup = manager.create("hog", MEMORY_ONLY)
    try:
        memory = cgroup.dirs["memory"]
        if memory.version != 1:
            pytest.skip("cgroup v2 counts OOM kills hierarchically; this is the v1 record")
        child = memory.own_dir / "libpod-child"
        child.mkdir()
        script = f"echo $$ > {child}/cgroup.procs; head -c 256M /dev/zero | tail > /dev/null; echo survived"
        done = subprocess.run(["sh", "-c", script], capture_output=True, timeout=RUN_DEADLINE_S, check=False)
        assert (done.returncode, done.stdout) == (0, b"survived\n")  # the main process lived
        child.rmdir()  # the engine's cleanup, before the watcher's next look
        assert cgroup.events().limit_hit() is LimitKind.MEMORY
    finally:
        assert cgroup.remove()
        manager.remove_bases()
    assert cgroup.events().limit_hit() is LimitKind.MEMORY  # and it outlives our own cgroup
