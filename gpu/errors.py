"""GPU errors: one class per failure, each with a stable numeric code (5100-5199).

``GpuError`` derives from :class:`protocol.errors.ProtocolError` because a :class:`GpuDevice`
travels inside signed capacity announcements: a peer's malformed device description must fail
decoding with the same kind of typed error as any other bad protocol input. Every GPU error
means the input was refused and nothing was changed.

    5100-5109  device and probe-report records
    5110-5119  declared (simulated) GPU specs
    5120-5139  the allocator
"""

from __future__ import annotations

from protocol.hardware import GpuError, InvalidGpuDevice, InvalidProbeReport

__all__ = [
    "GpuError",
    "InvalidAllocationRequest",
    "InvalidGpuDevice",
    "InvalidGpuSpec",
    "InvalidGpuUnits",
    "InvalidProbeReport",
    "JobAlreadyAllocated",
    "NotEnoughGpus",
    "UnknownAllocation",
]


# GpuError and the record errors (5100-5102) are defined with the records, in protocol.hardware.


# --- declared GPUs ---------------------------------------------------------------------------
class InvalidGpuSpec(GpuError):
    """A declared-GPU spec such as ``"2xH100-80GB"`` that does not parse; names the bad part."""

    code = 5110


# --- allocator -------------------------------------------------------------------------------
class InvalidGpuUnits(GpuError):
    """The allocator was handed a unit it cannot schedule: a MIG parent, a repeated or empty UUID."""

    code = 5120


class InvalidAllocationRequest(GpuError):
    """An allocation request with an empty job id or a count below one."""

    code = 5121


class NotEnoughGpus(GpuError):
    """Fewer free, healthy units match the request than it asks for."""

    code = 5122


class UnknownAllocation(GpuError):
    """A release for a job that holds no GPUs."""

    code = 5123


class JobAlreadyAllocated(GpuError):
    """An allocation for a job that already holds GPUs: release first."""

    code = 5124
