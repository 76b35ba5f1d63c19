"""A hostile peer replaying authentic votes it saw (audit h18), against real nodes over libp2p.

Two validators (``LocalNet``) and, connected to validator 0 only, a hostile ``P2PHost`` that
re-publishes votes from validator 0's own certificates under fresh seqnos, and an honest observer
that subscribes to the consensus topic and counts the blocks pushed to it. Before the fix, every
such vote was accepted, relayed to everyone, and made validator 0 push blocks to all its peers.
"""

from __future__ import annotations

from pathlib import Path

import trio

from node.daemon import Node
from node.host import HostConfig, P2PHost
from node.p2p.framing import Stream
from node.p2p.interface import GossipMessage
from node.services.consensus_driver import SYNC_PUSH_PROTOCOL, consensus_topic
from node.services.consensus_wire import encode_message
from protocol.consensus.messages import PRECOMMIT, CommitCertificate, Vote
from tests.integration.conftest import TEST_BACKOFF, seed_of
from tests.integration.node_helpers import CHAIN_ID, LocalNet
from tests.waiting import act_every, wait_until

CONSENSUS = consensus_topic(CHAIN_ID)


def precommits_of(node: Node, height: int) -> list[bytes]:
    """The precommits in ``node``'s certificate for ``height``, encoded as they were gossiped."""
    assert node.store is not None
    stored = node.store.block(height)
    assert stored is not None
    proof = CommitCertificate.decode(stored.certificate)
    return [
        encode_message(
            Vote(
                height,
                proof.round,
                PRECOMMIT,
                proof.block_hash,
                entry.validator,
                entry.signature,
                entry.time_ms,
            )
        )
        for entry in proof.signatures
    ]


async def peer_of(nursery: trio.Nursery, label: str, target: Node) -> P2PHost:
    """A plain host connected to ``target`` only, in its consensus mesh."""
    host = P2PHost(
        HostConfig(
            node_key_seed=seed_of(label), bootstrap=tuple(target.host.listen_addrs), reconnect=TEST_BACKOFF
        )
    )
    await nursery.start(host.run)
    return host


async def test_replayed_old_votes_are_not_relayed_and_blocks_go_only_to_the_replayer(tmp_path: Path) -> None:
    with trio.fail_after(180):
        async with trio.open_nursery() as nursery:
            net = LocalNet(nursery, tmp_path, validators=2)
            target, honest = [await net.start(i) for i in range(2)]
            assert target.driver is not None
            await target.wait_for_height(3)

            observer = await peer_of(nursery, "replay-observer", target)
            pushed_to_observer: list[str] = []

            async def count_push(stream: Stream) -> None:
                pushed_to_observer.append(stream.peer_id)

            observer.set_stream_handler(SYNC_PUSH_PROTOCOL, count_push)
            seen_by_observer: list[GossipMessage] = []
            seen_by_honest: list[GossipMessage] = []
            nursery.start_soon(collect, await observer.subscribe(CONSENSUS), seen_by_observer)
            nursery.start_soon(collect, await honest.host.subscribe(CONSENSUS), seen_by_honest)
            hostile = await peer_of(nursery, "replay-attacker", target)
            pushed_to_hostile: list[str] = []

            async def count_hostile_push(stream: Stream) -> None:
                pushed_to_hostile.append(stream.peer_id)

            hostile.set_stream_handler(SYNC_PUSH_PROTOCOL, count_hostile_push)
            await hostile.subscribe(CONSENSUS)
            for host in (observer, hostile):
                await wait_until(
                    lambda h=host: target.host.peer_id in h.topic_peers(CONSENSUS),
                    what="in the target's mesh",
                )

            old = precommits_of(target, 1)
            stale_before = target.driver.checks.stale_votes
            latest = 0
            rounds_left = 30

            async def replay() -> bool:
                # Long decided (height 1), and the height the target just decided: the first is
                # useless to everyone, the second makes the target help a "lagging" validator.
                nonlocal latest, rounds_left
                if rounds_left == 0:
                    return False
                latest = target.driver.height  # type: ignore[union-attr]
                for data in old + precommits_of(target, latest):
                    await hostile.publish(CONSENSUS, data)
                rounds_left -= 1
                return True

            started = trio.current_time()
            await act_every(0.1, replay)  # the attacker's pace
            await wait_until(
                lambda: target.driver.checks.stale_votes >= stale_before + 30 * len(old),  # type: ignore[union-attr]
                what="every replay of height 1 judged stale by the target",
            )
            await target.wait_for_height(latest + 3)  # the chain goes on meanwhile
            elapsed_ms = (trio.current_time() - started) * 1000

            # The observer is in the target's mesh and does get its gossip (the target's own votes)...
            assert any(m.sender == target.host.peer_id for m in seen_by_observer)
            # ...but never a replay of height 1, nor does the honest validator.
            # (The original height-1 votes may arrive, from the message cache GossipSub
            # advertises to a new peer: only the hostile peer's copies are replays.)
            replays = [m for m in seen_by_observer + seen_by_honest if m.sender == hostile.peer_id]
            assert not any(m.data in old for m in replays)
            # What the target accepts from the hostile peer (the precommits of the height it just
            # decided, still of use) does reach the others: the path is there, the old votes not.
            assert any(m.data not in old for m in replays)
            # Blocks went to the replaying peer only, at most once per push interval.
            assert pushed_to_observer == []
            assert len(pushed_to_hostile) <= elapsed_ms / target.driver.push_interval_ms + 1
            nursery.cancel_scope.cancel()


async def collect(channel: trio.MemoryReceiveChannel[GossipMessage], into: list[GossipMessage]) -> None:
    async for message in channel:
        into.append(message)
