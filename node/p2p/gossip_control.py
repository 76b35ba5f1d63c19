"""Bounds on what one GossipSub control message can make us do (workaround 32 in
``node/p2p/__init__.py``).

py-libp2p 0.8.1 acts on every entry of a control message, in one loop that never yields:

- **IWANT amplification.** ``handle_iwant`` answers each message id as often as it is named: a
  70 KB IWANT naming one 4 KB message 5,000 times was answered with one 20 MB RPC (measured),
  and an RPC may be 1 MiB, ten IWANTs a second per peer.
- **A PRUNE per GRAFT.** A refused GRAFT (full mesh, backoff, flood, a topic we are not in) is
  answered with a PRUNE message of its own: one 1 MiB RPC of 124,274 GRAFTs, each naming another
  unknown topic, made as many PRUNEs and held the event loop 17-20 s (a review, measured).
- **Backoff for any topic.** A PRUNE adds a backoff entry for whatever topic it names, and libp2p
  only ever expires those of topics we are in: one 1 MiB RPC of PRUNEs left 111,846 entries,
  38.6 MB, for good (the same review).
- **An IWANT per IHAVE entry**, each entry on its own: 20,645 IHAVE entries, 20,645 IWANTs.

So before libp2p sees a control message (:func:`normalize`):

- GRAFT, PRUNE and IHAVE entries for topics we are not in are dropped (go-libp2p ignores GRAFTs
  for unknown topics as spam hardening; an IHAVE or PRUNE for one means nothing to us);
- one GRAFT and one PRUNE per topic are kept (the PRUNE with the longest backoff), one IHAVE per
  topic holds all its ids, and one IWANT holds all the ids asked for, each id once (ids are
  compared decoded, so hex case and raw bytes name the same one);
- at most :data:`MAX_IHAVE_IDS` ids offered and :data:`MAX_IWANT_IDS` asked for are looked at
  per message (go-libp2p's ``MaxIHaveLength``, 5,000), repeats included, and a repeat costs a set
  lookup, not a decode;
- IDONTWANT entries (gossipsub v1.2; we speak v1.1) are dropped: libp2p handled each from any
  peer, and one 1 MiB RPC of them held the loop 2.5-6 s.

What is left of a message is bounded by our own topics (a handful) and those caps. And each
(peer, message id) is answered at most :data:`GOSSIP_RETRANSMISSION` times while the message is
in our cache (go-libp2p's ``GossipRetransmission``); the count goes when the message leaves the
cache (swept each heartbeat), so that table holds at most peers x cached messages. An honest peer,
which never repeats an entry or names a topic we left long ago, gets what it got before.
"""

from __future__ import annotations

import weakref
from collections import Counter
from collections.abc import Collection
from typing import Any

from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.utils import safe_bytes_from_hex

#: Times one peer is sent one message in answer to its IWANTs (go-libp2p's GossipRetransmission).
GOSSIP_RETRANSMISSION = 3
#: Message ids offered (IHAVE) and asked for (IWANT) that one control message may carry.
MAX_IHAVE_IDS = 5000
MAX_IWANT_IDS = 5000

#: Per router: (peer, message id) -> times sent in answer to an IWANT.
_SENT: weakref.WeakKeyDictionary[Any, Counter[tuple[Any, bytes]]] = weakref.WeakKeyDictionary()


def normalize(control: rpc_pb2.ControlMessage, topics: Collection[str]) -> None:
    """Rewrite ``control`` in place as described above; ``topics`` are those we are in."""
    grafts: dict[str, rpc_pb2.ControlGraft] = {}
    for graft in control.graft:
        if graft.topicID in topics and graft.topicID not in grafts:
            grafts[graft.topicID] = graft
    prunes: dict[str, rpc_pb2.ControlPrune] = {}
    for prune in control.prune:
        if prune.topicID in topics and (
            prune.topicID not in prunes or prune.backoff > prunes[prune.topicID].backoff
        ):
            prunes[prune.topicID] = prune
    offered: dict[str, list[bytes]] = {}
    offered_seen = _SeenIds()
    for ihave in control.ihave:
        if ihave.topicID in topics:
            ids = offered.setdefault(ihave.topicID, [])
            _add_unique(ids, ihave.messageIDs, offered_seen, MAX_IHAVE_IDS)
    wanted: list[bytes] = []
    wanted_seen = _SeenIds()
    for iwant in control.iwant:
        _add_unique(wanted, iwant.messageIDs, wanted_seen, MAX_IWANT_IDS)

    kept_grafts = [_copy(graft) for graft in grafts.values()]
    kept_prunes = [_copy(prune) for prune in prunes.values()]
    del control.graft[:], control.prune[:], control.ihave[:], control.iwant[:]
    # IDONTWANT is gossipsub v1.2; we speak v1.1, and libp2p handled every entry from any peer
    # (one 1 MiB RPC of them held the loop 2.5-6 s, a review measured).
    control.ClearField("idontwant")
    control.graft.extend(kept_grafts)
    control.prune.extend(kept_prunes)
    control.ihave.extend(
        rpc_pb2.ControlIHave(topicID=topic, messageIDs=ids) for topic, ids in offered.items() if ids
    )
    if wanted:
        control.iwant.append(rpc_pb2.ControlIWant(messageIDs=wanted))


def _add_unique(into: list[bytes], wire_ids: Any, seen: _SeenIds, cap: int) -> None:
    """Append each of ``wire_ids`` whose decoded id is not in ``seen``, looking at ``cap`` ids in
    all (kept or not): a message of one id repeated costs a look each, never a decode each."""
    for wire_id in wire_ids:
        if seen.looked >= cap:
            return
        seen.looked += 1
        if wire_id in seen.raw:
            continue
        seen.raw.add(wire_id)
        mid = safe_bytes_from_hex(wire_id)
        if mid is not None and mid not in seen.decoded:
            seen.decoded.add(mid)
            into.append(wire_id)


class _SeenIds:
    """The ids looked at so far in one message, as sent and decoded."""

    def __init__(self) -> None:
        self.looked = 0
        self.raw: set[bytes] = set()
        self.decoded: set[bytes] = set()


def _copy(entry: Any) -> Any:
    copy = type(entry)()
    copy.CopyFrom(entry)
    return copy


def iwant_to_answer(router: Any, iwant: rpc_pb2.ControlIWant, peer: Any) -> rpc_pb2.ControlIWant:
    """The part of ``iwant`` that ``peer`` may still be answered: ids in our cache sent to it fewer
    than :data:`GOSSIP_RETRANSMISSION` times (counted here, as they will be sent)."""
    sent = _SENT.setdefault(router, Counter())
    answer = rpc_pb2.ControlIWant()
    for wire_id in iwant.messageIDs:
        mid = safe_bytes_from_hex(wire_id)
        if mid is None or router.mcache.get(mid) is None:
            continue
        key = (peer, mid)
        if sent[key] >= GOSSIP_RETRANSMISSION:
            continue
        sent[key] += 1
        answer.messageIDs.append(wire_id)
    return answer


def forget_uncached(router: Any) -> None:
    """Drop the counts of messages no longer in the cache (each heartbeat)."""
    sent = _SENT.get(router)
    if sent:
        for key in [key for key in sent if router.mcache.get(key[1]) is None]:
            del sent[key]
