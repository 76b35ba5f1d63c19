"""`dcent sim`: run the deterministic consensus simulator over many seeds.

Each seed is one run of ``--validators`` validators to ``--heights`` heights, under a fault
schedule drawn from the seed (message loss, duplication, reordering and delay, partitions,
crashes and restarts, clock skew), with unequal stakes, a validator joining and leaving, clients
sending every kind of transaction with extreme values, and ``--byzantine`` of the validators
Byzantine: each draws behaviours from the seed (equivocation, forged signatures, other heights,
extreme block times, invalid blocks, withheld votes, amnesia, forged sync, lock games, forks,
twins; see ``protocol/sim/adversary.py``). Every failing seed is printed with its violations, the
command that reproduces it, the stakes, the adversaries and the fault schedule; the last line is
always the summary::

    runs=N safety_violations=X liveness_failures=Y agreement_violations=A events=E seconds=S runs_per_s=R

Exit status 0 when no run violated safety or liveness, 1 otherwise, 2 for bad arguments.
A long soak: ``dcent sim --seeds 100000``.
"""

from __future__ import annotations

import argparse
import time

from node.cli.report import USAGE, report_error
from protocol.consensus.errors import InvalidConfig
from protocol.sim.runner import Summary, describe_failure
from protocol.sim.world import RunResult, SimConfig, run_seed

EXIT_OK = 0
EXIT_VIOLATION = 1
EXIT_USAGE = 2


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``sim`` to the ``dcent`` command tree."""
    parser = subparsers.add_parser(
        "sim",
        help="run the seeded consensus fault simulator",
        description="Run seeds SEED_START..SEED_START+N-1 of the deterministic consensus simulator "
        "and check safety and liveness after every event.",
    )
    parser.add_argument("--seeds", type=int, required=True, metavar="N", help="number of seeded runs")
    parser.add_argument("--seed-start", type=int, default=0, metavar="S", help="first seed (default 0)")
    parser.add_argument("--validators", type=int, default=4, help="validators (default %(default)s)")
    parser.add_argument(
        "--byzantine",
        type=int,
        default=0,
        metavar="B",
        help="validators run as twins: two instances sharing one key (default %(default)s)",
    )
    parser.add_argument("--heights", type=int, default=20, help="heights per run (default %(default)s)")
    parser.add_argument("--no-faults", action="store_true", help="a perfect network: no fault schedule")
    parser.add_argument("--wire", action="store_true", help="encode and decode every message")
    parser.add_argument(
        "--twins-only",
        action="store_true",
        help="Byzantine keys only run as twins (the first adversary) instead of drawing behaviours",
    )
    parser.add_argument("--equal-stakes", action="store_true", help="every validator stakes the same")
    parser.add_argument("--no-extremes", action="store_true", help="no transaction values at the edges")
    parser.add_argument("--no-set-changes", action="store_true", help="no validator joins or leaves")
    parser.add_argument(
        "--keep-going",
        action="store_true",
        help="go on past a safety violation until agreement breaks (counts agreement violations)",
    )
    parser.add_argument(
        "--max-reports",
        type=int,
        default=10,
        metavar="K",
        help="print the details of at most K failing seeds (default %(default)s)",
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="print one line per run")
    parser.set_defaults(func=run)


def _config(args: argparse.Namespace) -> SimConfig:
    return SimConfig(
        validators=args.validators,
        byzantine=args.byzantine,
        heights=args.heights,
        faults=not args.no_faults,
        wire=args.wire,
        adversary=not args.twins_only,
        unequal_stakes=not args.equal_stakes,
        extremes=not args.no_extremes,
        set_changes=not args.no_set_changes,
        stop_at_violation=not args.keep_going,
    )


def run(args: argparse.Namespace) -> int:
    if args.seeds < 0 or args.seed_start < 0:
        return report_error("--seeds and --seed-start must not be negative", USAGE, exit_code=EXIT_USAGE)
    try:
        config = _config(args)
    except InvalidConfig as exc:
        return report_error(exc.message, exc.code, exit_code=EXIT_USAGE)
    summary = Summary()
    started = time.perf_counter()
    for seed in range(args.seed_start, args.seed_start + args.seeds):
        result = run_seed(seed, config)
        summary.add(result)
        if args.verbose:
            print(_run_line(result), flush=True)
        if not result.ok and len(summary.failures) <= args.max_reports:
            print(describe_failure(result), flush=True)
    seconds = time.perf_counter() - started
    rate = summary.runs / seconds if seconds > 0 else 0.0
    print(f"{summary.line()} seconds={seconds:.2f} runs_per_s={rate:.1f}", flush=True)
    return EXIT_OK if summary.ok else EXIT_VIOLATION


def _run_line(result: RunResult) -> str:
    status = "ok" if result.ok else "FAIL"
    return (
        f"seed={result.seed} {status} heights={min(result.heights)}..{max(result.heights)} "
        f"events={result.events} virtual_ms={result.virtual_ms} trace={result.trace_hash[:16]}"
    )
