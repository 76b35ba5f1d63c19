"""A deadline that real progress pushes forward, for bulk transfers in both directions.

A chunk is up to 4 MiB; a fixed deadline for all of it either drops honest slow links (a 4 MiB
chunk at 64 KiB/s takes 64 s) or lets a peer hold a transfer for as long as the deadline. So the
deadline counts from the last :data:`MIN_PROGRESS_BYTES` moved: a peer moving a byte of credit
or data every few seconds does not keep a transfer alive (review 37 F5), and an honest slow one
is never dropped while it moves at least that much per idle period.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import trio

#: Bytes that must move to push a transfer's deadline forward.
MIN_PROGRESS_BYTES = 16 * 1024


@contextmanager
def progress_deadline(idle_s: float) -> Iterator[Callable[[int], None]]:
    """Run the body with a deadline ``idle_s`` ahead; the body reports bytes moved to the
    callable it is given, and each :data:`MIN_PROGRESS_BYTES` of them push the deadline to
    ``idle_s`` from then once less than half of it is left. So a transfer fails after between
    ``idle_s / 2`` and ``idle_s`` without that much progress. Raises :class:`trio.TooSlowError`
    if the deadline passes (as :func:`trio.fail_after` does).

    Pushing at every 16 KiB re-armed trio's deadline ~60,000 times a GiB (~0.1 s of the loop, a
    few percent of a blob fetch's CPU); half-way pushes are one per ``idle_s / 2``."""
    since_push = 0
    half = idle_s / 2
    with trio.CancelScope(deadline=trio.current_time() + idle_s) as watch:

        def progressed(count: int) -> None:
            nonlocal since_push
            since_push += count
            if since_push >= MIN_PROGRESS_BYTES:
                since_push = 0
                now = trio.current_time()
                if watch.deadline - now < half:
                    watch.deadline = now + idle_s

        yield progressed
    if watch.cancelled_caught:
        raise trio.TooSlowError
