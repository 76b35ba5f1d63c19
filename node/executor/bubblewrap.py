"""The default executor: bubblewrap (``bwrap``, Debian package ``bubblewrap``).

The sandbox, as :func:`build_bwrap_argv` lays it out:

* New namespaces for everything (``--unshare-all``: user, ipc, pid, net, uts, cgroup). The
  network namespace has only a loopback of its own: the job reaches nothing outside.
* ``--unshare-user`` always, ``--cap-drop ALL``, and the job runs as uid/gid 1000. This matters
  when the node runs as root (as in containers and CI): without a user namespace bwrap keeps the
  job as real root with every capability, and a root with CAP_SYS_ADMIN can remount the
  read-only binds read-write. Inside its own user namespace, with no capabilities, it cannot.
  (As an unprivileged user bwrap would create the user namespace anyway.)
* A read-only root built from pieces, not ``--ro-bind / /``: ``/usr``, the top-level ``/bin``,
  ``/lib*``, ``/sbin`` (symlinks on merged-/usr systems, binds otherwise), and the few ``/etc``
  files programs need to start (:data:`ETC_ENTRIES`). Binding ``/`` would show the job the
  node's home, its key store and RPC cookie, other jobs' workspaces and the host's ``/tmp``.
  ``/etc/passwd`` and ``/etc/group`` are synthesised (one ``sandbox`` user) so that tools
  needing a user name work without seeing the host's accounts.
* ``--proc /proc`` (the new pid namespace's own), ``--dev /dev`` (a minimal private ``/dev``),
  then the sold GPUs' ``/dev/nvidiaN`` nodes and, when the job has GPUs, whichever of
  ``/dev/nvidiactl``, ``/dev/nvidia-uvm``, ``/dev/nvidia-uvm-tools`` exist on the host.
* The only writable places are the job's workspace directories: ``work/`` at ``/work`` (its
  cwd and HOME), ``tmp/`` at ``/tmp`` and ``shm/`` at ``/dev/shm`` (PyTorch and NCCL need a
  shared-memory directory). They are disk-backed rather than tmpfs, so a job cannot pin host
  RAM through them, and they are removed with the workspace. ``/`` and ``/dev`` are remounted
  read-only.
* ``--clearenv`` and then exactly :func:`node.executor.base.job_environment`.
* ``--die-with-parent``: if the node dies, the sandbox dies. This is ``PR_SET_PDEATHSIG``, tied to
  the *thread* that spawned bwrap, which is why :mod:`node.executor.process` spawns from the trio
  thread and never from a worker thread (those exit when idle, and took their jobs with them).
  ``--new-session``: the job cannot reach a controlling terminal (CVE-2017-5226).
* **No command line carries the job's secrets or the host's layout.** Every option
  (``--setenv NAME VALUE`` for the environment, the host paths of the binds) is written to a
  memfd that bwrap reads and closes (``--args FD``): ``/proc/<pid>/cmdline`` of bwrap reads
  ``bwrap --args 5 -- <the job's argv>`` to any local user, and so does ``/proc/1/cmdline``
  inside the sandbox, whose own pid namespace shows the job nothing of the host's processes.
* Limits: the job's cgroup, size-limited workspace and ``RLIMIT_FSIZE`` are entered before bwrap
  starts (:mod:`node.executor.confine`).

Stopping a job: with ``--new-session`` the job is not in bwrap's process group, and SIGTERM to
bwrap itself would kill the sandbox at once (its init dies with it). So SIGTERM goes to every
process under bwrap (:class:`SandboxTreeTerminator`), and SIGKILL goes to bwrap's group and
all of them; once the sandbox's init dies the kernel kills everything in its pid namespace.

bwrap writes JSON status documents to ``--json-status-fd``; an ``exit-code`` document appears
only when the job itself ran and exited. Without it, bwrap failed to set up the sandbox (ours:
:class:`SandboxStartFailed`) or to execute the job's command (the job's: exit code 127 or 126,
as a shell reports it).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import signal
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import trio

from node.executor.base import (
    DEFAULT_PATH,
    SANDBOX_USER,
    Availability,
    capabilities_of,
    check_confined,
    execute_in_workspace,
    job_environment,
    probe_tool,
    process_limits,
)
from node.executor.confine import Confinement, Enforcer
from node.executor.errors import (
    InvalidGpuBinding,
    InvalidImage,
    InvalidSandboxConfig,
    SandboxStartFailed,
    SandboxToolMissing,
)
from node.executor.limits import Capabilities
from node.executor.model import ExecutionResult, SandboxJob
from node.executor.process import (
    OutputSink,
    ProcessOutcome,
    RunningProcess,
    descendant_pids,
    run_supervised,
    signal_pids,
    signal_process_group,
)
from node.executor.settings import ExecutorSettings
from node.executor.workspace import Workspace

SANDBOX_UID = 1000
SANDBOX_GID = 1000
SANDBOX_HOSTNAME = "dcent-sandbox"
SANDBOX_WORK = "/work"
SANDBOX_TMP = "/tmp"

# Top-level system directories: symlinks into /usr on merged-/usr systems, real dirs elsewhere.
SYSTEM_TOP_LEVEL = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# What programs need from /etc to start: the dynamic loader's cache, Debian's alternatives
# symlinks, time zone, name-service switch, CA certificates, OS identification.
ETC_ENTRIES = (
    "alternatives",
    "ca-certificates",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "nsswitch.conf",
    "os-release",
    "ssl",
)
GPU_CONTROL_NODES = ("/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools")

PROBE_TIMEOUT_S = 20.0
_EXEC_FAILURE_PREFIX = b"bwrap: execvp "


@dataclass(frozen=True, slots=True)
class HostLayout:
    """The facts about the host that shape the sandbox; from :func:`probe_host_layout`."""

    system_symlinks: tuple[tuple[str, str], ...]  # (path, link target), e.g. ("/bin", "usr/bin")
    system_dirs: tuple[str, ...]  # top-level directories to bind read-only, e.g. "/lib64"
    gpu_control_nodes: tuple[str, ...]  # those of GPU_CONTROL_NODES that exist


def probe_host_layout() -> HostLayout:
    """Look at this host's top-level system directories and NVIDIA control nodes."""
    symlinks: list[tuple[str, str]] = []
    dirs: list[str] = []
    for path in SYSTEM_TOP_LEVEL:
        if os.path.islink(path):
            symlinks.append((path, os.readlink(path)))
        elif os.path.isdir(path):
            dirs.append(path)
    controls = tuple(node for node in GPU_CONTROL_NODES if os.path.exists(node))
    return HostLayout(system_symlinks=tuple(symlinks), system_dirs=tuple(dirs), gpu_control_nodes=controls)


@dataclass(frozen=True, slots=True)
class SandboxMounts:
    """Host paths of the job's workspace pieces that the sandbox mounts."""

    work: str
    tmp: str
    shm: str
    passwd: str
    group: str


def build_bwrap_argv(
    *,
    bwrap: str,
    job: SandboxJob,
    layout: HostLayout,
    mounts: SandboxMounts,
    env: Mapping[str, str],
    status_fd: int | None = None,
    extra_ro_binds: Sequence[str] = (),
) -> list[str]:
    """The complete bwrap command line for ``job`` (pure: it looks at nothing but its arguments).

    Mount order matters to bwrap: each mount is made on top of the ones before it, and the
    ``--remount-ro`` of ``/`` and ``/dev`` come after everything mounted under them.
    """
    argv = [
        bwrap,
        "--unshare-all",
        "--unshare-user",
        "--uid",
        str(SANDBOX_UID),
        "--gid",
        str(SANDBOX_GID),
        "--cap-drop",
        "ALL",
        "--die-with-parent",
        "--new-session",
        "--hostname",
        SANDBOX_HOSTNAME,
    ]
    if status_fd is not None:
        argv += ["--json-status-fd", str(status_fd)]
    argv += ["--ro-bind", "/usr", "/usr"]
    for path, target in layout.system_symlinks:
        argv += ["--symlink", target, path]
    for path in layout.system_dirs:
        argv += ["--ro-bind", path, path]
    for entry in ETC_ENTRIES:
        argv += ["--ro-bind-try", f"/etc/{entry}", f"/etc/{entry}"]
    argv += ["--ro-bind", mounts.passwd, "/etc/passwd", "--ro-bind", mounts.group, "/etc/group"]
    for path in extra_ro_binds:
        argv += ["--ro-bind", path, path]
    argv += ["--proc", "/proc", "--dev", "/dev"]
    for device in job.gpu_device_paths:
        argv += ["--dev-bind", device, device]
    if job.gpu_device_paths:
        for device in layout.gpu_control_nodes:
            argv += ["--dev-bind", device, device]
    argv += ["--bind", mounts.shm, "/dev/shm", "--remount-ro", "/dev"]
    argv += ["--bind", mounts.work, SANDBOX_WORK, "--bind", mounts.tmp, SANDBOX_TMP]
    # Inputs by reference: the blob store's file over its (empty) mount point, read-only.
    for path in sorted(job.input_mounts):
        argv += ["--ro-bind", str(job.input_mounts[path]), f"{SANDBOX_WORK}/{path}"]
    argv += ["--remount-ro", "/", "--chdir", SANDBOX_WORK, "--clearenv"]
    for name in sorted(env):
        argv += ["--setenv", name, env[name]]
    argv += ["--", *job.argv]
    return argv


def split_for_args_fd(argv: Sequence[str], job: SandboxJob) -> tuple[list[str], list[str]]:
    """``(options, command line)`` of a :func:`build_bwrap_argv` result: the options go to bwrap
    through ``--args FD`` (it reads options there, not the command), and the command line that
    stays visible is ``bwrap --args FD -- <the job's own argv>``."""
    tail = 1 + len(job.argv)  # "--" and the job's argv
    options, command = list(argv[1:-tail]), list(argv[-tail:])
    assert command[0] == "--", "build_bwrap_argv ends with -- and the job's argv"
    return options, command


def sandbox_passwd() -> bytes:
    home_shell = f"{SANDBOX_WORK}:/bin/sh"
    return (
        f"{SANDBOX_USER}:x:{SANDBOX_UID}:{SANDBOX_GID}:dcent job:{home_shell}\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
    ).encode()


def sandbox_group() -> bytes:
    return f"{SANDBOX_USER}:x:{SANDBOX_GID}:\nnogroup:x:65534:\n".encode()


class SandboxTreeTerminator:
    """Signals every process under the bwrap process (the sandbox's init and all the job's)."""

    async def terminate(self, process: RunningProcess) -> None:
        # The sandbox's init ignores SIGTERM from outside its namespace; the job's processes get it.
        signal_pids(descendant_pids(process.pid), signal.SIGTERM)

    async def kill(self, process: RunningProcess) -> None:
        inside = descendant_pids(process.pid)
        signal_process_group(process.pid, signal.SIGKILL)
        # SIGKILL to the namespace's init is always delivered and takes the namespace down.
        signal_pids(inside, signal.SIGKILL)

    async def reap_stragglers(self, process: RunningProcess) -> None:
        # Nothing can be left: the sandbox's init exits with the job's main process, and the
        # kernel then kills everything else in the pid namespace.
        return


class BubblewrapExecutor:
    """Runs jobs in a bubblewrap sandbox (see the module docstring for its layout)."""

    name = "bubblewrap"

    def __init__(
        self,
        *,
        bwrap_path: str | None = None,
        extra_ro_binds: Sequence[str] = (),
        layout: HostLayout | None = None,
        settings: ExecutorSettings | None = None,
        enforcer: Enforcer | None = None,
    ) -> None:
        """``extra_ro_binds``: host directories the operator adds read-only at the same path
        (a CUDA toolkit under ``/opt``, ``/sys`` for NCCL topology discovery, ...), on top of
        ``settings.extra_ro_binds``.

        Raises :class:`InvalidSandboxConfig` for a relative or missing extra bind.
        """
        self.settings = settings if settings is not None else ExecutorSettings()
        extra_ro_binds = (*self.settings.extra_ro_binds, *extra_ro_binds)
        self.enforcer = enforcer if enforcer is not None else Enforcer(self.settings)
        for path in extra_ro_binds:
            if not os.path.isabs(path) or not os.path.exists(path):
                raise InvalidSandboxConfig(
                    f"extra read-only bind must be an existing absolute path: {path!r}"
                )
        self._bwrap = bwrap_path if bwrap_path is not None else shutil.which("bwrap")
        self._extra_ro_binds = tuple(extra_ro_binds)
        self._layout = layout if layout is not None else probe_host_layout()
        self._availability: Availability | None = None

    def available(self) -> Availability:
        """Whether bwrap is installed and can build this sandbox here (probed once, then cached).

        The probe runs ``true`` in a full sandbox and blocks for up to :data:`PROBE_TIMEOUT_S`:
        call it at startup, or through ``trio.to_thread.run_sync``.
        """
        if self._availability is None:
            self._availability = self._probe()
        return self._availability

    def capabilities(self) -> Capabilities:
        """The limits enforced here (cgroups, disk volume) if bwrap can run at all."""
        return capabilities_of(self.name, self.enforcer, sandboxed=True, availability=self.available())

    async def run(self, job: SandboxJob, *, on_output: OutputSink | None = None) -> ExecutionResult:
        availability = await trio.to_thread.run_sync(self.available)
        if not availability:
            raise SandboxToolMissing(availability.reason)
        if job.image:
            raise InvalidImage("the bubblewrap executor runs commands, not container images")
        for device in job.gpu_device_paths:
            if not os.path.exists(device):
                raise InvalidGpuBinding(f"GPU device node {device} does not exist on this host")
        return await execute_in_workspace(
            job, self.name, self._launch, enforcer=self.enforcer, on_output=on_output
        )

    def _argv(self, job: SandboxJob, workspace: Workspace, status_fd: int | None) -> list[str]:
        assert self._bwrap is not None
        mounts = SandboxMounts(
            work=str(workspace.work),
            tmp=str(workspace.tmp),
            shm=str(workspace.shm),
            passwd=str(workspace.write_config_file("passwd", sandbox_passwd())),
            group=str(workspace.write_config_file("group", sandbox_group())),
        )
        return build_bwrap_argv(
            bwrap=self._bwrap,
            job=job,
            layout=self._layout,
            mounts=mounts,
            env=job_environment(job, home=SANDBOX_WORK, tmpdir=SANDBOX_TMP),
            status_fd=status_fd,
            extra_ro_binds=self._extra_ro_binds,
        )

    async def _launch(
        self, job: SandboxJob, workspace: Workspace, confinement: Confinement, on_output: OutputSink | None
    ) -> ProcessOutcome:
        status_read, status_write = os.pipe2(os.O_CLOEXEC)
        args_fd = -1
        try:
            full_argv = await trio.to_thread.run_sync(
                functools.partial(self._argv, job, workspace, status_write)
            )
            options, job_command = split_for_args_fd(full_argv, job)
            args_fd = _args_memfd(options)
            command, confine_fds = confinement.wrap([full_argv[0], "--args", str(args_fd), *job_command])
            outcome = await run_supervised(
                command,
                env={"PATH": DEFAULT_PATH},
                cwd=str(workspace.root),
                limits=process_limits(job),
                terminator=SandboxTreeTerminator(),
                pass_fds=(status_write, args_fd, *confine_fds),
                on_output=on_output,
                watch=confinement.watch if confinement.active else None,
            )
            os.close(status_write)
            status_write = -1
            status = _read_status_documents(status_read)
        finally:
            os.close(status_read)
            for fd in (status_write, args_fd):
                if fd != -1:
                    os.close(fd)
        check_confined(confinement, outcome)
        return _interpret(outcome, status)

    def _probe(self) -> Availability:
        with tempfile.TemporaryDirectory(prefix="dcent-bwrap-probe-") as scratch:
            job = SandboxJob(job_id="probe", argv=("true",), work_root=Path(scratch))
            workspace = Workspace.create(job.work_root, job.job_id)
            availability, _ = probe_tool(
                "bwrap",
                self._bwrap,
                lambda _: self._argv(job, workspace, status_fd=None),
                missing="bwrap not found on PATH: install the bubblewrap package (make deps)",
                refused="bwrap cannot build the sandbox on this host",
                timeout_s=PROBE_TIMEOUT_S,
                env={"PATH": DEFAULT_PATH},
            )
        return availability


def _args_memfd(arguments: Sequence[str]) -> int:
    """A memfd holding ``arguments`` NUL-separated, positioned at its start, for ``--args``."""
    data = b"".join(argument.encode("utf-8", "surrogateescape") + b"\0" for argument in arguments)
    fd = os.memfd_create("dcent-bwrap-args", os.MFD_CLOEXEC)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.lseek(fd, 0, os.SEEK_SET)
    except OSError:
        os.close(fd)
        raise
    return fd


def _read_status_documents(fd: int) -> dict[str, object]:
    """Merge the JSON documents bwrap wrote to its status fd (the write end is closed by now)."""
    os.set_blocking(fd, False)
    raw = bytearray()
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(fd, 65536):
            raw += chunk
    merged: dict[str, object] = {}
    for line in raw.splitlines():
        with contextlib.suppress(ValueError):
            document = json.loads(line)
            if isinstance(document, dict):
                merged.update(document)
    return merged


def _interpret(outcome: ProcessOutcome, status: Mapping[str, object]) -> ProcessOutcome:
    """Tell a job that ran from a sandbox that never started (see the module docstring)."""
    if (
        "exit-code" in status
        or outcome.timed_out
        or outcome.stopped_for is not None
        or outcome.returncode < 0
    ):
        return outcome
    first_line = outcome.stderr.split(b"\n", 1)[0]
    if first_line.startswith(_EXEC_FAILURE_PREFIX):
        returncode = 127 if first_line.endswith(b"No such file or directory") else 126
        return replace(outcome, returncode=returncode)
    raise SandboxStartFailed(
        f"bubblewrap could not set up the sandbox: {first_line.decode(errors='replace') or outcome.returncode}"
    )
