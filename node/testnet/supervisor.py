"""A minimal parent for one detached testnet node: records its pid, forwards stop signals, waits,
and records its exit code.

``dcent testnet up`` returns with its nodes still running, so nobody would be left to collect a
node's exit status, and ``dcent testnet down`` (another process) could not report it. This
supervisor is that parent::

    python -m node.testnet.supervisor PID_FILE EXIT_FILE -- COMMAND...

It starts COMMAND in its own process group (the one ``start_new_session`` gave the supervisor),
writes ``<pid> <start time>`` to PID_FILE, forwards SIGTERM, SIGINT and SIGHUP to the node,
and when the node exits writes its return code (negative: killed by that signal) to EXIT_FILE,
removes PID_FILE and exits with the same status as a shell would (128 + signal). Signals meant
only for the node (SIGSTOP, SIGKILL) go straight to the node's pid from PID_FILE.

Standard library only, so it starts in milliseconds and never holds the node's imports.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from types import FrameType

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def process_start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (``/proc/<pid>/stat`` field 22): with
    the pid it names one process, even after the pid is reused. None where /proc is absent."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = stat[stat.rfind(")") + 2 :].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temporary.write_text(text)
    os.replace(temporary, path)


def supervise(pid_file: Path, exit_file: Path, command: list[str]) -> int:
    # Handlers first: a stop signal that arrives while the node is being spawned is kept and
    # delivered to it, instead of killing the supervisor and orphaning the node.
    pending: list[int] = []
    children: list[subprocess.Popen[bytes]] = []

    def forward(signum: int, frame: FrameType | None) -> None:
        if not children:
            pending.append(signum)
        elif children[0].returncode is None:
            children[0].send_signal(signum)

    for signum in FORWARDED:
        signal.signal(signum, forward)
    child = subprocess.Popen(command)
    children.append(child)
    for early in pending:
        child.send_signal(early)
    start_time = process_start_time(child.pid)
    write_atomically(pid_file, f"{child.pid} {start_time if start_time is not None else '-'}\n")
    returncode = child.wait()
    write_atomically(exit_file, f"{returncode}\n")
    pid_file.unlink(missing_ok=True)
    return returncode if returncode >= 0 else 128 - returncode


def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[2] != "--":
        print("usage: python -m node.testnet.supervisor PID_FILE EXIT_FILE -- COMMAND...", file=sys.stderr)
        return 2
    return supervise(Path(argv[0]), Path(argv[1]), argv[3:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
