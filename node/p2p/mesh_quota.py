"""Mesh places kept for the peers the operator chose (workaround 30 in ``node/p2p/__init__.py``):
gossipsub v1.1's outbound mesh quota, keyed on configured peers instead of connection direction.

The attack: anyone who can connect to us can make any number of identities (a peer id is a key
pair) and GRAFT us from each. libp2p accepts every GRAFT, and when the mesh passes
``degree_high`` its heartbeat trims back to ``degree``; with every score 0 (libp2p's default
weights) the trim keeps whichever peers its set iteration puts last, an order an attacker can
grind peer ids for. So the identities could displace our honest mesh peers, and workaround 28
then kept those out for a backoff: a node whose mesh is all attacker hears only what the
attacker forwards, and learns of the rest from IHAVE gossip, the core's retransmissions and the
stall sync, seconds later each.

The spec's answer ("Outbound Mesh Quotas", as go-libp2p builds it) keys on connections *we*
opened, on the grounds that those peers were chosen by us. In dcent that does not hold: libp2p
dials whatever a PRUNE's peer exchange names (workaround 31 turns that off), and a node dials
providers it learns of from capacity gossip. What an attacker cannot choose is our config, so a
**trusted peer** is one the operator named: a bootstrap peer, or one in ``p2p.trusted_peers``
(CometBFT's ``persistent_peers`` and ``unconditional_peer_ids`` play this part). A testnet's nodes
trust each other. Three rules:

- **The trim keeps trusted peers first** (:func:`select_peers_to_prune`): the mesh is shuffled,
  then sorted by (graylisted, untrusted, lower score); the sort is stable, so ties stay in random
  order and grinding peer ids buys nothing. Graylisted peers go first, as in libp2p.
- **A full mesh takes GRAFTs only from trusted peers** (:func:`refuse_graft_when_full`): at
  ``degree_high`` or more, another peer's GRAFT is answered with a PRUNE and the peer gets our
  backoff, as go-libp2p does for inbound peers ("mesh takeover combined with love bombing"), so
  it cannot take the next free place by GRAFTing at once. Below ``degree_high``, GRAFTs are
  libp2p's. A trusted peer's GRAFT to a full mesh is taken; the next trim then drops an
  untrusted peer. The rule holds whether or not a trusted peer is in the mesh: applied only while
  one was, it left the meshes of nodes that trust few peers open to sybils, and a simulated
  16-node network with bootstrap-only trust under 20 sybils split in 9 of 9 runs (with nodes
  without an honest mesh peer for 44-100 s), against 0 of 3 without a restart when it always
  holds. Its cost is the case below.
- **The heartbeat grafts trusted peers** into a mesh of ``degree_low`` or more until they hold
  their places (:func:`graft_trusted_peers`): peers of the topic, outside the mesh, not in
  backoff, score not negative; the next trim then drops untrusted peers first. Peers listed in
  ``p2p.trusted_peers`` hold ``degree`` places: a review measured that with the spec's one place
  (``D_out``, at most ``degree // 2``) a hostile trusted peer took it and sybils the rest,
  splitting the honest mesh in 9 of 9 simulated runs (4 of 15 with ``degree``, and no honest node
  ever without an honest mesh peer). Bootstrap peers alone hold ``D_out`` (1): they need not
  trust us back, and asking each for a place it refuses doubled the GRAFT/PRUNE traffic of a
  default-config testnet and split it under attack (the next review).

What it does not cover: a node whose peers do not trust it back (the default config trusts
only bootstrap peers, and a network's first node then trusts no one), restarted while sybils GRAFT it: they
fill its mesh before honest peers do, it then refuses the honest ones, and it hears the network
only through IHAVE gossip and the stall sync (simulated: the restarted node, and only it, had no
honest mesh peer for the rest of the run). So a validator should list the validators it peers with
in ``p2p.trusted_peers``, both ways; the node warns at start when ``p2p.trusted_peers`` is empty on
a validator, and ``dcent testnet`` fills the list for its nodes, which then held in every
simulated restart under attack. A hostile trusted peer holds at most the places of its own
identity, and with sybils split a mutual-trust network's honest mesh in 3 of 6 simulated runs,
never leaving an honest node without an honest mesh peer. libp2p's IP-diversity pruning
(``eclipse_protection``, off in :class:`~node.p2p.gossip_params.GossipParams`) is not part of
this trim.
"""

from __future__ import annotations

import random
import weakref
from collections.abc import Iterable
from typing import Any

#: Ties in the trim are broken with this; not seeded from anything a peer controls.
_SHUFFLE = random.SystemRandom()

#: The trusted peer ids of each router (a host registers its own at start).
_TRUSTED: weakref.WeakKeyDictionary[Any, frozenset[Any]] = weakref.WeakKeyDictionary()


#: Per router: how many mesh places the heartbeat fills with trusted peers.
_PLACES: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()


def trust(router: Any, peers: Iterable[Any], *, mutual: bool = False) -> None:
    """Set the peers ``router`` treats as trusted (libp2p ``ID`` objects). ``mutual``: the
    operator listed them in ``p2p.trusted_peers`` (and they, presumably, us), so they may hold
    ``degree`` places; bootstrap peers alone hold the spec's ``D_out``, since they need not trust
    us back and a node asking each for a place it cannot get only churns."""
    _TRUSTED[router] = frozenset(peers)
    _PLACES[router] = router.degree if mutual else spec_outbound_quota(router.degree, router.degree_low)


def spec_outbound_quota(degree: int, degree_low: int) -> int:
    """gossipsub v1.1's ``D_out``: below ``degree_low`` and at most half of ``degree``."""
    return max(0, min(degree // 2, degree_low - 1))


def is_trusted(router: Any, peer: Any) -> bool:
    return peer in _TRUSTED.get(router, frozenset())


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
    graylist = router.scorer.params.graylist_threshold if router.scorer is not None else float("-inf")
    scores = {peer: _score(router, peer, topic) for peer in peers}
    trusted = _TRUSTED.get(router, frozenset())
    peers.sort(key=lambda peer: (scores[peer] < graylist, peer not in trusted, -scores[peer]))
    return peers[len(peers) - num_to_prune :]


def graft_trusted_peers(router: Any, peers_to_graft: dict[Any, list[str]]) -> None:
    """After libp2p's heartbeat: graft trusted peers into every mesh that holds at least
    ``degree_low`` peers but fewer trusted ones than their places (see :func:`trust`)."""
    trusted = _TRUSTED.get(router, frozenset())
    if not trusted:
        return
    quota = _PLACES.get(router, 0)
    for topic, mesh in router.mesh.items():
        if len(mesh) < router.degree_low or topic not in router.pubsub.peer_topics:
            continue
        missing = quota - len(trusted.intersection(mesh))
        if missing <= 0:
            continue
        for peer in _trusted_candidates(router, topic, mesh, trusted)[:missing]:
            mesh.add(peer)
            router._notify_mesh_peer_added(peer, topic)
            if router.scorer is not None:
                router.scorer.on_join_mesh(peer, topic)
            peers_to_graft.setdefault(peer, []).append(topic)


def _trusted_candidates(router: Any, topic: str, mesh: set[Any], trusted: frozenset[Any]) -> list[Any]:
    candidates = [
        peer
        for peer in router.pubsub.peer_topics[topic]
        if peer in trusted
        and peer not in mesh
        and peer not in router.direct_peers
        and router.peer_protocol.get(peer) is not None
        and not router._check_back_off(peer, topic)
        and _score(router, peer, topic) >= 0
    ]
    _SHUFFLE.shuffle(candidates)
    return candidates


def refuse_graft_when_full(router: Any, topic: str, peer: Any) -> bool:
    """Whether a GRAFT from ``peer`` must be answered with a PRUNE because the mesh is full:
    ``degree_high`` peers or more, and ``peer`` neither in it nor trusted."""
    mesh = router.mesh.get(topic)
    if mesh is None or peer in mesh or len(mesh) < router.degree_high:
        return False
    return not is_trusted(router, peer)
