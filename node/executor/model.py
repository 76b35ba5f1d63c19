"""What an executor is asked to run (:class:`SandboxJob`) and what it reports (:class:`ExecutionResult`).

A :class:`SandboxJob` validates itself when built, so every executor receives a job whose command,
environment, input paths and limits are already known to be safe to hand to a sandbox. The node
builds it from two sources: the requester's part of the contract (command, environment, inputs,
limits, image) and our allocator's part (GPU UUIDs and device nodes, work root). Bad requester
input raises a :class:`~node.executor.errors.JobInputError`; a bad allocator value raises
:class:`~node.executor.errors.InvalidGpuBinding` (ours).

Metering is integer arithmetic on milliseconds measured with a monotonic clock, in
GPU-milliseconds: :func:`gpu_ms_for` (GPU-seconds, rounded up, stay derivable:
:func:`gpu_seconds_for`). The outputs' digest is :func:`output_listing_hash`.

Every run ends in exactly one :class:`Outcome` (:func:`classify`), which is what the market
decides payment by: the job's own failure or limit is the requester's cost, a timeout is paid up
to the maximum, a provider error (the sandbox or the node failed) is the provider's.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import MappingProxyType

from node.executor.errors import (
    InputPathConflict,
    InvalidArgv,
    InvalidEnvironment,
    InvalidGpuBinding,
    InvalidImage,
    InvalidJobId,
    InvalidLimits,
    UnsafeInputPath,
    WorkspaceError,
)
from node.executor.limits import NO_LIMITS, LimitKind, ResourceLimits
from protocol.market.delivery import OutputBlob as OutputBlob  # re-exported
from protocol.market.delivery import blob_listing_hash as blob_listing_hash  # re-exported
from protocol.market.delivery import output_listing_hash as output_listing_hash  # re-exported

#: Stores one output file, given open read-only (regular, not through a symlink) with its path
#: under ``out/``; returns its content id. Synchronous disk I/O: called from a worker thread.
OutputStore = Callable[[int, str], bytes]

# The directory, relative to the job's work directory, whose files come back as outputs.
OUTPUT_DIR = "out"

# The sandbox decides which GPUs a job sees: a job may not pick its own.
RESERVED_ENV = frozenset({"CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES"})

MAX_ARGV_ITEMS = 4096
MAX_ARGV_BYTES = 128 * 1024
MAX_ENV_ITEMS = 1024
MAX_ENV_VALUE_BYTES = 32 * 1024
MAX_INPUT_PATH_BYTES = 1024

DEFAULT_TIMEOUT_S = 3600.0
DEFAULT_GRACE_S = 10.0
DEFAULT_STREAM_CAP_BYTES = 1024 * 1024
DEFAULT_OUTPUT_CAP_BYTES = 64 * 1024 * 1024


_JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,255}")
_GPU_UUID = re.compile(r"(GPU|MIG)-[A-Za-z0-9/_-]{1,120}")
# Per-GPU nodes only; the control nodes (nvidiactl, nvidia-uvm, ...) are the executor's business.
_GPU_DEVICE = re.compile(r"/dev/nvidia[0-9]{1,3}|/dev/nvidia-caps/nvidia-cap[0-9]{1,6}")
# A registry reference: [host[:port]/]name[:tag][@digest]. It never starts with '-', so it can
# never be read as an option by the container engine's command line.
_IMAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:@+-]{0,254}")


@dataclass(frozen=True)
class SandboxJob:
    """One job to run, validated on construction.

    ``argv`` is executed as is (no shell) inside the sandbox, with the work directory as its
    current directory. ``input_files`` maps paths relative to the work directory to contents;
    the job writes its outputs under ``out/``. ``timeout_s`` counts from the process start; at
    the timeout the job gets SIGTERM, and SIGKILL ``grace_s`` later if still alive. The caps
    bound what is kept of stdout, stderr and the output files. ``image`` is for container
    executors only and must stay empty for the others. ``limits`` are the resource limits the
    kernel enforces (:mod:`node.executor.limits`); the disk limit must hold the inputs.

    Raises :class:`~node.executor.errors.JobInputError` subclasses for requester input and
    :class:`~node.executor.errors.InvalidGpuBinding` / :class:`~node.executor.errors.WorkspaceError`
    for the node's own part.
    """

    job_id: str
    argv: tuple[str, ...]
    work_root: Path
    env: Mapping[str, str] = field(default_factory=dict)
    input_files: Mapping[str, bytes] = field(default_factory=dict)
    gpu_uuids: tuple[str, ...] = ()
    gpu_device_paths: tuple[str, ...] = ()
    timeout_s: float = DEFAULT_TIMEOUT_S
    grace_s: float = DEFAULT_GRACE_S
    stdout_cap_bytes: int = DEFAULT_STREAM_CAP_BYTES
    stderr_cap_bytes: int = DEFAULT_STREAM_CAP_BYTES
    output_cap_bytes: int = DEFAULT_OUTPUT_CAP_BYTES
    image: str = ""
    limits: ResourceLimits = NO_LIMITS
    #: Inputs by reference: path relative to the work directory -> a host file (the blob store's
    #: copy), mounted read-only there; they use none of the job's disk.
    input_mounts: Mapping[str, Path] = field(default_factory=dict)
    #: When set, outputs are stored through it (as blobs) rather than read into memory, and the
    #: result lists them in ``output_blobs``.
    output_store: OutputStore | None = None

    def __post_init__(self) -> None:
        _check_job_id(self.job_id)
        if self.argv or not self.image:
            _check_argv(self.argv)  # an image alone runs its default command
        # Frozen read-only copies: the caller's dicts may change after validation.
        object.__setattr__(self, "env", MappingProxyType(_checked_env(self.env)))
        object.__setattr__(self, "input_files", MappingProxyType(_checked_inputs(self.input_files)))
        object.__setattr__(
            self, "input_mounts", MappingProxyType(_checked_mounts(self.input_mounts, self.input_files))
        )
        _check_gpus(self.gpu_uuids, self.gpu_device_paths)
        _check_limits(self)
        if not isinstance(self.limits, ResourceLimits):
            raise InvalidLimits(f"limits must be ResourceLimits, got {type(self.limits).__name__}")
        inputs_size = sum(len(content) for content in self.input_files.values())
        if self.limits.disk_bytes is not None and inputs_size > self.limits.disk_bytes:
            raise InvalidLimits(f"the inputs ({inputs_size} bytes) do not fit the disk limit")
        if self.image and _IMAGE.fullmatch(self.image) is None:
            raise InvalidImage(f"malformed container image reference {self.image!r}")
        if not isinstance(self.work_root, Path) or not self.work_root.is_absolute():
            raise WorkspaceError(f"work_root must be an absolute Path, got {self.work_root!r}")

    @property
    def gpu_count(self) -> int:
        return len(self.gpu_uuids)


class Outcome(enum.StrEnum):
    """How a run ended; exactly one per :class:`ExecutionResult`."""

    COMPLETED = "completed"  # exited by itself with status 0
    JOB_FAILED = "job_failed"  # a non-zero exit or a signal: the job's own failure
    TIMED_OUT = "timed_out"  # still running at max_runtime_s, then stopped
    LIMIT_EXCEEDED = "limit_exceeded"  # stopped by (or failed at) a resource limit: ``limit`` says which
    PROVIDER_ERROR = "provider_error"  # the sandbox or the node failed: not the job's fault


@dataclass(frozen=True)
class ExecutionResult:
    """What happened when a job ran.

    ``outcome`` is the class the market pays by (:func:`classify`); ``limit`` names the resource
    for ``LIMIT_EXCEEDED``. For ``PROVIDER_ERROR``, ``error_code`` and ``error_message`` carry
    our typed error (:mod:`node.executor.errors`) and ``started`` says whether the job's own
    process ever ran; everything else is then empty or zero. Otherwise exactly one of
    ``exit_code`` and ``signal`` is set.

    ``timed_out``: the wall-clock limit was reached and the job was sent SIGTERM. ``killed``: the
    job's main process outlived the grace period and was sent SIGKILL. ``wall_ms`` runs from the
    process start to its exit, on a monotonic clock (it includes the grace period of a stopped
    job: the GPUs were held that long). ``gpu_ms`` is :func:`gpu_ms_for`; ``gpu_seconds`` is
    derived from it, rounded up. ``first_output_ms``: from the start to the job's first byte of
    output (None if it printed nothing). ``peak_memory_bytes``: the cgroup's high-water mark
    where the kernel reports it.

    ``output_files`` maps paths relative to ``out/`` to contents: regular files only (symlinks,
    FIFOs and the like are never followed or read). When their total size exceeds the job's
    cap, the result keeps the longest prefix, in path order, of whole files that fits, and sets
    ``outputs_truncated``; a file is never cut short, since a truncated file is a corrupt one.
    ``outputs_omitted`` names everything under ``out/`` that did not come back, whatever the
    reason. ``output_hash`` is :func:`output_listing_hash` of exactly ``output_files``.

    Under bubblewrap a job killed by signal N reports ``exit_code = 128 + N`` (bwrap relays the
    status as a shell does); ``signal`` is set only when the executor's own process got one.
    """

    job_id: str
    executor: str
    exit_code: int | None
    signal: int | None
    timed_out: bool
    killed: bool
    wall_ms: int
    gpu_ms: int
    stdout: bytes
    stderr: bytes
    stdout_truncated: bool
    stderr_truncated: bool
    output_files: Mapping[str, bytes]
    outputs_truncated: bool
    outputs_omitted: tuple[str, ...]
    output_hash: bytes
    outcome: Outcome
    limit: LimitKind | None = None
    error_code: int = 0
    error_message: str = ""
    started: bool = True
    first_output_ms: int | None = None
    peak_memory_bytes: int | None = None
    #: Outputs stored as blobs (``SandboxJob.output_store``); ``output_files`` is then empty and
    #: ``output_hash`` is :func:`blob_listing_hash` of these.
    output_blobs: tuple[OutputBlob, ...] = ()

    @property
    def gpu_seconds(self) -> int:
        """GPU-seconds, rounded up from :attr:`gpu_ms` (what receipts carry until they move to ms)."""
        return -(-self.gpu_ms // 1000)

    @property
    def succeeded(self) -> bool:
        """Exited by itself with status 0 before the timeout, within its limits."""
        return self.outcome is Outcome.COMPLETED

    @classmethod
    def provider_error(
        cls, job_id: str, executor: str, code: int, message: str, *, started: bool = False, wall_ms: int = 0
    ) -> ExecutionResult:
        """The result of a run that failed on our side (nothing of the job's comes back)."""
        return cls(
            job_id=job_id,
            executor=executor,
            exit_code=None,
            signal=None,
            timed_out=False,
            killed=False,
            wall_ms=wall_ms,
            gpu_ms=0,
            stdout=b"",
            stderr=b"",
            stdout_truncated=False,
            stderr_truncated=False,
            output_files=MappingProxyType({}),
            outputs_truncated=False,
            outputs_omitted=(),
            output_hash=output_listing_hash({}),
            outcome=Outcome.PROVIDER_ERROR,
            error_code=code,
            error_message=message,
            started=started,
        )


def classify(
    *,
    exit_code: int | None,
    signal: int | None,
    timed_out: bool,
    stopped_for: LimitKind | None,
    limit_evidence: LimitKind | None,
) -> tuple[Outcome, LimitKind | None]:
    """The outcome of a run whose process ran (provider errors are decided before this).

    In order: stopped by the limit watcher, or the kernel enforced a limit during the run (an OOM
    kill, a fork refused at the pids limit, a full workspace, ``SIGXFSZ``) whatever the exit
    status, so the class never depends on whether the watcher's poll saw it first; timed out;
    exit 0; anything else is the job's failure.
    """
    if stopped_for is not None:
        return Outcome.LIMIT_EXCEEDED, stopped_for
    if limit_evidence is not None:
        return Outcome.LIMIT_EXCEEDED, limit_evidence
    if timed_out:
        return Outcome.TIMED_OUT, None
    if exit_code == 0 and signal is None:
        return Outcome.COMPLETED, None
    return Outcome.JOB_FAILED, None


def gpu_ms_for(wall_ms: int, gpu_count: int) -> int:
    """GPU-milliseconds billed for holding ``gpu_count`` GPUs for ``wall_ms`` milliseconds.

    ``wall_ms`` is already rounded up to a whole millisecond (:func:`wall_ms_between`, at least
    1 for any run), so every run that held a GPU bills at least 1 GPU-ms: no job is free.
    """
    if wall_ms < 0 or gpu_count < 0:
        raise ValueError(f"negative metering input: wall_ms={wall_ms}, gpu_count={gpu_count}")
    return wall_ms * gpu_count


def gpu_seconds_for(wall_ms: int, gpu_count: int) -> int:
    """GPU-seconds billed for holding ``gpu_count`` GPUs for ``wall_ms`` milliseconds.

    ``ceil(wall_ms * gpu_count / 1000)``, in integers: rounded up once, on the product, so two
    GPUs for 1.2 s bill 3 GPU-seconds (not 2 x 2 = 4), any run with a GPU bills at least 1, and a
    job without GPUs bills 0.
    """
    if wall_ms < 0 or gpu_count < 0:
        raise ValueError(f"negative metering input: wall_ms={wall_ms}, gpu_count={gpu_count}")
    return -(-(wall_ms * gpu_count) // 1000)


def wall_ms_between(start_s: float, end_s: float) -> int:
    """Milliseconds between two monotonic clock readings, rounded up (a job that ran is >= 1 ms)."""
    return max(1, math.ceil((end_s - start_s) * 1000))


def check_input_path(path: object) -> PurePosixPath:
    """Return ``path`` as a relative POSIX path that stays inside the work directory.

    Raises :class:`UnsafeInputPath` for anything else: not a str, empty, absolute, a NUL byte,
    a ``.`` or ``..`` component, an empty component (``a//b``, ``a/``), or over 1024 bytes.
    """
    if not isinstance(path, str) or not path:
        raise UnsafeInputPath(f"input path must be a non-empty str, got {path!r}")
    if "\x00" in path or len(path.encode("utf-8", "surrogatepass")) > MAX_INPUT_PATH_BYTES:
        raise UnsafeInputPath(f"input path has a NUL byte or is too long: {path[:64]!r}")
    if path.startswith("/"):
        raise UnsafeInputPath(f"input path must be relative: {path!r}")
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise UnsafeInputPath(f"input path must not contain '', '.' or '..' components: {path!r}")
    return PurePosixPath(path)


def _check_job_id(job_id: object) -> None:
    if not isinstance(job_id, str) or _JOB_ID.fullmatch(job_id) is None:
        raise InvalidJobId(f"job id must match {_JOB_ID.pattern}, got {job_id!r}")


def _check_argv(argv: object) -> None:
    if not isinstance(argv, tuple) or not argv:
        raise InvalidArgv(f"argv must be a non-empty tuple of str, got {argv!r:.80}")
    if len(argv) > MAX_ARGV_ITEMS:
        raise InvalidArgv(f"argv has {len(argv)} items, more than {MAX_ARGV_ITEMS}")
    total = 0
    for item in argv:
        if not isinstance(item, str) or "\x00" in item:
            raise InvalidArgv(f"argv items must be str without NUL bytes, got {item!r:.80}")
        total += len(item.encode("utf-8", "surrogatepass")) + 1
    if not argv[0]:
        raise InvalidArgv("argv[0] (the command) is empty")
    if total > MAX_ARGV_BYTES:
        raise InvalidArgv(f"argv is {total} bytes, more than {MAX_ARGV_BYTES}")


def _checked_env(env: object) -> dict[str, str]:
    if not isinstance(env, Mapping):
        raise InvalidEnvironment(f"env must be a mapping of str to str, got {type(env).__name__}")
    if len(env) > MAX_ENV_ITEMS:
        raise InvalidEnvironment(f"env has {len(env)} variables, more than {MAX_ENV_ITEMS}")
    checked: dict[str, str] = {}
    for name in sorted(env, key=str):
        value = env[name]
        if not isinstance(name, str) or _ENV_NAME.fullmatch(name) is None:
            raise InvalidEnvironment(f"bad environment variable name {name!r:.80}")
        if name in RESERVED_ENV:
            raise InvalidEnvironment(f"{name} is set by the sandbox from the GPUs sold, not by the job")
        if not isinstance(value, str) or "\x00" in value:
            raise InvalidEnvironment(f"{name}: value must be a str without NUL bytes")
        if len(value.encode("utf-8", "surrogatepass")) > MAX_ENV_VALUE_BYTES:
            raise InvalidEnvironment(f"{name}: value longer than {MAX_ENV_VALUE_BYTES} bytes")
        checked[name] = value
    return checked


def _checked_inputs(files: object) -> dict[str, bytes]:
    if not isinstance(files, Mapping):
        raise UnsafeInputPath(f"input_files must be a mapping of path to bytes, got {type(files).__name__}")
    checked: dict[str, bytes] = {}
    for raw_path in sorted(files, key=str):
        path = check_input_path(raw_path)
        content = files[raw_path]
        if not isinstance(content, bytes):
            raise UnsafeInputPath(f"input {raw_path!r}: content must be bytes, got {type(content).__name__}")
        if path.parts[0] == OUTPUT_DIR:
            raise InputPathConflict(f"input {raw_path!r}: {OUTPUT_DIR}/ is reserved for the job's outputs")
        checked[str(path)] = content
    # A path cannot be both a file and a directory: "a" conflicts with "a/b".
    for path_text in checked:
        for parent in PurePosixPath(path_text).parents:
            if str(parent) in checked:
                raise InputPathConflict(f"input {path_text!r} is under input file {str(parent)!r}")
    return checked


def _checked_mounts(mounts: object, files: Mapping[str, bytes]) -> dict[str, Path]:
    """Read-only mounts: safe relative targets that neither repeat nor nest with the inline
    inputs or each other, from absolute host paths a volume option can carry."""
    if not isinstance(mounts, Mapping):
        raise UnsafeInputPath(f"input_mounts must be a mapping of path to Path, got {type(mounts).__name__}")
    checked: dict[str, Path] = {}
    for raw_path in sorted(mounts, key=str):
        path = check_input_path(raw_path)
        source = mounts[raw_path]
        if path.parts[0] == OUTPUT_DIR:
            raise InputPathConflict(f"input {raw_path!r}: {OUTPUT_DIR}/ is reserved for the job's outputs")
        if not isinstance(source, Path) or not source.is_absolute() or any(c in str(source) for c in ":,\n"):
            raise WorkspaceError(
                f"input {raw_path!r}: the host file must be an absolute path without ':' ','"
            )
        if str(path) in files:
            raise InputPathConflict(f"input {raw_path!r} is both inline and mounted")
        checked[str(path)] = source
    every = set(files) | set(checked)
    for path_text in checked:
        for parent in PurePosixPath(path_text).parents:
            if str(parent) in every:
                raise InputPathConflict(f"input {path_text!r} is under input file {str(parent)!r}")
    for path_text in files:
        for parent in PurePosixPath(path_text).parents:
            if str(parent) in checked:
                raise InputPathConflict(f"input {path_text!r} is under mounted input {str(parent)!r}")
    return checked


def _check_gpus(uuids: object, device_paths: object) -> None:
    if not isinstance(uuids, tuple) or not isinstance(device_paths, tuple):
        raise InvalidGpuBinding("gpu_uuids and gpu_device_paths must be tuples of str")
    for uuid in uuids:
        if not isinstance(uuid, str) or _GPU_UUID.fullmatch(uuid) is None:
            raise InvalidGpuBinding(f"malformed GPU UUID {uuid!r:.80}")
    for device in device_paths:
        if not isinstance(device, str) or _GPU_DEVICE.fullmatch(device) is None:
            raise InvalidGpuBinding(f"not a per-GPU NVIDIA device node: {device!r:.80}")
    if len(set(uuids)) != len(uuids) or len(set(device_paths)) != len(device_paths):
        raise InvalidGpuBinding("a GPU UUID or device node is listed twice")


def _check_limits(job: SandboxJob) -> None:
    for name in ("timeout_s", "grace_s"):
        value = getattr(job, name)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise InvalidLimits(f"{name} must be a finite number of seconds, got {value!r}")
        if value < 0 or (name == "timeout_s" and value == 0):
            raise InvalidLimits(f"{name} out of range: {value!r}")
    for name in ("stdout_cap_bytes", "stderr_cap_bytes", "output_cap_bytes"):
        value = getattr(job, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidLimits(f"{name} must be an int >= 0, got {value!r}")
