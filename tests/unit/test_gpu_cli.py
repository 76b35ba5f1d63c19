"""`dcent gpu list [--json]` over a fake NVML installed as the `pynvml` module."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pynvml
import pytest

from gpu.nvml import no_gpu_notice
from gpu.testing import GIB, FakeGpu, FakeMigDevice, FakeNvml
from node.cli import gpu as gpu_cli
from node.executor.selftest import SelfTestReport

H100_UUID = "GPU-5d1a7f36-2c1b-4b1e-9d55-0c6f2c1e8a01"
A100_UUID = "GPU-0b8c3e55-6f3d-47a1-8b1a-3f9e2d7c4b02"
MIG_UUID = "MIG-3f1e2d4c-5b6a-5978-8695-a4b3c2d1e0f9"


@pytest.fixture(autouse=True)
def fresh_notice() -> Iterator[None]:
    no_gpu_notice.reset()
    yield
    no_gpu_notice.reset()


#: What the executor's self-test says on a host whose AppArmor forbids user namespaces.
APPARMOR = SelfTestReport(
    False,
    "bubblewrap",
    "AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns = 1)",
    "sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0",
)


@pytest.fixture(autouse=True)
def sandbox(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Stand in for the executor's self-test (a real sandboxed job) in these unit tests."""
    asked: list[str] = []

    def fake(executor: str) -> SelfTestReport:
        asked.append(executor)
        return APPARMOR

    monkeypatch.setattr(gpu_cli, "sandbox_check", fake)
    monkeypatch.setenv("DCENT_HOME", "/nonexistent-dcent-home")
    return asked


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="dcent")
    gpu_cli.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    code = args.func(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def install(monkeypatch: pytest.MonkeyPatch, host: object) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", host)


def mixed_host() -> FakeNvml:
    return FakeNvml(
        [
            FakeGpu(uuid=H100_UUID, failures={"nvmlDeviceGetPowerUsage": pynvml.NVML_ERROR_GPU_IS_LOST}),
            FakeGpu(
                uuid=A100_UUID,
                name="NVIDIA A100-SXM4-40GB",
                memory_total=40 * GIB,
                memory_free=40 * GIB,
                compute_capability=(8, 0),
                mig_mode=pynvml.NVML_DEVICE_MIG_ENABLE,
                mig_devices={1: FakeMigDevice(uuid=MIG_UUID)},
            ),
        ]
    )


def test_text_lists_gpus_mig_devices_and_health(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    install(monkeypatch, mixed_host())
    code, out, _ = run_cli(["gpu", "list"], capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "driver 550.54.15, CUDA 12.4"
    header, h100, a100, mig, sandbox_line = lines[1:]
    assert sandbox_line == (
        "sandbox: bubblewrap cannot run jobs here: AppArmor restricts unprivileged user namespaces "
        "(kernel.apparmor_restrict_unprivileged_userns = 1). "
        "Fix: sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0"
    )
    assert header.split()[:3] == ["ID", "UUID", "NAME"]
    assert h100.startswith("0 ") and H100_UUID in h100
    assert "UNHEALTHY: nvmlDeviceGetPowerUsage: GPU is lost" in h100
    assert "80896/81920 MiB" in h100
    assert a100.startswith("1 ") and "parent" in a100 and a100.endswith("ok")
    assert mig.startswith("1:1 ") and MIG_UUID in mig and "device" in mig and "20480/20480 MiB" in mig
    assert all(" nvml " in row for row in (h100, a100, mig))


def test_json_lists_gpus_as_one_document(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    install(monkeypatch, mixed_host())
    code, out, _ = run_cli(["gpu", "list", "--json"], capsys)
    assert code == 0
    document = json.loads(out)
    assert document["nvml_available"] is True
    assert (document["driver_version"], document["cuda_version"], document["cuda_version_text"]) == (
        "550.54.15",
        12040,
        "12.4",
    )
    gpus = {gpu["uuid"]: gpu for gpu in document["gpus"]}
    assert list(gpus) == [H100_UUID, A100_UUID, MIG_UUID]
    assert gpus[H100_UUID]["healthy"] is False
    assert gpus[H100_UUID]["power_mw"] == -1
    assert gpus[A100_UUID]["schedulable"] is False
    assert gpus[MIG_UUID]["schedulable"] is True
    assert gpus[MIG_UUID]["parent_uuid"] == A100_UUID
    assert gpus[MIG_UUID]["compute_capability"] == "8.0"
    assert gpus[MIG_UUID]["simulated"] is False


def test_no_gpus_text_is_one_plain_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    install(monkeypatch, FakeNvml(init_error=pynvml.NVML_ERROR_DRIVER_NOT_LOADED))
    code, out, _ = run_cli(["gpu", "list"], capsys)
    assert code == 0
    assert out.splitlines()[0] == "no GPUs: the NVIDIA driver is not loaded"
    assert out.splitlines()[1].startswith("sandbox: bubblewrap cannot run jobs here: AppArmor")


def test_no_gpus_json_is_a_valid_document(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # bindings not installed at all
    code, out, _ = run_cli(["gpu", "list", "--json"], capsys)
    assert code == 0
    document = json.loads(out)
    assert document["gpus"] == []
    assert document["nvml_available"] is False
    assert (document["driver_version"], document["cuda_version"]) == ("", 0)
    assert document["message"].startswith("the NVML bindings (nvidia-ml-py) are not installed")


def test_simulated_gpus_are_marked_in_text_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["gpu", "list", "--simulate", "2xH100-80GB", "--label", "node-1"], capsys)
    assert code == 0
    lines = out.splitlines()
    assert "simulated GPUs declared in config (2xH100-80GB)" in lines[1]
    rows = lines[3:-1]
    assert len(rows) == 2 and all("GPU-SIM-" in row and " simulated " in row for row in rows)

    code, out, _ = run_cli(
        ["gpu", "list", "--json", "--simulate", "2xH100-80GB", "--label", "node-1"], capsys
    )
    document = json.loads(out)
    assert document["nvml_available"] is False
    assert [gpu["simulated"] for gpu in document["gpus"]] == [True, True]


def test_bad_simulate_spec_is_a_usage_error_with_its_code(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(["gpu", "list", "--simulate", "2xH100-80GB,1xH1OO-80GB"], capsys)
    assert code == 2
    assert out == ""
    assert err.startswith("error 5110: ") and "unknown model 'H1OO'" in err


def test_json_carries_the_sandbox_verdict_and_the_check_can_be_skipped(
    capsys: pytest.CaptureFixture[str], sandbox: list[str]
) -> None:
    code, out, _ = run_cli(["gpu", "list", "--json", "--simulate", "1xH100-80GB"], capsys)
    verdict = json.loads(out)["sandbox"]
    assert (code, verdict["ok"], verdict["executor"]) == (0, False, "bubblewrap")
    assert verdict["fix"] == APPARMOR.fix and "AppArmor" in verdict["summary"]
    code, out, _ = run_cli(["gpu", "list", "--simulate", "1xH100-80GB", "--executor", "subprocess"], capsys)
    assert sandbox == ["bubblewrap", "subprocess"]
    code, out, _ = run_cli(
        ["gpu", "list", "--json", "--simulate", "1xH100-80GB", "--no-sandbox-check"], capsys
    )
    assert json.loads(out)["sandbox"] is None and len(sandbox) == 2


def test_the_sandbox_checked_is_the_one_the_node_config_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], sandbox: list[str]
) -> None:
    (tmp_path / "config.toml").write_text('[market]\nexecutor = "podman"\n')
    run_cli(["gpu", "list", "--simulate", "1xH100-80GB", "--home", str(tmp_path)], capsys)
    assert sandbox == ["podman"]


def test_real_probe_through_the_cli_prints_valid_json(capsys: pytest.CaptureFixture[str]) -> None:
    """Whatever this machine has (here: no driver), the document parses and lists UUIDs."""
    code, out, _ = run_cli(["gpu", "list", "--json"], capsys)
    assert code == 0
    document = json.loads(out)
    assert isinstance(document["gpus"], list)
    if not document["gpus"]:
        assert document["message"]
