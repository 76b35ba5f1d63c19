"""The economics and market-view methods: ``economics_status``, ``economics_history``,
``market_offers`` and ``market_stats`` (``dcent economics ...``, ``dcent market ...``).

Amounts are decimal strings of base units and ratios decimal strings scaled by 10^18, as
``economics_params`` answers: exact figures for machines; the CLI shows DCT and percentages.
History comes from the per-block records the node stores with each block
(``protocol/econview/record.py``); one call returns at most :data:`MAX_HISTORY_ROWS` of them and
says where the next page starts, and a status or stats window is at most :data:`MAX_WINDOW`
blocks, so no call reads more than a bounded slice of the store.
"""

from __future__ import annotations

from collections.abc import Sequence

import trio

from node.rpc.errors import InvalidParams
from node.rpc.methods import MethodSpec
from node.rpc.params import Int, Param, Str
from node.rpc.views import EconomicsReads
from node.services.consensus_driver import wall_clock_ms
from node.store import CorruptStore
from protocol.crypto import Address, address_of
from protocol.econview.market import (
    SORT_KEYS,
    OfferFilter,
    OfferRow,
    PriceStats,
    capacity,
    list_offers,
)
from protocol.econview.record import BlockEconomics
from protocol.econview.status import EconomicsStatus, economics_status
from protocol.encoding import DecodeError
from protocol.ledger.staking import bonded_by  # i12ledger: an account's stake is what it delegated
from protocol.market.capacity import CapacityAnnouncement
from protocol.market.errors import JobSpecError
from protocol.market.jobspec import MAX_GPUS, Resources
from protocol.market.quantities import parse_compute_capability, parse_cuda_version, parse_size

#: Most block records one ``economics_history`` call returns.
MAX_HISTORY_ROWS = 5_000
#: Most blocks a status or stats window spans.
MAX_WINDOW = 100_000
DEFAULT_WINDOW = 1_000
#: Heights (and prices) are SQLite / ledger 64-bit integers: larger ones are invalid params.
MAX_HEIGHT = 2**63 - 1
#: Most offers one ``market_offers`` call lists.
MAX_OFFERS = 1_000

_RECORD_FIELDS = (
    "`height`, `time_ms`, `txs`, `supply`, `minted`, `burned`, `bonded`, `bonded_ratio`, "
    "`unbonding`, `escrowed`, `deposits`, `community_pool`, `provider_pool`, `inflation`, `issued`, "
    "`burned_in_block`, `fees`, `validator_rewards`, `provider_rewards`, `gpu_seconds`, `paid`, "
    "`settlements`, `price_per_gpu_second` (null without work)"
)
_COUNTS = frozenset({"height", "time_ms", "txs", "gpu_seconds", "settlements"})


def record_json(record: BlockEconomics) -> dict[str, object]:
    """One block's record: counts as integers, amounts and ratios as decimal strings."""
    fields: dict[str, object] = {
        name: value if name in _COUNTS else str(value) for name, value in record.to_wire().items()
    }
    fields["bonded_ratio"] = str(record.bonded_ratio)
    price = record.price_per_gpu_second
    fields["price_per_gpu_second"] = None if price is None else str(price)
    return fields


def status_json(status: EconomicsStatus) -> dict[str, object]:
    fields: dict[str, object] = {}
    for name in status.__dataclass_fields__:
        value = getattr(status, name)
        fields[name] = (
            value
            if name in ("height", "window_blocks", "window_gpu_seconds") or value is None
            else str(value)
        )
    return fields


def _price_stats_json(stats: PriceStats | None) -> dict[str, object] | None:
    if stats is None:
        return None
    return {
        "units": stats.units,
        "min": str(stats.min),
        "median": str(stats.median),
        "max": str(stats.max),
        "mean": str(stats.mean),
    }


def offer_json(row: OfferRow) -> dict[str, object]:
    ann = row.announcement
    first = row.eligible[0] if row.eligible else None
    return {
        "provider": str(Address(address_of(ann.provider))),
        "public_key": ann.provider.hex(),
        "peer_id": ann.peer_id,
        "gpus": len(ann.gpus),
        "eligible_gpus": len(row.eligible),
        "free_gpus": len(row.free),
        "models": list(row.models),
        "memory_bytes": row.memory_bytes,
        "compute_capability": first.compute_capability if first is not None else "",
        "cuda_version": max((gpu.cuda_version for gpu in row.eligible), default=0),
        "simulated": any(gpu.simulated for gpu in row.eligible),
        "price_per_gpu_second": str(ann.price_per_gpu_second),
        "quote": ann.quote or "DCT",
        "quoted_price": str(ann.quote_price_per_gpu_second) if ann.quoted else None,
        "collateral": str(ann.collateral),
        "stake": str(row.stake),
        "announced_stake": str(ann.stake),
        "executors": list(ann.executors),
        "issued_at_ms": ann.issued_at_ms,
        "age_ms": row.age_ms,
        "expires_at_ms": ann.expires_at_ms,
    }


def decode_records(rows: Sequence[tuple[int, bytes]]) -> list[BlockEconomics]:
    """Decode stored records. Raises CorruptStore for a row that does not decode."""
    records = []
    for height, raw in rows:
        try:
            record = BlockEconomics.decode(raw)
        except DecodeError as exc:
            raise CorruptStore(f"economics record of block {height} does not decode: {exc.message}") from None
        records.append(record)
    return records


_WINDOW = Param(
    "window", Int(min=1, max=MAX_WINDOW), "recent blocks the rates are taken over", default=DEFAULT_WINDOW
)

ECONOMICS_METHODS = (
    MethodSpec(
        "economics_status",
        """Supply, issuance, burn, inflation, bonded ratio and its goal, pools, the staking yield
        and what providers earn per GPU-hour, with rates over the last ``window`` blocks.""",
        (_WINDOW,),
        errors=(CorruptStore,),
        returns="object: `height`, `genesis_supply`, `supply`, `minted`, `burned`, `inflation`, "
        "`inflation_min`, `inflation_max`, `annual_issuance`, `bonded`, `bonded_ratio`, `goal_bonded`, "
        "`unbonding`, `escrowed`, `deposits`, `community_pool`, `provider_pool`, `fee_burn_share`, "
        "`protocol_fee_share`, `staking_apr`, `window_blocks`, `window_issued`, `window_burned`, "
        "`window_fees`, `window_gpu_seconds`, `window_paid`, `price_per_gpu_hour` and "
        "`provider_earnings_per_gpu_hour` (null when no work settled in the window)",
    ),
    MethodSpec(
        "economics_history",
        "The per-block economics records of blocks ``from_height`` to ``to_height``.",
        (
            Param("from_height", Int(min=1, max=MAX_HEIGHT), "first block", default=1),
            Param("to_height", Int(min=0, max=MAX_HEIGHT), "last block (0: the stored head)", default=0),
            Param("limit", Int(min=1, max=MAX_HISTORY_ROWS), "most records returned", default=1_000),
        ),
        errors=(CorruptStore,),
        returns=f"object: `from`, `to`, `head`, `records` (ascending, each {_RECORD_FIELDS}), "
        "`next` (the height to ask from for the rest, or null)",
    ),
    MethodSpec(
        "market_offers",
        """The providers' current offers this node holds that could take a job asking for these
        resources, sorted; the stake is the ledger's.""",
        (
            Param("gpu_count", Int(min=1, max=MAX_GPUS), "free units the offer must have", default=1),
            Param("min_memory", Str(max_len=32), 'memory per unit, "40 GiB" or bytes', default=""),
            Param("model", Str(max_len=128), 'GPU name pattern, "*H100*"', default=""),
            Param("min_compute_capability", Str(max_len=16), '"8.0"', default=""),
            Param("min_cuda", Str(max_len=16), 'CUDA version, "12.1"', default=""),
            Param("executor", Str(max_len=32), "an executor the offer must have", default=""),
            Param(
                "max_price", Int(min=0, max=MAX_HEIGHT), "most base units per GPU-second (0: any)", default=0
            ),
            Param("sort", Str(max_len=16), f"one of {', '.join(SORT_KEYS)}", default="price"),
            Param("limit", Int(min=1, max=MAX_OFFERS), "most offers returned", default=100),
        ),
        errors=(JobSpecError,),
        returns="array of offers, best first by `sort`: `provider`, `public_key`, `peer_id`, `gpus`, "
        "`eligible_gpus`, `free_gpus`, `models`, `memory_bytes`, `compute_capability`, `cuda_version`, "
        "`simulated`, `price_per_gpu_second`, `quote` (`DCT` or the asset the provider quotes in), "
        "`quoted_price` (per GPU-second in base units of `quote`, null for DCT; "
        "`price_per_gpu_second` is then its DCT value as announced), "
        "`collateral`, `stake` (the ledger's), `announced_stake`, "
        "`executors`, `issued_at_ms`, `age_ms`, `expires_at_ms`",
    ),
    MethodSpec(
        "market_stats",
        """The network's capacity in the offers this node holds (units, free units, prices by GPU
        model) and the work settled on chain over the last ``window`` blocks.""",
        (_WINDOW,),
        errors=(CorruptStore,),
        returns="object: `providers`, `gpus`, `free_gpus`, `simulated_gpus`, `offered_prices` and "
        "`free_prices` (`units`, `min`, `median`, `max`, `mean` per GPU-second, or null), "
        "`by_model` (`model`, `gpus`, `free_gpus`, `providers`, `prices`), `recent` (`blocks`, "
        "`settlements`, `gpu_seconds`, `paid`, `price_per_gpu_second` or null)",
    ),
)


class EconomicsMethods:
    """The handlers of :data:`ECONOMICS_METHODS`."""

    def __init__(self, reads: EconomicsReads) -> None:
        self._reads = reads

    async def _window(self, blocks: int) -> list[BlockEconomics]:
        head = self._reads.driver.height
        rows = await trio.to_thread.run_sync(self._reads.store.economics, max(1, head - blocks + 1), head)
        return decode_records(rows)

    async def economics_status(self, window: int) -> dict[str, object]:
        records = await self._window(window)
        return status_json(economics_status(self._reads.app.state, records))

    async def economics_history(self, from_height: int, to_height: int, limit: int) -> dict[str, object]:
        head = self._reads.driver.height
        end = head if to_height == 0 else min(to_height, head)
        if to_height and from_height > to_height:
            raise InvalidParams(
                f"param 'from_height': {from_height} is after to_height {to_height}", {"param": "from_height"}
            )
        last = min(end, from_height + limit - 1)
        rows = (
            await trio.to_thread.run_sync(self._reads.store.economics, from_height, last)
            if last >= from_height
            else []
        )
        records = decode_records(rows)
        return {
            "from": from_height,
            "to": end,
            "head": head,
            "records": [record_json(record) for record in records],
            "next": last + 1 if last < end else None,
        }

    async def market_offers(
        self,
        gpu_count: int,
        min_memory: str,
        model: str,
        min_compute_capability: str,
        min_cuda: str,
        executor: str,
        max_price: int,
        sort: str,
        limit: int,
    ) -> list[dict[str, object]]:
        if sort not in SORT_KEYS:
            raise InvalidParams(
                f"param 'sort': {sort!r} is not one of {', '.join(SORT_KEYS)}", {"param": "sort"}
            )
        major, minor = parse_compute_capability(min_compute_capability, "min_compute_capability")
        resources = Resources(
            gpu_count=gpu_count,
            min_memory_bytes=parse_size(min_memory or 0, "min_memory"),
            model_pattern=model,
            min_compute_capability_major=major,
            min_compute_capability_minor=minor,
            min_cuda_version=parse_cuda_version(min_cuda or 0, "min_cuda"),
        )
        rows = list_offers(
            self._entries(),
            OfferFilter(resources, executor=executor, max_price_per_gpu_second=max_price),
            now_ms=wall_clock_ms(),
            sort=sort,
            stake_of=self._ledger_stake,
        )
        return [offer_json(row) for row in rows[:limit]]

    async def market_stats(self, window: int) -> dict[str, object]:
        records = await self._window(window)
        summary = capacity(self._entries(), now_ms=wall_clock_ms())
        gpu_seconds = sum(record.gpu_seconds for record in records)
        paid = sum(record.paid for record in records)
        return {
            "providers": summary.providers,
            "gpus": summary.units,
            "free_gpus": summary.free,
            "simulated_gpus": summary.simulated,
            "offered_prices": _price_stats_json(summary.prices),
            "free_prices": _price_stats_json(summary.free_prices),
            "by_model": [
                {
                    "model": model.model,
                    "gpus": model.units,
                    "free_gpus": model.free,
                    "providers": model.providers,
                    "prices": _price_stats_json(model.prices),
                }
                for model in summary.by_model
            ],
            "recent": {
                "blocks": len(records),
                "settlements": sum(record.settlements for record in records),
                "gpu_seconds": gpu_seconds,
                "paid": str(paid),
                "price_per_gpu_second": str(paid // gpu_seconds) if gpu_seconds else None,
            },
        }

    def _entries(self) -> list[CapacityAnnouncement]:
        return self._reads.capacity.entries()

    def _ledger_stake(self, provider_key: bytes) -> int | None:
        return bonded_by(self._reads.app.state, address_of(provider_key))
