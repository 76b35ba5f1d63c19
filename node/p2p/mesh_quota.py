"""GossipSub v1.1's outbound mesh quota, which py-libp2p 0.8.1 lacks (workaround 30 in
``node/p2p/__init__.py``).

The attack: a peer that can connect to us can make any number of identities (a peer id is a
key pair) and GRAFT us from each. libp2p accepts every GRAFT, and when the mesh passes
``degree_high`` its heartbeat trims back to ``degree``; with every score 0 (libp2p's default
weights) the trim keeps whichever peers its set iteration puts last, and a set of peer ids
iterates in an order an attacker can grind for. So the identities could displace our honest
mesh peers, and workaround 28 then kept those out for a backoff: a node whose mesh is all
attacker drops whatever the attacker drops, and learns of it only from IHAVE gossip, the core's
retransmissions and the stall sync, seconds later each.

The spec's answer ("Outbound Mesh Quotas", gossipsub v1.1, as go-libp2p builds it): a peer
connection *we* opened was chosen by us (a bootstrap or persistent peer from our own config), so
identities made up by someone else cannot take those places. Three rules:

- **The trim keeps ``quota`` outbound peers** (:func:`select_peers_to_prune`): the mesh is
  shuffled, sorted by score (the sort is stable, so ties stay in random order and grinding peer
  ids buys nothing), the first ``degree`` are kept, and outbound peers from the rest replace the
  lowest-ranked inbound ones until ``quota`` of those kept are outbound. The lowest scores,
  graylisted peers among them, are pruned first, as libp2p does.
- **A full mesh takes GRAFTs only from outbound peers** (:func:`refuse_inbound_graft_when_full`):
  at ``degree_high`` or more, an inbound peer's GRAFT is answered with a PRUNE (go-libp2p's
  defence against "mesh takeover combined with love bombing"). Below it, GRAFTs are libp2p's.
- **The heartbeat grafts outbound peers while fewer than ``quota`` are in the mesh**
  (:func:`graft_outbound_peers`): peers of the topic, outside the mesh, not in backoff, score not
  negative.

``quota`` (the spec's ``D_out``) is ``min(degree // 2, degree_low - 1)``: the spec requires
``D_out < D_lo`` and ``D_out <= D / 2``, so that inbound peers always have room. With our
degrees 3/2/4 it is 1: one honest peer in the mesh is enough for every message to reach us.

What it does not cover: a node with no outbound connections (a testnet's first node, which every
other one dials) has nothing to prefer, and its mesh is libp2p's, with random ties; its peers'
outbound places are still theirs. libp2p's IP-diversity pruning (``eclipse_protection``, off in
:class:`~node.p2p.gossip_params.GossipParams`) is not part of this trim.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import Any

from libp2p.rcmgr import Direction

#: Ties in the trim are broken with this; not seeded from anything a peer controls.
_SHUFFLE = random.SystemRandom()


def outbound_quota(degree: int, degree_low: int) -> int:
    """The spec's ``D_out``: below ``degree_low`` and at most half of ``degree``."""
    return max(0, min(degree // 2, degree_low - 1))


def is_outbound(router: Any, peer: Any) -> bool:
    """Whether one of our connections to ``peer`` is one we opened."""
    host = getattr(router.pubsub, "host", None)
    if host is None:
        return False
    for conn in host.get_network().get_connections(peer):
        direction = getattr(conn, "direction", Direction.UNKNOWN)
        if direction == Direction.OUTBOUND or direction == "outbound":
            return True
    return False


def _quota_of(router: Any) -> int:
    return outbound_quota(router.degree, router.degree_low)


def _score(router: Any, peer: Any, topic: str) -> float:
    scorer = router.scorer
    return 0.0 if scorer is None else float(scorer.score(peer, [topic]))


def select_peers_to_prune(router: Any, topic: str, num_to_prune: int) -> list[Any]:
    """The mesh peers a trim prunes (replaces ``GossipSub._select_peers_for_pruning``)."""
    mesh = router.mesh.get(topic)
    if not mesh or num_to_prune <= 0:
        return []
    peers = list(mesh)
    if len(peers) <= num_to_prune:
        return peers
    _SHUFFLE.shuffle(peers)
    scores = {peer: _score(router, peer, topic) for peer in peers}
    peers.sort(key=scores.__getitem__, reverse=True)  # stable: equal scores stay shuffled
    graylist = router.scorer.params.graylist_threshold if router.scorer is not None else None
    # Sorted best first, so the lowest scores, graylisted peers among them, are pruned first.
    keep = len(peers) - num_to_prune
    kept, pruned = peers[:keep], peers[keep:]
    outbound = {peer for peer in peers if is_outbound(router, peer)}
    missing = _quota_of(router) - len(outbound.intersection(kept))
    for candidate in [peer for peer in pruned if peer in outbound]:
        if missing <= 0:
            break
        if graylist is not None and scores[candidate] < graylist:
            continue
        inbound_kept = [peer for peer in kept if peer not in outbound]
        if not inbound_kept:
            break
        displaced = inbound_kept[-1]  # the lowest-ranked inbound peer kept
        kept[kept.index(displaced)] = candidate
        pruned[pruned.index(candidate)] = displaced
        missing -= 1
    return pruned


def graft_outbound_peers(router: Any, peers_to_graft: dict[Any, list[str]]) -> None:
    """After libp2p's heartbeat: graft outbound peers into every mesh that holds at least
    ``degree_low`` peers but fewer than ``quota`` outbound ones (the spec's heartbeat step)."""
    quota = _quota_of(router)
    pubsub = router.pubsub
    for topic, mesh in router.mesh.items():
        if len(mesh) < router.degree_low or topic not in pubsub.peer_topics:
            continue
        missing = quota - sum(1 for peer in mesh if is_outbound(router, peer))
        if missing <= 0:
            continue
        for peer in _outbound_candidates(router, topic, mesh):
            mesh.add(peer)
            router._notify_mesh_peer_added(peer, topic)
            if router.scorer is not None:
                router.scorer.on_join_mesh(peer, topic)
            peers_to_graft.setdefault(peer, []).append(topic)
            missing -= 1
            if missing <= 0:
                break


def _outbound_candidates(router: Any, topic: str, mesh: Iterable[Any]) -> list[Any]:
    in_mesh = set(mesh)
    candidates = [
        peer
        for peer in router.pubsub.peer_topics[topic]
        if peer not in in_mesh
        and peer not in router.direct_peers
        and router.peer_protocol.get(peer) is not None
        and not router._check_back_off(peer, topic)
        and _score(router, peer, topic) >= 0
        and is_outbound(router, peer)
    ]
    _SHUFFLE.shuffle(candidates)
    return candidates


def refuse_inbound_graft_when_full(router: Any, topic: str, peer: Any) -> bool:
    """Whether a GRAFT from ``peer`` must be answered with a PRUNE because the mesh is full:
    ``degree_high`` peers or more, and ``peer`` neither in it nor one we dialed."""
    mesh = router.mesh.get(topic)
    if mesh is None or peer in mesh or len(mesh) < router.degree_high:
        return False
    return not is_outbound(router, peer)
