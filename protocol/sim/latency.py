"""Finality under link latency, in the simulator: for validator counts one machine cannot host.

A run is the ordinary seeded :class:`~protocol.sim.world.Simulation` with no faults, no adversary,
equal stakes and a fixed validator set, whose healed links take ``rtt_ms / 2`` ms one way plus a
seeded uniform 0..``jitter_ms`` ms (``SimConfig.link_delay_ms`` / ``link_jitter_ms``), so that a round
trip averages ``rtt_ms`` + ``jitter_ms``. This is the shape netem gives a real testnet under
``dcent testnet up --netns --latency RTT`` (half the RTT on each node's link; see
``node.testnet.netns``). Clients send a transaction every ``tx_interval_ms`` to a random node,
which gossips it.

Figures, all in virtual milliseconds and integers (the same seed gives the same figures):

- tx finality: per transaction committed on node 0, its commit there minus its submission (what
  ``bench/finality.py`` measures on node 0 of a real testnet, without the RPC's poll);
- block interval: between node 0's consecutive commits.

What the model leaves out: CPU time. Messages are processed in zero virtual time, so where a real
testnet is CPU-bound (many validators on few cores, signature checks in Python) the simulator
reports the network's and the protocol's share of finality only: a lower bound.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

from protocol.consensus.effects import ConsensusConfig
from protocol.consensus.errors import InvalidConfig
from protocol.sim.world import SIM_CONSENSUS, SimConfig, run_seed


@dataclass(frozen=True, slots=True)
class LatencyFigures:
    validators: int
    rtt_ms: int
    jitter_ms: int
    seed: int
    heights: int
    txs: int
    tx_p50_ms: int
    tx_p99_ms: int
    block_interval_p50_ms: int
    virtual_ms: int
    #: The run's trace hash: equal for equal (seed, config).
    trace_hash: str
    ok: bool


def percentile(values: list[int], per_mille: int) -> int:
    """The nearest-rank percentile (``per_mille`` of 1000) of non-empty ``values``."""
    ordered = sorted(values)
    rank = max(1, -(-per_mille * len(ordered) // 1000))
    return ordered[rank - 1]


def latency_config(
    validators: int,
    rtt_ms: int,
    *,
    jitter_ms: int = 0,
    heights: int = 20,
    consensus: ConsensusConfig = SIM_CONSENSUS,
    tx_interval_ms: int = 50,
) -> SimConfig:
    """The :class:`SimConfig` of a latency run. Raises InvalidConfig for a negative RTT or jitter."""
    if rtt_ms < 0 or jitter_ms < 0:
        raise InvalidConfig("rtt and jitter must be >= 0 ms")
    return replace(
        SimConfig(validators=validators, heights=heights, consensus=consensus),
        faults=False,
        adversary=False,
        extremes=False,
        set_changes=False,
        unequal_stakes=False,
        tx_interval_ms=tx_interval_ms,
        link_delay_ms=rtt_ms // 2,
        link_jitter_ms=jitter_ms,
    )


def measure_finality(config: SimConfig, seed: int) -> LatencyFigures:
    """Run ``config`` (from :func:`latency_config`) under ``seed`` and reduce it to figures."""
    result = run_seed(seed, config)
    finality = list(result.tx_finality_ms)
    commits = list(result.commit_times_ms)
    intervals = [later - earlier for earlier, later in itertools.pairwise(commits)]
    return LatencyFigures(
        validators=config.validators,
        rtt_ms=2 * (config.link_delay_ms or 0),
        jitter_ms=config.link_jitter_ms,
        seed=seed,
        heights=config.heights,
        txs=len(finality),
        tx_p50_ms=percentile(finality, 500) if finality else 0,
        tx_p99_ms=percentile(finality, 990) if finality else 0,
        block_interval_p50_ms=percentile(intervals, 500) if intervals else 0,
        virtual_ms=result.virtual_ms,
        trace_hash=result.trace_hash,
        ok=result.ok,
    )
