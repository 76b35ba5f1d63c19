"""Pick the executor the node's config names (``market.executor``)."""

from __future__ import annotations

from node.executor.base import Executor
from node.executor.bubblewrap import BubblewrapExecutor
from node.executor.container import ContainerExecutor
from node.executor.errors import UnknownExecutor
from node.executor.settings import ExecutorSettings
from node.executor.unsandboxed import SubprocessExecutor

# The same names as node.config.EXECUTORS.
EXECUTOR_NAMES = ("bubblewrap", "docker", "podman", "subprocess")


def select_executor(
    name: str, *, allow_unsandboxed: bool, settings: ExecutorSettings | None = None
) -> Executor:
    """Build the executor called ``name``; it is not probed (ask ``available()`` and
    ``capabilities()`` for that, or run :func:`node.executor.selftest.self_test`).

    Raises :class:`UnknownExecutor` for a name not in :data:`EXECUTOR_NAMES`, and
    :class:`~node.executor.errors.UnsandboxedNotAllowed` for ``subprocess`` unless
    ``allow_unsandboxed`` is true.
    """
    settings = settings if settings is not None else ExecutorSettings()
    if name == "bubblewrap":
        return BubblewrapExecutor(settings=settings)
    if name in ("docker", "podman"):
        return ContainerExecutor(name, settings=settings)
    if name == "subprocess":
        return SubprocessExecutor(allow_unsandboxed=allow_unsandboxed, settings=settings)
    raise UnknownExecutor(f"unknown executor {name!r}; choose one of {', '.join(EXECUTOR_NAMES)}")
