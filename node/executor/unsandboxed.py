"""The plain-subprocess executor: development and local testnets only, never for strangers' jobs.

It gives a job a fresh work directory, a clean environment, the timeout and the caps, and
nothing else: the job sees the network, the whole filesystem with the node's permissions, and
every GPU driver node (``CUDA_VISIBLE_DEVICES`` only steers well-behaved CUDA programs). It
therefore refuses to be constructed without ``allow_unsandboxed=True``, which the node passes
only when its config says ``market.allow_unsandboxed = true``.

Resource limits are enforced as under bubblewrap where the host allows it (the job's cgroup and
size-limited work directory, :mod:`node.executor.confine`); :meth:`SubprocessExecutor.capabilities`
says ``sandboxed = False`` and which limits hold.
"""

from __future__ import annotations

import os
import shutil

from node.executor.base import (
    Availability,
    capabilities_of,
    check_confined,
    execute_in_workspace,
    job_environment,
    process_limits,
)
from node.executor.confine import Confinement, Enforcer
from node.executor.errors import InvalidImage, UnsandboxedNotAllowed
from node.executor.limits import Capabilities
from node.executor.model import ExecutionResult, SandboxJob
from node.executor.process import OutputSink, ProcessGroupTerminator, ProcessOutcome, run_supervised
from node.executor.settings import ExecutorSettings
from node.executor.workspace import Workspace

# Shell conventions for a command that cannot be run.
EXIT_NOT_FOUND = 127
EXIT_NOT_EXECUTABLE = 126


class SubprocessExecutor:
    """Runs the job's argv directly, in its own process group, in a fresh work directory."""

    name = "subprocess"

    def __init__(
        self,
        *,
        allow_unsandboxed: bool = False,
        settings: ExecutorSettings | None = None,
        enforcer: Enforcer | None = None,
    ) -> None:
        if allow_unsandboxed is not True:
            raise UnsandboxedNotAllowed(
                "the subprocess executor runs jobs without any isolation; it is for development "
                "only and needs market.allow_unsandboxed = true in the node config"
            )
        self.settings = settings if settings is not None else ExecutorSettings()
        self.enforcer = enforcer if enforcer is not None else Enforcer(self.settings)

    def available(self) -> Availability:
        return Availability(True)

    def capabilities(self) -> Capabilities:
        return capabilities_of(self.name, self.enforcer, sandboxed=False, availability=self.available())

    async def run(self, job: SandboxJob, *, on_output: OutputSink | None = None) -> ExecutionResult:
        if job.image:
            raise InvalidImage("the subprocess executor runs commands, not container images")
        return await execute_in_workspace(
            job, self.name, self._launch, enforcer=self.enforcer, on_output=on_output
        )

    async def _launch(
        self, job: SandboxJob, workspace: Workspace, confinement: Confinement, on_output: OutputSink | None
    ) -> ProcessOutcome:
        env = job_environment(job, home=str(workspace.work), tmpdir=str(workspace.tmp))
        # No mount namespace here: inputs by reference are symlinks to the blob store's files
        # (this executor confines nothing; a job could read them anyway).
        for path, source in job.input_mounts.items():
            target = workspace.work / path
            target.unlink()
            target.symlink_to(source)
        missing = _unrunnable_command(job.argv[0], env["PATH"], str(workspace.work))
        if missing is not None:
            return missing
        command, confine_fds = confinement.wrap(list(job.argv))
        outcome = await run_supervised(
            command,
            env=env,
            cwd=str(workspace.work),
            limits=process_limits(job),
            terminator=ProcessGroupTerminator(),
            pass_fds=confine_fds,
            on_output=on_output,
            watch=confinement.watch if confinement.active else None,
        )
        check_confined(confinement, outcome)
        return outcome


def _unrunnable_command(command: str, search_path: str, cwd: str) -> ProcessOutcome | None:
    """A shell-like 127/126 outcome when ``command`` cannot be executed: the job's failure, not ours."""
    if "/" in command:
        resolved = os.path.join(cwd, command)
        if not os.path.exists(resolved):
            return _failed_start(EXIT_NOT_FOUND, f"{command}: no such file")
        if os.path.isdir(resolved) or not os.access(resolved, os.X_OK):
            return _failed_start(EXIT_NOT_EXECUTABLE, f"{command}: permission denied")
        return None
    if shutil.which(command, path=search_path) is None:
        return _failed_start(EXIT_NOT_FOUND, f"{command}: command not found")
    return None


def _failed_start(returncode: int, message: str) -> ProcessOutcome:
    return ProcessOutcome(
        returncode=returncode,
        timed_out=False,
        killed=False,
        wall_ms=0,
        stdout=b"",
        stderr=f"dcent: {message}\n".encode(),
        stdout_truncated=False,
        stderr_truncated=False,
    )
