"""GossipSub's outbound mesh quota (workaround 30, :mod:`node.p2p.mesh_quota`): identities that
connect to us and GRAFT cannot displace the mesh peers we dialed, and trims are not decided by
peer ids an attacker can grind."""

from __future__ import annotations

import libp2p.pubsub.gossipsub as libp2p_gossipsub
import pytest
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11, GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.rcmgr import Direction

from node.p2p import libp2p_tuning, mesh_quota

TOPIC = "consensus"


class _Conn:
    def __init__(self, direction: Direction) -> None:
        self.direction = direction


class _Network:
    """Each peer has one connection, outbound if it is in ``outbound``."""

    def __init__(self, outbound: set[ID]) -> None:
        self.outbound = outbound

    def get_connections(self, peer: ID) -> list[_Conn]:
        return [_Conn(Direction.OUTBOUND if peer in self.outbound else Direction.INBOUND)]


class _Host:
    def __init__(self, outbound: set[ID]) -> None:
        self.network = _Network(outbound)

    def get_network(self) -> _Network:
        return self.network


class _Pubsub:
    """What the router reads of its pubsub: who subscribes to what, and the host's connections."""

    def __init__(self, peers: list[ID], outbound: set[ID]) -> None:
        self.peer_topics: dict[str, set[ID]] = {TOPIC: set(peers)}
        self.host = _Host(outbound)


def _peers(count: int) -> list[ID]:
    return [ID(bytes([i + 1]) * 8) for i in range(count)]


def _router(peers: list[ID], *, in_mesh: list[ID], outbound: set[ID]) -> GossipSub:
    """A router with degrees 3/2/4 (quota 1) on ``TOPIC``, every peer subscribed."""
    libp2p_tuning.apply()
    router = GossipSub(
        protocols=[PROTOCOL_ID_V11], degree=3, degree_low=2, degree_high=4, heartbeat_interval=1
    )
    router.pubsub = _Pubsub(peers, outbound)  # type: ignore[assignment]
    router.peer_protocol = dict.fromkeys(peers, PROTOCOL_ID_V11)
    router.mesh[TOPIC] = set(in_mesh)
    return router


def test_the_quota_is_below_degree_low_and_at_most_half_the_degree() -> None:
    assert mesh_quota.outbound_quota(3, 2) == 1
    assert mesh_quota.outbound_quota(6, 5) == 3
    assert mesh_quota.outbound_quota(8, 2) == 1
    assert mesh_quota.outbound_quota(1, 1) == 0


def test_a_trim_keeps_the_peer_we_dialed_wherever_its_id_sorts() -> None:
    """libp2p's trim (every score 0) prunes whichever peers its set iterates first, the peer we
    dialed among them for some peer ids; ours keeps it for every one."""
    peers = _peers(5)
    libp2p_pruned_it = False
    for dialed in peers:
        router = _router(peers, in_mesh=peers, outbound={dialed})
        pruned = libp2p_tuning._ORIGINAL_PRUNE_SELECTION(router, TOPIC, 2)
        libp2p_pruned_it |= dialed in pruned
        for _ in range(20):
            router.mesh[TOPIC] = set(peers)
            router.back_off.clear()
            _, trimmed = router.mesh_heartbeat()
            assert len(trimmed) == 2 and dialed not in trimmed
            assert dialed in router.mesh[TOPIC] and len(router.mesh[TOPIC]) == 3
    assert libp2p_pruned_it


def test_ties_in_a_trim_are_broken_at_random_not_by_peer_id() -> None:
    peers = _peers(5)
    router = _router(peers, in_mesh=peers, outbound=set())
    libp2p_choices = {frozenset(libp2p_tuning._ORIGINAL_PRUNE_SELECTION(router, TOPIC, 2)) for _ in range(20)}
    assert len(libp2p_choices) == 1  # the same two every time: an attacker grinds ids to be kept
    ever_pruned: set[ID] = set()
    for _ in range(100):
        ever_pruned.update(mesh_quota.select_peers_to_prune(router, TOPIC, 2))
    assert ever_pruned == set(peers)  # each is pruned with p = 0.4 per trim: missing one, ~1e-22


def test_a_lower_score_is_pruned_first_and_a_graylisted_peer_we_dialed_is_not_kept() -> None:
    peers = _peers(5)
    router = _router(peers, in_mesh=peers, outbound={peers[0]})
    assert router.scorer is not None
    scores = {peer: 1.0 for peer in peers}
    scores[peers[0]] = -1000.0  # graylisted (the threshold is set below)
    scores[peers[1]] = -1.0
    router.scorer.score = lambda peer, topics: scores[peer]  # type: ignore[method-assign]
    router.scorer.params.graylist_threshold = -100.0
    assert set(mesh_quota.select_peers_to_prune(router, TOPIC, 2)) == {peers[0], peers[1]}


async def _graft(router: GossipSub, peer: ID) -> list[ID]:
    """Deliver a GRAFT from ``peer``; the peers answered with a PRUNE."""
    pruned: list[ID] = []

    async def emit_prune(topic: str, to_peer: ID, do_px: bool, is_unsubscribe: bool) -> None:
        pruned.append(to_peer)

    router.emit_prune = emit_prune  # type: ignore[method-assign]
    await router.handle_graft(rpc_pb2.ControlGraft(topicID=TOPIC), peer)
    return pruned


async def test_identities_that_graft_us_cannot_take_a_full_mesh_but_a_peer_we_dialed_can() -> None:
    """Mesh of 3, one of them dialed by us. Sybils GRAFT: the first fills the mesh to degree_high,
    the rest are answered with a PRUNE; a peer we dialed is still taken."""
    peers = _peers(8)
    honest, sybils, dialed_later = peers[:3], peers[3:7], peers[7]
    router = _router(peers, in_mesh=honest, outbound={honest[0], dialed_later})
    assert libp2p_gossipsub.GossipSub.handle_graft is libp2p_tuning._handle_graft_with_outbound_rule
    assert await _graft(router, sybils[0]) == []
    assert len(router.mesh[TOPIC]) == 4
    for sybil in sybils[1:]:
        assert await _graft(router, sybil) == [sybil]
    assert router.mesh[TOPIC] == {*honest, sybils[0]}
    assert await _graft(router, dialed_later) == []
    assert dialed_later in router.mesh[TOPIC]
    # and the next trim keeps a peer we dialed
    _, trimmed = router.mesh_heartbeat()
    assert len(trimmed) == 2 and len(router.mesh[TOPIC]) == 3
    assert router.mesh[TOPIC] & {honest[0], dialed_later}


async def test_libp2ps_own_graft_handling_takes_every_sybil() -> None:
    peers = _peers(8)
    router = _router(peers, in_mesh=peers[:3], outbound={peers[0]})
    router.emit_prune = _no_prune  # type: ignore[method-assign]
    for sybil in peers[3:7]:
        await libp2p_tuning._ORIGINAL_HANDLE_GRAFT(router, rpc_pb2.ControlGraft(topicID=TOPIC), sybil)
    assert len(router.mesh[TOPIC]) == 7


async def _no_prune(topic: str, to_peer: ID, do_px: bool, is_unsubscribe: bool) -> None:
    raise AssertionError("libp2p pruned a GRAFT")


def test_the_heartbeat_grafts_a_peer_we_dialed_into_a_mesh_that_has_none() -> None:
    peers = _peers(6)
    inbound, dialed = peers[:4], peers[4:]
    router = _router(peers, in_mesh=inbound[:3], outbound=set(dialed))
    grafted, pruned = router.mesh_heartbeat()
    assert pruned == {} and len(grafted) == 1
    (peer,) = grafted
    assert peer in dialed and grafted[peer] == [TOPIC] and peer in router.mesh[TOPIC]
    # once the quota is met, nothing more
    assert router.mesh_heartbeat() == ({}, {})
    # libp2p's own heartbeat leaves a mesh of degree_low or more alone
    router = _router(peers, in_mesh=inbound[:3], outbound=set(dialed))
    grafted, _ = libp2p_tuning._ORIGINAL_MESH_HEARTBEAT(router)
    assert grafted == {}


@pytest.mark.parametrize("reason", ["backoff", "negative score"])
def test_the_heartbeat_grafts_no_dialed_peer_in_backoff_or_with_a_negative_score(reason: str) -> None:
    peers = _peers(5)
    dialed = peers[4]
    router = _router(peers, in_mesh=peers[:3], outbound={dialed})
    if reason == "backoff":
        router._add_back_off(dialed, TOPIC, False)
    else:
        assert router.scorer is not None
        router.scorer.score = lambda peer, topics: -1.0 if peer == dialed else 0.0  # type: ignore[method-assign]
    grafted, _ = router.mesh_heartbeat()
    assert grafted == {} and dialed not in router.mesh[TOPIC]
