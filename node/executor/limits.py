"""The resource limits a job runs under, and which of them an executor can enforce here.

A job's :class:`ResourceLimits` come from its spec (``[limits]`` in the job file:
:class:`protocol.market.jobspec.Limits`). Each is enforced by the kernel, never by watching and
hoping:

* ``memory_bytes``: the cgroup memory limit (v2 ``memory.max`` with ``memory.swap.max = 0``; v1
  ``memory.limit_in_bytes`` and ``memory.memsw.limit_in_bytes`` where swap is accounted). The
  kernel's OOM killer acts inside the job's cgroup only.
* ``cpu_millicores``: the CFS quota (``cpu.max`` / ``cpu.cfs_quota_us``): 1000 is one core's worth
  of CPU time per period. Reaching it throttles the job; it is not a failure.
* ``processes``: the cgroup pids limit (processes and threads together): ``fork`` fails past it,
  so a fork bomb cannot take the machine.
* ``disk_bytes``: the job's whole workspace (work directory, ``/tmp``, ``/dev/shm``, outputs)
  is a filesystem of exactly that size (:mod:`node.executor.volume`), and ``RLIMIT_FSIZE`` stops
  any single file at it (the write past it gets ``SIGXFSZ``).

A provider that cannot enforce a limit must not pretend to: :class:`Capabilities` says which
kinds the executor enforces on this host and why not the others; the executor refuses a job that
asks for a limit it cannot enforce (:class:`~node.executor.errors.LimitNotEnforceable`), and the
node advertises only what ``Capabilities`` allows.

``None`` in a field means "not limited": for development and tests only; every job from the
market carries all four (the job spec has defaults).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from node.executor.errors import InvalidLimits
from protocol.market.jobspec import Limits

MIN_MEMORY_BYTES = 16 * 2**20
MIN_CPU_MILLICORES = 10
MIN_PROCESSES = 8
MIN_DISK_BYTES = 16 * 2**20
MAX_QUANTITY = 2**62


class LimitKind(enum.StrEnum):
    MEMORY = "memory"
    CPU = "cpu"
    PROCESSES = "processes"
    DISK = "disk"


@dataclass(frozen=True, slots=True)
class ResourceLimits:
    """What one job may use; ``None`` is "no limit" (see the module docstring).

    Raises :class:`InvalidLimits` for a value that is not an int or is out of range.
    """

    memory_bytes: int | None = None
    cpu_millicores: int | None = None
    processes: int | None = None
    disk_bytes: int | None = None

    def __post_init__(self) -> None:
        for name, low in (
            ("memory_bytes", MIN_MEMORY_BYTES),
            ("cpu_millicores", MIN_CPU_MILLICORES),
            ("processes", MIN_PROCESSES),
            ("disk_bytes", MIN_DISK_BYTES),
        ):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= MAX_QUANTITY:
                raise InvalidLimits(
                    f"limits.{name} must be an int between {low} and {MAX_QUANTITY}, got {value!r}"
                )

    @classmethod
    def from_spec(cls, limits: Limits) -> ResourceLimits:
        """The limits of a job spec (every kind set)."""
        return cls(
            memory_bytes=limits.memory_bytes,
            cpu_millicores=limits.cpu_millicores,
            processes=limits.processes,
            disk_bytes=limits.disk_bytes,
        )

    def requested(self) -> frozenset[LimitKind]:
        """The kinds this job asks to be limited."""
        values = {
            LimitKind.MEMORY: self.memory_bytes,
            LimitKind.CPU: self.cpu_millicores,
            LimitKind.PROCESSES: self.processes,
            LimitKind.DISK: self.disk_bytes,
        }
        return frozenset(kind for kind, value in values.items() if value is not None)

    @property
    def any_cgroup_limit(self) -> bool:
        return bool(self.requested() - {LimitKind.DISK})


NO_LIMITS = ResourceLimits()


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What an executor can do on this host, for the node's offer and its self-test.

    ``limits``: the kinds it enforces. ``missing``: for every other kind, why not (the operator's
    fix included). ``sandboxed``: whether jobs are isolated from the host (false only for the
    development subprocess executor). ``details``: facts for ``node_status`` and logs
    (``cgroup``: ``v1``/``v2``/``none``; ``disk``: the workspace backend).
    """

    executor: str
    sandboxed: bool
    limits: frozenset[LimitKind]
    missing: Mapping[LimitKind, str] = field(default_factory=dict)
    details: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "missing", MappingProxyType(dict(self.missing)))
        object.__setattr__(self, "details", MappingProxyType(dict(self.details)))

    def unenforceable(self, limits: ResourceLimits) -> tuple[LimitKind, ...]:
        """The kinds ``limits`` asks for that this executor cannot enforce, in a stable order."""
        return tuple(sorted(limits.requested() - self.limits))

    def explain(self, kinds: tuple[LimitKind, ...]) -> str:
        return "; ".join(f"{kind}: {self.missing.get(kind, 'not supported')}" for kind in kinds)
