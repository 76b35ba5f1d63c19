"""A filesystem of exactly the job's disk limit, mounted as its whole workspace.

Everything a job can write (its work directory, ``/tmp``, ``/dev/shm``, ``out/``) is a directory
of the workspace, and the workspace root is the mount point of a filesystem of ``disk_bytes``: a
write past it fails with ``ENOSPC`` and the provider's own disk is never touched beyond it.

Two backends, chosen by :func:`probe_backend` (``auto``: loop first):

* ``loop`` (the default): a sparse image file of ``disk_bytes`` next to the workspace, formatted
  ext4 (no journal, no reserved blocks, lazily initialised: about 20 ms) and loop-mounted
  ``nosuid,nodev``. Disk-backed, so a job with a 50 GiB disk limit needs 50 GiB of disk, not of
  RAM; the image only takes the blocks the job writes, and is deleted with the workspace.
* ``tmpfs``: ``mount -t tmpfs -o size=disk_bytes``. No loop device needed (containers often
  have none), but its pages are RAM: they are charged to the job's memory cgroup, so the job's
  memory limit must cover its disk use too. Chosen only where loop devices are missing.

Both need the right to mount (root, or ``CAP_SYS_ADMIN``); a node without it cannot enforce a
disk limit and says so (:class:`~node.executor.limits.Capabilities`) instead of pretending. A
quota (XFS project quotas, ext4 ``prjquota``) would work without a mount per job but needs the
operator's filesystem set up for it; the loop image needs nothing but e2fsprogs and util-linux.

Mounts left by a node that died (``kill -9``) are found under the work root in
``/proc/self/mountinfo`` and removed when the next executor starts (:func:`sweep_stale`).
All functions block (they run ``mount`` / ``mkfs.ext4``): call them from a worker thread.
"""

from __future__ import annotations

import contextlib
import enum
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from node.executor.cgroups import unescape_octal

COMMAND_TIMEOUT_S = 60.0
IMAGE_SUFFIX = ".img"
PROBE_BYTES = 16 * 2**20
# Free space below this counts as "full": ext4 keeps min(2% of the filesystem, 4096 blocks) for
# its delayed allocation and never hands it to a writer (measured: 0.6 MiB free of 32 MiB at
# ENOSPC), so "full" is within that reserve plus 1 MiB of slack.
FULL_SLACK_BYTES = 2**20
EXT4_RESERVE_MAX_BYTES = 16 * 2**20
_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class DiskBackend(enum.StrEnum):
    LOOP = "loop"
    TMPFS = "tmpfs"


BACKEND_CHOICES = ("auto", "loop", "tmpfs", "none")


class VolumeError(OSError):
    """A volume could not be created, mounted or removed; the message says which step."""


@dataclass(frozen=True, slots=True)
class Usage:
    size_bytes: int
    available_bytes: int
    free_inodes: int

    @property
    def full(self) -> bool:
        reserve = min(self.size_bytes // 50, EXT4_RESERVE_MAX_BYTES)
        return self.available_bytes < reserve + FULL_SLACK_BYTES or self.free_inodes == 0


@dataclass(slots=True)
class Volume:
    """A mounted, size-limited filesystem at ``root`` (``image`` for the loop backend)."""

    backend: DiskBackend
    root: Path
    size_bytes: int
    image: Path | None
    mounted: bool = True

    @classmethod
    def create(cls, backend: DiskBackend, root: Path, size_bytes: int) -> Volume:
        """Mount a new filesystem of ``size_bytes`` on the existing empty directory ``root``,
        owned by us with mode 0700. Raises :class:`VolumeError`; nothing is left mounted then."""
        uid, gid = os.getuid(), os.getgid()
        image: Path | None = None
        try:
            if backend is DiskBackend.LOOP:
                image = root.with_name(root.name + IMAGE_SUFFIX)
                with open(image, "xb") as handle:
                    handle.truncate(size_bytes)
                _run(
                    "mkfs.ext4",
                    "-q",
                    "-F",
                    "-m",
                    "0",
                    "-O",
                    "^has_journal",
                    "-E",
                    f"lazy_itable_init=1,lazy_journal_init=1,root_owner={uid}:{gid}",
                    str(image),
                )
                _run("mount", "-o", "loop,nosuid,nodev", str(image), str(root))
            else:
                options = f"size={size_bytes},mode=0700,uid={uid},gid={gid},nosuid,nodev"
                _run("mount", "-t", "tmpfs", "-o", options, "dcent-job", str(root))
        except OSError as exc:
            if image is not None:
                with contextlib.suppress(OSError):
                    image.unlink()
            raise VolumeError(
                exc.errno, f"cannot make a {backend} volume at {root}: {exc.strerror or exc}"
            ) from exc
        volume = cls(backend=backend, root=root, size_bytes=size_bytes, image=image)
        try:
            os.chmod(root, 0o700)
            with contextlib.suppress(FileNotFoundError):
                shutil.rmtree(root / "lost+found")
        except OSError as exc:
            volume.destroy()
            raise VolumeError(exc.errno, f"cannot prepare the volume at {root}: {exc.strerror}") from exc
        return volume

    def usage(self) -> Usage:
        stats = os.statvfs(self.root)
        return Usage(
            size_bytes=stats.f_blocks * stats.f_frsize,
            available_bytes=stats.f_bavail * stats.f_frsize,
            free_inodes=stats.f_favail,
        )

    def is_full(self) -> bool:
        try:
            return self.usage().full
        except OSError:
            return False

    def destroy(self) -> None:
        """Unmount (lazily if something still holds it) and delete the image. Raises
        :class:`VolumeError` only when the filesystem stays mounted."""
        if self.mounted:
            try:
                _run("umount", str(self.root))
            except OSError:
                try:
                    _run("umount", "-l", str(self.root))
                except OSError as exc:
                    raise VolumeError(
                        exc.errno, f"cannot unmount {self.root}: {exc.strerror or exc}"
                    ) from exc
            self.mounted = False
        if self.image is not None:
            with contextlib.suppress(FileNotFoundError):
                self.image.unlink()


def probe_backend(work_root: Path, choice: str) -> tuple[DiskBackend | None, str]:
    """Which backend works here, tried for real with a small volume; ``(None, reason)`` if none.

    ``choice`` is one of :data:`BACKEND_CHOICES`. Creates ``work_root`` if needed.
    """
    if choice not in BACKEND_CHOICES:
        return None, f"unknown disk backend {choice!r}; one of {', '.join(BACKEND_CHOICES)}"
    if choice == "none":
        return None, "disk limits are switched off in the executor settings (disk_backend = none)"
    candidates = [DiskBackend.LOOP, DiskBackend.TMPFS] if choice == "auto" else [DiskBackend(choice)]
    reasons = []
    for backend in candidates:
        missing = [tool for tool in _tools(backend) if shutil.which(tool, path=_PATH) is None]
        if missing:
            reasons.append(f"{backend}: {', '.join(missing)} not installed")
            continue
        try:
            work_root.mkdir(mode=0o700, parents=True, exist_ok=True)
            probe_dir = Path(tempfile.mkdtemp(prefix="disk-probe-", dir=work_root))
        except OSError as exc:
            return None, f"cannot create {work_root}: {exc.strerror}"
        try:
            volume = Volume.create(backend, probe_dir, PROBE_BYTES)
            volume.destroy()
        except VolumeError as exc:
            reasons.append(f"{backend}: {exc.strerror}")
            continue
        finally:
            with contextlib.suppress(OSError):
                probe_dir.rmdir()
        return backend, ""
    hint = "mounting needs root or CAP_SYS_ADMIN" if os.getuid() != 0 else "see the errors"
    return None, f"no size-limited work directory can be made here ({hint}): {'; '.join(reasons)}"


def sweep_stale(work_root: Path) -> list[str]:
    """Unmount every filesystem mounted under ``work_root`` and delete leftover images.

    Returns what was unmounted. Only for the executor's own work root: every mount there is
    one of its job volumes.
    """
    try:
        mountinfo = Path("/proc/self/mountinfo").read_text()
    except OSError:
        return []
    prefix = str(work_root).rstrip("/") + "/"
    points = sorted(
        (point for point in _mount_points(mountinfo) if point.startswith(prefix)),
        key=len,
        reverse=True,
    )
    removed = []
    for point in points:
        with contextlib.suppress(OSError):
            _run("umount", "-l", point)
            removed.append(point)
    with contextlib.suppress(OSError):
        for entry in work_root.iterdir():
            if entry.name.endswith(IMAGE_SUFFIX) and entry.is_file():
                entry.unlink()
    return removed


def _mount_points(mountinfo: str) -> list[str]:
    points = []
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) >= 5:
            points.append(unescape_octal(fields[4]))
    return points


def _tools(backend: DiskBackend) -> tuple[str, ...]:
    return ("mkfs.ext4", "mount", "umount") if backend is DiskBackend.LOOP else ("mount", "umount")


def _run(*argv: str) -> None:
    """Run a system tool; raises OSError with its stderr as the message."""
    tool = shutil.which(argv[0], path=_PATH)
    if tool is None:
        raise FileNotFoundError(2, f"{argv[0]} not found")
    try:
        done = subprocess.run(
            [tool, *argv[1:]],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=COMMAND_TIMEOUT_S,
            env={"PATH": _PATH, "LC_ALL": "C"},
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise TimeoutError(110, f"{argv[0]} did not finish in {COMMAND_TIMEOUT_S:.0f} s") from exc
    if done.returncode != 0:
        detail = done.stderr.decode(errors="replace").strip().splitlines()
        raise OSError(1, f"{argv[0]}: {detail[-1] if detail else f'exit status {done.returncode}'}")
