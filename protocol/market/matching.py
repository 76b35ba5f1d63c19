"""Which providers can run a job, best first.

A GPU (or MIG unit) can take part in a job when it is schedulable (a whole GPU not in MIG mode,
or a MIG unit: each counts as one GPU), healthy, not busy with another job, has at least the
job's minimum free memory, a name matching the job's model pattern, at least the job's compute
capability and CUDA version. An unknown value (``-1``, ``0``) never meets a requirement, and
meets the absence of one.

A provider matches when its announcement is current, it offers an executor that can run the job,
its price is within the job's maximum (for a provider quoting in an asset: the quote's DCT value
at the pool's time-weighted price, as the escrow would fix it), its stake is at least the minimum, the job's resource
limits fit under what it sells one job and its kernel enforces each of them
(:func:`limits_refusal`), and it has enough such GPUs. Offers are ranked by price ascending, then stake descending, then provider key (so the
order is total and the same on every node). Simulated GPUs match like real ones; the offer says
so, so that a user or a policy can tell.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from protocol.hardware import GpuDevice
from protocol.ledger.availability import dct_price
from protocol.market.capacity import CapacityAnnouncement, OfferedLimits
from protocol.market.jobspec import JobSpec, Limits, Resources


@dataclass(frozen=True, slots=True)
class Offer:
    """One provider that can run the job, and the GPUs it would most likely sell."""

    provider: bytes
    peer_id: str
    price_per_gpu_second: int
    collateral: int
    #: The stake ranking used: the ledger's figure when known, else the announced one.
    stake: int
    #: The first ``gpu_count`` eligible units, in announcement order.
    gpu_uuids: tuple[str, ...]
    #: Every announced unit of this provider that meets the job's resources, busy or free; a
    #: quote may name any of them.
    eligible_gpu_uuids: tuple[str, ...]
    #: Some chosen unit is simulated: there is no such hardware (a testnet provider).
    simulated: bool
    #: Limits the job asks for that this (unsandboxed, development) provider cannot enforce.
    unenforced_limits: tuple[str, ...]
    #: The announcement this offer was read from.
    sequence: int
    expires_at_ms: int
    #: The asset the provider quotes in ("" for DCT) and its price in that asset's base units;
    #: ``price_per_gpu_second`` is then its DCT value at ``quote_twap`` (asset base units per
    #: DCT, the pool's time-weighted price when matched).
    quote: str = ""
    quote_price_per_gpu_second: int = 0
    quote_twap: int = 0


#: The DCT/asset pool's time-weighted price the next block would see, per symbol; None while
#: there is none (no pool, or one younger than a window).
TwapOf = Callable[[str], int | None]


def dct_value(ann: CapacityAnnouncement, twap_of: TwapOf | None) -> tuple[int, int] | None:
    """(DCT base units per GPU-second, the TWAP used, 0 for DCT) an announcement asks; None for a
    quote that has no DCT price now."""
    if not ann.quoted:
        return ann.price_per_gpu_second, 0
    twap = twap_of(ann.quote) if twap_of is not None else None
    if twap is None or twap <= 0:
        return None
    return dct_price(ann.quote_price_per_gpu_second, twap), twap


def device_meets(resources: Resources, device: GpuDevice) -> bool:
    """``device`` (not counting busy-ness, which the announcement says) can serve as one of the
    job's GPUs."""
    if not device.schedulable or not device.healthy or not device.uuid:
        return False
    if resources.min_memory_bytes > 0 and device.memory_free_bytes < resources.min_memory_bytes:
        return False
    if resources.model_pattern and not fnmatch.fnmatchcase(
        device.name.casefold(), resources.model_pattern.casefold()
    ):
        return False
    required_cc = resources.min_compute_capability
    if (
        required_cc != (0, 0)
        and (
            device.compute_capability_major,
            device.compute_capability_minor,
        )
        < required_cc
    ):
        return False
    return not (resources.min_cuda_version > 0 and device.cuda_version < resources.min_cuda_version)


def limits_refusal(limits: Limits, offered: OfferedLimits) -> str | None:
    """Why a job with ``limits`` cannot run under ``offered``, or None when it can.

    Each amount must fit under the provider's ceiling, and a sandboxed provider must enforce every
    kind (a job's spec always sets all four). An unsandboxed development provider runs the job
    with the kinds it can enforce; :attr:`Offer.unenforced_limits` lists the others.
    """
    asked = (
        ("cpu", limits.cpu_millicores, offered.cpu_millicores),
        ("memory", limits.memory_bytes, offered.memory_bytes),
        ("processes", limits.processes, offered.processes),
        ("disk", limits.disk_bytes, offered.disk_bytes),
    )
    over = [f"{kind} {want} > {most}" for kind, want, most in asked if want > most]
    if over:
        return "the job's limits exceed what this provider sells one job: " + ", ".join(over)
    unenforced = offered.unenforced()
    if offered.sandboxed and unenforced:
        return f"this provider cannot enforce the job's {', '.join(unenforced)} limit(s)"
    return None


def eligible_gpus(spec: JobSpec, devices: Iterable[GpuDevice]) -> tuple[GpuDevice, ...]:
    """The units among ``devices`` (assumed free) that meet the job's resources, in their order."""
    return tuple(device for device in devices if device_meets(spec.resources, device))


def select_gpus(spec: JobSpec, free_devices: Iterable[GpuDevice]) -> tuple[str, ...] | None:
    """The UUIDs of the first ``gpu_count`` eligible units, or None when there are too few."""
    eligible = eligible_gpus(spec, free_devices)
    count = spec.resources.gpu_count
    if len(eligible) < count:
        return None
    return tuple(device.uuid for device in eligible[:count])


def offer_for(
    spec: JobSpec,
    ann: CapacityAnnouncement,
    *,
    now_ms: int,
    min_provider_stake: int,
    stake: int,
    twap_of: TwapOf | None = None,
) -> Offer | None:
    """The offer ``ann`` makes for ``spec``, or None if it cannot run it (see the module doc)."""
    if ann.expires_at_ms <= now_ms:
        return None
    if stake < min_provider_stake:
        return None
    priced = dct_value(ann, twap_of)
    if priced is None or priced[0] > spec.max_price_per_gpu_second:
        return None
    if spec.executors.isdisjoint(ann.executors):
        return None
    if limits_refusal(spec.limits, ann.limits) is not None:
        return None
    eligible = eligible_gpus(spec, ann.free_gpus())
    count = spec.resources.gpu_count
    if len(eligible) < count:
        return None
    chosen = eligible[:count]
    return Offer(
        provider=ann.provider,
        peer_id=ann.peer_id,
        price_per_gpu_second=priced[0],
        collateral=ann.collateral,
        stake=stake,
        gpu_uuids=tuple(device.uuid for device in chosen),
        # Any announced unit that fits, busy or not: busy-ness changes between announcements
        # (the provider's last one may predate a job ending), the hardware does not.
        eligible_gpu_uuids=tuple(device.uuid for device in eligible_gpus(spec, ann.gpus)),
        simulated=any(device.simulated for device in chosen),
        unenforced_limits=ann.limits.unenforced(),
        sequence=ann.sequence,
        expires_at_ms=ann.expires_at_ms,
        quote=ann.quote,
        quote_price_per_gpu_second=ann.quote_price_per_gpu_second,
        quote_twap=priced[1],
    )


def match(
    spec: JobSpec,
    table_entries: Iterable[CapacityAnnouncement],
    *,
    now_ms: int,
    min_provider_stake: int,
    stake_of: Callable[[bytes], int] | None = None,
    exclude: Iterable[bytes] = (),
    twap_of: TwapOf | None = None,
) -> list[Offer]:
    """Every provider in ``table_entries`` that can run ``spec``, best first.

    ``stake_of(provider_key)`` gives the provider's bonded stake from the ledger; without it the
    announced stake is taken at its word. ``exclude`` names providers to leave out (the
    requester itself, say). ``twap_of`` prices providers quoting in an asset; without it, or
    while their asset has no time-weighted price, they are left out.
    """
    excluded = set(exclude)
    offers = []
    for ann in table_entries:
        if ann.provider in excluded:
            continue
        stake = stake_of(ann.provider) if stake_of is not None else ann.stake
        offer = offer_for(
            spec, ann, now_ms=now_ms, min_provider_stake=min_provider_stake, stake=stake, twap_of=twap_of
        )
        if offer is not None:
            offers.append(offer)
    offers.sort(key=lambda o: (o.price_per_gpu_second, -o.stake, o.provider))
    return offers
