"""A minimal parent for one detached testnet node: records its pid, forwards stop signals, waits,
and records its exit code.

``dcent testnet up`` returns with its nodes still running, so nobody would be left to collect a
node's exit status, and ``dcent testnet down`` (another process) could not report it. This
supervisor is that parent::

    python -m node.testnet.supervisor [--restart on-failure] PID_FILE EXIT_FILE -- COMMAND...

It starts COMMAND in its own process group (the one ``start_new_session`` gave the supervisor),
writes ``<pid> <start time>`` to PID_FILE, forwards SIGTERM, SIGINT and SIGHUP to the node,
and when the node exits writes its return code (negative: killed by that signal) to EXIT_FILE,
removes PID_FILE and exits with the same status as a shell would (128 + signal). Signals meant
only for the node (SIGSTOP, SIGKILL) go straight to the node's pid from PID_FILE.

With ``--restart on-failure`` (systemd's ``Restart=on-failure``) a node that exits non-zero or is
killed by a signal the supervisor did not forward (a crash, the OOM killer, ``testnet kill``) is
started again after a back-off that doubles from 1 s to 30 s and resets once a run lasted a
minute; after ``MAX_QUICK_FAILURES`` failures in a row that each lasted under a minute it gives up
(a crash loop is a bug to read in the log, not to hide). A clean exit (0, e.g. on SIGTERM from
``testnet stop``) or a stop signal sent to the supervisor ends it. While it runs, STATE_FILE
(``<PID_FILE's directory>/node.supervisor``) holds JSON: the supervisor's pid and start time, the
policy, restarts so far and ``running`` or ``backoff``; ``testnet status`` reads it.

Standard library only, so it starts in milliseconds and never holds the node's imports.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
RESTART_POLICIES = ("no", "on-failure")
STATE_FILE_NAME = "node.supervisor"
BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 30.0
#: A run that lasted this long resets the back-off and the count of quick failures.
STABLE_RUN_S = 60.0
MAX_QUICK_FAILURES = 10


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


def _write_state(state_file: Path, policy: str, restarts: int, phase: str) -> None:
    me = os.getpid()
    doc = {"pid": me, "start_time": process_start_time(me), "restart": policy, "restarts": restarts}
    write_atomically(state_file, json.dumps({**doc, "state": phase}) + "\n")


def supervise(pid_file: Path, exit_file: Path, command: list[str], *, restart: str = "no") -> int:
    # Handlers first: a stop signal that arrives while the node is being spawned is kept and
    # delivered to it, instead of killing the supervisor and orphaning the node.
    pending: list[int] = []
    children: list[subprocess.Popen[bytes]] = []
    stopping: list[int] = []

    def forward(signum: int, frame: FrameType | None) -> None:
        stopping.append(signum)
        if not children:
            pending.append(signum)
        elif children[-1].returncode is None:
            children[-1].send_signal(signum)

    for signum in FORWARDED:
        signal.signal(signum, forward)
    state_file = pid_file.with_name(STATE_FILE_NAME)
    restarts = quick_failures = 0
    backoff_s = BACKOFF_FIRST_S
    try:
        while True:
            _write_state(state_file, restart, restarts, "running")
            started = time.monotonic()
            child = subprocess.Popen(command)
            children.append(child)
            for early in pending:
                child.send_signal(early)
            pending.clear()
            start_time = process_start_time(child.pid)
            write_atomically(pid_file, f"{child.pid} {start_time if start_time is not None else '-'}\n")
            returncode = child.wait()
            write_atomically(exit_file, f"{returncode}\n")
            pid_file.unlink(missing_ok=True)
            if restart != "on-failure" or returncode == 0 or stopping:
                return returncode if returncode >= 0 else 128 - returncode
            if time.monotonic() - started >= STABLE_RUN_S:
                quick_failures, backoff_s = 0, BACKOFF_FIRST_S
            quick_failures += 1
            if quick_failures > MAX_QUICK_FAILURES:
                print(f"supervisor: {MAX_QUICK_FAILURES} quick failures in a row; not restarting", flush=True)
                return returncode if returncode >= 0 else 128 - returncode
            _write_state(state_file, restart, restarts, "backoff")
            print(f"supervisor: node exited with {returncode}; restarting in {backoff_s:g} s", flush=True)
            deadline = time.monotonic() + backoff_s
            # Sleep in slices so a stop signal during the back-off ends it promptly.
            while not stopping and time.monotonic() < deadline:
                time.sleep(min(0.1, deadline - time.monotonic()))
            if stopping:
                return returncode if returncode >= 0 else 128 - returncode
            restarts += 1
            backoff_s = min(backoff_s * 2, BACKOFF_MAX_S)
    finally:
        state_file.unlink(missing_ok=True)


USAGE = "usage: python -m node.testnet.supervisor [--restart no|on-failure] PID_FILE EXIT_FILE -- COMMAND..."


def main(argv: list[str]) -> int:
    restart = "no"
    if argv[:1] == ["--restart"] and len(argv) > 1:
        restart, argv = argv[1], argv[2:]
    if restart not in RESTART_POLICIES or len(argv) < 4 or argv[2] != "--":
        print(USAGE, file=sys.stderr)
        return 2
    return supervise(Path(argv[0]), Path(argv[1]), argv[3:], restart=restart)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
