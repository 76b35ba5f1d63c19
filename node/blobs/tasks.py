"""A nursery whose failure surfaces as the exception that caused it.

trio wraps every exception leaving a nursery in an ExceptionGroup. The blob code runs small
helper tasks (a read-ahead, a writer, a request pipeline) whose failures are typed errors the
caller handles (a reset stream, a lying peer); :func:`open_task_group` re-raises such a failure
as itself so ``except StreamResetError`` keeps working. Several real failures at once, or only
cancellations, leave the group as trio raised it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from node.errors import leaf_exceptions


@asynccontextmanager
async def open_task_group() -> AsyncIterator[trio.Nursery]:
    """``trio.open_nursery()``; a lone failure (besides cancellations) is raised as itself."""
    try:
        async with trio.open_nursery() as nursery:
            yield nursery
    except BaseExceptionGroup as group:
        errors = [exc for exc in leaf_exceptions(group) if not isinstance(exc, trio.Cancelled)]
        if len(errors) == 1:
            raise errors[0] from None
        raise
