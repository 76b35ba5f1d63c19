"""The provider's pricing policy: the curve, the adjustment, the recent-price reference and
their bounds; the ``[pricing]`` table; the service repricing on its interval (virtual time)."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from node.config import ConfigError, parse_config
from node.market.pricing import MAX_ASK, PricingPolicy, PricingService, PricingSettings, PricingSettingsError
from protocol.units import DCT, percent

FLOOR = 200_000  # 0.0002 DCT per GPU-second


def policy(**overrides: int) -> PricingPolicy:
    values = {
        "floor": FLOOR,
        "slope": percent(150),
        "exponent": 2,
        "adjustment": percent(100),
        "reference_weight": 0,
    }
    return PricingPolicy(**(values | overrides))


def test_an_idle_provider_asks_its_floor_and_a_busy_one_more() -> None:
    p = policy()
    assert p.curve(0, 8) == FLOOR
    assert p.curve(8, 8) == FLOOR * 5 // 2  # floor * (1 + 150%)
    assert p.curve(4, 8) == FLOOR + FLOOR * 3 // 2 // 4  # half busy, squared: a quarter of the slope
    assert p.curve(3, 0) == FLOOR  # no GPUs: the floor
    assert p.curve(99, 8) == p.curve(8, 8)  # never above full
    assert p.next_ask(FLOOR, busy=8, units=8, recent=None) == FLOOR * 5 // 2


def test_the_adjustment_moves_part_of_the_way_and_never_below_the_floor() -> None:
    p = policy(adjustment=percent(25))
    full = p.curve(8, 8)
    assert p.next_ask(FLOOR, busy=8, units=8, recent=None) == FLOOR + (full - FLOOR) // 4
    assert p.next_ask(full, busy=0, units=8, recent=None) == full - (full - FLOOR) // 4
    assert p.next_ask(FLOOR - 50, busy=0, units=8, recent=None) == FLOOR  # clamped to the floor
    assert p.next_ask(10**18, busy=8, units=8, recent=None) == MAX_ASK


def test_the_recent_price_pulls_the_ask_by_its_weight() -> None:
    p = policy(reference_weight=percent(50))
    assert p.next_ask(FLOOR, busy=0, units=8, recent=4 * FLOOR) == FLOOR + (4 * FLOOR - FLOOR) // 2
    assert p.next_ask(FLOOR, busy=0, units=8, recent=None) == FLOOR  # no settled work: ignored
    assert p.next_ask(FLOOR, busy=0, units=8, recent=1) == FLOOR  # a cheaper market: not below the floor


def test_the_pricing_table_parses_and_refuses_impossible_settings() -> None:
    config = parse_config('[pricing]\nfloor = "0.0002 DCT"\nslope = "100%"\nexponent = 1\n')
    assert config.pricing.enabled and config.pricing.floor_amount == FLOOR
    assert PricingPolicy.from_settings(config.pricing).slope == percent(100)
    assert not parse_config("").pricing.enabled  # off by default: the fixed market price
    for table, error in (
        ('floor = "lots"', "pricing.floor"),
        ('floor = "1 DCT"\nslope = "9000%"', "pricing.slope"),
        ('floor = "1 DCT"\nadjustment = "half"', "pricing.adjustment"),
        ('floor = "1 DCT"\nexponent = 40', "pricing.exponent"),
        ('floor = "1 DCT"\nreference_window = 0', "pricing.reference_window"),
        ('flor = "1 DCT"', "did you mean 'floor'"),
    ):
        with pytest.raises(ConfigError) as refused:
            parse_config(f"[pricing]\n{table}\n")
        assert error in refused.value.message
    with pytest.raises(PricingSettingsError):
        PricingSettings(floor="0 DCT")


def test_the_service_reprices_on_its_interval_and_applies_each_ask() -> None:
    clock = trio.testing.MockClock()  # moved by hand below: each jump is one step of the schedule
    applied: list[int] = []
    busy = [0]
    recent_asked: list[int] = []

    async def recent(window: int) -> int | None:
        recent_asked.append(window)
        return None

    async def advance(seconds: float) -> None:
        """Move time one second at a time and let the service run after each step."""
        for _ in range(int(seconds)):
            clock.jump(1)
            await trio.testing.wait_all_tasks_blocked()
        clock.jump(seconds - int(seconds))
        await trio.testing.wait_all_tasks_blocked()

    async def main() -> None:
        settings = PricingSettings(floor="0.0002 DCT", adjustment="50%", reference_weight="10%", interval_s=5)
        service = PricingService(
            settings, utilization=lambda: (busy[0], 4), recent_price=recent, apply=applied.append, initial=DCT
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(service.run)
            assert applied == [DCT - (DCT - FLOOR) // 2]  # from the configured price toward the floor
            busy[0] = 4
            await advance(5.5)
            busy_curve = FLOOR * 5 // 2
            assert applied[1] == applied[0] - (applied[0] - busy_curve) // 2 and service.ask == applied[1]
            await advance(200)
            assert len(applied) == 42
            assert abs(applied[-1] - busy_curve) <= 2  # settled at the busy curve
            nursery.cancel_scope.cancel()
        assert recent_asked and set(recent_asked) == {1_000}

    trio.run(main, clock=clock)
