"""Many seeded runs and their report: what ``dcent sim`` and the benchmark print."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from protocol.sim.world import RunResult, SimConfig, run_seed


@dataclass
class Summary:
    runs: int = 0
    #: Runs with at least one safety violation / liveness failure.
    safety_violations: int = 0
    #: Runs in which two honest replicas decided different blocks (a subset of the above).
    agreement_violations: int = 0
    liveness_failures: int = 0
    events: int = 0
    failures: list[RunResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.safety_violations == 0 and self.liveness_failures == 0

    def add(self, result: RunResult) -> None:
        self.runs += 1
        self.events += result.events
        self.safety_violations += bool(result.safety_violations)
        self.agreement_violations += any("agreement" in v for v in result.safety_violations)
        self.liveness_failures += bool(result.liveness_failures)
        if not result.ok:
            self.failures.append(result)

    def line(self) -> str:
        """``runs=N safety_violations=X liveness_failures=Y events=E`` (timing is the caller's:
        the protocol package reads no clock)."""
        return (
            f"runs={self.runs} safety_violations={self.safety_violations} "
            f"liveness_failures={self.liveness_failures} agreement_violations={self.agreement_violations} "
            f"events={self.events}"
        )


def reproduce_command(result: RunResult) -> str:
    config = result.config
    command = (
        f"dcent sim --seeds 1 --seed-start {result.seed} --validators {config.validators} "
        f"--byzantine {config.byzantine} --heights {config.heights}"
    )
    flags = (
        (not config.faults, "--no-faults"),
        (config.wire, "--wire"),
        (not config.adversary, "--twins-only"),
        (not config.unequal_stakes, "--equal-stakes"),
        (not config.extremes, "--no-extremes"),
        (not config.set_changes, "--no-set-changes"),
        (not config.stop_at_violation, "--keep-going"),
    )
    return command + "".join(f" {flag}" for wanted, flag in flags if wanted)


def describe_failure(result: RunResult) -> str:
    """The seed, what went wrong, and the fault schedule that reproduces it."""
    lines = [f"FAIL seed={result.seed} heights={','.join(map(str, result.heights))}"]
    lines += [f"  safety: {violation}" for violation in result.safety_violations[:5]]
    lines += [f"  liveness: {failure}" for failure in result.liveness_failures[:5]]
    lines.append(f"  reproduce: {reproduce_command(result)}")
    lines.append(f"  stakes: {','.join(map(str, result.stakes))}")
    adversaries = "; ".join(f"key {key}: {' '.join(behaviours)}" for key, behaviours in result.adversaries)
    lines.append(f"  adversaries: {adversaries or 'none'}")
    lines.append("  fault schedule:")
    lines += [f"    {line}" for line in result.schedule.describe().splitlines()]
    return "\n".join(lines)


def run_seeds(
    seeds: Iterable[int],
    config: SimConfig,
    *,
    on_result: Callable[[RunResult], None] | None = None,
) -> Summary:
    summary = Summary()
    for seed in seeds:
        result = run_seed(seed, config)
        summary.add(result)
        if on_result is not None:
            on_result(result)
    return summary
