"""A fake NVML for tests of the layers above it (the probe, the node's GPU service, the CLI).

Nothing in the node imports this module. :class:`FakeNvml` has pynvml's function names and
raises pynvml's own ``NVMLError`` classes (the bindings import fine without a driver), so the
probe meets exactly the exceptions the real library throws. Make a host from :class:`FakeGpu`
and :class:`FakeMigDevice` descriptions, then pass it to ``probe(nvml=...)`` or install it as
``sys.modules["pynvml"]``.

Failures are NVML error codes (``pynvml.NVML_ERROR_GPU_IS_LOST``, ...) keyed by the function
name that raises them, per device: ``FakeGpu(failures={"nvmlDeviceGetTemperature": 15})``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import pynvml

GIB = 2**30


@dataclass
class FakeMigDevice:
    uuid: str
    name: str = "NVIDIA A100-SXM4-40GB MIG 3g.20gb"
    memory_total: int = 20 * GIB
    memory_free: int = 20 * GIB
    #: function name -> NVML error code that call raises for this MIG device.
    failures: dict[str, int] = field(default_factory=dict)
    #: Filled in by FakeNvml: the MIG device's parent.
    parent: FakeGpu | None = None


@dataclass
class FakeGpu:
    uuid: str
    name: str = "NVIDIA H100 80GB HBM3"
    memory_total: int = 80 * GIB
    memory_free: int = 79 * GIB
    utilization: int = 3
    temperature: int = 34
    power_mw: int = 71_250
    compute_capability: tuple[int, int] = (9, 0)
    pci_bus_id: str = "00000000:17:00.0"
    #: Current MIG mode (pynvml.NVML_DEVICE_MIG_ENABLE or _DISABLE); None: MIG not supported.
    mig_mode: int | None = 0
    mig_slots: int = 7
    #: slot -> MIG device; other slots up to ``mig_slots`` are empty ("not found").
    mig_devices: dict[int, FakeMigDevice] = field(default_factory=dict)
    #: function name -> NVML error code that call raises for this GPU.
    failures: dict[str, int] = field(default_factory=dict)
    #: Error code nvmlDeviceGetHandleByIndex raises for this GPU, if any.
    handle_failure: int | None = None
    #: Fell off the bus: every call on it raises NVML_ERROR_GPU_IS_LOST.
    lost: bool = False


class FakeNvml:
    """A host's NVML: the pynvml functions the probe calls, over FakeGpu descriptions."""

    NVMLError = pynvml.NVMLError
    NVML_TEMPERATURE_GPU = pynvml.NVML_TEMPERATURE_GPU
    NVML_DEVICE_MIG_ENABLE = pynvml.NVML_DEVICE_MIG_ENABLE
    NVML_DEVICE_MIG_DISABLE = pynvml.NVML_DEVICE_MIG_DISABLE

    def __init__(
        self,
        gpus: list[FakeGpu] | tuple[FakeGpu, ...] = (),
        *,
        driver_version: str = "550.54.15",
        cuda_version: int = 12040,
        init_error: int | None = None,
        count_error: int | None = None,
    ) -> None:
        self.gpus = list(gpus)
        for gpu in self.gpus:
            for mig in gpu.mig_devices.values():
                mig.parent = gpu
        self.driver_version = driver_version
        self.cuda_version = cuda_version
        self.init_error = init_error
        self.count_error = count_error
        self.init_calls = 0
        self.shutdown_calls = 0
        self._initialised = 0

    # --- library lifecycle -------------------------------------------------------------------
    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise pynvml.NVMLError(self.init_error)
        self.init_calls += 1
        self._initialised += 1

    def nvmlShutdown(self) -> None:
        self._require_init()
        self.shutdown_calls += 1
        self._initialised -= 1

    def _require_init(self) -> None:
        if self._initialised <= 0:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_UNINITIALIZED)

    # --- system ------------------------------------------------------------------------------
    def nvmlSystemGetDriverVersion(self) -> str:
        self._require_init()
        return self.driver_version

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        self._require_init()
        return self.cuda_version

    def nvmlDeviceGetCount(self) -> int:
        self._require_init()
        if self.count_error is not None:
            raise pynvml.NVMLError(self.count_error)
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:
        self._require_init()
        if not 0 <= index < len(self.gpus):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        gpu = self.gpus[index]
        if gpu.handle_failure is not None:
            raise pynvml.NVMLError(gpu.handle_failure)
        return gpu

    # --- per device --------------------------------------------------------------------------
    def _enter(self, handle: FakeGpu | FakeMigDevice, name: str) -> None:
        """Raise what NVML would raise for ``name`` on ``handle``, before any answer."""
        self._require_init()
        parent = handle.parent if isinstance(handle, FakeMigDevice) else handle
        if parent is not None and parent.lost:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)
        code = handle.failures.get(name)
        if code is not None:
            raise pynvml.NVMLError(code)

    def _whole_gpu_only(self, handle: FakeGpu | FakeMigDevice) -> FakeGpu:
        if isinstance(handle, FakeMigDevice):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return handle

    def nvmlDeviceGetUUID(self, handle: FakeGpu | FakeMigDevice) -> str:
        self._enter(handle, "nvmlDeviceGetUUID")
        return handle.uuid

    def nvmlDeviceGetName(self, handle: FakeGpu | FakeMigDevice) -> str:
        self._enter(handle, "nvmlDeviceGetName")
        return handle.name

    def nvmlDeviceGetMemoryInfo(self, handle: FakeGpu | FakeMigDevice) -> SimpleNamespace:
        self._enter(handle, "nvmlDeviceGetMemoryInfo")
        used = handle.memory_total - handle.memory_free
        return SimpleNamespace(total=handle.memory_total, free=handle.memory_free, used=used)

    def nvmlDeviceGetUtilizationRates(self, handle: FakeGpu | FakeMigDevice) -> SimpleNamespace:
        self._enter(handle, "nvmlDeviceGetUtilizationRates")
        return SimpleNamespace(gpu=self._whole_gpu_only(handle).utilization, memory=0)

    def nvmlDeviceGetTemperature(self, handle: FakeGpu | FakeMigDevice, sensor: int) -> int:
        self._enter(handle, "nvmlDeviceGetTemperature")
        if sensor != pynvml.NVML_TEMPERATURE_GPU:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return self._whole_gpu_only(handle).temperature

    def nvmlDeviceGetPowerUsage(self, handle: FakeGpu | FakeMigDevice) -> int:
        self._enter(handle, "nvmlDeviceGetPowerUsage")
        return self._whole_gpu_only(handle).power_mw

    def nvmlDeviceGetCudaComputeCapability(self, handle: FakeGpu | FakeMigDevice) -> tuple[int, int]:
        self._enter(handle, "nvmlDeviceGetCudaComputeCapability")
        gpu = handle.parent if isinstance(handle, FakeMigDevice) else handle
        assert gpu is not None  # FakeNvml links every MIG device to its parent
        return gpu.compute_capability

    def nvmlDeviceGetPciInfo(self, handle: FakeGpu | FakeMigDevice) -> SimpleNamespace:
        self._enter(handle, "nvmlDeviceGetPciInfo")
        return SimpleNamespace(busId=self._whole_gpu_only(handle).pci_bus_id)

    def nvmlDeviceGetMigMode(self, handle: FakeGpu | FakeMigDevice) -> list[int]:
        self._enter(handle, "nvmlDeviceGetMigMode")
        gpu = self._whole_gpu_only(handle)
        if gpu.mig_mode is None:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return [gpu.mig_mode, gpu.mig_mode]

    def nvmlDeviceGetMaxMigDeviceCount(self, handle: FakeGpu | FakeMigDevice) -> int:
        self._enter(handle, "nvmlDeviceGetMaxMigDeviceCount")
        gpu = self._whole_gpu_only(handle)
        if gpu.mig_mode is None:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return gpu.mig_slots

    def nvmlDeviceGetMigDeviceHandleByIndex(
        self, handle: FakeGpu | FakeMigDevice, index: int
    ) -> FakeMigDevice:
        self._enter(handle, "nvmlDeviceGetMigDeviceHandleByIndex")
        gpu = self._whole_gpu_only(handle)
        if gpu.mig_mode != pynvml.NVML_DEVICE_MIG_ENABLE:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        if index not in gpu.mig_devices:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_FOUND)
        return gpu.mig_devices[index]


# Every NVMLError_* class pynvml generates (NVMLError_GpuIsLost, NVMLError_NotSupported, ...).
for _name in dir(pynvml):
    if _name.startswith("NVMLError_"):
        setattr(FakeNvml, _name, getattr(pynvml, _name))
