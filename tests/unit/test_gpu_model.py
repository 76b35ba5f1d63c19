"""GpuDevice and ProbeReport: sentinels, validation, and the canonical wire form."""

from __future__ import annotations

import dataclasses

import pytest

from gpu.errors import GpuError, InvalidGpuDevice, InvalidProbeReport
from protocol.encoding import DecodeError, encode
from protocol.errors import ProtocolError
from protocol.hardware import GpuDevice, ProbeReport, format_cuda_version

H100_UUID = "GPU-5d1a7f36-2c1b-4b1e-9d55-0c6f2c1e8a01"
A100_UUID = "GPU-0b8c3e55-6f3d-47a1-8b1a-3f9e2d7c4b02"
MIG_UUID = "MIG-3f1e2d4c-5b6a-5978-8695-a4b3c2d1e0f9"


def make_device(**overrides: object) -> GpuDevice:
    fields: dict[str, object] = {
        "uuid": H100_UUID,
        "name": "NVIDIA H100 80GB HBM3",
        "index": 0,
        "mig_index": -1,
        "memory_total_bytes": 80 * 2**30,
        "memory_free_bytes": 79 * 2**30,
        "utilization_pct": 3,
        "temperature_c": 34,
        "power_mw": 71_250,
        "compute_capability_major": 9,
        "compute_capability_minor": 0,
        "mig_enabled": False,
        "parent_uuid": "",
        "driver_version": "550.54.15",
        "cuda_version": 12040,
        "pci_bus_id": "00000000:17:00.0",
        "healthy": True,
        "health_reason": "",
        "simulated": False,
    }
    fields.update(overrides)
    return GpuDevice(**fields)  # type: ignore[arg-type]


def make_report(devices: tuple[GpuDevice, ...], **overrides: object) -> ProbeReport:
    fields: dict[str, object] = {
        "devices": devices,
        "driver_version": "550.54.15",
        "cuda_version": 12040,
        "nvml_available": True,
        "message": "",
    }
    fields.update(overrides)
    return ProbeReport(**fields)  # type: ignore[arg-type]


def test_error_codes_are_stable_and_in_the_gpu_range() -> None:
    assert issubclass(GpuError, ProtocolError)
    assert GpuError.code == 5100
    assert InvalidGpuDevice.code == 5101
    assert InvalidProbeReport.code == 5102


@pytest.mark.parametrize(
    ("version", "text"), [(12040, "12.4"), (11080, "11.8"), (12010, "12.1"), (13000, "13.0"), (0, "")]
)
def test_format_cuda_version_reads_nvml_encoding(version: int, text: str) -> None:
    assert format_cuda_version(version) == text


def test_device_round_trips_through_canonical_bytes() -> None:
    device = make_device()
    assert GpuDevice.decode(device.encode()) == device
    assert device.compute_capability == "9.0"
    assert device.cuda_version_text == "12.4"


def test_unknown_values_use_sentinels_and_still_encode() -> None:
    device = make_device(
        utilization_pct=-1,
        temperature_c=-1,
        power_mw=-1,
        compute_capability_major=-1,
        compute_capability_minor=-1,
        memory_free_bytes=-1,
        driver_version="",
        cuda_version=0,
        pci_bus_id="",
        name="",
    )
    assert GpuDevice.decode(device.encode()) == device
    assert device.compute_capability == ""
    assert device.cuda_version_text == ""


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"utilization_pct": 101}, "utilization_pct"),
        ({"utilization_pct": -2}, "utilization_pct"),
        ({"temperature_c": 400}, "temperature_c"),
        ({"power_mw": -5}, "power_mw"),
        ({"index": -1}, "index"),
        ({"memory_free_bytes": 81 * 2**30}, "exceeds total"),
        ({"compute_capability_major": -1}, "both"),
        ({"uuid": ""}, "uuid"),
        ({"uuid": "GPU-with space"}, "ASCII without spaces"),
        ({"name": "bad\nname"}, "non-printable"),
        ({"healthy": False}, "health_reason"),
        ({"health_reason": "GPU is lost"}, "health_reason"),
        ({"mig_index": 2}, "mig_index"),
        ({"parent_uuid": A100_UUID}, "mig_enabled"),
        ({"parent_uuid": H100_UUID, "mig_enabled": True, "mig_index": 0}, "own parent"),
        ({"simulated": True}, "simulated"),
        ({"uuid": "GPU-SIM-0000"}, "simulated"),
        ({"cuda_version": -1}, "cuda_version"),
        ({"pci_bus_id": "0" * 33}, "pci_bus_id"),
    ],
)
def test_invalid_device_is_refused_with_a_typed_error(overrides: dict[str, object], fragment: str) -> None:
    with pytest.raises(InvalidGpuDevice, match=fragment) as caught:
        make_device(**overrides)
    assert caught.value.code == 5101


def test_unhealthy_device_may_lack_a_uuid() -> None:
    device = make_device(uuid="", healthy=False, health_reason="nvmlDeviceGetHandleByIndex: GPU is lost")
    assert not device.healthy
    assert GpuDevice.decode(device.encode()) == device


def test_schedulable_units_are_whole_gpus_and_mig_devices_not_mig_parents() -> None:
    plain = make_device()
    parent = make_device(uuid=A100_UUID, index=1, mig_enabled=True)
    mig = make_device(uuid=MIG_UUID, index=1, mig_enabled=True, parent_uuid=A100_UUID, mig_index=0)
    assert plain.schedulable and not plain.is_mig_device
    assert not parent.schedulable
    assert mig.schedulable and mig.is_mig_device


def test_decoding_a_device_that_fails_validation_is_a_decode_error() -> None:
    wire = make_device().to_wire()
    wire["utilization_pct"] = 250
    with pytest.raises(DecodeError, match="utilization_pct"):
        GpuDevice.decode(encode(wire))


def test_decoding_a_device_with_a_missing_field_is_a_decode_error() -> None:
    wire = make_device().to_wire()
    del wire["health_reason"]
    with pytest.raises(DecodeError, match="health_reason"):
        GpuDevice.decode(encode(wire))


def test_report_round_trips_with_mig_devices_after_their_parent() -> None:
    parent = make_device(uuid=A100_UUID, mig_enabled=True)
    mig = make_device(uuid=MIG_UUID, mig_enabled=True, parent_uuid=A100_UUID, mig_index=0)
    report = make_report((parent, mig))
    assert ProbeReport.decode(report.encode()) == report
    assert report.schedulable_units() == (mig,)
    assert report.cuda_version_text == "12.4"


def test_schedulable_units_leave_out_unhealthy_devices() -> None:
    sick = make_device(uuid=A100_UUID, index=1, healthy=False, health_reason="GPU is lost")
    healthy = make_device()
    assert make_report((healthy, sick)).schedulable_units() == (healthy,)


def test_empty_report_is_valid() -> None:
    report = make_report((), nvml_available=False, driver_version="", cuda_version=0, message="no driver")
    assert ProbeReport.decode(report.encode()) == report


@pytest.mark.parametrize(
    ("devices", "overrides", "fragment"),
    [
        ((make_device(), make_device(index=1)), {}, "twice"),
        (
            (make_device(uuid=MIG_UUID, mig_enabled=True, parent_uuid=A100_UUID, mig_index=0),),
            {},
            "MIG-enabled parent",
        ),
        (
            (
                make_device(uuid=A100_UUID),
                make_device(uuid=MIG_UUID, mig_enabled=True, parent_uuid=A100_UUID, mig_index=0),
            ),
            {},
            "MIG-enabled parent",
        ),
        ((make_device(),), {"nvml_available": False}, "without NVML"),
        ((), {"cuda_version": -1}, "cuda_version"),
        ((), {"message": "line\nbreak"}, "message"),
    ],
)
def test_invalid_report_is_refused_with_a_typed_error(
    devices: tuple[GpuDevice, ...], overrides: dict[str, object], fragment: str
) -> None:
    with pytest.raises(InvalidProbeReport, match=fragment) as caught:
        make_report(devices, **overrides)
    assert caught.value.code == 5102


def test_device_is_immutable() -> None:
    device = make_device()
    with pytest.raises(dataclasses.FrozenInstanceError):
        device.healthy = False  # type: ignore[misc]
