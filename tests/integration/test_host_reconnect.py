"""The bootstrap reconnect loop's timing, on virtual time: backoff, jitter, no tight loops; and on
real hosts, a loop that dials through a ban."""

from __future__ import annotations

import itertools
import logging
import random

import pytest
import trio

from node.host import HostConfig, P2PHost
from node.p2p.errors import DialError, HostConfigError
from node.p2p.guard import GuardSettings, Reason
from node.p2p.reconnect import Backoff, BackoffPolicy, keep_connected
from tests.integration.conftest import DEADLINE_S, TEST_BACKOFF, seed_of
from tests.waiting import wait_until

log = logging.getLogger("test")


def test_backoff_doubles_up_to_the_cap_and_starts_over_on_reset() -> None:
    backoff = Backoff(BackoffPolicy(initial_s=0.5, max_s=30.0, jitter=0.0), random.Random(1))
    assert [backoff.next_delay() for _ in range(8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    backoff.reset()
    assert backoff.next_delay() == 0.5


def test_jitter_stays_within_its_fraction() -> None:
    backoff = Backoff(BackoffPolicy(initial_s=10.0, max_s=10.0, jitter=0.2), random.Random(7))
    delays = [backoff.next_delay() for _ in range(200)]
    assert all(8.0 <= d <= 12.0 for d in delays)
    assert len(set(delays)) > 100  # spread, not one value


@pytest.mark.parametrize("policy", [{"initial_s": 0.0}, {"initial_s": 5.0, "max_s": 1.0}, {"jitter": 1.0}])
def test_invalid_backoff_policy_is_refused(policy: dict[str, float]) -> None:
    with pytest.raises(HostConfigError):
        BackoffPolicy(**policy)


async def test_unreachable_peer_is_retried_with_growing_delays(autojump_clock: object) -> None:
    attempts: list[float] = []

    async def refuse(address: str) -> str:
        attempts.append(trio.current_time())
        raise DialError("connection refused")

    async def never_called(peer_id: str) -> None:
        raise AssertionError("not connected, so never waits for a disconnect")

    backoff = Backoff(BackoffPolicy(initial_s=0.5, max_s=8.0, jitter=0.0), random.Random(0))
    with trio.move_on_after(60):
        await keep_connected("addr", dial=refuse, wait_disconnected=never_called, backoff=backoff, log=log)

    gaps = [round(b - a, 6) for a, b in itertools.pairwise(attempts)]
    assert gaps[:5] == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert set(gaps[5:]) == {8.0}


async def test_peer_that_drops_us_at_once_is_not_redialled_in_a_tight_loop(autojump_clock: object) -> None:
    dials = 0

    async def accept(address: str) -> str:
        nonlocal dials
        dials += 1
        return "peer"

    async def dropped_at_once(peer_id: str) -> None:
        await trio.lowlevel.checkpoint()

    backoff = Backoff(BackoffPolicy(initial_s=0.5, max_s=8.0, jitter=0.0), random.Random(0))
    with trio.move_on_after(60):
        await keep_connected("addr", dial=accept, wait_disconnected=dropped_at_once, backoff=backoff, log=log)

    # 0.5 + 1 + 2 + 4 + 8 * n <= 60: eleven dials in a minute, not thousands.
    assert dials == 11


async def test_backoff_starts_over_after_a_stable_connection(autojump_clock: object) -> None:
    dials: list[float] = []

    async def accept(address: str) -> str:
        dials.append(trio.current_time())
        return "peer"

    async def stays_up_a_while(peer_id: str) -> None:
        with trio.move_on_after(20):  # virtual seconds: the connection lives, then drops
            await trio.Event().wait()

    backoff = Backoff(BackoffPolicy(initial_s=0.5, max_s=8.0, jitter=0.0), random.Random(0))
    with trio.move_on_after(100):
        await keep_connected(
            "addr", dial=accept, wait_disconnected=stays_up_a_while, backoff=backoff, log=log
        )

    gaps = {round(b - a, 6) for a, b in itertools.pairwise(dials)}
    assert gaps == {20.5}  # 20 s up, then the initial delay again every time


async def test_a_banned_bootstrap_peer_redialling_through_its_ban_is_connected_again_when_it_ends(
    nursery: trio.Nursery,
) -> None:
    """Real hosts: the node's reconnect loop keeps dialling its bootstrap peer while that peer bans
    it, and the peer drops each of those connections as it arrives. Each took one of libp2p's
    inbound places for good (workaround 34; the cap is ``2 * max_peers``, 2 here), so once the ban
    ended the node could never get in again."""
    seed = P2PHost(
        HostConfig(
            node_key_seed=seed_of("ban-seed"), max_peers=1, guard=GuardSettings(ban_s=1.0, max_ban_s=1.0)
        )
    )
    await nursery.start(seed.run)
    node = P2PHost(
        HostConfig(
            node_key_seed=seed_of("ban-node"), bootstrap=tuple(seed.listen_addrs), reconnect=TEST_BACKOFF
        )
    )
    await nursery.start(node.run)
    await wait_until(lambda: seed.peer_ids() == [node.peer_id], what="the node connected")
    for _ in range(3):  # 50 each, the threshold 100 (the first decays a little by the second)
        seed.guard.refuse(node.peer_id, "/test/forgery/1.0.0", Reason.SIGNATURE)
    assert seed.guard.is_banned(node.peer_id)
    await wait_until(lambda: node.peer_ids() == [], what="the banned node dropped")
    await wait_until(lambda: not seed.guard.is_banned(node.peer_id), what="the ban over")

    await wait_until(
        lambda: node.peer_ids() == [seed.peer_id] and seed.peer_ids() == [node.peer_id],
        what="the node's loop connected again",
        timeout=DEADLINE_S,
    )
    await node.close()
    await seed.close()
