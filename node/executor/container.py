"""The podman (and docker) executor: jobs that bring a container image.

podman is first-class beside bubblewrap: daemonless, rootless where the node is not root, and
the same limits and outcome classes. :func:`build_container_argv` makes one ``<engine> run``
command line:

* ``--pull never``: the image must be on the provider already (no registry at run time), and
  it is named by ID, never by a tag (:mod:`node.executor.images`): from the job's archive, named
  by ID in the spec, a tag resolved once when the job starts where the operator trusts tags, or
  the operator's own image, pinned to the ID its tag named when first found.
* ``--network none``, ``--read-only`` root (podman: ``--read-only-tmpfs=false``, so no unbounded
  tmpfs appears on ``/tmp``, ``/run`` or ``/var/tmp``; ``--image-volume ignore``, so a VOLUME the
  image declares is no writable host volume), ``--cap-drop ALL``,
  ``no-new-privileges``, an init process (``--init``) so the job's main process gets SIGTERM like
  any other, the node's own uid/gid (rootless podman: ``--userns keep-id``).
* The job's workspace, on its size-limited volume (:mod:`node.executor.volume`), mounted at
  ``/work`` (cwd and HOME) and ``/tmp``: the only writable places.
* Limits in a cgroup of ours: rootful podman with the ``cgroupfs`` manager puts the container
  under ``--cgroup-parent``, a cgroup the node creates at the same path in every hierarchy with
  the job's memory (no swap), pids and CPU limits written (:mod:`node.executor.cgroups`). The
  kernel enforces them there, and their counters (an OOM kill, the pids limit) outlive the
  container, so the outcome is classified from the kernel's own record: podman's
  ``State.OOMKilled`` stayed false for OOM-killed containers on the development host (cgroup v1).
  Elsewhere (the systemd manager, rootless) the engine's own flags: ``--memory`` =
  ``--memory-swap``, ``--pids-limit``, ``--cpus``, classified from ``inspect`` and from the
  container's cgroup while it runs. Always ``--ulimit fsize`` at the disk limit and explicit
  ``--ulimit nofile`` / ``nproc`` (the engine's defaults copy the node's own, which the OCI
  runtime may not be allowed to set). podman runs ``--runtime runc``: crun refuses hybrid cgroup
  hosts.
* The environment through ``--env-file`` (a 0600 file outside the container): ``--env NAME=VALUE``
  would show a requester's token to every local user in ``/proc/<pid>/cmdline``, and
  ``--env NAME`` would copy it from the engine client's own environment, which the job's
  variables (``LD_PRELOAD``, ``CONTAINERS_CONF``) must never reach. A value with a newline cannot
  be written there and is refused.
* GPUs by UUID, for jobs sold real GPUs: CDI names ``--device nvidia.com/gpu=UUID`` for podman
  (the NVIDIA container toolkit's ``nvidia-ctk cdi generate``; a UUID no CDI spec names is our
  :class:`GpuUnavailable`), ``--gpus "device=UUID,..."`` for docker (the inner double quotes are
  needed because docker reads that value as CSV).

The container is not ``--rm``: it is inspected after it exits, then removed.

Stopping: the ``run`` client is only a client, so killing it would leave the container running.
The terminator talks to the engine by container name: ``kill --signal TERM``, then
``rm --force`` (SIGKILL and removal), and only then kills the client's process group. Containers
a dead node left behind carry its ``dcent.owner`` label and are removed when the next node with
the same work root runs its first job.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import resource
import secrets
import shutil
import signal
import subprocess
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import trio

from node.executor.base import (
    Availability,
    execute_in_workspace,
    job_environment,
    probe_tool,
    process_limits,
)
from node.executor.cgroups import (
    CgroupEvents,
    Hierarchy,
    JobCgroup,
    parse_mountinfo,
    remove_in_every_hierarchy,
)
from node.executor.confine import Confinement, Enforcer
from node.executor.engine import (
    ENGINE_CALL_TIMEOUT_S,
    JobImages,
    client_environment,
    engine_call,
    load_image_archive,
    pinned_image,
    resolve_name,
)
from node.executor.errors import (
    GpuUnavailable,
    ImageNameNotTrusted,
    ImageNotAvailable,
    InvalidEnvironment,
    InvalidImage,
    InvalidSandboxConfig,
    LimitNotEnforceable,
    SandboxStartFailed,
    SandboxToolMissing,
    WorkspaceError,
)
from node.executor.images import id_reference, image_id_of
from node.executor.limits import Capabilities, LimitKind, ResourceLimits
from node.executor.model import ExecutionResult, SandboxJob
from node.executor.process import (
    OutputSink,
    ProcessOutcome,
    RunningProcess,
    run_supervised,
    signal_process_group,
)
from node.executor.settings import DEFAULT_PODMAN_NOFILE, DEFAULT_PODMAN_NPROC, ExecutorSettings
from node.executor.workspace import Workspace
from protocol.market.image_trust import image_refusal

ENGINES = ("docker", "podman")
CONTAINER_WORK = "/work"
CONTAINER_TMP = "/tmp"
PROBE_TIMEOUT_S = 10.0
CDI_DIRS = ("/etc/cdi", "/var/run/cdi")
_CDI_GPU_NAME = re.compile(r"\b(?:GPU|MIG)-[A-Za-z0-9/_-]+")


@dataclass(frozen=True, slots=True)
class EngineOptions:
    """The node's engine settings that shape every ``run`` command line."""

    runtime: str | None = None  # podman: "runc"
    nofile: int = DEFAULT_PODMAN_NOFILE
    nproc: int = DEFAULT_PODMAN_NPROC


def build_container_argv(
    *,
    engine: str,
    engine_path: str,
    container_name: str,
    image: str,
    job: SandboxJob,
    work_dir: str,
    tmp_dir: str,
    env_file: str,
    user: str,
    owner: str = "",
    cidfile: str | None = None,
    options: EngineOptions | None = None,
    keep_user_id: bool = False,
    cgroup_parent: str | None = None,
) -> list[str]:
    """The complete ``<engine> run`` command line for ``job`` (pure).

    ``keep_user_id`` (rootless podman): map the node's uid to the same uid in the container,
    which ``--user`` alone would map to one the workspace does not belong to. ``cgroup_parent``:
    our cgroup with the limits already written; the engine's limit flags are left out then.
    Raises :class:`InvalidSandboxConfig` for an unknown engine and :class:`WorkspaceError` for a
    path the volume syntax cannot carry.
    """
    if engine not in ENGINES:
        raise InvalidSandboxConfig(f"container engine must be one of {ENGINES}, got {engine!r}")
    options = options if options is not None else EngineOptions()
    for path in (work_dir, tmp_dir):
        # -v splits on ':'; such a work root is the operator's to fix.
        if ":" in path or "," in path:
            raise WorkspaceError(f"workspace path {path!r} contains ':' or ',' and cannot be mounted")
    argv = [engine_path, "run"]
    if engine == "podman" and options.runtime:
        argv[1:1] = ["--runtime", options.runtime]
    argv += [
        "--pull",
        "never",
        "--name",
        container_name,
        "--label",
        f"dcent.job={job.job_id}",
        "--label",
        f"dcent.owner={owner}",
        "--network",
        "none",
        "--read-only",
    ]
    if engine == "podman":
        # A VOLUME the image declares would be a host volume the job writes despite the read-only
        # root, left behind for good (review 39 F6): podman makes it part of the root instead.
        argv += ["--read-only-tmpfs=false", "--image-volume", "ignore"]
    argv += [
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
    ]
    # Inputs by reference, read-only over their mount points (paths were checked for ':' ',').
    for path in sorted(job.input_mounts):
        argv += ["--volume", f"{job.input_mounts[path]}:{CONTAINER_WORK}/{path}:ro"]
    argv += [
        "--env-file",
        env_file,
        "--stop-timeout",
        str(max(1, int(job.grace_s + 0.999))),
        "--ulimit",
        f"nofile={options.nofile}:{options.nofile}",
        "--ulimit",
        f"nproc={options.nproc}:{options.nproc}",
    ]
    if cidfile is not None:
        argv += ["--cidfile", cidfile]
    if keep_user_id:
        argv += ["--userns", "keep-id"]
    if cgroup_parent is not None:
        argv += ["--cgroup-parent", cgroup_parent]
    argv += _limit_flags(job.limits, engine_cgroup=cgroup_parent is None)
    if job.gpu_device_paths:
        if engine == "docker":
            argv += ["--gpus", f'"device={",".join(job.gpu_uuids)}"']
        else:
            for uuid in job.gpu_uuids:
                argv += ["--device", f"nvidia.com/gpu={uuid}"]
    argv += [image, *job.argv]
    return argv


def _limit_flags(limits: ResourceLimits, *, engine_cgroup: bool) -> list[str]:
    flags: list[str] = []
    if limits.disk_bytes is not None:
        flags += ["--ulimit", f"fsize={limits.disk_bytes}:{limits.disk_bytes}"]
    if not engine_cgroup:
        return flags
    if limits.memory_bytes is not None:
        flags += ["--memory", str(limits.memory_bytes), "--memory-swap", str(limits.memory_bytes)]
    if limits.processes is not None:
        flags += ["--pids-limit", str(limits.processes)]
    if limits.cpu_millicores is not None:
        whole, fraction = divmod(limits.cpu_millicores, 1000)
        flags += ["--cpus", f"{whole}.{fraction:03d}"]
    return flags


def env_file_content(env: Mapping[str, str]) -> bytes:
    """``NAME=VALUE`` lines for ``--env-file``. Raises :class:`InvalidEnvironment` for a value the
    format cannot carry (a newline or carriage return)."""
    lines = []
    for name in sorted(env):
        value = env[name]
        if "\n" in value or "\r" in value:
            raise InvalidEnvironment(f"{name}: a container job's environment value cannot hold a newline")
        lines.append(f"{name}={value}\n")
    return "".join(lines).encode()


def cdi_gpu_names(dirs: Sequence[str] = CDI_DIRS) -> frozenset[str]:
    """GPU and MIG UUIDs named as devices in the CDI specs under ``dirs`` (YAML or JSON)."""
    names: set[str] = set()
    for directory in dirs:
        with contextlib.suppress(OSError):
            for entry in sorted(os.scandir(directory), key=lambda item: item.name):
                if entry.is_file() and entry.name.endswith((".yaml", ".yml", ".json")):
                    with contextlib.suppress(OSError, UnicodeDecodeError):
                        text = Path(entry.path).read_text()
                        if "nvidia.com/gpu" in text:
                            names.update(_CDI_GPU_NAME.findall(text))
    return frozenset(names)


class ContainerTerminator:
    """Stops a container by name through the engine, then its ``run`` client."""

    def __init__(self, engine_path: str, container_name: str) -> None:
        self._engine_path = engine_path
        self._container_name = container_name

    async def terminate(self, process: RunningProcess) -> None:
        await engine_call(self._engine_path, "kill", "--signal", "TERM", self._container_name)

    async def kill(self, process: RunningProcess) -> None:
        await engine_call(self._engine_path, "rm", "--force", "--volumes", self._container_name)
        signal_process_group(process.pid, signal.SIGKILL)

    async def reap_stragglers(self, process: RunningProcess) -> None:
        # The client returns when the container has exited; the executor removes it then.
        return


class _ContainerCgroup:
    """The limit watcher of a container: our cgroup and volume through the confinement, plus the
    container's own cgroup (found through ``inspect``) when the engine holds the limits."""

    def __init__(self, confinement: Confinement) -> None:
        self.confinement = confinement
        self.cgroup: JobCgroup | None = None
        self.seen = CgroupEvents()

    def watch(self) -> LimitKind | None:
        hit = self.confinement.watch()
        if hit is not None or self.cgroup is None:
            return hit
        self.seen = self.cgroup.events()
        return self.seen.limit_hit()


class ContainerExecutor:
    """Runs jobs that carry a container image under podman or docker."""

    def __init__(
        self,
        engine: str,
        *,
        engine_path: str | None = None,
        default_image: str | None = None,
        settings: ExecutorSettings | None = None,
        enforcer: Enforcer | None = None,
    ) -> None:
        """``default_image`` runs jobs that name no image. Raises :class:`InvalidSandboxConfig`."""
        if engine not in ENGINES:
            raise InvalidSandboxConfig(f"container engine must be one of {ENGINES}, got {engine!r}")
        self.settings = settings if settings is not None else ExecutorSettings()
        self.enforcer = enforcer if enforcer is not None else Enforcer(self.settings)
        self._engine = engine
        self._engine_path = engine_path if engine_path is not None else shutil.which(engine)
        self._default_image = default_image or self.settings.container_image or None
        self._options = EngineOptions(
            runtime=self.settings.podman_runtime if engine == "podman" else None,
            nofile=_within_own_hard_limit(resource.RLIMIT_NOFILE, self.settings.podman_nofile),
            nproc=_within_own_hard_limit(resource.RLIMIT_NPROC, self.settings.podman_nproc),
        )
        self._availability: Availability | None = None
        self._engine_info: dict[str, object] = {}
        self._pinned: dict[str, str] = {}  # the operator's image names -> the ID each named when found
        self._job_images = JobImages()  # loaded from jobs' archives: removed after their jobs

    @property
    def name(self) -> str:
        return self._engine

    def available(self) -> Availability:
        """Whether the engine is installed and answers (probed once, then cached; blocks up to
        :data:`PROBE_TIMEOUT_S`: call it at startup or through ``trio.to_thread.run_sync``)."""
        if self._availability is None:
            self._availability = self._probe()
        return self._availability

    def capabilities(self) -> Capabilities:
        """Memory, CPU and processes as the engine's cgroups allow; disk from our volume."""
        availability = self.available()
        host = self.enforcer.limits()
        details = {
            "cgroup": str(self._engine_info.get("cgroupVersion", "unknown")),
            "disk": str(host.disk_backend or "none"),
        }
        if not availability:
            reason = f"the {self._engine} executor cannot run here: {availability.reason}"
            return Capabilities(self._engine, True, frozenset(), dict.fromkeys(LimitKind, reason), details)
        if self._placement() == "roots":
            return Capabilities(
                self._engine, True, host.kinds, host.missing, {**details, "cgroup": host.cgroup_version}
            )
        controllers = self._engine_info.get("cgroupControllers")
        present = set(controllers) if isinstance(controllers, list) else set()
        kinds: set[LimitKind] = set()
        missing: dict[LimitKind, str] = {}
        for kind, controller in (
            (LimitKind.MEMORY, "memory"),
            (LimitKind.CPU, "cpu"),
            (LimitKind.PROCESSES, "pids"),
        ):
            if controller in present:
                kinds.add(kind)
            else:
                missing[kind] = (
                    f"{self._engine} reports no {controller} cgroup controller (rootless on cgroup v1, or "
                    "not delegated: run the node as root or on cgroup v2 with systemd delegation)"
                )
        if LimitKind.DISK in host.kinds:
            kinds.add(LimitKind.DISK)
        else:
            missing[LimitKind.DISK] = host.missing.get(LimitKind.DISK, "no size-limited work directory")
        return Capabilities(self._engine, True, frozenset(kinds), missing, details)

    async def image_id(self, reference: str) -> str | None:
        """The ID (64 hex) of the image ``reference`` (a name or an ID) names in the engine's
        store now, or None when it has none (a name: never in the middle of a load)."""
        return await resolve_name(self._engine_path, reference)

    async def has_image(self, image: str) -> bool:
        """Whether ``image`` is in the engine's local store (what a quote for it should check)."""
        return await self.image_id(image) is not None

    async def load_archive(self, archive: Path, image: str) -> str:
        """Load an image archive from the blob store (no registry); returns the ID of the image
        in it that ``image`` names, which the job then runs (:func:`load_image_archive`: a
        rewrite of the archive carrying no name is loaded, so the store gains no name). An image
        this executor loads is removed when the jobs counting on it have ended (:class:`JobImages`).
        Raises :class:`ImageArchiveInvalid`,
        :class:`SandboxToolMissing` without the engine."""
        if self._engine_path is None:
            raise SandboxToolMissing(f"{self._engine} is not installed")
        return await load_image_archive(self._engine_path, archive, image, held=self._job_images.hold)

    async def operator_image(self, name: str) -> str:
        """The ID (``sha256:<hex>``) the operator's own image ``name`` (``container_image``, the
        self-test's) runs as: the one its tag named when this executor first found it, pinned for
        the executor's life, so a tag moved later, by whatever means, changes nothing that runs.
        Raises :class:`ImageNotAvailable` (never found, or the pinned image is gone)."""
        return await pinned_image(self._engine_path, self._pinned, name)

    async def _image_to_run(self, job: SandboxJob) -> str:
        """The ID the job runs: the one it names, the operator's own pinned one when it names
        none, or the one its tag names now where tags are trusted (``allow_local_image_names``).
        Raises :class:`ImageNameNotTrusted`, :class:`ImageNotAvailable`."""
        if not job.image:
            assert self._default_image is not None
            return await self.operator_image(self._default_image)
        # The rule the provider's quote applied (an archive's image arrives here as its ID).
        untrusted = image_refusal(
            job.image, archive_bound=False, allow_local_names=self.settings.allow_local_image_names
        )
        if untrusted is not None:
            raise ImageNameNotTrusted(untrusted)
        named_id = image_id_of(job.image)
        found = await self.image_id(id_reference(named_id) if named_id is not None else job.image)
        if found is None or (named_id is not None and found != named_id):
            raise ImageNotAvailable(
                f"this provider has no image {job.image!r} (images are not pulled at run time)"
            )
        return id_reference(found)

    def _placement(self) -> str:
        """Where the container's limits live: our own cgroup (``roots``) or the engine's (``none``)."""
        ours = self.enforcer.limits().kinds - {LimitKind.DISK}
        if (
            self._engine == "podman"
            and self._engine_info.get("cgroupManager") == "cgroupfs"
            and os.getuid() == 0
            and ours
        ):
            return "roots"
        return "none"

    async def run(self, job: SandboxJob, *, on_output: OutputSink | None = None) -> ExecutionResult:
        # A job's archive arrives as its loaded ID: counted while the job runs, removed after.
        image_id = self._job_images.start(image_id_of(job.image) if job.image else None)
        try:
            return await self._run(job, on_output)
        finally:
            with trio.CancelScope(shield=True):
                await self._job_images.end(self._engine_path, image_id, keep=self._pinned.values())

    async def _run(self, job: SandboxJob, on_output: OutputSink | None) -> ExecutionResult:
        availability = await trio.to_thread.run_sync(self.available)
        if not availability:
            raise SandboxToolMissing(availability.reason)
        if not (job.image or self._default_image):
            raise InvalidImage(f"the {self._engine} executor needs a container image and the job names none")
        env_file_content(job_environment(job, home=CONTAINER_WORK, tmpdir=CONTAINER_TMP))  # refuse early
        capabilities = await trio.to_thread.run_sync(self.capabilities)
        unenforceable = capabilities.unenforceable(job.limits)
        if unenforceable:
            raise LimitNotEnforceable(f"{self._engine} cannot enforce: {capabilities.explain(unenforceable)}")
        if job.gpu_device_paths and self._engine == "podman":
            named = await trio.to_thread.run_sync(cdi_gpu_names)
            absent = [uuid for uuid in job.gpu_uuids if uuid not in named]
            if absent:
                raise GpuUnavailable(
                    f"no CDI spec names {', '.join(absent)}: install the NVIDIA container toolkit and run "
                    "`nvidia-ctk cdi generate --output=/etc/cdi/nvidia.yaml --device-name-strategy=uuid`"
                )
        # From here on the job names its image by ID: what was checked is what runs.
        job = replace(job, image=await self._image_to_run(job))
        await self._sweep_orphans(job.work_root)
        return await execute_in_workspace(
            job,
            self.name,
            self._launch,
            enforcer=self.enforcer,
            on_output=on_output,
            cgroup_placement=self._placement(),
        )

    async def _launch(
        self, job: SandboxJob, workspace: Workspace, confinement: Confinement, on_output: OutputSink | None
    ) -> ProcessOutcome:
        assert self._engine_path is not None and image_id_of(job.image) is not None
        image = job.image
        container_name = f"dcent-{job.job_id}-{secrets.token_hex(4)}"
        env_file = await trio.to_thread.run_sync(
            functools.partial(
                workspace.write_config_file,
                "env",
                env_file_content(job_environment(job, home=CONTAINER_WORK, tmpdir=CONTAINER_TMP)),
            )
        )
        cidfile = workspace.config / "cid"
        argv = build_container_argv(
            engine=self._engine,
            engine_path=self._engine_path,
            container_name=container_name,
            image=image,
            job=job,
            work_dir=str(workspace.work),
            tmp_dir=str(workspace.tmp),
            env_file=str(env_file),
            user=f"{os.getuid()}:{os.getgid()}",
            owner=_owner(job.work_root),
            cidfile=str(cidfile),
            options=self._options,
            keep_user_id=self._engine == "podman" and os.getuid() != 0,
            cgroup_parent=confinement.cgroup.relative_path() if confinement.cgroup is not None else None,
        )
        watched = _ContainerCgroup(confinement)
        try:
            async with trio.open_nursery() as nursery:
                if confinement.cgroup is None:
                    nursery.start_soon(self._find_cgroup, container_name, watched)
                outcome = await run_supervised(
                    argv,
                    env=client_environment(),
                    cwd=str(workspace.root),
                    limits=process_limits(job),
                    terminator=ContainerTerminator(self._engine_path, container_name),
                    on_output=on_output,
                    watch=watched.watch,
                )
                nursery.cancel_scope.cancel()
            state = await engine_call(
                self._engine_path, "inspect", "--format", "{{json .State}}", container_name
            )
        finally:
            with trio.CancelScope(shield=True):
                await engine_call(self._engine_path, "rm", "--force", "--volumes", container_name)
                parent = confinement.cgroup.relative_path() if confinement.cgroup is not None else None
                if parent is not None:
                    # Ours stay until the executor has read the evidence (a fork bomb's pids.peak)
                    # and the confinement closes: only the engine's own go now.
                    ours = [h.own_dir for h in confinement.cgroup.dirs.values()] if confinement.cgroup else []
                    await trio.to_thread.run_sync(_remove_engine_cgroups, parent, ours)
        not_runnable = outcome.returncode in (126, 127)  # the job's command is not in its image
        if not (outcome.timed_out or outcome.stopped_for or not_runnable or _container_started(state)):
            # The engine failed before the job's process ran (a missing image, a refused
            # runtime setting): ours, not the job's. Exit 125 is the engine's own error.
            first = outcome.stderr.split(b"\n", 1)[0].decode(errors="replace")
            raise SandboxStartFailed(
                f"{self._engine} could not start the container: {first or outcome.returncode}"
            )
        evidence = _state_evidence(state) or watched.seen.limit_hit()
        return replace(outcome, limit_evidence=evidence) if evidence is not None else outcome

    async def _find_cgroup(self, container_name: str, watched: _ContainerCgroup) -> None:
        assert self._engine_path is not None
        for _ in range(100):
            path = await engine_call(
                self._engine_path, "inspect", "--format", "{{.State.CgroupPath}}", container_name
            )
            text = path.decode(errors="replace").strip() if path else ""
            if text.startswith("/"):
                watched.cgroup = await trio.to_thread.run_sync(_cgroup_at, text)
                return
            await trio.sleep(0.1)

    async def _sweep_orphans(self, work_root: Path) -> None:
        """Remove containers a dead node with this work root left, once per process and before
        any job of this process starts (a blocking call under a process-wide lock, so a job that
        starts meanwhile waits instead of being swept with them)."""
        if self._engine_path is not None:
            await trio.to_thread.run_sync(_sweep_orphans_once, self._engine_path, work_root)

    def _probe(self) -> Availability:
        availability, stdout = probe_tool(
            self._engine,
            self._engine_path,
            lambda path: [path, "info", "--format", "{{json .}}"],
            missing=f"{self._engine} is not installed (not found on PATH)",
            refused=f"{self._engine} does not answer",
            timeout_s=PROBE_TIMEOUT_S,
            env=client_environment(),
            last_line=True,
        )
        if not availability:
            return availability
        with contextlib.suppress(ValueError):
            info = json.loads(stdout)
            host = info.get("host") if isinstance(info, dict) else None
            if isinstance(host, dict):
                self._engine_info = host
            elif isinstance(info, dict):  # docker's info has no "host" section
                self._engine_info = {
                    "cgroupVersion": info.get("CgroupVersion"),
                    "cgroupControllers": _docker_controllers(info),
                }
        return Availability(True)


def _docker_controllers(info: Mapping[str, object]) -> list[str]:
    """docker reports limits support as flags, not controller names."""
    flags = {"MemoryLimit": "memory", "PidsLimit": "pids", "CpuCfsQuota": "cpu"}
    return [controller for key, controller in flags.items() if info.get(key) is True]


def _container_started(state: bytes | None) -> bool:
    """Whether ``inspect``'s State says the container's process ever ran."""
    if not state:
        return False
    with contextlib.suppress(ValueError):
        document = json.loads(state)
        if isinstance(document, dict):
            started = document.get("StartedAt")
            return isinstance(started, str) and not started.startswith("0001-01-01")
    return False


def _state_evidence(state: bytes | None) -> LimitKind | None:
    if not state:
        return None
    with contextlib.suppress(ValueError):
        document = json.loads(state)
        if isinstance(document, dict) and document.get("OOMKilled") is True:
            return LimitKind.MEMORY
    return None


def _cgroup_at(path: str) -> JobCgroup | None:
    """The container's cgroup directories for the memory and pids controllers, v1 or v2."""
    try:
        mountinfo = Path("/proc/self/mountinfo").read_text()
    except OSError:
        return None
    dirs: dict[str, Hierarchy] = {}
    for mount_point, fstype, options in parse_mountinfo(mountinfo):
        for controller in ("memory", "pids"):
            if fstype == "cgroup" and controller in options:
                dirs[controller] = Hierarchy(1, Path(mount_point) / path.lstrip("/"))
    if not dirs:
        v2 = next(
            (Path(point) for point, fstype, _ in parse_mountinfo(mountinfo) if fstype == "cgroup2"), None
        )
        if v2 is not None:
            for controller in ("memory", "pids"):
                dirs[controller] = Hierarchy(2, v2 / path.lstrip("/"))
    return JobCgroup(dirs) if dirs else None


def _within_own_hard_limit(which: int, wanted: int) -> int:
    """The runtime cannot raise a limit above the node's own hard limit: stay at or below it."""
    _soft, hard = resource.getrlimit(which)
    return wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)


_ORPHAN_LOCK = threading.Lock()
_ORPHANS_SWEPT: set[tuple[str, Path]] = set()


def _sweep_orphans_once(engine_path: str, work_root: Path) -> None:
    with _ORPHAN_LOCK:
        if (engine_path, work_root) in _ORPHANS_SWEPT:
            return
        owner = f"label=dcent.owner={_owner(work_root)}"
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            listing = subprocess.run(
                [engine_path, "ps", "--all", "--quiet", "--filter", owner],
                capture_output=True,
                timeout=ENGINE_CALL_TIMEOUT_S,
                env=client_environment(),
                check=False,
            )
            ids = listing.stdout.decode(errors="replace").split() if listing.returncode == 0 else []
            if ids:
                subprocess.run(
                    [engine_path, "rm", "--force", "--volumes", *ids],
                    capture_output=True,
                    timeout=ENGINE_CALL_TIMEOUT_S,
                    env=client_environment(),
                    check=False,
                )
        _ORPHANS_SWEPT.add((engine_path, work_root))


def _remove_engine_cgroups(relative_path: str, keep: Sequence[Path]) -> None:
    with contextlib.suppress(OSError):
        remove_in_every_hierarchy(relative_path, Path("/proc/self/mountinfo").read_text(), keep=keep)


def _owner(work_root: Path) -> str:
    return hashlib.sha256(str(work_root).encode()).hexdigest()[:16]
