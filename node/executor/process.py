"""Running one sandbox process under supervision: the one place every executor shares.

:func:`run_supervised` starts the process in a new session (so it leads a fresh process group),
reads stdout and stderr concurrently into capped buffers (past the cap it keeps reading and
discarding, so the child never blocks on a full pipe), and enforces the wall-clock limit:

    timeout -> terminator.terminate (SIGTERM) -> grace period -> terminator.kill (SIGKILL) -> reap

How "the whole job" is signalled differs per sandbox, so that part is a :class:`Terminator`:
:class:`ProcessGroupTerminator` signals the process group (plain subprocess); bubblewrap and the
container engines bring their own. Time comes from ``trio.current_time()``, a monotonic clock.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import trio

from node.executor.errors import JobUnkillable, SandboxStartFailed
from node.executor.model import wall_ms_between

READ_CHUNK_BYTES = 64 * 1024
# Once the job's main process is gone, how long its pipes may stay open (a straggler we could
# not kill, or a sandbox still tearing down) before we stop reading them.
PIPE_DRAIN_GRACE_S = 5.0
# After SIGKILL a process can only survive while stuck in the kernel (a hung GPU driver).
KILL_REAP_TIMEOUT_S = 30.0
# On cancellation from outside (node shutdown) the job gets at most this much grace.
SHUTDOWN_GRACE_S = 2.0


@dataclass(frozen=True, slots=True)
class ProcessLimits:
    timeout_s: float
    grace_s: float
    stdout_cap_bytes: int
    stderr_cap_bytes: int


@dataclass(frozen=True, slots=True)
class ProcessOutcome:
    """``returncode`` follows ``subprocess``: negative means killed by that signal."""

    returncode: int
    timed_out: bool
    killed: bool
    wall_ms: int
    stdout: bytes
    stderr: bytes
    stdout_truncated: bool
    stderr_truncated: bool


class Terminator(Protocol):
    """How to stop every process of one running job; each method must be safe to call twice."""

    async def terminate(self, process: trio.Process) -> None:
        """Ask the job to stop (SIGTERM or the sandbox's equivalent); must not block for long."""

    async def kill(self, process: trio.Process) -> None:
        """Force every process of the job to die now (SIGKILL or equivalent)."""

    async def reap_stragglers(self, process: trio.Process) -> None:
        """After the main process exited: kill whatever the job left running."""


class ProcessGroupTerminator:
    """Signals the process group the job leads (it was started with ``start_new_session``).

    A child that calls ``setsid()`` itself leaves the group and escapes this terminator: that is
    why only the development executor relies on process groups alone. Signalling the group after
    its leader was reaped is safe in practice: Linux does not reuse a pid while any process still
    has it as its group id, so the number can only be reused once the group is empty.
    """

    async def terminate(self, process: trio.Process) -> None:
        signal_process_group(process.pid, signal.SIGTERM)

    async def kill(self, process: trio.Process) -> None:
        signal_process_group(process.pid, signal.SIGKILL)

    async def reap_stragglers(self, process: trio.Process) -> None:
        signal_process_group(process.pid, signal.SIGKILL)


def signal_process_group(pgid: int, sig: signal.Signals) -> None:
    """``killpg``, where an already empty group is not an error."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def signal_pids(pids: Sequence[int], sig: signal.Signals) -> None:
    """Send ``sig`` to each pid, skipping those that have already exited."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def descendant_pids(root_pid: int, proc_root: str = "/proc") -> list[int]:
    """Every live descendant of ``root_pid`` (not itself), from one scan of ``/proc/*/stat``.

    ``/proc/<pid>/stat`` is world-readable, so this works whatever user namespaces the
    descendants are in. Processes that exit during the scan are skipped.
    """
    parent_of: dict[int, int] = {}
    for entry in os.listdir(proc_root):
        if not entry.isdigit():
            continue
        try:
            with open(f"{proc_root}/{entry}/stat", "rb") as stat_file:
                stat = stat_file.read()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ')'.
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) >= 2:
            parent_of[int(entry)] = int(fields[1])
    children: dict[int, list[int]] = {}
    for pid, parent in parent_of.items():
        children.setdefault(parent, []).append(pid)
    found: list[int] = []
    frontier = [root_pid]
    while frontier:
        for child in sorted(children.get(frontier.pop(), ())):
            found.append(child)
            frontier.append(child)
    return found


class CappedBuffer:
    """Keeps the first ``cap`` bytes fed to it and counts the rest as truncated."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.truncated = False
        self.closed = trio.Event()
        self._data = bytearray()

    def feed(self, chunk: bytes | bytearray) -> None:
        room = self.cap - len(self._data)
        if len(chunk) > room:
            self.truncated = True
            chunk = chunk[: max(room, 0)]
        self._data += chunk

    @property
    def data(self) -> bytes:
        return bytes(self._data)


async def _drain(stream: trio.abc.ReceiveStream, buffer: CappedBuffer) -> None:
    try:
        while chunk := await stream.receive_some(READ_CHUNK_BYTES):
            buffer.feed(chunk)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        buffer.closed.set()


async def _wait_reaped(process: trio.Process) -> None:
    with trio.move_on_after(KILL_REAP_TIMEOUT_S):
        await process.wait()
    if process.returncode is None:
        raise JobUnkillable(f"pid {process.pid} survived SIGKILL for {KILL_REAP_TIMEOUT_S:.0f} s")


async def _stop(process: trio.Process, terminator: Terminator, grace_s: float) -> bool:
    """SIGTERM, wait up to ``grace_s``, then SIGKILL; reap. Returns whether SIGKILL was needed."""
    await terminator.terminate(process)
    with trio.move_on_after(grace_s):
        await process.wait()
    if process.returncode is None:
        await terminator.kill(process)
        await _wait_reaped(process)
        return True
    # The main process honoured SIGTERM, but a child of it may trap it: finish the job off.
    await terminator.reap_stragglers(process)
    return False


async def run_supervised(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: str,
    limits: ProcessLimits,
    terminator: Terminator,
    pass_fds: Sequence[int] = (),
) -> ProcessOutcome:
    """Run ``argv`` to completion or timeout and report what happened.

    stdin is ``/dev/null``. ``env`` is the complete environment (nothing is inherited).
    Raises :class:`SandboxStartFailed` when the process cannot be spawned and
    :class:`JobUnkillable` when it does not die after SIGKILL. If the caller is cancelled, the
    job is stopped (with at most :data:`SHUTDOWN_GRACE_S` of grace) before the cancellation
    propagates: no process outlives this call.
    """
    try:
        process = await trio.lowlevel.open_process(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
            pass_fds=tuple(pass_fds),
        )
    except OSError as exc:
        raise SandboxStartFailed(f"could not start {argv[0]!r}: {exc}") from exc
    started = trio.current_time()
    stdout = CappedBuffer(limits.stdout_cap_bytes)
    stderr = CappedBuffer(limits.stderr_cap_bytes)
    assert process.stdout is not None and process.stderr is not None
    timed_out = killed = stop_attempted = False
    unkillable: JobUnkillable | None = None
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_drain, process.stdout, stdout)
            nursery.start_soon(_drain, process.stderr, stderr)
            with trio.move_on_after(limits.timeout_s):
                await process.wait()
            if process.returncode is None:
                timed_out = stop_attempted = True
                try:
                    killed = await _stop(process, terminator, limits.grace_s)
                except JobUnkillable as exc:
                    # Raised below, outside the nursery, so callers get it unwrapped.
                    unkillable = exc
            else:
                await terminator.reap_stragglers(process)
            finished = trio.current_time()
            with trio.move_on_after(PIPE_DRAIN_GRACE_S):
                await stdout.closed.wait()
                await stderr.closed.wait()
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            if process.returncode is None and not stop_attempted:
                await _stop(process, terminator, min(limits.grace_s, SHUTDOWN_GRACE_S))
            await process.stdout.aclose()
            await process.stderr.aclose()
    if unkillable is not None:
        raise unkillable
    assert process.returncode is not None
    return ProcessOutcome(
        returncode=process.returncode,
        timed_out=timed_out,
        killed=killed,
        wall_ms=wall_ms_between(started, finished),
        stdout=stdout.data,
        stderr=stderr.data,
        stdout_truncated=stdout.truncated,
        stderr_truncated=stderr.truncated,
    )
