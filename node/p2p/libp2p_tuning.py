"""Process-wide overrides of py-libp2p 0.8.1 module constants, applied before a host starts.

Only constants that libp2p reads at call time from its module namespace can be overridden this
way; each one here is listed, with its reason, in ARCHITECTURE.md.
"""

from __future__ import annotations

import libp2p.network.swarm as libp2p_swarm

#: libp2p waits this long after starting each address's dial before trying the next one, even
#: after the last address, so every connect took 250 ms longer than the handshake (DESIGN bug 2).
#: We dial one address per peer, so there is no "next" address to give a head start to.
HAPPY_EYEBALLS_DELAY_S = 0.0


def apply() -> None:
    """Set the overrides (idempotent)."""
    libp2p_swarm._HAPPY_EYEBALLS_DELAY = HAPPY_EYEBALLS_DELAY_S
