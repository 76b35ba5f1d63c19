"""Finding the cgroup hierarchies and writing a job's limits, v1 and v2.

The kernel's enforcement is tested for real in test_executor_limits.py (on whatever this host
mounts: cgroup v1 on the development machine). The v2 paths, which no machine here mounts with
the memory controller, are checked against a directory tree laid out like cgroupfs: which files
are written with what, which processes move where.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from node.executor.cgroups import (
    CgroupError,
    CgroupHost,
    CgroupManager,
    Hierarchy,
    JobCgroup,
    at_roots,
    discover,
    parse_mountinfo,
    parse_proc_cgroup,
    prepare_v2,
)
from node.executor.limits import LimitKind, ResourceLimits

HYBRID_MOUNTINFO = """\
25 30 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw
28 25 0:25 / /sys/fs/cgroup/memory rw,nosuid shared:13 - cgroup cgroup rw,memory
29 25 0:26 / /sys/fs/cgroup/pids rw,nosuid shared:14 - cgroup cgroup rw,pids
30 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:15 - cgroup cgroup rw,cpu,cpuacct
31 25 0:28 / /sys/fs/cgroup/with\\040space rw - cgroup cgroup rw,freezer
"""
HYBRID_PROC_CGROUP = """\
12:pids:/system.slice/dcent.service
4:memory:/system.slice/dcent.service
3:cpu,cpuacct:/system.slice/dcent.service
1:freezer:/
0::/system.slice/dcent.service
"""
LIMITS = ResourceLimits(memory_bytes=2**30, cpu_millicores=1500, processes=256)


def test_mountinfo_and_proc_cgroup_are_parsed() -> None:
    mounts = parse_mountinfo(HYBRID_MOUNTINFO)
    assert ("/sys/fs/cgroup/unified", "cgroup2", frozenset({"rw"})) in mounts
    assert ("/sys/fs/cgroup/cpu,cpuacct", "cgroup", frozenset({"rw", "cpu", "cpuacct"})) in mounts
    assert ("/sys/fs/cgroup/with space", "cgroup", frozenset({"rw", "freezer"})) in mounts
    assert all(fstype in ("cgroup", "cgroup2") for _, fstype, _ in mounts)
    paths = parse_proc_cgroup(HYBRID_PROC_CGROUP)
    assert paths["memory"] == paths["cpuacct"] == paths[""] == "/system.slice/dcent.service"
    assert paths["freezer"] == "/"


def test_a_hybrid_host_uses_v1_for_the_controllers_on_v1() -> None:
    host = discover(HYBRID_MOUNTINFO, HYBRID_PROC_CGROUP)
    assert host.hierarchies["memory"] == Hierarchy(
        1, Path("/sys/fs/cgroup/memory/system.slice/dcent.service"), Path("/sys/fs/cgroup/memory")
    )
    assert host.hierarchies["cpu"].own_dir == Path("/sys/fs/cgroup/cpu,cpuacct/system.slice/dcent.service")
    assert host.hierarchies["pids"].version == 1
    assert host.version_label == "v1" and host.missing == {}


def _v2_tree(tmp_path: Path, controllers: str = "cpu memory pids") -> tuple[Path, str, str]:
    mount = tmp_path / "cgroup"
    own = mount / "system.slice" / "dcent.service"
    own.mkdir(parents=True)
    for directory in (mount, own):
        (directory / "cgroup.controllers").write_text(controllers + "\n")
        (directory / "cgroup.subtree_control").write_text("")
        (directory / "cgroup.procs").write_text("")
    mountinfo = f"40 1 0:30 / {mount} rw - cgroup2 cgroup2 rw\n"
    return own, mountinfo, "0::/system.slice/dcent.service\n"


def test_a_v2_host_offers_the_controllers_delegated_to_the_node(tmp_path: Path) -> None:
    own, mountinfo, proc_cgroup = _v2_tree(tmp_path, controllers="cpu pids")
    host = discover(mountinfo, proc_cgroup)
    assert {c: h.version for c, h in host.hierarchies.items()} == {"cpu": 2, "pids": 2}
    assert host.hierarchies["pids"].own_dir == own
    assert "Delegate=yes" in host.missing["memory"]


def test_v2_moves_a_lone_node_into_a_leaf_and_delegates_the_controllers(tmp_path: Path) -> None:
    own, _mountinfo, _proc = _v2_tree(tmp_path)
    (own / "cgroup.procs").write_text("4242\n")
    jobs = prepare_v2(own, ["memory", "pids", "cpu"], 4242)
    assert jobs == own / "dcent-jobs"
    assert (own / "dcent-node" / "cgroup.procs").read_text() == "4242"
    assert (own / "cgroup.subtree_control").read_text() == "+cpu +memory +pids"
    assert (jobs / "cgroup.subtree_control").read_text() == "+cpu +memory +pids"


def test_v2_refuses_to_move_processes_that_are_not_the_node(tmp_path: Path) -> None:
    own, _mountinfo, _proc = _v2_tree(tmp_path)
    (own / "cgroup.procs").write_text("4242\n777\n")
    with pytest.raises(CgroupError) as caught:
        prepare_v2(own, ["memory"], 4242)
    assert "777" in str(caught.value) and "Delegate=yes" in str(caught.value)
    assert not (own / "dcent-node").exists() and (own / "cgroup.subtree_control").read_text() == ""


def test_v2_at_the_root_enables_controllers_without_moving_anything(tmp_path: Path) -> None:
    own, _mountinfo, _proc = _v2_tree(tmp_path)
    root = own.parent.parent
    (root / "cgroup.procs").write_text("1\n2\n3\n")
    jobs = prepare_v2(root, ["pids"], 4242, is_root=True)
    assert jobs == root / "dcent-jobs" and (root / "cgroup.subtree_control").read_text() == "+pids"


def _files(directory: Path, names: dict[str, str]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in names.items():
        (directory / name).write_text(content)


def test_limits_are_written_in_each_version_s_own_files(tmp_path: Path) -> None:
    v2 = tmp_path / "v2"
    _files(
        v2,
        {
            "memory.max": "max",
            "memory.swap.max": "max",
            "memory.oom.group": "0",
            "pids.max": "max",
            "cpu.max": "max 100000",
        },
    )
    JobCgroup({c: Hierarchy(2, v2) for c in ("memory", "pids", "cpu")}).apply(LIMITS)
    assert (v2 / "memory.max").read_text() == str(2**30)
    assert (v2 / "memory.swap.max").read_text() == "0"
    assert (v2 / "memory.oom.group").read_text() == "1"
    assert (v2 / "pids.max").read_text() == "256"
    assert (v2 / "cpu.max").read_text() == "150000 100000"

    memory, pids, cpu = tmp_path / "memory", tmp_path / "pids", tmp_path / "cpu"
    _files(memory, {"memory.limit_in_bytes": "", "memory.memsw.limit_in_bytes": ""})
    _files(pids, {"pids.max": ""})
    _files(cpu, {"cpu.cfs_period_us": "", "cpu.cfs_quota_us": ""})
    JobCgroup({"memory": Hierarchy(1, memory), "pids": Hierarchy(1, pids), "cpu": Hierarchy(1, cpu)}).apply(
        LIMITS
    )
    assert (memory / "memory.limit_in_bytes").read_text() == str(2**30)
    assert (memory / "memory.memsw.limit_in_bytes").read_text() == str(2**30)
    assert (pids / "pids.max").read_text() == "256"
    assert ((cpu / "cpu.cfs_period_us").read_text(), (cpu / "cpu.cfs_quota_us").read_text()) == (
        "100000",
        "150000",
    )


def test_events_count_what_the_kernel_enforced_in_the_cgroup_and_below(tmp_path: Path) -> None:
    v1_memory, v1_pids = tmp_path / "memory", tmp_path / "pids"
    _files(
        v1_memory,
        {
            "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
            "memory.max_usage_in_bytes": "4096",
        },
    )
    # A container engine's child cgroup: v1 counts the OOM kill there, not where the limit is.
    _files(v1_memory / "libpod-1", {"memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"})
    _files(v1_pids, {"pids.events": "max 0\n", "pids.peak": "256", "pids.max": "256"})
    cgroup = JobCgroup({"memory": Hierarchy(1, v1_memory), "pids": Hierarchy(1, v1_pids)})
    events = cgroup.events()
    assert (events.oom_kills, events.pids_max, events.peak_memory_bytes) == (2, 0, 4096)
    assert events.limit_hit() is LimitKind.MEMORY
    assert cgroup.limits_reached() == (False, True)  # pids.peak reached pids.max

    v2 = tmp_path / "v2"
    _files(
        v2,
        {
            "memory.events": "low 0\nhigh 0\nmax 7\noom 1\noom_kill 0\n",
            "pids.events": "max 3\n",
            "memory.peak": "99",
        },
    )
    both = JobCgroup({"memory": Hierarchy(2, v2), "pids": Hierarchy(2, v2)})
    assert both.events().limit_hit() is LimitKind.PROCESSES
    assert both.limits_reached()[0] is True


def test_the_manager_sweeps_job_cgroups_a_dead_node_left(tmp_path: Path) -> None:
    pids_mount = tmp_path / "pids"
    own = pids_mount / "node"
    leftover = own / "dcent-jobs" / "owner1" / "job-1-abcd"
    leftover.mkdir(parents=True)  # an empty cgroup: its processes died with the node
    other_owner = own / "dcent-jobs" / "owner2" / "job-2-abcd"
    other_owner.mkdir(parents=True)
    host = CgroupHost(hierarchies={"pids": Hierarchy(1, own, pids_mount)})
    manager = CgroupManager(host, owner="owner1")
    bases = manager.prepare()
    assert not leftover.exists() and other_owner.exists()
    assert bases["pids"].own_dir == own / "dcent-jobs" / "owner1"


def test_container_cgroups_sit_at_one_path_below_every_root() -> None:
    host = discover(HYBRID_MOUNTINFO, HYBRID_PROC_CGROUP)
    roots = at_roots(host)
    assert roots.hierarchies["memory"].own_dir == Path("/sys/fs/cgroup/memory")
    cgroup = JobCgroup(
        {
            controller: Hierarchy(1, h.own_dir / "dcent-jobs" / "o" / "job-1", h.mount)
            for controller, h in roots.hierarchies.items()
        }
    )
    assert cgroup.relative_path() == "/dcent-jobs/o/job-1"
    mixed = JobCgroup(
        {"memory": Hierarchy(1, Path("/m/a"), Path("/m")), "pids": Hierarchy(1, Path("/p/b"), Path("/p"))}
    )
    assert mixed.relative_path() is None
