"""The sandboxes' command lines, built by pure functions, and the container engine probe."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from node.executor.base import job_environment
from node.executor.bubblewrap import (
    HostLayout,
    SandboxMounts,
    build_bwrap_argv,
    probe_host_layout,
    split_for_args_fd,
)
from node.executor.container import (
    ContainerExecutor,
    EngineOptions,
    build_container_argv,
    cdi_gpu_names,
    env_file_content,
)
from node.executor.errors import (
    InvalidEnvironment,
    InvalidImage,
    InvalidSandboxConfig,
    SandboxToolMissing,
    WorkspaceError,
)
from node.executor.limits import ResourceLimits
from node.executor.model import SandboxJob

LAYOUT = HostLayout(
    system_symlinks=(("/bin", "usr/bin"), ("/lib", "usr/lib")),
    system_dirs=("/lib64",),
    gpu_control_nodes=("/dev/nvidiactl", "/dev/nvidia-uvm"),
)
MOUNTS = SandboxMounts(
    work="/srv/jobs/j-1/work",
    tmp="/srv/jobs/j-1/tmp",
    shm="/srv/jobs/j-1/shm",
    passwd="/srv/jobs/j-1/config/passwd",
    group="/srv/jobs/j-1/config/group",
)


def _job(**overrides: object) -> SandboxJob:
    fields: dict[str, object] = {
        "job_id": "j-1",
        "argv": ("python3", "train.py", "--epochs", "3"),
        "work_root": Path("/srv/jobs"),
        "env": {"SEED": "7"},
        "gpu_uuids": ("GPU-11111111-aaaa", "GPU-33333333-cccc"),
        "gpu_device_paths": ("/dev/nvidia1", "/dev/nvidia3"),
    }
    fields.update(overrides)
    return SandboxJob(**fields)  # type: ignore[arg-type]


def _pairs(argv: list[str], flag: str) -> list[tuple[str, str]]:
    return [(argv[i + 1], argv[i + 2]) for i, item in enumerate(argv) if item == flag]


def _bwrap_argv(job: SandboxJob, **kwargs: object) -> list[str]:
    return build_bwrap_argv(
        bwrap="/usr/bin/bwrap",
        job=job,
        layout=LAYOUT,
        mounts=MOUNTS,
        env=job_environment(job, home="/work", tmpdir="/tmp"),
        **kwargs,  # type: ignore[arg-type]
    )


# --- bubblewrap ----------------------------------------------------------------------------------
def test_bwrap_binds_only_the_sold_gpus_and_the_control_nodes() -> None:
    argv = _bwrap_argv(_job())
    assert _pairs(argv, "--dev-bind") == [
        ("/dev/nvidia1", "/dev/nvidia1"),
        ("/dev/nvidia3", "/dev/nvidia3"),
        ("/dev/nvidiactl", "/dev/nvidiactl"),
        ("/dev/nvidia-uvm", "/dev/nvidia-uvm"),
    ]
    assert "/dev/nvidia0" not in argv and "/dev/nvidia2" not in argv
    # The device binds land on the private /dev, which is then made read-only.
    dev = argv.index("--dev")
    assert argv[dev + 1] == "/dev"
    assert all(dev < i for i, item in enumerate(argv) if item == "--dev-bind")
    assert argv.index("--remount-ro") > max(i for i, item in enumerate(argv) if item == "--dev-bind")


def test_bwrap_binds_no_gpu_nodes_for_a_job_without_gpus() -> None:
    argv = _bwrap_argv(_job(gpu_uuids=(), gpu_device_paths=()))
    assert _pairs(argv, "--dev-bind") == []
    assert not any(item.startswith("/dev/nvidia") for item in argv)


def test_bwrap_isolates_namespaces_capabilities_and_the_session() -> None:
    argv = _bwrap_argv(_job())
    for flag in ("--unshare-all", "--unshare-user", "--die-with-parent", "--new-session", "--clearenv"):
        assert flag in argv
    assert argv[argv.index("--cap-drop") + 1] == "ALL"
    assert argv[argv.index("--uid") + 1] == "1000"
    assert "--share-net" not in argv


def test_bwrap_root_is_read_only_pieces_and_the_work_dir_is_the_writable_place() -> None:
    argv = _bwrap_argv(_job())
    assert ("/usr", "/usr") in _pairs(argv, "--ro-bind")
    assert ("/", "/") not in _pairs(argv, "--ro-bind")
    assert ("/lib64", "/lib64") in _pairs(argv, "--ro-bind")
    assert ("usr/bin", "/bin") in _pairs(argv, "--symlink")
    assert (MOUNTS.passwd, "/etc/passwd") in _pairs(argv, "--ro-bind")
    assert _pairs(argv, "--bind") == [(MOUNTS.shm, "/dev/shm"), (MOUNTS.work, "/work"), (MOUNTS.tmp, "/tmp")]
    remounts = [argv[i + 1] for i, item in enumerate(argv) if item == "--remount-ro"]
    assert remounts == ["/dev", "/"]
    root_remount = max(i for i, item in enumerate(argv) if item == "--remount-ro")
    assert argv[root_remount + 1] == "/" and root_remount > argv.index(MOUNTS.work)
    assert argv[argv.index("--chdir") + 1] == "/work"


def test_bwrap_environment_is_exactly_the_job_environment_after_clearenv() -> None:
    argv = _bwrap_argv(_job())
    clearenv = argv.index("--clearenv")
    settings = dict(_pairs(argv, "--setenv"))
    assert all(clearenv < i for i, item in enumerate(argv) if item == "--setenv")
    assert settings == {
        "CUDA_VISIBLE_DEVICES": "GPU-11111111-aaaa,GPU-33333333-cccc",
        "HOME": "/work",
        "LANG": "C.UTF-8",
        "LOGNAME": "sandbox",
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "PWD": "/work",
        "SEED": "7",
        "TMPDIR": "/tmp",
        "USER": "sandbox",
    }


def test_bwrap_command_follows_the_separator_verbatim() -> None:
    job = _job(argv=("sh", "-c", "--not-an-option; echo $HOME"))
    argv = _bwrap_argv(job, status_fd=9, extra_ro_binds=("/opt/cuda",))
    assert argv[0] == "/usr/bin/bwrap"
    separator = argv.index("--")
    assert argv[separator + 1 :] == ["sh", "-c", "--not-an-option; echo $HOME"]
    assert argv[argv.index("--json-status-fd") + 1] == "9"
    assert ("/opt/cuda", "/opt/cuda") in _pairs(argv, "--ro-bind")


def test_host_layout_probe_reports_this_hosts_system_directories() -> None:
    layout = probe_host_layout()
    for path, target in layout.system_symlinks:
        assert Path(path).is_symlink() and str(Path(path).readlink()) == target
    for path in layout.system_dirs:
        assert Path(path).is_dir() and not Path(path).is_symlink()
    assert all(Path(node).exists() for node in layout.gpu_control_nodes)
    assert layout.system_symlinks or layout.system_dirs


def test_bwrap_options_travel_in_the_args_fd_and_only_the_job_argv_stays_visible() -> None:
    job = _job(env={"HF_TOKEN": "hf_secret", "SEED": "7"}, argv=("sh", "-c", "--"))
    argv = _bwrap_argv(job, status_fd=9)
    options, command = split_for_args_fd(argv, job)
    assert command == ["--", "sh", "-c", "--"]
    assert "hf_secret" in options and MOUNTS.work in options
    assert options == argv[1 : len(argv) - len(command)]


# --- docker / podman -----------------------------------------------------------------------------
def _container_argv(engine: str, job: SandboxJob | None = None, **kwargs: object) -> list[str]:
    job = job or _job(image="registry.example/ml/train:1.2")
    return build_container_argv(
        engine=engine,
        engine_path=f"/usr/bin/{engine}",
        container_name="dcent-j-1-abcd",
        image=job.image,
        job=job,
        work_dir="/srv/jobs/j-1/work",
        tmp_dir="/srv/jobs/j-1/tmp",
        env_file="/srv/jobs/j-1/config/env",
        user="1001:1001",
        **kwargs,  # type: ignore[arg-type]
    )


LIMITS = ResourceLimits(memory_bytes=2**30, cpu_millicores=1500, processes=512, disk_bytes=4 * 2**30)


def test_docker_argv_has_no_network_a_read_only_root_and_gpus_by_uuid() -> None:
    argv = _container_argv("docker", _job(image="registry.example/ml/train:1.2", limits=LIMITS))
    assert argv[:2] == ["/usr/bin/docker", "run"] and "--rm" not in argv  # inspected, then removed
    assert argv[argv.index("--network") + 1] == "none"
    assert "--read-only" in argv and "--init" in argv and "--read-only-tmpfs=false" not in argv
    assert argv[argv.index("--cap-drop") + 1] == "ALL"
    assert argv[argv.index("--gpus") + 1] == '"device=GPU-11111111-aaaa,GPU-33333333-cccc"'
    assert "--device" not in argv and "--runtime" not in argv
    assert argv[argv.index("--user") + 1] == "1001:1001"
    assert argv[argv.index("--stop-timeout") + 1] == "10"
    # The engine's own cgroup holds the limits; no swap beyond the memory limit.
    assert argv[argv.index("--memory") + 1] == argv[argv.index("--memory-swap") + 1] == str(2**30)
    assert argv[argv.index("--pids-limit") + 1] == "512" and argv[argv.index("--cpus") + 1] == "1.500"
    ulimits = [argv[i + 1] for i, item in enumerate(argv) if item == "--ulimit"]
    assert ulimits == ["nofile=4096:4096", "nproc=32768:32768", f"fsize={4 * 2**30}:{4 * 2**30}"]
    volumes = [argv[i + 1] for i, item in enumerate(argv) if item == "--volume"]
    assert volumes == ["/srv/jobs/j-1/work:/work:rw", "/srv/jobs/j-1/tmp:/tmp:rw"]
    # The environment is in a file, never on the command line.
    assert argv[argv.index("--env-file") + 1] == "/srv/jobs/j-1/config/env"
    assert "--env" not in argv and not any("SEED" in item for item in argv)
    image = argv.index("registry.example/ml/train:1.2")
    assert argv[image + 1 :] == ["python3", "train.py", "--epochs", "3"]


def test_podman_argv_uses_runc_cdi_gpus_and_our_cgroup_parent() -> None:
    job = _job(image="registry.example/ml/train:1.2", limits=LIMITS)
    argv = _container_argv(
        "podman",
        job,
        keep_user_id=True,
        options=EngineOptions(runtime="runc", nofile=1024, nproc=4096),
        cgroup_parent="/dcent-jobs/o/j-1-abcd",
    )
    assert argv[:4] == ["/usr/bin/podman", "--runtime", "runc", "run"]
    assert argv[argv.index("--network") + 1] == "none" and "--read-only-tmpfs=false" in argv
    assert argv[argv.index("--image-volume") + 1] == "ignore"  # review 39 F6
    assert "--gpus" not in argv
    devices = [argv[i + 1] for i, item in enumerate(argv) if item == "--device"]
    assert devices == ["nvidia.com/gpu=GPU-11111111-aaaa", "nvidia.com/gpu=GPU-33333333-cccc"]
    assert argv[argv.index("--userns") + 1] == "keep-id"
    # Under our cgroup the limits are already written: the engine gets none of its own.
    assert argv[argv.index("--cgroup-parent") + 1] == "/dcent-jobs/o/j-1-abcd"
    assert "--memory" not in argv and "--pids-limit" not in argv and "--cpus" not in argv
    ulimits = [argv[i + 1] for i, item in enumerate(argv) if item == "--ulimit"]
    assert ulimits == ["nofile=1024:1024", "nproc=4096:4096", f"fsize={4 * 2**30}:{4 * 2**30}"]


def test_container_argv_requests_gpus_only_for_real_devices() -> None:
    no_gpus = _job(image="busybox:stable", gpu_uuids=(), gpu_device_paths=())
    assert "--gpus" not in _container_argv("docker", no_gpus)
    simulated = _job(image="busybox:stable", gpu_uuids=("GPU-11111111-aaaa",), gpu_device_paths=())
    for engine in ("docker", "podman"):
        argv = _container_argv(engine, simulated)
        assert "--gpus" not in argv and "--device" not in argv


def test_env_file_holds_the_environment_and_refuses_newlines() -> None:
    assert env_file_content({"B": "2", "A": "x=y z"}) == b"A=x=y z\nB=2\n"
    with pytest.raises(InvalidEnvironment):
        env_file_content({"TOKEN": "line1\nINJECTED=1"})


def test_cdi_specs_name_the_gpus_they_expose(tmp_path: Path) -> None:
    (tmp_path / "nvidia.yaml").write_text(
        "cdiVersion: 0.5.0\nkind: nvidia.com/gpu\ndevices:\n- name: GPU-11111111-aaaa\n- name: MIG-22/1/0\n"
    )
    (tmp_path / "other.yaml").write_text("kind: vendor.com/fpga\ndevices:\n- name: GPU-ffffffff-ffff\n")
    assert cdi_gpu_names((str(tmp_path), str(tmp_path / "absent"))) == {"GPU-11111111-aaaa", "MIG-22/1/0"}


def test_container_argv_refuses_paths_that_break_volume_syntax() -> None:
    job = _job(image="busybox:stable")
    with pytest.raises(WorkspaceError):
        build_container_argv(
            engine="docker",
            engine_path="/usr/bin/docker",
            container_name="c",
            image=job.image,
            job=job,
            work_dir="/srv/a:b/work",
            tmp_dir="/srv/tmp",
            env_file="/srv/env",
            user="0:0",
        )
    with pytest.raises(InvalidSandboxConfig):
        _container_argv("lxc")


def _fake_engine(tmp_path: Path, name: str, script: str) -> str:
    path = tmp_path / name
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_container_probe_reports_an_engine_that_does_not_answer(tmp_path: Path) -> None:
    engine = _fake_engine(
        tmp_path,
        "docker",
        'echo "Cannot connect to the Docker daemon at unix:///var/run/docker.sock." >&2; exit 1',
    )
    availability = ContainerExecutor("docker", engine_path=engine).available()
    assert not availability
    assert "Cannot connect to the Docker daemon" in availability.reason


def test_container_probe_accepts_an_engine_that_answers(tmp_path: Path) -> None:
    engine = _fake_engine(tmp_path, "podman", 'test "$1" = info && echo "{}"')
    assert ContainerExecutor("podman", engine_path=engine).available()


def test_container_probe_reports_a_missing_engine(tmp_path: Path) -> None:
    availability = ContainerExecutor("docker", engine_path=str(tmp_path / "no-such-docker")).available()
    assert not availability and "could not be run" in availability.reason


async def test_container_run_refuses_when_the_engine_does_not_answer(tmp_path: Path) -> None:
    engine = _fake_engine(tmp_path, "docker", "exit 1")
    executor = ContainerExecutor("docker", engine_path=engine)
    job = _job(image="busybox:stable", work_root=tmp_path / "jobs")
    with pytest.raises(SandboxToolMissing) as caught:
        await executor.run(job)
    assert caught.value.code == 5351
    assert not (tmp_path / "jobs").exists()


async def test_container_run_needs_an_image(tmp_path: Path) -> None:
    engine = _fake_engine(tmp_path, "docker", "exit 0")
    executor = ContainerExecutor("docker", engine_path=engine)
    with pytest.raises(InvalidImage):
        await executor.run(_job(work_root=tmp_path / "jobs"))
    assert not (tmp_path / "jobs").exists()
