"""Fuzz every decoder of network input for hundreds of thousands of inputs, then every handler.

The same targets and inputs as ``tests/unit/test_fuzz_decoders.py`` (``tests/fuzz_targets.py``):
random bytes, random canonical values, valid messages with fields changed, and valid encodings
cut, flipped or re-encoded non-canonically, each fed to its decoder and then to the node's first
check of the decoded value. Any exception other than the typed rejection is a failure: it is
printed with the input's hex, and the script exits 1.

Hypothesis drives each target (seeded, so a run can be repeated with ``--seed``); every example
is a Hypothesis-seeded random tape cut into ``--batch`` inputs, because Hypothesis spends about a
millisecond per example of its own.

Then the node's handlers (``tests/integration/handler_rig.py``: the real consensus driver, relay,
job service, blob server and capacity service, on a memory pipe instead of a network) get
``--handler-inputs`` streams per stream protocol and gossip messages per topic, framed right and
wrong, as ``tests/integration/test_fuzz_handlers.py`` sends them. A handler may serve or refuse;
any other exception is a failure.

    .venv/bin/python bench/fuzz.py                      # 300,000 inputs, 2,000 per handler
    .venv/bin/python bench/fuzz.py --inputs 2000000 --seed 7

Prints per-target figures and one JSON line:
{"bench": "fuzz", "inputs": ..., "failures": 0, "inputs_per_s": ..., "targets": {...}}
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import time
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

# The targets live with the tests; run from anywhere.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tempfile

import trio

from tests.fuzz_targets import TARGETS, Tape, Target, UnexpectedException, check, generate, node_stack
from tests.integration.handler_rig import (
    GOSSIP_TOPICS,
    STREAM_PROTOCOLS,
    feed_stream,
    open_rig,
    stream_input,
)
from tests.integration.handler_rig import target as handler_target


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


async def fuzz_handlers(inputs: int, run_seed: int) -> tuple[dict[str, dict[str, int]], list[str]]:
    """Every handler of one node, ``inputs`` each; stops a handler at its first failure."""
    summary: dict[str, dict[str, int]] = {}
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="dcent-fuzz-") as root:
        async with open_rig(Path(root)) as rig:
            handlers = rig.stream_handlers()
            for protocol in sorted(STREAM_PROTOCOLS):
                handler, limit = handlers[protocol]
                outcomes: Counter[str] = Counter()
                tape = Tape(rng=random.Random(f"{run_seed}/{protocol}"))
                for _ in range(inputs):
                    wire = stream_input(tape, STREAM_PROTOCOLS[protocol], limit)
                    try:
                        with node_stack():
                            outcomes[await feed_stream(handler, wire, protocol)] += 1
                        await rig.settle()
                    except Exception as exc:  # noqa: BLE001 - the finding: report it with its input
                        failures.append(f"{protocol}: {exc!r} on {wire.hex()}")
                        break
                summary[protocol] = dict(outcomes)
            for topic in sorted(GOSSIP_TOPICS):
                count = 0
                tape = Tape(rng=random.Random(f"{run_seed}/{topic}"))
                for _ in range(inputs):
                    data = generate(handler_target(GOSSIP_TOPICS[topic]), tape)
                    try:
                        with node_stack():
                            await rig.gossip(topic, data)
                    except Exception as exc:  # noqa: BLE001
                        failures.append(f"gossip {topic}: {exc!r} on {data.hex()}")
                        break
                    count += 1
                summary[f"gossip {topic}"] = {"handled": count}
    return summary, failures


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--inputs", type=int, default=300_000, help="inputs in all, split over the targets")
    parser.add_argument("--batch", type=int, default=50, help="inputs per Hypothesis example")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--target", default="", help="only targets whose name contains this")
    parser.add_argument("--handler-inputs", type=int, default=2_000, help="inputs per handler (0: none)")
    args = parser.parse_args()
    # The node's own log lines about what it refused would drown the figures.
    logging.basicConfig(level=logging.CRITICAL)

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
    inputs = sum(item["inputs"] for item in summary.values())
    handlers: dict[str, dict[str, int]] = {}
    if args.handler_inputs > 0:
        t0 = time.perf_counter()
        handlers, failures = trio.run(fuzz_handlers, args.handler_inputs, args.seed)
        elapsed = time.perf_counter() - t0
        all_failures += failures
        handled = sum(sum(item.values()) for item in handlers.values())
        inputs += handled
        print(f"\n{'handler':<52} {'inputs':>9} {'refused':>9} {'served':>9}")
        for name, outcomes in handlers.items():
            print(
                f"{name:<52} {sum(outcomes.values()):>9} {outcomes.get('refused', 0):>9} "
                f"{outcomes.get('served', outcomes.get('handled', 0)):>9}"
            )
        print(f"handlers: {handled} inputs in {elapsed:.1f} s ({handled / elapsed:.0f}/s)")
    elapsed = time.perf_counter() - started
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
                "handlers": handlers,
            }
        )
    )
    return 1 if all_failures else 0


if __name__ == "__main__":
    sys.exit(main())
