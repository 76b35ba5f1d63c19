"""Start, signal and stop the testnet's node processes.

Each node runs as ``dcent node run --home node-<i>`` under a small supervisor
(:mod:`node.testnet.supervisor`) in a session of its own (``start_new_session``): a Ctrl-C in the
terminal that ran ``dcent testnet up`` never reaches the nodes, and they outlive it. Its output
goes to ``node-<i>/node.log``; ``node-<i>/node.pid`` holds ``<pid> <start time>`` while it runs
(the start time guards against a reused pid), and ``node-<i>/node.exit`` its last exit code.

Stopping is SIGTERM (the node exits 0 on it), then SIGKILL to the node's process group after a
grace period. A frozen node (SIGSTOP, see :func:`pause_node`) is continued after the SIGTERM so
that it can act on it.
"""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from node.testnet.errors import AlreadyRunning, NodeStartFailed, PortsInUse, TestnetNodeNotRunning
from node.testnet.layout import PORT_STRIDE, PORTS_PER_NODE, NodeLayout
from node.testnet.supervisor import STATE_FILE_NAME, process_start_time

POLL_S = 0.05
START_TIMEOUT_S = 30.0
STOP_GRACE_S = 20.0
LOG_TAIL_LINES = 30


@dataclass(frozen=True, slots=True)
class RunningNode:
    """A node process as its pid file names it."""

    pid: int
    start_time: int | None


@dataclass(slots=True)
class NodeProcess:
    """A node started by this process: its pid, and the supervisor this process must reap."""

    node: NodeLayout
    pid: int
    start_time: int | None
    supervisor: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> RunningNode:
        return RunningNode(self.pid, self.start_time)


@dataclass(frozen=True, slots=True)
class StopResult:
    index: int
    #: The pid that was stopped; None when the node was not running.
    pid: int | None
    #: The node's exit code (negative: killed by that signal); None when unknown.
    exit_code: int | None
    #: It ignored SIGTERM for the whole grace period and was killed.
    killed: bool


def read_pid_file(path: Path) -> RunningNode | None:
    """The pid file's content, or None when it is missing or unreadable."""
    try:
        parts = path.read_text().split()
        return RunningNode(int(parts[0]), int(parts[1]) if parts[1] != "-" else None)
    except (OSError, IndexError, ValueError):
        return None


def is_alive(process: RunningNode) -> bool:
    """True while the process exists, is not a zombie, and is the one the pid file named."""
    try:
        os.kill(process.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process now holds the pid; the start time decides below
    try:
        stat = Path(f"/proc/{process.pid}/stat").read_text()
    except OSError:
        return True  # no /proc: kill(0) is all we can know
    if stat[stat.rfind(")") + 2 :].startswith("Z"):
        return False
    return process.start_time is None or process_start_time(process.pid) == process.start_time


def running(node: NodeLayout) -> RunningNode | None:
    """The node's live process, or None when it is not running."""
    process = read_pid_file(node.pid_path)
    return process if process is not None and is_alive(process) else None


@dataclass(frozen=True, slots=True)
class SupervisorState:
    """What a live supervisor says of itself (its state file): see :mod:`node.testnet.supervisor`."""

    process: RunningNode
    restart: str
    restarts: int
    #: ``running`` or ``backoff`` (the node crashed and is about to be started again).
    state: str


def supervisor_of(node: NodeLayout) -> SupervisorState | None:
    """The node's live supervisor, or None (none started, or it has exited)."""
    try:
        doc = json.loads((node.home / STATE_FILE_NAME).read_text())
        start_time = doc["start_time"]
        state = SupervisorState(
            RunningNode(int(doc["pid"]), None if start_time is None else int(start_time)),
            str(doc["restart"]),
            int(doc["restarts"]),
            str(doc["state"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return state if is_alive(state.process) else None


def last_exit_code(node: NodeLayout) -> int | None:
    try:
        return int(node.exit_path.read_text().strip())
    except (OSError, ValueError):
        return None


def log_tail(node: NodeLayout, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = node.log_path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when nothing listens on ``host:port``. The probe sets SO_REUSEADDR (ports in
    TIME_WAIT after a restart are free) but not SO_REUSEPORT, so it fails against a libp2p
    listener, which sets SO_REUSEPORT."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def free_base_port(nodes: int, rng: random.Random, *, low: int = 40000, high: int = 60000) -> int:
    """A base port in [low, high) whose derived ports (``PORT_STRIDE`` per node) are all free
    now; the default range is away from the e2e tests' (20000-) and the default testnet's."""
    for _ in range(200):
        base = rng.randrange(low, high - PORT_STRIDE * nodes, PORT_STRIDE)
        if all(port_is_free(base + PORT_STRIDE * i + k) for i in range(nodes) for k in range(PORTS_PER_NODE)):
            return base
    raise PortsInUse(f"no free range of {nodes} x {PORT_STRIDE} ports found in {low}-{high}")


def process_cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of one process so far, from /proc (0 when it is gone)."""
    if pid is None:
        return 0.0
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def node_ports(node: NodeLayout) -> tuple[int, int, int]:
    return node.p2p_port, node.rpc_port, node.metrics_port


def check_ports_free(nodes: Sequence[NodeLayout]) -> None:
    """Raises :class:`PortsInUse` listing every port of ``nodes`` that something listens on."""
    # A node in a namespace has that namespace's ports to itself.
    _refuse_taken([(n.index, port) for n in nodes if n.namespace is None for port in node_ports(n)])


def check_base_port_free(base_port: int, nodes: int) -> None:
    """:func:`check_ports_free` for the ports a new layout of ``nodes`` nodes from ``base_port``
    will use, before anything is written. Raises :class:`PortsInUse`."""
    _refuse_taken(
        [(i, base_port + PORT_STRIDE * i + offset) for i in range(nodes) for offset in range(PORTS_PER_NODE)]
    )


def _refuse_taken(ports: Sequence[tuple[int, int]]) -> None:
    taken = [f"{port} (node-{index})" for index, port in ports if not port_is_free(port)]
    if taken:
        raise PortsInUse(
            f"ports in use: {', '.join(taken)}; another testnet or program holds them "
            "(pick another --base-port, or `dcent testnet down` the other testnet)"
        )


def node_command(node: NodeLayout, extra_args: Sequence[str] = ()) -> list[str]:
    return [sys.executable, "-m", "node.cli.main", "node", "run", "--home", str(node.home), *extra_args]


def in_namespace(node: NodeLayout, command: Sequence[str]) -> list[str]:
    """``command`` run inside the node's network namespace when it has one (``ip netns exec``
    execs it in place, so the pid the supervisor records is the node's own)."""
    if node.namespace is None:
        return list(command)
    return ["ip", "netns", "exec", node.namespace, *command]


def start_node(
    node: NodeLayout,
    *,
    extra_args: Sequence[str] = (),
    timeout_s: float = START_TIMEOUT_S,
    restart: str = "no",
) -> NodeProcess:
    """Start the node detached and return once its pid is known (not once it serves: see
    :mod:`node.testnet.readiness`). ``restart="on-failure"``: its supervisor starts it again
    after a crash.

    Raises :class:`AlreadyRunning`, :class:`PortsInUse`, :class:`NodeStartFailed` (the
    process exited at once, or reported no pid within ``timeout_s``; the log's tail included).
    """
    if running(node) is not None:
        raise AlreadyRunning(f"node-{node.index} is already running")
    if supervisor_of(node) is not None:
        raise AlreadyRunning(f"node-{node.index} crashed and its supervisor is about to restart it")
    check_ports_free([node])
    node.pid_path.unlink(missing_ok=True)
    node.exit_path.unlink(missing_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with node.log_path.open("ab") as log:
        log.write(
            f"--- dcent testnet: starting node-{node.index} at {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode()
        )
        log.flush()
        supervisor = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "node.testnet.supervisor",
                "--restart",
                restart,
                str(node.pid_path),
                str(node.exit_path),
                "--",
                *in_namespace(node, node_command(node, extra_args)),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            env=env,
        )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        process = read_pid_file(node.pid_path)
        if process is not None:
            return NodeProcess(node, process.pid, process.start_time, supervisor)
        if supervisor.poll() is not None:
            break
        time.sleep(POLL_S)
    else:
        _kill_group(supervisor.pid)
        supervisor.wait()
    raise NodeStartFailed(f"node-{node.index} did not start; the end of {node.log_path}:\n{log_tail(node)}")


def wait_for_exit(process: RunningNode, timeout_s: float) -> bool:
    """Wait until ``process`` is gone; True when it is, False at the deadline."""
    deadline = time.monotonic() + timeout_s
    while is_alive(process):
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_S)
    return True


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return


def _kill_group_of(pid: int) -> None:
    try:
        _kill_group(os.getpgid(pid))
    except ProcessLookupError:
        return


def _signal(process: RunningNode, signum: int) -> None:
    try:
        os.kill(process.pid, signum)
    except ProcessLookupError:
        return


def _exit_code_after(node: NodeLayout, timeout_s: float = 5.0) -> int | None:
    """The exit code the supervisor records right after the node exits."""
    deadline = time.monotonic() + timeout_s
    while True:
        code = last_exit_code(node)
        if code is not None or time.monotonic() >= deadline:
            return code
        time.sleep(POLL_S)


def stop_node(node: NodeLayout, *, grace_s: float = STOP_GRACE_S) -> StopResult:
    """SIGTERM, then SIGKILL to the node's process group after ``grace_s``. Never raises for
    a node that is not running (``pid`` None in the result)."""
    return stop_nodes([node], grace_s=grace_s)[0]


def stop_nodes(nodes: Sequence[NodeLayout], *, grace_s: float = STOP_GRACE_S) -> list[StopResult]:
    """Stop every node at once: SIGTERM to all, then wait for each within one shared grace
    period, SIGKILL for those still running after it. Results in the order of ``nodes``."""
    signalled: list[tuple[NodeLayout, RunningNode | None, SupervisorState | None]] = []
    for node in nodes:
        process = running(node)
        supervisor = supervisor_of(node)
        if process is not None:
            node.exit_path.unlink(missing_ok=True)
            # Through the supervisor when there is one: it forwards the signal and knows not to
            # restart a node that was asked to stop, whatever its exit code.
            _signal(supervisor.process if supervisor is not None else process, signal.SIGTERM)
            _signal(process, signal.SIGCONT)
        elif supervisor is not None:
            _signal(supervisor.process, signal.SIGTERM)  # in its back-off: end it
        signalled.append((node, process, supervisor))
    deadline = time.monotonic() + grace_s
    results = []
    for node, process, supervisor in signalled:
        if process is None:
            _wait_for_supervisor(supervisor)
            results.append(StopResult(node.index, None, last_exit_code(node), False))
            continue
        killed = not wait_for_exit(process, max(0.0, deadline - time.monotonic()))
        if killed:
            _kill_group_of(process.pid)
            wait_for_exit(process, grace_s)
        exit_code = _exit_code_after(node)
        _wait_for_supervisor(supervisor)
        results.append(StopResult(node.index, process.pid, exit_code, killed))
    return results


def _wait_for_supervisor(supervisor: SupervisorState | None, timeout_s: float = 5.0) -> None:
    """Wait until the stopped node's supervisor is gone too: it records the exit code and
    then removes its state file, and a ``start`` in between would take it for a supervisor
    about to restart a crashed node (``testnet restart`` raced it and failed)."""
    if supervisor is not None and not wait_for_exit(supervisor.process, timeout_s):
        _kill_group_of(supervisor.process.pid)
        wait_for_exit(supervisor.process, timeout_s)


def kill_node(node: NodeLayout, *, timeout_s: float = STOP_GRACE_S) -> StopResult:
    """SIGKILL the node itself (a crash: no shutdown code runs). Its supervisor records -9."""
    process = running(node)
    if process is None:
        return StopResult(node.index, None, last_exit_code(node), False)
    node.exit_path.unlink(missing_ok=True)
    _signal(process, signal.SIGKILL)
    wait_for_exit(process, timeout_s)
    return StopResult(node.index, process.pid, _exit_code_after(node), True)


def pause_node(node: NodeLayout) -> RunningNode:
    """SIGSTOP: the process freezes with its sockets open. Its peers' connections stay up but
    nothing answers on them, which they see as a partition once their health checks time out.
    Raises :class:`TestnetNodeNotRunning`."""
    return _send(node, signal.SIGSTOP)


def resume_node(node: NodeLayout) -> RunningNode:
    """SIGCONT: undo :func:`pause_node`. Raises :class:`TestnetNodeNotRunning`."""
    return _send(node, signal.SIGCONT)


def _send(node: NodeLayout, signum: int) -> RunningNode:
    process = running(node)
    if process is None:
        raise TestnetNodeNotRunning(f"node-{node.index} is not running")
    _signal(process, signum)
    return process
