"""Capacity gossip: announce our GPUs, keep the table of everyone's.

A provider signs an announcement of what it sells (its GPUs from NVML, or declared simulated
GPUs on testnets), publishes it on ``/dcent/<chain>/capacity/1`` every ``interval`` and whenever
the probe changes, with a validity of ``ttl``. Every node verifies what it receives (signature,
chain, validity window, newer sequence than what it holds) into a :class:`CapacityTable` and
drops entries when they expire, so a provider that stops disappears within ``ttl``.

The checks run in the topic's gossip validator, before the message is forwarded: a message that
does not decode, is forged, or names another peer than the one that published it is rejected
(scored against the peer that sent it to us); an expired, early or stale (replayed) one is
ignored, since honest peers may relay those around a boundary. Nothing a peer sends on the topic
can raise out of this service.

Room in the table goes by stake on the ledger (``stake_of``, never the announced figure): an
announcement the table has no room for (a flood of fresh unstaked keys past their shared quota)
is ignored, so it is not forwarded and the squatting stops at the first honest node; a forwarder
that sends more of those than ``no_room_limit`` allows is scored as a flood. A publish the host
cannot make (every subscriber's queue full: a peer that subscribes and stops reading) is logged,
counted in ``publish_failures`` and tried again at the next announcement; it never ends the node.

A provider announces only while ``limits()`` gives what it sells one job (its executor's
self-test passed, :mod:`node.market.readiness`). When that stops, it announces once more with no
GPUs, so peers stop offering it at once instead of after ``ttl``, and then falls silent.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import trio

from node.p2p.errors import P2PError
from node.p2p.guard import RateLimit, Reason
from node.p2p.interface import ACCEPT, GossipMessage, Host, Validation
from protocol.crypto import PrivateKey
from protocol.encoding import DecodeError
from protocol.hardware import GpuDevice, ProbeReport
from protocol.ledger.availability import dct_price
from protocol.market.capacity import (
    CapacityAnnouncement,
    CapacityTable,
    OfferedLimits,
    decode_announcement,
    sign_announcement,
)
from protocol.market.errors import (
    AnnouncementError,
    AnnouncementFromFuture,
    CapacityTableFull,
    ExpiredAnnouncement,
    StaleAnnouncement,
)
from protocol.units import MAX_AMOUNT

if TYPE_CHECKING:
    from trio_typing import TaskStatus

log = logging.getLogger("dcent.capacity")


#: The limits of a withdrawal (an announcement with no GPUs): nothing is sold.
WITHDRAWN = OfferedLimits(0, 0, 0, 0, enforced=(), sandboxed=True)

#: Announcements without room one forwarder may send us before each further one scores as a
#: flood. An honest relay forwards only what its own table admitted, so it sends us such
#: announcements only where our tables differ: at most the unstaked quota (256) re-announced
#: every interval (10 s), about 26 a second.
NO_ROOM_LIMIT = RateLimit(per_second=50.0, burst=512.0)


def no_ledger(_provider: bytes) -> int:
    """A ledger view that knows no stake: every provider ranks as unstaked."""
    return 0


def capacity_topic(chain_id: str) -> str:
    return f"/dcent/{chain_id}/capacity/1"


class CapacityService:
    def __init__(
        self,
        *,
        chain_id: str,
        key: PrivateKey,
        host: Host,
        probe: Callable[[], Awaitable[ProbeReport]],
        price_per_gpu_second: int,
        collateral: int,
        stake: Callable[[], int],
        executors: tuple[str, ...],
        clock_ms: Callable[[], int],
        interval_s: float = 10.0,
        ttl_s: float = 30.0,
        busy: Callable[[], tuple[str, ...]] = tuple,
        limits: Callable[[], OfferedLimits | None] = lambda: None,
        stake_of: Callable[[bytes], int] = no_ledger,
        table: CapacityTable | None = None,
        no_room_limit: RateLimit = NO_ROOM_LIMIT,
        quote: str = "",
        quote_price_per_gpu_second: int = 0,
        twap_of: Callable[[str], int | None] = lambda _symbol: None,
    ) -> None:
        self.chain_id = chain_id
        self.key = key
        self.host = host
        self.probe = probe
        self.price_per_gpu_second = price_per_gpu_second
        #: The asset this provider quotes in ("" for DCT) and its price in that asset.
        self.quote = quote
        self.quote_price_per_gpu_second = quote_price_per_gpu_second
        #: The DCT/asset pool's time-weighted price as the next block sees it (None: none).
        self.twap_of = twap_of
        self.collateral = collateral
        self.stake = stake
        self.executors = executors
        self.clock_ms = clock_ms
        self.interval_s = interval_s
        self.ttl_ms = int(ttl_s * 1000)
        #: The UUIDs held by quotes and jobs now (the job service's allocator).
        self.busy = busy
        #: What one job may ask for now; None while the node may not sell (nothing is announced).
        self.limits = limits
        self._withdrawn = True
        #: A provider's bonded stake on the ledger, by public key: what ranks it in the table.
        self.stake_of = stake_of
        self.table = table if table is not None else CapacityTable(chain_id)
        self.topic = capacity_topic(chain_id)
        self.no_room_limit = no_room_limit
        #: The guard's rate bucket for announcements without room, per forwarder.
        self._no_room_protocol = f"{self.topic}#no-room"
        #: Announcements from peers refused or ignored by the validator.
        self.dropped = 0
        #: Our announcements the host could not publish (each retried at the next interval).
        self.publish_failures = 0
        self.last_report: ProbeReport | None = None
        self._sequence = 0

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.host.set_topic_validator(self.topic, self.validate)
        inbound = await self.host.subscribe(self.topic)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._receive, inbound)
            nursery.start_soon(self._expire_loop)
            await self._announce()
            task_status.started()
            while True:
                await trio.sleep(self.interval_s)
                await self._announce()

    async def _announce(self) -> None:
        report = await self.probe()
        self.last_report = report
        devices = report.schedulable_units()
        limits = self.limits()
        if not devices:
            return
        if limits is None:
            if not self._withdrawn:
                await self._publish(devices=(), limits=WITHDRAWN)
                self._withdrawn = True
            return
        self._withdrawn = False
        await self._publish(devices=devices, limits=limits)

    async def _publish(self, *, devices: tuple[GpuDevice, ...], limits: OfferedLimits) -> None:
        now = self.clock_ms()
        # Sequence = issue time (never reused across restarts), strictly increasing here.
        self._sequence = max(self._sequence + 1, now)
        announcement = sign_announcement(
            self.key,
            self.chain_id,
            peer_id=self.host.peer_id,
            sequence=self._sequence,
            gpus=devices,
            busy_gpu_uuids=tuple(uuid for uuid in self.busy() if uuid in {d.uuid for d in devices}),
            price_per_gpu_second=self._announced_price(),
            collateral=self.collateral,
            stake=self.stake(),
            executors=self.executors,
            limits=limits,
            issued_at_ms=now,
            expires_at_ms=now + self.ttl_ms,
            quote=self.quote,
            quote_price_per_gpu_second=self.quote_price_per_gpu_second,
        )
        try:
            self.table.offer(announcement, now, stake=self.stake())
        except CapacityTableFull as exc:  # peers rank us as they see fit; we still announce
            log.info("our own announcement has no room in our capacity table: %s", exc.message)
        try:
            await self.host.publish(self.topic, announcement.encode())
        except P2PError as exc:
            # Backpressure (every subscriber's queue full), a size limit or a host not yet up:
            # a peer can cause the first, so it must never end the node. The next announcement
            # (at most ``interval_s`` away) carries the same offer.
            self.publish_failures += 1
            log.warning("capacity announcement not published (%r); next try in %g s", exc, self.interval_s)

    def _announced_price(self) -> int:
        """The DCT price announced: a quote's DCT value at the pool's average now (for views;
        requesters price quotes at their own reading of it), else the ask."""
        twap = self.twap_of(self.quote) if self.quote else None
        if twap is None:
            return self.price_per_gpu_second
        return min(dct_price(self.quote_price_per_gpu_second, twap), MAX_AMOUNT)

    async def announce_now(self) -> None:
        """Announce at once (GPUs were just taken or freed), not at the next interval."""
        await self._announce()

    def validate(self, message: GossipMessage) -> Validation:
        """The topic validator: decode, check and keep a peer's announcement before it is relayed."""
        result = self._judge(message)
        if result.verdict is not ACCEPT.verdict:
            self.dropped += 1
        return result

    def _judge(self, message: GossipMessage) -> Validation:
        try:
            announcement = decode_announcement(message.data)
        except DecodeError as exc:
            return Validation.reject(Reason.DECODE, exc.message)
        if announcement.peer_id != message.sender:
            # Only a provider's own peer may publish its announcement: a relayed copy keeps its
            # originator, so this costs honest relays nothing and pins who answers for it.
            return Validation.reject(Reason.INVALID, "announcement published by another peer than it names")
        try:
            self.table.offer(
                announcement,
                self.clock_ms(),
                stake=self.stake_of(announcement.provider),
                encoded_size=len(message.data),
            )
        except (ExpiredAnnouncement, AnnouncementFromFuture, StaleAnnouncement) as exc:
            return Validation.ignore(Reason.STALE, exc.message)
        except CapacityTableFull as exc:
            return self._no_room(message, exc)
        except AnnouncementError as exc:
            return Validation.of_error(exc)
        return ACCEPT

    def _no_room(self, message: GossipMessage, exc: CapacityTableFull) -> Validation:
        """Ignore a valid announcement the table has no room for: not forwarded, so a squatter's
        flood goes no further than us. Past ``no_room_limit`` per forwarder, ``allow`` scores the
        forwarder as a flood (light: an honest relay may be a table ahead of or behind ours)."""
        if message.forwarder:
            self.host.guard.allow(message.forwarder, self._no_room_protocol, self.no_room_limit)
        return Validation.ignore(Reason.NO_ROOM, exc.message)

    async def _receive(self, inbound: trio.MemoryReceiveChannel[GossipMessage]) -> None:
        # The validator already took every message delivered here into the table.
        async for _message in inbound:
            pass

    async def _expire_loop(self) -> None:
        while True:
            await trio.sleep(1.0)
            for provider in self.table.expire(self.clock_ms()):
                log.info("capacity of provider %s expired", provider.hex()[:16])

    def entries(self) -> list[CapacityAnnouncement]:
        return list(self.table.entries())
