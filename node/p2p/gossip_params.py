"""GossipSub parameters, every one set explicitly (py-libp2p 0.8.1's defaults do not suit us).

What GossipSub carries in dcent is a low-rate control plane: capacity announcements and
consensus votes among up to ~16 validators. Bulk data goes over streams. Reasons, per parameter:

- ``heartbeat_interval_s = 1``: the library default is 120 s, which leaves a mesh unrepaired
  for two minutes after a peer drops.
- ``adaptive_gossip = False``: adaptive gossip stretches heartbeats to 30-60 s on a "healthy"
  network; a vote path wants predictable timing.
- ``degree 3 / low 2 / high 4`` (ours were go-libp2p's 6/5/12 until 2026-12-07): each node receives every
  message about once per mesh peer, and in Python each copy costs a decrypt, a parse and a
  seen-cache lookup. With 6/5/12 a validator set of up to 13 is a full mesh, so on 8 validators
  every vote arrived 7 times; with 3/2/4 at most 4 times, and a message still crosses 16 nodes in
  two or three hops (1,000 in about six). Measured on the 2-core machine, alternating runs: an idle
  8-validator testnet costs each node ~120 ms of CPU per block against 140-180 ms, the finality
  bench at 8 validators and 100 ms RTT gave p50 3.5-5.9 s against 5.3-12.1 s (4/3/6: 7.2-9.9 s),
  and 16 validators at 100 ms finished it in 2 of 5 runs (p50 15 and 39 s) where 6/5/12 made no
  first block in 180 s. (The 2-core machine is starved at 8 and 16 nodes: runs swing 2x.)
  What a smaller mesh gives up is redundancy against mesh peers that drop messages: with
  ``degree_low`` 2, one such peer halves a node's outbound paths, and with libp2p's default score
  weights (all 0) nothing prunes it for that. What covers for it, slower: IHAVE gossip every
  heartbeat to non-mesh peers (at least 6, or a quarter of them), the consensus core re-sending
  its own messages of a round (after ``gossip_interval_ms``, the wait doubling per re-send up to
  8x), and a node that gossip no longer reaches syncing from its peers after 10 s without a new
  height. (The guard bans peers for what they send, garbage or floods, not for what they drop.)
  The mesh stays put thanks to workarounds 28 and 29 (``node/p2p/__init__.py``): without them
  libp2p churned it every heartbeat and could leave a node with no mesh for most of a minute. And
  identities made up by an attacker cannot take the places of the peers the operator chose
  (workaround 30, ``node/p2p/mesh_quota.py``).
- ``max_messages_per_topic_per_second = 200``: the library's spam cap is 10 per forwarder and
  topic, and it also applies to our own publishes; one forwarder relays every validator's
  prevote and precommit, so 16 validators already burst past 10 in one round.
- ``eclipse_protection = False``: it grafts extra peers until the mesh spans 3 distinct IPs,
  which on a testnet (all validators on 127.0.0.1, or a few hosts) grafts forever and churns the
  mesh; validator sets are known and staked, which is our eclipse defence.
- ``max_message_bytes = 256 KiB``: control messages are small; the RPC frame limit is 1 MiB.
- v1.1 (``/meshsub/1.1.0``) only: v1.2's IDONTWANT costs ~2x CPU per message (measured on py-libp2p 0.8.1) and
  buys nothing at control-plane rates; all dcent nodes run the same stack.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import trio

from node.p2p.errors import HostConfigError

#: GossipSub RPCs above this are refused by receivers (py-libp2p and go-libp2p default).
RPC_SIZE_LIMIT = 1024 * 1024


@dataclass(frozen=True, slots=True)
class GossipParams:
    heartbeat_interval_s: int = 1
    heartbeat_initial_delay_s: float = 0.1
    degree: int = 3
    degree_low: int = 2
    degree_high: int = 4
    fanout_ttl_s: int = 60
    gossip_window: int = 3
    gossip_history: int = 5
    prune_backoff_s: int = 60
    unsubscribe_backoff_s: int = 10
    adaptive_gossip: bool = False
    eclipse_protection: bool = False
    #: Per forwarder and topic, enforced by every receiver, and by the library on our own publishes.
    max_messages_per_topic_per_second: int = 200
    max_message_bytes: int = 256 * 1024
    #: Messages buffered per local subscriber before new ones are dropped (and counted).
    subscriber_buffer: int = 1024
    #: How long ``publish`` waits for room in full outbound peer queues before reporting.
    publish_wait_s: float = 2.0

    def __post_init__(self) -> None:
        if self.heartbeat_interval_s < 1:
            raise HostConfigError("gossip.heartbeat_interval_s: at least 1")
        if not 0 < self.degree_low <= self.degree <= self.degree_high:
            raise HostConfigError("gossip degrees: need 0 < degree_low <= degree <= degree_high")
        if self.max_messages_per_topic_per_second < 2:
            raise HostConfigError("gossip.max_messages_per_topic_per_second: at least 2")
        if not 0 < self.max_message_bytes <= RPC_SIZE_LIMIT // 2:
            raise HostConfigError(f"gossip.max_message_bytes: between 1 and {RPC_SIZE_LIMIT // 2}")
        if self.subscriber_buffer < 1:
            raise HostConfigError("gossip.subscriber_buffer: at least 1")
        if self.publish_wait_s < 0 or self.heartbeat_initial_delay_s < 0:
            raise HostConfigError("gossip: durations must not be negative")

    @property
    def own_publish_rate(self) -> int:
        """Our own publishes per topic per second: half the spam cap.

        Receivers count what arrives per sliding second of their wall clock, and network jitter
        bunches messages we spaced out: a peer that received two of our seconds' worth within one
        of its own would stop forwarding the excess. Half the cap leaves room for that; with the
        default cap it still allows 100 messages per second and topic, far above a control plane.
        """
        return max(1, self.max_messages_per_topic_per_second // 2)


class PublishPacer:
    """Keeps our own publishes per topic under a rate, by waiting (never by dropping).

    A sliding one-second window on the trio clock, per topic, like the receivers' spam check.
    """

    def __init__(self, rate_per_second: int) -> None:
        self._rate = rate_per_second
        self._recent: dict[str, deque[float]] = {}

    async def wait_turn(self, topic: str) -> None:
        recent = self._recent.setdefault(topic, deque())
        while True:
            now = trio.current_time()
            while recent and recent[0] <= now - 1.0:
                recent.popleft()
            if len(recent) < self._rate:
                recent.append(now)
                return
            await trio.sleep_until(recent[0] + 1.0)
