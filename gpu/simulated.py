"""GPUs declared in a testnet's config instead of probed: ``"2xH100-80GB,1xRTX4090-24GB"``.

A spec is comma-separated items ``<count>x<MODEL>-<MEMORY>GB``; the model must be one of
:data:`KNOWN_MODELS` (a typo is an error, not an unknown GPU), which also gives it a plausible
compute capability. Each declared GPU gets a deterministic UUID derived from the node's label and
its index (``GPU-SIM-...``, a prefix no real GPU uses), ``simulated=True``, full free memory and
unknown sensors: nothing is measured, so nothing is made up.

A node with declared GPUs does not probe NVML: several testnet nodes share one host, and they
must not all sell its real GPUs.
"""

from __future__ import annotations

import hashlib
import re

from gpu.errors import InvalidGpuSpec
from protocol.hardware import MAX_DEVICES, SIMULATED_UUID_PREFIX, GpuDevice, ProbeReport

#: Upper-case model token -> (product name, compute capability).
KNOWN_MODELS: dict[str, tuple[str, tuple[int, int]]] = {
    "B200": ("NVIDIA B200", (10, 0)),
    "GH200": ("NVIDIA GH200", (9, 0)),
    "H200": ("NVIDIA H200", (9, 0)),
    "H100": ("NVIDIA H100", (9, 0)),
    "L40S": ("NVIDIA L40S", (8, 9)),
    "L40": ("NVIDIA L40", (8, 9)),
    "L4": ("NVIDIA L4", (8, 9)),
    "RTX6000ADA": ("NVIDIA RTX 6000 Ada Generation", (8, 9)),
    "RTX4090": ("NVIDIA GeForce RTX 4090", (8, 9)),
    "RTX3090": ("NVIDIA GeForce RTX 3090", (8, 6)),
    "A100": ("NVIDIA A100", (8, 0)),
    "A40": ("NVIDIA A40", (8, 6)),
    "A30": ("NVIDIA A30", (8, 0)),
    "A10": ("NVIDIA A10", (8, 6)),
    "T4": ("NVIDIA T4", (7, 5)),
    "V100": ("NVIDIA V100", (7, 0)),
}

#: What a simulated GPU reports as its driver: clearly not a real driver version.
SIMULATED_DRIVER_VERSION = "simulated"
#: CUDA 12.4, so job specs that ask for a CUDA version can match simulated GPUs.
SIMULATED_CUDA_VERSION = 12040
MAX_MEMORY_GB = 4096
#: A declared host this large is a typo; the cap also bounds the report's size.
MAX_DECLARED_GPUS = min(256, MAX_DEVICES)

_ITEM = re.compile(r"(?P<count>\d+)x(?P<model>[A-Za-z0-9]+)-(?P<memory>\d+)GB", re.IGNORECASE)


def simulated_uuid(label: str, index: int) -> str:
    """``GPU-SIM-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx``, the same for the same (label, index)."""
    digest = hashlib.sha256(f"dcent/simulated-gpu/v1\x00{label}\x00{index}".encode()).hexdigest()
    return (
        f"{SIMULATED_UUID_PREFIX}{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"
    )


def parse_gpu_spec(
    spec: str,
    label: str,
    *,
    driver_version: str = SIMULATED_DRIVER_VERSION,
    cuda_version: int = SIMULATED_CUDA_VERSION,
) -> tuple[GpuDevice, ...]:
    """The simulated GPUs ``spec`` declares for the node ``label``, indexed from 0 in spec order.

    An empty (or all-blank) spec declares none. Raises :class:`InvalidGpuSpec` naming the bad
    item: bad syntax, an unknown model, a zero count or memory, or too many GPUs in all.
    """
    if not label:
        raise InvalidGpuSpec("simulated GPUs need a non-empty node label to derive their UUIDs")
    if not spec.strip():
        return ()
    declared: list[tuple[str, tuple[int, int], int]] = []
    for position, raw_item in enumerate(spec.split(","), start=1):
        item = raw_item.strip()
        match = _ITEM.fullmatch(item)
        if match is None:
            raise InvalidGpuSpec(
                f"GPU spec item {position} {item!r} is not <count>x<MODEL>-<MEMORY>GB, e.g. 2xH100-80GB"
            )
        count, memory_gb = int(match["count"]), int(match["memory"])
        model = match["model"].upper()
        if model not in KNOWN_MODELS:
            raise InvalidGpuSpec(
                f"GPU spec item {position} {item!r}: unknown model {match['model']!r} "
                f"(known: {', '.join(sorted(KNOWN_MODELS))})"
            )
        if count < 1:
            raise InvalidGpuSpec(f"GPU spec item {position} {item!r}: count must be at least 1")
        if not 1 <= memory_gb <= MAX_MEMORY_GB:
            raise InvalidGpuSpec(f"GPU spec item {position} {item!r}: memory must be 1-{MAX_MEMORY_GB} GB")
        if len(declared) + count > MAX_DECLARED_GPUS:
            raise InvalidGpuSpec(
                f"GPU spec item {position} {item!r}: more than {MAX_DECLARED_GPUS} GPUs declared"
            )
        product, capability = KNOWN_MODELS[model]
        declared.extend([(f"{product} {memory_gb}GB", capability, memory_gb)] * count)
    return tuple(
        _simulated_device(label, index, name, capability, memory_gb, driver_version, cuda_version)
        for index, (name, capability, memory_gb) in enumerate(declared)
    )


def simulated_report(spec: str, label: str) -> ProbeReport:
    """A ProbeReport of the GPUs declared by ``spec``, in place of probing NVML.

    Raises :class:`InvalidGpuSpec` as :func:`parse_gpu_spec`.
    """
    devices = parse_gpu_spec(spec, label)
    if devices:
        declared = ",".join(item.strip() for item in spec.split(","))
        message = f"simulated GPUs declared in config ({declared}); no GPU hardware is used"
    else:
        message = "the GPU spec declares no simulated GPUs"
    return ProbeReport(
        devices=devices,
        driver_version=SIMULATED_DRIVER_VERSION if devices else "",
        cuda_version=SIMULATED_CUDA_VERSION if devices else 0,
        nvml_available=False,
        message=message,
    )


def _simulated_device(
    label: str,
    index: int,
    name: str,
    capability: tuple[int, int],
    memory_gb: int,
    driver_version: str,
    cuda_version: int,
) -> GpuDevice:
    memory = memory_gb * 2**30
    return GpuDevice(
        uuid=simulated_uuid(label, index),
        name=name,
        index=index,
        mig_index=-1,
        memory_total_bytes=memory,
        memory_free_bytes=memory,
        utilization_pct=-1,
        temperature_c=-1,
        power_mw=-1,
        compute_capability_major=capability[0],
        compute_capability_minor=capability[1],
        mig_enabled=False,
        parent_uuid="",
        driver_version=driver_version,
        cuda_version=cuda_version,
        pci_bus_id="",
        healthy=True,
        health_reason="",
        simulated=True,
    )
