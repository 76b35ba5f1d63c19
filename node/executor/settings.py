"""The executor's own settings, with defaults (the node config maps its ``[executor]`` table here)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from node.executor.errors import InvalidSandboxConfig
from node.executor.volume import BACKEND_CHOICES

DEFAULT_PODMAN_NOFILE = 4096
# RLIMIT_NPROC counts every process of the container user's uid on the host (root, for a node
# running as root), so it must be high; runc refused 40000 on the development machine.
DEFAULT_PODMAN_NPROC = 32768


@dataclass(frozen=True, slots=True)
class ExecutorSettings:
    """How the executors enforce limits and build their sandboxes.

    ``disk_backend``: the size-limited work directory (:mod:`node.executor.volume`): ``auto``
    (loop, else tmpfs), ``loop``, ``tmpfs``, or ``none`` (then disk limits are unenforceable and
    jobs that ask for one are refused). ``cgroups``: false turns cgroup limits off (then memory,
    CPU and process limits are unenforceable). ``probe_dir``: where the capability probe mounts a
    throwaway volume (default: the system temporary directory). ``extra_ro_binds``: host paths
    bubblewrap adds read-only (a CUDA toolkit under ``/opt``). ``podman_runtime`` and the
    ``podman_nofile`` / ``podman_nproc`` ulimits: explicit, because the engine's defaults copy the
    node's own limits, which the OCI runtime may not be allowed to set. ``container_image``: the
    image for jobs that name none. ``allow_local_image_names``: run jobs that name their image
    only by a tag (:mod:`node.executor.images`).

    Raises :class:`InvalidSandboxConfig` for a value out of range.
    """

    #: Each job's size-limited work directory: auto (loop, else tmpfs), loop, tmpfs, or none
    #: (then disk limits are unenforceable and jobs that ask for one are refused).
    disk_backend: str = "auto"
    #: false turns cgroup limits off (then memory, CPU and process limits are unenforceable).
    cgroups: bool = True
    #: Where the capability probe mounts a throwaway volume ("": the system temporary directory).
    probe_dir: Path | None = None
    #: Host paths bubblewrap adds read-only, e.g. a CUDA toolkit under /opt.
    extra_ro_binds: tuple[str, ...] = ()
    #: The OCI runtime podman runs jobs with (crun refuses hybrid cgroup hosts; runc does not).
    podman_runtime: str = "runc"
    #: The ulimits podman sets, explicitly: the engine's defaults copy the node's own limits,
    #: which the runtime may not be allowed to set. nproc counts every process of the container
    #: user's uid on the host.
    podman_nofile: int = DEFAULT_PODMAN_NOFILE
    podman_nproc: int = DEFAULT_PODMAN_NPROC
    #: The image for jobs that name none, and the self-test's: pinned to the ID its tag names when
    #: the node first finds it (moving the tag takes a restart); no job's image archive may take it.
    container_image: str = ""
    #: Run jobs that name their image only by a tag, as whatever that tag names in the engine's
    #: store when the job starts. Off: such jobs are refused when quoted (4049), since any
    #: job's image archive can move a tag; jobs bring their image as an archive or name it by ID.
    allow_local_image_names: bool = False

    def __post_init__(self) -> None:
        if self.disk_backend not in BACKEND_CHOICES:
            raise InvalidSandboxConfig(
                f"executor.disk_backend: one of {', '.join(BACKEND_CHOICES)}, got {self.disk_backend!r}"
            )
        if self.probe_dir is not None and not self.probe_dir.is_absolute():
            raise InvalidSandboxConfig(f"executor.probe_dir must be absolute, got {self.probe_dir}")
        for name in ("podman_nofile", "podman_nproc"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 64 <= value <= 2**30:
                raise InvalidSandboxConfig(f"executor.{name}: an int between 64 and 2^30, got {value!r}")
        runtime = self.podman_runtime
        if not runtime or not runtime.isprintable() or " " in runtime or runtime.startswith("-"):
            raise InvalidSandboxConfig(f"executor.podman_runtime: a runtime name or path, got {runtime!r}")
