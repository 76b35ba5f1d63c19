"""Transaction relay between hosts: one long-lived stream per peer, batching, no echo to the source."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from node.p2p.errors import StreamResetError
from node.p2p.interface import Host
from node.services.tx_relay import RELAY_LINGER_S, TX_PROTOCOL, TxRelay
from protocol.encoding import encode
from tests.integration.conftest import Cluster
from tests.waiting import spend_virtual_time, wait_until


class Relayer:
    """A host with a TxRelay whose 'mempool' admits each new transaction once and records who
    sent it: what the consensus driver plugs in."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.seen: list[tuple[bytes, str]] = []
        self.batches: list[int] = []
        self.relay = TxRelay(host, self.admit)

    async def admit(self, batch: list[bytes], peer_id: str) -> list[bytes]:
        self.batches.append(len(batch))
        known = {raw for raw, _ in self.seen}
        fresh = [raw for raw in dict.fromkeys(batch) if raw not in known]
        self.seen.extend((raw, peer_id) for raw in fresh)
        return fresh

    def raws(self) -> set[bytes]:
        return {raw for raw, _ in self.seen}


async def line_of_three(cluster: Cluster, nursery: trio.Nursery) -> list[Relayer]:
    """a - b - c: c only knows b, so a's transactions reach c only through b's relaying."""
    a = await cluster.start("relay-a")
    b = await cluster.start("relay-b", bootstrap=(a.listen_addrs[0],))
    c = await cluster.start("relay-c", bootstrap=(b.listen_addrs[0],))
    await wait_until(lambda: b.peer_ids() == sorted([a.peer_id, c.peer_id]), what="b links a and c")
    relayers = [Relayer(host) for host in (a, b, c)]
    for relayer in relayers:
        await nursery.start(relayer.relay.run)
    return relayers


async def test_transactions_cross_a_line_of_hosts_and_never_echo_back(
    cluster: Cluster, host_clock: trio.testing.MockClock | None, nursery: trio.Nursery
) -> None:
    a, b, c = await line_of_three(cluster, nursery)
    txs = [f"tx-{i}".encode() for i in range(50)]

    for tx in txs:
        a.relay.relay([tx])
        await trio.lowlevel.checkpoint()

    await wait_until(lambda: c.raws() == set(txs), what="c has every transaction via b")
    assert [raw for raw, _ in b.seen] == txs, "b admits them in a's order (one ordered stream)"
    assert {source for _, source in b.seen} == {a.host.peer_id}
    assert {source for _, source in c.seen} == {b.host.peer_id}
    assert a.seen == [], "b does not send a's transactions back to a"


async def test_a_backlog_leaves_as_one_frame(
    cluster: Cluster, host_clock: trio.testing.MockClock | None, nursery: trio.Nursery
) -> None:
    a, b, _ = await line_of_three(cluster, nursery)
    txs = [f"tx-{i}".encode() for i in range(300)]

    for tx in txs:  # all queued before the link task first runs
        a.relay.relay([tx])
    await wait_until(lambda: b.raws() == set(txs), what="b has all 300")
    a.relay.relay([b"later"])
    await wait_until(lambda: b"later" in b.raws(), what="b has the later one")

    assert b.batches == [300, 1]
    assert a.relay.sent_frames == 2


async def test_a_malformed_batch_costs_the_sender_its_stream_and_nothing_else(
    cluster: Cluster, host_clock: trio.testing.MockClock | None, nursery: trio.Nursery
) -> None:
    a, b, _ = await line_of_three(cluster, nursery)
    stream = await a.host.open_stream(b.host.peer_id, TX_PROTOCOL)
    await stream.send_frame(encode([b"ok", 7]))
    with pytest.raises(StreamResetError):
        await stream.receive_frame(100)

    a.relay.relay([b"after"])
    await wait_until(lambda: b.raws() == {b"after"}, what="a new link still works")
    assert b.batches == [1]


async def test_a_disconnected_peers_link_ends_at_the_next_relay(
    cluster: Cluster, host_clock: trio.testing.MockClock | None, nursery: trio.Nursery
) -> None:
    a, b, c = await line_of_three(cluster, nursery)
    b.relay.relay([b"first"])
    await wait_until(lambda: a.raws() == c.raws() == {b"first"}, what="a and c have it")
    assert b.relay.linked_peers == sorted([a.host.peer_id, c.host.peer_id])

    await c.host.close()
    await wait_until(lambda: b.host.peer_ids() == [a.host.peer_id], what="b sees c gone")
    b.relay.relay([b"second"])

    await wait_until(lambda: b"second" in a.raws(), what="a has the second")
    assert b.relay.linked_peers == [a.host.peer_id]


async def test_a_peer_without_a_link_gets_the_backlog_without_any_new_relay(
    cluster: Cluster, host_clock: trio.testing.MockClock | None, nursery: trio.Nursery
) -> None:
    """A failed link loses its queue; what the mempool still holds reaches the peer again through
    the periodic reseed, with no new transaction to trigger a relay (issue 14: a slow node's
    transactions never left it after its links were reset)."""
    a = await cluster.start("relay-a")
    b = await cluster.start("relay-b", bootstrap=(a.listen_addrs[0],))
    await wait_until(lambda: b.peer_ids() == [a.peer_id], what="b links a")
    waiting = [f"waiting-{i}".encode() for i in range(20)]
    sender, receiver = Relayer(a), Relayer(b)
    sender.relay = TxRelay(a, sender.admit, backlog=lambda: list(waiting))
    for relayer in (sender, receiver):
        await nursery.start(relayer.relay.run)
    await wait_until(lambda: receiver.raws() == set(waiting), what="b has a's backlog")
    assert [raw for raw, _ in receiver.seen] == waiting  # in the mempool's order
    assert sender.relay.reseeded == 1


@pytest.mark.parametrize("host_kind", ["memory"])  # virtual time: "within the linger" is exact
async def test_what_arrives_while_a_link_lingers_leaves_in_the_same_frame(
    cluster: Cluster, host_clock: trio.testing.MockClock | None, nursery: trio.Nursery
) -> None:
    """Frames cost more than transactions (issue 14's profile): relays that come while the link
    lingers (``RELAY_LINGER_S``) after the first share its frame instead of one each; one that
    comes later gets a frame of its own."""
    a, b, _ = await line_of_three(cluster, nursery)
    a.relay.relay([b"first"])
    await spend_virtual_time(RELAY_LINGER_S / 4)
    a.relay.relay([b"second"])
    await spend_virtual_time(RELAY_LINGER_S / 4)
    a.relay.relay([b"third"])
    await wait_until(lambda: b.raws() == {b"first", b"second", b"third"}, what="b has all three")
    await spend_virtual_time(RELAY_LINGER_S * 2)
    a.relay.relay([b"later"])
    await wait_until(lambda: b"later" in b.raws(), what="b has the later one")

    assert b.batches == [3, 1]
    assert a.relay.sent_frames == 2


async def test_a_transaction_a_peer_sent_us_is_not_sent_back_to_it(
    cluster: Cluster, host_clock: trio.testing.MockClock | None, nursery: trio.Nursery
) -> None:
    """In a full mesh every receiver re-relays each transaction to the others: a copy queued for
    a peer that has since sent us the same transaction is left out of the frame (it holds it)."""
    a, b, _ = await line_of_three(cluster, nursery)
    a.relay.relay([b"from-a"])
    await wait_until(lambda: b.raws() == {b"from-a"}, what="b has a's transaction")

    b.relay.relay([b"from-a", b"from-b"])  # as if b had it again from elsewhere, with a new one

    await wait_until(lambda: b"from-b" in a.raws(), what="a has b's new transaction")
    assert a.seen == [(b"from-b", b.host.peer_id)]
    assert a.batches == [1], "the frame held only what a did not send"
    assert b.relay.spared == 1
