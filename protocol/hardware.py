"""What the node knows about one GPU, and what one probe of the host saw: wire records.

They live in ``protocol`` (not ``gpu``) because they travel inside signed capacity announcements
and the market core matches on them; ``gpu/`` (NVML, the allocator) builds them, and ``protocol``
depends on nothing outside itself (tests/unit/test_layers.py).

Both are :class:`protocol.encoding.Record` types because they travel inside signed capacity
announcements: ints, strs and bools only, no floats and no None. A value NVML could not give is a
documented sentinel (``-1`` for a number, ``""`` for a text, ``0`` for a version), never a guess.

Schedulable units: a whole GPU, or one MIG device of a GPU in MIG mode. A GPU in MIG mode is
still listed (its sensors and health describe the board) but is not schedulable as a whole; its
MIG devices are, each with its own UUID and memory, and each counts as one GPU when allocated.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.encoding import INT_MAX, Record
from protocol.errors import ProtocolError


class GpuError(ProtocolError):
    """Base of every GPU error (5100-5199; the allocator's are in :mod:`gpu.errors`)."""

    code = 5100


class InvalidGpuDevice(GpuError):
    """A GpuDevice whose fields are out of range or contradict each other."""

    code = 5101


class InvalidProbeReport(GpuError):
    """A ProbeReport that repeats a UUID, orphans a MIG unit, or claims real GPUs without NVML."""

    code = 5102


#: Every simulated GPU's UUID starts with this, and no real one does (NVML's start "GPU-<hex>"
#: or "MIG-"), so a simulated GPU is recognisable even where the flag is not shown.
SIMULATED_UUID_PREFIX = "GPU-SIM-"

MAX_UUID_LEN = 128
MAX_NAME_LEN = 128
MAX_VERSION_LEN = 64
MAX_PCI_BUS_ID_LEN = 32
MAX_REASON_LEN = 256
MAX_MESSAGE_LEN = 1024
MAX_DEVICES = 1024
#: Hotter than any GPU runs; a reading above it is corrupt.
MAX_TEMPERATURE_C = 300


def format_cuda_version(version: int) -> str:
    """Show NVML's CUDA driver version (``major * 1000 + minor * 10``): 12040 -> ``"12.4"``.

    0 (unknown) shows as ``""``.
    """
    if version <= 0:
        return ""
    return f"{version // 1000}.{(version % 1000) // 10}"


def _check_text(field: str, value: str, max_len: int, *, allow_empty: bool = True) -> None:
    if not value and not allow_empty:
        raise InvalidGpuDevice(f"{field} is empty")
    if len(value) > max_len:
        raise InvalidGpuDevice(f"{field} is longer than {max_len} characters")
    if not value.isprintable():
        raise InvalidGpuDevice(f"{field} contains non-printable characters: {value!r}")


def _check_identifier(field: str, value: str, max_len: int) -> None:
    """UUIDs and PCI bus ids: printable ASCII without spaces (they end up on command lines)."""
    _check_text(field, value, max_len)
    if not value.isascii() or any(ch.isspace() for ch in value):
        raise InvalidGpuDevice(f"{field} must be ASCII without spaces: {value!r}")


def _check_range(field: str, value: int, low: int, high: int = INT_MAX) -> None:
    if not low <= value <= high:
        raise InvalidGpuDevice(f"{field} out of range [{low}, {high}]: {value}")


@dataclass(frozen=True, slots=True)
class GpuDevice(Record):
    """One GPU or MIG device as the probe (or a testnet declaration) sees it.

    Sentinels: ``-1`` means "NVML cannot tell" for every number documented so; ``""`` likewise
    for text fields; ``0`` for ``cuda_version``.
    """

    #: NVML's UUID ("GPU-..." or "MIG-..."), "GPU-SIM-..." when simulated. "" only for a device
    #: so broken NVML could not even name it (then ``healthy`` is False).
    uuid: str
    #: Product name, e.g. "NVIDIA H100 80GB HBM3"; "" when unknown.
    name: str
    #: NVML index of the physical GPU (a MIG device carries its parent's).
    index: int
    #: Slot of a MIG device within its parent; -1 for a whole GPU.
    mig_index: int
    #: Memory in bytes; -1 when unknown.
    memory_total_bytes: int
    memory_free_bytes: int
    #: GPU utilization over NVML's last sample period, 0-100; -1 when unknown (MIG devices).
    utilization_pct: int
    #: Core temperature in degrees Celsius; -1 when unknown.
    temperature_c: int
    #: Board power draw in milliwatts; -1 when unknown (and for MIG devices: it is the board's).
    power_mw: int
    #: CUDA compute capability, e.g. 9 and 0 for Hopper; both -1 when unknown.
    compute_capability_major: int
    compute_capability_minor: int
    #: The GPU is in MIG mode (for a MIG device: always True).
    mig_enabled: bool
    #: The UUID of the GPU a MIG device is carved from; "" for a whole GPU.
    parent_uuid: str
    #: Driver version, e.g. "550.54.15"; "" when unknown.
    driver_version: str
    #: CUDA version the driver supports, as NVML gives it (12040 is 12.4); 0 when unknown.
    cuda_version: int
    #: PCI bus id, e.g. "00000000:17:00.0" (a MIG device carries its parent's); "" when unknown.
    pci_bus_id: str
    #: False when an NVML call failed for this device for a reason other than "not supported".
    healthy: bool
    #: Why the device is unhealthy, e.g. "nvmlDeviceGetTemperature: GPU is lost"; "" if healthy.
    health_reason: str
    #: Declared in config for a testnet, not probed: there is no such hardware.
    simulated: bool

    def __post_init__(self) -> None:
        _check_identifier("uuid", self.uuid, MAX_UUID_LEN)
        if not self.uuid and self.healthy:
            raise InvalidGpuDevice("a healthy device must have a uuid")
        if self.simulated != self.uuid.startswith(SIMULATED_UUID_PREFIX):
            raise InvalidGpuDevice(
                f"uuid {self.uuid!r}: simulated devices, and only they, use the "
                f"{SIMULATED_UUID_PREFIX!r} prefix"
            )
        _check_text("name", self.name, MAX_NAME_LEN)
        _check_range("index", self.index, 0)
        _check_range("memory_total_bytes", self.memory_total_bytes, -1)
        _check_range("memory_free_bytes", self.memory_free_bytes, -1)
        if 0 <= self.memory_total_bytes < self.memory_free_bytes:
            raise InvalidGpuDevice(
                f"memory_free_bytes {self.memory_free_bytes} exceeds total {self.memory_total_bytes}"
            )
        _check_range("utilization_pct", self.utilization_pct, -1, 100)
        _check_range("temperature_c", self.temperature_c, -1, MAX_TEMPERATURE_C)
        _check_range("power_mw", self.power_mw, -1)
        _check_range("compute_capability_major", self.compute_capability_major, -1, 255)
        _check_range("compute_capability_minor", self.compute_capability_minor, -1, 255)
        if (self.compute_capability_major < 0) != (self.compute_capability_minor < 0):
            raise InvalidGpuDevice("compute capability major and minor must both be known or both -1")
        _check_identifier("parent_uuid", self.parent_uuid, MAX_UUID_LEN)
        if self.parent_uuid:
            if self.parent_uuid == self.uuid:
                raise InvalidGpuDevice("a MIG device cannot be its own parent")
            if not self.mig_enabled:
                raise InvalidGpuDevice("a MIG device must have mig_enabled set")
            _check_range("mig_index", self.mig_index, 0)
        elif self.mig_index != -1:
            raise InvalidGpuDevice(f"mig_index must be -1 for a whole GPU, not {self.mig_index}")
        _check_text("driver_version", self.driver_version, MAX_VERSION_LEN)
        _check_range("cuda_version", self.cuda_version, 0)
        _check_identifier("pci_bus_id", self.pci_bus_id, MAX_PCI_BUS_ID_LEN)
        _check_text("health_reason", self.health_reason, MAX_REASON_LEN)
        if self.healthy == bool(self.health_reason):
            raise InvalidGpuDevice("health_reason must be empty exactly when the device is healthy")

    @property
    def is_mig_device(self) -> bool:
        """A MIG device carved from a parent GPU."""
        return bool(self.parent_uuid)

    @property
    def schedulable(self) -> bool:
        """Can be sold as one GPU: a whole GPU not in MIG mode, or a MIG device."""
        return self.is_mig_device or not self.mig_enabled

    @property
    def compute_capability(self) -> str:
        """``"9.0"``, or ``""`` when unknown."""
        if self.compute_capability_major < 0:
            return ""
        return f"{self.compute_capability_major}.{self.compute_capability_minor}"

    @property
    def cuda_version_text(self) -> str:
        return format_cuda_version(self.cuda_version)

    def to_json(self) -> dict[str, object]:
        """The GPU as ``dcent gpu list --json`` and the RPC show it: every probed field plus the
        derived ones."""
        fields = self.to_wire()
        fields["schedulable"] = self.schedulable
        fields["compute_capability"] = self.compute_capability
        fields["cuda_version_text"] = self.cuda_version_text
        return fields


@dataclass(frozen=True, slots=True)
class ProbeReport(Record):
    """Everything one probe of the host saw: devices (MIG parents first, then their MIG devices)."""

    devices: tuple[GpuDevice, ...]
    #: The host's driver version; "" when unknown or when NVML is unavailable.
    driver_version: str
    #: The host's CUDA driver version as NVML gives it (12040); 0 when unknown.
    cuda_version: int
    #: NVML initialised on this host. False with no library, no driver, or declared GPUs only.
    nvml_available: bool
    #: Plain words for an operator: why there are no GPUs, or where simulated ones came from.
    message: str

    def __post_init__(self) -> None:
        if len(self.devices) > MAX_DEVICES:
            raise InvalidProbeReport(f"more than {MAX_DEVICES} devices")
        if len(self.driver_version) > MAX_VERSION_LEN or not self.driver_version.isprintable():
            raise InvalidProbeReport(f"bad driver_version {self.driver_version!r}")
        if self.cuda_version < 0:
            raise InvalidProbeReport(f"cuda_version must not be negative: {self.cuda_version}")
        if len(self.message) > MAX_MESSAGE_LEN or not self.message.isprintable():
            raise InvalidProbeReport("message is too long or contains non-printable characters")
        mig_parents: set[str] = set()
        seen: set[str] = set()
        for device in self.devices:
            if not self.nvml_available and not device.simulated:
                raise InvalidProbeReport(f"real device {device.uuid!r} reported without NVML")
            if device.uuid:
                if device.uuid in seen:
                    raise InvalidProbeReport(f"uuid {device.uuid!r} appears twice")
                seen.add(device.uuid)
            if device.mig_enabled and not device.is_mig_device:
                mig_parents.add(device.uuid)
            if device.is_mig_device and device.parent_uuid not in mig_parents:
                raise InvalidProbeReport(
                    f"MIG device {device.uuid!r} does not follow a MIG-enabled parent {device.parent_uuid!r}"
                )

    def schedulable_units(self) -> tuple[GpuDevice, ...]:
        """The healthy devices that can each be sold as one GPU, in report order."""
        return tuple(d for d in self.devices if d.schedulable and d.healthy)

    @property
    def cuda_version_text(self) -> str:
        return format_cuda_version(self.cuda_version)
