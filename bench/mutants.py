"""Mutation score of the consensus simulator: does it catch a deliberately broken core?

Each mutant is a small, named edit of ``protocol/`` (a rule of the consensus core, the sync or
evidence checks, or the ledger) that breaks a property the system promises. For each, the script
copies the repository's ``protocol/`` package to a temporary directory (the working tree is never
touched), applies the edit there, checks that the copy really differs, and runs the simulator
from that copy in a fresh interpreter, seed after seed. Nothing but the simulator's own verdict
counts: no unit test, no assertion inside the mutant. Each mutant ends one of three ways:

- **caught**: a run's checker reported a safety, liveness or agreement violation;
- **crashed**: the simulator raised (or hung past ``--timeout-s``) before any run reported one;
  the exception's type is shown. Still a detection, since a broken core cannot pass, but a
  weaker one: the checker never judged the mutant's behaviour, so a crash says the edit breaks
  something, not that the checks would see what it breaks (a crash that a later refactor
  removes can turn into a survivor);
- **survived**: the seed budget was spent with every run clean.

Prints one line per mutant, then one JSON line:

    {"bench": "mutants", "mutants": N, "caught": C, "crashed": K, "survived": S,
     "survivors": [...], "crashes": {"<mutant>": "<exception type>"}, "stale": [...],
     "seeds": {"<mutant>": <seed that caught or crashed it, or null>}, "runs": {"<mutant>": R},
     "seconds": S}

Exit status 1 when any mutant survives (or a mutant no longer applies to the source), else 0.

    python bench/mutants.py                     # every mutant, up to 200 seeds each
    python bench/mutants.py --only fee_not_charged --max-seeds 50
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Mutant:
    name: str
    what: str
    #: (file under protocol/, exact text that must occur once, replacement)
    edits: tuple[tuple[str, str, str], ...]


MUTANTS = (
    Mutant(
        "lock_ignored_on_prevote",
        "a locked validator prevotes any fresh proposal (line 22 without the lock)",
        (("consensus/core.py", "ok = self.locked_round == -1 or self._locked_on(block_hash)", "ok = True"),),
    ),
    Mutant(
        "any_pol_unlocks",
        "a proof-of-lock from any round releases the lock (line 28 without vr >= lockedRound)",
        (
            (
                "consensus/core.py",
                "ok = self.locked_round <= pol_round or self._locked_on(block_hash)",
                "ok = True",
            ),
        ),
    ),
    Mutant(
        "quorum_by_count",
        "quorums count validators instead of weighing their stake",
        (
            (
                "consensus/validators.py",
                "self.total_power = sum(v.power for v in ordered)",
                "self.total_power = len(ordered)",
            ),
            (
                "consensus/validators.py",
                "return 0 if validator is None else validator.power",
                "return 0 if validator is None else 1",
            ),
        ),
    ),
    Mutant(
        "quorum_at_half",
        "a quorum is half of the power instead of more than two thirds",
        (
            (
                "consensus/validators.py",
                "return 3 * power > 2 * self.total_power",
                "return 2 * power >= self.total_power",
            ),
        ),
    ),
    Mutant(
        "vote_signature_unchecked",
        "votes at the current height are counted without checking their signatures",
        (
            (
                "consensus/core.py",
                "if not self.verifier.verify(self.chain_id, self.validators.public_key(vote.validator), vote):",
                "if False:",
            ),
        ),
    ),
    Mutant(
        "lock_not_restored",
        "a restarted validator forgets the lock it persisted",
        (
            (
                "consensus/core.py",
                "self.locked_round, self.locked_block = signed.locked_round, signed.locked_block[0]",
                "pass",
            ),
        ),
    ),
    Mutant(
        "sign_state_not_persisted",
        "a validator's signed votes are never persisted before they are sent",
        (
            (
                "consensus/core.py",
                "        if fresh:\n            self._effects.append(Persist(self._signer.state))\n        return vote",
                "        return vote",
            ),
        ),
    ),
    Mutant(
        "sync_certificate_unchecked",
        "blocks from block sync are applied without verifying their commit certificates",
        (
            (
                "consensus/sync.py",
                "    verify_certificate(\n        committed.certificate,",
                "    return\n    verify_certificate(\n        committed.certificate,",
            ),
        ),
    ),
    Mutant(
        "block_time_unchecked",
        "a block's time need not be the BFT time of its last commit",
        (("consensus/ledger_app.py", "if block.time_ms != expected_time:", "if False:"),),
    ),
    Mutant(
        "double_slash_allowed",
        "evidence against a punished validator is accepted and slashes again",
        (
            ("consensus/evidence.py", "if is_punished(a.validator):", "if False:"),
            (
                "ledger/staking.py",
                "    if info.tombstoned:\n        return 0",
                "    if False:\n        return 0",
            ),
        ),
    ),
    Mutant(
        "evidence_age_unchecked",
        "evidence older than the evidence window is accepted",
        (("consensus/evidence.py", "if current_height - a.height > max_age:", "if False:"),),
    ),
    Mutant(
        "evidence_signature_unchecked",
        "evidence is accepted without checking that the accused signed both votes",
        (
            (
                "consensus/evidence.py",
                "if not (verifier.verify(chain_id, key, a) and verifier.verify(chain_id, key, b)):",
                "if False:",
            ),
        ),
    ),
    Mutant(
        "fee_not_charged",
        "transactions apply without paying their fee",
        (
            (
                "ledger/bank.py",
                '    debit(state, payer, tx.fee, "fee")\n    state.add("fee_pool", tx.fee)\n',
                "",
            ),
        ),
    ),
    Mutant(
        "escrow_released_twice",
        "a settled escrow stays open, so it can be paid out again",
        (("ledger/escrow.py", "    state.escrows.delete(contract_hash)\n", ""),),
    ),
    Mutant(
        "nonce_unchecked",
        "a transaction applies whatever its nonce (replays included)",
        (("ledger/bank.py", "if tx.nonce != account.nonce + 1:", "if False:"),),
    ),
    Mutant(
        "overdraft_allowed",
        "debits do not check the balance",
        (("ledger/bank.py", "    if account.balance < amount:", "    if False:"),),
    ),
    Mutant(
        "unbonding_immediate",
        "unbonded stake is released at the next block instead of after the unbonding period",
        (("ledger/staking.py", "release = height + state.params.unbonding_period", "release = height + 1"),),
    ),
)

#: The configurations seeds cycle through: different sizes, Byzantine shares and lengths.
CONFIGS = (
    {"validators": 4, "byzantine": 1, "heights": 12},
    {"validators": 7, "byzantine": 2, "heights": 10},
    {"validators": 4, "byzantine": 0, "heights": 12},
)

#: Runs seeds until one reports a violation; before each seed it names it, so a crash (an
#: exception out of the simulator, which ends this interpreter) is tied to its seed.
_CHILD = """
import json, sys
import protocol
assert protocol.__file__.startswith(sys.argv[1]), protocol.__file__
from protocol.sim.world import SimConfig, run_seed
configs = json.loads(sys.argv[2])
for seed in range(int(sys.argv[3])):
    print(json.dumps({"running": seed}), flush=True)
    result = run_seed(seed, SimConfig(**configs[seed % len(configs)]))
    if not result.ok:
        print(json.dumps({"seed": seed, "runs": seed + 1, "violation": (result.safety_violations + result.liveness_failures)[0]}))
        break
else:
    print(json.dumps({"seed": None, "runs": int(sys.argv[3])}))
"""

CAUGHT, CRASHED, SURVIVED = "caught", "crashed", "survived"


class StaleMutant(Exception):
    """The text a mutant edits is no longer in the source (exactly once)."""


@dataclass(frozen=True)
class MutantOutcome:
    """How one mutant ended: ``verdict`` is CAUGHT, CRASHED or SURVIVED."""

    verdict: str
    #: The seed that caught or crashed it; None when it survived.
    seed: int | None
    runs: int
    #: The checker's violation (caught), the exception type and message (crashed), or "".
    detail: str = ""
    #: The exception type's name when the simulator crashed.
    exception: str = ""


def apply_mutant(mutant: Mutant, package: Path) -> None:
    """Edit the copy of ``protocol/`` at ``package``. Raises StaleMutant."""
    for relative, old, new in mutant.edits:
        path = package / relative
        text = path.read_text()
        if text.count(old) != 1:
            raise StaleMutant(f"{mutant.name}: {relative} holds {text.count(old)} copies of {old!r}")
        path.write_text(text.replace(old, new))


def exception_of(stderr: str, returncode: int) -> tuple[str, str]:
    """(type, last line) of the exception a crashed interpreter printed; a signal's name when it
    was killed (a traceback's last line is ``pkg.module.Type: message`` or just ``Type``)."""
    if returncode < 0:
        return f"signal {-returncode}", ""
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    name = last.split(":", 1)[0].strip()
    if name and all(part.isidentifier() for part in name.split(".")):
        return name.rsplit(".", 1)[-1], last
    return "unknown", last


def outcome_of(stdout: str, stderr: str, returncode: int) -> MutantOutcome:
    """Read the child's lines: its verdict, or the seed it was running when it crashed."""
    records = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    running = [r["running"] for r in records if "running" in r]
    final = [r for r in records if "runs" in r]
    if returncode == 0 and final:
        seed = final[-1]["seed"]
        if seed is None:
            return MutantOutcome(SURVIVED, None, int(final[-1]["runs"]))
        return MutantOutcome(CAUGHT, int(seed), int(final[-1]["runs"]), str(final[-1]["violation"]))
    name, last = exception_of(stderr, returncode)
    seed = running[-1] if running else 0
    return MutantOutcome(CRASHED, seed, seed + 1, last or name, name)


def run_mutant(mutant: Mutant, max_seeds: int, timeout_s: float) -> MutantOutcome:
    with tempfile.TemporaryDirectory(prefix=f"dcent-mutant-{mutant.name}-") as tmp:
        root = Path(tmp)
        shutil.copytree(ROOT / "protocol", root / "protocol", ignore=shutil.ignore_patterns("__pycache__"))
        apply_mutant(mutant, root / "protocol")
        changed = [
            relative
            for relative, _, _ in mutant.edits
            if (root / "protocol" / relative).read_text() != (ROOT / "protocol" / relative).read_text()
        ]
        assert changed, f"{mutant.name} changed nothing"
        env = {"PYTHONPATH": str(root), "PYTHONHASHSEED": "0", "PATH": "/usr/bin:/bin"}
        command = [sys.executable, "-c", _CHILD, str(root), json.dumps(CONFIGS), str(max_seeds)]
        try:
            done = subprocess.run(
                command, cwd=root, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
            )
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
            hung = outcome_of(out, "", -1)
            return MutantOutcome(
                CRASHED, hung.seed, hung.runs, f"no verdict within {timeout_s:g} s", "Timeout"
            )
        return outcome_of(done.stdout, done.stderr, done.returncode)


def describe(outcome: MutantOutcome) -> str:
    if outcome.verdict == CAUGHT:
        return f"seed {outcome.seed}: {outcome.detail}"
    if outcome.verdict == CRASHED:
        return f"seed {outcome.seed}: the simulator raised {outcome.exception}: {outcome.detail}"
    return f"{outcome.runs} seeds, every run clean"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-seeds", type=int, default=200, help="seeds per mutant before it survives")
    parser.add_argument("--only", action="append", default=[], metavar="NAME", help="run only these mutants")
    parser.add_argument("--timeout-s", type=float, default=1800.0, help="per mutant")
    args = parser.parse_args()
    chosen = [m for m in MUTANTS if not args.only or m.name in args.only]
    unknown = set(args.only) - {m.name for m in MUTANTS}
    if unknown:
        print(f"unknown mutants: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    outcomes: dict[str, MutantOutcome] = {}
    stale = []
    for mutant in chosen:
        try:
            outcome = run_mutant(mutant, args.max_seeds, args.timeout_s)
        except StaleMutant as exc:
            stale.append(mutant.name)
            print(f"STALE    {exc}", flush=True)
            continue
        outcomes[mutant.name] = outcome
        label = {CAUGHT: "caught  ", CRASHED: "CRASHED ", SURVIVED: "SURVIVED"}[outcome.verdict]
        print(f"{label} {mutant.name:30} {describe(outcome)[:160]}", flush=True)
    by_verdict = {
        verdict: [name for name, o in outcomes.items() if o.verdict == verdict]
        for verdict in (CAUGHT, CRASHED, SURVIVED)
    }
    seconds = round(time.perf_counter() - started, 1)
    print(
        f"{len(chosen)} mutants: {len(by_verdict[CAUGHT])} caught by the checks, "
        f"{len(by_verdict[CRASHED])} crashed the simulator, {len(by_verdict[SURVIVED])} survived"
        + (f", {len(stale)} stale" if stale else "")
        + f" ({seconds} s)",
        flush=True,
    )
    print(
        json.dumps(
            {
                "bench": "mutants",
                "mutants": len(chosen),
                "caught": len(by_verdict[CAUGHT]),
                "crashed": len(by_verdict[CRASHED]),
                "survived": len(by_verdict[SURVIVED]),
                "survivors": by_verdict[SURVIVED],
                "crashes": {name: o.exception for name, o in outcomes.items() if o.verdict == CRASHED},
                "stale": stale,
                "seeds": {name: o.seed for name, o in outcomes.items()},
                "runs": {name: o.runs for name, o in outcomes.items()},
                "max_seeds": args.max_seeds,
                "seconds": seconds,
            }
        )
    )
    return 1 if by_verdict[SURVIVED] or stale else 0


if __name__ == "__main__":
    sys.exit(main())
