"""The NVML probe against fake hosts built from gpu.testing.FakeNvml, and once against the real library."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterator

import pynvml
import pytest
import trio

from gpu import nvml as gpu_nvml
from gpu.nvml import no_gpu_notice, probe, probe_async
from gpu.testing import GIB, FakeGpu, FakeMigDevice, FakeNvml

H100_UUID = "GPU-5d1a7f36-2c1b-4b1e-9d55-0c6f2c1e8a01"
H100_B_UUID = "GPU-9e7a1c44-8b2d-4c3e-a1f0-7d6e5c4b3a02"
A100_UUID = "GPU-0b8c3e55-6f3d-47a1-8b1a-3f9e2d7c4b02"
MIG_0_UUID = "MIG-3f1e2d4c-5b6a-5978-8695-a4b3c2d1e0f9"
MIG_2_UUID = "MIG-7a6b5c4d-3e2f-5a1b-9c8d-e7f6a5b4c3d2"


@pytest.fixture(autouse=True)
def fresh_notice() -> Iterator[None]:
    """Each test starts as a fresh process would: the no-GPU notice not yet said."""
    no_gpu_notice.reset()
    yield
    no_gpu_notice.reset()


def two_gpu_host() -> FakeNvml:
    return FakeNvml(
        [
            FakeGpu(uuid=H100_UUID, pci_bus_id="00000000:17:00.0"),
            FakeGpu(
                uuid=H100_B_UUID,
                pci_bus_id="00000000:65:00.0",
                utilization=97,
                temperature=71,
                power_mw=650_500,
                memory_free=2 * GIB,
            ),
        ]
    )


def mig_host() -> FakeNvml:
    a100 = FakeGpu(
        uuid=A100_UUID,
        name="NVIDIA A100-SXM4-40GB",
        memory_total=40 * GIB,
        memory_free=38 * GIB,
        compute_capability=(8, 0),
        pci_bus_id="00000000:3B:00.0",
        mig_mode=pynvml.NVML_DEVICE_MIG_ENABLE,
        mig_devices={
            0: FakeMigDevice(uuid=MIG_0_UUID, memory_total=20 * GIB, memory_free=19 * GIB),
            # Slot 1 is empty: NVML answers "not found" for it.
            2: FakeMigDevice(
                uuid=MIG_2_UUID,
                name="NVIDIA A100-SXM4-40GB MIG 2g.10gb",
                memory_total=10 * GIB,
                memory_free=10 * GIB,
            ),
        },
    )
    return FakeNvml([FakeGpu(uuid=H100_UUID), a100])


def test_two_gpu_host_reports_every_field() -> None:
    host = two_gpu_host()
    report = probe(host)
    assert report.nvml_available
    assert report.message == ""
    assert report.driver_version == "550.54.15"
    assert report.cuda_version == 12040
    first, second = report.devices
    assert (first.uuid, first.index, first.name) == (H100_UUID, 0, "NVIDIA H100 80GB HBM3")
    assert (first.memory_total_bytes, first.memory_free_bytes) == (80 * GIB, 79 * GIB)
    assert (first.utilization_pct, first.temperature_c, first.power_mw) == (3, 34, 71_250)
    assert first.compute_capability == "9.0"
    assert first.pci_bus_id == "00000000:17:00.0"
    assert (first.driver_version, first.cuda_version_text) == ("550.54.15", "12.4")
    assert first.healthy and not first.simulated and not first.mig_enabled and first.parent_uuid == ""
    assert (second.uuid, second.index, second.pci_bus_id) == (H100_B_UUID, 1, "00000000:65:00.0")
    assert (second.utilization_pct, second.temperature_c, second.power_mw) == (97, 71, 650_500)
    assert second.memory_free_bytes == 2 * GIB
    assert report.schedulable_units() == (first, second)
    assert (host.init_calls, host.shutdown_calls) == (1, 1)


def test_mig_devices_are_separate_units_and_the_parent_is_not_schedulable() -> None:
    report = probe(mig_host())
    h100, a100, mig0, mig2 = report.devices
    assert a100.mig_enabled and not a100.schedulable and a100.parent_uuid == ""
    assert [d.uuid for d in report.schedulable_units()] == [H100_UUID, MIG_0_UUID, MIG_2_UUID]
    for mig, slot, memory in ((mig0, 0, 20 * GIB), (mig2, 2, 10 * GIB)):
        assert mig.parent_uuid == A100_UUID
        assert (mig.index, mig.mig_index) == (1, slot)
        assert mig.memory_total_bytes == memory
        assert mig.compute_capability == "8.0"
        assert mig.pci_bus_id == "00000000:3B:00.0"
        assert mig.utilization_pct == -1  # NVML does not report utilization per MIG device
        assert mig.power_mw == -1  # the board's draw, not the slice's
        assert mig.temperature_c == a100.temperature_c
        assert mig.healthy
    assert mig2.name == "NVIDIA A100-SXM4-40GB MIG 2g.10gb"
    assert mig0.memory_free_bytes == 19 * GIB
    assert not h100.mig_enabled


def test_mig_enabled_gpu_with_no_instances_offers_no_units() -> None:
    host = FakeNvml([FakeGpu(uuid=A100_UUID, mig_mode=pynvml.NVML_DEVICE_MIG_ENABLE)])
    report = probe(host)
    assert len(report.devices) == 1
    assert report.devices[0].mig_enabled
    assert report.schedulable_units() == ()


def test_lost_gpu_is_unhealthy_and_the_others_are_still_probed() -> None:
    host = two_gpu_host()
    host.gpus[0].lost = True
    report = probe(host)
    lost, fine = report.devices
    assert lost.uuid == ""  # NVML could not even give its UUID
    assert not lost.healthy
    assert lost.health_reason == "nvmlDeviceGetUUID: GPU is lost"
    assert fine.healthy and fine.uuid == H100_B_UUID and fine.temperature_c == 71
    assert report.schedulable_units() == (fine,)
    assert host.shutdown_calls == 1


def test_gpu_lost_mid_probe_keeps_what_was_read_and_marks_it_unhealthy() -> None:
    host = two_gpu_host()
    host.gpus[1].failures["nvmlDeviceGetTemperature"] = pynvml.NVML_ERROR_GPU_IS_LOST
    report = probe(host)
    sick = report.devices[1]
    assert sick.uuid == H100_B_UUID
    assert not sick.healthy
    assert sick.health_reason == "nvmlDeviceGetTemperature: GPU is lost"
    assert sick.temperature_c == -1
    assert sick.memory_total_bytes == 80 * GIB
    assert report.devices[0].healthy


def test_first_failure_is_the_reason_when_several_calls_fail() -> None:
    host = FakeNvml([FakeGpu(uuid=H100_UUID)])
    host.gpus[0].failures.update(
        {
            "nvmlDeviceGetMemoryInfo": pynvml.NVML_ERROR_RESET_REQUIRED,
            "nvmlDeviceGetPowerUsage": pynvml.NVML_ERROR_UNKNOWN,
        }
    )
    (device,) = probe(host).devices
    assert device.health_reason == "nvmlDeviceGetMemoryInfo: GPU requires restart"
    assert (device.memory_total_bytes, device.power_mw) == (-1, -1)


def test_handle_failure_reports_an_unnamed_unhealthy_device() -> None:
    host = two_gpu_host()
    host.gpus[0].handle_failure = pynvml.NVML_ERROR_UNKNOWN
    report = probe(host)
    broken = report.devices[0]
    assert (broken.uuid, broken.index, broken.healthy) == ("", 0, False)
    assert broken.health_reason == "nvmlDeviceGetHandleByIndex: Unknown Error"
    assert report.devices[1].healthy


def test_not_supported_fields_get_sentinels_and_the_gpu_stays_healthy() -> None:
    gpu = FakeGpu(uuid=H100_UUID, mig_mode=None)
    for name in (
        "nvmlDeviceGetUtilizationRates",
        "nvmlDeviceGetTemperature",
        "nvmlDeviceGetPowerUsage",
        "nvmlDeviceGetCudaComputeCapability",
        "nvmlDeviceGetPciInfo",
    ):
        gpu.failures[name] = pynvml.NVML_ERROR_NOT_SUPPORTED
    gpu.failures["nvmlDeviceGetName"] = pynvml.NVML_ERROR_NO_PERMISSION
    (device,) = probe(FakeNvml([gpu])).devices
    assert device.healthy and device.health_reason == ""
    assert (device.utilization_pct, device.temperature_c, device.power_mw) == (-1, -1, -1)
    assert (device.compute_capability_major, device.compute_capability_minor) == (-1, -1)
    assert (device.pci_bus_id, device.name) == ("", "")
    assert not device.mig_enabled
    assert device.memory_total_bytes == 80 * GIB


def test_nvml_value_not_available_becomes_a_sentinel() -> None:
    not_available = 2**32 - 1  # pynvml.NVML_VALUE_NOT_AVAILABLE_uint as NVML hands it back
    host = FakeNvml([FakeGpu(uuid=H100_UUID, temperature=not_available, power_mw=not_available)])
    (device,) = probe(host).devices
    assert (device.temperature_c, device.power_mw) == (-1, -1)
    assert device.healthy


def test_system_versions_not_available_leave_sentinels() -> None:
    class NoVersions(FakeNvml):
        def nvmlSystemGetCudaDriverVersion(self) -> int:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)

    report = probe(NoVersions([FakeGpu(uuid=H100_UUID)], driver_version=""))
    assert (report.driver_version, report.cuda_version) == ("", 0)
    assert report.devices[0].cuda_version_text == ""


def test_mig_device_failure_marks_only_that_unit_unhealthy() -> None:
    host = mig_host()
    host.gpus[1].mig_devices[2].failures["nvmlDeviceGetMemoryInfo"] = pynvml.NVML_ERROR_GPU_IS_LOST
    report = probe(host)
    by_uuid = {d.uuid: d for d in report.devices}
    assert not by_uuid[MIG_2_UUID].healthy
    assert by_uuid[MIG_2_UUID].health_reason == "nvmlDeviceGetMemoryInfo: GPU is lost"
    assert by_uuid[MIG_0_UUID].healthy and by_uuid[A100_UUID].healthy
    assert [d.uuid for d in report.schedulable_units()] == [H100_UUID, MIG_0_UUID]


def test_mig_enumeration_error_other_than_not_found_marks_the_parent_unhealthy() -> None:
    host = mig_host()
    host.gpus[1].failures["nvmlDeviceGetMigDeviceHandleByIndex"] = pynvml.NVML_ERROR_UNKNOWN
    report = probe(host)
    a100 = report.devices[1]
    assert not a100.healthy
    assert a100.health_reason.startswith("nvmlDeviceGetMigDeviceHandleByIndex(0): Unknown Error")
    assert [d.uuid for d in report.devices] == [H100_UUID, A100_UUID]


def test_duplicate_uuid_from_nvml_is_reported_unhealthy_not_crashing() -> None:
    host = FakeNvml([FakeGpu(uuid=H100_UUID), FakeGpu(uuid=H100_UUID)])
    first, second = probe(host).devices
    assert first.healthy and first.uuid == H100_UUID
    assert not second.healthy and second.uuid == ""
    assert "two devices" in second.health_reason


@pytest.mark.parametrize(
    ("init_error", "reason"),
    [
        (
            pynvml.NVML_ERROR_LIBRARY_NOT_FOUND,
            "the NVIDIA driver's NVML library (libnvidia-ml.so.1) was not found",
        ),
        (pynvml.NVML_ERROR_DRIVER_NOT_LOADED, "the NVIDIA driver is not loaded"),
        (pynvml.NVML_ERROR_NO_PERMISSION, "NVML failed to initialise: Insufficient Permissions"),
    ],
)
def test_init_failure_means_no_gpus_with_a_plain_reason_and_no_shutdown(init_error: int, reason: str) -> None:
    host = FakeNvml([FakeGpu(uuid=H100_UUID)], init_error=init_error)
    report = probe(host)
    assert report.devices == ()
    assert not report.nvml_available
    assert report.message == reason
    assert host.shutdown_calls == 0


def test_missing_bindings_mean_no_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # `import pynvml` now raises ImportError
    report = probe()
    assert report.devices == ()
    assert not report.nvml_available
    assert report.message.startswith("the NVML bindings (nvidia-ml-py) are not installed")


def test_default_module_is_pynvml(monkeypatch: pytest.MonkeyPatch) -> None:
    host = two_gpu_host()
    monkeypatch.setitem(sys.modules, "pynvml", host)
    assert [d.uuid for d in probe().devices] == [H100_UUID, H100_B_UUID]
    assert host.shutdown_calls == 1


def test_host_without_devices_reports_none_and_shuts_down() -> None:
    host = FakeNvml([])
    report = probe(host)
    assert report.devices == ()
    assert report.nvml_available
    assert report.message == "NVML found no devices"
    assert report.driver_version == "550.54.15"
    assert (host.init_calls, host.shutdown_calls) == (1, 1)


def test_device_count_failure_reports_no_gpus_and_shuts_down() -> None:
    host = FakeNvml([FakeGpu(uuid=H100_UUID)], count_error=pynvml.NVML_ERROR_UNKNOWN)
    report = probe(host)
    assert report.devices == ()
    assert report.message == "NVML could not count the devices: Unknown Error"
    assert host.shutdown_calls == 1


def test_shutdown_follows_init_even_when_the_probe_breaks() -> None:
    class BrokenBindings(FakeNvml):
        def nvmlDeviceGetName(self, handle: object) -> str:
            raise RuntimeError("bindings bug")

    host = BrokenBindings([FakeGpu(uuid=H100_UUID)])
    with pytest.raises(RuntimeError, match="bindings bug"):
        probe(host)
    assert (host.init_calls, host.shutdown_calls) == (1, 1)


def test_shutdown_error_does_not_spoil_the_report() -> None:
    class ShutdownFails(FakeNvml):
        def nvmlShutdown(self) -> None:
            super().nvmlShutdown()
            raise pynvml.NVMLError(pynvml.NVML_ERROR_UNKNOWN)

    report = probe(ShutdownFails([FakeGpu(uuid=H100_UUID)]))
    assert [d.uuid for d in report.devices] == [H100_UUID]


def test_no_gpus_is_logged_once_per_process(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="dcent.gpu")
    missing_driver = FakeNvml(init_error=pynvml.NVML_ERROR_DRIVER_NOT_LOADED)
    probe(missing_driver)
    probe(missing_driver)
    probe(FakeNvml([]))
    notices = [r.getMessage() for r in caplog.records if r.name == "dcent.gpu" and r.levelno == logging.INFO]
    assert notices == ["no GPUs: the NVIDIA driver is not loaded"]


def test_gpus_present_log_no_notice(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="dcent.gpu")
    probe(two_gpu_host())
    assert not [r for r in caplog.records if r.getMessage().startswith("no GPUs")]


def test_notice_reset_arms_it_again() -> None:
    assert gpu_nvml.no_gpu_notice.say("first")
    assert not gpu_nvml.no_gpu_notice.say("second")
    gpu_nvml.no_gpu_notice.reset()
    assert gpu_nvml.no_gpu_notice.say("third")


async def test_probe_async_runs_nvml_in_a_worker_thread() -> None:
    event_loop_thread = threading.get_ident()
    seen_threads: list[int] = []

    class ThreadRecording(FakeNvml):
        def nvmlInit(self) -> None:
            seen_threads.append(threading.get_ident())
            super().nvmlInit()

    report = await probe_async(ThreadRecording([FakeGpu(uuid=H100_UUID)]))
    assert [d.uuid for d in report.devices] == [H100_UUID]
    assert seen_threads and event_loop_thread not in seen_threads


async def test_probe_async_can_be_cancelled_while_nvml_hangs() -> None:
    release = threading.Event()
    entered = trio.Event()
    token = trio.lowlevel.current_trio_token()

    class HangingInit(FakeNvml):
        def nvmlInit(self) -> None:
            trio.from_thread.run_sync(entered.set, trio_token=token)
            release.wait()
            super().nvmlInit()

    host = HangingInit([FakeGpu(uuid=H100_UUID)])
    try:
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(probe_async, host)
                await entered.wait()
                scope.cancel()
        assert scope.cancelled_caught
    finally:
        release.set()  # let the abandoned worker finish (and release the probe lock)
    # The next probe waits for the abandoned one to shut NVML down, then runs normally.
    report = await probe_async(host)
    assert [d.uuid for d in report.devices] == [H100_UUID]
    assert host.init_calls == host.shutdown_calls == 2


def test_real_nvml_probe_does_not_crash() -> None:
    """The real bindings on this machine: GPUs with UUIDs, or no GPUs and the reason why."""
    report = probe()
    if report.nvml_available and report.devices:
        assert all(d.uuid or not d.healthy for d in report.devices)
        assert not any(d.simulated for d in report.devices)
    else:
        assert report.devices == ()
        assert report.message
