"""Hands schedulable GPU units to jobs by UUID, never one unit to two jobs at once.

A unit is a whole GPU or a MIG device (see :attr:`GpuDevice.schedulable`); each counts as one GPU.
The allocator is pure and synchronous: the node wraps it (one owner, no awaits inside), feeds it
each fresh probe with :meth:`GpuAllocator.update_units`, and calls it when contracts start and end.

Choice order is deterministic: by physical GPU index, then MIG slot, then UUID, so the same state
and request always give the same UUIDs. Unhealthy units are never handed out; a unit that vanishes
from a later probe stays held by its job until that job is released.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from gpu.errors import (
    InvalidAllocationRequest,
    InvalidGpuUnits,
    JobAlreadyAllocated,
    NotEnoughGpus,
    UnknownAllocation,
)
from protocol.hardware import GpuDevice

UnitPredicate = Callable[[GpuDevice], bool]


def _choice_order(unit: GpuDevice) -> tuple[int, int, str]:
    return (unit.index, unit.mig_index, unit.uuid)


class GpuAllocator:
    """Which job holds which unit. Every method either succeeds or raises and changes nothing."""

    def __init__(self, units: Iterable[GpuDevice] = ()) -> None:
        self._units: dict[str, GpuDevice] = {}
        self._jobs: dict[str, tuple[str, ...]] = {}
        self._owner: dict[str, str] = {}
        self.update_units(units)

    def update_units(self, units: Iterable[GpuDevice]) -> None:
        """Replace the known units (after a probe). Allocations are kept, whatever the probe says.

        Raises :class:`InvalidGpuUnits` for a MIG parent, an empty or a repeated UUID.
        """
        ordered = sorted(units, key=_choice_order)
        by_uuid: dict[str, GpuDevice] = {}
        for unit in ordered:
            if not unit.uuid:
                raise InvalidGpuUnits("a unit without a UUID cannot be allocated")
            if not unit.schedulable:
                raise InvalidGpuUnits(f"{unit.uuid} is a GPU in MIG mode: allocate its MIG devices")
            if unit.uuid in by_uuid:
                raise InvalidGpuUnits(f"{unit.uuid} is listed twice")
            by_uuid[unit.uuid] = unit
        self._units = by_uuid

    def units(self) -> tuple[GpuDevice, ...]:
        """The known units, in choice order."""
        return tuple(self._units.values())

    def free(self) -> tuple[str, ...]:
        """UUIDs of the healthy units no job holds, in choice order."""
        return tuple(uuid for uuid, unit in self._units.items() if unit.healthy and uuid not in self._owner)

    def allocations(self) -> dict[str, tuple[str, ...]]:
        """A copy of job id -> the UUIDs it holds, by job id."""
        return {job_id: self._jobs[job_id] for job_id in sorted(self._jobs)}

    def owner(self, uuid: str) -> str | None:
        """The job holding ``uuid``, or None."""
        return self._owner.get(uuid)

    def allocate(self, job_id: str, count: int, predicate: UnitPredicate | None = None) -> tuple[str, ...]:
        """Give ``job_id`` the first ``count`` free, healthy units that satisfy ``predicate``.

        Raises :class:`InvalidAllocationRequest` (empty job id, count below 1),
        :class:`JobAlreadyAllocated` (the job holds units: release it first) or
        :class:`NotEnoughGpus` (fewer units match).
        """
        if not job_id:
            raise InvalidAllocationRequest("job id is empty")
        if count < 1:
            raise InvalidAllocationRequest(f"job {job_id} asks for {count} GPUs; at least 1 is needed")
        if job_id in self._jobs:
            raise JobAlreadyAllocated(f"job {job_id} already holds {', '.join(self._jobs[job_id])}")
        matching = [uuid for uuid in self.free() if predicate is None or predicate(self._units[uuid])]
        if len(matching) < count:
            raise NotEnoughGpus(
                f"job {job_id} asks for {count} GPUs; {len(matching)} free units match "
                f"({len(self.free())} free of {len(self._units)})"
            )
        chosen = tuple(matching[:count])
        self._jobs[job_id] = chosen
        for uuid in chosen:
            self._owner[uuid] = job_id
        return chosen

    def release(self, job_id: str) -> tuple[str, ...]:
        """Free every unit ``job_id`` holds and return their UUIDs. Raises :class:`UnknownAllocation`."""
        chosen = self._jobs.pop(job_id, None)
        if chosen is None:
            raise UnknownAllocation(f"job {job_id} holds no GPUs")
        for uuid in chosen:
            del self._owner[uuid]
        return chosen
