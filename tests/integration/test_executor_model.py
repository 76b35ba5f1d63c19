"""The executor's job model: validation with typed errors, metering, the outputs hash, the
workspace's output collection, error codes, and executor selection. No job process runs here."""

from __future__ import annotations

import hashlib
import inspect
import os
from pathlib import Path

import msgpack
import pytest

from node.config import EXECUTORS
from node.executor import errors
from node.executor.bubblewrap import BubblewrapExecutor
from node.executor.container import ContainerExecutor
from node.executor.errors import (
    ExecutorError,
    InputPathConflict,
    InvalidArgv,
    InvalidEnvironment,
    InvalidGpuBinding,
    InvalidImage,
    InvalidJobId,
    InvalidLimits,
    JobInputError,
    SandboxUnavailable,
    UnknownExecutor,
    UnsafeInputPath,
    UnsandboxedNotAllowed,
    WorkspaceError,
)
from node.executor.limits import Capabilities, LimitKind, ResourceLimits
from node.executor.model import (
    ExecutionResult,
    Outcome,
    SandboxJob,
    classify,
    gpu_ms_for,
    gpu_seconds_for,
    output_listing_hash,
)
from node.executor.select import EXECUTOR_NAMES, select_executor
from node.executor.unsandboxed import SubprocessExecutor
from node.executor.workspace import Workspace
from protocol.market.jobspec import Limits


def _job(tmp_path: Path, **overrides: object) -> SandboxJob:
    fields: dict[str, object] = {"job_id": "job-1", "argv": ("true",), "work_root": tmp_path / "jobs"}
    fields.update(overrides)
    return SandboxJob(**fields)  # type: ignore[arg-type]


# --- input paths ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path",
    ["/etc/passwd", "../escape", "a/../../escape", "a/..", "./a", "a//b", "a/", "", "a\x00b", ".."],
)
def test_input_path_escapes_are_rejected_with_a_typed_error(tmp_path: Path, path: str) -> None:
    with pytest.raises(UnsafeInputPath) as caught:
        _job(tmp_path, input_files={path: b"x"})
    assert caught.value.code == 5314
    assert isinstance(caught.value, JobInputError)
    # Refused before anything touched the disk.
    assert not (tmp_path / "jobs").exists()


def test_nested_relative_input_paths_are_accepted_and_frozen(tmp_path: Path) -> None:
    inputs = {"data/in.bin": b"\x00\x01", "run.sh": b"echo hi\n"}
    job = _job(tmp_path, input_files=inputs)
    inputs["late.txt"] = b"added after validation"
    assert dict(job.input_files) == {"data/in.bin": b"\x00\x01", "run.sh": b"echo hi\n"}
    with pytest.raises(TypeError):
        job.input_files["x"] = b"y"  # type: ignore[index]


@pytest.mark.parametrize(
    "inputs",
    [{"a": b"file", "a/b": b"under a file"}, {"out/result": b"outputs are the job's"}],
)
def test_conflicting_or_reserved_input_paths_are_rejected(tmp_path: Path, inputs: dict[str, bytes]) -> None:
    with pytest.raises(InputPathConflict) as caught:
        _job(tmp_path, input_files=inputs)
    assert caught.value.code == 5315


def test_input_content_must_be_bytes(tmp_path: Path) -> None:
    with pytest.raises(UnsafeInputPath):
        _job(tmp_path, input_files={"a.txt": "text, not bytes"})


# --- the rest of the spec ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"job_id": "../up"}, InvalidJobId),
        ({"job_id": ""}, InvalidJobId),
        ({"job_id": "a" * 129}, InvalidJobId),
        ({"argv": ()}, InvalidArgv),
        ({"argv": ["list", "not", "tuple"]}, InvalidArgv),
        ({"argv": ("",)}, InvalidArgv),
        ({"argv": ("echo", "nul\x00byte")}, InvalidArgv),
        ({"env": {"CUDA_VISIBLE_DEVICES": "0,1,2,3"}}, InvalidEnvironment),
        ({"env": {"NVIDIA_VISIBLE_DEVICES": "all"}}, InvalidEnvironment),
        ({"env": {"BAD=NAME": "x"}}, InvalidEnvironment),
        ({"env": {"OK": "nul\x00"}}, InvalidEnvironment),
        ({"env": {"OK": 1}}, InvalidEnvironment),
        ({"timeout_s": 0}, InvalidLimits),
        ({"timeout_s": float("inf")}, InvalidLimits),
        ({"grace_s": -1}, InvalidLimits),
        ({"stdout_cap_bytes": -1}, InvalidLimits),
        ({"output_cap_bytes": 1.5}, InvalidLimits),
        ({"image": "--privileged"}, InvalidImage),
        ({"gpu_uuids": ("not-a-uuid",)}, InvalidGpuBinding),
        ({"gpu_uuids": ("GPU-a", "GPU-a")}, InvalidGpuBinding),
        ({"gpu_device_paths": ("/dev/sda",)}, InvalidGpuBinding),
        ({"gpu_device_paths": ("/dev/nvidiactl",)}, InvalidGpuBinding),
        ({"work_root": Path("relative/jobs")}, WorkspaceError),
        ({"limits": {"memory_bytes": 1}}, InvalidLimits),
        (
            {
                "limits": ResourceLimits(disk_bytes=16 * 2**20),
                "input_files": {"big": b"x" * (16 * 2**20 + 1)},
            },
            InvalidLimits,
        ),
    ],
)
def test_bad_job_specs_raise_their_typed_error(
    tmp_path: Path, overrides: dict[str, object], error: type[ExecutorError]
) -> None:
    with pytest.raises(error) as caught:
        _job(tmp_path, **overrides)
    assert caught.value.code == error.code


def test_requester_faults_and_our_faults_are_split() -> None:
    for requester_fault in (InvalidJobId, InvalidArgv, InvalidEnvironment, UnsafeInputPath, InvalidImage):
        assert issubclass(requester_fault, JobInputError)
        assert not issubclass(requester_fault, SandboxUnavailable)
    for our_fault in (InvalidGpuBinding, WorkspaceError, UnsandboxedNotAllowed, UnknownExecutor):
        assert issubclass(our_fault, SandboxUnavailable)
        assert not issubclass(our_fault, JobInputError)


def test_every_error_has_a_unique_code_in_its_band() -> None:
    classes = [
        cls
        for _name, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, ExecutorError) and cls.__module__ == errors.__name__
    ]
    codes = [cls.code for cls in classes]
    assert len(codes) == len(set(codes)), codes
    for cls in classes:
        if issubclass(cls, JobInputError):
            assert 5310 <= cls.code <= 5349, cls
        elif issubclass(cls, SandboxUnavailable):
            assert 5350 <= cls.code <= 5399, cls
        else:
            assert cls is ExecutorError and cls.code == 5300


# --- metering and hashing ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("wall_ms", "gpus", "expected"),
    [(1200, 2, 3), (1000, 2, 2), (1, 1, 1), (999, 1, 1), (1001, 1, 2), (5000, 0, 0), (0, 4, 0), (250, 8, 2)],
)
def test_gpu_seconds_round_the_product_up(wall_ms: int, gpus: int, expected: int) -> None:
    assert gpu_seconds_for(wall_ms, gpus) == expected


def test_output_hash_is_sha256_of_the_canonical_listing() -> None:
    files = {"z.txt": b"last", "a/b.bin": b"\x00\xff", "a-c": b""}
    # Independent recomputation from the documented definition.
    listing = [
        [path, len(files[path]), hashlib.sha256(files[path]).digest()] for path in ("a-c", "a/b.bin", "z.txt")
    ]
    expected = hashlib.sha256(msgpack.packb(["dcent/outputs/v1", listing], use_bin_type=True)).digest()
    assert output_listing_hash(files) == expected
    assert output_listing_hash(dict(reversed(list(files.items())))) == expected
    assert output_listing_hash({**files, "z.txt": b"changed"}) != expected
    assert output_listing_hash({}) != expected


# --- output collection -------------------------------------------------------------------------
def test_outputs_are_collected_whole_in_path_order_up_to_the_cap(tmp_path: Path) -> None:
    workspace = Workspace.create(tmp_path, "collect")
    (workspace.out / "a.txt").write_bytes(b"a" * 10)
    (workspace.out / "b").mkdir()
    (workspace.out / "b" / "c.txt").write_bytes(b"c" * 10)
    (workspace.out / "d.txt").write_bytes(b"d" * 5)
    collected = workspace.collect_outputs(25)
    assert collected.files == {"a.txt": b"a" * 10, "b/c.txt": b"c" * 10, "d.txt": b"d" * 5}
    assert not collected.truncated
    # b/c.txt does not fit in the 5 bytes left after a.txt; d.txt would, but the result is a
    # prefix in path order: everything after the first file that does not fit is left out.
    smaller = workspace.collect_outputs(15)
    assert smaller.files == {"a.txt": b"a" * 10}
    assert smaller.truncated
    assert smaller.omitted == ("b/c.txt", "d.txt")


def test_output_collection_never_follows_symlinks_or_opens_fifos(tmp_path: Path) -> None:
    secret = tmp_path / "host-secret"
    secret.write_bytes(b"the node's key")
    workspace = Workspace.create(tmp_path / "jobs", "traps")
    (workspace.out / "leak").symlink_to(secret)
    (workspace.out / "dirlink").symlink_to(tmp_path)
    os.mkfifo(workspace.out / "fifo")
    (workspace.out / "real.txt").write_bytes(b"ok")
    collected = workspace.collect_outputs(1024)
    assert collected.files == {"real.txt": b"ok"}
    assert collected.omitted == ("dirlink", "fifo", "leak")
    assert not collected.truncated


def test_workspace_removal_handles_directories_left_unreadable(tmp_path: Path) -> None:
    workspace = Workspace.create(tmp_path, "locked")
    locked = workspace.out / "locked"
    (locked / "inner").mkdir(parents=True)
    (locked / "inner" / "f").write_bytes(b"x")
    locked.chmod(0)
    outside = tmp_path / "outside"
    outside.mkdir(mode=0o755)
    (workspace.work / "link-out").symlink_to(outside)
    workspace.remove()
    assert not workspace.root.exists()
    # The symlinked directory outside was neither removed nor chmodded.
    assert outside.is_dir() and (outside.stat().st_mode & 0o777) == 0o755


def test_inputs_are_written_under_the_work_directory(tmp_path: Path) -> None:
    workspace = Workspace.create(tmp_path, "inputs")
    workspace.write_inputs({"data/x.bin": b"\x01\x02", "top.txt": b"t"})
    assert (workspace.work / "data" / "x.bin").read_bytes() == b"\x01\x02"
    assert (workspace.work / "top.txt").read_bytes() == b"t"
    with pytest.raises(UnsafeInputPath):
        workspace.write_inputs({"../escape": b"x"})
    assert not (workspace.root / "escape").exists()


# --- selection -----------------------------------------------------------------------------------
def test_executor_names_match_the_node_config() -> None:
    assert set(EXECUTOR_NAMES) == set(EXECUTORS)


def test_select_executor_builds_each_named_executor() -> None:
    assert isinstance(select_executor("bubblewrap", allow_unsandboxed=False), BubblewrapExecutor)
    docker = select_executor("docker", allow_unsandboxed=False)
    assert isinstance(docker, ContainerExecutor) and docker.name == "docker"
    assert select_executor("podman", allow_unsandboxed=False).name == "podman"
    assert isinstance(select_executor("subprocess", allow_unsandboxed=True), SubprocessExecutor)


def test_subprocess_executor_needs_the_explicit_opt_in() -> None:
    with pytest.raises(UnsandboxedNotAllowed) as caught:
        select_executor("subprocess", allow_unsandboxed=False)
    assert caught.value.code == 5352
    with pytest.raises(UnsandboxedNotAllowed):
        SubprocessExecutor()


def test_unknown_executor_is_a_typed_error() -> None:
    with pytest.raises(UnknownExecutor) as caught:
        select_executor("chroot", allow_unsandboxed=True)
    assert caught.value.code == 5353


# --- limits, outcomes, GPU-milliseconds -------------------------------------------------------------
@pytest.mark.parametrize(
    "fields",
    [
        {"memory_bytes": 2**20},
        {"cpu_millicores": 0},
        {"processes": 1},
        {"disk_bytes": 1024},
        {"memory_bytes": True},
        {"processes": 2**63},
    ],
)
def test_resource_limits_out_of_range_are_refused(fields: dict[str, object]) -> None:
    with pytest.raises(InvalidLimits) as caught:
        ResourceLimits(**fields)  # type: ignore[arg-type]
    assert caught.value.code == 5316


def test_resource_limits_come_from_the_job_spec_and_say_what_they_ask_for() -> None:
    limits = ResourceLimits.from_spec(
        Limits(memory_bytes=2**30, cpu_millicores=1500, processes=64, disk_bytes=2**31)
    )
    assert limits == ResourceLimits(memory_bytes=2**30, cpu_millicores=1500, processes=64, disk_bytes=2**31)
    assert limits.requested() == frozenset(LimitKind)
    assert ResourceLimits(disk_bytes=2**30).requested() == {LimitKind.DISK}
    capabilities = Capabilities(
        "x", True, frozenset({LimitKind.DISK}), {LimitKind.MEMORY: "no memory controller"}
    )
    assert capabilities.unenforceable(limits) == (LimitKind.CPU, LimitKind.MEMORY, LimitKind.PROCESSES)
    assert "memory: no memory controller" in capabilities.explain((LimitKind.MEMORY,))


@pytest.mark.parametrize(
    ("run", "expected"),
    [
        ({"exit_code": 0, "signal": None, "timed_out": False}, (Outcome.COMPLETED, None)),
        ({"exit_code": 3, "signal": None, "timed_out": False}, (Outcome.JOB_FAILED, None)),
        ({"exit_code": None, "signal": 9, "timed_out": False}, (Outcome.JOB_FAILED, None)),
        ({"exit_code": 143, "signal": None, "timed_out": True}, (Outcome.TIMED_OUT, None)),
        (
            {"exit_code": 143, "signal": None, "timed_out": False, "stopped_for": LimitKind.PROCESSES},
            (Outcome.LIMIT_EXCEEDED, LimitKind.PROCESSES),
        ),
        (
            {"exit_code": 137, "signal": None, "timed_out": False, "limit_evidence": LimitKind.MEMORY},
            (Outcome.LIMIT_EXCEEDED, LimitKind.MEMORY),
        ),
        # A limit the kernel enforced decides the class even when the job then exited 0 or ran
        # into its timeout: the class does not depend on when the watcher looked.
        (
            {"exit_code": 0, "signal": None, "timed_out": False, "limit_evidence": LimitKind.PROCESSES},
            (Outcome.LIMIT_EXCEEDED, LimitKind.PROCESSES),
        ),
        (
            {"exit_code": 143, "signal": None, "timed_out": True, "limit_evidence": LimitKind.DISK},
            (Outcome.LIMIT_EXCEEDED, LimitKind.DISK),
        ),
    ],
)
def test_every_run_gets_exactly_one_outcome(
    run: dict[str, object], expected: tuple[Outcome, LimitKind | None]
) -> None:
    fields: dict[str, object] = {"stopped_for": None, "limit_evidence": None, **run}
    assert classify(**fields) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("wall_ms", "gpus", "expected"), [(1, 1, 1), (1200, 2, 2400), (5000, 0, 0), (7, 8, 56)]
)
def test_metering_is_in_gpu_milliseconds_so_no_job_with_a_gpu_is_free(
    wall_ms: int, gpus: int, expected: int
) -> None:
    assert gpu_ms_for(wall_ms, gpus) == expected
    assert gpu_seconds_for(wall_ms, gpus) == -(-expected // 1000)
    with pytest.raises(ValueError):
        gpu_ms_for(-1, 1)


def test_a_provider_error_result_carries_our_code_and_nothing_of_the_job() -> None:
    result = ExecutionResult.provider_error(
        "job-1", "bubblewrap", 5354, "bwrap: setting up uid map: Permission denied"
    )
    assert (result.outcome, result.error_code, result.started, result.succeeded) == (
        Outcome.PROVIDER_ERROR,
        5354,
        False,
        False,
    )
    assert (result.gpu_ms, result.gpu_seconds, result.exit_code, result.signal) == (0, 0, None, None)
    assert result.output_files == {} and result.output_hash == output_listing_hash({})
