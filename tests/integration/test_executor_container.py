"""Jobs in real podman containers, from an image built here: limits, outcome classes, secrets.

No registry is reachable, so the image is assembled locally: the host's own Debian-packaged
``dash``, coreutils and the shared libraries they load, imported with ``podman import``. These
tests skip only where podman is not installed; where it is installed and cannot run, they fail
under CI=true. (docker is covered by the command-line tests in test_executor_argv.py.)
"""

from __future__ import annotations

import bz2
import functools
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trio

from node.executor.base import run_to_outcome
from node.executor.container import ContainerExecutor
from node.executor.errors import ImageArchiveInvalid, ImageNameNotTrusted, ImageNotAvailable
from node.executor.images import id_reference
from node.executor.limits import LimitKind, ResourceLimits
from node.executor.model import ExecutionResult, Outcome, SandboxJob
from node.executor.process import OutputLine
from node.executor.selftest import self_test
from node.executor.settings import ExecutorSettings
from tests.integration.executor_helpers import FORK_BOMB, podman_executor_or_skip, require_limits

MiB = 2**20
RUN_DEADLINE_S = 120
TOOLS = (
    "dash",
    "cat",
    "head",
    "tail",
    "ls",
    "echo",
    "printf",
    "touch",
    "mkdir",
    "id",
    "dd",
    "sleep",
    "true",
    "stat",
    "grep",
)
LIMITS = ResourceLimits(memory_bytes=64 * MiB, cpu_millicores=1000, processes=32, disk_bytes=32 * MiB)
ROOMY = ResourceLimits(memory_bytes=1024 * MiB, cpu_millicores=1000, processes=512, disk_bytes=64 * MiB)


def _image_tar(marker: bytes | None = None) -> bytes:
    """A root filesystem tar: the tools, their libraries (from ldd), merged-/usr symlinks;
    ``marker``: the content of ``/etc/dcent-marker`` (images that differ)."""
    binaries = [shutil.which(tool, path="/usr/bin:/bin") for tool in TOOLS]
    paths = {path for path in binaries if path is not None}
    for binary in sorted(paths.copy()):
        listing = subprocess.run(["ldd", binary], capture_output=True, text=True, check=False).stdout
        paths.update(word for word in listing.split() if word.startswith("/"))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name in (
            "usr",
            "usr/bin",
            "usr/lib",
            "usr/lib64",
            "etc",
            "tmp",
            "work",
            "proc",
            "sys",
            "dev",
            "run",
        ):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for name, target in (
            ("bin", "usr/bin"),
            ("lib", "usr/lib"),
            ("lib64", "usr/lib64"),
            ("usr/bin/sh", "dash"),
        ):
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
        for path in sorted(paths):
            name = path.lstrip("/")
            if name.startswith(("lib/", "lib64/", "bin/")):
                name = "usr/" + name
            real = os.path.realpath(path)
            info = tar.gettarinfo(real, arcname=name)
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            with open(real, "rb") as handle:
                tar.addfile(info, handle)
        if marker is not None:
            info = tarfile.TarInfo("etc/dcent-marker")
            info.size, info.mode = len(marker), 0o644
            tar.addfile(info, io.BytesIO(marker))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def podman() -> ContainerExecutor:
    return podman_executor_or_skip(LIMITS)


def _import(tar: bytes, name: str) -> str:
    """``podman import`` a root filesystem as ``localhost/<name>:<hash>`` (once); returns the tag."""
    tag = f"localhost/{name}:{hashlib.sha256(tar).hexdigest()[:12]}"
    present = subprocess.run(["podman", "image", "exists", tag], check=False, timeout=60)
    if present.returncode != 0:
        subprocess.run(
            ["podman", "import", "-q", "-", tag], input=tar, check=True, capture_output=True, timeout=300
        )
    return tag


def _image_id(reference: str) -> str:
    done = subprocess.run(
        ["podman", "image", "inspect", "--format", "{{.Id}}", reference],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.stdout.strip()


def _podman(*args: str) -> None:
    subprocess.run(["podman", *args], check=True, capture_output=True, timeout=300)


def _names(image_id: str) -> list[str] | None:
    """The names the engine's image ``image_id`` carries; None when the engine has no such image."""
    done = subprocess.run(
        ["podman", "image", "inspect", "--format", "{{json .RepoTags}}", f"sha256:{image_id}"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    return (json.loads(done.stdout) or []) if done.returncode == 0 else None


@pytest.fixture(scope="module")
def image_tag(podman: ContainerExecutor) -> str:
    return _import(_image_tar(), "dcent-test-base")


@pytest.fixture(scope="module")
def image(image_tag: str) -> str:
    """The test image by ID: what container jobs run (a tag is refused unless allowed)."""
    return id_reference(_image_id(image_tag))


@pytest.fixture
def work_root(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "jobs"
    yield root
    assert not root.exists() or list(root.iterdir()) == []
    # No container of ours is left behind, whatever happened.
    listing = subprocess.run(
        ["podman", "ps", "--all", "--quiet", "--filter", "label=dcent.job"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert listing.stdout.split() == []


def _job(work_root: Path, image: str, script: str, **overrides: object) -> SandboxJob:
    fields: dict[str, object] = {
        "job_id": "container-job",
        "argv": ("sh", "-c", script),
        "work_root": work_root,
        "image": image,
        "timeout_s": 60.0,
        "grace_s": 1.0,
        "limits": LIMITS,
    }
    fields.update(overrides)
    return SandboxJob(**fields)  # type: ignore[arg-type]


async def _run(executor: ContainerExecutor, job: SandboxJob) -> ExecutionResult:
    with trio.fail_after(RUN_DEADLINE_S):
        return await executor.run(job)


async def test_a_container_job_records_its_exit_status_and_outputs(
    podman: ContainerExecutor, image: str, work_root: Path
) -> None:
    script = "cat in.txt; printf done > out/result.txt; echo oops >&2; exit 3"
    result = await _run(podman, _job(work_root, image, script, input_files={"in.txt": b"hello\n"}))
    assert (result.outcome, result.exit_code) == (Outcome.JOB_FAILED, 3)
    assert result.stdout == b"hello\n" and result.stderr == b"oops\n"
    assert result.output_files == {"result.txt": b"done"} and result.executor == "podman"


async def test_a_container_has_no_network_a_read_only_root_and_the_nodes_uid(
    podman: ContainerExecutor, image: str, work_root: Path
) -> None:
    script = (
        "ls /sys/class/net; touch /escape 2>/dev/null && echo root-writable; "
        "touch /work/ok && echo work-ok; touch /tmp/ok && echo tmp-ok; id -u"
    )
    result = await _run(podman, _job(work_root, image, script))
    assert result.outcome is Outcome.COMPLETED, result.stderr
    assert result.stdout.split() == [b"lo", b"work-ok", b"tmp-ok", str(os.getuid()).encode()]


async def test_a_container_job_is_stopped_at_its_timeout(
    podman: ContainerExecutor, image: str, work_root: Path
) -> None:
    result = await _run(podman, _job(work_root, image, "sleep 1000", timeout_s=2.0))
    assert result.outcome is Outcome.TIMED_OUT and result.timed_out


async def test_container_limits_stop_a_memory_hog_a_fork_bomb_and_a_disk_filler(
    podman: ContainerExecutor, image: str, work_root: Path
) -> None:
    require_limits(podman, *LimitKind)
    hog = "head -c 256M /dev/zero | tail > /dev/null; echo survived"
    memory = await _run(podman, _job(work_root, image, hog))
    assert (memory.outcome, memory.limit) == (Outcome.LIMIT_EXCEEDED, LimitKind.MEMORY), memory
    roomy = await _run(podman, _job(work_root, image, hog, limits=ROOMY))
    assert roomy.outcome is Outcome.COMPLETED and roomy.stdout == b"survived\n"

    bomb = await _run(podman, _job(work_root, image, FORK_BOMB))
    assert (bomb.outcome, bomb.limit) == (Outcome.LIMIT_EXCEEDED, LimitKind.PROCESSES), bomb
    assert not bomb.timed_out

    filler = await _run(
        podman, _job(work_root, image, "head -c 100M /dev/zero > out/big", output_cap_bytes=MiB)
    )
    assert (filler.outcome, filler.limit) == (Outcome.LIMIT_EXCEEDED, LimitKind.DISK), filler
    fits = await _run(podman, _job(work_root, image, "head -c 1M /dev/zero > out/small"))
    assert fits.outcome is Outcome.COMPLETED and fits.output_files == {"small": b"\0" * MiB}


async def test_a_secret_reaches_the_container_through_no_command_line(
    podman: ContainerExecutor, image: str, work_root: Path
) -> None:
    secret = f"hf_{uuid.uuid4().hex}"
    seen: list[bytes] = []
    holders: list[list[int]] = []
    ready = trio.Event()

    async def on_output(line: OutputLine) -> None:
        seen.append(line.data)
        if line.data == b"ready":
            holders.append(
                [
                    int(pid)
                    for pid in os.listdir("/proc")
                    if pid.isdigit() and secret.encode() in _read_cmdline(pid)
                ]
            )
            ready.set()

    job = _job(work_root, image, 'echo "$HF_TOKEN"; echo ready; sleep 60', env={"HF_TOKEN": secret})
    with trio.fail_after(RUN_DEADLINE_S):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(functools.partial(podman.run, job, on_output=on_output))
            await ready.wait()
            nursery.cancel_scope.cancel()
    assert seen[:2] == [secret.encode(), b"ready"]
    assert holders == [[]]


def _read_cmdline(pid: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


async def test_a_volume_the_image_declares_is_no_writable_host_volume(
    podman: ContainerExecutor, work_root: Path
) -> None:
    """Review 39 F6: podman made an image's VOLUME a host volume the job could write despite the
    read-only root, and ``rm --force`` left it behind. With ``--image-volume ignore`` the path is
    part of the read-only root, and no volume is made."""
    tar = _image_tar(b"volume")
    tag = f"localhost/dcent-test-volume:{hashlib.sha256(tar).hexdigest()[:12]}"
    subprocess.run(
        ["podman", "import", "-q", "--change", "VOLUME=/data", "-", tag],
        input=tar,
        check=True,
        capture_output=True,
        timeout=300,
    )
    image_id = _image_id(tag)
    volumes = subprocess.run(["podman", "volume", "ls", "-q"], capture_output=True, text=True, check=True)
    try:
        result = await _run(
            podman, _job(work_root, id_reference(image_id), "echo x > /data/x && echo wrote || echo refused")
        )
        assert result.stdout == b"refused\n", result
        after = subprocess.run(["podman", "volume", "ls", "-q"], capture_output=True, text=True, check=True)
        assert after.stdout == volumes.stdout
    finally:
        _podman("rmi", "--force", image_id)


async def test_an_image_the_provider_lacks_is_refused_before_anything_runs(
    podman: ContainerExecutor, work_root: Path
) -> None:
    missing = "localhost/dcent-no-such-image:0"
    assert not await podman.has_image(missing)
    trusting = ContainerExecutor("podman", settings=ExecutorSettings(allow_local_image_names=True))
    for executor, image in ((trusting, missing), (podman, f"sha256:{'0' * 64}")):
        with pytest.raises(ImageNotAvailable) as caught:
            await _run(executor, _job(work_root, image, "true"))
        assert caught.value.code == 5318
        assert not work_root.exists()


async def test_the_podman_self_test_runs_a_real_container(
    podman: ContainerExecutor, image: str, tmp_path: Path
) -> None:
    with trio.fail_after(RUN_DEADLINE_S):
        report = await self_test(podman, tmp_path / "jobs", image=image)
    assert report.ok, report.summary()
    result = await run_to_outcome(podman, _job(tmp_path / "jobs", image, "exit 0"))
    assert result.outcome is Outcome.COMPLETED


async def test_a_job_naming_its_image_only_by_a_tag_is_refused_unless_the_operator_allows_tags(
    podman: ContainerExecutor, image_tag: str, work_root: Path
) -> None:
    with pytest.raises(ImageNameNotTrusted) as caught:
        await _run(podman, _job(work_root, image_tag, "echo ran"))
    assert caught.value.code == 5322 and "image_archive" in caught.value.message
    assert not work_root.exists()  # refused before anything ran
    trusting = ContainerExecutor("podman", settings=ExecutorSettings(allow_local_image_names=True))
    result = await _run(trusting, _job(work_root, image_tag, "echo ran"))
    assert result.outcome is Outcome.COMPLETED and result.stdout == b"ran\n"


async def test_an_archive_runs_as_the_image_its_config_names_whatever_the_tag_says_later(
    podman: ContainerExecutor, tmp_path: Path, work_root: Path
) -> None:
    """The attack: another job's archive (or anyone) moves the tag between our load and our run.
    The job runs by the ID read from its own archive, so it still runs its own image."""
    evil = _import(_image_tar(b"evil"), "dcent-test-evil")
    tag = f"localhost/dcent-test-train:{uuid.uuid4().hex[:12]}"
    archive, oci = tmp_path / "train.tar", tmp_path / "train-oci.tar"
    # The job's image exists only as an archive: imported, saved in both formats, removed.
    honest = _import(_image_tar(b"honest"), "dcent-test-honest")
    honest_id = _image_id(honest)
    try:
        _podman("tag", honest, tag)
        _podman("save", "--quiet", "--output", str(archive), tag)
        _podman("save", "--quiet", "--format", "oci-archive", "--uncompressed", "--output", str(oci), tag)
        _podman("rmi", "--force", honest_id)
        assert not await podman.has_image(id_reference(honest_id))
        with trio.fail_after(RUN_DEADLINE_S):
            loaded = await podman.load_archive(archive, tag)
            assert loaded == honest_id and _names(loaded) == []  # the archive's tag is not applied
            # Again, in either format, by tag or by ID: the same ID (the engine holds it already).
            assert await podman.load_archive(oci, tag) == loaded
            assert await podman.load_archive(archive, f"sha256:{loaded}") == loaded
        _podman("tag", evil, tag)  # the tag now names another image
        script = "cat /etc/dcent-marker"
        by_id = await _run(podman, _job(work_root, id_reference(loaded), script))
        assert by_id.outcome is Outcome.COMPLETED and by_id.stdout == b"honest", by_id
        trusting = ContainerExecutor("podman", settings=ExecutorSettings(allow_local_image_names=True))
        by_tag = await _run(trusting, _job(work_root, tag, script))
        assert by_tag.stdout == b"evil"  # what trusting the tag would have run
    finally:
        subprocess.run(["podman", "untag", evil, tag], check=False, capture_output=True, timeout=60)
        subprocess.run(["podman", "rmi", "--force", honest_id], check=False, capture_output=True, timeout=60)


async def test_an_archive_whose_layer_or_config_was_tampered_with_is_refused(
    podman: ContainerExecutor, tmp_path: Path
) -> None:
    base = _import(_image_tar(b"tamper-base"), "dcent-test-tamper")
    archive = tmp_path / "a.tar"
    _podman("save", "--quiet", "--output", str(archive), base)
    _podman("rmi", "--force", base)  # else the load is skipped: the engine holds that ID already
    with tarfile.open(archive) as tar:
        members = [(m, tar.extractfile(m).read() if m.isreg() else None) for m in tar.getmembers()]  # type: ignore[union-attr]

    def rewrite(path: Path, change: Callable[[str, bytes], bytes]) -> Path:
        with tarfile.open(path, "w") as out:
            for member, data in members:
                if data is None:
                    out.addfile(member)
                    continue
                data = change(member.name, data)
                member.size = len(data)
                out.addfile(member, io.BytesIO(data))
        return path

    def layer(name: str, data: bytes) -> bytes:
        if not (name.endswith(".tar") and len(data) > 1024):
            return data
        with tarfile.open(fileobj=io.BytesIO(data)) as inner, io.BytesIO() as buffer:
            with tarfile.open(fileobj=buffer, mode="w") as swapped:
                for member in inner.getmembers():
                    content = inner.extractfile(member).read() if member.isreg() else None  # type: ignore[union-attr]
                    if member.name == "etc/dcent-marker":
                        content = b"tampered-base"
                    swapped.addfile(member, io.BytesIO(content) if content is not None else None)
            return buffer.getvalue()

    # A layer that is not the one the config names: refused before the engine sees it.
    with pytest.raises(ImageArchiveInvalid, match="not to the diff_id"):
        with trio.fail_after(RUN_DEADLINE_S):
            await podman.load_archive(rewrite(tmp_path / "layer.tar", layer), base)
    # A config changed under its digest's name: refused before the engine sees it.
    config = rewrite(
        tmp_path / "config.tar",
        lambda name, data: data + b" " if name.endswith(".json") and len(name) == 69 else data,
    )
    with pytest.raises(ImageArchiveInvalid, match="claims digest"):
        await podman.load_archive(config, base)


def _rewritten(archive: Path, out: Path, name: str, change: Callable[[object], object]) -> Path:
    """A copy of ``archive`` with its JSON document ``name`` changed (its names, not its images)."""
    with tarfile.open(archive) as tar, tarfile.open(out, "w") as copy:
        for member in tar.getmembers():
            data = tar.extractfile(member).read() if member.isreg() else None  # type: ignore[union-attr]
            if member.name == name and data is not None:
                data = json.dumps(change(json.loads(data))).encode()
                member.size = len(data)
            copy.addfile(member, io.BytesIO(data) if data is not None else None)
    return out


def _tagged(archive: Path, out: Path, tags: list[str]) -> Path:
    """A ``podman save`` archive whose manifest tags its image ``tags`` instead."""
    return _rewritten(archive, out, "manifest.json", lambda manifest: [{**manifest[0], "RepoTags": tags}])  # type: ignore[index]


def _annotated(archive: Path, out: Path, annotations: dict[str, str]) -> Path:
    """An OCI archive whose index names its image by ``annotations`` instead."""

    def change(index: object) -> object:
        assert isinstance(index, dict)
        return {**index, "manifests": [{**index["manifests"][0], "annotations": annotations}]}

    return _rewritten(archive, out, "index.json", change)


def _archive_only(marker: bytes, name: str, tmp_path: Path) -> tuple[str, Path, Path]:
    """An image the engine does not hold, as a ``podman save`` archive and an OCI archive (so a
    load of it is not skipped): its ID and the two archives."""
    tag = _import(_image_tar(marker), name)
    image_id = _image_id(tag)
    saved, oci = tmp_path / f"{name}.tar", tmp_path / f"{name}-oci.tar"
    _podman("save", "--quiet", "--output", str(saved), tag)
    _podman("save", "--quiet", "--format", "oci-archive", "--uncompressed", "--output", str(oci), tag)
    _podman("rmi", "--force", image_id)
    return image_id, saved, oci


async def test_an_archive_tagged_as_the_operators_image_loads_as_no_name_and_is_removed_after_its_job(
    podman: ContainerExecutor, tmp_path: Path, work_root: Path
) -> None:
    """The attack (review of issue 15): ``podman load`` applied whatever tags an archive carried,
    so a job's archive tagged with the operator's ``container_image`` moved that tag. Now the
    engine loads a rewrite carrying no name: in every spelling of the operator's name the archive
    loads, untagged, and the operator's tag still names the operator's image; the job runs the
    requester's image by its ID, jobs naming no image run the operator's, and once the job has
    ended its image is removed (the operator's, loaded by an archive too, is not)."""
    operator_tag = f"localhost/dcent-test-operator:{uuid.uuid4().hex[:12]}"
    operator_id = _image_id(_import(_image_tar(b"operator"), "dcent-test-operator-base"))
    _podman("tag", operator_id, operator_tag)
    hostile_id, saved, oci = _archive_only(b"hostile", "dcent-test-hostile", tmp_path)
    fresh = f"localhost/dcent-test-fresh:{uuid.uuid4().hex[:12]}"
    operator = ContainerExecutor("podman", settings=ExecutorSettings(container_image=operator_tag))
    marker = "cat /etc/dcent-marker"
    try:
        first = await _run(operator, _job(work_root, "", marker))
        assert first.stdout == b"operator", first
        short = operator_tag.removeprefix("localhost/")
        attempts = {
            "the operator's tag": _tagged(saved, tmp_path / "a.tar", [operator_tag]),
            "its short name, beside a fresh tag": _tagged(saved, tmp_path / "b.tar", [fresh, short]),
            "a registry's name a short-name lookup finds": _tagged(
                saved, tmp_path / "c.tar", [f"quay.io/x/{short}"]
            ),
            "buildkit's annotation": _annotated(
                oci,
                tmp_path / "d.tar",
                {"org.opencontainers.image.ref.name": fresh, "io.containerd.image.name": operator_tag},
            ),
        }
        for what, archive in attempts.items():
            with trio.fail_after(RUN_DEADLINE_S):
                loaded = await operator.load_archive(archive, f"sha256:{hostile_id}")
            assert loaded == hostile_id and _names(hostile_id) == [], what  # loaded, no name
            assert _image_id(operator_tag) == operator_id, what
            ran = await _run(operator, _job(work_root, id_reference(loaded), marker))
            assert ran.stdout == b"hostile", (what, ran)
            assert _names(hostile_id) is None, what  # removed once its job ended
            again = await _run(operator, _job(work_root, "", marker))
            assert again.stdout == b"operator", (what, again)
        assert _names(fresh) is None  # no name of any archive was applied
        # An archive of the operator's own image: present already, so not loaded, and kept.
        own = tmp_path / "own.tar"
        _podman("save", "--quiet", "--output", str(own), operator_id)
        assert await operator.load_archive(own, f"sha256:{operator_id}") == operator_id
        ran = await _run(operator, _job(work_root, id_reference(operator_id), marker))
        assert ran.stdout == b"operator" and _image_id(operator_tag) == operator_id
        with trio.fail_after(RUN_DEADLINE_S):
            report = await self_test(operator, tmp_path / "selftest", image=operator_tag)
        assert report.ok, report.summary()
    finally:
        subprocess.run(
            ["podman", "untag", operator_tag, operator_tag], check=False, capture_output=True, timeout=60
        )
        subprocess.run(["podman", "rmi", "--force", hostile_id], check=False, capture_output=True, timeout=60)


def _layers_replaced(archive: Path, out: Path, change: Callable[[bytes], bytes]) -> Path:
    """A copy of a ``podman save`` archive whose layers are ``change``d (its config unchanged)."""
    with tarfile.open(archive) as tar, tarfile.open(out, "w") as copy:
        layers = json.loads(tar.extractfile("manifest.json").read())[0]["Layers"]  # type: ignore[union-attr]
        for member in tar.getmembers():
            data = tar.extractfile(member).read() if member.isreg() else None  # type: ignore[union-attr]
            if member.name in layers and data is not None:
                data = change(data)
                member.size = len(data)
            copy.addfile(member, io.BytesIO(data) if data is not None else None)
    return out


async def test_an_archive_with_a_compressed_layer_is_refused_and_nothing_is_loaded(
    podman: ContainerExecutor, tmp_path: Path
) -> None:
    """Review 38 (F7): the engine decompresses a gzip, bzip2, xz or zstd layer into its store
    without bound (a few KiB of bzip2 made GiB). Such a layer is refused (5321), its config's
    diff_ids honest, before the engine sees anything."""
    image_id, saved, _oci = _archive_only(b"compressed", "dcent-test-compressed", tmp_path)
    try:
        for compress in (gzip.compress, bz2.compress):
            archive = _layers_replaced(saved, tmp_path / f"{compress.__module__}.tar", compress)
            with pytest.raises(ImageArchiveInvalid, match="-compressed") as caught:
                with trio.fail_after(RUN_DEADLINE_S):
                    await podman.load_archive(archive, f"sha256:{image_id}")
            assert caught.value.code == 5321
            assert _names(image_id) is None  # nothing loaded
        assert list(tmp_path.glob(".dcent-load-*")) == []  # no rewrite left behind
    finally:
        subprocess.run(["podman", "rmi", "--force", image_id], check=False, capture_output=True, timeout=60)


async def test_a_pax_header_archive_moves_no_name(podman: ContainerExecutor, tmp_path: Path) -> None:
    """Review 38 (F2): a PAX global header shows Python's tar reader one manifest.json (a fresh
    tag) and podman's another (the operator's tag). The engine now loads only the rewrite of what
    this reader read: the image loads with no name, the operator's tag does not move."""
    operator_tag = f"localhost/dcent-test-operator:{uuid.uuid4().hex[:12]}"
    operator_id = _image_id(_import(_image_tar(b"operator"), "dcent-test-operator-base"))
    _podman("tag", operator_id, operator_tag)
    hostile_id, saved, _oci = _archive_only(b"pax", "dcent-test-pax", tmp_path)
    fresh = f"localhost/dcent-test-fresh:{uuid.uuid4().hex[:12]}"
    with tarfile.open(saved) as tar:
        entries = [(m.name, tar.extractfile(m).read()) for m in tar.getmembers() if m.isreg()]  # type: ignore[union-attr]
    documents = dict(entries)
    manifest = json.loads(documents["manifest.json"])

    def tagged(tags: list[str]) -> bytes:
        return json.dumps([{**manifest[0], "RepoTags": tags}]).encode()

    pax_header = getattr(tarfile.TarInfo, "_create_pax_generic_header")  # noqa: B009
    archive = tmp_path / "pax.tar"
    with open(archive, "wb") as out:
        blobs = [(None, name, data) for name, data in entries if name != "manifest.json"]
        for python_name, name, data in [
            *blobs,
            ("decoy", "manifest.json", tagged([fresh, operator_tag])),  # what podman would read
            ("manifest.json", "benign", tagged([fresh])),  # what Python reads
        ]:
            if python_name is not None:  # Python applies it to this entry and every later one
                out.write(pax_header({"path": python_name}, tarfile.XGLTYPE, "utf-8"))
            info = tarfile.TarInfo(name)
            info.size = len(data)
            out.write(info.tobuf(tarfile.USTAR_FORMAT) + data + bytes(-len(data) % 512))
        out.write(bytes(1024))
    executor = ContainerExecutor("podman", settings=ExecutorSettings(container_image=operator_tag))
    try:
        assert await executor.operator_image(operator_tag) == id_reference(operator_id)
        with trio.fail_after(RUN_DEADLINE_S):
            assert await executor.load_archive(archive, fresh) == hostile_id
        assert _names(hostile_id) == [] and _image_id(operator_tag) == operator_id
        assert _names(fresh) is None
    finally:
        subprocess.run(
            ["podman", "untag", operator_tag, operator_tag], check=False, capture_output=True, timeout=60
        )
        subprocess.run(["podman", "rmi", "--force", hostile_id], check=False, capture_output=True, timeout=60)


async def test_archives_racing_under_one_tag_both_load_and_neither_takes_it(
    podman: ContainerExecutor, tmp_path: Path
) -> None:
    """Two jobs' archives tag different images alike, loaded at once: each loads as its own ID,
    with no name, so neither can move the other's, and no tag appears."""
    tag = f"localhost/dcent-test-race:{uuid.uuid4().hex[:12]}"
    ids, archives = [], []
    for marker in (b"race-a", b"race-b"):
        image_id, saved, _oci = _archive_only(marker, f"dcent-test-race-{marker.decode()}", tmp_path)
        ids.append(image_id)
        archives.append(_tagged(saved, tmp_path / f"{marker.decode()}-tagged.tar", [tag]))
    outcomes: dict[int, str] = {}

    async def load(index: int) -> None:
        outcomes[index] = await podman.load_archive(archives[index], tag)

    try:
        with trio.fail_after(RUN_DEADLINE_S):
            async with trio.open_nursery() as nursery:
                for index in (0, 1):
                    nursery.start_soon(load, index)
        assert outcomes == {0: ids[0], 1: ids[1]}
        assert _names(ids[0]) == _names(ids[1]) == [] and _names(tag) is None
    finally:
        subprocess.run(["podman", "rmi", "--force", *ids], check=False, capture_output=True, timeout=60)
