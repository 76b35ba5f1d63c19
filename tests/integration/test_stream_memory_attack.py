"""Strangers cannot exhaust a node's memory with slow frames on its streams (node/p2p/frame_budget.py).

The attack (audit of h18): open many ``/dcent/consensus/proposal/1.0.0`` streams, announce a
16 MiB - 1 frame on each, send the bodies slowly and never finish, from several peer ids. The
node took each length prefix (16 MiB is a proposal's maximum), buffered what came, and waited
forever: ~200 streams made ~3 GiB per peer id.

A real node (in process: SQLite, consensus, libp2p on loopback) and hostile peers built from
py-libp2p's parts (tests/integration/hostile_peer.py), not from the node's own code. The node's
budget is the default's shape with deadlines a test can wait out: a 16 MiB frame must arrive
within 4 s + 8 s (the defaults give it 266 s).
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path

import trio
from libp2p.custom_types import TProtocol
from libp2p.host.basic_host import BasicHost
from libp2p.host.exceptions import StreamFailure
from libp2p.network.exceptions import SwarmException
from libp2p.network.stream.exceptions import StreamError
from libp2p.peer.id import ID
from libp2p.stream_muxer.exceptions import MuxedStreamError

from node.p2p.frame_budget import KIB, MIB, FrameBudget, FrameBudgetSettings
from node.p2p.framing import FRAME_HEADER
from node.p2p.guard import Reason
from node.services.consensus_driver import PROPOSAL_PROTOCOL
from tests.integration.hostile_peer import MESHSUB, connect, drain_pubsub, key_pair, libp2p_host
from tests.integration.node_helpers import LocalNet
from tests.waiting import act_every, wait_until

ANNOUNCED = 16 * MIB - 1
#: What the attacker sends of each body, and how often: 32 KiB/s, far below the node's minimum.
TRICKLE = 16 * KIB
TRICKLE_EVERY_S = 0.5
PEERS = 3
STREAMS_PER_PEER = 12  # each refusal scores 5: twelve stay under a ban, so deadlines do the work
BUDGET = FrameBudgetSettings(
    per_peer_bytes=32 * MIB,
    total_bytes=80 * MIB,  # 70 MiB for large frames: four of the six the peers' budgets allow
    min_rate_bytes_per_s=2 * MIB,
    grace_s=4.0,
)


async def slow_proposal(host: BasicHost, node: ID, outcomes: list[str]) -> None:
    """Announce a 16 MiB - 1 proposal and trickle it until the node resets the stream."""
    try:
        stream = await host.new_stream(node, [TProtocol(PROPOSAL_PROTOCOL)])
    except (StreamFailure, SwarmException):
        outcomes.append("not opened")  # the node has banned us and closed the connection
        return
    parts_left = ANNOUNCED // TRICKLE

    async def send_part() -> bool:
        nonlocal parts_left
        if parts_left == 0:
            return False
        await stream.write(bytes(TRICKLE))
        parts_left -= 1
        return True

    try:
        await stream.write(FRAME_HEADER.pack(ANNOUNCED))
        await act_every(TRICKLE_EVERY_S, send_part)  # the attack's pace
        outcomes.append("sent whole")
    except (StreamError, MuxedStreamError):
        outcomes.append("reset")


def refused(budget: FrameBudget, reason: Reason) -> int:
    return budget.guard.refusals.get((PROPOSAL_PROTOCOL, reason.value), 0)


async def test_slow_16_mib_proposals_from_strangers_stay_in_budget_are_cut_and_blocks_go_on(
    tmp_path: Path,
) -> None:
    with trio.fail_after(180):
        async with trio.open_nursery() as nursery:
            net = LocalNet(nursery, tmp_path, validators=1)
            node = await net.start(0)
            budget = FrameBudget(node.host.guard, BUDGET)
            node.host.frame_budget = budget  # no stranger has connected yet
            await node.wait_for_height(1)
            outcomes: list[str] = []
            async with AsyncExitStack() as stack:
                hostiles = [
                    await stack.enter_async_context(libp2p_host(key_pair(f"stream-memory-{index}")))
                    for index in range(PEERS)
                ]
                for host in hostiles:
                    host.set_stream_handler(MESHSUB, drain_pubsub)
                    node_id = await connect(host, node.host.listen_addrs[0])
                async with trio.open_nursery() as attack:
                    for host in hostiles:
                        for _ in range(STREAMS_PER_PEER):
                            attack.start_soon(slow_proposal, host, node_id, outcomes)
                    height = node.status().height
                    await node.wait_for_height(height + 3)  # committing while under attack
                # Every stream ended by the node, long before 16 MiB at 32 KiB/s (512 s) arrived.
                assert outcomes == ["reset"] * (PEERS * STREAMS_PER_PEER)
                assert len(node.host.peers()) >= PEERS  # cut streams, not banned peers
            slow = refused(budget, Reason.SLOW)
            over_budget = refused(budget, Reason.OVER_BUDGET)
            busy = refused(budget, Reason.BUSY)
            assert slow + over_budget + busy == PEERS * STREAMS_PER_PEER
            assert 0 < budget.peak_reserved <= BUDGET.node_limit(ANNOUNCED) < BUDGET.total_bytes
            assert 1 <= slow <= BUDGET.node_limit(ANNOUNCED) // ANNOUNCED  # the stalled, by deadline
            assert over_budget >= 1  # beyond a peer's own 32 MiB
            assert busy >= 1  # beyond the node's: it bound the three peers together
            assert budget.reserved == 0
            await node.wait_for_height(node.status().height + 2)
            nursery.cancel_scope.cancel()


async def test_a_stranger_opening_200_slow_proposal_streams_holds_at_most_its_budget_and_is_banned(
    tmp_path: Path,
) -> None:
    """The audit's numbers, against the default budget: 200 streams (the stream bucket's burst),
    16 MiB - 1 announced on each. Two frames' worth is reserved, the rest refused and scored,
    and twenty refusals ban the peer, which ends its streams."""
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            net = LocalNet(nursery, tmp_path, validators=1)
            node = await net.start(0)
            budget = node.host.frame_budget
            await node.wait_for_height(1)
            outcomes: list[str] = []
            async with libp2p_host(key_pair("stream-memory-flood")) as host:
                host.set_stream_handler(MESHSUB, drain_pubsub)
                node_id = await connect(host, node.host.listen_addrs[0])
                stranger = str(host.get_id())
                async with trio.open_nursery() as attack:
                    for _ in range(200):
                        attack.start_soon(slow_proposal, host, node_id, outcomes)
                    height = node.status().height
                    await wait_until(lambda: node.host.guard.is_banned(stranger), what="the stranger banned")
                    await node.wait_for_height(height + 3)
                assert len(outcomes) == 200 and "sent whole" not in outcomes
            assert 0 < budget.peak_reserved <= budget.settings.per_peer_bytes
            assert refused(budget, Reason.OVER_BUDGET) >= 20
            await wait_until(lambda: budget.reserved == 0, what="the banned peer's frames released")
            await node.wait_for_height(node.status().height + 2)
            nursery.cancel_scope.cancel()
