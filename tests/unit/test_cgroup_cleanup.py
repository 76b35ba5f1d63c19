"""After a container exits, the engine's cgroups go but ours stay until the evidence is read.

A fork bomb in a container shows only in the hierarchical records of the cgroup that holds the
limit (``pids.peak`` against ``pids.max``): the engine's child, where cgroup v1 counts the failed
forks, is gone with the container. Removing our own directory with the engine's lost that record
and the bomb passed as an ordinary failure.
"""

from __future__ import annotations

from pathlib import Path

from node.executor.cgroups import remove_in_every_hierarchy


def _mountinfo(*mounts: tuple[Path, str]) -> str:
    return "".join(
        f"{30 + n} 25 0:{n} / {point} rw,nosuid - cgroup cgroup rw,{controller}\n"
        for n, (point, controller) in enumerate(mounts)
    )


def test_our_limit_holding_directory_is_kept_and_only_the_engines_below_it_go(tmp_path: Path) -> None:
    pids_mount, cpuset_mount = tmp_path / "pids", tmp_path / "cpuset"
    ours = pids_mount / "dcent-jobs" / "node" / "job-1"
    engine_child = ours / "libpod-abc"
    engine_elsewhere = cpuset_mount / "dcent-jobs" / "node" / "job-1"
    for directory in (engine_child / "nested", engine_elsewhere / "libpod-abc"):
        directory.mkdir(parents=True)

    remove_in_every_hierarchy(
        "/dcent-jobs/node/job-1",
        _mountinfo((pids_mount, "pids"), (cpuset_mount, "cpuset")),
        keep=[ours],
    )

    assert ours.is_dir() and list(ours.iterdir()) == []
    assert not engine_elsewhere.exists()


def test_without_keep_the_whole_path_goes_in_every_hierarchy(tmp_path: Path) -> None:
    mount = tmp_path / "pids"
    job = mount / "dcent-jobs" / "job-2"
    (job / "libpod-def").mkdir(parents=True)
    remove_in_every_hierarchy("/dcent-jobs/job-2", _mountinfo((mount, "pids")))
    assert not job.exists() and (mount / "dcent-jobs").is_dir()
