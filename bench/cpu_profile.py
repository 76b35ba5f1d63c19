"""Run a Python module under cProfile timed by CPU, not wall clock (``finality.py --profile-node``).

    python bench/cpu_profile.py OUT.prof -m MODULE ARGS...

On a loaded machine a wall-clock profile charges every function for the time the process spent
waiting for a core; ``time.process_time`` charges only CPU. It counts every thread of the
process, so CPU spent in worker threads (the node's SQLite writes, run with
``trio.to_thread``) is charged to whatever the main thread was doing meanwhile, usually
waiting in ``epoll.poll``. The profile is written when the module returns or raises
``SystemExit`` (a node exits that way on SIGTERM).
"""

from __future__ import annotations

import cProfile
import runpy
import sys
import time


def main() -> None:
    if len(sys.argv) < 4 or sys.argv[2] != "-m":
        raise SystemExit("usage: cpu_profile.py OUT.prof -m MODULE [ARGS...]")
    out, module = sys.argv[1], sys.argv[3]
    sys.argv = [module, *sys.argv[4:]]
    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    finally:
        profiler.disable()
        profiler.dump_stats(out)


if __name__ == "__main__":
    main()
