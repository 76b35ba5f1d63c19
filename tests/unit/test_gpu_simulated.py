"""Declared (simulated) GPUs for testnets: spec parsing, deterministic UUIDs, the report."""

from __future__ import annotations

import pytest

from gpu.errors import InvalidGpuSpec
from gpu.simulated import KNOWN_MODELS, parse_gpu_spec, simulated_report, simulated_uuid
from protocol.hardware import SIMULATED_UUID_PREFIX, ProbeReport


def test_two_h100s() -> None:
    devices = parse_gpu_spec("2xH100-80GB", "node-1")
    assert [d.index for d in devices] == [0, 1]
    for device in devices:
        assert device.simulated
        assert device.uuid.startswith(SIMULATED_UUID_PREFIX)
        assert device.name == "NVIDIA H100 80GB"
        assert device.memory_total_bytes == device.memory_free_bytes == 80 * 2**30
        assert device.compute_capability == "9.0"
        assert device.healthy and device.schedulable
        assert (device.utilization_pct, device.temperature_c, device.power_mw) == (-1, -1, -1)
        assert device.driver_version == "simulated"
        assert device.cuda_version_text == "12.4"
    assert devices[0].uuid != devices[1].uuid


def test_mixed_spec_keeps_order_and_per_model_compute_capability() -> None:
    devices = parse_gpu_spec(" 1xA100-40GB , 1xrtx4090-24gb,1xT4-16GB ", "node-1")
    assert [d.name for d in devices] == ["NVIDIA A100 40GB", "NVIDIA GeForce RTX 4090 24GB", "NVIDIA T4 16GB"]
    assert [d.compute_capability for d in devices] == ["8.0", "8.9", "7.5"]
    assert [d.index for d in devices] == [0, 1, 2]


def test_uuids_are_deterministic_per_label_and_index() -> None:
    first = parse_gpu_spec("2xH100-80GB", "node-1")
    again = parse_gpu_spec("1xH100-80GB,1xA100-40GB", "node-1")
    other = parse_gpu_spec("2xH100-80GB", "node-2")
    assert [d.uuid for d in first] == [d.uuid for d in again]  # (label, index) alone decide
    assert not {d.uuid for d in first} & {d.uuid for d in other}
    assert first[0].uuid == simulated_uuid("node-1", 0)
    assert len(first[0].uuid) == len(SIMULATED_UUID_PREFIX) + 36


def test_empty_spec_declares_nothing() -> None:
    assert parse_gpu_spec("", "node-1") == ()
    assert parse_gpu_spec("   ", "node-1") == ()


def test_cuda_and_driver_versions_can_be_chosen() -> None:
    (device,) = parse_gpu_spec("1xL4-24GB", "n", driver_version="sim-535", cuda_version=12020)
    assert (device.driver_version, device.cuda_version_text) == ("sim-535", "12.2")


def test_every_known_model_parses() -> None:
    spec = ",".join(f"1x{model}-16GB" for model in KNOWN_MODELS)
    assert len(parse_gpu_spec(spec, "n")) == len(KNOWN_MODELS)


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("2xH100", "item 1 '2xH100'"),
        ("2xH100-80GB,", "item 2 ''"),
        ("2xH100-80GB,,1xA100-40GB", "item 2 ''"),
        ("H100-80GB", "item 1"),
        ("2xH100-80", "item 1"),
        ("-1xH100-80GB", "item 1"),
        ("2xH100-80GB,1xH1OO-80GB", "unknown model 'H1OO'"),
        ("0xH100-80GB", "count must be at least 1"),
        ("1xH100-0GB", "memory must be"),
        ("1xH100-99999GB", "memory must be"),
        ("300xH100-80GB", "more than 256"),
        ("200xH100-80GB,100xA100-40GB", "item 2"),
        ("2 x H100-80GB", "item 1"),
    ],
)
def test_bad_spec_is_a_typed_error_naming_the_bad_part(spec: str, fragment: str) -> None:
    with pytest.raises(InvalidGpuSpec, match="GPU spec") as caught:
        parse_gpu_spec(spec, "node-1")
    assert fragment in caught.value.message
    assert caught.value.code == 5110


def test_label_is_required() -> None:
    with pytest.raises(InvalidGpuSpec, match="label"):
        parse_gpu_spec("1xH100-80GB", "")


def test_simulated_report_marks_everything_simulated_and_round_trips() -> None:
    report = simulated_report("1xH100-80GB,\n1xA100-40GB", "node-1")
    assert not report.nvml_available
    assert all(d.simulated for d in report.devices)
    assert report.message == (
        "simulated GPUs declared in config (1xH100-80GB,1xA100-40GB); no GPU hardware is used"
    )
    assert len(report.schedulable_units()) == 2
    assert ProbeReport.decode(report.encode()) == report


def test_simulated_report_of_empty_spec_has_no_devices() -> None:
    report = simulated_report("", "node-1")
    assert report.devices == ()
    assert report.message == "the GPU spec declares no simulated GPUs"
