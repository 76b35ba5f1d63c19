"""The :class:`Executor` protocol and the job lifecycle every executor shares.

:func:`execute_in_workspace` is the whole lifecycle: the limits checked against what this host
can enforce, a fresh workspace (on a filesystem of the job's disk limit), the job's cgroup,
inputs written, the executor's own launch (which builds its command line and calls
:func:`node.executor.process.run_supervised`), outputs collected, the cgroup killed and removed,
the workspace unmounted and removed, and an :class:`ExecutionResult` built with its
:class:`~node.executor.model.Outcome`. An executor only supplies its ``launch``.

For the market, :func:`run_to_outcome` is the one call to make: it never raises for anything but
the requester's bad input, and every failure of ours comes back as a ``PROVIDER_ERROR`` result.
"""

from __future__ import annotations

import functools
import logging
import subprocess
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol

import trio

from node.executor.confine import Confinement, Enforcer
from node.executor.errors import ConfinementFailed, JobUnkillable, SandboxStartFailed, SandboxUnavailable
from node.executor.limits import Capabilities, LimitKind
from node.executor.model import (
    ExecutionResult,
    OutputBlob,
    SandboxJob,
    blob_listing_hash,
    classify,
    gpu_ms_for,
    output_listing_hash,
)
from node.executor.process import OutputSink, ProcessLimits, ProcessOutcome
from node.executor.workspace import CollectedOutputs, Workspace

log = logging.getLogger(__name__)

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SANDBOX_USER = "sandbox"


@dataclass(frozen=True, slots=True)
class Availability:
    """Whether an executor can run jobs here, and if not, why (for the operator)."""

    available: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.available


def probe_tool(
    tool: str,
    tool_path: str | None,
    argv: Callable[[str], Sequence[str]],
    *,
    missing: str,
    refused: str,
    timeout_s: float,
    env: Mapping[str, str],
    last_line: bool = False,
) -> tuple[Availability, bytes]:
    """Whether an executor's tool runs here: run its probe command once, and on success return
    ``Availability(True)`` and the command's stdout (blocks up to ``timeout_s``).

    ``argv(tool_path)`` is the command. Otherwise why not, for the operator: ``missing`` when the
    tool is not installed (``tool_path`` is None), that it could not be run, or ``refused`` with
    its error output (only the last line with ``last_line``: engines print context first).
    """
    if tool_path is None:
        return Availability(False, missing), b""
    try:
        completed = subprocess.run(
            list(argv(tool_path)),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout_s,
            env=dict(env),
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Availability(False, f"{tool} at {tool_path} could not be run: {exc}"), b""
    if completed.returncode != 0:
        lines = completed.stderr.decode(errors="replace").strip().splitlines()
        detail = (
            (lines[-1] if last_line else "\n".join(lines)) if lines else f"exit status {completed.returncode}"
        )
        return Availability(False, f"{refused}: {detail}"), b""
    return Availability(True), completed.stdout


def check_confined(confinement: Confinement, outcome: ProcessOutcome) -> None:
    """Raises :class:`SandboxStartFailed` when the job's process never entered its cgroup and
    limits (ours to fix, not the job's: it must not be paid or blamed as the job's own failure)."""
    if not confinement.entered():
        raise SandboxStartFailed(
            "the job could not enter its cgroup and limits: "
            + (
                outcome.stderr.split(b"\n", 1)[0].decode(errors="replace")
                or f"exit status {outcome.returncode}"
            )
        )


class Executor(Protocol):
    """A sandbox that runs :class:`SandboxJob` values."""

    @property
    def name(self) -> str:
        """The config name: ``bubblewrap``, ``docker``, ``podman`` or ``subprocess``."""

    def available(self) -> Availability:
        """Whether jobs can run here. May run a short probe the first time (then cached)."""

    def capabilities(self) -> Capabilities:
        """Which resource limits this executor enforces here (probed once, then cached; blocks:
        call it at startup or through ``trio.to_thread.run_sync``)."""

    async def run(self, job: SandboxJob, *, on_output: OutputSink | None = None) -> ExecutionResult:
        """Run ``job`` to completion, timeout or a limit; stream its lines to ``on_output``.

        Returns a result for every run that reached the sandbox, with a ``PROVIDER_ERROR``
        outcome when ours failed after the job started. Raises
        :class:`~node.executor.errors.SandboxUnavailable` subclasses (ours) when the job never
        ran, and :class:`~node.executor.errors.JobInputError` subclasses when the job does not
        fit this executor (an image for a command-only executor).
        """


Launch = Callable[[SandboxJob, Workspace, Confinement, OutputSink | None], Awaitable[ProcessOutcome]]


async def run_to_outcome(
    executor: Executor, job: SandboxJob, *, on_output: OutputSink | None = None
) -> ExecutionResult:
    """:meth:`Executor.run`, with our failures before the start as ``PROVIDER_ERROR`` results
    (``started = False``). Raises only :class:`~node.executor.errors.JobInputError`."""
    try:
        return await executor.run(job, on_output=on_output)
    except SandboxUnavailable as exc:
        log.warning("job %s did not run (%d): %s", job.job_id, exc.code, exc.message)
        return ExecutionResult.provider_error(job.job_id, executor.name, exc.code, exc.message)


def process_limits(job: SandboxJob) -> ProcessLimits:
    return ProcessLimits(
        timeout_s=job.timeout_s,
        grace_s=job.grace_s,
        stdout_cap_bytes=job.stdout_cap_bytes,
        stderr_cap_bytes=job.stderr_cap_bytes,
    )


def job_environment(job: SandboxJob, *, home: str, tmpdir: str) -> dict[str, str]:
    """The complete environment of a job: defaults, then the job's own, then the GPU selection.

    ``home`` is the job's work directory as the job sees it: its HOME and its starting PWD.
    Nothing comes from the node's environment. ``CUDA_VISIBLE_DEVICES`` is always set, to the
    sold GPUs' UUIDs; empty (no GPU visible to CUDA) for a job that bought none.
    """
    env = {
        "PATH": DEFAULT_PATH,
        "HOME": home,
        "PWD": home,
        "TMPDIR": tmpdir,
        "USER": SANDBOX_USER,
        "LOGNAME": SANDBOX_USER,
        "LANG": "C.UTF-8",
    }
    env.update(job.env)
    env["CUDA_VISIBLE_DEVICES"] = ",".join(job.gpu_uuids)
    return env


def capabilities_of(
    name: str, enforcer: Enforcer, *, sandboxed: bool, availability: Availability
) -> Capabilities:
    """The :class:`Capabilities` of an executor whose limits ``enforcer`` enforces."""
    host = enforcer.limits()
    details = {"cgroup": host.cgroup_version, "disk": str(host.disk_backend or "none")}
    if not availability:
        reason = f"the {name} executor cannot run here: {availability.reason}"
        return Capabilities(
            name, sandboxed, frozenset(), dict.fromkeys(host.kinds | set(host.missing), reason), details
        )
    return Capabilities(name, sandboxed, host.kinds, host.missing, details)


async def execute_in_workspace(
    job: SandboxJob,
    executor_name: str,
    launch: Launch,
    *,
    enforcer: Enforcer,
    on_output: OutputSink | None = None,
    cgroup_placement: str = "node",
) -> ExecutionResult:
    """Run ``job`` through ``launch`` in a fresh, confined workspace that is removed afterwards.

    Raises :class:`~node.executor.errors.LimitNotEnforceable` before anything is created when the
    job asks for a limit this host cannot enforce (``cgroup_placement``: see
    :meth:`~node.executor.confine.Enforcer.confine`), and other
    :class:`~node.executor.errors.SandboxUnavailable` errors when the job could not start.
    """
    await trio.to_thread.run_sync(
        functools.partial(enforcer.check, job.limits, cgroup_placement=cgroup_placement)
    )
    # Shielded: a cancellation must not drop a directory, mount or cgroup a thread just made.
    with trio.CancelScope(shield=True):
        workspace = await trio.to_thread.run_sync(Workspace.allocate, job.work_root, job.job_id)
    confinement: Confinement | None = None
    try:
        with trio.CancelScope(shield=True):
            confinement = await trio.to_thread.run_sync(
                functools.partial(
                    enforcer.confine,
                    job.job_id,
                    job.limits,
                    workspace.root,
                    cgroup_placement=cgroup_placement,
                )
            )
        await trio.lowlevel.checkpoint()
        await trio.to_thread.run_sync(workspace.populate)
        await trio.to_thread.run_sync(workspace.write_inputs, job.input_files)
        await trio.to_thread.run_sync(workspace.make_mount_points, job.input_mounts)
        try:
            outcome = await launch(job, workspace, confinement, on_output)
        except JobUnkillable as exc:
            log.error("job %s: %s", job.job_id, exc.message)
            return ExecutionResult.provider_error(
                job.job_id, executor_name, exc.code, exc.message, started=True
            )
        evidence = outcome.limit_evidence or confinement.evidence(outcome)
        peak_memory = confinement.events().peak_memory_bytes
        if job.output_store is not None:
            stored = await trio.to_thread.run_sync(
                workspace.store_outputs, job.output_cap_bytes, job.output_store
            )
            collected = CollectedOutputs({}, stored.truncated, stored.omitted)
            output_blobs: tuple[OutputBlob, ...] | None = stored.blobs
        else:
            collected = await trio.to_thread.run_sync(workspace.collect_outputs, job.output_cap_bytes)
            output_blobs = None
    finally:
        with trio.CancelScope(shield=True):
            if confinement is not None:
                try:
                    await confinement.close()
                except ConfinementFailed as exc:
                    log.error("job %s: tearing down its confinement: %s", job.job_id, exc.message)
            await trio.to_thread.run_sync(workspace.remove)
    return build_result(
        job,
        executor_name,
        outcome,
        collected.files,
        collected.truncated,
        collected.omitted,
        limit_evidence=evidence,
        peak_memory_bytes=peak_memory,
        output_blobs=output_blobs,
    )


def build_result(
    job: SandboxJob,
    executor_name: str,
    outcome: ProcessOutcome,
    output_files: Mapping[str, bytes],
    outputs_truncated: bool,
    outputs_omitted: tuple[str, ...],
    *,
    limit_evidence: LimitKind | None = None,
    peak_memory_bytes: int | None = None,
    output_blobs: tuple[OutputBlob, ...] | None = None,
) -> ExecutionResult:
    """``output_blobs``: the outputs stored as blobs (None: inline in ``output_files``)."""
    returncode = outcome.returncode
    exit_code = returncode if returncode >= 0 else None
    signal = -returncode if returncode < 0 else None
    kind, limit = classify(
        exit_code=exit_code,
        signal=signal,
        timed_out=outcome.timed_out,
        stopped_for=outcome.stopped_for,
        limit_evidence=limit_evidence,
    )
    first_output_ms = None
    if outcome.first_output_s is not None:
        first_output_ms = max(0, round((outcome.first_output_s - outcome.started_s) * 1000))
    return ExecutionResult(
        job_id=job.job_id,
        executor=executor_name,
        exit_code=exit_code,
        signal=signal,
        timed_out=outcome.timed_out,
        killed=outcome.killed,
        wall_ms=outcome.wall_ms,
        gpu_ms=gpu_ms_for(outcome.wall_ms, job.gpu_count),
        stdout=outcome.stdout,
        stderr=outcome.stderr,
        stdout_truncated=outcome.stdout_truncated,
        stderr_truncated=outcome.stderr_truncated,
        output_files=MappingProxyType(dict(output_files)),
        outputs_truncated=outputs_truncated,
        outputs_omitted=outputs_omitted,
        output_hash=(
            blob_listing_hash(output_blobs) if output_blobs is not None else output_listing_hash(output_files)
        ),
        output_blobs=output_blobs or (),
        outcome=kind,
        limit=limit,
        first_output_ms=first_output_ms,
        peak_memory_bytes=peak_memory_bytes,
    )
