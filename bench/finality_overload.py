"""``bench/finality.py --overload``: the peak finalized rate, then twice that for a minute (issue 14).

On the testnet ``finality.py`` starts (4 validator processes by default):

1. **Ramp**: offer transfers at ``--rate-start`` tx/s for ``--step-s`` seconds, then 1.4x that,
   and so on, until a step saturates (finalized < 80% of offered, busy refusals over 1% of the
   attempts, or p50 over 2 s) or ``--max-steps`` ran. The peak is the step with the highest
   finalized rate; its p50 is the peak's latency.
2. **Overload**: offer twice the peak for ``--overload-s`` seconds (60).
3. **Drain**: wait until every admitted transaction is committed, or until none has been for
   ``STALL_TIMEOUT_S``: then the run stalled (lost what it admitted) and exits 1.

Load: every node gets a JSON-RPC batch of ``tx_submit`` every ~100 ms, at most one transaction
per sender per batch, each sender's in nonce order and never more than 60 of them waiting (the
mempool's per-sender window). A refusal for load (``MempoolBusy``, 5605: "busy, retry") is
expected: it is counted, and the sender offers the same transaction again in a later batch; so
offered = attempts per second, admitted <= offered. Transactions are signed before each phase
starts, so no signing competes with the nodes while the clock runs.

Figures per phase: finalized tx/s = our transactions whose commit node 0 showed during the
phase, past its first quarter (at most 5 s: the queue building up), per second; p50 = commit
seen on node 0 minus submission, over the transactions admitted in the phase. Node CPU (all
nodes, ``/proc``) per finalized transaction over the whole run and over the overload phase.

Prints one JSON line: ``{"bench": "finality_overload", "peak_tx_per_s", "peak_p50_ms",
"overload_tx_per_s", "overload_p50_ms", "stalled", "node_cpu_ms_per_tx", ...}``.
Goals (issue 14): overload finalized >= 90% of the peak, no stall, p50 <= 2 s.
"""

from __future__ import annotations

import hashlib
import math
import os
import statistics
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

from node.rpc.errors import RpcCallError
from node.testnet.layout import NetworkLayout, NodeLayout
from node.testnet.processes import process_cpu_seconds
from node.testnet.readiness import client_for
from protocol.crypto import PrivateKey
from protocol.ledger.tx import Transfer, sign_tx

MEMPOOL_BUSY = 5605
BATCH_EVERY_S = 0.1
MAX_WAITING_PER_SENDER = 60
RAMP_FACTOR = 1.4
#: A step saturates below this share of its offered rate finalized, ...
SATURATED_SHARE = 0.8
#: ... above this share of busy refusals, or above this p50.
BUSY_SHARE = 0.01
SATURATED_P50_MS = 2000.0
WARMUP_MAX_S = 5.0


@dataclass
class Sender:
    key: PrivateKey
    node: int
    signed: list[tuple[bytes, bytes]] = field(default_factory=list)  # (hash, raw) for nonce 1, 2, ...
    next: int = 0  # index of the next transaction to offer
    waiting: deque[bytes] = field(default_factory=deque)  # admitted, commit not yet seen


@dataclass
class Phase:
    name: str
    rate: float
    duration_s: float
    start_ms: float = 0.0
    end_ms: float = 0.0
    attempts: int = 0
    busy: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    admitted: list[bytes] = field(default_factory=list)
    cpu_before: list[float] = field(default_factory=list)
    cpu_after: list[float] = field(default_factory=list)


def _now_ms() -> float:
    return time.time() * 1000


def presign(senders: Sequence[Sender], chain_id: str, fee: int, phase: Phase) -> None:
    """Sign enough for ``phase``: each sender offers at most one per batch of its node."""
    per_sender = math.ceil(phase.rate * phase.duration_s / len(senders)) + 2
    for index, sender in enumerate(senders):
        to = senders[(index + 1) % len(senders)].key.address.raw
        while len(sender.signed) < sender.next + per_sender:
            raw = sign_tx(sender.key, chain_id, len(sender.signed) + 1, fee, Transfer(to, 1))
            sender.signed.append((_sha256(raw), raw))


def _sha256(raw: bytes) -> bytes:
    return hashlib.sha256(raw).digest()


class Offer:
    """One node's load: a batch every interval, from its senders in turn."""

    def __init__(self, node: NodeLayout, senders: list[Sender], committed: dict[bytes, int]) -> None:
        self.node = node
        self.senders = senders
        self.committed = committed
        self.cursor = 0

    def _pick(self, count: int) -> list[Sender]:
        chosen: list[Sender] = []
        for _ in range(len(self.senders)):
            if len(chosen) >= count:
                break
            sender = self.senders[self.cursor]
            self.cursor = (self.cursor + 1) % len(self.senders)
            while sender.waiting and sender.waiting[0] in self.committed:
                sender.waiting.popleft()
            if len(sender.waiting) < MAX_WAITING_PER_SENDER and sender.next < len(sender.signed):
                chosen.append(sender)
        return chosen

    async def run(self, phase: Phase, nodes: int, submitted_ms: dict[bytes, float]) -> None:
        batch_size = max(1, round(phase.rate * BATCH_EVERY_S / nodes))
        interval_s = batch_size * nodes / phase.rate
        async with client_for(self.node, timeout_s=120) as client:
            start = trio.current_time()
            end = start + phase.duration_s
            number = 0
            while (slot := start + number * interval_s) < end:
                await trio.sleep_until(slot)
                number += 1
                senders = self._pick(batch_size)
                if not senders:
                    continue
                raws = [sender.signed[sender.next][1] for sender in senders]
                sent = _now_ms()
                results = await client.batch([("tx_submit", {"tx": raw.hex()}) for raw in raws])
                for sender, result in zip(senders, results, strict=True):
                    phase.attempts += 1
                    if isinstance(result, RpcCallError):
                        if result.code == MEMPOOL_BUSY:
                            phase.busy += 1
                        else:
                            phase.refused[f"{result.code} {result.message[:50]}"] += 1
                        continue  # offered again in a later batch
                    tx_hash = sender.signed[sender.next][0]
                    sender.next += 1
                    sender.waiting.append(tx_hash)
                    submitted_ms[tx_hash] = sent
                    phase.admitted.append(tx_hash)


def _cpu(pids: Sequence[int]) -> list[float]:
    return [process_cpu_seconds(pid) for pid in pids]


async def run_phase(
    phase: Phase,
    offers: Sequence[Offer],
    submitted_ms: dict[bytes, float],
    pids: Sequence[int],
) -> None:
    phase.cpu_before = _cpu(pids)
    phase.start_ms = _now_ms()
    print(f"{phase.name}: offering {phase.rate:.0f} tx/s for {phase.duration_s:g} s ...", flush=True)
    async with trio.open_nursery() as nursery:
        for offer in offers:
            nursery.start_soon(offer.run, phase, len(offers), submitted_ms)
    phase.end_ms = _now_ms()
    phase.cpu_after = _cpu(pids)


def phase_figures(
    phase: Phase, submitted_ms: dict[bytes, float], seen_ms: dict[bytes, float]
) -> dict[str, Any]:
    warmup_ms = 1000 * min(WARMUP_MAX_S, phase.duration_s / 4)
    low, high = phase.start_ms + warmup_ms, phase.end_ms
    finalized = sum(1 for seen in seen_ms.values() if low <= seen <= high)
    latency = [seen_ms[h] - submitted_ms[h] for h in phase.admitted if h in seen_ms]
    seconds = phase.duration_s
    committed_in_phase = sum(1 for seen in seen_ms.values() if phase.start_ms <= seen <= phase.end_ms)
    cpu_s = sum(after - before for before, after in zip(phase.cpu_before, phase.cpu_after, strict=True))
    return {
        "phase": phase.name,
        "attempts": phase.attempts,
        "offered_tx_per_s": round(phase.attempts / seconds, 1),
        "target_tx_per_s": round(phase.rate, 1),
        "admitted_tx_per_s": round(len(phase.admitted) / seconds, 1),
        "finalized_tx_per_s": round(finalized / ((high - low) / 1000), 1) if high > low else 0.0,
        "p50_ms": round(statistics.median(latency), 1) if latency else None,
        "p99_ms": round(sorted(latency)[max(0, round(0.99 * len(latency)) - 1)], 1) if latency else None,
        "busy_refused": phase.busy,
        "other_refused": dict(phase.refused),
        "node_cpu_ms_per_tx": round(1000 * cpu_s / committed_in_phase, 3) if committed_in_phase else None,
    }


def saturated(figures: dict[str, Any]) -> bool:
    busy_share = figures["busy_refused"] / max(1, figures["attempts"])
    p50 = figures["p50_ms"]
    return (
        figures["finalized_tx_per_s"] < SATURATED_SHARE * figures["target_tx_per_s"]
        or busy_share > BUSY_SHARE
        or (p50 is not None and p50 > SATURATED_P50_MS)
    )


async def overload(
    layout: NetworkLayout,
    *,
    senders_per_node: int,
    rate_start: float,
    step_s: float,
    max_steps: int,
    overload_s: float,
    stall_timeout_s: float,
    pids: Sequence[int],
    fund: Any,
    follow: Any,
    run: Any,
    overload_rate: float | None = None,
) -> dict[str, Any]:
    """``overload_rate``: offer this in the overload phase instead of twice the ramp's peak (to
    compare two builds at one offered rate: admission control changes the peak a ramp finds).
    ``fund(layout, keys, chain_id, fee)``, ``follow(node, start_height, run, done)`` and
    ``run`` (its ``committed_at``, ``blocks``) are finality.py's."""
    nodes = layout.nodes
    async with client_for(nodes[0]) as client:
        head = await client.call("chain_head")
        economics = await client.call("economics_params")
    chain_id, fee = str(head["chain_id"]), int(economics["params"]["min_fee"])
    senders = [Sender(PrivateKey.generate(), i % len(nodes)) for i in range(senders_per_node * len(nodes))]
    print(f"funding {len(senders)} senders from the faucet ...", flush=True)
    await fund(layout, [s.key for s in senders], chain_id, fee)
    async with client_for(nodes[0]) as client:
        start_height = int((await client.call("chain_head"))["height"])
    submitted_ms: dict[bytes, float] = {}
    offers = [Offer(node, [s for s in senders if s.node == node.index], run.committed_at) for node in nodes]
    steps: list[dict[str, Any]] = []
    phases: list[Phase] = []
    done = trio.Event()

    def seen_ms() -> dict[bytes, float]:
        return {h: run.blocks[height][0] for h, height in run.committed_at.items() if h in submitted_ms}

    own_before = time.process_time()
    cpu_start = _cpu(pids)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(follow, nodes[0], start_height, run, done)
        rate = rate_start
        for number in range(max_steps):
            phase = Phase(f"step {number + 1}", rate, step_s)
            presign(senders, chain_id, fee, phase)
            await run_phase(phase, offers, submitted_ms, pids)
            await trio.sleep(2.0)  # the last batches' commits, before judging the step
            phases.append(phase)
            figures = phase_figures(phase, submitted_ms, seen_ms())
            steps.append(figures)
            print(f"  {figures}", flush=True)
            if saturated(figures):
                break
            rate *= RAMP_FACTOR
        peak = max(steps, key=lambda f: f["finalized_tx_per_s"])
        # Twice the peak; a chain that finalized nothing in the ramp still gets the first rate.
        over = Phase("overload", overload_rate or 2 * peak["finalized_tx_per_s"] or rate_start, overload_s)
        presign(senders, chain_id, fee, over)
        await run_phase(over, offers, submitted_ms, pids)
        phases.append(over)
        print("waiting for every admitted transaction to commit ...", flush=True)
        last_count, last_change = -1, time.monotonic()
        while True:
            pending = [h for h in submitted_ms if h not in run.committed_at]
            if not pending:
                break
            if len(run.committed_at) != last_count:
                last_count, last_change = len(run.committed_at), time.monotonic()
            elif time.monotonic() - last_change > stall_timeout_s:
                break
            await trio.sleep(0.2)
        done.set()
    cpu_end = _cpu(pids)
    seen = seen_ms()
    over_figures = phase_figures(over, submitted_ms, seen)
    uncommitted = sum(1 for h in submitted_ms if h not in run.committed_at)
    cpu_s = sum(after - before for before, after in zip(cpu_start, cpu_end, strict=True))
    return {
        "bench": "finality_overload",
        "validators": len(nodes),
        "senders": len(senders),
        "peak_tx_per_s": peak["finalized_tx_per_s"],
        "peak_p50_ms": peak["p50_ms"],
        "peak_offered_tx_per_s": peak["offered_tx_per_s"],
        "overload_tx_per_s": over_figures["finalized_tx_per_s"],
        "overload_p50_ms": over_figures["p50_ms"],
        "overload_p99_ms": over_figures["p99_ms"],
        "overload_offered_tx_per_s": over_figures["offered_tx_per_s"],
        "overload_admitted_tx_per_s": over_figures["admitted_tx_per_s"],
        "overload_share_of_peak": round(over_figures["finalized_tx_per_s"] / peak["finalized_tx_per_s"], 3)
        if peak["finalized_tx_per_s"]
        else None,
        "busy_refused": sum(p.busy for p in phases),
        "other_refused": dict(sum((p.refused for p in phases), Counter())),
        "admitted": len(submitted_ms),
        "committed": len(submitted_ms) - uncommitted,
        "uncommitted": uncommitted,
        "stalled": uncommitted > 0,
        "node_cpu_s": round(cpu_s, 1),
        "node_cpu_ms_per_tx": round(1000 * cpu_s / max(1, len(submitted_ms) - uncommitted), 3),
        "overload_node_cpu_ms_per_tx": over_figures["node_cpu_ms_per_tx"],
        "bench_cpu_s": round(time.process_time() - own_before, 1),
        "steps": steps,
        "overload": over_figures,
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
    }
