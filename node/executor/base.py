"""The :class:`Executor` protocol and the job lifecycle every executor shares.

:func:`execute_in_workspace` is the whole lifecycle: a fresh workspace, inputs written, the
executor's own launch (which builds its command line and calls
:func:`node.executor.process.run_supervised`), outputs collected, the workspace removed, and an
:class:`ExecutionResult` built. An executor only supplies its ``launch``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol

import trio

from node.executor.model import ExecutionResult, SandboxJob, gpu_seconds_for, output_listing_hash
from node.executor.process import ProcessLimits, ProcessOutcome
from node.executor.workspace import Workspace

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SANDBOX_USER = "sandbox"


@dataclass(frozen=True, slots=True)
class Availability:
    """Whether an executor can run jobs here, and if not, why (for the operator)."""

    available: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.available


class Executor(Protocol):
    """A sandbox that runs :class:`SandboxJob` values."""

    @property
    def name(self) -> str:
        """The config name: ``bubblewrap``, ``docker``, ``podman`` or ``subprocess``."""

    def available(self) -> Availability:
        """Whether jobs can run here. May run a short probe the first time (then cached)."""

    async def run(self, job: SandboxJob) -> ExecutionResult:
        """Run ``job`` to completion or timeout.

        Raises :class:`~node.executor.errors.SandboxUnavailable` subclasses (ours) when the
        sandbox cannot run it, and :class:`~node.executor.errors.JobInputError` subclasses when
        the job does not fit this executor (an image for a command-only executor).
        """


Launch = Callable[[SandboxJob, Workspace], Awaitable[ProcessOutcome]]


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


async def execute_in_workspace(job: SandboxJob, executor_name: str, launch: Launch) -> ExecutionResult:
    """Run ``job`` through ``launch`` in a fresh workspace that is removed afterwards."""
    workspace = await trio.to_thread.run_sync(Workspace.create, job.work_root, job.job_id)
    try:
        await trio.to_thread.run_sync(workspace.write_inputs, job.input_files)
        outcome = await launch(job, workspace)
        collected = await trio.to_thread.run_sync(workspace.collect_outputs, job.output_cap_bytes)
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(workspace.remove)
    return build_result(job, executor_name, outcome, collected.files, collected.truncated, collected.omitted)


def build_result(
    job: SandboxJob,
    executor_name: str,
    outcome: ProcessOutcome,
    output_files: Mapping[str, bytes],
    outputs_truncated: bool,
    outputs_omitted: tuple[str, ...],
) -> ExecutionResult:
    returncode = outcome.returncode
    return ExecutionResult(
        job_id=job.job_id,
        executor=executor_name,
        exit_code=returncode if returncode >= 0 else None,
        signal=-returncode if returncode < 0 else None,
        timed_out=outcome.timed_out,
        killed=outcome.killed,
        wall_ms=outcome.wall_ms,
        gpu_seconds=gpu_seconds_for(outcome.wall_ms, job.gpu_count),
        stdout=outcome.stdout,
        stderr=outcome.stderr,
        stdout_truncated=outcome.stdout_truncated,
        stderr_truncated=outcome.stderr_truncated,
        output_files=MappingProxyType(dict(output_files)),
        outputs_truncated=outputs_truncated,
        outputs_omitted=outputs_omitted,
        output_hash=output_listing_hash(output_files),
    )
