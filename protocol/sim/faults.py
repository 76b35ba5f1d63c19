"""Fault schedules: what goes wrong in one simulated run, drawn from the run's seed.

Every fault happens before ``heal_ms`` (the "global stabilisation time"); after it the network
delivers every message within a small delay, partitions are healed and crashed nodes are back,
so liveness can be demanded. Clock skew (a per-node offset and rate) lasts the whole run.
Per-message decisions (drop, duplicate, delay) are drawn during the run from the same seed.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.sim.rng import SplitMix64

#: Ways to cut the network. "isolate_proposer" picks its victim when it starts.
PARTITION_KINDS = ("halves", "isolate_proposer", "quorum_split")
TWIN_PARTITION = "twins_split"


@dataclass(frozen=True, slots=True)
class Partition:
    start_ms: int
    end_ms: int
    kind: str
    #: Node groups that can talk among themselves; empty for "isolate_proposer" (chosen live).
    groups: tuple[tuple[int, ...], ...]

    def describe(self) -> str:
        shown = " | ".join(",".join(map(str, group)) for group in self.groups) or "proposer alone"
        return f"partition {self.kind} [{self.start_ms}, {self.end_ms}) ms: {shown}"


@dataclass(frozen=True, slots=True)
class Crash:
    node: int
    at_ms: int
    restart_ms: int
    #: Crash at the first Persist effect after ``at_ms``: the signed state is on disk, the
    #: message it guards never left.
    after_persist: bool
    #: Crash at the first Persist after ``at_ms`` that records a lock: the restarted validator
    #: must still honour it.
    after_lock: bool = False

    def describe(self) -> str:
        if self.after_lock:
            how = "right after it next persists a lock"
        else:
            how = "right after its next persist" if self.after_persist else "at once"
        return f"crash node {self.node} at {self.at_ms} ms ({how}), restart at {self.restart_ms} ms"


@dataclass(frozen=True, slots=True)
class FaultSchedule:
    heal_ms: int
    drop_per_mille: int
    duplicate_per_mille: int
    max_delay_ms: int
    partitions: tuple[Partition, ...]
    crashes: tuple[Crash, ...]
    clock_rate_per_mille: tuple[int, ...]
    clock_offset_ms: tuple[int, ...]

    def describe(self) -> str:
        lines = [
            f"faults until {self.heal_ms} ms: drop {self.drop_per_mille}/1000, duplicate "
            f"{self.duplicate_per_mille}/1000, delay 1..{self.max_delay_ms} ms (reorders)",
            "clock rates (per mille): " + ",".join(map(str, self.clock_rate_per_mille)),
        ]
        lines += [partition.describe() for partition in self.partitions]
        lines += [crash.describe() for crash in self.crashes]
        return "\n".join(lines)


def no_faults(nodes: int) -> FaultSchedule:
    return FaultSchedule(0, 0, 0, 0, (), (), (1000,) * nodes, (0,) * nodes)


def _halves(rng: SplitMix64, nodes: int) -> tuple[tuple[int, ...], ...]:
    order = rng.shuffled(range(nodes))
    cut = 1 + rng.below(nodes - 1)
    return (tuple(sorted(order[:cut])), tuple(sorted(order[cut:])))


def _quorum_split(
    rng: SplitMix64, key_of_node: tuple[int, ...], validators: int
) -> tuple[tuple[int, ...], ...]:
    """2f+1 validators against f (every instance of a key on its key's side)."""
    f = (validators - 1) // 3
    minority = set(rng.shuffled(range(validators))[: max(f, 1)])
    side_a = tuple(n for n, k in enumerate(key_of_node) if k not in minority)
    side_b = tuple(n for n, k in enumerate(key_of_node) if k in minority)
    return (side_a, side_b)


def _twins_split(
    rng: SplitMix64, key_of_node: tuple[int, ...], twin_nodes: tuple[tuple[int, int], ...]
) -> tuple[tuple[int, ...], ...]:
    """Each twin's two instances on opposite sides, the honest nodes shared out evenly: the
    split that lets twins holding 1/3 of the power or more make both sides decide."""
    side_a = [a for a, _ in twin_nodes]
    side_b = [b for _, b in twin_nodes]
    twinned = set(side_a) | set(side_b)
    honest = rng.shuffled([node for node in range(len(key_of_node)) if node not in twinned])
    half = (len(honest) + rng.below(2)) // 2
    side_a += honest[:half]
    side_b += honest[half:]
    return (tuple(sorted(side_a)), tuple(sorted(side_b)))


def draw_schedule(
    rng: SplitMix64,
    *,
    key_of_node: tuple[int, ...],
    validators: int,
    twin_nodes: tuple[tuple[int, int], ...],
    heal_range_ms: tuple[int, int],
    honest_nodes: tuple[int, ...] = (),
) -> FaultSchedule:
    """A random fault schedule for one run. Half the time one of ``honest_nodes`` also crashes
    right after it persists a lock (and comes back while the height is still open)."""
    nodes = len(key_of_node)
    heal = rng.between(*heal_range_ms)
    drop = rng.choice((0, 20, 100, 250))
    duplicate = rng.choice((0, 20, 100))
    max_delay = rng.choice((20, 60, 200))
    kinds = PARTITION_KINDS + ((TWIN_PARTITION, TWIN_PARTITION) if twin_nodes else ())
    partitions = []
    if twin_nodes and rng.below(2) == 0:
        # Split the twins early, before evidence of their double votes gets them slashed
        # (half the time from the very start: the classic Twins scenario).
        start = 0 if rng.below(2) == 0 else rng.below(heal // 4)
        partitions.append(
            Partition(
                start,
                heal,
                TWIN_PARTITION,
                _twins_split(rng, key_of_node, twin_nodes),
            )
        )
    for _ in range(rng.below(3)):
        start = rng.below(heal)
        end = rng.between(start + 1, heal)
        kind = rng.choice(kinds)
        if kind == "halves":
            groups = _halves(rng, nodes)
        elif kind == "quorum_split":
            groups = _quorum_split(rng, key_of_node, validators)
        elif kind == TWIN_PARTITION:
            groups = _twins_split(rng, key_of_node, twin_nodes)
        else:
            groups = ()
        partitions.append(Partition(start, end, kind, groups))
    crashes = []
    for node in rng.shuffled(range(nodes))[: rng.below(3)]:
        at = rng.below(heal)
        how = rng.below(3)
        crashes.append(
            Crash(node, at, rng.between(at + 1, heal), after_persist=how == 0, after_lock=how == 1)
        )
    if honest_nodes and rng.below(2) == 0:
        at = rng.below(heal)
        crashes.append(Crash(rng.choice(honest_nodes), at, heal, after_persist=True, after_lock=True))
    rates = tuple(rng.between(900, 1100) for _ in range(nodes))
    offsets = tuple(rng.below(10_000_000) for _ in range(nodes))
    return FaultSchedule(
        heal_ms=heal,
        drop_per_mille=drop,
        duplicate_per_mille=duplicate,
        max_delay_ms=max_delay,
        partitions=tuple(sorted(partitions, key=lambda p: (p.start_ms, p.end_ms))),
        crashes=tuple(crashes),
        clock_rate_per_mille=rates,
        clock_offset_ms=offsets,
    )
