"""Putting one job under its limits: cgroup, size-limited workspace, ``RLIMIT_FSIZE``.

:class:`Enforcer` (one per executor) knows what this host can enforce (:meth:`Enforcer.limits`,
probed for real once) and builds a :class:`Confinement` per job. The job's first process is a
tiny wrapper (:data:`WRAPPER`, run by the node's own Python) that, before it executes the
sandbox, joins the job's cgroups, sets ``RLIMIT_FSIZE`` and reports success on a close-on-exec
pipe: the sandbox and everything it forks start inside the limits, with no window in which a
fork could escape, and the job cannot forge that report (the pipe is closed before any of its
code runs). Nothing about the limits is passed on a command line the job could read.

While the job runs, :meth:`Confinement.watch` is polled: an OOM kill or the pids limit in the
cgroup, or a full workspace, stops the job and classifies the run (:mod:`node.executor.model`).
At the end the whole cgroup is killed (nothing the job started outlives it), then removed, and
the workspace filesystem is unmounted.

Attacks this is built against: a job that forks before it could be placed in its cgroup (it is
placed before it exists as a job); a job forging "the sandbox failed" to get its requester
refunded and the provider slashed (only the close-on-exec pipe says the confinement held, and an
outcome is a provider error only when it did not); a job that leaves daemons behind (the cgroup
is killed); a node killed mid-job (the job gets ``PR_SET_PDEATHSIG`` from the wrapper as well as
from bwrap, and the next node with the same work root sweeps the mounts and cgroups left).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import signal
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import trio

from node.executor.cgroups import CgroupEvents, CgroupHost, CgroupManager, JobCgroup, at_roots, discover_here
from node.executor.errors import ConfinementFailed, LimitNotEnforceable
from node.executor.limits import LimitKind, ResourceLimits
from node.executor.process import ProcessOutcome
from node.executor.settings import ExecutorSettings
from node.executor.volume import DiskBackend, Volume, VolumeError, probe_backend, sweep_stale

log = logging.getLogger(__name__)

# The wrapper: argv = [python, -I, -S, -c, WRAPPER, status_fd, fsize or -1, n, node pid, cgroup.procs x n, cmd...].
WRAPPER = """
import ctypes, os, resource, signal, sys
status_fd, fsize, count, parent = (int(value) for value in sys.argv[1:5])
procs, command = sys.argv[5 : 5 + count], sys.argv[5 + count :]
try:
    for path in procs:
        with open(path, "w") as handle:
            handle.write(str(os.getpid()))
    if fsize >= 0:
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    # The job dies with the node's event-loop thread, as bwrap's --die-with-parent does.
    if ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0) != 0 or os.getppid() != parent:
        raise OSError("PR_SET_PDEATHSIG failed or the node is gone")
except OSError as exc:
    os.write(2, ("dcent-confine: " + str(exc) + "\\n").encode())
    os._exit(125)
# Python ignores SIGPIPE and SIGXFSZ; ignored signals survive exec, so give the job the defaults.
signal.signal(signal.SIGPIPE, signal.SIG_DFL)
signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
os.write(status_fd, b"ok")
os.close(status_fd)
try:
    os.execvp(command[0], command)
except OSError as exc:
    os.write(2, ("dcent-confine: cannot execute " + command[0] + ": " + str(exc.strerror) + "\\n").encode())
    os._exit(127)
"""
# Process-wide: every executor of this process shares the sweep of a work root (see Enforcer).
_SWEEP_LOCK = threading.Lock()
_SWEPT_ROOTS: set[Path] = set()
_MANAGERS: dict[tuple[Path, bool], CgroupManager] = {}
CGROUP_REMOVE_ATTEMPTS = 50
CGROUP_REMOVE_PAUSE_S = 0.02
SIGXFSZ = int(signal.SIGXFSZ)
SIGKILL = int(signal.SIGKILL)


@dataclass(frozen=True, slots=True)
class HostLimits:
    """What :class:`Enforcer` found: enforceable kinds, reasons for the others, facts."""

    kinds: frozenset[LimitKind]
    missing: dict[LimitKind, str] = field(default_factory=dict)
    cgroup_version: str = "none"
    disk_backend: DiskBackend | None = None


class Enforcer:
    """Builds confinements; one per executor, probing the host once."""

    def __init__(self, settings: ExecutorSettings, *, cgroup_host: CgroupHost | None = None) -> None:
        self.settings = settings
        self._cgroup_host = cgroup_host
        self._host: HostLimits | None = None

    def limits(self) -> HostLimits:
        """Probe once (blocks up to a second: create a cgroup, mount a test volume), then cached."""
        if self._host is None:
            self._host = self._probe()
        return self._host

    def _probe(self) -> HostLimits:
        missing: dict[LimitKind, str] = {}
        kinds: set[LimitKind] = set()
        version = "none"
        if self.settings.cgroups:
            host = self._cgroup_host if self._cgroup_host is not None else discover_here()
            self._cgroup_host = host
            probe = CgroupManager(host, owner=f"probe-{os.getpid()}")
            enforceable = probe.enforceable()
            probe.remove_bases()
            kinds |= enforceable
            version = host.version_label
            for kind, controller in (
                (LimitKind.MEMORY, "memory"),
                (LimitKind.CPU, "cpu"),
                (LimitKind.PROCESSES, "pids"),
            ):
                if kind not in enforceable:
                    missing[kind] = probe.unusable.get(
                        controller, f"the {controller} controller is unavailable"
                    )
        else:
            for kind in (LimitKind.MEMORY, LimitKind.CPU, LimitKind.PROCESSES):
                missing[kind] = "cgroup limits are switched off in the executor settings (cgroups = false)"
        probe_dir = self.settings.probe_dir or Path(tempfile.gettempdir()) / "dcent-disk-probe"
        backend, reason = probe_backend(probe_dir, self.settings.disk_backend)
        with contextlib.suppress(OSError):
            probe_dir.rmdir()
        if backend is None:
            missing[LimitKind.DISK] = reason
        else:
            kinds.add(LimitKind.DISK)
        return HostLimits(frozenset(kinds), missing, version, backend)

    def check(self, limits: ResourceLimits, *, cgroup_placement: str = "node") -> None:
        """Raise :class:`LimitNotEnforceable` if ``limits`` asks for a kind we cannot enforce.

        ``cgroup_placement`` ``"none"``: a container engine enforces memory, CPU and processes
        itself; only the disk limit is ours then.
        """
        host = self.limits()
        wanted = limits.requested()
        if cgroup_placement == "none":
            wanted &= {LimitKind.DISK}
        unenforceable = sorted(wanted - host.kinds)
        if unenforceable:
            detail = "; ".join(f"{kind}: {host.missing.get(kind, 'not supported')}" for kind in unenforceable)
            raise LimitNotEnforceable(
                f"this host cannot enforce the job's {', '.join(unenforceable)} limit: {detail}"
            )

    def confine(
        self, job_id: str, limits: ResourceLimits, root: Path, *, cgroup_placement: str = "node"
    ) -> Confinement:
        """Mount the size-limited volume on ``root`` and create the cgroup (blocking; call from a
        thread). Raises :class:`ConfinementFailed`; nothing is left behind then."""
        host = self.limits()
        work_root = root.parent
        with _SWEEP_LOCK:  # the sweep must be over before any volume of this root is mounted
            if work_root not in _SWEPT_ROOTS:
                for point in sweep_stale(work_root):
                    log.warning("unmounted a job volume left by an earlier run: %s", point)
                _SWEPT_ROOTS.add(work_root)
        volume: Volume | None = None
        cgroup: JobCgroup | None = None
        try:
            if limits.disk_bytes is not None:
                assert host.disk_backend is not None
                volume = Volume.create(host.disk_backend, root, limits.disk_bytes)
            if cgroup_placement != "none" and limits.any_cgroup_limit:
                cgroup = self._manager(work_root, at_root=cgroup_placement == "roots").create(job_id, limits)
        except OSError as exc:
            if volume is not None:
                with contextlib.suppress(VolumeError):
                    volume.destroy()
            raise ConfinementFailed(f"cannot confine job {job_id}: {exc.strerror or exc}") from exc
        return Confinement(limits=limits, cgroup=cgroup, volume=volume)

    def _manager(self, work_root: Path, *, at_root: bool = False) -> CgroupManager:
        """One manager per work root in the whole process: its first use sweeps what a dead node
        left, which must never meet a job another executor of this process has started."""
        key = (work_root, at_root)
        with _SWEEP_LOCK:
            manager = _MANAGERS.get(key)
            if manager is None:
                assert self._cgroup_host is not None
                owner = hashlib.sha256(str(work_root).encode()).hexdigest()[:16]
                host = at_roots(self._cgroup_host) if at_root else self._cgroup_host
                manager = CgroupManager(host, owner=owner)
                _MANAGERS[key] = manager
        return manager


class Confinement:
    """One job's cgroup, volume and file-size limit (any of them may be absent)."""

    def __init__(self, *, limits: ResourceLimits, cgroup: JobCgroup | None, volume: Volume | None) -> None:
        self.limits = limits
        self.cgroup = cgroup
        self.volume = volume
        self._status_read = -1
        self._status_write = -1
        self._wrapped = False

    @property
    def active(self) -> bool:
        return self.cgroup is not None or self.limits.disk_bytes is not None

    def wrap(self, argv: list[str]) -> tuple[list[str], tuple[int, ...]]:
        """The command that enters the confinement and then executes ``argv``, and the fds the
        spawn must pass. Without anything to enter, ``argv`` unchanged and no fds."""
        if not self.active:
            return argv, ()
        self._status_read, self._status_write = os.pipe2(os.O_CLOEXEC)
        procs = self.cgroup.procs_files if self.cgroup is not None else ()
        fsize = self.limits.disk_bytes if self.limits.disk_bytes is not None else -1
        self._wrapped = True
        wrapper = [
            sys.executable,
            "-I",
            "-S",
            "-c",
            WRAPPER,
            str(self._status_write),
            str(fsize),
            str(len(procs)),
            str(os.getpid()),
        ]
        return [*wrapper, *procs, *argv], (self._status_write,)

    def spawned(self) -> None:
        """Call right after the spawn: our copy of the pipe's write end must go."""
        if self._status_write != -1:
            os.close(self._status_write)
            self._status_write = -1

    def entered(self) -> bool:
        """Whether the wrapper joined the cgroup and set the limits (read once the process ran)."""
        if not self._wrapped:
            return True
        self.spawned()
        os.set_blocking(self._status_read, False)
        try:
            return os.read(self._status_read, 16) == b"ok"
        except BlockingIOError:
            return False

    def events(self) -> CgroupEvents:
        return self.cgroup.events() if self.cgroup is not None else CgroupEvents()

    def watch(self) -> LimitKind | None:
        """What the limit watcher polls: a limit the kernel enforced, or a full workspace."""
        hit = self.events().limit_hit()
        if hit is not None:
            return hit
        if self.volume is not None and self.volume.is_full():
            return LimitKind.DISK
        return None

    def evidence(self, outcome: ProcessOutcome) -> LimitKind | None:
        """After the exit: the limit the job reached, if any.

        The kernel's counters first; then ``SIGXFSZ`` (a write past ``RLIMIT_FSIZE``) as the disk;
        then the hierarchical records a container's removed child cgroup leaves behind: the pids
        peak at the limit, or the memory limit reached by a job whose main process was SIGKILLed
        (the OOM killer's signal).
        """
        hit = self.watch()
        if hit is not None:
            return hit
        if self.limits.disk_bytes is not None and outcome.returncode in (-SIGXFSZ, 128 + SIGXFSZ):
            return LimitKind.DISK
        if self.cgroup is not None:
            memory_hit, processes_hit = self.cgroup.limits_reached()
            if processes_hit:
                return LimitKind.PROCESSES
            if memory_hit and outcome.returncode in (-SIGKILL, 128 + SIGKILL) and not outcome.killed:
                return LimitKind.MEMORY
        return None

    async def close(self) -> None:
        """Kill whatever is left in the cgroup, remove it, unmount the volume. Raises
        :class:`ConfinementFailed` when the volume stays mounted or the cgroup cannot be emptied."""
        for fd in (self._status_read, self._status_write):
            if fd != -1:
                os.close(fd)
        self._status_read = self._status_write = -1
        problems = []
        if self.cgroup is not None:
            for _ in range(CGROUP_REMOVE_ATTEMPTS):
                if self.cgroup.remove():
                    break
                await trio.sleep(CGROUP_REMOVE_PAUSE_S)
            else:
                problems.append(f"cgroup {self.cgroup.procs_files} still holds {self.cgroup.pids()}")
        if self.volume is not None:
            try:
                await trio.to_thread.run_sync(self.volume.destroy)
            except VolumeError as exc:
                problems.append(str(exc.strerror))
        if problems:
            raise ConfinementFailed("; ".join(problems))
