"""The docker / podman executor: for providers who run an engine and jobs that bring an image.

:func:`build_container_argv` makes one ``<engine> run`` command line: ``--rm``, no network, a
read-only root filesystem, every capability dropped, no privilege escalation, an init process
(``--init``) so the job's main process gets SIGTERM like any other, the job's workspace mounted
at ``/work`` (cwd and HOME) and ``/tmp`` as the only writable places, the node's own uid/gid (so
the job can write the workspace and the node can remove it), pid and memory limits, and the
sold GPUs by UUID: ``--gpus "device=UUID,..."`` for docker (the NVIDIA container toolkit; the
inner double quotes are needed because docker reads that value as CSV), CDI names
``--device nvidia.com/gpu=UUID`` for podman.

Stopping: the ``run`` client is only a client, so killing it would leave the container running.
The terminator talks to the engine by container name: ``kill --signal TERM``, then
``rm --force`` (SIGKILL and removal), and only then kills the client's process group.
"""

from __future__ import annotations

import math
import os
import secrets
import shutil
import signal
import subprocess
from collections.abc import Mapping, Sequence

import trio

from node.executor.base import (
    DEFAULT_PATH,
    Availability,
    execute_in_workspace,
    job_environment,
    process_limits,
)
from node.executor.errors import InvalidImage, InvalidSandboxConfig, SandboxToolMissing, WorkspaceError
from node.executor.model import ExecutionResult, SandboxJob
from node.executor.process import ProcessOutcome, run_supervised, signal_process_group
from node.executor.workspace import Workspace

ENGINES = ("docker", "podman")
CONTAINER_WORK = "/work"
CONTAINER_TMP = "/tmp"
DEFAULT_PIDS_LIMIT = 4096
ENGINE_CALL_TIMEOUT_S = 20.0
PROBE_TIMEOUT_S = 10.0


def build_container_argv(
    *,
    engine: str,
    engine_path: str,
    container_name: str,
    image: str,
    job: SandboxJob,
    work_dir: str,
    tmp_dir: str,
    env: Mapping[str, str],
    user: str,
    pids_limit: int | None = DEFAULT_PIDS_LIMIT,
    memory_limit: str | None = None,
    keep_user_id: bool = False,
) -> list[str]:
    """The complete ``<engine> run`` command line for ``job`` (pure).

    ``keep_user_id`` (rootless podman): map the node's uid to the same uid in the container,
    which ``--user`` alone would map to one the workspace does not belong to.
    """
    if engine not in ENGINES:
        raise InvalidSandboxConfig(f"container engine must be one of {ENGINES}, got {engine!r}")
    for path in (work_dir, tmp_dir):
        # -v splits on ':'; such a work root is the operator's to fix.
        if ":" in path or "," in path:
            raise WorkspaceError(f"workspace path {path!r} contains ':' or ',' and cannot be mounted")
    argv = [
        engine_path,
        "run",
        "--rm",
        "--name",
        container_name,
        "--label",
        f"dcent.job={job.job_id}",
        "--network",
        "none",
        "--read-only",
        "--init",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--user",
        user,
        "--workdir",
        CONTAINER_WORK,
        "--volume",
        f"{work_dir}:{CONTAINER_WORK}:rw",
        "--volume",
        f"{tmp_dir}:{CONTAINER_TMP}:rw",
        "--stop-timeout",
        str(math.ceil(job.grace_s)),
    ]
    if keep_user_id:
        argv += ["--userns", "keep-id"]
    if pids_limit is not None:
        argv += ["--pids-limit", str(pids_limit)]
    if memory_limit is not None:
        argv += ["--memory", memory_limit]
    if job.gpu_uuids:
        if engine == "docker":
            argv += ["--gpus", f'"device={",".join(job.gpu_uuids)}"']
        else:
            for uuid in job.gpu_uuids:
                argv += ["--device", f"nvidia.com/gpu={uuid}"]
    for name in sorted(env):
        argv += ["--env", f"{name}={env[name]}"]
    argv += [image, *job.argv]
    return argv


class ContainerTerminator:
    """Stops a container by name through the engine, then its ``run`` client."""

    def __init__(self, engine_path: str, container_name: str) -> None:
        self._engine_path = engine_path
        self._container_name = container_name

    async def terminate(self, process: trio.Process) -> None:
        await self._engine("kill", "--signal", "TERM", self._container_name)

    async def kill(self, process: trio.Process) -> None:
        await self._engine("rm", "--force", self._container_name)
        signal_process_group(process.pid, signal.SIGKILL)

    async def reap_stragglers(self, process: trio.Process) -> None:
        # The client returns when the container has exited, and --rm removes it.
        return

    async def _engine(self, *args: str) -> None:
        # Failures are expected (the container may already be gone); the caller escalates anyway.
        with trio.move_on_after(ENGINE_CALL_TIMEOUT_S):
            try:
                await trio.run_process(
                    [self._engine_path, *args],
                    stdin=subprocess.DEVNULL,
                    capture_stdout=True,
                    capture_stderr=True,
                    check=False,
                )
            except OSError:
                return


class ContainerExecutor:
    """Runs jobs that carry a container image under docker or podman."""

    def __init__(
        self,
        engine: str,
        *,
        engine_path: str | None = None,
        default_image: str | None = None,
        pids_limit: int | None = DEFAULT_PIDS_LIMIT,
        memory_limit: str | None = None,
    ) -> None:
        """``default_image`` runs jobs that name no image. Raises :class:`InvalidSandboxConfig`."""
        if engine not in ENGINES:
            raise InvalidSandboxConfig(f"container engine must be one of {ENGINES}, got {engine!r}")
        self._engine = engine
        self._engine_path = engine_path if engine_path is not None else shutil.which(engine)
        self._default_image = default_image
        self._pids_limit = pids_limit
        self._memory_limit = memory_limit
        self._availability: Availability | None = None

    @property
    def name(self) -> str:
        return self._engine

    def available(self) -> Availability:
        """Whether the engine is installed and answers (probed once, then cached; blocks up to
        :data:`PROBE_TIMEOUT_S`: call it at startup or through ``trio.to_thread.run_sync``)."""
        if self._availability is None:
            self._availability = self._probe()
        return self._availability

    async def run(self, job: SandboxJob) -> ExecutionResult:
        availability = self.available()
        if not availability:
            raise SandboxToolMissing(availability.reason)
        if not (job.image or self._default_image):
            raise InvalidImage(f"the {self._engine} executor needs a container image and the job names none")
        return await execute_in_workspace(job, self.name, self._launch)

    async def _launch(self, job: SandboxJob, workspace: Workspace) -> ProcessOutcome:
        assert self._engine_path is not None
        image = job.image or self._default_image
        assert image is not None
        container_name = f"dcent-{job.job_id}-{secrets.token_hex(4)}"
        argv = build_container_argv(
            engine=self._engine,
            engine_path=self._engine_path,
            container_name=container_name,
            image=image,
            job=job,
            work_dir=str(workspace.work),
            tmp_dir=str(workspace.tmp),
            env=job_environment(job, home=CONTAINER_WORK, tmpdir=CONTAINER_TMP),
            user=f"{os.getuid()}:{os.getgid()}",
            pids_limit=self._pids_limit,
            memory_limit=self._memory_limit,
            keep_user_id=self._engine == "podman" and os.getuid() != 0,
        )
        return await run_supervised(
            argv,
            env=_client_environment(),
            cwd=str(workspace.root),
            limits=process_limits(job),
            terminator=ContainerTerminator(self._engine_path, container_name),
        )

    def _probe(self) -> Availability:
        if self._engine_path is None:
            return Availability(False, f"{self._engine} is not installed (not found on PATH)")
        try:
            completed = subprocess.run(
                [self._engine_path, "info", "--format", "{{json .}}"],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=PROBE_TIMEOUT_S,
                env=_client_environment(),
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return Availability(False, f"{self._engine} at {self._engine_path} could not be run: {exc}")
        if completed.returncode != 0:
            lines = completed.stderr.decode(errors="replace").strip().splitlines()
            detail = lines[-1] if lines else f"exit status {completed.returncode}"
            return Availability(False, f"{self._engine} does not answer: {detail}")
        return Availability(True)


def _client_environment() -> dict[str, str]:
    """The engine client's environment: how to reach the engine, nothing of the job's."""
    env = {"PATH": DEFAULT_PATH}
    passthrough: Sequence[str] = (
        "HOME",
        "DOCKER_HOST",
        "DOCKER_CONFIG",
        "DOCKER_CONTEXT",
        "CONTAINER_HOST",
        "XDG_RUNTIME_DIR",
        "XDG_CONFIG_HOME",
    )
    for name in passthrough:
        if name in os.environ:
            env[name] = os.environ[name]
    return env
