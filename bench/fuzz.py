"""Fuzz every decoder of network input for hundreds of thousands of inputs.

The same targets and inputs as ``tests/unit/test_fuzz_decoders.py`` (``tests/fuzz_targets.py``):
random bytes, random canonical values, valid messages with fields changed, and valid encodings
cut, flipped or re-encoded non-canonically, each fed to its decoder and then to the node's first
check of the decoded value. Any exception other than the typed rejection is a failure: it is
printed with the input's hex, and the script exits 1.

Hypothesis drives each target (seeded, so a run can be repeated with ``--seed``); every example
is a Hypothesis-seeded random tape cut into ``--batch`` inputs, because Hypothesis spends about a
millisecond per example of its own.

    .venv/bin/python bench/fuzz.py                      # 300,000 inputs
    .venv/bin/python bench/fuzz.py --inputs 2000000 --seed 7

Prints per-target figures and one JSON line:
{"bench": "fuzz", "inputs": ..., "failures": 0, "inputs_per_s": ..., "targets": {...}}
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

# The targets live with the tests; run from anywhere.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fuzz_targets import TARGETS, Tape, Target, UnexpectedException, check, generate


def fuzz_target(target: Target, inputs: int, batch: int, run_seed: int) -> tuple[Counter[str], list[str]]:
    outcomes: Counter[str] = Counter()
    failures: list[str] = []

    @seed(run_seed)
    @settings(
        max_examples=max(1, inputs // batch),
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
    )
    @given(rng=st.randoms(use_true_random=True))
    def run(rng: random.Random) -> None:
        tape = Tape(rng=rng)
        for _ in range(batch):
            outcomes[check(target, generate(target, tape))] += 1

    try:
        run()
    except UnexpectedException as exc:
        failures.append(str(exc))
    return outcomes, failures


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--inputs", type=int, default=300_000, help="inputs in all, split over the targets")
    parser.add_argument("--batch", type=int, default=50, help="inputs per Hypothesis example")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--target", default="", help="only targets whose name contains this")
    args = parser.parse_args()

    targets = [t for t in TARGETS if args.target in t.name]
    if not targets:
        print(f"no target matches {args.target!r}", file=sys.stderr)
        return 2
    per_target = max(args.batch, args.inputs // len(targets))
    summary: dict[str, dict[str, int]] = {}
    all_failures: list[str] = []
    started = time.perf_counter()
    print(f"{'target':<52} {'inputs':>9} {'rejected':>9} {'refused':>9} {'accepted':>9} {'per s':>8}")
    for target in targets:
        t0 = time.perf_counter()
        outcomes, failures = fuzz_target(target, per_target, args.batch, args.seed)
        elapsed = time.perf_counter() - t0
        total = sum(outcomes.values())
        summary[target.name] = {"inputs": total, **outcomes, "failures": len(failures)}
        all_failures += failures
        print(
            f"{target.name[:52]:<52} {total:>9} {outcomes['rejected']:>9} {outcomes['refused']:>9} "
            f"{outcomes['accepted']:>9} {total / elapsed:>8.0f}" + ("  FAILED" if failures else "")
        )
    elapsed = time.perf_counter() - started
    inputs = sum(item["inputs"] for item in summary.values())
    for failure in all_failures:
        print(f"FAILURE: {failure[:2000]}", file=sys.stderr)
    print(f"{inputs} inputs in {elapsed:.1f} s ({inputs / elapsed:.0f}/s), {len(all_failures)} failure(s)")
    print(
        json.dumps(
            {
                "bench": "fuzz",
                "inputs": inputs,
                "failures": len(all_failures),
                "seconds": round(elapsed, 1),
                "inputs_per_s": round(inputs / elapsed),
                "seed": args.seed,
                "targets": summary,
            }
        )
    )
    return 1 if all_failures else 0


if __name__ == "__main__":
    sys.exit(main())
