"""Jobs in a real docker or podman container, when an engine answers on this machine.

The container executors are optional: a node uses one only when its config says
``market.executor = "docker"`` (or ``"podman"``). Where no engine answers, these tests skip,
under CI=true too; the default sandbox, bubblewrap, is tested in test_executor_sandbox.py with
no such skip. The image is ``$DCENT_TEST_CONTAINER_IMAGE`` (default ``busybox:stable``) and
must already be present: the tests never pull.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import trio

from node.executor.container import ENGINES, ContainerExecutor
from node.executor.model import SandboxJob

IMAGE = os.environ.get("DCENT_TEST_CONTAINER_IMAGE", "busybox:stable")
OPTIONAL_BY_CONFIG = (
    "container executors are optional, enabled only by market.executor in the node config, "
    "so this skip is accepted under CI=true as well"
)


@pytest.fixture
def container_executor() -> ContainerExecutor:
    reasons = []
    for engine in ENGINES:
        executor = ContainerExecutor(engine)
        availability = executor.available()
        if not availability:
            reasons.append(availability.reason)
            continue
        inspect = subprocess.run(
            [engine, "image", "inspect", IMAGE], capture_output=True, timeout=30, check=False
        )
        if inspect.returncode == 0:
            return executor
        reasons.append(f"{engine} answers but has no image {IMAGE} (the tests never pull)")
    pytest.skip(f"no usable container engine here ({'; '.join(reasons)}); {OPTIONAL_BY_CONFIG}")


def _job(work_root: Path, script: str, **overrides: object) -> SandboxJob:
    fields: dict[str, object] = {
        "job_id": "container-job",
        "argv": ("sh", "-c", script),
        "work_root": work_root,
        "image": IMAGE,
        "timeout_s": 60.0,
        "grace_s": 1.0,
    }
    fields.update(overrides)
    return SandboxJob(**fields)  # type: ignore[arg-type]


async def test_container_job_records_stdout_exit_status_and_outputs(
    container_executor: ContainerExecutor, tmp_path: Path
) -> None:
    script = "cat in.txt; printf done > out/result.txt; exit 3"
    job = _job(tmp_path / "jobs", script, input_files={"in.txt": b"hello\n"})
    with trio.fail_after(120):
        result = await container_executor.run(job)
    assert result.exit_code == 3 and result.stdout == b"hello\n"
    assert result.output_files == {"result.txt": b"done"}
    assert list((tmp_path / "jobs").iterdir()) == []


async def test_container_has_only_a_loopback_and_a_read_only_root(
    container_executor: ContainerExecutor, tmp_path: Path
) -> None:
    script = (
        "ls /sys/class/net; touch /escape 2>/dev/null && echo root-writable; touch /work/ok && echo work-ok"
    )
    with trio.fail_after(120):
        result = await container_executor.run(_job(tmp_path / "jobs", script))
    assert result.stdout.split() == [b"lo", b"work-ok"]


async def test_container_job_is_stopped_at_the_timeout(
    container_executor: ContainerExecutor, tmp_path: Path
) -> None:
    with trio.fail_after(120):
        result = await container_executor.run(_job(tmp_path / "jobs", "sleep 1000", timeout_s=2.0))
    assert result.timed_out and not result.succeeded
