"""The Host interface's behaviour, run against both implementations.

``libp2p``: real P2PHosts on 127.0.0.1 (TCP, Noise, yamux, GossipSub). ``memory``: MemoryHosts on
virtual time. Whatever upper layers may rely on is asserted here for both.
"""

from __future__ import annotations

import pytest
import trio

from node.p2p.errors import (
    DialError,
    FrameTooLargeError,
    HostConfigError,
    HostStateError,
    MessageTooLargeError,
    ProtocolNotSupportedError,
    RequestTimeoutError,
    StreamResetError,
)
from node.p2p.framing import Stream
from node.p2p.gossip_params import GossipParams
from node.p2p.identity import peer_id_from_seed
from node.p2p.interface import GossipMessage, serve_requests
from tests.integration.conftest import DEADLINE_S, Cluster, seed_of
from tests.waiting import wait_until

ECHO = "/dcent/test/echo/1"


async def reverse(peer_id: str, payload: bytes) -> bytes:
    return payload[::-1] + peer_id.encode()


async def test_two_hosts_connect_and_exchange_a_framed_request(cluster: Cluster, host_clock: object) -> None:
    a = await cluster.start("a")
    b = await cluster.start("b")
    b.set_stream_handler(ECHO, serve_requests(reverse, max_request=1024))

    assert await a.connect(b.listen_addrs[0]) == b.peer_id
    response = await a.request(b.peer_id, ECHO, b"hello", max_response=1024, timeout=DEADLINE_S)

    assert response == b"olleh" + a.peer_id.encode()  # the server saw our authenticated peer id
    [seen_by_a] = a.peers()
    assert (seen_by_a.peer_id, seen_by_a.direction) == (b.peer_id, "outbound")
    assert b.listen_addrs[0] in seen_by_a.addrs
    await wait_until(lambda: [p.peer_id for p in b.peers()] == [a.peer_id], what="b sees a")
    assert b.peers()[0].direction == "inbound"


async def test_connecting_twice_keeps_one_peer(cluster: Cluster, host_clock: object) -> None:
    a = await cluster.start("a")
    b = await cluster.start("b")
    await a.connect(b.listen_addrs[0])
    await a.connect(b.listen_addrs[0])
    assert [p.peer_id for p in a.peers()] == [b.peer_id]


async def test_many_frames_keep_their_boundaries_both_ways(cluster: Cluster, host_clock: object) -> None:
    a = await cluster.start("a")
    b = await cluster.start("b")
    frames = [b"", b"x", bytes(range(256)) * 300, b"last"]

    async def echo_each(stream: Stream) -> None:
        for _ in frames:
            await stream.send_frame(await stream.receive_frame(1 << 20))

    b.set_stream_handler(ECHO, echo_each)
    await a.connect(b.listen_addrs[0])
    stream = await a.open_stream(b.peer_id, ECHO)
    assert stream.peer_id == b.peer_id
    with trio.fail_after(DEADLINE_S):
        for frame in frames:
            await stream.send_frame(frame)
        assert [await stream.receive_frame(1 << 20) for _ in frames] == frames
    await stream.close()


async def test_peer_id_derives_from_the_seed_across_restarts(cluster: Cluster, host_clock: object) -> None:
    first = await cluster.start("node")
    await first.close()
    again = await cluster.start("node")
    other = await cluster.start("other")

    assert first.peer_id == again.peer_id == peer_id_from_seed(seed_of("node"))
    assert other.peer_id != first.peer_id
    assert again.listen_addrs[0].endswith("/p2p/" + first.peer_id)


async def test_gossip_from_one_host_reaches_the_other_three(cluster: Cluster, host_clock: object) -> None:
    hub = await cluster.start("hub")
    leaves = [await cluster.start(f"leaf-{i}", bootstrap=(hub.listen_addrs[0],)) for i in range(3)]
    topic = "dcent/test/announce"
    channels = {host.peer_id: await host.subscribe(topic) for host in [hub, *leaves]}
    leaf_ids = sorted(leaf.peer_id for leaf in leaves)
    # The message must cross the hub: leaves only know the hub. Wait for the mesh to form.
    await wait_until(lambda: hub.topic_peers(topic) == leaf_ids, what="the hub meshes with all leaves")
    for leaf in leaves:
        await wait_until(lambda leaf=leaf: leaf.topic_peers(topic) == [hub.peer_id], what="leaf meshes hub")

    await leaves[0].publish(topic, b"capacity: 8xH100")

    expected = GossipMessage(topic=topic, data=b"capacity: 8xH100", sender=leaves[0].peer_id)
    with trio.fail_after(DEADLINE_S):
        for channel in channels.values():  # the publisher's own subscription included
            assert await channel.receive() == expected


async def test_host_restarted_on_a_new_port_is_reconnected_with_its_bootstrap_peer(
    cluster: Cluster, host_clock: object
) -> None:
    seed_node = await cluster.start("seed")
    first = await cluster.start("node", bootstrap=(seed_node.listen_addrs[0],))
    await wait_until(
        lambda: [p.peer_id for p in seed_node.peers()] == [first.peer_id], what="first run connects"
    )
    old_addr = first.listen_addrs[0]
    await first.close()
    await wait_until(lambda: seed_node.peers() == [], what="the seed node notices the drop")

    restarted = await cluster.start("node", bootstrap=(seed_node.listen_addrs[0],))

    assert restarted.listen_addrs[0] != old_addr
    await wait_until(
        lambda: [p.peer_id for p in seed_node.peers()] == [restarted.peer_id], what="reconnected"
    )
    await wait_until(
        lambda: restarted.listen_addrs[0] in seed_node.peers()[0].addrs, what="seed learns new addr"
    )
    restarted.set_stream_handler(ECHO, serve_requests(reverse, max_request=64))
    # The seed node reaches the restarted host through the new connection.
    assert await seed_node.request(restarted.peer_id, ECHO, b"ab", max_response=256, timeout=DEADLINE_S) == (
        b"ba" + seed_node.peer_id.encode()
    )


async def test_peer_restarted_on_a_new_address_is_reached_there(cluster: Cluster, host_clock: object) -> None:
    first = await cluster.start("peer")
    node = await cluster.start("node")
    old_address = first.listen_addrs[0]
    await node.connect(old_address)
    await first.close()
    await wait_until(lambda: node.peers() == [], what="the node notices the drop")
    with pytest.raises(DialError):
        await node.connect(old_address)  # libp2p: the peer is now in the negative dial cache

    restarted = await cluster.start("peer")
    new_address = restarted.listen_addrs[0]

    # libp2p would dial only the first (stale) address, and refuse for 60 s: the host clears both.
    assert new_address != old_address
    assert await node.connect(new_address) == restarted.peer_id
    restarted.set_stream_handler(ECHO, serve_requests(reverse, max_request=64))
    assert await node.request(restarted.peer_id, ECHO, b"hi", max_response=256, timeout=DEADLINE_S) == (
        b"ih" + node.peer_id.encode()
    )


async def test_bootstrap_peer_that_drops_us_is_redialled(cluster: Cluster, host_clock: object) -> None:
    seed_node = await cluster.start("seed")
    address = seed_node.listen_addrs[0]
    node = await cluster.start("node", bootstrap=(address,))
    await wait_until(lambda: [p.peer_id for p in node.peers()] == [seed_node.peer_id], what="connected")

    await seed_node.disconnect(node.peer_id)

    await wait_until(lambda: [p.peer_id for p in node.peers()] == [seed_node.peer_id], what="node redials")


async def test_oversize_frame_is_refused_with_a_typed_error(cluster: Cluster, host_clock: object) -> None:
    a = await cluster.start("a")
    b = await cluster.start("b")
    refusals_in, refusals = trio.open_memory_channel[Exception](1)

    async def small_frames_only(stream: Stream) -> None:
        try:
            await stream.receive_frame(16)
        except FrameTooLargeError as exc:
            refusals_in.send_nowait(exc)
            raise

    b.set_stream_handler(ECHO, small_frames_only)
    await a.connect(b.listen_addrs[0])
    stream = await a.open_stream(b.peer_id, ECHO)
    await stream.send_frame(b"x" * 17)

    with trio.fail_after(DEADLINE_S):
        refusal = await refusals.receive()
        with pytest.raises(StreamResetError):
            await stream.receive_frame(16)  # the receiver reset the stream
    assert isinstance(refusal, FrameTooLargeError) and refusal.code == 5253


async def test_request_to_a_silent_peer_times_out(cluster: Cluster, host_clock: object) -> None:
    a = await cluster.start("a")
    b = await cluster.start("b")
    never = trio.Event()

    async def silent(stream: Stream) -> None:
        await never.wait()

    b.set_stream_handler(ECHO, silent)
    await a.connect(b.listen_addrs[0])
    with pytest.raises(RequestTimeoutError):
        await a.request(b.peer_id, ECHO, b"?", max_response=16, timeout=0.5)


async def test_bad_input_gets_typed_errors_and_changes_nothing(cluster: Cluster, host_clock: object) -> None:
    a = await cluster.start("a")
    b = await cluster.start("b")
    stranger = peer_id_from_seed(seed_of("stranger"))

    with pytest.raises(HostConfigError):
        await a.connect("not a multiaddr")
    with pytest.raises(HostConfigError):
        await a.connect(a.listen_addrs[0])  # ourselves
    with pytest.raises(HostConfigError):
        await a.open_stream("not-a-peer-id", ECHO)
    with pytest.raises(DialError):
        await a.open_stream(stranger, ECHO)  # no known address
    await a.connect(b.listen_addrs[0])
    with pytest.raises(ProtocolNotSupportedError):
        await a.open_stream(b.peer_id, "/dcent/test/nobody-serves-this/1")
    with pytest.raises(MessageTooLargeError):
        await a.publish("t", b"x" * (256 * 1024 + 1))

    assert [p.peer_id for p in a.peers()] == [b.peer_id]
    b.set_stream_handler(ECHO, serve_requests(reverse, max_request=16))
    assert await a.request(b.peer_id, ECHO, b"ok", max_response=256, timeout=DEADLINE_S) == (
        b"ko" + a.peer_id.encode()
    )


async def test_closed_host_refuses_connections_and_use(cluster: Cluster, host_clock: object) -> None:
    a = await cluster.start("a")
    b = await cluster.start("b")
    address = b.listen_addrs[0]
    channel = await b.subscribe("t")
    await b.close()
    await b.close()  # idempotent

    with pytest.raises(DialError):
        await a.connect(address)
    await b.publish("t", b"x")  # to nobody: a service on its way out must not fail the node
    with pytest.raises(HostStateError):
        await cluster.make("unstarted").publish("t", b"x")  # but a host that never ran refuses
    with pytest.raises(trio.EndOfChannel):
        await channel.receive()  # subscriptions end with the host
    with pytest.raises(HostStateError):
        await b.run()  # a host runs once


async def test_a_crashing_handler_costs_one_stream_not_the_connection(
    cluster: Cluster, host_clock: object
) -> None:
    a = await cluster.start("a")
    b = await cluster.start("b")
    calls: list[bytes] = []

    async def buggy_then_fine(peer_id: str, payload: bytes) -> bytes:
        calls.append(payload)
        if payload == b"crash":
            raise KeyError("a bug in an upper layer")
        return payload

    b.set_stream_handler(ECHO, serve_requests(buggy_then_fine, max_request=64))
    await a.connect(b.listen_addrs[0])

    with pytest.raises(StreamResetError):
        await a.request(b.peer_id, ECHO, b"crash", max_response=64, timeout=DEADLINE_S)
    assert await a.request(b.peer_id, ECHO, b"fine", max_response=64, timeout=DEADLINE_S) == b"fine"
    assert calls == [b"crash", b"fine"]
    assert [p.peer_id for p in a.peers()] == [b.peer_id]


async def test_a_slow_subscriber_loses_messages_visibly(cluster: Cluster, host_clock: object) -> None:
    publisher = await cluster.start("publisher")
    slow = await cluster.start("slow", gossip=GossipParams(subscriber_buffer=2))
    topic = "dcent/test/capacity"
    inbox = await slow.subscribe(topic)
    await publisher.subscribe(topic)
    await publisher.connect(slow.listen_addrs[0])
    await wait_until(lambda: publisher.topic_peers(topic) == [slow.peer_id], what="mesh formed")

    for i in range(5):
        await publisher.publish(topic, b"%d" % i)

    await wait_until(lambda: slow.gossip_inbound_dropped == 3, what="three drops are counted")
    assert [inbox.receive_nowait().data for _ in range(2)] == [b"0", b"1"]
