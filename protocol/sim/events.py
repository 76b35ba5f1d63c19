"""What the simulator's event queue holds: one frozen record per kind of event.

The world pops them in (virtual time, sequence number) order; the sequence number breaks every
tie, so two events are never compared and the same seed replays the same order.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.consensus.effects import Timeout
from protocol.sim.faults import Crash
from protocol.sim.node import SimNode


@dataclass(frozen=True, slots=True, eq=False)
class Deliver:
    """``payload`` (a message, or its wire form) from ``src`` arrives at ``dst``."""

    dst: SimNode
    src: SimNode
    payload: object


@dataclass(frozen=True, slots=True, eq=False)
class TimerFires:
    """A timeout ``node`` set; stale (ignored) if the node restarted since (another incarnation)."""

    node: SimNode
    incarnation: int
    timeout: Timeout


@dataclass(frozen=True, slots=True)
class CrashNode:
    """The fault schedule's crash (at once, or armed to strike after the next persist or lock)."""

    crash: Crash


@dataclass(frozen=True, slots=True)
class RestartNode:
    node: int


@dataclass(frozen=True, slots=True)
class PartitionStarts:
    """The schedule's partition number ``index`` comes into force."""

    index: int


@dataclass(frozen=True, slots=True)
class PartitionEnds:
    index: int


@dataclass(frozen=True, slots=True)
class SubmitTx:
    """The clients send their next transactions (and schedule the following round)."""


@dataclass(frozen=True, slots=True)
class Heal:
    """Every partition ends; from now on the network delivers everything, in 1-20 ms."""


SimEvent = Deliver | TimerFires | CrashNode | RestartNode | PartitionStarts | PartitionEnds | SubmitTx | Heal
