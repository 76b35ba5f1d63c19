"""GPU discovery: NVML probes, simulated GPUs, and the allocator that pins jobs to units.

``gpu.nvml.probe()`` reads every GPU through ``pynvml`` (the ``nvidia-ml-py`` distribution) in a worker
thread: UUID, name, memory, utilization, temperature, power, compute capability, driver and CUDA
versions, PCI bus id, MIG mode. A GPU in MIG mode is not schedulable as a whole; each of its MIG
devices is a unit of its own, with its own UUID and memory. Per-device NVML failures mark only that
device unhealthy, with the first failure as the reason ("GPU is lost"); "not supported" readings
leave a sentinel (-1 / "") and the device healthy. No library or no driver: an empty report and one
INFO line, ``no GPUs: <reason>``, per process. ``GpuDevice`` is a canonical ``Record``, so the same
object is carried inside signed capacity announcements. Declared GPUs for testnets
(``"2xH100-80GB"``) get UUIDs ``GPU-SIM-...``; ``simulated`` is true exactly for those, which the record
enforces, so a simulated GPU is visibly simulated wherever it travels (both records: ``protocol/hardware.py``). ``GpuAllocator`` hands units to
jobs by UUID, deterministically, never one unit to two jobs.
"""
