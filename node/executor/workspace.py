"""A fresh directory per job: inputs go in, outputs come back out, and then it is removed.

Layout on the host, under the job's work root::

    <work_root>/<job_id>-<random>/      mode 0700, one per run
        work/                           the job's working directory and HOME (inputs here)
        work/out/                       what the job writes here comes back as outputs
        tmp/                            the job's /tmp (disk-backed, removed with the rest)
        shm/                            the job's /dev/shm under bubblewrap
        config/                         files the sandbox mounts read-only (passwd, group)

Collection never follows a symlink and never reads anything but a regular file: the job owned
these directories and may have left traps (a symlink to a host secret, a FIFO that blocks).
All methods are synchronous disk I/O: call them from ``trio.to_thread.run_sync``.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from node.executor.errors import WorkspaceError
from node.executor.model import OUTPUT_DIR, OutputBlob, OutputStore, check_input_path

log = logging.getLogger(__name__)

# Stop walking out/ after this many entries: a job must not make collection unbounded.
MAX_OUTPUT_ENTRIES = 100_000


@dataclass(frozen=True, slots=True)
class CollectedOutputs:
    files: dict[str, bytes]
    truncated: bool
    omitted: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class StoredOutputs:
    blobs: tuple[OutputBlob, ...]
    truncated: bool
    omitted: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Workspace:
    root: Path

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def out(self) -> Path:
        return self.work / OUTPUT_DIR

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def shm(self) -> Path:
        return self.root / "shm"

    @property
    def config(self) -> Path:
        return self.root / "config"

    @classmethod
    def create(cls, work_root: Path, job_id: str) -> Workspace:
        """Make a new, empty workspace for ``job_id``. Raises :class:`WorkspaceError`."""
        workspace = cls.allocate(work_root, job_id)
        workspace.populate()
        return workspace

    @classmethod
    def allocate(cls, work_root: Path, job_id: str) -> Workspace:
        """Only the workspace's root directory (a volume may be mounted on it before
        :meth:`populate`). Raises :class:`WorkspaceError`."""
        try:
            work_root.mkdir(mode=0o700, parents=True, exist_ok=True)
            return cls(Path(tempfile.mkdtemp(prefix=f"{job_id}-", dir=work_root)))
        except OSError as exc:
            raise WorkspaceError(f"cannot create a work directory under {work_root}: {exc}") from exc

    def populate(self) -> None:
        """Create the directories under the root. Raises :class:`WorkspaceError`."""
        try:
            for directory in (self.work, self.out, self.tmp, self.shm, self.config):
                directory.mkdir(mode=0o700)
        except OSError as exc:
            raise WorkspaceError(f"cannot create the work directories in {self.root}: {exc}") from exc

    def write_inputs(self, files: Mapping[str, bytes]) -> None:
        """Write each input under ``work/``; paths were checked, and are checked again here."""
        try:
            for path in sorted(files):
                target = self.work / check_input_path(path)
                target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
                fd = os.open(target, flags, 0o644)
                with os.fdopen(fd, "wb") as handle:
                    handle.write(files[path])
        except OSError as exc:
            raise WorkspaceError(f"cannot write the job's inputs into {self.work}: {exc}") from exc

    def make_mount_points(self, mounts: Mapping[str, Path]) -> None:
        """An empty file (mode 0444) at each mounted input's place under ``work/``: the sandbox
        binds the host file over it read-only."""
        try:
            for path in sorted(mounts):
                target = self.work / check_input_path(path)
                target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
                os.close(os.open(target, flags, 0o444))
        except OSError as exc:
            raise WorkspaceError(
                f"cannot make the mount points of the job's inputs in {self.work}: {exc}"
            ) from exc

    def store_outputs(self, cap_bytes: int, store: OutputStore) -> StoredOutputs:
        """Store the regular files under ``out/`` through ``store`` (as blobs, never read into
        memory here), in ascending path order while their total fits ``cap_bytes``; the rest is
        left out and ``truncated`` set, as :meth:`collect_outputs` does."""
        candidates, omitted, truncated = self._scan_outputs()
        blobs: list[OutputBlob] = []
        total = 0
        for path in sorted(candidates):
            if truncated:
                omitted.append(path)
                continue
            flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
            try:
                fd = os.open(self.out / path, flags)
            except OSError:
                omitted.append(path)
                continue
            try:
                info = os.fstat(fd)
                if not stat.S_ISREG(info.st_mode):
                    omitted.append(path)
                    continue
                if total + info.st_size > cap_bytes:
                    truncated = True
                    omitted.append(path)
                    continue
                blobs.append(OutputBlob(path, info.st_size, store(fd, path)))
                total += info.st_size
            finally:
                os.close(fd)
        return StoredOutputs(tuple(blobs), truncated, tuple(sorted(omitted)))

    def write_config_file(self, name: str, content: bytes) -> Path:
        path = self.config / name
        try:
            path.write_bytes(content)
        except OSError as exc:
            raise WorkspaceError(f"cannot write {path}: {exc}") from exc
        return path

    def collect_outputs(self, cap_bytes: int) -> CollectedOutputs:
        """The regular files under ``out/``, keyed by path relative to it, capped in total size.

        Files are taken whole, in ascending path order, while they fit in ``cap_bytes``; the
        first that does not fit and every later one are left out and ``truncated`` is set.
        Non-regular entries and names that are not UTF-8 are left out without setting it.
        """
        candidates, omitted, walk_truncated = self._scan_outputs()
        files: dict[str, bytes] = {}
        total = 0
        truncated = walk_truncated
        for path in sorted(candidates):
            content = _OVER_BUDGET if truncated else _read_regular_file(self.out / path, cap_bytes - total)
            if content is _NOT_REGULAR:
                omitted.append(path)
            elif isinstance(content, _Skip):
                truncated = True
                omitted.append(path)
            else:
                files[path] = content
                total += len(content)
        return CollectedOutputs(files=files, truncated=truncated, omitted=tuple(sorted(omitted)))

    def _scan_outputs(self) -> tuple[list[str], list[str], bool]:
        candidates: list[str] = []
        omitted: list[str] = []
        seen = 0
        stack = [""]
        while stack:
            prefix = stack.pop()
            try:
                entries = sorted(os.scandir(self.out / prefix), key=lambda entry: entry.name)
            except OSError:
                omitted.append(prefix or ".")
                continue
            for entry in entries:
                seen += 1
                if seen > MAX_OUTPUT_ENTRIES:
                    return candidates, omitted, True
                relative = f"{prefix}{entry.name}"
                if not _is_utf8(entry.name):
                    omitted.append(relative)
                elif entry.is_dir(follow_symlinks=False):
                    stack.append(f"{relative}/")
                elif entry.is_file(follow_symlinks=False):
                    candidates.append(relative)
                else:
                    omitted.append(relative)
        return candidates, omitted, False

    def remove(self) -> None:
        """Delete the workspace. Failures are logged, not raised: the result is already in hand."""
        _grant_owner_access(self.root)
        try:
            shutil.rmtree(self.root)
        except OSError as exc:
            log.warning("could not remove job workspace %s: %s", self.root, exc)


def _grant_owner_access(root: Path) -> None:
    """chmod 0700 every directory under ``root`` (the job may have left some unreadable to us).

    Symlinks are never followed: a job's symlink to a host directory must not get chmodded.
    (lstat-then-chmod is a race only against a live writer; the job is dead by now.)
    """
    stack = [str(root)]
    while stack:
        directory = stack.pop()
        try:
            if not stat.S_ISDIR(os.lstat(directory).st_mode):
                continue
            os.chmod(directory, 0o700)
            with os.scandir(directory) as entries:
                stack.extend(entry.path for entry in entries if entry.is_dir(follow_symlinks=False))
        except OSError:
            continue


def _is_utf8(name: str) -> bool:
    try:
        os.fsencode(name).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class _Skip:
    """Why a candidate output was not read (sentinels, compared by identity)."""


_NOT_REGULAR = _Skip()
_OVER_BUDGET = _Skip()


def _read_regular_file(path: Path, budget: int) -> bytes | _Skip:
    """The file's bytes if it is a regular file (not via a symlink) of at most ``budget`` bytes."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except OSError:
        return _NOT_REGULAR
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            return _NOT_REGULAR
        if info.st_size > budget:
            return _OVER_BUDGET
        # Read one byte more than allowed to notice a file that grew since fstat.
        content = handle.read(budget + 1)
    return content if len(content) <= budget else _OVER_BUDGET
