"""The one way tests wait: poll a condition until it holds, with a deadline, never a fixed sleep.

Used where no event can be awaited: the state of real hosts, sandboxed processes, node processes.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio
import trio.testing

T = TypeVar("T")
POLL_S = 0.02


async def wait_until(predicate: Callable[[], T], *, what: str, timeout: float = 60.0) -> T:
    """Return ``predicate()``'s first truthy value; fail naming ``what`` after ``timeout`` s."""
    with trio.move_on_after(timeout):
        while True:
            value = predicate()
            if value:
                return value
            await trio.sleep(POLL_S)
    raise AssertionError(f"timed out after {timeout} s waiting until {what}")


def wait_until_blocking(
    predicate: Callable[[], T], *, what: str, timeout: float = 60.0, poll: float = 0.2
) -> T:
    """The same for synchronous tests watching another process."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout} s waiting until {what}")


async def wait_until_async(
    predicate: Callable[[], Awaitable[T | None]], *, what: str, timeout: float = 60.0, poll: float = POLL_S
) -> T:
    """:func:`wait_until` for a condition that must be awaited (an RPC call to a node process)."""
    with trio.move_on_after(timeout):
        while True:
            value = await predicate()
            if value:
                return value
            await trio.sleep(poll)
    raise AssertionError(f"timed out after {timeout} s waiting until {what}")


async def sample_every(interval: float, sample: Callable[[], bool]) -> None:
    """Call ``sample`` every ``interval`` s until it returns False: a measurement, not a wait."""
    while sample():
        await trio.sleep(interval)


async def act_every(interval: float, step: Callable[[], Awaitable[bool]]) -> None:
    """Await ``step`` every ``interval`` s until it returns False: the pace of an actor the test
    plays (an attacker trickling bytes or replaying votes), never a wait for the code under test.
    Under ``MockClock`` the interval is virtual time."""
    while await step():
        await trio.sleep(interval)


async def spend_virtual_time(seconds: float) -> None:
    """Let ``seconds`` of a ``trio.testing.MockClock`` pass: a modelled cost (a signature check)
    or a span for the code under test to run in. Only under a MockClock, where it synchronises
    nothing and costs no real time; refused on the real clock."""
    if not isinstance(trio.lowlevel.current_clock(), trio.testing.MockClock):
        raise RuntimeError("spend_virtual_time is for trio.testing.MockClock runs only")
    await trio.sleep(seconds)
