"""The capacity service on memory hosts, in virtual time: what a hostile peer can do to it.

- A peer that is our only subscriber and stops reading makes every publish fail with
  ``GossipBackpressureError``; that once ended the service's nursery and the node.
- A peer flooding announcements for fresh unstaked keys fills the unstaked share of our table
  and no more: the rest is ignored, so not forwarded, while a staked provider still gets through.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest
import trio
import trio.testing

from gpu.simulated import simulated_report
from node.p2p.errors import GossipBackpressureError
from node.p2p.guard import RateLimit
from node.p2p.interface import GossipMessage
from node.p2p.memory import MemoryHost, MemoryNetwork
from node.services.capacity import NO_ROOM_LIMIT, CapacityService, capacity_topic
from protocol.crypto import PrivateKey
from protocol.hardware import ProbeReport
from protocol.market.capacity import (
    CapacityAnnouncement,
    CapacityTable,
    Quota,
    decode_announcement,
    sign_announcement,
)
from tests.unit.market_builders import OFFERED_LIMITS, gpu
from tests.waiting import wait_until

CHAIN = "dcent-capacity-gossip"
TOPIC = capacity_topic(CHAIN)
EPOCH_MS = 1_800_000_000_000
STAKED = PrivateKey.from_label("gossip-staked-provider")
#: The unstaked share of the relay's table in the flood tests (the table holds twice as many).
QUOTA = 8


def now_ms() -> int:
    return EPOCH_MS + int(trio.current_time() * 1000)


def host_for(network: MemoryNetwork, name: str) -> MemoryHost:
    return network.create_host(PrivateKey.from_label(f"gossip-{name}").seed())


def signed(key: PrivateKey, peer_id: str) -> CapacityAnnouncement:
    now = now_ms()
    return sign_announcement(
        key,
        CHAIN,
        peer_id=peer_id,
        sequence=now,
        gpus=(gpu(),),
        price_per_gpu_second=1,
        collateral=1,
        stake=10**15,  # claimed; only the relay's ledger view counts
        executors=("bubblewrap",),
        limits=OFFERED_LIMITS,
        issued_at_ms=now,
        expires_at_ms=now + 60_000,
    )


def service_for(host: MemoryHost, probe_report: ProbeReport, **options: object) -> CapacityService:
    async def probe() -> ProbeReport:
        return probe_report

    return CapacityService(
        chain_id=CHAIN,
        key=PrivateKey.from_label(f"provider-of-{host.peer_id}"),
        host=host,
        probe=probe,
        price_per_gpu_second=1,
        collateral=1,
        stake=lambda: 0,
        executors=("bubblewrap",),
        clock_ms=now_ms,
        limits=lambda: OFFERED_LIMITS,
        **options,  # type: ignore[arg-type]
    )


def drain(inbound: trio.MemoryReceiveChannel[GossipMessage]) -> list[CapacityAnnouncement]:
    received = []
    while True:
        try:
            received.append(decode_announcement(inbound.receive_nowait().data))
        except trio.WouldBlock:
            return received


async def test_a_publish_the_host_cannot_make_is_counted_and_retried_at_the_next_interval(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    network = MemoryNetwork()
    host, listener = host_for(network, "provider"), host_for(network, "listener")
    service = service_for(host, simulated_report("1xH100-80GB", "gossip"), interval_s=10.0)
    attempts: list[float] = []
    publish = host.publish

    async def backpressured_publish(topic: str, data: bytes) -> None:
        attempts.append(trio.current_time())
        if len(attempts) <= 2:  # the only subscriber stopped reading: every queue stays full
            raise GossipBackpressureError(f"every subscriber of {topic} has a full outbound queue")
        await publish(topic, data)

    monkeypatch.setattr(host, "publish", backpressured_publish)
    async with trio.open_nursery() as nursery:
        await nursery.start(host.run)
        await nursery.start(listener.run)
        await listener.connect(host.listen_addrs[0])
        inbound = await listener.subscribe(TOPIC)
        start = trio.current_time()
        await nursery.start(service.run)
        await wait_until(lambda: len(attempts) == 3, what="the announcement after two refusals")
        with trio.fail_after(1):
            received = [decode_announcement((await inbound.receive()).data), *drain(inbound)]
        nursery.cancel_scope.cancel()
    assert [round(at - start) for at in attempts] == [0, 10, 20]
    assert service.publish_failures == 2
    assert [ann.provider for ann in received] == [service.key.public_key.raw]


@dataclass
class FloodRig:
    relay: MemoryHost
    mallory: MemoryHost
    honest: MemoryHost
    service: CapacityService
    #: What the relay forwarded to a node behind it.
    inbound: trio.MemoryReceiveChannel[GossipMessage]


@asynccontextmanager
async def flood_rig(no_room_limit: RateLimit = NO_ROOM_LIMIT) -> AsyncIterator[FloodRig]:
    """mallory, honest and an observer, each connected to the relay only."""
    network = MemoryNetwork()
    relay, mallory, honest, observer = (
        host_for(network, n) for n in ("relay", "mallory", "honest", "observer")
    )
    no_gpus = ProbeReport((), "", 0, False, "no GPUs")
    service = service_for(
        relay,
        no_gpus,
        stake_of=lambda provider: 1_000 if provider == STAKED.public_key.raw else 0,
        table=CapacityTable(CHAIN, max_providers=2 * QUOTA, unstaked=Quota(entries=QUOTA, max_bytes=2**20)),
        no_room_limit=no_room_limit,
    )
    async with trio.open_nursery() as nursery:
        for host in (relay, mallory, honest, observer):
            await nursery.start(host.run)
        for host in (mallory, honest, observer):
            await host.connect(relay.listen_addrs[0])
        inbound = await observer.subscribe(TOPIC)
        await nursery.start(service.run)
        yield FloodRig(relay, mallory, honest, service, inbound)
        nursery.cancel_scope.cancel()


async def flood(mallory: MemoryHost, count: int) -> list[bytes]:
    """Announcements for ``count`` fresh keys, all signed and published by mallory."""
    keys = [PrivateKey.from_label(f"gossip-sybil-{n}") for n in range(count)]
    for key in keys:
        await mallory.publish(TOPIC, signed(key, mallory.peer_id).encode())
    return [key.public_key.raw for key in keys]


async def test_a_flood_of_unstaked_announcements_is_ignored_past_the_quota_and_a_staked_one_arrives(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with flood_rig() as rig:
        sybils = await flood(rig.mallory, 3 * QUOTA)
        await rig.honest.publish(TOPIC, signed(STAKED, rig.honest.peer_id).encode())
        forwarded = [ann.provider for ann in drain(rig.inbound)]
        table = rig.service.table
    # The first QUOTA filled the unstaked share and went on; the rest stopped here.
    assert forwarded == [*sybils[:QUOTA], STAKED.public_key.raw]
    assert rig.relay.guard.refusals[(TOPIC, "no_room")] == 2 * QUOTA
    assert STAKED.public_key.raw in table and len(table) == QUOTA + 1
    # Under the default limit, a flood this small costs mallory no score.
    assert rig.relay.guard.standing(rig.mallory.peer_id).score == 0


async def test_a_forwarder_flooding_announcements_without_room_is_scored(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with flood_rig(RateLimit(per_second=0.01, burst=4)) as rig:
        await flood(rig.mallory, QUOTA + 10)
        await rig.honest.publish(TOPIC, signed(STAKED, rig.honest.peer_id).encode())
        mallory = rig.relay.guard.standing(rig.mallory.peer_id)
        honest = rig.relay.guard.standing(rig.honest.peer_id)
        refusals = rig.relay.guard.refusals
    # Ten without room: four within the burst, six scored as a flood (5 each, decaying).
    assert refusals[(f"{TOPIC}#no-room", "flood")] == 6
    assert 25 < mallory.score <= 30 and mallory.refusals == 6
    assert honest.score == 0 and honest.refusals == 0
