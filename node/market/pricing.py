"""Prices that move with demand: a provider's pricing policy (config ``[pricing]``).

Without the table (``floor`` empty) a provider sells at ``market.price_per_gpu_second`` as
before. With it, every ``interval_s`` the node recomputes its ask from how busy its own GPUs are:

    curve  = floor * (1 + slope * utilization ** exponent)      utilization = busy units / units
    ask    = previous + adjustment * (curve - previous)          (adjustment 100%: jump to the curve)
    ask    = ask + reference_weight * (recent - ask)             (only with a recent market price)
    ask    = max(floor, ask)

``recent`` is what requesters paid per GPU-second, on chain, over the last ``reference_window``
blocks (the economics records the node stores with each block); without settled work there it is
left out. The curve and the adjustment are the economics simulator's provider pricing
(``protocol/econsim/agents.py``: ``price_per_gpu_hour`` and ``next_price``, its scenario settings
``price_floor_per_gpu_hour``, ``price_slope``, ``price_exponent``, ``price_adjustment``), so a
simulated run with a scenario's pricing shows what this policy does to utilization and price
(below, "The rule, and what the simulator shows it does", compares it with a fixed price). Integers
only here; ratios DEC-scaled.

The new ask reaches both places a provider names its price: the capacity announcements (from the
next one on) and the quotes (negotiations that start after the change). A quote already made
keeps its price: the requester accepted that one. Requesters still bid with
``max_price_per_gpu_second`` and matching prefers the lowest ask.

Attacks: none from outside decide the ask except through settled contracts, which cost their
parties the protocol fee: a requester that pays itself a high price to raise ``recent`` pays
``protocol_fee_share`` of it, and moves a provider only by ``reference_weight`` of the gap. Every
value is bounded (the ask stays within ``[floor, MAX_ASK]``).

The rule, and what the simulator shows it does
----------------------------------------------

Off unless ``[pricing] floor`` is set (then ``market.price_per_gpu_second`` is only the starting
ask). Every ``interval_s`` the node reprices from its own utilization (busy units / units in the
job service's allocator):

    curve = floor * (1 + slope * utilization ** exponent)
    ask   = previous + adjustment * (curve - previous)
    ask   = ask + reference_weight * (recent - ask)        # recent: paid per GPU-second on chain
    ask   = max(floor, ask), at most 10^15 base units        # over the last reference_window blocks

Integers throughout (ratios DEC-scaled, divisions truncated). The new ask goes into the next
capacity announcement and into negotiations that start afterwards (``MarketService.set_price``: it replaces the frozen ``ProviderPolicy``); a quote already made keeps
its price. Requesters still bid with ``max_price_per_gpu_second``; matching prefers the lowest ask.
Attack: ``recent`` moves only through settled contracts, each burning ``protocol_fee_share`` of its
pay, and moves an ask by at most ``reference_weight`` of the gap, never below the floor.

The settings are ``[pricing]`` in ``config.toml`` (``dcent init`` writes each with its comment).

The curve and the adjustment are the simulator's provider pricing (``price_floor_per_gpu_hour``,
``price_slope``, ``price_exponent``, ``price_adjustment``), so the simulator shows the policy's effect.
Five years of each scenario, curve (as the scenario files) against a fixed price of 0.825 DCT per
GPU-hour (``--set price_slope=0 --set price_adjustment=1 --set price_floor_per_gpu_hour="0.825 DCT"``,
the curve's price at 50% utilization), averages over the run:

| scenario    | pricing | utilization (peak) | price/GPU-h | providers at the end | demand unserved |
|-------------|---------|--------------------|-------------|----------------------|-----------------|
| baseline    | curve   | 63.1% (72.1%)      | 0.959 DCT   | 759                  | 0%              |
| baseline    | fixed   | 73.3% (83.1%)      | 0.825 DCT   | 759                  | 0%              |
| demand_boom | curve   | 69.7% (85.1%)      | 1.042 DCT   | 5,197                | 0%              |
| demand_boom | fixed   | 88.4% (100%)       | 0.825 DCT   | 4,795                | 4.03%           |

A price that follows utilization keeps headroom in a boom (the fixed price runs out of GPUs and
turns 4% of demand away), and the higher price brings more providers in; in a calm market it
mostly charges more for the same work (the agents' income per GPU-hour ends equal either way:
providers join or leave until income meets cost).

Tests: ``tests/unit/test_market_pricing.py`` (curve, adjustment, reference, bounds, the table and
its typed errors, the service on a MockClock), ``tests/integration/test_market_pricing.py`` (real
nodes: an idle provider's floor seen by a peer, half its GPUs taken -> floor x 1.75 announced and
quoted, released -> the floor again).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import trio

from node.errors import NodeError
from node.store import ChainStore
from protocol.economics import div_trunc
from protocol.econview.record import BlockEconomics
from protocol.encoding import DecodeError
from protocol.units import DEC, AmountError, parse_amount, percent

if TYPE_CHECKING:
    from trio_typing import TaskStatus

    from node.market.service import MarketService
    from node.services.capacity import CapacityService

log = logging.getLogger("dcent.pricing")

#: The highest ask: far above any sane price, far below the announcement's 63-bit range.
MAX_ASK = 10**15
MAX_EXPONENT = 8


class PricingSettingsError(NodeError):
    """An impossible ``[pricing]`` setting (the operator's configuration)."""

    code: ClassVar[int] = 5990


def _ratio(text: str, where: str, *, high: int) -> int:
    cleaned = text.strip()
    try:
        if not cleaned.endswith("%"):
            raise ValueError
        value = percent(cleaned[:-1].strip())
    except (ValueError, ArithmeticError):
        raise PricingSettingsError(f'pricing.{where}: a percentage such as "50%", got {text!r}') from None
    if not 0 <= value <= high:
        raise PricingSettingsError(f"pricing.{where}: {text} is outside 0% to {high * 100 // DEC}%")
    return value


@dataclass(frozen=True, slots=True)
class PricingSettings:
    """``[pricing]``; raises :class:`PricingSettingsError` for a value out of range."""

    #: The lowest ask per GPU-second, as an amount ("0.0002 DCT"); "" leaves pricing off.
    floor: str = ""
    #: At full utilization the curve asks ``floor * (1 + slope)``.
    slope: str = "150%"
    #: How steeply the ask rises with utilization: the curve uses utilization ** exponent.
    exponent: int = 2
    #: Share of the way to the curve's price moved at each repricing.
    adjustment: str = "100%"
    #: Share of the gap to the recent on-chain price closed after that; "0%" ignores it.
    reference_weight: str = "0%"
    #: Blocks of settled work the recent price is read over.
    reference_window: int = 1_000
    #: Seconds between repricings (0.1 to 3600).
    interval_s: float = 10.0

    def __post_init__(self) -> None:
        if self.floor:
            self.floor_amount  # noqa: B018  (parses, or raises)
        _ratio(self.slope, "slope", high=10 * DEC)
        _ratio(self.adjustment, "adjustment", high=DEC)
        _ratio(self.reference_weight, "reference_weight", high=DEC)
        if not 0 <= self.exponent <= MAX_EXPONENT:
            raise PricingSettingsError(f"pricing.exponent: {self.exponent} is outside 0 to {MAX_EXPONENT}")
        if not 1 <= self.reference_window <= 100_000:
            raise PricingSettingsError("pricing.reference_window: 1 to 100000 blocks")
        if not 0.1 <= self.interval_s <= 3600:
            raise PricingSettingsError("pricing.interval_s: 0.1 to 3600 seconds")

    @property
    def enabled(self) -> bool:
        return bool(self.floor)

    @property
    def floor_amount(self) -> int:
        try:
            amount = parse_amount(self.floor)
        except AmountError as exc:
            raise PricingSettingsError(f"pricing.floor: {exc.message}") from None
        if not 0 < amount <= MAX_ASK:
            raise PricingSettingsError(f"pricing.floor: above zero and at most {MAX_ASK} base units")
        return amount


@dataclass(frozen=True, slots=True)
class PricingPolicy:
    """The parsed policy: amounts in base units per GPU-second, ratios DEC-scaled."""

    floor: int
    slope: int
    exponent: int
    adjustment: int
    reference_weight: int

    @classmethod
    def from_settings(cls, settings: PricingSettings) -> PricingPolicy:
        return cls(
            floor=settings.floor_amount,
            slope=_ratio(settings.slope, "slope", high=10 * DEC),
            exponent=settings.exponent,
            adjustment=_ratio(settings.adjustment, "adjustment", high=DEC),
            reference_weight=_ratio(settings.reference_weight, "reference_weight", high=DEC),
        )

    def curve(self, busy: int, units: int) -> int:
        """``floor * (1 + slope * (busy / units) ** exponent)``, truncated; the floor with no units."""
        if units <= 0:
            return self.floor
        busy = min(max(busy, 0), units)
        taken = scale = 1
        for _ in range(self.exponent):
            taken *= busy
            scale *= units
        return self.floor + self.floor * self.slope * taken // (DEC * scale)

    def next_ask(self, previous: int, *, busy: int, units: int, recent: int | None) -> int:
        """The ask after ``previous``, for ``busy`` of ``units`` GPUs taken and the recent
        on-chain price (None: no work settled lately). Raises nothing; within [floor, MAX_ASK]."""
        ask = previous + div_trunc(self.adjustment * (self.curve(busy, units) - previous), DEC)
        if recent is not None and self.reference_weight:
            ask += div_trunc(self.reference_weight * (recent - ask), DEC)
        return min(max(self.floor, ask), MAX_ASK)


class PricingService:
    """Reprices every ``interval_s``: reads utilization and the recent price, computes the next
    ask and hands it to ``apply`` (the capacity announcements and the provider's quotes)."""

    def __init__(
        self,
        settings: PricingSettings,
        *,
        utilization: Callable[[], tuple[int, int]],
        recent_price: Callable[[int], Awaitable[int | None]],
        apply: Callable[[int], None],
        initial: int,
    ) -> None:
        self.settings = settings
        self.policy = PricingPolicy.from_settings(settings)
        self.utilization = utilization
        self.recent_price = recent_price
        self.apply = apply
        self.ask = max(self.policy.floor, min(initial, MAX_ASK))

    async def reprice(self) -> int:
        busy, units = self.utilization()
        recent = (
            await self.recent_price(self.settings.reference_window) if self.policy.reference_weight else None
        )
        ask = self.policy.next_ask(self.ask, busy=busy, units=units, recent=recent)
        if ask != self.ask:
            log.info(
                "ask %d -> %d per GPU-second (%d of %d GPUs busy, recent %s)",
                self.ask,
                ask,
                busy,
                units,
                recent,
            )
        self.ask = ask
        self.apply(ask)
        return ask

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await self.reprice()
        task_status.started()
        while True:
            await trio.sleep(self.settings.interval_s)
            await self.reprice()


def recent_price_reader(
    store: ChainStore, height: Callable[[], int]
) -> Callable[[int], Awaitable[int | None]]:
    """What requesters paid per GPU-second over the last ``window`` stored blocks (the economics
    records), truncated; None when no work was settled there."""

    async def recent(window: int) -> int | None:
        head = height()
        rows = await trio.to_thread.run_sync(store.economics, max(1, head - window + 1), head)
        gpu_seconds = paid = 0
        for _, raw in rows:
            try:
                record = BlockEconomics.decode(raw)
            except DecodeError:
                continue  # a damaged record says nothing about prices; the RPC reports it
            gpu_seconds += record.gpu_seconds
            paid += record.paid
        return paid // gpu_seconds if gpu_seconds else None

    return recent


async def start_pricing(
    nursery: trio.Nursery,
    settings: PricingSettings,
    *,
    capacity: CapacityService,
    market: MarketService,
    store: ChainStore,
    height: Callable[[], int],
) -> PricingService:
    """Start repricing this node's capacity and quotes (the daemon's one call)."""

    def apply(price: int) -> None:
        capacity.price_per_gpu_second = price
        market.set_price(price)

    service = PricingService(
        settings,
        utilization=lambda: (len(market.busy_gpu_uuids()), len(market.allocator.units())),
        recent_price=recent_price_reader(store, height),
        apply=apply,
        initial=capacity.price_per_gpu_second,
    )
    await nursery.start(service.run)
    return service
