"""The simulator's latency model (protocol/sim/latency.py): seeded, and finality follows the links."""

from __future__ import annotations

import pytest

from protocol.consensus.errors import InvalidConfig
from protocol.sim.latency import latency_config, measure_finality, percentile
from protocol.sim.world import SimConfig


def test_the_same_seed_gives_the_same_figures_event_for_event() -> None:
    config = latency_config(4, 100, jitter_ms=20, heights=5)
    first, second = measure_finality(config, 7), measure_finality(config, 7)
    assert first == second
    assert first.ok and first.txs > 0
    # Jitter is drawn from the seed: another seed is another run.
    assert measure_finality(config, 8).trace_hash != first.trace_hash


def test_finality_grows_with_the_round_trip_time() -> None:
    p50 = [measure_finality(latency_config(4, rtt, heights=6), 3).tx_p50_ms for rtt in (0, 100, 200)]
    assert p50[0] < p50[1] < p50[2], p50


def test_a_height_takes_at_least_three_one_way_delays() -> None:
    # Proposal, prevotes and precommits each cross a link once before the next height can start.
    figures = measure_finality(latency_config(4, 200, heights=6), 5)
    assert figures.ok
    assert figures.block_interval_p50_ms >= 3 * 100
    assert figures.rtt_ms == 200


def test_more_validators_under_the_same_latency_still_finalize() -> None:
    figures = measure_finality(latency_config(10, 100, heights=4), 1)
    assert figures.ok and figures.validators == 10 and figures.txs > 0


def test_a_negative_latency_is_refused() -> None:
    with pytest.raises(InvalidConfig):
        latency_config(4, -2)
    with pytest.raises(InvalidConfig):
        SimConfig(link_delay_ms=5, link_jitter_ms=-1)


def test_percentile_is_the_nearest_rank() -> None:
    values = list(range(1, 101))
    assert percentile(values, 500) == 50
    assert percentile(values, 990) == 99
    assert percentile([42], 990) == 42
