"""GpuAllocator: units by UUID, never one unit to two jobs, typed errors that change nothing."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from gpu.allocator import GpuAllocator
from gpu.errors import (
    GpuError,
    InvalidAllocationRequest,
    InvalidGpuUnits,
    JobAlreadyAllocated,
    NotEnoughGpus,
    UnknownAllocation,
)
from gpu.simulated import parse_gpu_spec
from protocol.hardware import GpuDevice


def whole_gpu(index: int, memory_gb: int = 80, healthy: bool = True) -> GpuDevice:
    return GpuDevice(
        uuid=f"GPU-{index:08x}-0000-4000-8000-{index:012x}",
        name="NVIDIA H100 80GB HBM3",
        index=index,
        mig_index=-1,
        memory_total_bytes=memory_gb * 2**30,
        memory_free_bytes=memory_gb * 2**30,
        utilization_pct=0,
        temperature_c=30,
        power_mw=60_000,
        compute_capability_major=9,
        compute_capability_minor=0,
        mig_enabled=False,
        parent_uuid="",
        driver_version="550.54.15",
        cuda_version=12040,
        pci_bus_id="",
        healthy=healthy,
        health_reason="" if healthy else "nvmlDeviceGetTemperature: GPU is lost",
        simulated=False,
    )


def mig_parent(index: int) -> GpuDevice:
    return dataclasses.replace(whole_gpu(index), mig_enabled=True)


def mig_device(parent: GpuDevice, slot: int, memory_gb: int) -> GpuDevice:
    return dataclasses.replace(
        parent,
        uuid=f"MIG-{parent.index:08x}-{slot:04x}-5000-8000-000000000000",
        mig_index=slot,
        parent_uuid=parent.uuid,
        memory_total_bytes=memory_gb * 2**30,
        memory_free_bytes=memory_gb * 2**30,
    )


def test_error_codes_are_stable() -> None:
    assert [cls.code for cls in (InvalidGpuUnits, InvalidAllocationRequest, NotEnoughGpus)] == [
        5120,
        5121,
        5122,
    ]
    assert [cls.code for cls in (UnknownAllocation, JobAlreadyAllocated)] == [5123, 5124]


def test_allocates_in_index_order_and_releases() -> None:
    gpus = [whole_gpu(i) for i in (2, 0, 1)]
    allocator = GpuAllocator(gpus)
    assert allocator.allocate("job-a", 2) == (whole_gpu(0).uuid, whole_gpu(1).uuid)
    assert allocator.free() == (whole_gpu(2).uuid,)
    assert allocator.owner(whole_gpu(0).uuid) == "job-a"
    assert allocator.allocations() == {"job-a": (whole_gpu(0).uuid, whole_gpu(1).uuid)}
    assert allocator.release("job-a") == (whole_gpu(0).uuid, whole_gpu(1).uuid)
    assert allocator.free() == tuple(whole_gpu(i).uuid for i in range(3))
    assert allocator.allocations() == {}
    assert allocator.owner(whole_gpu(0).uuid) is None


def test_a_unit_is_never_given_to_a_second_job() -> None:
    allocator = GpuAllocator([whole_gpu(0), whole_gpu(1)])
    first = allocator.allocate("job-a", 1)
    second = allocator.allocate("job-b", 1)
    assert not set(first) & set(second)
    with pytest.raises(NotEnoughGpus):
        allocator.allocate("job-c", 1)


def test_predicate_filters_units() -> None:
    allocator = GpuAllocator([whole_gpu(0, memory_gb=24), whole_gpu(1, memory_gb=80)])
    big = allocator.allocate("job-a", 1, lambda unit: unit.memory_total_bytes >= 40 * 2**30)
    assert big == (whole_gpu(1).uuid,)
    with pytest.raises(NotEnoughGpus, match="0 free units match"):
        allocator.allocate("job-b", 1, lambda unit: unit.memory_total_bytes >= 40 * 2**30)


def test_mig_devices_are_units_and_their_parent_is_refused() -> None:
    parent = mig_parent(1)
    migs = [mig_device(parent, 0, 20), mig_device(parent, 2, 10)]
    allocator = GpuAllocator([whole_gpu(0), *migs])
    assert allocator.allocate("job-a", 3) == (whole_gpu(0).uuid, migs[0].uuid, migs[1].uuid)
    with pytest.raises(InvalidGpuUnits, match="MIG mode"):
        GpuAllocator([parent])


def test_unhealthy_units_are_not_handed_out() -> None:
    allocator = GpuAllocator([whole_gpu(0, healthy=False), whole_gpu(1)])
    assert allocator.free() == (whole_gpu(1).uuid,)
    with pytest.raises(NotEnoughGpus):
        allocator.allocate("job-a", 2)
    assert allocator.allocations() == {}


@pytest.mark.parametrize(
    ("job_id", "count", "error"),
    [
        ("", 1, InvalidAllocationRequest),
        ("job-a", 0, InvalidAllocationRequest),
        ("job-a", -3, InvalidAllocationRequest),
    ],
)
def test_bad_request_is_a_typed_error(job_id: str, count: int, error: type[GpuError]) -> None:
    allocator = GpuAllocator([whole_gpu(0)])
    with pytest.raises(error):
        allocator.allocate(job_id, count)
    assert allocator.free() == (whole_gpu(0).uuid,)


def test_double_allocation_for_one_job_is_refused_and_changes_nothing() -> None:
    allocator = GpuAllocator([whole_gpu(0), whole_gpu(1)])
    held = allocator.allocate("job-a", 1)
    with pytest.raises(JobAlreadyAllocated, match="job-a"):
        allocator.allocate("job-a", 1)
    assert allocator.allocations() == {"job-a": held}
    assert allocator.free() == (whole_gpu(1).uuid,)


def test_release_of_unknown_job_is_a_typed_error() -> None:
    allocator = GpuAllocator([whole_gpu(0)])
    with pytest.raises(UnknownAllocation, match="job-x"):
        allocator.release("job-x")
    allocator.allocate("job-a", 1)
    allocator.release("job-a")
    with pytest.raises(UnknownAllocation):
        allocator.release("job-a")


@pytest.mark.parametrize(
    ("units", "fragment"),
    [
        ([whole_gpu(0), whole_gpu(0)], "twice"),
        ([dataclasses.replace(whole_gpu(0), uuid="", healthy=False, health_reason="lost")], "without a UUID"),
    ],
)
def test_invalid_unit_sets_are_refused(units: list[GpuDevice], fragment: str) -> None:
    with pytest.raises(InvalidGpuUnits, match=fragment):
        GpuAllocator(units)


def test_refused_update_keeps_the_previous_units() -> None:
    allocator = GpuAllocator([whole_gpu(0)])
    with pytest.raises(InvalidGpuUnits):
        allocator.update_units([whole_gpu(1), whole_gpu(1)])
    assert allocator.free() == (whole_gpu(0).uuid,)


def test_unit_that_vanishes_stays_held_until_its_job_is_released() -> None:
    allocator = GpuAllocator([whole_gpu(0), whole_gpu(1)])
    held = allocator.allocate("job-a", 1)
    allocator.update_units([whole_gpu(1)])  # GPU 0 fell off the bus
    assert allocator.allocations() == {"job-a": held}
    assert allocator.free() == (whole_gpu(1).uuid,)
    allocator.update_units([whole_gpu(0), whole_gpu(1)])  # and came back while job-a still runs
    assert allocator.free() == (whole_gpu(1).uuid,)
    allocator.release("job-a")
    assert allocator.free() == (whole_gpu(0).uuid, whole_gpu(1).uuid)


def test_simulated_units_allocate_like_real_ones() -> None:
    units = parse_gpu_spec("2xH100-80GB", "node-1")
    allocator = GpuAllocator(units)
    assert allocator.allocate("job-a", 2) == tuple(u.uuid for u in units)


def test_predicate_that_raises_changes_nothing() -> None:
    allocator = GpuAllocator([whole_gpu(0)])

    def broken(unit: GpuDevice) -> bool:
        raise ValueError("bad predicate")

    with pytest.raises(ValueError, match="bad predicate"):
        allocator.allocate("job-a", 1, broken)
    assert allocator.allocations() == {}


# --- property: random allocate / release / re-probe sequences ---------------------------------
ALL_UNITS = [whole_gpu(i, memory_gb=24 if i % 2 else 80) for i in range(5)]
JOBS = ["job-a", "job-b", "job-c", "job-d", "job-e", "job-f"]
PREDICATES = {
    "any": None,
    "big": lambda unit: unit.memory_total_bytes >= 40 * 2**30,
    "small": lambda unit: unit.memory_total_bytes < 40 * 2**30,
}


class AllocatorMachine(RuleBasedStateMachine):
    """Against a plain model: jobs hold disjoint sets, and a refused call changes nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.allocator = GpuAllocator(ALL_UNITS)
        self.present = {u.uuid: u for u in ALL_UNITS}
        self.held: dict[str, tuple[str, ...]] = {}

    def snapshot(self) -> tuple[dict[str, tuple[str, ...]], tuple[str, ...]]:
        return self.allocator.allocations(), self.allocator.free()

    @rule(
        job=st.sampled_from(JOBS),
        count=st.integers(min_value=-1, max_value=4),
        kind=st.sampled_from(sorted(PREDICATES)),
    )
    def allocate(self, job: str, count: int, kind: str) -> None:
        predicate = PREDICATES[kind]
        owned = {uuid for uuids in self.held.values() for uuid in uuids}
        matching = [
            u.uuid
            for u in sorted(self.present.values(), key=lambda u: u.index)
            if u.healthy and u.uuid not in owned and (predicate is None or predicate(u))
        ]
        before = self.snapshot()
        if count < 1:
            with pytest.raises(InvalidAllocationRequest):
                self.allocator.allocate(job, count, predicate)
        elif job in self.held:
            with pytest.raises(JobAlreadyAllocated):
                self.allocator.allocate(job, count, predicate)
        elif len(matching) < count:
            with pytest.raises(NotEnoughGpus):
                self.allocator.allocate(job, count, predicate)
        else:
            chosen = self.allocator.allocate(job, count, predicate)
            assert chosen == tuple(matching[:count])
            self.held[job] = chosen
            return
        assert self.snapshot() == before

    @rule(job=st.sampled_from(JOBS))
    def release(self, job: str) -> None:
        if job in self.held:
            assert self.allocator.release(job) == self.held.pop(job)
        else:
            before = self.snapshot()
            with pytest.raises(UnknownAllocation):
                self.allocator.release(job)
            assert self.snapshot() == before

    @rule(
        present=st.lists(st.sampled_from(range(len(ALL_UNITS))), unique=True), lost=st.sets(st.integers(0, 4))
    )
    def reprobe(self, present: list[int], lost: set[int]) -> None:
        units = [
            ALL_UNITS[i] if i not in lost else whole_gpu(i, ALL_UNITS[i].memory_total_bytes // 2**30, False)
            for i in present
        ]
        self.allocator.update_units(units)
        self.present = {u.uuid: u for u in units}

    @invariant()
    def no_unit_is_held_by_two_jobs(self) -> None:
        allocations = self.allocator.allocations()
        assert allocations == dict(sorted(self.held.items()))
        held = [uuid for uuids in allocations.values() for uuid in uuids]
        assert len(held) == len(set(held))
        for job, uuids in allocations.items():
            assert all(self.allocator.owner(uuid) == job for uuid in uuids)

    @invariant()
    def free_units_are_present_healthy_and_unheld(self) -> None:
        held = {uuid for uuids in self.held.values() for uuid in uuids}
        expected = sorted(
            (u for u in self.present.values() if u.healthy and u.uuid not in held), key=lambda u: u.index
        )
        assert self.allocator.free() == tuple(u.uuid for u in expected)


# Examples, deadline and health checks come from the profile in tests/unit/conftest.py.
AllocatorMachine.TestCase.settings = settings(stateful_step_count=30)
TestAllocatorProperties = AllocatorMachine.TestCase
