"""Probe the host's GPUs through NVML (nvidia-ml-py, imported as ``pynvml``).

:func:`probe` is synchronous and never raises for anything NVML does: no library, no driver, no
devices and broken devices all end in a :class:`ProbeReport`. The node calls
:func:`probe_async`, which runs the probe in a worker thread because NVML calls block (a GPU that
is falling off the bus can hold one for seconds).

Failure policy, per device:

- ``NVMLError_NotSupported`` (and the other "cannot tell" errors: no permission, a function the
  driver lacks) leaves that field at its sentinel; the device stays healthy.
- Any other NVML error (``GPU is lost``, ``GPU requires reset``, ``Unknown Error``, ...) marks the
  device unhealthy with the first such error as the reason; the other devices are still probed.

With no GPUs the node runs on and says so once per process, plainly: the ``dcent.gpu`` logger
logs ``no GPUs: <reason>`` at INFO the first time a probe finds none (a validator-only host is
normal; an operator who expected GPUs reads why).
"""

from __future__ import annotations

import functools
import importlib
import logging
import threading
from typing import Any

import trio

from protocol.hardware import (
    MAX_DEVICES,
    MAX_MESSAGE_LEN,
    MAX_NAME_LEN,
    MAX_PCI_BUS_ID_LEN,
    MAX_REASON_LEN,
    MAX_TEMPERATURE_C,
    MAX_UUID_LEN,
    MAX_VERSION_LEN,
    SIMULATED_UUID_PREFIX,
    GpuDevice,
    ProbeReport,
)

logger = logging.getLogger("dcent.gpu")

# pynvml's fallbacks, for an injected module that lacks the constants.
_NVML_TEMPERATURE_GPU = 0
_NVML_DEVICE_MIG_ENABLE = 1
#: Errors that say "NVML cannot tell you this", not "this GPU is broken".
_CANNOT_TELL_ERRORS = ("NVMLError_NotSupported", "NVMLError_NoPermission", "NVMLError_FunctionNotFound")
#: No GPU draws 10 kW; NVML's "value not available" (2**32 - 1) is far above.
_MAX_POWER_MW = 10_000_000
_MAX_MEMORY_BYTES = 2**63 - 1

# One probe at a time: nvmlInit/nvmlShutdown are process-wide, and an abandoned (cancelled) probe
# thread must finish its shutdown before the next probe initialises again.
_probe_lock = threading.Lock()


class NoGpuNotice:
    """Logs ``no GPUs: <reason>`` the first time it is told, and never again in this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._said = False

    def say(self, reason: str) -> bool:
        """Log the notice unless it was already logged. Returns whether it logged now."""
        with self._lock:
            if self._said:
                return False
            self._said = True
        logger.info("no GPUs: %s", reason)
        return True

    def reset(self) -> None:
        """Arm the notice again (tests; a node that wants to repeat it after GPUs came and went)."""
        with self._lock:
            self._said = False


#: The process-wide notice every probe uses.
no_gpu_notice = NoGpuNotice()


def probe(nvml: Any = None) -> ProbeReport:
    """Probe every GPU on this host. Never raises for NVML failures; blocks while NVML works.

    ``nvml`` is the pynvml module (imported when None); tests pass a fake with the same
    function names and ``NVMLError`` classes. ``nvmlShutdown`` always follows a successful
    ``nvmlInit``. A report with no devices says why in ``message``.
    """
    report = _probe(nvml)
    if not report.devices:
        no_gpu_notice.say(report.message)
    return report


def _probe(nvml: Any) -> ProbeReport:
    if nvml is None:
        try:
            nvml = importlib.import_module("pynvml")
        except ImportError as exc:
            return _no_gpus(f"the NVML bindings (nvidia-ml-py) are not installed: {exc}")
    with _probe_lock:
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as exc:
            return _no_gpus(_init_failure_reason(nvml, exc))
        try:
            return _probe_initialised(nvml)
        finally:
            try:
                nvml.nvmlShutdown()
            except nvml.NVMLError as exc:
                logger.debug("nvmlShutdown failed: %s", exc)


async def probe_async(nvml: Any = None) -> ProbeReport:
    """:func:`probe` in a worker thread. On cancellation the thread is abandoned, not waited for."""
    # The trio-stubs package (from trio_typing, pulled in by libp2p) shadows trio's own inline
    # types and still names this argument by its pre-0.23 name, "cancellable".
    return await trio.to_thread.run_sync(  # type: ignore[call-arg]
        functools.partial(probe, nvml), abandon_on_cancel=True
    )


def _no_gpus(
    reason: str, *, nvml_available: bool = False, driver_version: str = "", cuda_version: int = 0
) -> ProbeReport:
    return ProbeReport(
        devices=(),
        driver_version=driver_version,
        cuda_version=cuda_version,
        nvml_available=nvml_available,
        message=_clean_text(reason, MAX_MESSAGE_LEN),
    )


def _init_failure_reason(nvml: Any, exc: BaseException) -> str:
    if _is_error(nvml, exc, "NVMLError_LibraryNotFound"):
        return "the NVIDIA driver's NVML library (libnvidia-ml.so.1) was not found"
    if _is_error(nvml, exc, "NVMLError_DriverNotLoaded"):
        return "the NVIDIA driver is not loaded"
    return f"NVML failed to initialise: {exc}"


def _is_error(nvml: Any, exc: BaseException, class_name: str) -> bool:
    cls = getattr(nvml, class_name, None)
    return isinstance(cls, type) and isinstance(exc, cls)


def _probe_initialised(nvml: Any) -> ProbeReport:
    driver_version = _clean_text(_system_call(nvml, "nvmlSystemGetDriverVersion"), MAX_VERSION_LEN)
    cuda_version = _bounded_int(_system_call(nvml, "nvmlSystemGetCudaDriverVersion"), 10**7)
    cuda_version = max(cuda_version, 0)
    try:
        count = _bounded_int(nvml.nvmlDeviceGetCount(), MAX_DEVICES)
        reason = "NVML found no devices" if count == 0 else "NVML gave an impossible device count"
    except nvml.NVMLError as exc:
        count, reason = 0, f"NVML could not count the devices: {exc}"
    if count <= 0:
        return _no_gpus(reason, nvml_available=True, driver_version=driver_version, cuda_version=cuda_version)
    context = _HostContext(nvml, driver_version, cuda_version)
    devices: list[GpuDevice] = []
    for index in range(count):
        devices.extend(_probe_gpu(context, index))
    return ProbeReport(
        devices=tuple(devices),
        driver_version=driver_version,
        cuda_version=cuda_version,
        nvml_available=True,
        message="",
    )


def _system_call(nvml: Any, name: str) -> object:
    try:
        return getattr(nvml, name)()
    except nvml.NVMLError as exc:
        logger.debug("%s failed: %s", name, exc)
        return None


class _HostContext:
    """What every device on the host shares, and the UUIDs handed out so far."""

    def __init__(self, nvml: Any, driver_version: str, cuda_version: int) -> None:
        self.nvml = nvml
        self.driver_version = driver_version
        self.cuda_version = cuda_version
        self.temperature_sensor = getattr(nvml, "NVML_TEMPERATURE_GPU", _NVML_TEMPERATURE_GPU)
        self.mig_enable = getattr(nvml, "NVML_DEVICE_MIG_ENABLE", _NVML_DEVICE_MIG_ENABLE)
        self.cannot_tell = tuple(
            cls for name in _CANNOT_TELL_ERRORS if isinstance(cls := getattr(nvml, name, None), type)
        )
        self.seen_uuids: set[str] = set()

    def claim_uuid(self, uuid: str, reader: _DeviceReader) -> str:
        """The UUID to report: "" (and unhealthy) when NVML gave none, a forged or a repeated one."""
        if not uuid:
            reader.fail("NVML gave no UUID for this device")
        elif uuid.startswith(SIMULATED_UUID_PREFIX):
            reader.fail(f"NVML gave a UUID reserved for simulated GPUs: {uuid}")
        elif uuid in self.seen_uuids:
            reader.fail(f"NVML gave the UUID {uuid} to two devices")
        else:
            self.seen_uuids.add(uuid)
            return uuid
        return ""


class _DeviceReader:
    """Calls NVML for one device handle; remembers the first failure that makes it unhealthy."""

    def __init__(self, context: _HostContext, handle: object) -> None:
        self._context = context
        self._handle = handle
        self.failure = ""

    def fail(self, reason: str) -> None:
        if not self.failure:
            self.failure = _clean_text(reason, MAX_REASON_LEN)

    def call(self, name: str, *args: object) -> Any:
        """``nvml.<name>(handle, *args)``, or None when NVML cannot tell or the call failed."""
        nvml = self._context.nvml
        function = getattr(nvml, name, None)
        if function is None:  # bindings older than the function: same as "not supported"
            return None
        try:
            return function(self._handle, *args)
        except nvml.NVMLError as exc:
            if not isinstance(exc, self._context.cannot_tell):
                self.fail(f"{name}: {exc}")
            return None


def _probe_gpu(context: _HostContext, index: int) -> list[GpuDevice]:
    """The GPU at ``index``, followed by its MIG devices when it is in MIG mode."""
    nvml = context.nvml
    try:
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
    except nvml.NVMLError as exc:
        return [_unnamed_device(context, index, f"nvmlDeviceGetHandleByIndex: {exc}")]
    reader = _DeviceReader(context, handle)
    uuid = context.claim_uuid(_clean_identifier(reader.call("nvmlDeviceGetUUID"), MAX_UUID_LEN), reader)
    name = _clean_text(reader.call("nvmlDeviceGetName"), MAX_NAME_LEN)
    total, free = _memory(reader.call("nvmlDeviceGetMemoryInfo"))
    utilization = _bounded_int(getattr(reader.call("nvmlDeviceGetUtilizationRates"), "gpu", None), 100)
    temperature = _bounded_int(
        reader.call("nvmlDeviceGetTemperature", context.temperature_sensor), MAX_TEMPERATURE_C
    )
    power = _bounded_int(reader.call("nvmlDeviceGetPowerUsage"), _MAX_POWER_MW)
    cc_major, cc_minor = _compute_capability(reader.call("nvmlDeviceGetCudaComputeCapability"))
    pci_bus_id = _clean_identifier(
        getattr(reader.call("nvmlDeviceGetPciInfo"), "busId", None), MAX_PCI_BUS_ID_LEN
    )
    mig_mode = reader.call("nvmlDeviceGetMigMode")
    mig_enabled = bool(mig_mode) and mig_mode[0] == context.mig_enable
    mig_handles = _mig_handles(context, reader, handle) if mig_enabled else []
    gpu = GpuDevice(
        uuid=uuid,
        name=name,
        index=index,
        mig_index=-1,
        memory_total_bytes=total,
        memory_free_bytes=free,
        utilization_pct=utilization,
        temperature_c=temperature,
        power_mw=power,
        compute_capability_major=cc_major,
        compute_capability_minor=cc_minor,
        mig_enabled=mig_enabled,
        parent_uuid="",
        driver_version=context.driver_version,
        cuda_version=context.cuda_version,
        pci_bus_id=pci_bus_id,
        healthy=not reader.failure,
        health_reason=reader.failure,
        simulated=False,
    )
    if not gpu.uuid:
        # MIG devices name their parent by UUID; without one they cannot be reported.
        return [gpu]
    return [gpu, *(_probe_mig_device(context, gpu, slot, h) for slot, h in mig_handles)]


def _mig_handles(context: _HostContext, reader: _DeviceReader, handle: object) -> list[tuple[int, object]]:
    """(slot, handle) of every MIG device present; NVML answers "not found" for empty slots."""
    nvml = context.nvml
    slots = _bounded_int(reader.call("nvmlDeviceGetMaxMigDeviceCount"), 64)
    handles: list[tuple[int, object]] = []
    for slot in range(max(slots, 0)):
        try:
            handles.append((slot, nvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, slot)))
        except nvml.NVMLError as exc:
            if not _is_error(nvml, exc, "NVMLError_NotFound"):
                reader.fail(f"nvmlDeviceGetMigDeviceHandleByIndex({slot}): {exc}")
    return handles


def _probe_mig_device(context: _HostContext, parent: GpuDevice, slot: int, handle: object) -> GpuDevice:
    reader = _DeviceReader(context, handle)
    if not parent.healthy:
        reader.fail(f"parent GPU unhealthy: {parent.health_reason}")
    uuid = context.claim_uuid(_clean_identifier(reader.call("nvmlDeviceGetUUID"), MAX_UUID_LEN), reader)
    name = _clean_text(reader.call("nvmlDeviceGetName"), MAX_NAME_LEN) or f"{parent.name} MIG {slot}".strip()
    total, free = _memory(reader.call("nvmlDeviceGetMemoryInfo"))
    utilization = _bounded_int(getattr(reader.call("nvmlDeviceGetUtilizationRates"), "gpu", None), 100)
    cc_major, cc_minor = _compute_capability(reader.call("nvmlDeviceGetCudaComputeCapability"))
    if cc_major < 0:
        cc_major, cc_minor = parent.compute_capability_major, parent.compute_capability_minor
    return GpuDevice(
        uuid=uuid,
        name=name,
        index=parent.index,
        mig_index=slot,
        memory_total_bytes=total,
        memory_free_bytes=free,
        utilization_pct=utilization,
        # One die: the slice runs at the board's temperature. Power is the board's draw and
        # would mislead if shown per slice, so it stays unknown.
        temperature_c=parent.temperature_c,
        power_mw=-1,
        compute_capability_major=cc_major,
        compute_capability_minor=cc_minor,
        mig_enabled=True,
        parent_uuid=parent.uuid,
        driver_version=context.driver_version,
        cuda_version=context.cuda_version,
        pci_bus_id=parent.pci_bus_id,
        healthy=not reader.failure,
        health_reason=reader.failure,
        simulated=False,
    )


def _unnamed_device(context: _HostContext, index: int, reason: str) -> GpuDevice:
    return GpuDevice(
        uuid="",
        name="",
        index=index,
        mig_index=-1,
        memory_total_bytes=-1,
        memory_free_bytes=-1,
        utilization_pct=-1,
        temperature_c=-1,
        power_mw=-1,
        compute_capability_major=-1,
        compute_capability_minor=-1,
        mig_enabled=False,
        parent_uuid="",
        driver_version=context.driver_version,
        cuda_version=context.cuda_version,
        pci_bus_id="",
        healthy=False,
        health_reason=_clean_text(reason, MAX_REASON_LEN),
        simulated=False,
    )


# --- turning what NVML returned into record values --------------------------------------------
def _bounded_int(value: object, high: int) -> int:
    """``value`` when it is an int in [0, high]; otherwise -1 (NVML's "not available" included)."""
    if type(value) is int and 0 <= value <= high:
        return value
    return -1


def _memory(info: object) -> tuple[int, int]:
    total = _bounded_int(getattr(info, "total", None), _MAX_MEMORY_BYTES)
    free = _bounded_int(getattr(info, "free", None), _MAX_MEMORY_BYTES)
    if total >= 0 and free > total:  # a reading taken mid-change; never report more free than total
        free = total
    return total, free


def _compute_capability(value: object) -> tuple[int, int]:
    if isinstance(value, tuple | list) and len(value) == 2:
        major, minor = _bounded_int(value[0], 255), _bounded_int(value[1], 255)
        if major >= 0 and minor >= 0:
            return major, minor
    return -1, -1


def _as_text(value: object) -> str:
    if isinstance(value, bytes):  # pynvml before 11.5 returned bytes
        return value.decode("utf-8", errors="replace")
    return value if isinstance(value, str) else ""


def _clean_text(value: object, max_len: int) -> str:
    return "".join(ch for ch in _as_text(value) if ch.isprintable()).strip()[:max_len]


def _clean_identifier(value: object, max_len: int) -> str:
    text = _as_text(value)
    return "".join(ch for ch in text if ch.isascii() and ch.isprintable() and not ch.isspace())[:max_len]
