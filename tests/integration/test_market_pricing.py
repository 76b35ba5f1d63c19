"""Prices that move with demand, on real nodes: a provider with a ``[pricing]`` policy asks its
floor while idle and more as its GPUs are taken; the network sees the new ask in its next
capacity announcement, and the provider's quotes use it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import trio

from node.daemon import Node
from node.market.pricing import PricingSettings
from node.services.consensus_driver import wall_clock_ms
from protocol.econview.market import OfferFilter, list_offers
from protocol.market.jobspec import Resources
from tests.integration.node_helpers import LocalNet, make_home, node_config
from tests.waiting import wait_until

DEADLINE_S = 120
FLOOR = 200_000  # "0.0002 DCT" per GPU-second


def seen_price(observer: Node, provider: Node) -> int | None:
    """The provider's ask in the observer's capacity table (None until announced)."""
    assert observer.capacity is not None
    key = provider.validator_key.public_key.raw
    rows = list_offers(
        observer.capacity.entries(), OfferFilter(Resources(1, 0, "", 0, 0, 0)), now_ms=wall_clock_ms()
    )
    asks = [row.announcement.price_per_gpu_second for row in rows if row.announcement.provider == key]
    return asks[0] if asks else None


async def test_a_busy_provider_asks_more_and_an_idle_one_its_floor(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    net = LocalNet(nursery, tmp_path / "net", validators=2, market={0: {"simulated_gpus": "2xH100-80GB"}})
    pricing = PricingSettings(floor="0.0002 DCT", slope="150%", exponent=1, adjustment="100%", interval_s=0.2)
    config = dataclasses.replace(node_config(0, simulated_gpus="2xH100-80GB"), pricing=pricing)
    provider = Node(make_home(net.root, 0, net.genesis), config)
    with trio.fail_after(DEADLINE_S):
        await nursery.start(provider.run)
        net.nodes[0] = provider
        observer = await net.start(1)
        assert provider.market is not None
        await wait_until(
            lambda: seen_price(observer, provider) == FLOOR, what="the idle provider's floor seen"
        )
        assert provider.market.policy.price_per_gpu_second == FLOOR

        provider.market.allocator.allocate("test-hold", 1)  # one of two GPUs taken
        half = FLOOR + FLOOR * 3 // 2 // 2  # floor * (1 + 150% * 1/2)
        await wait_until(lambda: seen_price(observer, provider) == half, what="the busier ask seen")
        assert provider.market.policy.price_per_gpu_second == half
        assert (
            provider.market.provider is not None
            and provider.market.provider.policy.price_per_gpu_second == half
        )

        provider.market.allocator.release("test-hold")
        await wait_until(lambda: seen_price(observer, provider) == FLOOR, what="back to the floor")
