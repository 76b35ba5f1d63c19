"""Shared helpers for the executor tests: finding bwrap and a Python for jobs, and watching processes."""

from __future__ import annotations

import concurrent.futures
import functools
import os
import shutil
import sys
from pathlib import Path
from typing import TypeVar

import pytest

from node.executor.base import Executor
from node.executor.bubblewrap import BubblewrapExecutor
from node.executor.container import ContainerExecutor
from node.executor.limits import LimitKind, ResourceLimits
from node.executor.selftest import SelfTestReport, self_test_here
from node.testnet.sandbox import AUTO, choose_executor
from tests.waiting import wait_until  # noqa: F401  (re-exported for the executor tests)

T = TypeVar("T")


def job_python() -> tuple[str, tuple[str, ...]]:
    """A Python interpreter a sandboxed job can run, and the extra read-only binds it needs.

    The test's own interpreter may live in a virtualenv or under /root, which the sandbox does
    not show; the system one under /usr is visible as is.
    """
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.path.exists(candidate):
            return candidate, ()
    prefix = os.path.realpath(sys.base_prefix)
    return os.path.join(prefix, "bin", "python3"), (prefix,)


def bubblewrap_executor_or_skip() -> BubblewrapExecutor:
    """A working BubblewrapExecutor; without one the test fails under CI=true and skips otherwise."""
    _python, extra_binds = job_python()
    if shutil.which("bwrap") is None:
        _missing("bwrap is not installed (Debian package bubblewrap; `make deps` installs it)")
    executor = BubblewrapExecutor(extra_ro_binds=extra_binds)
    availability = executor.available()
    if not availability:
        _missing(availability.reason)
    return executor


def podman_executor_or_skip(limits: ResourceLimits) -> ContainerExecutor:
    """A podman executor that can run jobs with ``limits`` here; without one the test fails under
    CI=true and skips otherwise. Installed and answering is not enough: in a chroot without the
    host's cgroups podman answers ``info`` but could confine no container."""
    if shutil.which("podman") is None:
        _unavailable("podman", "podman is not installed (make deps installs podman and runc)")
    executor = ContainerExecutor("podman")
    availability = executor.available()
    if not availability:
        _unavailable("podman", availability.reason)
    capabilities = executor.capabilities()
    missing = capabilities.unenforceable(limits)
    if missing:
        _unavailable("podman", capabilities.explain(missing))
    return executor


def _unavailable(executor: str, reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and the {executor} executor cannot run jobs: {reason}")
    pytest.skip(f"{executor} executor unavailable: {reason}")


@functools.cache
def testnet_executor() -> str:
    """The executor ``dcent testnet up --executor auto`` gives providers on this host: bubblewrap
    where its self-test passes, the subprocess executor elsewhere (a chroot). For tests about the
    network or the market, not the sandbox. Runs in a thread: callers may be inside trio."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(lambda: choose_executor(AUTO, providers=1).executor).result()


@functools.cache
def host_sandbox_verdict() -> SelfTestReport:
    """The bubblewrap self-test on this host (run once per test process): what a node with the
    default executor concludes here, so tests can expect the same. Runs in a thread of its own,
    so async tests can ask too (it runs its own trio loop)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(self_test_here, "bubblewrap").result()


def _missing(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and the bubblewrap sandbox cannot run: {reason}")
    pytest.skip(f"bubblewrap sandbox unavailable: {reason}")


def pids_with_argument(marker: str) -> list[int]:
    """Host pids of live processes that have ``marker`` as one of their arguments."""
    found = []
    wanted = marker.encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            arguments = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if wanted in arguments and process_is_running(int(entry)):
            found.append(int(entry))
    return found


def process_is_running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    state = stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3]
    return state not in (b"Z", b"X")


def require_limits(executor: Executor, *kinds: LimitKind) -> None:
    """Skip (fail under CI=true) unless ``executor`` enforces every limit in ``kinds`` here."""
    capabilities = executor.capabilities()
    missing = [kind for kind in kinds if kind not in capabilities.limits]
    if missing:
        reason = capabilities.explain(tuple(missing))
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and {executor.name} cannot enforce {missing}: {reason}")
        pytest.skip(f"{executor.name} cannot enforce {missing} here: {reason}")


def workspaces_of(work_root: Path) -> list[Path]:
    """The job workspaces currently under ``work_root`` (directories, not volume images)."""
    if not work_root.exists():
        return []
    return sorted(path for path in work_root.iterdir() if path.is_dir())


# The main shell keeps forking too, so the process limit is reached before it can exit on its own: a
# bomb whose first shell returns at once (``f; wait``) races the kernel's counter on a fast machine.
FORK_BOMB = "f() { f | f & }; f; while :; do sleep 30 & done"
