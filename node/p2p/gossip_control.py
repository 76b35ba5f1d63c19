"""Bounds on what one GossipSub control message can make us do (workaround 32 in
``node/p2p/__init__.py``).

py-libp2p 0.8.1 acts on every entry of a control message, repeats included:

- **IWANT amplification.** ``handle_iwant`` answers each message id it is asked for, as often as
  it is named: a 70 KB IWANT naming one 4 KB message 5,000 times was answered with one 20 MB RPC
  (measured), and an RPC may be 1 MiB, ten IWANTs a second per peer. go-libp2p answers each id
  once per IWANT and at most ``GossipRetransmission`` (3) times per peer and message.
- **PRUNE per repeated GRAFT.** A GRAFT that is refused (full mesh, backoff, flood) is answered
  with a PRUNE, once per entry: one RPC repeating a GRAFT thousands of times made as many RPCs.

So before libp2p sees a control message, repeats are dropped (GRAFT and PRUNE per topic, IHAVE
ids per topic, IWANT ids across the message), and each (peer, message id) is answered at most
:data:`GOSSIP_RETRANSMISSION` times while the message is in our cache; the count goes when the
message leaves the cache (swept each heartbeat), so the table holds at most peers x cached
messages. Nothing here changes what an honest peer, which never repeats an entry, gets.
"""

from __future__ import annotations

import weakref
from collections import Counter
from typing import Any

from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.utils import safe_bytes_from_hex

#: Times one peer is sent one message in answer to its IWANTs (go-libp2p's GossipRetransmission).
GOSSIP_RETRANSMISSION = 3

#: Per router: (peer, message id) -> times sent in answer to an IWANT.
_SENT: weakref.WeakKeyDictionary[Any, Counter[tuple[Any, bytes]]] = weakref.WeakKeyDictionary()


def drop_repeats(control: rpc_pb2.ControlMessage) -> None:
    """Remove repeated entries from ``control`` in place; the first of each is kept, in order."""
    _unique_by_topic(control.graft)
    _unique_by_topic(control.prune)
    _unique_ids(control.iwant, per_entry=False)
    _unique_ids(control.ihave, per_entry=True)


def _unique_by_topic(entries: Any) -> None:
    seen: set[str] = set()
    kept = []
    for entry in entries:
        if entry.topicID not in seen:
            seen.add(entry.topicID)
            kept.append(entry)
    if len(kept) != len(entries):
        copies = [type(entry)() for entry in kept]
        for copy, entry in zip(copies, kept, strict=True):
            copy.CopyFrom(entry)
        del entries[:]
        entries.extend(copies)


def _unique_ids(entries: Any, *, per_entry: bool) -> None:
    seen: set[bytes] = set()
    for entry in entries:
        if per_entry:
            seen = set()
        ids = list(entry.messageIDs)
        unique = []
        for mid in ids:
            if mid not in seen:
                seen.add(mid)
                unique.append(mid)
        if len(unique) != len(ids):
            del entry.messageIDs[:]
            entry.messageIDs.extend(unique)


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
