"""Job specs' resource limits: parsed with units, defaulted, bounded, and part of the job hash."""

from __future__ import annotations

from typing import Any

import pytest

from protocol.encoding import DecodeError
from protocol.market.errors import JobSpecError
from protocol.market.jobspec import (
    DEFAULT_LIMITS,
    JobSpec,
    Limits,
    format_cpu_cores,
    parse_cpu_cores,
)

GiB = 2**30


def _doc(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "argv": ["python3", "train.py"],
        "resources": {"gpu_count": 1},
        "max_runtime_s": "10m",
        "max_price_per_gpu_second": "0.002 DCT",
    }
    doc.update(changes)
    return doc


def test_a_spec_without_limits_gets_the_defaults() -> None:
    spec = JobSpec.from_document(_doc())
    assert spec.limits == DEFAULT_LIMITS == Limits(4 * GiB, 2000, 1024, 4 * GiB)


def test_limits_are_read_with_units_and_round_trip() -> None:
    toml = """
argv = ["python3", "train.py"]
max_runtime_s = "1h"
max_price_per_gpu_second = 1000
output_limit_bytes = "100 MiB"
[resources]
gpu_count = 2
[limits]
memory = "12 GiB"
cpu_cores = "3.5"
processes = 4096
disk = "50 GiB"
"""
    spec = JobSpec.from_text(toml, "toml")
    assert spec.limits == Limits(
        memory_bytes=12 * GiB, cpu_millicores=3500, processes=4096, disk_bytes=50 * GiB
    )
    again = JobSpec.from_document(spec.to_document())
    assert again == spec and again.job_hash() == spec.job_hash()
    assert JobSpec.decode(spec.encode()) == spec


def test_the_limits_are_part_of_what_the_contract_names() -> None:
    small = JobSpec.from_document(_doc(limits={"memory": "1 GiB"}))
    large = JobSpec.from_document(_doc(limits={"memory": "2 GiB"}))
    assert small.job_hash() != large.job_hash()


@pytest.mark.parametrize(
    ("limits", "field"),
    [
        ({"memory": "1 MiB"}, "limits.memory"),
        ({"memory": "2 PiB"}, "limits.memory"),
        ({"cpu_cores": 0}, "limits.cpu_cores"),
        ({"cpu_cores": "0.001"}, "limits.cpu_cores"),
        ({"cpu_cores": "1.2345"}, "limits.cpu_cores"),
        ({"cpu_cores": 1.5}, "limits.cpu_cores"),
        ({"cpu_cores": -1}, "limits.cpu_cores"),
        ({"processes": 2}, "limits.processes"),
        ({"processes": "many"}, "limits.processes"),
        ({"disk": "1 MiB"}, "limits.disk"),
        ({"gpu": 1}, "limits.gpu"),
    ],
)
def test_bad_limits_name_their_field(limits: dict[str, Any], field: str) -> None:
    with pytest.raises(JobSpecError) as caught:
        JobSpec.from_document(_doc(limits=limits))
    assert caught.value.message.startswith(field), caught.value.message


def test_the_disk_limit_must_hold_the_inputs_and_the_outputs() -> None:
    with pytest.raises(JobSpecError) as caught:
        JobSpec.from_document(
            _doc(limits={"disk": "16 MiB"}, output_limit_bytes="16 MiB", inputs={"a.txt": "x"})
        )
    assert caught.value.message.startswith("limits.disk")
    fits = JobSpec.from_document(
        _doc(limits={"disk": "17 MiB"}, output_limit_bytes="16 MiB", inputs={"a.txt": "x"})
    )
    assert fits.limits.disk_bytes == 17 * 2**20


def test_a_peer_cannot_send_limits_out_of_range() -> None:
    spec = JobSpec.from_document(_doc())
    wire = spec.to_wire()
    wire["limits"] = {**wire["limits"], "processes": 1}  # type: ignore[dict-item]
    with pytest.raises(DecodeError):
        JobSpec.from_wire(wire)


@pytest.mark.parametrize(
    ("text", "millicores"), [("1", 1000), ("0.5", 500), ("2.25", 2250), (" 3 ", 3000), (4, 4000)]
)
def test_cpu_cores_are_exact_decimals(text: object, millicores: int) -> None:
    assert parse_cpu_cores(text, "limits.cpu_cores") == millicores
    assert parse_cpu_cores(format_cpu_cores(millicores), "x") == millicores
