"""What only the memory network offers the layers above: partitions, healing, determinism."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from node.p2p.errors import DialError
from node.p2p.memory import MemoryHost, MemoryNetwork
from node.p2p.reconnect import BackoffPolicy
from tests.integration.conftest import seed_of
from tests.waiting import wait_until

TOPIC = "dcent/test/votes"
BACKOFF = BackoffPolicy(initial_s=0.5, max_s=4.0)


async def start(nursery: trio.Nursery, network: MemoryNetwork, label: str, *bootstrap: str) -> MemoryHost:
    host = network.create_host(seed_of(label), bootstrap=bootstrap, reconnect=BACKOFF)
    await nursery.start(host.run)
    return host


async def test_partition_cuts_links_and_gossip_until_healed(
    autojump_clock: object, nursery: trio.Nursery
) -> None:
    network = MemoryNetwork()
    a = await start(nursery, network, "a")
    b = await start(nursery, network, "b", a.listen_addrs[0])
    c = await start(nursery, network, "c", a.listen_addrs[0])
    await wait_until(lambda: len(a.peers()) == 2, what="all connected")
    inbox = {host.peer_id: await host.subscribe(TOPIC) for host in (a, b, c)}

    network.partition({a.peer_id, b.peer_id}, {c.peer_id})

    assert [p.peer_id for p in a.peers()] == [b.peer_id]
    with pytest.raises(DialError):
        await c.connect(a.listen_addrs[0])
    await b.publish(TOPIC, b"prevote")
    assert (await inbox[a.peer_id].receive()).data == b"prevote"
    assert inbox[c.peer_id].statistics().current_buffer_used == 0

    network.heal()

    await wait_until(lambda: len(a.peers()) == 2, what="c's bootstrap loop redials a")
    await b.publish(TOPIC, b"precommit")
    assert (await inbox[c.peer_id].receive()).data == b"precommit"


async def scenario() -> list[object]:
    """Five hosts, a chain of bootstraps, some gossip and a partition: what each one saw."""
    network = MemoryNetwork()
    seen: list[object] = []
    async with trio.open_nursery() as nursery:
        hosts = [await start(nursery, network, "h0")]
        for i in range(1, 5):
            hosts.append(await start(nursery, network, f"h{i}", hosts[i - 1].listen_addrs[0]))
        await wait_until(lambda: all(len(h.peers()) >= 1 for h in hosts), what="chain connected")
        inboxes = [await h.subscribe(TOPIC) for h in hosts]
        for i, host in enumerate(hosts):
            await host.publish(TOPIC, f"from {i}".encode())
        network.partition({h.peer_id for h in hosts[:2]}, {h.peer_id for h in hosts[2:]})
        await hosts[4].publish(TOPIC, b"after the cut")
        for inbox in inboxes:
            while True:
                try:
                    message = inbox.receive_nowait()
                except trio.WouldBlock:
                    break
                seen.append((message.sender, message.data))
        seen.append([[(p.peer_id, p.direction, p.connected_since) for p in h.peers()] for h in hosts])
        seen.append(trio.current_time())
        nursery.cancel_scope.cancel()
    return seen


def test_the_same_scenario_plays_out_identically() -> None:
    runs = [trio.run(scenario, clock=trio.testing.MockClock(autojump_threshold=0)) for _ in range(2)]
    assert runs[0] == runs[1]
    assert b"after the cut" in [entry[1] for entry in runs[0] if isinstance(entry, tuple)]
