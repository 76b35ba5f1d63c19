"""One cgroup per job: memory, CPU and process limits enforced by the kernel, and what was hit.

Where: under the node's own cgroup, ``<own cgroup>/dcent-jobs/<owner>/<job>-<random>``, in each
hierarchy that carries a controller we need. Nesting under the node keeps whatever limits the
operator (or systemd) put on the node binding its jobs too, and ``<owner>`` (a digest of the
node's work root) keeps two nodes that share a parent cgroup from touching each other's jobs.

cgroup v2 where a controller is on the unified hierarchy, v1 where it is on a v1 hierarchy: hybrid
hosts (this project's development machine: memory, pids and cpu on v1, nothing useful on the
unified mount) get v1 for those. Per controller:

=========  ===============================================  ===========================================
           v2                                               v1
=========  ===============================================  ===========================================
memory     ``memory.max``, ``memory.swap.max = 0``,         ``memory.limit_in_bytes`` (and
           ``memory.oom.group = 1`` (an OOM kills the       ``memory.memsw.limit_in_bytes`` where swap
           whole job); hits: ``memory.events`` oom_kill     is accounted); hits: ``memory.oom_control``
pids       ``pids.max``; hits: ``pids.events`` max          the same files
cpu        ``cpu.max = "<quota> 100000"``                   ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``
=========  ===============================================  ===========================================

cgroup v2 forbids processes in a cgroup whose children have controllers enabled ("no internal
processes"). When the node's own cgroup holds only the node, :func:`prepare_v2` moves the node
into a leaf ``dcent-node`` beside ``dcent-jobs`` (what systemd's ``Delegate=yes`` expects); when
it holds other processes too, memory and pids limits are reported as unenforceable with that
reason rather than guessed at.

The job's first process joins its cgroup *before* it executes the sandbox (see
:mod:`node.executor.confine`), so nothing the job forks can start outside it.

Attacks this is built against: a job allocating all the host's memory (the OOM killer acts
inside the job's cgroup only), a fork bomb (``fork`` fails at ``pids.max``), a job spinning every
core (CFS quota), a job leaving processes behind (the whole cgroup is killed at the end, and a
leftover one from a node that died is killed when the next node with the same work root starts).
All file I/O here is synchronous and small: reads of a few bytes from cgroupfs.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import signal
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from node.executor.limits import LimitKind, ResourceLimits

CONTROLLERS = ("memory", "pids", "cpu")
LIMIT_CONTROLLER = {LimitKind.MEMORY: "memory", LimitKind.PROCESSES: "pids", LimitKind.CPU: "cpu"}
JOBS_DIR = "dcent-jobs"
NODE_LEAF = "dcent-node"
CPU_PERIOD_US = 100_000
# Rounds of "read cgroup.procs, SIGKILL each" before giving up on a v1 cgroup (v2 has cgroup.kill).
KILL_ROUNDS = 50


class CgroupError(OSError):
    """A cgroup file could not be created, written or read (wrapped by the caller)."""


@dataclass(frozen=True, slots=True)
class Hierarchy:
    """Where one controller lives: the cgroup directory that is this process's own in it."""

    version: int  # 1 or 2
    own_dir: Path
    mount: Path | None = None  # the hierarchy's mount point (its root cgroup)


@dataclass(frozen=True, slots=True)
class CgroupHost:
    """What this host offers, per controller; ``missing`` says why a controller is absent."""

    hierarchies: Mapping[str, Hierarchy]
    missing: Mapping[str, str] = field(default_factory=dict)

    @property
    def version_label(self) -> str:
        versions = sorted({h.version for h in self.hierarchies.values()})
        return "+".join(f"v{v}" for v in versions) or "none"


def parse_mountinfo(text: str) -> list[tuple[str, str, frozenset[str]]]:
    """``(mount point, filesystem type, super options)`` of every cgroup/cgroup2 mount.

    A mountinfo line is ``id parent major:minor root mountpoint options [optional...] - fstype
    source superoptions``; octal escapes (``\\040`` for a space) in the mount point are decoded.
    """
    mounts = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields = left.split()
        tail = right.split()
        if len(fields) < 5 or len(tail) < 3 or tail[0] not in ("cgroup", "cgroup2"):
            continue
        mount_point = unescape_octal(fields[4])
        mounts.append((mount_point, tail[0], frozenset(tail[2].split(","))))
    return mounts


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """Controller name -> this process's cgroup path; the v2 entry is under the key ``""``."""
    paths: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _hier_id, controllers, path = parts
        if controllers == "":
            paths[""] = path
        for name in controllers.split(","):
            if name:
                paths[name] = path
    return paths


def discover(mountinfo: str, proc_cgroup: str) -> CgroupHost:
    """Find, for each of :data:`CONTROLLERS`, the hierarchy that carries it and our place in it.

    Pure apart from reading ``cgroup.controllers`` of the v2 mount (which controllers the unified
    hierarchy offers at our level).
    """
    mounts = parse_mountinfo(mountinfo)
    own = parse_proc_cgroup(proc_cgroup)
    hierarchies: dict[str, Hierarchy] = {}
    missing: dict[str, str] = {}
    v2_mount = next((Path(point) for point, fstype, _ in mounts if fstype == "cgroup2"), None)
    for controller in CONTROLLERS:
        v1_mount = next(
            (Path(point) for point, fstype, opts in mounts if fstype == "cgroup" and controller in opts), None
        )
        if v1_mount is not None and controller in own:
            hierarchies[controller] = Hierarchy(1, _join(v1_mount, own[controller]), v1_mount)
            continue
        if v2_mount is not None and "" in own:
            own_dir = _join(v2_mount, own[""])
            if controller in _read_words(own_dir / "cgroup.controllers"):
                hierarchies[controller] = Hierarchy(2, own_dir, v2_mount)
                continue
            missing[controller] = (
                f"the {controller} controller is not available to this node's cgroup {own_dir} "
                "(cgroup v2: not delegated to it; with systemd run the node with Delegate=yes)"
            )
            continue
        missing[controller] = (
            f"no cgroup hierarchy with the {controller} controller is mounted (see /proc/self/mountinfo)"
        )
    return CgroupHost(hierarchies=hierarchies, missing=missing)


def at_roots(host: CgroupHost) -> CgroupHost:
    """The same controllers with the hierarchies' root cgroups as "our own": for cgroups that must
    sit at the same relative path in every hierarchy (a container engine's ``--cgroup-parent``)."""
    roots = {
        controller: Hierarchy(h.version, h.mount, h.mount)
        for controller, h in host.hierarchies.items()
        if h.mount is not None
    }
    return CgroupHost(hierarchies=roots, missing=host.missing)


def discover_here() -> CgroupHost:
    """:func:`discover` for this process."""
    try:
        mountinfo = Path("/proc/self/mountinfo").read_text()
        proc_cgroup = Path("/proc/self/cgroup").read_text()
    except OSError as exc:
        return CgroupHost(hierarchies={}, missing=dict.fromkeys(CONTROLLERS, f"cannot read /proc: {exc}"))
    return discover(mountinfo, proc_cgroup)


def prepare_v2(own_dir: Path, controllers: Iterable[str], pid: int, *, is_root: bool = False) -> Path:
    """Make ``own_dir/dcent-jobs`` able to host job cgroups with ``controllers``; return it.

    If ``own_dir`` still holds processes, they must leave it before controllers can be enabled
    for its children: when the only one is ``pid`` (the node), it moves to ``own_dir/dcent-node``.
    The root cgroup (``is_root``) is exempt from that rule. Raises :class:`CgroupError` (with the
    operator's fix) when other processes live there.
    """
    wanted = sorted(controllers)
    enable = " ".join(f"+{name}" for name in wanted)
    jobs = own_dir / JOBS_DIR
    if is_root:
        if not set(wanted) <= _read_words(own_dir / "cgroup.subtree_control"):
            _write(own_dir / "cgroup.subtree_control", enable)
    elif not set(wanted) <= _read_words(own_dir / "cgroup.subtree_control"):
        members = [int(word) for word in _read_words(own_dir / "cgroup.procs")]
        others = sorted(set(members) - {pid})
        if others:
            raise CgroupError(
                errno.EBUSY,
                f"cgroup v2: {own_dir} also holds processes {others[:5]} besides the node, so it cannot "
                "delegate controllers to job cgroups; run the node in a cgroup of its own "
                "(systemd: a service with Delegate=yes)",
            )
        if members:
            leaf = own_dir / NODE_LEAF
            _mkdir(leaf)
            _write(leaf / "cgroup.procs", str(pid))
        _write(own_dir / "cgroup.subtree_control", enable)
    _mkdir(jobs)
    if not set(wanted) <= _read_words(jobs / "cgroup.subtree_control"):
        _write(jobs / "cgroup.subtree_control", enable)
    return jobs


@dataclass(frozen=True, slots=True)
class CgroupEvents:
    """Counters read from a job's cgroup: how often the kernel enforced a limit."""

    oom_kills: int = 0
    pids_max: int = 0
    peak_memory_bytes: int | None = None

    def limit_hit(self) -> LimitKind | None:
        if self.oom_kills > 0:
            return LimitKind.MEMORY
        if self.pids_max > 0:
            return LimitKind.PROCESSES
        return None


class JobCgroup:
    """The cgroup (one directory per hierarchy; one in all under v2) of one running job."""

    def __init__(self, dirs: Mapping[str, Hierarchy]) -> None:
        self.dirs = dict(dirs)
        # cgroup v1 counts an OOM kill only in the victim's own cgroup, and a container engine
        # removes its child cgroup (and the count) when the container exits, often between two
        # polls of the limit watcher: a memory hog whose main process survived would then pass as
        # completed. The OOM notification of the cgroup holding the limit (an eventfd registered
        # through cgroup.event_control) fires for any OOM below it and outlives the child.
        self._oom_eventfd = -1
        self._oom_control_fd = -1
        self._oom_notified = False

    @property
    def procs_files(self) -> tuple[str, ...]:
        """The distinct ``cgroup.procs`` files the job's first process must join."""
        return tuple(sorted({str(h.own_dir / "cgroup.procs") for h in self.dirs.values()}))

    def apply(self, limits: ResourceLimits) -> None:
        """Write the limits. Raises :class:`CgroupError`."""
        memory = self.dirs.get("memory")
        if limits.memory_bytes is not None and memory is not None:
            if memory.version == 2:
                _write(memory.own_dir / "memory.max", str(limits.memory_bytes))
                _write_if_present(memory.own_dir / "memory.swap.max", "0")
                _write_if_present(memory.own_dir / "memory.oom.group", "1")
            else:
                _write(memory.own_dir / "memory.limit_in_bytes", str(limits.memory_bytes))
                _write_if_present(memory.own_dir / "memory.memsw.limit_in_bytes", str(limits.memory_bytes))
                self._arm_oom_notification(memory.own_dir)
        pids = self.dirs.get("pids")
        if limits.processes is not None and pids is not None:
            _write(pids.own_dir / "pids.max", str(limits.processes))
        cpu = self.dirs.get("cpu")
        if limits.cpu_millicores is not None and cpu is not None:
            quota = limits.cpu_millicores * CPU_PERIOD_US // 1000
            if cpu.version == 2:
                _write(cpu.own_dir / "cpu.max", f"{quota} {CPU_PERIOD_US}")
            else:
                _write(cpu.own_dir / "cpu.cfs_period_us", str(CPU_PERIOD_US))
                _write(cpu.own_dir / "cpu.cfs_quota_us", str(quota))

    def _arm_oom_notification(self, directory: Path) -> None:
        """Register for the v1 OOM notification of ``directory``; without it (an old kernel, a
        read-only event_control) the per-cgroup counters remain the only record."""
        if self._oom_eventfd != -1:
            return
        try:
            eventfd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        except OSError:
            return
        try:
            control = os.open(directory / "memory.oom_control", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            os.close(eventfd)
            return
        try:
            (directory / "cgroup.event_control").write_text(f"{eventfd} {control}")
        except OSError:
            os.close(control)
            os.close(eventfd)
            return
        self._oom_eventfd, self._oom_control_fd = eventfd, control

    def _oom_seen(self) -> bool:
        if not self._oom_notified and self._oom_eventfd != -1:
            with contextlib.suppress(BlockingIOError):  # BlockingIOError: no OOM so far
                self._oom_notified = os.eventfd_read(self._oom_eventfd) > 0
        return self._oom_notified

    def _close_notification(self) -> None:
        for fd in (self._oom_eventfd, self._oom_control_fd):
            if fd != -1:
                os.close(fd)
        self._oom_eventfd = self._oom_control_fd = -1

    def events(self) -> CgroupEvents:
        """The enforcement counters, summed over this cgroup and any below it (cgroup v1 counts
        an OOM kill or a failed fork in the cgroup of the process, not where the limit sits); a
        file that cannot be read counts as zero."""
        oom_kills = pids_max = 0
        peak: int | None = None
        memory = self.dirs.get("memory")
        if memory is not None:
            for directory in _tree(memory.own_dir):
                if memory.version == 2:
                    oom_kills += _keyed(directory / "memory.events").get("oom_kill", 0)
                else:
                    oom_kills += _keyed(directory / "memory.oom_control").get("oom_kill", 0)
            peak_file = "memory.peak" if memory.version == 2 else "memory.max_usage_in_bytes"
            peak = _read_int(memory.own_dir / peak_file)
            if oom_kills == 0 and self._oom_seen():
                oom_kills = 1
        pids = self.dirs.get("pids")
        if pids is not None:
            for directory in _tree(pids.own_dir):
                pids_max += _keyed(directory / "pids.events").get("max", 0)
        return CgroupEvents(oom_kills=oom_kills, pids_max=pids_max, peak_memory_bytes=peak)

    def limits_reached(self) -> tuple[bool, bool]:
        """``(memory, processes)``: whether usage ever reached the limit written here, from the
        hierarchical records that outlive child cgroups (``memory.failcnt`` / ``memory.events``
        max; ``pids.peak`` against ``pids.max``)."""
        memory_hit = processes_hit = False
        memory = self.dirs.get("memory")
        if memory is not None:
            if memory.version == 2:
                memory_hit = _keyed(memory.own_dir / "memory.events").get("max", 0) > 0
            else:
                memory_hit = (_read_int(memory.own_dir / "memory.failcnt") or 0) > 0
        pids = self.dirs.get("pids")
        if pids is not None:
            peak = _read_int(pids.own_dir / "pids.peak")
            limit = _read_int(pids.own_dir / "pids.max")
            processes_hit = peak is not None and limit is not None and peak >= limit
        return memory_hit, processes_hit

    def pids(self) -> list[int]:
        found: set[int] = set()
        for procs in self.procs_files:
            with contextlib.suppress(OSError):
                found.update(int(word) for word in Path(procs).read_text().split())
        return sorted(found)

    def kill_all(self) -> bool:
        """SIGKILL every process in the cgroup; True once it is empty."""
        return kill_cgroup_dirs([h.own_dir for h in self.dirs.values()])

    def remove(self) -> bool:
        """Kill what is left and remove the directories (and any child cgroups a container
        engine made in them, deepest first); True if all are gone."""
        self.kill_all()
        self._oom_seen()  # keep what the notification said; the directory goes now
        self._close_notification()
        return all(_rmdir_tree(h.own_dir) for h in self.dirs.values())

    def relative_path(self) -> str | None:
        """The path of this cgroup below its hierarchy's root, if it is the same in every one."""
        paths = {"/" + str(h.own_dir.relative_to(h.mount)) for h in self.dirs.values() if h.mount is not None}
        return paths.pop() if len(paths) == 1 and len(self.dirs) > 0 else None


def remove_in_every_hierarchy(relative_path: str, mountinfo: str, *, keep: Iterable[Path] = ()) -> None:
    """rmdir ``relative_path`` (and what is below it) in every mounted cgroup hierarchy: a
    container engine given ``--cgroup-parent`` creates that path in all of them, not only in
    those whose controllers we limit. Of a directory in ``keep`` (our own, holding the limits
    and their hierarchical records: ``pids.peak``, ``memory.failcnt``, still to be read) only
    what is below it goes."""
    kept = set(keep)
    for mount_point, _fstype, _options in parse_mountinfo(mountinfo):
        directory = Path(mount_point) / relative_path.lstrip("/")
        if not directory.is_dir():
            continue
        if directory in kept:
            with contextlib.suppress(OSError):
                for child in sorted((c for c in directory.iterdir() if c.is_dir()), key=str):
                    kill_cgroup_dirs([child])
                    _rmdir_tree(child)
        else:
            _rmdir_tree(directory)


def kill_cgroup_dirs(dirs: Iterable[Path]) -> bool:
    """SIGKILL everything in these cgroup directories (``cgroup.kill`` where the kernel has it)."""
    unique = sorted(set(dirs))
    for directory in unique:
        kill_file = directory / "cgroup.kill"
        if kill_file.exists():
            with contextlib.suppress(OSError):
                kill_file.write_text("1")
    for _ in range(KILL_ROUNDS):
        pids: set[int] = set()
        for directory in unique:
            with contextlib.suppress(OSError):
                pids.update(int(word) for word in (directory / "cgroup.procs").read_text().split())
        if not pids:
            return True
        for pid in sorted(pids):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    return False


class CgroupManager:
    """Creates job cgroups under ``<own>/dcent-jobs/<owner>`` in each hierarchy we need."""

    def __init__(self, host: CgroupHost, owner: str, *, pid: int | None = None) -> None:
        self.host = host
        self.owner = owner
        self._pid = os.getpid() if pid is None else pid
        self._bases: dict[str, Hierarchy] | None = None
        self.unusable: dict[str, str] = dict(host.missing)
        # Jobs start from worker threads: the sweep must finish before any job's cgroup exists,
        # or it would kill a job that started beside it.
        self._lock = threading.Lock()

    def prepare(self) -> dict[str, Hierarchy]:
        """Create the base directories once, sweep what a dead node left there, and try one
        throwaway cgroup with every limit written. Controllers that fail land in ``unusable``."""
        with self._lock:
            return self._prepare_locked()

    def _prepare_locked(self) -> dict[str, Hierarchy]:
        if self._bases is not None:
            return self._bases
        bases: dict[str, Hierarchy] = {}
        v2 = {c: h for c, h in self.host.hierarchies.items() if h.version == 2}
        if v2:
            first = next(iter(v2.values()))
            try:
                jobs = prepare_v2(first.own_dir, v2, self._pid, is_root=first.own_dir == first.mount)
                for controller in v2:
                    bases[controller] = Hierarchy(2, jobs / self.owner, first.mount)
            except OSError as exc:
                for controller in v2:
                    self.unusable[controller] = _describe(exc)
        for controller, hierarchy in self.host.hierarchies.items():
            if hierarchy.version == 1:
                bases[controller] = Hierarchy(1, hierarchy.own_dir / JOBS_DIR / self.owner, hierarchy.mount)
        for controller, base in list(bases.items()):
            try:
                _mkdir(base.own_dir.parent)
                _mkdir(base.own_dir)
                if base.version == 2:
                    _write_if_missing_controllers(base.own_dir, v2)
            except OSError as exc:
                self.unusable[controller] = (
                    f"cannot create {base.own_dir}: {_describe(exc)} (run the node as root, or give it a "
                    "delegated cgroup)"
                )
                del bases[controller]
        self._bases = bases
        self.sweep()
        self._trial()
        return self._bases

    def enforceable(self) -> frozenset[LimitKind]:
        bases = self.prepare()
        return frozenset(kind for kind, controller in LIMIT_CONTROLLER.items() if controller in bases)

    def create(self, job_id: str, limits: ResourceLimits) -> JobCgroup:
        """A fresh cgroup with ``limits`` written. Raises :class:`CgroupError`."""
        bases = self.prepare()
        name = f"{job_id}-{secrets.token_hex(4)}"
        wanted = {LIMIT_CONTROLLER[kind] for kind in limits.requested() if kind in LIMIT_CONTROLLER}
        dirs: dict[str, Hierarchy] = {}
        for controller in sorted(wanted):
            base = bases.get(controller)
            if base is None:
                raise CgroupError(
                    errno.ENOTSUP, f"{controller}: {self.unusable.get(controller, 'unavailable')}"
                )
            dirs[controller] = Hierarchy(base.version, base.own_dir / name, base.mount)
        cgroup = JobCgroup(dirs)
        try:
            for hierarchy in {h.own_dir: h for h in dirs.values()}.values():
                _mkdir(hierarchy.own_dir, exist_ok=False)
            cgroup.apply(limits)
        except OSError:
            cgroup.remove()
            raise
        return cgroup

    def sweep(self) -> None:
        """Kill and remove job cgroups left under our owner directory (a node that died)."""
        for base in (self._bases or {}).values():
            with contextlib.suppress(OSError):
                for child in sorted(base.own_dir.iterdir()):
                    if child.is_dir():
                        kill_cgroup_dirs([child])
                        _rmdir(child)

    def remove_bases(self) -> None:
        """Remove our owner directories (once empty) and the shared ``dcent-jobs`` if unused."""
        for base in (self._bases or {}).values():
            if _rmdir(base.own_dir):
                _rmdir(base.own_dir.parent)

    def _trial(self) -> None:
        bases = self._bases or {}
        trial_limits = ResourceLimits(memory_bytes=64 * 2**20, cpu_millicores=1000, processes=64)
        for controller in sorted(bases):
            directory = bases[controller].own_dir / f"probe-{secrets.token_hex(4)}"
            cgroup = JobCgroup({controller: Hierarchy(bases[controller].version, directory)})
            try:
                _mkdir(directory, exist_ok=False)
                cgroup.apply(trial_limits)
            except OSError as exc:
                self.unusable[controller] = f"cannot set limits in {directory.parent}: {_describe(exc)}"
                del bases[controller]
            finally:
                cgroup.remove()


def _write_if_missing_controllers(directory: Path, controllers: Iterable[str]) -> None:
    wanted = set(controllers)
    if not wanted <= _read_words(directory / "cgroup.subtree_control"):
        _write(directory / "cgroup.subtree_control", " ".join(f"+{c}" for c in sorted(wanted)))


def _join(mount: Path, cgroup_path: str) -> Path:
    return mount / cgroup_path.lstrip("/")


def unescape_octal(text: str) -> str:
    """Decode mountinfo's octal escapes (``\\040`` is a space)."""
    out = []
    index = 0
    while index < len(text):
        if text[index] == "\\" and index + 3 < len(text) and text[index + 1 : index + 4].isdigit():
            out.append(chr(int(text[index + 1 : index + 4], 8)))
            index += 4
        else:
            out.append(text[index])
            index += 1
    return "".join(out)


def _read_words(path: Path) -> set[str]:
    try:
        return set(path.read_text().split())
    except OSError:
        return set()


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _keyed(path: Path) -> dict[str, int]:
    """``key value`` lines (memory.events, pids.events, memory.oom_control) as a dict."""
    values: dict[str, int] = {}
    try:
        text = path.read_text()
    except OSError:
        return values
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            values[parts[0]] = int(parts[1])
    return values


def _mkdir(path: Path, *, exist_ok: bool = True) -> None:
    try:
        path.mkdir(exist_ok=exist_ok)
    except OSError as exc:
        raise CgroupError(exc.errno or errno.EIO, f"mkdir {path}: {exc.strerror}") from exc


def _write(path: Path, value: str) -> None:
    try:
        with open(path, "w") as handle:
            handle.write(value)
    except OSError as exc:
        raise CgroupError(exc.errno or errno.EIO, f"write {value!r} to {path}: {exc.strerror}") from exc


def _write_if_present(path: Path, value: str) -> None:
    if path.exists():
        _write(path, value)


def _rmdir(path: Path) -> bool:
    try:
        path.rmdir()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True


def _tree(path: Path) -> list[Path]:
    """``path`` and every cgroup directory below it."""
    found = [path]
    with contextlib.suppress(OSError):
        for child in sorted(path.iterdir(), key=str):
            if child.is_dir():
                found.extend(_tree(child))
    return found


def _rmdir_tree(path: Path) -> bool:
    """rmdir every cgroup below ``path``, deepest first, then ``path`` itself."""
    with contextlib.suppress(OSError):
        children = sorted((child for child in path.iterdir() if child.is_dir()), key=str)
        for child in children:
            kill_cgroup_dirs([child])
            _rmdir_tree(child)
    return _rmdir(path)


def _describe(exc: OSError) -> str:
    return exc.strerror or str(exc)
