"""Running one sandbox process under supervision: the one place every executor shares.

:func:`run_supervised` starts the process in a new session (so it leads a fresh process group),
reads stdout and stderr concurrently into capped buffers (past the cap it keeps reading and
discarding, so the child never blocks on a full pipe), streams their lines live to an optional
callback, watches the job's limits, and enforces the wall-clock limit:

    timeout or limit hit -> terminator.terminate (SIGTERM) -> grace -> terminator.kill (SIGKILL) -> reap

**Process lifetime.** The process is spawned *from the trio thread itself* (a ``fork``/``vfork``
and ``exec`` take about a millisecond), never from a worker thread. This matters because
bubblewrap's ``--die-with-parent`` is ``PR_SET_PDEATHSIG``, which fires when the parent *thread*
exits: ``trio.lowlevel.open_process`` spawns in a worker thread that trio retires after ~10 s
idle, so every job was SIGKILLed about 10 s in, intermittently. Spawned from the thread that runs
the event loop, a job lives exactly until it exits, its timeout passes, or the loop (the node)
ends. Exit is awaited on a pidfd (polling ``waitpid`` where the kernel has none), not in a thread.

Attacks and failures this is built against: a job that never exits (the timeout, then SIGKILL of
the whole tree), one that traps SIGTERM or forks away (the terminator kills the tree), one that
floods stdout (capped, and read on so it never blocks), a consumer of live lines that stalls (a
bounded buffer; lines beyond it are dropped and counted, never waited for), and a node that stops
mid-job (the job is stopped before the cancellation propagates).

How "the whole job" is signalled differs per sandbox, so that part is a :class:`Terminator`:
:class:`ProcessGroupTerminator` signals the process group (plain subprocess); bubblewrap and the
container engines bring their own. Time comes from ``trio.current_time()``, a monotonic clock.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import trio

from node.executor.errors import JobUnkillable, SandboxStartFailed
from node.executor.limits import LimitKind
from node.executor.model import wall_ms_between

if TYPE_CHECKING:
    from trio_typing import TaskStatus

READ_CHUNK_BYTES = 64 * 1024
# Once the job's main process is gone, how long its pipes may stay open (a straggler we could
# not kill, or a sandbox still tearing down) before we stop reading them.
PIPE_DRAIN_GRACE_S = 5.0
# After SIGKILL a process can only survive while stuck in the kernel (a hung GPU driver).
KILL_REAP_TIMEOUT_S = 30.0
# On cancellation from outside (node shutdown) the job gets at most this much grace.
SHUTDOWN_GRACE_S = 2.0
# A job stopped for reaching a limit gets at most this much grace after SIGTERM.
LIMIT_STOP_GRACE_S = 2.0
# How often the limit watcher looks at the job's cgroup and disk.
LIMIT_POLL_S = 0.1
# Without a pidfd (Linux < 5.3) the exit is polled this often.
WAITPID_POLL_S = 0.05
# Live output: lines longer than this are delivered in pieces; at most this many lines wait for a
# slow consumer (more are dropped and counted), and it gets this long to take the last ones.
MAX_LINE_BYTES = 64 * 1024
LIVE_BUFFER_LINES = 1024
LIVE_FLUSH_GRACE_S = 5.0


@dataclass(frozen=True, slots=True)
class ProcessLimits:
    timeout_s: float
    grace_s: float
    stdout_cap_bytes: int
    stderr_cap_bytes: int


@dataclass(frozen=True, slots=True)
class ProcessOutcome:
    """``returncode`` follows ``subprocess``: negative means killed by that signal.

    ``stopped_for``: the limit the watcher saw reached, for which the job was stopped (None when
    it exited by itself or at the timeout). ``limit_evidence``: a limit the executor learned the
    job reached by other means (a container engine's OOM report). ``first_output_s``: trio clock
    time of the first byte on stdout or stderr, if any.
    """

    returncode: int
    timed_out: bool
    killed: bool
    wall_ms: int
    stdout: bytes
    stderr: bytes
    stdout_truncated: bool
    stderr_truncated: bool
    stopped_for: LimitKind | None = None
    limit_evidence: LimitKind | None = None
    started_s: float = 0.0
    first_output_s: float | None = None


@dataclass(frozen=True, slots=True)
class OutputLine:
    """One line the job printed, as it printed it (without the newline).

    ``partial``: the line did not end with a newline (it was longer than :data:`MAX_LINE_BYTES`,
    or it is the last bytes before the stream ended or reached its cap). ``dropped_before``:
    lines of this stream dropped just before this one because the consumer was too slow (the
    complete capped output is still in the result). Lines dropped after a stream's last
    delivered line are counted by one final empty, partial line of that stream.
    """

    stream: str  # "stdout" or "stderr"
    data: bytes
    partial: bool = False
    dropped_before: int = 0


#: An async callback for live output; it must not raise. Slow is fine: lines are buffered.
OutputSink = Callable[[OutputLine], Awaitable[None]]
#: Looks at the job's cgroup and disk; returns the limit it has reached, if any. Synchronous and fast.
LimitWatch = Callable[[], LimitKind | None]


class RunningProcess(Protocol):
    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...


class Terminator(Protocol):
    """How to stop every process of one running job; each method must be safe to call twice."""

    async def terminate(self, process: RunningProcess) -> None:
        """Ask the job to stop (SIGTERM or the sandbox's equivalent); must not block for long."""

    async def kill(self, process: RunningProcess) -> None:
        """Force every process of the job to die now (SIGKILL or equivalent)."""

    async def reap_stragglers(self, process: RunningProcess) -> None:
        """After the main process exited: kill whatever the job left running."""


class ProcessGroupTerminator:
    """Signals the process group the job leads (it was started with ``start_new_session``).

    A child that calls ``setsid()`` itself leaves the group and escapes this terminator: that is
    why only the development executor relies on process groups alone (with a cgroup, the
    confinement kills the rest). Signalling the group after its leader was reaped is safe in
    practice: Linux does not reuse a pid while any process still has it as its group id.
    """

    async def terminate(self, process: RunningProcess) -> None:
        signal_process_group(process.pid, signal.SIGTERM)

    async def kill(self, process: RunningProcess) -> None:
        signal_process_group(process.pid, signal.SIGKILL)

    async def reap_stragglers(self, process: RunningProcess) -> None:
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


class ChildProcess:
    """A child spawned from the trio thread, awaited on a pidfd."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self._popen = popen
        self.pid = popen.pid
        try:
            self._pidfd: int | None = os.pidfd_open(popen.pid)
        except (AttributeError, OSError):
            self._pidfd = None

    @property
    def returncode(self) -> int | None:
        return self._popen.returncode

    async def wait(self) -> int:
        while self._popen.poll() is None:
            if self._pidfd is not None:
                await trio.lowlevel.wait_readable(self._pidfd)
            else:
                await trio.sleep(WAITPID_POLL_S)
        self._close_pidfd()
        assert self._popen.returncode is not None
        return self._popen.returncode

    def _close_pidfd(self) -> None:
        if self._pidfd is not None:
            trio.lowlevel.notify_closing(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None

    def close(self) -> None:
        self._close_pidfd()


def spawn(
    argv: Sequence[str], *, env: Mapping[str, str], cwd: str, pass_fds: Sequence[int] = ()
) -> tuple[ChildProcess, trio.lowlevel.FdStream, trio.lowlevel.FdStream]:
    """Start ``argv`` from the calling (trio) thread; stdin is /dev/null, stdout and stderr pipes.

    Raises :class:`SandboxStartFailed` when it cannot be spawned.
    """
    try:
        popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
            close_fds=True,
            pass_fds=tuple(pass_fds),
        )
    except OSError as exc:
        raise SandboxStartFailed(f"could not start {argv[0]!r}: {exc}") from exc
    assert popen.stdout is not None and popen.stderr is not None
    stdout = trio.lowlevel.FdStream(os.dup(popen.stdout.fileno()))
    stderr = trio.lowlevel.FdStream(os.dup(popen.stderr.fileno()))
    popen.stdout.close()
    popen.stderr.close()
    return ChildProcess(popen), stdout, stderr


class CappedBuffer:
    """Keeps the first ``cap`` bytes fed to it and counts the rest as truncated."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.truncated = False
        self.closed = trio.Event()
        self._data = bytearray()

    def feed(self, chunk: bytes | bytearray) -> bytes:
        """Keep what fits; returns the part that was kept."""
        room = self.cap - len(self._data)
        if len(chunk) > room:
            self.truncated = True
            chunk = chunk[: max(room, 0)]
        self._data += chunk
        return bytes(chunk)

    @property
    def data(self) -> bytes:
        return bytes(self._data)


class LineSplitter:
    """Cuts a byte stream into :class:`OutputLine` values for one stream."""

    def __init__(self, stream: str, send: trio.MemorySendChannel[OutputLine]) -> None:
        self.stream = stream
        self._send = send
        self._pending = bytearray()
        self._dropped = 0

    def feed(self, chunk: bytes) -> None:
        self._pending += chunk
        while True:
            newline = self._pending.find(b"\n")
            if newline == -1 or newline > MAX_LINE_BYTES:
                break
            self._emit(bytes(self._pending[:newline]), partial=False)
            del self._pending[: newline + 1]
        while len(self._pending) > MAX_LINE_BYTES:
            self._emit(bytes(self._pending[:MAX_LINE_BYTES]), partial=True)
            del self._pending[:MAX_LINE_BYTES]

    def finish(self) -> None:
        if self._pending:
            self._emit(bytes(self._pending), partial=True)
            self._pending.clear()

    def take_dropped(self) -> int:
        dropped, self._dropped = self._dropped, 0
        return dropped

    def _emit(self, data: bytes, *, partial: bool) -> None:
        try:
            self._send.send_nowait(OutputLine(self.stream, data, partial, self._dropped))
            self._dropped = 0
        except trio.WouldBlock:
            self._dropped += 1
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._dropped += 1


class _FirstOutput:
    def __init__(self) -> None:
        self.at: float | None = None


async def _drain(
    stream: trio.abc.ReceiveStream,
    buffer: CappedBuffer,
    splitter: LineSplitter | None,
    first: _FirstOutput,
) -> None:
    try:
        while chunk := await stream.receive_some(READ_CHUNK_BYTES):
            if first.at is None:
                first.at = trio.current_time()
            kept = buffer.feed(chunk)
            if splitter is not None and kept:
                splitter.feed(kept)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        if splitter is not None:
            splitter.finish()
        buffer.closed.set()


async def _deliver_lines(
    receive: trio.MemoryReceiveChannel[OutputLine],
    sink: OutputSink,
    done: trio.Event,
    splitters: Sequence[LineSplitter],
) -> None:
    try:
        async with receive:
            async for line in receive:
                await sink(line)
        for splitter in splitters:
            dropped = splitter.take_dropped()
            if dropped:
                await sink(OutputLine(splitter.stream, b"", partial=True, dropped_before=dropped))
    finally:
        done.set()


async def _wait_reaped(process: ChildProcess) -> None:
    with trio.move_on_after(KILL_REAP_TIMEOUT_S):
        await process.wait()
    if process.returncode is None:
        raise JobUnkillable(f"pid {process.pid} survived SIGKILL for {KILL_REAP_TIMEOUT_S:.0f} s")


async def _stop(process: ChildProcess, terminator: Terminator, grace_s: float) -> bool:
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


async def _watch_limits(
    watch: LimitWatch,
    hit: list[LimitKind],
    stop_waiting: trio.CancelScope,
    *,
    task_status: TaskStatus[trio.CancelScope] = trio.TASK_STATUS_IGNORED,
) -> None:
    with trio.CancelScope() as own_scope:
        task_status.started(own_scope)
        while True:
            await trio.sleep(LIMIT_POLL_S)
            kind = watch()
            if kind is not None:
                hit.append(kind)
                stop_waiting.cancel()
                return


async def run_supervised(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: str,
    limits: ProcessLimits,
    terminator: Terminator,
    pass_fds: Sequence[int] = (),
    on_output: OutputSink | None = None,
    watch: LimitWatch | None = None,
) -> ProcessOutcome:
    """Run ``argv`` to completion, timeout or a limit, and report what happened.

    stdin is ``/dev/null``. ``env`` is the complete environment (nothing is inherited).
    ``on_output`` receives the job's lines live (within the stream caps). ``watch`` is polled
    every :data:`LIMIT_POLL_S`; when it names a limit the job is stopped (with at most
    :data:`LIMIT_STOP_GRACE_S` of grace) and ``stopped_for`` says which.

    Raises :class:`SandboxStartFailed` when the process cannot be spawned and
    :class:`JobUnkillable` when it does not die after SIGKILL. If the caller is cancelled, the
    job is stopped (with at most :data:`SHUTDOWN_GRACE_S` of grace) before the cancellation
    propagates: no process outlives this call.
    """
    process, stdout_stream, stderr_stream = spawn(argv, env=env, cwd=cwd, pass_fds=pass_fds)
    started = trio.current_time()
    stdout = CappedBuffer(limits.stdout_cap_bytes)
    stderr = CappedBuffer(limits.stderr_cap_bytes)
    first = _FirstOutput()
    timed_out = killed = stop_attempted = False
    hit: list[LimitKind] = []
    unkillable: JobUnkillable | None = None
    live_send, live_receive = trio.open_memory_channel[OutputLine](LIVE_BUFFER_LINES)
    delivered = trio.Event()
    try:
        async with trio.open_nursery() as nursery:
            out_split = err_split = None
            if on_output is not None:
                out_split = LineSplitter("stdout", live_send)
                err_split = LineSplitter("stderr", live_send)
                splitters = (out_split, err_split)
                nursery.start_soon(_deliver_lines, live_receive, on_output, delivered, splitters)
            else:
                delivered.set()
            nursery.start_soon(_drain, stdout_stream, stdout, out_split, first)
            nursery.start_soon(_drain, stderr_stream, stderr, err_split, first)
            with trio.move_on_after(limits.timeout_s) as waiting:
                watcher = None
                if watch is not None:
                    watcher = await nursery.start(_watch_limits, watch, hit, waiting)
                await process.wait()
            if watcher is not None:
                watcher.cancel()
            if process.returncode is None:
                stop_attempted = True
                timed_out = not hit
                grace = min(limits.grace_s, LIMIT_STOP_GRACE_S) if hit else limits.grace_s
                try:
                    killed = await _stop(process, terminator, grace)
                except JobUnkillable as exc:
                    # Raised below, outside the nursery, so callers get it unwrapped.
                    unkillable = exc
            else:
                await terminator.reap_stragglers(process)
            finished = trio.current_time()
            with trio.move_on_after(PIPE_DRAIN_GRACE_S):
                await stdout.closed.wait()
                await stderr.closed.wait()
            live_send.close()
            with trio.move_on_after(LIVE_FLUSH_GRACE_S):
                await delivered.wait()
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            if process.returncode is None and not stop_attempted:
                await _stop(process, terminator, min(limits.grace_s, SHUTDOWN_GRACE_S))
            await stdout_stream.aclose()
            await stderr_stream.aclose()
            process.close()
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
        stopped_for=hit[0] if hit else None,
        started_s=started,
        first_output_s=first.at,
    )
