"""The market view: offers filtered like a job's resources (the matcher's own device rules),
sorted by each key, and the capacity summed up with exact price statistics."""

from __future__ import annotations

import pytest

from protocol.econview.market import SORT_KEYS, OfferFilter, OfferRow, capacity, list_offers, price_stats
from protocol.market.capacity import CapacityAnnouncement
from protocol.market.jobspec import Resources
from tests.unit.market_builders import GIB, NOW_MS, announce, gpu, pub, uuid_n

A100 = "NVIDIA A100-SXM4-40GB"


def resources(
    count: int = 1, *, memory_gib: int = 0, model: str = "", cc: tuple[int, int] = (0, 0), cuda: int = 0
) -> Resources:
    return Resources(count, memory_gib * GIB, model, cc[0], cc[1], cuda)


def market() -> list[CapacityAnnouncement]:
    h100s = (gpu(uuid_n(1)), gpu(uuid_n(2)))
    a100s = tuple(
        gpu(uuid_n(10 + i), name=A100, memory_gib=40, compute_capability=(8, 0), cuda_version=12010)
        for i in range(4)
    )
    return [
        announce("hopper", h100s, price=3_000, stake=10, issued_at_ms=NOW_MS - 5_000, busy=(uuid_n(2),)),
        announce("ampere", a100s, price=1_000, stake=50, issued_at_ms=NOW_MS - 1_000, executors=("docker",)),
        announce(
            "cheap",
            (gpu(uuid_n(20), name=A100, memory_gib=40, compute_capability=(8, 0)),),
            price=500,
            stake=50,
        ),
        announce("gone", (gpu(uuid_n(30)),), price=1, issued_at_ms=NOW_MS - 120_000),  # expired
        announce("sick", (gpu(uuid_n(40), healthy=False),), price=2),
    ]


def providers(rows: list[OfferRow]) -> list[bytes]:
    return [row.announcement.provider for row in rows]


def test_offers_are_those_the_matcher_would_consider_for_the_resources() -> None:
    anns = market()
    everyone = list_offers(anns, OfferFilter(resources()), now_ms=NOW_MS)
    assert providers(everyone) == [pub("cheap"), pub("ampere"), pub("hopper")]  # by price; no gone/sick
    big = list_offers(anns, OfferFilter(resources(memory_gib=60)), now_ms=NOW_MS)
    assert providers(big) == [pub("hopper")]
    assert providers(list_offers(anns, OfferFilter(resources(model="*h100*")), now_ms=NOW_MS)) == [
        pub("hopper")
    ]
    assert providers(list_offers(anns, OfferFilter(resources(cc=(9, 0))), now_ms=NOW_MS)) == [pub("hopper")]
    # Two free H100s are not on offer (one is busy); four A100s are.
    assert providers(list_offers(anns, OfferFilter(resources(2)), now_ms=NOW_MS)) == [pub("ampere")]
    assert providers(list_offers(anns, OfferFilter(resources(), executor="docker"), now_ms=NOW_MS)) == [
        pub("ampere")
    ]
    capped = list_offers(anns, OfferFilter(resources(), max_price_per_gpu_second=1_000), now_ms=NOW_MS)
    assert providers(capped) == [pub("cheap"), pub("ampere")]
    hopper = big[0]
    assert (len(hopper.eligible), len(hopper.free), hopper.age_ms, hopper.memory_bytes) == (
        2,
        1,
        5_000,
        80 * GIB,
    )


@pytest.mark.parametrize("sort", SORT_KEYS)
def test_every_sort_key_orders_and_ties_fall_back_to_price(sort: str) -> None:
    stakes = {pub("hopper"): 70, pub("ampere"): 50, pub("cheap"): 50}
    rows = list_offers(market(), OfferFilter(resources()), now_ms=NOW_MS, sort=sort, stake_of=stakes.get)
    expected = {
        "price": ["cheap", "ampere", "hopper"],
        "stake": ["hopper", "cheap", "ampere"],  # the ledger's stakes; a tie goes to the lower price
        "free": ["ampere", "cheap", "hopper"],
        "memory": ["hopper", "cheap", "ampere"],
        "age": ["cheap", "ampere", "hopper"],
    }[sort]
    assert providers(rows) == [pub(label) for label in expected]
    assert rows[[r.announcement.provider for r in rows].index(pub("hopper"))].stake == 70
    with pytest.raises(ValueError):
        list_offers(market(), OfferFilter(resources()), now_ms=NOW_MS, sort="random")


def test_capacity_counts_current_healthy_units_and_their_prices() -> None:
    summary = capacity(market(), now_ms=NOW_MS)
    assert (summary.providers, summary.units, summary.free, summary.simulated) == (3, 7, 6, 0)
    assert summary.prices is not None and summary.free_prices is not None
    assert (summary.prices.min, summary.prices.median, summary.prices.max) == (500, 1_000, 3_000)
    assert summary.prices.mean == (2 * 3_000 + 4 * 1_000 + 500) // 7
    assert summary.free_prices.max == 3_000 and summary.free_prices.units == 6
    by_model = {model.model: model for model in summary.by_model}
    assert (by_model[A100].units, by_model[A100].free, by_model[A100].providers) == (5, 5, 2)
    assert by_model["NVIDIA H100 80GB HBM3"].free == 1
    assert capacity([], now_ms=NOW_MS).prices is None


def test_the_median_of_an_even_count_is_an_offered_price() -> None:
    stats = price_stats([4, 1, 3, 2])
    assert stats is not None and (stats.min, stats.median, stats.max, stats.mean) == (1, 2, 4, 2)
    assert price_stats([]) is None
