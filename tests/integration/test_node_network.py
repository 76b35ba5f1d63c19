"""Nodes in one process, over real libp2p hosts on 127.0.0.1 and real SQLite files."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

import trio

from node.services.capacity import capacity_topic
from node.services.consensus_driver import SYNC_BATCH, consensus_topic
from node.services.consensus_wire import encode_message
from node.store import ChainStore
from protocol.consensus.messages import CommitCertificate, sign_vote
from protocol.crypto import PrivateKey
from protocol.ledger.tx import Transfer, sign_tx
from tests.integration.node_helpers import CHAIN_ID, FAUCET, LocalNet, wait_until

HEIGHTS = 20


def _same_state_at(nodes: list, height: int) -> bool:
    return len({n.store.block(height).state_hash for n in nodes}) == 1


async def test_four_nodes_agree_for_twenty_heights_and_finalize_a_transfer(tmp_path: Path) -> None:
    with trio.fail_after(180):
        async with trio.open_nursery() as nursery:
            net = LocalNet(nursery, tmp_path, validators=4)
            nodes = [await net.start(i) for i in range(4)]
            recipient = bytes(20)
            await nodes[3].submit_tx(sign_tx(FAUCET, CHAIN_ID, 1, 10_000, Transfer(recipient, 12_345)))
            for node in nodes:
                await node.wait_for_height(HEIGHTS)
            for height in range(1, HEIGHTS + 1):
                assert _same_state_at(nodes, height), f"replicas disagree at height {height}"
            for node in nodes:
                assert node.app is not None and node.app.state.balance(recipient) == 12_345
            nursery.cancel_scope.cancel()


async def test_capacity_reaches_every_node_and_expires_after_its_node_stops(tmp_path: Path) -> None:
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            net = LocalNet(nursery, tmp_path, validators=4)
            nodes = [await net.start(i) for i in range(4)]
            providers = {n.validator_key.public_key.raw for n in nodes}

            def everyone_sees_everyone() -> bool:
                return all({a.provider for a in n.capacity.entries()} == providers for n in nodes)  # type: ignore[union-attr]

            await wait_until(everyone_sees_everyone, what="every announcement reached every node")
            entry = nodes[0].capacity.entries()[0]  # type: ignore[union-attr]
            assert all(gpu.simulated for gpu in entry.gpus)

            stopped = net.stop(3)
            gone = stopped.validator_key.public_key.raw
            await wait_until(
                lambda: all(gone not in {a.provider for a in n.capacity.entries()} for n in nodes[:3]),  # type: ignore[union-attr]
                what="the stopped node's announcement expired everywhere",
            )
            nursery.cancel_scope.cancel()


async def test_forged_announcement_and_forged_vote_are_dropped(tmp_path: Path) -> None:
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            net = LocalNet(nursery, tmp_path, validators=4)
            nodes = [await net.start(i) for i in range(4)]
            await nodes[1].wait_for_height(2)
            victim = nodes[1]
            assert victim.capacity is not None and victim.driver is not None

            # An announcement whose price was changed after signing.
            await wait_until(lambda: len(victim.capacity.entries()) == 4, what="capacity table filled")  # type: ignore[union-attr]
            genuine = nodes[0].capacity.entries()[0]  # type: ignore[union-attr]
            forged = dataclasses.replace(genuine, price_per_gpu_second=1, sequence=genuine.sequence + 10**6)
            dropped_before = victim.capacity.dropped
            await nodes[0].host.publish(capacity_topic(CHAIN_ID), forged.encode())
            await wait_until(
                lambda: victim.capacity.dropped > dropped_before, what="forged announcement dropped"
            )  # type: ignore[union-attr]
            assert all(a.price_per_gpu_second != 1 for a in victim.capacity.entries())  # type: ignore[union-attr]

            # A vote signed by a key that is not a validator.
            outsider = PrivateKey.from_label("not-a-validator")
            vote = sign_vote(outsider, CHAIN_ID, victim.driver.core.height, 0, 1, bytes(32))
            votes_before = victim.driver.dropped_messages
            await nodes[0].host.publish(consensus_topic(CHAIN_ID), encode_message(vote))
            await wait_until(
                lambda: victim.driver.dropped_messages > votes_before, what="forged vote dropped"
            )  # type: ignore[union-attr]
            nursery.cancel_scope.cancel()


async def test_a_stopped_node_restarts_from_its_store_and_catches_up(tmp_path: Path) -> None:
    with trio.fail_after(180):
        async with trio.open_nursery() as nursery:
            net = LocalNet(nursery, tmp_path, validators=4)
            nodes = [await net.start(i) for i in range(4)]
            await nodes[3].wait_for_height(5)  # past the first checkpoint (interval 4)
            stopped = net.stop(3)
            stopped_at = stopped.app.height  # type: ignore[union-attr]
            for node in nodes[:3]:
                await node.wait_for_height(stopped_at + 5)
            restarted = await net.start(3)
            assert restarted.app is not None and restarted.app.height >= stopped_at  # restored from SQLite
            assert restarted.resumed_from >= 4  # from a stored checkpoint, not a replay from genesis
            target = max(n.app.height for n in nodes[:3]) + 2  # type: ignore[union-attr]
            for node in [*nodes[:3], restarted]:
                await node.wait_for_height(target)
            assert _same_state_at([*nodes[:3], restarted], target)
            nursery.cancel_scope.cancel()


async def test_a_cancelled_node_closes_its_database(tmp_path: Path) -> None:
    def closed(store: ChainStore) -> bool:
        try:
            store.head()
        except sqlite3.ProgrammingError:  # "Cannot operate on a closed database"
            return True
        return False

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            net = LocalNet(nursery, tmp_path, validators=1)
            node = await net.start(0)
            await node.wait_for_height(1)
            store = node.store
            assert store is not None and not closed(store)
            net.stop(0)
            await wait_until(lambda: closed(store), what="the stopped node closed its database")


async def test_a_node_joining_late_syncs_from_genesis(tmp_path: Path) -> None:
    with trio.fail_after(180):
        async with trio.open_nursery() as nursery:
            net = LocalNet(nursery, tmp_path, validators=4)
            early = [await net.start(i) for i in range(3)]  # 3 of 4 equal stakes: > 2/3, so they progress
            for node in early:  # more than two sync batches ahead
                await node.wait_for_height(2 * SYNC_BATCH + 6)
            late = await net.start(3)
            for node in [*early, late]:
                await node.wait_for_height(2 * SYNC_BATCH + 8)
            assert _same_state_at([*early, late], 2 * SYNC_BATCH + 8)
            nursery.cancel_scope.cancel()


async def test_consensus_works_over_a_line_of_peers_not_just_a_full_mesh(tmp_path: Path) -> None:
    """0 - 1 - 2 - 3: proposals are relayed along the line, votes cross it on GossipSub."""
    with trio.fail_after(180):
        async with trio.open_nursery() as nursery:
            net = LocalNet(nursery, tmp_path, validators=4)
            nodes = []
            for index in range(4):
                net.bootstrap_for = lambda i, prev=nodes: tuple(prev[-1].host.listen_addrs) if prev else ()  # type: ignore[method-assign]
                nodes.append(await net.start(index))
            for node in nodes:
                assert len(node.host.peers()) <= 2  # a line: nobody is connected to everyone
                await node.wait_for_height(8)
            assert _same_state_at(nodes, 8)
            # Unrelayed, an end node's proposal reaches one neighbour: 2 of 4 prevotes, no quorum,
            # and its heights fall to round 1. Relayed, every height is decided in round 0
            # (one slow round is tolerated for a loaded machine).
            store = nodes[0].store
            assert store is not None
            rounds = [CommitCertificate.decode(store.block(h).certificate).round for h in range(1, 9)]  # type: ignore[union-attr]
            assert sum(r > 0 for r in rounds) <= 1, rounds
            nursery.cancel_scope.cancel()
