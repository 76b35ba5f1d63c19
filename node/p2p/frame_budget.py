"""The bytes and the time a peer's frames may take while we receive them, on inbound streams.

The attack (audit of h18): a stranger opens ~200 ``/dcent/consensus/proposal/1.0.0`` streams (the
guard's stream bucket allows a burst of 200, yamux 256 per connection), announces a 16 MiB - 1
frame on each and sends it slowly, never finishing: the node buffered ~3 GiB and waited forever,
and again for each peer id the stranger made. Each length prefix was checked against its
protocol's maximum, but nothing bounded how many such frames were in flight, nor for how long.

Two rules, applied by ``Stream.receive_frame`` on every stream a host hands to a handler:

- **A byte budget.** Before a body of n bytes is read, n bytes are reserved from the peer's budget
  and from the node's; they are released when the frame is handed over (the handler owns the
  bytes then, and handles one frame at a time) or when the read fails. A frame that finds no room
  within ``reserve_wait_s`` is refused and its stream reset. Frames in flight never hold more
  than ``total_bytes``, whatever strangers send. A peer holding nothing may always start one
  frame (a 64 MiB result delivery still fits a 32 MiB peer budget), and the top eighth of the
  node's budget is for small frames only: a squeeze by large frames leaves room for the small
  messages consensus lives on.
- **Deadlines.** A body of n bytes must arrive within ``grace_s + n / min_rate_bytes_per_s``
  of its reservation, and a stream's first frame must start (its length prefix) within
  ``first_frame_s`` of the stream opening. Each frame's deadline is its own, so a small frame's
  is short whatever large frames do elsewhere.

Refusals go to the guard by protocol and reason: ``over_budget`` and ``slow`` are scored lightly;
``busy`` (the node-wide budget ran out: honest peers must not pay for a squeeze) is only counted.

Streams we open are not budgeted: we asked for what comes back (blob chunks, answers, deliveries
to us go on the provider's stream, which is inbound), and each caller bounds its own reads.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import trio

from node.p2p.errors import FrameBudgetError, FrameRefusedError, HostConfigError
from node.p2p.guard import PeerGuard
from node.p2p.refusals import reason_of

KIB = 1024
MIB = 1024 * KIB
#: Frames up to this size may use the top share of the node budget that large frames leave free.
SMALL_FRAME_BYTES = MIB
#: ``total_bytes // SMALL_FRAME_SHARE`` of the node budget is kept for small frames.
SMALL_FRAME_SHARE = 8
#: The most a node-wide budget may be set to.
MAX_TOTAL_BYTES = 64 * 1024 * MIB
#: The longest any of the waits and deadlines may be set to.
MAX_WAIT_S = 3600.0


@dataclass(frozen=True, slots=True)
class FrameBudgetSettings:
    """Limits on frames being received on inbound streams. Raises :class:`HostConfigError`."""

    #: Frame bytes one peer may have in flight to us at once (a peer holding none may always
    #: start one frame, up to the node-wide budget).
    per_peer_bytes: int = 32 * MIB
    #: Frame bytes in flight from all peers together: the most strangers can make us hold.
    total_bytes: int = 256 * MIB
    #: How long a frame may wait for room before it is refused and its stream reset.
    reserve_wait_s: float = 1.0
    #: The slowest a frame body may arrive: n bytes get grace_s + n / min_rate_bytes_per_s.
    min_rate_bytes_per_s: int = 64 * KIB
    grace_s: float = 10.0
    #: A stream's first frame must start (its length prefix arrive) this soon after opening.
    first_frame_s: float = 15.0

    def __post_init__(self) -> None:
        if not MIB <= self.per_peer_bytes <= self.total_bytes <= MAX_TOTAL_BYTES:
            raise HostConfigError(
                f"frame budget: 1 MiB <= per_peer_bytes <= total_bytes <= {MAX_TOTAL_BYTES // MIB} MiB"
            )
        if self.min_rate_bytes_per_s < KIB:
            raise HostConfigError("frame budget: min_rate_bytes_per_s at least 1 KiB/s")
        if not (
            0 <= self.reserve_wait_s <= MAX_WAIT_S
            and 0 <= self.grace_s <= MAX_WAIT_S
            and 0 < self.first_frame_s <= MAX_WAIT_S
        ):
            raise HostConfigError(
                f"frame budget: reserve_wait_s and grace_s in [0, {MAX_WAIT_S:g}], "
                f"first_frame_s in (0, {MAX_WAIT_S:g}]"
            )

    def body_deadline_s(self, size: int) -> float:
        """Seconds a body of ``size`` bytes may take once its bytes are reserved."""
        return self.grace_s + size / self.min_rate_bytes_per_s

    def node_limit(self, size: int) -> int:
        """The node-wide bytes in flight a frame of ``size`` bytes may bring the total up to."""
        if size <= SMALL_FRAME_BYTES:
            return self.total_bytes
        return self.total_bytes - self.total_bytes // SMALL_FRAME_SHARE


class Shortfall(enum.Enum):
    """Whose budget has no room for a frame."""

    PEER = "peer"
    NODE = "node"


def shortfall(settings: FrameBudgetSettings, held_by_peer: int, held: int, size: int) -> Shortfall | None:
    """Whether a frame of ``size`` bytes fits, the peer holding ``held_by_peer`` and every peer
    together ``held``; the peer's budget is checked first (its own excess is its fault)."""
    if held_by_peer and held_by_peer + size > settings.per_peer_bytes:
        return Shortfall.PEER
    if held + size > settings.node_limit(size):
        return Shortfall.NODE
    return None


class FrameBudget:
    """Bytes reserved for frame bodies being received, per peer and in all; one per host.

    ``reserved`` and ``peak_reserved`` are gauges for metrics and tests. Refusals are reported to
    ``guard`` (see :meth:`report`).
    """

    def __init__(self, guard: PeerGuard, settings: FrameBudgetSettings | None = None) -> None:
        self.settings = settings or FrameBudgetSettings()
        self.guard = guard
        self._held: dict[str, int] = {}
        #: Bytes reserved now, by every peer together.
        self.reserved = 0
        #: The most ever reserved at once.
        self.peak_reserved = 0
        # Set (and replaced) whenever bytes are released: waiting reservations look again.
        self._room = trio.Event()

    def held_by(self, peer_id: str) -> int:
        return self._held.get(peer_id, 0)

    def peers_holding(self) -> int:
        return len(self._held)

    async def reserve(self, peer_id: str, size: int) -> None:
        """Reserve ``size`` bytes for ``peer_id``, waiting up to ``reserve_wait_s`` for room.

        Raises :class:`FrameBudgetError` (nothing reserved) when there is none by then; at once
        for a frame larger than the node budget could ever hold.
        """
        short = shortfall(self.settings, self.held_by(peer_id), self.reserved, size)
        if short is not None and size <= self.settings.node_limit(size):
            with trio.move_on_after(self.settings.reserve_wait_s):
                while short is not None:
                    await self._room.wait()
                    short = shortfall(self.settings, self.held_by(peer_id), self.reserved, size)
        if short is not None:
            raise FrameBudgetError(
                f"no room for a {size}-byte frame from {peer_id}: "
                + (
                    f"it holds {self.held_by(peer_id)} of its {self.settings.per_peer_bytes} bytes"
                    if short is Shortfall.PEER
                    else f"{self.reserved} of the node's {self.settings.total_bytes} bytes are in flight"
                ),
                peer_exhausted=short is Shortfall.PEER,
            )
        self._held[peer_id] = self.held_by(peer_id) + size
        self.reserved += size
        self.peak_reserved = max(self.peak_reserved, self.reserved)

    def release(self, peer_id: str, size: int) -> None:
        """Give back ``size`` bytes that ``peer_id`` reserved; waiting reservations look again."""
        left = self.held_by(peer_id) - size
        assert left >= 0 and self.reserved >= size, f"released {size} bytes {peer_id} did not hold"
        if left:
            self._held[peer_id] = left
        else:
            del self._held[peer_id]
        self.reserved -= size
        self._room.set()
        self._room = trio.Event()

    def report(self, peer_id: str, protocol_id: str, error: FrameRefusedError) -> None:
        """Count (and score, by its reason's weight) a frame refused on ``protocol_id``."""
        self.guard.refuse(peer_id, protocol_id, reason_of(error), error.message)
