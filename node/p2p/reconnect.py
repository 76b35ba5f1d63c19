"""Keeping a connection to a bootstrap peer: redial with exponential backoff and jitter.

Both hosts run one :func:`keep_connected` task per bootstrap address. The loop only knows how to
dial and how to wait for the peer to drop; transport quirks (libp2p's stale address and negative
dial cache) are the dial function's business.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from node.p2p.errors import HostConfigError, P2PError


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    """Delays between failed dials: ``initial_s * 2**n`` capped at ``max_s``, each +-``jitter``.

    Jitter spreads the redials of many nodes that lost the same peer at once (a restarted
    bootstrap node would otherwise be hit by every node in the same instant).
    """

    initial_s: float = 0.5
    max_s: float = 30.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if not 0 < self.initial_s <= self.max_s:
            raise HostConfigError("reconnect backoff: need 0 < initial_s <= max_s")
        if not 0 <= self.jitter < 1:
            raise HostConfigError("reconnect backoff: jitter is a fraction in [0, 1)")


class Backoff:
    """The state of one peer's backoff: how many dials in a row have failed."""

    def __init__(self, policy: BackoffPolicy, rng: random.Random) -> None:
        self._policy = policy
        self._rng = rng
        self.failures = 0

    def next_delay(self) -> float:
        base = min(self._policy.max_s, self._policy.initial_s * float(2 ** min(self.failures, 30)))
        self.failures += 1
        spread = base * self._policy.jitter
        return base + self._rng.uniform(-spread, spread)

    def reset(self) -> None:
        self.failures = 0


async def keep_connected(
    address: str,
    *,
    dial: Callable[[str], Awaitable[str]],
    wait_disconnected: Callable[[str], Awaitable[None]],
    backoff: Backoff,
    log: logging.Logger,
    stable_after_s: float = 10.0,
) -> None:
    """Dial ``address`` until connected; after every disconnect, dial it again. Runs until cancelled.

    ``dial`` returns the peer id; its typed failures are retried after a backoff delay. A redial
    after a disconnect waits a backoff delay too, and the backoff only starts over once a
    connection has stayed up for ``stable_after_s``: a peer that accepts and then drops us at
    once is not redialled in a tight loop.
    """
    while True:
        try:
            peer_id = await dial(address)
        except P2PError as exc:
            delay = backoff.next_delay()
            log.info(
                "bootstrap peer %s unreachable (%s); retry %d in %.1f s",
                address,
                exc.message,
                backoff.failures,
                delay,
            )
            await trio.sleep(delay)
            continue
        connected_at = trio.current_time()
        await wait_disconnected(peer_id)
        if trio.current_time() - connected_at >= stable_after_s:
            backoff.reset()
        delay = backoff.next_delay()
        log.info("bootstrap peer %s disconnected; redialling in %.1f s", address, delay)
        await trio.sleep(delay)
