"""Bounds on what one GossipSub control message can make us do (workaround 32,
:mod:`node.p2p.gossip_control`): repeated IWANT ids were each answered, repeated GRAFTs each
refused with a PRUNE."""

from __future__ import annotations

import libp2p.pubsub.gossipsub as libp2p_gossipsub
import pytest
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11, GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.utils import safe_bytes_from_hex

from node.p2p import gossip_control, libp2p_tuning, mesh_quota

TOPIC = "consensus"
ASKER = ID(b"a" * 8)


class _Pubsub:
    def __init__(self, peers: list[ID]) -> None:
        self.peer_topics: dict[str, set[ID]] = {TOPIC: set(peers)}


def _router(peers: list[ID]) -> tuple[GossipSub, list[rpc_pb2.RPC]]:
    """A router (degrees 3/2/4) whose sent RPCs are recorded."""
    libp2p_tuning.apply()
    router = GossipSub(
        protocols=[PROTOCOL_ID_V11], degree=3, degree_low=2, degree_high=4, heartbeat_interval=1
    )
    router.pubsub = _Pubsub(peers)  # type: ignore[assignment]
    router.peer_protocol = dict.fromkeys(peers, PROTOCOL_ID_V11)
    sent: list[rpc_pb2.RPC] = []
    router.send_rpc = lambda peer, packet: sent.append(packet)  # type: ignore[method-assign,assignment,misc]
    return router, sent


def _cache_a_message(router: GossipSub, size: int = 4000, seqno: int = 0) -> bytes:
    message = rpc_pb2.Message(data=b"x" * size, seqno=seqno.to_bytes(8, "big"), topicIDs=[TOPIC])
    message.from_id = b"origin"
    router.mcache.put(message)
    return message.from_id + message.seqno


def _iwant(*ids: bytes) -> rpc_pb2.ControlIWant:
    return rpc_pb2.ControlIWant(messageIDs=list(ids))


def _answered(sent: list[rpc_pb2.RPC]) -> int:
    return sum(len(packet.publish) for packet in sent)


async def test_an_iwant_naming_one_message_thousands_of_times_is_answered_once() -> None:
    router, sent = _router([ASKER])
    mid = _cache_a_message(router)
    await libp2p_tuning._ORIGINAL_HANDLE_IWANT(router, _iwant(*[mid] * 5000), ASKER)
    assert _answered(sent) == 5000  # libp2p's: a 70 KB ask, a 20 MB answer
    router, sent = _router([ASKER])
    mid = _cache_a_message(router)
    assert libp2p_gossipsub.GossipSub.handle_iwant is libp2p_tuning._handle_iwant_bounded
    rpc = rpc_pb2.RPC(control=rpc_pb2.ControlMessage(iwant=[_iwant(*[mid] * 2500), _iwant(*[mid] * 2500)]))
    await router.handle_rpc(rpc, ASKER)
    assert _answered(sent) == 1


async def test_one_peer_is_sent_one_message_at_most_three_times_while_it_is_cached() -> None:
    other = ID(b"o" * 8)
    router, sent = _router([ASKER, other])
    mid = _cache_a_message(router)
    for _ in range(5):  # libp2p's own rate limit is 10 IWANTs a second: not what stops these
        await router.handle_iwant(_iwant(mid), ASKER)
    assert _answered(sent) == gossip_control.GOSSIP_RETRANSMISSION == 3
    await router.handle_iwant(_iwant(mid), other)
    assert _answered(sent) == 4  # another peer's count is its own
    # The count goes with the message: once it leaves the cache, nothing is left of either.
    for _ in range(router.mcache.history_size):
        router.mcache.shift()
    assert router.mcache.get(mid) is None
    gossip_control.forget_uncached(router)
    assert not gossip_control._SENT[router]


async def test_ids_not_in_the_cache_are_neither_answered_nor_counted() -> None:
    router, sent = _router([ASKER])
    await router.handle_iwant(_iwant(*[bytes([i]) * 16 for i in range(100)]), ASKER)
    assert sent == [] and not gossip_control._SENT.get(router)


def _meshed_router(peers: list[ID], in_mesh: list[ID]) -> tuple[GossipSub, list[tuple[str, ID]]]:
    """A router with ``in_mesh`` in its mesh on ``TOPIC`` (the first trusted), and the PRUNEs it
    sends, as (topic, peer)."""
    router, _ = _router(peers)
    router.mesh[TOPIC] = set(in_mesh)
    mesh_quota.trust(router, {in_mesh[0]})
    prunes: list[tuple[str, ID]] = []

    async def emit_prune(topic: str, to_peer: ID, do_px: bool, is_unsubscribe: bool) -> None:
        prunes.append((topic, to_peer))

    router.emit_prune = emit_prune  # type: ignore[method-assign]
    return router, prunes


def _graft_rpc(*topics: str) -> rpc_pb2.RPC:
    return rpc_pb2.RPC(
        control=rpc_pb2.ControlMessage(graft=[rpc_pb2.ControlGraft(topicID=t) for t in topics])
    )


async def test_a_graft_repeated_in_one_rpc_to_a_full_mesh_gets_one_prune() -> None:
    peers = [ID(bytes([i + 1]) * 8) for i in range(5)]
    sybil = peers[4]
    router, prunes = _meshed_router(peers, peers[:4])
    await libp2p_tuning._ORIGINAL_HANDLE_RPC(router, _graft_rpc(*[TOPIC] * 1000), sybil)
    assert len(prunes) == 1000  # libp2p's: one PRUNE per repeat
    router, prunes = _meshed_router(peers, peers[:4])
    await router.handle_rpc(_graft_rpc(*[TOPIC] * 1000), sybil)
    assert prunes == [(TOPIC, sybil)]


async def test_grafts_and_prunes_naming_topics_we_are_not_in_are_dropped() -> None:
    """libp2p answered each GRAFT for an unknown topic with a PRUNE of its own (a 1 MiB RPC held
    the loop 17-20 s) and kept a backoff entry for each PRUNE's topic for good."""
    peers = [ID(bytes([i + 1]) * 8) for i in range(3)]
    hostile = peers[0]
    topics = [f"topic-{i}" for i in range(2000)]

    def flood() -> rpc_pb2.RPC:
        rpc = _graft_rpc(*topics)
        rpc.control.prune.extend(rpc_pb2.ControlPrune(topicID=topic, backoff=60) for topic in topics)
        return rpc

    for ours, expected in ((False, 2000), (True, 0)):
        router, prunes = _meshed_router(peers, peers[1:])
        if ours:
            await router.handle_rpc(flood(), hostile)
        else:
            await libp2p_tuning._ORIGINAL_HANDLE_RPC(router, flood(), hostile)
        assert len(prunes) == expected
        assert len(router.back_off) == expected
        assert router.mesh[TOPIC] == set(peers[1:])


def test_one_entry_per_topic_is_kept_and_only_for_our_topics() -> None:
    control = rpc_pb2.ControlMessage(
        graft=[rpc_pb2.ControlGraft(topicID=t) for t in ("a", "b", "a", "zz", "b")],
        prune=[
            rpc_pb2.ControlPrune(topicID=t, backoff=n) for n, t in ((5, "x"), (60, "x"), (1, "a"), (9, "zz"))
        ],
        iwant=[_iwant(b"11", b"22", b"11"), _iwant(b"22", b"33")],
        ihave=[
            rpc_pb2.ControlIHave(topicID="a", messageIDs=[b"11", b"11", b"22"]),
            rpc_pb2.ControlIHave(topicID="b", messageIDs=[b"44"]),
            rpc_pb2.ControlIHave(topicID="a", messageIDs=[b"22", b"55"]),
            rpc_pb2.ControlIHave(topicID="zz", messageIDs=[b"66"]),
        ],
    )
    gossip_control.normalize(control, {"a", "b", "x"})
    assert [graft.topicID for graft in control.graft] == ["a", "b"]
    assert [(prune.topicID, prune.backoff) for prune in control.prune] == [("x", 60), ("a", 1)]
    assert [list(iwant.messageIDs) for iwant in control.iwant] == [[b"11", b"22", b"33"]]
    assert [(ihave.topicID, list(ihave.messageIDs)) for ihave in control.ihave] == [
        ("a", [b"11", b"22", b"55"]),
        ("b", [b"44"]),
    ]


def test_an_id_written_two_ways_is_one_id_and_ids_are_capped() -> None:
    # libp2p decodes ASCII hex (any case, whitespace skipped) and takes other bytes as they are
    control = rpc_pb2.ControlMessage(iwant=[_iwant(b"0a0b", b"0A0B", b"0a 0b", b"\xff\x01", b"\xff\x01")])
    gossip_control.normalize(control, set())
    assert [list(iwant.messageIDs) for iwant in control.iwant] == [[b"0a0b", b"\xff\x01"]]
    many = [i.to_bytes(4, "big") + b"\xff" for i in range(3 * gossip_control.MAX_IHAVE_IDS)]
    control = rpc_pb2.ControlMessage(
        ihave=[rpc_pb2.ControlIHave(topicID="a", messageIDs=many)], iwant=[_iwant(*many)]
    )
    gossip_control.normalize(control, {"a"})
    assert len(control.ihave[0].messageIDs) == gossip_control.MAX_IHAVE_IDS
    assert len(control.iwant[0].messageIDs) == gossip_control.MAX_IWANT_IDS


def test_a_repeated_id_is_decoded_once_and_ids_looked_at_are_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    decoded: list[bytes] = []

    def counting_decode(wire_id: bytes) -> bytes | None:
        decoded.append(wire_id)
        return safe_bytes_from_hex(wire_id)

    monkeypatch.setattr(gossip_control, "safe_bytes_from_hex", counting_decode)
    repeated = [b"\xaa\xbb"] * 100_000 + [b"\xcc\xdd"]
    control = rpc_pb2.ControlMessage(iwant=[_iwant(*repeated)])
    gossip_control.normalize(control, set())
    assert decoded == [b"\xaa\xbb"]  # the id after 5,000 looks is never reached
    assert [list(iwant.messageIDs) for iwant in control.iwant] == [[b"\xaa\xbb"]]


def test_idontwant_entries_are_dropped() -> None:
    """gossipsub v1.2's IDONTWANT: we speak v1.1, and libp2p handled every entry from any peer."""
    control = rpc_pb2.ControlMessage(
        idontwant=[rpc_pb2.ControlIDontWant(messageIDs=[i.to_bytes(2, "big")]) for i in range(1000)]
    )
    gossip_control.normalize(control, {TOPIC})
    assert len(control.idontwant) == 0
