"""Mesh places kept for trusted peers (workaround 30, :mod:`node.p2p.mesh_quota`): identities
that connect to us and GRAFT cannot displace the peers the operator chose, and trims are not
decided by peer ids an attacker can grind. Peers named in a PRUNE are not dialed (workaround 31)."""

from __future__ import annotations

import time
from typing import Any

import libp2p.pubsub.gossipsub as libp2p_gossipsub
import pytest
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11, GossipSub
from libp2p.pubsub.pb import rpc_pb2

from node.config import P2PConfig
from node.daemon import untrusting_validator_warning
from node.p2p import libp2p_tuning, mesh_quota
from node.p2p.errors import HostConfigError
from node.p2p.host_config import HostConfig
from node.p2p.identity import peer_id_from_seed

TOPIC = "consensus"


class _Host:
    """Records the dials libp2p asks for."""

    def __init__(self) -> None:
        self.dialed: list[Any] = []

    def get_peerstore(self) -> _Host:
        return self

    def peer_info(self, peer: ID) -> ID:
        return peer

    async def connect(self, info: Any) -> None:
        self.dialed.append(info)


class _Pubsub:
    """What the router reads of its pubsub: who subscribes to what, who is connected."""

    def __init__(self, peers: list[ID]) -> None:
        self.peer_topics: dict[str, set[ID]] = {TOPIC: set(peers)}
        self.peers: dict[ID, object] = dict.fromkeys(peers, object())
        self.host = _Host()


def _peers(count: int) -> list[ID]:
    return [ID(bytes([i + 1]) * 8) for i in range(count)]


def _router(peers: list[ID], *, in_mesh: list[ID], trusted: set[ID], mutual: bool = True) -> GossipSub:
    """A router with degrees 3/2/4 on ``TOPIC``, every peer subscribed."""
    libp2p_tuning.apply()
    router = GossipSub(
        protocols=[PROTOCOL_ID_V11], degree=3, degree_low=2, degree_high=4, heartbeat_interval=1
    )
    router.pubsub = _Pubsub(peers)  # type: ignore[assignment]
    router.peer_protocol = dict.fromkeys(peers, PROTOCOL_ID_V11)
    router.mesh[TOPIC] = set(in_mesh)
    mesh_quota.trust(router, trusted, mutual=mutual)
    return router


def test_a_trim_keeps_a_trusted_peer_wherever_its_id_sorts() -> None:
    """libp2p's trim (every score 0) prunes whichever peers its set iterates first, the trusted
    one among them for some peer ids; ours keeps it for every one."""
    peers = _peers(5)
    libp2p_pruned_it = False
    for chosen in peers:
        router = _router(peers, in_mesh=peers, trusted={chosen})
        libp2p_pruned_it |= chosen in libp2p_tuning._ORIGINAL_PRUNE_SELECTION(router, TOPIC, 2)
        for _ in range(20):
            router.mesh[TOPIC] = set(peers)
            router.back_off.clear()
            _, trimmed = router.mesh_heartbeat()
            assert len(trimmed) == 2 and chosen not in trimmed
            assert chosen in router.mesh[TOPIC] and len(router.mesh[TOPIC]) == 3
    assert libp2p_pruned_it


def test_a_trim_keeps_every_trusted_peer_before_any_other() -> None:
    peers = _peers(6)
    router = _router(peers, in_mesh=peers, trusted=set(peers[3:]))
    for _ in range(20):
        assert set(mesh_quota.select_peers_to_prune(router, TOPIC, 3)) == set(peers[:3])


def test_ties_in_a_trim_are_broken_at_random_not_by_peer_id() -> None:
    peers = _peers(5)
    router = _router(peers, in_mesh=peers, trusted=set())
    libp2p_choices = {frozenset(libp2p_tuning._ORIGINAL_PRUNE_SELECTION(router, TOPIC, 2)) for _ in range(20)}
    assert len(libp2p_choices) == 1  # the same two every time: an attacker grinds ids to be kept
    ever_pruned: set[ID] = set()
    for _ in range(100):
        ever_pruned.update(mesh_quota.select_peers_to_prune(router, TOPIC, 2))
    assert ever_pruned == set(peers)  # each is pruned with p = 0.4 per trim: missing one, ~1e-22


def test_a_graylisted_peer_is_pruned_first_even_if_trusted_then_the_lower_score() -> None:
    peers = _peers(5)
    router = _router(peers, in_mesh=peers, trusted={peers[0]})
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


async def test_identities_that_graft_us_cannot_take_a_full_mesh_but_a_trusted_peer_can() -> None:
    """Mesh of 3, one of them trusted. Sybils GRAFT: the first fills the mesh to degree_high, the
    rest are answered with a PRUNE; a trusted peer is still taken, and the next trim drops
    untrusted peers only."""
    peers = _peers(8)
    honest, sybils, trusted_later = peers[:3], peers[3:7], peers[7]
    router = _router(peers, in_mesh=honest, trusted={honest[0], trusted_later})
    assert libp2p_gossipsub.GossipSub.handle_graft is libp2p_tuning._handle_graft_with_trust_rule
    assert await _graft(router, sybils[0]) == []
    assert len(router.mesh[TOPIC]) == 4
    for sybil in sybils[1:]:
        assert await _graft(router, sybil) == [sybil]
    assert router.mesh[TOPIC] == {*honest, sybils[0]}
    assert await _graft(router, trusted_later) == []
    assert len(router.mesh[TOPIC]) == 5
    _, trimmed = router.mesh_heartbeat()
    assert len(trimmed) == 2 and {honest[0], trusted_later} <= router.mesh[TOPIC]


async def test_a_refused_identity_is_kept_out_by_our_backoff_when_a_place_frees() -> None:
    """Without our backoff a refused identity could GRAFT again at once and take the next free
    place; with it, libp2p's own backoff check refuses it."""
    peers = _peers(6)
    router = _router(peers, in_mesh=peers[:4], trusted={peers[3]})
    sybil = peers[5]
    assert await _graft(router, sybil) == [sybil]
    slack = 2 * router.heartbeat_interval
    assert router.back_off[TOPIC][sybil] >= time.time() + router.prune_back_off + slack - 1
    router.mesh[TOPIC].discard(peers[0])  # a place frees
    assert await _graft(router, sybil) == [sybil]
    assert sybil not in router.mesh[TOPIC]


async def test_libp2ps_own_graft_handling_takes_every_sybil() -> None:
    peers = _peers(8)
    router = _router(peers, in_mesh=peers[:3], trusted={peers[0]})
    router.emit_prune = _no_prune  # type: ignore[method-assign]
    for sybil in peers[3:7]:
        await libp2p_tuning._ORIGINAL_HANDLE_GRAFT(router, rpc_pb2.ControlGraft(topicID=TOPIC), sybil)
    assert len(router.mesh[TOPIC]) == 7


async def _no_prune(topic: str, to_peer: ID, do_px: bool, is_unsubscribe: bool) -> None:
    raise AssertionError("libp2p pruned a GRAFT")


def test_the_heartbeat_grafts_trusted_peers_until_they_hold_degree_places() -> None:
    """A mesh of 3 untrusted peers, 2 trusted outside it: both are grafted, the next trim drops
    2 untrusted peers (never a trusted one), and then the mesh stays put."""
    peers = _peers(7)
    others, chosen = peers[:5], set(peers[5:])
    router = _router(peers, in_mesh=others[:3], trusted=chosen)
    grafted, pruned = router.mesh_heartbeat()
    assert pruned == {} and set(grafted) == chosen and all(topics == [TOPIC] for topics in grafted.values())
    grafted, pruned = router.mesh_heartbeat()
    assert grafted == {} and len(pruned) == 2 and not chosen & set(pruned)
    assert chosen <= router.mesh[TOPIC] and len(router.mesh[TOPIC]) == 3
    assert router.mesh_heartbeat() == ({}, {})
    # libp2p's own heartbeat leaves a mesh of degree_low or more alone
    router = _router(peers, in_mesh=others[:3], trusted=chosen)
    grafted, _ = libp2p_tuning._ORIGINAL_MESH_HEARTBEAT(router)
    assert grafted == {}


def test_bootstrap_peers_alone_hold_one_place() -> None:
    """They need not trust us back: asking each for a place churns (the spec's ``D_out``, 1)."""
    peers = _peers(7)
    others, chosen = peers[:5], set(peers[5:])
    router = _router(peers, in_mesh=others[:3], trusted=chosen, mutual=False)
    grafted, _ = router.mesh_heartbeat()
    assert len(grafted) == 1 and set(grafted) < chosen
    assert router.mesh_heartbeat() == ({}, {})


def test_where_every_peer_is_trusted_a_mesh_is_only_filled_up_to_degree() -> None:
    peers = _peers(8)
    router = _router(peers, in_mesh=peers[:2], trusted=set(peers))
    grafted, pruned = router.mesh_heartbeat()
    assert len(grafted) == 1 and pruned == {} and len(router.mesh[TOPIC]) == 3
    assert router.mesh_heartbeat() == ({}, {})


@pytest.mark.parametrize("reason", ["backoff", "negative score"])
def test_the_heartbeat_grafts_no_trusted_peer_in_backoff_or_with_a_negative_score(reason: str) -> None:
    peers = _peers(5)
    chosen = peers[4]
    router = _router(peers, in_mesh=peers[:3], trusted={chosen})
    if reason == "backoff":
        router._add_back_off(chosen, TOPIC, False)
    else:
        assert router.scorer is not None
        router.scorer.score = lambda peer, topics: -1.0 if peer == chosen else 0.0  # type: ignore[method-assign]
    grafted, _ = router.mesh_heartbeat()
    assert grafted == {} and chosen not in router.mesh[TOPIC]


async def test_peers_named_in_a_prune_are_not_dialed() -> None:
    strangers = [rpc_pb2.PeerInfo(peerID=peer.to_bytes()) for peer in _peers(20)[10:]]
    router = _router(_peers(3), in_mesh=[], trusted=set())
    await libp2p_tuning._ORIGINAL_DO_PX(router, strangers)
    dialed_by_libp2p = router.pubsub.host.dialed  # type: ignore[union-attr]
    assert len(dialed_by_libp2p) == 10  # 10 named: libp2p dials every one
    router = _router(_peers(3), in_mesh=[], trusted=set())
    assert libp2p_gossipsub.GossipSub._do_px is libp2p_tuning._no_peer_exchange
    await router._do_px(strangers)
    assert router.pubsub.host.dialed == []  # type: ignore[union-attr]


def test_trusted_peers_are_the_bootstrap_peers_and_those_configured_and_must_be_peer_ids() -> None:
    seed, other, third = (bytes([n]) * 32 for n in (1, 2, 3))
    other_id, third_id = peer_id_from_seed(other), peer_id_from_seed(third)
    config = HostConfig(
        node_key_seed=seed, bootstrap=(f"/ip4/127.0.0.1/tcp/1/p2p/{other_id}",), trusted_peers=(third_id,)
    )
    assert {str(peer) for peer in config.trusted_peer_ids()} == {other_id, third_id}
    with pytest.raises(HostConfigError, match="not-a-peer-id"):
        HostConfig(node_key_seed=seed, trusted_peers=("not-a-peer-id",))
    with pytest.raises(HostConfigError, match="this node itself"):
        HostConfig(node_key_seed=seed, trusted_peers=(peer_id_from_seed(seed),))


def test_a_validator_without_trusted_peers_is_warned_at_start() -> None:
    lonely = untrusting_validator_warning(P2PConfig(), bonded=10)
    assert lonely is not None and "trusts no peer" in lonely and "p2p.trusted_peers" in lonely
    bootstrap_only = untrusting_validator_warning(
        P2PConfig(bootstrap=("/ip4/127.0.0.1/tcp/1/p2p/x",)), bonded=10
    )
    assert bootstrap_only is not None and "only its bootstrap peers" in bootstrap_only
    assert untrusting_validator_warning(P2PConfig(), bonded=0) is None  # not a validator
    assert untrusting_validator_warning(P2PConfig(trusted_peers=("12D3KooW...",)), bonded=10) is None


async def test_a_full_mesh_refuses_an_untrusted_graft_even_with_no_trusted_peer_in_it() -> None:
    """Applied only while a trusted peer was in the mesh, the rule left low-trust nodes' meshes
    open to sybils (simulated: 9 of 9 runs split)."""
    peers = _peers(6)
    router = _router(peers, in_mesh=peers[:4], trusted={peers[4]}, mutual=False)
    assert await _graft(router, peers[5]) == [peers[5]]
    assert await _graft(router, peers[4]) == []  # the trusted one is still taken
    assert router.mesh[TOPIC] == {*peers[:5]}
