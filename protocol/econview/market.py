"""The market as a person browses it: the offers a node holds, filtered like a job's resources,
sorted, and summed up into the network's capacity and prices (``dcent market offers/stats``).

Filtering uses the matching rules themselves (:func:`protocol.market.matching.device_meets`), so
an offer listed for ``--gpus 2 --min-memory "40 GiB"`` is one the matcher would consider for a job
asking the same: at least that many free units that meet the resources, an executor of the
job's kind when one is named, a price within the maximum when one is given. The stake shown and
sorted on is the ledger's figure when the caller knows it (an announcement's own claim otherwise),
as matching ranks.

Pure: the announcements, the time and the ledger's stakes come in as arguments.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from protocol.hardware import GpuDevice
from protocol.market.capacity import CapacityAnnouncement
from protocol.market.jobspec import Resources
from protocol.market.matching import device_meets

#: Sort keys of ``dcent market offers``: name -> what it orders by (ties: price, then provider).
SORT_KEYS = ("price", "stake", "free", "memory", "age")


@dataclass(frozen=True, slots=True)
class OfferFilter:
    """What an offer must have to be listed: a job's resources, and optionally an executor and a
    maximum price per GPU-second (0: any)."""

    resources: Resources
    executor: str = ""
    max_price_per_gpu_second: int = 0


@dataclass(frozen=True, slots=True)
class OfferRow:
    """One provider's current offer, as listed."""

    announcement: CapacityAnnouncement
    #: The ledger's bonded stake of the provider when known, else the announced one.
    stake: int
    #: Announced units that meet the filter's resources, busy or free.
    eligible: tuple[GpuDevice, ...]
    #: Those of them not busy.
    free: tuple[GpuDevice, ...]
    age_ms: int

    @property
    def memory_bytes(self) -> int:
        """The most memory of one eligible unit (-1 when unknown)."""
        return max((gpu.memory_total_bytes for gpu in self.eligible), default=-1)

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(sorted({gpu.name for gpu in self.eligible}))


def _sort_key(name: str) -> Callable[[OfferRow], tuple[int | bytes, ...]]:
    def key(row: OfferRow) -> tuple[int | bytes, ...]:
        price, provider = row.announcement.price_per_gpu_second, row.announcement.provider
        primary = {
            "price": price,
            "stake": -row.stake,
            "free": -len(row.free),
            "memory": -row.memory_bytes,
            "age": row.age_ms,
        }[name]
        return (primary, price, provider)

    return key


def list_offers(
    announcements: Iterable[CapacityAnnouncement],
    offer_filter: OfferFilter,
    *,
    now_ms: int,
    sort: str = "price",
    stake_of: Callable[[bytes], int | None] | None = None,
) -> list[OfferRow]:
    """The current offers that pass ``offer_filter``, ordered by ``sort`` (one of
    :data:`SORT_KEYS`; ValueError otherwise, a caller's bug: the RPC checks it first)."""
    if sort not in SORT_KEYS:
        raise ValueError(f"sort must be one of {SORT_KEYS}")
    resources = offer_filter.resources
    rows = []
    for ann in announcements:
        if ann.expires_at_ms <= now_ms:
            continue
        if offer_filter.executor and offer_filter.executor not in ann.executors:
            continue
        ceiling = offer_filter.max_price_per_gpu_second
        if ceiling and ann.price_per_gpu_second > ceiling:
            continue
        eligible = tuple(gpu for gpu in ann.gpus if device_meets(resources, gpu))
        busy = set(ann.busy_gpu_uuids)
        free = tuple(gpu for gpu in eligible if gpu.uuid not in busy)
        if len(free) < resources.gpu_count:
            continue
        known = stake_of(ann.provider) if stake_of is not None else None
        rows.append(
            OfferRow(
                announcement=ann,
                stake=ann.stake if known is None else known,
                eligible=eligible,
                free=free,
                age_ms=max(0, now_ms - ann.issued_at_ms),
            )
        )
    rows.sort(key=_sort_key(sort))
    return rows


@dataclass(frozen=True, slots=True)
class PriceStats:
    """Prices per GPU-second over units (each unit counts once): min, median, max, mean."""

    units: int
    min: int
    median: int
    max: int
    #: Truncated.
    mean: int


def price_stats(prices: Sequence[int]) -> PriceStats | None:
    """Stats of one price per unit; None for no units. The median of an even count is the
    lower middle value (an offered price, never an average of two)."""
    if not prices:
        return None
    ordered = sorted(prices)
    return PriceStats(
        units=len(ordered),
        min=ordered[0],
        median=ordered[(len(ordered) - 1) // 2],
        max=ordered[-1],
        mean=sum(ordered) // len(ordered),
    )


@dataclass(frozen=True, slots=True)
class ModelCapacity:
    model: str
    units: int
    free: int
    providers: int
    prices: PriceStats


@dataclass(frozen=True, slots=True)
class Capacity:
    """The network's capacity as this node sees it: current offers only, schedulable healthy
    units only (a MIG unit counts as one)."""

    providers: int
    units: int
    free: int
    simulated: int
    prices: PriceStats | None
    free_prices: PriceStats | None
    by_model: tuple[ModelCapacity, ...]


@dataclass(slots=True)
class _ModelTally:
    prices: list[int]
    free: int
    providers: set[bytes]


def capacity(announcements: Iterable[CapacityAnnouncement], *, now_ms: int) -> Capacity:
    """Sum the current announcements up. Raises nothing."""
    providers = 0
    prices: list[int] = []
    free_prices: list[int] = []
    simulated = 0
    per_model: dict[str, _ModelTally] = {}
    for ann in announcements:
        if ann.expires_at_ms <= now_ms:
            continue
        units = [gpu for gpu in ann.gpus if gpu.schedulable and gpu.healthy and gpu.uuid]
        if not units:
            continue
        providers += 1
        busy = set(ann.busy_gpu_uuids)
        for gpu in units:
            price = ann.price_per_gpu_second
            tally = per_model.setdefault(gpu.name or "(unknown)", _ModelTally([], 0, set()))
            tally.prices.append(price)
            tally.providers.add(ann.provider)
            prices.append(price)
            simulated += gpu.simulated
            if gpu.uuid not in busy:
                free_prices.append(price)
                tally.free += 1
    by_model = []
    for model, tally in sorted(per_model.items()):
        stats = price_stats(tally.prices)
        assert stats is not None  # a model is listed only with a unit
        by_model.append(ModelCapacity(model, len(tally.prices), tally.free, len(tally.providers), stats))
    return Capacity(
        providers=providers,
        units=len(prices),
        free=len(free_prices),
        simulated=simulated,
        prices=price_stats(prices),
        free_prices=price_stats(free_prices),
        by_model=tuple(by_model),
    )
